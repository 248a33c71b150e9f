//! The masked-form limit's operation on the vault: counts a card against its API key's masked
//! form and audits refusals. The limiter's state and rules are `masked_forms.rs` (a leaf the
//! vault holds).

use std::time::Duration;

use vault_core::Pan;

use crate::{
    Actor, AuditAction, AuditOutcome, Principal, Vault, VaultError,
    masked_forms::{Decision, masked_form},
};

impl Vault {
    /// Counts `pan` against `principal`'s masked-form limit (refusals are audited as this
    /// handle's actor, under `principal`'s key id). A card already seen under the key
    /// in the window is always admitted. Past [`MASKED_FORM_LIMIT`](crate::MASKED_FORM_LIMIT) distinct cards with the same
    /// masked form in [`MASKED_FORM_WINDOW`](crate::MASKED_FORM_WINDOW), refused [`VaultError::TooManyCards`] and audited
    /// (`tokenize.masked_form_limited`, detail `key=..,form=<masked pan>`; at most once a minute
    /// per key and form; the audit entry is not waited for).
    pub fn admit_card(&self, principal: &Principal, pan: &Pan) -> Result<(), VaultError> {
        let fp = self
            .inner
            .fingerprint(&self.inner.keyring.read(), principal.merchant, pan);
        let mut short = [0u8; 16];
        short.copy_from_slice(&fp.as_bytes()[..16]);
        let now = self.now().unix_timestamp();
        let form = masked_form(&principal.key_id, pan);
        let decision = self
            .inner
            .masked_forms
            .inner
            .lock()
            .admit(&form, short, now);
        match decision {
            Decision::Admit => Ok(()),
            Decision::Refuse { retry_after, audit } => {
                let err = VaultError::TooManyCards {
                    retry_after: Duration::from_secs(retry_after),
                };
                if audit {
                    let actor = Actor {
                        key_id: Some(principal.key_id.clone()),
                        ..self.actor().clone()
                    };
                    let detail = format!(
                        "merchant={},key={},form={}",
                        principal.merchant,
                        principal.key_id,
                        pan.masked().as_str()
                    );
                    self.record_then(
                        &actor,
                        AuditAction::TokenizeMaskedFormLimited,
                        None,
                        Some(detail),
                        AuditOutcome::Denied("masked_form_limit".to_owned()),
                        |_| {},
                    );
                }
                Err(err)
            }
        }
    }
}
