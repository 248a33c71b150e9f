//! Several daemons on one PostgreSQL vault, simulated by two `Vault`s opened on one test database
//! in this process (each with its own clock, caches and in-flight idempotency keys): an API key
//! revoked through one stops authenticating on the other within `SHARED_KEY_CACHE_TTL`; an
//! idempotency key is claimed in the store (one request proceeds, the other daemon's duplicates
//! are in progress, the answer replays on both, an abandoned claim is taken over after its lease).
#![cfg(feature = "postgres")]

use std::{
    sync::{
        Arc, Barrier,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use vault_service::{
    AuditAction, AuditEntry, AuditOutcome, CustomerId, IDEMPOTENCY_LEASE, IdempotencyGuard,
    IdempotencyKey, IdempotencyStart, IdempotentResponse, KEY_FOLLOW_INTERVAL, MerchantId,
    RevealAudit, SHARED_KEY_CACHE_TTL, Scope, Scopes, Token, TokenizeOptions, UpdateOptions, Vault,
    VaultError,
};
use vault_testkit::engine::SharedVaults;

use crate::common::{card, luhn_check_digit, merchant};

const PASSPHRASE: &str = "shared vault test";
const ROUTE: &str = "POST /v2/tokens";

/// Two daemons' vaults on one fresh database.
fn pair() -> SharedVaults {
    SharedVaults::new(PASSPHRASE)
}

fn key(s: &str) -> IdempotencyKey {
    IdempotencyKey::parse(s).unwrap()
}

const KEY: &str = "6f1c2b3a-1d2e-4f00-8a9b-0c1d2e3f4a5b";

fn response(body: &str) -> IdempotentResponse {
    IdempotentResponse {
        status: 201,
        content_type: "application/json".into(),
        location: None,
        body: body.as_bytes().to_vec(),
    }
}

fn conflict_code<T: std::fmt::Debug>(r: Result<T, VaultError>) -> &'static str {
    match r {
        Err(VaultError::Conflict(c)) => c.code(),
        other => panic!("expected a conflict, got {other:?}"),
    }
}

/// The guard of a request that `vault` lets proceed with `k` (body `b"body"`).
fn proceed(vault: &Vault, m: MerchantId, k: &IdempotencyKey) -> IdempotencyGuard {
    match vault.idempotency_begin(m, ROUTE, k, &[b"body"]).unwrap() {
        IdempotencyStart::Proceed(guard) => guard,
        IdempotencyStart::Replay(_) => panic!("expected to proceed"),
    }
}

/// The body `vault` replays for `k` (body `b"body"`).
fn replayed(vault: &Vault, m: MerchantId, k: &IdempotencyKey) -> Vec<u8> {
    match vault.idempotency_begin(m, ROUTE, k, &[b"body"]).unwrap() {
        IdempotencyStart::Replay(r) => r.body,
        IdempotencyStart::Proceed(_) => panic!("expected a replay"),
    }
}

/// A token of `merchant` for `pan` (expiring 12/30), minted through `vault`.
fn mint(vault: &Vault, merchant: MerchantId, pan: &str) -> Token {
    vault
        .tokenize(merchant, card(pan, "3012"), TokenizeOptions::default())
        .expect("tokenize")
        .token
}

/// A tokio runtime with one worker: a call that blocked it would hold up every other one.
fn one_worker_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

/// The outcomes of the reveals of `token` in `vault`'s own audit chain, oldest first.
fn reveal_entries(vault: &Vault, token: &Token) -> Vec<AuditEntry> {
    vault
        .audit_after(0, 1_000_000)
        .expect("the chain")
        .into_iter()
        .filter(|e| e.action == AuditAction::Reveal && e.token.as_ref() == Some(token))
        .collect()
}

fn reveal_outcomes(vault: &Vault, token: &Token) -> Vec<AuditOutcome> {
    reveal_entries(vault, token)
        .into_iter()
        .map(|e| e.outcome)
        .collect()
}

#[test]
fn reads_from_an_async_runtime_are_answered_without_blocking_it_and_reveals_stay_audited() {
    let p = pair();
    let m = merchant(890490);
    let pans: Vec<String> = (0..24u8)
        .map(|i| {
            let mut body = vec![4, 2, 4, 2, 4, 2, 4, 2, 4, 2, 4, 2, 4, i / 10, i % 10];
            body.push(luhn_check_digit(&body));
            body.iter().map(|d| char::from(b'0' + d)).collect()
        })
        .collect();
    let minted: Vec<Token> = pans
        .iter()
        .map(|pan| {
            p.a.tokenize(m, card(pan, "3012"), TokenizeOptions::default())
                .map(|t| t.token)
        })
        .collect::<Result<_, _>>()
        .expect("tokenize on a");
    let expected: Vec<String> = minted
        .iter()
        .map(|t| p.b.get(m, t).expect("get").masked_pan.as_str().to_owned())
        .collect();
    // A read that waited on the one worker would hold up every other one.
    let runtime = one_worker_runtime();
    let b = p.b.clone();
    let (got, revealed, missing) = runtime.block_on(async move {
        let mut gets = Vec::new();
        let mut reveals = Vec::new();
        for t in &minted {
            let (tx, rx) = tokio::sync::oneshot::channel();
            b.get_then(m, t, move |r| {
                let _ = tx.send(r);
            });
            gets.push(rx);
            let (tx, rx) = tokio::sync::oneshot::channel();
            b.reveal_then(m, t, None, move |r| {
                let _ = tx.send(r);
            });
            reveals.push(rx);
        }
        let unknown = Token::from_bytes([9; 24]);
        let (tx, rx) = tokio::sync::oneshot::channel();
        b.get_then(m, &unknown, move |r| {
            let _ = tx.send(r);
        });
        let mut got = Vec::new();
        for rx in gets {
            got.push(rx.await.expect("answered").expect("get_then"));
        }
        let mut revealed = Vec::new();
        for rx in reveals {
            revealed.push(rx.await.expect("answered").expect("reveal_then"));
        }
        (got, revealed, rx.await.expect("answered"))
    });
    let masked: Vec<String> = got
        .iter()
        .map(|i| i.masked_pan.as_str().to_owned())
        .collect();
    assert_eq!(masked, expected);
    for (card, pan) in revealed.iter().zip(&pans) {
        assert_eq!(card.pan.expose_digits(), pan);
    }
    assert!(matches!(missing, Err(VaultError::NotFound)));
    // Every reveal is in b's chain (its head kept by b's committer between groups), verified
    // through a.
    let report = p.a.audit_verify().expect("verify");
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.entries, 24, "{report:?}");
}

/// On a shared vault a reveal's record is read in the group commit that carries its audit
/// entry (`audit_log/reveal_group.rs`): every outcome is decided there as before (live, customer
/// binding, unknown token, expired, a card sealed under a data key another daemon made, which
/// the reader follows inside the group) and recorded with it.
#[test]
fn reveals_read_in_their_group_decide_and_record_every_outcome() {
    let p = pair();
    let m = merchant(890490);
    let customer = CustomerId::parse("cust-1").expect("customer");
    let tokenize = |pan: &str, options: TokenizeOptions| {
        p.a.tokenize(m, card(pan, "3012"), options)
            .expect("tokenize")
            .token
    };
    let plain = tokenize("4242424242424242", TokenizeOptions::default());
    let bound = tokenize(
        "5555555555554444",
        TokenizeOptions {
            customer: Some(customer.clone()),
            ..TokenizeOptions::default()
        },
    );
    let short = tokenize(
        "4000056655665556",
        TokenizeOptions {
            keep_until: Some(p.a.now() + time::Duration::minutes(1)),
            ..TokenizeOptions::default()
        },
    );
    // b has not loaded the data key this card is sealed under.
    p.a.rotate_key().expect("rotate");
    let rotated = tokenize("378282246310005", TokenizeOptions::default());
    p.clock_b.advance(time::Duration::minutes(2));
    let unknown = Token::from_bytes([7; 24]);

    let asks: Vec<(Token, Option<CustomerId>, Option<&str>, AuditOutcome)> = vec![
        (plain, None, Some("4242424242424242"), AuditOutcome::Ok),
        (
            bound,
            Some(customer.clone()),
            Some("5555555555554444"),
            AuditOutcome::Ok,
        ),
        (
            bound,
            None,
            None,
            AuditOutcome::Denied("customer_mismatch".into()),
        ),
        (
            plain,
            Some(customer),
            None,
            AuditOutcome::Denied("customer_mismatch".into()),
        ),
        (
            unknown,
            None,
            None,
            AuditOutcome::Denied("not_found".into()),
        ),
        (short, None, None, AuditOutcome::Denied("not_found".into())),
        (rotated, None, Some("378282246310005"), AuditOutcome::Ok),
    ];
    let runtime = one_worker_runtime();
    let b = p.b.clone();
    let calls: Vec<(Token, Option<CustomerId>)> =
        asks.iter().map(|(t, c, _, _)| (*t, c.clone())).collect();
    let got = runtime.block_on(async move {
        let waiting: Vec<_> = calls
            .iter()
            .map(|(t, c)| {
                let (tx, rx) = tokio::sync::oneshot::channel();
                b.reveal_then(m, t, c.as_ref(), move |r| {
                    let _ = tx.send(r);
                });
                rx
            })
            .collect();
        let mut got = Vec::new();
        for rx in waiting {
            got.push(rx.await.expect("answered"));
        }
        got
    });
    for ((_, _, pan, _), result) in asks.iter().zip(&got) {
        match (pan, result) {
            (Some(pan), Ok(card)) => assert_eq!(card.pan.expose_digits(), *pan),
            (None, Err(VaultError::CustomerMismatch | VaultError::NotFound)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    // The blocking call takes the same path.
    let card = p.b.reveal(m, &plain, None).expect("reveal");
    assert_eq!(card.pan.expose_digits(), "4242424242424242");

    let mut logged: Vec<(Option<Token>, AuditOutcome)> =
        p.b.audit_after(0, 1_000)
            .expect("b's chain")
            .into_iter()
            .filter(|e| e.action == AuditAction::Reveal)
            .map(|e| (e.token, e.outcome))
            .collect();
    let mut expected: Vec<(Option<Token>, AuditOutcome)> = asks
        .iter()
        .map(|(t, _, _, o)| (Some(*t), o.clone()))
        .chain([(Some(plain), AuditOutcome::Ok)])
        .collect();
    let key = |e: &(Option<Token>, AuditOutcome)| format!("{:?} {}", e.0, e.1);
    logged.sort_by_key(key);
    expected.sort_by_key(key);
    assert_eq!(logged, expected);
}

/// A group of reveals that all go through reads its records as it commits (one statement: the
/// guards), including a record sealed under a data key this daemon has not loaded yet (it follows
/// the stored header, and does not fail); each entry says granted.
#[test]
fn reveals_that_all_go_through_are_read_as_their_group_commits() {
    let p = pair();
    let m = merchant(890490);
    let customer = CustomerId::parse("cust-1").expect("customer");
    let plain = mint(&p.a, m, "4242424242424242");
    let bound =
        p.a.tokenize(
            m,
            card("5555555555554444", "3012"),
            TokenizeOptions {
                customer: Some(customer.clone()),
                ..TokenizeOptions::default()
            },
        )
        .expect("tokenize")
        .token;
    p.a.rotate_key().expect("rotate");
    let rotated = mint(&p.a, m, "378282246310005");
    let before = p.b.stats().store;
    let asks = [
        (plain, None, "4242424242424242"),
        (bound, Some(customer), "5555555555554444"),
        (rotated, None, "378282246310005"),
    ];
    for (token, customer, pan) in &asks {
        let card = p.b.reveal(m, token, customer.as_ref()).expect("reveal");
        assert_eq!(card.pan.expose_digits(), *pan);
    }
    let after = p.b.stats().store;
    assert_eq!(
        after.guarded - before.guarded,
        3,
        "one guarded group per reveal"
    );
    assert_eq!(after.guard_misses, before.guard_misses);
    for (token, _, _) in &asks {
        assert_eq!(reveal_outcomes(&p.b, token), [AuditOutcome::Ok]);
    }
}

/// A refused reveal fails its group's guards: the group runs again reading first and records the
/// refusal as it is. The next group reads first too, and the one after a group whose reveals all
/// went through is guarded again.
#[test]
fn a_refused_reveal_is_recorded_as_refused_and_guards_resume_after_a_clean_group() {
    let p = pair();
    let m = merchant(890490);
    let token = mint(&p.a, m, "4242424242424242");
    let unknown = Token::from_bytes([7; 24]);
    let before = p.b.stats().store;
    assert!(matches!(
        p.b.reveal(m, &unknown, None),
        Err(VaultError::NotFound)
    ));
    let missed = p.b.stats().store;
    assert_eq!(missed.guard_misses - before.guard_misses, 1);
    assert_eq!(missed.guarded, before.guarded);
    // Read first: no guard.
    p.b.reveal(m, &token, None).expect("reveal");
    assert_eq!(p.b.stats().store.guarded, before.guarded);
    // Guarded again.
    p.b.reveal(m, &token, None).expect("reveal");
    assert_eq!(p.b.stats().store.guarded, before.guarded + 1);
    assert_eq!(
        reveal_outcomes(&p.b, &unknown),
        [AuditOutcome::Denied("not_found".into())]
    );
    assert_eq!(
        reveal_outcomes(&p.b, &token),
        [AuditOutcome::Ok, AuditOutcome::Ok]
    );
}

/// The one check the database cannot make is the card opening. A record altered in the database
/// so that its card no longer opens passes the guards, so its entry is written as granted; the
/// card is refused (an integrity failure, nothing handed out) and an entry naming the failure
/// follows within seconds. The log still verifies.
#[test]
fn a_card_that_does_not_open_after_its_entry_was_written_is_refused_and_the_entry_corrected() {
    let p = pair();
    let m = merchant(890490);
    let token = mint(&p.a, m, "4242424242424242");
    // The sealed card's last byte (its tag) flipped: the fields the guards compare are intact.
    p.db.execute(
        "UPDATE cardvault_record SET value = \
         set_byte(value, length(value) - 1, get_byte(value, length(value) - 1) # 1)",
    );
    let before = p.b.stats().store;
    let refused = p.b.reveal(m, &token, None);
    assert!(matches!(refused, Err(VaultError::Integrity)), "{refused:?}");
    assert_eq!(p.b.stats().store.guarded, before.guarded + 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while reveal_outcomes(&p.b, &token).len() < 2 {
        assert!(Instant::now() < deadline, "no correcting entry");
        thread::sleep(Duration::from_millis(50));
    }
    let entries = reveal_entries(&p.b, &token);
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].outcome, AuditOutcome::Ok);
    assert_eq!(entries[1].outcome, AuditOutcome::Error);
    assert!(
        entries[1]
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("corrects the granted entry")),
        "{:?}",
        entries[1].detail
    );
    let report = p.b.audit_verify().expect("verify");
    assert!(report.is_ok(), "{report:?}");
}

/// A reveal whose record cannot be read in its group is answered with the error and recorded as
/// failed, like a reveal whose own read fails elsewhere: the group's other writes (the entries)
/// still commit.
#[test]
fn a_reveal_whose_read_fails_in_its_group_is_recorded_as_failed() {
    let p = pair();
    let m = merchant(890490);
    let token = mint(&p.a, m, "4242424242424242");
    p.b.reveal(m, &token, None).expect("reveal");
    // The records' table gone under b: its reads fail, its audit entries still commit.
    p.db.execute("DROP TABLE cardvault_record");
    let refused = p.b.reveal(m, &token, None);
    assert!(matches!(refused, Err(VaultError::Store(_))), "{refused:?}");
    assert_eq!(
        reveal_outcomes(&p.b, &token),
        [AuditOutcome::Ok, AuditOutcome::Error]
    );
}

/// A group commit that another daemon raced runs again on fresh reads. The reveal audit entries
/// its drain job took must ride on the run that commits: none lost (answered reveals of the
/// `Queued` mode would otherwise be missing from the log), none answered with an error (the
/// waiting reveals of the `Durable` mode).
#[test]
fn a_group_run_again_after_a_race_keeps_the_reveal_entries_it_took() {
    let p = pair();
    let m = merchant(890490);
    let contested = mint(&p.a, m, "4242424242424242");
    let revealed = mint(&p.a, m, "5555555555554444");
    // Both daemons update one token over and over: a's groups that carry an update (and often a
    // drain job of reveal entries) are raced by b's and run again.
    let stop = Arc::new(AtomicBool::new(false));
    let updaters: Vec<_> = [p.a.clone(), p.b.clone()]
        .into_iter()
        .map(|v| {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut n = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let expiry = if n.is_multiple_of(2) { "3101" } else { "3012" };
                    let card = card("4242424242424242", expiry);
                    // A race lost 16 times in a row is refused; the next update tries again.
                    let _ = v.update(m, &contested, card, UpdateOptions::default());
                    n += 1;
                }
            })
        })
        .collect();
    let mut reveals = 0u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    for mode in [RevealAudit::Queued, RevealAudit::Durable] {
        p.a.set_reveal_audit(mode);
        let races_before = p.a.stats().store.races;
        // Until a's groups were raced at least 20 times in this mode (and 300 reveals made).
        let mut n = 0;
        while n < 300 || p.a.stats().store.races < races_before + 20 {
            assert!(Instant::now() < deadline, "too few races in {mode:?}");
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    let a = p.a.clone();
                    thread::spawn(move || {
                        for _ in 0..25 {
                            let card = a.reveal(m, &revealed, None).expect("reveal");
                            assert_eq!(card.pan.expose_digits(), "5555555555554444");
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().expect("revealer");
            }
            n += 100;
            reveals += 100;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in updaters {
        t.join().expect("updater");
    }
    p.a.barrier().expect("barrier");
    let logged = reveal_outcomes(&p.a, &revealed).len();
    assert_eq!(logged as u64, reveals, "reveal entries in a's chain");
    let report = p.b.audit_verify().expect("verify");
    assert!(report.is_ok(), "{report:?}");
}

#[test]
fn a_revoked_key_stops_on_every_daemon_within_the_cache_bound() {
    let p = pair();
    p.a.add_merchant(merchant(1), "Shop").unwrap();
    let create = || {
        p.a.create_api_key(merchant(1), Scopes::of(&[Scope::Tokenize]), "k")
            .unwrap()
    };
    let (first, second) = (create(), create());
    let secret = |k: &vault_service::NewApiKey| k.expose().to_owned();
    // Both daemons know both keys (B reads them from the store and caches them).
    for k in [&first, &second] {
        p.a.authenticate(&secret(k)).unwrap();
        p.b.authenticate(&secret(k)).unwrap();
        p.a.revoke_api_key(&k.info.id).unwrap();
        // The daemon that revoked stops at once.
        assert!(matches!(
            p.a.authenticate(&secret(k)),
            Err(VaultError::Unauthorized)
        ));
    }
    // The other one still trusts its cached copies, for less than the bound...
    p.clock_b
        .advance(SHARED_KEY_CACHE_TTL - time::Duration::milliseconds(1));
    p.b.authenticate(&secret(&first)).unwrap();
    p.b.authenticate(&secret(&second)).unwrap();
    // ...and reads the store again once the bound is reached.
    p.clock_b.advance(time::Duration::milliseconds(1));
    assert!(matches!(
        p.b.authenticate(&secret(&first)),
        Err(VaultError::Unauthorized)
    ));
    // A clock that went back does not keep a cached copy fresh: it is read again too.
    p.clock_b
        .advance(-(SHARED_KEY_CACHE_TTL + time::Duration::milliseconds(1)));
    assert!(matches!(
        p.b.authenticate(&secret(&second)),
        Err(VaultError::Unauthorized)
    ));
}

#[test]
fn one_claim_per_key_across_daemons_and_the_answer_replays_on_both() {
    let p = pair();
    let k = key(KEY);
    let m = merchant(1);
    let guard = proceed(&p.a, m, &k);
    // The other daemon sees the claim: in progress, for the same request or another one; a
    // look-up says so too, and takes nothing.
    assert_eq!(
        conflict_code(p.b.idempotency_begin(m, ROUTE, &k, &[b"body"])),
        "idempotency_in_progress"
    );
    assert_eq!(
        conflict_code(p.b.idempotency_begin(m, ROUTE, &k, &[b"other"])),
        "idempotency_in_progress"
    );
    assert_eq!(
        conflict_code(p.b.idempotency_lookup(m, ROUTE, &k, &[b"body"])),
        "idempotency_in_progress"
    );
    // Another merchant's same key is another key.
    assert!(matches!(
        p.b.idempotency_begin(merchant(2), ROUTE, &k, &[b"body"]),
        Ok(IdempotencyStart::Proceed(_))
    ));
    guard.finish(&response("made on a")).unwrap();
    for v in [&p.a, &p.b] {
        match v.idempotency_begin(m, ROUTE, &k, &[b"body"]).unwrap() {
            IdempotencyStart::Replay(r) => assert_eq!(r.body, b"made on a"),
            IdempotencyStart::Proceed(_) => panic!("expected a replay"),
        }
        assert_eq!(
            conflict_code(v.idempotency_begin(m, ROUTE, &k, &[b"other"])),
            "idempotency_mismatch"
        );
        assert_eq!(
            v.idempotency_lookup(m, ROUTE, &k, &[b"body"])
                .unwrap()
                .unwrap()
                .body,
            b"made on a"
        );
    }
}

#[test]
fn concurrent_duplicates_on_two_daemons_proceed_once() {
    let p = pair();
    let k = key(KEY);
    let m = merchant(1);
    const PER_DAEMON: usize = 6;
    let barrier = Arc::new(Barrier::new(2 * PER_DAEMON));
    let handles: Vec<_> = (0..2 * PER_DAEMON)
        .map(|i| {
            let v = if i % 2 == 0 { p.a.clone() } else { p.b.clone() };
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                match v.idempotency_begin(m, ROUTE, &k, &[b"body"]) {
                    // Keep the claim until every thread has tried.
                    Ok(IdempotencyStart::Proceed(g)) => Ok(g),
                    Ok(IdempotencyStart::Replay(_)) => panic!("nothing was answered yet"),
                    Err(e) => Err(conflict_code::<()>(Err(e))),
                }
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let proceeded = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(proceeded, 1, "exactly one request proceeds");
    assert!(
        results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|c| *c == "idempotency_in_progress")
    );
    let guard = results.into_iter().find_map(Result::ok).unwrap();
    guard.finish(&response("once")).unwrap();
    assert_eq!(replayed(&p.b, m, &k), b"once");
}

#[test]
fn a_dropped_guard_frees_the_key_for_every_daemon() {
    let p = pair();
    let k = key(KEY);
    let m = merchant(1);
    let first = p.a.idempotency_begin(m, ROUTE, &k, &[b"body"]).unwrap();
    assert!(matches!(first, IdempotencyStart::Proceed(_)));
    drop(first);
    // The claim's removal is queued on A's committer: wait for it.
    p.a.barrier().unwrap();
    let IdempotencyStart::Proceed(g) = p.b.idempotency_begin(m, ROUTE, &k, &[b"again"]).unwrap()
    else {
        panic!("expected to proceed");
    };
    // Server errors are not stored: the key is free again afterwards.
    g.finish(&IdempotentResponse {
        status: 503,
        ..response("busy")
    })
    .unwrap();
    p.b.barrier().unwrap();
    assert!(matches!(
        p.a.idempotency_begin(m, ROUTE, &k, &[b"third"]),
        Ok(IdempotencyStart::Proceed(_))
    ));
}

#[test]
fn an_abandoned_claim_is_taken_over_after_its_lease() {
    let p = pair();
    let k = key(KEY);
    let m = merchant(1);
    // Daemon A claims the key and then stops answering (killed, or just slow).
    let stale = proceed(&p.a, m, &k);
    p.clock_b
        .advance(IDEMPOTENCY_LEASE - time::Duration::seconds(1));
    assert_eq!(
        conflict_code(p.b.idempotency_begin(m, ROUTE, &k, &[b"body"])),
        "idempotency_in_progress"
    );
    p.clock_b.advance(time::Duration::seconds(1));
    let taken = proceed(&p.b, m, &k);
    // A's answer comes too late: its claim is gone, nothing of it is stored.
    assert_eq!(
        conflict_code(stale.finish(&response("late, from a"))),
        "idempotency_in_progress"
    );
    taken.finish(&response("from b")).unwrap();
    p.clock_a.advance(IDEMPOTENCY_LEASE);
    assert_eq!(replayed(&p.a, m, &k), b"from b");
}

/// Work that outlives the lease keeps its key while its claim is renewed: another daemon's
/// duplicate stays in progress past the first lease, the answer is stored and replays there. A
/// renewal never shortens the lease.
#[test]
fn a_renewed_claim_outlives_its_first_lease() {
    let p = pair();
    let k = key(KEY);
    let m = merchant(1);
    let slow = proceed(&p.a, m, &k);
    let renewal = slow
        .renewal()
        .expect("a shared vault's guard holds a claim");
    // A's work is still running 50 s later: it renews (lease until 110 s).
    p.clock_a.advance(time::Duration::seconds(50));
    renewal.renew().unwrap();
    // Past the first lease, B's duplicate is still in progress.
    p.clock_b
        .advance(IDEMPOTENCY_LEASE + time::Duration::seconds(5));
    assert_eq!(
        conflict_code(p.b.idempotency_begin(m, ROUTE, &k, &[b"body"])),
        "idempotency_in_progress"
    );
    // A renewal that would end the lease sooner (A's clock went back) leaves it as it was.
    p.clock_a.advance(-time::Duration::seconds(40));
    renewal.renew().unwrap();
    p.clock_b.advance(time::Duration::seconds(44));
    assert_eq!(
        conflict_code(p.b.idempotency_begin(m, ROUTE, &k, &[b"body"])),
        "idempotency_in_progress",
        "at 110 s - 1 s the renewed lease still holds"
    );
    slow.finish(&response("from a, late but renewed")).unwrap();
    assert_eq!(replayed(&p.b, m, &k), b"from a, late but renewed");
    // Answered: the claim is gone, and renewing it again is refused.
    assert_eq!(conflict_code(renewal.renew()), "idempotency_in_progress");
}

/// A claim that was not renewed in time is taken over, and its renewal then fails: the late
/// request learns it lost the key (and stores nothing).
#[test]
fn a_claim_taken_over_cannot_be_renewed() {
    let p = pair();
    let k = key(KEY);
    let m = merchant(1);
    let stale = proceed(&p.a, m, &k);
    let renewal = stale.renewal().expect("a claim");
    p.clock_b.advance(IDEMPOTENCY_LEASE);
    let taken = proceed(&p.b, m, &k);
    assert_eq!(conflict_code(renewal.renew()), "idempotency_in_progress");
    // B's claim is untouched by A's failed renewal: A's duplicate is still in progress.
    p.clock_a.advance(IDEMPOTENCY_LEASE);
    drop(stale);
    assert_eq!(
        conflict_code(p.a.idempotency_begin(m, ROUTE, &k, &[b"body"])),
        "idempotency_in_progress"
    );
    taken.finish(&response("from b")).unwrap();
}

#[test]
fn a_lookup_writes_no_claim() {
    let p = pair();
    let k = key(KEY);
    let m = merchant(1);
    assert!(
        p.a.idempotency_lookup(m, ROUTE, &k, &[b"body"])
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        p.b.idempotency_begin(m, ROUTE, &k, &[b"body"]),
        Ok(IdempotencyStart::Proceed(_))
    ));
}

/// `audit_archive` on a shared vault takes every daemon's chain while another daemon keeps
/// appending: the file verifies with the vault key and names both chains, the remaining log (both
/// chains, from their anchors) verifies through either daemon, a second run takes what was added
/// meanwhile, and an altered file is refused.
#[test]
fn audit_archive_takes_every_chain_while_another_daemon_appends() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use vault_service::{AuditAction, AuditOutcome};

    let p = pair();
    for _ in 0..5 {
        p.a.audit(AuditAction::Reveal, None, AuditOutcome::Ok)
            .unwrap();
        p.b.audit(AuditAction::Reveal, None, AuditOutcome::Ok)
            .unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let appender = {
        let (b, stop) = (p.b.clone(), stop.clone());
        thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) || n < 20 {
                b.audit(AuditAction::Reveal, None, AuditOutcome::Ok)
                    .unwrap();
                n += 1;
            }
            n
        })
    };
    let dir = tempfile::tempdir().unwrap();
    // Every entry so far is older than the cut (the clocks stand still).
    let cut = vault_service::Clock::now(&*p.clock_a) + time::Duration::seconds(1);
    let first = dir.path().join("first.bin");
    let a = p.a.audit_archive(cut, &first).unwrap();
    assert_eq!(a.chains.len(), 2, "{a:?}");
    assert!(
        a.chains
            .iter()
            .all(|c| c.chain.is_some() && c.first_seq == 1)
    );
    assert!(!a.more && a.entries >= 8, "{a:?}");
    let report = p.b.audit_verify_archive(&std::fs::read(&first).unwrap());
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.entries, a.entries);
    // Verified while the other daemon appends.
    let report = p.a.audit_verify().unwrap();
    assert!(report.is_ok(), "{report:?}");

    stop.store(true, Ordering::Relaxed);
    let appended = appender.join().unwrap();
    // 10 before, the appender's, and the archive's own entry (`audit.archive`).
    let total = 10 + appended + 1;
    for v in [&p.a, &p.b] {
        let report = v.audit_verify().unwrap();
        assert!(report.is_ok(), "{report:?}");
        assert_eq!(report.entries, total, "archived entries still count");
    }
    // The first run left each chain's newest block and what was added after its walk.
    let second = dir.path().join("second.bin");
    let again = p.b.audit_archive(cut, &second).unwrap();
    assert!(again.entries > 0, "{again:?}");
    for c in &again.chains {
        let before = a.chains.iter().find(|x| x.chain == c.chain).unwrap();
        assert_eq!(c.first_seq, before.last_seq + 1, "{again:?} after {a:?}");
    }
    assert_eq!(
        p.a.audit_verify_archive(&std::fs::read(&second).unwrap())
            .entries,
        again.entries
    );
    // Every entry was older than the cut: both chains are archived up to their heads, and go on
    // from their anchors (the first entry after them: the second archive's own).
    let held = p.a.audit_tail(5).unwrap();
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0].action, AuditAction::AuditArchive);
    p.a.audit(AuditAction::Reveal, None, AuditOutcome::Ok)
        .unwrap();
    let report = p.b.audit_verify().unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.entries, total + 2);
    assert_eq!(p.b.audit_tail(5).unwrap().len(), 2);

    let mut bytes = std::fs::read(&second).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    let report = p.a.audit_verify_archive(&bytes);
    assert!(!report.is_ok(), "{report:?}");
    // The file may not be overwritten.
    assert!(p.a.audit_archive(cut, &second).is_err());
}

/// Two archives at once, through two daemons, round after round while entries are added: each
/// either moves its blocks or is refused (`audit_archive_in_progress`, its file removed), never
/// both moves the same blocks or anchors a chain behind the other; every entry ends up either in
/// exactly one file or still in the log, and the log verifies.
#[test]
fn concurrent_audit_archives_never_overlap_or_break_a_chain() {
    use vault_service::{AuditAction, AuditOutcome, VaultConflict};

    let p = pair();
    let dir = tempfile::tempdir().unwrap();
    let cut = vault_service::Clock::now(&*p.clock_a) + time::Duration::seconds(1);
    let mut archived = 0;
    let mut refused = 0;
    for round in 0..12 {
        for _ in 0..4 {
            p.a.audit(AuditAction::Reveal, None, AuditOutcome::Ok)
                .unwrap();
            p.b.audit(AuditAction::Reveal, None, AuditOutcome::Ok)
                .unwrap();
        }
        let start = Arc::new(Barrier::new(2));
        let runs: Vec<_> = [p.a.clone(), p.b.clone()]
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                let file = dir.path().join(format!("{round}-{i}.bin"));
                let start = start.clone();
                thread::spawn(move || {
                    start.wait();
                    (v.audit_archive(cut, &file), file)
                })
            })
            .collect();
        for run in runs {
            match run.join().unwrap() {
                (Ok(a), file) => {
                    if a.entries > 0 {
                        let bytes = std::fs::read(&file).unwrap();
                        let report = p.a.audit_verify_archive(&bytes);
                        assert!(report.is_ok(), "{report:?}");
                        assert_eq!(report.entries, a.entries);
                    }
                    archived += a.entries;
                }
                (Err(VaultError::Conflict(VaultConflict::AuditArchiveInProgress)), file) => {
                    assert!(!file.exists(), "a refused archive keeps no file");
                    refused += 1;
                }
                (Err(e), _) => panic!("{e:?}"),
            }
        }
    }
    let report = p.b.audit_verify().unwrap();
    assert!(report.is_ok(), "{report:?}");
    let remaining = p.a.audit_tail(1_000_000).unwrap().len() as u64;
    assert_eq!(archived + remaining, report.entries, "{refused} refused");
    assert!(archived > 0);
}

#[test]
fn a_card_sealed_under_a_key_another_daemon_just_made_is_opened_and_updated_in_a_job() {
    let p = pair();
    let m = merchant(890490);
    // `b` has not followed `a`'s rotation yet (its follower looks once a second): a job that
    // opens the card follows the stored header instead of failing.
    p.a.rotate_key().expect("rotate");
    let first = mint(&p.a, m, "4242424242424242");
    let opened =
        p.b.transact(move |txn| txn.open_card(m, &first))
            .expect("opened in a job");
    assert_eq!(opened.pan.expose_digits(), "4242424242424242");

    p.a.rotate_key().expect("rotate");
    let second = mint(&p.a, m, "5555555555554444");
    p.b.update(
        m,
        &second,
        card("4000056655665556", "3012"),
        UpdateOptions::default(),
    )
    .expect("updated");
    let updated = p.a.reveal(m, &second, None).expect("reveal");
    assert_eq!(updated.pan.expose_digits(), "4000056655665556");
}

/// The outcome and detail of each `key.rotate` entry in `vault`'s own chain, oldest first.
fn rotations(vault: &Vault) -> Vec<(AuditOutcome, Option<String>)> {
    vault
        .audit_after(0, 1_000)
        .expect("the chain")
        .into_iter()
        .filter(|e| e.action == AuditAction::KeyRotate)
        .map(|e| (e.outcome, e.detail))
        .collect()
}

/// Makes the next audit write (the rest of a key change's group, after its header) fail once as
/// a race, as a serialization failure or deadlock on the server would. It first waits, up to 5 s,
/// for `nextval('test_go')` while `test_entered` says it is waiting.
fn race_the_next_audit_write(db: &vault_testkit::postgres::TestDatabase) {
    db.execute(
        "CREATE SEQUENCE test_race;
         CREATE SEQUENCE test_entered;
         CREATE SEQUENCE test_go;
         CREATE FUNCTION test_race() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           IF nextval('test_race') = 1 THEN
             PERFORM nextval('test_entered');
             FOR i IN 1..500 LOOP
               EXIT WHEN (SELECT is_called FROM test_go);
               PERFORM pg_sleep(0.01);
             END LOOP;
             RAISE EXCEPTION 'a race, for the test' USING ERRCODE = '40001';
           END IF;
           RETURN NEW;
         END $$;
         CREATE TRIGGER test_race BEFORE INSERT OR UPDATE ON cardvault_audit_chain_entry
           FOR EACH ROW EXECUTE FUNCTION test_race();",
    );
}

#[test]
fn a_rotation_whose_group_races_after_its_header_was_stored_rotates_once() {
    let p = pair();
    race_the_next_audit_write(&p.db);
    p.db.execute("SELECT nextval('test_go')");
    let races = p.a.stats().store.races;
    let id = p.a.rotate_key().expect("rotate");
    assert_eq!(p.a.stats().store.races, races + 1, "the group ran again");
    // One rotation: one new key, returned and audited.
    assert_eq!(id.get(), 2);
    assert_eq!(p.a.stats().deks.len(), 2);
    assert_eq!(
        rotations(&p.a),
        vec![(AuditOutcome::Ok, Some("dek=2".to_owned()))]
    );
    let m = merchant(890490);
    let token = mint(&p.a, m, "4242424242424242");
    let card = p.b.reveal(m, &token, None).expect("reveal");
    assert_eq!(card.pan.expose_digits(), "4242424242424242");
}

#[test]
fn a_rotation_run_again_after_another_daemon_built_on_its_header_rotates_once() {
    let p = pair();
    race_the_next_audit_write(&p.db);
    // `a`'s header (key 2) is stored and its group is held; `b` rotates on top of it (key 3),
    // then `a`'s group fails as raced and runs again.
    let (a_made, b_made) = thread::scope(|s| {
        let a = s.spawn(|| p.a.rotate_key().expect("rotate on a"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while p.db.value("SELECT is_called FROM test_entered").as_deref() != Some("t") {
            assert!(
                Instant::now() < deadline,
                "a's group never reached the trigger"
            );
            thread::sleep(Duration::from_millis(5));
        }
        let b_made = p.b.rotate_key().expect("rotate on b");
        p.db.execute("SELECT nextval('test_go')");
        (a.join().expect("a"), b_made)
    });
    assert_eq!((a_made.get(), b_made.get()), (2, 3));
    // Two rotations, two keys: `a` kept the key it made rather than making a third.
    let deadline = Instant::now() + KEY_FOLLOW_INTERVAL * 3;
    while p.a.stats().deks.len() != 3 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(p.a.stats().deks.len(), 3);
    assert_eq!(
        rotations(&p.a),
        vec![(AuditOutcome::Ok, Some("dek=2".to_owned()))]
    );
}

#[test]
fn rotations_on_two_daemons_at_once_keep_every_key_and_every_card() {
    let p = pair();
    let m = merchant(890490);
    let per_vault = 15;
    let writing = AtomicBool::new(true);
    let (rotated, minted) = thread::scope(|s| {
        // Both daemons keep tokenizing while they rotate: groups that race the other daemon's
        // header change run again, and records are sealed under either daemon's newest key.
        let writers: Vec<_> = [(&p.a, 4u8), (&p.b, 5u8)]
            .into_iter()
            .map(|(v, lead)| {
                let writing = &writing;
                s.spawn(move || {
                    let mut minted = Vec::new();
                    for i in 0u64.. {
                        if !writing.load(Ordering::Relaxed) {
                            break;
                        }
                        let mut body = vec![lead];
                        body.extend(format!("{i:014}").bytes().map(|b| b - b'0'));
                        let pan = vault_testkit::cards::luhn_complete(body);
                        let token = mint(v, m, &pan);
                        minted.push((token, pan));
                    }
                    minted
                })
            })
            .collect();
        let rotators: Vec<_> = [&p.a, &p.b]
            .into_iter()
            .map(|v| {
                s.spawn(move || {
                    (0..per_vault)
                        .map(|_| v.rotate_key().expect("rotate"))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let rotated: Vec<_> = rotators
            .into_iter()
            .flat_map(|h| h.join().expect("rotator"))
            .collect();
        writing.store(false, Ordering::Relaxed);
        let minted: Vec<_> = writers
            .into_iter()
            .flat_map(|h| h.join().expect("writer"))
            .collect();
        (rotated, minted)
    });

    // Every rotation made a key of its own, and no daemon dropped the other's: the stored header
    // holds the vault's first key and each rotation's, no more (a daemon follows it within the
    // bound).
    let first_key = 1;
    assert_eq!(rotated.len(), 2 * per_vault);
    let deadline = Instant::now() + KEY_FOLLOW_INTERVAL * 3;
    for v in [&p.a, &p.b] {
        while v.stats().deks.len() != rotated.len() + first_key && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        let deks = v.stats().deks;
        assert_eq!(deks.len(), rotated.len() + first_key, "{deks:?}");
        for id in &rotated {
            assert!(deks.iter().any(|(d, _, _)| d == id), "{id} was dropped");
        }
    }
    assert_eq!(p.a.stats().current_dek, p.b.stats().current_dek);
    // Every card sealed during the race opens on both daemons.
    assert!(!minted.is_empty());
    let mut bad = Vec::new();
    for (i, (token, pan)) in minted.iter().enumerate() {
        for (name, v) in [("a", &p.a), ("b", &p.b)] {
            match v.reveal(m, token, None) {
                Ok(card) => assert_eq!(card.pan.expose_digits(), pan.as_str()),
                Err(e) => bad.push(format!("{i} {} on {name}: {e:?}", &pan[..1])),
            }
        }
    }
    assert!(bad.is_empty(), "{} of {}: {bad:?}", bad.len(), minted.len());
}
