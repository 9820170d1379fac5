//! One-shot HTTP(S) GETs on the io_uring loop (the Binance depth snapshot
//! path), and timers.

mod net_support;

use std::io::Write;
use std::sync::mpsc;

use net_support::*;
use tickring::net::{ConnectOptions, Ctx, EventLoop, NetConfig, NetError, RunExit};
use tungstenite::Message as TMsg;

const SNAPSHOT: &str = r#"{"lastUpdateId":1027024,"bids":[["4.00000000","431.00000000"]],"asks":[["4.00000200","12.00000000"]]}"#;

fn serve_once(
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    response: Vec<u8>,
) -> (u16, std::thread::JoinHandle<Result<(), String>>) {
    spawn_raw(tls, move |mut s| {
        let req = read_request(&mut s)?;
        if !req.starts_with("GET /api/v3/depth?symbol=BTCUSDT&limit=1000 HTTP/1.1\r\n") {
            return Err(format!("request line: {req:?}"));
        }
        if !req.contains("\r\nHost: localhost:") || !req.contains("\r\nConnection: close\r\n") {
            return Err(format!("headers: {req:?}"));
        }
        s.write_all(&response).map_err(|e| e.to_string())?;
        s.flush().map_err(|e| e.to_string())?;
        Ok(())
    })
}

fn content_length(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn chunked(body: &str) -> Vec<u8> {
    let mut r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for c in body.as_bytes().chunks(7) {
        r.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        r.extend_from_slice(c);
        r.extend_from_slice(b"\r\n");
    }
    r.extend_from_slice(b"0\r\n\r\n");
    r
}

fn get_over_tls_content_length_and_chunked(base: NetConfig) {
    let pki = Pki::new(&["localhost"]);
    for (name, resp) in [
        ("content-length", content_length(SNAPSHOT)),
        ("chunked", chunked(SNAPSHOT)),
    ] {
        let (port, srv) = serve_once(Some(pki.server.clone()), resp);
        let r = run_get(
            pki.config(base.clone()),
            &format!("https://localhost:{port}/api/v3/depth?symbol=BTCUSDT&limit=1000"),
        );
        join(srv);
        let (status, body) = r.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(status, 200, "{name}");
        assert_eq!(body, SNAPSHOT.as_bytes(), "{name}");
    }
}

fn get_plain_http_large_body_and_until_close(base: NetConfig) {
    let big: String = (0..3_000_000)
        .map(|i| (b'0' + (i % 10) as u8) as char)
        .collect();
    let (port, srv) = serve_once(None, content_length(&big));
    let r = run_get(
        base.clone(),
        &format!("http://localhost:{port}/api/v3/depth?symbol=BTCUSDT&limit=1000"),
    );
    join(srv);
    assert_eq!(r.unwrap().1, big.as_bytes());
    // No length, no chunking: the body runs to EOF.
    let (port, srv) = serve_once(
        None,
        format!("HTTP/1.1 200 OK\r\n\r\n{SNAPSHOT}").into_bytes(),
    );
    let r = run_get(
        base,
        &format!("http://localhost:{port}/api/v3/depth?symbol=BTCUSDT&limit=1000"),
    );
    join(srv);
    assert_eq!(r.unwrap().1, SNAPSHOT.as_bytes());
}

fn get_errors_are_named(base: NetConfig) {
    // Over the body limit.
    let (port, srv) = serve_once(None, content_length(SNAPSHOT));
    let cfg = NetConfig {
        max_http_body: 10,
        ..base.clone()
    };
    let r = run_get(
        cfg,
        &format!("http://localhost:{port}/api/v3/depth?symbol=BTCUSDT&limit=1000"),
    );
    join(srv);
    match r {
        Err(e @ NetError::Http { .. }) => {
            assert!(e.to_string().contains("limit of 10 bytes"), "{e}")
        }
        r => panic!("{r:?}"),
    }
    // Truncated: the server promises more than it sends.
    let (port, srv) = serve_once(
        None,
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort".to_vec(),
    );
    let r = run_get(
        base,
        &format!("http://localhost:{port}/api/v3/depth?symbol=BTCUSDT&limit=1000"),
    );
    join(srv);
    match r {
        Err(e @ NetError::Http { .. }) => assert!(e.to_string().contains("5 of 100"), "{e}"),
        r => panic!("{r:?}"),
    }
}

/// The GET does not block the loop: WebSocket messages keep flowing while
/// the HTTP server holds its answer back until the client proved (over the
/// WebSocket) that it received them.
fn get_runs_beside_a_websocket_without_blocking_it(base: NetConfig) {
    let (tx, rx) = mpsc::channel::<()>();
    let (http_port, http) = spawn_raw(None, move |mut s| {
        read_request(&mut s)?;
        rx.recv_timeout(TEST_TIMEOUT)
            .map_err(|e| format!("no go-ahead: {e}"))?;
        s.write_all(&content_length(SNAPSHOT))
            .map_err(|e| e.to_string())
    });
    let (ws_port, ws) = spawn_ws(None, move |ws| {
        for i in 0..3 {
            ws.send(TMsg::text(format!("m{i}")))
                .map_err(|e| e.to_string())?;
        }
        match ws.read().map_err(|e| e.to_string())? {
            TMsg::Text(t) if t.as_str() == "got 3" => {}
            m => return Err(format!("{m:?}")),
        }
        tx.send(()).map_err(|e| e.to_string())?;
        loop {
            match ws.read() {
                Ok(_) => continue,
                Err(tungstenite::Error::ConnectionClosed) => return Ok(()),
                Err(e) => return Err(e.to_string()),
            }
        }
    });
    let mut ev = EventLoop::new(base).unwrap();
    let mut n = 0;
    let mut rec = Rec {
        evs: Vec::new(),
        react: |ctx: &mut Ctx<'_>, e: &Ev| match e {
            Ev::Open(_) => {
                ctx.http_get(
                    &format!("http://localhost:{http_port}/api/v3/depth"),
                    ConnectOptions::default(),
                )
                .unwrap();
            }
            Ev::Msg { conn, .. } => {
                n += 1;
                if n == 3 {
                    ctx.send_text(*conn, "got 3");
                }
            }
            Ev::Http(..) => ctx.stop(),
            _ => {}
        },
        stop_on_end: false,
    };
    {
        let mut ctx = ev.ctx();
        ctx.connect_ws(
            &format!("ws://127.0.0.1:{ws_port}/"),
            ConnectOptions::default(),
        )
        .unwrap();
        ctx.set_timer(TEST_TIMEOUT, SAFETY_TOKEN);
    }
    assert_eq!(ev.run(&mut rec).unwrap(), RunExit::Stopped);
    drop(ev); // closes the WebSocket; the server sees EOF
    join(http);
    let _ = ws.join();
    let order: Vec<String> = rec
        .evs
        .iter()
        .filter_map(|e| match e {
            Ev::Msg { data, .. } => Some(String::from_utf8(data.clone()).unwrap()),
            Ev::Http(_, Ok((s, _))) => Some(format!("http {s}")),
            Ev::Http(_, Err(e)) => Some(format!("http error {e}")),
            _ => None,
        })
        .collect();
    assert_eq!(order, ["m0", "m1", "m2", "http 200"]);
}

fn timers_fire_in_order_and_cancelled_ones_do_not(base: NetConfig) {
    use std::time::Duration;
    let mut ev = EventLoop::new(base).unwrap();
    let cancelled;
    {
        let mut ctx = ev.ctx();
        ctx.set_timer(Duration::from_millis(30), 3);
        ctx.set_timer(Duration::from_millis(10), 1);
        cancelled = ctx.set_timer(Duration::from_millis(15), 99);
        ctx.set_timer(Duration::from_millis(20), 2);
        ctx.set_timer(Duration::ZERO, 0);
        ctx.cancel_timer(cancelled);
    }
    let mut rec = Rec {
        evs: Vec::new(),
        react: |ctx: &mut Ctx<'_>, e: &Ev| {
            // A timer armed from a callback fires too.
            if let Ev::Timer(3) = e {
                ctx.set_timer(Duration::from_millis(1), 4);
            }
        },
        stop_on_end: false,
    };
    // With nothing else armed the loop runs dry and returns Idle.
    assert_eq!(ev.run(&mut rec).unwrap(), RunExit::Idle);
    let fired: Vec<u64> = rec
        .evs
        .iter()
        .filter_map(|e| match e {
            Ev::Timer(t) => Some(*t),
            _ => None,
        })
        .collect();
    assert_eq!(fired, [0, 1, 2, 3, 4]);
}

macro_rules! on_all_paths {
    ($($name:ident),* $(,)?) => {
        mod default_path {
            $(#[test] fn $name() { super::$name(tickring::net::NetConfig::default()); })*
        }
        mod plain_path {
            $(#[test] fn $name() { super::$name(tickring::net::NetConfig::default().plain()); })*
        }
    };
}

on_all_paths!(
    get_over_tls_content_length_and_chunked,
    get_plain_http_large_body_and_until_close,
    get_errors_are_named,
    get_runs_beside_a_websocket_without_blocking_it,
    timers_fire_in_order_and_cancelled_ones_do_not,
);

#[test]
fn get_with_a_ws_url_is_refused_at_once() {
    let mut ev = EventLoop::new(NetConfig::default().plain()).unwrap();
    let mut ctx = ev.ctx();
    assert!(matches!(
        ctx.http_get("ws://localhost/", ConnectOptions::default()),
        Err(NetError::Url(_))
    ));
    assert!(matches!(
        ctx.connect_ws("https://localhost/", ConnectOptions::default()),
        Err(NetError::Url(_))
    ));
}
