#![no_main]
//! `.npz` archives (stored and deflated members).
#[path = "common.rs"]
mod common;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let p = common::scratch("x.npz", data);
    if let Ok(v) = driftscope::dump::npy::read_npz(&p, None) {
        for (_, t) in &v {
            common::touch(t);
        }
    }
});
