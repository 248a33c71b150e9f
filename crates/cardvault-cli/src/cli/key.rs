//! Where the vault key comes from: a key file, a passphrase file, the `CARDVAULT_PASSPHRASE`
//! environment variable or an interactive prompt. Never a plain command-line argument: argv is
//! visible to every user of the machine through `/proc`.

use std::{
    fs,
    io::IsTerminal,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use cardvault::{KeySource, Passphrase};
use clap::Args;
use zeroize::Zeroizing;

use super::strength;

/// The environment variable holding the passphrase itself.
pub(crate) const PASSPHRASE_ENV: &str = "CARDVAULT_PASSPHRASE";

/// The environment variable holding a NEW passphrase (`keys rekey`).
pub(crate) const NEW_PASSPHRASE_ENV: &str = "CARDVAULT_NEW_PASSPHRASE";

/// Options naming the key that unlocks the vault.
#[derive(Args, Debug, Clone, Default)]
pub(crate) struct KeyArgs {
    /// Read the passphrase from this file (one trailing newline is ignored).
    /// The passphrase itself may instead be given in CARDVAULT_PASSPHRASE, or typed at a prompt.
    #[arg(
        long,
        env = "CARDVAULT_PASSPHRASE_FILE",
        value_name = "FILE",
        conflicts_with = "key_file"
    )]
    pub(crate) passphrase_file: Option<PathBuf>,

    /// Use a key file instead of a passphrase: exactly 32 raw bytes or 64 hex characters.
    #[arg(long, env = "CARDVAULT_KEY_FILE", value_name = "FILE")]
    pub(crate) key_file: Option<PathBuf>,
}

impl KeyArgs {
    /// Resolves the key. `confirm` asks twice at an interactive prompt (for `init`).
    pub(crate) fn resolve(&self, confirm: bool) -> anyhow::Result<KeySource> {
        self.resolve_from(PASSPHRASE_ENV, "Vault passphrase: ", confirm)
    }

    /// [`resolve`](Self::resolve) with the passphrase variable `env_name` and the prompt `label`.
    fn resolve_from(
        &self,
        env_name: &str,
        label: &str,
        confirm: bool,
    ) -> anyhow::Result<KeySource> {
        let env = passphrase_env(env_name);
        let given = usize::from(self.passphrase_file.is_some())
            + usize::from(self.key_file.is_some())
            + usize::from(env.is_some());
        if given > 1 {
            bail!(
                "more than one key source given (--key-file, --passphrase-file, {env_name}); name exactly one"
            );
        }
        if let Some(path) = &self.key_file {
            warn_if_readable_by_others(path);
            let bytes = Zeroizing::new(
                fs::read(path).with_context(|| format!("reading key file {}", path.display()))?,
            );
            return KeySource::from_key_file_bytes(&bytes)
                .with_context(|| format!("key file {}", path.display()));
        }
        if let Some(path) = &self.passphrase_file {
            warn_if_readable_by_others(path);
            let mut s = fs::read_to_string(path)
                .with_context(|| format!("reading passphrase file {}", path.display()))?;
            strip_newline(&mut s);
            return passphrase(s);
        }
        if let Some(s) = env {
            return passphrase(s);
        }
        prompt(env_name, label, confirm)
    }

    /// Resolves the key of a NEW vault (`init`): asks twice at a prompt, and refuses a passphrase
    /// that is too weak ([`strength::check`]; `context` holds words an attacker would try first).
    /// Key files are random 32-byte keys and need no check.
    pub(crate) fn resolve_new(&self, context: &[&str]) -> anyhow::Result<KeySource> {
        self.resolve_new_from(PASSPHRASE_ENV, "Vault passphrase: ", context)
    }

    /// [`resolve_new`](Self::resolve_new) with the passphrase variable `env_name` and the prompt
    /// `label` (`keys rekey` reads the new key from its own options).
    pub(crate) fn resolve_new_from(
        &self,
        env_name: &str,
        label: &str,
        context: &[&str],
    ) -> anyhow::Result<KeySource> {
        let key = self.resolve_from(env_name, label, true)?;
        if let KeySource::Passphrase(p) = &key {
            let mut words = vec!["cardvault", "vault", "passphrase"];
            words.extend_from_slice(context);
            strength::check(p.expose(), &words)?;
        }
        Ok(key)
    }
}

fn passphrase_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|s| !s.is_empty())
}

/// Whether the variable `name` is set to the empty string (an unset variable is not empty).
fn passphrase_env_is_empty(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| v.is_empty())
}

fn passphrase(s: String) -> anyhow::Result<KeySource> {
    Ok(KeySource::Passphrase(
        Passphrase::new(s).context("passphrase")?,
    ))
}

/// Drops one trailing `\n` (or `\r\n`).
pub(crate) fn strip_newline(s: &mut String) {
    if s.ends_with('\n') {
        s.pop();
        if s.ends_with('\r') {
            s.pop();
        }
    }
}

fn prompt(env_name: &str, label: &str, confirm: bool) -> anyhow::Result<KeySource> {
    if !std::io::stdin().is_terminal() {
        if passphrase_env_is_empty(env_name) {
            bail!(
                "{env_name} is set but empty: put the passphrase in it, or unset it and pass a passphrase file or a key file"
            );
        }
        bail!(
            "no vault key given: set {env_name}, or pass a passphrase file (--passphrase-file FILE) or a key file (--key-file FILE)"
        );
    }
    let first = Zeroizing::new(rpassword::prompt_password(label).context("reading passphrase")?);
    if confirm {
        let second = Zeroizing::new(
            rpassword::prompt_password("Repeat passphrase: ").context("reading passphrase")?,
        );
        if *first != *second {
            bail!("the two passphrases differ");
        }
    }
    passphrase(first.to_string())
}

/// Key, passphrase, password and API key files should be readable by their owner only; say so
/// when they are not.
pub(crate) fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        // Not `eprintln!`: it panics on a closed stderr, and `serve` resolves keys too.
        super::serve::say(&format!(
            "warning: {} is readable by group or others; chmod 600 it",
            path.display()
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newline_stripping() {
        for (input, want) in [("a\n", "a"), ("a\r\n", "a"), ("a", "a"), ("a\n\n", "a\n")] {
            let mut s = input.to_owned();
            strip_newline(&mut s);
            assert_eq!(s, want);
        }
    }
}
