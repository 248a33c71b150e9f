//! Route handlers, one file per family.

pub(crate) mod admin;
pub(crate) mod audit;
pub(crate) mod gateway;
pub(crate) mod hosted;
pub(crate) mod hosted_fields;
pub(crate) mod ops;
pub(crate) mod payments;
pub(crate) mod tokens;
