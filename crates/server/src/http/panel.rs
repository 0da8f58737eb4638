//! The panel API (`/v2/panel/…`): the operator's login, products, activation codes, things and
//! apps. Authenticated with `Authorization: <panel token>`; HTTPS only.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use thingline_core::Error;
use thingline_core::model::{App, Product, Thing};
use thingline_core::time::format_datetime;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::body::Body;
use super::extract::{ClientIp, Path, Query};
use super::panel_session::Panel;
use super::{ApiResult, AppState, schemas};
use crate::platform::panel_views::{Latest, things_page_query};
use crate::platform::{AppInput, ProductInput};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(create_product, list_products))
        .routes(routes!(get_product, update_product, delete_product))
        .routes(routes!(create_codes, list_codes))
        .routes(routes!(product_things, create_things))
        .routes(routes!(get_thing, delete_thing))
        .routes(routes!(series))
        .routes(routes!(create_app, list_apps))
        .routes(routes!(get_app, update_app, delete_app))
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

/// Logs the operator in: a panel token for `Authorization`.
#[utoipa::path(post, path = "/v2/panel/login", tag = "panel", operation_id = "panelLogin",
    request_body(content = schemas::PanelLogin),
    responses(
        (status = 200, description = "Logged in.", body = schemas::PanelToken),
        (status = 400, response = schemas::BadRequest),
        (status = 408, response = schemas::RequestTimeout),
        (status = 413, response = schemas::PayloadTooLarge),
        (status = 401, description = "Wrong email or password.", body = schemas::ErrorEnvelope),
        (status = 429, response = schemas::TooManyRequests),
    ))]
async fn login(State(state): State<AppState>, ClientIp(ip): ClientIp, body: Body) -> ApiResult<Response> {
    let b: LoginBody = body.parse()?;
    let (Some(email), Some(password)) = (b.email, b.password) else {
        return Err(Error::bad_request("email and password are required").into());
    };
    let token = state.platform.panel_login(&email, &password, ip).await?;
    Ok(ok(json!({"status": "success", "token": token})))
}

/// Ends the panel session (its live streams too).
#[utoipa::path(post, path = "/v2/panel/logout", tag = "panel", operation_id = "panelLogout", security(("panelToken" = []), ("panelCookie" = [])),
    responses((status = 200, description = "Logged out.", body = schemas::Done), (status = 401, response = schemas::Unauthorized),
        (status = 403, description = "A cookie-authenticated change without the CSRF token, or from another origin.", body = schemas::ErrorEnvelope),))]
async fn logout(State(state): State<AppState>, panel: Panel) -> ApiResult<Response> {
    state.platform.panel_logout(Some(&panel.token)).await?;
    Ok(ok(json!({"status": "success", "message": "logged out"})))
}

/// Creates a product with its declared resources.
#[utoipa::path(post, path = "/v2/panel/products", tag = "panel", operation_id = "createProduct", security(("panelToken" = []), ("panelCookie" = [])),
    request_body(content = schemas::ProductInput),
    responses((status = 201, description = "Created.", body = schemas::CreatedId, example = json!({"status": "created", "productId": "p4Qx…"})),
        (status = 400, response = schemas::BadRequest),
        (status = 408, response = schemas::RequestTimeout),
        (status = 413, response = schemas::PayloadTooLarge), (status = 401, response = schemas::Unauthorized),
        (status = 403, description = "A cookie-authenticated change without the CSRF token, or from another origin.", body = schemas::ErrorEnvelope),))]
async fn create_product(State(state): State<AppState>, panel: Panel, body: Body) -> ApiResult<Response> {
    let u = panel.user;
    let input: ProductInput = body.parse()?;
    let p = state.platform.create_product(&u, input).await?;
    Ok(created(json!({"status": "created", "productId": p.id})))
}

/// The account's products.
#[utoipa::path(get, path = "/v2/panel/products", tag = "panel", operation_id = "listProducts", security(("panelToken" = []), ("panelCookie" = [])),
    responses((status = 200, description = "Products.", body = schemas::ProductList), (status = 401, response = schemas::Unauthorized),
        (status = 403, description = "A cookie-authenticated change without the CSRF token, or from another origin.", body = schemas::ErrorEnvelope),))]
async fn list_products(State(state): State<AppState>, panel: Panel) -> ApiResult<Response> {
    let u = panel.user;
    let products: Vec<Value> = state.platform.list_products(&u).await?.iter().map(product_json).collect();
    Ok(ok(json!({"status": "success", "products": products})))
}

/// One product.
#[utoipa::path(get, path = "/v2/panel/products/{productId}", tag = "panel", operation_id = "getProduct", security(("panelToken" = []), ("panelCookie" = [])),
    params(("productId" = String, Path, description = "The product."),),
    responses((status = 200, description = "The product.", body = schemas::ProductAnswer), (status = 400, response = schemas::BadRequest), (status = 401, response = schemas::Unauthorized),
        (status = 403, description = "A cookie-authenticated change without the CSRF token, or from another origin.", body = schemas::ErrorEnvelope), (status = 404, response = schemas::NotFound),))]
async fn get_product(State(state): State<AppState>, panel: Panel, Path(id): Path<String>) -> ApiResult<Response> {
    let u = panel.user;
    let p = state.platform.owned_product(&u, &id).await?;
    Ok(ok(json!({"status": "success", "product": product_json(&p)})))
}

/// Updates a product's name or resources.
#[utoipa::path(put, path = "/v2/panel/products/{productId}", tag = "panel", operation_id = "updateProduct", security(("panelToken" = []), ("panelCookie" = [])),
    params(("productId" = String, Path, description = "The product."),),
    request_body(content = schemas::ProductInput),
    responses((status = 200, description = "Updated.", body = schemas::ProductAnswer), (status = 400, response = schemas::BadRequest),
        (status = 408, response = schemas::RequestTimeout),
        (status = 413, response = schemas::PayloadTooLarge), (status = 401, response = schemas::Unauthorized),
        (status = 403, description = "A cookie-authenticated change without the CSRF token, or from another origin.", body = schemas::ErrorEnvelope), (status = 404, response = schemas::NotFound),))]
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

/// Deletes a product with its things, their values and its activation codes.
#[utoipa::path(delete, path = "/v2/panel/products/{productId}", tag = "panel", operation_id = "deleteProduct", security(("panelToken" = []), ("panelCookie" = [])),
    params(("productId" = String, Path, description = "The product."),),
    responses((status = 200, description = "Deleted.", body = schemas::Done), (status = 400, response = schemas::BadRequest), (status = 401, response = schemas::Unauthorized),
        (status = 403, description = "A cookie-authenticated change without the CSRF token, or from another origin.", body = schemas::ErrorEnvelope), (status = 404, response = schemas::NotFound),
        (status = 409, description = "The product still has things; delete them first.", body = schemas::ErrorEnvelope),
    ))]
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

/// Generates single-use activation codes for a product.
#[utoipa::path(post, path = "/v2/panel/products/{productId}/activation-codes", tag = "panel", operation_id = "createActivationCodes", security(("panelToken" = []), ("panelCookie" = [])),
    params(("productId" = String, Path, description = "The product."),),
    request_body(content = schemas::CountBody),
    responses((status = 201, description = "The new codes.", body = schemas::CodesCreated), (status = 400, response = schemas::BadRequest),
        (status = 408, response = schemas::RequestTimeout),
        (status = 413, response = schemas::PayloadTooLarge), (status = 401, response = schemas::Unauthorized),
        (status = 403, description = "A cookie-authenticated change without the CSRF token, or from another origin.", body = schemas::ErrorEnvelope), (status = 404, response = schemas::NotFound),))]
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

/// A product's activation codes, used and unused (JSON, or CSV with `format=csv`).
#[utoipa::path(get, path = "/v2/panel/products/{productId}/activation-codes", tag = "panel", operation_id = "listActivationCodes", security(("panelToken" = []), ("panelCookie" = [])),
    params(("productId" = String, Path, description = "The product."), ("format" = Option<schemas::ListFormat>, Query, description = "`json` (default) or `csv`.")),
    responses((status = 200, description = "The codes.", content(
            (schemas::CodeList = "application/json"),
            (String = "text/csv", example = "code,used,thingId,createdAt,usedAt\r\n"))),
        (status = 400, response = schemas::BadRequest), (status = 401, response = schemas::Unauthorized),
        (status = 403, description = "A cookie-authenticated change without the CSRF token, or from another origin.", body = schemas::ErrorEnvelope), (status = 404, response = schemas::NotFound),))]
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

/// A page of a product's things with their newest values.
#[utoipa::path(get, path = "/v2/panel/products/{productId}/things", tag = "panel", operation_id = "listProductThings", security(("panelToken" = []), ("panelCookie" = [])),
    params(("productId" = String, Path, description = "The product."),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Rows per page (1 to 1,000; default 100)."),
        ("skip" = Option<u64>, Query, description = "Rows to skip."),
        ("sort" = Option<schemas::ThingSort>, Query, description = "The sort column (default `activatedAt`)."),
        ("order" = Option<schemas::Order>, Query, description = "Default: `desc` for `activatedAt`, `asc` otherwise."),
        ("q" = Option<String>, Query, max_length = 200, description = "Search in thingId and name."),
    ),
    responses((status = 200, description = "The page and the total.", body = schemas::ThingPage), (status = 400, response = schemas::BadRequest), (status = 401, response = schemas::Unauthorized),
        (status = 403, description = "A cookie-authenticated change without the CSRF token, or from another origin.", body = schemas::ErrorEnvelope), (status = 404, response = schemas::NotFound),))]
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

/// Creates things of a product without activation codes.
///
/// `{"count":N}`, 1 to 10,000 per call; their tokens are in this answer only (JSON, or CSV
/// `thingId,thingToken` with `format=csv`).
#[utoipa::path(post, path = "/v2/panel/products/{productId}/things", tag = "panel", operation_id = "createThings", security(("panelToken" = []), ("panelCookie" = [])),
    params(("productId" = String, Path, description = "The product."), ("format" = Option<schemas::ListFormat>, Query, description = "`json` (default) or `csv`.")),
    request_body(content = schemas::CountBody),
    responses((status = 201, description = "The things and their tokens.", content(
            (schemas::ThingsCreated = "application/json"),
            (String = "text/csv", example = "thingId,thingToken\r\n"))),
        (status = 400, response = schemas::BadRequest),
        (status = 408, response = schemas::RequestTimeout),
        (status = 413, response = schemas::PayloadTooLarge), (status = 401, response = schemas::Unauthorized),
        (status = 403, description = "A cookie-authenticated change without the CSRF token, or from another origin.", body = schemas::ErrorEnvelope), (status = 404, response = schemas::NotFound),))]
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

/// A thing: its settings, location, newest values and product.
#[utoipa::path(get, path = "/v2/panel/things/{thingId}", tag = "panel", operation_id = "getThing", security(("panelToken" = []), ("panelCookie" = [])),
    params(("thingId" = String, Path, description = "The thing."),),
    responses((status = 200, description = "The thing.", body = schemas::ThingAnswer), (status = 400, response = schemas::BadRequest), (status = 401, response = schemas::Unauthorized),
        (status = 403, description = "A cookie-authenticated change without the CSRF token, or from another origin.", body = schemas::ErrorEnvelope), (status = 404, response = schemas::NotFound),))]
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

/// A chart's worth of a numeric resource over a range.
///
/// Every numeric value, or min/max/avg per bucket when the range holds more than `points`.
#[utoipa::path(get, path = "/v2/panel/things/{thingId}/series/{key}", tag = "panel", operation_id = "thingSeries", security(("panelToken" = []), ("panelCookie" = [])),
    params(("thingId" = String, Path, description = "The thing."), ("key" = String, Path, description = "The resource."),
        ("startDate" = Option<String>, Query, description = "Range start (default: an hour before the end)."),
        ("endDate" = Option<String>, Query, description = "Range end (default: now)."),
        ("points" = Option<u32>, Query, minimum = 10, maximum = 4000, description = "At most this many buckets (10 to 4,000; default 800)."),
    ),
    responses((status = 200, description = "The series.", body = schemas::Series), (status = 400, response = schemas::BadRequest), (status = 401, response = schemas::Unauthorized),
        (status = 403, description = "A cookie-authenticated change without the CSRF token, or from another origin.", body = schemas::ErrorEnvelope), (status = 404, response = schemas::NotFound),))]
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

/// Deletes a thing and its values; its token stops working and its streams end.
#[utoipa::path(delete, path = "/v2/panel/things/{thingId}", tag = "panel", operation_id = "deleteThing", security(("panelToken" = []), ("panelCookie" = [])),
    params(("thingId" = String, Path, description = "The thing."),),
    responses((status = 200, description = "Deleted.", body = schemas::Done), (status = 400, response = schemas::BadRequest), (status = 401, response = schemas::Unauthorized),
        (status = 403, description = "A cookie-authenticated change without the CSRF token, or from another origin.", body = schemas::ErrorEnvelope), (status = 404, response = schemas::NotFound),))]
async fn delete_thing(State(state): State<AppState>, panel: Panel, Path(id): Path<String>) -> ApiResult<Response> {
    let u = panel.user;
    state.platform.delete_owned_thing(&u, &id).await?;
    Ok(ok(json!({"status": "success", "message": "deleted"})))
}

/// Creates an app: its appId is what app users register and log in with.
#[utoipa::path(post, path = "/v2/panel/apps", tag = "panel", operation_id = "createApp", security(("panelToken" = []), ("panelCookie" = [])),
    request_body(content = schemas::AppInput),
    responses((status = 201, description = "Created.", body = schemas::CreatedId, example = json!({"status": "created", "appId": "a1B2c3"})),
        (status = 400, response = schemas::BadRequest),
        (status = 408, response = schemas::RequestTimeout),
        (status = 413, response = schemas::PayloadTooLarge), (status = 401, response = schemas::Unauthorized),
        (status = 403, description = "A cookie-authenticated change without the CSRF token, or from another origin.", body = schemas::ErrorEnvelope),))]
async fn create_app(State(state): State<AppState>, panel: Panel, body: Body) -> ApiResult<Response> {
    let u = panel.user;
    let input: AppInput = body.parse()?;
    let a = state.platform.create_app(&u, input).await?;
    Ok(created(json!({"status": "created", "appId": a.id})))
}

/// The account's apps.
#[utoipa::path(get, path = "/v2/panel/apps", tag = "panel", operation_id = "listApps", security(("panelToken" = []), ("panelCookie" = [])),
    responses((status = 200, description = "Apps.", body = schemas::AppList), (status = 401, response = schemas::Unauthorized),
        (status = 403, description = "A cookie-authenticated change without the CSRF token, or from another origin.", body = schemas::ErrorEnvelope),))]
async fn list_apps(State(state): State<AppState>, panel: Panel) -> ApiResult<Response> {
    let u = panel.user;
    let apps: Vec<Value> = state.platform.list_apps(&u).await?.iter().map(app_json).collect();
    Ok(ok(json!({"status": "success", "apps": apps})))
}

/// One app.
#[utoipa::path(get, path = "/v2/panel/apps/{appId}", tag = "panel", operation_id = "getApp", security(("panelToken" = []), ("panelCookie" = [])),
    params(("appId" = String, Path, description = "The app."),),
    responses((status = 200, description = "The app.", body = schemas::AppAnswer), (status = 400, response = schemas::BadRequest), (status = 401, response = schemas::Unauthorized),
        (status = 403, description = "A cookie-authenticated change without the CSRF token, or from another origin.", body = schemas::ErrorEnvelope), (status = 404, response = schemas::NotFound),))]
async fn get_app(State(state): State<AppState>, panel: Panel, Path(id): Path<String>) -> ApiResult<Response> {
    let u = panel.user;
    let a = state.platform.owned_app(&u, &id).await?;
    Ok(ok(json!({"status": "success", "app": app_json(&a)})))
}

/// Updates an app's name, resources or collection indexes.
#[utoipa::path(put, path = "/v2/panel/apps/{appId}", tag = "panel", operation_id = "updateApp", security(("panelToken" = []), ("panelCookie" = [])),
    params(("appId" = String, Path, description = "The app."),),
    request_body(content = schemas::AppInput),
    responses((status = 200, description = "Updated.", body = schemas::AppAnswer), (status = 400, response = schemas::BadRequest),
        (status = 408, response = schemas::RequestTimeout),
        (status = 413, response = schemas::PayloadTooLarge), (status = 401, response = schemas::Unauthorized),
        (status = 403, description = "A cookie-authenticated change without the CSRF token, or from another origin.", body = schemas::ErrorEnvelope), (status = 404, response = schemas::NotFound),))]
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

/// Deletes an app with its users, sessions and objects.
#[utoipa::path(delete, path = "/v2/panel/apps/{appId}", tag = "panel", operation_id = "deleteApp", security(("panelToken" = []), ("panelCookie" = [])),
    params(("appId" = String, Path, description = "The app."),),
    responses((status = 200, description = "Deleted.", body = schemas::Done), (status = 400, response = schemas::BadRequest), (status = 401, response = schemas::Unauthorized),
        (status = 403, description = "A cookie-authenticated change without the CSRF token, or from another origin.", body = schemas::ErrorEnvelope), (status = 404, response = schemas::NotFound),))]
async fn delete_app(State(state): State<AppState>, panel: Panel, Path(id): Path<String>) -> ApiResult<Response> {
    let u = panel.user;
    state.platform.delete_app(&u, &id).await?;
    Ok(ok(json!({"status": "success", "message": "deleted"})))
}
