//! A real browser for the panel tests: headless Chromium driven through its own chromedriver
//! (WebDriver, with fantoccini), both started per test on a free port and killed at the end,
//! even when the test fails ([`Browser`]'s `Drop`).
//!
//! Where Chromium or chromedriver is missing the tests skip with a loud notice, except on CI
//! (`CI=true`), where that fails them. `THINGLINE_TEST_CHROMIUM` and
//! `THINGLINE_TEST_CHROMEDRIVER` name other executables (default: `/usr/bin/chromium`, then
//! `chromium`, `chromium-browser` or `google-chrome` on the `PATH`; `chromedriver` on the `PATH`).
//!
//! Every wait is bounded by a deadline and polls; none is a fixed sleep. The helpers address the
//! page by its `data-testid` hooks (docs/panel-ui.md).

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator, elements::Element};
use serde_json::{Value, json};

/// How long a single wait for something on the page may take by default.
pub const WAIT: Duration = Duration::from_secs(10);

/// The Chromium and chromedriver executables.
#[derive(Debug, Clone)]
pub struct Tools {
    pub chromium: PathBuf,
    pub chromedriver: PathBuf,
}

fn on_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true"))
}

fn executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| executable(p))
}

fn find(env: &str, fixed: &[&str], names: &[&str]) -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os(env) {
        let p = PathBuf::from(p);
        return if executable(&p) { Ok(p) } else { Err(format!("{env}={} is not an executable", p.display())) };
    }
    fixed
        .iter()
        .map(PathBuf::from)
        .find(|p| executable(p))
        .or_else(|| names.iter().find_map(|n| on_path(n)))
        .ok_or_else(|| format!("none of {} found (set {env})", [fixed, names].concat().join(", ")))
}

/// Chromium and chromedriver, or `None` (a loud notice: the caller skips its test) when one is
/// missing; on CI (`CI=true`) a missing one fails the test.
pub fn tools() -> Option<Tools> {
    let chromium =
        find("THINGLINE_TEST_CHROMIUM", &["/usr/bin/chromium"], &["chromium", "chromium-browser", "google-chrome"]);
    let chromedriver = find("THINGLINE_TEST_CHROMEDRIVER", &["/usr/bin/chromedriver"], &["chromedriver"]);
    match (chromium, chromedriver) {
        (Ok(chromium), Ok(chromedriver)) => Some(Tools { chromium, chromedriver }),
        (a, b) => {
            let why: Vec<String> = [a.err(), b.err()].into_iter().flatten().collect();
            if on_ci() {
                panic!("the browser tests need Chromium and chromedriver ({}); CI=true requires them", why.join("; "));
            }
            eprintln!(
                "NOTICE: Chromium or chromedriver missing ({}): SKIPPING this browser test \
                 (install the Debian packages chromium and chromium-driver to run it)",
                why.join("; ")
            );
            None
        }
    }
}

/// A chromedriver process in a process group of its own, with the Chromium it starts; both are
/// killed on drop.
pub struct Driver {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// The browser profiles of the sessions (their Chromium processes are found by it).
    profiles: Vec<tempfile::TempDir>,
    tools: Tools,
}

impl Driver {
    /// Starts chromedriver on a free port (`--port=0`, read back from its start line; else a
    /// port found by binding 127.0.0.1:0) and waits until `/status` says it is ready.
    pub async fn start(tools: &Tools) -> Driver {
        let (child, port) = match spawn_driver(tools, 0) {
            Ok(started) => started,
            Err(why) => {
                eprintln!("chromedriver --port=0: {why}; trying a port picked by binding 127.0.0.1:0");
                let port = std::net::TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .expect("a free port")
                    .port();
                spawn_driver(tools, port).unwrap_or_else(|e| panic!("chromedriver --port={port}: {e}"))
            }
        };
        let driver =
            Driver { child, url: format!("http://127.0.0.1:{port}"), profiles: Vec::new(), tools: tools.clone() };
        let client = reqwest::Client::builder().no_proxy().build().expect("client");
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = match client.get(format!("{}/status", driver.url)).timeout(Duration::from_secs(2)).send().await
            {
                Ok(r) => r.json::<Value>().await.ok().is_some_and(|v| v["value"]["ready"] == json!(true)),
                Err(_) => false,
            };
            if ready {
                return driver;
            }
            assert!(Instant::now() < until, "chromedriver at {} not ready within 20 s", driver.url);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A new browser session: headless Chromium with a fresh profile.
    pub async fn session(&mut self, screenshots: &Path) -> Browser {
        let profile = tempfile::Builder::new().prefix("tl-chromium-").tempdir().expect("profile dir");
        let args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--ignore-certificate-errors".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--no-first-run".to_owned(),
            "--no-default-browser-check".to_owned(),
            "--window-size=1280,900".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert("acceptInsecureCerts".into(), json!(true));
        caps.insert("goog:chromeOptions".into(), json!({"binary": self.tools.chromium, "args": args}));
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = tokio::time::timeout(
            Duration::from_secs(30),
            ClientBuilder::new(connector).capabilities(caps).connect(&self.url),
        )
        .await
        .expect("a browser session within 30 s")
        .unwrap_or_else(|e| panic!("starting Chromium through chromedriver: {e}"));
        self.profiles.push(profile);
        std::fs::create_dir_all(screenshots).expect("screenshot dir");
        Browser { client, screenshots: screenshots.to_path_buf() }
    }

    /// Kills Chromium (every process started with one of this driver's profiles) and chromedriver.
    fn kill_all(&mut self) {
        // The browsers first: chromedriver may otherwise be gone before it could close them, and
        // Chromium may have left chromedriver's process group.
        for profile in &self.profiles {
            let marker = format!("--user-data-dir={}", profile.path().display());
            for pid in pids_with_arg(&marker) {
                // SAFETY: kill(2) on a process of a browser this driver started (its command line
                // names the profile dir made for it).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        if let Ok(None) = self.child.try_wait() {
            let pgid = self.child.id() as i32;
            // SAFETY: the process group chromedriver leads (spawned with process_group(0)).
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// The pids whose command line holds `arg` (the browser processes of one profile).
fn pids_with_arg(arg: &str) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|b| *b == 0).any(|a| a == arg.as_bytes()))
        })
        .collect()
}

/// Spawns chromedriver on `port` (0: it picks one) and reads the port from its start line.
fn spawn_driver(tools: &Tools, port: u16) -> Result<(Child, u16), String> {
    let mut child = Command::new(&tools.chromedriver)
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", tools.chromedriver.display()))?;
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // Read to the end: chromedriver must never block on a full pipe.
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let until = Instant::now() + Duration::from_secs(15);
    let mut seen = Vec::new();
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(rest) = line.split("started successfully on port ").nth(1) {
                    let n: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    match n.parse::<u16>() {
                        Ok(p) if p != 0 => return Ok((child, p)),
                        _ => {}
                    }
                }
                seen.push(line);
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no usable start line within 15 s; it printed: {seen:?}"));
            }
        }
    }
}

/// Starts a chromedriver and one browser session, or `None` when the tools are missing
/// (see [`tools`]).
pub async fn start(screenshots: &Path) -> Option<(Driver, Browser)> {
    let tools = tools()?;
    let mut driver = Driver::start(&tools).await;
    let browser = driver.session(screenshots).await;
    Some((driver, browser))
}

/// The screenshots folder of the panel tests: `$CARGO_TARGET_TMPDIR/panel-screenshots`.
pub fn screenshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("panel-screenshots")
}

/// `[data-testid="id"]`
pub fn tid(id: &str) -> String {
    format!("[data-testid=\"{id}\"]")
}

/// One browser session.
pub struct Browser {
    pub client: Client,
    screenshots: PathBuf,
}

/// What the page shows, for failure messages.
const STATE_JS: &str = r#"
const t = id => { const e = document.querySelector(`[data-testid="${id}"]`); return e ? e.innerText.trim().slice(0, 300) : null; };
return {url: location.href, page: document.body && document.body.dataset.page || null,
        ready: document.body && document.body.dataset.ready || null,
        title: t('page-title'), error: t('error')};
"#;

impl Browser {
    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap_or_else(|e| panic!("goto {url}: {e}"));
    }

    pub async fn refresh(&self) {
        self.client.refresh().await.unwrap_or_else(|e| panic!("reload: {e}"));
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) and returns its value.
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client.execute(script, args).await.unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Runs an asynchronous script: `arguments[arguments.length - 1]` is the callback.
    pub async fn js_async(&self, script: &str, args: Vec<Value>) -> Value {
        self.client.execute_async(script, args).await.unwrap_or_else(|e| panic!("async script failed: {e}\n{script}"))
    }

    /// `fetch(path, init)` from inside the page (its cookie goes along): `{status, text, headers}`.
    pub async fn fetch(&self, path: &str, init: Value) -> Value {
        self.js_async(
            r#"const [path, init, done] = arguments;
               fetch(path, Object.assign({credentials: 'same-origin'}, init))
                 .then(async r => done({status: r.status, text: await r.text(),
                                        headers: Object.fromEntries(r.headers.entries())}))
                 .catch(e => done({status: -1, text: String(e), headers: {}}));"#,
            vec![json!(path), init],
        )
        .await
    }

    /// The page's URL, route, readiness, title and error, for failure messages.
    pub async fn state(&self) -> Value {
        self.client.execute(STATE_JS, vec![]).await.unwrap_or_else(|e| json!({"stateError": e.to_string()}))
    }

    /// Polls `script` until it returns something other than `null`/`false`/`undefined`; panics
    /// with `what` and the page's state after `limit`.
    pub async fn wait_js(&self, what: &str, limit: Duration, script: &str, args: Vec<Value>) -> Value {
        let until = Instant::now() + limit;
        loop {
            match self.client.execute(script, args.clone()).await {
                Ok(Value::Null | Value::Bool(false)) => {}
                Ok(v) => return v,
                // A navigation in progress can fail a script; the next poll sees the new page.
                Err(_) => {}
            }
            if Instant::now() >= until {
                panic!("waited {limit:?} for {what}; the page: {}", self.state().await);
            }
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    }

    /// Waits until the page `name` (`document.body.dataset.page`) says it is ready.
    pub async fn wait_page(&self, name: &str) {
        self.wait_js(
            &format!("page {name} ready"),
            WAIT,
            "return document.body.dataset.page === arguments[0] && document.body.dataset.ready === 'true';",
            vec![json!(name)],
        )
        .await;
    }

    /// Waits until the route `name` is shown (`document.body.dataset.page`), ready or not.
    pub async fn wait_route(&self, name: &str) {
        self.wait_js(
            &format!("page {name}"),
            WAIT,
            "return document.body.dataset.page === arguments[0];",
            vec![json!(name)],
        )
        .await;
    }

    /// Waits for a displayed element with this `data-testid`.
    pub async fn visible(&self, id: &str) -> Element {
        self.visible_sel(&tid(id)).await
    }

    /// Waits for a displayed element matching the CSS selector `sel`.
    pub async fn visible_sel(&self, sel: &str) -> Element {
        let until = Instant::now() + WAIT;
        loop {
            if let Ok(e) = self.client.find(Locator::Css(sel)).await
                && e.is_displayed().await.unwrap_or(false)
            {
                return e;
            }
            if Instant::now() >= until {
                panic!("waited {WAIT:?} for a visible {sel}; the page: {}", self.state().await);
            }
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    }

    /// The visible text of the (first) element with this `data-testid`, `None` when absent.
    pub async fn text(&self, id: &str) -> Option<String> {
        let v = self
            .js("const e = document.querySelector(arguments[0]); return e ? e.innerText : null;", vec![json!(tid(id))])
            .await;
        v.as_str().map(str::to_owned)
    }

    /// Waits until the element's visible text satisfies `check`; returns it.
    pub async fn wait_text(&self, id: &str, what: &str, limit: Duration, check: impl Fn(&str) -> bool) -> String {
        let until = Instant::now() + limit;
        loop {
            let text = self.text(id).await;
            if let Some(t) = &text
                && check(t)
            {
                return t.clone();
            }
            if Instant::now() >= until {
                panic!(
                    "waited {limit:?} for {tid} ({what}); its text: {text:?}; the page: {}",
                    self.state().await,
                    tid = tid(id)
                );
            }
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    }

    /// Clears the input with this `data-testid` and types `value` into it (a `<select>`: picks
    /// the option with that value).
    pub async fn fill(&self, id: &str, value: &str) {
        let e = self.visible(id).await;
        if e.tag_name().await.is_ok_and(|t| t.eq_ignore_ascii_case("select")) {
            e.select_by_value(value).await.unwrap_or_else(|err| panic!("select {value:?} in {}: {err}", tid(id)));
            return;
        }
        e.clear().await.unwrap_or_else(|err| panic!("clear {}: {err}", tid(id)));
        e.send_keys(value).await.unwrap_or_else(|err| panic!("type into {}: {err}", tid(id)));
    }

    /// Clicks the element with this `data-testid` once it is visible (retried while something
    /// covers it, within [`WAIT`]).
    pub async fn click(&self, id: &str) {
        self.click_sel(&tid(id)).await
    }

    /// [`Self::click`] for a CSS selector.
    pub async fn click_sel(&self, sel: &str) {
        let until = Instant::now() + WAIT;
        loop {
            let e = self.visible_sel(sel).await;
            match e.click().await {
                Ok(()) => return,
                Err(err) if Instant::now() >= until => panic!("click {sel}: {err}; the page: {}", self.state().await),
                Err(_) => tokio::time::sleep(Duration::from_millis(40)).await,
            }
        }
    }

    /// An attribute of the (first) element with this `data-testid`.
    pub async fn attr(&self, id: &str, name: &str) -> Option<String> {
        self.js(
            "const e = document.querySelector(arguments[0]); return e ? e.getAttribute(arguments[1]) : null;",
            vec![json!(tid(id)), json!(name)],
        )
        .await
        .as_str()
        .map(str::to_owned)
    }

    /// Saves a PNG of the whole page (the window is made as tall as the page, at most 4000 px,
    /// for the shot) as `<name>.png` in the screenshots folder; returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let height = self
            .js(
                "return Math.ceil(document.documentElement.scrollHeight + window.outerHeight - window.innerHeight);",
                vec![],
            )
            .await;
        let height = height.as_u64().unwrap_or(900).clamp(900, 4000) as u32;
        let _ = self.client.set_window_size(1280, height).await;
        // Two frames: the layout (and the charts) follow the new size.
        let _ = self
            .client
            .execute_async("requestAnimationFrame(() => requestAnimationFrame(arguments[0]));", vec![])
            .await;
        let png = self.client.screenshot().await;
        let _ = self.client.set_window_size(1280, 900).await;
        let png = png.unwrap_or_else(|e| panic!("screenshot {name}: {e}"));
        let path = self.screenshots.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        path
    }

    /// Ends the session (Chromium exits); the driver's `Drop` kills whatever is left.
    pub async fn close(self) {
        let _ = tokio::time::timeout(Duration::from_secs(10), self.client.close()).await;
    }
}
