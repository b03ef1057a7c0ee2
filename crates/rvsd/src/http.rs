//! The admin API over HTTP/1.1 (JSON): routes, bearer-token authentication for TCP
//! listeners, and errors as `{"error": {...}}` bodies.
//!
//! Invariants: a request that is refused (401, malformed JSON, out-of-range values)
//! never reaches the control plane; every answer is JSON, errors included,
//! except the dashboard's page, assets and event stream (`/`, `/dashboard/*`,
//! `/v1/stream`, handled in `dashboard.rs`) and `/metrics` (OpenMetrics text,
//! `metrics.rs`). `docs/openapi.yaml` documents these routes.

use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRef, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use rvs_api::{ApiError, Applied, CommandBatch, ErrorBody, ErrorKind};
use serde::de::DeserializeOwned;

use crate::control::Control;
use crate::dashboard;
use crate::http_sync;
use crate::sync::SyncDaemons;

/// Largest request body accepted (64 MiB, about half a million rules).
pub const MAX_BODY: usize = 64 << 20;

/// The control plane shared by every listener.
pub type Shared = Arc<Mutex<Control>>;

/// What the handlers reach: the control plane and the sync daemons. Handlers
/// take the part they need (`State<Shared>` or `State<SyncDaemons>`).
#[derive(Clone)]
pub struct ApiState {
    pub shared: Shared,
    pub sync: SyncDaemons,
}

impl FromRef<ApiState> for Shared {
    fn from_ref(state: &ApiState) -> Shared {
        state.shared.clone()
    }
}

impl FromRef<ApiState> for SyncDaemons {
    fn from_ref(state: &ApiState) -> SyncDaemons {
        state.sync.clone()
    }
}

/// Locks the control plane; a panic while it was held poisons nothing we rely on
/// (every change is all-or-nothing), so a poisoned lock is taken over.
pub fn lock(shared: &Shared) -> MutexGuard<'_, Control> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// An API error as an HTTP answer.
pub struct ApiResponse(pub ApiError);

impl IntoResponse for ApiResponse {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.kind.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, Json(ErrorBody { error: self.0 })).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

impl From<ApiError> for ApiResponse {
    fn from(e: ApiError) -> Self {
        ApiResponse(e)
    }
}

/// Parses a JSON body: syntax errors are 400, well-formed JSON with wrong or
/// out-of-range values is 422; both say where and what.
pub(crate) fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        let kind = match e.classify() {
            serde_json::error::Category::Data => ErrorKind::Invalid,
            _ => ErrorKind::BadRequest,
        };
        ApiError::new(kind, format!("request body: {e}"))
    })
}

/// The routes of the admin API, for any listener.
pub fn router(shared: Shared, sync: SyncDaemons) -> Router {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/table", get(table))
        .route("/v1/marks", get(marks))
        .route("/v1/events", get(events))
        .route("/v1/health", get(health))
        .route("/v1/connections", get(connections))
        .route("/v1/commands", post(commands))
        .route("/v1/reload", post(reload))
        .route("/v1/vrrp", get(vrrp))
        .route("/v1/xdp", get(xdp))
        .route("/v1/daemons", get(http_sync::list).post(http_sync::start))
        .route("/v1/daemons/{role}", delete(http_sync::stop))
        .route("/metrics", get(crate::metrics::handler))
        .route("/v1/stream", get(dashboard::stream))
        .route("/", get(dashboard::index))
        .route("/dashboard/app.js", get(dashboard::app_js))
        .route("/dashboard/app.css", get(dashboard::app_css))
        .fallback(not_found)
        // A whole `ipvsadm -R` of tens of thousands of rules is one request.
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(ApiState { shared, sync })
}

/// The routes behind a bearer token (for TCP listeners). With `open_reads`,
/// GET and HEAD requests (the dashboard, `/metrics`, every `GET /v1/...`) need
/// no token; every other request still does.
pub fn router_with_token(
    shared: Shared,
    sync: SyncDaemons,
    token: String,
    open_reads: bool,
) -> Router {
    router(shared, sync)
        .layer(axum::Extension(dashboard::TokenListener))
        .layer(middleware::from_fn_with_state(
            Arc::new(TokenPolicy { token, open_reads }),
            require_token,
        ))
}

/// Who may do what on a TCP listener.
struct TokenPolicy {
    token: String,
    open_reads: bool,
}

async fn require_token(
    State(policy): State<Arc<TokenPolicy>>,
    req: Request,
    next: Next,
) -> Response {
    let read = matches!(
        *req.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    );
    if policy.open_reads && read {
        return next.run(req).await;
    }
    let token = &policy.token;
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(p) if constant_time_eq(p.as_bytes(), token.as_bytes()) => next.run(req).await,
        Some(_) => ApiResponse(ApiError::new(
            ErrorKind::Unauthorized,
            "the bearer token is not valid",
        ))
        .into_response(),
        None => ApiResponse(ApiError::new(
            ErrorKind::Unauthorized,
            "this listener needs an Authorization: Bearer <token> header",
        ))
        .into_response(),
    }
}

/// Compares without an early exit, so the time taken says nothing of the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i % b.len().max(1)).copied().unwrap_or(0));
    }
    diff == 0
}

async fn status(State(shared): State<Shared>) -> Response {
    Json(lock(&shared).status()).into_response()
}

async fn table(State(shared): State<Shared>) -> Response {
    Json(lock(&shared).table_view()).into_response()
}

async fn marks(State(shared): State<Shared>) -> Response {
    Json(lock(&shared).mark_rules()).into_response()
}

async fn health(State(shared): State<Shared>) -> Response {
    Json(lock(&shared).health_views()).into_response()
}

/// `GET /v1/events?since=SEQ`.
#[derive(serde::Deserialize)]
struct EventsQuery {
    #[serde(default)]
    since: u64,
}

async fn events(
    State(shared): State<Shared>,
    query: Result<axum::extract::Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiResponse> {
    let axum::extract::Query(q) = query
        .map_err(|e| ApiResponse(ApiError::new(ErrorKind::BadRequest, format!("query: {e}"))))?;
    Ok(Json(lock(&shared).events_since(q.since)).into_response())
}

async fn connections(State(shared): State<Shared>) -> Response {
    Json(lock(&shared).conn_views()).into_response()
}

async fn commands(State(shared): State<Shared>, body: Bytes) -> Result<Response, ApiResponse> {
    let batch: CommandBatch = parse_body(&body)?;
    let (applied, table) = lock(&shared).apply_batch(&batch.commands, batch.dry_run)?;
    if !batch.dry_run {
        tracing::info!(commands = applied, "applied");
    }
    Ok(Json(Applied { applied, table }).into_response())
}

async fn reload(State(shared): State<Shared>) -> Result<Response, ApiResponse> {
    let report = lock(&shared).reload()?;
    tracing::info!(changes = report.changes, "reloaded");
    Ok(Json(report).into_response())
}

async fn vrrp(State(shared): State<Shared>) -> Result<Response, ApiResponse> {
    match lock(&shared).vrrp_view() {
        Some(view) => Ok(Json(view).into_response()),
        None => Err(ApiResponse(ApiError::new(
            ErrorKind::NotFound,
            "no VRRP instance runs (rvsd runs VRRP from the vrrp_instance blocks of -f FILE)",
        ))),
    }
}

async fn xdp(State(shared): State<Shared>) -> Result<Response, ApiResponse> {
    match lock(&shared).xdp_view() {
        Some(view) => Ok(Json(view).into_response()),
        None => Err(ApiResponse(ApiError::new(
            ErrorKind::NotFound,
            "the XDP packet plane is not running (rvsd --data-plane xdp)",
        ))),
    }
}

async fn not_found() -> ApiResponse {
    ApiResponse(ApiError::new(ErrorKind::NotFound, "no such API path"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secre", b"secret"));
        assert!(!constant_time_eq(b"", b"secret"));
        assert!(!constant_time_eq(b"secret", b""));
    }

    #[test]
    fn body_errors_are_classified() {
        let e = parse_body::<CommandBatch>(b"{\"commands\": [").unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadRequest);
        let e = parse_body::<CommandBatch>(
            br#"{"commands":[{"op":"set_timeouts","timeouts":{"tcp":-1,"tcpfin":0,"udp":0}}]}"#,
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Invalid);
        assert!(e.message.contains("-1"), "{}", e.message);
    }
}

#[cfg(test)]
mod openapi_tests {
    /// Every route the router serves is documented in docs/openapi.yaml, and the
    /// document names no route the router lacks.
    #[test]
    fn openapi_documents_exactly_the_routes() {
        let src = include_str!("http.rs");
        let doc = include_str!("../../../docs/openapi.yaml");
        let mut routes: Vec<&str> = src
            .lines()
            .filter_map(|l| l.trim().strip_prefix(".route(\""))
            .filter_map(|l| l.split('"').next())
            .collect();
        routes.sort();
        let mut documented: Vec<&str> = doc
            .lines()
            .filter(|l| l.starts_with("  /"))
            .map(|l| l.trim().trim_end_matches(':'))
            .collect();
        documented.sort();
        assert!(!routes.is_empty());
        assert_eq!(routes, documented);
    }
}
