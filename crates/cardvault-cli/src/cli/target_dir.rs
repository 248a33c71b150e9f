//! The directory a new vault goes into (`init`, `restore`): absent, or an empty directory.
//! Anything else is refused before the command touches it (no chmod, no lock file).

use std::{fs, io::ErrorKind, path::Path};

use anyhow::{Context, bail};

/// Files only a vault directory holds (the key header and the sled store).
const VAULT_MARKERS: [&str; 2] = ["keyheader", "sled"];

/// Ok when `dir` does not exist or is an empty directory; otherwise an error that says what is
/// there: a vault, or other files.
pub(crate) fn check_new_vault_dir(dir: &Path) -> anyhow::Result<()> {
    let meta = match fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("checking {}", dir.display())),
    };
    if !meta.is_dir() {
        bail!("{} exists and is not a directory", dir.display());
    }
    let mut entries = fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    if entries.next().is_none() {
        return Ok(());
    }
    if VAULT_MARKERS.iter().any(|m| dir.join(m).exists()) {
        bail!("a vault already exists at {}", dir.display());
    }
    bail!(
        "{} is not empty and holds no vault; name a new or empty directory (nothing was changed)",
        dir.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_and_empty_are_fine_anything_else_is_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let absent = dir.path().join("new");
        assert!(check_new_vault_dir(&absent).is_ok());
        fs::create_dir(&absent).expect("mkdir");
        assert!(check_new_vault_dir(&absent).is_ok());

        fs::write(absent.join("notes.txt"), "x").expect("write");
        let msg = check_new_vault_dir(&absent)
            .expect_err("non-empty")
            .to_string();
        assert!(msg.contains("is not empty and holds no vault"), "{msg}");

        fs::create_dir(absent.join("sled")).expect("mkdir");
        let msg = check_new_vault_dir(&absent).expect_err("vault").to_string();
        assert!(msg.contains("a vault already exists"), "{msg}");

        let file = dir.path().join("file");
        fs::write(&file, "x").expect("write");
        let msg = check_new_vault_dir(&file).expect_err("file").to_string();
        assert!(msg.contains("not a directory"), "{msg}");
    }
}
