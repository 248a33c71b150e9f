//! Byte scanners for leak tests: does a buffer, or any file under a directory, hold a needle.
//! Leak tests assert negatives with these; each should also prove, on a planted marker, that
//! the same scan finds what it looks for (a positive control).

use std::path::Path;

use crate::files::walk;

/// Whether `hay` holds `needle` anywhere (any alignment, not only as text).
pub fn bytes_contain(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Whether any file under `dir` contains `needle`.
pub fn files_contain(dir: &Path, needle: &[u8]) -> bool {
    walk(dir)
        .iter()
        .any(|p| bytes_contain(&std::fs::read(p).expect("read"), needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_planted_marker_at_any_offset() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = vec![0xffu8; 4097];
        bytes.splice(2049..2049, *b"marker-4242");
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub").join("f"), &bytes).unwrap();
        assert!(files_contain(dir.path(), b"marker-4242"));
        assert!(!files_contain(dir.path(), b"marker-4243"));
        assert!(!bytes_contain(&bytes, b""));
    }
}
