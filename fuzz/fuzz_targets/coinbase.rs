//! Coinbase frames through the adapter and the book builder (see common.rs).
#![no_main]
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| common::run(tickring::event::Exchange::Coinbase, data));
