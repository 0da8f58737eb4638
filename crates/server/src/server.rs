//! Starting and stopping a whole server: store, platform, TLS, listeners, and the one shutdown
//! signal that every listener and long-lived response watches. Used by `thingline serve` and by
//! the integration tests, which start it on port 0.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use thingline_bus::Notifier;
use thingline_store::StoreOptions;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::platform::{self, Limits, Platform};
use crate::{Config, coap, http, mqtt, net, socketio, tls};

/// Events buffered per topic before a slow subscriber lags.
const BUS_CAPACITY: usize = 1024;

/// A started server.
pub struct RunningServer {
    pub https_addr: SocketAddr,
    pub http_addr: Option<SocketAddr>,
    pub mqtt_addr: Option<SocketAddr>,
    pub mqtts_addr: Option<SocketAddr>,
    pub coap_addr: Option<SocketAddr>,
    /// The metrics listener (`GET /metrics`), when `THINGLINE_METRICS_ADDR` is set.
    pub metrics_addr: Option<SocketAddr>,
    pub platform: Arc<Platform>,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

impl RunningServer {
    /// Stops accepting, lets in-flight requests finish, flushes acknowledged writes, closes the store.
    pub async fn shutdown(mut self) {
        self.shutdown.cancel();
        while self.tasks.join_next().await.is_some() {}
        self.platform.store().close().await;
        self.platform.close_bus().await;
        tracing::info!("stopped");
    }

    /// The shutdown signal (cancel it to stop the server; then call [`RunningServer::shutdown`]).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

/// Starts everything the configuration asks for. Fails with one clear message when a listener
/// cannot bind or the store cannot open.
pub async fn start(config: Config) -> anyhow::Result<RunningServer> {
    crate::install_crypto_provider();
    // Before anything records: without a metrics listener no recorder is installed at all.
    let metrics_handle = match config.metrics_addr {
        Some(_) => Some(crate::metrics::install()?),
        None => None,
    };
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data dir {} (THINGLINE_DATA_DIR)", config.data_dir.display()))?;
    let store_options = StoreOptions { sync_full: config.sync_full, ..StoreOptions::default() };
    let store = thingline_store::open(&config.store_url, &store_options)
        .await
        .with_context(|| format!("opening the store {} (THINGLINE_STORE_URL)", config.store_url))?;
    let shutdown = CancellationToken::new();
    let limits = Limits { body_limit: config.body_limit, ..Limits::default() };
    let bus = open_bus(config.bus_url.as_deref(), &config.bus_prefix).await?;
    let platform = Platform::new(store, bus, limits, shutdown.clone());
    platform::spawn_remote_invalidations(Arc::clone(&platform));
    let realtime = platform.realtime_limits();
    realtime.set_max_connections_per_user(config.realtime.connections_per_user);
    realtime.set_max_subscriptions_per_connection(config.realtime.subscriptions_per_connection);
    realtime.set_max_streams_per_thing(config.realtime.streams_per_thing);
    realtime.set_queue_capacity(config.realtime.queue);
    platform
        .set_mail_settings(config.smtp_url.as_deref(), &config.smtp_from)
        .map_err(|e| anyhow::anyhow!(e.public_message()))?;

    if let (Some(email), Some(password)) = (&config.panel_email, &config.panel_password)
        && platform.ensure_panel_user(email, password).await.map_err(|e| anyhow::anyhow!(e.public_message()))?
    {
        tracing::info!(%email, "created the panel account from THINGLINE_PANEL_EMAIL");
    }

    let (https_tls, mqtt_tls) = tls::server_configs(&config)?;
    let tls = TlsAcceptor::from(https_tls);
    let https = net::bind(config.https_addr, "HTTPS", "THINGLINE_HTTPS_ADDR").await?;
    let http_listener = match config.http_addr {
        Some(addr) => Some(net::bind(addr, "plain HTTP", "THINGLINE_HTTP_ADDR").await?),
        None => None,
    };
    let mqtt_listener = match config.mqtt_addr {
        Some(addr) => Some(net::bind(addr, "MQTT", "THINGLINE_MQTT_ADDR").await?),
        None => None,
    };
    let mqtts_listener = match config.mqtts_addr {
        Some(addr) => Some(net::bind(addr, "MQTTS", "THINGLINE_MQTTS_ADDR").await?),
        None => None,
    };
    let metrics_listener = match config.metrics_addr {
        Some(addr) => Some(crate::metrics::bind(addr).await?),
        None => None,
    };
    let coap_socket = match config.coap_addr {
        Some(addr) => Some(Arc::new(net::bind_udp(addr, "CoAP", "THINGLINE_COAP_ADDR").await?)),
        None => None,
    };

    // The HTTP API with MQTT over WebSocket beside it and Socket.IO in front of both, behind the
    // HTTPS-only guard.
    let broker = mqtt::Broker::new(Arc::clone(&platform), config.mqtt);
    let api = http::router(Arc::clone(&platform)).merge(mqtt::websocket_router(Arc::clone(&broker)));
    let router = http::https_only(socketio::wrap(api, Arc::clone(&platform), config.realtime.auth_timeout));
    // Request ids, access logs and HTTP metrics around everything, Socket.IO and the guard included.
    let router = http::observe::layer(router);
    platform::subscriptions::spawn_stats_logger(Arc::clone(&platform));
    let conn = net::ConnSettings { max_connections: config.max_connections, peer_timeout: config.peer_timeout };
    let mut tasks = JoinSet::new();
    let https = net::Listener::new(https, Some(tls), conn, shutdown.clone())?;
    let https_addr = https.local_addr();
    let mut http_listeners = vec![https.connection_count()];
    tracing::info!(listener = %"https", addr = %https_addr, "listening");
    tasks.spawn(net::serve_http(https, router.clone(), config.body_timeout));
    let mut http_addr = None;
    if let Some(listener) = http_listener {
        let listener = net::Listener::new(listener, None, conn, shutdown.clone())?;
        let addr = listener.local_addr();
        http_listeners.push(listener.connection_count());
        tracing::info!(listener = %"http", addr = %addr, "listening");
        http_addr = Some(addr);
        tasks.spawn(net::serve_http(listener, router, config.body_timeout));
    }
    let mqtt_conn = net::ConnSettings { max_connections: config.mqtt.max_connections, ..conn };
    let mut mqtt_addr = None;
    let mut mqtts_addr = None;
    for (listener, tls, name, slot) in [
        (mqtt_listener, None, "mqtt", &mut mqtt_addr),
        (mqtts_listener, Some(TlsAcceptor::from(mqtt_tls)), "mqtts", &mut mqtts_addr),
    ] {
        if let Some(listener) = listener {
            let listener = net::Listener::new(listener, tls, mqtt_conn, shutdown.clone())?;
            let addr = listener.local_addr();
            tracing::info!(listener = %name, addr = %addr, "listening");
            *slot = Some(addr);
            tasks.spawn(mqtt::serve(listener, Arc::clone(&broker)));
        }
    }
    let mut coap_addr = None;
    if let Some(socket) = coap_socket {
        let addr = socket.local_addr().context("the CoAP socket's address")?;
        tracing::info!(listener = %"coap", addr = %addr, "listening");
        coap_addr = Some(addr);
        let endpoint = coap::Endpoint::new(Arc::clone(&platform), config.coap, Arc::clone(&socket));
        tasks.spawn(coap::serve(socket, endpoint));
    }
    let mut metrics_addr = None;
    if let (Some(tcp), Some(handle)) = (metrics_listener, metrics_handle) {
        let sources = crate::metrics::Sources { platform: Arc::clone(&platform), http_listeners };
        let (addr, task) = crate::metrics::serve(tcp, handle, sources, config.peer_timeout, shutdown.clone())?;
        tracing::info!(listener = %"metrics", addr = %addr, "listening");
        metrics_addr = Some(addr);
        tasks.spawn(task);
    }
    tracing::info!(store = platform.store().backend(), data_dir = %config.data_dir.display(), "ready");
    Ok(RunningServer {
        https_addr,
        http_addr,
        mqtt_addr,
        mqtts_addr,
        coap_addr,
        metrics_addr,
        platform,
        shutdown,
        tasks,
    })
}

/// The bus `THINGLINE_BUS_URL` names: NATS (`nats://…`), or this process alone when unset.
async fn open_bus(url: Option<&str>, prefix: &str) -> anyhow::Result<Arc<dyn thingline_bus::Bus>> {
    let notifier = Notifier::new(BUS_CAPACITY);
    match url {
        None => Ok(thingline_bus::InProcessBus::new(notifier)),
        Some(url) if url.starts_with("nats://") || url.starts_with("tls://") => {
            let options = thingline_bus::nats::NatsOptions { prefix: prefix.to_owned(), ..Default::default() };
            let bus = thingline_bus::nats::NatsBus::connect(url, notifier, options)
                .await
                .with_context(|| format!("connecting to the bus {url} (THINGLINE_BUS_URL, THINGLINE_BUS_PREFIX)"))?;
            tracing::info!(url, prefix, "bus: NATS");
            Ok(bus)
        }
        Some(url) => anyhow::bail!("THINGLINE_BUS_URL: unsupported bus URL {url:?}: expected nats://HOST:PORT"),
    }
}
