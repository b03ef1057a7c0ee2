//! The live web dashboard: its static page (HTML, CSS and plain JavaScript
//! compiled into the binary from `src/dashboard/`) and `GET /v1/stream`, the
//! Server-Sent Events feed the page draws from (docs/dashboard.md).
//!
//! Invariants:
//! - The page fetches nothing from the network: every asset is served here.
//! - A snapshot is copied out of the control plane under its lock, and the lock
//!   is released before anything is serialized or sent; no await holds it.
//! - Each stream sends every event once: it resumes after `Last-Event-ID` (what
//!   a reconnecting `EventSource` sends) or `?since=`, and each message's id is
//!   the newest event sequence number it has delivered.
//! - A stream ends when rvsd stops, so a graceful shutdown never waits on an
//!   open dashboard.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use futures_util::stream::{self, Stream, StreamExt};
use rvs_api::{ApiError, ErrorKind, SnapshotView};
use tokio::sync::watch;

use crate::http::{lock, ApiResponse, Shared};

const INDEX_HTML: &str = include_str!("dashboard/index.html");
const APP_JS: &str = include_str!("dashboard/app.js");
const APP_CSS: &str = include_str!("dashboard/app.css");

/// How often a stream sends a snapshot.
pub const STREAM_PERIOD: Duration = Duration::from_secs(1);

/// Marks a router as a TCP listener's (behind the bearer token); the Unix
/// socket's router has none, so its pages know writes need no token.
#[derive(Clone, Copy, Debug)]
pub struct TokenListener;

/// Turns true when rvsd stops; open streams end then.
#[derive(Clone, Debug)]
pub struct Quit(pub watch::Receiver<bool>);

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

pub async fn index() -> Response {
    asset(INDEX_HTML, "text/html; charset=utf-8")
}

pub async fn app_js() -> Response {
    asset(APP_JS, "text/javascript; charset=utf-8")
}

pub async fn app_css() -> Response {
    asset(APP_CSS, "text/css; charset=utf-8")
}

/// `GET /v1/stream?since=SEQ`.
#[derive(serde::Deserialize)]
pub struct StreamQuery {
    since: Option<u64>,
}

/// The state the dashboard shows, taken under the lock in one go.
pub fn snapshot(shared: &Shared, since: u64, writes_need_token: bool) -> SnapshotView {
    let control = lock(shared);
    SnapshotView {
        at_ms: control.now().as_millis(),
        writes_need_token,
        status: control.status(),
        table: control.table_view(),
        health: control.health_views(),
        vrrp: control.vrrp_view(),
        reloads: control.reloads(),
        events: control.events_since(since),
    }
}

/// Where a reader resumes: `Last-Event-ID` (an `EventSource` reconnecting)
/// wins over `?since=`; neither means from the oldest event kept.
fn resume_point(headers: &HeaderMap, query: Option<u64>) -> Result<u64, ApiError> {
    match headers.get("last-event-id") {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| {
                ApiError::new(
                    ErrorKind::BadRequest,
                    "Last-Event-ID must be an event sequence number",
                )
            }),
        None => Ok(query.unwrap_or(0)),
    }
}

/// One snapshot as an SSE message, and the sequence number to resume after.
fn message(shared: &Shared, since: u64, writes_need_token: bool) -> (Event, u64) {
    let snap = snapshot(shared, since, writes_need_token);
    let seen = snap.events.last().map_or(since, |e| e.seq);
    let data = serde_json::to_string(&snap).unwrap_or_else(|e| {
        // Plain data always serializes; say so on the page rather than panic.
        format!("{{\"error\":{{\"kind\":\"internal\",\"message\":\"{e}\"}}}}")
    });
    let event = Event::default()
        .event("snapshot")
        .id(seen.to_string())
        .data(data);
    (event, seen)
}

/// `GET /v1/stream`: a snapshot at once, then one a second.
pub async fn stream(
    State(shared): State<Shared>,
    tcp: Option<Extension<TokenListener>>,
    quit: Option<Extension<Quit>>,
    headers: HeaderMap,
    query: Result<Query<StreamQuery>, QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiResponse> {
    let Query(q) = query
        .map_err(|e| ApiResponse(ApiError::new(ErrorKind::BadRequest, format!("query: {e}"))))?;
    let since = resume_point(&headers, q.since).map_err(ApiResponse)?;
    let writes_need_token = tcp.is_some();
    let mut ticks = tokio::time::interval(STREAM_PERIOD);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let messages = stream::unfold(
        (shared, since, ticks),
        move |(shared, since, mut ticks)| async move {
            ticks.tick().await;
            let (event, seen) = message(&shared, since, writes_need_token);
            Some((Ok(event), (shared, seen, ticks)))
        },
    );
    let mut quit = quit.map(|Extension(Quit(rx))| rx);
    let stopped = async move {
        match &mut quit {
            Some(rx) => {
                let _ = rx.wait_for(|v| *v).await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    Ok(Sse::new(messages.take_until(Box::pin(stopped))).keep_alive(KeepAlive::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_point_prefers_last_event_id() {
        let mut h = HeaderMap::new();
        assert_eq!(resume_point(&h, None).unwrap(), 0);
        assert_eq!(resume_point(&h, Some(7)).unwrap(), 7);
        h.insert("last-event-id", HeaderValue::from_static("12"));
        assert_eq!(resume_point(&h, Some(7)).unwrap(), 12);
        h.insert("last-event-id", HeaderValue::from_static("x"));
        assert_eq!(
            resume_point(&h, None).unwrap_err().kind,
            ErrorKind::BadRequest
        );
    }

    #[test]
    fn the_page_loads_only_its_own_assets() {
        for src in [INDEX_HTML, APP_JS, APP_CSS] {
            // The SVG namespace is a name, not an address anything loads.
            let src = src.replace("http://www.w3.org/2000/svg", "");
            for remote in ["http://", "https://", "//cdn", "@import"] {
                assert!(!src.contains(remote), "an asset refers to {remote}");
            }
        }
        assert!(INDEX_HTML.contains("src=\"/dashboard/app.js\""));
        assert!(INDEX_HTML.contains("href=\"/dashboard/app.css\""));
    }
}
