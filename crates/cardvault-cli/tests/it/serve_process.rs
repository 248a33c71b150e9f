//! `cardvault serve` as a process: it keeps serving when its log pipe is closed, and
//! `--allow-uid` / `--allow-gid` really let those peers (and only those) reach the socket.

use std::{
    os::unix::{fs::PermissionsExt, net::UnixStream, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use crate::common::{bin, is_root, unix_http};

/// Environment variable telling [`peer_probe`] (run as a child under another uid) which socket
/// to ask.
const PROBE_SOCKET: &str = "CARDVAULT_TEST_PROBE_SOCKET";

/// A minimal HTTP/1.1 exchange over the Unix socket: the status code (0 when the daemon closed
/// the connection without answering) and the body.
fn http(
    sock: &Path,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let (status, _, body) = unix_http(sock, method, path, key, body, Duration::from_secs(20));
    (status, body)
}

struct Daemon {
    child: Child,
}

impl Daemon {
    /// `serve --dev` on `sock` with extra arguments; waits until `/health` answers.
    fn dev(sock: &Path, extra: &[&str], pipes: bool) -> Self {
        Self::dev_with_tmpdir(sock, extra, pipes, None)
    }

    /// [`dev`](Self::dev), its throwaway vault made under `tmpdir` (`TMPDIR`) when given.
    fn dev_with_tmpdir(sock: &Path, extra: &[&str], pipes: bool, tmpdir: Option<&Path>) -> Self {
        let mut cmd = bin();
        cmd.args(["serve", "--dev", "--socket", sock.to_str().unwrap()])
            .args(extra)
            .stdin(Stdio::null());
        if let Some(t) = tmpdir {
            cmd.env("TMPDIR", t);
        }
        if pipes {
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        } else {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
        let mut child = cmd.spawn().unwrap();
        // Close the reading ends at once: every later write to stdout/stderr hits a closed pipe.
        drop(child.stdout.take());
        drop(child.stderr.take());
        let mut d = Self { child };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if sock.exists()
                && UnixStream::connect(sock).is_ok()
                && http(sock, "GET", "/health", None, None).0 == 200
            {
                return d;
            }
            if let Some(status) = d.child.try_wait().unwrap() {
                panic!("the daemon exited at start: {status}");
            }
            assert!(Instant::now() < deadline, "the daemon did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then the exit status (within 30 s).
    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = rustix::process::Pid::from_raw(i32::try_from(self.child.id()).unwrap()).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_closed_log_pipe_does_not_stop_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("run").join("cardvault.sock");
    // Debug level: every request below writes log lines to the closed pipe.
    let d = Daemon::dev(&sock, &["--log-level", "debug"], true);
    let key = std::fs::read_to_string(sock.with_file_name("api-key")).unwrap();
    let key = key.trim();
    for _ in 0..3 {
        let (status, body) = http(
            &sock,
            "POST",
            "/v2/tokens",
            Some(key),
            Some(r#"{"type":"card","card":{"pan":"4242424242424242","expiration_date":"2802"}}"#),
        );
        assert_eq!(status, 201, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let token = v["token"].as_str().unwrap();
        let (status, body) = http(
            &sock,
            "POST",
            &format!("/v2/tokens/{token}/reveal"),
            Some(key),
            None,
        );
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("4242424242424242"));
        // An error answer logs too.
        let (status, _) = http(&sock, "POST", "/v2/tokens", Some("nope"), Some("{}"));
        assert_eq!(status, 401);
    }
    let status = d.terminate();
    assert!(status.success(), "exit status after SIGTERM: {status}");
}

/// Not a test of its own: run by the tests below as a child process under another uid/gid
/// (with `--ignored`), it asks `/health` on the socket named by [`PROBE_SOCKET`] and prints the
/// status (0: refused). Run any other way it fails rather than passing by doing nothing.
#[test]
#[ignore = "started as a child process by probe_as"]
fn peer_probe() {
    let sock = std::env::var(PROBE_SOCKET)
        .expect("run by probe_as, which sets CARDVAULT_TEST_PROBE_SOCKET");
    let status = match UnixStream::connect(&sock) {
        Ok(_) => http(Path::new(&sock), "GET", "/health", None, None).0,
        Err(e) => {
            println!("PROBE connect error {e}");
            0
        }
    };
    println!("PROBE STATUS {status}");
}

/// The status a process with `uid`/`gid` gets from `/health` on `sock` (0: no answer).
fn probe_as(sock: &Path, uid: u32, gid: u32) -> u16 {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args([
            "--exact",
            "serve_process::peer_probe",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(PROBE_SOCKET, sock)
        .uid(uid)
        .gid(gid)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find_map(|l| l.split("PROBE STATUS ").nth(1))
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "probe as {uid}:{gid} printed no status: {stdout} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

/// A socket directory every probe can reach the top of: a fresh 0700 temp dir made 0711, the
/// socket's own directory (created by the daemon) below it.
fn reachable_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let sock = dir.path().join("run").join("cardvault.sock");
    (dir, sock)
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn allow_uid_lets_exactly_that_uid_in() {
    if !is_root() {
        eprintln!("skipped: needs root to run a probe under another uid");
        return;
    }
    let (_dir, sock) = reachable_dir();
    let d = Daemon::dev(&sock, &["--allow-uid", "65534"], false);
    assert_eq!(mode(&sock), 0o666);
    assert_eq!(mode(sock.parent().unwrap()), 0o711);
    assert_eq!(probe_as(&sock, 65534, 65534), 200, "the allowed uid");
    assert_eq!(probe_as(&sock, 65533, 65533), 0, "another uid");
    // The CLI run by a user the daemon does not allow says what to do about it.
    let out = bin()
        .args(["merchant", "list", "--socket"])
        .arg(&sock)
        .env("CARDVAULT_API_KEY", "cv_0000000000000000_not-a-key")
        .uid(65533)
        .gid(65533)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--allow-uid"), "{stderr}");
    // The key files next to the socket stay private.
    assert_eq!(mode(&sock.with_file_name("api-key")), 0o600);
    assert!(d.terminate().success());
}

#[test]
fn allow_gid_lets_exactly_that_group_in() {
    if !is_root() {
        eprintln!("skipped: needs root to run a probe under another uid");
        return;
    }
    let (_dir, sock) = reachable_dir();
    let d = Daemon::dev(&sock, &["--allow-gid", "65532"], false);
    assert_eq!(mode(&sock), 0o660);
    assert_eq!(
        std::os::unix::fs::MetadataExt::gid(&std::fs::metadata(&sock).unwrap()),
        65532
    );
    assert_eq!(probe_as(&sock, 65533, 65532), 200, "a member of the group");
    assert_eq!(probe_as(&sock, 65533, 65533), 0, "another group");
    assert!(d.terminate().success());
}

#[test]
fn without_allow_flags_the_socket_stays_private() {
    let (dir, sock) = reachable_dir();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let d = Daemon::dev_with_tmpdir(&sock, &[], false, Some(&tmp));
    assert_eq!(mode(&sock), 0o600);
    assert_eq!(mode(sock.parent().unwrap()), 0o700);
    // The throwaway vault's directory (its key file and data inside) is the owner's alone.
    let made = dev_vaults(&tmp);
    assert_eq!(made.len(), 1, "{made:?}");
    assert_eq!(mode(&made[0]), 0o700);
    if is_root() {
        assert_eq!(probe_as(&sock, 65534, 65534), 0);
    }
    assert!(d.terminate().success());
}

/// The dev vaults' temporary directories under `tmp`.
fn dev_vaults(tmp: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(tmp)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("cardvault-dev-")
        })
        .collect()
}

#[test]
fn the_next_dev_daemon_removes_the_vault_a_killed_one_left() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let sock = dir.path().join("run").join("cardvault.sock");
    // Dropped: SIGKILL, so its throwaway vault stays.
    drop(Daemon::dev_with_tmpdir(&sock, &[], false, Some(&tmp)));
    let left = dev_vaults(&tmp);
    assert_eq!(left.len(), 1, "{left:?}");
    // Someone else's directory with the same kind of name is not touched.
    let other = tmp.join("cardvault-dev-not-from-this-socket");
    std::fs::create_dir(&other).unwrap();
    let d = Daemon::dev_with_tmpdir(&sock, &[], false, Some(&tmp));
    let now = dev_vaults(&tmp);
    assert!(
        !now.contains(&left[0]),
        "the killed daemon's vault is still there: {now:?}"
    );
    assert_eq!(now.len(), 2, "{now:?}");
    assert!(d.terminate().success());
    // A clean stop leaves nothing of its own.
    assert_eq!(dev_vaults(&tmp), vec![other]);
}

#[test]
fn allowing_root_opens_no_permission_bits() {
    // The shipped units pass `--allow-uid 0` so root's admin commands pass the peer check; root
    // needs no mode bits, so the socket stays the owner's alone.
    let (_dir, sock) = reachable_dir();
    let d = Daemon::dev(&sock, &["--allow-uid", "0"], false);
    assert_eq!(mode(&sock), 0o600);
    assert_eq!(mode(sock.parent().unwrap()), 0o700);
    if is_root() {
        assert_eq!(probe_as(&sock, 65534, 65534), 0, "another user");
    }
    // With a group as well, the socket is that group's (0660), as without root.
    assert!(d.terminate().success());
    let (_dir2, sock2) = reachable_dir();
    let d = Daemon::dev(&sock2, &["--allow-uid", "0", "--allow-gid", "65533"], false);
    assert_eq!(mode(&sock2), 0o660);
    assert!(d.terminate().success());
}
