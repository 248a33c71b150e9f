//! Entries that correct a guarded reveal's entry (see `reveal_group.rs`): on a shared vault a
//! reveal's entry is written as granted in the statement that reads its record, and the card is
//! opened once that is durable. A card that then does not open (the record was altered in the
//! database) is refused, and an entry naming that refusal, for the same token and actor, is
//! queued here: the key follower thread writes it, normally within a second (`key_follow.rs`;
//! retried there until written), and so does closing the vault, so a reader of the log sees the
//! granted entry followed by the refusal. Nothing was handed out; a process killed before then
//! leaves only the granted entry (an over-report, never an under-report).

use crate::{
    VaultError,
    audit::Draft,
    vault::{Core, Inner},
};

/// The detail of a correcting entry.
const CORRECTS: &str = "corrects the granted entry before it: the card was not handed out";

impl Core {
    /// Queues the entry of a guarded reveal refused after its entry was written as granted.
    pub(crate) fn correct(&self, mut draft: Draft) {
        draft.detail = Some(CORRECTS.to_owned());
        self.audit_corrections.lock().push(draft);
    }
}

impl Inner {
    /// Writes the queued corrections, durably (one commit); put back when that fails, for the
    /// next call.
    pub(crate) fn write_corrections(&self) -> Result<(), VaultError> {
        let drafts = std::mem::take(&mut *self.core.audit_corrections.lock());
        if drafts.is_empty() {
            return Ok(());
        }
        let (core, written) = (self.core.clone(), drafts.clone());
        let result = self.store.write(move |tx| core.append_audits(tx, &written));
        if result.is_err() {
            let mut queued = self.core.audit_corrections.lock();
            let later = std::mem::replace(&mut *queued, drafts);
            queued.extend(later);
        }
        result
    }
}

impl Drop for Inner {
    /// Queues the corrections still waiting, without waiting for them: the store, dropped right
    /// after, lets its committer finish every queued group before it stops.
    fn drop(&mut self) {
        let drafts = std::mem::take(&mut *self.core.audit_corrections.lock());
        if drafts.is_empty() {
            return;
        }
        let core = self.core.clone();
        self.store.submit_exempt(
            move |tx| core.append_audits(tx, &drafts),
            |_: Result<(), VaultError>| {},
        );
    }
}
