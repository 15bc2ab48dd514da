//! Sessions.

pub mod ids;
