//! Several daemons on one PostgreSQL vault (`cardvault serve --database`), as separate processes,
//! with the same guarantees as one: a token minted on one daemon is read, revealed, updated and
//! deleted on the others; de-duplication is race-free across daemons; one idempotency key sent to
//! every daemon at once creates one session; a key rotation and an API
//! key revocation made by another process are followed within their stated bounds; `kill -9` of a
//! daemon under load loses no acknowledged token (every one reads back through another daemon);
//! and the audit log (one chain per daemon process) verifies.
//!
//! Needs the PostgreSQL server of `CARDVAULT_TEST_PG_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); each test creates its own database and drops
//! it. A server that cannot be reached fails the test: it never skips.
#![cfg(test)]

#[path = "it/common.rs"]
mod common;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use vault_client::{ApiKey, Client, ClientError};
use vault_testkit::postgres::TestDatabase;
use vault_wire::{CardInput, RevealRequest, TokenizeRequest, UpdateRequest};

use common::{Daemon, luhn_pan, multi_thread_runtime as runtime, ok, random_key_file};

/// A vault on a fresh database with one merchant and an API key of `scopes`.
struct Setup {
    _db: TestDatabase,
    url: String,
    dir: tempfile::TempDir,
    key_file: String,
    api_key: ApiKey,
    api_key_id: String,
}

impl Setup {
    fn new(scopes: &str) -> Self {
        let db = TestDatabase::new();
        let url = db.url();
        let dir = tempfile::tempdir().unwrap();
        let key_file = random_key_file(&dir.path().join("vault.key"), 0o600);
        ok(&["init", "--database", &url, "--key-file", &key_file]);
        ok(&[
            "merchant",
            "add",
            "890490",
            "--name",
            "Multi",
            "--database",
            &url,
            "--key-file",
            &key_file,
        ]);
        let api_path = dir.path().join("api-key");
        ok(&[
            "apikey",
            "create",
            "--merchant",
            "890490",
            "--scopes",
            scopes,
            "--out",
            api_path.to_str().unwrap(),
            "--database",
            &url,
            "--key-file",
            &key_file,
        ]);
        let api_key = ApiKey::from_file(&api_path).unwrap().unwrap();
        let api_key_id = api_key.public_id().trim_start_matches("cvk_").to_owned();
        Self {
            _db: db,
            url,
            dir,
            key_file,
            api_key,
            api_key_id,
        }
    }

    fn daemon(&self, name: &str) -> Daemon {
        Daemon::start(
            ["--database", &self.url],
            &self.dir.path().join(format!("{name}.sock")),
            &self.key_file,
        )
    }

    fn cli(&self, args: &[&str]) -> String {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--database", &self.url, "--key-file", &self.key_file]);
        ok(&all)
    }
}

async fn client(d: &Daemon, key: &ApiKey) -> Client {
    Client::connect(&d.socket, Some(key)).await.unwrap()
}

fn card(pan: &str, exp: &str) -> TokenizeRequest {
    TokenizeRequest::card(CardInput::new(pan.to_owned(), exp.to_owned()))
}

#[test]
fn three_daemons_serve_one_vault() {
    let s = Setup::new("tokenize,reveal,fingerprint,sessions");
    s.cli(&["terminal", "add", "1234001", "--merchant", "890490"]);
    let daemons = [s.daemon("a"), s.daemon("b"), s.daemon("c")];
    let rt = runtime();
    rt.block_on(async {
        let a = client(&daemons[0], &s.api_key).await;
        let b = client(&daemons[1], &s.api_key).await;
        let c = client(&daemons[2], &s.api_key).await;

        // Minted on A: read and revealed on B, updated on C, revealed on A, deleted on B.
        let pan = luhn_pan(&mut rand::rng(), "4", 16);
        let t = a.tokenize(&card(&pan, "3106")).await.unwrap().token;
        assert_eq!(b.get(&t).await.unwrap().token, t);
        let shown = b.reveal(&t, &RevealRequest::default()).await.unwrap();
        assert_eq!(shown.pan, pan);
        let new_pan = luhn_pan(&mut rand::rng(), "5", 16);
        let upd = UpdateRequest {
            card: CardInput::new(new_pan.clone(), "2912".to_owned()),
            ..UpdateRequest::default()
        };
        c.update(&t, &upd).await.unwrap();
        assert_eq!(
            a.reveal(&t, &RevealRequest::default()).await.unwrap().pan,
            new_pan
        );
        b.delete(&t).await.unwrap();
        for cl in [&a, &b, &c] {
            let e = cl.get(&t).await.unwrap_err();
            assert_eq!(e.status(), Some(404), "{e}");
        }

        // One card tokenized with de-duplication on all three daemons at once, many times:
        // one token, zero errors.
        let pan = luhn_pan(&mut rand::rng(), "4", 16);
        let mut req = card(&pan, "3106");
        req.dedupe = Some(true);
        let mut tasks = Vec::new();
        for round in 0..8 {
            for cl in [&a, &b, &c] {
                let cl = cl.clone();
                let req = req.clone();
                tasks.push(tokio::spawn(
                    async move { (round, cl.tokenize(&req).await) },
                ));
            }
        }
        let mut tokens = std::collections::BTreeSet::new();
        for t in tasks {
            let (_, r) = t.await.unwrap();
            tokens.insert(r.expect("a de-duplicated tokenize failed").token);
        }
        assert_eq!(tokens.len(), 1, "one card became {} tokens", tokens.len());

        // One idempotency key sent to all three daemons at once, several times: exactly one
        // session is created; every other answer is that same session replayed or 409
        // `idempotency_in_progress`; afterwards every daemon replays it.
        let req = vault_wire::HostedFieldsSessionRequest {
            lib_version: "1.6.0.172441".into(),
            scenario: "payment".into(),
            secure_token_id: None,
            allow_origin_url: None,
        };
        let key = "6a1e2d4c-5b6a-4978-8a1b-2c3d4e5f6a7c";
        let mut tasks = Vec::new();
        for _ in 0..4 {
            for cl in [&a, &b, &c] {
                let (cl, req) = (cl.clone(), req.clone());
                tasks.push(tokio::spawn(async move {
                    cl.hosted_fields_session("1234001", key, &req).await
                }));
            }
        }
        let mut sessions = std::collections::BTreeSet::new();
        let mut in_progress = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(r) => {
                    sessions.insert(r.token);
                }
                Err(e) if e.status() == Some(409) => in_progress += 1,
                Err(e) => panic!("an idempotent request failed: {e}"),
            }
        }
        assert_eq!(
            sessions.len(),
            1,
            "one idempotency key made {} sessions",
            sessions.len()
        );
        assert!(in_progress < 12, "no request got the session");
        for cl in [&a, &b, &c] {
            let again = cl
                .hosted_fields_session("1234001", key, &req)
                .await
                .unwrap();
            assert!(
                sessions.contains(&again.token),
                "a daemon did not replay the answer"
            );
        }
    });

    // A key rotation by another process (the CLI, offline): every daemon seals under the new key
    // within the follow bound, and reads what the others sealed under it at once.
    let before = s.cli(&["keys", "status"]);
    s.cli(&["keys", "rotate"]);
    let after = s.cli(&["keys", "status"]);
    assert_ne!(before, after, "the rotation shows in `keys status`");
    std::thread::sleep(vault_service::KEY_FOLLOW_INTERVAL + Duration::from_millis(200));
    rt.block_on(async {
        let a = client(&daemons[0], &s.api_key).await;
        let b = client(&daemons[1], &s.api_key).await;
        let pan = luhn_pan(&mut rand::rng(), "4", 16);
        let t = a.tokenize(&card(&pan, "3106")).await.unwrap().token;
        assert_eq!(
            b.reveal(&t, &RevealRequest::default()).await.unwrap().pan,
            pan
        );
    });

    // Revoked by another process: refused by every daemon within the stated bound.
    s.cli(&["apikey", "revoke", &s.api_key_id]);
    let deadline = Instant::now() + Duration::from_secs(5);
    rt.block_on(async {
        for d in &daemons {
            let cl = client(d, &s.api_key).await;
            loop {
                match cl
                    .tokenize(&card(&luhn_pan(&mut rand::rng(), "4", 16), "3106"))
                    .await
                {
                    Err(e) if e.status() == Some(401) => break,
                    other => {
                        assert!(
                            Instant::now() < deadline,
                            "a revoked key still works after 5 s: {:?}",
                            other.map(|t| t.token)
                        );
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
    });

    // Every daemon's audit chain verifies.
    drop(daemons);
    let report = s.cli(&["audit", "verify"]);
    assert!(!report.to_lowercase().contains("fail"), "{report}");
}

#[test]
fn kill9_of_one_daemon_loses_no_acknowledged_token() {
    let s = Setup::new("tokenize,reveal");
    let a = s.daemon("a");
    let b = s.daemon("b");
    let rt = runtime();
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let cl = client(&a, &s.api_key).await;
            let acked = acked.clone();
            let errors = errors.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let pan = luhn_pan(&mut rand::rng(), "4", 16);
                    match cl.tokenize(&card(&pan, "3106")).await {
                        Ok(t) => acked.lock().unwrap().push((t.token, pan)),
                        Err(ClientError::Connect(_) | ClientError::Transport(_)) => return,
                        Err(e) => errors.lock().unwrap().push(e.to_string()),
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        a.kill9();
        for t in tasks {
            t.await.unwrap();
        }
    });
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 50, "too little load: {} tokens", acked.len());
    assert!(
        errors.lock().unwrap().is_empty(),
        "{:?}",
        errors.lock().unwrap()
    );
    rt.block_on(async {
        let cl = client(&b, &s.api_key).await;
        for (token, pan) in &acked {
            let shown = cl
                .reveal(token, &RevealRequest::default())
                .await
                .unwrap_or_else(|e| panic!("acknowledged {token} lost after kill -9: {e}"));
            assert_eq!(&shown.pan, pan);
        }
    });
}
