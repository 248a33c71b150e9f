//! Merchant gateway passwords (seed 000's `merchantId` + `password`): Argon2id PHC strings,
//! bounded hashing, dummy hashes for unknown merchants, failure rate limits and a verification
//! cache.

/// The vault's login state: hashing slots, failure counters, the verification cache.
#[derive(Default)]
pub(crate) struct LoginState {}
