//! Stylized facts of the simulated returns (Cont, 2001, "Empirical properties of asset
//! returns: stylized facts and statistical issues"), each next to what the literature expects:
//!
//! - heavy tails: positive excess kurtosis of the returns;
//! - absence of linear autocorrelation: return autocorrelations near 0 (inside the 95% band
//!   of a white noise, +/-1.96/sqrt(n)) from the first lags on;
//! - volatility clustering: positive, slowly decaying autocorrelation of absolute returns.
//!
//! Returns are log returns of the mid-quote at the end of each interval (the bar close when a
//! side of the book was empty), so the bid-ask bounce of trade prices does not pose as a
//! negative autocorrelation, at one-minute-equivalent intervals (steps are
//! grouped into whole minutes when shorter; longer steps are used as they are), inside each
//! continuous session only (no return spans the auctions, the lunch break or the night), each
//! security's returns scaled by their own standard deviation before pooling.

use std::fmt::Write as _;

use crate::schedule::DayClock;
use crate::view::Bar;

/// The measured facts.
#[derive(Clone, Debug, PartialEq)]
pub struct StylizedFacts {
    /// Length of one return interval in minutes.
    pub interval_minutes: f64,
    /// Returns pooled (all securities).
    pub returns: usize,
    /// Returns that were exactly 0 (intervals without a price change).
    pub zero_returns: usize,
    pub securities: usize,
    pub excess_kurtosis: f64,
    /// `(lag, autocorrelation)` of the returns.
    pub acf: Vec<(usize, f64)>,
    /// `(lag, autocorrelation)` of the absolute returns.
    pub abs_acf: Vec<(usize, f64)>,
}

impl StylizedFacts {
    /// Half width of the 95% band of a white noise's sample autocorrelation.
    pub fn band(&self) -> f64 {
        1.96 / (self.returns.max(1) as f64).sqrt()
    }

    /// From every security's bars (as the tracker keeps them), autocorrelations up to
    /// `max_lag`. `None` when there are too few returns to say anything (fewer than 30).
    pub fn compute(histories: &[&[Bar]], clock: &DayClock, max_lag: usize) -> Option<Self> {
        let per = (60e9 / clock.step_ns() as f64).round().max(1.0) as usize;
        let interval_minutes = per as f64 * clock.step_ns() as f64 / 60e9;
        // Segments of returns: one per security, day and continuous session.
        let mut segments: Vec<Vec<f64>> = Vec::new();
        let mut securities = 0;
        for bars in histories {
            let mut own: Vec<Vec<f64>> = Vec::new();
            let mut i = 0;
            while i < bars.len() {
                let (day, seg) = (bars[i].day, clock.segment(bars[i].step));
                let mut j = i;
                while j < bars.len() && bars[j].day == day && clock.segment(bars[j].step) == seg {
                    j += 1;
                }
                if bars[i].phase == matching::Phase::Continuous {
                    // The mid (else the close) of every `per`-th bar of the session.
                    let prices: Vec<f64> = bars[i..j]
                        .chunks(per)
                        .filter(|c| c.len() == per)
                        .map(|c| price_of(&c[per - 1]))
                        .collect();
                    let r: Vec<f64> = prices
                        .windows(2)
                        .filter(|w| w[0] > 0.0 && w[1] > 0.0)
                        .map(|w| (w[1] / w[0]).ln())
                        .collect();
                    if r.len() > 1 {
                        own.push(r);
                    }
                }
                i = j;
            }
            let all: Vec<f64> = own.iter().flatten().copied().collect();
            let sd = std_dev(&all);
            if sd > 0.0 {
                securities += 1;
                for seg in &mut own {
                    seg.iter_mut().for_each(|r| *r /= sd);
                }
                segments.extend(own);
            }
        }
        let pooled: Vec<f64> = segments.iter().flatten().copied().collect();
        if pooled.len() < 30 {
            return None;
        }
        let abs: Vec<Vec<f64>> = segments
            .iter()
            .map(|s| s.iter().map(|r| r.abs()).collect())
            .collect();
        let lags = 1..=max_lag;
        Some(StylizedFacts {
            interval_minutes,
            returns: pooled.len(),
            zero_returns: pooled.iter().filter(|r| **r == 0.0).count(),
            securities,
            excess_kurtosis: excess_kurtosis(&pooled),
            acf: lags
                .clone()
                .map(|l| (l, autocorrelation(&segments, l)))
                .collect(),
            abs_acf: lags.map(|l| (l, autocorrelation(&abs, l))).collect(),
        })
    }

    /// The report: one row per fact with the simulated value, the literature's expectation
    /// and whether it holds, then every lag.
    pub fn to_markdown(&self) -> String {
        let band = self.band();
        let mut s = String::new();
        let _ = writeln!(s, "# Stylized facts of the simulated returns\n");
        let _ = writeln!(
            s,
            "{} mid-quote returns of {:.2} minutes from {} securities (continuous sessions \
             only; {:.1}% of them exactly 0), each security's scaled to unit variance. \
             White-noise band for autocorrelations: +/-{band:.3}.\n",
            self.returns,
            self.interval_minutes,
            self.securities,
            100.0 * self.zero_returns as f64 / self.returns.max(1) as f64,
        );
        let _ = writeln!(
            s,
            "| fact | measure | simulated | literature expects | holds |"
        );
        let _ = writeln!(s, "|---|---|---:|---|---|");
        let yes = |b: bool| if b { "yes" } else { "no" };
        let _ = writeln!(
            s,
            "| heavy tails | excess kurtosis | {:.2} | > 0; for minute returns of stocks \
             typically well above 3 (Cont 2001) | {} |",
            self.excess_kurtosis,
            yes(self.excess_kurtosis > 0.0)
        );
        if let Some(&(_, lag1)) = self.acf.first() {
            let _ = writeln!(
                s,
                "| no linear autocorrelation | corr(r_t, r_t+1) | {lag1:.3} | ~0; slightly \
                 negative at the shortest lag from bid-ask bounce | {} |",
                yes(lag1.abs() <= band || (-0.2..0.0).contains(&lag1))
            );
        }
        let later: Vec<f64> = self.acf.iter().skip(1).map(|a| a.1).collect();
        if !later.is_empty() {
            let worst = later.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let inside = later.iter().filter(|v| v.abs() <= band).count();
            let _ = writeln!(
                s,
                "| no linear autocorrelation | max \\|corr(r_t, r_t+k)\\|, k = 2..{} | {worst:.3} \
                 ({inside} of {} inside the band) | ~0: at least 95% of lags inside +/-{band:.3} \
                 | {} |",
                self.acf.len(),
                later.len(),
                yes(inside as f64 >= 0.95 * later.len() as f64 - 0.5)
            );
        }
        if let (Some(&(_, first)), Some(&(last_lag, last))) =
            (self.abs_acf.first(), self.abs_acf.last())
        {
            let mean = self.abs_acf.iter().map(|a| a.1).sum::<f64>() / self.abs_acf.len() as f64;
            let _ = writeln!(
                s,
                "| volatility clustering | corr(\\|r_t\\|, \\|r_t+1\\|) | {first:.3} | > 0, \
                 about 0.1-0.3 at short lags | {} |",
                yes(first > band)
            );
            let _ = writeln!(
                s,
                "| volatility clustering | mean corr(\\|r_t\\|, \\|r_t+k\\|), k = 1..{last_lag} \
                 | {mean:.3} (lag {last_lag}: {last:.3}) | > 0 at every lag, decaying slowly \
                 (power law) | {} |",
                yes(mean > band && self.abs_acf.iter().all(|a| a.1 > 0.0))
            );
        }
        let _ = writeln!(s, "\n| lag | corr(r) | corr(\\|r\\|) |");
        let _ = writeln!(s, "|---:|---:|---:|");
        for (a, b) in self.acf.iter().zip(&self.abs_acf) {
            let _ = writeln!(s, "| {} | {:.3} | {:.3} |", a.0, a.1, b.1);
        }
        s
    }
}

/// The mid-quote at the end of the bar, or its close when a side was empty.
fn price_of(b: &Bar) -> f64 {
    match (b.bid, b.ask) {
        (Some(bid), Some(ask)) if bid > 0 && ask > 0 => (bid + ask) as f64 / 2.0,
        _ => b.close as f64,
    }
}

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len().max(1) as f64
}

fn std_dev(x: &[f64]) -> f64 {
    if x.len() < 2 {
        return 0.0;
    }
    let m = mean(x);
    (x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
}

/// Fourth standardized moment minus 3 (0 for a normal distribution).
pub fn excess_kurtosis(x: &[f64]) -> f64 {
    let m = mean(x);
    let m2 = x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / x.len().max(1) as f64;
    let m4 = x.iter().map(|v| (v - m).powi(4)).sum::<f64>() / x.len().max(1) as f64;
    if m2 == 0.0 {
        0.0
    } else {
        m4 / (m2 * m2) - 3.0
    }
}

/// Sample autocorrelation at `lag`, pairs taken within each segment only, around the pooled
/// mean.
pub fn autocorrelation(segments: &[Vec<f64>], lag: usize) -> f64 {
    let all: Vec<f64> = segments.iter().flatten().copied().collect();
    let m = mean(&all);
    let var: f64 = all.iter().map(|v| (v - m).powi(2)).sum();
    if var == 0.0 {
        return 0.0;
    }
    let cov: f64 = segments
        .iter()
        .filter(|s| s.len() > lag)
        .flat_map(|s| s.windows(lag + 1).map(|w| (w[0] - m) * (w[lag] - m)))
        .sum();
    cov / var
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::Date;
    use matching::Phase;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, StandardNormal};

    #[test]
    fn moments_of_known_samples() {
        // A normal sample: excess kurtosis near 0.
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let normal: Vec<f64> = (0..200_000)
            .map(|_| StandardNormal.sample(&mut rng))
            .collect();
        assert!(excess_kurtosis(&normal).abs() < 0.05);
        // Laplace (difference of two exponentials): excess kurtosis 3.
        let laplace: Vec<f64> = (0..200_000)
            .map(|_| {
                let (a, b): (f64, f64) = (rng.gen(), rng.gen());
                -(a.ln()) + b.ln()
            })
            .collect();
        assert!((excess_kurtosis(&laplace) - 3.0).abs() < 0.2);
        // An AR(1) with coefficient 0.5: lag-1 autocorrelation 0.5, lag 2 0.25.
        let mut x = 0.0;
        let ar: Vec<f64> = (0..200_000)
            .map(|_| {
                let z: f64 = StandardNormal.sample(&mut rng);
                x = 0.5 * x + z;
                x
            })
            .collect();
        let segs = vec![ar];
        assert!((autocorrelation(&segs, 1) - 0.5).abs() < 0.02);
        assert!((autocorrelation(&segs, 2) - 0.25).abs() < 0.02);
        // Pairs never span two segments: 2 pairs of -1 over a variance of 4 (joined, the
        // middle pair would make it -3 / 4).
        let split = vec![vec![1.0, -1.0], vec![1.0, -1.0]];
        assert!((autocorrelation(&split, 1) + 0.5).abs() < 1e-9);
    }

    /// Bars of one security: random-walk closes, optionally with persistent volatility regimes
    /// (calm 0.05%, stormy 0.5% per minute, switching with probability 2% per minute).
    fn bars(clock: &DayClock, seed: u64, clustered: bool) -> Vec<Bar> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut price = 20_000.0f64;
        let mut stormy = false;
        let mut out = Vec::new();
        for day in 0..clock.days() {
            for step in 0..clock.steps_per_day() {
                if clustered && rng.gen_bool(0.02) {
                    stormy = !stormy;
                }
                let vol = if stormy { 0.005 } else { 0.0005 };
                let z: f64 = StandardNormal.sample(&mut rng);
                price *= (vol * z).exp();
                let p = price.round() as i64;
                out.push(Bar::flat(day, step, 0, clock.phase(step), p));
            }
        }
        out
    }

    #[test]
    fn clustered_volatility_shows_and_white_noise_does_not() {
        let clock = DayClock::new(Date::new(2025, 6, 2).unwrap(), 20, 345).unwrap();
        let calm = bars(&clock, 1, false);
        let f = StylizedFacts::compute(&[&calm], &clock, 5).unwrap();
        assert_eq!(f.interval_minutes, 1.0);
        // 20 days x (134 + 89) returns inside the two continuous sessions.
        assert_eq!(f.returns, 20 * (134 + 89));
        assert!(f.excess_kurtosis.abs() < 0.5, "{}", f.excess_kurtosis);
        assert!(f.abs_acf[0].1.abs() < f.band() * 1.5, "{:?}", f.abs_acf);
        let wild = bars(&clock, 2, true);
        let f = StylizedFacts::compute(&[&wild], &clock, 5).unwrap();
        assert!(f.excess_kurtosis > 0.5, "{}", f.excess_kurtosis);
        assert!(f.abs_acf[0].1 > 0.1, "{:?}", f.abs_acf);
        assert!(f.acf[0].1.abs() < 0.1);
        let md = f.to_markdown();
        assert!(md.contains("| heavy tails | excess kurtosis |"));
        assert!(md.contains("volatility clustering"));
        // Five fact rows, then one row per lag.
        assert_eq!(
            md.matches("| yes |").count() + md.matches("| no |").count(),
            5
        );
        assert!(md.contains("| 5 | "));
        let holds = |prefix: &str| {
            md.lines()
                .any(|l| l.starts_with(prefix) && l.ends_with("| yes |"))
        };
        assert!(holds("| heavy tails"));
        assert!(holds("| volatility clustering | corr"));
    }

    #[test]
    fn mid_quotes_hide_the_bid_ask_bounce() {
        let clock = DayClock::new(Date::new(2025, 6, 2).unwrap(), 1, 345).unwrap();
        // Trades bounce between bid and ask; the quotes never move: no return at all.
        let bars: Vec<Bar> = (0..345)
            .map(|s| {
                let mut b = Bar::flat(0, s, 0, clock.phase(s), if s % 2 == 0 { 100 } else { 110 });
                b.bid = Some(100);
                b.ask = Some(110);
                b
            })
            .collect();
        let f = StylizedFacts::compute(&[&bars], &clock, 2);
        assert!(
            f.is_none(),
            "constant mid: zero variance, nothing to report"
        );
        // Without quotes the closes are used, and the bounce shows as lag-1 correlation -1.
        let closes: Vec<Bar> = bars.iter().map(|b| Bar { bid: None, ..*b }).collect();
        let f = StylizedFacts::compute(&[&closes], &clock, 2).unwrap();
        assert!(f.acf[0].1 < -0.9, "{:?}", f.acf);
    }

    #[test]
    fn short_steps_are_grouped_into_minutes_and_tiny_samples_refused() {
        let clock = DayClock::new(Date::new(2025, 6, 2).unwrap(), 1, 345 * 4).unwrap();
        let b = bars(&clock, 3, false);
        let f = StylizedFacts::compute(&[&b], &clock, 2).unwrap();
        assert_eq!(f.interval_minutes, 1.0);
        assert_eq!(f.returns, 134 + 89);
        let clock = DayClock::new(Date::new(2025, 6, 2).unwrap(), 1, 23).unwrap();
        let b = bars(&clock, 3, false);
        assert!(StylizedFacts::compute(&[&b], &clock, 2).is_none());
        assert!(StylizedFacts::compute(&[], &clock, 2).is_none());
        // Every bar in the break: nothing.
        let flat: Vec<Bar> = (0..100)
            .map(|s| Bar::flat(0, s, 0, Phase::Break, 100))
            .collect();
        assert!(StylizedFacts::compute(&[&flat], &clock, 2).is_none());
    }
}
