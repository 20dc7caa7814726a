//! Sharded multi-rank runs (`compare --part/--shard`, `merge`) and the cross-rank first
//! divergence, on multi-rank dumps built from the real llama runs: every rank ends with a real
//! `Distributed.all_reduce` (inputs: that rank's last linear output; output: the sum over the
//! ranks), and on the candidate one rank's input to it is perturbed.

use crate::common;
use common::*;
use driftscope::dump::DType;
use std::path::Path;
use std::process::Command;

const RANKS: u32 = 4;
const BAD_RANK: u32 = 2;
const LAST: &str = "Functional.linear.28.forward.output.0";
const AR: &str = "Distributed.all_reduce.0.forward";

/// msprobe's tensor record for `x` (its statistics recomputed) stored in `file`.
fn record(dtype: &str, shape: &[usize], x: &[f32], file: &str) -> serde_json::Value {
    let n = x.len() as f64;
    let f = |v: f64| serde_json::json!(v);
    serde_json::json!({
        "type": "torch.Tensor",
        "dtype": dtype,
        "shape": shape,
        "Max": f(x.iter().fold(f64::MIN, |m, v| m.max(*v as f64))),
        "Min": f(x.iter().fold(f64::MAX, |m, v| m.min(*v as f64))),
        "Mean": f(x.iter().map(|v| *v as f64).sum::<f64>() / n),
        "Norm": f(x.iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt()),
        "requires_grad": false,
        "data_name": file,
    })
}

/// Writes `x` (rounded to the run's dtype) as an `.npy` tensor file of the rank.
fn save(rank_dir: &Path, file: &str, dtype: DType, shape: &[usize], x: &[f32]) {
    let bytes: Vec<u8> = match dtype {
        DType::Float16 => x
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect(),
        _ => x.iter().flat_map(|v| v.to_le_bytes()).collect(),
    };
    std::fs::write(
        rank_dir.join("dump_tensor_data").join(file),
        npy_bytes(dtype, shape, &bytes),
    )
    .unwrap();
}

/// One side: `runs[k]` copied as `rankk`, each ending with the all_reduce of the ranks' last
/// linear outputs; `perturb` scales rank `BAD_RANK`'s input to it by up to ±20%.
fn side(root: &Path, runs: &[&str], perturb: bool) {
    let mut inputs = Vec::new();
    let mut meta = None;
    for (k, run) in runs.iter().enumerate() {
        let d = root.join(format!("step0/rank{k}"));
        copy_dir(&proc_dir(run), &d);
        let dump = open(&d);
        let e = dump.entries.iter().find(|e| &*e.name == LAST).unwrap();
        let mut x: Vec<f32> = dump
            .load(e)
            .unwrap()
            .to_f64_vec()
            .iter()
            .map(|v| *v as f32)
            .collect();
        if perturb && k as u32 == BAD_RANK {
            for (i, v) in x.iter_mut().enumerate() {
                *v *= 1.0 + 0.2 * ((i * 7919 % 13) as f32 / 6.0 - 1.0);
            }
        }
        let dtype = e.dtype.unwrap();
        let name = if dtype == DType::Float16 {
            "torch.float16"
        } else {
            "torch.float32"
        };
        meta = Some((dtype, name, e.shape.clone().unwrap()));
        inputs.push(x);
    }
    let (dtype, name, shape) = meta.unwrap();
    let sum: Vec<f32> = (0..inputs[0].len())
        .map(|i| inputs.iter().map(|x| x[i]).sum())
        .collect();
    for (k, x) in inputs.iter().enumerate() {
        let d = root.join(format!("step0/rank{k}"));
        let (fi, fo) = (format!("{AR}.input.0.npy"), format!("{AR}.output.0.npy"));
        save(&d, &fi, dtype, &shape, x);
        save(&d, &fo, dtype, &shape, &sum);
        let p = d.join("dump.json");
        let mut v = driftscope::dump::msprobe::parse_json(&std::fs::read(&p).unwrap()).unwrap();
        v["data"][AR] = serde_json::json!({
            "input_args": [record(name, &shape, x, &fi)],
            "input_kwargs": {"op": {"type": "str", "value": "sum"}},
            "output": [record(name, &shape, &sum, &fo)],
        });
        std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
    }
}

/// reference: `RANKS` copies of cpu_fp32; candidate: `RANKS` copies of the clean fp16 run with
/// rank `BAD_RANK`'s all_reduce input perturbed.
fn fixture() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    side(&t.path().join("ref"), &["cpu_fp32"; RANKS as usize], false);
    side(&t.path().join("dev"), &["cuda_fp16"; RANKS as usize], true);
    t
}

fn run(args: &[&str], env: &[(&str, &str)], dir: &Path) -> (i32, String, String) {
    let o = Command::new(bin())
        .args(args)
        .env_remove("SLURM_ARRAY_TASK_ID")
        .env_remove("JOB_COMPLETION_INDEX")
        .envs(env.iter().copied())
        .current_dir(dir)
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn parts(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join("out"))
        .unwrap()
        .map(|e| format!("out/{}", e.unwrap().file_name().to_string_lossy()))
        .filter(|n| n.starts_with("out/part-"))
        .collect();
    v.sort();
    v
}

#[test]
fn merged_shards_equal_one_machine_and_name_the_rank_that_fed_the_all_reduce() {
    let t = fixture();
    let dir = t.path();
    let (code, out, err) = run(
        &["compare", "ref", "dev", "--json", "single.json"],
        &[],
        dir,
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!(
            "the collective spread it: the inputs of rank(s) {BAD_RANK} carried the error"
        )),
        "{out}"
    );
    // Three shards over four ranks; the last takes its index from Slurm's variable.
    for i in 0..2 {
        let (shard, part) = (format!("{i}/3"), format!("out/part-{i}.json"));
        let (code, _, err) = run(
            &["compare", "ref", "dev", "--shard", &shard, "--part", &part],
            &[],
            dir,
        );
        assert_eq!(code, 0, "{err}");
    }
    let (code, _, err) = run(
        &[
            "compare",
            "ref",
            "dev",
            "--shard",
            "3",
            "--part",
            "out/part-2.json",
        ],
        &[("SLURM_ARRAY_TASK_ID", "2")],
        dir,
    );
    assert_eq!(code, 0, "{err}");
    let merge = |extra: &[&str]| {
        let mut a = vec!["merge", "-o", "merged.json"];
        let p = parts(dir);
        a.extend(p.iter().map(String::as_str));
        a.extend(extra);
        run(&a, &[], dir)
    };
    let (code, out, err) = merge(&[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("merged 3 part(s)"), "{out}");
    let single = std::fs::read(dir.join("single.json")).unwrap();
    assert_eq!(
        std::fs::read(dir.join("merged.json")).unwrap(),
        single,
        "the merged report differs from the single-machine one"
    );
    let v: serde_json::Value = serde_json::from_slice(&single).unwrap();
    let s = &v["summary"];
    assert_eq!(s["collective"]["place"], AR);
    assert_eq!(s["collective"]["carried_by"], serde_json::json!([BAD_RANK]));
    assert_eq!(s["collective"]["received_by"], serde_json::json!([0, 1, 3]));
    assert_eq!(s["first_ranks"], serde_json::json!([0, 1, 2, 3]));
    let bad = s["diverged"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["rank"] == BAD_RANK)
        .unwrap();
    assert_eq!(bad["role"], "input");
    assert_eq!(bad["place"], AR);

    // Rerunning a shard rewrites the same part.
    let before = std::fs::read(dir.join("out/part-1.json")).unwrap();
    let (code, _, err) = run(
        &[
            "compare",
            "ref",
            "dev",
            "--shard",
            "1/3",
            "--part",
            "out/part-1.json",
        ],
        &[],
        dir,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read(dir.join("out/part-1.json")).unwrap(), before);

    // Parts chosen by --ranks instead merge to the same report.
    std::fs::remove_dir_all(dir.join("out")).unwrap();
    for (i, r) in ["0-1", "2,3"].iter().enumerate() {
        let part = format!("out/part-{i}.json");
        let (code, _, err) = run(
            &["compare", "ref", "dev", "--ranks", r, "--part", &part],
            &[],
            dir,
        );
        assert_eq!(code, 0, "{err}");
    }
    let (code, _, err) = merge(&[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read(dir.join("merged.json")).unwrap(), single);

    // A missing part: the merge names its ranks, exits 2 and leaves the old report alone.
    std::fs::remove_file(dir.join("out/part-1.json")).unwrap();
    std::fs::remove_file(dir.join("merged.json")).unwrap();
    let (code, _, err) = merge(&[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("no part covers rank(s) 2-3 (2 of 4 ranks)"),
        "{err}"
    );
    assert!(!dir.join("merged.json").exists());

    // A part made with other options never merges.
    let (code, _, err) = run(
        &[
            "compare",
            "ref",
            "dev",
            "--ranks",
            "2-3",
            "--filter",
            "linear",
            "--part",
            "out/part-1.json",
        ],
        &[],
        dir,
    );
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = merge(&[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("come from different runs: option read differs"),
        "{err}"
    );

    // A truncated part is refused, naming the file.
    let (code, _, err) = run(
        &[
            "compare",
            "ref",
            "dev",
            "--ranks",
            "2-3",
            "--part",
            "out/part-1.json",
        ],
        &[],
        dir,
    );
    assert_eq!(code, 0, "{err}");
    let p = dir.join("out/part-1.json");
    let b = std::fs::read(&p).unwrap();
    std::fs::write(&p, &b[..b.len() - 100]).unwrap();
    let (code, _, err) = merge(&[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("part-1.json") && err.contains("cut short"),
        "{err}"
    );
    assert!(!dir.join("merged.json").exists());

    // A report edited in place (same length, no longer JSON) is refused as it streams into
    // the merged report, and nothing of that report is left behind.
    let (code, _, err) = run(
        &[
            "compare",
            "ref",
            "dev",
            "--ranks",
            "2-3",
            "--part",
            "out/part-1.json",
        ],
        &[],
        dir,
    );
    assert_eq!(code, 0, "{err}");
    let mut b = std::fs::read(&p).unwrap();
    let n = b.len();
    assert_eq!(&b[n - 2..], b"}\n");
    b[n - 2] = b']';
    std::fs::write(&p, &b).unwrap();
    let (code, _, err) = merge(&[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("part-1.json") && err.contains("rank 3 is not valid JSON"),
        "{err}"
    );
    assert!(!dir.join("merged.json").exists());
    assert!(std::fs::read_dir(dir).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with(".tmp")));
}

#[test]
fn overlapping_or_foreign_parts_are_refused() {
    let t = fixture();
    let dir = t.path();
    for (i, r) in ["0-2", "2-3"].iter().enumerate() {
        let part = format!("out/part-{i}.json");
        let (code, _, err) = run(
            &["compare", "ref", "dev", "--ranks", r, "--part", &part],
            &[],
            dir,
        );
        assert_eq!(code, 0, "{err}");
    }
    let (code, _, err) = run(
        &[
            "merge",
            "out/part-0.json",
            "out/part-1.json",
            "-o",
            "m.json",
        ],
        &[],
        dir,
    );
    assert_eq!(code, 2);
    assert!(err.contains("rank 2 is covered by both"), "{err}");
    std::fs::write(dir.join("out/part-1.json"), "{\"rank\": 3}\n").unwrap();
    let (code, _, err) = run(
        &[
            "merge",
            "out/part-0.json",
            "out/part-1.json",
            "-o",
            "m.json",
        ],
        &[],
        dir,
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("part-1.json: not a driftscope part file"),
        "{err}"
    );
    // --ranks naming a rank the run does not have.
    let (code, _, err) = run(
        &[
            "compare", "ref", "dev", "--ranks", "3-5", "--part", "p.json",
        ],
        &[],
        dir,
    );
    assert_eq!(code, 2);
    assert!(err.contains("rank(s) on neither side: 4-5"), "{err}");
    // --shard without an index outside a job array.
    let (code, _, err) = run(
        &["compare", "ref", "dev", "--shard", "2", "--part", "p.json"],
        &[],
        dir,
    );
    assert_eq!(code, 2);
    assert!(err.contains("SLURM_ARRAY_TASK_ID"), "{err}");
}

/// `s` with every `timestamp="..."` (JUnit) or `"date":"..."` (history) value blanked.
fn untimed(s: &str) -> String {
    let re = regex::Regex::new(r#"(timestamp="|"date":")[^"]*""#).unwrap();
    re.replace_all(s, "${1}T\"").into_owned()
}

fn text(dir: &Path, f: &str) -> String {
    std::fs::read_to_string(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"))
}

#[test]
fn merged_check_writes_what_one_machine_writes() {
    let t = fixture();
    let dir = t.path();
    let outputs = |tag: &str| -> Vec<String> {
        [
            "--junit",
            &format!("{tag}.xml"),
            "--markdown",
            &format!("{tag}.md"),
            "--history",
            &format!("{tag}.jsonl"),
            "--html",
            &format!("{tag}.html"),
            "--run-id",
            "nightly-7",
            "--report-url",
            "https://ci.example/run/7",
        ]
        .map(String::from)
        .to_vec()
    };
    let args = |head: &[&str], tail: &[String]| -> Vec<String> {
        head.iter()
            .map(|s| s.to_string())
            .chain(tail.iter().cloned())
            .collect()
    };
    let runv = |a: Vec<String>| run(&a.iter().map(String::as_str).collect::<Vec<_>>(), &[], dir);

    // One machine: every rank diverges at the all_reduce, so the run fails (exit 1).
    let (code, out, err) = runv(args(
        &["check", "ref", "dev", "--json", "single.json"],
        &outputs("single"),
    ));
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("FAIL rank 2:") && out.contains("FAIL: 4 rank(s) checked, 4 failing"),
        "{out}"
    );
    let compared = std::fs::read(dir.join("single.json")).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&compared).unwrap();
    assert_eq!(
        v["summary"]["collective"]["carried_by"],
        serde_json::json!([BAD_RANK])
    );

    let suites = {
        let f = std::io::BufReader::new(std::fs::File::open(dir.join("single.xml")).unwrap());
        junit_parser::from_reader(f).unwrap()
    };
    let names: Vec<&str> = suites.suites.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["rank 0", "rank 1", "rank 2", "rank 3"]);
    assert!(suites.suites.iter().all(|s| s.failures >= 1));
    let md = text(dir, "single.md");
    assert!(
        md.contains("❌ accuracy regression") && md.contains(&format!("| {BAD_RANK} |")),
        "{md}"
    );
    let line: serde_json::Value = serde_json::from_str(text(dir, "single.jsonl").trim()).unwrap();
    assert_eq!(line["passed"], false);
    assert_eq!(line["run_id"], "nightly-7");
    assert_eq!(line["ranks"]["failed"], serde_json::json!([0, 1, 2, 3]));
    assert!(line["rel_l2_err"][AR].as_f64().unwrap() > 0.0);
    let html = text(dir, "single.html");
    assert!(
        html.contains("data:image/png;base64,") && html.contains("id=\"rank3\""),
        "{html}"
    );

    // Two shards of `check`, then the merge: the same files, timestamps aside.
    for i in 0..2 {
        let (shard, part) = (format!("{i}/2"), format!("out/part-{i}.json"));
        let (code, _, err) = run(
            &["check", "ref", "dev", "--shard", &shard, "--part", &part],
            &[],
            dir,
        );
        assert_eq!(code, 1, "{err}");
    }
    let mut m = vec![
        "merge".to_string(),
        "--check".into(),
        "-o".into(),
        "merged.json".into(),
    ];
    m.extend(parts(dir));
    let (code, out, err) = runv(args(
        &m.iter().map(String::as_str).collect::<Vec<_>>(),
        &outputs("merged"),
    ));
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("FAIL: 4 rank(s) checked, 4 failing"), "{out}");
    assert_eq!(std::fs::read(dir.join("merged.json")).unwrap(), compared);
    for ext in ["xml", "md", "jsonl", "html"] {
        assert_eq!(
            untimed(&text(dir, &format!("merged.{ext}"))),
            untimed(&text(dir, &format!("single.{ext}"))),
            "merged.{ext} differs from one machine's"
        );
    }

    // Parts of `compare` judge the same when the config keeps the noise model they used.
    std::fs::remove_dir_all(dir.join("out")).unwrap();
    for r in ["0-1", "2-3"] {
        let part = format!("out/part-{r}.json");
        let (code, _, err) = run(
            &["compare", "ref", "dev", "--ranks", r, "--part", &part],
            &[],
            dir,
        );
        assert_eq!(code, 0, "{err}");
    }
    let p = parts(dir);
    let with = |extra: &[&str]| {
        let mut a = vec!["merge", "-o", "m2.json"];
        a.extend(p.iter().map(String::as_str));
        a.extend(extra);
        run(&a, &[], dir)
    };
    let (code, _, err) = with(&[
        "--check",
        "--markdown",
        "m2.md",
        "--report-url",
        "https://ci.example/run/7",
    ]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(text(dir, "m2.md"), text(dir, "single.md"));
    // A config with another noise model asks for parts compared with it.
    std::fs::write(dir.join("c.toml"), "[noise]\nnoise_factor = 64\n").unwrap();
    let (code, _, err) = with(&["--check", "--config", "c.toml"]);
    assert_eq!(code, 2);
    assert!(err.contains("driftscope check --config"), "{err}");
    // CI outputs without --check are refused before anything is written.
    let (code, _, err) = with(&["--junit", "j.xml"]);
    assert_eq!(code, 2);
    assert!(err.contains("add --check"), "{err}");
    assert!(!dir.join("j.xml").exists());
}

#[test]
fn a_clean_multi_rank_run_passes_its_check() {
    let t = tempfile::tempdir().unwrap();
    side(&t.path().join("ref"), &["cpu_fp32"; RANKS as usize], false);
    side(&t.path().join("dev"), &["cuda_fp16"; RANKS as usize], false);
    let (code, out, err) = run(&["check", "ref", "dev", "--junit", "j.xml"], &[], t.path());
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("PASS: 4 rank(s) checked, 0 failing, 0 failure(s)"),
        "{out}"
    );
    // A baseline is one dump's: refused for a multi-rank run, with the reason.
    let (code, _, err) = run(
        &["check", "ref", "dev", "--baseline", "b.json"],
        &[],
        t.path(),
    );
    assert_eq!(code, 2);
    assert!(err.contains("multi-rank check takes no baseline"), "{err}");
}

/// Node-local disks: each node holds only its ranks' folders. With `--world-size` each node
/// compares what it holds, and the parts merge into the whole run's report.
#[test]
fn node_local_shards_merge_to_the_whole_run_with_world_size() {
    let t = fixture();
    let dir = t.path();
    let (code, _, err) = run(
        &["compare", "ref", "dev", "--json", "single.json"],
        &[],
        dir,
    );
    assert_eq!(code, 0, "{err}");
    let nodes: [(&str, &[u32]); 3] = [("node0", &[0, 1]), ("node1", &[2]), ("node2", &[3])];
    for (node, ranks) in nodes {
        for side in ["ref", "dev"] {
            for k in ranks {
                let rel = format!("{side}/step0/rank{k}");
                copy_dir(&dir.join(&rel), &dir.join(node).join(&rel));
            }
        }
        let part = format!("../out/part-{node}.json");
        let (code, _, err) = run(
            &[
                "compare",
                "ref",
                "dev",
                "--world-size",
                "4",
                "--part",
                &part,
            ],
            &[],
            &dir.join(node),
        );
        assert_eq!(code, 0, "{node}: {err}");
    }
    let mut m = vec!["merge", "-o", "merged.json"];
    let p = parts(dir);
    m.extend(p.iter().map(String::as_str));
    let (code, _, err) = run(&m, &[], dir);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read(dir.join("merged.json")).unwrap(),
        std::fs::read(dir.join("single.json")).unwrap()
    );
    // A rank another node holds is not this node's to compare, nor a missing rank.
    let (code, _, err) = run(
        &[
            "compare",
            "ref",
            "dev",
            "--world-size",
            "4",
            "--ranks",
            "1-2",
            "--part",
            "p.json",
        ],
        &[],
        &dir.join("node0"),
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("rank(s) 2 have no folder under the reference root"),
        "{err}"
    );
    // A folder beyond the declared size.
    let (code, _, err) = run(
        &[
            "compare",
            "ref",
            "dev",
            "--world-size",
            "2",
            "--part",
            "p.json",
        ],
        &[],
        &dir.join("node1"),
    );
    assert_eq!(code, 2);
    assert!(err.contains("beyond --world-size 2"), "{err}");
    // Without node1's part the merge names its rank.
    std::fs::remove_file(dir.join("out/part-node1.json")).unwrap();
    let mut m = vec!["merge", "-o", "merged2.json"];
    let p = parts(dir);
    m.extend(p.iter().map(String::as_str));
    let (code, _, err) = run(&m, &[], dir);
    assert_eq!(code, 2);
    assert!(
        err.contains("no part covers rank(s) 2 (1 of 4 ranks)"),
        "{err}"
    );
}
