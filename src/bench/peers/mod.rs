//! The paths tickring's ring is measured against, each reduced to the
//! harness's [`Tx`](super::harness::Tx)/[`Rx`](super::harness::Rx):
//!
//! - [`floor`]: two threads ping-ponging one cache line, the hardware's
//!   core-to-core handoff cost (std only, always built);
//! - [`uds`]: a Unix datagram socket between two processes (std only);
//! - [`threads`]: rtrb, crossbeam-channel and the `disruptor` crate,
//!   in-process by nature (two threads), feature `bench-peers`;
//! - [`iox`]: iceoryx2 publish-subscribe between two processes with its
//!   zero-copy loan API, feature `bench-peers`.

pub(crate) mod floor;
#[cfg(feature = "bench-peers")]
pub(crate) mod iox;
#[cfg(feature = "bench-peers")]
pub(crate) mod threads;
pub(crate) mod uds;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where one run's iceoryx2 service lives; passed to the child process
/// (defined without the feature so that child specs always parse).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct IoxPlace {
    /// File prefix of every shared-memory object and file of the run.
    pub prefix: String,
    /// iceoryx2's root directory (node and service descriptions).
    pub root: PathBuf,
    pub service: String,
    /// Subscriber buffer (samples); with safe overflow the oldest is
    /// replaced when it is full.
    pub buffer: usize,
}

impl IoxPlace {
    #[cfg_attr(not(feature = "bench-peers"), allow(dead_code))]
    pub(crate) fn new(run_dir: &Path, tag: &str, buffer: usize) -> IoxPlace {
        IoxPlace {
            prefix: format!("iox2_tickring_bench_{}_", std::process::id()),
            root: run_dir.join("iox2"),
            service: format!("tickring/bench/{}/{tag}", std::process::id()),
            buffer,
        }
    }
}
