//! Resource bombs and lies in headers: clear errors or bounded work, never a panic or memory
//! exhaustion. Also paths that escape a dump, and concurrent runs (docs/robustness.md).

use crate::common;
use common::*;
use driftscope::dump::{npy, pt, safetensors, Dump, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn python(code: &str, args: &[&Path]) {
    let st = Command::new("python3")
        .arg("-c")
        .arg(code)
        .args(args)
        .status()
        .expect("python3 is needed to build the test files");
    assert!(st.success(), "{code}");
}

fn msg<T: std::fmt::Debug>(r: driftscope::dump::Result<T>) -> String {
    r.expect_err("must be refused").to_string()
}

// ---- .pt: forged torch.save zips -------------------------------------------------------------

#[test]
fn forged_torch_zips_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let st = Command::new("python3")
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/make_pickles.py"))
        .arg("forged")
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(st.success());
    let p = |n: &str| dir.path().join(format!("{n}.pt"));
    let ok = pt::read(&p("ok")).unwrap();
    assert_eq!(ok[0].tensor.to_f64_vec(), vec![1.0, 2.0, 3.0, 4.0]);
    for (name, want) in [
        ("shape_overflow", "overflows"),
        (
            "storage_larger_than_file",
            "declares 1099511627776 elements but holds 16 bytes",
        ),
        ("view_past_storage", "reaches element 15 of a storage of 4"),
        ("zip_entry_claims_4gib", ""),
        ("zip_pkl_claims_4gib", ""),
    ] {
        let e = msg(pt::read(&p(name)));
        assert!(
            e.contains(want) && e.contains(&format!("{name}.pt")),
            "{name}: {e}"
        );
    }
    // Empty views with absurd offsets or strides read as empty tensors; before the fix the
    // offset reached the memory map's indexing (panic) and the stride sum overflowed.
    for name in ["empty_huge_offset", "empty_huge_strides"] {
        let t = pt::read(&p(name)).unwrap();
        assert_eq!(t[0].tensor.numel(), 0, "{name}");
        assert!(t[0].tensor.data.is_empty());
    }
}

// ---- .npy / .npz ---------------------------------------------------------------------------

fn npy_bytes(header: &str, data: &[u8]) -> Vec<u8> {
    let mut h = header.to_string();
    while !(10 + h.len() + 1).is_multiple_of(64) {
        h.push(' ');
    }
    h.push('\n');
    let mut v = b"\x93NUMPY\x01\x00".to_vec();
    v.extend_from_slice(&(h.len() as u16).to_le_bytes());
    v.extend_from_slice(h.as_bytes());
    v.extend_from_slice(data);
    v
}

#[test]
fn npy_headers_that_lie() {
    let dir = tempfile::tempdir().unwrap();
    let w = |n: &str, b: Vec<u8>| {
        let p = dir.path().join(n);
        std::fs::write(&p, b).unwrap();
        p
    };
    let ok = w(
        "ok.npy",
        npy_bytes(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }",
            &[0; 8],
        ),
    );
    assert_eq!(npy::read_npy(&ok, None).unwrap().numel(), 2);
    let over = w(
        "over.npy",
        npy_bytes(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 16), }",
            &[0; 8],
        ),
    );
    assert!(msg(npy::read_npy(&over, None)).contains("overflows"));
    let big = w(
        "big.npy",
        npy_bytes(
            "{'descr': '<f8', 'fortran_order': True, 'shape': (1048576, 1048576), }",
            &[0; 8],
        ),
    );
    assert!(msg(npy::read_npy(&big, None)).contains("truncated"));
    // A header length pointing past the file, and a header nested 100k parentheses deep.
    let mut v = b"\x93NUMPY\x02\x00".to_vec();
    v.extend_from_slice(&u32::MAX.to_le_bytes());
    v.extend_from_slice(b"{'descr'");
    let long = w("long.npy", v);
    assert!(npy::read_npy(&long, None).is_err());
    let deep = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': {}2{}, }}",
        "(".repeat(100_000),
        ")".repeat(100_000)
    );
    let mut v = b"\x93NUMPY\x02\x00".to_vec();
    v.extend_from_slice(&(deep.len() as u32 + 1).to_le_bytes());
    v.extend_from_slice(deep.as_bytes());
    v.push(b'\n');
    let deep = w("deep.npy", v);
    assert!(npy::read_npy(&deep, None).is_err());
}

#[test]
fn npz_members_that_lie() {
    let dir = tempfile::tempdir().unwrap();
    // An honest deflate bomb (8 MiB of zeros, ~8 KiB compressed) reads with bounded work; the
    // same member patched to claim 4 GiB uncompressed is refused before any allocation; a
    // stored member claiming 4 GiB is refused.
    python(
        r#"
import io, struct, sys, zipfile
d = sys.argv[1]
h = b"{'descr': '<f4', 'fortran_order': False, 'shape': (2097152,), }"
h = h + b" " * (63 - (10 + len(h)) % 64) + b"\n"
npy = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h + bytes(8 << 20)
for name, comp in [("bomb", zipfile.ZIP_DEFLATED), ("stored", zipfile.ZIP_STORED)]:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", comp) as z:
        z.writestr("x.npy", npy if comp == zipfile.ZIP_DEFLATED else npy[:256])
    b = bytearray(buf.getvalue())
    open(f"{d}/{name}.npz", "wb").write(b)
    i = b.find(b"PK\x01\x02")
    struct.pack_into("<I", b, i + 24, 0xFFFFFFF0)   # central: uncompressed size
    loc = struct.unpack_from("<I", b, i + 42)[0]
    struct.pack_into("<I", b, loc + 22, 0xFFFFFFF0)  # local: uncompressed size
    if comp == zipfile.ZIP_STORED:
        struct.pack_into("<I", b, i + 20, 0xFFFFFFF0)
        struct.pack_into("<I", b, loc + 18, 0xFFFFFFF0)
    open(f"{d}/{name}_huge.npz", "wb").write(b)
"#,
        &[dir.path()],
    );
    let p = |n: &str| dir.path().join(n);
    assert!(std::fs::metadata(p("bomb.npz")).unwrap().len() < 64 << 10);
    let t = Instant::now();
    let v = npy::read_npz(&p("bomb.npz"), None).unwrap();
    assert_eq!(v[0].1.numel(), 2 << 20);
    assert!(t.elapsed() < Duration::from_secs(120));
    let e = msg(npy::read_npz(&p("bomb_huge.npz"), None));
    assert!(e.contains("implausible size") || e.contains("zip"), "{e}");
    assert!(npy::read_npz(&p("stored_huge.npz"), None).is_err());
}

// ---- .safetensors ------------------------------------------------------------------------

fn st_bytes(header: &str, data: &[u8]) -> Vec<u8> {
    let mut v = (header.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(header.as_bytes());
    v.extend_from_slice(data);
    v
}

#[test]
fn safetensors_headers_that_lie() {
    let dir = tempfile::tempdir().unwrap();
    let check = |name: &str, bytes: Vec<u8>, want: &str| {
        let p = dir.path().join(format!("{name}.safetensors"));
        std::fs::write(&p, bytes).unwrap();
        let e = match safetensors::read(&p) {
            Ok(_) => panic!("{name} accepted"),
            Err(e) => e.to_string(),
        };
        assert!(e.contains(want), "{name}: {e}");
    };
    let mut huge = u64::MAX.to_le_bytes().to_vec();
    huge.extend_from_slice(b"{}");
    check("huge_header", huge, "header of 18446744073709551615 bytes");
    check(
        "past_end",
        st_bytes(
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
            &[0; 4],
        ),
        "do not hold 8 bytes within 4",
    );
    check(
        "shape_overflow",
        st_bytes(
            r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,0]}}"#,
            &[],
        ),
        "shape overflows",
    );
    check(
        "overlap",
        st_bytes(
            r#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}"#,
            &[0; 8],
        ),
        "overlaps",
    );
    let deep = format!(r#"{{"a":{}1{}}}"#, "[".repeat(100_000), "]".repeat(100_000));
    check(
        "deep_json",
        st_bytes(&deep, &[]),
        "recursion limit exceeded",
    );
}

// ---- msprobe dump.json and the native manifest --------------------------------------------

fn open_err(p: &Path) -> String {
    match Dump::open(p, &OpenOptions::default()) {
        Ok(_) => panic!("{} accepted", p.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn deeply_nested_dump_json() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("dump.json");
    // Beyond serde_json's recursion limit (128): a parse error, not a stack overflow.
    let deep = format!(
        r#"{{"task":"tensor","data":{{"F.a.0.forward":{{"output":{}1{}}}}}}}"#,
        "[".repeat(200_000),
        "]".repeat(200_000)
    );
    std::fs::write(&p, deep).unwrap();
    assert!(open_err(&p).contains("recursion limit exceeded"));
    // Within serde's limit but deeper than any msprobe record (32 levels): refused by the walk.
    let deep = format!(
        r#"{{"task":"tensor","data":{{"F.a.0.forward":{{"output":{}1{}}}}}}}"#,
        "[".repeat(100),
        "]".repeat(100)
    );
    std::fs::write(&p, deep).unwrap();
    assert!(open_err(&p).contains("nested too deeply"));
}

#[test]
fn dump_json_with_a_million_entries_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("dump.json");
    let n = 1_000_000;
    let mut s = String::with_capacity(n * 96);
    s.push_str(r#"{"task":"statistics","level":"L1","data":{"#);
    for i in 0..n {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!(
            r#""F.relu.{i}.forward":{{"output":[{{"dtype":"torch.float32","shape":[2],"Max":1}}]}}"#
        ));
    }
    s.push_str("}}");
    std::fs::write(&p, &s).unwrap();
    let t = Instant::now();
    let d = Dump::open(&p, &OpenOptions::default()).unwrap();
    let took = t.elapsed();
    assert_eq!(d.entries.len(), n);
    eprintln!(
        "1M-entry dump.json ({} MB) opened in {took:?}",
        s.len() >> 20
    );
    // A hang guard, not a benchmark: the CI machine is shared.
    assert!(took < Duration::from_secs(120), "{took:?}");
}

#[test]
fn native_manifests_that_lie() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("driftscope.json");
    let entry = |shape: &str, extra: &str| {
        format!(
            r#"{{"format":"driftscope-native","version":1,"entries":[{{"order":0,"place":"m","role":"output","index":"0","name":"m.output.0","dtype":"float32","shape":{shape}{extra}}}]}}"#
        )
    };
    std::fs::write(&p, entry("[4294967296,4294967296,16]", "")).unwrap();
    assert!(open_err(&p).contains("overflows"));
    std::fs::write(&p, entry("[2]", r#","nbytes":9"#)).unwrap();
    assert!(open_err(&p).contains("nbytes 9 does not match"));
    // Declares 1 TiB: the raw file is checked against it before any use.
    std::fs::write(dir.path().join("t.bin"), [0u8; 8]).unwrap();
    std::fs::write(&p, entry("[1099511627776]", r#","file":"t.bin""#)).unwrap();
    let d = Dump::open(&p, &OpenOptions::default()).unwrap();
    assert!(d
        .load(&d.entries[0])
        .unwrap_err()
        .to_string()
        .contains("truncated"));
}

// ---- paths that escape the dump -----------------------------------------------------------

fn msprobe_with(dir: &Path, data_name: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("dump_tensor_data")).unwrap();
    let json = format!(
        r#"{{"task":"tensor","level":"L1","data":{{"Functional.embedding.0.forward":{{"output":[{{"type":"torch.Tensor","dtype":"torch.float32","shape":[1,32,64],"data_name":"{data_name}"}}]}}}}}}"#
    );
    std::fs::write(dir.join("dump.json"), json).unwrap();
    dir.to_path_buf()
}

const REAL_PT: &str = "step0/proc463/dump_tensor_data/Functional.embedding.0.forward.output.0.pt";

#[test]
fn data_names_escaping_the_dump_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("secret.pt");
    std::fs::copy(llama("cpu_fp32").join(REAL_PT), &outside).unwrap();
    for (i, dn) in [
        "../secret.pt",
        "../../secret.pt",
        "a/../../secret.pt",
        outside.to_str().unwrap(),
    ]
    .iter()
    .enumerate()
    {
        let d = msprobe_with(&dir.path().join(format!("d{i}")), dn);
        let e = open_err(&d);
        assert!(e.contains("path escapes the dump folder"), "{dn}: {e}");
    }
    // A symlinked file, and a symlinked folder, pointing outside.
    let d = msprobe_with(&dir.path().join("link"), "x.pt");
    std::os::unix::fs::symlink(&outside, d.join("dump_tensor_data/x.pt")).unwrap();
    assert!(open_err(&d).contains("--allow-symlinks"));
    let allow = OpenOptions {
        allow_symlinks: true,
        ..OpenOptions::default()
    };
    let opened = Dump::open(&d, &allow).unwrap();
    assert_eq!(opened.load(&opened.entries[0]).unwrap().numel(), 32 * 64);
    let d = msprobe_with(&dir.path().join("dirlink"), "sub/secret.pt");
    std::os::unix::fs::symlink(dir.path(), d.join("dump_tensor_data/sub")).unwrap();
    assert!(open_err(&d).contains("path escapes the dump folder"));
    assert!(Dump::open(&d, &allow).is_ok());
    // A symlink that stays inside the dump is fine without the flag.
    let d = msprobe_with(&dir.path().join("inside"), "y.pt");
    std::fs::copy(&outside, d.join("dump_tensor_data/real.pt")).unwrap();
    std::os::unix::fs::symlink(
        d.join("dump_tensor_data/real.pt"),
        d.join("dump_tensor_data/y.pt"),
    )
    .unwrap();
    assert!(Dump::open(&d, &OpenOptions::default()).is_ok());
    // Native manifests: `file` is held to the same rule.
    let n = dir.path().join("native");
    std::fs::create_dir(&n).unwrap();
    for f in ["../t.bin", "/etc/passwd"] {
        std::fs::write(
            n.join("driftscope.json"),
            format!(
                r#"{{"format":"driftscope-native","version":1,"entries":[{{"order":0,"place":"m","role":"output","index":"0","name":"m.output.0","dtype":"uint8","shape":[1],"file":"{f}"}}]}}"#
            ),
        )
        .unwrap();
        assert!(open_err(&n).contains("path escapes the dump folder"), "{f}");
    }
}

#[test]
fn cli_allow_symlinks_flag() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("secret.pt");
    std::fs::copy(llama("cpu_fp32").join(REAL_PT), &outside).unwrap();
    let r = msprobe_with(&dir.path().join("ref"), "x.pt");
    std::fs::copy(&outside, r.join("dump_tensor_data/x.pt")).unwrap();
    let d = msprobe_with(&dir.path().join("dev"), "x.pt");
    std::os::unix::fs::symlink(&outside, d.join("dump_tensor_data/x.pt")).unwrap();
    let o = Command::new(bin())
        .arg("compare")
        .arg(&r)
        .arg(&d)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("escapes the dump folder") && err.contains("--allow-symlinks"),
        "{err}"
    );
    let o = Command::new(bin())
        .arg("compare")
        .arg(&r)
        .arg(&d)
        .arg("--allow-symlinks")
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

// ---- outputs ----------------------------------------------------------------------------------

#[test]
fn concurrent_runs_writing_different_outputs_do_not_interfere() {
    let dir = tempfile::tempdir().unwrap();
    let run = |dev: &str, out: &str| {
        Command::new(bin())
            .arg("compare")
            .arg(llama("cpu_fp32"))
            .arg(llama(dev))
            .arg("--json")
            .arg(dir.path().join(format!("{out}.json")))
            .arg("--csv")
            .arg(dir.path().join(format!("{out}.csv")))
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut a = run("cuda_fp16_fault_silu_l1", "a");
    let mut b = run("cpu_fp32_rerun", "b");
    assert!(a.wait().unwrap().success());
    assert!(b.wait().unwrap().success());
    let read = |n: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.path().join(n)).unwrap()).unwrap()
    };
    let (ja, jb) = (read("a.json"), read("b.json"));
    assert_eq!(
        ja["analysis"]["first_divergence"]["tensor"],
        "Functional.silu.1.forward.output.0"
    );
    assert_ne!(ja, jb);
    assert_eq!(ja["pairs"].as_array().unwrap().len(), 415);
    assert_eq!(jb["pairs"].as_array().unwrap().len(), 415);
    // Only the four outputs: no temporary file left behind.
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["a.csv", "a.json", "b.csv", "b.json"]);
}
