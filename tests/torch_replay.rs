//! The `torch` feature's replay: ATen operators called by name through libtorch in float64.
//! Built and run by `tests/torch/run.sh` (CI), which provides libtorch; the default build
//! compiles this file to nothing.
#![cfg(feature = "torch")]

use crate::common;

use driftscope::dump::{DType, Dump};
use driftscope::replay::{self, rel_l2, torch, Arg, Arr, Call, ReplayVerdict, Side};
use ndarray::{ArrayD, IxDyn};

fn dump(run: &str) -> Dump {
    common::open(&common::llama(run))
}

fn first_output(call: &Call) -> &Arr {
    call.output()
        .unwrap_or_else(|| panic!("{}: no output tensor", call.name))
}

/// Every call of the llama dumps goes through libtorch by its recorded name and arguments and
/// gives what the pure-Rust ops give (both float64), on the fp32 reference and the fp16 device.
#[test]
fn libtorch_agrees_with_the_pure_rust_ops_on_every_llama_call() {
    for run in ["cpu_fp32", "cuda_fp16"] {
        let d = dump(run);
        let side = Side::new(&d).unwrap();
        let mut through_libtorch = 0;
        for place in side.places() {
            let call = side.call(&place).unwrap();
            let pure = replay::recompute(&call).unwrap_or_else(|e| panic!("{place}: {e}"));
            let (got, schema) =
                torch::recompute(&call).unwrap_or_else(|e| panic!("{run} {place}: {e}"));
            let e = rel_l2(&got, &pure).unwrap();
            assert!(e <= 1e-12, "{run} {place} ({schema}): {e}");
            through_libtorch += 1;
        }
        assert_eq!(through_libtorch, 158, "{run}");
    }
}

/// The two checks, with libtorch doing the float64 recomputation.
#[test]
fn libtorch_replay_finds_the_faulty_silu_and_passes_a_clean_fp16_linear() {
    let own = |run: &str, place: &str| {
        let d = dump(run);
        let call = Side::new(&d).unwrap().call(place).unwrap();
        let (want, schema) = torch::recompute(&call).unwrap();
        (rel_l2(&first_output(&call).data, &want).unwrap(), schema)
    };
    let (dev, schema) = own("cuda_fp16_fault_silu_l1", "Functional.silu.1.forward");
    assert!(schema.starts_with("aten::silu("), "{schema}");
    assert!(dev > 1e-2, "device own error {dev}");
    let (refe, _) = own("cpu_fp32", "Functional.silu.1.forward");
    assert!(refe < 1e-6, "reference own error {refe}");
    let (lin, schema) = own("cuda_fp16", "Functional.linear.0.forward");
    assert!(schema.starts_with("aten::linear("), "{schema}");
    assert!(lin > 0.0 && lin < 16.0 * 2f64.powi(-11), "{lin}");
}

// Deterministic inputs without a random crate: a small LCG in [-1, 1).
fn data(shape: &[usize], seed: u64) -> ArrayD<f64> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ArrayD::from_shape_fn(IxDyn(shape), |_| {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    })
}

fn t(shape: &[usize], seed: u64) -> Arg {
    Arg::Tensor(Arr {
        data: data(shape, seed),
        dtype: DType::Float32,
    })
}

fn typed(a: ArrayD<f64>, dtype: DType) -> Arg {
    Arg::Tensor(Arr { data: a, dtype })
}

fn ints(v: &[i64]) -> Arg {
    Arg::List(v.iter().map(|&i| Arg::Int(i)).collect())
}

fn call(name: &str, args: Vec<Arg>, kwargs: Vec<(&str, Arg)>) -> Call {
    Call {
        name: name.to_string(),
        op: driftscope::dump::msprobe::op_type(name).unwrap(),
        args,
        kwargs: kwargs
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        outputs: Vec::new(),
    }
}

/// The pure-Rust ops the bundled dumps do not exercise, against libtorch on generated inputs,
/// with the arguments each op reads (both sides float64).
#[test]
fn pure_rust_ops_match_libtorch_on_generated_inputs() {
    let bool_mask = typed(
        data(&[2, 2, 5, 7], 9).mapv(|x| (x > -0.3) as u8 as f64),
        DType::Bool,
    );
    let ids = typed(
        ArrayD::from_shape_vec(IxDyn(&[2, 3]), vec![0., 4., 2., 2., 1., 3.]).unwrap(),
        DType::Int64,
    );
    let cases = vec![
        call("Functional.gelu.0.forward", vec![t(&[3, 17], 1)], vec![]),
        call(
            "Functional.gelu.1.forward",
            vec![t(&[3, 17], 2)],
            vec![("approximate", Arg::Str("tanh".into()))],
        ),
        call("Functional.relu.0.forward", vec![t(&[4, 9], 3)], vec![]),
        call(
            "Functional.log_softmax.0.forward",
            vec![t(&[4, 9], 4)],
            vec![("dim", Arg::Int(0))],
        ),
        call(
            "Tensor.softmax.0.forward",
            vec![t(&[2, 3, 5], 5), Arg::Int(-1)],
            vec![],
        ),
        call(
            "Functional.layer_norm.0.forward",
            vec![t(&[2, 3, 8], 6), ints(&[8]), t(&[8], 7), t(&[8], 8)],
            vec![("eps", Arg::Float(1e-5))],
        ),
        call(
            "Functional.layer_norm.1.forward",
            vec![t(&[2, 3, 8], 10), ints(&[3, 8])],
            vec![],
        ),
        call(
            "Functional.rms_norm.0.forward",
            vec![t(&[2, 3, 8], 11), ints(&[8]), t(&[8], 12)],
            vec![("eps", Arg::Float(1e-6))],
        ),
        // No eps: torch uses float32's eps for a float32 input (not float64's).
        call(
            "Functional.rms_norm.1.forward",
            vec![t(&[2, 8], 13), ints(&[8])],
            vec![],
        ),
        call(
            "Functional.conv2d.0.forward",
            vec![t(&[2, 4, 9, 8], 14), t(&[6, 4, 3, 3], 15), t(&[6], 16)],
            vec![("stride", Arg::Int(2)), ("padding", Arg::Int(1))],
        ),
        call(
            "Functional.conv2d.1.forward",
            vec![t(&[1, 4, 9, 8], 17), t(&[6, 2, 3, 2], 18)],
            vec![
                ("padding", Arg::Str("same".into())),
                ("dilation", ints(&[2, 1])),
                ("groups", Arg::Int(2)),
            ],
        ),
        call(
            "Functional.conv2d.2.forward",
            vec![t(&[4, 7, 7], 19), t(&[3, 4, 3, 3], 20), Arg::None],
            vec![
                ("stride", ints(&[1, 2])),
                ("padding", Arg::Str("valid".into())),
            ],
        ),
        call(
            "Functional.scaled_dot_product_attention.0.forward",
            vec![
                t(&[2, 2, 5, 4], 21),
                t(&[2, 2, 7, 4], 22),
                t(&[2, 2, 7, 4], 23),
            ],
            vec![("attn_mask", bool_mask)],
        ),
        call(
            "Functional.scaled_dot_product_attention.1.forward",
            vec![
                t(&[2, 2, 6, 4], 24),
                t(&[2, 2, 6, 4], 25),
                t(&[2, 2, 6, 4], 26),
            ],
            vec![("is_causal", Arg::Bool(true)), ("scale", Arg::Float(0.3))],
        ),
        call(
            "Functional.scaled_dot_product_attention.2.forward",
            vec![
                t(&[1, 4, 5, 4], 27),
                t(&[1, 2, 5, 4], 28),
                t(&[1, 2, 5, 4], 29),
                t(&[5, 5], 30),
            ],
            vec![("enable_gqa", Arg::Bool(true))],
        ),
        call(
            "Functional.embedding.0.forward",
            vec![ids, t(&[5, 3], 31)],
            vec![],
        ),
        call(
            "Torch.matmul.0.forward",
            vec![t(&[7], 32), t(&[2, 7, 3], 33)],
            vec![],
        ),
        call(
            "Functional.linear.0.forward",
            vec![t(&[2, 3, 6], 34), t(&[4, 6], 35)],
            vec![],
        ),
        call(
            "Torch.add.0.forward",
            vec![t(&[3, 1], 36), t(&[1, 4], 37)],
            vec![("alpha", Arg::Float(0.5))],
        ),
        call(
            "Tensor.__rsub__.0.forward",
            vec![t(&[3, 4], 38), Arg::Float(2.0)],
            vec![],
        ),
        call(
            "Tensor.div.0.forward",
            vec![t(&[3, 4], 39), t(&[4], 40)],
            vec![],
        ),
        call(
            "Tensor.mean.0.forward",
            vec![t(&[3, 4, 5], 41), ints(&[0, 2])],
            vec![("keepdim", Arg::Bool(true))],
        ),
        call("Torch.tanh.0.forward", vec![t(&[10], 42)], vec![]),
    ];
    for c in &cases {
        let pure = replay::recompute(c).unwrap_or_else(|e| panic!("{}: {e}", c.name));
        let (got, schema) = torch::recompute(c).unwrap_or_else(|e| panic!("{}: {e}", c.name));
        let e = rel_l2(&got, &pure).unwrap();
        assert!(e <= 1e-12, "{} ({schema}): rel L2 {e}", c.name);
    }
}

fn close(a: &ArrayD<f64>, b: &ArrayD<f64>) {
    assert_eq!(a.shape(), b.shape());
    let e = rel_l2(a, b).unwrap();
    assert!(e <= 1e-14, "rel L2 {e}: {a} vs {b}");
}

fn torch_only(c: &Call) -> ArrayD<f64> {
    assert!(
        replay::recompute_by(c)
            .map(|(_, by)| by != "driftscope")
            .unwrap_or(false),
        "{} should need libtorch",
        c.name
    );
    torch::recompute(c)
        .unwrap_or_else(|e| panic!("{}: {e}", c.name))
        .0
}

/// Ops outside the pure-Rust list, found by name, with Python's argument conventions (varargs,
/// keyword `input`, reversed operators, F.batch_norm's order), checked against closed forms.
#[test]
fn ops_outside_the_pure_rust_list_replay_by_name() {
    let x = data(&[3, 4], 50);
    let xa = || t(&[3, 4], 50);

    let got = torch_only(&call("Torch.erf.0.forward", vec![xa()], vec![]));
    close(&got, &x.mapv(libm::erf));

    let got = torch_only(&call(
        "Tensor.clamp.0.forward",
        vec![xa()],
        vec![("min", Arg::Float(-0.5)), ("max", Arg::Float(0.5))],
    ));
    close(&got, &x.mapv(|v| v.clamp(-0.5, 0.5)));

    let got = torch_only(&call(
        "Tensor.view.0.forward",
        vec![xa(), Arg::Int(2), Arg::Int(6)],
        vec![],
    ));
    close(
        &got,
        &x.clone().into_shape_with_order(IxDyn(&[2, 6])).unwrap(),
    );

    let got = torch_only(&call(
        "Torch.cumsum.0.forward",
        vec![],
        vec![("input", xa()), ("dim", Arg::Int(1))],
    ));
    let mut want = x.clone();
    for mut row in want.rows_mut() {
        let mut acc = 0.0;
        for v in row.iter_mut() {
            acc += *v;
            *v = acc;
        }
    }
    close(&got, &want);

    // Pure Rust has it too; here the reversed operator goes through ATen's pow(Scalar, Tensor).
    let (got, schema) = torch::recompute(&call(
        "Tensor.__rpow__.0.forward",
        vec![xa(), Arg::Float(2.0)],
        vec![],
    ))
    .unwrap();
    assert!(schema.starts_with("aten::pow.Scalar("), "{schema}");
    close(&got, &x.mapv(|v| 2f64.powf(v)));

    // Casts are exact in a float64 replay; integer casts truncate as torch does.
    let got = torch_only(&call(
        "Tensor.to.0.forward",
        vec![xa(), Arg::Str("torch.float16".into())],
        vec![],
    ));
    close(&got, &x);
    let got = torch_only(&call("Tensor.half.0.forward", vec![xa()], vec![]));
    close(&got, &x);
    let got = torch_only(&call("Tensor.long.0.forward", vec![xa()], vec![]));
    close(&got, &x.mapv(f64::trunc));

    // F.elu(input, alpha, inplace): a positional `inplace` is not ATen's `scale`.
    let got = torch_only(&call(
        "Functional.elu.0.forward",
        vec![xa(), Arg::Float(0.7), Arg::Bool(false)],
        vec![],
    ));
    close(
        &got,
        &x.mapv(|v| if v > 0.0 { v } else { 0.7 * v.exp_m1() }),
    );

    // F.batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps).
    let (rm, rv) = (data(&[4], 51), data(&[4], 52).mapv(|v| v.abs() + 0.5));
    let (w, b) = (data(&[4], 53), data(&[4], 54));
    let f32a = |a: &ArrayD<f64>| typed(a.clone(), DType::Float32);
    let bn = call(
        "Functional.batch_norm.0.forward",
        vec![
            xa(),
            f32a(&rm),
            f32a(&rv),
            f32a(&w),
            f32a(&b),
            Arg::Bool(false),
            Arg::Float(0.1),
            Arg::Float(1e-5),
        ],
        vec![],
    );
    let want = ArrayD::from_shape_fn(IxDyn(&[3, 4]), |i| {
        let c = i[1];
        (x[[i[0], c]] - rm[c]) / (rv[c] + 1e-5).sqrt() * w[c] + b[c]
    });
    // libtorch binds F.batch_norm's argument order; the pure-Rust replay (which runs first
    // now) agrees with both.
    close(&torch::recompute(&bn).unwrap().0, &want);
    close(&replay::recompute(&bn).unwrap(), &want);

    // An `Aten.*` record names its overload.
    let (m1, m2, bias) = (data(&[3, 5], 55), data(&[5, 4], 56), data(&[4], 57));
    let got = torch_only(&call(
        "Aten.addmm.default.0.forward",
        vec![f32a(&bias), f32a(&m1), f32a(&m2)],
        vec![],
    ));
    let want = ArrayD::from_shape_fn(IxDyn(&[3, 4]), |i| {
        bias[i[1]] + (0..5).map(|k| m1[[i[0], k]] * m2[[k, i[1]]]).sum::<f64>()
    });
    close(&got, &want);
}

/// What cannot be recomputed faithfully is refused with the reason, never guessed.
#[test]
fn calls_libtorch_cannot_replay_faithfully_are_refused() {
    let refused = |c: Call, expect: &str| {
        let why = torch::recompute(&c)
            .err()
            .unwrap_or_else(|| panic!("{} ran", c.name));
        assert!(why.contains(expect), "{}: {why}", c.name);
    };
    refused(
        call("Torch.rand_like.0.forward", vec![t(&[3], 1)], vec![]),
        "random",
    );
    refused(
        call(
            "Functional.dropout.0.forward",
            vec![t(&[3], 1)],
            vec![("p", Arg::Float(0.5)), ("training", Arg::Bool(true))],
        ),
        "random",
    );
    refused(
        call("Torch.no_such_op.0.forward", vec![t(&[3], 1)], vec![]),
        "no ATen operator named `aten::no_such_op`",
    );
    refused(
        call("NPU.npu_rms_norm.0.forward", vec![t(&[3], 1)], vec![]),
        "no CPU implementation",
    );
    refused(
        call(
            "Functional.interpolate.0.forward",
            vec![t(&[1, 1, 3], 1)],
            vec![],
        ),
        "Python composition",
    );
    refused(
        call(
            "Tensor.__getitem__.0.forward",
            vec![t(&[3], 1), Arg::Other("slice".into())],
            vec![],
        ),
        "no ATen counterpart",
    );
    // A string where cumsum takes an int: no overload binds, and each one says why.
    refused(
        call(
            "Torch.cumsum.0.forward",
            vec![t(&[3], 1), Arg::Str("x".into())],
            vec![],
        ),
        "no overload of `aten::cumsum` takes the recorded arguments",
    );
    // F.embedding's max_norm rewrites the weight before the lookup.
    let ids = typed(ArrayD::from_elem(IxDyn(&[2]), 1.0), DType::Int64);
    refused(
        call(
            "Functional.embedding.0.forward",
            vec![ids, t(&[3, 2], 2)],
            vec![("max_norm", Arg::Float(1.0))],
        ),
        "max_norm",
    );
}

/// `replay --all --json` on the fault run reports what recomputed each call.
#[test]
fn cli_reports_which_engine_replayed_each_call() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("replay.json");
    let st = std::process::Command::new(common::bin())
        .arg("replay")
        .arg(common::llama("cuda_fp16_fault_silu_l1"))
        .arg("--reference")
        .arg(common::llama("cpu_fp32"))
        .args(["--at", "Functional.silu.1.forward", "--json"])
        .arg(&json)
        .status()
        .unwrap();
    assert!(st.success());
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let c = &v["calls"][0];
    assert_eq!(c["verdict"], "wrong_on_device");
    assert_eq!(c["replayed_by"], "driftscope");
}

fn ops_zoo(run: &str) -> Dump {
    common::open(
        &std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("reference_dumps/ops/msprobe")
            .join(run),
    )
}

/// Every call of the ops zoo (reference_dumps/ops), the ops outside the pure-Rust list
/// included, through libtorch by name against torch's recorded float32 output; on the bfloat16
/// run the whole replay finds nothing wrong on the device and says which engine ran.
#[test]
fn every_ops_zoo_call_replays_through_libtorch() {
    let r = ops_zoo("cpu_fp32");
    let rs = Side::new(&r).unwrap();
    let places = rs.places();
    assert_eq!(places.len(), 29);
    for place in &places {
        let call = rs.call(place).unwrap();
        let (want, schema) = torch::recompute(&call).unwrap_or_else(|e| panic!("{place}: {e}"));
        let out = first_output(&call);
        let e = rel_l2(&out.data, &want).unwrap();
        assert!(
            e < 1e-5,
            "{place} ({schema}): rel L2 {e} against torch's output"
        );
    }

    let d = ops_zoo("cpu_bf16");
    let ds = Side::new(&d).unwrap();
    let rep = replay::replay(&ds, Some(&rs), &[]);
    assert_eq!((rep.replayed, rep.not_replayable), (29, 0));
    let mut by_libtorch = Vec::new();
    for c in &rep.calls {
        assert!(
            matches!(c.verdict, ReplayVerdict::Ok | ReplayVerdict::Inherited),
            "{c:?}"
        );
        let by = c.replayed_by.as_deref().unwrap();
        if let Some(schema) = by.strip_prefix("libtorch ") {
            by_libtorch.push(schema.split('(').next().unwrap().to_string());
        }
    }
    by_libtorch.sort();
    assert_eq!(
        by_libtorch,
        [
            "aten::addmm",
            "aten::clamp",
            "aten::cumsum",
            "aten::erf",
            "aten::group_norm",
            "aten::hardtanh",
            "aten::leaky_relu",
            "aten::max_pool2d",
            "aten::transpose.int",
            "aten::view",
        ]
    );
}
