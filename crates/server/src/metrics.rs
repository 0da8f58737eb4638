//! The Prometheus metrics endpoint: `GET /metrics` on a listener of its own
//! (`THINGLINE_METRICS_ADDR`), plain HTTP and unauthenticated, meant for loopback or a private
//! network (a non-loopback address is served, with a warning in the log).
//!
//! Off by default: without the setting no recorder is installed, so the `metrics` facade's macros
//! used across the platform, the adapters and the store do nothing, and the HTTP middleware
//! (`http/observe.rs`) skips its metric work ([`crate::platform::metrics::enabled`]). With it, the
//! `metrics-exporter-prometheus` recorder is installed once per process (its own HTTP listener and
//! push gateway are not compiled in) and our own listener ([`crate::net`], like every other)
//! renders it.
//!
//! Most series are recorded where things happen (requests, group commits, checkpoints, refusals,
//! failed logins, store errors). What already has a counter elsewhere is read at scrape time
//! instead, costing nothing in between: the fan-out's and the bus's counters
//! ([`Platform::realtime_snapshot`]), live connections and subscriptions by protocol
//! ([`crate::platform::metrics::Protocol`]), and the HTTP listeners' open connections.
//! docs/observability.md lists every series with its labels.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

use crate::net;
use crate::platform::Platform;
use crate::platform::metrics::{self as counted, Protocol};

/// How often the recorder's histograms are drained into their buckets between scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);
/// Connections the metrics listener takes at once (a scraper or two, a curl).
const MAX_CONNECTIONS: usize = 64;

/// Buckets of request latencies, seconds: 250 µs to 30 s (long-polls wait up to their keepAlive).
const HTTP_SECONDS: &[f64] =
    &[0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Buckets of group-commit durations, seconds (an fsync is a few ms on a disk, more under load).
const COMMIT_SECONDS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];
/// Buckets of appends per group (at most 512, `MAX_OPS_PER_COMMIT`).
const COMMIT_APPENDS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
/// Buckets of values per group (at most 20,000 unless one request is larger).
const COMMIT_VALUES: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 20000.0];

/// Limiter names that can refuse (the `limiter` label of `thingline_rate_limited_total`), so
/// that every series exists from the start at 0.
const LIMITERS: &[&str] = &[
    "app-login",
    "panel-login",
    "activation",
    "realtime-connections-per-user",
    "realtime-subscriptions-per-connection",
    "realtime-streams-per-thing",
    "panel-live-streams",
    "coap-rate",
    "coap-observers-per-address",
];

/// The process's recorder, installed by the first server that asks (tests start several
/// servers in one process; the facade has one global recorder).
static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder (once per process) and returns its handle.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let mut builder = PrometheusBuilder::new();
    for (name, buckets) in [
        ("thingline_http_request_duration_seconds", HTTP_SECONDS),
        ("thingline_group_commit_duration_seconds", COMMIT_SECONDS),
        ("thingline_group_commit_appends", COMMIT_APPENDS),
        ("thingline_group_commit_values", COMMIT_VALUES),
    ] {
        builder = builder.set_buckets_for_metric(Matcher::Full(name.into()), buckets).context("histogram buckets")?;
    }
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    // Another server of this process may have won the race; then its recorder is the one.
    if metrics::set_global_recorder(recorder).is_err() {
        return HANDLE.get().cloned().context("a metrics recorder of another kind is installed in this process");
    }
    let handle = HANDLE.get_or_init(|| handle).clone();
    counted::set_enabled();
    describe();
    metrics::gauge!("thingline_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    for limiter in LIMITERS {
        metrics::counter!("thingline_rate_limited_total", "limiter" => *limiter).increment(0);
    }
    for kind in ["app", "panel"] {
        metrics::counter!("thingline_login_failures_total", "kind" => kind).increment(0);
    }
    Ok(handle)
}

/// The HELP lines.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!("thingline_build_info", "Always 1; the version label is the running build's.");
    describe_counter!("thingline_http_requests_total", "HTTP requests answered, by route template, method and status.");
    describe_histogram!(
        "thingline_http_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time from a request's arrival to its response head, by route template and method."
    );
    describe_counter!("thingline_values_committed_total", "Timeline values committed by the group-commit writers.");
    describe_histogram!("thingline_group_commit_appends", "Write requests (appends) per group commit.");
    describe_histogram!("thingline_group_commit_values", "Values committed per group commit.");
    describe_histogram!(
        "thingline_group_commit_duration_seconds",
        metrics::Unit::Seconds,
        "Time a group commit took, from the writer taking the group to its last answer."
    );
    describe_gauge!("thingline_sqlite_wal_size_bytes", metrics::Unit::Bytes, "Size of the SQLite -wal file.");
    describe_counter!("thingline_sqlite_wal_checkpoints_total", "WAL checkpoints run, by mode and result.");
    describe_counter!("thingline_store_errors_total", "Database failures, by backend and kind.");
    describe_counter!("thingline_rate_limited_total", "Requests and attempts refused by a limit, by limiter.");
    describe_counter!("thingline_login_failures_total", "Failed logins (wrong email or password), app or panel.");
    describe_gauge!("thingline_connections", "Open connections by protocol.");
    describe_gauge!("thingline_subscriptions", "Live subscriptions by protocol.");
    describe_gauge!("thingline_realtime_connections", "Realtime connections (Socket.IO, HTTP streams).");
    describe_gauge!("thingline_realtime_subscriptions", "Subscriptions served by the fan-out.");
    describe_gauge!("thingline_fanout_groups", "Fan-out groups (one bus subscription each).");
    describe_gauge!("thingline_bus_subscriptions", "Bus subscriptions (fan-out groups, thing streams, watchers).");
    describe_counter!("thingline_bus_published_total", "Events published on the bus.");
    describe_counter!("thingline_fanout_rendered_total", "Events rendered by the fan-out (once per event and group).");
    describe_counter!("thingline_fanout_delivered_total", "Payloads handed to subscribers.");
    describe_counter!("thingline_fanout_dropped_total", "Subscribers dropped: too slow (queue full) or lagged.");
    describe_counter!("thingline_bus_lagged_total", "Bus receivers that lagged.");
}

/// What the scrape reads besides the recorder.
#[derive(Clone)]
pub struct Sources {
    pub platform: Arc<Platform>,
    /// The HTTPS and plain HTTP listeners' open connections.
    pub http_listeners: Vec<net::ConnectionCount>,
}

#[derive(Clone)]
struct Scrape {
    handle: PrometheusHandle,
    sources: Sources,
}

/// Binds the metrics listener (one clear line naming `THINGLINE_METRICS_ADDR` when it cannot),
/// warning when the address is not a loopback one.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    let tcp = net::bind(addr, "metrics", "THINGLINE_METRICS_ADDR").await?;
    if !addr.ip().is_loopback() {
        tracing::warn!(
            %addr,
            "the metrics listener is plain HTTP without authentication: keep it on loopback or a private \
             network (THINGLINE_METRICS_ADDR)"
        );
    }
    Ok(tcp)
}

/// Serves `GET /metrics` on `tcp` until `shutdown`, and keeps the recorder's histograms drained.
/// Returns the address bound and the task to run.
pub fn serve(
    tcp: tokio::net::TcpListener,
    handle: PrometheusHandle,
    sources: Sources,
    peer_timeout: net::PeerTimeout,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, impl Future<Output = ()> + Send + 'static)> {
    let settings = net::ConnSettings { max_connections: MAX_CONNECTIONS, peer_timeout };
    let listener = net::Listener::new(tcp, None, settings, shutdown.clone())?;
    let addr = listener.local_addr();
    let upkeep = handle.clone();
    let router = Router::new()
        .route("/metrics", get(scrape))
        .fallback(|| async { (StatusCode::NOT_FOUND, "Not found: the metrics are at /metrics\n") })
        .with_state(Scrape { handle, sources });
    let task = async move {
        let keep = async {
            let mut every = tokio::time::interval(UPKEEP_EVERY);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = every.tick() => upkeep.run_upkeep(),
                }
            }
        };
        tokio::join!(net::serve_http(listener, router, Duration::from_secs(5)), keep);
    };
    Ok((addr, task))
}

/// One scrape: the figures read at scrape time, then the recorder's text exposition.
async fn scrape(State(s): State<Scrape>) -> impl IntoResponse {
    collect(&s.sources);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8"), (header::CACHE_CONTROL, "no-store")],
        s.handle.render(),
    )
}

/// Sets the series whose counts live elsewhere.
fn collect(sources: &Sources) {
    let r = sources.platform.realtime_snapshot();
    metrics::gauge!("thingline_realtime_connections").set(r.connections as f64);
    metrics::gauge!("thingline_realtime_subscriptions").set(r.subscriptions as f64);
    metrics::gauge!("thingline_fanout_groups").set(r.groups as f64);
    metrics::gauge!("thingline_bus_subscriptions").set(r.bus_subscriptions as f64);
    metrics::counter!("thingline_bus_published_total").absolute(r.published);
    metrics::counter!("thingline_fanout_rendered_total").absolute(r.rendered);
    metrics::counter!("thingline_fanout_delivered_total").absolute(r.delivered);
    metrics::counter!("thingline_fanout_dropped_total", "reason" => "slow").absolute(r.dropped_slow);
    metrics::counter!("thingline_fanout_dropped_total", "reason" => "lagged").absolute(r.dropped_lagged);
    metrics::counter!("thingline_bus_lagged_total").absolute(r.lagged);
    let http: usize = sources.http_listeners.iter().map(net::ConnectionCount::open).sum();
    for protocol in Protocol::ALL {
        let connections = match protocol {
            Protocol::Http => Some(http as f64),
            // Connectionless: its observations are its subscriptions.
            Protocol::Coap => None,
            p => Some(counted::connections(p) as f64),
        };
        if let Some(n) = connections {
            metrics::gauge!("thingline_connections", "protocol" => protocol.label()).set(n);
        }
        metrics::gauge!("thingline_subscriptions", "protocol" => protocol.label())
            .set(counted::subscriptions(protocol) as f64);
    }
    let backend = sources.platform.store().backend();
    metrics::counter!("thingline_values_committed_total", "backend" => backend).increment(0);
    for kind in ["storage_full", "unavailable", "internal"] {
        metrics::counter!("thingline_store_errors_total", "backend" => backend, "kind" => kind).increment(0);
    }
}
