//! Drift along the network: relative L2 error and 1 - cosine per place (log scale), max abs
//! error on a second panel, each run's expected-noise band, the first divergence marked.

use super::{draw_err, place_points, run_color, short_name, Run};
use crate::compare::Status;
use crate::verdict::NoiseOptions;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::collections::BTreeMap;

/// Default size of the drift plot in pixels.
pub const SIZE: (u32, u32) = (1400, 820);

/// Values at or below this are drawn on the floor of the log axis.
const FLOOR: f64 = 1e-10;

struct Series {
    rel: Vec<(f64, f64)>,
    cos: Vec<(f64, f64)>,
    abs: Vec<(f64, f64)>,
    band: Vec<(f64, f64)>,
}

fn clampv(x: f64) -> f64 {
    if x.is_nan() || x == f64::INFINITY {
        f64::MAX
    } else {
        x.max(FLOOR)
    }
}

fn series(run: &Run, factor: f64) -> Series {
    let c = &run.comparison;
    let mut s = Series {
        rel: vec![],
        cos: vec![],
        abs: vec![],
        band: vec![],
    };
    for p in place_points(c) {
        let pr = &c.pairs[p.pair];
        let Some(m) = &pr.metrics else { continue };
        let x = p.order as f64;
        s.rel.push((x, clampv(m.rel_l2_err)));
        s.cos.push((x, clampv(m.one_minus_cosine)));
        s.abs.push((x, clampv(m.max_abs_err)));
        if let Some(e) = pr.expected_err {
            s.band.push((x, clampv(e * factor)));
        }
    }
    // Places compared by recorded statistics only (msprobe's statistics task): the bounds the
    // statistics give, |Δnorm| / norm for the relative L2 error and max(|Δmax|, |Δmin|) for
    // the max abs error, from the output with the largest bound (or any tensor).
    for g in crate::verdict::places(&c.pairs) {
        if g.iter().any(|&i| c.pairs[i].metrics.is_some()) {
            continue;
        }
        let stats: Vec<usize> = g
            .into_iter()
            .filter(|&i| c.pairs[i].status == Status::Statistics && c.pairs[i].stats_diff.is_some())
            .collect();
        let outputs: Vec<usize> = stats
            .iter()
            .copied()
            .filter(|&i| c.pairs[i].role == crate::dump::Role::Output)
            .collect();
        let pool = if outputs.is_empty() { &stats } else { &outputs };
        let bound = |i: usize| c.pairs[i].stats_diff.and_then(|d| d.norm_rel_diff());
        let Some(i) = pool
            .iter()
            .copied()
            .max_by(|&a, &b| bound(a).unwrap_or(0.0).total_cmp(&bound(b).unwrap_or(0.0)))
        else {
            continue;
        };
        let (pr, x) = (&c.pairs[i], c.pairs[i].order as f64);
        if let Some(v) = bound(i) {
            s.rel.push((x, clampv(v)));
        }
        if let Some(v) = pr.stats_diff.and_then(|d| d.max_abs()) {
            s.abs.push((x, clampv(v)));
        }
    }
    let by_x = |a: &(f64, f64), b: &(f64, f64)| a.0.total_cmp(&b.0);
    s.rel.sort_by(by_x);
    s.abs.sort_by(by_x);
    s
}

fn log_range(vals: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (mut lo, mut hi) = (f64::INFINITY, 0.0f64);
    for v in vals.filter(|v| v.is_finite() && *v < f64::MAX) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return 1e-8..1.0;
    }
    let lo = 10f64.powf(lo.log10().floor()).max(FLOOR);
    let hi = 10f64.powf(hi.log10().ceil()).max(lo * 100.0);
    lo..hi
}

/// Draws the drift plot of `runs` (all against one reference) onto `root`.
pub fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, runs: &[Run]) -> anyhow::Result<()> {
    let factor = NoiseOptions::default().noise_factor;
    let all: Vec<Series> = runs.iter().map(|r| series(r, factor)).collect();
    let names: BTreeMap<usize, String> = runs
        .iter()
        .flat_map(|r| {
            r.comparison
                .pairs
                .iter()
                .map(|p| (p.order, p.place.to_string()))
        })
        .collect();
    let x_lo = names.keys().next().copied().unwrap_or(0) as f64;
    let x_hi = (names.keys().next_back().copied().unwrap_or(1) as f64).max(x_lo + 1.0);
    let label_at = |x: &f64| -> String {
        let k = x.round().max(0.0) as usize;
        let near = names
            .range(k..)
            .next()
            .or_else(|| names.range(..k).next_back());
        near.map(|(_, n)| short_name(n, 22)).unwrap_or_default()
    };
    let (w, h) = root.dim_in_pixel();
    let n_labels = (w / 190).max(2) as usize;
    let (top, bottom) = root.split_vertically(h * 62 / 100);

    let title = match runs.first().map(|r| &r.comparison.reference.path) {
        Some(p) => format!("Drift along the network against {}", p.display()),
        None => "Drift along the network".into(),
    };
    let y1 = log_range(
        all.iter()
            .flat_map(|s| s.rel.iter().chain(&s.cos).chain(&s.band).map(|p| p.1)),
    );
    let mut ch = ChartBuilder::on(&top)
        .caption(title, (super::font::FAMILY, 22))
        .margin(12)
        // Room for half of the last x label, centred on the right edge (22 chars at 14 px).
        .margin_right(96)
        .x_label_area_size(36)
        .y_label_area_size(80)
        .build_cartesian_2d(x_lo..x_hi, y1.clone().log_scale())
        .map_err(draw_err)?;
    ch.configure_mesh()
        .x_labels(n_labels)
        .x_label_formatter(&label_at)
        .y_label_formatter(&|v| format!("{v:.0e}"))
        .y_desc("rel L2 error (solid), 1 - cosine (dashed)")
        .label_style((super::font::FAMILY, 14))
        .axis_desc_style((super::font::FAMILY, 15))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(draw_err)?;
    // One run: its noise band is shaded. Several: shaded bands of different colours blend
    // into an unreadable grey, so each run's band is its upper edge, dotted, in its colour.
    let shade = all.len() == 1;
    for (i, s) in all.iter().enumerate() {
        let col = run_color(i);
        if !s.band.is_empty() && shade {
            ch.draw_series(AreaSeries::new(
                s.band.iter().map(|&(x, y)| (x, y.min(y1.end))),
                y1.start,
                col.mix(0.10),
            ))
            .map_err(draw_err)?;
        } else if !s.band.is_empty() {
            ch.draw_series(DashedLineSeries::new(
                s.band.iter().map(|&(x, y)| (x, y.min(y1.end))),
                2,
                3,
                col.mix(0.6).stroke_width(1),
            ))
            .map_err(draw_err)?
            .label(format!(
                "{} expected noise ({factor}x rounding)",
                runs[i].label
            ))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], col.mix(0.6).stroke_width(1))
            });
        }
        let cap = |v: f64| v.min(y1.end);
        ch.draw_series(LineSeries::new(
            s.rel.iter().map(|&(x, y)| (x, cap(y))),
            col.stroke_width(2),
        ))
        .map_err(draw_err)?
        .label(format!("{} rel L2", runs[i].label))
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2)));
        ch.draw_series(DashedLineSeries::new(
            s.cos.iter().map(|&(x, y)| (x, cap(y))),
            5,
            4,
            col.mix(0.7).stroke_width(1),
        ))
        .map_err(draw_err)?;
    }
    if shade && all.iter().any(|s| !s.band.is_empty()) {
        ch.draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())
            .map_err(draw_err)?
            .label(format!("expected noise ({factor}x rounding)"))
            .legend(move |(x, y)| {
                Rectangle::new(
                    [(x, y - 5), (x + 20, y + 5)],
                    run_color(0).mix(0.2).filled(),
                )
            });
    }
    // First divergence of each run: vertical marker and label.
    for (i, r) in runs.iter().enumerate() {
        let Some(f) = &r.comparison.analysis.first_divergence else {
            continue;
        };
        let col = run_color(i);
        let x = f.order as f64;
        ch.draw_series(std::iter::once(PathElement::new(
            vec![(x, y1.start), (x, y1.end)],
            col.mix(0.8).stroke_width(2),
        )))
        .map_err(draw_err)?;
        let y = clampv(f.rel_l2_err).min(y1.end);
        ch.draw_series(std::iter::once(Circle::new((x, y), 6, col.filled())))
            .map_err(draw_err)?;
        let right = x < x_lo + (x_hi - x_lo) * 0.6;
        let text = format!("first divergence: {} ({})", f.name, r.label);
        let style = TextStyle::from((super::font::FAMILY, 16).into_font())
            .color(&col)
            .pos(plotters::style::text_anchor::Pos::new(
                if right {
                    plotters::style::text_anchor::HPos::Left
                } else {
                    plotters::style::text_anchor::HPos::Right
                },
                plotters::style::text_anchor::VPos::Top,
            ));
        let ly = y1.end / 10f64.powf(0.3 + 0.45 * i as f64);
        let dx = (x_hi - x_lo) * 0.006;
        let lx = if right { x + dx } else { x - dx };
        ch.draw_series(std::iter::once(Text::new(text, (lx, ly), style)))
            .map_err(draw_err)?;
    }
    ch.configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font((super::font::FAMILY, 14))
        .draw()
        .map_err(draw_err)?;

    let y2 = log_range(all.iter().flat_map(|s| s.abs.iter().map(|p| p.1)));
    let mut ch2 = ChartBuilder::on(&bottom)
        .margin(12)
        .margin_right(96)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(x_lo..x_hi, y2.clone().log_scale())
        .map_err(draw_err)?;
    ch2.configure_mesh()
        .x_labels(n_labels)
        .x_label_formatter(&label_at)
        .y_label_formatter(&|v| format!("{v:.0e}"))
        .y_desc("max abs error")
        .x_desc("execution order (place names thinned)")
        .label_style((super::font::FAMILY, 14))
        .axis_desc_style((super::font::FAMILY, 15))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(draw_err)?;
    for (i, s) in all.iter().enumerate() {
        ch2.draw_series(LineSeries::new(
            s.abs.iter().map(|&(x, y)| (x, y.min(y2.end))),
            run_color(i).stroke_width(2),
        ))
        .map_err(draw_err)?;
    }
    for (i, r) in runs.iter().enumerate() {
        if let Some(f) = &r.comparison.analysis.first_divergence {
            let x = f.order as f64;
            ch2.draw_series(std::iter::once(PathElement::new(
                vec![(x, y2.start), (x, y2.end)],
                run_color(i).mix(0.8).stroke_width(2),
            )))
            .map_err(draw_err)?;
        }
    }
    Ok(())
}

/// The drift plot as PNG.
pub fn png(runs: &[Run]) -> anyhow::Result<Vec<u8>> {
    super::to_png(SIZE.0, SIZE.1, |root| draw(root, runs))
}

/// The drift plot as SVG.
pub fn svg(runs: &[Run]) -> anyhow::Result<String> {
    super::to_svg(SIZE.0, SIZE.1, |root| draw(root, runs))
}
