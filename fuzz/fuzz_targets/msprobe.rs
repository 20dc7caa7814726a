#![no_main]
//! msprobe `dump.json` (entries, nesting, data_name paths, Python NaN/Infinity words).
#[path = "common.rs"]
mod common;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let p = common::scratch("dump.json", data);
    common::open_all(&p);
});
