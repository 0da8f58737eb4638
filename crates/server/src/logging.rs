//! Structured logs through `tracing`: a filter from `THINGLINE_LOG`, text or JSON lines.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once (later calls, e.g. from tests, are ignored).
///
/// rustls is quiet below `error` unless the filter names it: it warns on every TLS connection
/// whose client sends an IP address as the server name (mosquitto's clients and many devices
/// that connect by address do), which is allowed here and not worth a line each.
pub fn init(filter: &str, json: bool) {
    let filter = if filter.contains("rustls") { filter.to_owned() } else { format!("{filter},rustls=error") };
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("info,rustls=error"));
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = if json { builder.json().flatten_event(true).try_init() } else { builder.try_init() };
}
