//! Request rules of the HTTP adapter, against the real `thingline` binary: a known path with a
//! method it does not serve is a 405 with the `Allow` header and the envelope (not a 400).

mod common;

use reqwest::{Method, StatusCode};

use common::assert_envelope;
use common::spawned::{Proc, spawn};

#[tokio::test]
async fn a_known_path_with_another_method_is_405_with_allow() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = spawn(dir.path(), &[]);
    let client = common::client_for(dir.path());
    // (base, method, path, the exact Allow header): the thing API (also on the plain device
    // listener), the app API, the panel API and health. Methods are listed in the order the
    // routes declare them; a GET route also serves HEAD.
    let cases = [
        (&p.https, Method::DELETE, "/v2/things/some-token", "POST,GET,HEAD"),
        (&p.http, Method::PUT, "/v2/things/some-token", "POST,GET,HEAD"),
        (&p.http, Method::GET, "/v2/things", "POST"),
        (&p.https, Method::POST, "/v2/things/some-token/resources/temperature", "GET,HEAD"),
        (&p.https, Method::GET, "/v2/login", "POST"),
        (&p.https, Method::PUT, "/v2/register", "POST"),
        (&p.https, Method::PATCH, "/v2/panel/products/some-id", "GET,HEAD,PUT,DELETE"),
        (&p.https, Method::GET, "/v2/panel/login", "POST"),
        (&p.https, Method::POST, "/v2/health", "GET,HEAD"),
        (&p.http, Method::DELETE, "/v2/health", "GET,HEAD"),
    ];
    for (base, method, path, allow) in cases {
        let r = client.request(method.clone(), format!("{base}{path}")).send().await.expect("request");
        let got = r.headers().get("allow").map(|v| v.to_str().expect("ascii").to_owned());
        assert_eq!(got.as_deref(), Some(allow), "{method} {base}{path}");
        let v = assert_envelope(r, 405).await;
        assert!(v["message"].as_str().is_some_and(|m| m.contains(method.as_str())), "{method} {path}: {v}");
    }
    // HEAD: the status and Allow, no body.
    let r = client.head(format!("{}/v2/login", p.https)).send().await.expect("head");
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers().get("allow").and_then(|v| v.to_str().ok()), Some("POST"));
    // An unknown path stays a 404, and a served method is served.
    let r = client.delete(format!("{}/v2/nothing-here", p.https)).send().await.expect("delete");
    assert!(r.headers().get("allow").is_none());
    assert_envelope(r, 404).await;
    let r = client.get(format!("{}/v2/health", p.https)).send().await.expect("health");
    assert_eq!(r.status(), StatusCode::OK);
    stop(p);
}

fn stop(p: Proc) {
    let status = p.stop();
    assert_eq!(status.code(), Some(0));
}
