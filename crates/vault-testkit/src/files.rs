//! Directory helpers: list every file under a directory, copy a vault's directory, open a
//! closed vault's sled tree.

use std::path::{Path, PathBuf};

/// Every file under `dir`, recursively.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    walk_with_dirs(dir)
        .into_iter()
        .filter(|p| !p.is_dir())
        .collect()
}

/// Every file and directory under `dir`, recursively (`dir` itself not included).
pub fn walk_with_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read_dir") {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            out.extend(walk_with_dirs(&p));
        }
        out.push(p);
    }
    out
}

/// Copies the tree `from` into `to` (created if missing).
pub fn copy_dir(from: &Path, to: &Path) {
    copy_dir_except(from, to, None);
}

/// Copies the tree `from` into `to` (created if missing), leaving out files named `skip`.
pub fn copy_dir_except(from: &Path, to: &Path, skip: Option<&str>) {
    std::fs::create_dir_all(to).expect("create_dir_all");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("dir entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("file type").is_dir() {
            copy_dir_except(&e.path(), &target, skip);
        } else if skip.is_none_or(|s| e.file_name() != s) {
            std::fs::copy(e.path(), &target).expect("copy");
        }
    }
}

/// `sled::open`, retried while the dropped vault's sled threads still hold the file lock (as the
/// store itself does when it reopens).
pub fn open_sled(path: &Path) -> sled::Db {
    for _ in 0..500 {
        match sled::open(path) {
            Ok(db) => return db,
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => panic!("sled: {e}"),
        }
    }
    panic!("sled lock still held after 5 s");
}
