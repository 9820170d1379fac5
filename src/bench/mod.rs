//! Benchmarks behind `tickring bench` (and the criterion benches).

pub mod gateway;
pub mod parse;
