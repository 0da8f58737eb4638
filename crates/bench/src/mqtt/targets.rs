//! The brokers an MQTT command measures, for the whole command: Thingline spawned with its MQTT
//! listener on (port 0, the address read from its `listener=mqtt addr=…` line) and its things
//! activated through its HTTPS API (their thingTokens are the topics), and the machine's running
//! Mosquitto (never started, stopped or reconfigured; random tokens of the same shape, the same
//! topics and payloads). Each round measures every selected target, alternating which goes first.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

use crate::api::Api;
use crate::cli::{MqttCommon, MqttTarget};
use crate::driver::{WorkerRng, https_client};
use crate::report::StoreSetup;
use crate::server::{DataDir, ServerProcess, ThinglineSpec, spawn_thingline};

/// One broker and the things its clients publish to.
pub struct Target {
    pub kind: MqttTarget,
    pub label: &'static str,
    pub addr: SocketAddr,
    /// For CPU and memory (`None`: Mosquitto's pid is unknown).
    pub pid: Option<u32>,
    /// One thingToken per thing; the topic of thing i is `v2/things/{tokens[i]}`.
    pub tokens: Vec<String>,
}

impl Target {
    /// `v2/things/{token}` of thing `i` (wrapping around the things).
    pub fn topic(&self, i: usize) -> Vec<u8> {
        format!("v2/things/{}", self.tokens[i % self.tokens.len()]).into_bytes()
    }
}

/// How a command wants Thingline set up.
#[derive(Debug, Clone, Default)]
pub struct Setup {
    /// Things activated (Mosquitto gets as many random tokens).
    pub things: usize,
    /// Settings on top of the bench's (`THINGLINE_MQTT_MAX_INFLIGHT`, …).
    pub env: Vec<(String, String)>,
    /// Stop Thingline after the setup and start it again on the same data dir, so that what the
    /// setup's HTTPS traffic left in its memory is not in a memory figure.
    pub restart: bool,
}

/// The targets of one command, and Thingline's process and data dir while it runs.
pub struct Session {
    pub targets: Vec<Target>,
    /// Thingline's store, when it was spawned.
    pub store: Option<StoreSetup>,
    thingline: Option<ServerProcess>,
    data_dir: Option<DataDir>,
}

impl Session {
    /// Start what `common` selects: Thingline spawned and set up as `setup` says; Mosquitto
    /// found at `--mosquitto-addr` with as many random tokens.
    pub async fn start(common: &MqttCommon, setup: &Setup) -> Result<Self> {
        raise_open_files_limit();
        let selected = common.selected();
        if selected.is_empty() {
            bail!("no target selected (--targets thingline,mosquitto)");
        }
        let mut session = Session { targets: Vec::new(), store: None, thingline: None, data_dir: None };
        for kind in selected {
            let started = match kind {
                MqttTarget::Thingline => session.start_thingline(common, setup).await,
                MqttTarget::Mosquitto => mosquitto(common, setup.things).map(|target| session.targets.push(target)),
            };
            if let Err(err) = started {
                session.finish().await;
                return Err(err);
            }
        }
        Ok(session)
    }

    async fn start_thingline(&mut self, common: &MqttCommon, setup: &Setup) -> Result<()> {
        let server = &common.server;
        let data_dir = DataDir::from_args(server)?;
        let mut spec = ThinglineSpec::new(server, &data_dir.path)?;
        self.data_dir = Some(data_dir);
        spec.mqtt_addr = Some("127.0.0.1:0".into());
        spec.env = setup.env.clone();
        self.store = Some(spec.store_setup());
        let setup_client = https_client(16, Duration::from_secs(120))?;
        self.thingline = Some(spawn_thingline(&spec).await?);
        let addr = self.ready(&spec, &setup_client).await?;
        let Some(process) = self.thingline.as_ref() else { bail!("thingline is not running") };
        let api = Api::new(setup_client.clone(), &process.base_url);
        let started = std::time::Instant::now();
        let provisioned = api
            .provision(&server.panel_email, &server.panel_password, "mqtt-bench", setup.things)
            .await
            .context("activating the things through Thingline's API")?;
        eprintln!(
            "thingline: product {}, {} things activated in {:.1} s",
            provisioned.product_id,
            setup.things,
            started.elapsed().as_secs_f64()
        );
        let addr = if setup.restart {
            if let Some(process) = self.thingline.take() {
                process.stop().await?;
            }
            self.thingline = Some(spawn_thingline(&spec).await?);
            eprintln!("thingline: restarted on the same data dir (the setup's memory is not in its figures)");
            self.ready(&spec, &setup_client).await?
        } else {
            addr
        };
        let Some(process) = self.thingline.as_ref() else { bail!("thingline is not running") };
        self.targets.push(Target {
            kind: MqttTarget::Thingline,
            label: "thingline",
            addr,
            pid: Some(process.pid),
            tokens: provisioned.things.into_iter().map(|t| t.thing_token).collect(),
        });
        Ok(())
    }

    /// Wait until the spawned Thingline answers /v2/health and has logged its MQTT address.
    async fn ready(&mut self, spec: &ThinglineSpec, client: &reqwest::Client) -> Result<SocketAddr> {
        let Some(process) = self.thingline.as_mut() else { bail!("thingline is not running") };
        let ready = process.wait_healthy(client, spec.start_timeout, Duration::from_millis(5)).await?;
        let addr = process.listener("mqtt", spec.start_timeout).await?;
        let settings: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        eprintln!(
            "thingline: {} ready in {} ms, MQTT on {addr} ({}, data {} on {}, durability {}{}{})",
            process.base_url,
            ready.as_millis(),
            spec.bin.display(),
            spec.data_dir.display(),
            spec.mount.fs_type,
            spec.durability.as_str(),
            if settings.is_empty() { "" } else { ", " },
            settings.join(" ")
        );
        Ok(addr)
    }

    /// The targets of round `round` (0-based) in measuring order: as selected in even rounds,
    /// reversed in odd ones.
    pub fn order(&self, round: usize) -> Vec<&Target> {
        let mut order: Vec<&Target> = self.targets.iter().collect();
        if round % 2 == 1 {
            order.reverse();
        }
        order
    }

    /// Stop Thingline (when spawned) and remove its temp data dir.
    pub async fn finish(mut self) {
        if let Some(process) = self.thingline.take() {
            // A Thingline that exited already (crashed) is worth saying.
            let tail = process.recent_log();
            match process.stop().await {
                Ok(took) => eprintln!("thingline: stopped in {} ms", took.as_millis()),
                Err(err) => eprintln!("note: stopping thingline: {err:#}; last lines:\n{tail}"),
            }
        }
        if let Some(data_dir) = self.data_dir.take() {
            data_dir.finish();
        }
    }
}

/// The machine's Mosquitto: its address, its pid (`--mosquitto-pid`, else `pidof mosquitto`),
/// and `things` random 43-character tokens.
fn mosquitto(common: &MqttCommon, things: usize) -> Result<Target> {
    let pid = match common.mosquitto_pid {
        Some(pid) => Some(pid),
        None => pidof("mosquitto")?,
    };
    match pid {
        Some(pid) => {
            eprintln!("mosquitto: {} (pid {pid}, not started nor stopped by the bench)", common.mosquitto_addr)
        }
        None => eprintln!("note: mosquitto: no pid (pidof found none): its CPU and memory are not measured"),
    }
    Ok(Target {
        kind: MqttTarget::Mosquitto,
        label: "mosquitto",
        addr: common.mosquitto_addr,
        pid,
        tokens: random_tokens(things),
    })
}

/// The one pid `pidof NAME` prints, `None` when it prints none; an error when it prints several.
fn pidof(name: &str) -> Result<Option<u32>> {
    let output = std::process::Command::new("pidof").arg(name).output().context("running pidof")?;
    let text = String::from_utf8_lossy(&output.stdout);
    let pids: Vec<u32> = text.split_whitespace().filter_map(|p| p.parse().ok()).collect();
    match pids.as_slice() {
        [] => Ok(None),
        [pid] => Ok(Some(*pid)),
        _ => Err(anyhow!("pidof {name} printed several pids ({}): pass --mosquitto-pid", text.trim())),
    }
}

/// Tokens of a thingToken's shape (43 URL-safe base64 characters), different in every run.
fn random_tokens(count: usize) -> Vec<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut rng = WorkerRng::from_clock(0x6d71_7474);
    (0..count).map(|_| (0..43).map(|_| ALPHABET[rng.below(ALPHABET.len())] as char).collect()).collect()
}

/// 10,000 connections need more descriptors than a default soft limit: raise it to the hard one
/// (the spawned Thingline inherits it).
pub(crate) fn raise_open_files_limit() {
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit we own.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                eprintln!("note: could not raise the open files limit to {}", limit.rlim_max);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_the_thing_token_shape() {
        let tokens = random_tokens(3);
        assert!(
            tokens
                .iter()
                .all(|t| t.len() == 43 && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        );
        assert_ne!(tokens[0], tokens[1]);
    }

    #[test]
    fn topics_wrap_around_the_things() {
        let target = Target {
            kind: MqttTarget::Mosquitto,
            label: "t",
            addr: "127.0.0.1:1".parse().expect("addr"),
            pid: None,
            tokens: vec!["a".into(), "b".into()],
        };
        assert_eq!(target.topic(3), b"v2/things/b");
    }
}
