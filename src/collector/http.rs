//! The collector's tiny HTTP endpoint: `/health`, `/ready`, `/metrics`.
//!
//! It runs on the housekeeping thread's side, never on the hot core. A
//! handful of scrapes per second is all it serves, so it is a plain
//! blocking accept loop (one request per connection, bounded reads with
//! timeouts) rather than an async stack in the collector process.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// What the endpoint answers; called on its own thread.
pub trait Endpoint: Send + Sync + 'static {
    /// (ready, reason when not ready).
    fn ready(&self) -> (bool, String);
    fn metrics(&self) -> String;
}

/// Binds `addr` and serves requests on a new thread until `stop` is set.
pub fn spawn<E: Endpoint>(
    addr: SocketAddr,
    endpoint: Arc<E>,
    stop: Arc<AtomicBool>,
) -> io::Result<(SocketAddr, std::thread::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let h = std::thread::Builder::new()
        .name("tickring-http".into())
        .spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let _ = serve(s, &*endpoint);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        })?;
    Ok((local, h))
}

fn serve<E: Endpoint>(mut s: TcpStream, e: &E) -> io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut buf = [0u8; 4096];
    let mut n = 0;
    // Read the request head (we need only the request line).
    loop {
        let r = s.read(&mut buf[n..])?;
        if r == 0 {
            break;
        }
        n += r;
        if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") || n == buf.len() {
            break;
        }
    }
    let head = String::from_utf8_lossy(&buf[..n]);
    let mut parts = head.lines().next().unwrap_or("").split_whitespace();
    let method = parts.next().unwrap_or("");
    let path = parts.next().unwrap_or("");
    let path = path.split('?').next().unwrap_or("");
    let (status, ctype, body) = match (method, path) {
        ("GET", "/health") => (200, "text/plain", "ok\n".to_owned()),
        ("GET", "/ready") => match e.ready() {
            (true, _) => (200, "text/plain", "ready\n".to_owned()),
            (false, why) => (503, "text/plain", format!("not ready: {why}\n")),
        },
        ("GET", "/metrics") => (200, "text/plain; version=0.0.4", e.metrics()),
        ("GET", _) => (
            404,
            "text/plain",
            "not found: try /health, /ready or /metrics\n".to_owned(),
        ),
        _ => (405, "text/plain", "method not allowed\n".to_owned()),
    };
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    write!(
        s,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    s.flush()
}
