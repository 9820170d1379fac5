//! iceoryx2 publish-subscribe between two processes, with its zero-copy
//! API: the writer loans an uninitialized sample in shared memory
//! (`loan_uninit`), writes the 64-byte event into it (`write_payload`)
//! and `send`s it; the reader busy-polls `receive`.
//!
//! Each run uses its own file prefix (`iox2_tickring_bench_<pid>_`) and its
//! own root directory inside the run directory, so everything iceoryx2
//! creates can be found and removed afterwards ([`cleanup`]).

use iceoryx2::port::publisher::Publisher;
use iceoryx2::port::subscriber::Subscriber;
use iceoryx2::prelude::*;

use super::super::harness::{Polled, Rx, Tx};
use super::IoxPlace;
use crate::event::{Event, PAYLOAD_WORDS};

/// The 64-byte payload: the event's 8 words.
#[derive(Debug, Clone, Copy, ZeroCopySend)]
#[repr(C)]
pub(crate) struct IoxEvent {
    words: [u64; 8],
}

impl IoxEvent {
    fn from_event(ev: &Event) -> IoxEvent {
        let mut words = [0u64; 8];
        words[0] = ev.ring_seq;
        words[1..].copy_from_slice(&ev.payload_words());
        IoxEvent { words }
    }

    fn to_event(self) -> Event {
        let mut p = [0u64; PAYLOAD_WORDS];
        p.copy_from_slice(&self.words[1..]);
        Event::from_words(self.words[0], p)
    }
}

impl IoxPlace {
    fn config(&self) -> Result<Config, String> {
        let mut cfg = Config::default();
        cfg.global.prefix = FileName::new(self.prefix.as_bytes())
            .map_err(|e| format!("iceoryx2 prefix {:?}: {e:?}", self.prefix))?;
        let mut root = self.root.to_string_lossy().into_owned();
        if !root.ends_with('/') {
            root.push('/');
        }
        let root_path =
            Path::new(root.as_bytes()).map_err(|e| format!("iceoryx2 root {root:?}: {e:?}"))?;
        cfg.global.set_root_path(&root_path);
        Ok(cfg)
    }

    fn node(&self) -> Result<Node<ipc::Service>, String> {
        set_log_level(LogLevel::Error);
        std::fs::create_dir_all(&self.root)
            .map_err(|e| format!("creating {}: {e}", self.root.display()))?;
        NodeBuilder::new()
            .config(&self.config()?)
            .signal_handling_mode(SignalHandlingMode::Disabled)
            .create::<ipc::Service>()
            .map_err(|e| format!("iceoryx2 node: {e:?}"))
    }

    fn service(
        &self,
        node: &Node<ipc::Service>,
    ) -> Result<
        iceoryx2::service::port_factory::publish_subscribe::PortFactory<ipc::Service, IoxEvent, ()>,
        String,
    > {
        let name: ServiceName = self
            .service
            .as_str()
            .try_into()
            .map_err(|e| format!("iceoryx2 service name {:?}: {e:?}", self.service))?;
        node.service_builder(&name)
            .publish_subscribe::<IoxEvent>()
            .subscriber_max_buffer_size(self.buffer)
            .history_size(0)
            .max_publishers(1)
            .max_subscribers(1)
            .enable_safe_overflow(true)
            .open_or_create()
            .map_err(|e| format!("iceoryx2 service {:?}: {e:?}", self.service))
    }
}

/// The publishing end (fields drop in order: port, service, node).
pub(crate) struct IoxTx {
    publisher: Publisher<ipc::Service, IoxEvent, ()>,
    _service:
        iceoryx2::service::port_factory::publish_subscribe::PortFactory<ipc::Service, IoxEvent, ()>,
    _node: Node<ipc::Service>,
}

impl IoxTx {
    pub(crate) fn create(place: &IoxPlace) -> Result<IoxTx, String> {
        let node = place.node()?;
        let service = place.service(&node)?;
        let publisher = service
            .publisher_builder()
            .create()
            .map_err(|e| format!("iceoryx2 publisher: {e:?}"))?;
        Ok(IoxTx {
            publisher,
            _service: service,
            _node: node,
        })
    }
}

impl Tx for IoxTx {
    #[inline]
    fn send(&mut self, ev: &Event) -> bool {
        let Ok(sample) = self.publisher.loan_uninit() else {
            return false;
        };
        let sample = sample.write_payload(IoxEvent::from_event(ev));
        sample.send().is_ok()
    }
}

/// The subscribing end.
pub(crate) struct IoxRx {
    subscriber: Subscriber<ipc::Service, IoxEvent, ()>,
    _service:
        iceoryx2::service::port_factory::publish_subscribe::PortFactory<ipc::Service, IoxEvent, ()>,
    _node: Node<ipc::Service>,
}

impl IoxRx {
    pub(crate) fn open(place: &IoxPlace) -> Result<IoxRx, String> {
        let node = place.node()?;
        let service = place.service(&node)?;
        let subscriber = service
            .subscriber_builder()
            .create()
            .map_err(|e| format!("iceoryx2 subscriber: {e:?}"))?;
        Ok(IoxRx {
            subscriber,
            _service: service,
            _node: node,
        })
    }
}

impl Rx for IoxRx {
    #[inline]
    fn poll_with<F: FnMut(&Event)>(&mut self, f: &mut F) -> Polled {
        match self.subscriber.receive() {
            Ok(Some(sample)) => {
                f(&sample.payload().to_event());
                Polled::Got(1)
            }
            Ok(None) => Polled::Empty,
            Err(_) => Polled::Closed,
        }
    }
}

/// Removes whatever iceoryx2 left of this run in /dev/shm (its shared
/// memory objects carry the run's prefix) and returns their names: an
/// empty list means iceoryx2 cleaned up after itself.
pub(crate) fn cleanup(place: &IoxPlace) -> Vec<String> {
    let mut left = Vec::new();
    for dir in ["/dev/shm", "/tmp"] {
        let Ok(rd) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(&place.prefix) {
                let p = e.path();
                let _ = if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
                left.push(p.display().to_string());
            }
        }
    }
    let _ = std::fs::remove_dir_all(&place.root);
    left
}
