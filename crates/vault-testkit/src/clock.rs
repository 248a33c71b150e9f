//! The tests' fixed "now", and a manual clock on it.

use std::sync::Arc;

use time::{OffsetDateTime, macros::datetime};
use vault_service::ManualClock;

/// The instant every test vault starts at.
pub const T0: OffsetDateTime = datetime!(2026-11-21 12:00:00 UTC);

/// A manual clock at [`T0`].
pub fn manual_clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(T0))
}
