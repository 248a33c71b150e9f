//! `cardvault serve --dev`: the first-run path. A throwaway vault in a fresh temporary directory,
//! unlocked by a random key file, with merchant 890490, its terminal 1234001, an all-scopes API key
//! and a random gateway password written next to the socket; prints a loud banner and a curl line
//! that works as printed.

use std::{
    fs,
    os::unix::fs::DirBuilderExt,
    path::{Path, PathBuf},
};

use anyhow::Context;
use cardvault::{
    KeySource, MerchantId, MerchantPassword, Scope, Scopes, SecretKey, TerminalId, Vault,
};
use vault_daemon::DaemonConfig;

use super::{admin::write_secret_file, runtime, serve::ServeArgs};

/// Where `--dev` listens unless `--socket` says otherwise.
pub(crate) const DEV_SOCKET: &str = "/tmp/cardvault-dev/cardvault.sock";
/// The dev merchant.
pub(crate) const DEV_MERCHANT: &str = "890490";
/// The dev merchant's processing terminal (hosted-fields sessions).
pub(crate) const DEV_TERMINAL: &str = "1234001";

/// The body of seed 003's request example.
const SEED_003_BODY: &str = r#"{"type":"card","card":{"pan":"4242424242424242","expiration_date":"2802"},"metadata":{"description":"Card description - optional value"}}"#;

pub(crate) fn run(args: &ServeArgs, config: DaemonConfig) -> anyhow::Result<()> {
    let socket = std::path::absolute(args.socket.as_deref().unwrap_or(Path::new(DEV_SOCKET)))
        .context("resolving the socket path")?;
    let socket_dir = socket
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    if !socket_dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&socket_dir)
            .with_context(|| format!("creating {}", socket_dir.display()))?;
    }

    let tmp = tempfile::Builder::new()
        .prefix("cardvault-dev-")
        .tempdir()
        .context("creating a temporary directory")?;
    let data = tmp.path().join("data");
    let key_bytes = SecretKey::generate(&mut rand::rng());
    write_secret_file(
        &tmp.path().join("vault.key"),
        hex::encode(key_bytes.expose()).as_bytes(),
    )?;
    let key = KeySource::KeyFile(key_bytes);
    let vault = Vault::create(&data, &key, args.vault_options())
        .with_context(|| format!("creating the dev vault in {}", data.display()))?;
    drop(key);
    args.tune(&vault);

    let merchant = MerchantId::parse(DEV_MERCHANT).context("dev merchant id")?;
    vault.add_merchant(merchant, "Dev merchant")?;
    let api_key = vault.create_api_key(merchant, Scopes::of(&Scope::ALL), "dev (all scopes)")?;
    let key_file = socket_dir.join("api-key");
    // A previous dev run may have left its key; it is worthless now.
    let _ = fs::remove_file(&key_file);
    write_secret_file(&key_file, api_key.expose().as_bytes())?;
    drop(api_key);
    vault.add_terminal(merchant, TerminalId::parse(DEV_TERMINAL)?)?;
    let mut secret = [0u8; 16];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut secret);
    let password = MerchantPassword::new(hex::encode(secret))?;
    vault.set_merchant_password(merchant, &password)?;
    let password_file = socket_dir.join("merchant-password");
    let _ = fs::remove_file(&password_file);
    write_secret_file(&password_file, password.expose().as_bytes())?;
    drop(password);

    let banner = banner(&data, &socket, &key_file);
    let result = runtime()?.block_on(super::serve::serve(
        vault,
        config,
        &socket,
        args.listen,
        move || eprintln!("{banner}"),
    ));
    let _ = fs::remove_file(&key_file);
    let _ = fs::remove_file(&password_file);
    drop(tmp);
    result
}

fn banner(data: &Path, socket: &Path, key_file: &Path) -> String {
    let line = "=".repeat(78);
    format!(
        "\n{line}\n  DEV MODE — NOT FOR PRODUCTION\n  throwaway vault in {data} (deleted on exit), random vault key file {vault_key},\n  merchant {DEV_MERCHANT} (\"Dev merchant\"), terminal {DEV_TERMINAL}, all-scopes API key in {key},\n  gateway password (POST /token) in {pw}\n{line}\n\n\
         Tokenize a card (seed 003's example):\n\n  {curl}\n\n\
         Admin through the daemon:  cardvault merchant list --socket {sock}\n\
         Audit log:                 cardvault audit tail --socket {sock}\n\
         Load test:                 cardvault bench --socket {sock} --op tokenize --connections 32 --duration 10s\n\
         Stop with Ctrl-C.\n",
        data = data.display(),
        vault_key = data.with_file_name("vault.key").display(),
        key = key_file.display(),
        pw = key_file.with_file_name("merchant-password").display(),
        curl = curl_line(socket, key_file),
        sock = shell_quote(&socket.display().to_string()),
    )
}

/// The curl command printed by `--dev`, exactly as a POSIX shell should run it.
pub(crate) fn curl_line(socket: &Path, key_file: &Path) -> String {
    format!(
        "curl --unix-socket {sock} -H \"Authorization: Bearer $(cat {key})\" -H 'Content-Type: application/json' -d '{SEED_003_BODY}' http://localhost/v2/tokens",
        sock = shell_quote(&socket.display().to_string()),
        key = shell_quote(&key_file.display().to_string()),
    )
}

/// Quotes for a POSIX shell when needed.
fn shell_quote(s: &str) -> String {
    if s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-+:@%".contains(&b))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("/tmp/a.sock"), "/tmp/a.sock");
        assert_eq!(shell_quote("/tmp/a b"), "'/tmp/a b'");
        assert_eq!(shell_quote("/tmp/it's"), r"'/tmp/it'\''s'");
    }
}
