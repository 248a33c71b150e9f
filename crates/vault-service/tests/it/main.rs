//! vault-service's integration tests, one binary (rustls style): one module per theme, helpers
//! in `common` (from `vault-testkit`, plus what only these tests need).
//!
//! Two tests are binaries of their own, because each re-executes its own test binary as a child
//! process (`current_exe() --exact <test>`): `tests/crash.rs` kills its child with SIGKILL
//! mid-write, and `tests/process_lock.rs` needs a second process to meet the vault's OS file
//! lock. Apart, each child loads only its own test, and no other test shares the parent process
//! while it holds the lock or reopens after a kill.
//!
//! `#![cfg(test)]` (always true here) marks the whole binary as test code for clippy's
//! `allow-*-in-tests` (clippy.toml), helpers outside `#[test]` functions included.
#![cfg(test)]

mod common;

mod admin;
mod audit;
mod backup;
mod idempotency;
mod library;
mod location;
mod model;
mod shared;
