#![no_main]
//! CANN offline dump files (8-byte header length, protobuf `DumpData`, data segment), through
//! `Dump::open` and loading each input and output.
#[path = "common.rs"]
mod common;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A CANN dump file's name: {op type}.{op name}.{task id}.{timestamp}, no extension.
    let p = common::scratch("Conv2D.conv1.3.1700000000000000", data);
    common::open_all(&p);
});
