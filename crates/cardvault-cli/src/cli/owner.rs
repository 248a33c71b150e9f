//! Who owns the files of a directory vault.
//!
//! Under the systemd unit a vault belongs to the service user (`chown -R cardvault ...`), while
//! its key file is readable by root only: offline commands (the daemon stopped) run as root. The
//! files such a command writes (the log, the lock, sled's snapshots) would then belong to root,
//! and the daemon, started as its user again, could no longer open its own vault. So a command
//! run as root on a vault of another user gives every file under the directory to the
//! directory's owner, before it opens the vault (what an interrupted run left) and when it is
//! done ([`GiveBack`]). `serve` as root on another user's vault is refused: a daemon runs as the
//! vault's user. Any other user on a vault that is not its own is refused with the way out.

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use anyhow::bail;

/// Gives the files under a vault directory back to its owner when dropped.
#[derive(Debug)]
pub(crate) struct GiveBack {
    dir: PathBuf,
    uid: u32,
    gid: u32,
}

impl Drop for GiveBack {
    fn drop(&mut self) {
        if let Err(e) = give_back(&self.dir, self.uid, self.gid) {
            eprintln!(
                "warning: could not give every file under {} back to uid {}: {e}; run `chown -R {}:{} {}`",
                self.dir.display(),
                self.uid,
                self.uid,
                self.gid,
                self.dir.display()
            );
        }
    }
}

/// For an offline command on the vault in `dir`: `None` when it belongs to this process's user
/// (or cannot be read: the open that follows says why); for root on another user's vault, its
/// files given back to the owner now and again when the returned guard is dropped.
pub(crate) fn adopt(dir: &Path) -> anyhow::Result<Option<GiveBack>> {
    let Ok(meta) = std::fs::metadata(dir) else {
        return Ok(None);
    };
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() == me {
        return Ok(None);
    }
    if me != 0 {
        refuse(dir, meta.uid(), me)?;
    }
    give_back(dir, meta.uid(), meta.gid()).map_err(|e| {
        anyhow::anyhow!(
            "giving the files under {} back to its owner (uid {}): {e}",
            dir.display(),
            meta.uid()
        )
    })?;
    Ok(Some(GiveBack {
        dir: dir.to_path_buf(),
        uid: meta.uid(),
        gid: meta.gid(),
    }))
}

/// For `serve`: the vault must belong to the daemon's user.
pub(crate) fn check_for_serve(dir: &Path) -> anyhow::Result<()> {
    match std::fs::metadata(dir) {
        Ok(meta) => refuse(dir, meta.uid(), rustix::process::geteuid().as_raw()),
        Err(_) => Ok(()),
    }
}

fn refuse(dir: &Path, owner: u32, me: u32) -> anyhow::Result<()> {
    if owner == me {
        return Ok(());
    }
    let (shown, run_as) = match user_name(owner) {
        Some(name) => (format!("uid {owner} ({name})"), name),
        None => (format!("uid {owner}"), owner.to_string()),
    };
    bail!(
        "the vault in {} belongs to {shown} and this runs as uid {me}: run it as the vault's \
         owner (e.g. `runuser -u {run_as} -- cardvault ...`, or the systemd unit), or give the \
         vault to this user first (nothing was changed)",
        dir.display()
    )
}

/// Gives `dir` and everything under it to `uid`:`gid`, where this process made it (owned by its
/// own user, root).
///
/// The directory belongs to another user, who could swap its entries while this runs, so nothing
/// is followed and nothing is changed by name: each entry is opened relative to its directory's
/// descriptor without following symbolic links, checked through that descriptor (a directory,
/// or a regular file with one link: never a hard link to a file elsewhere, such as a root-owned
/// file planted by the directory's owner) and changed through it. Other entries are left alone.
fn give_back(dir: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    use rustix::fs::{CWD, Mode, OFlags, openat};
    // The vault's own path may be a link (`--data` naming a symbolic link to it): followed there
    // only, as the open of the vault follows it.
    let top = openat(
        CWD,
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    give_back_in(&top, uid, gid, 0)
}

/// Flags for opening a directory to read it, never through a symbolic link.
fn dir_flags() -> rustix::fs::OFlags {
    use rustix::fs::OFlags;
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

fn give_back_in(dir: &rustix::fd::OwnedFd, uid: u32, gid: u32, depth: u32) -> std::io::Result<()> {
    use rustix::fs::{
        AtFlags, Dir, FileType, Gid, Mode, OFlags, Uid, fchown, fstat, openat, statat,
    };
    // A vault directory is two levels deep (sled's `blobs`); a deeper tree is not one.
    if depth > 8 {
        return Ok(());
    }
    let me = rustix::process::geteuid().as_raw();
    let mut entries = Dir::read_from(dir)?;
    while let Some(entry) = entries.read() {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_bytes() == b"." || name.to_bytes() == b".." {
            continue;
        }
        let listed = match entry.file_type() {
            // Some file systems (XFS without ftype, some network ones) do not say in the listing.
            FileType::Unknown => match statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => FileType::from_raw_mode(st.st_mode),
                Err(_) => continue,
            },
            other => other,
        };
        let flags = match listed {
            FileType::Directory => dir_flags(),
            FileType::RegularFile => {
                OFlags::RDONLY
                    | OFlags::NOFOLLOW
                    | OFlags::NONBLOCK
                    | OFlags::NOCTTY
                    | OFlags::CLOEXEC
            }
            _ => continue,
        };
        let Ok(fd) = openat(dir, name, flags, Mode::empty()) else {
            // Gone, or swapped for something else since it was listed.
            continue;
        };
        let st = fstat(&fd)?;
        let kind = FileType::from_raw_mode(st.st_mode);
        let ours = st.st_uid == me;
        if kind == FileType::Directory {
            give_back_in(&fd, uid, gid, depth + 1)?;
        }
        let single =
            kind == FileType::Directory || (kind == FileType::RegularFile && st.st_nlink == 1);
        if ours && single {
            fchown(
                &fd,
                Some(Uid::from_raw_unchecked(uid)),
                Some(Gid::from_raw_unchecked(gid)),
            )?;
        }
    }
    Ok(())
}

/// The name of `uid` in /etc/passwd, if it has one there.
fn user_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    name_in(&passwd, uid)
}

fn name_in(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id = fields.nth(1)?;
        (id.parse::<u32>().ok()? == uid).then(|| name.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::{adopt, check_for_serve, name_in};

    #[test]
    fn names_come_from_passwd_lines() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\ncardvault:x:998:998::/var/lib/cardvault:/usr/sbin/nologin\n";
        assert_eq!(name_in(passwd, 998).as_deref(), Some("cardvault"));
        assert_eq!(name_in(passwd, 0).as_deref(), Some("root"));
        assert_eq!(name_in(passwd, 5), None);
    }

    #[test]
    fn a_directory_of_this_user_needs_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(adopt(dir.path()).unwrap().is_none());
        assert!(adopt(&dir.path().join("absent")).unwrap().is_none());
        check_for_serve(dir.path()).unwrap();
    }
}
