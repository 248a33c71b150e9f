//! The `cardvault` command: create a vault, run the daemon, administer it, load-test it.
//!
//! Exit codes: 0 success, 1 runtime error (one line on stderr, never a card number or key),
//! 2 usage error (from the argument parser).
#![forbid(unsafe_code)]
// A command-line tool prints: that is its interface.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;

use clap::Parser;

mod cli;

fn main() -> ExitCode {
    quiet_on_closed_stdout();
    // The gateway's audit actions and `sessions` scope, for what the CLI reads and parses offline.
    cardvault::gateway::register();
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            cli::report_error(&e);
            ExitCode::from(1)
        }
    }
}

/// A reader that went away (`cardvault audit tail | head -3`) makes `println!` panic with
/// "failed printing to stdout: Broken pipe" (Rust ignores SIGPIPE). That is no bug to report with
/// a backtrace: the command stops quietly with exit code 1 (its output was not all delivered).
/// Every other panic keeps the default report.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(1);
        }
        default(info);
    }));
}
