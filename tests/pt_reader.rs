//! The `.pt` reader on torch.save files assembled opcode by opcode: strided views, storage
//! offsets, bool, 0-d, empty, bf16, state dicts, NPU-saved tensors, legacy (non-zip) files, and
//! refusals. The real msprobe files are covered by compare_real.rs.

use driftscope::dump::{pt, DType, ErrorKind};
use std::io::Write;

/// A pickle program under construction.
#[derive(Default)]
struct Pickle(Vec<u8>);

impl Pickle {
    fn op(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    fn global(&mut self, module: &str, name: &str) -> &mut Self {
        self.op(format!("c{module}\n{name}\n").as_bytes())
    }
    fn str(&mut self, s: &str) -> &mut Self {
        self.op(b"X")
            .op(&(s.len() as u32).to_le_bytes())
            .op(s.as_bytes())
    }
    fn int(&mut self, i: i32) -> &mut Self {
        self.op(b"J").op(&i.to_le_bytes())
    }
    fn ints(&mut self, v: &[i32]) -> &mut Self {
        self.op(b"(");
        for &i in v {
            self.int(i);
        }
        self.op(b"t")
    }
    /// `_rebuild_*(storage, offset, size, stride, False, OrderedDict()[, extra])`, leaving the
    /// tensor on the stack.
    fn tensor(
        &mut self,
        rebuild: (&str, &str),
        storage: &Storage,
        offset: i32,
        size: &[i32],
        stride: &[i32],
        extra: Option<i32>,
    ) -> &mut Self {
        self.global(rebuild.0, rebuild.1).op(b"((");
        self.str("storage")
            .global("torch", storage.class)
            .str(storage.key)
            .str(storage.location)
            .int(storage.numel);
        self.op(b"tQ")
            .int(offset)
            .ints(size)
            .ints(stride)
            .op(&[0x89]);
        self.global("collections", "OrderedDict").op(b")R");
        if let Some(e) = extra {
            self.int(e);
        }
        self.op(b"tR")
    }
}

struct Storage {
    class: &'static str,
    key: &'static str,
    location: &'static str,
    numel: i32,
}

const V2: (&str, &str) = ("torch._utils", "_rebuild_tensor_v2");

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Writes a torch.save-shaped zip: `archive/data.pkl`, `archive/data/<key>`, byteorder, version.
fn save(
    dir: &std::path::Path,
    name: &str,
    pkl: &[u8],
    storages: &[(&str, Vec<u8>)],
) -> std::path::PathBuf {
    let path = dir.join(name);
    let mut z = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let o =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    z.start_file("archive/data.pkl", o).unwrap();
    z.write_all(pkl).unwrap();
    z.start_file("archive/byteorder", o).unwrap();
    z.write_all(b"little").unwrap();
    for (k, b) in storages {
        z.start_file(format!("archive/data/{k}"), o).unwrap();
        z.write_all(b).unwrap();
    }
    z.start_file("archive/version", o).unwrap();
    z.write_all(b"3\n").unwrap();
    z.finish().unwrap();
    path
}

fn float(numel: i32) -> Storage {
    Storage {
        class: "FloatStorage",
        key: "0",
        location: "cpu",
        numel,
    }
}

#[test]
fn strided_and_offset_views_are_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let data = f32_bytes(&[0., 1., 2., 3., 4., 5.]);
    let mut p = Pickle::default();
    p.op(&[0x80, 2])
        .tensor(V2, &float(6), 0, &[3, 2], &[1, 3], None)
        .op(b".");
    let f = save(dir.path(), "t.pt", &p.0, &[("0", data.clone())]);
    let t = pt::read_single(&f).unwrap();
    assert_eq!(t.tensor.shape, vec![3, 2]);
    assert_eq!(t.tensor.to_f64_vec(), vec![0., 3., 1., 4., 2., 5.]);

    let mut p = Pickle::default();
    p.op(&[0x80, 2])
        .tensor(V2, &float(6), 4, &[2], &[1], None)
        .op(b".");
    let f = save(dir.path(), "o.pt", &p.0, &[("0", data)]);
    assert_eq!(
        pt::read_single(&f).unwrap().tensor.to_f64_vec(),
        vec![4., 5.]
    );
}

#[test]
fn bool_zero_d_empty_and_bf16() {
    let dir = tempfile::tempdir().unwrap();
    // (storage, bytes, size, stride, dtype read, values)
    type Case = (Storage, Vec<u8>, Vec<i32>, Vec<i32>, DType, Vec<f64>);
    let cases: Vec<Case> = vec![
        (
            Storage {
                class: "BoolStorage",
                key: "0",
                location: "cpu",
                numel: 3,
            },
            vec![1, 0, 1],
            vec![3],
            vec![1],
            DType::Bool,
            vec![1., 0., 1.],
        ),
        (
            float(1),
            f32_bytes(&[7.5]),
            vec![],
            vec![],
            DType::Float32,
            vec![7.5],
        ),
        (
            float(0),
            vec![],
            vec![0, 4],
            vec![4, 1],
            DType::Float32,
            vec![],
        ),
        (
            Storage {
                class: "BFloat16Storage",
                key: "0",
                location: "cuda:0",
                numel: 2,
            },
            vec![0x80, 0x3f, 0x00, 0xc0],
            vec![2],
            vec![1],
            DType::Bfloat16,
            vec![1., -2.],
        ),
    ];
    for (i, (st, bytes, size, stride, dtype, want)) in cases.into_iter().enumerate() {
        let mut p = Pickle::default();
        p.op(&[0x80, 2])
            .tensor(V2, &st, 0, &size, &stride, None)
            .op(b".");
        let f = save(dir.path(), &format!("{i}.pt"), &p.0, &[("0", bytes)]);
        let t = pt::read_single(&f).unwrap();
        assert_eq!(t.tensor.dtype, dtype);
        assert_eq!(
            t.tensor.shape,
            size.iter().map(|&d| d as usize).collect::<Vec<_>>()
        );
        assert_eq!(t.tensor.to_f64_vec(), want);
        assert_eq!(t.location, st.location);
    }
}

#[test]
fn npu_saved_tensors_are_read_with_their_format_code() {
    let dir = tempfile::tempdir().unwrap();
    let st = Storage {
        class: "HalfStorage",
        key: "0",
        location: "npu:0",
        numel: 2,
    };
    let mut p = Pickle::default();
    p.op(&[0x80, 2])
        .tensor(
            ("torch_npu.utils.storage", "_rebuild_npu_tensor"),
            &st,
            0,
            &[2],
            &[1],
            Some(29),
        )
        .op(b".");
    let f = save(
        dir.path(),
        "npu.pt",
        &p.0,
        &[("0", vec![0x00, 0x3c, 0x00, 0x40])],
    );
    let t = pt::read_single(&f).unwrap();
    assert_eq!(t.location, "npu:0");
    assert_eq!(t.npu_format, Some(29));
    assert_eq!(t.tensor.to_f64_vec(), vec![1.0, 2.0]);
}

#[test]
fn state_dicts_name_tensors_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = Pickle::default();
    p.op(&[0x80, 2])
        .global("collections", "OrderedDict")
        .op(b")R(");
    p.str("weight")
        .tensor(V2, &float(4), 0, &[2, 2], &[2, 1], None);
    p.str("bias").tensor(V2, &float(4), 2, &[2], &[1], None);
    p.op(b"u.");
    let f = save(
        dir.path(),
        "sd.pt",
        &p.0,
        &[("0", f32_bytes(&[1., 2., 3., 4.]))],
    );
    let v = pt::read(&f).unwrap();
    let keys: Vec<&str> = v.iter().map(|t| t.key.as_str()).collect();
    assert_eq!(keys, ["weight", "bias"]);
    assert_eq!(v[1].tensor.to_f64_vec(), vec![3., 4.]);
}

#[test]
fn legacy_non_zip_files_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut b = Vec::new();
    // magic (a 10-byte long), protocol version, sys info, then the object.
    b.extend_from_slice(&[
        0x80, 2, 0x8a, 10, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, b'.',
    ]);
    b.extend_from_slice(&[0x80, 2, b'M', 0xe9, 0x03, b'.']);
    b.extend_from_slice(&[0x80, 2, b'}', b'.']);
    let mut p = Pickle::default();
    p.op(&[0x80, 2])
        .global("torch._utils", "_rebuild_tensor")
        .op(b"((");
    p.str("storage")
        .global("torch", "FloatStorage")
        .str("94")
        .str("cpu")
        .int(3)
        .op(b"N");
    p.op(b"tQ").int(0).ints(&[3]).ints(&[1]).op(b"tR.");
    b.extend_from_slice(&p.0);
    let mut keys = Pickle::default();
    keys.op(&[0x80, 2, b'(']).str("94").op(b"l.");
    b.extend_from_slice(&keys.0);
    b.extend_from_slice(&3u64.to_le_bytes());
    b.extend_from_slice(&f32_bytes(&[1.5, 2.5, 3.5]));
    let f = dir.path().join("legacy.pt");
    std::fs::write(&f, b).unwrap();
    assert_eq!(
        pt::read_single(&f).unwrap().tensor.to_f64_vec(),
        vec![1.5, 2.5, 3.5]
    );
}

#[test]
fn refusals_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    // A view reaching past its storage.
    let mut p = Pickle::default();
    p.op(&[0x80, 2])
        .tensor(V2, &float(4), 2, &[4], &[1], None)
        .op(b".");
    let f = save(
        dir.path(),
        "oob.pt",
        &p.0,
        &[("0", f32_bytes(&[1., 2., 3., 4.]))],
    );
    assert!(matches!(
        pt::read(&f).unwrap_err().kind,
        ErrorKind::Bounds(_)
    ));
    // A storage that declares more elements than its bytes hold.
    let mut p = Pickle::default();
    p.op(&[0x80, 2])
        .tensor(V2, &float(1000), 0, &[4], &[1], None)
        .op(b".");
    let f = save(
        dir.path(),
        "short.pt",
        &p.0,
        &[("0", f32_bytes(&[1., 2., 3., 4.]))],
    );
    assert!(matches!(
        pt::read(&f).unwrap_err().kind,
        ErrorKind::Truncated(_)
    ));
    // A missing storage entry.
    let mut p = Pickle::default();
    p.op(&[0x80, 2])
        .tensor(V2, &float(4), 0, &[4], &[1], None)
        .op(b".");
    let f = save(dir.path(), "nostorage.pt", &p.0, &[]);
    let e = pt::read(&f).unwrap_err();
    assert!(
        e.to_string()
            .contains("missing storage entry archive/data/0"),
        "{e}"
    );
    // A global outside the whitelist, named in the error.
    let mut p = Pickle::default();
    p.op(&[0x80, 2])
        .global("builtins", "eval")
        .str("1+1")
        .op(&[0x85, b'R', b'.']);
    let f = save(dir.path(), "evil.pt", &p.0, &[]);
    let e = pt::read(&f).unwrap_err();
    assert!(
        e.to_string().contains("builtins.eval") && e.to_string().contains("evil.pt"),
        "{e}"
    );
    // Not a torch file at all.
    let f = dir.path().join("junk.pt");
    std::fs::write(&f, b"hello").unwrap();
    assert!(pt::read(&f).is_err());
}

#[test]
fn small_and_large_files_read_alike_and_a_cut_file_never_reads_as_whole() {
    // A file that ends within the first read takes no `stat`; one up to 256 KiB is measured
    // and read on; a larger one is mapped. The same tensor each way, with an offset view into
    // the storage; and a file cut anywhere is refused (the zip's directory sits at its end).
    let dir = tempfile::tempdir().unwrap();
    for (numel, lo, hi) in [
        (6usize, 0, 64 << 10),
        (30_000, 64 << 10, 256 << 10),
        (100_000, 256 << 10, usize::MAX),
    ] {
        let values: Vec<f32> = (0..numel).map(|i| i as f32 * 0.5).collect();
        let mut p = Pickle::default();
        p.op(&[0x80, 2])
            .tensor(V2, &float(numel as i32), 2, &[numel as i32 - 2], &[1], None)
            .op(b".");
        let name = format!("t{numel}.pt");
        let f = save(dir.path(), &name, &p.0, &[("0", f32_bytes(&values))]);
        let whole = std::fs::read(&f).unwrap();
        assert!((lo..hi).contains(&whole.len()), "{} bytes", whole.len());
        let t = pt::read_single(&f).unwrap().tensor;
        let want: Vec<f64> = values[2..].iter().map(|&v| v as f64).collect();
        assert_eq!(t.to_f64_vec(), want);
        for cut in [1, 4, whole.len() / 2, whole.len() - 22, whole.len() - 1] {
            let c = dir.path().join(format!("cut{cut}_{name}"));
            std::fs::write(&c, &whole[..cut]).unwrap();
            assert!(pt::read_single(&c).is_err(), "{name} cut at {cut} was read");
        }
    }
}
