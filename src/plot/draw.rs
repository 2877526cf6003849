//! Drawing the figures on a plotters backend: the shared axes, line charts (bands, lines,
//! markers, error bars, legend) and heat maps with their colour bar.

use plotters::chart::SeriesAnno;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::{Axis, Figure, Heatmap, LineChart, SIZE, Series, Style, trim_number};

fn err<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

type Chart<'a, DB> =
    ChartContext<'a, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>>;

/// A titled chart with both axes labelled (log axes as 10ⁿ ticks), with or without grid lines.
fn axes<'a, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    title: &str,
    x: &Axis,
    y: &Axis,
    grid: bool,
) -> std::result::Result<Chart<'a, DB>, String> {
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 24))
        .margin(18)
        .x_label_area_size(55)
        .y_label_area_size(75)
        .build_cartesian_2d(x.mapped_range(), y.mapped_range())
        .map_err(err)?;
    let xf = |v: &f64| x.tick(*v);
    let yf = |v: &f64| y.tick(*v);
    let mut mesh = chart.configure_mesh();
    if !grid {
        mesh.disable_mesh();
    }
    mesh.x_desc(&x.label)
        .y_desc(&y.label)
        .x_label_formatter(&xf)
        .y_label_formatter(&yf)
        .x_labels(x.labels())
        .y_labels(y.labels())
        .label_style(("sans-serif", 16))
        .axis_desc_style(("sans-serif", 18))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(err)?;
    Ok(chart)
}

impl LineChart {
    /// The series' drawable points in plot units: finite, and positive on a log axis.
    fn visible(&self, s: &Series) -> Vec<(f64, f64)> {
        s.points
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite() && (!self.x.log || *x > 0.0) && (!self.y.log || *y > 0.0))
            .map(|&(x, y)| (self.x.map(x), self.y.map(y)))
            .collect()
    }

    /// The shaded band (lo, hi) of `s`, if it has one.
    fn draw_band<DB: DrawingBackend>(&self, chart: &mut Chart<'_, DB>, s: &Series) -> std::result::Result<(), String> {
        let Some(band) = &s.band else { return Ok(()) };
        let mut poly: Vec<(f64, f64)> = s
            .points
            .iter()
            .zip(band)
            .map(|(&(x, _), &(lo, _))| (self.x.map(x), self.y.map(lo)))
            .collect();
        poly.extend(
            s.points
                .iter()
                .zip(band)
                .rev()
                .map(|(&(x, _), &(_, hi))| (self.x.map(x), self.y.map(hi))),
        );
        chart
            .draw_series(std::iter::once(Polygon::new(poly, s.color.mix(0.15).filled())))
            .map_err(err)?;
        Ok(())
    }

    /// The vertical error bars of `s`, if it has them.
    fn draw_error_bars<DB: DrawingBackend>(
        &self,
        chart: &mut Chart<'_, DB>,
        s: &Series,
    ) -> std::result::Result<(), String> {
        let Some(bars) = &s.err else { return Ok(()) };
        chart
            .draw_series(s.points.iter().zip(bars).map(|(&(x, y), &(lo, hi))| {
                ErrorBar::new_vertical(
                    self.x.map(x),
                    self.y.map(lo),
                    self.y.map(y),
                    self.y.map(hi),
                    s.color.stroke_width(1),
                    8,
                )
            }))
            .map_err(err)?;
        Ok(())
    }
}

/// The points `pts` of `s` in its style; returns the annotation to attach a legend entry to.
fn draw_points<'c, 'a, DB: DrawingBackend>(
    chart: &'c mut Chart<'a, DB>,
    s: &Series,
    pts: &[(f64, f64)],
) -> std::result::Result<&'c mut SeriesAnno<'a, DB>, String> {
    let c = s.color;
    match s.style {
        Style::Line => chart.draw_series(LineSeries::new(pts.to_vec(), c.stroke_width(2))),
        Style::Dashed => chart.draw_series(DashedLineSeries::new(pts.to_vec(), 8, 5, c.stroke_width(2))),
        Style::Markers => chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, c.filled()))),
        Style::LineMarkers => {
            chart
                .draw_series(LineSeries::new(pts.to_vec(), c.stroke_width(2)))
                .map_err(err)?;
            chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, c.filled())))
        }
        Style::Highlight => chart.draw_series(pts.iter().map(|&p| TriangleMarker::new(p, 9, c.stroke_width(2)))),
    }
    .map_err(err)
}

/// The legend's sample of a series drawn in `style` and colour `c`, at (x, y).
fn legend_mark<DB: DrawingBackend>(
    style: Style,
    c: RGBColor,
    (x, y): (i32, i32),
) -> DynElement<'static, DB, (i32, i32)> {
    match style {
        Style::Markers => Circle::new((x + 10, y), 4, c.filled()).into_dyn(),
        Style::Highlight => TriangleMarker::new((x + 10, y), 7, c.stroke_width(2)).into_dyn(),
        Style::Dashed => {
            plotters::element::DashedPathElement::new(vec![(x, y), (x + 24, y)], 7, 4, c.stroke_width(3)).into_dyn()
        }
        _ => PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(3)).into_dyn(),
    }
}

impl Figure for LineChart {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> std::result::Result<(), String> {
        area.fill(&WHITE).map_err(err)?;
        let mut chart = axes(area, &self.title, &self.x, &self.y, true)?;
        let mut labelled = false;
        for s in &self.series {
            let pts = self.visible(s);
            self.draw_band(&mut chart, s)?;
            let anno = draw_points(&mut chart, s, &pts)?;
            if let Some(label) = &s.label {
                labelled = true;
                let (style, c) = (s.style, s.color);
                anno.label(label).legend(move |p| legend_mark(style, c, p));
            }
            self.draw_error_bars(&mut chart, s)?;
        }
        if labelled {
            chart
                .configure_series_labels()
                .position(self.legend.clone())
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 15))
                .draw()
                .map_err(err)?;
        }
        area.present().map_err(err)
    }
}

/// A perceptually ordered ramp from dark purple through teal to yellow (a viridis approximation
/// by linear interpolation between five of its anchor colours).
pub fn ramp(t: f64) -> RGBColor {
    const ANCHORS: [(f64, f64, f64); 5] = [
        (68.0, 1.0, 84.0),
        (59.0, 82.0, 139.0),
        (33.0, 145.0, 140.0),
        (94.0, 201.0, 98.0),
        (253.0, 231.0, 37.0),
    ];
    let t = t.clamp(0.0, 1.0) * 4.0;
    let i = (t.floor() as usize).min(3);
    let f = t - i as f64;
    let (a, b) = (ANCHORS[i], ANCHORS[i + 1]);
    let mix = |u: f64, v: f64| (u + (v - u) * f).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

impl Figure for Heatmap {
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> std::result::Result<(), String> {
        area.fill(&WHITE).map_err(err)?;
        let (main, bar) = area.split_horizontally(SIZE.0 - 150);
        let (vmin, vmax) = self
            .cells
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), c| {
                (lo.min(c.4), hi.max(c.4))
            });
        let norm = |v: f64| if vmax > vmin { (v - vmin) / (vmax - vmin) } else { 0.5 };
        let mut chart = axes(&main, &self.title, &self.x, &self.y, false)?;
        chart
            .draw_series(self.cells.iter().map(|&(x0, x1, y0, y1, v)| {
                Rectangle::new(
                    [(self.x.map(x0), self.y.map(y0)), (self.x.map(x1), self.y.map(y1))],
                    ramp(norm(v)).filled(),
                )
            }))
            .map_err(err)?;
        let mut cb = ChartBuilder::on(&bar)
            .margin_top(60)
            .margin_bottom(70)
            .margin_right(10)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..1.0, vmin..vmax.max(vmin + 1e-12))
            .map_err(err)?;
        cb.configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .y_desc(&self.value_label)
            .y_label_formatter(&|v: &f64| trim_number(*v))
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 16))
            .draw()
            .map_err(err)?;
        let steps = 100;
        cb.draw_series((0..steps).map(|i| {
            let lo = vmin + (vmax - vmin) * i as f64 / steps as f64;
            let hi = vmin + (vmax - vmin) * (i + 1) as f64 / steps as f64;
            Rectangle::new([(0.0, lo), (1.0, hi)], ramp(i as f64 / (steps - 1) as f64).filled())
        }))
        .map_err(err)?;
        area.present().map_err(err)
    }
}
