//! vault-gateway's integration tests, one binary: one module per theme (`login_memory.rs`, which
//! measures the process's memory, stays a binary of its own).
//!
//! `#![cfg(test)]` (always true here) marks the whole binary as test code for clippy's
//! `allow-*-in-tests` (clippy.toml), helpers outside `#[test]` functions included.
#![cfg(test)]

#[path = "../../../vault-service/tests/common/mod.rs"]
mod common;

mod credentials;
mod no_leak;
mod one_click_marks;
mod record_macs;
mod seam;
mod session_tokens;
mod sessions;
