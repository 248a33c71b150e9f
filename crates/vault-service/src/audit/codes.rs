//! The audit-code registry: the one byte that names an entry's action on disk.
//!
//! The vault owns the code space. Its own actions are the named variants of [`AuditAction`]; a
//! layer above declares its actions as [`AuditCode`]s (a code and a name) from the codes reserved
//! for it ([`AuditCode::RESERVED`]), records them as [`AuditAction::Extension`], and registers
//! them ([`AuditCode::register`]) so that entries read back show their names. A code outside the
//! reserved ones does not compile as an `AuditCode` constant (the check is in a `const fn`), and
//! a vault action and an extension can never share a code.
//!
//! | codes      | owner                                                                  |
//! |------------|------------------------------------------------------------------------|
//! | 1          | vault: `reveal`                                                        |
//! | 2-9        | reserved for the layer above (its first codes)                         |
//! | 10-12      | vault: merchants, API keys                                             |
//! | 13-19      | reserved for the layer above (its admin codes)                         |
//! | 20-23, 30-32 | vault: keys, sweep, backup, audit archive                            |
//! | 40, 42     | vault: failed authentication, masked-form limit                        |
//! | 41         | reserved for the layer above (one refusal code)                        |
//! | 100-199    | reserved for the layer above (new actions)                             |
//!
//! The codes of the layer above predate this registry (they were written when its actions lived
//! in this crate), hence the scattered ranges; their bytes are unchanged.

use std::hash::{Hash, Hasher};

use parking_lot::RwLock;

macro_rules! actions {
    ($($(#[$doc:meta])* $name:ident = $code:literal, $text:literal;)*) => {
        /// What was done: one of the vault's actions, or an action of a layer above.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum AuditAction {
            $($(#[$doc])* $name,)*
            /// An action of a layer above, under a code reserved for it (see the module docs).
            Extension(AuditCode),
        }

        impl AuditAction {
            pub(super) fn code(self) -> u8 {
                match self {
                    $(Self::$name => $code,)*
                    Self::Extension(c) => c.code,
                }
            }

            /// The action stored as `c`: a vault action, an extension (named if registered), or
            /// `None` for a code nobody owns.
            pub(super) fn from_code(c: u8) -> Option<Self> {
                match c {
                    $($code => Some(Self::$name),)*
                    c if AuditCode::is_reserved(c) => Some(Self::Extension(AuditCode::lookup(c))),
                    _ => None,
                }
            }

            /// Stable lower-case name (`reveal`, `key.rotate`, ...; an extension's own name).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$name => $text,)*
                    // Read back before its layer registered it: looked up again.
                    Self::Extension(c) if c.name == UNREGISTERED => {
                        AuditCode::lookup(c.code).name
                    }
                    Self::Extension(c) => c.name,
                }
            }
        }
    };
}

actions! {
    /// A card was revealed (or a reveal was refused).
    Reveal = 1, "reveal";
    /// A merchant was added.
    AdminMerchantAdd = 10, "admin.merchant.add";
    /// An API key was created.
    AdminApiKeyCreate = 11, "admin.apikey.create";
    /// An API key was revoked.
    AdminApiKeyRevoke = 12, "admin.apikey.revoke";
    /// A fresh data key was made current.
    KeyRotate = 20, "key.rotate";
    /// Records were re-sealed under the current data key.
    KeyRewrap = 21, "key.rewrap";
    /// Unused decrypt-only data keys were retired.
    KeyRetire = 22, "key.retire";
    /// The passphrase or key file changed.
    Rekey = 23, "key.rekey";
    /// Expired records were swept.
    Sweep = 30, "sweep";
    /// A backup of the whole vault was written (still sealed).
    Backup = 31, "backup";
    /// Old audit entries were moved out of the live log into an archive file.
    AuditArchive = 32, "audit.archive";
    /// An API key failed to authenticate.
    AuthFailed = 40, "auth.failed";
    /// A tokenization was refused: too many distinct cards with one masked form from one key.
    TokenizeMaskedFormLimited = 42, "tokenize.masked_form_limited";
}

/// An action of a layer above: its code (from [`RESERVED`](Self::RESERVED)) and its stable
/// lower-case name. Two `AuditCode`s are the same action when their codes are equal.
#[derive(Clone, Copy, Debug)]
pub struct AuditCode {
    code: u8,
    name: &'static str,
}

/// The name of a reserved code read back before any layer registered it.
const UNREGISTERED: &str = "unregistered";

/// The extensions registered so far (see [`AuditCode::register`]).
static REGISTERED: RwLock<Vec<AuditCode>> = RwLock::new(Vec::new());

impl AuditCode {
    /// The codes reserved for the layer above (inclusive ranges; see the module docs).
    pub const RESERVED: [(u8, u8); 4] = [(2, 9), (13, 19), (41, 41), (100, 199)];

    /// The action `name` under `code`. Panics (at compile time, for a constant) unless `code` is
    /// reserved for the layer above.
    pub const fn new(code: u8, name: &'static str) -> Self {
        assert!(
            Self::is_reserved(code),
            "audit code not reserved for the layer above"
        );
        Self { code, name }
    }

    /// Its code.
    pub const fn code(self) -> u8 {
        self.code
    }

    /// Its name.
    pub const fn name(self) -> &'static str {
        self.name
    }

    /// Whether `code` is reserved for the layer above.
    pub const fn is_reserved(code: u8) -> bool {
        let mut i = 0;
        while i < Self::RESERVED.len() {
            let (lo, hi) = Self::RESERVED[i];
            if lo <= code && code <= hi {
                return true;
            }
            i += 1;
        }
        false
    }

    /// Makes `codes` known to this process, so that entries read back show their names
    /// (idempotent). Panics if a code is already registered under another name.
    pub fn register(codes: &[AuditCode]) {
        let mut all = REGISTERED.write();
        for c in codes {
            match all.iter().find(|r| r.code == c.code) {
                Some(r) => assert_eq!(r.name, c.name, "audit code {} registered twice", c.code),
                None => all.push(*c),
            }
        }
    }

    /// The registered action under `code`, or one named `unregistered`.
    fn lookup(code: u8) -> Self {
        REGISTERED
            .read()
            .iter()
            .find(|r| r.code == code)
            .copied()
            .unwrap_or(Self {
                code,
                name: UNREGISTERED,
            })
    }
}

impl PartialEq for AuditCode {
    fn eq(&self, other: &Self) -> bool {
        self.code == other.code
    }
}

impl Eq for AuditCode {}

impl Hash for AuditCode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.code.hash(state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vault_codes_are_outside_the_reserved_ones_and_round_trip() {
        for c in 0..=u8::MAX {
            let Some(a) = AuditAction::from_code(c) else {
                continue;
            };
            assert_eq!(a.code(), c);
            assert_eq!(
                matches!(a, AuditAction::Extension(_)),
                AuditCode::is_reserved(c),
                "{c}"
            );
        }
    }

    #[test]
    fn registered_extensions_are_named_when_read_back() {
        const X: AuditCode = AuditCode::new(199, "test.extension");
        assert_eq!(
            AuditAction::from_code(198).map(AuditAction::as_str),
            Some("unregistered")
        );
        let early = AuditAction::from_code(199).unwrap();
        AuditCode::register(&[X]);
        AuditCode::register(&[X]);
        assert_eq!(early.as_str(), "test.extension");
        let a = AuditAction::from_code(199).unwrap();
        assert_eq!(a, AuditAction::Extension(X));
        assert_eq!(a.as_str(), "test.extension");
    }
}
