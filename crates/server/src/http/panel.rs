//! The panel API (`/v2/panel/…`): the operator's login, products, activation codes, things and
//! apps. Authenticated with `Authorization: <panel token>`; HTTPS only.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use thingline_core::Error;
use thingline_core::model::{App, PanelUser, Product, Thing};
use thingline_core::time::format_datetime;

use super::body::Body;
use super::extract::{ClientIp, Path, authorization};
use super::{ApiResult, AppState};
use crate::platform::{AppInput, ProductInput};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v2/panel/login", post(login))
        .route("/v2/panel/logout", post(logout))
        .route("/v2/panel/products", post(create_product).get(list_products))
        .route("/v2/panel/products/{id}", get(get_product).put(update_product).delete(delete_product))
        .route("/v2/panel/products/{id}/activation-codes", post(create_codes).get(list_codes))
        .route("/v2/panel/products/{id}/things", get(product_things))
        .route("/v2/panel/things/{id}", get(get_thing).delete(delete_thing))
        .route("/v2/panel/apps", post(create_app).get(list_apps))
        .route("/v2/panel/apps/{id}", get(get_app).put(update_app).delete(delete_app))
}

async fn user(state: &AppState, headers: &HeaderMap) -> ApiResult<PanelUser> {
    Ok(state.platform.panel_user(authorization(headers)).await?)
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

async fn logout(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    user(&state, &headers).await?;
    state.platform.panel_logout(authorization(&headers)).await?;
    Ok(ok(json!({"status": "success", "message": "logged out"})))
}

async fn create_product(State(state): State<AppState>, headers: HeaderMap, body: Body) -> ApiResult<Response> {
    let u = user(&state, &headers).await?;
    let input: ProductInput = body.parse()?;
    let p = state.platform.create_product(&u, input).await?;
    Ok(created(json!({"status": "created", "productId": p.id})))
}

async fn list_products(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    let u = user(&state, &headers).await?;
    let products: Vec<Value> = state.platform.list_products(&u).await?.iter().map(product_json).collect();
    Ok(ok(json!({"status": "success", "products": products})))
}

async fn get_product(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult<Response> {
    let u = user(&state, &headers).await?;
    let p = state.platform.owned_product(&u, &id).await?;
    Ok(ok(json!({"status": "success", "product": product_json(&p)})))
}

async fn update_product(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> ApiResult<Response> {
    let u = user(&state, &headers).await?;
    let input: ProductInput = body.parse()?;
    let p = state.platform.update_product(&u, &id, input).await?;
    Ok(ok(json!({"status": "success", "message": "updated", "product": product_json(&p)})))
}

async fn delete_product(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let u = user(&state, &headers).await?;
    state.platform.delete_product(&u, &id).await?;
    Ok(ok(json!({"status": "success", "message": "deleted"})))
}

#[derive(Deserialize)]
struct CountBody {
    count: Option<Value>,
}

async fn create_codes(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> ApiResult<Response> {
    let u = user(&state, &headers).await?;
    let b: CountBody = body.parse()?;
    let count = match b.count {
        None => 1,
        Some(Value::Number(n)) => n.as_i64().ok_or_else(|| Error::bad_request("count must be a whole number"))?,
        Some(Value::String(s)) => s.trim().parse().map_err(|_| Error::bad_request("count must be a whole number"))?,
        Some(_) => return Err(Error::bad_request("count must be a whole number").into()),
    };
    let codes = state.platform.create_activation_codes(&u, &id, count).await?;
    Ok(created(json!({"status": "created", "codes": codes})))
}

async fn list_codes(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult<Response> {
    let u = user(&state, &headers).await?;
    let codes: Vec<Value> = state
        .platform
        .list_activation_codes(&u, &id)
        .await?
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

async fn product_things(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let u = user(&state, &headers).await?;
    let things = state.platform.list_product_things(&u, &id).await?;
    let codes = state.platform.list_activation_codes(&u, &id).await?;
    let pending = codes.iter().filter(|c| c.thing_id.is_none()).count();
    let things: Vec<Value> = things.iter().map(thing_json).collect();
    Ok(ok(json!({"status": "success", "things": things, "pendingActivationCodes": pending})))
}

async fn get_thing(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult<Response> {
    let u = user(&state, &headers).await?;
    let p = &state.platform;
    let t = p.owned_thing(&u, &id).await?;
    let mut v = thing_json(&t);
    v["resources"] = json!(p.resource_keys(&t).await?);
    Ok(ok(json!({"status": "success", "thing": v})))
}

async fn delete_thing(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let u = user(&state, &headers).await?;
    state.platform.delete_owned_thing(&u, &id).await?;
    Ok(ok(json!({"status": "success", "message": "deleted"})))
}

async fn create_app(State(state): State<AppState>, headers: HeaderMap, body: Body) -> ApiResult<Response> {
    let u = user(&state, &headers).await?;
    let input: AppInput = body.parse()?;
    let a = state.platform.create_app(&u, input).await?;
    Ok(created(json!({"status": "created", "appId": a.id})))
}

async fn list_apps(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    let u = user(&state, &headers).await?;
    let apps: Vec<Value> = state.platform.list_apps(&u).await?.iter().map(app_json).collect();
    Ok(ok(json!({"status": "success", "apps": apps})))
}

async fn get_app(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult<Response> {
    let u = user(&state, &headers).await?;
    let a = state.platform.owned_app(&u, &id).await?;
    Ok(ok(json!({"status": "success", "app": app_json(&a)})))
}

async fn update_app(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> ApiResult<Response> {
    let u = user(&state, &headers).await?;
    let input: AppInput = body.parse()?;
    let a = state.platform.update_app(&u, &id, input).await?;
    Ok(ok(json!({"status": "success", "message": "updated", "app": app_json(&a)})))
}

async fn delete_app(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult<Response> {
    let u = user(&state, &headers).await?;
    state.platform.delete_app(&u, &id).await?;
    Ok(ok(json!({"status": "success", "message": "deleted"})))
}
