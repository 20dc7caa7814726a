//! The library used directly, as a notebook or a training script would: open a reference run
//! and a device run, find where the device departs, and check it against a nightly config.
//!
//! ```text
//! cargo run --release --example first_divergence -- \
//!     reference_dumps/h200/llama/msprobe/cpu_fp32 \
//!     reference_dumps/h200/llama/msprobe/cuda_fp16_fault_silu_l1
//! ```

use driftscope::nightly::config::Config;
use driftscope::session::{self, Options, Session};
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [reference, device] = args.as_slice() else {
        anyhow::bail!("usage: first_divergence REF DEV");
    };
    let s = Session::open(reference, device, &Options::default())?;

    // Every pair measured and judged.
    let c = s.compare(&|| {});
    println!("{} pairs: {}", c.pairs.len(), c.analysis.summary);
    for r in c.analysis.ranked.iter().take(3) {
        println!(
            "  {:<40} rel_l2_err {:.3e}, {:.0}x what it inherited or rounding explains",
            r.name, r.rel_l2_err, r.added
        );
    }

    // The same answer reading few tensors.
    let b = s.bisect(None, false)?;
    if let Some(f) = &b.analysis.first_divergence {
        println!(
            "bisect read {} of {} pairs: first divergence {} ({})",
            b.analysis.tensors_read,
            b.analysis.tensors_total,
            f.name,
            f.kind.name()
        );
        if let Some(advice) = &f.advice {
            println!("  what to do: {advice}");
        }
    }

    // The nightly verdict with the default limits.
    let cfg = Config::default().compile()?;
    let checked = session::check(&s, &cfg, None, &|| {})?;
    println!(
        "check: {} (exit code {})",
        if checked.report.passed {
            "pass"
        } else {
            "fail"
        },
        checked.report.exit_code()
    );
    Ok(())
}
