//! `panel`: how fast the operator's web panel (docs/panel-ui.md) shows a big product and a long
//! timeline in a real browser, beside the panel API calls it makes, made directly, in the same
//! run.
//!
//! The bench spawns Thingline, seeds one product with `--things` things and one thing with
//! `--values` values over the last day (module `seed`), then drives headless Chromium through
//! chromedriver (module `browser`) and measures, per page:
//!
//! - **things table** (`#/products/{id}`): the time from navigation start to
//!   `performance.mark('tl:ready:product')` (the page's first data on screen), and the bytes the
//!   page transferred (the navigation's `transferSize` plus every resource entry's); first loads
//!   with an empty cache (`--cold-runs`, a fresh browser profile each, signed in from a page that
//!   loads no asset) and loads with a warm cache (`--runs`, one session; assets revalidate: 304);
//! - **chart** (`#/things/{id}`, the thing with `--values` values, the page's default range "1d"):
//!   the time to `tl:ready:thing` (first data including the charts drawn), warm cache;
//! - **the reference**: every panel and Thing API call the page made (its `fetch` resource
//!   entries), repeated `--api-runs` times directly with reqwest (panel token in
//!   `Authorization`), so the figures read as "browser = API time + X ms".
//!
//! Every load starts from `about:blank`, so each is a full document load with a fresh
//! performance timeline. Speed is measured, never asserted. Results are printed, and written as
//! JSON with `--json FILE`.

mod browser;
mod seed;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use fantoccini::Client;
use serde::Serialize;
use serde_json::{Value, json};

use crate::api::Api;
use crate::cli::{ServerArgs, secs};
use crate::driver::{https_client, median};
use crate::report::StoreSetup;
use crate::server::{DataDir, ServerProcess, ThinglineSpec, spawn_thingline};
use seed::Fixture;

#[derive(Debug, Args)]
pub struct PanelArgs {
    /// Things of the product whose things table is measured.
    #[arg(long, default_value_t = 100_000)]
    pub things: usize,
    /// Newest things given one value of each key (the first pages of the table show them).
    #[arg(long, default_value_t = 1000)]
    pub things_with_values: usize,
    /// Numeric values of the charted thing, spread evenly over the last day.
    #[arg(long, default_value_t = 100_000)]
    pub values: usize,
    /// Values per write request while seeding (the Thing API takes at most 10,000).
    #[arg(long, default_value_t = 5000)]
    pub batch: usize,
    /// Write requests in flight while seeding the chart thing.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Loads of each page with a warm cache (one browser session).
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    /// First loads of the things table with an empty cache (a fresh browser profile each).
    #[arg(long, default_value_t = 3)]
    pub cold_runs: usize,
    /// Repetitions of each API call the pages make, made directly (the reference).
    #[arg(long, default_value_t = 20)]
    pub api_runs: usize,
    /// Seconds a page may take to become ready.
    #[arg(long, default_value_t = 120.0)]
    pub page_timeout: f64,
    /// The Chromium executable.
    #[arg(long, default_value = "/usr/bin/chromium")]
    pub chromium: PathBuf,
    /// The chromedriver executable (matching Chromium's version).
    #[arg(long, default_value = "chromedriver")]
    pub chromedriver: PathBuf,
    /// Do not make Chromium trust the server's certificate (by its key): its errors are then only
    /// ignored, and Chromium caches nothing, so warm loads fetch every asset again.
    #[arg(long)]
    pub untrusted_certificate: bool,
    /// Also write machine-readable results to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Median and 95th percentile (nearest rank) of some samples.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stat {
    pub n: usize,
    pub median: f64,
    pub p95: f64,
    pub min: f64,
    pub max: f64,
}

impl Stat {
    fn of(samples: &[f64]) -> Stat {
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let rank = |q: f64| if n == 0 { 0.0 } else { sorted[((q * n as f64).ceil() as usize).clamp(1, n) - 1] };
        Stat {
            n,
            median: median(&sorted),
            p95: rank(0.95),
            min: sorted.first().copied().unwrap_or(0.0),
            max: sorted.last().copied().unwrap_or(0.0),
        }
    }
}

/// One resource the page fetched, as the browser's Resource Timing saw it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resource {
    pub name: String,
    pub initiator: String,
    pub start: f64,
    pub end: f64,
    pub transfer: f64,
    pub encoded: f64,
    pub decoded: f64,
    pub protocol: String,
}

/// One page load.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Load {
    /// ms from navigation start to the page's `tl:ready:<page>` mark.
    pub ready: f64,
    /// The document: transferred, encoded and decoded bytes, and its responseEnd (ms).
    pub doc_transfer: f64,
    pub doc_encoded: f64,
    pub doc_decoded: f64,
    pub doc_end: f64,
    /// The document's DOMContentLoaded end and the router's `tl:nav:<page>` mark (ms).
    pub dom_content_loaded: f64,
    pub nav_mark: Option<f64>,
    pub resources: Vec<Resource>,
    pub page: Option<String>,
    pub error: Option<String>,
    /// The thing page: the chart's `data-points` and the range button pressed.
    pub chart_points: Option<String>,
    pub range_pressed: Option<String>,
}

impl Load {
    fn is_api(r: &Resource) -> bool {
        r.initiator == "fetch" || r.initiator == "xmlhttprequest"
    }
    fn transferred(&self) -> f64 {
        self.doc_transfer + self.resources.iter().map(|r| r.transfer).sum::<f64>()
    }
    fn asset_transfer(&self) -> f64 {
        self.doc_transfer + self.resources.iter().filter(|r| !Self::is_api(r)).map(|r| r.transfer).sum::<f64>()
    }
    fn api_transfer(&self) -> f64 {
        self.resources.iter().filter(|r| Self::is_api(r)).map(|r| r.transfer).sum()
    }
}

/// One API call of a page: in the browser and made directly.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiCall {
    /// Method and path with the query (ids shortened to `{product}`, `{thing}`, `{token}`).
    pub call: String,
    /// Resource Timing duration in the page (request start to response end), over the loads.
    pub in_browser_ms: Stat,
    /// The same request made with reqwest (keep-alive connection, HTTP/1.1).
    pub direct_ms: Stat,
    pub body_bytes: usize,
    /// Encoded (on the wire) and decoded body sizes in the browser.
    pub browser_encoded: f64,
    pub browser_decoded: f64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PageResult {
    pub page: String,
    pub route: String,
    pub cache: String,
    pub ready_ms: Stat,
    /// Everything the page transferred (document, assets, API answers) per load.
    pub transferred_bytes: Stat,
    pub asset_bytes: Stat,
    pub api_bytes: Stat,
    /// The call the page waits for most (things page / series), made directly.
    pub main_call: String,
    pub main_call_direct_median_ms: f64,
    /// ready median - main call median: what the browser adds.
    pub browser_over_api_ms: f64,
    /// ready median / main call median.
    pub ratio: f64,
    /// The sum of the medians of every call the page made, made directly one after the other.
    pub all_calls_direct_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Asset {
    pub path: String,
    pub transfer: f64,
    pub encoded: f64,
    pub decoded: f64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PanelReport {
    pub scenario: String,
    pub params: Value,
    pub generated_at: String,
    pub store: StoreSetup,
    pub browser: String,
    pub fixture: Fixture,
    pub pages: Vec<PageResult>,
    pub api_calls: BTreeMap<String, Vec<ApiCall>>,
    /// The document and assets of the first cold load of the things table.
    pub cold_assets: Vec<Asset>,
    pub loads: BTreeMap<String, Vec<Load>>,
}

/// `thingline-bench panel`.
pub async fn run(args: &PanelArgs) -> Result<()> {
    if args.things == 0 || args.values == 0 || args.runs == 0 || args.api_runs == 0 {
        bail!("--things, --values, --runs and --api-runs must be at least 1");
    }
    if args.batch == 0 || args.batch > 10_000 || args.concurrency == 0 {
        bail!("--batch must be 1..=10000 and --concurrency at least 1");
    }
    let data_dir = DataDir::from_args(&args.server)?;
    let outcome = run_in(args, &data_dir.path).await;
    data_dir.finish();
    let report = outcome?;
    print(&report);
    if let Some(path) = &args.json {
        crate::report::write_json(path, &report)?;
    }
    Ok(())
}

async fn run_in(args: &PanelArgs, dir: &Path) -> Result<PanelReport> {
    let spec = ThinglineSpec::new(&args.server, dir)?;
    let mut server = spawn_thingline(&spec).await?;
    let client = https_client(64, Duration::from_secs(300))?;
    if let Err(e) = server.wait_healthy(&client, args.server.start_timeout(), Duration::from_millis(20)).await {
        let _ = server.stop().await;
        return Err(e);
    }
    let outcome = measure(args, &spec, &server, &client, dir).await;
    if outcome.is_err() {
        eprintln!("thingline's last lines:\n{}", server.recent_log());
    }
    let _ = server.stop().await;
    outcome
}

async fn measure(
    args: &PanelArgs,
    spec: &ThinglineSpec,
    server: &ServerProcess,
    client: &reqwest::Client,
    dir: &Path,
) -> Result<PanelReport> {
    let base = server.base_url.clone();
    let api = Api::new(client.clone(), &base);
    let panel = api.login(&args.server.panel_email, &args.server.panel_password).await?;
    let fixture = match Fixture::load(dir)? {
        Some(f) => {
            eprintln!("panel: reusing {} (seeded {})", dir.join(seed::FIXTURE_FILE).display(), f.seeded_at);
            f
        }
        None => seed::seed(&api, client, &panel, args, dir).await?,
    };
    let product_url = format!("{base}/#/products/{}", fixture.product_id);
    let thing_url = format!("{base}/#/things/{}", fixture.chart_thing_id);
    let timeout = secs(args.page_timeout);
    let mut driver = browser::Driver::start(&args.chromedriver, &args.chromium, &dir.join("chromium")).await?;
    if !args.untrusted_certificate {
        driver.trust(&dir.join("tls/cert.pem"))?;
    }
    let mut loads: BTreeMap<String, Vec<Load>> = BTreeMap::new();
    let mut browser_version = String::new();

    // Cold: a fresh profile per load, signed in from a page that loads no asset.
    for i in 0..args.cold_runs {
        let session = driver.session(timeout).await?;
        let outcome = async {
            if browser_version.is_empty() {
                browser_version = version(&session).await;
            }
            sign_in(&session, &base, &args.server.panel_email, &args.server.panel_password).await?;
            load(&session, &product_url, "product", timeout).await
        }
        .await;
        let _ = session.close().await;
        let l = outcome.with_context(|| format!("cold load {} of the things table", i + 1))?;
        eprintln!("panel: cold things table {}: ready in {:.0} ms, {:.0} KB", i + 1, l.ready, l.transferred() / 1024.0);
        loads.entry("product cold".into()).or_default().push(l);
    }

    // Warm: one session; a first (unrecorded) load of each page fills the cache.
    let session = driver.session(timeout).await?;
    let outcome = async {
        if browser_version.is_empty() {
            browser_version = version(&session).await;
        }
        sign_in(&session, &base, &args.server.panel_email, &args.server.panel_password).await?;
        load(&session, &product_url, "product", timeout).await?;
        load(&session, &thing_url, "thing", timeout).await?;
        for i in 0..args.runs {
            let p = load(&session, &product_url, "product", timeout).await?;
            let t = load(&session, &thing_url, "thing", timeout).await?;
            eprintln!("panel: warm run {}: things table {:.0} ms, chart {:.0} ms", i + 1, p.ready, t.ready);
            loads.entry("product warm".into()).or_default().push(p);
            loads.entry("thing warm".into()).or_default().push(t);
        }
        anyhow::Ok(())
    }
    .await;
    let _ = session.close().await;
    outcome?;
    drop(driver);

    // The reference: every API call the pages made, made directly.
    let shorten = |s: &str| {
        s.replace(&base, "")
            .replace(&fixture.product_id, "{product}")
            .replace(&fixture.chart_thing_token, "{token}")
            .replace(&fixture.chart_thing_id, "{thing}")
    };
    let mut api_calls = BTreeMap::new();
    for page in ["product", "thing"] {
        let warm = &loads[&format!("{page} warm")];
        let calls = direct_calls(client, &panel, warm, args.api_runs, &shorten).await?;
        api_calls.insert(page.to_owned(), calls);
    }

    let mut pages = Vec::new();
    for (key, route, main) in [
        ("product cold", "#/products/{product}", "/things?"),
        ("product warm", "#/products/{product}", "/things?"),
        ("thing warm", "#/things/{thing}", "/series/"),
    ] {
        let page = key.split(' ').next().unwrap_or(key);
        let Some(ls) = loads.get(key) else { continue };
        let calls = &api_calls[page];
        let main_call = calls.iter().find(|c| c.call.contains(main)).ok_or_else(|| {
            anyhow!(
                "the {page} page made no call matching {main:?}: {:?}",
                calls.iter().map(|c| &c.call).collect::<Vec<_>>()
            )
        })?;
        let ready = Stat::of(&ls.iter().map(|l| l.ready).collect::<Vec<_>>());
        let main_ms = main_call.direct_ms.median;
        pages.push(PageResult {
            page: page.to_owned(),
            route: route.to_owned(),
            cache: key.split(' ').nth(1).unwrap_or("").to_owned(),
            transferred_bytes: Stat::of(&ls.iter().map(Load::transferred).collect::<Vec<_>>()),
            asset_bytes: Stat::of(&ls.iter().map(Load::asset_transfer).collect::<Vec<_>>()),
            api_bytes: Stat::of(&ls.iter().map(Load::api_transfer).collect::<Vec<_>>()),
            main_call: main_call.call.clone(),
            main_call_direct_median_ms: main_ms,
            browser_over_api_ms: ready.median - main_ms,
            ratio: ready.median / main_ms.max(1e-9),
            all_calls_direct_ms: calls.iter().map(|c| c.direct_ms.median).sum(),
            ready_ms: ready,
        });
    }

    let cold_assets = loads
        .get("product cold")
        .and_then(|ls| ls.first())
        .map(|l| {
            let mut assets = vec![Asset {
                path: "/ (document)".into(),
                transfer: l.doc_transfer,
                encoded: l.doc_encoded,
                decoded: l.doc_decoded,
            }];
            assets.extend(l.resources.iter().filter(|r| !Load::is_api(r)).map(|r| Asset {
                path: shorten(&r.name),
                transfer: r.transfer,
                encoded: r.encoded,
                decoded: r.decoded,
            }));
            assets
        })
        .unwrap_or_default();

    Ok(PanelReport {
        scenario: "panel".into(),
        params: json!({
            "things": fixture.things,
            "thingsWithValues": fixture.things_with_values,
            "values": fixture.values,
            "runs": args.runs,
            "coldRuns": args.cold_runs,
            "apiRuns": args.api_runs,
            "durability": args.server.durability.as_str(),
        }),
        generated_at: crate::report::now(),
        store: spec.store_setup(),
        browser: browser_version,
        fixture,
        pages,
        api_calls,
        cold_assets,
        loads,
    })
}

async fn version(session: &Client) -> String {
    session
        .capabilities()
        .and_then(|c| c.get("browserVersion").and_then(Value::as_str).map(|v| format!("Chromium {v}")))
        .unwrap_or_else(|| "Chromium".into())
}

/// Signs the session in with the panel session API, from `/v2/health` (a page with no asset),
/// so that the first panel page loaded afterwards finds an empty cache.
async fn sign_in(session: &Client, base: &str, email: &str, password: &str) -> Result<()> {
    session.goto(&format!("{base}/v2/health")).await.context("opening /v2/health")?;
    let status = session
        .execute_async(
            "const [email, password, done] = arguments;
             fetch('/v2/panel/session', {method: 'POST', credentials: 'same-origin',
                   headers: {'Content-Type': 'application/json'}, body: JSON.stringify({email, password})})
               .then(r => done(r.status)).catch(e => done(String(e)));",
            vec![json!(email), json!(password)],
        )
        .await
        .context("POST /v2/panel/session from the browser")?;
    if status != json!(200) {
        bail!("POST /v2/panel/session from the browser answered {status}");
    }
    Ok(())
}

/// Waits for the mark `arguments[0]` (a PerformanceObserver, no polling) and returns the load's
/// timings.
const READY_JS: &str = r#"
const [name, done] = arguments;
const collect = () => {
  const mark = performance.getEntriesByName(name, 'mark')[0];
  const nav = performance.getEntriesByType('navigation')[0] || {};
  const q = id => document.querySelector(`[data-testid="${id}"]`);
  const err = q('error');
  const chart = q('chart-temperature');
  const pressed = document.querySelector('[data-testid^="range-"][aria-pressed="true"]');
  done({
    ready: mark.startTime,
    docTransfer: nav.transferSize || 0, docEncoded: nav.encodedBodySize || 0,
    docDecoded: nav.decodedBodySize || 0, docEnd: nav.responseEnd || 0,
    domContentLoaded: nav.domContentLoadedEventEnd || 0,
    navMark: (performance.getEntriesByName(name.replace('tl:ready:', 'tl:nav:'), 'mark')[0] || {}).startTime ?? null,
    resources: performance.getEntriesByType('resource').map(e => ({
      name: e.name, initiator: e.initiatorType, start: e.startTime, end: e.responseEnd,
      transfer: e.transferSize, encoded: e.encodedBodySize, decoded: e.decodedBodySize,
      protocol: e.nextHopProtocol || ''})),
    page: document.body.dataset.page || null,
    error: err && err.innerText.trim() ? err.innerText.trim() : null,
    chartPoints: chart ? chart.dataset.points : null,
    rangePressed: pressed ? pressed.dataset.testid : null,
  });
};
if (performance.getEntriesByName(name, 'mark').length) {
  collect();
} else {
  const obs = new PerformanceObserver(() => {
    if (performance.getEntriesByName(name, 'mark').length) { obs.disconnect(); collect(); }
  });
  obs.observe({type: 'mark'});
}
"#;

/// One full load of `url` (from `about:blank`), until the page `page` marks itself ready.
async fn load(session: &Client, url: &str, page: &str, timeout: Duration) -> Result<Load> {
    session.goto("about:blank").await.context("opening about:blank")?;
    let started = Instant::now();
    session.goto(url).await.with_context(|| format!("opening {url}"))?;
    let v = tokio::time::timeout(timeout, session.execute_async(READY_JS, vec![json!(format!("tl:ready:{page}"))]))
        .await
        .map_err(|_| anyhow!("{url} not ready within {timeout:?}"))?
        .with_context(|| format!("waiting for tl:ready:{page} on {url} ({:?} in)", started.elapsed()))?;
    let l: Load = serde_json::from_value(v.clone()).with_context(|| format!("the page's timings: {v}"))?;
    if l.page.as_deref() != Some(page) {
        bail!("{url} shows the page {:?}, not {page}", l.page);
    }
    if let Some(e) = &l.error {
        bail!("{url} shows an error: {e}");
    }
    Ok(l)
}

/// Every API call the loads made (the last load's URLs), made `runs` times each with reqwest.
async fn direct_calls(
    client: &reqwest::Client,
    panel: &str,
    loads: &[Load],
    runs: usize,
    shorten: &impl Fn(&str) -> String,
) -> Result<Vec<ApiCall>> {
    let Some(last) = loads.last() else { return Ok(Vec::new()) };
    let mut calls = Vec::new();
    for r in last.resources.iter().filter(|r| Load::is_api(r)) {
        let short = shorten(&r.name);
        // The same call in every load (its query may differ: a series' range moves with time).
        let path_of = |s: &str| s.split('?').next().unwrap_or(s).to_owned();
        let same: Vec<&Resource> = loads
            .iter()
            .flat_map(|l| l.resources.iter())
            .filter(|x| Load::is_api(x) && path_of(&shorten(&x.name)) == path_of(&short))
            .collect();
        let mut times = Vec::with_capacity(runs);
        let mut bytes = 0;
        for _ in 0..runs {
            let mut req = client.get(&r.name);
            if r.name.contains("/v2/panel/") {
                req = req.header(reqwest::header::AUTHORIZATION, panel);
            }
            let t = Instant::now();
            let resp = req.send().await.with_context(|| format!("GET {short}"))?;
            let status = resp.status();
            let body = resp.bytes().await.with_context(|| format!("reading GET {short}"))?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
            if !status.is_success() {
                bail!("GET {short} answered {status}: {}", String::from_utf8_lossy(&body[..body.len().min(300)]));
            }
            bytes = body.len();
        }
        calls.push(ApiCall {
            call: format!("GET {short}"),
            in_browser_ms: Stat::of(&same.iter().map(|x| x.end - x.start).collect::<Vec<_>>()),
            direct_ms: Stat::of(&times),
            body_bytes: bytes,
            browser_encoded: r.encoded,
            browser_decoded: r.decoded,
        });
    }
    Ok(calls)
}

fn kb(bytes: f64) -> String {
    format!("{:.1} KB", bytes / 1024.0)
}

fn print(report: &PanelReport) {
    println!();
    println!("scenario panel  {}", report.params);
    println!("{}", crate::report::store_line(Some(&report.store)));
    println!(
        "{}; product with {} things ({}), chart thing with {} values over the day before {}",
        report.browser,
        report.fixture.things,
        report.fixture.things_made_by,
        report.fixture.values,
        report.fixture.newest_value
    );
    println!();
    println!(
        "{:<8} {:<6} {:>4} {:>11} {:>9} {:>13} {:>16} {:>9} {:>7} {:>12}",
        "page", "cache", "n", "ready p50", "p95", "transferred", "main call p50", "browser+", "ratio", "all calls"
    );
    for p in &report.pages {
        println!(
            "{:<8} {:<6} {:>4} {:>8.1} ms {:>6.1} ms {:>13} {:>13.1} ms {:>6.1} ms {:>6.1}x {:>9.1} ms",
            p.page,
            p.cache,
            p.ready_ms.n,
            p.ready_ms.median,
            p.ready_ms.p95,
            kb(p.transferred_bytes.median),
            p.main_call_direct_median_ms,
            p.browser_over_api_ms,
            p.ratio,
            p.all_calls_direct_ms,
        );
    }
    for p in &report.pages {
        println!(
            "{} ({} cache): browser = {} API time ({:.1} ms) + {:.1} ms; assets {}, API answers {} per load",
            p.route,
            p.cache,
            p.main_call,
            p.main_call_direct_median_ms,
            p.browser_over_api_ms,
            kb(p.asset_bytes.median),
            kb(p.api_bytes.median)
        );
    }
    for (page, calls) in &report.api_calls {
        println!();
        println!("API calls of the {page} page: in the browser (Resource Timing) and made directly (reqwest)");
        for c in calls {
            println!(
                "  {:<90} browser p50 {:>7.1} ms  direct p50 {:>7.1} ms p95 {:>7.1} ms  {:>9} (wire {}, decoded {})",
                c.call,
                c.in_browser_ms.median,
                c.direct_ms.median,
                c.direct_ms.p95,
                kb(c.body_bytes as f64),
                kb(c.browser_encoded),
                kb(c.browser_decoded)
            );
        }
    }
    if !report.cold_assets.is_empty() {
        println!();
        println!("assets of the first cold load (transferred = on the wire with headers; encoded = compressed body)");
        let (mut t, mut e, mut d) = (0.0, 0.0, 0.0);
        for a in &report.cold_assets {
            println!("  {:<50} {:>10} {:>10} {:>10}", a.path, kb(a.transfer), kb(a.encoded), kb(a.decoded));
            t += a.transfer;
            e += a.encoded;
            d += a.decoded;
        }
        println!(
            "  {:<50} {:>10} {:>10} {:>10}",
            format!("total ({} files)", report.cold_assets.len()),
            kb(t),
            kb(e),
            kb(d)
        );
    }
}
