#![no_main]
//! `.pt` files: torch.save zip (zip + pickle + storages) and the legacy format.
#[path = "common.rs"]
mod common;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    driftscope::dump::pt::zipdir_differential(data);
    let p = common::scratch("x.pt", data);
    if let Ok(ts) = driftscope::dump::pt::read(&p) {
        for t in &ts {
            common::touch(&t.tensor);
        }
    }
});
