//! The key-space registry: every one-byte key prefix the project uses, in one enum.
//!
//! All kinds share one ordered key space (one sled tree today); the first byte of a key says which
//! kind it belongs to, which keeps each kind in its own contiguous range. Every layer (the store's
//! own records and counters, the vault's audit chain and idempotency records, the gateway's
//! sessions, payments and credentials) takes its prefix from [`KeySpace`], and because the
//! discriminants are the prefix bytes themselves, two kinds claiming the same byte is a compile
//! error (`E0081`: discriminant value assigned more than once).
//!
//! The bytes are part of the on-disk format: never change one, only add.

/// One kind of key, its discriminant being its prefix byte.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeySpace {
    // --- owned by the store (reserved: the layers above cannot write them) ---
    /// `V`: store format version, u16 BE.
    Version = b'V',
    /// `C`: live record count, u64 BE.
    Count = b'C',
    /// `G`: group commits made, u64 BE.
    Generation = b'G',
    /// `R` + lookup id (16): a token's [`StoredRecord`](crate::StoredRecord).
    Record = b'R',
    /// `E`: reserved (an expiry index in early development; never written).
    Expiry = b'E',
    /// `D` + de-duplication key (16): token (24).
    Dedupe = b'D',
    // --- owned by the vault ---
    /// `A` + sequence u64 BE: one audit entry.
    AuditEntry = b'A',
    /// `a`: the audit chain's head; `a.anchor`: the anchor of the archived part of the chain.
    AuditHead = b'a',
    /// Audit entries of a named chain (`B` + chain id (8 bytes) + seq): one chain per process
    /// writing a shared vault, so no head row is shared by every daemon's commits.
    AuditChainEntry = b'B',
    /// The head of a named audit chain (`b` + chain id), and its archive anchor
    /// (`b` + chain id + `.anchor`).
    AuditChainHead = b'b',
    /// `I` + merchant + key: an idempotency record.
    IdempotencyRecord = b'I',
    /// `i` + created at + merchant + key: the idempotency sweep's time index.
    IdempotencyIndex = b'i',
    /// `M` + merchant id: a merchant.
    Merchant = b'M',
    /// `K` + key id: an API key.
    ApiKey = b'K',
    /// `O` + token: a per-token mark (one-click), cleared by the vault when the token is deleted
    /// or its card changes.
    OneClick = b'O',
    /// `~` + name: a vault marker (`~record-macs`: records carry MACs).
    Marker = b'~',
    // --- owned by the gateway ---
    /// `P` + merchant: a merchant password.
    Password = b'P',
    /// `T` + terminal id: a terminal.
    Terminal = b'T',
    /// `S` + session: a payment session.
    Session = b'S',
    /// `s` + due time + session: the session sweep's time index.
    SessionDue = b's',
    /// `Y` + payment: a payment.
    Payment = b'Y',
    /// `y` + due time + payment: the payment sweep's time index.
    PaymentDue = b'y',
    /// `L` + merchant id: the merchant's recent failed logins (a vault shared by several
    /// daemons counts them here, so that every daemon sees them).
    LoginFailures = b'L',
    /// `H` + payment id: a payment's CVV waiting for its one use, sealed (a vault shared by
    /// several daemons only; a directory vault holds CVVs in memory).
    HeldCvv = b'H',
}

/// Which layer owns a key space: only it writes there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Owner {
    /// The store itself (records, de-duplication index, counters).
    Store,
    /// The token vault (audit, idempotency, merchants, API keys, per-token marks, markers).
    Vault,
    /// The payment gateway (credentials, login failures, terminals, sessions, payments, held
    /// CVVs).
    Gateway,
}

impl KeySpace {
    /// Every kind, in prefix-byte order.
    pub const ALL: [Self; 24] = [
        Self::AuditEntry,
        Self::AuditChainEntry,
        Self::Count,
        Self::Dedupe,
        Self::Expiry,
        Self::Generation,
        Self::HeldCvv,
        Self::IdempotencyRecord,
        Self::ApiKey,
        Self::LoginFailures,
        Self::Merchant,
        Self::OneClick,
        Self::Password,
        Self::Record,
        Self::Session,
        Self::Terminal,
        Self::Version,
        Self::Payment,
        Self::AuditHead,
        Self::AuditChainHead,
        Self::IdempotencyIndex,
        Self::SessionDue,
        Self::PaymentDue,
        Self::Marker,
    ];

    /// The prefix byte.
    pub const fn byte(self) -> u8 {
        self as u8
    }

    /// The kind whose prefix is `byte`, if any.
    pub fn from_byte(byte: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.byte() == byte)
    }

    /// The layer that owns the kind.
    pub const fn owner(self) -> Owner {
        match self {
            Self::Version
            | Self::Count
            | Self::Generation
            | Self::Record
            | Self::Expiry
            | Self::Dedupe => Owner::Store,
            Self::AuditEntry
            | Self::AuditHead
            | Self::AuditChainEntry
            | Self::AuditChainHead
            | Self::IdempotencyRecord
            | Self::IdempotencyIndex
            | Self::Merchant
            | Self::ApiKey
            | Self::OneClick
            | Self::Marker => Owner::Vault,
            Self::Password
            | Self::Terminal
            | Self::Session
            | Self::SessionDue
            | Self::Payment
            | Self::PaymentDue
            | Self::LoginFailures
            | Self::HeldCvv => Owner::Gateway,
        }
    }

    /// Whether the store owns the kind: the layers above can read it only through the store's
    /// typed calls and never write it directly.
    pub const fn is_reserved(self) -> bool {
        matches!(self.owner(), Owner::Store)
    }

    /// The label a kind's records are MAC'd under, for the kinds whose records carried no MAC
    /// before record MACs existed: the vault adds one to each such record once, when it opens a
    /// vault written before them. Part of the on-disk format (the label derives the MAC key), so
    /// it is registered here with the prefix, for every layer's kinds.
    pub const fn legacy_mac_label(self) -> Option<&'static str> {
        match self {
            Self::ApiKey => Some("record-mac:api-key"),
            Self::OneClick => Some("record-mac:one-click"),
            Self::Password => Some("record-mac:password"),
            Self::Terminal => Some("record-mac:terminal"),
            _ => None,
        }
    }

    /// The kind's name in messages (`stored {name} is corrupt`).
    pub const fn name(self) -> &'static str {
        match self {
            Self::Version => "store version",
            Self::Count => "record count",
            Self::Generation => "generation",
            Self::Record => "record",
            Self::Expiry => "expiry index",
            Self::Dedupe => "dedupe index",
            Self::AuditEntry => "audit entry",
            Self::AuditHead => "audit head",
            Self::AuditChainEntry => "audit entry (named chain)",
            Self::AuditChainHead => "audit head (named chain)",
            Self::IdempotencyRecord => "idempotency record",
            Self::IdempotencyIndex => "idempotency index",
            Self::Merchant => "merchant",
            Self::ApiKey => "api key",
            Self::Password => "merchant password",
            Self::Terminal => "terminal",
            Self::Session => "session",
            Self::SessionDue => "session index",
            Self::Payment => "payment",
            Self::PaymentDue => "payment index",
            Self::LoginFailures => "login failures",
            Self::HeldCvv => "held cvv",
            Self::OneClick => "one-click mark",
            Self::Marker => "vault marker",
        }
    }

    /// The first key of the kind's range.
    pub fn start(self) -> Vec<u8> {
        vec![self.byte()]
    }
}

#[cfg(test)]
mod tests {
    use super::KeySpace;

    #[test]
    fn all_lists_every_kind_once_in_byte_order() {
        let bytes: Vec<u8> = KeySpace::ALL.iter().map(|k| k.byte()).collect();
        assert!(bytes.windows(2).all(|w| w[0] < w[1]), "{bytes:?}");
        for k in KeySpace::ALL {
            assert_eq!(KeySpace::from_byte(k.byte()), Some(k));
        }
        assert_eq!(KeySpace::from_byte(b'Z'), None);
    }
}
