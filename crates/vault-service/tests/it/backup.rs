//! Backup under load, restore, and refusal of damaged backup files.

use crate::common;

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, Ordering},
};

use common::{card, merchant, new_vault, options, passphrase, random_pan};
use vault_service::{
    KeyError, ManualClock, StoreError, Token, TokenizeOptions, TokenizeRequest, Vault, VaultError,
};
use vault_testkit::scan::bytes_contain;

/// Tokenizes on 4 threads while a backup is taken; every token acknowledged before the backup
/// started reveals its exact card in the restored vault, and the restored vault holds exactly the
/// records counted in the backup.
#[test]
fn backup_under_load_restores_every_acknowledged_card() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, clock) = new_vault(&dir.path().join("vault"));
    let m = merchant(1);
    let acked: Arc<Mutex<Vec<(Token, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|i| {
            let (vault, acked, stop) = (vault.clone(), acked.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut rng = rand::rng();
                let mut n = 0u32;
                while !stop.load(Ordering::Relaxed) && n < 20_000 {
                    let pan = random_pan(&mut rng, "4", 16);
                    let info = vault
                        .tokenize(m, card(&pan, "3012"), TokenizeOptions::default())
                        .unwrap();
                    acked.lock().unwrap().push((info.token, pan));
                    n += 1;
                }
                i
            })
        })
        .collect();
    // Let the writers get going, then take the set acknowledged before the backup starts.
    while acked.lock().unwrap().len() < 400 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let before: Vec<(Token, String)> = acked.lock().unwrap().clone();
    let file = dir.path().join("vault.cvbk");
    let report = vault.backup_to_file(&file, |_, _| {}).unwrap();
    // Written under a partial name and given its own once whole: only the backup is left.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("cvbk"))
        .collect();
    assert_eq!(names, ["vault.cvbk"]);
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions())
            & 0o777,
        0o600
    );
    assert!(matches!(
        vault.backup_to_file(&file, |_, _| {}),
        Err(VaultError::Store(StoreError::AlreadyExists(_)))
    ));
    std::thread::sleep(std::time::Duration::from_millis(50));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let after_total = acked.lock().unwrap().len();
    assert!(report.records >= before.len() as u64);
    assert!(
        (after_total as u64) > report.records,
        "writes went on after the backup"
    );
    eprintln!(
        "backup: {} records ({} acknowledged before), {} bytes, {} steps, writers held at most {:?} ({:?} in all)",
        report.records,
        before.len(),
        report.bytes,
        report.steps,
        report.pause,
        report.held
    );

    let restored_dir = dir.path().join("restored");
    let r = Vault::restore(std::fs::File::open(&file).unwrap(), &restored_dir, |_| {}).unwrap();
    assert_eq!(r.records, report.records);
    assert_eq!(r.sha256, report.sha256);
    let restored = Vault::open(
        &restored_dir,
        &passphrase("test passphrase"),
        options(clock.clone()),
    )
    .unwrap();
    assert_eq!(restored.stats().records, report.records);
    for (token, pan) in &before {
        let c = restored.reveal(m, token, None).unwrap();
        assert_eq!(c.pan.expose_digits(), pan);
    }
    // The restored vault is a working vault: it takes new writes.
    let info = restored
        .tokenize(
            m,
            card("4242424242424242", "3012"),
            TokenizeOptions::default(),
        )
        .unwrap();
    assert_eq!(
        restored
            .reveal(m, &info.token, None)
            .unwrap()
            .pan
            .expose_digits(),
        "4242424242424242"
    );
    drop(restored);
    drop(vault);
    // Same key header: identical bytes, the same key opens it, a wrong key is refused.
    assert_eq!(
        std::fs::read(dir.path().join("vault/keyheader")).unwrap(),
        std::fs::read(restored_dir.join("keyheader")).unwrap()
    );
    assert!(matches!(
        Vault::open(
            &restored_dir,
            &passphrase("wrong passphrase"),
            options(clock)
        ),
        Err(VaultError::Key(KeyError::WrongKey))
    ));
}

/// The backup is one point in time even though it is exported in many steps while writes go on.
/// A sequential writer tokenizes card `i` then deletes token `i - WINDOW`, so at every instant the
/// live tokens of its merchant are one contiguous run of `WINDOW` or `WINDOW + 1` indices; a torn
/// backup (part before, part after a write) would show a gap or a run of another length. Other
/// threads add load, and 20k filler records make the export take several steps.
#[test]
fn a_backup_taken_in_steps_is_one_point_in_time() {
    const WINDOW: usize = 50;
    let dir = tempfile::tempdir().unwrap();
    let (vault, clock) = new_vault(&dir.path().join("vault"));
    let mut rng = rand::rng();
    for _ in 0..20 {
        let items = (0..1000)
            .map(|_| TokenizeRequest {
                card: card(&random_pan(&mut rng, "4", 16), "3012"),
                options: TokenizeOptions::default(),
            })
            .collect();
        vault.tokenize_batch(merchant(2), items).unwrap();
    }
    let m = merchant(9);
    let stop = Arc::new(AtomicBool::new(false));
    let tokens: Arc<Mutex<Vec<Token>>> = Arc::default();
    let seq = {
        let (vault, stop, tokens) = (vault.clone(), stop.clone(), tokens.clone());
        std::thread::spawn(move || {
            let mut rng = rand::rng();
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let pan = random_pan(&mut rng, "5", 16);
                let info = vault
                    .tokenize(m, card(&pan, "3012"), TokenizeOptions::default())
                    .unwrap();
                tokens.lock().unwrap().push(info.token);
                if i >= WINDOW {
                    let old = tokens.lock().unwrap()[i - WINDOW];
                    vault.delete(m, &old).unwrap();
                }
                i += 1;
            }
        })
    };
    let load: Vec<_> = (0..3)
        .map(|_| {
            let (vault, stop) = (vault.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut rng = rand::rng();
                while !stop.load(Ordering::Relaxed) {
                    let pan = random_pan(&mut rng, "4", 16);
                    vault
                        .tokenize(merchant(3), card(&pan, "3012"), TokenizeOptions::default())
                        .unwrap();
                }
            })
        })
        .collect();
    while tokens.lock().unwrap().len() < WINDOW * 3 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let mut out = Vec::new();
    let report = vault.backup(&mut out, |_, _| {}).unwrap();
    stop.store(true, Ordering::Relaxed);
    seq.join().unwrap();
    for t in load {
        t.join().unwrap();
    }
    assert!(report.steps > 3, "the export took {} steps", report.steps);
    let tokens = tokens.lock().unwrap().clone();
    assert!(tokens.len() > WINDOW * 3);
    let restored_dir = dir.path().join("restored");
    Vault::restore(&out[..], &restored_dir, |_| {}).unwrap();
    let restored = Vault::open(
        &restored_dir,
        &passphrase("test passphrase"),
        options(clock),
    )
    .unwrap();
    let present: Vec<usize> = tokens
        .iter()
        .enumerate()
        .filter_map(|(i, t)| match restored.reveal(m, t, None) {
            Ok(_) => Some(i),
            Err(VaultError::NotFound) => None,
            Err(e) => panic!("token {i}: {e}"),
        })
        .collect();
    let (first, last) = (present[0], present[present.len() - 1]);
    assert_eq!(
        present.len(),
        last - first + 1,
        "a gap in the restored run: {present:?}"
    );
    assert!(
        present.len() == WINDOW || present.len() == WINDOW + 1,
        "run of {} tokens (expected {WINDOW} or {})",
        present.len(),
        WINDOW + 1
    );
    assert_eq!(restored.stats().records, report.records);
}

fn small_backup(dir: &std::path::Path) -> (Vec<u8>, Arc<ManualClock>) {
    let (vault, clock) = new_vault(&dir.join("src"));
    let m = merchant(7);
    let mut rng = rand::rng();
    let items = (0..50)
        .map(|_| TokenizeRequest {
            card: card(&random_pan(&mut rng, "5", 16), "2911"),
            options: TokenizeOptions {
                dedupe: true,
                ..TokenizeOptions::default()
            },
        })
        .collect();
    vault.tokenize_batch(m, items).unwrap();
    let mut out = Vec::new();
    let r = vault.backup(&mut out, |_, _| {}).unwrap();
    assert_eq!(r.bytes, out.len() as u64);
    assert_eq!(r.records, 50);
    (out, clock)
}

fn refused(bytes: &[u8], target: &std::path::Path) -> VaultError {
    let e = Vault::restore(bytes, target, |_| {}).unwrap_err();
    assert!(!target.exists(), "a refused restore left {target:?} behind");
    let parent = target.parent().unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(parent)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("restoring"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    e
}

#[test]
fn damaged_backups_are_refused_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (good, clock) = small_backup(dir.path());
    let target = dir.path().join("t");

    // Every truncation.
    let step = (good.len() / 200).max(1);
    for n in (0..good.len()).step_by(step).chain([good.len() - 1]) {
        let e = refused(&good[..n], &target);
        assert!(
            e.to_string().contains("backup file"),
            "prefix {n}: unclear error {e}"
        );
    }
    // A flipped bit anywhere.
    for i in (0..good.len()).step_by(step) {
        let mut bad = good.clone();
        bad[i] ^= 0x10;
        let e = refused(&bad, &target);
        assert!(matches!(e, VaultError::Store(_)), "byte {i}: {e}");
    }
    // Garbage, trailing bytes, wrong magic, newer format.
    refused(b"not a backup at all", &target);
    let mut long = good.clone();
    long.push(0);
    refused(&long, &target);
    let mut magic = good.clone();
    magic[0] = b'X';
    assert!(
        refused(&magic, &target)
            .to_string()
            .contains("not a cardvault backup")
    );
    let mut newer = good.clone();
    newer[4..6].copy_from_slice(&2u16.to_be_bytes());
    assert!(matches!(
        refused(&newer, &target),
        VaultError::Store(StoreError::NewerBackup(2))
    ));

    // A non-empty target is refused and left alone.
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("something"), b"x").unwrap();
    assert!(matches!(
        Vault::restore(&good[..], &target, |_| {}),
        Err(VaultError::Store(StoreError::AlreadyExists(_)))
    ));
    assert!(target.join("something").exists());
    std::fs::remove_file(target.join("something")).unwrap();

    // The intact file restores (into the now-empty directory) and opens with the same key.
    let r = Vault::restore(&good[..], &target, |_| {}).unwrap();
    assert_eq!(r.records, 50);
    let v = Vault::open(&target, &passphrase("test passphrase"), options(clock)).unwrap();
    assert_eq!(v.stats().records, 50);
}

#[test]
fn the_backup_holds_no_clear_card_data() {
    let dir = tempfile::tempdir().unwrap();
    let (vault, _) = new_vault(&dir.path().join("v"));
    let pan = "4111111111111111";
    vault
        .tokenize(merchant(3), card(pan, "3001"), TokenizeOptions::default())
        .unwrap();
    let mut out = Vec::new();
    vault.backup(&mut out, |_, _| {}).unwrap();
    let hay = String::from_utf8_lossy(&out);
    assert!(!hay.contains(pan));
    assert!(!hay.contains("test passphrase"));

    // Positive control: the same scans find both once they are in the file (planted in the
    // middle of a copy, at an odd offset), so the negatives above are not vacuous.
    let mut planted = out.clone();
    let at = (out.len() / 2) | 1;
    planted.splice(at..at, pan.bytes().chain(*b"/test passphrase"));
    let hay = String::from_utf8_lossy(&planted);
    assert!(hay.contains(pan));
    assert!(hay.contains("test passphrase"));
    assert!(bytes_contain(&planted, pan.as_bytes()));
    assert!(!bytes_contain(&out, pan.as_bytes()));
}
