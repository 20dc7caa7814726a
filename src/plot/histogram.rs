//! Error distribution of one pair: histograms of |dev - ref| and of the relative error in the
//! metrics' binary-logarithmic bins, with the coarser dtype's unit roundoff marked.

use super::{draw_err, short};
use crate::compare::PairReport;
use crate::dump::DType;
use crate::metrics::{HIST_BINS, HIST_MIN_EXP};
use plotters::coord::Shift;
use plotters::prelude::*;

/// Default size of a histogram plot in pixels.
pub const SIZE: (u32, u32) = (1000, 380);

/// log10 of the lower and upper edge of histogram bin `k >= 1`.
fn edges(k: usize) -> (f64, f64) {
    let lo = (k as i32 - 1 + HIST_MIN_EXP) as f64 * std::f64::consts::LOG10_2;
    (lo, lo + std::f64::consts::LOG10_2)
}

/// Draws both histograms of `pair` side by side (or a note when it has none).
pub fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    pair: &PairReport,
) -> anyhow::Result<()> {
    let Some(m) = &pair.metrics else {
        root.draw(&Text::new(
            format!("{}: no tensor metrics ({:?})", pair.name, pair.status),
            (20, 20),
            (super::font::FAMILY, 16),
        ))
        .map_err(draw_err)?;
        return Ok(());
    };
    let u = match (pair.dtype_ref, pair.dtype_dev) {
        (Some(a), Some(b)) => Some((DType::coarser(a, b), DType::coarser(a, b).unit_roundoff())),
        _ => None,
    };
    let (left, right) = root.split_horizontally(root.dim_in_pixel().0 / 2);
    panel(&left, &m.hist_abs_err, "|dev - ref|", m.compared, None)?;
    panel(
        &right,
        &m.hist_rel_err,
        "relative error |dev - ref| / |ref|",
        m.compared,
        u,
    )?;
    Ok(())
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    hist: &[u64],
    what: &str,
    total: u64,
    unit: Option<(DType, f64)>,
) -> anyhow::Result<()> {
    let total = total.max(1) as f64;
    let nz: Vec<usize> = (1..hist.len().min(HIST_BINS))
        .filter(|&k| hist[k] > 0)
        .collect();
    let zeros = hist.first().copied().unwrap_or(0);
    let caption = format!("{what}  ({zeros} exact zeros)");
    let (mut x0, mut x1) = match (nz.first(), nz.last()) {
        (Some(&a), Some(&b)) => (edges(a).0, edges(b).1),
        _ => (-8.0, 0.0),
    };
    if let Some((_, u)) = unit {
        x0 = x0.min(u.log10() - 0.5);
        x1 = x1.max(u.log10() + 0.5);
    }
    let ymax = nz
        .iter()
        .map(|&k| hist[k] as f64 / total)
        .fold(0.0, f64::max)
        .max(1e-6)
        * 1.12;
    let mut ch = ChartBuilder::on(area)
        .caption(caption, (super::font::FAMILY, 17))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x0.floor()..x1.ceil(), 0.0..ymax)
        .map_err(draw_err)?;
    ch.configure_mesh()
        .x_label_formatter(&|v| format!("1e{}", v.round()))
        .y_label_formatter(&|v| format!("{:.0}%", v * 100.0))
        .x_desc("error (log scale, binary bins)")
        .y_desc("share of elements")
        .label_style((super::font::FAMILY, 13))
        .axis_desc_style((super::font::FAMILY, 14))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(draw_err)?;
    ch.draw_series(nz.iter().map(|&k| {
        let (a, b) = edges(k);
        Rectangle::new(
            [(a, 0.0), (b, hist[k] as f64 / total)],
            super::run_color(0).mix(0.75).filled(),
        )
    }))
    .map_err(draw_err)?;
    if let Some((dt, u)) = unit {
        let x = u.log10();
        ch.draw_series(std::iter::once(PathElement::new(
            vec![(x, 0.0), (x, ymax)],
            RED.stroke_width(2),
        )))
        .map_err(draw_err)?;
        ch.draw_series(std::iter::once(Text::new(
            format!(" unit roundoff {} = {}", dt.name(), short(u)),
            (x, ymax * 0.97),
            TextStyle::from((super::font::FAMILY, 14).into_font()).color(&RED),
        )))
        .map_err(draw_err)?;
    }
    Ok(())
}

/// The histograms of `pair` as PNG.
pub fn png(pair: &PairReport, size: (u32, u32)) -> anyhow::Result<Vec<u8>> {
    super::to_png(size.0, size.1, |root| draw(root, pair))
}
