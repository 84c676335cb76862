//! PNG chart of one security's trading day: price (bar closes) with its MA5 and MA20 lines,
//! the spread at the end of each step, and the volume per step, against the time of day.
//! Text is drawn with a font file read at run time (plotters' ab_glyph backend), so no system
//! font lookup is needed.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::combinators::WithKeyPoints;
use plotters::coord::types::{RangedCoordf64, RangedCoordi64};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::schedule::DayClock;
use crate::view::Bar;

/// The font used for every label.
pub const FONT_PATH: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
const FONT: &str = "sans-serif";
const SIZE: (u32, u32) = (1200, 900);

/// Why a chart was not written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("font {path} unusable: {message} (install fonts-dejavu-core or pass another font)")]
    Font { path: PathBuf, message: String },
    #[error("chart {path}: {message}")]
    Draw { path: PathBuf, message: String },
    #[error("no bars for day {0}")]
    NoBars(u32),
}

static FONT_OK: OnceLock<Result<(), String>> = OnceLock::new();

/// Registers `path` as the charts' font (once per process).
pub fn register_font(path: &Path) -> Result<(), PlotError> {
    FONT_OK
        .get_or_init(|| {
            let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
            // plotters keeps a 'static reference; the font lives as long as the process.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font(FONT, FontStyle::Normal, bytes)
                .map_err(|_| "not a usable font".to_string())
        })
        .clone()
        .map_err(|message| PlotError::Font {
            path: path.to_owned(),
            message,
        })
}

/// Simple moving average of `closes` over `n` bars, `None` until `n` bars are there.
pub fn moving_average(closes: &[i64], n: usize) -> Vec<Option<f64>> {
    let mut out = Vec::with_capacity(closes.len());
    let mut sum = 0i128;
    for (i, &c) in closes.iter().enumerate() {
        sum += i128::from(c);
        if i >= n {
            sum -= i128::from(closes[i - n]);
        }
        out.push((n > 0 && i + 1 >= n).then(|| sum as f64 / n as f64));
    }
    out
}

fn hhmm(minutes_after_open: f64) -> String {
    let total = 9 * 60 + minutes_after_open.round() as i64;
    format!("{:02}:{:02}", total / 60, total % 60)
}

/// Writes the chart of `day` of `code` (its `bars`, the whole run's) to `path`; with
/// `fundamental` (one value per bar) the value agents' private signal is drawn too.
pub fn plot_day(
    path: &Path,
    code: &str,
    bars: &[Bar],
    fundamental: Option<&[f64]>,
    day: u32,
    clock: &DayClock,
) -> Result<(), PlotError> {
    register_font(Path::new(FONT_PATH))?;
    let (today, fund): (Vec<&Bar>, Vec<Option<f64>>) = bars
        .iter()
        .enumerate()
        .filter(|(_, b)| b.day == day)
        .map(|(i, b)| (b, fundamental.and_then(|f| f.get(i).copied())))
        .unzip();
    if today.is_empty() {
        return Err(PlotError::NoBars(day));
    }
    draw(path, code, &today, &fund, day, clock).map_err(|message| PlotError::Draw {
        path: path.to_owned(),
        message,
    })
}

/// Key points of the time axis (minutes after 09:00): the phase boundaries and full hours.
const TIME_TICKS: [i64; 10] = [0, 15, 60, 120, 150, 180, 240, 300, 330, 345];
/// Minutes after 09:00 outside the continuous sessions (ATO, break, ATC), shaded grey.
const NOT_CONTINUOUS: [(i64, i64); 3] = [(0, 15), (150, 240), (330, 345)];
/// The x axis counts seconds after 09:00.
const DAY_SECONDS: i64 = 345 * 60;

type Panel<'a, 'b> =
    ChartContext<'a, BitMapBackend<'b>, Cartesian2d<WithKeyPoints<RangedCoordi64>, RangedCoordf64>>;

/// One panel: time of day across, `y` up, the call phases and the break shaded.
fn panel<'a, 'b>(
    area: &'a DrawingArea<BitMapBackend<'b>, Shift>,
    caption: &str,
    y: std::ops::Range<f64>,
) -> Result<Panel<'a, 'b>, String> {
    let e = |x: &dyn std::fmt::Display| x.to_string();
    let ticks = TIME_TICKS.iter().map(|m| m * 60).collect();
    let (y0, y1) = (y.start, y.end);
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(80)
        .caption(caption, (FONT, 18))
        .build_cartesian_2d((0..DAY_SECONDS).with_key_points(ticks), y)
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_label_formatter(&|s| hhmm(*s as f64 / 60.0))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style((FONT, 14))
        .light_line_style(WHITE)
        .draw()
        .map_err(|x| e(&x))?;
    chart
        .draw_series(NOT_CONTINUOUS.iter().map(|&(a, b)| {
            Rectangle::new(
                [(a * 60, y0), (b * 60, y1)],
                RGBColor(225, 225, 225).mix(0.6).filled(),
            )
        }))
        .map_err(|x| e(&x))?;
    Ok(chart)
}

fn draw(
    path: &Path,
    code: &str,
    bars: &[&Bar],
    fund: &[Option<f64>],
    day: u32,
    clock: &DayClock,
) -> Result<(), String> {
    let e = |x: &dyn std::fmt::Display| x.to_string();
    let x: Vec<i64> = bars
        .iter()
        .map(|b| (clock.minutes_after_open(b.step) * 60.0).round() as i64)
        .collect();
    let closes: Vec<i64> = bars.iter().map(|b| b.close).collect();
    let ma5 = moving_average(&closes, 5);
    let ma20 = moving_average(&closes, 20);
    let (lo, hi) = closes
        .iter()
        .map(|&c| c as f64)
        .chain(fund.iter().flatten().copied())
        .fold((f64::MAX, f64::MIN), |(l, h), c| (l.min(c), h.max(c)));
    let pad = ((hi - lo) * 0.05).max(1.0);

    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let date = clock.date(day).map_or_else(String::new, |d| d.to_string());
    let root = root
        .titled(
            &format!(
                "{code} on {date} (day {}, {} steps; grey: call auctions and break)",
                day + 1,
                clock.steps_per_day()
            ),
            (FONT, 24),
        )
        .map_err(|x| e(&x))?;
    let (top, rest) = root.split_vertically(SIZE.1 * 52 / 100);
    let (middle, bottom) = rest.split_vertically(SIZE.1 * 22 / 100);

    let mut price = panel(
        &top,
        "price (bar close) with MA5 and MA20",
        lo - pad..hi + pad,
    )?;
    let fund_pts: Vec<(i64, f64)> = x
        .iter()
        .zip(fund)
        .filter_map(|(&x, f)| f.map(|v| (x, v)))
        .collect();
    if !fund_pts.is_empty() {
        let grey = RGBColor(150, 150, 150);
        price
            .draw_series(LineSeries::new(fund_pts, grey.stroke_width(2)))
            .map_err(|x| e(&x))?
            .label("fundamental (value agents' private signal)")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], grey));
    }
    let close_series = x.iter().zip(&closes).map(|(&x, &c)| (x, c as f64));
    price
        .draw_series(LineSeries::new(close_series, &BLACK))
        .map_err(|x| e(&x))?
        .label("close")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    for (ma, colour, name) in [(&ma5, BLUE, "MA5"), (&ma20, RED, "MA20")] {
        let pts = x
            .iter()
            .zip(ma.iter())
            .filter_map(|(&x, m)| m.map(|v| (x, v)));
        price
            .draw_series(LineSeries::new(pts, colour))
            .map_err(|x| e(&x))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
    }
    price
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font((FONT, 14))
        .draw()
        .map_err(|x| e(&x))?;

    let spreads: Vec<(i64, f64)> = x
        .iter()
        .zip(bars)
        .filter_map(|(&x, b)| b.spread().map(|s| (x, s as f64)))
        .collect();
    let s_max = spreads.iter().map(|s| s.1).fold(1.0, f64::max) * 1.1;
    let mut spread = panel(&middle, "spread at the end of each step (VND)", 0.0..s_max)?;
    spread
        .draw_series(
            spreads
                .iter()
                .map(|&(x, s)| Circle::new((x, s), 2, GREEN.filled())),
        )
        .map_err(|x| e(&x))?;

    let v_max = bars.iter().map(|b| b.volume).max().unwrap_or(0).max(1) as f64 * 1.1;
    let width = (DAY_SECONDS * 8 / 10 / i64::from(clock.steps_per_day())).max(1);
    let mut volume = panel(&bottom, "volume per step (shares)", 0.0..v_max)?;
    volume
        .draw_series(x.iter().zip(bars).map(|(&x, b)| {
            Rectangle::new(
                [(x, 0.0), (x + width, b.volume as f64)],
                RGBColor(31, 119, 180).filled(),
            )
        }))
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moving_averages_start_when_enough_bars() {
        let ma = moving_average(&[1, 2, 3, 4, 5, 6], 3);
        assert_eq!(ma, [None, None, Some(2.0), Some(3.0), Some(4.0), Some(5.0)]);
        assert!(moving_average(&[1, 2], 0).iter().all(Option::is_none));
    }

    #[test]
    fn clock_labels() {
        assert_eq!(hhmm(0.0), "09:00");
        assert_eq!(hhmm(150.0), "11:30");
        assert_eq!(hhmm(345.0), "14:45");
    }
}
