//! Merchant gateway passwords (seed 000's `merchantId` + `password`): Argon2id PHC strings,
//! bounded hashing, dummy hashes for unknown merchants, failure rate limits and a verification
//! cache.

/// The vault's login state: hashing slots, failure counters, the verification cache.
#[derive(Default)]
pub(crate) struct LoginState {}

// TEMPORARY interface stub so the gateway routes compile before the credentials branch lands; the
// merge replaces this file with the real implementation.
/// A merchant's gateway password.
pub struct MerchantPassword(zeroize::Zeroizing<String>);

impl MerchantPassword {
    /// Longest password.
    pub const MAX_LEN: usize = 64;
    /// Validates.
    pub fn new(s: String) -> Result<Self, crate::VaultError> {
        if s.is_empty() || s.chars().count() > Self::MAX_LEN {
            return Err(crate::VaultError::field(
                "password",
                "invalid",
                "bad length",
            ));
        }
        Ok(Self(zeroize::Zeroizing::new(s)))
    }
}

impl crate::Vault {
    /// Stub.
    pub fn login(
        &self,
        _actor: &crate::Actor,
        _merchant: vault_core::MerchantId,
        _password: &MerchantPassword,
    ) -> Result<(), crate::VaultError> {
        Err(crate::VaultError::Unauthorized)
    }
}
