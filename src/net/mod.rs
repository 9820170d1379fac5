//! Network transport for the collector: one io_uring instance drives TCP
//! connects, TLS (rustls, sans-IO), WebSocket clients, one-shot HTTP GETs and
//! timers.
pub mod ws;
