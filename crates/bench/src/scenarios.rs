//! Throughput scenarios and the run that measures them on every target.
//!
//! A scenario is a setup step per target that returns a [`Workload`], i.e. a request
//! generator closure. The reference gets the same request shapes with synthetic tokens
//! (it answers anything with 201); Thingline gets real things made through its API.
//! To add a scenario (app reads/writes with session tokens, object store calls, …):
//! implement [`Scenario`], add a variant to `cli::ScenarioName`, and a line in
//! [`scenario_for`].

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures_util::future::BoxFuture;
use reqwest::Method;
use serde_json::json;

use crate::api::Api;
use crate::app::{AppKind, AppScenario, ObjKind, ObjScenario};
use crate::cli::{Only, RunArgs, ScenarioName, secs};
use crate::driver::{DriverConfig, Req, Workload, https_client, run_load};
use crate::report::{self, Measurement, StoreSetup, ThroughputReport};
use crate::seed::{self, KEY, SeedPlan, ThingsFile};
use crate::server::{DataDir, ServerProcess, ThinglineSpec, spawn_reference, spawn_thingline};

/// Per-request timeout of the load loops.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between two measurements, so the previous one's connections wind down.
const SETTLE: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// Answers anything: gets synthetic tokens, no setup.
    Raw,
    /// A real Thingline: setup through its API.
    Thingline,
}

/// One server a scenario is measured on.
pub struct Target {
    pub kind: TargetKind,
    pub label: String,
    pub base_url: String,
    /// Setup client (pooled, long timeout).
    pub api: Api,
    pub panel_email: String,
    pub panel_password: String,
    /// Thingline's data dir, where seeded stores keep their things file.
    pub data_dir: Option<PathBuf>,
    /// Thingline's store when not SQLite in the data dir (`--store-url`): the app fixtures
    /// write their users there.
    pub store_url: Option<String>,
    /// For resident memory after each measurement.
    pub pid: Option<u32>,
}

/// A measurable workload: how to prepare a target, and what to call it.
pub trait Scenario: Send + Sync {
    fn name(&self) -> &'static str;
    /// Scenario parameters, for the report.
    fn params(&self) -> serde_json::Value;
    /// Prepare `target` (things, seeds, sessions…) and return the request generator.
    fn setup<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<Workload>>;
}

pub fn scenario_for(args: &RunArgs) -> Result<Box<dyn Scenario>> {
    Ok(match args.scenario {
        ScenarioName::Write => Box::new(WriteScenario { batch: args.batch, things: args.things }),
        ScenarioName::ReadLatest => Box::new(ReadLatestScenario {
            things: args.things,
            values_per_thing: args.values_per_thing,
            limit: args.limit,
            seeded: std::sync::Mutex::new(None),
        }),
        ScenarioName::AppRead | ScenarioName::AppWrite | ScenarioName::MeResources => {
            let (kind, default_users) = match args.scenario {
                ScenarioName::AppRead => (AppKind::Read, 10),
                ScenarioName::AppWrite => (AppKind::Write, 10),
                _ => (AppKind::MeResources, 10_000),
            };
            let users = args.users.unwrap_or(default_users);
            let things = args.app_things.unwrap_or((users * args.things_per_user).clamp(1, 1000));
            Box::new(AppScenario { kind, users, things_per_user: args.things_per_user, things })
        }
        ScenarioName::ObjCreate | ScenarioName::ObjGet | ScenarioName::ObjList => Box::new(ObjScenario {
            kind: match args.scenario {
                ScenarioName::ObjCreate => ObjKind::Create,
                ScenarioName::ObjGet => ObjKind::Get,
                _ => ObjKind::List,
            },
            objects: args.objects,
            list_objects: args.list_objects,
            limit: args.list_limit,
            seeded: std::sync::Mutex::new(None),
        }),
        ScenarioName::Startup => bail!("startup is not a throughput scenario"),
    })
}

/// `POST /v2/things/{token}` with `batch` temperature values, over `things` things.
pub struct WriteScenario {
    pub batch: usize,
    pub things: usize,
}

impl Scenario for WriteScenario {
    fn name(&self) -> &'static str {
        "write"
    }

    fn params(&self) -> serde_json::Value {
        json!({"batch": self.batch, "things": self.things})
    }

    fn setup<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<Workload>> {
        Box::pin(async move {
            let tokens = match target.kind {
                TargetKind::Raw => synthetic_tokens(self.things),
                TargetKind::Thingline => {
                    let provisioned =
                        target.api.provision(&target.panel_email, &target.panel_password, "bench", self.things).await?;
                    provisioned.things.into_iter().map(|t| t.thing_token).collect()
                }
            };
            Ok(write_workload(&target.base_url, &tokens, self.batch))
        })
    }
}

fn write_workload(base_url: &str, tokens: &[String], batch: usize) -> Workload {
    let urls: Arc<Vec<String>> = Arc::new(tokens.iter().map(|t| format!("{base_url}/v2/things/{t}")).collect());
    Workload {
        values_per_request: batch as u64,
        generator: Arc::new(move |rng| {
            let url = urls[rng.below(urls.len())].clone();
            let mut body = String::with_capacity(16 + batch * 40);
            body.push_str(r#"{"values":["#);
            for i in 0..batch {
                if i > 0 {
                    body.push(',');
                }
                let value = 15.0 + rng.unit() * 20.0;
                let _ = write!(body, r#"{{"key":"{KEY}","value":{value:.2}}}"#);
            }
            body.push_str("]}");
            Req { method: Method::POST, url, body: Some(body), auth: None }
        }),
    }
}

/// `GET /v2/things/{token}/resources/temperature?limit=…` on random seeded things.
pub struct ReadLatestScenario {
    pub things: usize,
    pub values_per_thing: usize,
    pub limit: u32,
    /// What the store really holds (a reused seed may differ from the flags).
    pub seeded: std::sync::Mutex<Option<(usize, usize)>>,
}

impl Scenario for ReadLatestScenario {
    fn name(&self) -> &'static str {
        "read-latest"
    }

    fn params(&self) -> serde_json::Value {
        let (things, values_per_thing) =
            self.seeded.lock().ok().and_then(|seeded| *seeded).unwrap_or((self.things, self.values_per_thing));
        json!({"things": things, "valuesPerThing": values_per_thing, "limit": self.limit})
    }

    fn setup<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<Workload>> {
        Box::pin(async move {
            let tokens = match target.kind {
                TargetKind::Raw => synthetic_tokens(self.things),
                TargetKind::Thingline => {
                    let file = self.seed_or_reuse(target).await?;
                    self.check_read(target, &file).await?;
                    if let Ok(mut seeded) = self.seeded.lock() {
                        *seeded = Some((file.things.len(), file.values_per_thing));
                    }
                    file.things.into_iter().map(|t| t.thing_token).collect()
                }
            };
            let limit = self.limit;
            let urls: Arc<Vec<String>> = Arc::new(
                tokens
                    .iter()
                    .map(|t| format!("{}/v2/things/{t}/resources/{KEY}?limit={limit}", target.base_url))
                    .collect(),
            );
            Ok(Workload {
                values_per_request: 1,
                generator: Arc::new(move |rng| Req {
                    method: Method::GET,
                    url: urls[rng.below(urls.len())].clone(),
                    body: None,
                    auth: None,
                }),
            })
        })
    }
}

impl ReadLatestScenario {
    /// The data dir's things file, or a fresh seed (saved when there is a data dir).
    async fn seed_or_reuse(&self, target: &Target) -> Result<ThingsFile> {
        if let Some(dir) = &target.data_dir
            && let Some(file) = ThingsFile::load(dir)?
        {
            eprintln!(
                "read-latest: reusing {} things x {} values from {}",
                file.things.len(),
                file.values_per_thing,
                dir.join(seed::THINGS_FILE).display()
            );
            return Ok(file);
        }
        eprintln!("read-latest: seeding {} things x {} values", self.things, self.values_per_thing);
        let plan =
            SeedPlan { things: self.things, values_per_thing: self.values_per_thing, batch: 1000, concurrency: 8 };
        let file = seed::seed(&target.api, &target.panel_email, &target.panel_password, plan).await?;
        if let Some(dir) = &target.data_dir {
            file.save(dir)?;
        }
        Ok(file)
    }

    /// One read before measuring: the answer must be an array of the expected length.
    async fn check_read(&self, target: &Target, file: &ThingsFile) -> Result<()> {
        let Some(thing) = file.things.first() else {
            bail!("the things file lists no things");
        };
        let path = format!("/v2/things/{}/resources/{KEY}?limit={}", thing.thing_token, self.limit);
        let client = https_client(1, Duration::from_secs(30))?;
        let response = client.get(target.api.url(&path)).send().await.context("read-latest check read")?;
        let status = response.status();
        let body: serde_json::Value = response.json().await.context("read-latest check read: answer is not JSON")?;
        let expected = (self.limit as usize).min(file.values_per_thing).min(1000);
        match body.as_array() {
            Some(items) if status.is_success() && items.len() == expected => Ok(()),
            Some(items) => {
                eprintln!("warning: check read answered {status} with {} items, expected {expected}", items.len());
                Ok(())
            }
            None => bail!("check read answered {status} with a non-array: {body}"),
        }
    }
}

/// Tokens of the real shape (43 URL-safe characters) for targets that accept anything.
pub(crate) fn synthetic_tokens(count: usize) -> Vec<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut rng = crate::driver::WorkerRng::new(42);
    (0..count).map(|_| (0..43).map(|_| ALPHABET[rng.below(ALPHABET.len())] as char).collect()).collect()
}

/// `thingline-bench run write|read-latest`: start the targets, set them up, measure them
/// round by round (alternating order), stop them, report.
pub async fn run(args: &RunArgs) -> Result<()> {
    let scenario = scenario_for(args)?;
    let mut processes: Vec<ServerProcess> = Vec::new();
    let mut data_dir: Option<DataDir> = None;
    let outcome = measure(args, scenario.as_ref(), &mut processes, &mut data_dir).await;
    for process in processes {
        if let Err(err) = process.stop().await {
            eprintln!("note: stopping a server: {err:#}");
        }
    }
    if let Some(dir) = data_dir {
        dir.finish();
    }
    let report = outcome?;
    report::print_throughput(&report);
    if let Some(path) = &args.json {
        report::write_json(path, &report)?;
    }
    report::check_errors(&report.measurements)
}

async fn measure(
    args: &RunArgs,
    scenario: &dyn Scenario,
    processes: &mut Vec<ServerProcess>,
    data_dir: &mut Option<DataDir>,
) -> Result<ThroughputReport> {
    let (targets, store) = start_targets(args, processes, data_dir).await?;
    let mut workloads = Vec::with_capacity(targets.len());
    for target in &targets {
        eprintln!("{}: setting up {}", target.label, scenario.name());
        let workload = scenario
            .setup(target)
            .await
            .with_context(|| format!("setting up {} on {}", scenario.name(), target.label))?;
        workloads.push(workload);
    }

    let config = DriverConfig {
        concurrency: args.concurrency,
        warmup: secs(args.warmup),
        duration: secs(args.seconds),
        max_requests: args.max_requests,
        request_timeout: REQUEST_TIMEOUT,
    };
    let mut measurements = Vec::new();
    for round in 0..args.rounds {
        let mut order: Vec<usize> = (0..targets.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for index in order {
            let target = &targets[index];
            eprintln!(
                "round {}: {} {} (concurrency {}, {:.0}+{:.0} s)",
                round + 1,
                target.label,
                scenario.name(),
                config.concurrency,
                config.warmup.as_secs_f64(),
                config.duration.as_secs_f64()
            );
            let stats = run_load(&config, &workloads[index]).await?;
            let rss_mb = target
                .pid
                .and_then(|pid| crate::server::rss_bytes_of(pid).ok())
                .map(|bytes| bytes as f64 / (1024.0 * 1024.0));
            let measurement = Measurement { target: target.label.clone(), round: round + 1, stats, rss_mb };
            eprintln!("  {}", report::one_line(&measurement));
            measurements.push(measurement);
            tokio::time::sleep(SETTLE).await;
        }
    }
    let mut params = scenario.params();
    if let Some(map) = params.as_object_mut() {
        map.insert("concurrency".into(), json!(args.concurrency));
        map.insert("seconds".into(), json!(args.seconds));
        map.insert("warmup".into(), json!(args.warmup));
        map.insert("rounds".into(), json!(args.rounds));
    }
    Ok(ThroughputReport::new(scenario.name(), params, store, measurements))
}

/// Spawn (or point at) the reference and Thingline, per `--only`, `--target-url` and
/// `--thingline-url`, and wait until they are healthy. Also returns the store of the Thingline
/// it spawned.
async fn start_targets(
    args: &RunArgs,
    processes: &mut Vec<ServerProcess>,
    data_dir: &mut Option<DataDir>,
) -> Result<(Vec<Target>, Option<StoreSetup>)> {
    let server = &args.server;
    let setup_client = https_client(16, Duration::from_secs(120))?;
    let target = |kind, label: &str, base_url: &str, data: Option<PathBuf>, pid| Target {
        kind,
        label: label.to_string(),
        base_url: base_url.trim_end_matches('/').to_string(),
        api: Api::new(setup_client.clone(), base_url),
        panel_email: server.panel_email.clone(),
        panel_password: server.panel_password.clone(),
        data_dir: data,
        store_url: server.store_url.clone(),
        pid,
    };

    if let Some(url) = &args.target_url {
        return Ok((vec![target(TargetKind::Raw, "target", url, None, None)], None));
    }
    let mut targets = Vec::new();
    let mut store = None;
    if args.only != Only::Thingline {
        let mut reference = spawn_reference(server.server_log, server.start_timeout()).await?;
        let ready = reference.wait_healthy(&setup_client, server.start_timeout(), Duration::from_millis(5)).await?;
        eprintln!("reference: {} ready in {} ms", reference.base_url, ready.as_millis());
        targets.push(target(TargetKind::Raw, "reference", &reference.base_url, None, Some(reference.pid)));
        processes.push(reference);
    }
    if args.only != Only::Reference {
        if let Some(url) = &args.thingline_url {
            targets.push(target(TargetKind::Thingline, "thingline", url, server.data_dir.clone(), None));
        } else {
            let path = data_dir.insert(DataDir::from_args(server)?).path.clone();
            let spec = ThinglineSpec::new(server, &path)?;
            store = Some(spec.store_setup());
            let mut thingline = spawn_thingline(&spec).await?;
            let ready = thingline.wait_healthy(&setup_client, spec.start_timeout, Duration::from_millis(5)).await;
            let base_url = thingline.base_url.clone();
            let pid = thingline.pid;
            processes.push(thingline);
            let ready = ready?;
            eprintln!(
                "thingline: {base_url} ready in {} ms ({}, data {} on {}, durability {})",
                ready.as_millis(),
                spec.bin.display(),
                path.display(),
                spec.mount.fs_type,
                spec.durability.as_str()
            );
            targets.push(target(TargetKind::Thingline, "thingline", &base_url, Some(path), Some(pid)));
        }
    }
    Ok((targets, store))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::WorkerRng;

    #[test]
    fn synthetic_tokens_have_the_real_shape() {
        let tokens = synthetic_tokens(5);
        assert_eq!(tokens.len(), 5);
        assert!(tokens.iter().all(|t| t.len() == 43));
    }

    #[test]
    fn write_bodies_carry_the_batch() {
        let workload = write_workload("https://x", &synthetic_tokens(3), 4);
        let mut rng = WorkerRng::new(1);
        let req = (workload.generator)(&mut rng);
        assert_eq!(req.method, Method::POST);
        assert!(req.url.starts_with("https://x/v2/things/"));
        let body: serde_json::Value = serde_json::from_str(req.body.as_deref().expect("a body")).expect("JSON");
        assert_eq!(body["values"].as_array().map(Vec::len), Some(4));
        assert_eq!(workload.values_per_request, 4);
    }
}
