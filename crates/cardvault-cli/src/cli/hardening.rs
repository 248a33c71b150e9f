//! Process hardening for every command (called first thing by `cli::run`): no core dumps, not dumpable (no ptrace by other processes of
//! the same user, no `/proc/<pid>/mem` reads). A core file would hold keys and card numbers.
//!
//! Both calls go through rustix's safe wrappers; no `unsafe` here.

use anyhow::Context;
use rustix::process::{Resource, Rlimit, setrlimit};

/// Sets the core-file size limit to zero (soft and hard) and, on Linux, clears the dumpable flag.
pub(crate) fn disable_core_dumps() -> anyhow::Result<()> {
    setrlimit(
        Resource::Core,
        Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    )
    .context("setting RLIMIT_CORE to 0")?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .context("prctl(PR_SET_DUMPABLE, 0)")?;
    Ok(())
}

/// Prints `hardening: core-limit=SOFT/HARD dumpable=BOOL` on stderr (a test hook: the integration
/// tests check that every command, whatever its arguments, runs hardened).
pub(crate) fn print_state() {
    let limit = rustix::process::getrlimit(Resource::Core);
    let show = |v: Option<u64>| v.map_or_else(|| "unlimited".to_owned(), |n| n.to_string());
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let dumpable = rustix::process::dumpable_behavior()
        .map(|d| (d != rustix::process::DumpableBehavior::NotDumpable).to_string())
        .unwrap_or_else(|_| "unknown".to_owned());
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let dumpable = "unknown";
    eprintln!(
        "hardening: core-limit={}/{} dumpable={dumpable}",
        show(limit.current),
        show(limit.maximum)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_limit_is_zero_afterwards() {
        // Runs in the test process; lowering a limit is always allowed.
        disable_core_dumps().expect("hardening succeeds");
        let limit = rustix::process::getrlimit(Resource::Core);
        assert_eq!(limit.current, Some(0));
        assert_eq!(
            rustix::process::dumpable_behavior().expect("prctl"),
            rustix::process::DumpableBehavior::NotDumpable
        );
    }
}
