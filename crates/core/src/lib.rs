//! Thingline's domain: the types and rules every protocol adapter and every storage backend share.
//! Nothing in this crate does I/O; everything here is testable as plain functions.

pub mod classes;
pub mod email;
pub mod error;
pub mod form;
pub mod geo;
pub mod ids;
pub mod json;
pub mod keys;
pub mod model;
pub mod query;
pub mod time;

pub use error::{Error, Result};
