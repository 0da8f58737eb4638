//! Seeding a store through the write API, and the `bench-things.json` file that lets later
//! runs (`run read-latest --data-dir D`) reuse it without reseeding.
//!
//! Each thing gets `values_per_thing` values of `temperature`, each with an explicit ISO
//! `datetime`, 1 s apart going back in time from the seeding start, so timelines look like
//! a device that reported every second. Requests carry `batch` values of one thing and
//! are interleaved over things so every timeline grows at the same pace.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use futures_util::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use crate::api::{Api, Thing};
use crate::cli::SeedArgs;
use crate::driver::https_client;
use crate::server::{DataDir, ThinglineSpec, spawn_thingline};

/// Written into the data dir after a successful seed.
pub const THINGS_FILE: &str = "bench-things.json";
/// The resource key every bench write and read uses.
pub const KEY: &str = "temperature";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ThingsFile {
    pub product_id: String,
    pub key: String,
    pub values_per_thing: usize,
    /// Newest seeded datetime; value j of a thing is this minus j seconds.
    pub newest_datetime: String,
    pub things: Vec<Thing>,
}

impl ThingsFile {
    pub fn load(data_dir: &Path) -> Result<Option<Self>> {
        let path = data_dir.join(THINGS_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let file: Self = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        if file.things.is_empty() {
            bail!("{} lists no things", path.display());
        }
        Ok(Some(file))
    }

    pub fn save(&self, data_dir: &Path) -> Result<()> {
        let path = data_dir.join(THINGS_FILE);
        let text = serde_json::to_string_pretty(self).context("serializing the things file")?;
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    }
}

#[derive(Debug, Clone, Copy)]
pub struct SeedPlan {
    pub things: usize,
    pub values_per_thing: usize,
    pub batch: usize,
    pub concurrency: usize,
}

/// Provision `plan.things` things on a running Thingline and write their timelines.
pub async fn seed(api: &Api, email: &str, password: &str, plan: SeedPlan) -> Result<ThingsFile> {
    if plan.things == 0 || plan.batch == 0 || plan.concurrency == 0 {
        bail!("seeding needs at least 1 thing, a batch of at least 1 and concurrency 1");
    }
    let setup_started = Instant::now();
    let provisioned = api.provision(email, password, "bench-seed", plan.things).await?;
    eprintln!("seed: {} things activated in {:.1} s", provisioned.things.len(), setup_started.elapsed().as_secs_f64());

    let newest = Utc::now() - TimeDelta::seconds(1);
    let chunks_per_thing = plan.values_per_thing.div_ceil(plan.batch);
    let items = plan.things * chunks_per_thing;
    let total_values = (plan.things * plan.values_per_thing) as u64;
    let written = Arc::new(AtomicU64::new(0));
    let started = Instant::now();

    let progress = {
        let written = written.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            tick.tick().await;
            loop {
                tick.tick().await;
                let done = written.load(Ordering::Relaxed);
                let secs = started.elapsed().as_secs_f64();
                eprintln!(
                    "seed: {done}/{total_values} values ({:.1}%), {:.0} values/s",
                    done as f64 * 100.0 / total_values.max(1) as f64,
                    done as f64 / secs.max(1e-9)
                );
            }
        })
    };

    let things = &provisioned.things;
    let result = futures_util::stream::iter(0..items)
        .map(|item| {
            let written = written.clone();
            async move {
                let thing_index = item % plan.things;
                let first = (item / plan.things) * plan.batch;
                let count = plan.batch.min(plan.values_per_thing - first);
                let body = batch_body(newest, thing_index, first, count);
                api.write_raw(&things[thing_index].thing_token, body)
                    .await
                    .with_context(|| format!("seeding thing {thing_index}, values {first}.."))?;
                written.fetch_add(count as u64, Ordering::Relaxed);
                anyhow::Ok(())
            }
        })
        .buffer_unordered(plan.concurrency)
        .try_for_each(|()| async { Ok(()) })
        .await;
    progress.abort();
    result?;

    let secs = started.elapsed().as_secs_f64();
    eprintln!("seed: {total_values} values in {secs:.1} s ({:.0} values/s)", total_values as f64 / secs.max(1e-9));
    Ok(ThingsFile {
        product_id: provisioned.product_id,
        key: KEY.to_string(),
        values_per_thing: plan.values_per_thing,
        newest_datetime: newest.to_rfc3339_opts(SecondsFormat::Millis, true),
        things: provisioned.things,
    })
}

/// `{"values":[…]}` with values `first..first+count` of one thing, value j stamped
/// `newest - j s`.
fn batch_body(newest: DateTime<Utc>, thing_index: usize, first: usize, count: usize) -> String {
    let mut body = String::with_capacity(24 + count * 80);
    body.push_str(r#"{"values":["#);
    for j in first..first + count {
        if j > first {
            body.push(',');
        }
        let at = newest - TimeDelta::seconds(j as i64);
        let value = 15.0 + ((thing_index * 7 + j) % 200) as f64 / 10.0;
        let _ = write!(
            body,
            r#"{{"key":"{KEY}","value":{value:.1},"datetime":"{}"}}"#,
            at.to_rfc3339_opts(SecondsFormat::Millis, true)
        );
    }
    body.push_str("]}");
    body
}

/// `thingline-bench seed`: spawn Thingline on the data dir (or use --thingline-url), seed,
/// save the things file, stop.
pub async fn run_command(args: &SeedArgs) -> Result<()> {
    let plan = SeedPlan {
        things: args.things,
        values_per_thing: args.values_per_thing,
        batch: args.batch,
        concurrency: args.concurrency,
    };
    let client = https_client(args.concurrency.max(1), Duration::from_secs(120))?;
    if let Some(url) = &args.thingline_url {
        let api = Api::new(client, url);
        let file = seed(&api, &args.server.panel_email, &args.server.panel_password, plan).await?;
        if let Some(dir) = &args.server.data_dir {
            file.save(dir)?;
        }
        return Ok(());
    }
    if args.server.data_dir.is_none() {
        bail!("seed needs --data-dir (the store it fills is kept for later runs)");
    }
    let data_dir = DataDir::from_args(&args.server)?;
    if ThingsFile::load(&data_dir.path)?.is_some() {
        bail!("{} already has {THINGS_FILE}; it is seeded (delete the data dir to reseed)", data_dir.path.display());
    }
    let spec = ThinglineSpec::new(&args.server, &data_dir.path)?;
    eprintln!("seed: {}", crate::report::store_line(Some(&spec.store_setup())));
    let mut server = spawn_thingline(&spec).await?;
    let outcome = async {
        server.wait_healthy(&client, spec.start_timeout, Duration::from_millis(20)).await?;
        let api = Api::new(client.clone(), &server.base_url);
        let file = seed(&api, &args.server.panel_email, &args.server.panel_password, plan).await?;
        file.save(&data_dir.path)?;
        eprintln!("seed: wrote {}", data_dir.path.join(THINGS_FILE).display());
        anyhow::Ok(())
    }
    .await;
    server.stop().await?;
    data_dir.finish();
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_body_is_valid_json_going_back_in_time() {
        let newest = DateTime::parse_from_rfc3339("2025-03-01T12:00:00.000Z")
            .map(|d| d.with_timezone(&Utc))
            .expect("valid date");
        let body = batch_body(newest, 3, 10, 3);
        let parsed: serde_json::Value = serde_json::from_str(&body).expect("valid JSON");
        let values = parsed["values"].as_array().expect("values array");
        assert_eq!(values.len(), 3);
        assert_eq!(values[0]["key"], "temperature");
        assert_eq!(values[0]["datetime"], "2025-03-01T11:59:50.000Z");
        assert_eq!(values[2]["datetime"], "2025-03-01T11:59:48.000Z");
        assert!(values[1]["value"].is_number());
    }
}
