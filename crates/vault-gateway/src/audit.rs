//! The gateway's audit actions: codes from those the vault reserves for the layer above (see
//! [`AuditCode`]), recorded as [`AuditAction::Extension`]. Their codes and names are the ones
//! the entries were first written with (the on-disk format).

use std::sync::Once;

use vault_service::{AuditAction, AuditCode};

macro_rules! gateway_actions {
    ($($(#[$doc:meta])* $name:ident = $code:literal, $text:literal;)*) => {
        $($(#[$doc])* pub const $name: AuditAction = AuditAction::Extension(AuditCode::new($code, $text));)*

        /// Every gateway action's code.
        const CODES: &[AuditCode] = &[$(AuditCode::new($code, $text),)*];
    };
}

gateway_actions! {
    /// A card was used for a payment.
    PAYMENT_USE = 2, "payment.use";
    /// A hosted-fields or gateway session was created.
    SESSION_CREATE = 3, "session.create";
    /// A card was captured (stored or updated) through a session.
    CARD_CAPTURE = 4, "card.capture";
    /// A payment's card (and CVV, once) was handed to the acquirer leg.
    PAYMENT_CARD = 5, "payment.card";
    /// The outcome of a payment was reported.
    PAYMENT_RESULT = 6, "payment.result";
    /// A terminal was added.
    ADMIN_TERMINAL_ADD = 13, "admin.terminal.add";
    /// A merchant's gateway password was set or changed.
    ADMIN_MERCHANT_PASSWORD = 14, "admin.merchant.password";
    /// A merchant's login failures were cleared by an operator (a lockout lifted).
    ADMIN_MERCHANT_UNLOCK = 15, "admin.merchant.unlock";
    /// A merchant password login failed (wrong password, unknown merchant or rate limited).
    LOGIN_FAILED = 41, "login.failed";
}

/// Registers the gateway's actions with the vault's audit-code registry, so that entries read
/// back (`audit tail`, the daemon's `/admin/audit`) show their names. Idempotent and cheap;
/// [`Gateway::new`](crate::Gateway::new) calls it, and so should a program that reads the log
/// of a vault through a bare [`Vault`](vault_service::Vault).
pub fn register_actions() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| AuditCode::register(CODES));
}
