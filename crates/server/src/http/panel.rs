//! The panel API (`/v2/panel/…`): the operator's login, products, activation codes, things and
//! apps. Authenticated with `Authorization: <panel token>`; HTTPS only.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use thingline_core::Error;
use thingline_core::model::{App, Product, Thing};
use thingline_core::time::format_datetime;

use super::body::Body;
use super::extract::{ClientIp, Path, Query};
use super::panel_session::Panel;
use super::{ApiResult, AppState};
use crate::platform::panel_views::{Latest, things_page_query};
use crate::platform::{AppInput, ProductInput};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v2/panel/login", post(login))
        .route("/v2/panel/logout", post(logout))
        .route("/v2/panel/products", post(create_product).get(list_products))
        .route("/v2/panel/products/{id}", get(get_product).put(update_product).delete(delete_product))
        .route("/v2/panel/products/{id}/activation-codes", post(create_codes).get(list_codes))
        .route("/v2/panel/products/{id}/things", get(product_things).post(create_things))
        .route("/v2/panel/things/{id}", get(get_thing).delete(delete_thing))
        .route("/v2/panel/things/{id}/series/{key}", get(series))
        .route("/v2/panel/apps", post(create_app).get(list_apps))
        .route("/v2/panel/apps/{id}", get(get_app).put(update_app).delete(delete_app))
}

fn ok(body: Value) -> Response {
    Json(body).into_response()
}

fn created(body: Value) -> Response {
    (StatusCode::CREATED, Json(body)).into_response()
}

fn product_json(p: &Product) -> Value {
    json!({"productId": p.id, "name": p.name, "resources": p.resources, "createdAt": format_datetime(p.created_ms)})
}

fn app_json(a: &App) -> Value {
    json!({
        "appId": a.id,
        "name": a.name,
        "resources": a.resources,
        "indexes": a.indexes,
        "createdAt": format_datetime(a.created_ms),
    })
}

fn thing_json(t: &Thing) -> Value {
    json!({
        "thingId": t.id,
        "thingToken": t.token,
        "productId": t.product_id,
        "activated": true,
        "activationCode": t.activation_code,
        "activatedAt": format_datetime(t.created_ms),
    })
}

#[derive(Deserialize)]
struct LoginBody {
    email: Option<String>,
    password: Option<String>,
}

async fn login(State(state): State<AppState>, ClientIp(ip): ClientIp, body: Body) -> ApiResult<Response> {
    let b: LoginBody = body.parse()?;
    let (Some(email), Some(password)) = (b.email, b.password) else {
        return Err(Error::bad_request("email and password are required").into());
    };
    let token = state.platform.panel_login(&email, &password, ip).await?;
    Ok(ok(json!({"status": "success", "token": token})))
}

async fn logout(State(state): State<AppState>, panel: Panel) -> ApiResult<Response> {
    state.platform.panel_logout(Some(&panel.token)).await?;
    Ok(ok(json!({"status": "success", "message": "logged out"})))
}

async fn create_product(State(state): State<AppState>, panel: Panel, body: Body) -> ApiResult<Response> {
    let u = panel.user;
    let input: ProductInput = body.parse()?;
    let p = state.platform.create_product(&u, input).await?;
    Ok(created(json!({"status": "created", "productId": p.id})))
}

async fn list_products(State(state): State<AppState>, panel: Panel) -> ApiResult<Response> {
    let u = panel.user;
    let products: Vec<Value> = state.platform.list_products(&u).await?.iter().map(product_json).collect();
    Ok(ok(json!({"status": "success", "products": products})))
}

async fn get_product(State(state): State<AppState>, panel: Panel, Path(id): Path<String>) -> ApiResult<Response> {
    let u = panel.user;
    let p = state.platform.owned_product(&u, &id).await?;
    Ok(ok(json!({"status": "success", "product": product_json(&p)})))
}

async fn update_product(
    State(state): State<AppState>,
    panel: Panel,
    Path(id): Path<String>,
    body: Body,
) -> ApiResult<Response> {
    let u = panel.user;
    let input: ProductInput = body.parse()?;
    let p = state.platform.update_product(&u, &id, input).await?;
    Ok(ok(json!({"status": "success", "message": "updated", "product": product_json(&p)})))
}

async fn delete_product(State(state): State<AppState>, panel: Panel, Path(id): Path<String>) -> ApiResult<Response> {
    let u = panel.user;
    state.platform.delete_product(&u, &id).await?;
    Ok(ok(json!({"status": "success", "message": "deleted"})))
}

#[derive(Deserialize)]
struct CountBody {
    count: Option<Value>,
}

/// A `count` as a number or a numeric string; 1 when absent (the platform checks the range).
fn count_of(count: Option<Value>) -> Result<i64, Error> {
    match count {
        None => Ok(1),
        Some(Value::Number(n)) => n.as_i64().ok_or_else(|| Error::bad_request("count must be a whole number")),
        Some(Value::String(s)) => s.trim().parse().map_err(|_| Error::bad_request("count must be a whole number")),
        Some(_) => Err(Error::bad_request("count must be a whole number")),
    }
}

async fn create_codes(
    State(state): State<AppState>,
    panel: Panel,
    Path(id): Path<String>,
    body: Body,
) -> ApiResult<Response> {
    let u = panel.user;
    let b: CountBody = body.parse()?;
    let count = count_of(b.count)?;
    let codes = state.platform.create_activation_codes(&u, &id, count).await?;
    Ok(created(json!({"status": "created", "codes": codes})))
}

async fn list_codes(
    State(state): State<AppState>,
    panel: Panel,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    let csv = wants_csv(&q)?;
    let codes = state.platform.list_activation_codes(&panel.user, &id).await?;
    if csv {
        return Ok(codes_csv(&id, &codes));
    }
    let codes: Vec<Value> = codes
        .iter()
        .map(|c| {
            json!({
                "code": c.code,
                "used": c.thing_id.is_some(),
                "thingId": c.thing_id,
                "createdAt": format_datetime(c.created_ms),
                "usedAt": c.used_ms.map(format_datetime),
            })
        })
        .collect();
    Ok(ok(json!({"status": "success", "codes": codes})))
}

/// The codes as a CSV download (`code,used,thingId,createdAt,usedAt`). Codes and ids are URL-safe
/// base64, so no field needs quoting.
fn codes_csv(product_id: &str, codes: &[thingline_core::model::ActivationCode]) -> Response {
    let mut out = String::with_capacity(64 + codes.len() * 96);
    out.push_str("code,used,thingId,createdAt,usedAt\r\n");
    for c in codes {
        let used_at = c.used_ms.map(format_datetime).unwrap_or_default();
        let thing = c.thing_id.as_deref().unwrap_or("");
        let used = c.thing_id.is_some();
        out.push_str(&format!("{},{used},{thing},{},{used_at}\r\n", c.code, format_datetime(c.created_ms)));
    }
    let mut res = csv_response(StatusCode::OK, out);
    let file = format!("attachment; filename=\"activation-codes-{product_id}.csv\"");
    if let Ok(v) = axum::http::HeaderValue::from_str(&file) {
        res.headers_mut().insert(CONTENT_DISPOSITION, v);
    }
    res
}

/// Whether `?format=` asks for CSV (`csv`) rather than JSON (`json`, or absent); 400 otherwise.
fn wants_csv(q: &Query) -> Result<bool, Error> {
    match q.get("format") {
        None | Some("json") => Ok(false),
        Some("csv") => Ok(true),
        Some(_) => Err(Error::bad_request("format must be json or csv")),
    }
}

fn csv_response(status: StatusCode, body: String) -> Response {
    let mut res = (status, body).into_response();
    res.headers_mut().insert(CONTENT_TYPE, axum::http::HeaderValue::from_static("text/csv; charset=utf-8"));
    res
}

/// `{"<key>":{"value":…,"datetime":…}}` of a row's newest values (each stored JSON text parsed
/// back; a stored text serde_json cannot read shows as null).
fn latest_json(latest: &[Latest]) -> Value {
    let mut map = serde_json::Map::new();
    for (key, ts, value) in latest {
        let value: Value = serde_json::from_str(value).unwrap_or(Value::Null);
        map.insert(key.clone(), json!({"value": value, "datetime": format_datetime(*ts)}));
    }
    Value::Object(map)
}

async fn product_things(
    State(state): State<AppState>,
    panel: Panel,
    Path(id): Path<String>,
    q: Query,
) -> ApiResult<Response> {
    let query = things_page_query(q.get("limit"), q.get("skip"), q.get("sort"), q.get("order"), q.get("q"))?;
    let table = state.platform.things_table(&panel.user, &id, &query).await?;
    let things: Vec<Value> = table
        .page
        .rows
        .iter()
        .zip(&table.latest)
        .map(|(row, latest)| {
            let mut v = thing_json(&row.thing);
            v["name"] = json!(row.name);
            v["lastSeen"] = json!(row.last_seen_ms.map(format_datetime));
            v["latest"] = latest_json(latest);
            v
        })
        .collect();
    Ok(ok(json!({
        "status": "success",
        "total": table.page.total,
        "things": things,
        "pendingActivationCodes": table.pending_codes,
    })))
}

/// `POST /v2/panel/products/{id}/things` `{"count":N}`: N things at once, without activation
/// codes; their tokens are in this answer only (JSON, or CSV `thingId,thingToken` with
/// `?format=csv`).
async fn create_things(
    State(state): State<AppState>,
    panel: Panel,
    Path(id): Path<String>,
    q: Query,
    body: Body,
) -> ApiResult<Response> {
    let b: CountBody = body.parse()?;
    let count = count_of(b.count)?;
    let csv = wants_csv(&q)?;
    let things = state.platform.create_things(&panel.user, &id, count).await?;
    if csv {
        let mut out = String::with_capacity(32 + things.len() * 72);
        out.push_str("thingId,thingToken\r\n");
        for t in &things {
            out.push_str(&format!("{},{}\r\n", t.id, t.token));
        }
        return Ok(csv_response(StatusCode::CREATED, out));
    }
    let things: Vec<Value> = things.iter().map(|t| json!({"thingId": t.id, "thingToken": t.token})).collect();
    Ok(created(json!({"status": "created", "things": things})))
}

async fn get_thing(State(state): State<AppState>, panel: Panel, Path(id): Path<String>) -> ApiResult<Response> {
    let o = state.platform.thing_overview(&panel.user, &id).await?;
    let mut v = thing_json(&o.thing);
    v["name"] = json!(o.name);
    v["lastSeen"] = json!(o.latest.iter().map(|(_, ts, _)| *ts).max().map(format_datetime));
    v["latest"] = latest_json(&o.latest);
    v["resources"] = json!(o.keys);
    v["settings"] = o.settings;
    v["geo"] = o.geo.unwrap_or(Value::Null);
    v["product"] = json!({"productId": o.product.id, "name": o.product.name, "resources": o.product.resources});
    Ok(ok(json!({"status": "success", "thing": v})))
}

/// `GET /v2/panel/things/{id}/series/{key}?startDate&endDate&points`: a chart's worth of a
/// timeline (every numeric value, or min/max/avg per bucket when there are more than `points`).
async fn series(
    State(state): State<AppState>,
    panel: Panel,
    Path((id, key)): Path<(String, String)>,
    q: Query,
) -> ApiResult<Response> {
    let now = thingline_core::time::now_ms();
    let date = |name: &str| -> Result<Option<i64>, Error> {
        q.get(name)
            .map(|s| {
                thingline_core::time::parse_datetime(s)
                    .map_err(|_| Error::bad_request(format!("{name} is not a valid date")))
            })
            .transpose()
    };
    let end = date("endDate")?.unwrap_or(now + 1);
    let start = date("startDate")?.unwrap_or(end - 3_600_000);
    let points = match q.get("points") {
        None => 800,
        Some(s) => s.trim().parse::<u32>().map_err(|_| Error::bad_request("points must be a whole number"))?,
    };
    let s = state.platform.thing_series(&panel.user, &id, &key, start, end, points).await?;
    let t: Vec<i64> = s.points.iter().map(|p| p.t_ms).collect();
    let min: Vec<f64> = s.points.iter().map(|p| p.min).collect();
    let max: Vec<f64> = s.points.iter().map(|p| p.max).collect();
    let avg: Vec<f64> = s.points.iter().map(|p| p.avg).collect();
    Ok(ok(json!({
        "status": "success",
        "key": key,
        "startDate": format_datetime(start),
        "endDate": format_datetime(end),
        "count": s.count,
        "nonNumeric": s.non_numeric,
        "downsampled": s.downsampled,
        "t": t,
        "min": min,
        "max": max,
        "avg": avg,
    })))
}

async fn delete_thing(State(state): State<AppState>, panel: Panel, Path(id): Path<String>) -> ApiResult<Response> {
    let u = panel.user;
    state.platform.delete_owned_thing(&u, &id).await?;
    Ok(ok(json!({"status": "success", "message": "deleted"})))
}

async fn create_app(State(state): State<AppState>, panel: Panel, body: Body) -> ApiResult<Response> {
    let u = panel.user;
    let input: AppInput = body.parse()?;
    let a = state.platform.create_app(&u, input).await?;
    Ok(created(json!({"status": "created", "appId": a.id})))
}

async fn list_apps(State(state): State<AppState>, panel: Panel) -> ApiResult<Response> {
    let u = panel.user;
    let apps: Vec<Value> = state.platform.list_apps(&u).await?.iter().map(app_json).collect();
    Ok(ok(json!({"status": "success", "apps": apps})))
}

async fn get_app(State(state): State<AppState>, panel: Panel, Path(id): Path<String>) -> ApiResult<Response> {
    let u = panel.user;
    let a = state.platform.owned_app(&u, &id).await?;
    Ok(ok(json!({"status": "success", "app": app_json(&a)})))
}

async fn update_app(
    State(state): State<AppState>,
    panel: Panel,
    Path(id): Path<String>,
    body: Body,
) -> ApiResult<Response> {
    let u = panel.user;
    let input: AppInput = body.parse()?;
    let a = state.platform.update_app(&u, &id, input).await?;
    Ok(ok(json!({"status": "success", "message": "updated", "app": app_json(&a)})))
}

async fn delete_app(State(state): State<AppState>, panel: Panel, Path(id): Path<String>) -> ApiResult<Response> {
    let u = panel.user;
    state.platform.delete_app(&u, &id).await?;
    Ok(ok(json!({"status": "success", "message": "deleted"})))
}
