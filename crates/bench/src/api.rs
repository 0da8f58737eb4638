//! Setup through Thingline's real API (contract.md): panel login, a product, activation
//! codes, thing activation, and plain value writes for seeding.

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{StreamExt, TryStreamExt};
use reqwest::{Client, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The contract allows at most this many codes per activation-codes call.
const CODES_PER_CALL: usize = 1000;
/// Concurrent activations during setup.
const ACTIVATION_CONCURRENCY: usize = 8;

/// An activated thing.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Thing {
    pub thing_id: String,
    pub thing_token: String,
}

/// A product with activated things, ready to be driven.
#[derive(Debug, Clone)]
pub struct Provisioned {
    pub product_id: String,
    pub things: Vec<Thing>,
}

/// Client for one Thingline base URL.
#[derive(Clone)]
pub struct Api {
    client: Client,
    base: String,
}

impl Api {
    pub fn new(client: Client, base_url: &str) -> Self {
        Self { client, base: base_url.trim_end_matches('/').to_string() }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `POST /v2/panel/login` → the panel token.
    pub async fn login(&self, email: &str, password: &str) -> Result<String> {
        let body = self
            .post_json("/v2/panel/login", None, &json!({"email": email, "password": password}), StatusCode::OK)
            .await
            .context("panel login")?;
        string_field(&body, "token").context("panel login")
    }

    /// `POST /v2/panel/products` with public resources → productId.
    pub async fn create_product(&self, token: &str, name: &str, keys: &[&str]) -> Result<String> {
        let resources: Vec<Value> = keys.iter().map(|key| json!({"key": key, "public": true})).collect();
        let body = self
            .post_json(
                "/v2/panel/products",
                Some(token),
                &json!({"name": name, "resources": resources}),
                StatusCode::CREATED,
            )
            .await
            .context("creating the product")?;
        string_field(&body, "productId").context("creating the product")
    }

    /// `POST /v2/panel/products/{id}/activation-codes`, repeated in chunks of 1000.
    pub async fn activation_codes(&self, token: &str, product_id: &str, count: usize) -> Result<Vec<String>> {
        let mut codes = Vec::with_capacity(count);
        while codes.len() < count {
            let want = (count - codes.len()).min(CODES_PER_CALL);
            let body = self
                .post_json(
                    &format!("/v2/panel/products/{product_id}/activation-codes"),
                    Some(token),
                    &json!({"count": want}),
                    StatusCode::CREATED,
                )
                .await
                .context("creating activation codes")?;
            let batch = body
                .get("codes")
                .and_then(Value::as_array)
                .ok_or_else(|| anyhow!("activation-codes answer without `codes`: {body}"))?;
            if batch.len() != want {
                bail!("asked for {want} activation codes, got {}", batch.len());
            }
            for code in batch {
                let code = code.as_str().ok_or_else(|| anyhow!("activation code is not a string: {code}"))?;
                codes.push(code.to_string());
            }
        }
        Ok(codes)
    }

    /// `POST /v2/things` `{"activationCode"}` → thingToken and thingId.
    pub async fn activate(&self, code: &str) -> Result<Thing> {
        let body = self
            .post_json("/v2/things", None, &json!({"activationCode": code}), StatusCode::CREATED)
            .await
            .context("activating a thing")?;
        Ok(Thing {
            thing_token: string_field(&body, "thingToken").context("activating a thing")?,
            thing_id: string_field(&body, "thingId").context("activating a thing")?,
        })
    }

    /// Log in, create a product with `temperature` public, and activate `count` things.
    pub async fn provision(
        &self,
        email: &str,
        password: &str,
        product_name: &str,
        count: usize,
    ) -> Result<Provisioned> {
        let token = self.login(email, password).await?;
        let product_id = self.create_product(&token, product_name, &["temperature"]).await?;
        let codes = self.activation_codes(&token, &product_id, count).await?;
        let things: Vec<Thing> = futures_util::stream::iter(codes)
            .map(|code| async move { self.activate(&code).await })
            .buffered(ACTIVATION_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(Provisioned { product_id, things })
    }

    /// `POST /v2/things/{token}` with a ready JSON body; expects 201.
    pub async fn write_raw(&self, thing_token: &str, body: String) -> Result<()> {
        let response = self
            .client
            .post(self.url(&format!("/v2/things/{thing_token}")))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .context("sending a write")?;
        let status = response.status();
        if status != StatusCode::CREATED {
            let text = response.text().await.unwrap_or_default();
            bail!("write answered {status}: {}", snippet(&text));
        }
        let _ = response.bytes().await;
        Ok(())
    }

    /// `GET /v2/things/{token}/resources/{key}?limit=…[&endDate=…]`: one page of a timeline,
    /// newest first; `None` when the key was never written (404).
    pub async fn read_page(
        &self,
        thing_token: &str,
        key: &str,
        limit: u32,
        end_date: Option<&str>,
    ) -> Result<Option<Vec<Value>>> {
        let mut url = self.url(&format!("/v2/things/{thing_token}/resources/{key}?limit={limit}"));
        if let Some(end) = end_date {
            // An ISO datetime (`2026-01-01T00:00:00.000Z`) needs no escaping in a query.
            url.push_str(&format!("&endDate={end}"));
        }
        let response = self.client.get(url).send().await.context("reading a timeline")?;
        let status = response.status();
        let text = response.text().await.context("reading the answer to a timeline read")?;
        match status {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(None),
            _ => bail!("a timeline read answered {status}: {}", snippet(&text)),
        }
        match serde_json::from_str(&text) {
            Ok(Value::Array(items)) => Ok(Some(items)),
            _ => bail!("a timeline read answered a non-array: {}", snippet(&text)),
        }
    }

    /// `POST` a JSON body; any 2xx answer is returned as JSON (for calls whose exact status the
    /// targets differ on).
    pub async fn post_ok(&self, path: &str, token: Option<&str>, body: &Value) -> Result<Value> {
        self.post_checked(path, token, body, |status| status.is_success()).await
    }

    async fn post_json(&self, path: &str, token: Option<&str>, body: &Value, expected: StatusCode) -> Result<Value> {
        self.post_checked(path, token, body, |status| status == expected)
            .await
            .map_err(|e| e.context(format!("expected {expected}")))
    }

    async fn post_checked(
        &self,
        path: &str,
        token: Option<&str>,
        body: &Value,
        accept: impl Fn(StatusCode) -> bool,
    ) -> Result<Value> {
        let mut request = self.client.post(self.url(path)).json(body);
        if let Some(token) = token {
            request = request.header(reqwest::header::AUTHORIZATION, token);
        }
        let response = request.send().await.with_context(|| format!("POST {path}"))?;
        let status = response.status();
        let text = response.text().await.with_context(|| format!("reading the answer to POST {path}"))?;
        if !accept(status) {
            bail!("POST {path} answered {status}: {}", snippet(&text));
        }
        serde_json::from_str(&text).with_context(|| format!("POST {path} answered non-JSON: {}", snippet(&text)))
    }
}

pub fn string_field(body: &Value, name: &str) -> Result<String> {
    body.get(name)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| anyhow!("answer has no string `{name}`: {body}"))
}

fn snippet(text: &str) -> String {
    text.chars().take(300).collect()
}
