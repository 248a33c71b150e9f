//! `cardvault serve --dev`: the first-run path. A throwaway vault in a fresh temporary directory,
//! unlocked by a random key file, with merchant 890490, its terminal 1234001, a merchant API key
//! (tokenize, reveal, fingerprint, sessions), an operator key (admin) and a random gateway
//! password written next to the socket; prints a loud banner and a curl line
//! that works as printed.

use std::{
    fs,
    os::unix::fs::DirBuilderExt,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use cardvault::{
    KeySource, MerchantId, Scope, Scopes, SecretKey, Vault,
    gateway::{Gateway, MerchantPassword, TerminalId},
};
use vault_daemon::DaemonConfig;

use super::{
    runtime,
    secret_file::write_secret_file,
    serve::{SOCKET_POINTER, ServeArgs},
};

/// Where `--dev` listens unless `--socket` says otherwise.
pub(crate) const DEV_SOCKET: &str = "/tmp/cardvault-dev/cardvault.sock";
/// The dev merchant.
pub(crate) const DEV_MERCHANT: &str = "890490";
/// The dev merchant's processing terminal (hosted-fields sessions).
pub(crate) const DEV_TERMINAL: &str = "1234001";

/// The body of the token API's request example.
const SEED_003_BODY: &str = r#"{"type":"card","card":{"pan":"4242424242424242","expiration_date":"2802"},"metadata":{"description":"Card description - optional value"}}"#;

pub(crate) fn run(args: &ServeArgs, config: DaemonConfig) -> anyhow::Result<()> {
    let socket = std::path::absolute(args.socket.as_deref().unwrap_or(Path::new(DEV_SOCKET)))
        .context("resolving the socket path")?;
    let socket_dir = socket
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    // Refuse a busy socket before touching anything: the files next to it (api-key,
    // merchant-password) belong to the daemon already running there.
    if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
        bail!(
            "a daemon is already listening on {}; stop it, or pass --socket PATH for a second dev daemon (nothing was changed)",
            socket.display()
        );
    }
    if !socket_dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&socket_dir)
            .with_context(|| format!("creating {}", socket_dir.display()))?;
    }
    // Held while this dev daemon runs: a second one starting at the same moment stops here.
    let _lock = dev_lock(&socket_dir)?;

    // A dev daemon on this directory that was killed (`kill -9`, a crash) left its throwaway
    // vault behind: no dev daemon holds the directory now (the lock above), so it goes.
    remove_leftover(&socket_dir);
    // Owner-only, as the vault directory and key file inside it are.
    let tmp = tempfile::Builder::new()
        .prefix(DEV_VAULT_PREFIX)
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .tempdir()
        .context("creating a temporary directory")?;
    let pointer = socket_dir.join(DEV_VAULT_POINTER);
    let _ = fs::write(&pointer, format!("{}\n", tmp.path().display()));
    let data = tmp.path().join("data");
    let key_bytes = SecretKey::generate(&mut rand::rand_core::UnwrapErr(rand::rngs::SysRng));
    write_secret_file(
        &tmp.path().join("vault.key"),
        hex::encode(key_bytes.expose()).as_bytes(),
    )?;
    let key = KeySource::KeyFile(key_bytes);
    let vault = Gateway::new(
        Vault::create(&data, &key, args.vault_options())
            .with_context(|| format!("creating the dev vault in {}", data.display()))?,
    );
    drop(key);
    // As `serve` does: admin commands given `--data` find the daemon through this file.
    let _ = fs::write(data.join(SOCKET_POINTER), format!("{}\n", socket.display()));
    args.tune(&vault);

    let merchant = MerchantId::parse(DEV_MERCHANT).context("dev merchant id")?;
    vault.add_merchant(merchant, "Dev merchant")?;
    let api_key = vault.create_api_key(merchant, dev_merchant_scopes(), "dev merchant key")?;
    let key_file = socket_dir.join("api-key");
    // A previous dev run may have left its key; it is worthless now.
    let _ = fs::remove_file(&key_file);
    write_secret_file(&key_file, api_key.expose().as_bytes())?;
    drop(api_key);
    let operator_key =
        vault.create_operator_key(Scopes::of(&[Scope::Admin]), "dev operator key")?;
    let operator_file = socket_dir.join("operator-key");
    let _ = fs::remove_file(&operator_file);
    write_secret_file(&operator_file, operator_key.expose().as_bytes())?;
    drop(operator_key);
    vault.add_terminal(merchant, TerminalId::parse(DEV_TERMINAL)?)?;
    let mut secret = [0u8; 16];
    rand::Rng::fill_bytes(
        &mut rand::rand_core::UnwrapErr(rand::rngs::SysRng),
        &mut secret,
    );
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
        move || super::serve::say(&banner),
    ));
    let _ = fs::remove_file(&key_file);
    let _ = fs::remove_file(&operator_file);
    let _ = fs::remove_file(&password_file);
    drop(tmp);
    let _ = fs::remove_file(&pointer);
    result
}

/// The name every dev vault's temporary directory starts with.
const DEV_VAULT_PREFIX: &str = "cardvault-dev-";
/// In the socket directory: the temporary directory of the dev vault running there, for the next
/// dev daemon to remove if this one never got to (killed).
const DEV_VAULT_POINTER: &str = ".dev-vault";

/// Removes the throwaway vault a killed dev daemon on `socket_dir` left, as its pointer names it:
/// only a directory of this user's, directly in the temporary directory, named as dev vaults are.
fn remove_leftover(socket_dir: &Path) {
    use std::os::unix::fs::MetadataExt;
    let pointer = socket_dir.join(DEV_VAULT_POINTER);
    let Ok(text) = fs::read_to_string(&pointer) else {
        return;
    };
    let dir = PathBuf::from(text.trim_end());
    let named = dir.parent() == Some(std::env::temp_dir().as_path())
        && dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(DEV_VAULT_PREFIX));
    let ours = fs::symlink_metadata(&dir)
        .is_ok_and(|m| m.is_dir() && m.uid() == rustix::process::getuid().as_raw());
    if named && ours {
        let _ = fs::remove_dir_all(&dir);
    }
    let _ = fs::remove_file(&pointer);
}

/// An exclusive lock on `.dev.lock` in the socket directory, or an error if another dev daemon
/// holds it.
fn dev_lock(socket_dir: &Path) -> anyhow::Result<fs::File> {
    let path = socket_dir.join(".dev.lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => bail!(
            "another `cardvault serve --dev` uses {}; stop it, or pass --socket PATH in another directory (nothing was changed)",
            socket_dir.display()
        ),
        Err(fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

fn banner(data: &Path, socket: &Path, key_file: &Path) -> String {
    let line = "=".repeat(78);
    format!(
        "\n{line}\n  DEV MODE — NOT FOR PRODUCTION\n  throwaway vault in {data} (deleted on exit), random vault key file {vault_key},\n  merchant {DEV_MERCHANT} (\"Dev merchant\"), terminal {DEV_TERMINAL},\n  merchant API key (tokenize, reveal, fingerprint, sessions) in {key},\n  operator key (admin) in {op},\n  gateway password (POST /token) in {pw}\n{line}\n\n\
         Tokenize a card (the token API example):\n\n  {curl}\n\n\
         Admin through the daemon:  cardvault merchant list --socket {sock}\n\
         Audit log:                 cardvault audit tail --socket {sock}\n\
         Load test:                 cardvault bench --socket {sock} --op tokenize --connections 32 --duration 10s\n\
         Stop with Ctrl-C.\n",
        data = data.display(),
        vault_key = data.with_file_name("vault.key").display(),
        key = key_file.display(),
        pw = key_file.with_file_name("merchant-password").display(),
        op = key_file.with_file_name("operator-key").display(),
        curl = curl_line(socket, key_file),
        sock = shell_quote(&socket.display().to_string()),
    )
}

/// The dev merchant key's scopes: everything a merchant key may hold (`admin` is for operator
/// keys only).
pub(crate) fn dev_merchant_scopes() -> Scopes {
    Scopes::of(&[
        Scope::Tokenize,
        Scope::Reveal,
        Scope::Fingerprint,
        cardvault::gateway::SESSIONS,
    ])
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
