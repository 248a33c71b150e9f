//! The command blocks of README.md and docs/operations.md run, in order, against a temporary
//! vault, so the documentation cannot drift from the code.
//!
//! Conventions (also stated at the top of docs/operations.md):
//! - a block fenced as `sh` is run; `text`, `json` and other blocks are not;
//! - `<!-- docs-test: skip (REASON) -->` on the line(s) before a block skips it (root, systemd...);
//! - `<!-- docs-test: background, ready when PATH exists -->` starts a one-line block in the
//!   background, waits for PATH, and stops it with SIGTERM at the end;
//! - all blocks of one document run in one shell, in order (`set -eu`), so a variable set in one
//!   block is seen by the next, exactly as for a reader pasting them into one terminal;
//! - the fixed paths of the documents are moved under a temporary directory, `cargo run --release
//!   --` becomes the `cardvault` binary built for the tests, `serve --dev` is given the moved
//!   dev socket explicitly, and the database `cardvault_demo` gets a name of this run's own.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// How a block is treated.
#[derive(Debug, PartialEq)]
enum Mode {
    Run,
    Skip,
    Background { ready: String },
}

#[derive(Debug)]
struct Block {
    /// 1-based line of the opening fence.
    line: usize,
    mode: Mode,
    text: String,
}

/// Paths the documents use, moved under the test's root (longest first where one is a prefix).
const MOVED: [&str; 5] = [
    "/var/lib/cardvault",
    "/var/backups/cardvault",
    "/etc/cardvault",
    "/run/cardvault",
    "/tmp/cardvault-dev",
];

fn marker(line: &str) -> Option<Mode> {
    let inner = line
        .trim()
        .strip_prefix("<!-- docs-test:")?
        .strip_suffix("-->")?
        .trim();
    if let Some(reason) = inner.strip_prefix("skip") {
        let reason = reason.trim();
        assert!(
            reason.starts_with('(') && reason.ends_with(')') && reason.len() > 2,
            "a skipped block must say why: {line}"
        );
        return Some(Mode::Skip);
    }
    if let Some(rest) = inner.strip_prefix("background, ready when ") {
        let ready = rest
            .strip_suffix(" exists")
            .unwrap_or_else(|| panic!("background marker needs `ready when PATH exists`: {line}"));
        return Some(Mode::Background {
            ready: ready.to_owned(),
        });
    }
    panic!("unknown docs-test marker: {line}");
}

/// The fenced blocks of `markdown` with their modes (non-`sh` blocks are left out).
fn blocks(markdown: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut pending: Option<Mode> = None;
    let mut lines = markdown.lines().enumerate();
    while let Some((i, line)) = lines.next() {
        let trimmed = line.trim_end();
        if let Some(lang) = trimmed.strip_prefix("```") {
            let mut text = String::new();
            for (_, l) in lines.by_ref() {
                if l.trim_end() == "```" {
                    break;
                }
                text.push_str(l);
                text.push('\n');
            }
            let mode = pending.take();
            if lang == "sh" {
                out.push(Block {
                    line: i + 1,
                    mode: mode.unwrap_or(Mode::Run),
                    text,
                });
            } else {
                assert!(
                    mode.is_none(),
                    "line {}: a marker before a `{lang}` block",
                    i + 1
                );
            }
        } else if let Some(m) = marker(line) {
            pending = Some(m);
        } else if !line.trim().is_empty() {
            assert!(
                pending.is_none(),
                "line {}: a docs-test marker not followed by a block",
                i + 1
            );
        }
    }
    out
}

/// The block's text as the test runs it.
fn rewrite(text: &str, root: &Path) -> String {
    let root = root.to_str().unwrap();
    let mut s = text.replace("cargo run --release -- ", "cardvault ");
    if s.contains("serve --dev") && !s.contains("--socket") {
        s = s.replace(
            "serve --dev",
            "serve --dev --socket /tmp/cardvault-dev/cardvault.sock",
        );
    }
    for p in MOVED {
        s = s.replace(p, &format!("{root}{p}"));
    }
    s.replace(DEMO_DATABASE, &demo_database())
}

/// The database docs/operations.md's PostgreSQL section creates (and drops first, if there).
const DEMO_DATABASE: &str = "cardvault_demo";

/// What the test names it instead: a reader's own `cardvault_demo`, and its daemons, are left
/// alone, and two runs on one server do not meet (the `cardvault_test_<pid>_` prefix is the one
/// `.ci/run`'s check for databases left behind knows).
fn demo_database() -> String {
    format!("cardvault_test_{}_demo", std::process::id())
}

/// One shell script running the blocks of `doc` in order.
fn script(doc: &str, blocks: &[Block], root: &Path) -> String {
    let mut s = String::from(
        r#"set -eu
BG=""
stop_background() { for p in $BG; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap stop_background EXIT
trap 'exit 143' TERM INT
wait_for() {
    i=0
    while [ ! -e "$1" ]; do
        if ! kill -0 "$2" 2>/dev/null; then echo "the background command exited before $1 appeared" >&2; exit 1; fi
        i=$((i + 1))
        if [ "$i" -gt 600 ]; then echo "timed out waiting for $1" >&2; exit 1; fi
        sleep 0.05
    done
}
"#,
    );
    for (n, b) in blocks.iter().enumerate() {
        let text = rewrite(&b.text, root);
        match &b.mode {
            Mode::Skip => {}
            Mode::Run => {
                writeln!(s, "echo '### {doc}:{}' >&2", b.line).unwrap();
                s.push_str(&text);
            }
            Mode::Background { ready } => {
                let command = text.trim();
                assert!(
                    !command.contains('\n'),
                    "{doc}:{}: a background block must be one command",
                    b.line
                );
                let log = root.join(format!("background-{n}.log"));
                writeln!(s, "echo '### {doc}:{} (background)' >&2", b.line).unwrap();
                writeln!(s, "{command} >'{}' 2>&1 &", log.display()).unwrap();
                writeln!(s, "BG=\"$BG $!\"").unwrap();
                writeln!(s, "wait_for '{}' \"$!\"", rewrite(ready, root)).unwrap();
            }
        }
    }
    s
}

/// Runs the `sh` blocks of `doc` (a path relative to the repository root); panics with the
/// shell's output and the background logs if any command fails.
fn run_doc(doc: &str) {
    // The documents live at the repository root, two levels above this crate.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let markdown = std::fs::read_to_string(repo.join(doc)).unwrap();
    let blocks = blocks(&markdown);
    assert!(
        blocks.iter().any(|b| b.mode == Mode::Run),
        "{doc}: no runnable block"
    );

    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let bin_dir = root.join("bin");
    for d in ["bin", "tmp", "var/lib", "var/backups", "etc", "run"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_cardvault"), bin_dir.join("cardvault")).unwrap();
    let script_path = root.join("script.sh");
    std::fs::write(&script_path, script(doc, &blocks, root)).unwrap();

    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let stdout_path = root.join("stdout.log");
    let stderr_path = root.join("stderr.log");
    let mut cmd = Command::new("bash");
    cmd.arg(&script_path)
        .current_dir(root)
        .env("PATH", path)
        .env("TMPDIR", root.join("tmp"))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("CARDVAULT_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            std::thread::sleep(Duration::from_secs(2));
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if status.is_some_and(|s| s.success()) {
        return;
    }
    let mut report = format!(
        "{doc}: the documented commands failed ({}).\n--- stderr (each block starts with ### FILE:LINE) ---\n{}\n--- stdout ---\n{}",
        status.map_or_else(|| "timed out".to_owned(), |s| s.to_string()),
        std::fs::read_to_string(&stderr_path).unwrap_or_default(),
        std::fs::read_to_string(&stdout_path).unwrap_or_default(),
    );
    for entry in std::fs::read_dir(root).unwrap() {
        let p: PathBuf = entry.unwrap().path();
        if p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("background-"))
        {
            let log = std::fs::read_to_string(&p).unwrap_or_default();
            write!(report, "\n--- {} ---\n{log}", p.display()).unwrap();
        }
    }
    panic!("{report}");
}

#[test]
fn readme_commands_run_as_written() {
    run_doc("README.md");
}

#[test]
fn operations_commands_run_as_written() {
    // The page is written for the operator principal (`apikey create --operator`); a build
    // without it cannot run the bootstrap.
    let help = Command::new(env!("CARGO_BIN_EXE_cardvault"))
        .args(["apikey", "create", "--help"])
        .output()
        .unwrap();
    if !String::from_utf8_lossy(&help.stdout).contains("--operator") {
        eprintln!(
            "SKIPPED: this build has no `apikey create --operator`, which docs/operations.md uses"
        );
        return;
    }
    // "Running several daemons on PostgreSQL" creates this database; the page's own last block
    // (skipped here: the daemons still run) says how to remove it.
    let dropped = || {
        Command::new("dropdb")
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "--if-exists",
                "--force",
            ])
            .arg(demo_database())
            .status()
    };
    struct DropAfter<F: Fn() -> std::io::Result<std::process::ExitStatus>>(F);
    impl<F: Fn() -> std::io::Result<std::process::ExitStatus>> Drop for DropAfter<F> {
        fn drop(&mut self) {
            let _ = (self.0)();
        }
    }
    let _drop = DropAfter(dropped);
    run_doc("docs/operations.md");
}

#[test]
fn markers_are_parsed() {
    let md = "text\n\n<!-- docs-test: skip (needs root) -->\n```sh\nuseradd x\n```\n\n```text\nnot run\n```\n\n<!-- docs-test: background, ready when /run/cardvault/cardvault.sock exists -->\n```sh\ncardvault serve\n```\n```sh\necho hi\n```\n";
    let b = blocks(md);
    assert_eq!(b.len(), 3);
    assert_eq!(b[0].mode, Mode::Skip);
    assert_eq!(
        b[1].mode,
        Mode::Background {
            ready: "/run/cardvault/cardvault.sock".to_owned()
        }
    );
    assert_eq!(b[2].mode, Mode::Run);
    assert_eq!(b[2].text, "echo hi\n");
    assert_eq!(
        rewrite("cargo run --release -- serve --dev", Path::new("/r")),
        "cardvault serve --dev --socket /r/tmp/cardvault-dev/cardvault.sock"
    );
    assert_eq!(
        rewrite(
            "ls /var/lib/cardvault-restored /etc/cardvault/x",
            Path::new("/r")
        ),
        "ls /r/var/lib/cardvault-restored /r/etc/cardvault/x"
    );
}
