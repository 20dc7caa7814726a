//! Turning a [`Comparison`] into bytes: one file per format behind one small trait, and an
//! atomic writer that refuses to write into the dumps being compared.

pub mod csv;
pub mod json;
pub mod model_explorer;
pub mod msprobe_csv;
pub mod table;

use crate::compare::Comparison;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A report format.
pub trait Exporter {
    /// Serialises a comparison.
    fn serialize(&self, c: &Comparison) -> anyhow::Result<Vec<u8>>;
}

/// Formats a float for tables and CSV: fixed for moderate magnitudes, scientific otherwise.
pub fn fmt_f(x: f64) -> String {
    if x.is_nan() {
        "nan".into()
    } else if x.is_infinite() {
        if x > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        }
    } else if x == 0.0 {
        "0".into()
    } else if (1e-3..1e5).contains(&x.abs()) {
        format!("{x:.6}")
    } else {
        format!("{x:.3e}")
    }
}

/// What the `--noise` calibration showed, one line (printed by `compare` and `bisect`).
pub fn calibration_line(a: &crate::verdict::Analysis) -> Option<String> {
    let cal = a.calibration.as_ref()?;
    Some(format!(
        "noise calibrated by {} ({} tensors); closest place to the line: {} (margin {})",
        cal.path.display(),
        cal.tensors,
        cal.closest.as_deref().unwrap_or("-"),
        cal.margin.map(|m| format!("{m:.1}x")).unwrap_or("-".into())
    ))
}

/// Formats a p-value; one that underflows double precision is shown as a bound.
pub fn fmt_p(p: f64) -> String {
    if p > 0.0 {
        format!("= {p:.1e}")
    } else {
        "< 1e-300".to_string()
    }
}

/// Writes `bytes` to `path` atomically (a temporary file in the same folder, then a rename),
/// refusing any path inside one of `inputs` (the dumps are never written to).
pub fn write_atomic(path: &Path, bytes: &[u8], inputs: &[PathBuf]) -> anyhow::Result<()> {
    write_atomic_with(path, inputs, |w| Ok(w.write_all(bytes)?))
}

/// [`write_atomic`] of what `fill` writes, streamed to the temporary file (for outputs too
/// large to hold). When `fill` fails, nothing is left behind and its error is returned.
pub fn write_atomic_with(
    path: &Path,
    inputs: &[PathBuf],
    fill: impl FnOnce(&mut dyn Write) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut f = AtomicFile::create(path, inputs)?;
    fill(&mut f).map_err(|e| anyhow::anyhow!("cannot write {}: {e:#}", path.display()))?;
    f.commit()
}

/// An output file written atomically: bytes go to a temporary file beside it, which
/// [`AtomicFile::commit`] syncs and renames into place. Dropped without a commit, it leaves
/// nothing behind. For outputs filled bit by bit while something else streams (a merge).
///
/// Two kinds of destination are written in place instead, because a rename would replace
/// them rather than fill them: one that is not a regular file (`/dev/null`, a named pipe, a
/// socket), and one reached through the process's own descriptors (`/dev/stdout`,
/// `/dev/fd/N`, `/proc/self/fd/N`). A symbolic link to a regular file stays a link: the file
/// it names is replaced.
pub struct AtomicFile {
    /// Where the bytes land: `path` with its symbolic links followed.
    path: PathBuf,
    /// The temporary file renamed onto `path`; `None` when written in place.
    tmp: Option<PathBuf>,
    w: Option<std::io::BufWriter<std::fs::File>>,
}

/// At most this many symbolic links are followed (Linux's own limit).
const MAX_LINKS: usize = 40;

/// Where writing `path` lands, and whether it must be written in place (see [`AtomicFile`]).
fn destination(path: &Path) -> anyhow::Result<(PathBuf, bool)> {
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.is_dir() {
            anyhow::bail!("cannot write {}: it is a folder", path.display());
        }
        if !meta.is_file() {
            return Ok((path.to_path_buf(), true));
        }
    }
    let mut p = path.to_path_buf();
    for _ in 0..=MAX_LINKS {
        let under_proc = p
            .parent()
            .and_then(|dir| std::fs::canonicalize(dir).ok())
            .is_some_and(|dir| dir.starts_with("/proc"));
        if under_proc {
            return Ok((path.to_path_buf(), true));
        }
        match std::fs::read_link(&p) {
            // A relative target is relative to the link's folder; `join` keeps an absolute one.
            Ok(target) => p = p.parent().unwrap_or(Path::new("")).join(target),
            Err(_) => return Ok((p, false)),
        }
    }
    anyhow::bail!(
        "cannot write {}: more than {MAX_LINKS} symbolic links",
        path.display()
    )
}

impl AtomicFile {
    /// Starts writing `path`, refusing a path inside one of the `inputs` (files or folders).
    pub fn create(path: &Path, inputs: &[PathBuf]) -> anyhow::Result<AtomicFile> {
        let (path, in_place) = destination(path)?;
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        // Check against the inputs before creating anything: the nearest existing ancestor of the
        // output's folder decides where it would land.
        let mut existing = parent.clone();
        while !existing.exists() {
            match existing.parent() {
                Some(p) if !p.as_os_str().is_empty() => existing = p.to_path_buf(),
                _ => {
                    existing = PathBuf::from(".");
                    break;
                }
            }
        }
        let abs_parent = std::fs::canonicalize(&existing)?;
        for i in inputs {
            let root = if i.is_file() {
                i.parent().unwrap_or(i)
            } else {
                i.as_path()
            };
            if let Ok(r) = std::fs::canonicalize(root) {
                if abs_parent.starts_with(&r) {
                    anyhow::bail!(
                        "refusing to write {} inside the input dump {}",
                        path.display(),
                        r.display()
                    );
                }
            }
        }
        let (f, tmp) = if in_place {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
            (f, None)
        } else {
            std::fs::create_dir_all(&parent)
                .map_err(|e| anyhow::anyhow!("cannot create folder {}: {e}", parent.display()))?;
            let name = path
                .file_name()
                .ok_or_else(|| anyhow::anyhow!("{} is not a file path", path.display()))?;
            let tmp = parent.join(format!(
                ".{}.{}.tmp",
                name.to_string_lossy(),
                std::process::id()
            ));
            let f = std::fs::File::create(&tmp)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
            (f, Some(tmp))
        };
        Ok(AtomicFile {
            path,
            tmp,
            w: Some(std::io::BufWriter::new(f)),
        })
    }

    /// Syncs the bytes written and moves the file into place (flushes them, written in place).
    pub fn commit(mut self) -> anyhow::Result<()> {
        let w = self.w.take().expect("an AtomicFile is committed once");
        let done = (|| -> anyhow::Result<()> {
            let f = w.into_inner().map_err(|e| e.into_error())?;
            if let Some(tmp) = &self.tmp {
                f.sync_all()?;
                std::fs::rename(tmp, &self.path)?;
            }
            Ok(())
        })();
        done.map_err(|e| {
            if let Some(tmp) = &self.tmp {
                let _ = std::fs::remove_file(tmp);
            }
            anyhow::anyhow!("cannot write {}: {e:#}", self.path.display())
        })
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.w.as_mut().expect("not committed").write(buf)
    }
    // The buffer's own `write_all` (one copy), not the default loop over `write`: a pretty
    // JSON report is written in millions of pieces of a few bytes.
    #[inline]
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.w.as_mut().expect("not committed").write_all(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.w.as_mut().expect("not committed").flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if let (Some(_), Some(tmp)) = (self.w.take(), &self.tmp) {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

/// Lines saying what aligning the two runs found: pairs compared on the common region of
/// padded shapes, how the call streams were paired and each run of extra or missing calls (at
/// most 10; the JSON has all). Empty when the runs agree.
pub fn structure_lines(c: &Comparison) -> String {
    use crate::align::structure::AlignMethod;
    use std::fmt::Write;
    let st = &c.structure;
    let mut s = String::new();
    let padded: Vec<&crate::compare::PairReport> =
        c.pairs.iter().filter(|p| p.padding.is_some()).collect();
    if let (Some(p), Some(pad)) = (
        padded.first(),
        padded.first().and_then(|p| p.padding.as_ref()),
    ) {
        let (side, big, small) = match pad.padded {
            crate::align::padding::Side::Candidate => ("candidate", &p.shape_dev, &p.shape_ref),
            crate::align::padding::Side::Reference => ("reference", &p.shape_ref, &p.shape_dev),
        };
        let _ = writeln!(
            s,
            "padded: {} pair(s) compared on their common region; first: {} ({side} {:?} pads \
             {:?} by {:?}; {} of {} padding elements non-zero, max |x| {})",
            padded.len(),
            p.name,
            big.as_deref().unwrap_or_default(),
            small.as_deref().unwrap_or_default(),
            pad.pad,
            pad.nonzero,
            pad.elements,
            fmt_f(pad.max_abs)
        );
    }
    if st.method == AlignMethod::Names && st.changes.is_empty() {
        return s;
    }
    let how = match st.method {
        AlignMethod::Names => "by name",
        AlignMethod::Signatures => "by sequence alignment of call signatures",
        AlignMethod::OpTypes => "by sequence alignment of API names (signatures differ too much)",
        AlignMethod::Anchored => "by exact-name anchors (the streams differ too much to align)",
    };
    let _ = writeln!(
        s,
        "structure: {} of {} reference and {} candidate calls paired {how}; {} renumbered, {} \
         reshaped; {} run(s) of extra or missing calls",
        st.paired,
        st.calls_reference,
        st.calls_candidate,
        st.renumbered,
        st.reshaped,
        st.changes.len()
    );
    for ch in st.changes.iter().take(10) {
        let _ = writeln!(s, "  {}", ch.message);
    }
    if st.changes.len() > 10 {
        let _ = writeln!(s, "  ... and {} more (see --json)", st.changes.len() - 10);
    }
    if !st.fusion_proposal.is_empty() {
        let _ = writeln!(
            s,
            "proposed --fusion-map (check it, save it as a .json file and pass it with \
             --fusion-map): {}",
            serde_json::to_string(&st.fusion_proposal).unwrap_or_default()
        );
    }
    s
}

/// Text printed by `driftscope bisect`.
pub fn bisect_text(c: &Comparison, color: bool) -> String {
    use std::fmt::Write;
    let a = &c.analysis;
    let mut s = String::new();
    match &a.first_divergence {
        Some(f) => {
            let _ = writeln!(s, "first divergence: {}", f.name);
            let _ = writeln!(s, "  tensor:    {} ({})", f.tensor, f.role);
            if let Some(op) = &f.op_type {
                let _ = writeln!(s, "  op:        {op}");
            }
            if let Some(st) = &f.stack {
                let _ = writeln!(s, "  stack:     {st}");
            }
            let _ = writeln!(s, "  kind:      {}", f.kind.name());
            let _ = writeln!(s, "  why:       {}", f.reason);
            if let Some(a) = &f.advice {
                let _ = writeln!(s, "  advice:    {a}");
            }
            if let (Some(z), Some(pv)) = (f.z_score, f.p_value) {
                let _ = writeln!(
                    s,
                    "  evidence:  its error ratio is {z:.1} robust standard deviations above the \
                     other places' (one-sided p {})",
                    fmt_p(pv)
                );
            }
            let _ = writeln!(
                s,
                "  error:     rel L2 {}  inherited {}  rounding {}",
                fmt_f(f.rel_l2_err),
                fmt_f(f.inherited_err),
                fmt_f(f.expected_err)
            );
        }
        None => {
            let _ = writeln!(s, "{}", a.summary);
        }
    }
    if !a.ranked.is_empty() {
        let _ = writeln!(s, "places adding the most error:");
        for r in a.ranked.iter().take(5) {
            let _ = writeln!(
                s,
                "  {:>8.1}x  {:<48} rel L2 {}  ({})",
                r.added,
                r.name,
                fmt_f(r.rel_l2_err),
                r.verdict.name()
            );
        }
    }
    if let Some(line) = calibration_line(a) {
        let _ = writeln!(s, "{line}");
    }
    let _ = writeln!(
        s,
        "read {} of {} tensor pairs ({})",
        a.tensors_read, a.tensors_total, a.method
    );
    if !c.unmatched_reference.is_empty() || !c.unmatched_candidate.is_empty() {
        let _ = writeln!(
            s,
            "unmatched: {} reference, {} candidate",
            c.unmatched_reference.len(),
            c.unmatched_candidate.len()
        );
    }
    s.push_str(&structure_lines(c));
    if color {
        format!("\x1b[1m{s}\x1b[0m")
    } else {
        s
    }
}
