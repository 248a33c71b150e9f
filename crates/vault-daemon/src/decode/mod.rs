//! Request bodies into typed requests: JSON against a field schema, the gateway's form or JSON
//! fields, and the validation that names every refused field.

pub(crate) mod form;
pub(crate) mod json;
pub(crate) mod validate;
