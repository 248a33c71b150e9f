//! How strong a new vault passphrase must be (`init`): at least [`MIN_CHARS`] characters and a
//! zxcvbn strength estimate of at least [`MIN_SCORE`] (of 4). The passphrase protects every key of
//! the vault against offline guessing once the key header is copied; Argon2id only slows each guess.

use std::fmt;

use zxcvbn::{Score, zxcvbn};

/// Shortest accepted passphrase, in characters.
pub(crate) const MIN_CHARS: usize = 12;

/// Lowest accepted zxcvbn score ("safely unguessable: moderate protection from offline
/// slow-hash scenario").
pub(crate) const MIN_SCORE: Score = Score::Three;

/// Why a passphrase was refused. Never holds the passphrase or any part of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WeakPassphrase {
    /// Fewer than [`MIN_CHARS`] characters.
    TooShort {
        /// Its length, in characters.
        chars: usize,
    },
    /// Long enough, but zxcvbn finds it guessable (dictionary words, keyboard walks, dates...).
    Guessable {
        /// zxcvbn's score, 0 to 4.
        score: u8,
    },
}

impl fmt::Display for WeakPassphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort { chars } => write!(
                f,
                "the passphrase is too short ({chars} characters; at least {MIN_CHARS}); use several random words, or a key file"
            ),
            Self::Guessable { score } => write!(
                f,
                "the passphrase is too easy to guess (strength {score} of 4; at least {}); use several random words, or a key file",
                u8::from(MIN_SCORE)
            ),
        }
    }
}

impl std::error::Error for WeakPassphrase {}

/// Checks a new passphrase. `context` are words an attacker would try first (the data
/// directory's name, "cardvault").
pub(crate) fn check(passphrase: &str, context: &[&str]) -> Result<(), WeakPassphrase> {
    let chars = passphrase.chars().count();
    if chars < MIN_CHARS {
        return Err(WeakPassphrase::TooShort { chars });
    }
    let score = zxcvbn(passphrase, context).score();
    if score < MIN_SCORE {
        return Err(WeakPassphrase::Guessable {
            score: u8::from(score),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_guessable_passphrases_are_refused() {
        assert_eq!(
            check("hunter2", &[]),
            Err(WeakPassphrase::TooShort { chars: 7 })
        );
        assert!(matches!(
            check("password1234", &[]),
            Err(WeakPassphrase::Guessable { .. })
        ));
        assert!(matches!(
            check("aaaaaaaaaaaaaaaa", &[]),
            Err(WeakPassphrase::Guessable { .. })
        ));
        assert!(matches!(
            check("cardvaultcardvault", &["cardvault"]),
            Err(WeakPassphrase::Guessable { .. })
        ));
    }

    #[test]
    fn strong_passphrases_pass() {
        assert_eq!(check("correct horse battery staple", &[]), Ok(()));
        assert_eq!(check("vivid-otter-crimson-ladder-42", &[]), Ok(()));
    }

    #[test]
    fn the_message_never_quotes_the_passphrase() {
        let err = check("password1234", &[]).expect_err("weak");
        assert!(!err.to_string().contains("password1234"));
    }
}
