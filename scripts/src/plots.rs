//! PNG charts with plotters (bitmap backend, text through ab_glyph with a font file read at
//! run time, so no system font lookup is needed).
//!
//! Per scenario: the paper's figure (processing time per order count, grouped by setup, linear
//! axis) for the paper's sizes, one panel per size for the large runs, throughput with the USL
//! fit, and latency percentiles. Every axis gets several labelled ticks; every chart has a
//! footer naming the machine and the invocations its data comes from.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::runs::{Executors, RunRecord, Scenario};
use crate::stats::{cells, CellStats, Summary};
use crate::table::Sources;
use crate::usl::{points_for, UslFit};
use crate::{Error, Result};

/// Font used for every label.
pub const FONT_PATH: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
const FONT: &str = "sans-serif";
const SIZE: (u32, u32) = (1200, 700);
/// Order counts up to this go into the paper's figure; larger ones get their own panels (on
/// one linear axis with the paper's sizes they would flatten them to nothing).
pub const PAPER_MAX_ORDERS: u64 = 10_000;
const FOOTER_PX: u32 = 28;
const LEGEND_PX: u32 = 190;
/// y range = data range x this, leaving the top quarter of a chart free for its legend.
const LEGEND_HEADROOM: f64 = 1.4;

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

/// plotters' errors are generic over the backend; the charts only need their text.
trait Text<T> {
    fn text(self) -> std::result::Result<T, String>;
}

impl<T, E: std::fmt::Display> Text<T> for std::result::Result<T, E> {
    fn text(self) -> std::result::Result<T, String> {
        self.map_err(|e| e.to_string())
    }
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;
type Drawn = std::result::Result<(), String>;

/// The colour of a setup, the same in every chart: local dark grey, N executors palette[N].
pub fn setup_colour(e: Executors) -> RGBColor {
    const C: [RGBColor; 8] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(188, 189, 34),
    ];
    match e {
        Executors::Local => RGBColor(70, 70, 70),
        Executors::Grid(n) => C[(n as usize + C.len() - 1) % C.len()],
    }
}

/// Colours of the latency percentiles p50, p99, p99.9.
pub const PERCENTILE_COLOURS: [RGBColor; 3] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
];

fn setup_label(e: Executors) -> String {
    match e {
        Executors::Local => "local (no grid)".into(),
        Executors::Grid(1) => "1 executor".into(),
        Executors::Grid(n) => format!("{n} executors"),
    }
}

fn setup_tick(e: Executors) -> String {
    match e {
        Executors::Local => "local".into(),
        Executors::Grid(n) => format!("{n} exec"),
    }
}

/// 1234567 -> "1,234,567".
pub fn thousands(v: u64) -> String {
    let digits = v.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A tick label without float noise: 0.30000000000000004 -> "0.3", 1500 -> "1,500".
pub fn tick_text(v: f64) -> String {
    if v.abs() >= 1000.0 {
        let s = thousands(v.abs().round() as u64);
        return if v < 0.0 { format!("-{s}") } else { s };
    }
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.to_owned()
    }
}

/// The unit that keeps processing times readable: ms below 2 s, else s.
pub fn time_unit(max_s: f64) -> (&'static str, f64) {
    if max_s < 2.0 {
        ("ms", 1e3)
    } else {
        ("s", 1.0)
    }
}

/// Ticks at 1, 2 and 5 times powers of ten inside [lo, hi] (1, 2, 5 .. 9 when that gives fewer
/// than three), for a log axis that shows several labelled values.
pub fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    if !(lo > 0.0 && hi > lo && hi.is_finite()) {
        return Vec::new();
    }
    let pick = |mantissas: &[f64]| -> Vec<f64> {
        let mut out = Vec::new();
        let mut e = lo.log10().floor() as i32 - 1;
        while 10f64.powi(e) <= hi * 1.0001 {
            for m in mantissas {
                // Rounded to 12 significant digits so 3 * 0.1 prints as 0.3.
                let v = format!("{:.12e}", m * 10f64.powi(e))
                    .parse::<f64>()
                    .unwrap_or(0.0);
                if v >= lo * 0.9999 && v <= hi * 1.0001 {
                    out.push(v);
                }
            }
            e += 1;
        }
        out
    };
    let coarse = pick(&[1.0, 2.0, 5.0]);
    if coarse.len() >= 3 {
        coarse
    } else {
        pick(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
    }
}

/// A linear f64 axis with exactly the given ticks (plotters' own f64 axis chooses its own, and
/// its tick override needs default formatting, which this axis has).
#[derive(Clone)]
struct Ticked {
    range: Range<f64>,
    ticks: Vec<f64>,
}

impl Ranged for Ticked {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        RangedCoordf64::from(self.range.clone()).map(value, limit)
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.range.clone()
    }
}

/// The footer of a chart: machine(s) and the invocations its data comes from.
pub fn chart_note(sources: &Sources) -> String {
    let ids: Vec<String> = sources
        .entries()
        .iter()
        .map(|s| {
            if s.id.is_empty() {
                format!("{} (no id)", s.tag)
            } else {
                format!("{} {}", s.tag, s.id)
            }
        })
        .collect();
    format!(
        "{} | data: invocation{} {}",
        sources.machines(),
        if ids.len() == 1 { "" } else { "s" },
        ids.join(", ")
    )
}

/// The order counts the latency chart shows: the largest of the paper's sizes and the
/// largest overall.
fn latency_counts(stats: &[CellStats]) -> Vec<u64> {
    let mut counts: Vec<u64> = Vec::new();
    if let Some(o) = stats
        .iter()
        .map(|c| c.orders)
        .filter(|&o| o <= PAPER_MAX_ORDERS)
        .max()
    {
        counts.push(o);
    }
    if let Some(o) = stats.iter().map(|c| c.orders).max() {
        if !counts.contains(&o) {
            counts.push(o);
        }
    }
    counts
}

/// Writes the charts of one scenario into `dir`; returns their paths. Each chart's footer
/// names the machine and the invocations (tagged as in `sources`) of the runs it shows.
pub fn plot_scenario(
    dir: &Path,
    scenario: &Scenario,
    records: &[&RunRecord],
    fit: Option<&UslFit>,
    sources: &Sources,
) -> Result<Vec<PathBuf>> {
    register_font(Path::new(FONT_PATH))?;
    let stats = cells(records);
    if stats.is_empty() {
        return Ok(Vec::new());
    }
    let slug = scenario.slug();
    let label = scenario.label();
    let (small, large): (Vec<CellStats>, Vec<CellStats>) = stats
        .iter()
        .cloned()
        .partition(|c| c.orders <= PAPER_MAX_ORDERS);
    let max_orders = stats.iter().map(|c| c.orders).max().unwrap_or(0);
    let shown_latency = latency_counts(&stats);
    let note = |keep: &dyn Fn(u64) -> bool| {
        let rs: Vec<&RunRecord> = records.iter().copied().filter(|r| keep(r.orders)).collect();
        chart_note(&sources.restricted_to(&rs))
    };
    let mut out = Vec::new();
    let mut chart = |name: String, note: String, draw: &dyn Fn(&Area) -> Drawn| -> Result<()> {
        let path = dir.join(name);
        render(&path, &note, draw).map_err(|message| Error::Plot {
            path: path.clone(),
            message,
        })?;
        out.push(path);
        Ok(())
    };
    if !small.is_empty() {
        chart(
            format!("processing_time_{slug}.png"),
            note(&|o| o <= PAPER_MAX_ORDERS),
            &|a| processing_time(a, &label, &small),
        )?;
    }
    if !large.is_empty() {
        chart(
            format!("processing_time_large_{slug}.png"),
            note(&|o| o > PAPER_MAX_ORDERS),
            &|a| processing_time_large(a, &label, &large),
        )?;
    }
    chart(
        format!("throughput_usl_{slug}.png"),
        note(&|o| o == max_orders),
        &|a| throughput(a, &label, records, &stats, fit),
    )?;
    chart(
        format!("latency_{slug}.png"),
        note(&|o| shown_latency.contains(&o)),
        &|a| latency(a, &label, &stats, &shown_latency),
    )?;
    Ok(out)
}

/// A white canvas with a footer line; `draw` fills the rest.
fn render(path: &Path, note: &str, draw: &dyn Fn(&Area) -> Drawn) -> Drawn {
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).text()?;
    let (body, footer) = root.split_vertically(SIZE.1 - FOOTER_PX);
    footer
        .draw_text(
            note,
            &(FONT, 15).into_font().color(&RGBColor(90, 90, 90)),
            (12, 5),
        )
        .text()?;
    draw(&body)?;
    root.present().text()
}

/// Setups present in `stats`, in axis order (local first).
fn setups_of(stats: &[CellStats]) -> Vec<Executors> {
    let mut s: Vec<Executors> = stats.iter().map(|c| c.executors).collect();
    s.sort();
    s.dedup();
    s
}

/// A legend column: one colour swatch and label per setup.
fn setup_legend(area: &Area, setups: &[Executors]) -> Drawn {
    let style: TextStyle = (FONT, 16).into();
    area.draw_text("setup", &style, (10, 40)).text()?;
    for (i, s) in setups.iter().enumerate() {
        let y = 70 + 28 * i as i32;
        area.draw(&Rectangle::new(
            [(10, y), (34, y + 16)],
            setup_colour(*s).filled(),
        ))
        .text()?;
        area.draw_text(&setup_label(*s), &style, (42, y)).text()?;
    }
    Ok(())
}

/// One bar: a setup's median with its quartile whisker, in display units.
struct Bar {
    setup: Executors,
    summary: Summary,
}

/// Grouped bars: one group per category on x, one bar per setup in each (same slot for the
/// same setup in every group), linear y from 0, whiskers from the first to the third quartile
/// (min-max would let one disturbed run set the scale; the tables keep min-max).
fn grouped_bars(
    area: &Area,
    caption: &str,
    x_desc: &str,
    y_desc: &str,
    groups: &[(String, Vec<Bar>)],
    setups: &[Executors],
) -> Drawn {
    let n = groups.len() as f64;
    let top = groups
        .iter()
        .flat_map(|g| g.1.iter().map(|b| b.summary.q3))
        .fold(0.0, f64::max);
    let top = if top > 0.0 { top * 1.08 } else { 1.0 };
    let x = Ticked {
        range: 0.0..n,
        ticks: (0..groups.len()).map(|g| g as f64 + 0.5).collect(),
    };
    let labels: Vec<String> = groups.iter().map(|g| g.0.clone()).collect();
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT, 19))
        .margin(12)
        .x_label_area_size(55)
        .y_label_area_size(75)
        .build_cartesian_2d(x, 0.0..top)
        .text()?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_formatter(&|x| {
            labels
                .get(x.max(0.0).floor() as usize)
                .cloned()
                .unwrap_or_default()
        })
        .y_label_formatter(&|y| tick_text(*y))
        .y_labels(10)
        .max_light_lines(1)
        .label_style((FONT, 16))
        .axis_desc_style((FONT, 17))
        .draw()
        .text()?;
    let slot = 0.8 / setups.len().max(1) as f64;
    for (g, (_, bars)) in groups.iter().enumerate() {
        for b in bars {
            let Some(k) = setups.iter().position(|s| *s == b.setup) else {
                continue;
            };
            let x0 = g as f64 + 0.1 + k as f64 * slot;
            let s = b.summary;
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(x0 + slot * 0.08, 0.0), (x0 + slot * 0.92, s.median)],
                    setup_colour(b.setup).filled(),
                )))
                .text()?;
            chart
                .draw_series(std::iter::once(ErrorBar::new_vertical(
                    x0 + slot / 2.0,
                    s.q1,
                    s.median,
                    s.q3,
                    BLACK.stroke_width(1),
                    7,
                )))
                .text()?;
        }
    }
    Ok(())
}

fn scaled(s: Summary, k: f64) -> Summary {
    Summary {
        n: s.n,
        min: s.min * k,
        q1: s.q1 * k,
        median: s.median * k,
        q3: s.q3 * k,
        max: s.max * k,
    }
}

fn repeats_text(stats: &[CellStats]) -> String {
    let (lo, hi) = stats.iter().fold((usize::MAX, 0), |(lo, hi), c| {
        (lo.min(c.elapsed_s.n), hi.max(c.elapsed_s.n))
    });
    if lo == hi {
        format!("median of {lo} runs, whiskers Q1-Q3")
    } else {
        format!("median of {lo}-{hi} runs, whiskers Q1-Q3")
    }
}

/// The paper's figure: processing time (linear) per order count (categories), bars grouped by
/// setup.
fn processing_time(area: &Area, label: &str, stats: &[CellStats]) -> Drawn {
    let setups = setups_of(stats);
    let max_s = stats.iter().map(|c| c.elapsed_s.q3).fold(0.0, f64::max);
    let (unit, k) = time_unit(max_s);
    let mut orders: Vec<u64> = stats.iter().map(|c| c.orders).collect();
    orders.dedup();
    let groups: Vec<(String, Vec<Bar>)> = orders
        .iter()
        .map(|&o| {
            let bars = stats
                .iter()
                .filter(|c| c.orders == o)
                .map(|c| Bar {
                    setup: c.executors,
                    summary: scaled(c.elapsed_s, k),
                })
                .collect();
            (thousands(o), bars)
        })
        .collect();
    let titled = area
        .titled(
            &format!("Processing time per order count ({label})"),
            (FONT, 24),
        )
        .text()?;
    let (plot, legend) = titled.split_horizontally(SIZE.0 - LEGEND_PX);
    grouped_bars(
        &plot,
        &repeats_text(stats),
        "orders sent",
        &format!("processing time ({unit}), first send to last final state"),
        &groups,
        &setups,
    )?;
    setup_legend(&legend, &setups)
}

/// The large runs: one panel per order count (their times differ by orders of magnitude), bars
/// per setup, each panel on its own linear axis.
fn processing_time_large(area: &Area, label: &str, stats: &[CellStats]) -> Drawn {
    let setups = setups_of(stats);
    let mut orders: Vec<u64> = stats.iter().map(|c| c.orders).collect();
    orders.dedup();
    let titled = area
        .titled(
            &format!(
                "Processing time, large runs ({label}; {})",
                repeats_text(stats)
            ),
            (FONT, 22),
        )
        .text()?;
    let (plots, legend) = titled.split_horizontally(SIZE.0 - LEGEND_PX);
    for (panel, &o) in plots.split_evenly((1, orders.len())).iter().zip(&orders) {
        let here: Vec<&CellStats> = stats.iter().filter(|c| c.orders == o).collect();
        let max_s = here.iter().map(|c| c.elapsed_s.q3).fold(0.0, f64::max);
        let (unit, k) = time_unit(max_s);
        let group = vec![(
            String::new(),
            here.iter()
                .map(|c| Bar {
                    setup: c.executors,
                    summary: scaled(c.elapsed_s, k),
                })
                .collect(),
        )];
        grouped_bars(
            panel,
            &format!("{} orders", thousands(o)),
            "",
            &format!("processing time ({unit})"),
            &group,
            &setups,
        )?;
    }
    setup_legend(&legend, &setups)
}

/// Throughput vs executors at the largest order count: every run, medians, USL curve, and the
/// local baseline as a dashed line.
fn throughput(
    area: &Area,
    label: &str,
    records: &[&RunRecord],
    stats: &[CellStats],
    fit: Option<&UslFit>,
) -> Drawn {
    let max_orders = stats.iter().map(|c| c.orders).max().unwrap_or(0);
    let at_max: Vec<&CellStats> = stats.iter().filter(|c| c.orders == max_orders).collect();
    let nmax = at_max
        .iter()
        .map(|c| c.executors.axis())
        .max()
        .unwrap_or(1)
        .max(2) as f64;
    // Thousands of orders/s keep the tick labels short.
    let runs: Vec<(f64, f64)> = points_for(records)
        .into_iter()
        .map(|(n, x)| (n, x / 1e3))
        .collect();
    let local = at_max
        .iter()
        .find(|c| c.executors == Executors::Local)
        .map(|c| c.throughput.median / 1e3);
    let mut ymax = runs
        .iter()
        .map(|p| p.1)
        .chain(local)
        .chain(at_max.iter().map(|c| c.throughput.max / 1e3))
        .fold(0.0, f64::max);
    if let Some(f) = fit {
        ymax = (1..=(nmax as u32))
            .map(|n| f.predict(n as f64) / 1e3)
            .fold(ymax, f64::max);
    }
    let mut ticks = vec![0.0];
    ticks.extend(
        at_max
            .iter()
            .filter(|c| c.executors != Executors::Local)
            .map(|c| c.executors.axis() as f64),
    );
    let x = Ticked {
        range: -0.4..nmax + 0.5,
        ticks,
    };
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!(
                "Throughput vs executors, {} orders ({label})",
                thousands(max_orders)
            ),
            (FONT, 24),
        )
        .margin(15)
        .x_label_area_size(55)
        .y_label_area_size(80)
        // Headroom above the data for the legend, so it never hides a point.
        .build_cartesian_2d(x, 0.0..(ymax * LEGEND_HEADROOM).max(1.0))
        .text()?;
    chart
        .configure_mesh()
        .x_desc("setup")
        .y_desc("throughput (thousand orders/s)")
        .y_label_formatter(&|y| tick_text(*y))
        .x_label_formatter(&|x| {
            if x.abs() < 1e-9 {
                "local".into()
            } else {
                format!("{x:.0} exec")
            }
        })
        .y_labels(10)
        .max_light_lines(1)
        .label_style((FONT, 16))
        .axis_desc_style((FONT, 17))
        .draw()
        .text()?;
    let grey = RGBColor(150, 150, 150);
    chart
        .draw_series(
            runs.iter()
                .map(|&(n, x)| Circle::new((n, x), 3, grey.filled())),
        )
        .text()?
        .label("each run")
        .legend(move |(x, y)| Circle::new((x + 10, y), 3, grey.filled()));
    let blue = PERCENTILE_COLOURS[0];
    chart
        .draw_series(
            at_max
                .iter()
                .filter(|c| c.executors != Executors::Local)
                .map(|c| {
                    Cross::new(
                        (c.executors.axis() as f64, c.throughput.median / 1e3),
                        7,
                        blue.stroke_width(3),
                    )
                }),
        )
        .text()?
        .label("median")
        .legend(move |(x, y)| Cross::new((x + 10, y), 6, blue.stroke_width(3)));
    if let Some(local) = local {
        let black = setup_colour(Executors::Local);
        chart
            .draw_series(DashedLineSeries::new(
                vec![(-0.4, local), (nmax + 0.5, local)],
                10,
                6,
                black.stroke_width(2),
            ))
            .text()?
            .label(format!(
                "local, no grid: {} orders/s",
                thousands((local * 1e3).round() as u64)
            ))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], black.stroke_width(2))
            });
        chart
            .draw_series(std::iter::once(Circle::new(
                (0.0, local),
                6,
                black.filled(),
            )))
            .text()?;
    }
    if let Some(f) = fit {
        let red = PERCENTILE_COLOURS[1];
        let curve: Vec<(f64, f64)> = (0..=100)
            .map(|i| 1.0 + (nmax - 0.5) * i as f64 / 100.0)
            .map(|n| (n, f.predict(n) / 1e3))
            .collect();
        chart
            .draw_series(LineSeries::new(curve, red.stroke_width(2)))
            .text()?
            .label(format!(
                "USL fit: lambda={:.0}/s sigma={:.3} kappa={:.4} (R2={:.2})",
                f.lambda, f.sigma, f.kappa, f.r2
            ))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], red.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FONT, 15))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .text()
}

/// Latency percentiles per setup, in one panel per chosen order count: the largest of the
/// paper's sizes and the largest overall.
fn latency(area: &Area, label: &str, stats: &[CellStats], counts: &[u64]) -> Drawn {
    let titled = area
        .titled(
            &format!("Order latency, send to final state ({label}; all orders sent at once)"),
            (FONT, 22),
        )
        .text()?;
    for (panel, &o) in titled.split_evenly((1, counts.len())).iter().zip(counts) {
        let here: Vec<&CellStats> = stats.iter().filter(|c| c.orders == o).collect();
        latency_panel(panel, o, &here)?;
    }
    Ok(())
}

/// The three percentiles, their marker shapes and line styles, in ms.
type PercentileSeries = (&'static str, Vec<(Executors, Summary)>);

fn latency_panel(area: &Area, orders: u64, here: &[&CellStats]) -> Drawn {
    let ms = |s: Summary| scaled(s, 1e-3);
    let series: [PercentileSeries; 3] = [
        (
            "p50",
            here.iter().map(|c| (c.executors, ms(c.p50_us))).collect(),
        ),
        (
            "p99",
            here.iter().map(|c| (c.executors, ms(c.p99_us))).collect(),
        ),
        (
            "p99.9",
            here.iter().map(|c| (c.executors, ms(c.p999_us))).collect(),
        ),
    ];
    let lo = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.1.q1))
        .fold(f64::INFINITY, f64::min)
        .max(1e-3);
    let hi = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.1.q3))
        .fold(lo, f64::max);
    let setups: Vec<Executors> = here.iter().map(|c| c.executors).collect();
    let x = Ticked {
        range: 0.0..setups.len() as f64,
        ticks: (0..setups.len()).map(|i| i as f64 + 0.5).collect(),
    };
    let caption = format!(
        "{} orders, {}",
        thousands(orders),
        repeats_text(&here.iter().map(|c| (*c).clone()).collect::<Vec<_>>())
    );
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(caption, (FONT, 18))
        .margin(12)
        .x_label_area_size(55)
        .y_label_area_size(75);
    // A log axis only when the percentiles span more than a decade; then 1-2-5 ticks.
    if hi / lo > 10.0 {
        let (y0, y1) = (lo / 1.4, hi * (hi / lo).powf(LEGEND_HEADROOM - 1.0) * 1.4);
        let ticks = log_ticks(y0, y1);
        let y = (y0..y1).log_scale().with_key_points(ticks);
        let mut chart = builder.build_cartesian_2d(x, y).text()?;
        draw_percentiles(&mut chart, &setups, &series, "latency (ms, log scale)")
    } else {
        let mut chart = builder
            .build_cartesian_2d(x, 0.0..hi * LEGEND_HEADROOM)
            .text()?;
        draw_percentiles(&mut chart, &setups, &series, "latency (ms)")
    }
}

type Chart<'a, X, Y> = ChartContext<'a, BitMapBackend<'a>, Cartesian2d<X, Y>>;

/// Each percentile: its own colour, marker (circle, triangle, square) and line style (solid,
/// dashed, dotted), dodged sideways so equal values stay visible side by side.
fn draw_percentiles<Y>(
    chart: &mut Chart<'_, Ticked, Y>,
    setups: &[Executors],
    series: &[PercentileSeries; 3],
    y_desc: &str,
) -> Drawn
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc("setup")
        .y_desc(y_desc)
        .x_label_formatter(&|x| {
            setups
                .get(x.max(0.0).floor() as usize)
                .map(|s| setup_tick(*s))
                .unwrap_or_default()
        })
        .y_label_formatter(&|y| tick_text(*y))
        .y_labels(8)
        .max_light_lines(1)
        .label_style((FONT, 16))
        .axis_desc_style((FONT, 17))
        .draw()
        .text()?;
    for (i, (name, pts)) in series.iter().enumerate() {
        let col = PERCENTILE_COLOURS[i];
        let dx = (i as f64 - 1.0) * 0.2;
        let at = |e: &Executors| setups.iter().position(|s| s == e).unwrap_or(0) as f64 + 0.5 + dx;
        let line: Vec<(f64, f64)> = pts.iter().map(|(e, s)| (at(e), s.median)).collect();
        let style = col.stroke_width(2);
        let drawn = match i {
            0 => chart.draw_series(LineSeries::new(line, style)).text()?,
            1 => chart
                .draw_series(DashedLineSeries::new(line, 12, 6, style))
                .text()?,
            _ => chart
                .draw_series(DashedLineSeries::new(line, 3, 5, style))
                .text()?,
        };
        drawn.label(*name).legend(move |(x, y)| {
            EmptyElement::at((x + 16, y))
                + PathElement::new(vec![(-16, 0), (16, 0)], style)
                + marker(i, col)
        });
        chart
            .draw_series(pts.iter().map(|(e, s)| {
                ErrorBar::new_vertical(at(e), s.q1, s.median, s.q3, col.stroke_width(1), 8)
            }))
            .text()?;
        chart
            .draw_series(
                pts.iter()
                    .map(|(e, s)| EmptyElement::at((at(e), s.median)) + marker(i, col)),
            )
            .text()?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .legend_area_size(44)
        .label_font((FONT, 16))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .text()
}

/// Marker of percentile `i`: filled circle, triangle, or hollow square.
fn marker<DB: DrawingBackend>(i: usize, col: RGBColor) -> DynElement<'static, DB, (i32, i32)> {
    match i {
        0 => Circle::new((0, 0), 6, col.filled()).into_dyn(),
        1 => TriangleMarker::new((0, 0), 8, col.filled()).into_dyn(),
        _ => Rectangle::new([(-6, -6), (6, 6)], col.stroke_width(2)).into_dyn(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_and_ticks_read_well() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(tick_text(0.30000000000000004), "0.3");
        assert_eq!(tick_text(1500.0), "1,500");
        assert_eq!(tick_text(5.0), "5");
        assert_eq!(tick_text(-0.00001), "0");
        assert_eq!(tick_text(0.025), "0.025");
    }

    #[test]
    fn log_ticks_give_several_labels_even_inside_one_decade() {
        assert_eq!(
            log_ticks(0.8, 120.0),
            vec![1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0]
        );
        // 300 ms .. 1.1 s: the old chart had a single label here.
        assert_eq!(
            log_ticks(300.0, 1100.0),
            vec![300.0, 400.0, 500.0, 600.0, 700.0, 800.0, 900.0, 1000.0]
        );
        assert_eq!(log_ticks(0.15, 0.6), vec![0.2, 0.3, 0.4, 0.5, 0.6]);
        assert!(log_ticks(0.0, 1.0).is_empty());
        assert!(log_ticks(5.0, 1.0).is_empty());
        assert!(log_ticks(1.0, f64::INFINITY).is_empty());
    }

    #[test]
    fn time_unit_switches_to_seconds_for_long_runs() {
        assert_eq!(time_unit(0.013), ("ms", 1e3));
        assert_eq!(time_unit(1.2), ("ms", 1e3));
        assert_eq!(time_unit(2.5), ("s", 1.0));
    }

    #[test]
    fn every_setup_keeps_its_colour_and_they_differ() {
        let all: Vec<RGBColor> = [Executors::Local]
            .into_iter()
            .chain((1..=8).map(Executors::Grid))
            .map(setup_colour)
            .collect();
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
