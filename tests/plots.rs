//! Plots and the HTML report on the bundled real dumps.

use crate::common;

use common::{bin, h200, llama};
use std::path::Path;
use std::process::Command;

/// Width and height from a PNG's signature and IHDR chunk.
fn png_size(p: &Path) -> (u32, u32) {
    let b = std::fs::read(p).unwrap();
    assert_eq!(
        &b[..8],
        b"\x89PNG\r\n\x1a\n",
        "{} is not a PNG",
        p.display()
    );
    assert_eq!(&b[12..16], b"IHDR");
    let be = |s: &[u8]| u32::from_be_bytes([s[0], s[1], s[2], s[3]]);
    (be(&b[16..20]), be(&b[20..24]))
}

fn report(reference: &Path, devs: &[&Path], out: &Path) {
    let mut cmd = Command::new(bin());
    cmd.arg("report").arg(reference);
    for d in devs {
        cmd.arg(d);
    }
    let o = cmd.arg("-o").arg(out).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// The JSON data block embedded in the report page.
fn data_json(html: &str) -> serde_json::Value {
    let start = html
        .find("<script id=\"data\" type=\"application/json\">")
        .unwrap();
    let rest = &html[start..];
    let body = &rest[rest.find('>').unwrap() + 1..rest.find("</script>").unwrap()];
    serde_json::from_str(body).unwrap()
}

#[test]
fn llama_report_writes_html_png_svg_with_first_divergence() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("rep");
    let dev = llama("cuda_fp16_fault_silu_l1");
    report(&llama("cpu_fp32"), &[&dev], &out);
    let (w, h) = png_size(&out.join("drift.png"));
    assert!(w >= 800 && h >= 500, "{w}x{h}");
    let img = image::open(out.join("drift.png")).unwrap();
    assert_eq!((img.width(), img.height()), (w, h));
    let svg = std::fs::read_to_string(out.join("drift.svg")).unwrap();
    assert!(svg.starts_with("<svg"));
    assert!(
        svg.contains("Functional.silu.1.forward"),
        "first divergence label"
    );
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(html.len() < 5 << 20, "{} bytes", html.len());
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "offline page"
    );
    // One data row per compared pair, and one chart point per compared place.
    let c = driftscope::compare::compare(
        &common::open(&llama("cpu_fp32")),
        &common::open(&dev),
        &Default::default(),
        &|| {},
    );
    let data = data_json(&html);
    let run = &data["runs"][0];
    assert_eq!(run["pairs"].as_array().unwrap().len(), c.pairs.len());
    let places: std::collections::HashSet<&str> = c
        .pairs
        .iter()
        .filter(|p| p.metrics.is_some())
        .map(|p| &*p.place)
        .collect();
    assert_eq!(run["points"].as_array().unwrap().len(), places.len());
    assert_eq!(run["first"]["name"], "Functional.silu.1.forward");
    // The first divergence has its close-up images.
    let k = c
        .pairs
        .iter()
        .position(|p| &*p.name == "Functional.silu.1.forward.output.0")
        .unwrap();
    let img = &data["images"][format!("0:{k}")];
    assert!(img["hist"]
        .as_str()
        .unwrap()
        .starts_with("data:image/png;base64,"));
    assert!(img["heat"]
        .as_str()
        .unwrap()
        .starts_with("data:image/png;base64,"));
}

#[test]
fn report_overlays_several_runs_and_mobilenet() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("multi");
    let (a, b) = (llama("cuda_fp16_fault_silu_l1"), llama("cuda_bf16"));
    report(&llama("cpu_fp32"), &[&a, &b], &out);
    let data = data_json(&std::fs::read_to_string(out.join("index.html")).unwrap());
    assert_eq!(data["runs"].as_array().unwrap().len(), 2);
    assert_eq!(data["runs"][1]["label"], "cuda_bf16");

    let out = tmp.path().join("mobilenet");
    let m = h200("mobilenet/msprobe");
    report(&m.join("cpu_fp32"), &[&m.join("cuda_fp16")], &out);
    png_size(&out.join("drift.png"));
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(html.len() < 5 << 20);
    assert!(!data_json(&html)["runs"][0]["points"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[test]
fn plot_writes_png_and_svg_for_one_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("heat.png");
    let o = Command::new(bin())
        .args(["plot"])
        .arg(llama("cpu_fp32"))
        .arg(llama("cuda_fp16_fault_silu_l1"))
        .args(["--tensor", "Functional.silu.1.forward.output.0", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (w, h) = png_size(&out);
    assert!(w >= 800 && h >= 600);
    let svg = std::fs::read_to_string(tmp.path().join("heat.svg")).unwrap();
    assert!(svg.contains("unit roundoff"));

    let bad = Command::new(bin())
        .args(["plot"])
        .arg(llama("cpu_fp32"))
        .arg(llama("cuda_fp16_fault_silu_l1"))
        .args(["--tensor", "no.such.tensor", "-o"])
        .arg(tmp.path().join("x.png"))
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

/// The page's module tree: every pair points at a node, nodes are in preorder, and the first
/// divergence sits under the MLP call site of the llama L1 dump.
#[test]
fn report_embeds_the_module_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("rep");
    report(
        &llama("cpu_fp32"),
        &[&llama("cuda_fp16_fault_silu_l1")],
        &out,
    );
    let data = data_json(&std::fs::read_to_string(out.join("index.html")).unwrap());
    let nodes = data["tree"]["nodes"].as_array().unwrap();
    assert!(nodes.len() > 158, "{} nodes", nodes.len());
    for (i, n) in nodes.iter().enumerate() {
        let p = n[0].as_i64().unwrap();
        assert!(if i == 0 {
            p == -1
        } else {
            (0..i as i64).contains(&p)
        });
    }
    let pairs = data["runs"][0]["pairs"].as_array().unwrap();
    assert!(pairs
        .iter()
        .all(|p| (p["node"].as_u64().unwrap() as usize) < nodes.len()));
    let silu = pairs
        .iter()
        .find(|p| p["name"] == "Functional.silu.1.forward.output.0")
        .unwrap();
    let mut n = silu["node"].as_i64().unwrap();
    let mut path = Vec::new();
    while n > 0 {
        path.push(nodes[n as usize][1].as_str().unwrap());
        n = nodes[n as usize][0].as_i64().unwrap();
    }
    assert_eq!(path[0], "Functional.silu.1");
    assert!(
        path.contains(&"hidden_states = self.mlp(hidden_states)"),
        "{path:?}"
    );
}
