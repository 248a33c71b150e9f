//! The vault's in-memory idempotency state: the keys this process is answering right now (a
//! concurrent duplicate is a conflict; on a vault shared by several daemons the keys are also
//! claimed in the store, see `idempotency.rs`) and the two derived keys, computed once. A leaf module: `vault` holds
//! it in its core, `idempotency` implements the operations on it.

use std::{collections::HashSet, sync::OnceLock};

use parking_lot::Mutex;
use vault_core::{MerchantId, SecretKey};

use crate::HmacSha256;

/// Keys currently being answered, by merchant and idempotency key bytes, and the derived keys.
#[derive(Default)]
pub(crate) struct InFlight {
    pub(crate) slots: Mutex<HashSet<(MerchantId, [u8; 16])>>,
    pub(crate) keys: OnceLock<IdempotencyKeys>,
}

pub(crate) struct IdempotencyKeys {
    /// HMAC state keyed with `mac_key("idempotency")`.
    pub(crate) fingerprint: HmacSha256,
    /// `mac_key("idempotency-seal")`.
    pub(crate) seal: SecretKey,
}
