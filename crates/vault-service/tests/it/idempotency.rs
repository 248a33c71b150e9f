//! Idempotency keys: parsing, replay for 24 hours, mismatches, in-flight conflicts, server errors
//! not stored, the sweep, nothing in clear on disk, and survival across a reopen.

use crate::common;

use common::{files_contain, merchant, new_vault, reopen};
use vault_service::{
    IDEMPOTENCY_TTL, IdempotencyKey, IdempotencyStart, IdempotentResponse, Vault, VaultError,
};

const KEY: &str = "6f1c2b3a-1d2e-4f00-8a9b-0c1d2e3f4a5b";
const ROUTE: &str = "POST /v2/tokens";

fn key(s: &str) -> IdempotencyKey {
    IdempotencyKey::parse(s).unwrap()
}

fn response(status: u16, body: &str) -> IdempotentResponse {
    IdempotentResponse {
        status,
        content_type: "application/json".into(),
        location: Some("/v2/tokens/abc".into()),
        body: body.as_bytes().to_vec(),
    }
}

/// Begins, expects `Proceed`, and finishes with `resp`.
fn answer(
    v: &Vault,
    m: u64,
    route: &str,
    k: &IdempotencyKey,
    body: &[u8],
    resp: &IdempotentResponse,
) {
    match v.idempotency_begin(merchant(m), route, k, &[body]).unwrap() {
        IdempotencyStart::Proceed(g) => g.finish(resp).unwrap(),
        IdempotencyStart::Replay(r) => panic!("expected to proceed, got a replay {r:?}"),
    }
}

fn begin(
    v: &Vault,
    m: u64,
    route: &str,
    k: &IdempotencyKey,
    body: &[u8],
) -> Result<IdempotencyStart, VaultError> {
    v.idempotency_begin(merchant(m), route, k, &[body])
}

fn replayed(r: Result<IdempotencyStart, VaultError>) -> IdempotentResponse {
    match r.unwrap() {
        IdempotencyStart::Replay(r) => r,
        IdempotencyStart::Proceed(_) => panic!("expected a replay"),
    }
}

fn proceeds(r: Result<IdempotencyStart, VaultError>) -> bool {
    matches!(r, Ok(IdempotencyStart::Proceed(_)))
}

fn conflict(r: Result<IdempotencyStart, VaultError>) -> &'static str {
    match r {
        Err(VaultError::Conflict(conflict)) => conflict.code(),
        other => panic!("expected a conflict, got {other:?}"),
    }
}

#[test]
fn parse_accepts_v4_only() {
    let k = key(KEY);
    assert_eq!(k.to_string(), KEY);
    let upper = key(&KEY.to_uppercase());
    assert_eq!(upper, k, "upper-case hex is the same key");
    assert_eq!(upper.to_string(), KEY, "displayed lower-case");
    for bad in [
        "",
        "not-a-uuid",
        // Version 1.
        "6f1c2b3a-1d2e-1f00-8a9b-0c1d2e3f4a5b",
        // Version 4 but not the RFC 4122 variant.
        "6f1c2b3a-1d2e-4f00-ca9b-0c1d2e3f4a5b",
        // No hyphens, braces, trailing space, a non-hex digit, a hyphen out of place.
        "6f1c2b3a1d2e4f008a9b0c1d2e3f4a5b",
        "{6f1c2b3a-1d2e-4f00-8a9b-0c1d2e3f4a5b}",
        "6f1c2b3a-1d2e-4f00-8a9b-0c1d2e3f4a5b ",
        "6f1c2b3a-1d2e-4f00-8a9b-0c1d2e3f4a5g",
        "6f1c2b3a1-d2e-4f00-8a9b-0c1d2e3f4a5b",
        "6f1c2b3a-1d2e-4f00-8a9b-0c1d2e3f4a5b0",
    ] {
        match IdempotencyKey::parse(bad) {
            Err(VaultError::Invalid(f)) => {
                assert_eq!((f.field, f.code), ("Idempotency-Key", "invalid"), "{bad:?}");
                assert!(f.message.contains("UUID v4"), "{}", f.message);
            }
            other => panic!("{bad:?} should be refused, got {other:?}"),
        }
    }
}

#[test]
fn replays_within_24_hours_then_proceeds() {
    let dir = tempfile::tempdir().unwrap();
    let (v, clock) = new_vault(dir.path());
    let k = key(KEY);
    answer(
        &v,
        1,
        ROUTE,
        &k,
        b"body",
        &response(201, r#"{"token":"t1"}"#),
    );

    clock.advance(IDEMPOTENCY_TTL - time::Duration::seconds(1));
    let r = replayed(begin(&v, 1, ROUTE, &k, b"body"));
    assert_eq!(r.status, 201);
    assert_eq!(r.content_type, "application/json");
    assert_eq!(r.location.as_deref(), Some("/v2/tokens/abc"));
    assert_eq!(r.body, br#"{"token":"t1"}"#);

    clock.advance(time::Duration::seconds(1));
    // 24 hours on, the key is new again, whatever the request.
    assert!(proceeds(begin(&v, 1, ROUTE, &k, b"another body")));
    answer(&v, 1, ROUTE, &k, b"another body", &response(201, "second"));
    assert_eq!(
        replayed(begin(&v, 1, ROUTE, &k, b"another body")).body,
        b"second"
    );
    assert_eq!(
        conflict(begin(&v, 1, ROUTE, &k, b"body")),
        "idempotency_mismatch"
    );
}

#[test]
fn mismatches_and_merchant_scope() {
    let dir = tempfile::tempdir().unwrap();
    let (v, _clock) = new_vault(dir.path());
    let k = key(KEY);
    answer(&v, 1, ROUTE, &k, b"body", &response(201, "one"));
    assert_eq!(
        conflict(begin(&v, 1, ROUTE, &k, b"body2")),
        "idempotency_mismatch"
    );
    assert_eq!(
        conflict(begin(&v, 1, "POST /v2/tokens/batch", &k, b"body")),
        "idempotency_mismatch"
    );
    // Parts are length-delimited: the same bytes split differently are a different request.
    assert_eq!(
        conflict(v.idempotency_begin(merchant(1), ROUTE, &k, &[b"bo", b"dy"])),
        "idempotency_mismatch"
    );
    // Another merchant's identical key is independent.
    assert!(proceeds(begin(&v, 2, ROUTE, &k, b"body")));
    answer(
        &v,
        2,
        ROUTE,
        &k,
        b"other merchant body",
        &response(201, "two"),
    );
    assert_eq!(replayed(begin(&v, 1, ROUTE, &k, b"body")).body, b"one");
    assert_eq!(
        replayed(begin(&v, 2, ROUTE, &k, b"other merchant body")).body,
        b"two"
    );
}

#[test]
fn in_flight_duplicate_conflicts_and_drop_releases() {
    let dir = tempfile::tempdir().unwrap();
    let (v, _clock) = new_vault(dir.path());
    let k = key(KEY);
    let first = begin(&v, 1, ROUTE, &k, b"body").unwrap();
    // A directory vault holds its keys in flight in memory: no claim in the store to renew.
    let IdempotencyStart::Proceed(guard) = &first else {
        panic!("expected to proceed");
    };
    assert!(guard.renewal().is_none());
    assert_eq!(
        conflict(begin(&v, 1, ROUTE, &k, b"body")),
        "idempotency_in_progress"
    );
    // Even a different request: the key itself is busy.
    assert_eq!(
        conflict(begin(&v, 1, ROUTE, &k, b"other")),
        "idempotency_in_progress"
    );
    // Other keys and other merchants are not blocked.
    assert!(proceeds(begin(&v, 2, ROUTE, &k, b"body")));
    assert!(proceeds(begin(
        &v,
        1,
        ROUTE,
        &key("00000000-0000-4000-8000-000000000000"),
        b"body"
    )));
    drop(first);
    // Dropped without finishing: nothing stored, the key is free.
    let again = begin(&v, 1, ROUTE, &k, b"different now").unwrap();
    let IdempotencyStart::Proceed(g) = again else {
        panic!("expected to proceed");
    };
    g.finish(&response(201, "done")).unwrap();
    // Finishing released the slot too.
    assert_eq!(
        replayed(begin(&v, 1, ROUTE, &k, b"different now")).body,
        b"done"
    );
}

#[test]
fn a_lookup_replays_or_refuses_and_takes_no_key() {
    let dir = tempfile::tempdir().unwrap();
    let (v, clock) = new_vault(dir.path());
    let k = key(KEY);
    let lookup = |body: &[u8]| v.idempotency_lookup(merchant(1), ROUTE, &k, &[body]);
    assert!(lookup(b"body").unwrap().is_none(), "nothing stored");
    // A look-up takes no key: a request with it proceeds afterwards, and while that one is in
    // flight a look-up says so.
    let IdempotencyStart::Proceed(g) = begin(&v, 1, ROUTE, &k, b"body").unwrap() else {
        panic!("expected to proceed");
    };
    assert!(matches!(
        lookup(b"body"),
        Err(VaultError::Conflict(c)) if c.code() == "idempotency_in_progress"
    ));
    g.finish(&response(201, "done")).unwrap();
    assert_eq!(lookup(b"body").unwrap().unwrap().body, b"done");
    assert!(matches!(
        lookup(b"other"),
        Err(VaultError::Conflict(c)) if c.code() == "idempotency_mismatch"
    ));
    clock.advance(IDEMPOTENCY_TTL);
    assert!(lookup(b"body").unwrap().is_none(), "older than 24 hours");
}

#[test]
fn server_errors_are_not_stored_client_errors_are() {
    let dir = tempfile::tempdir().unwrap();
    let (v, _clock) = new_vault(dir.path());
    let k = key(KEY);
    answer(&v, 1, ROUTE, &k, b"body", &response(500, "oops"));
    answer(&v, 1, ROUTE, &k, b"body", &response(503, "busy"));
    // Still free, for any request.
    answer(&v, 1, ROUTE, &k, b"bad card", &response(400, "invalid"));
    let r = replayed(begin(&v, 1, ROUTE, &k, b"bad card"));
    assert_eq!((r.status, r.body.as_slice()), (400, &b"invalid"[..]));
}

#[test]
fn sweep_removes_old_records_only() {
    let dir = tempfile::tempdir().unwrap();
    let (v, clock) = new_vault(dir.path());
    let old = [key(KEY), key("00000000-0000-4000-8000-000000000001")];
    for k in &old {
        answer(&v, 1, ROUTE, k, b"body", &response(201, "old"));
    }
    clock.advance(time::Duration::hours(12));
    let young = key("00000000-0000-4000-8000-000000000002");
    answer(&v, 1, ROUTE, &young, b"body", &response(201, "young"));
    assert_eq!(
        v.sweep_idempotency().unwrap(),
        0,
        "nothing is 24 hours old yet"
    );

    clock.advance(time::Duration::hours(12));
    assert_eq!(v.sweep_idempotency().unwrap(), 2);
    assert_eq!(v.sweep_idempotency().unwrap(), 0);
    // The young one is still replayed; the old ones start afresh, whatever the request.
    assert_eq!(
        replayed(begin(&v, 1, ROUTE, &young, b"body")).body,
        b"young"
    );
    assert!(proceeds(begin(&v, 1, ROUTE, &old[0], b"new body")));

    // A key answered again after expiring is swept on its new time, not its old one.
    answer(&v, 1, ROUTE, &old[1], b"again", &response(201, "again"));
    clock.advance(time::Duration::hours(12));
    assert_eq!(v.sweep_idempotency().unwrap(), 1, "only `young`");
    assert_eq!(
        replayed(begin(&v, 1, ROUTE, &old[1], b"again")).body,
        b"again"
    );
    // The vault-wide sweep includes them.
    clock.advance(time::Duration::hours(12));
    assert_eq!(
        v.sweep_expired(v.now()).unwrap(),
        0,
        "no card records were due"
    );
    assert!(proceeds(begin(&v, 1, ROUTE, &old[1], b"anything")));
    assert_eq!(v.sweep_idempotency().unwrap(), 0, "sweep_expired took it");
}

#[test]
fn sweep_walks_many_batches() {
    let dir = tempfile::tempdir().unwrap();
    let (v, clock) = new_vault(dir.path());
    for i in 0..2500u32 {
        let k = key(&format!("00000000-0000-4000-8000-{i:012x}"));
        answer(&v, 1, ROUTE, &k, b"b", &response(201, "x"));
    }
    clock.advance(IDEMPOTENCY_TTL);
    assert_eq!(v.sweep_idempotency().unwrap(), 2500);
}

#[test]
fn nothing_in_clear_on_disk_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v");
    let (v, clock) = new_vault(&path);
    let k = key(KEY);
    let marker = "MARKER-session-7f3a9c1e-do-not-store-in-clear";
    let request = b"{\"pan\":\"4242424242424242\"}";
    answer(&v, 1, ROUTE, &k, request, &response(201, marker));
    v.flush().unwrap();
    drop(v);

    for needle in [
        marker.as_bytes(),
        b"4242424242424242".as_slice(),
        b"/v2/tokens/abc",
    ] {
        assert!(
            !files_contain(&path, needle),
            "{:?} found in the vault files",
            String::from_utf8_lossy(needle)
        );
    }

    let v = reopen(&path, clock.clone());
    let r = replayed(v.idempotency_begin(merchant(1), ROUTE, &k, &[request]));
    assert_eq!(r.body, marker.as_bytes());
    assert_eq!(
        conflict(begin(&v, 1, ROUTE, &k, b"other")),
        "idempotency_mismatch"
    );
}

#[test]
fn a_damaged_record_is_an_integrity_error_not_a_fresh_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v");
    let (v, clock) = new_vault(&path);
    let k = key(KEY);
    answer(&v, 1, ROUTE, &k, b"body", &response(201, "stored"));
    v.flush().unwrap();
    drop(v);
    // Flip a byte of the sealed answer (the record's last byte is in the tag).
    {
        let db = common::open_sled(&path.join("sled"));
        let mut rk = vec![b'I'];
        rk.extend_from_slice(&1u64.to_be_bytes());
        rk.extend_from_slice(k.as_bytes());
        let mut rec = db
            .get(&rk)
            .unwrap()
            .expect("record stored under b'I' | merchant | key")
            .to_vec();
        let last = rec.len() - 1;
        rec[last] ^= 1;
        db.insert(&rk, rec).unwrap();
        db.flush().unwrap();
    }
    let v = reopen(&path, clock.clone());
    assert!(matches!(
        begin(&v, 1, ROUTE, &k, b"body"),
        Err(VaultError::Integrity)
    ));
    // The failed begin released its slot: the error repeats rather than turning into a conflict.
    assert!(matches!(
        begin(&v, 1, ROUTE, &k, b"body"),
        Err(VaultError::Integrity)
    ));
    // The sweep clears it once it is 24 hours old.
    clock.advance(IDEMPOTENCY_TTL);
    assert_eq!(v.sweep_idempotency().unwrap(), 1);
    assert!(proceeds(begin(&v, 1, ROUTE, &k, b"body")));
}
