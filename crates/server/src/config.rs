//! Settings: every one has a command-line flag, an environment variable and a key in an optional
//! TOML file. Precedence is flag > env > file > default (clap resolves flag and env; the file fills
//! what is still unset). The names are fixed by the product contract; see `thingline.example.toml`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use serde::Deserialize;

use crate::net::PeerTimeout;

/// The `serve` settings as given on the command line or in the environment.
#[derive(Debug, Clone, Default, Args)]
pub struct ConfigArgs {
    /// TOML configuration file.
    #[arg(long, env = "THINGLINE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory: embedded store and generated TLS material.
    #[arg(long, env = "THINGLINE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// HTTPS listener (app, thing, panel APIs, realtime).
    #[arg(long, env = "THINGLINE_HTTPS_ADDR")]
    pub https_addr: Option<String>,
    /// Plain HTTP listener for devices only; unset or `off` disables it.
    #[arg(long, env = "THINGLINE_HTTP_ADDR")]
    pub http_addr: Option<String>,
    /// MQTT listener; `off` disables it.
    #[arg(long, env = "THINGLINE_MQTT_ADDR")]
    pub mqtt_addr: Option<String>,
    /// MQTT over TLS listener; `off` disables it.
    #[arg(long, env = "THINGLINE_MQTTS_ADDR")]
    pub mqtts_addr: Option<String>,
    /// CoAP (UDP) listener; `off` disables it.
    #[arg(long, env = "THINGLINE_COAP_ADDR")]
    pub coap_addr: Option<String>,
    /// Prometheus metrics at `GET /metrics`, plain HTTP and unauthenticated: a loopback or
    /// private address; unset or `off` (the default) records no metrics at all.
    #[arg(long, env = "THINGLINE_METRICS_ADDR")]
    pub metrics_addr: Option<String>,
    /// PEM certificate chain; unset: a self-signed certificate kept in the data dir.
    #[arg(long, env = "THINGLINE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key matching `--tls-cert`.
    #[arg(long, env = "THINGLINE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// `sqlite://PATH` (default: `<data dir>/thingline.db`) or `postgres://…`.
    #[arg(long, env = "THINGLINE_STORE_URL")]
    pub store_url: Option<String>,
    /// `nats://…` to share realtime events between nodes; unset: in-process.
    #[arg(long, env = "THINGLINE_BUS_URL")]
    pub bus_url: Option<String>,
    /// NATS subject prefix shared by the nodes of one installation (default `thingline`); two
    /// installations on one NATS need different prefixes.
    #[arg(long, env = "THINGLINE_BUS_PREFIX")]
    pub bus_prefix: Option<String>,
    /// Panel account created at start if no panel account has this email.
    #[arg(long, env = "THINGLINE_PANEL_EMAIL")]
    pub panel_email: Option<String>,
    /// Password of that panel account.
    #[arg(long, env = "THINGLINE_PANEL_PASSWORD", hide_env_values = true)]
    pub panel_password: Option<String>,
    /// Log filter (`info`, `debug`, `thingline=debug,info`, …).
    #[arg(long, env = "THINGLINE_LOG")]
    pub log: Option<String>,
    /// `text` or `json` (one JSON object per line).
    #[arg(long, env = "THINGLINE_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Largest accepted request body in bytes (default 1 MiB).
    #[arg(long, env = "THINGLINE_BODY_LIMIT")]
    pub body_limit: Option<usize>,
    /// Seconds a request body may take to arrive in full, counted from the request head; a
    /// slower (or stalled) body ends with 408 and the connection is closed (default 30).
    #[arg(long, env = "THINGLINE_BODY_TIMEOUT")]
    pub body_timeout: Option<u64>,
    /// Most concurrent connections per listener (default 10000).
    #[arg(long, env = "THINGLINE_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// `full` (default: an acknowledged write survives power loss) or `normal` (survives a crash
    /// of the process, may lose the last commits on power loss; faster on slow disks).
    #[arg(long, env = "THINGLINE_DURABILITY")]
    pub durability: Option<String>,
    /// SMTP server for grant confirmation emails (`smtp://host:port`, `smtps://user:pass@host`).
    #[arg(long, env = "THINGLINE_SMTP_URL")]
    pub smtp_url: Option<String>,
    /// Sender address of those emails.
    #[arg(long, env = "THINGLINE_SMTP_FROM")]
    pub smtp_from: Option<String>,
    /// Most realtime connections of one app user: Socket.IO connections and HTTP subscriptions
    /// (default 50).
    #[arg(long, env = "THINGLINE_REALTIME_CONNECTIONS_PER_USER")]
    pub realtime_connections_per_user: Option<usize>,
    /// Most topics one Socket.IO connection may subscribe to (default 100).
    #[arg(long, env = "THINGLINE_REALTIME_SUBSCRIPTIONS_PER_CONNECTION")]
    pub realtime_subscriptions_per_connection: Option<usize>,
    /// Messages queued for one realtime subscriber (an HTTP subscription, a Socket.IO
    /// connection) before it is dropped as too slow (default 256).
    #[arg(long, env = "THINGLINE_REALTIME_QUEUE")]
    pub realtime_queue: Option<usize>,
    /// Most device subscriptions of one thing at once: thing streams (default 10).
    #[arg(long, env = "THINGLINE_REALTIME_STREAMS_PER_THING")]
    pub realtime_streams_per_thing: Option<usize>,
    /// Seconds a Socket.IO connection may stay without a successful `authenticate` (default 10).
    #[arg(long, env = "THINGLINE_REALTIME_AUTH_TIMEOUT")]
    pub realtime_auth_timeout: Option<u64>,
    /// Seconds a vanished peer (no FIN/RST) may hold a connection: unacknowledged data and TCP
    /// keepalive probes end it after about that long (default 60, 1..=32767).
    #[arg(long, env = "THINGLINE_TCP_USER_TIMEOUT")]
    pub tcp_user_timeout: Option<u64>,
    /// Most concurrent MQTT connections per MQTT listener (TCP, TLS) (default 100000).
    #[arg(long, env = "THINGLINE_MQTT_MAX_CONNECTIONS")]
    pub mqtt_max_connections: Option<usize>,
    /// Largest MQTT packet accepted, in bytes (default 262144); a larger one closes the
    /// connection.
    #[arg(long, env = "THINGLINE_MQTT_MAX_PACKET")]
    pub mqtt_max_packet: Option<usize>,
    /// QoS 1/2 messages in flight per MQTT client, each way (default 64, at most 65535): the
    /// client's publishes waiting for their commit, and messages sent and not yet acknowledged.
    #[arg(long, env = "THINGLINE_MQTT_MAX_INFLIGHT")]
    pub mqtt_max_inflight: Option<usize>,
    /// QoS 1 messages kept for one persistent MQTT session while its client is away (default
    /// 1000; later ones are dropped).
    #[arg(long, env = "THINGLINE_MQTT_SESSION_QUEUE")]
    pub mqtt_session_queue: Option<usize>,
    /// Seconds a persistent MQTT session outlives its connection (default 86400; an MQTT 5
    /// client's Session Expiry Interval is capped at it).
    #[arg(long, env = "THINGLINE_MQTT_SESSION_EXPIRY")]
    pub mqtt_session_expiry: Option<u64>,
    /// Most persistent MQTT sessions kept (default 100000).
    #[arg(long, env = "THINGLINE_MQTT_MAX_SESSIONS")]
    pub mqtt_max_sessions: Option<usize>,
    /// CoAP requests per second from one client IP address (default 1000, the same as the
    /// burst); beyond it requests are dropped unanswered.
    #[arg(long, env = "THINGLINE_COAP_RATE")]
    pub coap_rate: Option<u32>,
    /// Most CoAP observations (Observe registrations) from one client IP address (default 1000).
    #[arg(long, env = "THINGLINE_COAP_OBSERVERS_PER_ADDRESS")]
    pub coap_observers_per_address: Option<usize>,
    /// Most CoAP observations in all (default 100000).
    #[arg(long, env = "THINGLINE_COAP_MAX_OBSERVERS")]
    pub coap_max_observers: Option<usize>,
    /// Most CoAP exchanges remembered for deduplication (default 262144); when all are younger
    /// than the retransmission span, new requests get 5.03.
    #[arg(long, env = "THINGLINE_COAP_MAX_EXCHANGES")]
    pub coap_max_exchanges: Option<usize>,
    /// Milliseconds a confirmable CoAP request may wait for its answer before the server sends
    /// an empty ACK and answers separately (default 1000; 0 always answers separately).
    #[arg(long, env = "THINGLINE_COAP_SEPARATE_AFTER")]
    pub coap_separate_after: Option<u64>,
}

/// The same settings as keys of the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    https_addr: Option<String>,
    http_addr: Option<String>,
    mqtt_addr: Option<String>,
    mqtts_addr: Option<String>,
    coap_addr: Option<String>,
    metrics_addr: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    store_url: Option<String>,
    bus_url: Option<String>,
    bus_prefix: Option<String>,
    panel_email: Option<String>,
    panel_password: Option<String>,
    log: Option<String>,
    log_format: Option<String>,
    body_limit: Option<usize>,
    body_timeout: Option<u64>,
    max_connections: Option<usize>,
    durability: Option<String>,
    smtp_url: Option<String>,
    smtp_from: Option<String>,
    realtime_connections_per_user: Option<usize>,
    realtime_subscriptions_per_connection: Option<usize>,
    realtime_queue: Option<usize>,
    realtime_streams_per_thing: Option<usize>,
    realtime_auth_timeout: Option<u64>,
    tcp_user_timeout: Option<u64>,
    mqtt_max_connections: Option<usize>,
    mqtt_max_packet: Option<usize>,
    mqtt_max_inflight: Option<usize>,
    mqtt_session_queue: Option<usize>,
    mqtt_session_expiry: Option<u64>,
    mqtt_max_sessions: Option<usize>,
    coap_rate: Option<u32>,
    coap_observers_per_address: Option<usize>,
    coap_max_observers: Option<usize>,
    coap_max_exchanges: Option<usize>,
    coap_separate_after: Option<u64>,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub https_addr: SocketAddr,
    pub http_addr: Option<SocketAddr>,
    pub mqtt_addr: Option<SocketAddr>,
    pub mqtts_addr: Option<SocketAddr>,
    pub coap_addr: Option<SocketAddr>,
    /// The metrics listener (`THINGLINE_METRICS_ADDR`); `None`: no metrics are recorded.
    pub metrics_addr: Option<SocketAddr>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub store_url: String,
    pub bus_url: Option<String>,
    /// NATS subject prefix (`THINGLINE_BUS_PREFIX`).
    pub bus_prefix: String,
    pub panel_email: Option<String>,
    pub panel_password: Option<String>,
    pub log: String,
    pub log_json: bool,
    pub body_limit: usize,
    /// How long a request body may take to arrive in full (see [`crate::net::TimedBody`]).
    pub body_timeout: Duration,
    pub max_connections: usize,
    pub sync_full: bool,
    pub smtp_url: Option<String>,
    pub smtp_from: String,
    pub realtime: RealtimeSettings,
    /// Dead-peer detection on every accepted TCP connection.
    pub peer_timeout: PeerTimeout,
    pub mqtt: MqttSettings,
    pub coap: CoapSettings,
}

/// Limits of the CoAP endpoint.
#[derive(Debug, Clone, Copy)]
pub struct CoapSettings {
    /// Requests per second (and burst) from one client IP address.
    pub rate: u32,
    /// Observations from one client IP address.
    pub observers_per_address: usize,
    /// Observations in all.
    pub max_observers: usize,
    /// Exchanges remembered for deduplication.
    pub max_exchanges: usize,
    /// How long a confirmable request may wait for its answer before an empty ACK goes first.
    pub separate_after: Duration,
    /// Largest request or response body reassembled or served block-wise (`THINGLINE_BODY_LIMIT`).
    pub body_limit: usize,
}

/// Limits of the MQTT broker.
#[derive(Debug, Clone, Copy)]
pub struct MqttSettings {
    /// Connections per MQTT listener.
    pub max_connections: usize,
    /// Largest packet, bytes.
    pub max_packet: usize,
    /// QoS 1/2 messages in flight per client, each way.
    pub max_inflight: usize,
    /// QoS 1 messages kept per persistent session while its client is away.
    pub session_queue: usize,
    /// How long a persistent session outlives its connection.
    pub session_expiry: Duration,
    /// Persistent sessions kept.
    pub max_sessions: usize,
    /// How long a new connection has to send its CONNECT (`THINGLINE_REALTIME_AUTH_TIMEOUT`).
    pub connect_timeout: Duration,
    /// How long a write to a client may wait for it to read (`THINGLINE_BODY_TIMEOUT`).
    pub write_timeout: Duration,
}

/// Limits of the realtime paths (applied to the notifier's `RealtimeLimits` at start).
#[derive(Debug, Clone, Copy)]
pub struct RealtimeSettings {
    pub connections_per_user: usize,
    pub subscriptions_per_connection: usize,
    pub queue: usize,
    pub streams_per_thing: usize,
    /// How long a Socket.IO connection may stay unauthenticated.
    pub auth_timeout: Duration,
}

/// Default of [`RealtimeSettings::auth_timeout`], seconds.
pub const DEFAULT_REALTIME_AUTH_TIMEOUT_S: u64 = 10;

pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;
/// The largest `THINGLINE_MQTT_MAX_PACKET` (MQTT's own bound is 256 MiB; a value is 1 MiB at most).
pub const MAX_MQTT_PACKET: usize = 16 * 1024 * 1024;
/// `THINGLINE_BODY_TIMEOUT` when unset, seconds.
pub const DEFAULT_BODY_TIMEOUT_SECS: u64 = 30;

impl Config {
    /// Resolves flags/env (already in `args`) over the TOML file over the defaults.
    pub fn resolve(args: ConfigArgs) -> anyhow::Result<Config> {
        let file = match &args.config {
            Some(path) => load_file(path)?,
            None => FileConfig::default(),
        };
        let data_dir = args.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from("./thingline-data"));
        let store_url = args
            .store_url
            .or(file.store_url)
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("thingline.db").display()));
        let log_format = args.log_format.or(file.log_format).unwrap_or_else(|| "text".into());
        let log_json = match log_format.as_str() {
            "json" => true,
            "text" => false,
            other => bail!("THINGLINE_LOG_FORMAT must be `text` or `json`, not {other:?}"),
        };
        let durability = args.durability.or(file.durability).unwrap_or_else(|| "full".into());
        let sync_full = match durability.as_str() {
            "full" => true,
            "normal" => false,
            other => bail!("THINGLINE_DURABILITY must be `full` or `normal`, not {other:?}"),
        };
        let tls_cert = args.tls_cert.or(file.tls_cert);
        let tls_key = args.tls_key.or(file.tls_key);
        if tls_cert.is_some() != tls_key.is_some() {
            bail!("THINGLINE_TLS_CERT and THINGLINE_TLS_KEY must be set together");
        }
        let body_limit = args.body_limit.or(file.body_limit).unwrap_or(DEFAULT_BODY_LIMIT);
        if body_limit < 1024 {
            bail!("THINGLINE_BODY_LIMIT must be at least 1024 bytes");
        }
        let body_timeout =
            seconds("THINGLINE_BODY_TIMEOUT", args.body_timeout.or(file.body_timeout), DEFAULT_BODY_TIMEOUT_SECS)?;
        let at_least_one = |name: &str, v: Option<usize>, default: usize| match v.unwrap_or(default) {
            0 => Err(anyhow::anyhow!("{name} must be at least 1")),
            n => Ok(n),
        };
        let realtime = RealtimeSettings {
            connections_per_user: at_least_one(
                "THINGLINE_REALTIME_CONNECTIONS_PER_USER",
                args.realtime_connections_per_user.or(file.realtime_connections_per_user),
                thingline_bus::DEFAULT_MAX_CONNECTIONS_PER_USER,
            )?,
            subscriptions_per_connection: at_least_one(
                "THINGLINE_REALTIME_SUBSCRIPTIONS_PER_CONNECTION",
                args.realtime_subscriptions_per_connection.or(file.realtime_subscriptions_per_connection),
                thingline_bus::DEFAULT_MAX_SUBSCRIPTIONS_PER_CONNECTION,
            )?,
            queue: at_least_one(
                "THINGLINE_REALTIME_QUEUE",
                args.realtime_queue.or(file.realtime_queue),
                thingline_bus::DEFAULT_QUEUE_CAPACITY,
            )?,
            streams_per_thing: at_least_one(
                "THINGLINE_REALTIME_STREAMS_PER_THING",
                args.realtime_streams_per_thing.or(file.realtime_streams_per_thing),
                thingline_bus::DEFAULT_MAX_STREAMS_PER_THING,
            )?,
            auth_timeout: seconds(
                "THINGLINE_REALTIME_AUTH_TIMEOUT",
                args.realtime_auth_timeout.or(file.realtime_auth_timeout),
                DEFAULT_REALTIME_AUTH_TIMEOUT_S,
            )?,
        };
        let panel_email = args.panel_email.or(file.panel_email);
        if let Some(email) = &panel_email
            && let Err(e) = thingline_core::email::normalize_email(email)
        {
            bail!("THINGLINE_PANEL_EMAIL (--panel-email) {email:?}: {}", e.public_message());
        }
        let peer_timeout = match args.tcp_user_timeout.or(file.tcp_user_timeout) {
            None => PeerTimeout::default(),
            Some(secs) => PeerTimeout::from_secs(secs).with_context(|| {
                format!("THINGLINE_TCP_USER_TIMEOUT must be 1 to {} seconds, not {secs}", PeerTimeout::MAX_SECS)
            })?,
        };
        let mqtt = MqttSettings {
            max_connections: at_least_one(
                "THINGLINE_MQTT_MAX_CONNECTIONS",
                args.mqtt_max_connections.or(file.mqtt_max_connections),
                100_000,
            )?,
            max_packet: match args.mqtt_max_packet.or(file.mqtt_max_packet).unwrap_or(256 * 1024) {
                n @ 1024..=MAX_MQTT_PACKET => n,
                n => bail!("THINGLINE_MQTT_MAX_PACKET must be 1024 to {MAX_MQTT_PACKET} bytes, not {n}"),
            },
            max_inflight: match args.mqtt_max_inflight.or(file.mqtt_max_inflight).unwrap_or(64) {
                n @ 1..=65_535 => n,
                n => bail!("THINGLINE_MQTT_MAX_INFLIGHT must be 1 to 65535, not {n}"),
            },
            session_queue: at_least_one(
                "THINGLINE_MQTT_SESSION_QUEUE",
                args.mqtt_session_queue.or(file.mqtt_session_queue),
                1000,
            )?,
            session_expiry: seconds(
                "THINGLINE_MQTT_SESSION_EXPIRY",
                args.mqtt_session_expiry.or(file.mqtt_session_expiry),
                86_400,
            )?,
            max_sessions: at_least_one(
                "THINGLINE_MQTT_MAX_SESSIONS",
                args.mqtt_max_sessions.or(file.mqtt_max_sessions),
                100_000,
            )?,
            connect_timeout: realtime.auth_timeout,
            write_timeout: body_timeout,
        };
        let coap = CoapSettings {
            rate: match args.coap_rate.or(file.coap_rate).unwrap_or(1000) {
                0 => bail!("THINGLINE_COAP_RATE must be at least 1"),
                n => n,
            },
            observers_per_address: at_least_one(
                "THINGLINE_COAP_OBSERVERS_PER_ADDRESS",
                args.coap_observers_per_address.or(file.coap_observers_per_address),
                1000,
            )?,
            max_observers: at_least_one(
                "THINGLINE_COAP_MAX_OBSERVERS",
                args.coap_max_observers.or(file.coap_max_observers),
                100_000,
            )?,
            max_exchanges: at_least_one(
                "THINGLINE_COAP_MAX_EXCHANGES",
                args.coap_max_exchanges.or(file.coap_max_exchanges),
                262_144,
            )?,
            separate_after: Duration::from_millis(
                args.coap_separate_after.or(file.coap_separate_after).unwrap_or(1000).min(60_000),
            ),
            body_limit,
        };
        Ok(Config {
            realtime,
            peer_timeout,
            mqtt,
            coap,
            https_addr: addr("THINGLINE_HTTPS_ADDR", args.https_addr.or(file.https_addr), Some("0.0.0.0:8443"))?
                .context("THINGLINE_HTTPS_ADDR cannot be off: the app and panel APIs need it")?,
            http_addr: addr("THINGLINE_HTTP_ADDR", args.http_addr.or(file.http_addr), None)?,
            mqtt_addr: addr("THINGLINE_MQTT_ADDR", args.mqtt_addr.or(file.mqtt_addr), Some("0.0.0.0:1883"))?,
            mqtts_addr: addr("THINGLINE_MQTTS_ADDR", args.mqtts_addr.or(file.mqtts_addr), Some("0.0.0.0:8883"))?,
            coap_addr: addr("THINGLINE_COAP_ADDR", args.coap_addr.or(file.coap_addr), Some("0.0.0.0:5683"))?,
            metrics_addr: addr("THINGLINE_METRICS_ADDR", args.metrics_addr.or(file.metrics_addr), None)?,
            tls_cert,
            tls_key,
            store_url,
            bus_url: args.bus_url.or(file.bus_url),
            bus_prefix: args.bus_prefix.or(file.bus_prefix).unwrap_or_else(|| "thingline".into()),
            panel_email,
            panel_password: args.panel_password.or(file.panel_password),
            log: args.log.or(file.log).unwrap_or_else(|| "info".into()),
            log_json,
            body_limit,
            body_timeout,
            max_connections: args.max_connections.or(file.max_connections).unwrap_or(10_000).max(1),
            sync_full,
            smtp_url: args.smtp_url.or(file.smtp_url),
            smtp_from: args.smtp_from.or(file.smtp_from).unwrap_or_else(|| "thingline@localhost".into()),
            data_dir,
        })
    }
}

/// A duration in whole seconds, at least one.
fn seconds(name: &str, value: Option<u64>, default: u64) -> anyhow::Result<Duration> {
    match value.unwrap_or(default) {
        0 => bail!("{name} must be at least 1 second"),
        secs => Ok(Duration::from_secs(secs)),
    }
}

fn load_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
}

/// Parses a listener address; `off` (or an empty value) disables it.
fn addr(name: &str, value: Option<String>, default: Option<&str>) -> anyhow::Result<Option<SocketAddr>> {
    let Some(value) = value.or(default.map(str::to_owned)) else { return Ok(None) };
    let v = value.trim();
    if v.is_empty() || v.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let parsed = v
        .parse::<SocketAddr>()
        .with_context(|| format!("{name}={v:?} is not an address like 0.0.0.0:8443 (or `off`)"))?;
    Ok(Some(parsed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_fills_only_what_flags_and_env_left_unset() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("t.toml");
        std::fs::write(&file, "https_addr = \"127.0.0.1:9000\"\nlog = \"debug\"\nmqtt_addr = \"off\"\n")
            .expect("write");
        let args = ConfigArgs { config: Some(file), log: Some("warn".into()), ..Default::default() };
        let c = Config::resolve(args).expect("resolve");
        assert_eq!(c.https_addr, "127.0.0.1:9000".parse().expect("addr"));
        assert_eq!(c.log, "warn", "the flag/env wins over the file");
        assert_eq!(c.mqtt_addr, None);
        assert_eq!(c.coap_addr, Some("0.0.0.0:5683".parse().expect("addr")));
        assert!(c.store_url.ends_with("thingline-data/thingline.db"));
        assert_eq!(c.realtime.connections_per_user, 50);
    }

    #[test]
    fn realtime_limits_from_file_and_flags() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("t.toml");
        std::fs::write(&file, "realtime_connections_per_user = 5\nrealtime_queue = 32\n").expect("write");
        let args = ConfigArgs { config: Some(file), realtime_queue: Some(64), ..Default::default() };
        let c = Config::resolve(args).expect("resolve");
        assert_eq!(c.realtime.connections_per_user, 5);
        assert_eq!(c.realtime.subscriptions_per_connection, 100);
        assert_eq!(c.realtime.queue, 64, "the flag/env wins over the file");
        assert_eq!(c.peer_timeout, PeerTimeout::default());
        let zero = ConfigArgs { realtime_subscriptions_per_connection: Some(0), ..Default::default() };
        let err = Config::resolve(zero).expect_err("0 is refused");
        assert!(err.to_string().contains("THINGLINE_REALTIME_SUBSCRIPTIONS_PER_CONNECTION"), "{err}");
    }

    #[test]
    fn tcp_user_timeout_from_file_and_flag() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("t.toml");
        std::fs::write(&file, "tcp_user_timeout = 30\n").expect("write");
        let from_file = ConfigArgs { config: Some(file.clone()), ..Default::default() };
        let c = Config::resolve(from_file).expect("resolve");
        assert_eq!(c.peer_timeout.timeout(), std::time::Duration::from_secs(30));
        let flag = ConfigArgs { config: Some(file), tcp_user_timeout: Some(12), ..Default::default() };
        let c = Config::resolve(flag).expect("resolve");
        assert_eq!(c.peer_timeout.timeout(), std::time::Duration::from_secs(12), "the flag/env wins over the file");
        let d = Config::resolve(ConfigArgs::default()).expect("resolve").peer_timeout;
        assert_eq!(d.timeout(), std::time::Duration::from_secs(60));
        let secs = |t: (std::time::Duration, std::time::Duration, u32)| (t.0.as_secs(), t.1.as_secs(), t.2);
        assert_eq!(secs(d.keepalive()), (60, 10, 5), "idle 60 s, a probe every 10 s, 5 probes");
        assert_eq!(secs(c.peer_timeout.keepalive()), (12, 2, 5));
        let short = PeerTimeout::from_secs(3).expect("3 s");
        assert_eq!(secs(short.keepalive()), (3, 1, 5), "the interval is at least 1 s");
        for bad in [0, 32_768] {
            let err = Config::resolve(ConfigArgs { tcp_user_timeout: Some(bad), ..Default::default() })
                .expect_err("out of range");
            assert!(err.to_string().contains("THINGLINE_TCP_USER_TIMEOUT must be 1 to 32767 seconds"), "{err}");
        }
    }

    #[test]
    fn body_timeout_from_file_and_flag() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("t.toml");
        std::fs::write(&file, "body_timeout = 5\n").expect("write");
        let c = Config::resolve(ConfigArgs { config: Some(file.clone()), ..Default::default() }).expect("resolve");
        assert_eq!(c.body_timeout, Duration::from_secs(5));
        let flag = ConfigArgs { config: Some(file), body_timeout: Some(2), ..Default::default() };
        assert_eq!(Config::resolve(flag).expect("resolve").body_timeout, Duration::from_secs(2), "the flag/env wins");
        assert_eq!(Config::resolve(ConfigArgs::default()).expect("resolve").body_timeout, Duration::from_secs(30));
        let err =
            Config::resolve(ConfigArgs { body_timeout: Some(0), ..Default::default() }).expect_err("0 is refused");
        assert!(err.to_string().contains("THINGLINE_BODY_TIMEOUT must be at least 1 second"), "{err}");
    }

    #[test]
    fn unknown_file_keys_and_bad_addresses_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("t.toml");
        std::fs::write(&file, "htps_addr = \"x\"\n").expect("write");
        assert!(Config::resolve(ConfigArgs { config: Some(file), ..Default::default() }).is_err());
        let bad = ConfigArgs { https_addr: Some("localhost".into()), ..Default::default() };
        let err = Config::resolve(bad).expect_err("bad address");
        assert!(err.to_string().contains("THINGLINE_HTTPS_ADDR"));
    }
}
