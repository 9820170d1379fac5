//! tickring: exchange market data into a shared-memory ring on huge pages.
//!
//! Data flow (see `docs/architecture.md`): exchange bytes -> [`feed`]
//! adapters (pure parsers) -> books -> [`ring::Writer`] in the collector
//! process -> [`ring::Reader`]s in any process on the host.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

#[cfg(not(tickring_loom))]
pub mod bench;
pub mod book;
#[cfg(not(tickring_loom))]
pub mod cli;
#[cfg(not(tickring_loom))]
pub mod collector;
#[cfg(not(tickring_loom))]
pub mod config;
#[cfg(not(tickring_loom))]
pub mod doctor;
pub mod event;
pub mod feed;
pub mod fixed;
#[cfg(not(tickring_loom))]
pub mod gateway;
pub mod instrument;
#[cfg(not(tickring_loom))]
pub mod net;
#[cfg(not(tickring_loom))]
pub mod process;
#[cfg(not(tickring_loom))]
pub mod render;
#[cfg(not(tickring_loom))]
pub mod replay;
pub mod ring;
pub mod shm;
pub mod sync;
pub mod time;
