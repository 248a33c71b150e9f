//! The key-encrypting key (KEK) and where it comes from: an operator passphrase stretched with
//! Argon2id, or a 32-byte key file.
//!
//! The KEK lives only in memory (inside a [`Keyring`](crate::Keyring)); the header stores the
//! Argon2id salt and parameters needed to derive it again, never the KEK itself.

use std::fmt;

use argon2::{Algorithm, Argon2, Version};
use zeroize::Zeroizing;

use crate::{KeyError, Passphrase, SecretKey};

/// Argon2id cost parameters, as stored in the key header.
///
/// Construct with [`new`](Self::new), which enforces both Argon2's minimums and the caps in
/// [`MAX`](Self::MAX). The fields are public for reading; values built by hand are re-validated
/// wherever they are used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory, in KiB (Argon2 `m`).
    pub m_cost_kib: u32,
    /// Passes over memory (Argon2 `t`).
    pub t_cost: u32,
    /// Lanes (Argon2 `p`).
    pub p_cost: u32,
}

impl KdfParams {
    /// The production default: 64 MiB, 3 passes, 1 lane (RFC 9106 section 4, second recommended
    /// option, with one more pass).
    pub const DEFAULT: Self = Self {
        m_cost_kib: 65_536,
        t_cost: 3,
        p_cost: 1,
    };

    /// The largest parameters accepted, in particular when read back from a header: a tampered
    /// header must not be able to make an unlock allocate more than 1 GiB or run for minutes.
    pub const MAX: Self = Self {
        m_cost_kib: 1_048_576,
        t_cost: 16,
        p_cost: 8,
    };

    /// Validates Argon2id parameters: `1 <= p <= 8`, `1 <= t <= 16`, `8 * p <= m <= 1 GiB`.
    pub fn new(m_cost_kib: u32, t_cost: u32, p_cost: u32) -> Result<Self, KeyError> {
        if p_cost < 1 {
            return Err(KeyError::KdfParams("parallelism must be at least 1"));
        }
        if p_cost > Self::MAX.p_cost {
            return Err(KeyError::KdfParams("parallelism must be at most 8"));
        }
        if t_cost < 1 {
            return Err(KeyError::KdfParams("time cost must be at least 1"));
        }
        if t_cost > Self::MAX.t_cost {
            return Err(KeyError::KdfParams("time cost must be at most 16"));
        }
        // Argon2 needs at least 8 KiB per lane (two blocks per sync point).
        if m_cost_kib < 8 * p_cost {
            return Err(KeyError::KdfParams(
                "memory must be at least 8 KiB per lane",
            ));
        }
        if m_cost_kib > Self::MAX.m_cost_kib {
            return Err(KeyError::KdfParams("memory must be at most 1 GiB"));
        }
        Ok(Self {
            m_cost_kib,
            t_cost,
            p_cost,
        })
    }

    /// 64 KiB, 1 pass, 1 lane: fast enough for unit tests.
    ///
    /// **Never use this in production**: it offers almost no resistance to passphrase guessing.
    pub const fn insecure_for_tests() -> Self {
        Self {
            m_cost_kib: 64,
            t_cost: 1,
            p_cost: 1,
        }
    }

    /// Re-validates (the fields are public, so a value may have been built by hand).
    pub(crate) fn checked(self) -> Result<Self, KeyError> {
        Self::new(self.m_cost_kib, self.t_cost, self.p_cost)
    }

    fn argon2(self) -> Result<argon2::Params, KeyError> {
        let p = self.checked()?;
        argon2::Params::new(p.m_cost_kib, p.t_cost, p.p_cost, Some(Kek::LEN))
            .map_err(|_| KeyError::KdfParams("rejected by argon2"))
    }
}

/// What unlocks a vault: an operator passphrase or a key file.
#[derive(Debug)]
pub enum KeySource {
    /// A passphrase, stretched with Argon2id.
    Passphrase(Passphrase),
    /// The 32 bytes of a key file, used directly as the KEK.
    KeyFile(SecretKey),
}

impl KeySource {
    /// Reads key-file contents: exactly 32 raw bytes, or 64 hex characters (either case) optionally
    /// followed by `\n` or `\r\n`.
    pub fn from_key_file_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        if let Ok(raw) = <[u8; 32]>::try_from(bytes) {
            return Ok(Self::KeyFile(SecretKey::from_bytes(raw)));
        }
        let hex = bytes
            .strip_suffix(b"\r\n")
            .or_else(|| bytes.strip_suffix(b"\n"))
            .unwrap_or(bytes);
        if hex.len() != 64 {
            return Err(KeyError::KeyFileInvalid);
        }
        let mut key = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(hex, key.as_mut_slice()).map_err(|_| KeyError::KeyFileInvalid)?;
        Ok(Self::KeyFile(SecretKey::from_bytes(*key)))
    }
}

/// The 256-bit key-encrypting key. Secret: zeroized on drop, redacted `Debug`, no `Clone`.
pub struct Kek(SecretKey);

impl Kek {
    /// Length in bytes.
    pub const LEN: usize = 32;
    /// Length of the Argon2id salt stored in the header, in bytes.
    pub const SALT_LEN: usize = 16;

    /// Derives the KEK from a passphrase: Argon2id, version 0x13, 32-byte output, no secret
    /// (pepper) and no associated data.
    pub fn derive(
        passphrase: &Passphrase,
        salt: &[u8; Self::SALT_LEN],
        params: KdfParams,
    ) -> Result<Self, KeyError> {
        let mut out = Zeroizing::new([0u8; Self::LEN]);
        argon2id(
            passphrase.expose().as_bytes(),
            salt,
            params.argon2()?,
            None,
            out.as_mut_slice(),
        )
        .map_err(|_| KeyError::Kdf)?;
        Ok(Self(SecretKey::from_bytes(*out)))
    }

    /// Uses a key file's 32 bytes as the KEK.
    pub fn from_key_file(key: &SecretKey) -> Self {
        Self(key.duplicate())
    }

    pub(crate) fn expose(&self) -> &[u8; Self::LEN] {
        self.0.expose()
    }

    /// An explicit copy (a keyring that follows a newer header keeps the same KEK).
    pub(crate) fn duplicate(&self) -> Self {
        Self(self.0.duplicate())
    }
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Kek(..)")
    }
}

/// The one place Argon2 is invoked, so the RFC 9106 test vector (which uses a secret and
/// associated data) runs through the same algorithm and version choices as [`Kek::derive`].
fn argon2id(
    password: &[u8],
    salt: &[u8],
    params: argon2::Params,
    secret: Option<&[u8]>,
    out: &mut [u8],
) -> Result<(), argon2::Error> {
    let ctx = match secret {
        None => Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
        Some(secret) => {
            Argon2::new_with_secret(secret, Algorithm::Argon2id, Version::V0x13, params)?
        }
    };
    ctx.hash_password_into(password, salt, out)
}

#[cfg(test)]
mod tests {
    use argon2::{AssociatedData, ParamsBuilder};

    use super::*;

    /// RFC 9106 section 5.3 (Argon2id, version 0x13): m = 32 KiB, t = 3, p = 4, password 32 x 0x01,
    /// salt 16 x 0x02, secret 8 x 0x03, associated data 12 x 0x04, tag length 32.
    #[test]
    fn rfc9106_argon2id_vector() {
        let params = ParamsBuilder::new()
            .m_cost(32)
            .t_cost(3)
            .p_cost(4)
            .data(AssociatedData::new(&[0x04; 12]).expect("12 bytes of AD"))
            .output_len(32)
            .build()
            .expect("RFC parameters");
        let mut out = [0u8; 32];
        argon2id(&[0x01; 32], &[0x02; 16], params, Some(&[0x03; 8]), &mut out).expect("hashes");
        assert_eq!(
            hex::encode(out),
            "0d640df58d78766c08c037a34a8b53c9d01ef0452d75b65eb52520e96b01e659"
        );
    }

    /// Known answer for `Kek::derive` itself (no secret, no AD, 16-byte salt, two lanes). Computed
    /// once with this code (which the RFC 9106 vector above checks) and pinned: if it ever changes,
    /// every passphrase vault would stop opening.
    #[test]
    fn kek_derive_known_answer() {
        let pass = Passphrase::new("correct horse battery staple".to_owned()).expect("valid");
        let salt: [u8; 16] = hex_array("000102030405060708090a0b0c0d0e0f");
        let params = KdfParams::new(1024, 2, 2).expect("valid params");
        let kek = Kek::derive(&pass, &salt, params).expect("derives");
        assert_eq!(hex::encode(kek.expose()), KEK_KAT);
    }
    const KEK_KAT: &str = "8a771af79764de58b1a47299b9e39f04473da40db38fbf891e88c55cb6100805";

    fn hex_array<const N: usize>(s: &str) -> [u8; N] {
        let mut out = [0u8; N];
        hex::decode_to_slice(s, &mut out).expect("valid hex of the right length");
        out
    }

    #[test]
    fn params_limits() {
        assert_eq!(
            KdfParams::new(65_536, 3, 1).expect("default is valid"),
            KdfParams::DEFAULT
        );
        assert!(KdfParams::DEFAULT.checked().is_ok());
        assert!(KdfParams::MAX.checked().is_ok());
        assert!(KdfParams::insecure_for_tests().checked().is_ok());
        for (m, t, p) in [
            (7, 1, 1),
            (15, 1, 2),
            (1_048_577, 1, 1),
            (u32::MAX, 1, 1),
            (64, 0, 1),
            (64, 17, 1),
            (64, 1, 0),
            (128, 1, 9),
        ] {
            assert!(
                matches!(KdfParams::new(m, t, p), Err(KeyError::KdfParams(_))),
                "{m} {t} {p}"
            );
        }
    }

    #[test]
    fn key_file_formats() {
        let raw: [u8; 32] =
            hex_array("00070e151c232a31383f464d545b626970777e858c939aa1a8afb6bdc4cbd2d9");
        let hex_lower = hex::encode(raw);
        let expect_key = |src: Result<KeySource, KeyError>| match src {
            Ok(KeySource::KeyFile(k)) => assert_eq!(k.expose(), &raw),
            other => unreachable!("expected a key file, got {other:?}"),
        };
        expect_key(KeySource::from_key_file_bytes(&raw));
        expect_key(KeySource::from_key_file_bytes(hex_lower.as_bytes()));
        expect_key(KeySource::from_key_file_bytes(
            format!("{hex_lower}\n").as_bytes(),
        ));
        expect_key(KeySource::from_key_file_bytes(
            format!("{hex_lower}\r\n").as_bytes(),
        ));
        expect_key(KeySource::from_key_file_bytes(
            hex_lower.to_uppercase().as_bytes(),
        ));
        for bad in [
            Vec::new(),
            vec![0u8; 31],
            vec![0u8; 33],
            format!("{hex_lower}\n\n").into_bytes(),
            format!("{hex_lower} ").into_bytes(),
            format!(" {hex_lower}").into_bytes(),
            hex_lower.as_bytes()[..62].to_vec(),
            format!("{}zz", &hex_lower[..62]).into_bytes(),
            format!("{hex_lower}\r").into_bytes(),
        ] {
            assert!(matches!(
                KeySource::from_key_file_bytes(&bad),
                Err(KeyError::KeyFileInvalid)
            ));
        }
    }

    #[test]
    fn debug_is_redacted() {
        let kek = Kek::from_key_file(&SecretKey::from_bytes([9; 32]));
        assert_eq!(format!("{kek:?}"), "Kek(..)");
        let src = KeySource::from_key_file_bytes(&[9; 32]).expect("32 bytes");
        assert_eq!(format!("{src:?}"), "KeyFile(SecretKey(..))");
    }
}
