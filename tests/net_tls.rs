//! wss:// through rustls driven sans-IO on the io_uring buffers, against a
//! tungstenite + rustls server on 127.0.0.1 with a CA made at test time.

mod net_support;

use net_support::*;
use tickring::net::{CloseReason, Initiator, NetConfig, NetError, RootSource};
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::Frame;
use tungstenite::Message as TMsg;

fn payload(n: usize) -> String {
    (0..n).map(|i| (b'A' + (i % 26) as u8) as char).collect()
}

fn wss_with_test_ca_file_succeeds(base: NetConfig) {
    let pki = Pki::new(&["localhost"]);
    let (port, srv) = spawn_ws(Some(pki.server.clone()), |ws| {
        for n in [0usize, 125, 126, 65535, 65536, 1 << 20] {
            ws.send(TMsg::text(payload(n))).map_err(|e| e.to_string())?;
        }
        ws.write(TMsg::Frame(Frame::message(
            payload(40_000),
            OpCode::Data(Data::Text),
            false,
        )))
        .map_err(|e| e.to_string())?;
        ws.write(TMsg::Frame(Frame::message(
            payload(30_000),
            OpCode::Data(Data::Continue),
            true,
        )))
        .map_err(|e| e.to_string())?;
        ws.flush().map_err(|e| e.to_string())?;
        match ws.read().map_err(|e| e.to_string())? {
            TMsg::Text(t) if t.as_str() == "all received" => {}
            m => return Err(format!("expected 'all received', got {m:?}")),
        }
        // Expect the client's close and answer it.
        loop {
            match ws.read() {
                Ok(TMsg::Close(_)) => continue,
                Ok(m) => return Err(format!("unexpected {m:?}")),
                Err(tungstenite::Error::ConnectionClosed) => return Ok(()),
                Err(e) => return Err(e.to_string()),
            }
        }
    });
    let mut n = 0;
    let evs = run_ws(
        pki.config(base),
        &format!("wss://localhost:{port}/stream"),
        |ctx, ev| {
            if let Ev::Msg { conn, .. } = ev {
                n += 1;
                if n == 7 {
                    ctx.send_text(*conn, "all received");
                    ctx.close(*conn, 1000, "done");
                }
            }
        },
    );
    join(srv);
    let got = messages(&evs);
    let want: Vec<usize> = vec![0, 125, 126, 65535, 65536, 1 << 20, 70_000];
    assert_eq!(got.len(), want.len(), "{:?}", close_reason(&evs));
    for ((text, data), n) in got.iter().zip(&want) {
        assert!(text);
        if *n == 70_000 {
            assert_eq!(data, &(payload(40_000) + &payload(30_000)).into_bytes());
        } else {
            assert_eq!(data, &payload(*n).into_bytes(), "size {n}");
        }
    }
    match close_reason(&evs) {
        CloseReason::Clean {
            initiator: Initiator::Local,
            code: Some(1000),
            ..
        } => {}
        r => panic!("unexpected close {r:?}"),
    }
}

fn certificate_for_the_wrong_name_is_refused(base: NetConfig) {
    let pki = Pki::new(&["wrong.example"]);
    let (port, srv) = spawn_ws(Some(pki.server.clone()), |_| Ok(()));
    let evs = run_ws(
        pki.config(base),
        &format!("wss://localhost:{port}/"),
        |_, _| {},
    );
    // The server's handshake fails too; its result is not the point.
    let _ = srv.join();
    assert!(!evs.iter().any(|e| matches!(e, Ev::Open(_))));
    match close_reason(&evs) {
        CloseReason::Error(e @ NetError::Tls { error, .. }) => {
            assert!(
                matches!(
                    error,
                    rustls::Error::InvalidCertificate(
                        rustls::CertificateError::NotValidForName
                            | rustls::CertificateError::NotValidForNameContext { .. }
                    )
                ),
                "{error:?}"
            );
            let s = e.to_string();
            assert!(
                s.contains("localhost") && s.contains("TLS handshake"),
                "{s}"
            );
        }
        r => panic!("unexpected close {r:?}"),
    }
}

fn certificate_from_an_unknown_ca_is_refused(base: NetConfig) {
    let server_pki = Pki::new(&["localhost"]);
    let other_ca = Pki::new(&["localhost"]);
    let (port, srv) = spawn_ws(Some(server_pki.server.clone()), |_| Ok(()));
    let evs = run_ws(
        other_ca.config(base),
        &format!("wss://localhost:{port}/"),
        |_, _| {},
    );
    let _ = srv.join();
    match close_reason(&evs) {
        CloseReason::Error(NetError::Tls {
            error: rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
            ..
        }) => {}
        r => panic!("unexpected close {r:?}"),
    }
}

fn missing_ca_file_is_reported_on_connect(base: NetConfig) {
    let cfg = NetConfig {
        roots: RootSource::CaFile("/nonexistent/tickring-ca.pem".into()),
        ..base
    };
    let evs = run_ws(cfg, "wss://localhost:1/", |_, _| {});
    match close_reason(&evs) {
        CloseReason::Error(e @ NetError::TlsSetup(_)) => {
            assert!(
                e.to_string().contains("/nonexistent/tickring-ca.pem"),
                "{e}"
            )
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
    };
}

on_all_paths!(
    wss_with_test_ca_file_succeeds,
    certificate_for_the_wrong_name_is_refused,
    certificate_from_an_unknown_ca_is_refused,
    missing_ca_file_is_reported_on_connect,
);
