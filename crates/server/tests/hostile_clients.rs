//! What a hostile client tries (issue #10), against the real `thingline` binary: bursts of
//! concurrent wrong logins (app and panel, per email and per client address) get no more attempts
//! checked than the limits; failed activations are limited per client address while successful
//! ones never count; emails with control characters, spaces or a malformed shape are refused at
//! register, grant and panel-user creation (command and environment), so nothing stored can add a
//! line to a notification mail.
//!
//! Each test starts its own server (`common::spawned`), so limits start from zero; run it against
//! another build with `THINGLINE_TEST_BIN`.

mod common;

use std::process::Command;
use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

use common::spawned::{Proc, bin, spawn, spawn_with, wait_exit};
use common::{APP_USER_PASSWORD, Api, PANEL_EMAIL, PANEL_PASSWORD, json_of};

/// How many attempts one burst sends at once.
const BURST: usize = 40;

async fn post(client: &Client, url: &str, body: &Value) -> (StatusCode, Value) {
    json_of(client.post(url).json(body).send().await.unwrap_or_else(|e| panic!("POST {url}: {e}"))).await
}

/// Sends every body to `url` at once; the answers in the same order.
async fn burst(client: &Client, url: &str, bodies: Vec<Value>) -> Vec<(StatusCode, Value)> {
    let sends = bodies.into_iter().map(|body| {
        let (client, url) = (client.clone(), url.to_owned());
        tokio::spawn(async move { post(&client, &url, &body).await })
    });
    let mut out = Vec::new();
    for r in futures_util::future::join_all(sends).await {
        out.push(r.expect("request task"));
    }
    out
}

/// How many answers have each status; panics on a status outside `allowed`, and checks that every
/// 429 is the envelope.
fn tally(answers: &[(StatusCode, Value)], allowed: &[StatusCode]) -> std::collections::BTreeMap<u16, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for (status, v) in answers {
        assert!(allowed.contains(status), "unexpected {status}: {v}");
        if *status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!((v["status"].as_str(), v["code"].as_u64()), (Some("error"), Some(429)), "{v}");
            assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        }
        *counts.entry(status.as_u16()).or_insert(0) += 1;
    }
    counts
}

/// A spawned server with a client trusting it and its panel token.
async fn serve() -> (tempfile::TempDir, Proc, Client, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = spawn(dir.path(), &[]);
    let client = common::client_for(dir.path());
    let panel = Api { client: &client, base: &p.https }.panel_token().await;
    (dir, p, client, panel)
}

fn login_body(app: &str, email: &str, password: &str) -> Value {
    json!({"email": email, "password": password, "app": app})
}

#[tokio::test]
async fn concurrent_wrong_app_logins_for_one_email_get_only_the_limit_checked() {
    let (_dir, p, client, panel) = serve().await;
    let app = Api { client: &client, base: &p.https }.app(&panel, &[]).await;
    let login = format!("{}/v2/login", p.https);
    let (status, v) =
        post(&client, &format!("{}/v2/register", p.https), &login_body(&app, "a@example.com", APP_USER_PASSWORD)).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");

    // Below the limit a correct password still logs in, and successful logins never count.
    for _ in 0..3 {
        assert_eq!(
            post(&client, &login, &login_body(&app, "a@example.com", "wrong password!")).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    for _ in 0..5 {
        let (status, v) = post(&client, &login, &login_body(&app, " A@Example.com", APP_USER_PASSWORD)).await;
        assert_eq!(status, StatusCode::OK, "{v}");
    }

    // 3 failures so far: of a burst of wrong passwords exactly 7 more are checked.
    let answers = burst(&client, &login, vec![login_body(&app, "a@example.com", "wrong password!"); BURST]).await;
    let counts = tally(&answers, &[StatusCode::UNAUTHORIZED, StatusCode::TOO_MANY_REQUESTS]);
    assert_eq!(counts.get(&401), Some(&7), "{counts:?}");
    assert_eq!(counts.get(&429), Some(&(BURST - 7)), "{counts:?}");
    let (status, v) = post(&client, &login, &login_body(&app, "a@example.com", APP_USER_PASSWORD)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "the limit is reached, even for the right password: {v}");
    p.stop();
}

#[tokio::test]
async fn concurrent_wrong_app_logins_from_one_address_get_only_the_address_limit_checked() {
    let (_dir, p, client, panel) = serve().await;
    let app = Api { client: &client, base: &p.https }.app(&panel, &[]).await;
    let (status, v) =
        post(&client, &format!("{}/v2/register", p.https), &login_body(&app, "real@example.com", APP_USER_PASSWORD))
            .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let login = format!("{}/v2/login", p.https);
    // 40 different emails (every fourth one malformed: it fails like a wrong password and counts).
    let bodies = (0..BURST)
        .map(|i| {
            let email = if i % 4 == 0 { format!("user {i}@example.com") } else { format!("user{i}@example.com") };
            login_body(&app, &email, "wrong password!")
        })
        .collect();
    let answers = burst(&client, &login, bodies).await;
    let counts = tally(&answers, &[StatusCode::UNAUTHORIZED, StatusCode::TOO_MANY_REQUESTS]);
    assert_eq!(counts.get(&401), Some(&30), "{counts:?}");
    assert_eq!(counts.get(&429), Some(&(BURST - 30)), "{counts:?}");
    let (status, v) = post(&client, &login, &login_body(&app, "real@example.com", APP_USER_PASSWORD)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "the address is at its limit: {v}");
    p.stop();
}

#[tokio::test]
async fn concurrent_wrong_panel_logins_get_only_the_limits_checked() {
    let (_dir, p, client, _panel) = serve().await;
    let login = format!("{}/v2/panel/login", p.https);
    let panel_body = |email: &str, password: &str| json!({"email": email, "password": password});

    // Per email: 2 failures, correct logins that do not count, then a burst: 8 more are checked.
    for _ in 0..2 {
        assert_eq!(post(&client, &login, &panel_body(PANEL_EMAIL, "wrong-password")).await.0, StatusCode::UNAUTHORIZED);
    }
    for _ in 0..3 {
        let (status, v) = post(&client, &login, &panel_body(PANEL_EMAIL, PANEL_PASSWORD)).await;
        assert_eq!(status, StatusCode::OK, "{v}");
    }
    let answers = burst(&client, &login, vec![panel_body(PANEL_EMAIL, "wrong-password"); BURST]).await;
    let counts = tally(&answers, &[StatusCode::UNAUTHORIZED, StatusCode::TOO_MANY_REQUESTS]);
    assert_eq!(counts.get(&401), Some(&8), "{counts:?}");
    assert_eq!(counts.get(&429), Some(&(BURST - 8)), "{counts:?}");

    // Per address: 10 failures so far; of 40 different emails exactly 20 more are checked.
    let bodies = (0..BURST).map(|i| panel_body(&format!("op{i}@example.com"), "wrong-password")).collect();
    let answers = burst(&client, &login, bodies).await;
    let counts = tally(&answers, &[StatusCode::UNAUTHORIZED, StatusCode::TOO_MANY_REQUESTS]);
    assert_eq!(counts.get(&401), Some(&20), "{counts:?}");
    assert_eq!(counts.get(&429), Some(&(BURST - 20)), "{counts:?}");
    p.stop();
}

#[tokio::test]
async fn failed_activations_are_limited_per_address_and_successes_never_count() {
    let (_dir, p, client, panel) = serve().await;
    let api = Api { client: &client, base: &p.https };
    let product = api.product(&panel, &[("seq", true)]).await;
    let codes = api.codes(&panel, &product, 60).await;
    let activate = format!("{}/v2/things", p.https);

    // More successful activations than the limit, from one address (a fleet behind one NAT).
    for code in &codes[..35] {
        let (status, v) = post(&client, &activate, &json!({"activationCode": code})).await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
    }
    // A burst of 20 unknown and 20 already-used codes: exactly 30 reach the store.
    let bodies = (0..BURST)
        .map(|i| {
            let code = if i % 2 == 0 { format!("no-such-code-{i}") } else { codes[i % 35].clone() };
            json!({"activationCode": code})
        })
        .collect();
    let answers = burst(&client, &activate, bodies).await;
    let counts = tally(&answers, &[StatusCode::NOT_FOUND, StatusCode::CONFLICT, StatusCode::TOO_MANY_REQUESTS]);
    let checked = counts.get(&404).copied().unwrap_or(0) + counts.get(&409).copied().unwrap_or(0);
    assert_eq!(checked, 30, "{counts:?}");
    assert_eq!(counts.get(&429), Some(&(BURST - 30)), "{counts:?}");
    // The address is at its limit, over the plain device listener too (one platform, one limit).
    for base in [&p.https, &p.http] {
        let plain = Client::new();
        let c = if base.starts_with("https") { &client } else { &plain };
        let (status, v) = post(c, &format!("{base}/v2/things"), &json!({"activationCode": codes[50]})).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{base}: {v}");
        assert_eq!(v["code"], 429, "{v}");
    }
    p.stop();
}

/// Emails a hostile client registers with: header injection, TAB, NUL, a space, a line separator.
const BAD_EMAILS: [&str; 6] = [
    "a\r\nBcc: x@evil.com",
    "ab@example.com\r\nBcc: x@evil.com",
    "a\tb@example.com",
    "ab@example.com\0",
    "a b@example.com",
    "a\u{2028}b@example.com",
];

#[tokio::test]
async fn malformed_emails_are_refused_at_register_and_grant_and_nothing_is_stored() {
    let (_dir, p, client, panel) = serve().await;
    let api = Api { client: &client, base: &p.https };
    let thing = api.thing(&panel, &[("temperature", true)]).await;
    let app = api.app(&panel, &["temperature"]).await;
    let register = format!("{}/v2/register", p.https);
    for email in BAD_EMAILS {
        let (status, v) = post(&client, &register, &login_body(&app, email, APP_USER_PASSWORD)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{email:?}: {v}");
        assert_eq!(v["code"], 400, "{v}");
        assert!(v["message"].as_str().is_some_and(|m| m.contains("email")), "{v}");
    }
    // Nothing was stored: the clean address registers, and it is the app's only user.
    let (status, v) = post(&client, &register, &login_body(&app, "ab@example.com", APP_USER_PASSWORD)).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let owner = v["token"].as_str().expect("token").to_owned();
    let r = client
        .get(format!("{}/v2/panel/apps/{app}/users", p.https))
        .header("Authorization", &panel)
        .send()
        .await
        .expect("users");
    let (status, v) = json_of(r).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let emails: Vec<&str> = v["users"].as_array().expect("users").iter().filter_map(|u| u["email"].as_str()).collect();
    assert_eq!(emails, ["ab@example.com"]);

    // Logging in with a malformed email fails like a wrong password.
    let (status, v) =
        post(&client, &format!("{}/v2/login", p.https), &login_body(&app, "a\tb@example.com", APP_USER_PASSWORD)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{v}");

    // Granting to a malformed email is a 400 (not a lookup that answers 404).
    let r = client
        .post(format!("{}/v2/me/things", p.https))
        .header("Authorization", &owner)
        .json(&json!({"thingToken": thing.token}))
        .send()
        .await
        .expect("link");
    assert_eq!(r.status(), StatusCode::CREATED);
    for email in BAD_EMAILS {
        let r = client
            .put(format!("{}/v2/me/grant", p.https))
            .header("Authorization", &owner)
            .json(&json!({"email": email, "permissions": {"temperature": {&thing.id: {"get": true}}}}))
            .send()
            .await
            .expect("grant");
        let (status, v) = json_of(r).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{email:?}: {v}");
    }
    p.stop();
}

#[tokio::test]
async fn malformed_panel_emails_are_refused_by_the_command_and_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf8");
    for email in ["x y@z.com", "ops@example.com\r\nBcc: x@evil.com"] {
        let out = Command::new(bin())
            .args(["panel-user", "add", "--email", email, "--password", "second-password", "--data-dir", data])
            .env_remove("THINGLINE_CONFIG")
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{email:?} was accepted: {err}");
        assert!(err.contains("--email") && err.contains("not a valid address"), "a clear message: {err}");
    }

    // THINGLINE_PANEL_EMAIL: a bad one stops the start with one clear line.
    let mut child = Command::new(bin())
        .args(["serve", "--data-dir", data, "--https-addr", "127.0.0.1:0", "--http-addr", "off"])
        .args(["--mqtt-addr", "off", "--mqtts-addr", "off", "--coap-addr", "off"])
        .env("THINGLINE_PANEL_EMAIL", "ops @example.com")
        .env("THINGLINE_PANEL_PASSWORD", PANEL_PASSWORD)
        .env_remove("THINGLINE_CONFIG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let status = wait_exit(&mut child, Duration::from_secs(20));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err).expect("stderr");
    assert!(!status.success(), "started with a malformed THINGLINE_PANEL_EMAIL: {err}");
    let line = err
        .lines()
        .find(|l| l.contains("THINGLINE_PANEL_EMAIL"))
        .unwrap_or_else(|| panic!("no line names the setting: {err}"));
    assert!(line.contains("not a valid address"), "{line}");

    // The same data dir with a good address starts, and the account logs in.
    let p = spawn_with(std::path::Path::new(data), &[], &[]);
    let client = common::client_for(std::path::Path::new(data));
    assert!(!Api { client: &client, base: &p.https }.panel_token().await.is_empty());
    p.stop();
}
