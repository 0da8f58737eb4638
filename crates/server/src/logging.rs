//! Structured logs through `tracing`: a filter from `THINGLINE_LOG`, text or JSON lines, written to
//! stderr by a background thread so that a request never waits for the terminal or the pipe (the
//! access log writes a line per request).

use parking_lot::Mutex;
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

/// Lines queued for the writer thread before a logging call waits for it (never dropped).
const QUEUED_LINES: usize = 64 * 1024;

/// The writer thread's guard: dropping it writes what is queued and stops the thread.
static WRITER: Mutex<Option<WorkerGuard>> = Mutex::new(None);

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
    let mut slot = WRITER.lock();
    if slot.is_some() {
        return;
    }
    // Lossless: when the queue is full a logging call waits, rather than a line being dropped.
    // The writer thread writes what is queued through a buffer and flushes once the queue is
    // empty: one system call per batch of lines under load, every line out at once when idle.
    let stderr = std::io::BufWriter::with_capacity(64 * 1024, std::io::stderr());
    let (writer, guard) = NonBlockingBuilder::default().lossy(false).buffered_lines_limit(QUEUED_LINES).finish(stderr);
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_ansi(ansi);
    let installed = if json { builder.json().flatten_event(true).try_init() } else { builder.try_init() };
    if installed.is_ok() {
        *slot = Some(guard);
    }
}

/// Writes every queued line and stops the writer thread (the end of `main`); later lines are lost.
pub fn flush() {
    drop(WRITER.lock().take());
}
