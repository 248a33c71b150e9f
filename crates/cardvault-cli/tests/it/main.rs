//! The `cardvault` command's tests, one binary (rustls style): each module is a former test file.
//! The harnesses `daemon_crash` (kills daemons under load) and `leak_scan` (scans every file a
//! daemon wrote) stay binaries of their own, run as `cargo test --test NAME` in docs/harnesses.md.
#![cfg(test)]

mod common;

mod audit_cli;
mod backup_cli;
mod cli;
mod database_flag;
mod docs;
mod merchant_password_cli;
mod serve_process;
