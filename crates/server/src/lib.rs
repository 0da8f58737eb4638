//! The Thingline server: the platform service every protocol calls ([`platform`]), the protocol
//! adapters ([`http`], [`socketio`], [`mqtt`], [`coap`]), configuration, TLS, listeners and the `thingline` command
//! line. Adapters import the platform and `thingline_core` only, never each other, the store or
//! the bus; [`server`] puts them together.

pub mod cli;
pub mod coap;
pub mod config;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod mqtt;
pub mod net;
pub mod platform;
pub mod server;
pub mod socketio;
pub mod tls;
pub mod wire;

pub use config::Config;
pub use server::{RunningServer, start};

/// Installs the process-wide rustls crypto provider (aws-lc-rs). Several dependencies enable more
/// than one provider, and rustls then refuses to pick; call this first in `main` and in tests.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
