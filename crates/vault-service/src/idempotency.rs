//! Idempotency keys: per-merchant, keyed request fingerprints, sealed stored responses, 24-hour
//! replay, conflicts for different or concurrent requests.

/// Keys currently being answered (a concurrent duplicate is a conflict).
#[derive(Default)]
pub(crate) struct InFlight {}
