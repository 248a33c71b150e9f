//! Daemon-level crash safety: `cardvault serve` (key file, default `Durability::Sync`) is driven by
//! 8 concurrent clients that tokenize, update and delete over its Unix socket, and is killed with
//! SIGKILL at a random moment. After a restart (no prompt: stdin is closed), every acknowledged
//! token reveals exactly its card (the updated one after an acknowledged update), every
//! acknowledged delete stays deleted, and a request in flight at the kill has either its old or
//! its new outcome, never a mix. `CARDVAULT_DAEMON_CRASH_RUNS` sets the number of kills
//! (default 3). See `docs/harnesses.md`.
#![cfg(test)]

#[path = "it/common.rs"]
mod common;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use rand::RngExt;
use vault_client::{ApiKey, Client, ClientError};
use vault_wire::{CardInput, RevealRequest, TokenizeRequest, UpdateRequest};

use common::{Daemon, luhn_pan, multi_thread_runtime as runtime, ok, random_key_file};

const WORKERS: usize = 8;

/// What a token may legitimately show after a restart: each entry is one allowed outcome,
/// `Some((pan, expiry))` for a live card, `None` for gone.
type Outcomes = Vec<Option<(String, String)>>;

/// One client task's log, written before and after every request.
#[derive(Default)]
struct Log {
    /// Acknowledged writes, by kind.
    tokenized: u64,
    updated: u64,
    deleted: u64,
    /// Tokens whose state changed this run, with their allowed outcomes.
    changes: Vec<(String, Outcomes)>,
    /// Requests in flight at the kill.
    in_flight: u64,
    /// Unexpected answers (an HTTP error while the daemon was up).
    errors: Vec<String>,
}

/// True when the error means "the daemon went away": the request's fate is unknown.
fn is_transport(e: &ClientError) -> bool {
    matches!(e, ClientError::Connect(_) | ClientError::Transport(_))
}

/// One client task: random tokenize (60%), update (25%), delete (15%) on its own tokens until
/// the daemon dies.
async fn worker(
    socket: PathBuf,
    key: ApiKey,
    mut mine: Vec<(String, String, String)>,
    log: Arc<Mutex<Log>>,
) {
    let Ok(client) = Client::connect(&socket, Some(&key)).await else {
        return;
    };
    loop {
        let roll = rand::rng().random_range(0..100);
        if mine.is_empty() || roll < 60 {
            let pan = luhn_pan(&mut rand::rng(), "4", 16);
            let exp = "3106".to_owned();
            let req = TokenizeRequest::card(CardInput::new(pan.clone(), exp.clone()));
            match client.tokenize(&req).await {
                Ok(t) => {
                    let mut l = log.lock().unwrap();
                    l.tokenized += 1;
                    l.changes
                        .push((t.token.clone(), vec![Some((pan.clone(), exp.clone()))]));
                    mine.push((t.token, pan, exp));
                }
                // An in-flight tokenize may or may not have stored a card; its token was never
                // seen, so there is nothing to check.
                Err(e) if is_transport(&e) => {
                    log.lock().unwrap().in_flight += 1;
                    return;
                }
                Err(e) => log.lock().unwrap().errors.push(format!("tokenize: {e}")),
            }
        } else if roll < 85 {
            let i = rand::rng().random_range(0..mine.len());
            let (token, old_pan, old_exp) = mine[i].clone();
            let new_pan = luhn_pan(&mut rand::rng(), "4", 16);
            let new_exp = if old_exp == "3106" { "2912" } else { "3106" }.to_owned();
            let req = UpdateRequest {
                card: CardInput::new(new_pan.clone(), new_exp.clone()),
                ..UpdateRequest::default()
            };
            // Announced: from here on the token may show the old or the new card.
            match client.update(&token, &req).await {
                Ok(_) => {
                    let mut l = log.lock().unwrap();
                    l.updated += 1;
                    l.changes.push((
                        token.clone(),
                        vec![Some((new_pan.clone(), new_exp.clone()))],
                    ));
                    mine[i] = (token, new_pan, new_exp);
                }
                Err(e) if is_transport(&e) => {
                    let mut l = log.lock().unwrap();
                    l.in_flight += 1;
                    l.changes.push((
                        token,
                        vec![Some((old_pan, old_exp)), Some((new_pan, new_exp))],
                    ));
                    return;
                }
                Err(e) => log.lock().unwrap().errors.push(format!("update: {e}")),
            }
        } else {
            let (token, pan, exp) = mine.swap_remove(rand::rng().random_range(0..mine.len()));
            match client.delete(&token).await {
                Ok(()) => {
                    let mut l = log.lock().unwrap();
                    l.deleted += 1;
                    l.changes.push((token, vec![None]));
                }
                Err(e) if is_transport(&e) => {
                    let mut l = log.lock().unwrap();
                    l.in_flight += 1;
                    l.changes.push((token, vec![Some((pan, exp)), None]));
                    return;
                }
                Err(e) => log.lock().unwrap().errors.push(format!("delete: {e}")),
            }
        }
    }
}

/// Checks every token of the model against the restarted daemon; settles ambiguous ones to what
/// recovery chose. Returns the losses, and how many in-flight updates/deletes recovered to their
/// old and to their new state.
async fn verify(
    socket: &Path,
    key: &ApiKey,
    model: &mut HashMap<String, Outcomes>,
) -> (Vec<String>, [u64; 2]) {
    let entries: Vec<(String, Outcomes)> =
        model.iter().map(|(t, o)| (t.clone(), o.clone())).collect();
    let chunk = entries.len().div_ceil(WORKERS).max(1);
    let mut tasks = Vec::new();
    for part in entries.chunks(chunk) {
        let part = part.to_vec();
        let client = Client::connect(socket, Some(key)).await.unwrap();
        tasks.push(tokio::spawn(async move {
            let mut settled = Vec::new();
            let mut lost = Vec::new();
            let mut resolved = [0u64; 2];
            for (token, allowed) in part {
                let found = match client.reveal(&token, &RevealRequest::default()).await {
                    Ok(c) => Some((c.pan.clone(), c.expiration_date.clone())),
                    Err(e) if e.status() == Some(404) => None,
                    Err(e) => panic!("reveal of {token} failed: {e}"),
                };
                if allowed.contains(&found) {
                    if allowed.len() > 1 {
                        resolved[usize::from(allowed[0] != found)] += 1;
                    }
                    settled.push((token, found));
                } else {
                    let show = |o: &Option<(String, String)>| match o {
                        Some((p, x)) => format!("{}..{} {x}", &p[..6], &p[12..]),
                        None => "gone".to_owned(),
                    };
                    let want: Vec<String> = allowed.iter().map(show).collect();
                    lost.push(format!("{token}: allowed {want:?}, found {}", show(&found)));
                }
            }
            (settled, lost, resolved)
        }));
    }
    let mut lost = Vec::new();
    let mut resolved = [0u64; 2];
    for t in tasks {
        let (settled, l, r) = t.await.unwrap();
        lost.extend(l);
        resolved[0] += r[0];
        resolved[1] += r[1];
        for (token, found) in settled {
            model.insert(token, vec![found]);
        }
    }
    (lost, resolved)
}

#[test]
fn daemon_kill9_loses_no_acknowledged_write() {
    let runs: usize = std::env::var("CARDVAULT_DAEMON_CRASH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("vault.key");
    let kf = random_key_file(&key_path, 0o600);
    let data = dir.path().join("data").to_str().unwrap().to_owned();
    let api_path = dir.path().join("api-key");
    ok(&["init", "--data", &data, "--key-file", &kf]);
    ok(&[
        "merchant",
        "add",
        "890490",
        "--name",
        "Crash",
        "--data",
        &data,
        "--key-file",
        &kf,
    ]);
    ok(&[
        "apikey",
        "create",
        "--merchant",
        "890490",
        "--scopes",
        "tokenize,reveal",
        "--out",
        api_path.to_str().unwrap(),
        "--data",
        &data,
        "--key-file",
        &kf,
    ]);
    let key = ApiKey::from_file(&api_path).unwrap().unwrap();
    let socket = dir.path().join("run").join("cardvault.sock");

    let rt = runtime();
    let mut rng = rand::rng();
    // token -> allowed outcomes; after each verification exactly one outcome.
    let mut model: HashMap<String, Outcomes> = HashMap::new();
    let (mut total_acked, mut total_in_flight) = (0u64, 0u64);
    let (mut in_flight_old, mut in_flight_new) = (0u64, 0u64);
    let started = Instant::now();
    for run in 0..=runs {
        let daemon = Daemon::start(["--data", &data], &socket, &kf);
        let (lost, resolved) = rt.block_on(verify(&socket, &key, &mut model));
        in_flight_old += resolved[0];
        in_flight_new += resolved[1];
        assert!(
            lost.is_empty(),
            "after kill {run}: {} of {} tokens wrong: {:?}",
            lost.len(),
            model.len(),
            &lost[..lost.len().min(20)]
        );
        let live = model.values().filter(|o| o[0].is_some()).count();
        if run > 0 {
            eprintln!(
                "daemon crash run {run}: verified {} tokens ({live} live), no loss; in-flight \
                 updates/deletes recovered as old {} / new {}",
                model.len(),
                resolved[0],
                resolved[1]
            );
        }
        if run == runs {
            drop(daemon);
            break;
        }

        // Hand the live tokens out to the workers.
        let mut pools: Vec<Vec<(String, String, String)>> = vec![Vec::new(); WORKERS];
        for (i, (t, o)) in model.iter().enumerate() {
            if let Some(Some((p, x))) = o.first() {
                pools[i % WORKERS].push((t.clone(), p.clone(), x.clone()));
            }
        }
        let log = Arc::new(Mutex::new(Log::default()));
        let handles: Vec<_> = pools
            .into_iter()
            .map(|pool| {
                rt.spawn(worker(
                    socket.clone(),
                    ApiKey::new(key.expose()).unwrap(),
                    pool,
                    log.clone(),
                ))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(rng.random_range(400..1500)));
        daemon.kill9();
        rt.block_on(async {
            for h in handles {
                tokio::time::timeout(Duration::from_secs(30), h)
                    .await
                    .expect("a client task hung after the kill")
                    .unwrap();
            }
        });
        let log = std::mem::take(&mut *log.lock().unwrap());
        assert!(log.errors.is_empty(), "run {run}: {:?}", log.errors);
        let acked = log.tokenized + log.updated + log.deleted;
        assert!(acked > 0, "run {run}: nothing acknowledged before the kill");
        eprintln!(
            "daemon crash run {}: killed after {acked} acknowledged writes ({} tokenize, {} update, \
             {} delete), {} in flight",
            run + 1,
            log.tokenized,
            log.updated,
            log.deleted,
            log.in_flight
        );
        total_acked += acked;
        total_in_flight += log.in_flight;
        for (token, outcomes) in log.changes {
            model.insert(token, outcomes);
        }
    }
    eprintln!(
        "daemon crash: {runs} kills, {total_acked} acknowledged writes, {total_in_flight} in flight \
         (updates/deletes among them recovered old {in_flight_old} / new {in_flight_new}), {} tokens \
         verified, 0 lost, {:.1} s",
        model.len(),
        started.elapsed().as_secs_f64()
    );
}
