//! The `daemon_http` fuzz target's fixture: one [`HttpHarness`] per process, its vault in a
//! directory under the system temp dir named after the process id. Directories left by earlier
//! fuzzing processes that are gone are removed first (libFuzzer exits without running
//! destructors, so a `TempDir` would never be cleaned up).

use std::{fs, path::PathBuf, sync::OnceLock};

use vault_daemon::fuzzing::HttpHarness;

const PREFIX: &str = "cardvault-fuzz-http-";

/// The harness of this process, created on first use.
pub fn harness() -> &'static HttpHarness {
    static HARNESS: OnceLock<HttpHarness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        remove_stale();
        let dir = std::env::temp_dir().join(format!("{PREFIX}{}", std::process::id()));
        // A directory of a dead process with our pid: start afresh.
        let _ = fs::remove_dir_all(&dir);
        HttpHarness::new(&dir).unwrap_or_else(|e| panic!("fuzz fixture: {e}"))
    })
}

fn remove_stale() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)) else {
            continue;
        };
        if !PathBuf::from("/proc").join(pid).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}
