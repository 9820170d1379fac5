//! In-process peers (two threads): rtrb, crossbeam-channel and the
//! `disruptor` crate. Each is a bounded SPSC path; a full path makes the
//! writer spin (never park), an empty one makes the reader spin, so all
//! of them are measured busy-polling like tickring's ring.

use super::super::harness::{Polled, Rx, Tx};
use crate::event::Event;

pub(crate) struct RtrbTx(::rtrb::Producer<Event>);
pub(crate) struct RtrbRx(::rtrb::Consumer<Event>);

pub(crate) fn rtrb(capacity: usize) -> (RtrbTx, RtrbRx) {
    let (p, c) = ::rtrb::RingBuffer::new(capacity);
    (RtrbTx(p), RtrbRx(c))
}

impl Tx for RtrbTx {
    #[inline]
    fn send(&mut self, ev: &Event) -> bool {
        while self.0.push(*ev).is_err() {
            if self.0.is_abandoned() {
                return false;
            }
            std::hint::spin_loop();
        }
        true
    }
}

impl Rx for RtrbRx {
    #[inline]
    fn poll_with<F: FnMut(&Event)>(&mut self, f: &mut F) -> Polled {
        match self.0.pop() {
            Ok(ev) => {
                f(&ev);
                Polled::Got(1)
            }
            Err(_) if self.0.is_abandoned() => Polled::Closed,
            Err(_) => Polled::Empty,
        }
    }
}

pub(crate) struct CrossbeamTx(::crossbeam_channel::Sender<Event>);
pub(crate) struct CrossbeamRx(::crossbeam_channel::Receiver<Event>);

pub(crate) fn crossbeam(capacity: usize) -> (CrossbeamTx, CrossbeamRx) {
    let (s, r) = ::crossbeam_channel::bounded(capacity);
    (CrossbeamTx(s), CrossbeamRx(r))
}

impl Tx for CrossbeamTx {
    #[inline]
    fn send(&mut self, ev: &Event) -> bool {
        loop {
            match self.0.try_send(*ev) {
                Ok(()) => return true,
                Err(::crossbeam_channel::TrySendError::Full(_)) => std::hint::spin_loop(),
                Err(::crossbeam_channel::TrySendError::Disconnected(_)) => return false,
            }
        }
    }
}

impl Rx for CrossbeamRx {
    #[inline]
    fn poll_with<F: FnMut(&Event)>(&mut self, f: &mut F) -> Polled {
        match self.0.try_recv() {
            Ok(ev) => {
                f(&ev);
                Polled::Got(1)
            }
            Err(::crossbeam_channel::TryRecvError::Empty) => Polled::Empty,
            Err(::crossbeam_channel::TryRecvError::Disconnected) => Polled::Closed,
        }
    }
}

pub(crate) struct DisruptorTx(
    ::disruptor::SingleProducer<Event, ::disruptor::SingleConsumerBarrier>,
);
pub(crate) struct DisruptorRx(::disruptor::EventPoller<Event, ::disruptor::SingleProducerBarrier>);

/// A single-producer disruptor whose only consumer is an event poller
/// (our reader thread), with the BusySpin wait strategy.
pub(crate) fn disruptor(capacity: usize) -> (DisruptorTx, DisruptorRx) {
    let builder =
        ::disruptor::build_single_producer(capacity, Event::default, ::disruptor::BusySpin);
    let (poller, builder) = builder.new_event_poller();
    (DisruptorTx(builder.build()), DisruptorRx(poller))
}

impl Tx for DisruptorTx {
    #[inline]
    fn send(&mut self, ev: &Event) -> bool {
        use ::disruptor::Producer as _;
        // Spins while the ring is full.
        self.0.publish(|slot| *slot = *ev);
        true
    }
}

impl Rx for DisruptorRx {
    #[inline]
    fn poll_with<F: FnMut(&Event)>(&mut self, f: &mut F) -> Polled {
        match self.0.poll() {
            Ok(mut guard) => {
                let mut n = 0;
                for ev in &mut guard {
                    f(ev);
                    n += 1;
                }
                Polled::Got(n)
            }
            Err(::disruptor::Polling::NoEvents) => Polled::Empty,
            Err(::disruptor::Polling::Shutdown) => Polled::Closed,
        }
    }
}
