//! SVG charts of a report (plotters, SVG backend only).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::report::{Report, ValidateRow};

const SIZE: (u32, u32) = (800, 480);

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type Chart = fn(&Report, &Area<'_>) -> Result<()>;
/// A chart with both axes log-scaled.
type LogLog<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<LogCoord<f64>, LogCoord<f64>>>;
/// One line of a validate chart: its label and its value per row.
type RowSeries = (&'static str, fn(&ValidateRow) -> f64);
const FONT: &str = "sans-serif";
/// Minor grid lines (log axes draw many).
const LIGHT: RGBColor = RGBColor(245, 245, 245);
const COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
];

/// Writes every chart into `dir`; returns the files written.
pub fn write_all(report: &Report, dir: &Path) -> Result<Vec<PathBuf>> {
    let charts: [(&str, Chart); 5] = [
        ("validate_latency.svg", validate_latency),
        ("validate_ratio.svg", validate_ratio),
        ("hello_throughput.svg", hello_throughput),
        ("gateway_overhead.svg", gateway_overhead),
        ("rss.svg", rss),
    ];
    let optional: [(&str, Chart, bool); 1] = [("mixed.svg", mixed_routing, report.mixed.is_some())];
    let charts = charts
        .into_iter()
        .chain(optional.into_iter().filter(|c| c.2).map(|(n, c, _)| (n, c)));
    let mut written = Vec::new();
    for (name, draw) in charts {
        let mut svg = String::new();
        {
            let area = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
            area.fill(&WHITE).map_err(plot_error)?;
            draw(report, &area).with_context(|| format!("drawing {name}"))?;
            area.present().map_err(plot_error)?;
        }
        let path = dir.join(name);
        std::fs::write(&path, svg).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

fn plot_error<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plotters: {e:?}")
}

/// (min, max) of the values, widened for a log axis.
fn log_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return (0.1, 10.0);
    }
    (lo / 2.0, hi * 2.0)
}

/// Mean latency per batch size, native vs the two Wasm modes (log-log).
fn validate_latency(r: &Report, area: &Area<'_>) -> Result<()> {
    let rows = &r.validate.rows;
    let (x0, x1) = log_range(rows.iter().map(|r| f64::from(r.items)));
    let (y0, y1) = log_range(
        rows.iter()
            .flat_map(|r| [r.native.mean_ms, r.wasm_fresh.mean_ms, r.wasm_reuse.mean_ms]),
    );
    let mut chart = log_log(
        area,
        "POST /validate: mean latency (1 connection)",
        ((x0, x1), (y0, y1)),
        ("signed items per batch", "mean latency (ms)"),
        64,
        |v| format!("{v}"),
    )?;
    let series: [RowSeries; 3] = [
        ("native (gateway)", |r| r.native.mean_ms),
        ("Wasm, fresh instance", |r| r.wasm_fresh.mean_ms),
        ("Wasm, instance reuse", |r| r.wasm_reuse.mean_ms),
    ];
    for (i, (label, value)) in series.into_iter().enumerate() {
        let color = COLORS[i];
        let points = rows
            .iter()
            .map(|r| (f64::from(r.items), value(r)))
            .collect();
        line_with_points(
            &mut chart,
            points,
            color,
            color.stroke_width(2),
            Some(label),
        )?;
    }
    legend(&mut chart, SeriesLabelPosition::UpperLeft)
}

/// Wasm / native latency ratio per batch size, with the 1.5x line.
fn validate_ratio(r: &Report, area: &Area<'_>) -> Result<()> {
    let rows = &r.validate.rows;
    let threshold = r.validate.crossover.threshold;
    let (x0, x1) = log_range(rows.iter().map(|r| f64::from(r.items)));
    let (y0, y1) = log_range(
        rows.iter()
            .flat_map(|r| [r.fresh_ratio, r.reuse_ratio])
            .chain([threshold, 1.0]),
    );
    let mut chart = log_log(
        area,
        "POST /validate: Wasm latency / native latency",
        ((x0, x1), (y0, y1)),
        ("signed items per batch", "ratio (x)"),
        64,
        |v| format!("{v}"),
    )?;
    let series: [RowSeries; 2] = [
        ("fresh instance / native", |r| r.fresh_ratio),
        ("instance reuse / native", |r| r.reuse_ratio),
    ];
    for (i, (label, value)) in series.into_iter().enumerate() {
        let color = COLORS[i + 1];
        let points = rows
            .iter()
            .map(|r| (f64::from(r.items), value(r)))
            .collect();
        line_with_points(
            &mut chart,
            points,
            color,
            color.stroke_width(2),
            Some(label),
        )?;
    }
    let gray = RGBColor(120, 120, 120);
    chart
        .draw_series(LineSeries::new(
            vec![(x0, threshold), (x1, threshold)],
            gray.stroke_width(1),
        ))
        .map_err(plot_error)?
        .label(format!("{threshold}x (crossover)"))
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], gray));
    legend(&mut chart, SeriesLabelPosition::UpperLeft)
}

/// Requests per second of the four hello servers (bars).
fn hello_throughput(r: &Report, area: &Area<'_>) -> Result<()> {
    let h = &r.hello;
    let bars = [
        ("native Axum", &h.native_axum),
        ("embedded fresh", &h.embedded_fresh),
        ("embedded reuse", &h.embedded_reuse),
        ("wasmtime serve", &h.wasmtime_serve),
    ];
    let top = bars.iter().map(|(_, s)| s.rps).fold(1.0f64, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!(
                "Trivial hello: requests/s (wrk -t{} -c{})",
                h.threads, h.connections
            ),
            (FONT, 22),
        )
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(72)
        .build_cartesian_2d(0f64..bars.len() as f64, 0f64..top)
        .map_err(plot_error)?;
    let names: Vec<&str> = bars.iter().map(|(n, _)| *n).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(LIGHT)
        .x_labels(bars.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - x.floor() - 0.5).abs() < 0.01 && i < names.len() {
                names[i].to_string()
            } else {
                String::new()
            }
        })
        .y_desc("requests/s")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(plot_error)?;
    for (i, (_, stats)) in bars.iter().enumerate() {
        let x = i as f64;
        let color = COLORS[i];
        chart
            .draw_series([Rectangle::new(
                [(x + 0.15, 0.0), (x + 0.85, stats.rps)],
                color.filled(),
            )])
            .map_err(plot_error)?;
        let label_style = TextStyle::from((FONT, 14)).pos(Pos::new(HPos::Center, VPos::Bottom));
        chart
            .draw_series([Text::new(
                format!("{:.0}/s, p99 {:.1} ms", stats.rps, stats.p99_ms),
                (x + 0.5, stats.rps + top * 0.01),
                label_style,
            )])
            .map_err(plot_error)?;
    }
    Ok(())
}

/// Requests per second vs connections, serve-spin alone vs behind the gateway.
fn gateway_overhead(r: &Report, area: &Area<'_>) -> Result<()> {
    let rows = &r.gateway_overhead.rows;
    let (x0, x1) = log_range(rows.iter().map(|r| f64::from(r.connections)));
    let (y0, y1) = log_range(rows.iter().flat_map(|r| [r.direct.rps, r.via_gateway.rps]));
    let mut chart = log_log(
        area,
        "Gateway overhead: requests/s by connections",
        ((x0, x1), (y0, y1)),
        ("connections", "requests/s"),
        72,
        |v| format!("{v:.0}"),
    )?;
    let mut i = 0;
    for workload in ["hello", "create"] {
        let selected: Vec<_> = rows.iter().filter(|r| r.workload == workload).collect();
        for (side, via) in [("serve-spin", false), ("via gateway", true)] {
            let color = COLORS[i % COLORS.len()];
            i += 1;
            let points = selected
                .iter()
                .map(|r| {
                    let s = if via { &r.via_gateway } else { &r.direct };
                    (f64::from(r.connections), s.rps)
                })
                .collect();
            let style = if via {
                color.stroke_width(2)
            } else {
                color.stroke_width(1)
            };
            let label = format!("{workload}, {side}");
            line_with_points(&mut chart, points, color, style, Some(&label))?;
        }
    }
    // Upper left: the slow `create` lines run along the bottom to the
    // right edge, where a lower-right legend covered their 64-connection
    // points; hello at 1 connection sits well below the top.
    legend(&mut chart, SeriesLabelPosition::UpperLeft)
}

/// Scenario 7: each configuration's two runs, throughput against p99
/// (up and to the left is better).
fn mixed_routing(r: &Report, area: &Area<'_>) -> Result<()> {
    let Some(m) = &r.mixed else { return Ok(()) };
    let runs = || m.configs.iter().flat_map(|c| c.runs.iter());
    let x1 = runs().map(|s| s.p99_ms).fold(1.0f64, f64::max) * 1.15;
    let y1 = runs().map(|s| s.rps).fold(1.0f64, f64::max) * 1.25;
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!(
                "Mixed validate, closed loop at {} connections: two runs each",
                m.connections
            ),
            (FONT, 22),
        )
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..x1, 0f64..y1)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .light_line_style(LIGHT)
        .x_desc("p99 latency (ms)")
        .y_desc("requests/s")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(plot_error)?;
    for (i, c) in m.configs.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points: Vec<(f64, f64)> = c.runs.iter().map(|s| (s.p99_ms, s.rps)).collect();
        line_with_points(
            &mut chart,
            points,
            color,
            color.stroke_width(1),
            Some(&c.name),
        )?;
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight)
}

/// VmRSS against requests served.
fn rss(r: &Report, area: &Area<'_>) -> Result<()> {
    let samples = &r.rss.samples;
    let x1 = samples
        .iter()
        .map(|s| s.requests as f64)
        .fold(1.0f64, f64::max)
        * 1.05;
    let y1 = samples.iter().map(|s| s.mib).fold(1.0f64, f64::max) * 1.25;
    let mut chart = ChartBuilder::on(area)
        .caption("Gateway VmRSS while serving the app", (FONT, 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..x1, 0f64..y1)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .light_line_style(LIGHT)
        .x_desc("requests served")
        .y_desc("VmRSS (MiB)")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(plot_error)?;
    let points: Vec<(f64, f64)> = samples.iter().map(|s| (s.requests as f64, s.mib)).collect();
    let color = COLORS[0];
    line_with_points(&mut chart, points, color, color.stroke_width(2), None)
}

/// A line through `points` in `style` with a `color` dot at each, in the
/// legend when it has a `label`.
fn line_with_points<'a, 'b: 'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'b>, Cartesian2d<X, Y>>,
    points: Vec<(f64, f64)>,
    color: RGBColor,
    style: ShapeStyle,
    label: Option<&str>,
) -> Result<()>
where
    X: plotters::coord::ranged1d::Ranged<ValueType = f64>,
    Y: plotters::coord::ranged1d::Ranged<ValueType = f64>,
{
    let line = chart
        .draw_series(LineSeries::new(points.clone(), style))
        .map_err(plot_error)?;
    if let Some(label) = label {
        line.label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
    }
    chart
        .draw_series(
            points
                .into_iter()
                .map(|p| Circle::new(p, 4, color.filled())),
        )
        .map_err(plot_error)?;
    Ok(())
}

/// A chart with log-scaled axes over `ranges` (x, y), its grid and axis
/// descriptions (`descs`: x, y) drawn; x labels are whole numbers,
/// y labels as `y_label` writes them.
fn log_log<'a, 'b: 'a>(
    area: &'a DrawingArea<SVGBackend<'b>, Shift>,
    caption: &str,
    ranges: ((f64, f64), (f64, f64)),
    descs: (&str, &str),
    y_label_area: u32,
    y_label: fn(&f64) -> String,
) -> Result<LogLog<'a, 'b>> {
    let ((x0, x1), (y0, y1)) = ranges;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT, 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(y_label_area)
        .build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .light_line_style(LIGHT)
        .x_desc(descs.0)
        .y_desc(descs.1)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&y_label)
        .draw()
        .map_err(plot_error)?;
    Ok(chart)
}

fn legend<'a, 'b: 'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'b>, Cartesian2d<X, Y>>,
    position: SeriesLabelPosition,
) -> Result<()>
where
    X: plotters::coord::ranged1d::Ranged<ValueType = f64>,
    Y: plotters::coord::ranged1d::Ranged<ValueType = f64>,
{
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 14))
        .draw()
        .map_err(plot_error)
}
