//! The Redis-protocol server.

pub mod frame;
pub mod keymode;
