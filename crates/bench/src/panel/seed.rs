//! The `panel` benchmark's store: one product (`temperature` and `humidity`, public) with
//! `--things` things, created through the bulk endpoint `POST /v2/panel/products/{id}/things`
//! (10,000 per call; where the server lacks it, activation codes and `POST /v2/things` instead),
//! the newest `--things-with-values` of them with one value of each key (so the first page of the
//! things table has latest values to show), and one of those — the newest — with `--values`
//! numeric `temperature` values spread evenly over the last day, written in batches of `--batch`.
//!
//! The fixture is recorded in the data dir (`bench-panel.json`) so that a run on the same
//! `--data-dir` measures again without seeding.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use futures_util::{StreamExt, TryStreamExt};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::PanelArgs;
use crate::api::{Api, Thing};

pub const FIXTURE_FILE: &str = "bench-panel.json";
/// Things per bulk call (the endpoint's limit).
const BULK: usize = 10_000;
/// Concurrent activations when the bulk endpoint is missing.
const ACTIVATIONS_IN_FLIGHT: usize = 32;
/// Concurrent single-thing writes (the latest values of the first pages).
const LATEST_IN_FLIGHT: usize = 16;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fixture {
    pub product_id: String,
    pub things: usize,
    /// How the things were made: `bulk` or `activation`.
    pub things_made_by: String,
    pub things_with_values: usize,
    pub chart_thing_id: String,
    pub chart_thing_token: String,
    pub values: usize,
    /// The newest value's datetime: the values span the day before it.
    pub newest_value: String,
    pub seeded_at: String,
}

impl Fixture {
    pub fn load(dir: &Path) -> Result<Option<Fixture>> {
        let path = dir.join(FIXTURE_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).map(Some).with_context(|| format!("parsing {}", path.display()))
    }

    fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(FIXTURE_FILE);
        let text = serde_json::to_string_pretty(self).context("serializing the fixture")?;
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    }
}

/// Seeds the store through the API (see the module docs) and records the fixture in `dir`.
pub async fn seed(api: &Api, client: &reqwest::Client, panel: &str, args: &PanelArgs, dir: &Path) -> Result<Fixture> {
    let started = Instant::now();
    let product_id = api.create_product(panel, "bench-panel", &["temperature", "humidity"]).await?;
    let made_by = match make_things_bulk(api, client, panel, &product_id, args.things).await? {
        true => "bulk",
        false => {
            eprintln!("panel: no bulk endpoint on this server: activating {} things one by one", args.things);
            make_things_by_activation(api, panel, &product_id, args.things).await?;
            "activation"
        }
    };
    eprintln!("panel: {} things made ({made_by}) in {:.1} s", args.things, started.elapsed().as_secs_f64());

    // The newest things, as the things table's first pages list them.
    let newest = newest_things(api, client, panel, &product_id, args.things_with_values.max(1)).await?;
    let chart = newest.first().cloned().ok_or_else(|| anyhow!("the product lists no thing"))?;
    let t = Instant::now();
    futures_util::stream::iter(newest.iter().skip(1).take(args.things_with_values.saturating_sub(1)).enumerate())
        .map(|(i, thing)| async move {
            let body = json!({"values": [
                {"key": "temperature", "value": 18.0 + (i % 70) as f64 / 10.0},
                {"key": "humidity", "value": 40 + (i % 30) as i64},
            ]});
            api.write_raw(&thing.thing_token, body.to_string())
                .await
                .with_context(|| format!("writing to {}", thing.thing_id))
        })
        .buffer_unordered(LATEST_IN_FLIGHT)
        .try_collect::<Vec<()>>()
        .await?;
    eprintln!(
        "panel: latest values of {} things written in {:.1} s",
        args.things_with_values,
        t.elapsed().as_secs_f64()
    );

    // The charted thing: `values` values over the last day, oldest first, 1 day / values apart.
    let t = Instant::now();
    let newest_value = Utc::now() - TimeDelta::seconds(1);
    let step_us = 86_400_000_000i64 / args.values.max(1) as i64;
    let batches = args.values.div_ceil(args.batch);
    let written = Arc::new(AtomicUsize::new(0));
    futures_util::stream::iter(0..batches)
        .map(|b| {
            let written = written.clone();
            let token = chart.thing_token.clone();
            async move {
                let first = b * args.batch;
                let count = args.batch.min(args.values - first);
                let body = value_batch(newest_value, step_us, args.values, first, count);
                api.write_raw(&token, body)
                    .await
                    .with_context(|| format!("writing values {first}.. of the chart thing"))?;
                written.fetch_add(count, Ordering::Relaxed);
                anyhow::Ok(())
            }
        })
        .buffer_unordered(args.concurrency)
        .try_collect::<Vec<()>>()
        .await?;
    let n = written.load(Ordering::Relaxed);
    eprintln!(
        "panel: {n} values of the chart thing written in {:.1} s ({:.0} values/s)",
        t.elapsed().as_secs_f64(),
        n as f64 / t.elapsed().as_secs_f64().max(1e-9)
    );

    let fixture = Fixture {
        product_id,
        things: args.things,
        things_made_by: made_by.into(),
        things_with_values: args.things_with_values.max(1),
        chart_thing_id: chart.thing_id,
        chart_thing_token: chart.thing_token,
        values: args.values,
        newest_value: newest_value.to_rfc3339_opts(SecondsFormat::Millis, true),
        seeded_at: crate::report::now(),
    };
    fixture.save(dir)?;
    Ok(fixture)
}

/// `{"values":[…]}` of values `first..first+count` (value i at newest - (total-1-i) steps).
fn value_batch(newest: DateTime<Utc>, step_us: i64, total: usize, first: usize, count: usize) -> String {
    let values: Vec<Value> = (first..first + count)
        .map(|i| {
            let at = newest - TimeDelta::microseconds(step_us * (total - 1 - i) as i64);
            // A day's cycle plus a faster wave and a little deterministic noise.
            let x = i as f64 / total as f64;
            let v = 20.0
                + 6.0 * (x * std::f64::consts::TAU).sin()
                + 1.5 * (x * 97.0 * std::f64::consts::TAU).sin()
                + ((i * 7919) % 100) as f64 / 200.0;
            json!({"key": "temperature", "value": (v * 100.0).round() / 100.0,
                   "datetime": at.to_rfc3339_opts(SecondsFormat::Millis, true)})
        })
        .collect();
    json!({ "values": values }).to_string()
}

/// Makes `count` things with the bulk endpoint; `false` when the server has none.
async fn make_things_bulk(
    api: &Api,
    client: &reqwest::Client,
    panel: &str,
    product: &str,
    count: usize,
) -> Result<bool> {
    let url = api.url(&format!("/v2/panel/products/{product}/things"));
    let mut made = 0;
    while made < count {
        let want = (count - made).min(BULK);
        let r = client
            .post(&url)
            .header(reqwest::header::AUTHORIZATION, panel)
            .json(&json!({"count": want}))
            .send()
            .await
            .context("POST /v2/panel/products/{id}/things")?;
        let status = r.status();
        let text = r.text().await.context("reading the bulk answer")?;
        if made == 0 && matches!(status, StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED) {
            return Ok(false);
        }
        if status != StatusCode::CREATED {
            bail!("POST /v2/panel/products/{{id}}/things {{\"count\":{want}}} answered {status}: {}", snippet(&text));
        }
        let v: Value = serde_json::from_str(&text).context("the bulk answer is not JSON")?;
        let got = v["things"].as_array().map_or(0, Vec::len);
        if got != want {
            bail!("asked the bulk endpoint for {want} things, got {got}");
        }
        made += got;
    }
    Ok(true)
}

async fn make_things_by_activation(api: &Api, panel: &str, product: &str, count: usize) -> Result<()> {
    let codes = api.activation_codes(panel, product, count).await?;
    futures_util::stream::iter(codes)
        .map(|code| async move { api.activate(&code).await })
        .buffer_unordered(ACTIVATIONS_IN_FLIGHT)
        .try_collect::<Vec<Thing>>()
        .await?;
    Ok(())
}

/// The newest `count` things of the product (the things table's default order), with tokens.
async fn newest_things(
    api: &Api,
    client: &reqwest::Client,
    panel: &str,
    product: &str,
    count: usize,
) -> Result<Vec<Thing>> {
    let mut things = Vec::with_capacity(count);
    while things.len() < count {
        let limit = (count - things.len()).min(1000);
        let url = api.url(&format!(
            "/v2/panel/products/{product}/things?limit={limit}&skip={}&sort=activatedAt&order=desc",
            things.len()
        ));
        let r =
            client.get(&url).header(reqwest::header::AUTHORIZATION, panel).send().await.context("listing things")?;
        let status = r.status();
        let text = r.text().await.context("reading the things page")?;
        if status != StatusCode::OK {
            bail!("GET {url} answered {status}: {}", snippet(&text));
        }
        let v: Value = serde_json::from_str(&text).context("the things page is not JSON")?;
        let page =
            v["things"].as_array().ok_or_else(|| anyhow!("the things page has no `things`: {}", snippet(&text)))?;
        if page.is_empty() {
            break;
        }
        for t in page {
            let field =
                |k: &str| t[k].as_str().map(str::to_owned).ok_or_else(|| anyhow!("a things row without {k}: {t}"));
            things.push(Thing { thing_id: field("thingId")?, thing_token: field("thingToken")? });
        }
    }
    Ok(things)
}

fn snippet(text: &str) -> String {
    text.chars().take(300).collect()
}
