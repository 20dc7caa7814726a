//! Plots of a comparison: drift along the network, error distribution of one pair, heatmap of
//! one tensor's error (PNG and SVG with plotters and an embedded font), and the interactive
//! HTML report. Every function returns bytes; the caller writes them (report::write_atomic).

pub mod drift;
pub mod font;
pub mod heatmap;
pub mod histogram;
pub mod html;
pub mod ranks;

use crate::compare::{Comparison, PairReport, Status};
use crate::dump::Role;
use plotters::coord::Shift;
use plotters::prelude::*;

/// One device run against the reference, as shown in the plots.
pub struct Run {
    /// Legend label (the device dump's folder name).
    pub label: String,
    /// The comparison of that run against the reference.
    pub comparison: Comparison,
}

/// One point of the drift-along-the-network chart: a place and its representative pair.
#[derive(Clone, Debug)]
pub struct PlacePoint {
    /// Execution order of the place in the reference.
    pub order: usize,
    /// Index into `Comparison::pairs` of the pair plotted for the place: its output with the
    /// largest relative L2 error (any compared pair when the place has no output).
    pub pair: usize,
}

/// The plotted points of a comparison: one per place that has a compared pair, in order.
pub fn place_points(c: &Comparison) -> Vec<PlacePoint> {
    let mut out = Vec::new();
    for g in crate::verdict::places(&c.pairs) {
        let compared: Vec<usize> = g
            .into_iter()
            .filter(|&i| c.pairs[i].status == Status::Compared && c.pairs[i].metrics.is_some())
            .collect();
        let outputs: Vec<usize> = compared
            .iter()
            .copied()
            .filter(|&i| c.pairs[i].role == Role::Output)
            .collect();
        let pool = if outputs.is_empty() {
            &compared
        } else {
            &outputs
        };
        let best = pool.iter().copied().max_by(|&a, &b| {
            rel_l2(&c.pairs[a])
                .unwrap_or(0.0)
                .total_cmp(&rel_l2(&c.pairs[b]).unwrap_or(0.0))
        });
        if let Some(i) = best {
            out.push(PlacePoint {
                order: c.pairs[i].order,
                pair: i,
            });
        }
    }
    out.sort_by_key(|p| p.order);
    out
}

fn rel_l2(p: &PairReport) -> Option<f64> {
    p.metrics.as_ref().map(|m| {
        if m.rel_l2_err.is_nan() {
            f64::INFINITY
        } else {
            m.rel_l2_err
        }
    })
}

/// Line colours of the device runs, in order.
pub const RUN_COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];

/// Colour of run `i`.
pub fn run_color(i: usize) -> RGBColor {
    RUN_COLORS[i % RUN_COLORS.len()]
}

pub(crate) fn draw_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing failed: {e:?}")
}

/// Renders into an RGB bitmap of `w` x `h` and encodes it as PNG.
pub fn to_png(
    w: u32,
    h: u32,
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<u8>> {
    font::ensure();
    let mut buf = vec![255u8; (w as usize) * (h as usize) * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        draw(&root)?;
        root.present().map_err(draw_err)?;
    }
    let mut png = Vec::new();
    image::ImageEncoder::write_image(
        image::codecs::png::PngEncoder::new(&mut png),
        &buf,
        w,
        h,
        image::ColorType::Rgb8,
    )?;
    Ok(png)
}

/// Renders into an SVG document of `w` x `h`.
pub fn to_svg(
    w: u32,
    h: u32,
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> anyhow::Result<()>,
) -> anyhow::Result<String> {
    font::ensure();
    let mut s = String::new();
    {
        let root = SVGBackend::with_string(&mut s, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        draw(&root)?;
        root.present().map_err(draw_err)?;
    }
    Ok(s)
}

/// Close-up of one pair: its error histograms above, the heatmap of |dev - ref| below.
pub fn closeup<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    pair: &PairReport,
    heat: &heatmap::Heat,
) -> anyhow::Result<()> {
    let h = root.dim_in_pixel().1;
    let (top, bottom) = root.split_vertically(h * 2 / 5);
    histogram::draw(&top, pair)?;
    heatmap::draw(&bottom, heat)
}

/// Size of the close-up plot in pixels.
pub const CLOSEUP_SIZE: (u32, u32) = (1100, 900);

/// The close-up of one pair as PNG.
pub fn closeup_png(pair: &PairReport, heat: &heatmap::Heat) -> anyhow::Result<Vec<u8>> {
    to_png(CLOSEUP_SIZE.0, CLOSEUP_SIZE.1, |root| {
        closeup(root, pair, heat)
    })
}

/// The close-up of one pair as SVG.
pub fn closeup_svg(pair: &PairReport, heat: &heatmap::Heat) -> anyhow::Result<String> {
    to_svg(CLOSEUP_SIZE.0, CLOSEUP_SIZE.1, |root| {
        closeup(root, pair, heat)
    })
}

/// Formats a positive number compactly for labels (`4.4e-2`).
pub fn short(x: f64) -> String {
    if x == 0.0 {
        "0".into()
    } else if !x.is_finite() {
        format!("{x}")
    } else if (1e-2..1e4).contains(&x.abs()) {
        format!("{x:.3}")
    } else {
        format!("{x:.1e}")
    }
}

/// Shortens a place name for an axis label.
pub fn short_name(s: &str, max: usize) -> String {
    let s = s.strip_suffix(".forward").unwrap_or(s);
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let tail: String = s
            .chars()
            .rev()
            .take(max.saturating_sub(1))
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("…{tail}")
    }
}
