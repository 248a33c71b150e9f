//! What a running backup keeps of the keys the committer changes before the backup has exported
//! them (`backup.rs` exports; `commit.rs` calls [`Capture::before_change`]). A leaf module, so the
//! store, the committer and the backup all depend on it and not on each other.

use std::collections::BTreeMap;

use crate::{Engine, StoreError};

/// The state of a running backup, shared with the committer.
///
/// Invariant (between two groups): for every key above `cursor`, its value at the backup's point
/// in time T0 is `before[key]` when present, else the tree's current value. The committer keeps
/// it by calling [`before_change`](Self::before_change) for every key of a group before applying
/// the group's batch.
#[derive(Debug)]
pub(crate) struct Capture {
    pub(crate) id: u64,
    /// Keys at or below this were exported already (`None`: nothing yet).
    pub(crate) cursor: Option<Vec<u8>>,
    /// T0 values (`None`: absent at T0) of not-yet-exported keys changed since T0.
    pub(crate) before: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl Capture {
    /// Called by the committer before a batch changes `key`.
    pub(crate) fn before_change(
        &mut self,
        engine: &dyn Engine,
        key: &[u8],
    ) -> Result<(), StoreError> {
        if self.cursor.as_deref().is_some_and(|c| key <= c) || self.before.contains_key(key) {
            return Ok(());
        }
        let old = engine.point_get(key)?;
        self.before.insert(key.to_vec(), old);
        Ok(())
    }
}
