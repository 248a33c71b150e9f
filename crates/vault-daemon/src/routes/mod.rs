//! Route handlers, one file per family.

pub(crate) mod admin;
pub(crate) mod audit;
pub(crate) mod gateway;
pub(crate) mod ops;
pub(crate) mod tokens;
