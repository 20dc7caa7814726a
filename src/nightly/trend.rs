//! Trend plots of a run history: chosen places' and the final output's relative L2 error over
//! runs, with the run where the current regression started marked. `html` is self-contained
//! (inline SVG, no scripts); `png` and `svg` are drawn with plotters using an embedded font.

use super::history::{regression_start, Record};
use super::junit::escape;
use crate::report::fmt_f;
use plotters::prelude::*;
use std::fmt::Write;
use std::sync::Once;

/// One plotted line.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Legend label.
    pub name: String,
    /// Error per run (`None`: absent or not measurable).
    pub values: Vec<Option<f64>>,
}

/// What a trend shows.
#[derive(Clone, Debug, PartialEq)]
pub struct Trend {
    /// Run labels (run id, else date).
    pub labels: Vec<String>,
    /// Whether each run passed.
    pub passed: Vec<bool>,
    /// Lines, the final output's first.
    pub series: Vec<Series>,
    /// Index of the run where the current regression started.
    pub regression_start: Option<usize>,
}

/// Smallest error drawn (log scale): bit-identical runs sit on this floor.
const FLOOR: f64 = 1e-12;
const W: u32 = 1000;
const H: u32 = 520;

impl Trend {
    /// The final output's error plus `places`, or when none are given the `top` places with
    /// the largest error in the latest run.
    pub fn new(runs: &[Record], places: &[String], top: usize) -> Trend {
        let mut names: Vec<String> = Vec::new();
        let last = runs.last();
        if places.is_empty() {
            if let Some(l) = last {
                let mut v: Vec<(&String, f64)> = l
                    .rel_l2_err
                    .iter()
                    .filter(|(k, _)| Some(*k) != l.final_output.as_ref())
                    .filter_map(|(k, e)| Some((k, (*e)?)))
                    .collect();
                v.sort_by(|a, b| b.1.total_cmp(&a.1));
                names.extend(v.into_iter().take(top).map(|(k, _)| k.clone()));
            }
        } else {
            names.extend(places.iter().cloned());
        }
        let mut series = vec![Series {
            name: "final output".into(),
            values: runs.iter().map(Record::final_err).collect(),
        }];
        for n in names {
            series.push(Series {
                values: runs
                    .iter()
                    .map(|r| r.rel_l2_err.get(&n).copied().flatten())
                    .collect(),
                name: n,
            });
        }
        Trend {
            labels: runs.iter().map(Record::label).collect(),
            passed: runs.iter().map(|r| r.passed).collect(),
            series,
            regression_start: regression_start(runs),
        }
    }

    fn y_range(&self) -> (f64, f64) {
        let vals = self.series.iter().flat_map(|s| s.values.iter().flatten());
        let (lo, hi) = vals.fold((f64::INFINITY, 0.0f64), |(lo, hi), &v| {
            let v = v.max(FLOOR);
            (lo.min(v), hi.max(v))
        });
        if hi == 0.0 {
            return (1e-6, 1.0);
        }
        let lo = 10f64.powf(lo.log10().floor());
        let hi = 10f64.powf(hi.log10().ceil());
        (lo, if hi <= lo { lo * 10.0 } else { hi })
    }

    /// Self-contained HTML page: the inline SVG chart and a table of the runs.
    pub fn html(&self) -> String {
        let mut s = String::from(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>driftscope trend</title>\n\
             <style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}\
             td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}.fail{color:#c00}</style>\n\
             </head><body>\n<h1>driftscope: accuracy trend</h1>\n",
        );
        match self.regression_start {
            Some(i) => {
                let _ = writeln!(
                    s,
                    "<p class=\"fail\">Regression started at run <b>{}</b> (run {} of {}).</p>",
                    escape(&self.labels[i]),
                    i + 1,
                    self.labels.len()
                );
            }
            None => s.push_str("<p>The latest run passes.</p>\n"),
        }
        s.push_str(&self.inline_svg());
        s.push_str("\n<h2>Runs</h2>\n<table><tr><th>#</th><th>run</th><th>result</th>");
        for se in &self.series {
            let _ = write!(s, "<th>{}</th>", escape(&se.name));
        }
        s.push_str("</tr>\n");
        for (i, l) in self.labels.iter().enumerate() {
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td{}>{}</td>",
                i + 1,
                escape(l),
                if self.passed[i] {
                    ""
                } else {
                    " class=\"fail\""
                },
                if self.passed[i] { "pass" } else { "fail" }
            );
            for se in &self.series {
                let _ = write!(
                    s,
                    "<td>{}</td>",
                    se.values[i].map(fmt_f).unwrap_or_else(|| "-".into())
                );
            }
            s.push_str("</tr>\n");
        }
        s.push_str("</table>\n</body></html>\n");
        s
    }

    /// The chart as an SVG element written by hand (for the HTML page).
    fn inline_svg(&self) -> String {
        let (w, h) = (W as f64, H as f64);
        let (l, r, t, b) = (80.0, 260.0, 20.0, 110.0);
        let (lo, hi) = self.y_range();
        let n = self.labels.len().max(1);
        let x = |i: usize| l + (w - l - r) * (i as f64 + 0.5) / n as f64;
        let y = |v: f64| {
            let f = (v.max(FLOOR).log10() - lo.log10()) / (hi.log10() - lo.log10());
            t + (h - t - b) * (1.0 - f)
        };
        let mut s = String::new();
        let _ = writeln!(
            s,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" font-family=\"sans-serif\" font-size=\"12\">"
        );
        let _ = writeln!(s, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
        let mut e = lo;
        while e <= hi * 1.0001 {
            let _ = writeln!(
                s,
                "<line x1=\"{l}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{e:.0e}</text>",
                w - r,
                l - 6.0,
                y(e) + 4.0,
                y = y(e)
            );
            e *= 10.0;
        }
        let _ = writeln!(
            s,
            "<text x=\"16\" y=\"{:.1}\" transform=\"rotate(-90 16 {:.1})\" text-anchor=\"middle\">relative L2 error</text>",
            (h - b + t) / 2.0,
            (h - b + t) / 2.0
        );
        let step = n.div_ceil(30).max(1);
        for (i, lab) in self.labels.iter().enumerate().step_by(step) {
            let short = tail(lab, 20);
            let _ = writeln!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" transform=\"rotate(-45 {:.1} {:.1})\" text-anchor=\"end\"{}>{}</text>",
                x(i),
                h - b + 16.0,
                x(i),
                h - b + 16.0,
                if self.passed[i] { "" } else { " fill=\"#c00\"" },
                escape(&short)
            );
        }
        if let Some(i) = self.regression_start {
            let _ = writeln!(
                s,
                "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{t}\" y2=\"{1:.1}\" stroke=\"#c00\" stroke-width=\"2\" stroke-dasharray=\"6 4\"/><text x=\"{2:.1}\" y=\"{3:.1}\" fill=\"#c00\">regression started: {4}</text>",
                x(i),
                h - b,
                x(i) + 4.0,
                t + 12.0,
                escape(&self.labels[i])
            );
        }
        let _ = writeln!(
            s,
            "<rect x=\"{l}\" y=\"{t}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"none\" stroke=\"#333\"/>",
            w - l - r,
            h - t - b
        );
        for (k, se) in self.series.iter().enumerate() {
            let c = Palette99::pick(k).to_rgba();
            let color = format!("rgb({},{},{})", c.0, c.1, c.2);
            let pts: Vec<String> = se
                .values
                .iter()
                .enumerate()
                .filter_map(|(i, v)| Some(format!("{:.1},{:.1}", x(i), y((*v)?))))
                .collect();
            let _ = writeln!(
                s,
                "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
                pts.join(" ")
            );
            for (i, v) in se.values.iter().enumerate() {
                if let Some(v) = v {
                    let _ = writeln!(
                        s,
                        "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{color}\"><title>{}: {} = {}</title></circle>",
                        x(i),
                        y(*v),
                        escape(&self.labels[i]),
                        escape(&se.name),
                        fmt_f(*v)
                    );
                }
            }
            let ly = t + 10.0 + 18.0 * k as f64;
            let short: String = se.name.chars().take(34).collect();
            let _ = writeln!(
                s,
                "<line x1=\"{0:.1}\" x2=\"{1:.1}\" y1=\"{ly:.1}\" y2=\"{ly:.1}\" stroke=\"{color}\" stroke-width=\"3\"/><text x=\"{2:.1}\" y=\"{3:.1}\">{4}</text>",
                w - r + 10.0,
                w - r + 30.0,
                w - r + 36.0,
                ly + 4.0,
                escape(&short)
            );
        }
        s.push_str("</svg>\n");
        s
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: DrawingArea<DB, plotters::coord::Shift>,
    ) -> anyhow::Result<()>
    where
        DB::ErrorType: 'static,
    {
        register_font();
        let e = |x: DrawingAreaErrorKind<DB::ErrorType>| anyhow::anyhow!("plotting failed: {x:?}");
        root.fill(&WHITE).map_err(e)?;
        let (lo, hi) = self.y_range();
        let n = self.labels.len().max(1);
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "driftscope: relative L2 error over runs",
                ("sans-serif", 22),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(80)
            .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), (lo..hi).log_scale())
            .map_err(e)?;
        let labels = self.labels.clone();
        chart
            .configure_mesh()
            .x_labels(n.min(12))
            .x_label_formatter(&|v| {
                let i = v.round();
                if (v - i).abs() > 1e-6 || i < 0.0 {
                    return String::new();
                }
                labels
                    .get(i as usize)
                    .map(|l| tail(l, 16))
                    .unwrap_or_default()
            })
            .y_label_formatter(&|v| format!("{v:.0e}"))
            .y_desc("relative L2 error")
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(e)?;
        if let Some(i) = self.regression_start {
            let red = RGBColor(200, 0, 0);
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(i as f64, lo), (i as f64, hi)],
                    red.stroke_width(2),
                )))
                .map_err(e)?
                .label(format!("regression started: {}", self.labels[i]))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], red.stroke_width(2))
                });
        }
        for (k, se) in self.series.iter().enumerate() {
            let c = Palette99::pick(k).to_rgba();
            let color = RGBColor(c.0, c.1, c.2);
            let pts: Vec<(f64, f64)> = se
                .values
                .iter()
                .enumerate()
                .filter_map(|(i, v)| Some((i as f64, (*v)?.max(FLOOR))))
                .collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                .map_err(e)?
                .label(se.name.chars().take(40).collect::<String>())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
                });
            chart
                .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))
                .map_err(e)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 13))
            .draw()
            .map_err(e)?;
        root.present().map_err(e)?;
        Ok(())
    }

    /// The chart as an SVG document (plotters).
    pub fn svg(&self) -> anyhow::Result<String> {
        let mut s = String::new();
        self.draw(SVGBackend::with_string(&mut s, (W, H)).into_drawing_area())?;
        Ok(s)
    }

    /// The chart as PNG bytes (plotters).
    pub fn png(&self) -> anyhow::Result<Vec<u8>> {
        let mut rgb = vec![0u8; (W * H * 3) as usize];
        self.draw(BitMapBackend::with_buffer(&mut rgb, (W, H)).into_drawing_area())?;
        let img = image::RgbImage::from_raw(W, H, rgb)
            .ok_or_else(|| anyhow::anyhow!("plot buffer has the wrong size"))?;
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageOutputFormat::Png)?;
        Ok(out.into_inner())
    }
}

/// The last `n` characters of a label (run ids differ at their end), `…` marking a cut.
fn tail(s: &str, n: usize) -> String {
    let c: Vec<char> = s.chars().collect();
    if c.len() <= n {
        return s.to_string();
    }
    std::iter::once('…')
        .chain(c[c.len() - (n - 1)..].iter().copied())
        .collect()
}

/// Registers the embedded DejaVu Sans as plotters' `sans-serif` (no system fonts needed).
fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}
