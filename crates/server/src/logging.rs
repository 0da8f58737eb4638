//! Structured logs through `tracing`: a filter from `THINGLINE_LOG`, text or JSON lines.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once (later calls, e.g. from tests, are ignored).
pub fn init(filter: &str, json: bool) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = if json { builder.json().flatten_event(true).try_init() } else { builder.try_init() };
}
