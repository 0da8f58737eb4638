//! Thingline as the CoAP commands run it: spawned with its CoAP listener on 127.0.0.1:0 (the
//! address read from its `listener=coap addr=…` line), the bench's settings on top (limits raised
//! for a load from one address), ready on `/v2/health`; its HTTPS API for the setup and the
//! checks; stopped and its temp data dir removed at the end.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Result, bail};

use crate::api::Api;
use crate::cli::ServerArgs;
use crate::driver::https_client;
use crate::report::StoreSetup;
use crate::server::{DataDir, ServerProcess, ThinglineSpec, spawn_thingline};

pub struct CoapThingline {
    pub process: ServerProcess,
    /// Its CoAP listener.
    pub coap: SocketAddr,
    pub store: StoreSetup,
    /// Client of its HTTPS API (setup, checks).
    pub api: Api,
    data_dir: DataDir,
}

impl CoapThingline {
    /// Spawn Thingline with CoAP on, `env` on top of the bench's settings and `extra_args` on its
    /// command line; wait until it is healthy and has logged its CoAP address.
    pub async fn start(server: &ServerArgs, env: Vec<(String, String)>, extra_args: Vec<String>) -> Result<Self> {
        crate::mqtt::targets::raise_open_files_limit();
        let data_dir = DataDir::from_args(server)?;
        match Self::spawn(server, &data_dir, env, extra_args).await {
            Ok((process, coap, store, api)) => Ok(Self { process, coap, store, api, data_dir }),
            Err(err) => {
                data_dir.finish();
                Err(err)
            }
        }
    }

    async fn spawn(
        server: &ServerArgs,
        data_dir: &DataDir,
        env: Vec<(String, String)>,
        extra_args: Vec<String>,
    ) -> Result<(ServerProcess, SocketAddr, StoreSetup, Api)> {
        let mut spec = ThinglineSpec::new(server, &data_dir.path)?;
        spec.coap_addr = Some("127.0.0.1:0".into());
        spec.env = env;
        spec.extra_args = extra_args;
        let client = https_client(16, Duration::from_secs(120))?;
        let mut process = spawn_thingline(&spec).await?;
        let ready = process.wait_healthy(&client, spec.start_timeout, Duration::from_millis(5)).await?;
        let coap = process.listener("coap", spec.start_timeout).await?;
        if coap.port() == 0 {
            bail!("thingline logged its CoAP listener on port 0");
        }
        let settings: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        eprintln!(
            "thingline: {} ready in {} ms, CoAP on {coap} ({}, data {} on {}, durability {}{}{})",
            process.base_url,
            ready.as_millis(),
            spec.bin.display(),
            spec.data_dir.display(),
            spec.mount.fs_type,
            spec.durability.as_str(),
            if settings.is_empty() { "" } else { ", " },
            settings.join(" ")
        );
        let api = Api::new(client, &process.base_url);
        Ok((process, coap, spec.store_setup(), api))
    }

    /// Its data dir (its certificate is in `tls/`).
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir.path
    }

    /// Stop Thingline (saying so when it had exited already) and remove its temp data dir.
    pub async fn finish(self) {
        let tail = self.process.recent_log();
        match self.process.stop().await {
            Ok(took) => eprintln!("thingline: stopped in {} ms", took.as_millis()),
            Err(err) => eprintln!("note: stopping thingline: {err:#}; last lines:\n{tail}"),
        }
        self.data_dir.finish();
    }
}
