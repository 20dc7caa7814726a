#![no_main]
//! driftscope's native manifest (`driftscope.json`).
#[path = "common.rs"]
mod common;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let p = common::scratch("driftscope.json", data);
    common::open_all(&p);
});
