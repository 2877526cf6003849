//! Plot helpers shared by `simulate` and `validate`: figures described as data (line charts
//! with optional log axes, error bars and markers; heat maps), each written as PNG + SVG
//! together with the CSV of the numbers it draws, all atomically (temp file + rename).
//!
//! Log axes are drawn by plotting log₁₀ of the data on a linear axis and labelling ticks 10ⁿ,
//! so one chart type serves every combination of linear and log axes.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::{Error, Result};
use crate::io::{Csv, temp_path, write_atomic};

mod draw;

pub use draw::ramp;

/// Width and height of every figure in pixels.
pub const SIZE: (u32, u32) = (1000, 700);

/// A colour-blind-friendly palette (Okabe & Ito 2008) extended with grey and black.
pub const PALETTE: [RGBColor; 9] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(120, 94, 40),
    RGBColor(110, 110, 110),
    RGBColor(0, 0, 0),
];

/// Colour number `i` of [`PALETTE`], cycling.
pub fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

static FONT: Once = Once::new();

/// Registers the bundled DejaVu Sans as plotters' "sans-serif" (no system fonts needed).
fn register_font() {
    FONT.call_once(|| {
        let bytes: &'static [u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
        // The bundled font is a valid TrueType file; a failure here is a build defect.
        if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_err() {
            panic!("the bundled DejaVu Sans font does not parse: the build is defective");
        }
    });
}

/// One axis: label (with units), scale and data range (in data units, not log units).
#[derive(Debug, Clone)]
pub struct Axis {
    /// Label shown under/next to the axis.
    pub label: String,
    /// Logarithmic scale (base 10).
    pub log: bool,
    /// Data range (lo, hi); for a log axis both must be > 0.
    pub range: (f64, f64),
}

impl Axis {
    /// A linear axis.
    pub fn linear(label: impl Into<String>, lo: f64, hi: f64) -> Self {
        Self {
            label: label.into(),
            log: false,
            range: (lo, hi),
        }
    }
    /// A log₁₀ axis.
    pub fn log(label: impl Into<String>, lo: f64, hi: f64) -> Self {
        Self {
            label: label.into(),
            log: true,
            range: (lo, hi),
        }
    }
    fn map(&self, v: f64) -> f64 {
        if self.log { v.log10() } else { v }
    }
    fn mapped_range(&self) -> std::ops::Range<f64> {
        self.map(self.range.0)..self.map(self.range.1)
    }
    /// How many tick labels to ask for: one per decade on a log axis (so ticks land on 10ⁿ).
    fn labels(&self) -> usize {
        if self.log {
            let r = self.mapped_range();
            ((r.end.floor() - r.start.ceil()) as usize + 1).max(2)
        } else {
            10
        }
    }
    fn tick(&self, v: f64) -> String {
        if !self.log {
            return trim_number(v);
        }
        let r = v.round();
        if (v - r).abs() < 1e-9 {
            format!("10{}", superscript(r as i64))
        } else {
            trim_number(10f64.powf(v))
        }
    }
}

fn trim_number(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.to_string() }
}

fn superscript(n: i64) -> String {
    const DIGITS: [char; 10] = ['⁰', '¹', '²', '³', '⁴', '⁵', '⁶', '⁷', '⁸', '⁹'];
    let mut s: String = n
        .unsigned_abs()
        .to_string()
        .chars()
        .map(|c| DIGITS[c as usize - '0' as usize])
        .collect();
    if n < 0 {
        s.insert(0, '⁻');
    }
    s
}

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Solid line.
    Line,
    /// Dashed line.
    Dashed,
    /// Filled circles only.
    Markers,
    /// Solid line with filled circles.
    LineMarkers,
    /// Large hollow triangles (highlighted points such as a Pareto frontier or a marked strategy).
    Highlight,
}

/// One series of (x, y) points in data units.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend entry; `None` keeps it out of the legend.
    pub label: Option<String>,
    /// The points.
    pub points: Vec<(f64, f64)>,
    /// Colour.
    pub color: RGBColor,
    /// Drawing style.
    pub style: Style,
    /// Optional vertical error bars (lo, hi) per point, in data units.
    pub err: Option<Vec<(f64, f64)>>,
    /// Optional shaded band (lo, hi) per point (confidence intervals), in data units.
    pub band: Option<Vec<(f64, f64)>>,
}

impl Series {
    /// A series without error bars.
    pub fn new(label: Option<String>, points: Vec<(f64, f64)>, color: RGBColor, style: Style) -> Self {
        Self {
            label,
            points,
            color,
            style,
            err: None,
            band: None,
        }
    }
}

/// A 2-D chart of several series.
#[derive(Debug, Clone)]
pub struct LineChart {
    /// Title at the top.
    pub title: String,
    /// Horizontal axis.
    pub x: Axis,
    /// Vertical axis.
    pub y: Axis,
    /// The series, drawn in order.
    pub series: Vec<Series>,
    /// Where the legend goes.
    pub legend: SeriesLabelPosition,
}

/// A heat map of rectangular cells coloured by value (viridis-like ramp) with a colour bar.
#[derive(Debug, Clone)]
pub struct Heatmap {
    /// Title at the top.
    pub title: String,
    /// Horizontal axis.
    pub x: Axis,
    /// Vertical axis.
    pub y: Axis,
    /// Cells: (x0, x1, y0, y1, value) in data units.
    pub cells: Vec<(f64, f64, f64, f64, f64)>,
    /// Label of the colour bar.
    pub value_label: String,
}

/// Something that can be drawn on any plotters backend.
pub trait Figure {
    /// Draws the figure onto `area`.
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> std::result::Result<(), String>;
}

/// Writes `stem.png`, `stem.svg` and `stem.csv` into `dir` (created if needed), each atomically.
/// Returns the three paths.
pub fn write_figure(dir: &Path, stem: &str, fig: &impl Figure, csv: &Csv) -> Result<Vec<PathBuf>> {
    register_font();
    fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let plot_err = |message: String| Error::Plot {
        name: stem.to_string(),
        message,
    };

    let png = dir.join(format!("{stem}.png"));
    let tmp = temp_path(&png);
    {
        let area = BitMapBackend::new(&tmp, SIZE).into_drawing_area();
        fig.draw(&area).map_err(plot_err)?;
    }
    fs::rename(&tmp, &png).map_err(|e| Error::io(&png, e))?;

    let svg = dir.join(format!("{stem}.svg"));
    let mut text = String::new();
    {
        let area = SVGBackend::with_string(&mut text, SIZE).into_drawing_area();
        fig.draw(&area).map_err(plot_err)?;
    }
    write_atomic(&svg, text.as_bytes())?;

    let csv_path = dir.join(format!("{stem}.csv"));
    write_atomic(&csv_path, csv.render().as_bytes())?;
    Ok(vec![png, svg, csv_path])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_labels() {
        let a = Axis::log("k", 1.0, 1e4);
        assert_eq!(a.tick(3.0), "10³");
        assert_eq!(a.tick(-2.0), "10⁻²");
        assert_eq!(a.tick(0.5), "3.162");
        assert_eq!(Axis::linear("x", 0.0, 1.0).tick(0.25), "0.25");
        assert_eq!(trim_number(-0.0), "0");
    }

    #[test]
    fn ramp_ends() {
        assert_eq!(ramp(0.0), RGBColor(68, 1, 84));
        assert_eq!(ramp(1.0), RGBColor(253, 231, 37));
    }
}
