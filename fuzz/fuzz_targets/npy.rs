#![no_main]
//! `.npy` files, with and without a dtype hint, and through `Dump::open`.
#[path = "common.rs"]
mod common;
use driftscope::dump::{npy, DType};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let p = common::scratch("x.npy", data);
    for hint in [None, Some(DType::Bfloat16), Some(DType::Float8E4m3fn)] {
        if let Ok(t) = npy::read_npy(&p, hint) {
            common::touch(&t);
        }
    }
});
