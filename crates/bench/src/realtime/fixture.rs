//! The fixture every target is measured with: through Thingline's API as realtime-bench.js
//! `setup` does (panel login, a product with public `temperature`, one activated thing, an app,
//! ceil(N/50) users via `POST /v2/register`, one session each), or synthetic tokens for the
//! targets that check none.

use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use futures_util::{StreamExt, TryStreamExt};
use serde_json::json;

use super::SOCKETS_PER_USER;
use crate::api::{Api, string_field};
use crate::cli::ServerArgs;

/// Registrations in flight during setup (each costs the server one Argon2id hash).
const REGISTER_CONCURRENCY: usize = 4;
const USER_PASSWORD: &str = "rt-bench-password";

/// What the clients need from the setup: the thing and one session token per 50 sockets.
pub struct Fixture {
    pub thing_token: String,
    pub sessions: Vec<String>,
}

/// Tokens for targets that check none (the reference and the floor).
pub fn synthetic_fixture(sockets: usize) -> Fixture {
    Fixture {
        thing_token: format!("bench-thing-{:08x}", std::process::id()),
        sessions: (0..sockets.div_ceil(SOCKETS_PER_USER)).map(|i| format!("bench-session-{i}")).collect(),
    }
}

pub async fn setup(api: &Api, server: &ServerArgs, sockets: usize) -> Result<Fixture> {
    let started = Instant::now();
    let email = &server.panel_email;
    let panel = api.login(email, &server.panel_password).await?;
    let product_id = api.create_product(&panel, "realtime-bench", &["temperature"]).await?;
    let codes = api.activation_codes(&panel, &product_id, 1).await?;
    let code = codes.first().ok_or_else(|| anyhow!("no activation code"))?;
    let thing = api.activate(code).await?;
    let app = api
        .post_ok("/v2/panel/apps", Some(&panel), &json!({"name": "realtime-bench", "resources": ["temperature"]}))
        .await
        .context("creating the app")?;
    let app_id = string_field(&app, "appId")?;
    let users = sockets.div_ceil(SOCKETS_PER_USER);
    let sessions: Vec<String> = futures_util::stream::iter(0..users)
        .map(|i| {
            let app_id = app_id.clone();
            async move {
                let body =
                    json!({"email": format!("rt-bench-{i}@example.com"), "password": USER_PASSWORD, "app": app_id});
                let answer = api.post_ok("/v2/register", None, &body).await.context("registering an app user")?;
                string_field(&answer, "token")
            }
        })
        .buffered(REGISTER_CONCURRENCY)
        .try_collect()
        .await?;
    eprintln!(
        "setup: product {product_id}, thing {}, app {app_id}, {users} users registered in {:.1} s",
        thing.thing_id,
        started.elapsed().as_secs_f64()
    );
    Ok(Fixture { thing_token: thing.thing_token, sessions })
}
