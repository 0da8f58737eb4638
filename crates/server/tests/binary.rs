//! The real `thingline` binary as operators run it: start on port 0 and read the listener lines,
//! durability of acknowledged writes across `kill -9`, graceful SIGTERM (exit 0), a clear line
//! when a port is taken, the TOML config file, and `thingline panel-user add`.

mod common;

use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use common::spawned::{Proc, spawn, wait_exit};

/// `thingline serve` on a fresh data dir, a client trusting it, and the token of a thing (of a
/// product with a public `seq`) activated on it.
async fn serve_with_thing() -> (tempfile::TempDir, Proc, reqwest::Client, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = spawn(dir.path(), &[]);
    let client = common::client_for(dir.path());
    let api = common::Api { client: &client, base: &p.https };
    let token = api.thing(&api.panel_token().await, &[("seq", true)]).await.token;
    (dir, p, client, token)
}

#[tokio::test]
async fn acknowledged_writes_survive_kill_9_and_restart() {
    let (dir, mut p, client, token) = serve_with_thing().await;

    // Concurrent writers; every 201 is recorded, then the server is killed mid-stream.
    let acked = std::sync::Arc::new(parking_lot::Mutex::new(Vec::<i64>::new()));
    let mut tasks = Vec::new();
    for w in 0..8i64 {
        let client = client.clone();
        let url = format!("{}/v2/things/{token}", p.https);
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..10_000i64 {
                let v = w * 1_000_000 + i;
                let r = client.post(&url).json(&json!({"values": [{"key": "seq", "value": v}]})).send().await;
                match r {
                    Ok(r) if r.status() == StatusCode::CREATED => acked.lock().push(v),
                    _ => break,
                }
            }
        }));
    }
    common::eventually(Duration::from_secs(30), || {
        let n = acked.lock().len();
        async move { (n >= 400).then_some(()) }
    })
    .await;
    p.child.kill().expect("kill -9");
    let _ = p.child.wait();
    for t in tasks {
        let _ = t.await;
    }
    let acked: Vec<i64> = acked.lock().clone();
    assert!(acked.len() >= 400);

    let p2 = spawn(dir.path(), &[]);
    let mut stored = std::collections::HashSet::new();
    let mut end: Option<String> = None;
    loop {
        let mut url = format!("{}/v2/things/{token}/resources/seq?limit=1000", p2.https);
        if let Some(e) = &end {
            url.push_str(&format!("&endDate={}", common::urlencode(e)));
        }
        let page: Value = client.get(&url).send().await.expect("read").json().await.expect("json");
        let page = page.as_array().expect("array").clone();
        if page.is_empty() {
            break;
        }
        end = page.last().and_then(|i| i["datetime"].as_str()).map(str::to_owned);
        stored.extend(page.iter().map(|i| i["value"].as_i64().expect("int")));
    }
    let lost: Vec<&i64> = acked.iter().filter(|v| !stored.contains(v)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged values lost after kill -9: {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    stop(p2);
}

#[tokio::test]
async fn sigterm_drains_and_exits_zero() {
    let (dir, mut p, client, token) = serve_with_thing().await;
    // An open subscription must not keep the server from stopping.
    let stream = client.get(format!("{}/v2/things/{token}?keepAlive=60000", p.https)).send().await.expect("sub");
    assert_eq!(stream.status(), StatusCode::OK);
    let r = client
        .post(format!("{}/v2/things/{token}", p.https))
        .json(&json!({"values": [{"key": "k", "value": 1}]}))
        .send()
        .await
        .expect("write");
    assert_eq!(r.status(), StatusCode::CREATED);
    let pid = p.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    let status = wait_exit(&mut p.child, Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "exit 0 after SIGTERM");
    drop(stream);
    let p2 = spawn(dir.path(), &[]);
    let page: Value = client
        .get(format!("{}/v2/things/{token}/resources/k", p2.https))
        .send()
        .await
        .expect("read")
        .json()
        .await
        .expect("json");
    assert_eq!(page[0]["value"], 1);
    stop(p2);
}

#[tokio::test]
async fn a_taken_port_stops_the_start_with_one_clear_line() {
    // HTTPS, MQTT and MQTTS in turn on a taken port; the others on free ports.
    for (flag, setting) in [
        ("--https-addr", "THINGLINE_HTTPS_ADDR"),
        ("--mqtt-addr", "THINGLINE_MQTT_ADDR"),
        ("--mqtts-addr", "THINGLINE_MQTTS_ADDR"),
    ] {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = taken.local_addr().expect("addr").to_string();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut args = vec!["--https-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0", "--mqtts-addr", "127.0.0.1:0"];
        let i = args.iter().position(|a| *a == flag).expect("flag") + 1;
        args[i] = &addr;
        let out = Command::new(common::spawned::bin())
            .args(["serve", "--data-dir", dir.path().to_str().expect("utf8"), "--coap-addr", "off"])
            .args(&args)
            .env("THINGLINE_LOG", "error")
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(1), "{flag}");
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "one line: {err}");
        assert!(lines[0].contains(&addr) && lines[0].contains(setting), "names {addr} and {setting}: {err}");
    }
}

#[tokio::test]
async fn config_file_and_panel_user_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // On the suite's scale-out pass the command and the server share the PostgreSQL store.
    let mut add = Command::new(common::spawned::bin());
    add.args(["panel-user", "add", "--email", "second@example.com", "--password", "second-password"])
        .args(["--data-dir", data.to_str().expect("utf8")]);
    if let Some(cluster) = common::backend::for_data_dir(&data) {
        add.envs(cluster.env());
    }
    let out = add.output().expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let file = dir.path().join("thingline.toml");
    // The file also sets a small body limit, which nothing else sets: its effect proves the file
    // was read; its https_addr loses to the --https-addr flag (flag > file).
    let toml = format!(
        "data_dir = {:?}\nlog = \"info\"\nhttps_addr = \"127.0.0.1:1\"\nbody_limit = 2048\n",
        data.to_str().expect("utf8")
    );
    std::fs::write(&file, toml).expect("write config");
    let mut p = spawn(&data, &["--config", file.to_str().expect("utf8")]);
    let client = common::client_for(&data);
    let r = client
        .post(format!("{}/v2/panel/login", p.https))
        .json(&json!({"email": "second@example.com", "password": "second-password"}))
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), StatusCode::OK, "the account made by `panel-user add` logs in");
    let panel = r.json::<Value>().await.expect("json")["token"].as_str().expect("token").to_owned();
    let token = common::Api { client: &client, base: &p.https }.thing(&panel, &[("seq", true)]).await.token;
    let write = |len: usize| {
        let body = json!({"values": [{"key": "seq", "value": "x".repeat(len)}]});
        client.post(format!("{}/v2/things/{token}", p.https)).json(&body).send()
    };
    assert_eq!(write(100).await.expect("send").status(), StatusCode::CREATED);
    assert_eq!(write(3000).await.expect("send").status(), StatusCode::PAYLOAD_TOO_LARGE, "body_limit from the file");
    assert!(!p.https.ends_with(":1"), "the --https-addr flag wins over the file's https_addr: {}", p.https);
    let _ = p.child.kill();
    let _ = p.child.wait();
    let _ = p.lines.try_recv();
}

fn stop(p: Proc) {
    let _ = p.stop();
}
