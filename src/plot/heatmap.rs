//! Heatmap of |dev - ref| for one tensor reshaped to 2-D (rows = leading dimensions, columns =
//! last dimension), max-pooled down for large tensors, with the worst rows and columns named.

use super::{draw_err, short};
use crate::dump::{DType, Dump, Entry};
use crate::metrics::PairContext;
use plotters::coord::Shift;
use plotters::prelude::*;

/// Largest number of cells drawn along each axis (larger tensors are max-pooled).
pub const MAX_CELLS: usize = 200;
/// Default size of a heatmap plot in pixels.
pub const SIZE: (u32, u32) = (1000, 520);

/// The pooled error grid of one tensor.
#[derive(Clone, Debug)]
pub struct Heat {
    /// Tensor name.
    pub name: String,
    /// Full shape.
    pub shape: Vec<usize>,
    /// Rows and columns of the full 2-D view.
    pub full: (usize, usize),
    /// Rows and columns of the pooled grid.
    pub grid: (usize, usize),
    /// Pooled cells, row-major: the largest |dev - ref| inside each (infinity for NaN/Inf
    /// on one side only).
    pub cells: Vec<f64>,
    /// Worst rows of the full view: (leading index, largest error in it).
    pub worst_rows: Vec<(Vec<usize>, f64)>,
    /// Worst columns (last-dimension index, largest error in it).
    pub worst_cols: Vec<(usize, f64)>,
}

/// Loads one pair of entries and builds its heatmap.
pub fn load(r: &Dump, re: &Entry, d: &Dump, de: &Entry) -> anyhow::Result<Heat> {
    let a = r.load(re)?;
    let b = d.load(de)?;
    if a.numel() != b.numel() {
        anyhow::bail!(
            "{}: {} reference and {} candidate elements",
            re.name,
            a.numel(),
            b.numel()
        );
    }
    Ok(build(
        &re.name,
        &a.shape,
        &a.to_f64_vec(),
        &b.to_f64_vec(),
        a.dtype,
        b.dtype,
    ))
}

/// Error of one element pair as the metrics see it: 0 where both sides are the same fill
/// value or saturate alike, infinity where only one side is NaN/Inf or beyond the range.
fn elem_err(a: f64, b: f64, lim: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        return if a.is_nan() && b.is_nan() {
            0.0
        } else {
            f64::INFINITY
        };
    }
    let (oa, ob) = (a.abs() >= lim, b.abs() >= lim);
    if oa || ob {
        return if oa && ob && (a > 0.0) == (b > 0.0) {
            0.0
        } else {
            f64::INFINITY
        };
    }
    (b - a).abs()
}

/// Builds the heatmap of `dev - ref` for a tensor of `shape`.
pub fn build(name: &str, shape: &[usize], r: &[f64], d: &[f64], dr: DType, dd: DType) -> Heat {
    let lim = PairContext::new(dr, dd).range_limit;
    let n = r.len().min(d.len());
    let cols = shape
        .last()
        .copied()
        .filter(|&c| c > 0)
        .unwrap_or(1)
        .min(n.max(1));
    let rows = n.div_ceil(cols).max(1);
    let (gr, gc) = (rows.min(MAX_CELLS), cols.min(MAX_CELLS));
    let mut cells = vec![0.0f64; gr * gc];
    let mut row_max = vec![0.0f64; rows];
    let mut col_max = vec![0.0f64; cols];
    for i in 0..n {
        let e = elem_err(r[i], d[i], lim);
        let (y, x) = (i / cols, i % cols);
        let c = &mut cells[(y * gr / rows) * gc + x * gc / cols];
        *c = c.max(e);
        row_max[y] = row_max[y].max(e);
        col_max[x] = col_max[x].max(e);
    }
    let lead: Vec<usize> = if shape.len() > 1 {
        shape[..shape.len() - 1].to_vec()
    } else {
        vec![1]
    };
    let unravel = |mut k: usize| -> Vec<usize> {
        let mut idx = vec![0; lead.len()];
        for (j, &s) in lead.iter().enumerate().rev() {
            let s = s.max(1);
            idx[j] = k % s;
            k /= s;
        }
        idx
    };
    let mut wr: Vec<(usize, f64)> = row_max.iter().copied().enumerate().collect();
    wr.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut wc: Vec<(usize, f64)> = col_max.iter().copied().enumerate().collect();
    wc.sort_by(|a, b| b.1.total_cmp(&a.1));
    Heat {
        name: name.to_string(),
        shape: shape.to_vec(),
        full: (rows, cols),
        grid: (gr, gc),
        cells,
        worst_rows: wr
            .into_iter()
            .take(5)
            .map(|(k, e)| (unravel(k), e))
            .collect(),
        worst_cols: wc.into_iter().take(5).collect(),
    }
}

/// Colour of a value in [0, 1] (dark blue, teal, yellow), like a perceptual map.
pub(crate) fn ramp(t: f64) -> RGBColor {
    const STOPS: [(f64, [f64; 3]); 5] = [
        (0.0, [68.0, 1.0, 84.0]),
        (0.25, [59.0, 82.0, 139.0]),
        (0.5, [33.0, 145.0, 140.0]),
        (0.75, [94.0, 201.0, 98.0]),
        (1.0, [253.0, 231.0, 37.0]),
    ];
    let t = t.clamp(0.0, 1.0);
    for w in STOPS.windows(2) {
        let ((t0, c0), (t1, c1)) = (w[0], w[1]);
        if t <= t1 {
            let f = (t - t0) / (t1 - t0);
            let m = |k: usize| (c0[k] + (c1[k] - c0[k]) * f).round() as u8;
            return RGBColor(m(0), m(1), m(2));
        }
    }
    RGBColor(253, 231, 37)
}

/// Draws the heatmap with a log colour scale, its colour bar and the worst rows/columns.
pub fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, h: &Heat) -> anyhow::Result<()> {
    let finite = h
        .cells
        .iter()
        .copied()
        .filter(|v| v.is_finite() && *v > 0.0);
    let (lo, hi) = finite.fold((f64::INFINITY, 0.0f64), |(a, b), v| (a.min(v), b.max(v)));
    let (llo, lhi) = if lo.is_finite() {
        (
            lo.log10().floor(),
            hi.log10().ceil().max(lo.log10().floor() + 1.0),
        )
    } else {
        (-8.0, 0.0)
    };
    let color = |v: f64| -> RGBColor {
        if v.is_infinite() {
            RGBColor(255, 0, 255)
        } else if v <= 0.0 {
            RGBColor(40, 0, 50)
        } else {
            ramp((v.log10() - llo) / (lhi - llo))
        }
    };
    let (w, _) = root.dim_in_pixel();
    let (main, side) = root.split_horizontally(w * 70 / 100);
    let (main, side) = (main.margin(24, 0, 0, 0), side.margin(24, 0, 0, 0));
    let title = format!(
        "|dev - ref| of {} {:?}: {} x {} view{}",
        h.name,
        h.shape,
        h.full.0,
        h.full.1,
        if h.grid != h.full {
            format!(", max-pooled to {} x {}", h.grid.0, h.grid.1)
        } else {
            String::new()
        }
    );
    let (gr, gc) = h.grid;
    root.draw(&Text::new(
        title,
        (10, 6),
        TextStyle::from((super::font::FAMILY, 15).into_font()),
    ))
    .map_err(draw_err)?;
    let mut ch = ChartBuilder::on(&main)
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..h.full.1 as f64, h.full.0 as f64..0.0)
        .map_err(draw_err)?;
    ch.configure_mesh()
        .disable_mesh()
        .x_desc("last dimension (column)")
        .y_desc("row (leading dims)")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style((super::font::FAMILY, 13))
        .axis_desc_style((super::font::FAMILY, 14))
        .draw()
        .map_err(draw_err)?;
    let (fr, fc) = (h.full.0 as f64, h.full.1 as f64);
    ch.draw_series((0..gr).flat_map(|y| {
        (0..gc).map(move |x| {
            let v = h.cells[y * gc + x];
            Rectangle::new(
                [
                    (x as f64 * fc / gc as f64, y as f64 * fr / gr as f64),
                    (
                        (x + 1) as f64 * fc / gc as f64,
                        (y + 1) as f64 * fr / gr as f64,
                    ),
                ],
                color(v).filled(),
            )
        })
    }))
    .map_err(draw_err)?;

    // Colour bar and the worst rows and columns.
    let font = |s: u32| TextStyle::from((super::font::FAMILY, s).into_font());
    let (sw, sh) = side.dim_in_pixel();
    let bar_h = (sh as i32 - 110).clamp(40, 200);
    let steps = 50;
    for k in 0..steps {
        let t = 1.0 - k as f64 / steps as f64;
        let y0 = 40 + k * bar_h / steps;
        let y1 = 40 + (k + 1) * bar_h / steps;
        side.draw(&Rectangle::new([(10, y0), (30, y1)], ramp(t).filled()))
            .map_err(draw_err)?;
    }
    side.draw(&Text::new(short(10f64.powf(lhi)), (36, 34), font(13)))
        .map_err(draw_err)?;
    side.draw(&Text::new(
        short(10f64.powf(llo)),
        (36, 34 + bar_h),
        font(13),
    ))
    .map_err(draw_err)?;
    for (k, line) in ["log |dev - ref|", "magenta: NaN/Inf"].iter().enumerate() {
        side.draw(&Text::new(
            *line,
            (10, 50 + bar_h + 16 * k as i32),
            font(12),
        ))
        .map_err(draw_err)?;
    }
    let x = (sw as i32 - 110).max(92);
    let shown = if sh < 320 { 3 } else { 5 };
    side.draw(&Text::new("worst rows", (x, 40), font(14).color(&BLACK)))
        .map_err(draw_err)?;
    for (k, (idx, e)) in h.worst_rows.iter().take(shown).enumerate() {
        side.draw(&Text::new(
            format!("{idx:?}  {}", short(*e)),
            (x, 60 + 18 * k as i32),
            font(13),
        ))
        .map_err(draw_err)?;
    }
    let cy = 60 + 18 * h.worst_rows.len().min(shown) as i32 + 14;
    side.draw(&Text::new("worst columns", (x, cy), font(14)))
        .map_err(draw_err)?;
    for (k, (c, e)) in h.worst_cols.iter().take(shown).enumerate() {
        side.draw(&Text::new(
            format!("[{c}]  {}", short(*e)),
            (x, cy + 20 + 18 * k as i32),
            font(13),
        ))
        .map_err(draw_err)?;
    }
    Ok(())
}

/// The heatmap as PNG.
pub fn png(h: &Heat, size: (u32, u32)) -> anyhow::Result<Vec<u8>> {
    super::to_png(size.0, size.1, |root| draw(root, h))
}
