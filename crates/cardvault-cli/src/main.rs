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
