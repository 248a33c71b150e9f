//! Wire requests to vault calls: every field parsed on its own, every refusal collected, so one
//! 400 names all of them (a bad PAN and a bad expiry are both reported).

use std::collections::BTreeMap;

use time::OffsetDateTime;
use vault_service::{
    CardError, CardholderName, CustomerId, Expiry, Metadata, NewCard, Pan, TokenizeOptions,
    UpdateOptions,
};
use vault_wire::{CardInput, FieldErrorBody, TokenizeRequest, UpdateRequest};

use crate::decode::json::is_refused;

/// A card and the options shared by tokenize and update, checked.
struct Checked {
    card: Option<NewCard>,
    metadata: Option<Metadata>,
    keep_until: Option<OffsetDateTime>,
}

/// A tokenize request (with the fields already refused for their JSON type) as vault inputs.
pub(crate) fn tokenize(
    mut req: TokenizeRequest,
    mut errors: Vec<FieldErrorBody>,
    now: OffsetDateTime,
) -> Result<(NewCard, TokenizeOptions), Vec<FieldErrorBody>> {
    let checked = card(
        &req.card,
        req.metadata.take(),
        req.keep_until,
        &mut errors,
        now,
    );
    let customer = match req.customer_id.as_deref() {
        Some(c) if !is_refused(&errors, "customer_id") => {
            customer(c).map_err(|e| errors.push(e)).ok()
        }
        _ => None,
    };
    match checked.card {
        Some(card) if errors.is_empty() => Ok((
            card,
            TokenizeOptions {
                customer,
                keep_until: checked.keep_until,
                metadata: checked.metadata.unwrap_or_default(),
                dedupe: req.dedupe.unwrap_or(false),
            },
        )),
        _ => Err(errors),
    }
}

/// An update request as vault inputs.
pub(crate) fn update(
    mut req: UpdateRequest,
    mut errors: Vec<FieldErrorBody>,
    now: OffsetDateTime,
) -> Result<(NewCard, UpdateOptions), Vec<FieldErrorBody>> {
    let checked = card(
        &req.card,
        req.metadata.take(),
        req.keep_until,
        &mut errors,
        now,
    );
    match checked.card {
        Some(card) if errors.is_empty() => Ok((
            card,
            UpdateOptions {
                metadata: checked.metadata,
                keep_until: checked.keep_until,
            },
        )),
        _ => Err(errors),
    }
}

/// A customer id.
pub(crate) fn customer(s: &str) -> Result<CustomerId, FieldErrorBody> {
    CustomerId::parse(s).map_err(field_error)
}

fn card(
    input: &CardInput,
    metadata: Option<BTreeMap<String, String>>,
    keep_until: Option<OffsetDateTime>,
    errors: &mut Vec<FieldErrorBody>,
    now: OffsetDateTime,
) -> Checked {
    let pan = if is_refused(errors, "card.pan") {
        None
    } else {
        Pan::parse(&input.pan)
            .map_err(|e| errors.push(field_error(e)))
            .ok()
    };
    let expiry = if is_refused(errors, "card.expiration_date") {
        None
    } else {
        match Expiry::parse_yymm(&input.expiration_date) {
            Ok(e) if e.is_expired(now) => {
                errors.push(field_error(CardError::Expired));
                None
            }
            Ok(e) => Some(e),
            Err(e) => {
                errors.push(field_error(e));
                None
            }
        }
    };
    let name = match input.cardholder_name.as_deref() {
        Some(n) if !is_refused(errors, "card.cardholder_name") => CardholderName::parse(n)
            .map_err(|e| {
                errors.push(FieldErrorBody::new(
                    "card.cardholder_name",
                    e.code(),
                    e.to_string(),
                ))
            })
            .ok(),
        _ => None,
    };
    let metadata = match metadata {
        Some(m) if !is_refused(errors, "metadata") => Metadata::new(m)
            .map_err(|e| errors.push(field_error(e)))
            .ok(),
        _ => None,
    };
    if let (Some(t), Some(e)) = (keep_until, expiry) {
        // The same rules as the vault's, checked here so they are reported with the others.
        if t > e.keep_until() {
            errors.push(FieldErrorBody::new(
                "keep_until",
                "after_card_expiry",
                "keep_until must not be later than the card's expiry",
            ));
        } else if t <= now {
            errors.push(FieldErrorBody::new(
                "keep_until",
                "in_the_past",
                "keep_until must be in the future",
            ));
        }
    }
    let card = match (pan, expiry) {
        (Some(pan), Some(expiry)) => Some(NewCard { pan, expiry, name }),
        _ => None,
    };
    Checked {
        card,
        metadata,
        keep_until,
    }
}

fn field_error(e: CardError) -> FieldErrorBody {
    FieldErrorBody::new(e.field(), e.code(), e.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::decode::json;

    const NOW: OffsetDateTime = datetime!(2026-01-15 12:00 UTC);

    fn errors_of(body: &str) -> Vec<(String, String)> {
        let (req, errors) = json::tokenize(body.as_bytes());
        match tokenize(req, errors, NOW) {
            Ok(_) => Vec::new(),
            Err(e) => e.into_iter().map(|e| (e.field, e.code)).collect(),
        }
    }

    #[test]
    fn bad_pan_and_bad_expiry_are_both_named() {
        let got = errors_of(
            r#"{"type":"card","card":{"pan":"4242424242424241","expiration_date":"2813"}}"#,
        );
        assert_eq!(
            got,
            [
                ("card.pan".into(), "luhn_check_failed".into()),
                ("card.expiration_date".into(), "invalid_month".into())
            ]
        );
    }

    #[test]
    fn expired_card_and_type_error_together() {
        let got = errors_of(r#"{"type":"card","card":{"pan":[],"expiration_date":"2401"}}"#);
        assert_eq!(
            got,
            [
                ("card.pan".into(), "invalid_type".into()),
                ("card.expiration_date".into(), "expired".into())
            ]
        );
    }

    #[test]
    fn options_are_checked() {
        let got = errors_of(
            r#"{"type":"card","card":{"pan":"4242424242424242","expiration_date":"2802","cardholder_name":""},"customer_id":"no spaces","keep_until":"2030-01-01T00:00:00Z"}"#,
        );
        assert_eq!(
            got,
            [
                ("card.cardholder_name".into(), "invalid".into()),
                ("keep_until".into(), "after_card_expiry".into()),
                ("customer_id".into(), "invalid".into()),
            ]
        );
        assert!(errors_of(
            r#"{"type":"card","card":{"pan":"4242424242424242","expiration_date":"3012"},"customer_id":"c-1","dedupe":true}"#
        )
        .is_empty());
    }
}
