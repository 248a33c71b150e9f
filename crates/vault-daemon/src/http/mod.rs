//! HTTP plumbing shared by every route: the route table and dispatch, responses and error
//! bodies, headers given at most once, and reading bodies within the size and time limits.

pub(crate) mod headers;
pub(crate) mod limits;
pub(crate) mod log_limit;
pub(crate) mod response;
pub(crate) mod router;
