//! Sessions.

pub mod ids;
pub mod secret;
pub mod tracker;
