//! A Unix datagram socket between two processes: the writer sends each
//! 64-byte event as one datagram (blocking when the receiver's queue is
//! full), the reader busy-polls with non-blocking `recv` (no wake-up cost,
//! like every other path here: all readers spin).

use std::io::ErrorKind;
use std::os::unix::net::UnixDatagram;
use std::path::Path;

use super::super::harness::{event_from_bytes, event_to_bytes, Polled, Rx, Tx};
use crate::event::Event;

pub(crate) struct UdsTx(UnixDatagram);

impl UdsTx {
    /// Connects to the reader's bound socket.
    pub(crate) fn connect(path: &Path) -> std::io::Result<UdsTx> {
        let s = UnixDatagram::unbound()?;
        s.connect(path)?;
        Ok(UdsTx(s))
    }
}

impl Tx for UdsTx {
    fn send(&mut self, ev: &Event) -> bool {
        let b = event_to_bytes(ev);
        loop {
            match self.0.send(&b) {
                Ok(64) => return true,
                Ok(_) => return false,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
    }
}

pub(crate) struct UdsRx(UnixDatagram);

impl UdsRx {
    /// Binds the reader's socket at `path` (non-blocking).
    pub(crate) fn bind(path: &Path) -> std::io::Result<UdsRx> {
        let _ = std::fs::remove_file(path);
        let s = UnixDatagram::bind(path)?;
        s.set_nonblocking(true)?;
        Ok(UdsRx(s))
    }
}

impl Rx for UdsRx {
    #[inline]
    fn poll_with<F: FnMut(&Event)>(&mut self, f: &mut F) -> Polled {
        let mut b = [0u8; 64];
        match self.0.recv(&mut b) {
            Ok(64) => {
                f(&event_from_bytes(&b));
                Polled::Got(1)
            }
            // A short datagram is not ours; count it as lost.
            Ok(_) => Polled::Lost(1),
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                Polled::Empty
            }
            Err(_) => Polled::Closed,
        }
    }
}
