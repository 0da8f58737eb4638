//! The operator's web panel in a real browser (headless Chromium through chromedriver) against
//! the real `thingline` binary on port 0, each step asserting what the operator sees through the
//! `data-testid` hooks of docs/panel-ui.md:
//!
//! - `operator_walkthrough`: sign-in (a wrong password shows an error and stays on the login
//!   page; the right one opens the products; a reload keeps the session; the cookie's flags); a
//!   product with public and private resources made through the form; activation codes generated
//!   and downloaded as CSV; a thing activated through the Thing API appearing in the product's
//!   things without a reload (and after one), its latest value in the table following a write
//!   live; values written through the Thing API updating the thing page's latest value and chart
//!   within 2 s without a reload; a value written from the page's form read back through the Thing
//!   API; the CSRF rule on a cookie-authenticated fetch and the security headers of `/`; an app made
//!   through the form with its user listed; sign-out (the login page, also after a reload, and the
//!   old cookie refused).
//! - `accounts_do_not_see_each_other`: a second panel account (made with `thingline panel-user
//!   add`) does not list the first one's product, gets a not-found error on its page and on its
//!   thing's page, and 404 from the API with its cookie.
//!
//! Screenshots of each main page are saved in `$CARGO_TARGET_TMPDIR/panel-screenshots/` (the
//! path is printed). Without Chromium or chromedriver the tests skip with a notice (fail on CI).

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use serde_json::{Value, json};

use common::browser::{self, Browser, WAIT, tid};
use common::{PANEL_EMAIL, PANEL_PASSWORD, TestServer};

/// The longest a whole browser test may take (a hung browser fails it instead of blocking).
const TEST_LIMIT: Duration = Duration::from_secs(150);
/// How soon a write must show on the thing page (docs/panel-ui.md: a live page).
const LIVE: Duration = Duration::from_secs(2);
/// The panel session cookie (docs/panel-ui.md).
const COOKIE: &str = "__Host-thingline_panel";
const CSV_HEADER: &str = "code,used,thingId,createdAt,usedAt";

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` of a Unix time in milliseconds.
fn iso(ms: i64) -> String {
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let (h, mi, s, milli) = (rem / 3_600_000, rem / 60_000 % 60, rem / 1000 % 60, rem % 1000);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as i64
}

/// Signs in through the login form.
async fn sign_in(b: &Browser, email: &str, password: &str) {
    b.fill("login-email", email).await;
    b.fill("login-password", password).await;
    b.click("login-submit").await;
}

/// Whether the error region shows a message.
async fn error_shown(b: &Browser) -> Option<String> {
    let v = b
        .js(
            "const e = document.querySelector(arguments[0]);
             if (!e) return null;
             const r = e.getBoundingClientRect();
             const t = e.innerText.trim();
             return (t && r.width > 0 && r.height > 0 && getComputedStyle(e).visibility !== 'hidden') ? t : null;",
            vec![json!(tid("error"))],
        )
        .await;
    v.as_str().map(str::to_owned)
}

/// Waits for a row `row_id` whose text holds `text`; returns its `data-id`.
async fn row_with_text(b: &Browser, row_id: &str, text: &str) -> String {
    b.wait_js(
        &format!("a {row_id} showing {text:?}"),
        WAIT,
        "for (const r of document.querySelectorAll(arguments[0])) {
             if (r.innerText.includes(arguments[1])) return r.dataset.id || '';
         }
         return null;",
        vec![json!(tid(row_id)), json!(text)],
    )
    .await
    .as_str()
    .expect("data-id")
    .to_owned()
}

/// The texts of every element with this `data-testid`.
async fn texts(b: &Browser, id: &str) -> Vec<String> {
    let v =
        b.js("return [...document.querySelectorAll(arguments[0])].map(e => e.innerText);", vec![json!(tid(id))]).await;
    serde_json::from_value(v).expect("texts")
}

/// A reqwest call carrying `cookie` as the panel cookie.
async fn with_cookie(server: &TestServer, path: &str, cookie: &str) -> StatusCode {
    server
        .client
        .get(server.url(path))
        .header("Cookie", format!("{COOKIE}={cookie}"))
        .send()
        .await
        .expect("request with the cookie")
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_walkthrough() {
    let Some(tools) = browser::tools() else { return };
    let started = std::time::Instant::now();
    let server = TestServer::spawn(&[], &[]);
    let shots = browser::screenshot_dir();
    let mut driver = browser::Driver::start(&tools).await;
    let b = driver.session(&shots).await;
    tokio::time::timeout(TEST_LIMIT, walkthrough(&server, &b)).await.expect("the walkthrough within its time limit");
    b.close().await;
    drop(driver);
    server.stop().await;
    eprintln!("panel screenshots: {} (walkthrough took {:?})", shots.display(), started.elapsed());
}

async fn walkthrough(server: &TestServer, b: &Browser) {
    let base = server.https.clone();
    let api_token = server.panel_token().await;

    // 1. Sign-in: a wrong password shows an error and stays on the login page.
    b.goto(&format!("{base}/")).await;
    b.wait_route("login").await;
    b.visible("login-form").await;
    b.screenshot("login").await;
    sign_in(b, PANEL_EMAIL, "not-the-password").await;
    let message = b
        .wait_js(
            "a visible sign-in error",
            WAIT,
            "const e = document.querySelector(arguments[0]);
             return e && e.innerText.trim() && e.getClientRects().length ? e.innerText.trim() : null;",
            vec![json!(tid("error"))],
        )
        .await;
    assert_eq!(b.state().await["page"], "login", "a failed sign-in stays on the login page ({message})");
    b.visible("login-form").await;
    // The right password opens the products page, with the account shown.
    sign_in(b, PANEL_EMAIL, PANEL_PASSWORD).await;
    b.wait_page("products").await;
    b.wait_text("account-email", "the signed-in account", WAIT, |t| t.contains(PANEL_EMAIL)).await;
    assert_eq!(error_shown(b).await, None, "the sign-in error is gone once signed in");
    // A reload keeps the session.
    b.refresh().await;
    b.wait_page("products").await;
    b.wait_text("account-email", "the account after a reload", WAIT, |t| t.contains(PANEL_EMAIL)).await;
    let cookies = b.client.get_all_cookies().await.expect("cookies");
    let cookie =
        cookies.into_iter().find(|c| c.name() == COOKIE).unwrap_or_else(|| panic!("the panel cookie {COOKIE} is set"));
    assert_eq!(cookie.http_only(), Some(true), "the panel cookie is HttpOnly");
    assert_eq!(cookie.secure(), Some(true), "the panel cookie is Secure");
    assert_eq!(cookie.path(), Some("/"));
    assert_eq!(cookie.same_site().map(|s| s.to_string()), Some("Strict".to_owned()), "SameSite=Strict");
    let cookie = cookie.value().to_owned();
    assert_eq!(
        with_cookie(server, "/v2/panel/session", &cookie).await,
        StatusCode::OK,
        "the cookie works from reqwest"
    );

    // 2. A product with public and private resources, made through the form.
    let name = "Greenhouse sensors";
    b.fill("product-name", name).await;
    b.fill("product-public", "temperature, humidity").await;
    b.fill("product-private", "setpoint").await;
    b.click("product-create-submit").await;
    let product_id = row_with_text(b, "product-row", name).await;
    assert!(!product_id.is_empty(), "the product row carries its productId in data-id");
    let r = server
        .client
        .get(server.url(&format!("/v2/panel/products/{product_id}")))
        .header("Authorization", &api_token)
        .send()
        .await
        .expect("product");
    assert_eq!(r.status(), StatusCode::OK);
    let product: Value = r.json().await.expect("json");
    let mut resources: Vec<(String, bool)> = product["product"]["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| (r["key"].as_str().expect("key").to_owned(), r["public"].as_bool().unwrap_or(false)))
        .collect();
    resources.sort();
    assert_eq!(
        resources,
        [("humidity".into(), true), ("setpoint".into(), false), ("temperature".into(), true)],
        "the form made the resources it was given: {product}"
    );
    b.screenshot("products").await;
    // Open it from the list.
    b.click_sel(&format!("{}[data-id=\"{product_id}\"] a", tid("product-row"))).await;
    b.wait_page("product").await;
    b.wait_text("page-title", "the product's name as the title", WAIT, |t| t.contains(name)).await;
    let public =
        b.js("return document.querySelector(arguments[0]).value;", vec![json!(tid("product-public-input"))]).await;
    let public = public.as_str().expect("public keys");
    assert!(public.contains("temperature") && public.contains("humidity"), "public keys shown: {public:?}");
    let private =
        b.js("return document.querySelector(arguments[0]).value;", vec![json!(tid("product-private-input"))]).await;
    assert!(private.as_str().expect("private keys").contains("setpoint"), "private keys shown: {private}");
    let empty = b.wait_text("things-empty", "the empty state of the things", WAIT, |t| t.contains("curl")).await;
    assert!(empty.contains("/v2/things"), "the empty state's curl activates a thing: {empty:?}");

    // 3. Activation codes: generate 3, listed as unused; the CSV download.
    b.fill("codes-count", "3").await;
    b.click("codes-generate").await;
    b.wait_js(
        "3 activation codes listed",
        WAIT,
        "return document.querySelectorAll(arguments[0]).length === 3;",
        vec![json!(format!("{} {}", tid("codes-table"), tid("code-row")))],
    )
    .await;
    let rows = texts(b, "code-row").await;
    for row in &rows {
        assert!(row.to_lowercase().contains("unused"), "a new code is listed as unused: {row:?}");
    }
    let href = b.js("return document.querySelector(arguments[0]).href;", vec![json!(tid("codes-csv"))]).await;
    let href = href.as_str().expect("the CSV link has an href").to_owned();
    let csv = b.fetch(&href, json!({})).await;
    assert_eq!(csv["status"], 200, "the CSV download: {csv}");
    assert!(csv["headers"]["content-type"].as_str().is_some_and(|t| t.starts_with("text/csv")), "{csv}");
    let text = csv["text"].as_str().expect("csv text");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(CSV_HEADER), "the CSV header: {text:?}");
    let codes: Vec<String> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split(',').collect();
            assert_eq!(cols.len(), 5, "a CSV row has 5 columns: {l:?}");
            assert_eq!(cols[1], "false", "a new code is unused in the CSV: {l:?}");
            cols[0].to_owned()
        })
        .collect();
    assert_eq!(codes.len(), 3, "3 codes in the CSV: {text:?}");
    for code in &codes {
        assert!(rows.iter().any(|r| r.contains(code.as_str())), "CSV code {code} is listed on the page: {rows:?}");
    }
    b.screenshot("product").await;

    // 4. A thing activated through the Thing API shows in the product's things: without a reload
    //    (a product without things looks for its first one every 5 s), and after one.
    b.js("window.__tlNoReload = true; return null;", vec![]).await;
    let r = server.activate(&codes[0]).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.expect("json");
    let thing_id = v["thingId"].as_str().expect("thingId").to_owned();
    let token = v["thingToken"].as_str().expect("thingToken").to_owned();
    let row_sel = format!("{}[data-id=\"{thing_id}\"]", tid("thing-row"));
    b.wait_js(
        "the activated thing listed without a reload (the empty product looks every 5 s)",
        Duration::from_secs(8),
        "return !!document.querySelector(arguments[0]) && window.__tlNoReload === true;",
        vec![json!(row_sel)],
    )
    .await;
    b.refresh().await;
    b.wait_page("product").await;
    b.visible_sel(&row_sel).await;
    b.wait_text("things-total", "one thing", WAIT, |t| t.contains('1')).await;
    let used = b
        .wait_js(
            "the used code listed as used",
            WAIT,
            "for (const r of document.querySelectorAll(arguments[0]))
                 if (r.innerText.includes(arguments[1])) return r.innerText;
             return null;",
            vec![json!(tid("code-row")), json!(codes[0])],
        )
        .await;
    let used = used.as_str().expect("row text").to_lowercase();
    assert!(!used.contains("unused"), "the activated code is no longer listed as unused: {used:?}");

    // The things table's latest values are live: a write shows in the row without a reload.
    wait_live(b).await;
    let t0 = now_ms();
    let body = json!([{"key": "temperature", "value": 20.5, "datetime": iso(t0 - 60_000)}]);
    assert_eq!(server.write(&thing(&token, &thing_id), body).await, StatusCode::CREATED);
    let cell = format!("{row_sel} {}", tid("latest-temperature"));
    b.wait_js(
        "the things table's latest temperature 20.5 within 2 s",
        LIVE,
        "const e = document.querySelector(arguments[0]); return e && e.innerText.includes('20.5');",
        vec![json!(cell)],
    )
    .await;

    // 5. Values through the Thing API update the thing page's latest value and chart live.
    let body = json!([{"key": "temperature", "value": 21.0, "datetime": iso(t0 - 30_000)}]);
    assert_eq!(server.write(&thing(&token, &thing_id), body).await, StatusCode::CREATED);
    b.click_sel(&format!("{row_sel} a")).await;
    b.wait_page("thing").await;
    wait_live(b).await;
    b.wait_text("thing-id", "the thingId", WAIT, |t| t.contains(&thing_id)).await;
    b.wait_text("latest-temperature", "the latest value 21", WAIT, |t| t.contains("21")).await;
    let points = |n: u32| {
        format!(
            "const e = document.querySelector('{}'); return e && e.dataset.points === '{n}' ? e.dataset.updated : null;",
            tid("chart-temperature")
        )
    };
    b.wait_js("the chart drawn with 2 points", WAIT, &points(2), vec![]).await;
    b.js("window.__tlNoReload = true; return null;", vec![]).await;
    let t1 = now_ms();
    let body = json!([{"key": "temperature", "value": 22.75, "datetime": iso(t1)}]);
    assert_eq!(server.write(&thing(&token, &thing_id), body).await, StatusCode::CREATED);
    b.wait_text("latest-temperature", "the new value 22.75 within 2 s", LIVE, |t| t.contains("22.75")).await;
    let updated = b.wait_js("the chart's third point within 2 s", LIVE, &points(3), vec![]).await;
    let updated_ms = b
        .js("const u = arguments[0]; return /^\\d+$/.test(u) ? Number(u) : Date.parse(u);", vec![updated.clone()])
        .await;
    assert_eq!(updated_ms.as_i64(), Some(t1), "data-updated is the newest point's datetime ({updated})");
    assert_eq!(b.js("return window.__tlNoReload === true;", vec![]).await, json!(true), "no reload happened");
    b.screenshot("thing").await;

    // 6. A value written from the page's form, read back through the Thing API.
    for (typed, stored) in [("19.5", json!(19.5)), ("eco mode", json!("eco mode"))] {
        b.fill("write-key", "setpoint").await;
        b.fill("write-value", typed).await;
        let store = b.visible("write-store").await;
        if !store.is_selected().await.expect("checkbox") {
            store.click().await.expect("check store");
        }
        let before = b.text("write-result").await.unwrap_or_default();
        b.click("write-submit").await;
        // The form says "Writing…" while the request is out, then the outcome.
        let result = b
            .wait_text("write-result", "the write's outcome", WAIT, |t| {
                !t.trim().is_empty() && t != before && !t.trim_end().ends_with('…')
            })
            .await;
        assert!(!result.starts_with("Not written"), "the form's write failed: {result:?}");
        assert_eq!(error_shown(b).await, None, "the write shows no error");
        let url = server.url(&format!("/v2/things/{token}/resources/setpoint?limit=1"));
        let v = common::eventually(WAIT, || async {
            let r = server.client.get(&url).send().await.expect("read");
            let v: Value = if r.status() == StatusCode::OK { r.json().await.expect("json") } else { Value::Null };
            (v[0]["value"] == stored).then_some(v)
        })
        .await;
        assert_eq!(v[0]["value"], stored, "the form wrote {typed:?} as {stored}: {v}");
    }

    // 8. CSRF: a cookie-authenticated POST without X-CSRF-Token is refused; with it, it passes.
    let codes_path = format!("/v2/panel/products/{product_id}/activation-codes");
    let post = |headers: Value| json!({"method": "POST", "headers": headers, "body": json!({"count": 1}).to_string()});
    let refused = b.fetch(&codes_path, post(json!({"Content-Type": "application/json"}))).await;
    assert_eq!(refused["status"], 403, "no CSRF token: {refused}");
    assert!(refused["text"].as_str().is_some_and(|t| t.contains("CSRF")), "{refused}");
    let wrong = b.fetch(&codes_path, post(json!({"Content-Type": "application/json", "X-CSRF-Token": "x"}))).await;
    assert_eq!(wrong["status"], 403, "a wrong CSRF token: {wrong}");
    let session = b.fetch("/v2/panel/session", json!({})).await;
    assert_eq!(session["status"], 200, "{session}");
    let session: Value = serde_json::from_str(session["text"].as_str().expect("text")).expect("json");
    let csrf = session["csrf"].as_str().expect("csrf").to_owned();
    let allowed = b.fetch(&codes_path, post(json!({"Content-Type": "application/json", "X-CSRF-Token": csrf}))).await;
    assert_eq!(allowed["status"], 201, "the session's CSRF token: {allowed}");
    let inline = b.js("return document.querySelectorAll('script:not([src]), style').length;", vec![]).await;
    assert_eq!(inline, json!(0), "no inline script or style element");
    // The security headers of `/` (and its caching).
    let r = server.client.get(server.url("/")).header("Accept-Encoding", "gzip").send().await.expect("GET /");
    assert_eq!(r.status(), StatusCode::OK);
    let h = r.headers().clone();
    let header = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let csp = header("content-security-policy");
    for directive in
        ["default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"]
    {
        assert!(csp.contains(directive), "the CSP has {directive:?}: {csp:?}");
    }
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{csp:?}");
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert_eq!(header("x-frame-options"), "DENY");
    assert_eq!(header("referrer-policy"), "no-referrer");
    assert_eq!(header("cross-origin-opener-policy"), "same-origin");
    assert_eq!(header("content-encoding"), "gzip", "the page compressed for a client accepting gzip");
    assert_eq!(header("cache-control"), "no-cache");
    let etag = header("etag");
    assert!(etag.starts_with('"'), "a strong ETag: {etag:?}");
    let r = server
        .client
        .get(server.url("/"))
        .header("Accept-Encoding", "gzip")
        .header("If-None-Match", &etag)
        .send()
        .await
        .expect("revalidate");
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED, "an unchanged page revalidates to 304");

    // Apps: one made through the form, its page, and its user.
    b.click("nav-apps").await;
    b.wait_page("apps").await;
    b.fill("app-name", "Greenhouse app").await;
    b.fill("app-resources", "temperature").await;
    b.click("app-create-submit").await;
    let app_id = row_with_text(b, "app-row", "Greenhouse app").await;
    b.screenshot("apps").await;
    b.click_sel(&format!("{}[data-id=\"{app_id}\"] a", tid("app-row"))).await;
    b.wait_page("app").await;
    b.wait_text("app-id", "the appId", WAIT, |t| t.contains(&app_id)).await;
    b.visible("users-empty").await;
    server.app_user(&app_id, "grower@example.com").await;
    b.refresh().await;
    b.wait_page("app").await;
    row_with_text(b, "user-row", "grower@example.com").await;
    b.screenshot("app").await;

    // 9. Sign-out: the login page, also after a reload; the old cookie no longer works.
    b.click("signout").await;
    b.wait_route("login").await;
    b.visible("login-form").await;
    b.refresh().await;
    b.wait_route("login").await;
    b.visible("login-form").await;
    b.goto(&format!("{base}/#/products")).await;
    b.wait_route("login").await;
    assert_eq!(with_cookie(server, "/v2/panel/session", &cookie).await, StatusCode::UNAUTHORIZED, "old cookie");
    assert_eq!(with_cookie(server, "/v2/panel/products", &cookie).await, StatusCode::UNAUTHORIZED, "old cookie");
}

/// Waits until the page's live indicator says the stream is set up (what the operator sees as
/// "Live"): writes from then on must show.
async fn wait_live(b: &Browser) {
    b.wait_js(
        "the live indicator to say Live",
        WAIT,
        "const e = document.querySelector(arguments[0]); return e && e.dataset.state === 'live';",
        vec![json!(tid("live-state"))],
    )
    .await;
}

fn thing(token: &str, id: &str) -> common::TestThing {
    common::TestThing { token: token.to_owned(), id: id.to_owned(), product_id: String::new() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_do_not_see_each_other() {
    let Some(tools) = browser::tools() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let (email, password) = ("second@example.com", "second-password");
    let mut add = std::process::Command::new(common::spawned::bin());
    add.args(["panel-user", "add", "--email", email, "--password", password])
        .args(["--data-dir", dir.path().to_str().expect("utf8")]);
    if let Some(cluster) = common::backend::for_data_dir(dir.path()) {
        add.envs(cluster.env());
    }
    let out = add.output().expect("thingline panel-user add");
    assert!(out.status.success(), "panel-user add: {}", String::from_utf8_lossy(&out.stderr));
    let server = TestServer::spawn_in(dir.path(), &[], &[]);
    // The first account's product and thing.
    let first = server.panel_token().await;
    let thing = server.thing(&first, &[("temperature", true)]).await;

    let shots = browser::screenshot_dir();
    let mut driver = browser::Driver::start(&tools).await;
    let b = driver.session(&shots).await;
    tokio::time::timeout(TEST_LIMIT, async {
        b.goto(&format!("{}/", server.https)).await;
        b.wait_route("login").await;
        sign_in(&b, email, password).await;
        b.wait_page("products").await;
        b.wait_text("account-email", "the second account", WAIT, |t| t.contains(email)).await;
        let ids = b
            .js(
                "return [...document.querySelectorAll(arguments[0])].map(r => r.dataset.id);",
                vec![json!(tid("product-row"))],
            )
            .await;
        assert!(
            !ids.as_array().expect("ids").contains(&json!(thing.product_id)),
            "another account's product listed: {ids}"
        );

        b.goto(&format!("{}/#/products/{}", server.https, thing.product_id)).await;
        let shown = b
            .wait_js(
                "a not-found error on another account's product",
                WAIT,
                "const e = document.querySelector(arguments[0]);
                 return e && /not found/i.test(e.innerText) ? e.innerText : null;",
                vec![json!(tid("error"))],
            )
            .await;
        let rows = b
            .js(
                "return document.querySelectorAll(arguments[0]).length;",
                vec![json!(format!("{}, {}", tid("code-row"), tid("thing-row")))],
            )
            .await;
        assert_eq!(rows, json!(0), "none of its codes or things shown ({shown})");
        b.screenshot("not-found").await;
        b.goto(&format!("{}/#/things/{}", server.https, thing.id)).await;
        b.wait_js(
            "a not-found error on another account's thing",
            WAIT,
            "const e = document.querySelector(arguments[0]);
             return e && /not found/i.test(e.innerText) && document.body.dataset.page === 'thing';",
            vec![json!(tid("error"))],
        )
        .await;
        assert_eq!(b.text("thing-token").await.filter(|t| !t.is_empty()), None, "no token of another account's thing");

        for path in [format!("/v2/panel/products/{}", thing.product_id), format!("/v2/panel/things/{}", thing.id)] {
            let r = b.fetch(&path, json!({})).await;
            assert_eq!(r["status"], 404, "{path} with the second account's cookie: {r}");
        }
    })
    .await
    .expect("the test within its time limit");
    b.close().await;
    drop(driver);
    server.stop().await;
}
