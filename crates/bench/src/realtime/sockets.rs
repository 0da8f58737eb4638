//! The clients of one target: their runtime, opening `n` of them (at most
//! `--connect-concurrency` in setup at once, the target refused below 99 % opened), and closing
//! them to collect their records.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use rustls::pki_types::ServerName;
use serde_json::json;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_rustls::TlsConnector;

use super::client::{Opened, Shared, SocketOutput, SocketPlan, socket_task};
use super::{Fixture, NSP, SOCKETS_PER_USER, TargetSpec};
use crate::cli::{RealtimeCommon, secs};

/// Name of the client runtime's threads (their CPU time is read from /proc/self/task).
pub const CLIENT_THREAD: &str = "rt-client";
/// Below this fraction of sockets opened (after one retry each) the target is not measured.
const MIN_OPENED: f64 = 0.99;
/// How long the client tasks get to close and hand back their records.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// The runtime of the client tasks: `--client-threads` workers named [`CLIENT_THREAD`].
pub fn client_runtime(common: &RealtimeCommon) -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(common.client_threads)
        .thread_name(CLIENT_THREAD)
        .enable_all()
        .build()
        .context("building the clients' runtime")
}

/// The sockets of one target, open (or failed) and reading.
pub struct OpenSockets {
    pub shared: Arc<Shared>,
    handles: Vec<tokio::task::JoinHandle<SocketOutput>>,
    stop_tx: watch::Sender<bool>,
    pub opened: usize,
    pub retries: Vec<String>,
    pub failures: Vec<String>,
    pub open_seconds: f64,
}

/// Open `n` sockets against `target` (authenticated and subscribed to the fixture's thing), at
/// most `--connect-concurrency` in setup at once; fails below [`MIN_OPENED`]. Each socket keeps
/// room for `capacity` records.
pub async fn open_sockets(
    common: &RealtimeCommon,
    target: &TargetSpec<'_>,
    fixture: &Fixture,
    clients: &tokio::runtime::Handle,
    n: usize,
    capacity: usize,
) -> Result<OpenSockets> {
    let label = target.label;
    let resource = format!("/things/{}", fixture.thing_token);
    let open_timeout = secs(common.open_timeout).max(Duration::from_millis(100));
    let plan = Arc::new(SocketPlan {
        addr: target.addr,
        server_name: ServerName::from(target.addr.ip()),
        connector: tls_connector(target.cert)?,
        url: format!("wss://{}/socket.io/?EIO=4&transport=websocket", target.addr),
        data_prefix: format!("42{NSP},[{},", serde_json::to_string(&resource).context("topic")?),
        subscribe_frame: format!(
            "42{NSP},2{}",
            serde_json::to_string(&json!(["subscribe", {"resource": resource}])).context("subscribe frame")?
        ),
        capacity,
        open_timeout,
    });
    let shared = Arc::new(Shared {
        base: Instant::now(),
        deliveries: AtomicU64::new(0),
        topic_errors: AtomicU64::new(0),
        disconnects: AtomicU64::new(0),
    });

    eprintln!("{label}: opening {n} Socket.IO clients ({} client threads)", common.client_threads);
    let open_started = Instant::now();
    let gate = Arc::new(Semaphore::new(common.connect_concurrency));
    let (stop_tx, stop_rx) = watch::channel(false);
    let (opened_tx, mut opened_rx) = mpsc::unbounded_channel::<Opened>();
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let session = fixture
            .sessions
            .get(i / SOCKETS_PER_USER)
            .ok_or_else(|| anyhow!("socket {i} has no session (only {} users)", fixture.sessions.len()))?;
        let auth_frame = format!(
            "42{NSP},1{}",
            serde_json::to_string(&json!(["authenticate", {"sessionToken": session}])).context("authenticate frame")?
        );
        handles.push(clients.spawn(socket_task(
            plan.clone(),
            auth_frame,
            shared.clone(),
            gate.clone(),
            opened_tx.clone(),
            stop_rx.clone(),
        )));
    }
    drop(opened_tx);
    let mut opened = 0usize;
    let mut retries = Vec::new();
    let mut failures = Vec::new();
    // Each attempt has its own deadline; this one only guards against a task that never reports.
    let all_opened_by = tokio::time::Instant::now()
        + open_timeout * 2 * (n.div_ceil(common.connect_concurrency) as u32).max(1)
        + Duration::from_secs(10);
    while opened + failures.len() < n {
        match tokio::time::timeout_at(all_opened_by, opened_rx.recv()).await {
            Ok(Some(Opened::Ok { retried })) => {
                opened += 1;
                retries.extend(retried);
            }
            Ok(Some(Opened::Failed(err))) => failures.push(err),
            Ok(None) => break,
            Err(_) => {
                failures.push(format!("{} sockets did not report within the deadline", n - opened));
                break;
            }
        }
    }
    let open_seconds = open_started.elapsed().as_secs_f64();
    if !retries.is_empty() {
        eprintln!("{label}: RETRIED {} socket opens: {}", retries.len(), samples(&retries));
    }
    eprintln!("{label}: opened {opened}/{n} sockets in {open_seconds:.1} s");
    if !failures.is_empty() {
        eprintln!("{label}: FAILED to open {} sockets (after a retry): {}", failures.len(), samples(&failures));
    }
    let sockets = OpenSockets { shared, handles, stop_tx, opened, retries, failures, open_seconds };
    if (opened as f64) < n as f64 * MIN_OPENED {
        let failures = samples(&sockets.failures);
        close_sockets(sockets, label).await;
        bail!("{label}: only {opened}/{n} sockets opened: {failures}");
    }
    Ok(sockets)
}

/// Tell every client task to close its socket and collect their records (aborting those that
/// do not stop within [`STOP_TIMEOUT`]).
pub async fn close_sockets(sockets: OpenSockets, label: &str) -> Vec<SocketOutput> {
    let _ = sockets.stop_tx.send(true);
    let stop_by = tokio::time::Instant::now() + STOP_TIMEOUT;
    let mut outputs = Vec::with_capacity(sockets.handles.len());
    let mut unjoined = 0usize;
    for handle in sockets.handles {
        let abort = handle.abort_handle();
        match tokio::time::timeout_at(stop_by, handle).await {
            Ok(Ok(output)) => outputs.push(output),
            Ok(Err(err)) => eprintln!("note: {label}: a client task failed: {err}"),
            Err(_) => {
                abort.abort();
                unjoined += 1;
            }
        }
    }
    if unjoined > 0 {
        eprintln!("note: {label}: {unjoined} client tasks did not stop within {STOP_TIMEOUT:?} (aborted)");
    }
    outputs
}

/// A rustls client config that trusts exactly the certificate(s) in `cert`.
fn tls_connector(cert: &Path) -> Result<TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    for der in crate::tls::read_certs(cert)? {
        roots.add(der).with_context(|| format!("trusting {}", cert.display()))?;
    }
    if roots.is_empty() {
        bail!("no certificate in {}", cert.display());
    }
    let config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

fn samples(errors: &[String]) -> String {
    errors.iter().take(3).cloned().collect::<Vec<_>>().join(" | ")
}
