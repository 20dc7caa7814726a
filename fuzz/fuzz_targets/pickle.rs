#![no_main]
//! The pickle machine alone, both persistent-id conventions. Also checks that skipping memo
//! copies (when no memo read lies ahead) gives exactly what the eager machine gives.
use driftscope::dump::pickle::{load, load_eager, PersistentIds};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for ids in [PersistentIds::Zip, PersistentIds::Legacy] {
        let lazy = load(data, ids);
        let eager = load_eager(data, ids);
        assert_eq!(format!("{lazy:?}"), format!("{eager:?}"));
    }
});
