//! The web panel's server side, spoken to as a browser would with a real HTTPS client: the page
//! and its files (CSP, gzip, ETag), the session cookie and its CSRF rule, the things table
//! (paging, sorting, search, newest values), the downsampled series of a chart, things created in
//! bulk, the codes CSV, the app users table, and the live event stream (and its end at sign-out).
//! The browser itself drives the panel in `panel_ui.rs`.

mod common;

use std::time::Duration;

use common::{TestServer, assert_envelope};
use reqwest::StatusCode;
use serde_json::{Value, json};

const COOKIE: &str = "__Host-thingline_panel";

/// A signed-in browser: its cookie header and CSRF token.
struct Browser {
    cookie: String,
    csrf: String,
    origin: String,
}

async fn sign_in(s: &TestServer, email: &str, password: &str) -> Browser {
    let r = s
        .client
        .post(s.url("/v2/panel/session"))
        .header("Origin", &s.https)
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    let set = r.headers().get("set-cookie").expect("set-cookie").to_str().expect("ascii").to_owned();
    for attr in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attr), "{set}");
    }
    assert!(!set.contains("Domain"), "{set}");
    let token = set.strip_prefix(&format!("{COOKIE}=")).and_then(|v| v.split(';').next()).expect("cookie value");
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["email"], email);
    let csrf = v["csrf"].as_str().expect("csrf").to_owned();
    assert_ne!(csrf, token, "the CSRF token is not the session token");
    Browser { cookie: format!("{COOKIE}={token}"), csrf, origin: s.https.clone() }
}

impl Browser {
    fn get(&self, s: &TestServer, path: &str) -> reqwest::RequestBuilder {
        s.client.get(s.url(path)).header("Cookie", &self.cookie)
    }

    /// A change as the panel's page sends it: cookie, CSRF header, own origin.
    fn send(&self, s: &TestServer, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        s.client
            .request(method, s.url(path))
            .header("Cookie", &self.cookie)
            .header("X-CSRF-Token", &self.csrf)
            .header("Origin", &self.origin)
    }
}

#[tokio::test]
async fn the_session_cookie_needs_the_csrf_token_for_changes_and_ends_at_sign_out() {
    let s = TestServer::start().await;
    // A wrong password: the envelope, no cookie.
    let r = s
        .client
        .post(s.url("/v2/panel/session"))
        .json(&json!({"email": common::PANEL_EMAIL, "password": "wrong"}))
        .send()
        .await
        .expect("send");
    assert!(r.headers().get("set-cookie").is_none());
    assert_envelope(r, 401).await;
    // A sign-in posted from another site's page is refused.
    let r = s
        .client
        .post(s.url("/v2/panel/session"))
        .header("Origin", "https://evil.example")
        .json(&json!({"email": common::PANEL_EMAIL, "password": common::PANEL_PASSWORD}))
        .send()
        .await
        .expect("send");
    assert_envelope(r, 403).await;

    let b = sign_in(&s, common::PANEL_EMAIL, common::PANEL_PASSWORD).await;
    // The page learns who it is and the CSRF token again after a reload.
    let v: Value = b.get(&s, "/v2/panel/session").send().await.expect("send").json().await.expect("json");
    assert_eq!(v["csrf"], b.csrf);
    assert_eq!(v["email"], common::PANEL_EMAIL);
    // Reads need the cookie only.
    let r = b.get(&s, "/v2/panel/products").send().await.expect("send");
    assert_eq!(r.status(), StatusCode::OK);

    let product = json!({"name": "Pumps", "resources": [{"key": "flow", "public": true}]});
    // A change with the cookie but without the token, with another session's token, or from
    // another origin: 403, nothing created.
    let no_token = s
        .client
        .post(s.url("/v2/panel/products"))
        .header("Cookie", &b.cookie)
        .json(&product)
        .send()
        .await
        .expect("send");
    assert_envelope(no_token, 403).await;
    let other = sign_in(&s, common::PANEL_EMAIL, common::PANEL_PASSWORD).await;
    assert_ne!(other.csrf, b.csrf, "each sign-in has its own token");
    let wrong = s
        .client
        .post(s.url("/v2/panel/products"))
        .header("Cookie", &b.cookie)
        .header("X-CSRF-Token", &other.csrf)
        .json(&product)
        .send()
        .await
        .expect("send");
    assert_envelope(wrong, 403).await;
    let cross = b
        .send(&s, reqwest::Method::POST, "/v2/panel/products")
        .header("Origin", "https://evil.example")
        .json(&product)
        .send()
        .await
        .expect("send");
    assert_envelope(cross, 403).await;
    let v: Value = b.get(&s, "/v2/panel/products").send().await.expect("send").json().await.expect("json");
    assert_eq!(v["products"].as_array().map(Vec::len), Some(0), "{v}");
    // With the token: created. An API client with `Authorization` needs no token.
    let r = b.send(&s, reqwest::Method::POST, "/v2/panel/products").json(&product).send().await.expect("send");
    assert_eq!(r.status(), StatusCode::CREATED);
    let panel = s.panel_token().await;
    let r = s.client.post(s.url("/v2/panel/products")).header("Authorization", &panel).json(&product).send().await;
    assert_eq!(r.expect("send").status(), StatusCode::CREATED);

    // Sign-out needs the token too, then the cookie is cleared and worth nothing.
    let r = s.client.delete(s.url("/v2/panel/session")).header("Cookie", &b.cookie).send().await.expect("send");
    assert_envelope(r, 403).await;
    let r = b.send(&s, reqwest::Method::DELETE, "/v2/panel/session").send().await.expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    let set = r.headers().get("set-cookie").expect("set-cookie").to_str().expect("ascii").to_owned();
    assert!(set.starts_with(&format!("{COOKIE}=;")) && set.contains("Max-Age=0"), "{set}");
    assert_envelope(b.get(&s, "/v2/panel/session").send().await.expect("send"), 401).await;
    assert_envelope(b.get(&s, "/v2/panel/products").send().await.expect("send"), 401).await;
    // The other sign-in is its own session.
    assert_eq!(other.get(&s, "/v2/panel/products").send().await.expect("send").status(), StatusCode::OK);
    s.stop().await;
}

#[tokio::test]
async fn the_page_and_its_files_carry_the_csp_and_are_compressed_and_revalidated() {
    let s = TestServer::start().await;
    let r = s.client.get(s.url("/")).send().await.expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    let h = r.headers().clone();
    assert!(h["content-type"].to_str().expect("ascii").starts_with("text/html"));
    let csp = h["content-security-policy"].to_str().expect("ascii");
    for directive in ["default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'"] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["x-frame-options"], "DENY");
    let html = r.text().await.expect("text");
    // Nothing inline for the CSP to refuse: every script has a src, no style attributes or
    // elements, no inline handlers.
    let lower = html.to_ascii_lowercase();
    assert!(!lower.contains("<style"), "{html}");
    assert!(!lower.contains(" style="), "{html}");
    assert!(!lower.contains(" onload=") && !lower.contains(" onclick="), "{html}");
    for script in lower.split("<script").skip(1) {
        let tag = script.split('>').next().unwrap_or("");
        assert!(tag.contains("src="), "inline script: {script}");
    }
    // Every file the page names is served from this origin.
    let mut assets = Vec::new();
    for part in html.split(['"', '\'']) {
        if part.starts_with("/ui/") {
            assets.push(part.to_owned());
        }
        // (An XML namespace is a name, not something fetched.)
        let namespace = part.starts_with("http://www.w3.org/");
        assert!(
            namespace || (!part.starts_with("http://") && !part.starts_with("https://") && !part.starts_with("//")),
            "{part}"
        );
    }
    assert!(assets.iter().any(|a| a.ends_with(".js")), "{assets:?}");
    for asset in &assets {
        let plain = s.client.get(s.url(asset)).send().await.expect("send");
        assert_eq!(plain.status(), StatusCode::OK, "{asset}");
        assert!(plain.headers().get("content-security-policy").is_some());
        let etag = plain.headers()["etag"].clone();
        let body = plain.bytes().await.expect("body");
        // Gzip when asked, the same bytes once inflated.
        let gz = s.client.get(s.url(asset)).header("Accept-Encoding", "gzip").send().await.expect("send");
        if body.len() >= 1024 {
            assert_eq!(gz.headers().get("content-encoding").map(|v| v.as_bytes()), Some(&b"gzip"[..]), "{asset}");
            let packed = gz.bytes().await.expect("body");
            assert!(packed.len() < body.len());
            let mut inflated = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&packed[..]), &mut inflated).expect("gunzip");
            assert_eq!(inflated, body, "{asset}");
        }
        // Revalidation: 304 with the same ETag.
        let again = s.client.get(s.url(asset)).header("If-None-Match", etag.clone()).send().await.expect("send");
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{asset}");
    }
    assert_envelope(s.client.get(s.url("/ui/no-such-file.js")).send().await.expect("send"), 404).await;
    assert_envelope(s.client.get(s.url("/ui/../Cargo.toml")).send().await.expect("send"), 404).await;
    // Not on the plain listener.
    let plain = s.client.get(format!("{}/", s.http)).send().await.expect("send");
    assert_envelope(plain, 403).await;
    s.stop().await;
}

/// Creates `n` things of `product` in one call; (thingId, thingToken) of each.
async fn bulk(s: &TestServer, panel: &str, product: &str, n: usize) -> Vec<(String, String)> {
    let r = s
        .client
        .post(s.url(&format!("/v2/panel/products/{product}/things")))
        .header("Authorization", panel)
        .json(&json!({"count": n}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = r.json().await.expect("json");
    v["things"]
        .as_array()
        .expect("things")
        .iter()
        .map(|t| (t["thingId"].as_str().expect("id").to_owned(), t["thingToken"].as_str().expect("token").to_owned()))
        .collect()
}

async fn write(s: &TestServer, token: &str, values: Value) {
    let r = s
        .client
        .post(format!("{}/v2/things/{token}", s.https))
        .json(&json!({"values": values}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().await.unwrap_or_default());
}

#[tokio::test]
async fn the_things_table_pages_sorts_searches_and_shows_newest_values() {
    let s = TestServer::start().await;
    let panel = s.panel_token().await;
    let product = s.product(&panel, &[("temperature", true), ("door", false)]).await;
    let things = bulk(&s, &panel, &product, 30).await;
    assert_eq!(things.len(), 30);
    // Names for half of them, values for a few.
    for (i, (_, token)) in things.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
        write(&s, token, json!([{"key": "$settings.name", "value": format!("Pump {i:02}")}])).await;
    }
    write(&s, &things[4].1, json!([{"key": "temperature", "value": 21.5, "datetime": "2026-01-02T03:04:05.000Z"}]))
        .await;
    write(&s, &things[4].1, json!([{"key": "door", "value": "open"}])).await;

    let get = |query: String| {
        let c = s.client.clone();
        let url = s.url(&format!("/v2/panel/products/{product}/things?{query}"));
        let panel = panel.clone();
        async move {
            let r = c.get(url).header("Authorization", panel).send().await.expect("send");
            (r.status(), r.json::<Value>().await.expect("json"))
        }
    };
    let ids = |v: &Value| -> Vec<String> {
        v["things"].as_array().expect("things").iter().map(|t| t["thingId"].as_str().expect("id").to_owned()).collect()
    };
    // Pages of 10 sorted by id cover every thing once, in order.
    let mut seen = Vec::new();
    for skip in [0, 10, 20, 30] {
        let (st, v) = get(format!("limit=10&skip={skip}&sort=thingId&order=asc")).await;
        assert_eq!(st, StatusCode::OK);
        assert_eq!(v["total"], 30);
        seen.extend(ids(&v));
    }
    let mut sorted: Vec<String> = things.iter().map(|(id, _)| id.clone()).collect();
    sorted.sort();
    assert_eq!(seen, sorted);
    // Newest first by default (the bulk call made them in order).
    let (_, v) = get("limit=3".into()).await;
    assert_eq!(ids(&v), vec![things[29].0.clone(), things[28].0.clone(), things[27].0.clone()]);
    // By name: the named ones in name order.
    let (_, v) = get("limit=3&sort=name&order=asc".into()).await;
    let names: Vec<&str> = v["things"].as_array().expect("things").iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names, vec!["Pump 00", "Pump 02", "Pump 04"]);
    // Search: by name (any case), by id prefix.
    let (_, v) = get("q=pump%201".into()).await;
    assert_eq!(v["total"], 5, "Pump 10..18: {v}");
    let prefix = &things[7].0[..6];
    let (_, v) = get(format!("q={}", urlencode(prefix))).await;
    assert!(ids(&v).contains(&things[7].0), "{v}");
    // The row with values: its newest value of each declared resource and when it was last seen.
    let (_, v) = get(format!("q={}", urlencode(&things[4].0))).await;
    let row = &v["things"][0];
    assert_eq!(row["thingId"], things[4].0.as_str());
    assert_eq!(row["name"], "Pump 04");
    assert_eq!(row["latest"]["temperature"]["value"], 21.5);
    assert_eq!(row["latest"]["temperature"]["datetime"], "2026-01-02T03:04:05.000Z");
    assert_eq!(row["latest"]["door"]["value"], "open");
    assert!(row["lastSeen"].as_str().is_some_and(|d| d > "2026-01-02"), "{row}");
    let (_, v) = get(format!("q={}", urlencode(&things[5].0))).await;
    assert_eq!(v["things"][0]["lastSeen"], Value::Null);
    assert_eq!(v["things"][0]["latest"], json!({}));
    // Bad parameters: 400 envelopes.
    for bad in ["limit=0", "limit=1001", "skip=-1", "sort=token", "order=up"] {
        let (st, v) = get(bad.into()).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{bad}: {v}");
        assert_eq!(v["status"], "error");
    }
    // Another account sees none of it.
    let other = other_account(&s).await;
    let r = panel_get(&s, &other, &format!("/v2/panel/products/{product}/things")).await;
    assert_envelope(r, 404).await;
    let r = panel_get(&s, &other, &format!("/v2/panel/things/{}", things[4].0)).await;
    assert_envelope(r, 404).await;
    s.stop().await;
}

/// A panel API GET as an API client sends it (`Authorization: <panel token>`).
async fn panel_get(s: &TestServer, token: &str, path: &str) -> reqwest::Response {
    s.client.get(s.url(path)).header("Authorization", token).send().await.expect("send")
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A second panel account's token.
async fn other_account(s: &TestServer) -> String {
    s.platform().create_panel_user("other@example.com", "another-password").await.expect("second account");
    let r = s
        .client
        .post(s.url("/v2/panel/login"))
        .json(&json!({"email": "other@example.com", "password": "another-password"}))
        .send()
        .await
        .expect("send");
    let v: Value = r.json().await.expect("json");
    v["token"].as_str().expect("token").to_owned()
}

#[tokio::test]
async fn a_chart_gets_every_value_or_min_max_avg_buckets_matching_the_raw_values() {
    let s = TestServer::start().await;
    let panel = s.panel_token().await;
    let product = s.product(&panel, &[("temperature", true)]).await;
    let things = bulk(&s, &panel, &product, 1).await;
    let (id, token) = &things[0];
    // 2,000 values one second apart, numbers and numeric strings, and 10 that are not numeric.
    let start = 1_767_225_600_000i64; // 2026-01-01T00:00:00Z
    let value = |i: i64| ((i * 37) % 101) as f64 - 50.0;
    for batch in 0..2 {
        let items: Vec<Value> = (batch * 1000..(batch + 1) * 1000)
            .map(|i| {
                let v = if i % 2 == 0 { json!(value(i)) } else { json!(value(i).to_string()) };
                json!({"key": "temperature", "value": v, "datetime": ms_to_iso(start + i * 1000)})
            })
            .collect();
        write(&s, token, Value::Array(items)).await;
    }
    let odd: Vec<Value> = (0..10)
        .map(|i| json!({"key": "temperature", "value": {"not": "a number"}, "datetime": ms_to_iso(start + i * 1000 + 500)}))
        .collect();
    write(&s, token, Value::Array(odd)).await;

    let series = |query: String| {
        let c = s.client.clone();
        let url = s.url(&format!("/v2/panel/things/{id}/series/temperature?{query}"));
        let panel = panel.clone();
        async move {
            let r = c.get(url).header("Authorization", panel).send().await.expect("send");
            (r.status(), r.json::<Value>().await.expect("json"))
        }
    };
    let range = format!("startDate={}&endDate={}", ms_to_iso(start), ms_to_iso(start + 2_000_000));
    let (st, v) = series(format!("{range}&points=100")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["count"], 2000);
    assert_eq!(v["nonNumeric"], 10);
    assert_eq!(v["downsampled"], true);
    let t = v["t"].as_array().expect("t");
    assert_eq!(t.len(), 100, "2,000 values in 100 buckets of 20 s");
    // Each bucket against the raw values it covers.
    for (b, bucket_t) in t.iter().enumerate() {
        let bt = bucket_t.as_i64().expect("ms");
        assert_eq!(bt, start + b as i64 * 20_000);
        let raw: Vec<f64> =
            (0..2000).filter(|i| start + i * 1000 >= bt && start + i * 1000 < bt + 20_000).map(value).collect();
        let min = raw.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = raw.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let avg = raw.iter().sum::<f64>() / raw.len() as f64;
        assert_eq!(v["min"][b].as_f64(), Some(min));
        assert_eq!(v["max"][b].as_f64(), Some(max));
        assert!((v["avg"][b].as_f64().expect("avg") - avg).abs() < 1e-9);
    }
    // Browsers get it gzipped: the same answer.
    let gz = s
        .client
        .get(s.url(&format!("/v2/panel/things/{id}/series/temperature?{range}&points=100")))
        .header("Authorization", &panel)
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .expect("send");
    assert_eq!(gz.headers().get("content-encoding").map(|v| v.as_bytes()), Some(&b"gzip"[..]));
    let packed = gz.bytes().await.expect("body");
    let mut inflated = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&packed[..]), &mut inflated).expect("gunzip");
    assert_eq!(serde_json::from_slice::<Value>(&inflated).expect("json"), v);
    // A range holding fewer values than points: every value as it is.
    let narrow = format!("startDate={}&endDate={}", ms_to_iso(start + 100_000), ms_to_iso(start + 150_000));
    let (_, v) = series(format!("{narrow}&points=800")).await;
    assert_eq!(v["downsampled"], false);
    assert_eq!(v["count"], 50);
    assert_eq!(v["t"][0], start + 100_000);
    assert_eq!(v["min"][3].as_f64(), Some(value(103)));
    // Errors: unknown key 404, bad points/dates 400, another account 404.
    let (st, _) = series(format!("{range}&points=5")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = series("startDate=yesterday".into()).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let r = panel_get(&s, &panel, &format!("/v2/panel/things/{id}/series/humidity")).await;
    assert_envelope(r, 404).await;
    let other = other_account(&s).await;
    let r = panel_get(&s, &other, &format!("/v2/panel/things/{id}/series/temperature")).await;
    assert_envelope(r, 404).await;
    s.stop().await;
}

fn ms_to_iso(ms: i64) -> String {
    thingline_core::time::format_datetime(ms)
}

#[tokio::test]
async fn codes_download_as_csv_and_app_users_show_logins_links_and_roles() {
    let s = TestServer::start().await;
    let panel = s.panel_token().await;
    let product = s.product(&panel, &[("temperature", true)]).await;
    let codes = s.codes(&panel, &product, 3).await;
    let r = s.activate(&codes[1]).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let thing: Value = r.json().await.expect("json");
    let thing_token = thing["thingToken"].as_str().expect("token").to_owned();
    let r = panel_get(&s, &panel, &format!("/v2/panel/products/{product}/activation-codes?format=csv")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"].to_str().expect("ascii").starts_with("text/csv"));
    assert!(r.headers()["content-disposition"].to_str().expect("ascii").contains("attachment"));
    let csv = r.text().await.expect("text");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "code,used,thingId,createdAt,usedAt");
    assert_eq!(lines.len(), 4);
    for code in &codes {
        let line = lines.iter().find(|l| l.starts_with(code.as_str())).expect("every code");
        let used = code == &codes[1];
        assert_eq!(line.split(',').nth(1), Some(if used { "true" } else { "false" }), "{line}");
    }

    let app = s.app(&panel, &["temperature"]).await;
    let user_token = s.app_user(&app, "alice@example.com").await;
    s.link(&user_token, &thing_token).await;
    let r = panel_get(&s, &panel, &format!("/v2/panel/apps/{app}/users")).await;
    let v: Value = r.json().await.expect("json");
    let user = &v["users"][0];
    assert_eq!(user["email"], "alice@example.com");
    assert!(user["lastLogin"].as_str().is_some(), "{user}");
    let thing_id = user["linkedThings"][0].as_str().expect("linked thing").to_owned();
    assert_eq!(user["roles"]["RSRC_temperature"][&thing_id]["get"], true, "{user}");
    s.stop().await;
}

/// Reads server-sent events from a streaming response until `want` has been seen.
async fn next_event(body: &mut reqwest::Response, buf: &mut String, want: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(pos) = buf.find("\n\n") {
            let ev: String = buf.drain(..pos + 2).collect();
            if ev.starts_with(&format!("event: {want}\n")) {
                return ev;
            }
            continue;
        }
        let chunk = tokio::time::timeout_at(deadline, body.chunk())
            .await
            .unwrap_or_else(|_| panic!("no `{want}` event in time; got {buf:?}"))
            .expect("read");
        let Some(chunk) = chunk else { panic!("stream ended before `{want}`: {buf:?}") };
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test]
async fn the_live_stream_delivers_writes_and_ends_with_the_session() {
    let s = TestServer::start().await;
    let b = sign_in(&s, common::PANEL_EMAIL, common::PANEL_PASSWORD).await;
    let panel = s.panel_token().await;
    let product = s.product(&panel, &[("temperature", true)]).await;
    let things = bulk(&s, &panel, &product, 2).await;
    let ids = format!("{},{}", things[0].0, things[1].0);
    let mut live = b.get(&s, &format!("/v2/panel/live?things={ids}")).send().await.expect("send");
    assert_eq!(live.status(), StatusCode::OK);
    assert_eq!(live.headers()["content-type"], "text/event-stream");
    let mut buf = String::new();
    next_event(&mut live, &mut buf, "ready").await;
    write(&s, &things[1].1, json!([{"key": "temperature", "value": 19.25}])).await;
    let ev = next_event(&mut live, &mut buf, "values").await;
    let data: Value =
        serde_json::from_str(ev.lines().nth(1).and_then(|l| l.strip_prefix("data: ")).expect("data")).expect("json");
    assert_eq!(data["thingId"], things[1].0.as_str());
    assert_eq!(data["values"][0]["key"], "temperature");
    assert_eq!(data["values"][0]["value"], 19.25);
    // Another account's thing, or none: refused before streaming.
    let other = other_account(&s).await;
    let r = panel_get(&s, &other, &format!("/v2/panel/live?things={}", things[0].0)).await;
    assert_envelope(r, 404).await;
    assert_envelope(b.get(&s, "/v2/panel/live").send().await.expect("send"), 400).await;
    // Sign-out ends the stream with a 401 envelope.
    let r = b.send(&s, reqwest::Method::DELETE, "/v2/panel/session").send().await.expect("send");
    assert_eq!(r.status(), StatusCode::OK);
    let ev = next_event(&mut live, &mut buf, "end").await;
    assert!(ev.contains("\"code\":401"), "{ev}");
    // Then the stream closes, with nothing after the end (HTTP/2 may close with an empty frame).
    let rest = tokio::time::timeout(Duration::from_secs(5), async {
        let mut rest = Vec::new();
        while let Some(chunk) = live.chunk().await.expect("read") {
            rest.extend_from_slice(&chunk);
        }
        rest
    })
    .await
    .expect("the stream closes");
    assert!(rest.is_empty(), "nothing after the end: {:?}", String::from_utf8_lossy(&rest));
    s.stop().await;
}

#[tokio::test]
async fn panel_streams_never_take_a_devices_places_and_are_capped_per_account() {
    let s = TestServer::start().await;
    let b = sign_in(&s, common::PANEL_EMAIL, common::PANEL_PASSWORD).await;
    let panel = s.panel_token().await;
    let product = s.product(&panel, &[("temperature", true)]).await;
    let things = bulk(&s, &panel, &product, 1).await;
    let (id, token) = &things[0];
    // 16 tabs watching the thing: more than the thing's 10 device streams.
    let mut tabs = Vec::new();
    for _ in 0..16 {
        let mut r = b.get(&s, &format!("/v2/panel/live?things={id}")).send().await.expect("send");
        assert_eq!(r.status(), StatusCode::OK);
        let mut buf = String::new();
        next_event(&mut r, &mut buf, "ready").await;
        tabs.push(r);
    }
    // The device still gets its own channel.
    let device = s.client.get(format!("{}/v2/things/{token}", s.https)).send().await.expect("send");
    assert_eq!(device.status(), StatusCode::OK);
    // A 17th panel stream of the account is refused, and a closed one frees its place.
    assert_envelope(b.get(&s, &format!("/v2/panel/live?things={id}")).send().await.expect("send"), 429).await;
    drop(tabs.pop());
    common::eventually(Duration::from_secs(5), || async {
        let r = b.get(&s, &format!("/v2/panel/live?things={id}")).send().await.expect("send");
        (r.status() == StatusCode::OK).then_some(())
    })
    .await;
    s.stop().await;
}
