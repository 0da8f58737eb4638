//! The OpenAPI document and the interactive reference, as an integrator meets them: the document
//! served at `/v2/openapi.json` is the one `thingline openapi` prints, every operation it lists
//! is routed on the server, and Swagger UI at `/docs` loads from the binary alone (no file from
//! another host). Schemathesis and newman run against the spawned binary in CI
//! (`scripts/api-check`).

mod common;

use common::TestServer;
use reqwest::{Method, StatusCode};
use serde_json::Value;

async fn served_document(s: &TestServer) -> Value {
    let r = s.client.get(s.url("/v2/openapi.json")).send().await.expect("document");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"].to_str().unwrap_or("").starts_with("application/json"));
    r.json().await.expect("JSON")
}

#[tokio::test]
async fn the_served_document_is_the_one_the_cli_prints() {
    let s = TestServer::start().await;
    let served = served_document(&s).await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_thingline"))
        .arg("openapi")
        .env_remove("THINGLINE_CONFIG")
        .output()
        .expect("thingline openapi runs");
    assert!(out.status.success(), "thingline openapi: {}", String::from_utf8_lossy(&out.stderr));
    let printed: Value = serde_json::from_slice(&out.stdout).expect("thingline openapi prints JSON");
    assert_eq!(served, printed, "the served document and the CLI's differ");

    assert_eq!(served["openapi"], "3.1.0");
    assert_eq!(served["info"]["title"], "Thingline API");
    let ops = |path: &str| -> Vec<String> {
        served["paths"][path].as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default()
    };
    // The guide's operations, as integrators look them up.
    assert_eq!(ops("/v2/things/{thingToken}"), ["get", "post"]);
    assert_eq!(ops("/v2/things"), ["post"]);
    assert_eq!(ops("/v2/me/resources/{key}/{thingId}"), ["get", "post"]);
    assert_eq!(ops("/v2/classes/{scope}/{className}"), ["get", "post"]);
    assert_eq!(ops("/v2/classes/{scope}/{className}/{objectId}"), ["get", "put", "post", "delete"]);
    assert_eq!(ops("/v2/panel/products/{productId}"), ["get", "put", "delete"]);
    for op in ["/v2/register", "/v2/login", "/v2/logout", "/v2/me/grant", "/v2/me/settings", "/v2/health/ready"] {
        assert!(!ops(op).is_empty(), "{op} is not documented");
    }
    // The auth schemes and the envelope every error uses.
    let schemes = &served["components"]["securitySchemes"];
    for (name, place) in [("sessionToken", "header"), ("panelToken", "header"), ("panelCookie", "cookie")] {
        assert_eq!(schemes[name]["type"], "apiKey", "{name}");
        assert_eq!(schemes[name]["in"], place, "{name}");
    }
    assert_eq!(served["paths"]["/v2/me"]["get"]["security"][0]["sessionToken"], serde_json::json!([]));
    let envelope = &served["components"]["schemas"]["ErrorEnvelope"];
    assert_eq!(envelope["required"], serde_json::json!(["status", "code", "message"]));
    assert_eq!(
        served["paths"]["/v2/things/{thingToken}"]["post"]["responses"]["404"]["$ref"],
        "#/components/responses/NotFound"
    );
    s.stop().await;
}

/// Every documented operation reaches its handler: a request to it (with placeholder ids, no
/// credentials) is answered by the handler in the envelope, never by the router's 404 for an
/// unknown path or its 405.
#[tokio::test]
async fn every_documented_operation_is_routed() {
    let s = TestServer::start().await;
    let doc = served_document(&s).await;
    let paths = doc["paths"].as_object().expect("paths");
    let mut checked = 0;
    for (path, item) in paths {
        let concrete: String =
            path.split('/').map(|seg| if seg.starts_with('{') { "x1" } else { seg }).collect::<Vec<_>>().join("/");
        for method in item.as_object().expect("path item").keys() {
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let mut req = s.client.request(m.clone(), s.url(&concrete));
            if m == Method::POST || m == Method::PUT {
                req = req.json(&serde_json::json!({}));
            }
            let r = req.send().await.expect("answer");
            let status = r.status();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            let what = format!("{method} {concrete} ({path})");
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{what}: not routed for this method");
            assert_ne!(body["message"], "Not found", "{what}: the router's unknown-path answer");
            checked += 1;
        }
    }
    assert!(checked >= 55, "only {checked} operations");
    s.stop().await;
}

#[tokio::test]
async fn the_reference_loads_from_the_binary_alone() {
    let s = TestServer::start().await;
    let no_redirect = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(s.data_dir.join("tls/cert.pem")).expect("cert"))
                .expect("pem"),
        )
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let r = no_redirect.get(s.url("/docs")).send().await.expect("docs");
    assert!(r.status().is_redirection(), "/docs redirects to /docs/");
    assert_eq!(r.headers()["location"], "/docs/");

    let r = s.client.get(s.url("/docs/")).send().await.expect("docs/");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"].to_str().unwrap_or("").starts_with("text/html"));
    let csp = r.headers()["content-security-policy"].to_str().expect("csp").to_owned();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    let html = r.text().await.expect("html");
    assert!(html.contains("swagger-ui"), "Swagger UI's page");

    // Every script and stylesheet comes from this server (relative URLs), and loads.
    let mut assets = Vec::new();
    for attr in ["src=\"", "href=\""] {
        for part in html.split(attr).skip(1) {
            let url = part.split('"').next().unwrap_or("");
            assert!(!url.contains("//"), "an asset from another host: {url}");
            assets.push(url.trim_start_matches("./").to_owned());
        }
    }
    assert!(assets.iter().any(|a| a.ends_with(".js")) && assets.iter().any(|a| a.ends_with(".css")), "{assets:?}");
    for asset in &assets {
        let r = s.client.get(s.url(&format!("/docs/{asset}"))).send().await.expect("asset");
        assert_eq!(r.status(), StatusCode::OK, "/docs/{asset}");
        assert!(!r.bytes().await.expect("bytes").is_empty(), "/docs/{asset} is empty");
    }
    // The page is pointed at this server's document.
    let init = s.client.get(s.url("/docs/swagger-initializer.js")).send().await.expect("initializer");
    assert_eq!(init.status(), StatusCode::OK);
    assert!(init.text().await.expect("js").contains("/v2/openapi.json"));
    s.stop().await;
}

/// Swagger UI renders every operation in a real browser (headless Chromium), under the page's
/// content security policy, with nothing but this server to load from.
#[tokio::test]
async fn the_reference_renders_in_a_browser() {
    let Some(tools) = common::browser::tools() else { return };
    let s = TestServer::start().await;
    let operations: usize = served_document(&s).await["paths"]
        .as_object()
        .expect("paths")
        .values()
        .map(|item| item.as_object().map_or(0, |o| o.len()))
        .sum();
    let mut driver = common::browser::Driver::start(&tools).await;
    let b = driver.session(&common::browser::screenshot_dir()).await;
    b.goto(&s.url("/docs/")).await;
    let shown = b
        .wait_js(
            "Swagger UI listing every operation",
            std::time::Duration::from_secs(30),
            "const n = document.querySelectorAll('.opblock').length; return n >= arguments[0] ? n : null;",
            vec![serde_json::json!(operations)],
        )
        .await;
    assert_eq!(shown.as_u64(), Some(operations as u64), "operations shown");
    let title = b.js("return document.querySelector('.info .title')?.innerText || '';", vec![]).await;
    assert!(title.as_str().unwrap_or("").contains("Thingline API"), "{title}");
    b.screenshot("api-reference").await;
    s.stop().await;
}
