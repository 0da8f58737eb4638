//! The run over the targets: each selected one in turn as a child process, stopped before the
//! next starts: Thingline (with the fixture set up through its API), the Node socket.io reference
//! and the floor server, the last two with Thingline's certificate.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::runtime::Handle;

use super::fixture::{Fixture, setup, synthetic_fixture};
use crate::api::Api;
use crate::cli::{RealtimeCommon, RealtimeTarget};
use crate::driver::https_client;
use crate::report::StoreSetup;
use crate::server::{ThinglineSpec, spawn_floor, spawn_node_reference, spawn_thingline};

/// The reference exits by itself after this long (realtime-bench.js `--max-seconds`).
const REFERENCE_MAX_SECONDS: u64 = 1800;

/// One target to measure: where its Socket.IO and write endpoints are.
pub struct TargetSpec<'a> {
    pub label: &'static str,
    pub addr: SocketAddr,
    pub pid: u32,
    pub cert: &'a Path,
}

/// Thingline's `--max-connections` for `sockets` clients (the setup and the writer need a few
/// more; the default of 10,000 would refuse the last of 10,000 sockets).
fn max_connections(sockets: usize) -> usize {
    (sockets + 1_000).max(10_000)
}

/// Each selected target in turn, as a child process that is stopped before the next starts:
/// Thingline (with the fixture set up through its API), the Node reference, the floor server.
/// The reference and the floor use Thingline's certificate (generated in the data dir when
/// Thingline is not measured) and ignore the fixture's tokens. Returns the reports of
/// `measure_one` and the store of Thingline, when it was measured.
pub async fn run_targets<R>(
    common: &RealtimeCommon,
    sockets: usize,
    targets: &[RealtimeTarget],
    script: &Path,
    data_dir: &Path,
    clients: &Handle,
    mut measure_one: impl AsyncFnMut(&TargetSpec<'_>, &Fixture, &Handle) -> Result<R>,
) -> Result<(Vec<R>, Option<StoreSetup>)> {
    let server = &common.server;
    let cert = data_dir.join("tls/cert.pem");
    let key = data_dir.join("tls/key.pem");
    let mut reports = Vec::new();
    let mut store = None;
    let fixture = if targets.contains(&RealtimeTarget::Thingline) {
        let mut spec = ThinglineSpec::new(server, data_dir)?;
        spec.extra_args = vec!["--max-connections".into(), max_connections(sockets).to_string()];
        store = Some(spec.store_setup());
        let setup_client = https_client(16, Duration::from_secs(120))?;
        let mut thingline = spawn_thingline(&spec).await?;
        let measured = async {
            let ready = thingline.wait_healthy(&setup_client, spec.start_timeout, Duration::from_millis(5)).await?;
            eprintln!(
                "thingline: {} ready in {} ms ({}, data {} on {}, durability {})",
                thingline.base_url,
                ready.as_millis(),
                spec.bin.display(),
                data_dir.display(),
                spec.mount.fs_type,
                spec.durability.as_str()
            );
            let api = Api::new(setup_client.clone(), &thingline.base_url);
            let fixture = setup(&api, server, sockets).await.context("setting up through Thingline's API")?;
            let target = TargetSpec { label: "thingline", addr: thingline.addr, pid: thingline.pid, cert: &cert };
            let report = measure_one(&target, &fixture, clients).await?;
            anyhow::Ok((report, fixture))
        }
        .await;
        if let Err(err) = thingline.stop().await {
            eprintln!("note: stopping thingline: {err:#}");
        }
        let (report, fixture) = measured?;
        reports.push(report);
        fixture
    } else {
        ensure_certificate(&cert, &key)?;
        synthetic_fixture(sockets)
    };
    for target in targets {
        let process = match target {
            RealtimeTarget::Thingline => continue,
            RealtimeTarget::Reference => {
                let reference = spawn_node_reference(
                    &common.node,
                    script,
                    &cert,
                    &key,
                    REFERENCE_MAX_SECONDS,
                    server.server_log,
                    server.start_timeout(),
                )
                .await?;
                eprintln!("reference: node socket.io at {} (pid {})", reference.base_url, reference.pid);
                reference
            }
            RealtimeTarget::Floor => {
                let floor =
                    spawn_floor(&cert, &key, common.floor_broadcast_threads, server.server_log, server.start_timeout())
                        .await?;
                eprintln!(
                    "floor: {} (pid {}, {} broadcast threads)",
                    floor.base_url, floor.pid, common.floor_broadcast_threads
                );
                floor
            }
        };
        let label = process.label;
        let spec = TargetSpec { label, addr: process.addr, pid: process.pid, cert: &cert };
        let measured = measure_one(&spec, &fixture, clients).await;
        if let Err(err) = process.stop().await {
            eprintln!("note: stopping the {label} server: {err:#}");
        }
        reports.push(measured?);
    }
    Ok((reports, store))
}

/// The Node reference needs its script and its `node_modules`.
pub fn check_reference_ready(script: &Path) -> Result<()> {
    if !script.is_file() {
        bail!("{} not found (pass --refserver-script, or --no-reference)", script.display());
    }
    let modules = script.parent().map(|dir| dir.join("node_modules/socket.io")).unwrap_or_default();
    if !modules.is_dir() {
        bail!(
            "{} missing: run `npm ci --prefix {}` (or pass --no-reference)",
            modules.display(),
            script.parent().map(|d| d.display().to_string()).unwrap_or_default()
        );
    }
    Ok(())
}

/// Without Thingline: a self-signed certificate for 127.0.0.1 where Thingline keeps its own
/// (unless one is there already).
pub fn ensure_certificate(cert: &Path, key: &Path) -> Result<()> {
    if cert.is_file() && key.is_file() {
        return Ok(());
    }
    if let Some(dir) = cert.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let generated = crate::tls::self_signed()?;
    std::fs::write(key, generated.signing_key.serialize_pem()).with_context(|| format!("writing {}", key.display()))?;
    std::fs::write(cert, generated.cert.pem()).with_context(|| format!("writing {}", cert.display()))?;
    Ok(())
}
