//! The hot loop: io_uring completions -> adapter -> books -> ring.

use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, error, info, warn};

use super::metrics::{
    add, conn_state, get, set, PARSE_ERROR_FRAME_TOO_LARGE, PARSE_ERROR_INVALID_UTF8,
    PARSE_ERROR_KINDS,
};
use super::Shared;
use crate::book::{BuilderConfig, Pipeline, SyncState};
use crate::config::ChannelName;
use crate::event::{Event, EventKind, Exchange, StatusCode, NO_INSTRUMENT};
use crate::feed::{Action, BookUpdate, Channel, FeedConfig, FeedError, FrameKind, Sink};
use crate::net::ws::WsError;
use crate::net::{
    CloseReason, ConnId, ConnectOptions, Ctx, EventLoop, Handler, HttpResponse, Message, NetConfig,
    NetError, ReqId, RootSource, TimerId,
};
use crate::ring::books::{BookWriter, SnapshotMeta};
use crate::ring::Writer;
use crate::time::{monotonic_ns, now_ns};

/// Timer tokens: the kind in the top byte, an argument below.
const T_TICK: u64 = 1 << 56;
const T_RECONNECT: u64 = 2 << 56;
const T_FETCH: u64 = 3 << 56;
const T_STOP_DEADLINE: u64 = 4 << 56;
const T_KIND: u64 = 0xff << 56;

const TICK: Duration = Duration::from_millis(100);
/// Binance closes connections after 24 h; reconnect (with a resync the
/// readers see) a little before that instead of being cut mid-stream.
const BINANCE_MAX_CONNECTION_AGE: Duration = Duration::from_secs(23 * 3600 + 30 * 60);
/// A connection that stayed up this long resets the reconnect backoff.
const STABLE_AFTER: Duration = Duration::from_secs(30);

/// Runs the event loop until a stop is requested.
pub(super) fn run(
    shared: Arc<Shared>,
    writer: Writer,
    books: BookWriter,
    ring_ids: Vec<u16>,
) -> anyhow::Result<()> {
    let s = &shared.settings;
    let net = NetConfig {
        sq_entries: s.io_uring.queue_depth,
        sqpoll: s.io_uring.sqpoll,
        sqpoll_cpu: s.io_uring.sqpoll_core,
        busy_poll: s.io_uring.busy_poll,
        provided_buffers: s.io_uring.multishot,
        multishot_recv: s.io_uring.multishot,
        max_message: s.max_frame_bytes,
        // A close we start after a silence timeout goes to a peer that has
        // stopped answering: waiting longer than the timeout for its reply
        // only delays the reconnect.
        close_timeout: s.silence_timeout.min(NetConfig::default().close_timeout),
        roots: match &s.tls_ca_file {
            Some(p) => RootSource::CaFile(p.clone()),
            None => RootSource::System,
        },
        ..NetConfig::default()
    };
    let mut el = EventLoop::new(net)?;
    let f = el.features();
    info!(
        kernel = %f.kernel,
        recv_path = f.recv_path(),
        sqpoll = f.sqpoll,
        sqpoll_error = f.sqpoll_error.as_deref().unwrap_or(""),
        provided_buffers = f.provided_buffers,
        multishot_recv = f.multishot_recv,
        coop_taskrun = f.coop_taskrun,
        busy_poll = s.io_uring.busy_poll,
        "io_uring ready"
    );
    let _ = shared.features.set(vec![
        ("sqpoll", f.sqpoll),
        ("provided_buffers", f.provided_buffers),
        ("multishot_recv", f.multishot_recv),
        ("coop_taskrun", f.coop_taskrun),
        ("fast_poll", f.fast_poll),
        ("busy_poll", s.io_uring.busy_poll),
    ]);
    set(
        &shared.metrics.books,
        if s.channels.contains(&ChannelName::Book) {
            ring_ids.len() as u64
        } else {
            0
        },
    );
    let n = ring_ids.len();
    let mut hot = Hot {
        pipeline: new_pipeline(&shared),
        out: Out {
            writer,
            books,
            shared: shared.clone(),
            ring_ids,
            changed: vec![false; n],
            changed_list: Vec::new(),
            actions: Vec::new(),
            recv_ts: 0,
            publish_ts: 0,
        },
        shared,
        conn: None,
        attempts: 0,
        opened_mono: 0,
        last_ping_mono: 0,
        fetch_inflight: vec![None; n],
        fetch_attempts: vec![0; n],
        closing: false,
        stopping: false,
        rng: (now_ns() as u64) | 1,
        error_log_budget: 100,
        unknown_instrument_before: 0,
    };
    {
        let mut ctx = el.ctx();
        ctx.set_timer(TICK, T_TICK);
        hot.connect(&mut ctx);
    }
    el.run(&mut hot)?;
    let m = &hot.shared.metrics;
    info!(
        messages = get(&m.messages),
        events = get(&m.events),
        reconnects = get(&m.reconnects),
        "collector stopped"
    );
    Ok(())
}

fn new_pipeline(shared: &Shared) -> Pipeline {
    let s = &shared.settings;
    let mut fc = FeedConfig::new(s.instruments.clone());
    fc.max_frame_len = s.max_frame_bytes;
    fc.book_depth = s.book_depth;
    Pipeline::new(s.exchange, fc, BuilderConfig::default())
}

fn channels(s: &crate::config::FeedSettings) -> Vec<Channel> {
    s.channels
        .iter()
        .map(|c| match c {
            ChannelName::Trades => Channel::Trades,
            ChannelName::Book => Channel::Book,
            ChannelName::Bbo => Channel::Bbo,
            ChannelName::Heartbeat => Channel::Heartbeat,
        })
        .collect()
}

/// Where the pipeline's output goes: the ring, the book region, counters.
struct Out {
    writer: Writer,
    books: BookWriter,
    shared: Arc<Shared>,
    /// Feed instrument index -> ring instrument id.
    ring_ids: Vec<u16>,
    changed: Vec<bool>,
    changed_list: Vec<u16>,
    actions: Vec<Action>,
    /// Receive timestamp of the message being processed.
    recv_ts: i64,
    /// Publish timestamp of the message being processed (0: not taken yet).
    publish_ts: i64,
}

impl Out {
    fn begin(&mut self, recv_ts: i64) {
        self.recv_ts = recv_ts;
        self.publish_ts = 0;
    }

    #[inline]
    fn publish(&mut self, ev: &Event) {
        if self.publish_ts == 0 {
            // One timestamp per message: all its events become visible
            // together, and the latency histogram counts messages.
            self.publish_ts = now_ns();
            let lat = self.publish_ts - self.recv_ts;
            if lat >= 0 {
                self.shared.metrics.observe_latency(lat as u64);
            }
        }
        let mut e = *ev;
        e.publish_ts = self.publish_ts;
        let feed_id = ev.instrument;
        if feed_id != NO_INSTRUMENT {
            match self.ring_ids.get(feed_id as usize) {
                Some(&rid) => e.instrument = rid,
                None => return,
            }
        }
        self.writer.publish(&e);
        let m = &self.shared.metrics;
        add(&m.events, 1);
        match e.kind() {
            Some(
                EventKind::BookSet
                | EventKind::BookDelete
                | EventKind::SnapshotBegin
                | EventKind::SnapshotEnd,
            ) => self.mark_changed(feed_id),
            Some(EventKind::Status) => {
                match e.status_code() {
                    Some(StatusCode::Gap) => add(&m.gaps, 1),
                    Some(StatusCode::ChecksumFailed) => add(&m.checksum_failures, 1),
                    Some(StatusCode::ResyncStarted) => add(&m.resyncs, 1),
                    Some(StatusCode::BookCrossed) => add(&m.crossed, 1),
                    Some(StatusCode::SubscribeFailed) => add(&m.subscribe_rejections, 1),
                    _ => {}
                }
                if feed_id != NO_INSTRUMENT {
                    // Validity changes show in the book region too.
                    self.mark_changed(feed_id);
                }
            }
            _ => {}
        }
    }

    fn mark_changed(&mut self, feed_id: u16) {
        if let Some(c) = self.changed.get_mut(feed_id as usize) {
            if !*c {
                *c = true;
                self.changed_list.push(feed_id);
            }
        }
    }

    /// Publishes the top of every book the message changed, stamped with
    /// the ring sequence the snapshot reflects.
    fn flush_books(&mut self, pipeline: &Pipeline, depth: usize) {
        if self.changed_list.is_empty() {
            return;
        }
        let ts = if self.publish_ts != 0 {
            self.publish_ts
        } else {
            now_ns()
        };
        let ring_seq = self.writer.next_seq();
        for &id in &self.changed_list {
            self.changed[id as usize] = false;
            let Some(&rid) = self.ring_ids.get(id as usize) else {
                continue;
            };
            let Some(st) = pipeline.books.get(id) else {
                continue;
            };
            let meta = SnapshotMeta {
                ring_seq,
                exch_seq: st.last_id.unwrap_or(0),
                ts,
                valid: st.state == SyncState::Valid,
            };
            self.books.publish(
                rid,
                meta,
                st.book.bids.iter().take(depth),
                st.book.asks.iter().take(depth),
            );
        }
        self.changed_list.clear();
    }
}

impl Sink for Out {
    #[inline]
    fn event(&mut self, ev: &Event) {
        self.publish(ev);
    }

    #[inline]
    fn book(&mut self, _update: &BookUpdate, events: &[Event]) {
        for ev in events {
            self.publish(ev);
        }
    }

    fn action(&mut self, action: Action) {
        self.actions.push(action);
    }
}

struct Hot {
    shared: Arc<Shared>,
    pipeline: Pipeline,
    out: Out,
    conn: Option<ConnId>,
    /// Consecutive connection attempts without a stable connection.
    attempts: u32,
    opened_mono: i64,
    last_ping_mono: i64,
    /// REST snapshot request in flight per feed instrument.
    fetch_inflight: Vec<Option<ReqId>>,
    fetch_attempts: Vec<u32>,
    /// We closed the current connection and wait for it to end: no more
    /// silence checks (each would count and close again), pings or
    /// planned reconnects on it.
    closing: bool,
    stopping: bool,
    rng: u64,
    /// Parse errors logged at warn level before going quiet (all are counted).
    error_log_budget: u32,
    /// Unknown-instrument messages counted by the pipelines of earlier
    /// connections (each connection starts a new pipeline), so that the
    /// Prometheus counter never goes down.
    unknown_instrument_before: u64,
}

impl Hot {
    fn status(&mut self, code: StatusCode, seq: u64) {
        let mut ev = Event::status(self.shared.settings.exchange, NO_INSTRUMENT, code);
        let now = now_ns();
        ev.recv_ts = now;
        ev.seq = seq;
        self.out.begin(now);
        // Not an exchange message: no receive -> publish latency sample.
        self.out.publish_ts = now;
        self.out.publish(&ev);
    }

    fn connect(&mut self, ctx: &mut Ctx<'_>) {
        let m = &self.shared.metrics;
        set(&m.connection_state, conn_state::CONNECTING);
        let url = self.shared.settings.endpoint.clone();
        match ctx.connect_ws(&url, ConnectOptions::default()) {
            Ok(c) => {
                info!(%url, attempt = self.attempts + 1, "connecting");
                self.conn = Some(c);
            }
            Err(e) => {
                warn!(%url, error = %e, "cannot connect");
                self.schedule_reconnect(ctx);
            }
        }
    }

    /// Capped exponential backoff with jitter. The exchanges' connection
    /// limits (Binance: 300 new connections per 5 min per IP; Kraken and
    /// Coinbase rate-limit connection attempts per IP) are far above what
    /// one collector's backoff can reach.
    fn schedule_reconnect(&mut self, ctx: &mut Ctx<'_>) {
        set(
            &self.shared.metrics.connection_state,
            conn_state::DISCONNECTED,
        );
        if self.stopping {
            ctx.stop();
            return;
        }
        let s = &self.shared.settings;
        let base = s.backoff_initial.as_millis() as u64;
        let exp = base.saturating_mul(1u64 << self.attempts.min(20));
        let capped = exp.min(s.backoff_max.as_millis() as u64);
        let jitter_span = capped * s.jitter_percent as u64 / 100;
        let jitter = if jitter_span > 0 {
            self.next_rand() % (jitter_span + 1)
        } else {
            0
        };
        let delay = Duration::from_millis(capped + jitter);
        self.attempts = self.attempts.saturating_add(1);
        info!(
            delay_ms = delay.as_millis() as u64,
            "reconnecting after backoff"
        );
        ctx.set_timer(delay, T_RECONNECT);
    }

    /// Starts closing the current connection; [`Handler::on_close`]
    /// reconnects once it is gone.
    fn close_conn(&mut self, ctx: &mut Ctx<'_>, reason: &str) {
        if let Some(c) = self.conn {
            self.closing = true;
            set(&self.shared.metrics.connection_state, conn_state::CLOSING);
            ctx.close(c, 1000, reason);
        }
    }

    fn next_rand(&mut self) -> u64 {
        // xorshift64*: jitter needs spread, not cryptographic quality.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Everything that follows processing one message or REST answer.
    fn after_input(&mut self, ctx: &mut Ctx<'_>, kind: Option<FrameKind>) {
        let depth = self.shared.settings.book_depth as usize;
        self.out.flush_books(&self.pipeline, depth);
        let actions = std::mem::take(&mut self.out.actions);
        for a in actions {
            match a {
                Action::Send(text) => {
                    if let Some(c) = self.conn {
                        ctx.send_text(c, &text);
                    }
                }
                Action::FetchSnapshot { instrument, path } => self.fetch(ctx, instrument, &path),
                Action::Reconnect => {
                    if self.conn.is_some() && !self.closing {
                        warn!("the feed asked for a reconnect");
                        self.close_conn(ctx, "resync");
                    }
                }
            }
        }
        if self.shared.settings.exchange == Exchange::Binance && kind == Some(FrameKind::BookUpdate)
        {
            // Binance's procedure: buffer diffs, then fetch the snapshot.
            for id in 0..self.fetch_inflight.len() as u16 {
                let awaiting = self
                    .pipeline
                    .books
                    .get(id)
                    .is_some_and(|b| b.state == SyncState::AwaitingSnapshot);
                if awaiting && self.fetch_inflight[id as usize].is_none() {
                    for a in self.pipeline.feed.resync_actions(id) {
                        if let Action::FetchSnapshot { instrument, path } = a {
                            self.fetch(ctx, instrument, &path);
                        }
                    }
                }
            }
        }
        self.update_book_gauges();
    }

    fn update_book_gauges(&self) {
        if get(&self.shared.metrics.books) == 0 {
            return;
        }
        let valid = (0..self.out.ring_ids.len() as u16)
            .filter(|&id| {
                self.pipeline
                    .books
                    .get(id)
                    .is_some_and(|b| b.state == SyncState::Valid)
            })
            .count();
        set(&self.shared.metrics.books_valid, valid as u64);
    }

    fn fetch(&mut self, ctx: &mut Ctx<'_>, instrument: u16, path: &str) {
        let Some(slot) = self.fetch_inflight.get(instrument as usize) else {
            return;
        };
        if slot.is_some() {
            return;
        }
        let url = format!(
            "{}{}",
            self.shared.settings.rest_endpoint.trim_end_matches('/'),
            path
        );
        add(&self.shared.metrics.snapshot_fetches, 1);
        match ctx.http_get(&url, ConnectOptions::default()) {
            Ok(req) => {
                debug!(%url, "fetching book snapshot");
                self.fetch_inflight[instrument as usize] = Some(req);
            }
            Err(e) => {
                add(&self.shared.metrics.snapshot_fetch_failures, 1);
                warn!(%url, error = %e, "cannot fetch book snapshot");
                self.retry_fetch(ctx, instrument);
            }
        }
    }

    fn retry_fetch(&mut self, ctx: &mut Ctx<'_>, instrument: u16) {
        let a = &mut self.fetch_attempts[instrument as usize];
        *a = a.saturating_add(1);
        let delay = Duration::from_millis((250u64 << (*a).min(7)).min(30_000));
        ctx.set_timer(delay, T_FETCH | instrument as u64);
    }

    fn count_error(&mut self, e: &FeedError, len: usize) {
        let i = match e {
            FeedError::FrameTooLarge { .. } => 0,
            FeedError::Json { .. } => 1,
            FeedError::MissingField { .. } => 2,
            FeedError::DuplicateField { .. } => 3,
            FeedError::BadValue { .. } => 4,
            _ => 5,
        };
        add(&self.shared.metrics.parse_errors[i], 1);
        if self.error_log_budget > 0 {
            self.error_log_budget -= 1;
            warn!(kind = PARSE_ERROR_KINDS[i], bytes = len, error = %e, "message refused (counted, skipped)");
            if self.error_log_budget == 0 {
                warn!("further parse errors are counted in tickring_collector_parse_errors_total but not logged");
            }
        }
    }

    fn begin_stop(&mut self, ctx: &mut Ctx<'_>) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        info!("stopping: unsubscribing and closing");
        self.status(StatusCode::WriterStopping, 0);
        match self.conn {
            Some(c) => {
                for msg in self
                    .pipeline
                    .feed
                    .unsubscribe_messages(&channels(&self.shared.settings))
                {
                    ctx.send_text(c, &msg);
                }
                ctx.close(c, 1000, "collector stopping");
                // The peer has this long to answer the close.
                ctx.set_timer(Duration::from_millis(500), T_STOP_DEADLINE);
            }
            None => ctx.stop(),
        }
    }

    /// Marks every book invalid in the book region (the connection is gone,
    /// so they are no longer maintained).
    fn invalidate_books(&mut self) {
        let ts = now_ns();
        let ring_seq = self.out.writer.next_seq();
        let depth = self.shared.settings.book_depth as usize;
        for id in 0..self.out.ring_ids.len() as u16 {
            if let Some(st) = self.pipeline.books.get(id) {
                let meta = SnapshotMeta {
                    ring_seq,
                    exch_seq: st.last_id.unwrap_or(0),
                    ts,
                    valid: false,
                };
                self.out.books.publish(
                    self.out.ring_ids[id as usize],
                    meta,
                    st.book.bids.iter().take(depth),
                    st.book.asks.iter().take(depth),
                );
            }
        }
        set(&self.shared.metrics.books_valid, 0);
    }
}

impl Handler for Hot {
    fn on_open(&mut self, ctx: &mut Ctx<'_>, conn: ConnId) {
        let shared = self.shared.clone();
        let m = &shared.metrics;
        set(&m.connection_state, conn_state::OPEN);
        self.closing = false;
        self.opened_mono = monotonic_ns();
        set(&m.last_message_mono_ns, self.opened_mono as u64);
        info!(endpoint = %self.shared.settings.endpoint, "connected; subscribing");
        self.status(StatusCode::Connected, get(&m.reconnects));
        for msg in self
            .pipeline
            .feed
            .subscribe_messages(&channels(&self.shared.settings))
        {
            debug!(%msg, "subscribe");
            ctx.send_text(conn, &msg);
        }
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_>, _conn: ConnId, msg: Message<'_>) {
        let shared = self.shared.clone();
        let m = &shared.metrics;
        add(&m.messages, 1);
        add(&m.bytes, msg.payload.len() as u64);
        add(&m.progress, 1);
        set(&m.last_message_mono_ns, monotonic_ns() as u64);
        self.out.begin(msg.recv_ts);
        let kind = match self
            .pipeline
            .on_frame(msg.payload, msg.recv_ts, &mut self.out)
        {
            Ok(info) => {
                match info.kind {
                    FrameKind::Unknown => add(&m.unknown_messages, 1),
                    FrameKind::Rejected => {
                        // Counted in `Out::publish` from the SubscribeFailed
                        // status event every adapter emits with it.
                        error!(
                            message = %String::from_utf8_lossy(&msg.payload[..msg.payload.len().min(300)]),
                            "the exchange refused a request"
                        );
                    }
                    _ => {}
                }
                if get(&m.connection_state) == conn_state::OPEN
                    && !matches!(info.kind, FrameKind::Rejected | FrameKind::Unknown)
                {
                    set(&m.connection_state, conn_state::SUBSCRIBED);
                }
                Some(info.kind)
            }
            Err(e) => {
                self.count_error(&e, msg.payload.len());
                None
            }
        };
        set(
            &m.unknown_instrument,
            self.unknown_instrument_before + self.pipeline.feed.stats().unknown_instrument,
        );
        self.after_input(ctx, kind);
    }

    fn on_pong(&mut self, _ctx: &mut Ctx<'_>, _conn: ConnId, _payload: &[u8], _recv_ts: i64) {
        set(
            &self.shared.metrics.last_message_mono_ns,
            monotonic_ns() as u64,
        );
    }

    fn on_close(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, reason: CloseReason) {
        if self.conn != Some(conn) {
            return;
        }
        self.conn = None;
        self.closing = false;
        let shared = self.shared.clone();
        let m = &shared.metrics;
        // A message the WebSocket layer refused (it fails the connection,
        // RFC 6455 7.1.7) is bad input like one the parser refuses: count it.
        if let CloseReason::Error(NetError::Ws { error, .. }) = &reason {
            let kind = match error {
                WsError::MessageTooBig { .. } => Some(PARSE_ERROR_FRAME_TOO_LARGE),
                WsError::InvalidUtf8 { .. } => Some(PARSE_ERROR_INVALID_UTF8),
                _ => None,
            };
            if let Some(i) = kind {
                add(&m.parse_errors[i], 1);
            }
        }
        let was_up = self.opened_mono != 0;
        if was_up {
            let up = Duration::from_nanos((monotonic_ns() - self.opened_mono) as u64);
            if up >= STABLE_AFTER {
                self.attempts = 0;
            }
            match &reason {
                CloseReason::Error(e) => warn!(error = %e, up_s = up.as_secs(), "connection lost"),
                other => info!(reason = ?other, up_s = up.as_secs(), "connection closed"),
            }
            self.status(StatusCode::Disconnected, get(&m.reconnects));
            self.invalidate_books();
        } else if let CloseReason::Error(e) = &reason {
            warn!(error = %e, "connection failed");
        }
        self.opened_mono = 0;
        // Per-connection state (sequence numbers, books, buffered diffs)
        // starts over; books come back from the new connection's snapshots.
        self.unknown_instrument_before += self.pipeline.feed.stats().unknown_instrument;
        self.pipeline = new_pipeline(&self.shared);
        self.fetch_inflight.iter_mut().for_each(|f| *f = None);
        if self.stopping {
            ctx.stop();
            return;
        }
        add(&m.reconnects, 1);
        self.schedule_reconnect(ctx);
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_>, _timer: TimerId, token: u64) {
        match token & T_KIND {
            T_TICK => {
                add(&self.shared.metrics.progress, 1);
                if super::stop_requested() {
                    self.begin_stop(ctx);
                }
                if let (Some(c), false, false) = (self.conn, self.stopping, self.closing) {
                    if self.opened_mono != 0 {
                        let now = monotonic_ns();
                        let shared = self.shared.clone();
                        let s = &shared.settings;
                        let silent = now - get(&shared.metrics.last_message_mono_ns) as i64;
                        if silent > s.silence_timeout.as_nanos() as i64 {
                            add(&shared.metrics.silence_timeouts, 1);
                            warn!(
                                silent_ms = silent / 1_000_000,
                                "the exchange went silent; reconnecting"
                            );
                            self.close_conn(ctx, "silence timeout");
                        } else if now - self.last_ping_mono
                            > (s.silence_timeout / 3).as_nanos() as i64
                        {
                            // Our own ping keeps liveness independent of
                            // market activity and of exchange heartbeats.
                            self.last_ping_mono = now;
                            ctx.send_ping(c, b"tickring");
                        }
                        if s.exchange == Exchange::Binance
                            && !self.closing
                            && now - self.opened_mono > BINANCE_MAX_CONNECTION_AGE.as_nanos() as i64
                        {
                            info!("reconnecting before Binance's 24 h connection limit");
                            self.close_conn(ctx, "planned reconnect");
                        }
                    }
                }
                ctx.set_timer(TICK, T_TICK);
            }
            T_RECONNECT if !self.stopping => self.connect(ctx),
            T_FETCH => {
                let id = (token & !T_KIND) as u16;
                if self.conn.is_some() && !self.stopping {
                    for a in self.pipeline.feed.resync_actions(id) {
                        if let Action::FetchSnapshot { instrument, path } = a {
                            self.fetch(ctx, instrument, &path);
                        }
                    }
                }
            }
            T_STOP_DEADLINE => ctx.stop(),
            _ => {}
        }
    }

    fn on_http_response(
        &mut self,
        ctx: &mut Ctx<'_>,
        req: ReqId,
        result: Result<HttpResponse<'_>, NetError>,
    ) {
        let Some(id) = self.fetch_inflight.iter().position(|f| *f == Some(req)) else {
            return; // from a previous connection
        };
        self.fetch_inflight[id] = None;
        let id = id as u16;
        match result {
            Ok(resp) if resp.status == 200 => {
                self.fetch_attempts[id as usize] = 0;
                self.out.begin(resp.recv_ts);
                let kind =
                    match self
                        .pipeline
                        .on_rest_snapshot(id, resp.body, resp.recv_ts, &mut self.out)
                    {
                        Ok(info) => Some(info.kind),
                        Err(e) => {
                            add(&self.shared.metrics.snapshot_fetch_failures, 1);
                            self.count_error(&e, resp.body.len());
                            self.retry_fetch(ctx, id);
                            None
                        }
                    };
                self.after_input(ctx, kind);
            }
            Ok(resp) => {
                add(&self.shared.metrics.snapshot_fetch_failures, 1);
                warn!(status = resp.status, "book snapshot request refused");
                self.retry_fetch(ctx, id);
            }
            Err(e) => {
                add(&self.shared.metrics.snapshot_fetch_failures, 1);
                warn!(error = %e, "book snapshot request failed");
                self.retry_fetch(ctx, id);
            }
        }
    }
}
