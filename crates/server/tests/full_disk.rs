//! A full disk is survived, then forgotten. The real binary (durability `full`) runs on a data dir
//! on a 64 MiB ext4 file system (a loop mount of a small file), filled to the last byte by a
//! filler file: every kind of write then answers 507 with the error envelope and a message about
//! storage (or succeeds, when it happens to fit), never 500; the server logs the cause once, not
//! once per request; everything acknowledged stays readable. Once the filler is deleted every
//! kind of write succeeds again, without a restart, and a create with a taken `_id` is a 409.
//!
//! Needs root (a loop mount): wherever that is unavailable the test is skipped with a loud notice,
//! except in CI (`CI=true`), where it fails.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use reqwest::{Client, Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};

use common::spawned::{Proc, spawn_with};
use common::{APP_USER_PASSWORD, Api, json_of, urlencode};

/// Prints the server's log lines when the test fails, to show why.
struct LogsOnPanic<'a>(&'a Proc);

impl Drop for LogsOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let lines = self.0.drain_lines();
            let _ = writeln!(std::io::stderr().lock(), "server log:\n{}", lines.join("\n"));
        }
    }
}

/// The file system's size.
const IMAGE_BYTES: u64 = 64 * 1024 * 1024;
/// The size of the big thing values (the body stays under the 1 MiB limit).
const BIG_VALUE: usize = 900 * 1024;
/// The log line of a full disk (crates/store/src/sqlite/errors.rs).
const FULL_LINE: &str = "the disk holding the database is full";

/// A loop-mounted ext4 file system in a temporary directory. Dropping it (also when the test
/// panics) unmounts it and removes the image; the server must be stopped first (declare the
/// [`Proc`] after it, so that it is dropped before).
struct LoopMount {
    mnt: PathBuf,
    mounted: bool,
    _dir: tempfile::TempDir,
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?}: {} {}", out.status, String::from_utf8_lossy(&out.stderr).trim()))
    }
}

impl LoopMount {
    fn new() -> Result<LoopMount, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let image = dir.path().join("fs.img");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).map_err(|e| e.to_string())?;
        std::fs::File::create(&image).and_then(|f| f.set_len(IMAGE_BYTES)).map_err(|e| e.to_string())?;
        run(Command::new("mkfs.ext4").arg("-q").arg(&image))?;
        run(Command::new("mount").args(["-o", "loop"]).arg(&image).arg(&mnt))?;
        Ok(LoopMount { mnt, mounted: true, _dir: dir })
    }
}

impl Drop for LoopMount {
    fn drop(&mut self) {
        if self.mounted && run(Command::new("umount").arg(&self.mnt)).is_err() {
            // Still busy (a process that did not exit yet): detach it now, freed once unused.
            let _ = run(Command::new("umount").arg("-l").arg(&self.mnt));
        }
        self.mounted = false;
    }
}

/// The loop mount, or None when this machine cannot make one (skipped loudly; in CI a failure).
fn loop_mount() -> Option<LoopMount> {
    match LoopMount::new() {
        Ok(m) => Some(m),
        Err(why) => {
            let msg = format!("a loop-mounted ext4 file system is not available (needs root): {why}");
            if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
                panic!("{msg}");
            }
            let _ = write!(std::io::stderr().lock(), "\n!!!!!!!!!!\n!!! SKIPPED: {msg}\n!!!!!!!!!!\n");
            None
        }
    }
}

/// Fills the file system holding `path` to the last byte: big writes, then smaller and smaller
/// ones down to single bytes, until each is refused with ENOSPC.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).expect("filler");
    for size in [1 << 20, 64 << 10, 4 << 10, 512, 1] {
        let buf = vec![0xa5u8; size];
        loop {
            match f.write(&buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => panic!("filling: {e}"),
            }
        }
    }
    // Delayed allocation has reserved the blocks already; the data goes to disk now.
    let _ = f.sync_all();
    let free = free_bytes(path.parent().expect("dir"));
    assert!(free < 64 * 1024, "the file system is full: {free} bytes still free");
}

fn free_bytes(dir: &Path) -> u64 {
    let out = Command::new("df").args(["--output=avail", "-B1"]).arg(dir).output().expect("df");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().nth(1).and_then(|l| l.trim().parse().ok()).expect("df avail")
}

/// A string of `len` bytes starting with `tag`.
fn blob(tag: &str, len: usize) -> String {
    let mut s = format!("{tag}:");
    s.push_str(&"x".repeat(len.saturating_sub(s.len())));
    s
}

/// One client of the spawned server: the thing, the app user and their tokens.
struct Setup {
    client: Client,
    base: String,
    thing_token: String,
    thing_id: String,
    user: String,
    app: String,
    /// Unused activation codes.
    codes: Vec<String>,
}

/// What the server acknowledged: everything in here must stay readable.
#[derive(Default)]
struct Acked {
    /// Values of the `temperature` timeline.
    values: Vec<String>,
    /// The thing's `$settings`, as last written.
    settings: Value,
    /// The user's settings, as last written (top-level keys merged).
    me_settings: serde_json::Map<String, Value>,
    /// Objects of `/v2/classes/me/Notes` by `_id` (None: deleted).
    objects: std::collections::BTreeMap<String, Option<Value>>,
    /// Tokens of things activated.
    things: Vec<String>,
    /// (email, session token) of users registered.
    users: Vec<(String, String)>,
}

impl Setup {
    fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base)).header("Authorization", &self.user)
    }

    async fn send(&self, what: &str, rb: RequestBuilder) -> (StatusCode, Value) {
        json_of(rb.send().await.unwrap_or_else(|e| panic!("{what}: {e}"))).await
    }
}

/// The answer to a write on a full disk: success (it fitted) or 507 with the envelope and a
/// message about storage. Anything else (a 500 above all) fails the test.
fn fitted_or_507(what: &str, expected: StatusCode, (status, body): &(StatusCode, Value)) -> bool {
    if *status == expected {
        return true;
    }
    assert_eq!(*status, StatusCode::INSUFFICIENT_STORAGE, "{what} on a full disk: {status} {body}");
    assert_eq!(body["status"], "error", "{what}: {body}");
    assert_eq!(body["code"], 507, "{what}: {body}");
    let message = body["message"].as_str().unwrap_or_default().to_lowercase();
    assert!(message.contains("storage") && message.contains("disk"), "{what}: the message says why: {body}");
    false
}

/// Every kind of write once; on the full disk (`full`) each may also answer 507, afterwards each
/// must succeed. Returns how many were refused.
async fn every_write(s: &mut Setup, acked: &mut Acked, round: &str, full: bool) -> usize {
    let mut refused = 0;
    let mut check = |what: &str, expected: StatusCode, answer: &(StatusCode, Value)| -> bool {
        if full {
            let ok = fitted_or_507(&format!("{round}: {what}"), expected, answer);
            refused += usize::from(!ok);
            // Shown when the test fails (or with --nocapture).
            println!("{round}: {what}: {}", if ok { "fitted" } else { "507" });
            ok
        } else {
            assert_eq!(answer.0, expected, "{round}: {what} once space is back: {}", answer.1);
            true
        }
    };
    let t = &s.thing_token;

    // A thing value, larger than the WAL file: on the full disk it cannot fit.
    let value = blob(&format!("{round}-value"), BIG_VALUE);
    let body = json!({"values": [{"key": "temperature", "value": value}]});
    let answer = s.send("value write", s.client.post(format!("{}/v2/things/{t}", s.base)).json(&body)).await;
    if check("thing value write", StatusCode::CREATED, &answer) {
        acked.values.push(value);
    }

    // The thing's `$settings` (a whole document).
    let doc = json!({"name": round, "notes": blob(&format!("{round}-settings"), 256 * 1024)});
    let body = json!({"values": [{"key": "$settings", "value": doc}]});
    let answer = s.send("$settings", s.client.post(format!("{}/v2/things/{t}", s.base)).json(&body)).await;
    if check("$settings write", StatusCode::CREATED, &answer) {
        acked.settings = doc;
    }

    // The app user's settings.
    let key = format!("note-{round}");
    let note = blob(&format!("{round}-me"), 16 * 1024);
    let answer = s.send("me/settings", s.req(Method::PUT, "/v2/me/settings").json(&json!({ &key: note }))).await;
    if check("PUT /v2/me/settings", StatusCode::OK, &answer) {
        acked.me_settings.insert(key, Value::String(note));
    }

    // Objects: a create, an update, a delete.
    let id = format!("created-{round}");
    let obj = json!({"_id": id, "text": blob(&format!("{round}-object"), 200 * 1024)});
    let answer = s.send("object create", s.req(Method::POST, "/v2/classes/me/Notes").json(&obj)).await;
    if check("object create", StatusCode::CREATED, &answer) {
        acked.objects.insert(id, Some(obj));
    }
    let patch = json!({"text": blob(&format!("{round}-update"), 200 * 1024)});
    let answer = s.send("object update", s.req(Method::PUT, "/v2/classes/me/Notes/updated").json(&patch)).await;
    if check("object update", StatusCode::OK, &answer)
        && let Some(Some(obj)) = acked.objects.get_mut("updated")
    {
        obj["text"] = patch["text"].clone();
    }
    let gone = format!("deleted-{round}");
    let answer = s.send("object delete", s.req(Method::DELETE, &format!("/v2/classes/me/Notes/{gone}"))).await;
    if check("object delete", StatusCode::OK, &answer) {
        acked.objects.insert(gone, None);
    }

    // An activation.
    let code = s.codes.pop().expect("a code left");
    let answer = s
        .send("activation", s.client.post(format!("{}/v2/things", s.base)).json(&json!({"activationCode": code})))
        .await;
    if check("activation", StatusCode::CREATED, &answer) {
        acked.things.push(answer.1["thingToken"].as_str().expect("thingToken").to_owned());
    } else {
        s.codes.push(code);
    }

    // A registration.
    let email = format!("{round}@example.com");
    let body = json!({"email": email, "password": APP_USER_PASSWORD, "app": s.app});
    let answer = s.send("register", s.client.post(format!("{}/v2/register", s.base)).json(&body)).await;
    if check("register", StatusCode::CREATED, &answer) {
        acked.users.push((email, answer.1["token"].as_str().expect("token").to_owned()));
    }
    refused
}

/// Everything acknowledged reads back as acknowledged.
async fn all_readable(s: &Setup, acked: &Acked, when: &str) {
    let t = &s.thing_token;
    let path = format!("/v2/things/{t}/resources/temperature?limit=1000");
    let (status, page) = s.send("read values", s.client.get(format!("{}{path}", s.base))).await;
    assert_eq!(status, StatusCode::OK, "{when}: {page}");
    let stored: Vec<&str> = page.as_array().expect("array").iter().filter_map(|i| i["value"].as_str()).collect();
    for v in &acked.values {
        assert!(stored.contains(&v.as_str()), "{when}: an acknowledged value ({}…) is gone", &v[..24]);
    }
    let path = format!("/v2/things/{t}/resources/{}", urlencode("$settings"));
    let (status, page) = s.send("read $settings", s.client.get(format!("{}{path}", s.base))).await;
    assert_eq!(status, StatusCode::OK, "{when}: {page}");
    assert_eq!(page[0]["value"], acked.settings, "{when}: $settings as acknowledged");

    let (status, doc) = s.send("read me/settings", s.req(Method::GET, "/v2/me/settings")).await;
    assert_eq!(status, StatusCode::OK, "{when}: {doc}");
    for (k, v) in &acked.me_settings {
        assert_eq!(&doc[k], v, "{when}: user setting {k} as acknowledged");
    }
    let (status, things) = s.send("linked things", s.req(Method::GET, "/v2/me/things")).await;
    assert_eq!(status, StatusCode::OK, "{when}: {things}");
    assert!(things.to_string().contains(&s.thing_id), "{when}: the linked thing is listed: {things}");

    for (id, expected) in &acked.objects {
        let (status, got) = s.send("read object", s.req(Method::GET, &format!("/v2/classes/me/Notes/{id}"))).await;
        match expected {
            Some(obj) => {
                assert_eq!(status, StatusCode::OK, "{when}: object {id}: {got}");
                assert_eq!(&got["results"][0], obj, "{when}: object {id} as acknowledged");
            }
            None => assert_eq!(status, StatusCode::NOT_FOUND, "{when}: object {id} was deleted: {got}"),
        }
    }
    for token in &acked.things {
        let url = format!("{}/v2/things/{token}/all_resources", s.base);
        let (status, body) = s.send("activated thing", s.client.get(url)).await;
        assert_eq!(status, StatusCode::OK, "{when}: the token of an activated thing works: {body}");
    }
    for (email, token) in &acked.users {
        let r = s.client.get(format!("{}/v2/me/settings", s.base)).header("Authorization", token);
        let (status, body) = s.send("registered user", r).await;
        assert_eq!(status, StatusCode::OK, "{when}: the session of {email}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_refused_with_507_and_forgotten_once_space_is_back() {
    if common::backend::scale_out_selected() {
        // The embedded store's own disk filling up: the suite's SQLite pass runs it.
        eprintln!("NOTICE: the full-disk test is about the embedded SQLite store: not run on the PostgreSQL pass");
        return;
    }
    let Some(mount) = loop_mount() else { return };
    let data = mount.mnt.join("data");
    // Durability `full`, the default, stated so that no environment can change it.
    let p: Proc = spawn_with(&data, &[], &[("THINGLINE_DURABILITY", "full")]);
    let logs = LogsOnPanic(&p);
    let client = common::client_for(&data);
    let api = Api { client: &client, base: &p.https };
    let panel = api.panel_token().await;
    let thing = api.thing(&panel, &[("temperature", true)]).await;
    let codes = api.codes(&panel, &thing.product_id, 4).await;
    let app = api.app(&panel, &["temperature"]).await;
    let (status, reg) = json_of(
        client
            .post(format!("{}/v2/register", p.https))
            .json(&json!({"email": "owner@example.com", "password": APP_USER_PASSWORD, "app": app}))
            .send()
            .await
            .expect("register"),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{reg}");
    let user = reg["token"].as_str().expect("token").to_owned();
    let mut s = Setup {
        client: client.clone(),
        base: p.https.clone(),
        thing_token: thing.token.clone(),
        thing_id: thing.id.clone(),
        user,
        app,
        codes,
    };
    let (status, v) =
        s.send("link", s.req(Method::POST, "/v2/me/things").json(&json!({"thingToken": thing.token}))).await;
    assert_eq!(status, StatusCode::CREATED, "link: {v}");

    // Acknowledged before the disk fills.
    let mut acked = Acked::default();
    let body = json!({"values": [{"key": "temperature", "value": "before"}, {"key": "$settings", "value": {"name": "before"}}]});
    let (status, v) = s.send("write", client.post(format!("{}/v2/things/{}", p.https, thing.token)).json(&body)).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    acked.values.push("before".into());
    acked.settings = json!({"name": "before"});
    let (status, v) = s.send("me", s.req(Method::PUT, "/v2/me/settings").json(&json!({"color": "pink"}))).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    acked.me_settings.insert("color".into(), json!("pink"));
    for id in ["updated", "deleted-full-1", "deleted-full-2", "deleted-after", "taken"] {
        let obj = json!({"_id": id, "n": 1});
        let (status, v) = s.send("object", s.req(Method::POST, "/v2/classes/me/Notes").json(&obj)).await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        acked.objects.insert(id.into(), Some(obj));
    }
    all_readable(&s, &acked, "before the disk filled").await;

    // Full to the last byte: every kind of write, twice (a connection a failed write left behind
    // must not break the next one either).
    // Precondition: a big value needs more WAL than the file already has (SQLite reuses the WAL
    // file from its beginning once it is checkpointed: a smaller write may still fit).
    let wal = std::fs::metadata(data.join("thingline.db-wal")).map(|m| m.len()).unwrap_or(0);
    assert!(wal < BIG_VALUE as u64 / 2, "the WAL file ({wal} bytes) is small before the disk fills");
    let filler = mount.mnt.join("filler");
    fill(&filler);
    let full_since = Instant::now();
    let mut refused = 0;
    for round in ["full-1", "full-2"] {
        refused += every_write(&mut s, &mut acked, round, true).await;
    }
    // The big values cannot fit: at least those writes were refused, whatever else fitted.
    assert_eq!(acked.values, ["before"], "no big value was stored on the full disk");
    assert!(refused >= 2, "writes on the full disk were refused ({refused})");
    all_readable(&s, &acked, "on the full disk").await;

    // The operator frees space: every kind of write works again, at once, without a restart.
    std::fs::remove_file(&filler).expect("remove the filler");
    // ext4 reuses freed blocks once its journal commits: sync the file system.
    run(Command::new("sync").arg("-f").arg(&data)).expect("sync");
    let full_secs = full_since.elapsed().as_secs();
    assert_eq!(every_write(&mut s, &mut acked, "after", false).await, 0);
    let (status, v) =
        s.send("taken _id", s.req(Method::POST, "/v2/classes/me/Notes").json(&json!({"_id": "taken", "n": 2}))).await;
    assert_eq!(status, StatusCode::CONFLICT, "a create with a taken _id is a 409 again: {v}");
    all_readable(&s, &acked, "once space was back").await;

    // The cause was logged, once (a line at most a minute), not once per refused request; and
    // nothing was an internal error.
    let lines = p.drain_lines();
    drop(logs);
    let full_lines = lines.iter().filter(|l| l.contains(FULL_LINE)).count();
    assert!(full_lines >= 1, "a full disk is logged: {lines:#?}");
    assert!(
        full_lines as u64 <= 1 + full_secs / 60 && full_lines < refused,
        "{full_lines} full-disk lines for {refused} refused writes in {full_secs} s"
    );
    let internal: Vec<&String> = lines.iter().filter(|l| l.contains("internal error")).collect();
    assert!(internal.is_empty(), "internal errors: {internal:#?}");
    drop(s);
    drop(client);
    let _ = p.stop();
    drop(mount);
}
