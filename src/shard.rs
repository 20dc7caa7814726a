//! Sharded multi-rank runs (docs/cluster.md): each shard compares some ranks of a multi-rank
//! run and writes a *part* file; [`merge`] streams the parts, one rank report at a time, into
//! the JSON report a single machine would have written for the whole run.
//!
//! A part file is a header line (JSON: which ranks of which run it covers, and the options
//! fingerprint), then for each compared rank in ascending order a line of JSON metadata
//! (`rank`, byte length, first divergence, whether a pair could not be compared) followed by
//! that rank's report as `serde_json` pretty-prints it inside the single-machine report, so the
//! merge copies it byte for byte and never re-parses floats.

use crate::dump::Role;
use crate::ranks::{self, MultiRank, RankDivergence, RankReport, RankSummary};
use crate::verdict::NoiseOptions;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Format tag on a part file's first line.
pub const PART_FORMAT: &str = "driftscope-part/1";

/// Environment variables a scheduler sets to an array task's index, in the order read:
/// Slurm job arrays, Kubernetes Indexed Jobs.
pub const INDEX_VARS: [&str; 2] = ["SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX"];

/// A header or metadata line longer than this is not a part file's.
const MAX_LINE: u64 = 64 << 20;

/// Shard `index` of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// Zero-based index.
    pub index: u32,
    /// Number of shards.
    pub count: u32,
}

/// `--shard`: `I/N`, or `N` alone to take the index from the scheduler ([`INDEX_VARS`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardSpec {
    /// The index, when given.
    pub index: Option<u32>,
    /// Number of shards.
    pub count: u32,
}

impl ShardSpec {
    /// Parses `I/N` or `N`.
    pub fn parse(s: &str) -> Result<ShardSpec, String> {
        let num = |t: &str| {
            t.trim()
                .parse::<u32>()
                .map_err(|_| format!("`{s}` is not I/N or N (shard I of N, zero-based)"))
        };
        let (index, count) = match s.split_once('/') {
            Some((i, n)) => (Some(num(i)?), num(n)?),
            None => (None, num(s)?),
        };
        if count == 0 {
            return Err("the number of shards must be at least 1".into());
        }
        if let Some(i) = index.filter(|i| *i >= count) {
            return Err(format!(
                "shard index {i} is not below the shard count {count}"
            ));
        }
        Ok(ShardSpec { index, count })
    }

    /// The shard, reading the index from the scheduler's variable (`env`) when not given.
    pub fn resolve(self, env: impl Fn(&str) -> Option<String>) -> anyhow::Result<Shard> {
        let index = match self.index {
            Some(i) => i,
            None => {
                let (var, v) = INDEX_VARS
                    .iter()
                    .find_map(|k| env(k).map(|v| (*k, v)))
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "--shard {} has no index and neither {} is set: pass --shard I/{}",
                            self.count,
                            INDEX_VARS.join(" nor "),
                            self.count
                        )
                    })?;
                v.trim().parse().map_err(|_| {
                    anyhow::anyhow!("{var}={v} is not a shard index (a non-negative integer)")
                })?
            }
        };
        if index >= self.count {
            anyhow::bail!(
                "shard index {index} is not below the shard count {} (job arrays must start at 0)",
                self.count
            );
        }
        Ok(Shard {
            index,
            count: self.count,
        })
    }
}

impl Shard {
    /// This shard's ranks of the ascending `ranks`: contiguous blocks whose sizes differ by at
    /// most one, so neighbouring ranks (one node's) stay together.
    pub fn select(self, ranks: &[u32]) -> Vec<u32> {
        let n = ranks.len() as u64;
        let lo = (self.index as u64 * n / self.count as u64) as usize;
        let hi = ((self.index as u64 + 1) * n / self.count as u64) as usize;
        ranks[lo..hi].to_vec()
    }
}

/// `--ranks`: a rank list, ascending, without repeats.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RankList(pub Vec<u32>);

impl RankList {
    /// Parses `0-63`, `0,2,8-15`.
    pub fn parse(s: &str) -> Result<RankList, String> {
        parse_ranks(s).map(RankList)
    }
}

/// Parses a rank list: `0-63`, `0,2,8-15`. Ascending, without repeats.
pub fn parse_ranks(s: &str) -> Result<Vec<u32>, String> {
    let mut out = Vec::new();
    for item in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let num = |t: &str| {
            t.trim()
                .parse::<u32>()
                .map_err(|_| format!("`{item}` in `{s}` is not a rank or a range A-B"))
        };
        let (a, b) = match item.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => (num(item)?, num(item)?),
        };
        if a > b {
            return Err(format!("range `{item}` runs backwards"));
        }
        out.extend(a..=b);
    }
    if out.is_empty() {
        return Err(format!("`{s}` names no rank"));
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Ascending ranks written compactly: `0-7, 9, 12-13`.
pub fn fmt_ranks(ranks: &[u32]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < ranks.len() {
        let mut j = i;
        while j + 1 < ranks.len() && ranks[j + 1] == ranks[j] + 1 {
            j += 1;
        }
        parts.push(if j > i {
            format!("{}-{}", ranks[i], ranks[j])
        } else {
            ranks[i].to_string()
        });
        i = j + 1;
    }
    parts.join(", ")
}

/// The ranks a shard compares: `only` (all ranks of the run when `None`; each must be on at
/// least one side), then shard `shard` of those.
pub fn selection(
    all: &[u32],
    only: Option<&[u32]>,
    shard: Option<Shard>,
) -> anyhow::Result<Vec<u32>> {
    let chosen = match only {
        Some(o) => {
            let absent: Vec<u32> = o
                .iter()
                .filter(|k| all.binary_search(k).is_err())
                .copied()
                .collect();
            if !absent.is_empty() {
                anyhow::bail!(
                    "--ranks names rank(s) on neither side: {} (the run has {})",
                    fmt_ranks(&absent),
                    fmt_ranks(all)
                );
            }
            o.to_vec()
        }
        None => all.to_vec(),
    };
    Ok(match shard {
        Some(s) => s.select(&chosen),
        None => chosen,
    })
}

/// Which command made a part (parts of different commands never merge).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartCommand {
    /// `driftscope compare`.
    Compare,
    /// `driftscope bisect`.
    Bisect,
    /// `driftscope check`: compared with the config's noise model.
    Check,
}

/// A part file's first line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PartHeader {
    /// [`PART_FORMAT`].
    pub format: String,
    /// driftscope version that wrote it (parts of different versions never merge).
    pub tool_version: String,
    /// The command.
    pub command: PartCommand,
    /// Everything that changes a rank's result (flags, digests of mapping files): parts must
    /// agree on it exactly.
    pub options: BTreeMap<String, String>,
    /// Ranks of the reference root (the whole run, not just this part).
    pub reference_ranks: Vec<u32>,
    /// Ranks of the candidate root.
    pub candidate_ranks: Vec<u32>,
    /// Ranks this part is responsible for (compared, or present on one side only).
    pub covered: Vec<u32>,
    /// The shard, when `--shard` chose the ranks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
    /// The noise model the ranks were compared with (`merge --check` judges with it).
    pub noise: NoiseOptions,
    /// The reference root as this shard saw it (paths may differ between nodes).
    pub reference: String,
    /// The candidate root as this shard saw it.
    pub candidate: String,
}

impl PartHeader {
    /// The header of a part of `plan`'s run covering `covered`, compared with `noise`.
    pub fn new(
        command: PartCommand,
        options: BTreeMap<String, String>,
        plan: &ranks::RankPlan,
        covered: Vec<u32>,
        shard: Option<Shard>,
        noise: NoiseOptions,
    ) -> PartHeader {
        PartHeader {
            format: PART_FORMAT.into(),
            tool_version: env!("CARGO_PKG_VERSION").into(),
            command,
            options,
            reference_ranks: plan.reference_ranks(),
            candidate_ranks: plan.candidate_ranks(),
            covered,
            shard,
            noise,
            reference: plan.reference_root.display().to_string(),
            candidate: plan.candidate_root.display().to_string(),
        }
    }

    /// Every rank of the run, ascending.
    fn universe(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .reference_ranks
            .iter()
            .chain(&self.candidate_ranks)
            .copied()
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// What a part says about one compared rank, ahead of its report.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct RankMeta {
    rank: u32,
    /// Length of the report that follows.
    bytes: u64,
    /// A pair could not be read or compared, or nothing paired (the run exits 2).
    broken: bool,
    first: Option<FirstMeta>,
}

/// [`RankDivergence`] with its error as Rust's shortest round-trip text, so the merged summary
/// carries the same bits as a single machine's.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct FirstMeta {
    place: String,
    order: usize,
    rel_l2_err: String,
    role: Role,
}

/// Writes the part file of `m`'s ranks to `out`: a header, then each rank's metadata and
/// report. A report is serialised twice, once to count its bytes for the metadata ahead of
/// it, so that it is never held whole (a million-entry rank makes ~1.2 GB of JSON).
pub fn write_part(header: &PartHeader, m: &MultiRank, out: &mut dyn Write) -> anyhow::Result<()> {
    serde_json::to_writer(&mut *out, header)?;
    out.write_all(b"\n")?;
    let mut ranks: Vec<&RankReport> = m.ranks.iter().collect();
    ranks.sort_by_key(|r| r.rank);
    for r in ranks {
        let mut count = Counter(0);
        crate::report::json::to_writer(&mut count, r)?;
        let meta = RankMeta {
            rank: r.rank,
            bytes: count.0,
            broken: r.is_broken(),
            first: RankDivergence::of(r).map(|d| FirstMeta {
                place: d.place,
                order: d.order,
                rel_l2_err: format!("{:?}", d.rel_l2_err),
                role: d.role,
            }),
        };
        serde_json::to_writer(&mut *out, &meta)?;
        out.write_all(b"\n")?;
        crate::report::json::to_writer(&mut *out, r)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// A writer that only counts the bytes written to it.
struct Counter(u64);

impl Write for Counter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0 += b.len() as u64;
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What [`merge`] found besides the report it wrote.
#[derive(Clone, Debug)]
pub struct Merged {
    /// Part files read.
    pub parts: usize,
    /// Ranks present in the candidate only.
    pub missing_ranks_reference: Vec<u32>,
    /// Ranks present in the reference only.
    pub missing_ranks_candidate: Vec<u32>,
    /// Ranks with a pair that could not be read or compared (or nothing paired).
    pub broken: Vec<u32>,
    /// Across ranks, as in the report.
    pub summary: RankSummary,
}

/// A part being read: its path, header and (while it still has ranks to give) its reader.
struct Part {
    path: PathBuf,
    header: PartHeader,
    reader: Option<BufReader<File>>,
}

/// Reads one `\n`-terminated line of at most [`MAX_LINE`] bytes; `None` at the end.
fn line(r: &mut impl BufRead, path: &Path) -> anyhow::Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    r.take(MAX_LINE)
        .read_until(b'\n', &mut buf)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if buf.is_empty() {
        return Ok(None);
    }
    if buf.pop() != Some(b'\n') {
        anyhow::bail!(
            "{}: a line is cut short or longer than {MAX_LINE} bytes (truncated or not a part file)",
            path.display()
        );
    }
    Ok(Some(buf))
}

fn open_part(path: &Path) -> anyhow::Result<(PartHeader, BufReader<File>)> {
    let f = File::open(path)
        .map_err(|e| anyhow::anyhow!("cannot open part {}: {e}", path.display()))?;
    let mut r = BufReader::new(f);
    let first = line(&mut r, path)?
        .ok_or_else(|| anyhow::anyhow!("{}: empty file, not a part", path.display()))?;
    let h: PartHeader = serde_json::from_slice(&first).map_err(|e| {
        anyhow::anyhow!(
            "{}: not a driftscope part file (first line: {e}); write parts with `compare --part`",
            path.display()
        )
    })?;
    if h.format != PART_FORMAT {
        anyhow::bail!(
            "{}: part format `{}`, this driftscope reads `{PART_FORMAT}`",
            path.display(),
            h.format
        );
    }
    Ok((h, r))
}

/// Refuses a part that does not belong to the same run as `first`, naming what differs.
fn same_run(first: &Part, p: &Part) -> anyhow::Result<()> {
    let (a, b) = (&first.header, &p.header);
    let differ = |what: &str, x: &dyn std::fmt::Debug, y: &dyn std::fmt::Debug| {
        anyhow::anyhow!(
            "parts {} and {} come from different runs: {what} differs ({x:?} vs {y:?}); \
             rerun every shard with the same driftscope and options",
            first.path.display(),
            p.path.display()
        )
    };
    if a.tool_version != b.tool_version {
        return Err(differ(
            "driftscope version",
            &a.tool_version,
            &b.tool_version,
        ));
    }
    if a.command != b.command {
        return Err(differ("command", &a.command, &b.command));
    }
    if let Some(k) = a
        .options
        .keys()
        .chain(b.options.keys())
        .find(|k| a.options.get(*k) != b.options.get(*k))
    {
        return Err(differ(
            &format!("option {k}"),
            &a.options.get(k),
            &b.options.get(k),
        ));
    }
    if a.reference_ranks != b.reference_ranks || a.candidate_ranks != b.candidate_ranks {
        return Err(differ(
            "the ranks found in the dumps",
            &(fmt_ranks(&a.reference_ranks), fmt_ranks(&a.candidate_ranks)),
            &(fmt_ranks(&b.reference_ranks), fmt_ranks(&b.candidate_ranks)),
        ));
    }
    Ok(())
}

/// Part files checked to make up one whole run, ready to [`MergePlan::write`].
pub struct MergePlan {
    parts: Vec<Part>,
    header: PartHeader,
    universe: Vec<u32>,
    /// Ranks compared (on both sides), ascending, with the part that holds each.
    compared: Vec<(u32, usize)>,
}

/// Reads every part's header: a part from another run, a rank covered twice, or a rank no
/// part covers (a missing or failed shard, named) is an error here, before anything is
/// written.
pub fn plan(paths: &[PathBuf]) -> anyhow::Result<MergePlan> {
    if paths.is_empty() {
        anyhow::bail!("no part files given");
    }
    let mut parts = Vec::with_capacity(paths.len());
    for p in paths {
        // Headers only; each reader is reopened when its ranks come up, so open files stay
        // few however many parts there are.
        let (header, _) = open_part(p)?;
        let part = Part {
            path: p.clone(),
            header,
            reader: None,
        };
        if let Some(first) = parts.first() {
            same_run(first, &part)?;
        }
        parts.push(part);
    }
    let h0 = parts[0].header.clone();
    let universe = h0.universe();
    let mut owner: BTreeMap<u32, usize> = BTreeMap::new();
    for (i, p) in parts.iter().enumerate() {
        for k in &p.header.covered {
            if universe.binary_search(k).is_err() {
                anyhow::bail!(
                    "{}: covers rank {k}, which is not in the run",
                    p.path.display()
                );
            }
            if let Some(j) = owner.insert(*k, i) {
                anyhow::bail!(
                    "rank {k} is covered by both {} and {}: parts of different shardings or \
                     rank lists are mixed",
                    parts[j].path.display(),
                    p.path.display()
                );
            }
        }
    }
    let uncovered: Vec<u32> = universe
        .iter()
        .filter(|k| !owner.contains_key(k))
        .copied()
        .collect();
    if !uncovered.is_empty() {
        anyhow::bail!(
            "no part covers rank(s) {} ({} of {} ranks): those shards are missing or failed; \
             rerun them and merge again",
            fmt_ranks(&uncovered),
            uncovered.len(),
            universe.len()
        );
    }
    let compared = universe
        .iter()
        .filter(|k| on(&h0.reference_ranks, k) && on(&h0.candidate_ranks, k))
        .map(|k| (*k, owner[k]))
        .collect();
    Ok(MergePlan {
        parts,
        header: h0,
        universe,
        compared,
    })
}

fn on(v: &[u32], k: &u32) -> bool {
    v.binary_search(k).is_ok()
}

impl MergePlan {
    /// The parts' header (the first part's: the others agree on everything but the ranks
    /// covered and the roots' paths).
    pub fn header(&self) -> &PartHeader {
        &self.header
    }

    /// Ranks present on one side only: (in the candidate only, in the reference only).
    pub fn missing_ranks(&self) -> (Vec<u32>, Vec<u32>) {
        let (rr, cr) = (&self.header.reference_ranks, &self.header.candidate_ranks);
        (
            self.universe
                .iter()
                .filter(|k| !on(rr, k))
                .copied()
                .collect(),
            self.universe
                .iter()
                .filter(|k| !on(cr, k))
                .copied()
                .collect(),
        )
    }

    /// Writes the multi-rank JSON report to `out`, exactly as `compare --json` (or `bisect
    /// --json`) on one machine writes it for the whole run, streaming the rank reports in rank
    /// order and holding one at a time. `each`, when given, sees every rank's report, read
    /// whole, as it goes.
    pub fn write(
        mut self,
        out: &mut dyn Write,
        mut each: Option<&mut Each>,
    ) -> anyhow::Result<Merged> {
        // How many ranks each part still has to give: its reader closes after the last.
        let mut left: Vec<usize> = vec![0; self.parts.len()];
        for (_, i) in &self.compared {
            left[*i] += 1;
        }
        let (missing_ranks_reference, missing_ranks_candidate) = self.missing_ranks();
        let parts = &mut self.parts;

        out.write_all(b"{\n  \"ranks\": [")?;
        let mut diverged = Vec::new();
        let mut broken = Vec::new();
        for (n, (k, i)) in self.compared.iter().enumerate() {
            let i = *i;
            let part = &mut parts[i];
            if part.reader.is_none() {
                // Ranks come in ascending order, so a part is first opened at its first rank.
                part.reader = Some(open_part(&part.path)?.1);
            }
            let r = part.reader.as_mut().expect("opened above");
            let meta = read_rank(
                r,
                &part.path,
                Some((
                    *k,
                    &mut |chunk: &[u8]| -> std::io::Result<()> { out.write_all(chunk) },
                    n == 0,
                )),
                each.as_deref_mut(),
            )?;
            if meta.broken {
                broken.push(*k);
            }
            if let Some(f) = meta.first {
                diverged.push(RankDivergence {
                    rank: *k,
                    place: f.place,
                    order: f.order,
                    rel_l2_err: f.rel_l2_err.parse().map_err(|_| {
                        anyhow::anyhow!(
                            "{}: rank {k}: bad error value `{}`",
                            part.path.display(),
                            f.rel_l2_err
                        )
                    })?,
                    role: f.role,
                });
            }
            left[i] -= 1;
            if left[i] == 0 {
                part.reader = None;
            }
        }
        out.write_all(if self.compared.is_empty() {
            b"]"
        } else {
            b"\n  ]"
        })?;
        let tail = MultiRank {
            ranks: Vec::new(),
            missing_ranks_reference,
            missing_ranks_candidate,
            summary: ranks::summarize_divergences(
                self.compared.iter().map(|c| c.0).collect(),
                diverged,
            ),
        };
        let text = crate::report::json::to_string(&tail)?;
        let rest = text
            .strip_prefix("{\n  \"ranks\": []")
            .ok_or_else(|| anyhow::anyhow!("the report no longer starts with its rank list"))?;
        out.write_all(rest.as_bytes())?;
        out.flush()?;
        Ok(Merged {
            parts: parts.len(),
            missing_ranks_reference: tail.missing_ranks_reference,
            missing_ranks_candidate: tail.missing_ranks_candidate,
            broken,
            summary: tail.summary,
        })
    }
}

/// What sees each merged rank's report (read whole), e.g. to judge it.
pub type Each<'a> = dyn FnMut(u32, &RankReport) -> anyhow::Result<()> + 'a;

/// A sink for a rank report's bytes, and whether it is the first element of the list.
type Sink<'a> = (u32, &'a mut dyn FnMut(&[u8]) -> std::io::Result<()>, bool);

/// Reads the next rank of a part. With a sink: checks it is rank `k`, checks the report is
/// JSON of that rank, hands it to `each` and writes it as an element of the report's rank
/// list (indented one level deeper). Without: skips it.
fn read_rank(
    r: &mut BufReader<File>,
    path: &Path,
    sink: Option<Sink>,
    each: Option<&mut Each>,
) -> anyhow::Result<RankMeta> {
    let want = sink.as_ref().map(|s| s.0);
    let bad =
        |what: String| anyhow::anyhow!("{}: {what} (truncated or edited part?)", path.display());
    let m = line(r, path)?.ok_or_else(|| {
        bad(match want {
            Some(k) => format!("ends before the report of rank {k}"),
            None => "ends early".into(),
        })
    })?;
    let meta: RankMeta =
        serde_json::from_slice(&m).map_err(|e| bad(format!("rank metadata: {e}")))?;
    if want.is_some_and(|k| k != meta.rank) {
        return Err(bad(format!(
            "expected rank {}, found rank {}",
            want.unwrap_or(0),
            meta.rank
        )));
    }
    // The report is streamed, never held whole (a million-entry rank is ~1.2 GB of JSON).
    let cut_short = || bad(format!("the report of rank {} is cut short", meta.rank));
    let left = r.get_ref().metadata()?.len() - r.stream_position()?;
    if left < meta.bytes + 1 {
        return Err(cut_short());
    }
    let body = (&mut *r).take(meta.bytes);
    if let Some((k, write, first)) = sink {
        #[derive(Deserialize)]
        struct RankOnly {
            rank: u32,
        }
        let io = |e: std::io::Error| anyhow::anyhow!("writing the merged report: {e}");
        write(if first { b"\n    " } else { b",\n    " }).map_err(io)?;
        // Pretty JSON has no newline inside strings: every line moves in by one level. The
        // bytes are checked to be JSON of rank `k` as they pass (a failure discards the
        // merged report: it is written atomically).
        let mut failed = None;
        let tee = Tee {
            inner: body,
            write,
            failed: &mut failed,
        };
        let reader = BufReader::new(tee);
        // Read whole only for `each` (a merge that judges); else just its rank.
        let got: Result<(u32, Option<RankReport>), _> = match each.is_some() {
            true => serde_json::from_reader(reader).map(|r: RankReport| (r.rank, Some(r))),
            false => serde_json::from_reader(reader).map(|r: RankOnly| (r.rank, None)),
        };
        if let Some(e) = failed {
            return Err(io(e));
        }
        let (rank, report) =
            got.map_err(|e| bad(format!("the report of rank {k} is not valid JSON: {e}")))?;
        if rank != k {
            return Err(bad(format!("the report under rank {k} is rank {rank}'s")));
        }
        if let (Some(f), Some(report)) = (each, report) {
            f(k, &report).map_err(|e| e.context(format!("{}: rank {k}", path.display())))?;
        }
    } else {
        std::io::copy(&mut { body }, &mut std::io::sink())?;
    }
    let mut end = [0u8];
    r.read_exact(&mut end).map_err(|_| cut_short())?;
    if end != *b"\n" {
        return Err(cut_short());
    }
    Ok(meta)
}

/// A reader that hands every byte it reads to `write` as well, each newline followed by one
/// more level of indentation; the first write error is kept in `failed` (and ends the read).
struct Tee<'a, R> {
    inner: R,
    write: &'a mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    failed: &'a mut Option<std::io::Error>,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut out = || -> std::io::Result<()> {
            for (j, l) in buf[..n].split(|b| *b == b'\n').enumerate() {
                if j > 0 {
                    (self.write)(b"\n    ")?;
                }
                (self.write)(l)?;
            }
            Ok(())
        };
        if let Err(e) = out() {
            let kind = e.kind();
            *self.failed = Some(e);
            return Err(kind.into());
        }
        Ok(n)
    }
}

/// A short digest of a file's bytes (FNV-1a, 64 bits), for the options fingerprint of files
/// such as mapping files: the same content on every node gives the same digest.
pub fn file_digest(p: &Path) -> anyhow::Result<String> {
    let bytes =
        std::fs::read(p).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))?;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    Ok(format!("{h:016x}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_contiguous_and_cover_every_rank_once() {
        let ranks: Vec<u32> = (0..10).collect();
        let mut all = Vec::new();
        for i in 0..4 {
            let s = Shard { index: i, count: 4 }.select(&ranks);
            assert!(s.len() == 2 || s.len() == 3, "{s:?}");
            assert!(s.windows(2).all(|w| w[1] == w[0] + 1));
            all.extend(s);
        }
        assert_eq!(all, ranks);
        // More shards than ranks: some shards are empty, none is lost.
        let n: usize = (0..16)
            .map(|i| {
                Shard {
                    index: i,
                    count: 16,
                }
                .select(&ranks[..3])
                .len()
            })
            .sum();
        assert_eq!(n, 3);
    }

    #[test]
    fn shard_index_comes_from_the_scheduler_when_not_given() {
        let s = ShardSpec::parse("8").unwrap();
        let env = |k: &str| (k == "JOB_COMPLETION_INDEX").then(|| "5".to_string());
        assert_eq!(s.resolve(env).unwrap(), Shard { index: 5, count: 8 });
        let slurm = |k: &str| (k == "SLURM_ARRAY_TASK_ID").then(|| "8".to_string());
        let e = s.resolve(slurm).unwrap_err().to_string();
        assert!(e.contains("not below the shard count 8"), "{e}");
        let e = s.resolve(|_| None).unwrap_err().to_string();
        assert!(e.contains("SLURM_ARRAY_TASK_ID"), "{e}");
        assert_eq!(
            ShardSpec::parse("3/8").unwrap().resolve(|_| None).unwrap(),
            Shard { index: 3, count: 8 }
        );
        assert!(ShardSpec::parse("8/8").is_err());
        assert!(ShardSpec::parse("0").is_err());
        assert!(ShardSpec::parse("a/2").is_err());
    }

    #[test]
    fn rank_lists_parse_and_print_as_ranges() {
        assert_eq!(parse_ranks("0-3,9, 7").unwrap(), vec![0, 1, 2, 3, 7, 9]);
        assert!(parse_ranks("5-2").is_err());
        assert!(parse_ranks("x").is_err());
        assert_eq!(fmt_ranks(&[0, 1, 2, 3, 7, 9, 10]), "0-3, 7, 9-10");
        let e = selection(&[0, 1, 2], Some(&[1, 5]), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("neither side: 5"), "{e}");
    }
}
