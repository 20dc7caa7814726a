//! The `driftscope` binary as a user runs it: outputs, exit codes, bad input.

use crate::common;
use common::*;
use std::process::Command;

fn run(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(bin()).args(args).output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn s(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

/// `driftscope compare REFERENCE CANDIDATE --json OUT`, run as [`run`] does.
fn compare_json(
    reference: &std::path::Path,
    candidate: &std::path::Path,
    out: &str,
) -> (i32, String, String) {
    run(&["compare", s(reference), s(candidate), "--json", out])
}

#[test]
fn compare_writes_json_and_csv_and_names_the_fault() {
    let dir = tempfile::tempdir().unwrap();
    let (j, c) = (dir.path().join("r.json"), dir.path().join("r.csv"));
    let (code, out, _) = run(&[
        "compare",
        s(&llama("cpu_fp32")),
        s(&llama("cuda_fp16_fault_silu_l1")),
        "--json",
        s(&j),
        "--csv",
        s(&c),
    ]);
    assert_eq!(code, 0);
    assert!(
        out.contains("diverged (own_error): first at Functional.silu.1.forward"),
        "{out}"
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&j).unwrap()).unwrap();
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["pairs"].as_array().unwrap().len(), 415);
    let p = &v["pairs"][0];
    for k in [
        "name",
        "role",
        "index",
        "dtype_ref",
        "dtype_dev",
        "shape_ref",
        "shape_dev",
        "cosine",
        "max_abs_err",
        "rel_l2_err",
        "max_rel_err",
        "verdict",
    ] {
        assert!(p.get(k).is_some(), "pair lacks {k}");
    }
    assert_eq!(
        v["analysis"]["first_divergence"]["tensor"],
        "Functional.silu.1.forward.output.0"
    );
    let csv = std::fs::read_to_string(&c).unwrap();
    assert_eq!(csv.lines().count(), 416);
    assert!(csv.starts_with("NPU Name,Bench Name,"));
}

/// Two runs on the same input write the same JSON byte for byte (apart from the tool version
/// line): reports are diffed and kept as baselines. `counts` used to follow a HashMap's order.
#[test]
fn json_report_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let mut texts = Vec::new();
    for i in 0..3 {
        let j = dir.path().join(format!("r{i}.json"));
        let (code, _, _) =
            compare_json(&llama("cpu_fp32"), &llama("cuda_fp16_fault_silu_l1"), s(&j));
        assert_eq!(code, 0);
        let text = std::fs::read_to_string(&j).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert!(v["analysis"]["counts"].as_object().unwrap().len() >= 2);
        texts.push(
            text.lines()
                .filter(|l| !l.contains("tool_version"))
                .collect::<Vec<_>>()
                .join("\n"),
        );
    }
    assert!(texts.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn only_failing_and_filter_narrow_the_table() {
    let (code, out, _) = run(&[
        "compare",
        s(&llama("cpu_fp32")),
        s(&llama("cuda_fp16_fault_silu_l1")),
        "--only-failing",
        "--filter",
        "silu",
    ]);
    assert_eq!(code, 0);
    let rows: Vec<&str> = out.lines().skip(1).take_while(|l| !l.is_empty()).collect();
    assert!(!rows.is_empty());
    assert!(
        rows.iter()
            .all(|r| r.contains("silu") || r.starts_with("    ")),
        "{rows:?}"
    );
}

/// The table rows of `compare`'s output: from the header to the first blank line.
fn table_rows(out: &str) -> Vec<&str> {
    out.lines().skip(1).take_while(|l| !l.is_empty()).collect()
}

#[test]
fn compare_prints_the_rows_that_matter_by_default_and_every_row_with_all() {
    let (r, d) = (llama("cpu_fp32"), llama("cuda_fp16_fault_silu_l1"));
    let args = ["compare", s(&r), s(&d)];
    let (code, out, _) = run(&args);
    assert_eq!(code, 0);
    let rows = table_rows(&out);
    assert!(rows.len() <= 40, "{} rows", rows.len());
    let fault = rows
        .iter()
        .find(|r| r.starts_with("Functional.silu.1.forward.output.0 "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(fault.ends_with("diverged"), "{fault}");
    // Nothing that merely passes is shown unless it is among the 10 worst.
    assert!(rows.iter().filter(|r| r.ends_with(" ok")).count() <= 10);
    assert!(out.contains("--all prints all 415 rows"), "{out}");
    assert!(out.contains("shown 40;"), "{out}");

    let (code, out, _) = run(&[args[0], args[1], args[2], "--all"]);
    assert_eq!(code, 0);
    assert_eq!(table_rows(&out).len(), 415);
    assert!(!out.contains("--all prints"));
}

#[test]
fn long_names_are_shortened_in_the_middle_and_the_table_stays_aligned() {
    let m = |r: &str| h200(&format!("mobilenet/msprobe/{r}"));
    let (code, out, _) = run(&["compare", s(&m("cpu_fp32")), s(&m("cuda_fp16")), "--all"]);
    assert_eq!(code, 0);
    let rows = table_rows(&out);
    assert!(rows.len() > 300);
    let cut: Vec<&&str> = rows.iter().filter(|r| r.contains('…')).collect();
    assert!(!cut.is_empty());
    // Both ends of a shortened name are kept: the module path start and the tensor role.
    assert!(cut.iter().all(|r| r.starts_with("Module.")), "{cut:?}");
    // The verdict column starts at the same character in every row.
    let verdict_at = |r: &str| r.trim_end().rsplit_once(' ').unwrap().0.chars().count();
    let at = verdict_at(rows[0]);
    assert!(rows.iter().all(|r| verdict_at(r) == at), "{rows:?}");
}

#[test]
fn bisect_reports_read_count() {
    let (code, out, _) = run(&[
        "bisect",
        s(&llama("cpu_fp32")),
        s(&llama("cuda_fp16_fault_silu_l1")),
    ]);
    assert_eq!(code, 0);
    assert!(
        out.contains("first divergence: Functional.silu.1.forward"),
        "{out}"
    );
    assert!(out.contains("of 415 tensor pairs"), "{out}");
}

/// Copies a run so a test can break it without touching the bundled dumps.
fn copy_run(run: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let proc = llama_rank(run);
    let dst = dir.path().join("step0/proc0");
    std::fs::create_dir_all(dst.join("dump_tensor_data")).unwrap();
    for f in ["dump.json", "stack.json"] {
        std::fs::copy(proc.join(f), dst.join(f)).unwrap();
    }
    for e in std::fs::read_dir(proc.join("dump_tensor_data")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join("dump_tensor_data").join(e.file_name())).unwrap();
    }
    dir
}

#[test]
fn truncated_tensor_file_is_reported_by_file_and_entry_with_exit_2() {
    let d = copy_run("cuda_fp16");
    let f = d
        .path()
        .join("step0/proc0/dump_tensor_data/Functional.silu.1.forward.output.0.pt");
    let len = std::fs::metadata(&f).unwrap().len();
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..(len / 2) as usize]).unwrap();
    let (code, out, err) = run(&["compare", s(&llama("cpu_fp32")), s(d.path())]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("Functional.silu.1.forward.output.0"), "{err}");
    assert!(err.contains(".pt"), "{err}");
    // The unreadable pair is among the rows shown by default; the rest was still compared.
    assert!(out.contains("Functional.silu.1.forward.output.0"), "{out}");
    assert!(out.contains("pairs: 415 (414 compared)"), "{out}");
}

#[test]
fn missing_tensor_file_and_missing_dump_exit_2() {
    let d = copy_run("cuda_fp16");
    std::fs::remove_file(
        d.path()
            .join("step0/proc0/dump_tensor_data/Functional.linear.3.forward.output.0.pt"),
    )
    .unwrap();
    let (code, _, err) = run(&["compare", s(&llama("cpu_fp32")), s(d.path())]);
    assert_eq!(code, 2);
    assert!(
        err.contains("Functional.linear.3.forward.output.0"),
        "{err}"
    );
    let (code, _, err) = run(&["compare", s(&llama("cpu_fp32")), "/nonexistent/dump"]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/dump"), "{err}");
}

#[test]
fn data_name_escaping_the_dump_is_refused() {
    let d = copy_run("cuda_fp16");
    let j = d.path().join("step0/proc0/dump.json");
    let text = std::fs::read_to_string(&j).unwrap().replacen(
        "\"data_name\": \"Functional.embedding.0.forward.input.0.pt\"",
        "\"data_name\": \"../../../../etc/passwd.pt\"",
        1,
    );
    std::fs::write(&j, text).unwrap();
    let (code, _, err) = run(&["compare", s(&llama("cpu_fp32")), s(d.path())]);
    assert_eq!(code, 2);
    assert!(err.contains("escapes the dump folder"), "{err}");
}

#[test]
fn corrupt_dump_json_names_the_file() {
    let d = copy_run("cuda_fp16");
    let j = d.path().join("step0/proc0/dump.json");
    std::fs::write(&j, b"{\"task\": \"tensor\", \"data\": {").unwrap();
    let (code, _, err) = run(&["compare", s(&llama("cpu_fp32")), s(d.path())]);
    assert_eq!(code, 2);
    assert!(
        err.contains("dump.json") && err.contains("bad JSON"),
        "{err}"
    );
}

#[test]
fn outputs_are_never_written_into_an_input_dump() {
    let d = copy_run("cuda_fp16");
    let out = d.path().join("step0/report.json");
    let (code, _, err) = compare_json(&llama("cpu_fp32"), d.path(), s(&out));
    assert_eq!(code, 2);
    assert!(err.contains("refusing to write"), "{err}");
    assert!(!out.exists());
    // Not even an empty folder is left behind.
    let nested = d.path().join("step0/new_folder/report.json");
    let (code, _, _) = compare_json(&llama("cpu_fp32"), d.path(), s(&nested));
    assert_eq!(code, 2);
    assert!(!d.path().join("step0/new_folder").exists());
}

/// `--json` into a named pipe streams the report through it, and the pipe is still a pipe: a
/// temporary file renamed over it would replace it. (Run as root, that is how `--json
/// /dev/null` once turned a machine's /dev/null into a plain file.)
#[test]
fn json_into_a_named_pipe_streams_through_it_and_leaves_the_pipe() {
    use std::os::unix::fs::FileTypeExt;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("report.pipe");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    let (code, _, err) = compare_json(
        &llama("cpu_fp32"),
        &llama("cuda_fp16_fault_silu_l1"),
        s(&fifo),
    );
    assert_eq!(code, 0, "{err}");
    // Checked before joining the reader, which would wait forever on a replaced pipe.
    let kind = std::fs::symlink_metadata(&fifo).unwrap().file_type();
    assert!(kind.is_fifo(), "{kind:?}");
    let v: serde_json::Value = serde_json::from_slice(&reader.join().unwrap()).unwrap();
    assert_eq!(
        v["analysis"]["first_divergence"]["tensor"],
        "Functional.silu.1.forward.output.0"
    );
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(names.len(), 1, "a temporary file was left: {names:?}");
}

/// `--json /proc/self/fd/1` (what `/dev/stdout` names) writes to the process's own standard
/// output, here a pipe to this test.
#[test]
fn json_to_the_process_own_stdout_lands_there() {
    let (code, out, err) = compare_json(
        &llama("cpu_fp32"),
        &llama("cuda_fp16_fault_silu_l1"),
        "/proc/self/fd/1",
    );
    assert_eq!(code, 0, "{err}");
    // The report, then the table (written when the report is done).
    let mut values = serde_json::Deserializer::from_str(&out).into_iter::<serde_json::Value>();
    let v = values.next().expect("the JSON report").unwrap();
    assert_eq!(v["pairs"].as_array().unwrap().len(), 415);
    let rest = &out[values.byte_offset()..];
    assert!(
        rest.contains("diverged (own_error): first at Functional.silu.1.forward"),
        "{rest}"
    );
}

/// A symbolic link stays a link: the report replaces the file it names, also when that file
/// does not exist yet; a link into an input dump is refused like a path there.
#[test]
fn json_through_a_symbolic_link_replaces_its_target_and_keeps_the_link() {
    let dir = tempfile::tempdir().unwrap();
    let reports = dir.path().join("reports");
    std::fs::create_dir(&reports).unwrap();
    // Dangling at first (relative target), then pointing at the file the first run wrote.
    let link = dir.path().join("latest.json");
    std::os::unix::fs::symlink("reports/today.json", &link).unwrap();
    for _ in 0..2 {
        let (code, _, err) = compare_json(&llama("cpu_fp32"), &llama("cuda_fp16"), s(&link));
        assert_eq!(code, 0, "{err}");
        assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(reports.join("today.json")).unwrap()).unwrap();
        assert_eq!(v["pairs"].as_array().unwrap().len(), 415);
    }
    let d = copy_run("cuda_fp16");
    let into_dump = dir.path().join("into_dump.json");
    std::os::unix::fs::symlink(d.path().join("step0/report.json"), &into_dump).unwrap();
    let (code, _, err) = compare_json(&llama("cpu_fp32"), d.path(), s(&into_dump));
    assert_eq!(code, 2);
    assert!(err.contains("refusing to write"), "{err}");
    assert!(!d.path().join("step0/report.json").exists());
}

/// Writes an msprobe statistics dump of `n` module calls (one input, one output each); outputs
/// from call `fault` on are scaled by `scale` (1 for a reference).
fn stats_dump(dir: &std::path::Path, n: usize, fault: usize, scale: f64) {
    let d = dir.join("step0/rank0");
    std::fs::create_dir_all(&d).unwrap();
    let t = |x: f64| {
        format!(
            "{{\"type\": \"torch.Tensor\", \"dtype\": \"torch.float32\", \"shape\": [4, 64], \
             \"Max\": {}, \"Min\": {}, \"Mean\": {}, \"Norm\": {}, \"requires_grad\": false}}",
            2.0 * x,
            -x,
            0.01 * x,
            10.0 * x
        )
    };
    let mut s = String::from("{\"task\": \"statistics\", \"level\": \"L0\", \"data\": {");
    for i in 0..n {
        let base = 1.0 + (i % 97) as f64 / 97.0;
        let (a, b) = if i >= fault {
            (scale, scale)
        } else {
            (1.0, 1.0)
        };
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!(
            "\"Module.blocks.{}.layers.{}.Linear.forward.0\": {{\"input_args\": [{}], \
             \"input_kwargs\": {{}}, \"output\": [{}]}}",
            i / 100,
            i % 100,
            t(base * if i > fault { a } else { 1.0 }),
            t(base * 1.5 * b)
        ));
    }
    s.push_str("}}");
    std::fs::write(d.join("dump.json"), s).unwrap();
}

#[test]
fn a_100k_entry_compare_does_not_flood_the_terminal() {
    let t = tempfile::tempdir().unwrap();
    let (r, d) = (t.path().join("ref"), t.path().join("dev"));
    stats_dump(&r, 50_000, usize::MAX, 1.0);
    stats_dump(&d, 50_000, 25_000, 1.05);
    let (code, out, err) = run(&["compare", s(&r), s(&d)]);
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().count() < 80, "{} lines", out.lines().count());
    assert!(out.contains("--all prints all 100000 rows"), "{out}");
    assert!(
        out.contains("diverged (introduced): first at Module.blocks.250.layers.0.Linear.forward.0"),
        "{out}"
    );
    // Tens of thousands of pairs drift after the fault: 40 rows are shown, the rest counted.
    assert_eq!(table_rows(&out).len(), 40);
    assert!(out.contains("more of those left out"), "{out}");
}

#[test]
fn plot_refuses_options_it_cannot_honour() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.png");
    let (r, d) = (llama("cpu_fp32"), llama("cuda_fp16_fault_silu_l1"));
    let t = "Functional.silu.1.forward.output.0";
    for (extra, says) in [
        (
            vec!["--filter", "("],
            "--filter is not a valid regular expression",
        ),
        (vec!["--filter", "linear"], "--filter excludes the tensor"),
        (
            vec!["--fp32-matmul", "ieee"],
            "--fp32-matmul does not apply",
        ),
        (vec!["--noise", s(&r)], "--noise applies to compare"),
    ] {
        let mut args = vec!["plot", s(&r), s(&d), "--tensor", t, "-o", s(&out)];
        args.extend(extra);
        let (code, _, err) = run(&args);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains(says), "{err}");
    }
    assert!(!out.exists());
}
