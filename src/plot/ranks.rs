//! The ranks of a multi-rank run side by side: one row per rank, one column per stretch of its
//! execution order, coloured by the largest relative L2 error of the places in that stretch
//! (the error each place's worst output shows in the drift plot).

use super::draw_err;
use plotters::coord::Shift;
use plotters::prelude::*;

/// Columns of a row at most: a rank with more places shows each column's worst place.
pub const MAX_COLUMNS: usize = 240;

/// Errors from 10^LOG_LO (dark) to 10^LOG_HI (bright) on the colour scale.
pub const LOG_LO: f64 = -8.0;
/// Top of the colour scale.
pub const LOG_HI: f64 = 0.0;

/// One rank's row of the map.
#[derive(Clone, Debug, PartialEq)]
pub struct HeatRow {
    /// Rank id.
    pub rank: u32,
    /// Worst relative L2 error per column: infinity where one is NaN or infinite, NaN where no
    /// place of the column was measured.
    pub cells: Vec<f32>,
}

/// The row of a rank whose places, in execution order, have the errors `errs` (`None`: not
/// measured), binned into at most [`MAX_COLUMNS`] columns.
pub fn row(rank: u32, errs: &[Option<f64>]) -> HeatRow {
    let cols = errs.len().min(MAX_COLUMNS);
    let mut cells = vec![f32::NAN; cols];
    for (i, e) in errs.iter().enumerate() {
        let Some(e) = e else { continue };
        let k = i * cols / errs.len();
        let v = if e.is_finite() {
            *e as f32
        } else {
            f32::INFINITY
        };
        // f32::max ignores the NaN of a column nothing measured yet.
        cells[k] = cells[k].max(v);
    }
    HeatRow { rank, cells }
}

fn color(v: f32) -> RGBColor {
    if v.is_nan() {
        RGBColor(225, 225, 225)
    } else if v.is_infinite() {
        RGBColor(215, 25, 28)
    } else if v <= 0.0 {
        super::heatmap::ramp(0.0)
    } else {
        super::heatmap::ramp(((v as f64).log10() - LOG_LO) / (LOG_HI - LOG_LO))
    }
}

/// Pixel size of the map of `rows` ranks.
pub fn size(rows: usize) -> (u32, u32) {
    let per = (1200 / rows.max(1)).clamp(2, 18) as u32;
    (1000, 110 + per * rows.max(1) as u32)
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, rows: &[HeatRow]) -> anyhow::Result<()> {
    let n = rows.len().max(1) as f64;
    let mut ch = ChartBuilder::on(root)
        .margin(12)
        .caption(
            format!(
                "relative L2 error by rank and place (log scale 1e{LOG_LO} to 1e{LOG_HI}; red: NaN or inf; grey: not measured)"
            ),
            (super::font::FAMILY, 15),
        )
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..1.0, n - 0.5..-0.5)
        .map_err(draw_err)?;
    ch.configure_mesh()
        .disable_mesh()
        .x_desc("execution order (fraction of each rank's places)")
        .y_desc("rank")
        .x_label_formatter(&|v| format!("{v:.1}"))
        .y_labels(rows.len().clamp(1, 16))
        .y_label_formatter(&|v| {
            rows.get(*v as usize)
                .filter(|_| *v >= 0.0 && v.fract() == 0.0)
                .map(|r| r.rank.to_string())
                .unwrap_or_default()
        })
        .label_style((super::font::FAMILY, 12))
        .axis_desc_style((super::font::FAMILY, 13))
        .draw()
        .map_err(draw_err)?;
    ch.draw_series(rows.iter().enumerate().flat_map(|(y, r)| {
        let w = 1.0 / r.cells.len().max(1) as f64;
        r.cells.iter().enumerate().map(move |(x, v)| {
            Rectangle::new(
                [
                    (x as f64 * w, y as f64),
                    ((x + 1) as f64 * w, (y + 1) as f64),
                ],
                color(*v).filled(),
            )
        })
    }))
    .map_err(draw_err)?;
    Ok(())
}

/// The map as PNG.
pub fn png(rows: &[HeatRow]) -> anyhow::Result<Vec<u8>> {
    let (w, h) = size(rows.len());
    super::to_png(w, h, |root| draw(root, rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_mark_non_finite_errors_and_clamp_the_scale() {
        assert_eq!(color(f32::INFINITY), RGBColor(215, 25, 28));
        assert_eq!(color(0.0), color(1e-12));
        assert_eq!(color(1.0), color(10.0));
        assert_ne!(color(1e-6), color(1e-2));
        assert_eq!(color(f32::NAN), RGBColor(225, 225, 225));
    }

    #[test]
    fn a_column_shows_its_worst_place_and_non_finite_wins() {
        let errs = [
            Some(1e-4),
            Some(1e-2),
            None,
            None,
            Some(f64::NAN),
            Some(1e-3),
        ];
        let r = row(7, &errs);
        assert_eq!(r.cells.len(), 6);
        assert_eq!((r.cells[0], r.cells[1], r.cells[5]), (1e-4, 1e-2, 1e-3));
        assert!(r.cells[2].is_nan() && r.cells[3].is_nan());
        assert!(r.cells[4].is_infinite());
        // More places than columns: a column holds the worst of its places.
        let many: Vec<Option<f64>> = (0..480)
            .map(|i| Some(if i == 3 { 0.5 } else { 1e-6 }))
            .collect();
        let r = row(0, &many);
        assert_eq!(r.cells.len(), MAX_COLUMNS);
        assert_eq!((r.cells[1], r.cells[0]), (0.5, 1e-6));
    }
}
