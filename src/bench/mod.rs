//! Benchmarks behind `tickring bench` (and the criterion benches).

pub mod e2e;
pub mod parse;
