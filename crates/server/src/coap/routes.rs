//! The Thing API over CoAP: the same paths, methods and JSON as over HTTP, on the same platform
//! calls. `POST v2/things` activates; `POST v2/things/{token}` writes (2.01 after the commit);
//! `GET v2/things/{token}` with Observe=0 observes, with Observe=1 stops observing;
//! `GET …/resources`, `…/resources/{key}`, `…/all_resources` read (2.05); `PUT
//! …/resources/description` sets the description; `GET v2/utils/date?thingToken=` tells the time.
//! Errors are the thethings.iO envelope with the CoAP code of its HTTP status.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use thingline_coap_message::{Block, Method, Request, code};
use thingline_core::json::BoundedJson;
use thingline_core::query::{TimelineQuery, parse_keep_alive, parse_limit};
use thingline_core::{Error, Result};

use super::Endpoint;
use super::observe::Registered;
use crate::platform::{WriteFlags, WriteItem, json_error, parse_write_items, server_date};

/// The answer to a request, before it is framed.
pub struct Answer {
    pub code: u8,
    pub body: Vec<u8>,
    /// The request named a valid thingToken: its answer may be larger than the request.
    pub authenticated: bool,
    /// An observation registered by this request, waiting for its answer to go out.
    pub registered: Option<Registered>,
    /// This is one block of a larger answer: its Block2 option, the whole size, the ETag.
    pub slice: Option<(Block, usize, [u8; 4])>,
    /// The Observe option (the answer to a registration is its first notification).
    pub observe: Option<u32>,
}

impl Answer {
    /// An answer to an authenticated request.
    pub fn ok(code: u8, body: impl Into<Vec<u8>>) -> Answer {
        Answer { code, body: body.into(), authenticated: true, registered: None, slice: None, observe: None }
    }

    /// The same answer with another code.
    pub fn with_code(mut self, code: u8) -> Answer {
        self.code = code;
        self
    }

    /// The error envelope of `e`.
    pub fn error(e: &Error) -> Answer {
        if matches!(e, Error::Internal(_)) {
            tracing::error!(error = %e, "CoAP request failed");
        }
        Answer {
            code: code::from_http(e.status()),
            body: e.envelope().to_string().into_bytes(),
            authenticated: false,
            registered: None,
            slice: None,
            observe: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ActivateBody {
    activation_code: Option<String>,
    product_id: Option<String>,
}

/// The body as JSON (CoAP has no form bodies): UTF-8, not empty, nesting bounded.
fn json_body(req: &Request) -> Result<BoundedJson> {
    let text = std::str::from_utf8(&req.payload).map_err(|_| Error::bad_request("Request body is not UTF-8"))?;
    let text = text.trim();
    if text.is_empty() {
        return Err(Error::bad_request("Request body is empty; expected JSON"));
    }
    BoundedJson::new(text.to_owned())
}

fn parse<T: serde::de::DeserializeOwned>(req: &Request) -> Result<T> {
    serde_json::from_str(&json_body(req)?).map_err(|e| json_error(&e))
}

fn method_not_allowed() -> Error {
    Error::MethodNotAllowed("Method not allowed".into())
}

impl Endpoint {
    /// Answers `req` from `peer`.
    pub(super) async fn route(self: &Arc<Self>, peer: SocketAddr, req: &Request) -> Answer {
        let mut authenticated = false;
        match self.dispatch(peer, req, &mut authenticated).await {
            Ok(mut a) => {
                a.authenticated = authenticated;
                a
            }
            Err(e) => {
                let mut a = Answer::error(&e);
                a.authenticated = authenticated;
                a
            }
        }
    }

    async fn dispatch(self: &Arc<Self>, peer: SocketAddr, req: &Request, auth: &mut bool) -> Result<Answer> {
        let p = &self.platform;
        let path: Vec<&str> = req.path.iter().map(String::as_str).collect();
        let (token, rest) = match path.as_slice() {
            ["v2", "things"] => {
                return match req.method {
                    Method::Post => self.activate(peer, req).await,
                    _ => Err(method_not_allowed()),
                };
            }
            ["v2", "utils", "date"] => {
                if req.method != Method::Get {
                    return Err(method_not_allowed());
                }
                let token =
                    req.param("thingToken").ok_or_else(|| Error::Unauthorized("thingToken is required".into()))?;
                p.thing_by_token(token).await?;
                *auth = true;
                return Ok(Answer::ok(code::CONTENT, server_date(req.param("format"))?.to_string()));
            }
            ["v2", "things", token, rest @ ..] => (*token, rest),
            _ => return Err(Error::not_found("Not found")),
        };
        let thing = p.thing_by_token(token).await?;
        *auth = true;
        match (req.method, rest) {
            (Method::Post, []) => {
                let flags = WriteFlags::from_params(req.param("store"), req.param("broadcast"))?;
                let items = parse_write_items(&json_body(req)?, None, p.limits().max_values_per_write)?;
                p.write_values(&thing, items, flags).await?;
                Ok(Answer::ok(code::CREATED, &br#"{"status":"created"}"#[..]))
            }
            (Method::Get, []) => self.observe_request(peer, req, token).await,
            (Method::Get, ["resources"]) => {
                let keys = p.resource_keys(&thing).await?;
                Ok(Answer::ok(code::CONTENT, json!({"resources": keys}).to_string()))
            }
            (Method::Put, ["resources", "description"]) => {
                let value: serde_json::Value = parse(req)?;
                if !value.is_object() {
                    return Err(Error::bad_request("description must be a JSON object"));
                }
                let item = WriteItem { key: "description".into(), value: value.to_string(), ts: None, geo: None };
                p.write_values(&thing, vec![item], WriteFlags::default()).await?;
                Ok(Answer::ok(code::CHANGED, &br#"{"status":"success"}"#[..]))
            }
            (Method::Get, ["resources", key]) => {
                let query =
                    TimelineQuery::from_params(req.param("limit"), req.param("startDate"), req.param("endDate"))?;
                let out = p.read_values(&thing, key, &query).await?;
                Ok(Answer::ok(code::CONTENT, out.render()))
            }
            (Method::Get, ["all_resources"]) => {
                let limit = parse_limit(req.param("limit"))?;
                let page = p.read_all(&thing, limit, req.param("after")).await?;
                Ok(Answer::ok(code::CONTENT, page.render()))
            }
            (_, [] | ["resources"] | ["resources", _] | ["all_resources"]) => Err(method_not_allowed()),
            _ => Err(Error::not_found("Not found")),
        }
    }

    async fn activate(&self, peer: SocketAddr, req: &Request) -> Result<Answer> {
        let b: ActivateBody = parse(req)?;
        let code = b.activation_code.ok_or_else(|| Error::bad_request("activationCode is required"))?;
        let thing = self.platform.activate(&code, b.product_id.as_deref(), peer.ip()).await?;
        let body =
            json!({"status": "created", "message": "thing activated", "thingToken": thing.token, "thingId": thing.id});
        Ok(Answer { authenticated: false, ..Answer::ok(code::CREATED, body.to_string()) })
    }

    /// `GET v2/things/{token}`: Observe=0 registers (the answer is the first notification),
    /// Observe=1 deregisters; without Observe there is nothing to send but the subscription's
    /// first message, so the request is refused with a hint.
    async fn observe_request(self: &Arc<Self>, peer: SocketAddr, req: &Request, token: &str) -> Result<Answer> {
        match req.observe {
            Some(0) => {
                let keep_alive = Duration::from_millis(parse_keep_alive(req.param("keepAlive"))?);
                let registered = self.observe(peer, req.token.clone(), token, req.resource_key(), keep_alive).await?;
                Ok(Answer {
                    observe: Some(registered.sequence),
                    registered: Some(registered),
                    ..Answer::ok(code::CONTENT, super::observe::SUBSCRIBED)
                })
            }
            Some(1) => {
                self.observers.deregister(&(peer, req.token.clone()));
                Ok(Answer::ok(code::CONTENT, &br#"{"status":"success","message":"unsubscribed"}"#[..]))
            }
            _ => Err(Error::bad_request(
                "GET /v2/things/{thingToken} is the thing's subscription: send it with Observe=0",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_answer_is_the_envelope_with_the_coap_code() {
        let a = Answer::error(&Error::thing_not_found());
        assert_eq!(a.code, code::NOT_FOUND);
        let v: serde_json::Value = serde_json::from_slice(&a.body).expect("json");
        assert_eq!(v["status"], "error");
        assert_eq!(v["code"], 404);
        assert!(!a.authenticated);
    }
}
