//! `thingline-bench`: the load generator that measures Thingline against a bare
//! axum + rustls reference server (its MQTT broker against Mosquitto, its CoAP adapter against a
//! bare UDP echo and against its own Socket.IO), both driven by the same client code in the same
//! run.
//!
//! `main` only installs the TLS crypto provider, parses the command line and hands over
//! to [`cli::dispatch`]. See `cli.rs` for the commands and flags.

mod api;
mod app;
mod cli;
mod coap;
mod driver;
mod filesystem;
mod floor;
mod metrics_cost;
mod mqtt;
mod panel;
mod realtime;
mod reference;
mod report;
mod scale;
mod scenarios;
mod seed;
mod server;
mod startup;
mod tls;

use anyhow::Context;
use clap::Parser;

fn main() -> anyhow::Result<()> {
    // Several crates in the tree enable both rustls providers; pick one before anything
    // builds a TLS config. An error only means a provider is already installed.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = cli::Cli::parse();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("building the tokio runtime")?;
    runtime.block_on(cli::dispatch(cli))
}
