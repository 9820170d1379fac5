//! `GET /v1/stream`: the WebSocket protocol.
//!
//! Client -> gateway, one JSON object per text message:
//!
//! ```json
//! {"op": "subscribe",   "channels": ["trades", "book"], "instruments": ["kraken:BTC/USD", "coinbase:*"], "id": 1}
//! {"op": "unsubscribe", "channels": ["trades"],         "instruments": ["coinbase:*"]}
//! {"op": "ping", "id": 7}
//! ```
//!
//! Gateway -> client: events as the JSON objects of `tickring tail --json`
//! (they have a `kind` field), and control messages with a `type` field:
//! `subscribed`, `unsubscribed`, `pong`, `snapshot` (first message of a
//! book subscription, see [`super::hub`]), `error` (the request was not
//! applied; the connection stays open), `overrun`, `writer_restarted`,
//! `writer_gone`.
//!
//! Close codes: 1008 when the client's queue overflowed (it reads too
//! slowly), 1009 for a message over `max_request_bytes`, 1007 for invalid
//! UTF-8, 1002 for other protocol errors, 1001 when the gateway stops.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::watch;

use super::hub::{channel_bit, channel_names, error_json, Client, Out, CHANNELS};
use super::metrics::LocalAge;
use super::pattern::Pattern;
use super::App;
use crate::render::json_escape_into;
use crate::time::now_ns;

/// Subscriptions (patterns) one client may hold.
pub const MAX_PATTERNS_PER_CLIENT: usize = 1024;
/// How long an evicted or closing client gets to take its close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// Messages written per socket flush at most.
const BATCH: usize = 256;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    op: String,
    #[serde(default)]
    channels: Vec<String>,
    #[serde(default)]
    instruments: Vec<String>,
    #[serde(default)]
    id: Option<serde_json::Value>,
}

/// Why a client's loop ended.
enum End {
    /// The client closed or the connection dropped.
    Gone,
    Slow,
    TooBig,
    BadUtf8,
    Protocol(String),
    Shutdown,
}

type Sink = SplitSink<WebSocket, Message>;

/// Decrements the connected-clients gauge when the connection ends (also
/// when the upgrade fails).
pub struct ClientSlot(pub Arc<super::metrics::Metrics>);

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Runs one WebSocket client until it leaves, is evicted or the gateway stops.
pub async fn client_task(app: Arc<App>, socket: WebSocket, slot: ClientSlot) {
    let metrics = app.metrics.clone();
    metrics.clients_accepted.fetch_add(1, Ordering::Relaxed);
    let id = app.hub.next_client_id();
    let (client, mut rx) = Client::new(id, app.settings.client_queue, metrics.clone());
    let (mut sink, mut stream) = socket.split();
    let mut shutdown = app.shutdown.clone();
    let mut subs: Vec<(Pattern, u8)> = Vec::new();
    let mut batch: Vec<Out> = Vec::with_capacity(BATCH);
    let mut age = LocalAge::default();

    let end = loop {
        tokio::select! {
            biased;
            _ = client.evict.notified() => break End::Slow,
            _ = shutdown.changed() => break End::Shutdown,
            m = stream.next() => match m {
                None => break End::Gone,
                Some(Err(e)) => break classify(e),
                Some(Ok(Message::Text(t))) => {
                    let (reply, waits) = handle_request(&app, &client, &mut subs, t.as_str());
                    // Answer once every ring applied the change.
                    let _ = tokio::time::timeout(
                        Duration::from_secs(5),
                        futures_util::future::join_all(waits),
                    )
                    .await;
                    batch.push(Out::notice(reply));
                    if let Err(e) = write(&mut sink, &mut batch, &mut age, &app, &client, &mut shutdown).await {
                        break e;
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    metrics.invalid_requests.fetch_add(1, Ordering::Relaxed);
                    batch.push(Out::notice(error_json(
                        "binary messages are not accepted: send JSON requests as text",
                    )));
                    if let Err(e) = write(&mut sink, &mut batch, &mut age, &app, &client, &mut shutdown).await {
                        break e;
                    }
                }
                Some(Ok(Message::Close(_))) => break End::Gone,
                // tungstenite answers pings itself.
                Some(Ok(_)) => {}
            },
            n = rx.recv_many(&mut batch, BATCH) => {
                if n == 0 {
                    break End::Gone;
                }
                if let Err(e) = write(&mut sink, &mut batch, &mut age, &app, &client, &mut shutdown).await {
                    break e;
                }
            }
        }
    };
    client.mark_gone();
    app.hub.remove(id);
    drop(rx);
    let (code, reason) = match end {
        End::Gone => {
            drop(slot);
            return;
        }
        End::Slow => (
            1008,
            format!(
                "slow consumer: more than {} messages waiting to be sent",
                app.settings.client_queue
            ),
        ),
        End::TooBig => {
            metrics.closed_too_big.fetch_add(1, Ordering::Relaxed);
            (
                1009,
                format!(
                    "message too big: the limit is {} bytes",
                    app.settings.max_request_bytes
                ),
            )
        }
        End::BadUtf8 => (1007, "invalid UTF-8 in a text message".to_owned()),
        End::Protocol(why) => (1002, truncate(why, 100)),
        End::Shutdown => (1001, "gateway shutting down".to_owned()),
    };
    close(sink, stream, code, reason).await;
    drop(slot);
}

fn truncate(mut s: String, n: usize) -> String {
    if s.len() > n {
        let mut i = n;
        while !s.is_char_boundary(i) {
            i -= 1;
        }
        s.truncate(i);
    }
    s
}

fn classify(e: axum::Error) -> End {
    use tungstenite::error::{CapacityError, Error as WsErr};
    let inner = e.into_inner();
    match inner.downcast_ref::<WsErr>() {
        Some(WsErr::Capacity(CapacityError::MessageTooLong { .. })) => End::TooBig,
        Some(WsErr::Utf8(_)) => End::BadUtf8,
        Some(WsErr::Protocol(p)) => End::Protocol(format!("protocol error: {p}")),
        _ => End::Gone,
    }
}

/// Sends a close frame (waiting at most [`CLOSE_GRACE`] for the socket to
/// take what was queued before it), then waits briefly for the client's
/// close so the connection ends cleanly.
async fn close(mut sink: Sink, mut stream: SplitStream<WebSocket>, code: u16, reason: String) {
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from(reason),
    };
    let sent = tokio::time::timeout(CLOSE_GRACE, sink.send(Message::Close(Some(frame)))).await;
    if !matches!(sent, Ok(Ok(()))) {
        return;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while let Some(m) = stream.next().await {
            if m.is_err() || matches!(m, Ok(Message::Close(_))) {
                break;
            }
        }
    })
    .await;
}

/// Writes the batch (feeds every message, flushes once), giving up when the
/// client is evicted or the gateway stops meanwhile.
async fn write(
    sink: &mut Sink,
    batch: &mut Vec<Out>,
    age: &mut LocalAge,
    app: &App,
    client: &Client,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), End> {
    let metrics = &app.metrics;
    let n = batch.len() as u64;
    let mut bytes = 0u64;
    let now = now_ns();
    for o in batch.iter() {
        bytes += o.text.len() as u64;
        if o.publish_ts > 0 {
            age.record(now - o.publish_ts);
        }
    }
    metrics.age.add(age);
    let io = async {
        for o in batch.drain(..) {
            sink.feed(Message::Text(o.text)).await?;
        }
        sink.flush().await
    };
    let r = tokio::select! {
        biased;
        r = io => r,
        _ = client.evict.notified() => return Err(End::Slow),
        _ = shutdown.changed() => return Err(End::Shutdown),
    };
    batch.clear();
    match r {
        Ok(()) => {
            metrics.messages_sent.fetch_add(n, Ordering::Relaxed);
            metrics.bytes_sent.fetch_add(bytes, Ordering::Relaxed);
            Ok(())
        }
        Err(_) => Err(End::Gone),
    }
}

/// `"id":<value>,` for replies, when the request had an id.
fn id_field(out: &mut String, id: &Option<serde_json::Value>) {
    if let Some(v) = id {
        out.push_str(",\"id\":");
        out.push_str(&v.to_string());
    }
}

fn err_reply(id: &Option<serde_json::Value>, msg: &str) -> String {
    let mut s = String::from("{\"type\":\"error\"");
    id_field(&mut s, id);
    s.push_str(",\"error\":\"");
    json_escape_into(&mut s, msg);
    s.push_str("\"}");
    s
}

fn list_json(out: &mut String, key: &str, items: &[&str]) {
    out.push_str(",\"");
    out.push_str(key);
    out.push_str("\":[");
    for (i, it) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        json_escape_into(out, it);
        out.push('"');
    }
    out.push(']');
}

type Waits = Vec<tokio::sync::oneshot::Receiver<()>>;

/// Applies one request; returns the reply (an error names what was wrong)
/// and what to wait for before sending it.
fn handle_request(
    app: &App,
    client: &Arc<Client>,
    subs: &mut Vec<(Pattern, u8)>,
    text: &str,
) -> (String, Waits) {
    let mut waits = Vec::new();
    let r = handle_inner(app, client, subs, text, &mut waits);
    if r.starts_with("{\"type\":\"error\"") {
        app.metrics.invalid_requests.fetch_add(1, Ordering::Relaxed);
    }
    (r, waits)
}

fn handle_inner(
    app: &App,
    client: &Arc<Client>,
    subs: &mut Vec<(Pattern, u8)>,
    text: &str,
    waits: &mut Waits,
) -> String {
    let req: Request = match serde_json::from_str(text) {
        Ok(r) => r,
        Err(e) => {
            return err_reply(
                &None,
                &format!(
                    "invalid request: {e}; expected {{\"op\": \"subscribe\"|\"unsubscribe\"|\"ping\", \"channels\": [...], \"instruments\": [...], \"id\": ...}}"
                ),
            )
        }
    };
    let id = &req.id;
    if let Some(v) = id {
        if !(v.is_number() || v.is_string()) || v.to_string().len() > 64 {
            return err_reply(
                &None,
                "id: must be a number or a string of at most 62 characters",
            );
        }
    }
    match req.op.as_str() {
        "ping" => {
            let mut s = String::from("{\"type\":\"pong\"");
            id_field(&mut s, id);
            s.push('}');
            return s;
        }
        "subscribe" | "unsubscribe" => {}
        other => {
            return err_reply(
                id,
                &format!(
                    "op: unknown operation {other:?}; expected subscribe, unsubscribe or ping"
                ),
            )
        }
    }
    let subscribe = req.op == "subscribe";
    if req.channels.is_empty() {
        let names: Vec<&str> = CHANNELS.iter().map(|c| c.0).collect();
        return err_reply(
            id,
            &format!("channels: needs at least one of {}", names.join(", ")),
        );
    }
    let mut mask = 0u8;
    for (i, c) in req.channels.iter().enumerate() {
        match channel_bit(c) {
            Some(b) => mask |= b,
            None => {
                return err_reply(
                    id,
                    &format!(
                        "channels[{i}]: unknown channel {c:?}; expected trades, book, bbo or status"
                    ),
                )
            }
        }
    }
    if req.instruments.is_empty() {
        return err_reply(
            id,
            "instruments: needs at least one instrument (exchange:symbol) or pattern (kraken:*)",
        );
    }
    let mut patterns = Vec::new();
    for (i, s) in req.instruments.iter().enumerate() {
        let p = match Pattern::parse(s) {
            Ok(p) => p,
            Err(e) => return err_reply(id, &format!("instruments[{i}]: {e}")),
        };
        if subscribe && !p.is_wild() && app.hub.find_instrument(p.as_str()).is_empty() {
            return err_reply(
                id,
                &format!("instruments[{i}]: unknown instrument {s:?} (see GET /v1/instruments)"),
            );
        }
        if !patterns.contains(&p) {
            patterns.push(p);
        }
    }
    let mut s = String::new();
    if subscribe {
        let new = patterns
            .iter()
            .filter(|p| !subs.iter().any(|(q, _)| q == *p))
            .count();
        if subs.len() + new > MAX_PATTERNS_PER_CLIENT {
            return err_reply(
                id,
                &format!(
                    "instruments: a client may hold at most {MAX_PATTERNS_PER_CLIENT} subscriptions"
                ),
            );
        }
        for p in &patterns {
            match subs.iter_mut().find(|(q, _)| q == p) {
                Some((_, m)) => *m |= mask,
                None => subs.push((p.clone(), mask)),
            }
        }
        *waits = app
            .hub
            .subscribe(client, patterns.iter().map(|p| (p.clone(), mask)).collect());
        s.push_str("{\"type\":\"subscribed\"");
    } else {
        for (p, m) in subs.iter_mut() {
            if patterns.contains(p) {
                *m &= !mask;
            }
        }
        subs.retain(|(_, m)| *m != 0);
        *waits = app.hub.unsubscribe(client.id, patterns.clone(), mask);
        s.push_str("{\"type\":\"unsubscribed\"");
    }
    id_field(&mut s, id);
    list_json(&mut s, "channels", &channel_names(mask));
    let pats: Vec<&str> = patterns.iter().map(|p| p.as_str()).collect();
    list_json(&mut s, "instruments", &pats);
    if subscribe {
        // What the patterns match now (more may appear later).
        let mut matched: Vec<String> = Vec::new();
        for r in app.hub.rings() {
            let insts = r.instruments.read().unwrap_or_else(|e| e.into_inner());
            for i in insts.iter() {
                let n = i.qualified_name();
                if patterns.iter().any(|p| p.matches(&n)) && !matched.contains(&n) {
                    matched.push(n);
                }
            }
        }
        let m: Vec<&str> = matched.iter().map(|x| x.as_str()).collect();
        list_json(&mut s, "matched", &m);
    }
    s.push('}');
    s
}
