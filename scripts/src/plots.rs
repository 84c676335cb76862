//! PNG charts with plotters (bitmap backend, text through ab_glyph with a font file read at
//! run time, so no system font lookup is needed).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use crate::runs::{Executors, RunRecord, Scenario};
use crate::stats::{cells, CellStats};
use crate::usl::{points_for, UslFit};
use crate::{Error, Result};

/// Font used for every label.
pub const FONT_PATH: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
const FONT: &str = "sans-serif";
const SIZE: (u32, u32) = (1000, 650);

static FONT_OK: OnceLock<std::result::Result<(), String>> = OnceLock::new();

/// Registers the font once per process; a clear error if the file is missing.
pub fn register_font(path: &Path) -> Result<()> {
    let result = FONT_OK.get_or_init(|| {
        let bytes = std::fs::read(path).map_err(|e| {
            format!(
                "font {} unreadable ({e}); install fonts-dejavu-core (Debian/Ubuntu) or similar",
                path.display()
            )
        })?;
        // plotters keeps a 'static reference; the font lives for the whole process anyway.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font(FONT, FontStyle::Normal, bytes)
            .map_err(|_| format!("{} is not a usable font", path.display()))
    });
    result.clone().map_err(|message| Error::Plot {
        path: path.to_owned(),
        message,
    })
}

fn plot_err(path: &Path) -> impl Fn(String) -> Error + '_ {
    move |message| Error::Plot {
        path: path.to_owned(),
        message,
    }
}

/// A distinct colour per series.
fn colour(i: usize) -> RGBColor {
    const C: [RGBColor; 8] = [
        RGBColor(0, 0, 0),
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
    ];
    C[i % C.len()]
}

fn exec_label(e: Executors) -> String {
    match e {
        Executors::Local => "local (no grid)".into(),
        Executors::Grid(1) => "1 executor".into(),
        Executors::Grid(n) => format!("{n} executors"),
    }
}

/// Writes the three charts of one scenario into `dir`; returns their paths.
pub fn plot_scenario(
    dir: &Path,
    scenario: &Scenario,
    records: &[&RunRecord],
    fit: Option<&UslFit>,
    machine: &str,
) -> Result<Vec<PathBuf>> {
    register_font(Path::new(FONT_PATH))?;
    let stats = cells(records);
    if stats.is_empty() {
        return Ok(Vec::new());
    }
    let slug = scenario.slug();
    let a = dir.join(format!("processing_time_{slug}.png"));
    processing_time(&a, scenario, &stats, machine).map_err(plot_err(&a))?;
    let b = dir.join(format!("throughput_usl_{slug}.png"));
    throughput(&b, scenario, records, &stats, fit, machine).map_err(plot_err(&b))?;
    let c = dir.join(format!("latency_{slug}.png"));
    latency(&c, scenario, &stats, machine).map_err(plot_err(&c))?;
    Ok(vec![a, b, c])
}

/// Axis label without useless decimals: 5000, 0.25, 1.5e6 -> "1500000".
fn num(v: f64) -> String {
    if v.abs() >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

fn padded(lo: f64, hi: f64, log: bool) -> (f64, f64) {
    if log {
        (lo / 1.3, hi * 1.3)
    } else {
        (0.0, hi * 1.1 + f64::EPSILON)
    }
}

/// The paper's chart: processing time vs order count, one line per setup, min..max whiskers.
fn processing_time(
    path: &Path,
    scenario: &Scenario,
    stats: &[CellStats],
    machine: &str,
) -> std::result::Result<(), String> {
    let (omin, omax) = (
        stats.iter().map(|c| c.orders).min().unwrap_or(1) as f64,
        stats.iter().map(|c| c.orders).max().unwrap_or(1) as f64,
    );
    let (tmin, tmax) = (
        stats
            .iter()
            .map(|c| c.elapsed_s.min)
            .fold(f64::INFINITY, f64::min),
        stats.iter().map(|c| c.elapsed_s.max).fold(0.0, f64::max),
    );
    // Log axes once the sizes span more than a decade (1,000 to 1,000,000 orders).
    let log = omax / omin > 20.0;
    let title = format!("Processing time vs orders ({})", scenario.label());
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (x0, x1) = if log {
        padded(omin, omax, true)
    } else {
        (0.0, omax * 1.05)
    };
    let (y0, y1) = padded(tmin.max(1e-6), tmax, log);
    let series: Vec<Series> = {
        let mut setups: Vec<Executors> = stats.iter().map(|c| c.executors).collect();
        setups.sort();
        setups.dedup();
        setups
            .into_iter()
            .map(|e| {
                let pts = stats
                    .iter()
                    .filter(|c| c.executors == e)
                    .map(|c| {
                        (
                            c.orders as f64,
                            c.elapsed_s.min,
                            c.elapsed_s.median,
                            c.elapsed_s.max,
                        )
                    })
                    .collect();
                (exec_label(e), pts)
            })
            .collect()
    };
    let mut chart = ChartBuilder::on(&root);
    chart
        .caption(title, (FONT, 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70);
    if log {
        let mut c = chart
            .build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())
            .map_err(|e| e.to_string())?;
        lines_with_whiskers(
            &mut c,
            &series,
            "orders sent (log)",
            "processing time (s, log)",
            machine,
        )?;
    } else {
        let mut c = chart
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| e.to_string())?;
        lines_with_whiskers(
            &mut c,
            &series,
            "orders sent",
            "processing time (s)",
            machine,
        )?;
    }
    root.present().map_err(|e| e.to_string())
}

/// A named line: (x, min, median, max) per point.
type Series = (String, Vec<(f64, f64, f64, f64)>);

type Chart<'a, X, Y> = ChartContext<'a, BitMapBackend<'a>, Cartesian2d<X, Y>>;

/// Draws each named series as a line through medians with min..max error bars.
fn lines_with_whiskers<X, Y>(
    chart: &mut Chart<'_, X, Y>,
    series: &[Series],
    x_desc: &str,
    y_desc: &str,
    note: &str,
) -> std::result::Result<(), String>
where
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(format!("{y_desc}   [{note}]"))
        .x_label_formatter(&|x| num(*x))
        .y_label_formatter(&|y| num(*y))
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 15))
        .draw()
        .map_err(|e| e.to_string())?;
    for (i, (name, pts)) in series.iter().enumerate() {
        let col = colour(i);
        chart
            .draw_series(LineSeries::new(
                pts.iter().map(|p| (p.0, p.2)),
                col.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2)));
        chart
            .draw_series(pts.iter().map(|p| Circle::new((p.0, p.2), 4, col.filled())))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(
                pts.iter()
                    .map(|p| ErrorBar::new_vertical(p.0, p.1, p.2, p.3, col, 8)),
            )
            .map_err(|e| e.to_string())?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())
}

/// Throughput vs executors at the largest order count: every run, medians, USL curve, and the
/// local baseline as a horizontal line.
/// The largest order count, its cells (the ones the per-executor plots show) and the x-axis
/// extent in executors (at least 2).
fn largest_cells(stats: &[CellStats]) -> (u64, Vec<&CellStats>, f64) {
    let max_orders = stats.iter().map(|c| c.orders).max().unwrap_or(0);
    let at_max: Vec<&CellStats> = stats.iter().filter(|c| c.orders == max_orders).collect();
    let nmax = at_max
        .iter()
        .map(|c| c.executors.axis())
        .max()
        .unwrap_or(1)
        .max(2) as f64;
    (max_orders, at_max, nmax)
}

fn throughput(
    path: &Path,
    scenario: &Scenario,
    records: &[&RunRecord],
    stats: &[CellStats],
    fit: Option<&UslFit>,
    machine: &str,
) -> std::result::Result<(), String> {
    let (max_orders, at_max, nmax) = largest_cells(stats);
    let runs = points_for(records);
    let local = at_max
        .iter()
        .find(|c| c.executors == Executors::Local)
        .map(|c| c.throughput.median);
    let ymax = runs
        .iter()
        .map(|p| p.1)
        .chain(local)
        .chain(at_max.iter().map(|c| c.throughput.max))
        .fold(0.0, f64::max);
    let ymax = fit
        .map(|f| {
            (1..=(nmax as u32))
                .map(|n| f.predict(n as f64))
                .fold(ymax, f64::max)
        })
        .unwrap_or(ymax)
        * 1.15;
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let title = format!(
        "Throughput vs executors, {max_orders} orders ({})",
        scenario.label()
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..nmax + 0.5, 0.0..ymax.max(1.0))
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("executors (0 = local, no grid)")
        .y_desc(format!("orders/s   [{machine}]"))
        .y_label_formatter(&|y| num(*y))
        .x_label_formatter(&|x| {
            if x.abs() < 1e-9 {
                "local".into()
            } else if x.fract().abs() < 1e-9 {
                format!("{x:.0}")
            } else {
                String::new()
            }
        })
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 15))
        .draw()
        .map_err(|e| e.to_string())?;
    let grey = RGBColor(150, 150, 150);
    chart
        .draw_series(
            runs.iter()
                .map(|&(n, x)| Circle::new((n, x), 3, grey.filled())),
        )
        .map_err(|e| e.to_string())?
        .label("each run")
        .legend(move |(x, y)| Circle::new((x + 10, y), 3, grey.filled()));
    let med: Vec<(f64, f64)> = at_max
        .iter()
        .filter(|c| c.executors != Executors::Local)
        .map(|c| (c.executors.axis() as f64, c.throughput.median))
        .collect();
    let blue = colour(1);
    chart
        .draw_series(med.iter().map(|&p| Cross::new(p, 7, blue.stroke_width(3))))
        .map_err(|e| e.to_string())?
        .label("median")
        .legend(move |(x, y)| Cross::new((x + 10, y), 6, blue.stroke_width(3)));
    if let Some(local) = local {
        let black = colour(0);
        chart
            .draw_series(DashedLineSeries::new(
                vec![(0.0, local), (nmax + 0.5, local)],
                10,
                6,
                black.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label(format!("local, no grid: {local:.0}/s"))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], black.stroke_width(2))
            });
        chart
            .draw_series(std::iter::once(Circle::new(
                (0.0, local),
                5,
                black.filled(),
            )))
            .map_err(|e| e.to_string())?;
    }
    if let Some(f) = fit {
        let red = colour(4);
        let curve: Vec<(f64, f64)> = (0..=100)
            .map(|i| 1.0 + (nmax - 0.5) * i as f64 / 100.0)
            .map(|n| (n, f.predict(n)))
            .collect();
        chart
            .draw_series(LineSeries::new(curve, red.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(format!(
                "USL fit: lambda={:.0}/s sigma={:.3} kappa={:.4} (R2={:.2})",
                f.lambda, f.sigma, f.kappa, f.r2
            ))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], red.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

/// Latency p50/p99/p99.9 (medians over repeats, min..max whiskers) vs executors, log scale.
fn latency(
    path: &Path,
    scenario: &Scenario,
    stats: &[CellStats],
    machine: &str,
) -> std::result::Result<(), String> {
    let (max_orders, at_max, nmax) = largest_cells(stats);
    let pick = |f: fn(&CellStats) -> crate::stats::Summary| -> Vec<(f64, f64, f64, f64)> {
        at_max
            .iter()
            .map(|c| {
                let s = f(c);
                (
                    c.executors.axis() as f64,
                    s.min.max(1.0),
                    s.median.max(1.0),
                    s.max.max(1.0),
                )
            })
            .collect()
    };
    let series = [
        ("p50".to_string(), pick(|c| c.p50_us)),
        ("p99".to_string(), pick(|c| c.p99_us)),
        ("p99.9".to_string(), pick(|c| c.p999_us)),
    ];
    let lo = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.1))
        .fold(f64::INFINITY, f64::min)
        .max(1.0);
    let hi = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.3))
        .fold(1.0, f64::max);
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let title = format!(
        "Order latency (send to final state), {max_orders} orders ({})",
        scenario.label()
    );
    let x: RangedCoordf64 = (-0.3..nmax + 0.3).into();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d(x, (lo / 1.5..hi * 1.5).log_scale())
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("executors (0 = local, no grid)")
        .y_desc(format!("latency (us, log)   [{machine}]"))
        .y_label_formatter(&|y| num(*y))
        .x_label_formatter(&|x| {
            if x.abs() < 1e-9 {
                "local".into()
            } else if (x - x.round()).abs() < 1e-9 {
                format!("{x:.0}")
            } else {
                String::new()
            }
        })
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 15))
        .draw()
        .map_err(|e| e.to_string())?;
    for (i, (name, pts)) in series.iter().enumerate() {
        let col = colour(i + 1);
        chart
            .draw_series(LineSeries::new(
                pts.iter().map(|p| (p.0, p.2)),
                col.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2)));
        chart
            .draw_series(
                pts.iter()
                    .map(|p| ErrorBar::new_vertical(p.0, p.1, p.2, p.3, col, 8)),
            )
            .map_err(|e| e.to_string())?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}
