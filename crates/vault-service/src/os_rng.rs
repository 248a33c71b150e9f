//! The generator for key material: the operating system's (`getrandom`), never a user-space
//! generator whose state a cloned VM snapshot or a forked process would repeat. DEKs, the MAC
//! root, KDF salts, API key ids and secrets come from here (the layers above use their own);
//! vault-core stays sans-IO and takes the generator as a parameter.

use rand::{rand_core::UnwrapErr, rngs::SysRng};

/// The OS generator. A failing OS generator is unrecoverable (no key can be made safely): the
/// call panics rather than fall back to anything weaker.
pub(crate) fn os_rng() -> UnwrapErr<SysRng> {
    UnwrapErr(SysRng)
}

#[cfg(test)]
mod tests {
    use rand::Rng;

    #[test]
    fn draws_differ() {
        let mut a = [0u8; 32];
        let mut b = [0u8; 32];
        super::os_rng().fill_bytes(&mut a);
        super::os_rng().fill_bytes(&mut b);
        assert_ne!(a, b);
    }
}
