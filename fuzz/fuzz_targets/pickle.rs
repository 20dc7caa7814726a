#![no_main]
//! The pickle machine alone, both persistent-id conventions.
use driftscope::dump::pickle::{load, PersistentIds};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = load(data, PersistentIds::Zip);
    let _ = load(data, PersistentIds::Legacy);
});
