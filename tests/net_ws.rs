//! The io_uring WebSocket client against tungstenite servers on 127.0.0.1,
//! on every receive path (`configs()`: best available and forced plain).

mod net_support;

use net_support::*;
use std::io::{Read, Write};
use tickring::net::ws::{accept_key, apply_mask};
use tickring::net::{CloseReason, Initiator, NetConfig, NetError};
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::CloseFrame;
use tungstenite::Message as TMsg;

const SIZES: [usize; 6] = [0, 125, 126, 65535, 65536, 1 << 20];

fn payload(n: usize) -> String {
    (0..n).map(|i| (b'a' + (i % 26) as u8) as char).collect()
}

fn server_close(ws: &mut Ws) -> Result<(), String> {
    ws.close(Some(CloseFrame {
        code: 1000.into(),
        reason: "done".into(),
    }))
    .map_err(|e| e.to_string())?;
    // Drain until the client's close answer completes the handshake.
    loop {
        match ws.read() {
            Ok(_) => continue,
            Err(tungstenite::Error::ConnectionClosed) => return Ok(()),
            Err(e) => return Err(format!("after close: {e}")),
        }
    }
}

fn receives_text_frames_of_boundary_sizes(cfg: NetConfig) {
    let (port, srv) = spawn_ws(None, |ws| {
        for n in SIZES {
            ws.send(TMsg::text(payload(n))).map_err(|e| e.to_string())?;
        }
        server_close(ws)
    });
    let evs = run_ws(cfg, &format!("ws://127.0.0.1:{port}/feed"), |_, _| {});
    join(srv);
    let got = messages(&evs);
    assert_eq!(
        got.len(),
        SIZES.len(),
        "{:?}",
        evs.iter()
            .map(|e| format!("{e:?}").len())
            .collect::<Vec<_>>()
    );
    for (n, (text, data)) in SIZES.iter().zip(got) {
        assert!(text);
        assert_eq!(data, payload(*n).as_bytes(), "size {n}");
    }
    assert!(matches!(evs[0], Ev::Open(_)));
    match close_reason(&evs) {
        CloseReason::Clean {
            initiator: Initiator::Peer,
            code: Some(1000),
            reason,
        } => assert_eq!(reason, "done"),
        r => panic!("unexpected close {r:?}"),
    }
    // recv_ts is CLOCK_REALTIME ns, taken when the completion was reaped.
    let now = tickring::time::now_ns();
    for e in &evs {
        if let Ev::Msg { ts, .. } = e {
            assert!(*ts > 1_600_000_000_000_000_000 && *ts <= now);
        }
    }
}

fn reassembles_fragmented_messages(cfg: NetConfig) {
    let (port, srv) = spawn_ws(None, |ws| {
        let big = payload(200_000);
        let parts = [&big[..10], &big[10..70_000], &big[70_000..]];
        ws.write(TMsg::Frame(Frame::message(
            parts[0].to_string(),
            OpCode::Data(Data::Text),
            false,
        )))
        .map_err(|e| e.to_string())?;
        ws.write(TMsg::Frame(Frame::ping(b"mid".to_vec())))
            .map_err(|e| e.to_string())?;
        ws.write(TMsg::Frame(Frame::message(
            parts[1].to_string(),
            OpCode::Data(Data::Continue),
            false,
        )))
        .map_err(|e| e.to_string())?;
        ws.write(TMsg::Frame(Frame::message(
            parts[2].to_string(),
            OpCode::Data(Data::Continue),
            true,
        )))
        .map_err(|e| e.to_string())?;
        ws.write(TMsg::Frame(Frame::message(
            vec![1u8, 2],
            OpCode::Data(Data::Binary),
            false,
        )))
        .map_err(|e| e.to_string())?;
        ws.write(TMsg::Frame(Frame::message(
            vec![3u8],
            OpCode::Data(Data::Continue),
            true,
        )))
        .map_err(|e| e.to_string())?;
        ws.flush().map_err(|e| e.to_string())?;
        // The client answers the ping sent between fragments.
        match ws.read().map_err(|e| e.to_string())? {
            TMsg::Pong(p) if &p[..] == b"mid" => {}
            m => return Err(format!("expected pong 'mid', got {m:?}")),
        }
        server_close(ws)
    });
    let evs = run_ws(cfg, &format!("ws://127.0.0.1:{port}/"), |_, _| {});
    join(srv);
    let got = messages(&evs);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0], (true, payload(200_000).into_bytes()));
    assert_eq!(got[1], (false, vec![1, 2, 3]));
}

fn answers_server_ping_and_reports_pongs(cfg: NetConfig) {
    let (port, srv) = spawn_ws(None, |ws| {
        ws.send(TMsg::Ping(b"hb-1".to_vec().into()))
            .map_err(|e| e.to_string())?;
        // Both the client's ping (tungstenite answers it itself) and the
        // client's pong for hb-1 must arrive, in either order.
        let (mut got_pong, mut got_ping) = (false, false);
        while !(got_pong && got_ping) {
            match ws.read().map_err(|e| e.to_string())? {
                TMsg::Pong(p) if &p[..] == b"hb-1" => got_pong = true,
                TMsg::Ping(p) if &p[..] == b"client-ping" => got_ping = true,
                m => return Err(format!("expected pong hb-1 / ping, got {m:?}")),
            }
        }
        ws.send(TMsg::text("pong ok")).map_err(|e| e.to_string())?;
        server_close(ws)
    });
    let evs = run_ws(cfg, &format!("ws://127.0.0.1:{port}/"), |ctx, ev| {
        if let Ev::Open(c) = ev {
            ctx.send_ping(*c, b"client-ping");
        }
    });
    join(srv);
    assert_eq!(messages(&evs), vec![(true, b"pong ok".to_vec())]);
    assert!(
        evs.iter()
            .any(|e| matches!(e, Ev::Pong(p) if p == b"client-ping")),
        "{evs:?}"
    );
}

fn client_initiated_close(cfg: NetConfig) {
    let (port, srv) = spawn_ws(None, |ws| {
        match ws.read().map_err(|e| e.to_string())? {
            TMsg::Text(t) if t.as_str() == "hello" => {}
            m => return Err(format!("expected hello, got {m:?}")),
        }
        ws.send(TMsg::text("echo hello"))
            .map_err(|e| e.to_string())?;
        match ws.read().map_err(|e| e.to_string())? {
            TMsg::Close(Some(f)) if u16::from(f.code) == 1000 && f.reason.as_str() == "bye" => {}
            m => return Err(format!("expected close 1000 bye, got {m:?}")),
        }
        // tungstenite queued the close reply; flush it.
        match ws.flush() {
            Ok(()) | Err(tungstenite::Error::ConnectionClosed) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    });
    let evs = run_ws(
        cfg,
        &format!("ws://127.0.0.1:{port}/"),
        |ctx, ev| match ev {
            Ev::Open(c) => ctx.send_text(*c, "hello"),
            Ev::Msg { conn, .. } => ctx.close(*conn, 1000, "bye"),
            _ => {}
        },
    );
    join(srv);
    assert_eq!(messages(&evs), vec![(true, b"echo hello".to_vec())]);
    match close_reason(&evs) {
        CloseReason::Clean {
            initiator: Initiator::Local,
            code: Some(1000),
            ..
        } => {}
        r => panic!("unexpected close {r:?}"),
    }
}

fn client_frames_are_masked(cfg: NetConfig) {
    let (port, srv) = spawn_ws(None, |ws| {
        // Read the client's frame raw, below tungstenite, and check it.
        let s = ws.get_mut();
        let mut hdr = [0u8; 6];
        s.read_exact(&mut hdr).map_err(|e| e.to_string())?;
        if hdr[0] != 0x81 || hdr[1] & 0x80 == 0 {
            return Err(format!(
                "client frame header {:02x?}: not a masked final text frame",
                &hdr[..2]
            ));
        }
        let len = (hdr[1] & 0x7F) as usize;
        let mask = [hdr[2], hdr[3], hdr[4], hdr[5]];
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).map_err(|e| e.to_string())?;
        if body == b"masked payload check" {
            return Err("payload on the wire equals the plaintext".into());
        }
        apply_mask(&mut body, mask);
        if body != b"masked payload check" {
            return Err(format!("unmasked payload {body:?}"));
        }
        // Close from our side (raw, unmasked server frame) and wait for EOF.
        s.write_all(&[0x88, 0x02, 0x03, 0xE8])
            .map_err(|e| e.to_string())?;
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        if rest.len() < 2 || rest[0] != 0x88 || rest[1] & 0x80 == 0 {
            return Err(format!("expected a masked close answer, got {rest:02x?}"));
        }
        Ok(())
    });
    let evs = run_ws(cfg, &format!("ws://127.0.0.1:{port}/"), |ctx, ev| {
        if let Ev::Open(c) = ev {
            ctx.send_text(*c, "masked payload check");
        }
    });
    join(srv);
    assert!(
        matches!(
            close_reason(&evs),
            CloseReason::Clean {
                code: Some(1000),
                ..
            }
        ),
        "{evs:?}"
    );
}

fn oversized_frame_is_an_error_and_closes_1009(cfg: NetConfig) {
    let (port, srv) = spawn_ws(None, |ws| {
        ws.send(TMsg::text("small")).map_err(|e| e.to_string())?;
        ws.send(TMsg::text(payload(5000)))
            .map_err(|e| e.to_string())?;
        match ws.read() {
            Ok(TMsg::Close(Some(f))) if u16::from(f.code) == 1009 => Ok(()),
            Ok(m) => Err(format!("expected close 1009, got {m:?}")),
            Err(e) => Err(format!("expected close 1009: {e}")),
        }
    });
    let cfg = NetConfig {
        max_message: 4096,
        ..cfg
    };
    let evs = run_ws(cfg, &format!("ws://127.0.0.1:{port}/"), |_, _| {});
    join(srv);
    assert_eq!(messages(&evs), vec![(true, b"small".to_vec())]);
    match close_reason(&evs) {
        CloseReason::Error(e @ NetError::Ws { .. }) => {
            let s = e.to_string();
            assert!(s.contains("5000") && s.contains("4096"), "{s}");
        }
        r => panic!("unexpected close {r:?}"),
    }
}

fn garbage_handshakes_are_refused_clearly(cfg: NetConfig) {
    type Answer = fn(&str) -> String;
    let cases: [(&str, Answer); 3] = [
        ("200 OK", |_| {
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".into()
        }),
        ("bad accept", |_| {
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n"
                .into()
        }),
        ("not http", |_| "SSH-2.0-OpenSSH_9.2\r\n\r\n".into()),
    ];
    for (name, answer) in cases {
        let (port, srv) = spawn_raw(None, move |mut s| {
            let req = read_request(&mut s)?;
            s.write_all(answer(&req).as_bytes())
                .map_err(|e| e.to_string())?;
            let _ = s.read_to_end(&mut Vec::new());
            Ok(())
        });
        let evs = run_ws(cfg.clone(), &format!("ws://127.0.0.1:{port}/"), |_, _| {});
        join(srv);
        let msg = match close_reason(&evs) {
            CloseReason::Error(e @ NetError::Handshake { .. }) => e.to_string(),
            r => panic!("{name}: unexpected close {r:?}"),
        };
        let want = match name {
            "200 OK" => "answered 200",
            "bad accept" => "Sec-WebSocket-Accept",
            _ => "status line",
        };
        assert!(msg.contains(want), "{name}: {msg}");
        assert!(!evs.iter().any(|e| matches!(e, Ev::Open(_))), "{name}");
    }
}

fn handshake_accept_of_a_valid_raw_server_works(cfg: NetConfig) {
    // A hand-written server (no tungstenite) that sends two frames in the
    // same TCP segment as the 101 answer: they must not be lost.
    let (port, srv) = spawn_raw(None, |mut s| {
        let req = read_request(&mut s)?;
        let key = req
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .ok_or("no key")?
            .trim()
            .to_string();
        let mut out = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n\r\n",
            accept_key(&key)
        )
        .into_bytes();
        out.extend_from_slice(&[0x81, 0x02, b'h', b'i', 0x88, 0x02, 0x03, 0xE8]);
        s.write_all(&out).map_err(|e| e.to_string())?;
        let _ = s.read_to_end(&mut Vec::new());
        Ok(())
    });
    let evs = run_ws(cfg, &format!("ws://127.0.0.1:{port}/"), |_, _| {});
    join(srv);
    assert_eq!(messages(&evs), vec![(true, b"hi".to_vec())]);
    assert!(matches!(
        close_reason(&evs),
        CloseReason::Clean {
            initiator: Initiator::Peer,
            code: Some(1000),
            ..
        }
    ));
}

fn connection_refused_is_reported(cfg: NetConfig) {
    // Bind then drop: nothing listens on the port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let evs = run_ws(cfg, &format!("ws://127.0.0.1:{port}/"), |_, _| {});
    match close_reason(&evs) {
        CloseReason::Error(e @ NetError::Connect { .. }) => {
            assert!(e.to_string().contains(&port.to_string()), "{e}")
        }
        r => panic!("unexpected close {r:?}"),
    }
}

macro_rules! on_all_paths {
    ($($name:ident),* $(,)?) => {
        mod default_path {
            $(#[test] fn $name() { super::$name(tickring::net::NetConfig::default()); })*
        }
        mod plain_path {
            $(#[test] fn $name() { super::$name(tickring::net::NetConfig::default().plain()); })*
        }
        mod bufring_single_shot_path {
            $(#[test] fn $name() {
                super::$name(tickring::net::NetConfig { multishot_recv: false, ..Default::default() });
            })*
        }
        mod busy_poll_path {
            $(#[test] fn $name() {
                super::$name(tickring::net::NetConfig { busy_poll: true, ..Default::default() });
            })*
        }
    };
}

on_all_paths!(
    receives_text_frames_of_boundary_sizes,
    reassembles_fragmented_messages,
    answers_server_ping_and_reports_pongs,
    client_initiated_close,
    client_frames_are_masked,
    oversized_frame_is_an_error_and_closes_1009,
    garbage_handshakes_are_refused_clearly,
    handshake_accept_of_a_valid_raw_server_works,
    connection_refused_is_reported,
);

#[test]
fn sqpoll_path_receives_frames_when_the_kernel_allows_it() {
    let cfg = NetConfig {
        sqpoll: true,
        sqpoll_idle_ms: 50,
        ..NetConfig::default()
    };
    let ev = tickring::net::EventLoop::new(cfg.clone()).unwrap();
    let f = ev.features().clone();
    drop(ev);
    eprintln!("{f}");
    assert!(f.sqpoll || f.sqpoll_error.is_some(), "{f}");
    receives_text_frames_of_boundary_sizes(cfg);
}

#[test]
fn features_report_the_forced_plain_path() {
    let ev = tickring::net::EventLoop::new(NetConfig::default().plain()).unwrap();
    let f = ev.features();
    eprintln!("{f}");
    assert_eq!(f.recv_path(), "plain");
    assert!(!f.sqpoll && !f.provided_buffers && !f.multishot_recv);
    assert!(f.ops.contains(&"IORING_OP_RECV"));
    let best = tickring::net::EventLoop::new(NetConfig::default()).unwrap();
    eprintln!("{}", best.features());
    if best.features().multishot_recv {
        assert!(best.features().provided_buffers);
    }
}
