#![no_main]
//! `.safetensors` files, read directly and opened as a dump.
#[path = "common.rs"]
mod common;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let p = common::scratch("x.safetensors", data);
    if let Ok(v) = driftscope::dump::safetensors::read(&p) {
        for t in &v {
            common::touch(&t.tensor);
        }
    }
    common::open_all(&p);
});
