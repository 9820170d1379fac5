//! HTTP routes: REST, health, metrics, the status page, and the checks
//! every `/v1/*` request goes through (origin, then bearer token).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use super::config::sha256;
use super::hub::{write_snapshot_json, RingState};
use super::metrics::AGE_BOUNDS_NS;
use super::stream::{client_task, ClientSlot};
use super::App;
use crate::ring::books::MAX_DEPTH;
use crate::ring::layout::writer_state;

const INDEX_HTML: &str = include_str!("page/index.html");
const APP_JS: &str = include_str!("page/app.js");
const STYLE_CSS: &str = include_str!("page/style.css");

/// Every route of the gateway.
pub fn router(app: Arc<App>) -> Router {
    let v1 = Router::new()
        .route("/stream", get(stream))
        .route("/instruments", get(instruments))
        .route("/book/{exchange}/{*symbol}", get(book))
        .route("/feeds", get(feeds))
        .route("/status", get(status))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(app.clone(), auth))
        .layer(middleware::from_fn_with_state(app.clone(), origin));
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/page/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/page/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        )
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .nest("/v1", v1)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(app.clone(), count))
        .with_state(app)
}

fn asset(ctype: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, ctype),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

fn json_response(status: StatusCode, v: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn error(status: StatusCode, msg: &str) -> Response {
    json_response(status, json!({ "error": msg }))
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such endpoint")
}

async fn count(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    app.metrics.http_requests.fetch_add(1, Ordering::Relaxed);
    next.run(req).await
}

/// Whether `origin` may use the API: listed (or `*` listed), or the page's
/// own origin (same host as the request).
fn origin_allowed(app: &App, origin: &str, headers: &HeaderMap) -> bool {
    let list = &app.settings.allowed_origins;
    if list.iter().any(|o| o == "*" || o == origin) {
        return true;
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    !host.is_empty() && (origin == format!("http://{host}") || origin == format!("https://{host}"))
}

/// Browser requests from other origins are refused with 403 unless listed
/// in `allowed_origins`; allowed ones get CORS headers (and preflights are
/// answered here, before the token check, as browsers send no token then).
async fn origin(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let Some(o) = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return next.run(req).await;
    };
    if !origin_allowed(&app, &o, req.headers()) {
        app.metrics.refused_origin.fetch_add(1, Ordering::Relaxed);
        return error(StatusCode::FORBIDDEN, "origin not allowed");
    }
    let allow = HeaderValue::from_str(&o).unwrap_or(HeaderValue::from_static("null"));
    if req.method() == Method::OPTIONS {
        return Response::builder()
            .status(StatusCode::NO_CONTENT)
            .header(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow)
            .header(header::ACCESS_CONTROL_ALLOW_METHODS, "GET")
            .header(header::ACCESS_CONTROL_ALLOW_HEADERS, "authorization")
            .header(header::ACCESS_CONTROL_MAX_AGE, "600")
            .header(header::VARY, "Origin")
            .body(Body::empty())
            .expect("static response");
    }
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
    resp
}

/// Constant-time comparison of two digests.
fn digest_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether the request carries one of the configured tokens. Every token
/// is compared, in constant time, against the SHA-256 of the presented one.
fn authorized(tokens: &[[u8; 32]], headers: &HeaderMap) -> bool {
    let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some((scheme, token)) = v.split_once(' ') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return false;
    }
    let d = sha256(token.trim().as_bytes());
    tokens.iter().fold(false, |ok, t| ok | digest_eq(t, &d))
}

/// `/v1/*` requires `Authorization: Bearer <token>` when a tokens file is
/// configured. A missing and a wrong token get the same answer.
async fn auth(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    if let Some(tokens) = &app.settings.tokens {
        if !authorized(tokens, req.headers()) {
            app.metrics
                .refused_unauthorized
                .fetch_add(1, Ordering::Relaxed);
            let mut r = error(StatusCode::UNAUTHORIZED, "unauthorized");
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
    }
    next.run(req).await
}

async fn stream(
    State(app): State<Arc<App>>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let ws = match ws {
        Ok(w) => w,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("/v1/stream is a WebSocket endpoint: {e}"),
            )
        }
    };
    let m = &app.metrics;
    let max = app.settings.max_clients as i64;
    if m.clients.fetch_add(1, Ordering::AcqRel) >= max {
        m.clients.fetch_sub(1, Ordering::AcqRel);
        m.refused_max_clients.fetch_add(1, Ordering::Relaxed);
        let mut r = error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("too many clients: this gateway serves at most {max}"),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return r;
    }
    let slot = ClientSlot(m.clone());
    let limit = app.settings.max_request_bytes;
    let a = app.clone();
    ws.max_message_size(limit)
        .max_frame_size(limit)
        // NB: tungstenite zero-fills `read_buffer_size` bytes on every read
        // attempt, and the client task polls its socket each time it wakes
        // for an event. At the 128 KiB default that memset was 42% of the
        // gateway's CPU (perf, `tickring bench gateway --clients 10000
        // --rates 300`); client requests are small, 4 KiB reads suffice.
        .read_buffer_size(4 << 10)
        // NB: feed() only buffers; the client task flushes once per batch,
        // so one write syscall carries up to 256 messages.
        .write_buffer_size(64 << 10)
        .on_upgrade(move |socket| client_task(a, socket, slot))
}

fn instrument_json(r: &RingState, id: usize, i: &crate::instrument::Instrument) -> Value {
    json!({
        "name": i.qualified_name(),
        "exchange": i.exchange.name(),
        "symbol": i.symbol,
        "price_scale": i.price_scale,
        "qty_scale": i.qty_scale,
        "ring": r.name,
        "id": id,
    })
}

async fn instruments(State(app): State<Arc<App>>) -> Response {
    let mut out = Vec::new();
    for r in app.hub.rings() {
        let insts = r.instruments.read().unwrap_or_else(|e| e.into_inner());
        for (id, i) in insts.iter().enumerate() {
            out.push(instrument_json(&r, id, i));
        }
    }
    json_response(StatusCode::OK, json!({ "instruments": out }))
}

async fn book(
    State(app): State<Arc<App>>,
    Path((exchange, symbol)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut depth = usize::MAX;
    for (k, v) in &q {
        match k.as_str() {
            "depth" => match v.parse::<usize>() {
                Ok(d) if (1..=MAX_DEPTH as usize).contains(&d) => depth = d,
                _ => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        &format!("depth: {v:?} is not a number in 1..={MAX_DEPTH}"),
                    )
                }
            },
            other => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("unknown query parameter {other:?}; expected depth"),
                )
            }
        }
    }
    let name = format!("{exchange}:{symbol}");
    let found = app.hub.find_instrument(&name);
    if found.is_empty() {
        return error(
            StatusCode::NOT_FOUND,
            &format!("unknown instrument {name:?} (see /v1/instruments)"),
        );
    }
    let mut why = String::new();
    for (ring, id, inst) in found {
        let mut books = ring.books.lock().unwrap_or_else(|e| e.into_inner());
        match books.get() {
            Ok(br) => {
                let region = br.depth();
                let snap = br.read(id).unwrap_or_default();
                drop(books);
                let mut s = String::with_capacity(512);
                write_snapshot_json(&mut s, false, &ring.name, &inst, &snap, region, depth);
                return ([(header::CONTENT_TYPE, "application/json")], s).into_response();
            }
            Err(e) => why = e,
        }
    }
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!("no book for {name}: {why}"),
    )
}

fn secs(ns: i64) -> f64 {
    ns as f64 / 1e9
}

fn writer_state_name(state: u32, gone: Option<crate::ring::GoneReason>) -> &'static str {
    use crate::ring::GoneReason;
    match (state, gone) {
        (_, Some(GoneReason::Died { .. })) => "died",
        (_, Some(GoneReason::Retired)) => "retired",
        (_, Some(GoneReason::Stopped)) => "stopped",
        (writer_state::RUNNING, None) => "running",
        (writer_state::NONE, None) => "none",
        _ => "unknown",
    }
}

fn feed_json(r: &RingState) -> Value {
    use super::hub::RingCounter as C;
    let f = r.feed.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let writer = f.writer.map(|w| {
        json!({
            "alive": r.writer_alive(),
            "state": writer_state_name(w.state, w.gone),
            "pid": w.pid,
            "epoch": w.epoch,
            "heartbeat_age_s": secs(w.heartbeat_age_ns),
        })
    });
    let insts: Vec<Value> = f
        .instruments
        .iter()
        .map(|(n, h)| json!({ "name": n, "book": h.name() }))
        .collect();
    json!({
        "ring": r.name,
        "configured": r.configured,
        "path": f.path.map(|p| p.display().to_string()),
        "open": r.is_open(),
        "error": f.error,
        "writer": writer,
        "connection": match f.connected {
            Some(true) => "connected",
            Some(false) => "disconnected",
            None => "unknown",
        },
        "reconnects": f.reconnects,
        "last_event_age_s": r.last_event_age_ns().map(secs),
        "rates": {
            "events_per_s": f.rates[0],
            "trades_per_s": f.rates[1],
            "book_events_per_s": f.rates[2],
            "status_per_s": f.rates[3],
        },
        "totals": {
            "events": r.counter(C::Events),
            "trades": r.counter(C::Trades),
            "book_events": r.counter(C::BookEvents),
            "bbo": r.counter(C::Bbo),
            "status": r.counter(C::Status),
            "overruns": r.counter(C::Overruns),
            "events_lost": r.counter(C::Lost),
            "gaps": r.counter(C::Gaps),
            "resyncs": r.counter(C::Resyncs),
            "checksum_failures": r.counter(C::ChecksumFailures),
            "crossed": r.counter(C::Crossed),
            "writer_restarts": r.counter(C::WriterRestarts),
        },
        "read_age": f.read_age.map(|(p50, p99, max, n)| json!({
            "p50_s": p50 as f64 / 1e9,
            "p99_s": p99 as f64 / 1e9,
            "max_s": max as f64 / 1e9,
            "count": n,
        })),
        "instruments": insts,
    })
}

async fn feeds(State(app): State<Arc<App>>) -> Response {
    let feeds: Vec<Value> = app.hub.rings().iter().map(|r| feed_json(r)).collect();
    json_response(StatusCode::OK, json!({ "feeds": feeds }))
}

/// Everything the status page shows, in one request.
async fn status(State(app): State<Arc<App>>) -> Response {
    let m = &app.metrics;
    let l = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let (cum, sum_ns, count) = m.age.snapshot();
    let bounds: Vec<f64> = AGE_BOUNDS_NS.iter().map(|&b| b as f64 / 1e9).collect();
    let feeds: Vec<Value> = app.hub.rings().iter().map(|r| feed_json(r)).collect();
    json_response(
        StatusCode::OK,
        json!({
            "now_ns": crate::time::now_ns(),
            "uptime_s": app.started.elapsed().as_secs_f64(),
            "gateway": {
                "clients": m.clients.load(Ordering::Relaxed),
                "clients_accepted": l(&m.clients_accepted),
                "clients_dropped_slow": l(&m.dropped_slow),
                "messages_sent": l(&m.messages_sent),
                "bytes_sent": l(&m.bytes_sent),
                "invalid_requests": l(&m.invalid_requests),
            },
            "event_age": {
                "bounds_s": bounds,
                "cumulative": cum.to_vec(),
                "count": count,
                "sum_s": sum_ns as f64 / 1e9,
            },
            "status_instruments": app.settings.status_instruments,
            "feeds": feeds,
        }),
    )
}

async fn health() -> Response {
    ([(header::CONTENT_TYPE, "text/plain")], "ok\n").into_response()
}

/// 200 when every configured ring is open and fresh (and, with
/// `ring_dir`, at least one ring was found and every discovered ring whose
/// writer has not stopped cleanly is fresh); 503 naming the rings that are not.
async fn ready(State(app): State<Arc<App>>) -> Response {
    let max_age = app.settings.ready_max_age.as_nanos() as i64;
    let rings = app.hub.rings();
    let mut ok = !rings.is_empty();
    let mut list = Vec::new();
    for r in &rings {
        let age = r.freshness_age_ns();
        let open = r.is_open();
        let alive = r.writer_alive();
        let fresh = open && alive && age.is_some_and(|a| a <= max_age);
        let stopped = {
            let f = r.feed.lock().unwrap_or_else(|e| e.into_inner());
            f.writer
                .and_then(|w| w.gone)
                .is_some_and(|g| !matches!(g, crate::ring::GoneReason::Died { .. }))
        };
        let counts = r.configured || !stopped;
        let why = if !open {
            Some("not open".to_owned())
        } else if !alive {
            Some("writer is not running".to_owned())
        } else if !fresh {
            Some(format!(
                "no event or heartbeat for {:.3} s (limit {:.3} s)",
                age.map(secs).unwrap_or(f64::INFINITY),
                secs(max_age)
            ))
        } else {
            None
        };
        if counts && !fresh {
            ok = false;
        }
        list.push(json!({
            "ring": r.name,
            "open": open,
            "fresh": fresh,
            "age_s": age.map(secs),
            "why": why,
        }));
    }
    json_response(
        if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        json!({ "ready": ok, "rings": list }),
    )
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let text = app.metrics.render(&app.hub.rings());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_by_digest_and_scheme() {
        let tokens = vec![
            sha256(b"0123456789abcdefXYZ"),
            sha256(b"another-long-token-1"),
        ];
        let mut h = HeaderMap::new();
        assert!(!authorized(&tokens, &h));
        for (v, ok) in [
            ("Bearer 0123456789abcdefXYZ", true),
            ("bearer another-long-token-1", true),
            ("Bearer 0123456789abcdefXY", false),
            ("Basic 0123456789abcdefXYZ", false),
            ("Bearer", false),
            ("0123456789abcdefXYZ", false),
        ] {
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
            assert_eq!(authorized(&tokens, &h), ok, "{v}");
        }
    }
}
