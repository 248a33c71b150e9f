//! `vault-gateway`: cardvault's payment gateway, a product above the [`Vault`].
//!
//! Sessions (the short-lived, single-use tokens a merchant's server obtains and a browser or
//! payment step spends), card capture through them, payments with a stored card, the one-click
//! saving of cards, and the store of the CVVs pending payments wait for.
//!
//! # Layout
//!
//! - [`Gateway`] (`lib.rs`): the vault and the gateway's own state (session lookup key, CVVs);
//! - `session.rs`: creating and spending sessions;
//! - `payment.rs`: card capture, payments, the acquirer hand-over, outcomes and one-click marks;
//! - `cvv.rs`, `cvv_store.rs`, `cvv_held.rs`: the [`Cvv`] type, its sealing keys, the CVVs held
//!   for pending payments (in memory on a directory vault, in the store on a shared one);
//! - `credentials/`: merchant passwords and logins (`slots.rs` hashing slots, `limits.rs`
//!   failure limits, `cache.rs` the verification cache);
//! - `session_token.rs`: [`SessionToken`];
//! - `terminal.rs`: processing terminals ([`Terminal`], [`TerminalId`]);
//! - `due_index.rs`: the time-ordered removal index of sessions and payments;
//! - `audit.rs`: the gateway's audit actions (codes the vault reserves for it);
//! - `error.rs`: [`GatewayError`].
//!
//! The gateway writes only through the vault's public seam ([`Vault::prepare_tokenize`],
//! [`Vault::transact`]): a card captured through a session, the session's spend, the payment
//! record and the audit entries of all of it commit in one group commit. Its records keep their
//! store prefixes (`S`/`s` sessions, `Y`/`y` payments, `P` merchant passwords, `T` terminals); one-click saving is the vault's per-token
//! mark, which the vault clears when the token is deleted or its card changes.
#![forbid(unsafe_code)]

use std::sync::Arc;

pub use vault_service::{
    Actor, AuditAction, AuditOutcome, CustomerId, FieldError, MerchantId, NewCard, Token,
    TokenInfo, Vault, VaultError,
};

pub mod audit;
mod credentials;
mod cvv;
mod cvv_held;
mod cvv_store;
mod due_index;
mod error;
mod payment;
mod session;
mod session_token;
mod terminal;

pub use credentials::{LoginPolicy, LoginStats, MerchantPassword};
pub use cvv::{Cvv, EphemeralKey, SealedCvv};
pub use error::GatewayError;
pub use payment::{
    CardCapture, PAYMENT_TTL, PaymentCard, PaymentId, PaymentInfo, PaymentRequest, PaymentStarted,
    PaymentStatus,
};
pub use session::{SESSION_TTL, Session, SessionKind, SessionOptions, SessionView};
pub use session_token::SessionToken;
pub use terminal::{Terminal, TerminalId};

/// The API-key scope to create sessions (hosted-fields and gateway sessions): a scope bit the
/// vault reserves for the layer above (its stored bit, 4, is the one keys were first written with).
pub const SESSIONS: vault_service::Scope =
    vault_service::Scope::Extension(vault_service::ScopeBit::new(4, "sessions"));

/// Registers the gateway's audit actions and its scope with the vault's registries, so that
/// entries read back show the actions' names and [`Scopes::parse`](vault_service::Scopes::parse)
/// knows `sessions`. Idempotent and cheap; [`Gateway::new`] calls it, and so should a program
/// that uses a bare [`Vault`] where the gateway's names matter (the CLI, at start).
pub fn register() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        audit::register_actions();
        if let vault_service::Scope::Extension(bit) = SESSIONS {
            vault_service::ScopeBit::register(&[bit]);
        }
    });
}

/// The generator for key material (the CVV key, password salts, the verification-cache key):
/// the operating system's. A failing OS generator is unrecoverable: the call panics.
fn os_rng() -> rand::rand_core::UnwrapErr<rand::rngs::SysRng> {
    rand::rand_core::UnwrapErr(rand::rngs::SysRng)
}

/// The payment gateway over one vault. Cheap to clone (a handle); `Send + Sync`. Like a
/// [`Vault`] handle, it acts for one [`Actor`] ([`as_actor`](Self::as_actor)), named in the audit
/// entries of what it does. Make one per vault and share it: on a directory vault it holds the
/// CVVs of pending payments, in memory only (a vault shared by several daemons holds them in the
/// store, sealed, so that any daemon can hand one over).
#[derive(Clone)]
pub struct Gateway {
    vault: Vault,
    state: Arc<State>,
}

/// What the gateway keeps beside the store.
#[derive(Default)]
struct State {
    sessions: session::SessionKeys,
    /// Merchant-password logins: hashing slots, failure counters, verification cache.
    login: credentials::LoginState,
    cvv: cvv_store::CvvStore,
}

impl Gateway {
    /// The gateway over `vault` (acting for `vault`'s actor).
    pub fn new(vault: Vault) -> Self {
        register();
        Self {
            vault,
            state: Arc::default(),
        }
    }

    /// The vault below.
    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    /// This gateway, acting for `actor` (see [`Vault::as_actor`]).
    pub fn as_actor(&self, actor: &Actor) -> Self {
        Self {
            vault: self.vault.as_actor(actor),
            state: self.state.clone(),
        }
    }

    /// Writes the counts of aggregated refusals whose minute is over: the vault's (bad API keys)
    /// and the gateway's (rate-limited and busy logins). The daemon calls this every minute.
    pub fn flush_audit_counts(&self) {
        self.vault.flush_audit_counts_of(&self.state.login.refusals);
    }

    /// Removes what [`Vault::sweep_expired`] removes, and with it (counted with the idempotency
    /// answers, in the one `sweep` entry) what [`sweep_sessions`](Self::sweep_sessions) removes.
    pub fn sweep_expired(&self, now: time::OffsetDateTime) -> Result<u64, VaultError> {
        self.vault
            .sweep_expired_with(now, |now| self.sweep_sessions_at(now))
    }
}

/// A gateway is its vault plus the gateway: every vault operation is at hand on it.
impl std::ops::Deref for Gateway {
    type Target = Vault;
    fn deref(&self) -> &Vault {
        &self.vault
    }
}

impl From<Vault> for Gateway {
    fn from(vault: Vault) -> Self {
        Self::new(vault)
    }
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("vault", &self.vault)
            .finish_non_exhaustive()
    }
}
