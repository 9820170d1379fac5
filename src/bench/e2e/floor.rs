//! `socket_floor`: when do the bytes of a frame arrive at all?
//!
//! A plain TCP socket, switched to non-blocking after a minimal WebSocket
//! handshake, spinning on `recv` on the reader's core. A frame is stamped
//! right after the `recv` that completed it returns; nothing is parsed
//! beyond the WebSocket frame header needed to find where a frame ends.
//! The payload's length and CRC-32 (taken after the stamp) identify the
//! frame for the pairing with the server's send records.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::{E2eError, Plan, Spun, FIRST_FRAME_TIMEOUT};
use crate::net::ws::{encode_frame, parse_header, OpCode};
use crate::time::now_ns;

/// A frame as the floor saw it.
#[derive(Clone, Copy, Debug)]
pub struct FloorFrame {
    pub visible_ns: i64,
    /// [`fingerprint`] of a data frame's payload; `None` for control frames.
    pub fp: Option<u64>,
}

/// Length and CRC-32 of a payload, as one word.
pub fn fingerprint(payload: &[u8]) -> u64 {
    ((payload.len() as u64) << 32) | u64::from(crc32fast::hash(payload))
}

/// Client frames must be masked (RFC 6455 5.3); any key will do.
const MASK: [u8; 4] = [0x5a, 0x17, 0xc3, 0x8e];

/// An open WebSocket on a non-blocking socket.
pub struct FloorConn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Bytes in `buf` not yet consumed.
    len: usize,
}

impl FloorConn {
    /// Connects, upgrades to WebSocket on `path`, sends `subscribe` as text
    /// frames and switches the socket to non-blocking.
    pub fn connect(
        addr: SocketAddr,
        path: &str,
        subscribe: &[String],
        within: Duration,
    ) -> Result<FloorConn, E2eError> {
        let mut stream = TcpStream::connect_timeout(&addr, within)
            .map_err(|e| E2eError::io(format!("connecting to {addr}"), e))?;
        let io = |doing: &str| {
            let doing = doing.to_string();
            move |e| E2eError::io(doing, e)
        };
        stream
            .set_nodelay(true)
            .map_err(io("setting TCP_NODELAY"))?;
        stream
            .set_read_timeout(Some(within))
            .map_err(io("setting a read timeout"))?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .map_err(io("sending the WebSocket upgrade"))?;
        let mut buf = vec![0u8; 1 << 20];
        let mut len = 0;
        let head_end = loop {
            let n = stream
                .read(&mut buf[len..])
                .map_err(io("reading the WebSocket upgrade answer"))?;
            if n == 0 {
                return Err(E2eError::Protocol(
                    "the server closed the connection during the WebSocket upgrade".into(),
                ));
            }
            len += n;
            if let Some(i) = buf[..len].windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if len == buf.len() {
                return Err(E2eError::Protocol(
                    "the WebSocket upgrade answer has no end".into(),
                ));
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        if !head.starts_with("HTTP/1.1 101") {
            let first = head.lines().next().unwrap_or("").to_string();
            return Err(E2eError::Protocol(format!(
                "the server refused the WebSocket upgrade: {first}"
            )));
        }
        // Frames that came right behind the answer stay in the buffer.
        buf.copy_within(head_end..len, 0);
        len -= head_end;
        let mut out = Vec::new();
        for s in subscribe {
            encode_frame(&mut out, OpCode::Text, true, s.as_bytes(), Some(MASK));
        }
        stream
            .write_all(&out)
            .map_err(io("sending the subscription"))?;
        stream
            .set_nonblocking(true)
            .map_err(io("making the socket non-blocking"))?;
        Ok(FloorConn { stream, buf, len })
    }

    /// Spins on `recv` until the plan's end (the window starts `warmup`
    /// after the first data frame).
    pub(crate) fn spin(&mut self, plan: &Plan) -> Result<Spun<FloorFrame>, E2eError> {
        let mut frames = Vec::with_capacity(1 << 16);
        let mut end = plan.first_deadline;
        let mut window = (i64::MAX, i64::MAX);
        let mut started = false;
        let mut idle = 0u32;
        let mut closed = false;
        // Frames that arrived with the upgrade answer.
        let now = now_ns();
        self.drain(now, &mut frames, &mut closed)?;
        loop {
            if !started {
                if let Some(f) = frames.iter().find(|f| f.fp.is_some()) {
                    started = true;
                    (window, end) = plan.window(f.visible_ns);
                }
            }
            if closed {
                break;
            }
            if self.len == self.buf.len() {
                // A frame larger than the buffer: make room.
                self.buf.resize(self.buf.len() * 2, 0);
            }
            match self.stream.read(&mut self.buf[self.len..]) {
                Ok(0) => break,
                Ok(n) => {
                    let now = now_ns();
                    self.len += n;
                    let before = frames.len();
                    self.drain(now, &mut frames, &mut closed)?;
                    if now >= end {
                        break;
                    }
                    if let (Some(nap), true) = (plan.nap, frames.len() > before) {
                        std::thread::sleep(nap);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    idle = idle.wrapping_add(1);
                    if idle % 64 == 0 && now_ns() >= end {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(E2eError::io("reading the floor socket", e)),
            }
        }
        if !started {
            return Err(E2eError::Timeout {
                waiting_for: "data frame on the floor socket".into(),
                after: FIRST_FRAME_TIMEOUT,
            });
        }
        Ok(Spun {
            frames,
            window,
            ring_lost: 0,
        })
    }

    /// Takes every complete frame off the front of the buffer, stamping
    /// each with `now` (when the bytes that completed it arrived).
    fn drain(
        &mut self,
        now: i64,
        frames: &mut Vec<FloorFrame>,
        closed: &mut bool,
    ) -> Result<(), E2eError> {
        let mut pos = 0;
        while let Some(h) = parse_header(&self.buf[pos..self.len])
            .map_err(|e| E2eError::Protocol(format!("floor socket: {e}")))?
        {
            let total = h.header_len + h.payload_len as usize;
            if self.len - pos < total {
                if total > self.buf.len() {
                    self.buf.resize(total.next_power_of_two(), 0);
                }
                break;
            }
            let payload = pos + h.header_len..pos + total;
            match h.opcode {
                OpCode::Text | OpCode::Binary => frames.push(FloorFrame {
                    visible_ns: now,
                    fp: Some(fingerprint(&self.buf[payload])),
                }),
                OpCode::Ping => {
                    let mut pong = Vec::new();
                    encode_frame(
                        &mut pong,
                        OpCode::Pong,
                        true,
                        &self.buf[payload],
                        Some(MASK),
                    );
                    // A few bytes into an idle socket buffer: not short.
                    let _ = self.stream.write(&pong);
                }
                OpCode::Close => *closed = true,
                _ => frames.push(FloorFrame {
                    visible_ns: now,
                    fp: None,
                }),
            }
            pos += total;
        }
        self.buf.copy_within(pos..self.len, 0);
        self.len -= pos;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A server that upgrades, reads the subscription, then sends `chunks`
    /// with pauses so frames arrive split across reads.
    /// What the test server read: the subscription, then everything after.
    type Heard = std::thread::JoinHandle<(Vec<u8>, Vec<u8>)>;

    fn serve(chunks: Vec<Vec<u8>>) -> (SocketAddr, Heard) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let h = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut req = Vec::new();
            let mut b = [0u8; 4096];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut b).unwrap();
                req.extend_from_slice(&b[..n]);
            }
            s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
                .unwrap();
            let mut sub = vec![0u8; 256];
            let n = s.read(&mut sub).unwrap();
            sub.truncate(n);
            for c in chunks {
                s.write_all(&c).unwrap();
                std::thread::sleep(Duration::from_millis(20));
            }
            // Read the client's pong until it hangs up (closing with unread
            // bytes would reset the connection).
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
            (sub, rest)
        });
        (addr, h)
    }

    #[test]
    fn frames_split_across_reads_are_stamped_once_whole() {
        let mut wire = Vec::new();
        encode_frame(&mut wire, OpCode::Text, true, b"{\"a\":1}", None);
        encode_frame(&mut wire, OpCode::Ping, true, b"p", None);
        let big = vec![b'x'; 300];
        encode_frame(&mut wire, OpCode::Text, true, &big, None);
        encode_frame(&mut wire, OpCode::Close, true, &[3, 232], None);
        // Cut inside the 300-byte frame's header and inside its payload.
        let cut1 = 9 + 3 + 2;
        let cut2 = cut1 + 100;
        let chunks = vec![
            wire[..cut1].to_vec(),
            wire[cut1..cut2].to_vec(),
            wire[cut2..].to_vec(),
        ];
        let (addr, h) = serve(chunks);
        let mut c =
            FloorConn::connect(addr, "/", &["sub".to_string()], Duration::from_secs(5)).unwrap();
        let plan = Plan {
            first_deadline: now_ns() + 5_000_000_000,
            warmup_ns: 0,
            duration_ns: 5_000_000_000,
            nap: None,
        };
        let spun = c.spin(&plan).unwrap();
        drop(c);
        let (sub, rest) = h.join().unwrap();
        // The ping was answered with a masked pong carrying its payload.
        assert_eq!(&rest[..2], &[0x8A, 0x80 | 1]);
        // The subscription went out as one masked text frame.
        assert_eq!(sub[0], 0x81);
        assert_eq!(sub[1], 0x80 | 3);
        let fps: Vec<Option<u64>> = spun.frames.iter().map(|f| f.fp).collect();
        assert_eq!(
            fps,
            vec![Some(fingerprint(b"{\"a\":1}")), Some(fingerprint(&big))]
        );
        // The second frame was completed by the third chunk, 20+ ms later.
        assert!(spun.frames[1].visible_ns - spun.frames[0].visible_ns > 20_000_000);
    }
}
