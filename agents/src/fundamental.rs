//! The fundamental value the value agents trade toward: per security, a mean-reverting
//! Ornstein-Uhlenbeck process around the day-0 reference price plus occasional jumps
//! ("megashocks": Poisson arrivals, bimodal size, random sign), the shape of ABIDES' sparse
//! mean-reverting oracle. Parameters are per minute of exchange time, so a compressed day moves
//! the value as much as a full one.
//!
//! Only agents with a private signal see it (through [`crate::Signals`]), and only with noise.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, Poisson, StandardNormal};
use serde::Deserialize;

/// Minutes in a HOSE trading day (09:00-14:45).
const DAY_MINUTES: f64 = 345.0;
/// Keeps the fundamental's random stream apart from the agents' streams.
const SEED_SALT: u64 = 0x6675_6e64_616d_656e; // "fundamen"

/// Parameters of the process (population file section `[fundamental]`).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FundamentalParams {
    /// Mean reversion speed per minute (0: a random walk with jumps).
    pub kappa: f64,
    /// Standard deviation of the diffusion per square-root minute, as a fraction of the mean.
    pub volatility: f64,
    /// Expected megashocks per trading day.
    pub shocks_per_day: f64,
    /// Mean size of a megashock, as a fraction of the mean (its sign is random).
    pub shock_mean: f64,
    /// Standard deviation of a megashock's size, as a fraction of the mean.
    pub shock_std: f64,
}

impl Default for FundamentalParams {
    fn default() -> Self {
        FundamentalParams {
            kappa: 0.002,
            volatility: 0.0008,
            shocks_per_day: 1.0,
            shock_mean: 0.02,
            shock_std: 0.005,
        }
    }
}

impl FundamentalParams {
    /// Every parameter finite and in its range; the error names the field.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let fields = [
            ("kappa", self.kappa, 1.0),
            ("volatility", self.volatility, 0.1),
            ("shocks_per_day", self.shocks_per_day, 1_000.0),
            ("shock_mean", self.shock_mean, 0.5),
            ("shock_std", self.shock_std, 0.5),
        ];
        for (name, v, max) in fields {
            if !v.is_finite() || v < 0.0 || v > max {
                return Err((name, format!("must be between 0 and {max}, got {v}")));
            }
        }
        Ok(())
    }
}

/// The process for a set of securities, stepped in lockstep.
#[derive(Clone, Debug)]
pub struct Fundamental {
    params: FundamentalParams,
    step_minutes: f64,
    /// Long-run mean per security (the day-0 reference price).
    means: Vec<f64>,
    values: Vec<f64>,
    rngs: Vec<ChaCha8Rng>,
    shocks: u64,
}

impl Fundamental {
    /// One process per entry of `means` (indexed like the caller's securities), seeded from
    /// `seed` (each security its own stream), stepped every `step_minutes`.
    pub fn new(params: FundamentalParams, means: Vec<f64>, seed: u64, step_minutes: f64) -> Self {
        let rngs = (0..means.len())
            .map(|i| {
                let mut rng = ChaCha8Rng::seed_from_u64(seed ^ SEED_SALT);
                rng.set_stream(i as u64);
                rng
            })
            .collect();
        Fundamental {
            params,
            step_minutes,
            values: means.clone(),
            means,
            rngs,
            shocks: 0,
        }
    }

    /// The value of security index `i` now (0 if out of range).
    pub fn value(&self, i: usize) -> f64 {
        self.values.get(i).copied().unwrap_or(0.0)
    }

    /// Sets the value of security index `i` (scenario setups and tests).
    pub fn set_value(&mut self, i: usize, value: f64) {
        if let Some(v) = self.values.get_mut(i) {
            *v = value;
        }
    }

    /// The long-run mean of security index `i`.
    pub fn mean(&self, i: usize) -> f64 {
        self.means.get(i).copied().unwrap_or(0.0)
    }

    pub fn params(&self) -> &FundamentalParams {
        &self.params
    }

    /// Length of one step in minutes.
    pub fn step_minutes(&self) -> f64 {
        self.step_minutes
    }

    /// Megashocks so far (all securities).
    pub fn shocks(&self) -> u64 {
        self.shocks
    }

    /// Advances every security by one step.
    pub fn step(&mut self) {
        let p = &self.params;
        let dt = self.step_minutes;
        let decay = (-p.kappa * dt).exp();
        // Exact OU transition variance; the random-walk limit when kappa is 0.
        let var = if p.kappa > 0.0 {
            (1.0 - (-2.0 * p.kappa * dt).exp()) / (2.0 * p.kappa)
        } else {
            dt
        };
        let sd = p.volatility * var.sqrt();
        let shock_rate = p.shocks_per_day * dt / DAY_MINUTES;
        let shock_size = Normal::new(p.shock_mean, p.shock_std).ok();
        for i in 0..self.values.len() {
            let mean = self.means[i];
            let rng = &mut self.rngs[i];
            let z: f64 = StandardNormal.sample(rng);
            let mut v = mean + (self.values[i] - mean) * decay + sd * mean * z;
            if shock_rate > 0.0 {
                let n = Poisson::new(shock_rate).map_or(0.0, |d| d.sample(rng));
                for _ in 0..(n as u64).min(16) {
                    let size = shock_size.map_or(p.shock_mean, |d| d.sample(rng));
                    let sign = if rng.gen_bool(0.5) { 1.0 } else { -1.0 };
                    v += sign * size * mean;
                    self.shocks += 1;
                }
            }
            // Never at or below zero: a price stays positive.
            self.values[i] = v.max(mean * 0.01);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_path_different_seed_different_path() {
        let run = |seed| {
            let mut f =
                Fundamental::new(FundamentalParams::default(), vec![10_000.0; 3], seed, 1.0);
            (0..345)
                .map(|_| {
                    f.step();
                    f.value(1)
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }

    #[test]
    fn reverts_to_the_mean_without_noise() {
        let params = FundamentalParams {
            kappa: 0.05,
            volatility: 0.0,
            shocks_per_day: 0.0,
            ..FundamentalParams::default()
        };
        let mut f = Fundamental::new(params, vec![10_000.0], 1, 1.0);
        f.values[0] = 12_000.0;
        f.step();
        let after_one = f.value(0);
        assert!((after_one - (10_000.0 + 2_000.0 * (-0.05f64).exp())).abs() < 1e-6);
        for _ in 0..500 {
            f.step();
        }
        assert!((f.value(0) - 10_000.0).abs() < 1.0);
    }

    #[test]
    fn megashocks_arrive_at_their_rate_and_move_the_value() {
        let params = FundamentalParams {
            kappa: 0.0,
            volatility: 0.0,
            shocks_per_day: 4.0,
            shock_mean: 0.05,
            shock_std: 0.0,
        };
        let mut f = Fundamental::new(params, vec![10_000.0; 10], 3, 1.0);
        for _ in 0..345 * 5 {
            f.step();
        }
        // 10 securities x 5 days x 4 per day = 200 expected.
        assert!((150..250).contains(&f.shocks()), "{}", f.shocks());
        // Each jump is exactly 5% of the mean, so every value sits on the 500 grid.
        for i in 0..10 {
            let steps = (f.value(i) - 10_000.0) / 500.0;
            assert!((steps - steps.round()).abs() < 1e-6, "{}", f.value(i));
        }
    }

    #[test]
    fn parameter_checks_name_the_field() {
        let bad = FundamentalParams {
            volatility: f64::NAN,
            ..FundamentalParams::default()
        };
        assert_eq!(bad.check().unwrap_err().0, "volatility");
        let bad = FundamentalParams {
            kappa: -0.1,
            ..FundamentalParams::default()
        };
        assert_eq!(bad.check().unwrap_err().0, "kappa");
        assert!(FundamentalParams::default().check().is_ok());
    }
}
