//! Universal Scalability Law: X(N) = lambda*N / (1 + sigma*(N-1) + kappa*N*(N-1)).
//!
//! sigma is contention (the serial fraction: queueing on a shared resource, here the manager),
//! kappa is coherency (pairwise cross-talk: cost that grows with every pair of nodes), lambda is
//! the throughput of one node. Fitted by least squares on throughput: for fixed (sigma, kappa)
//! the best lambda has a closed form, so only two parameters are searched: a coarse grid, then
//! a compass (pattern) search that halves its steps until they are negligible.

use crate::{Error, Result};

/// Fitted USL coefficients.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UslFit {
    pub lambda: f64,
    pub sigma: f64,
    pub kappa: f64,
    /// Coefficient of determination of the fit on the given points.
    pub r2: f64,
    /// Number of points fitted.
    pub points: usize,
}

/// Upper bounds of the search: sigma in [0, SIGMA_MAX], kappa in [0, KAPPA_MAX].
const SIGMA_MAX: f64 = 1.0;
const KAPPA_MAX: f64 = 1.0;

impl UslFit {
    /// Model throughput at `n` nodes.
    pub fn predict(&self, n: f64) -> f64 {
        usl(self.lambda, self.sigma, self.kappa, n)
    }

    /// Node count of peak throughput, sqrt((1 - sigma) / kappa); `None` without coherency cost
    /// (the curve then rises forever towards lambda/sigma).
    pub fn peak_n(&self) -> Option<f64> {
        (self.kappa > 0.0 && self.sigma < 1.0).then(|| ((1.0 - self.sigma) / self.kappa).sqrt())
    }
}

/// The USL curve.
pub fn usl(lambda: f64, sigma: f64, kappa: f64, n: f64) -> f64 {
    lambda * n / (1.0 + sigma * (n - 1.0) + kappa * n * (n - 1.0))
}

/// Best lambda and the squared error for fixed sigma and kappa.
fn best_lambda(points: &[(f64, f64)], sigma: f64, kappa: f64) -> (f64, f64) {
    let (mut xg, mut gg) = (0.0, 0.0);
    for &(n, x) in points {
        let g = usl(1.0, sigma, kappa, n);
        xg += x * g;
        gg += g * g;
    }
    let lambda = if gg > 0.0 { xg / gg } else { 0.0 };
    let sse = points
        .iter()
        .map(|&(n, x)| (x - lambda * usl(1.0, sigma, kappa, n)).powi(2))
        .sum();
    (lambda, sse)
}

/// Fits the USL to `(nodes, throughput)` points. Needs at least three distinct node counts,
/// all >= 1, and positive finite throughputs.
pub fn fit(points: &[(f64, f64)]) -> Result<UslFit> {
    if points
        .iter()
        .any(|&(n, x)| !(n >= 1.0 && n.is_finite() && x > 0.0 && x.is_finite()))
    {
        return Err(Error::Fit(
            "every point needs nodes >= 1 and a positive, finite throughput".into(),
        ));
    }
    let mut distinct: Vec<f64> = points.iter().map(|p| p.0).collect();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup();
    if distinct.len() < 3 {
        return Err(Error::Fit(format!(
            "need at least 3 distinct node counts, got {}",
            distinct.len()
        )));
    }
    // Coarse grid: sigma linear, kappa logarithmic (its useful values span decades) plus zero.
    let mut best = (f64::INFINITY, 0.0, 0.0);
    let kappas: Vec<f64> = std::iter::once(0.0)
        .chain((0..=70).map(|i| 10f64.powf(-7.0 + i as f64 / 10.0)))
        .collect();
    for i in 0..=100 {
        let sigma = SIGMA_MAX * i as f64 / 100.0;
        for &kappa in &kappas {
            let (_, sse) = best_lambda(points, sigma, kappa);
            if sse < best.0 {
                best = (sse, sigma, kappa);
            }
        }
    }
    // Compass search: try +/- step on each axis, keep improvements, halve steps otherwise.
    let (mut sse, mut sigma, mut kappa) = best;
    let (mut ds, mut dk) = (0.01, (kappa * 0.5).max(1e-7));
    for _ in 0..10_000 {
        let mut improved = false;
        for (s, k) in [
            (sigma + ds, kappa),
            (sigma - ds, kappa),
            (sigma, kappa + dk),
            (sigma, kappa - dk),
        ] {
            let (s, k) = (s.clamp(0.0, SIGMA_MAX), k.clamp(0.0, KAPPA_MAX));
            let (_, e) = best_lambda(points, s, k);
            if e < sse {
                (sse, sigma, kappa, improved) = (e, s, k, true);
            }
        }
        if !improved {
            ds /= 2.0;
            dk /= 2.0;
            if ds < 1e-12 && dk < 1e-15 {
                break;
            }
        }
    }
    let (lambda, sse) = best_lambda(points, sigma, kappa);
    let mean = points.iter().map(|p| p.1).sum::<f64>() / points.len() as f64;
    let sst: f64 = points.iter().map(|p| (p.1 - mean).powi(2)).sum();
    let r2 = if sst > 0.0 { 1.0 - sse / sst } else { 1.0 };
    Ok(UslFit {
        lambda,
        sigma,
        kappa,
        r2,
        points: points.len(),
    })
}

/// The points a scenario's USL fit uses: every grid run (N >= 1 executors) at the scenario's
/// largest order count, where start-up effects weigh least. `local` has no node count.
pub fn points_for(records: &[&crate::runs::RunRecord]) -> Vec<(f64, f64)> {
    let Some(max_orders) = records.iter().map(|r| r.orders).max() else {
        return Vec::new();
    };
    records
        .iter()
        .filter(|r| r.orders == max_orders)
        .filter_map(|r| match r.executors {
            crate::runs::Executors::Grid(n) => Some((f64::from(n), r.throughput)),
            crate::runs::Executors::Local => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synthetic(lambda: f64, sigma: f64, kappa: f64, nodes: &[f64]) -> Vec<(f64, f64)> {
        nodes
            .iter()
            .map(|&n| (n, usl(lambda, sigma, kappa, n)))
            .collect()
    }

    #[test]
    fn recovers_known_coefficients_exactly_from_clean_data() {
        let nodes: Vec<f64> = (1..=16).map(f64::from).collect();
        for (lambda, sigma, kappa) in [
            (1000.0, 0.05, 0.002),
            (25_000.0, 0.3, 0.0),
            (500.0, 0.02, 0.02),
            (80_000.0, 0.0, 0.0005),
        ] {
            let f = fit(&synthetic(lambda, sigma, kappa, &nodes)).unwrap();
            assert!(
                (f.lambda - lambda).abs() / lambda < 1e-3,
                "{f:?} vs lambda {lambda}"
            );
            assert!((f.sigma - sigma).abs() < 1e-3, "{f:?} vs sigma {sigma}");
            assert!((f.kappa - kappa).abs() < 1e-4, "{f:?} vs kappa {kappa}");
            assert!(f.r2 > 0.9999, "{f:?}");
        }
    }

    #[test]
    fn recovers_coefficients_from_noisy_repeats() {
        // Five repeats per node count with a deterministic +/-2% wobble, nodes 1..=8.
        let (lambda, sigma, kappa) = (10_000.0, 0.1, 0.01);
        let mut points = Vec::new();
        for n in 1..=8 {
            for r in 0..5 {
                let wobble = 1.0 + 0.02 * ((r as f64 * 1.7 + n as f64 * 0.9).sin());
                points.push((n as f64, usl(lambda, sigma, kappa, n as f64) * wobble));
            }
        }
        let f = fit(&points).unwrap();
        assert!((f.lambda - lambda).abs() / lambda < 0.05, "{f:?}");
        assert!((f.sigma - sigma).abs() < 0.03, "{f:?}");
        assert!((f.kappa - kappa).abs() < 0.004, "{f:?}");
        let peak = f.peak_n().unwrap();
        assert!((peak - (0.9f64 / 0.01).sqrt()).abs() < 1.5, "peak {peak}");
    }

    #[test]
    fn retrograde_data_gives_coherency_cost() {
        // Throughput falling with nodes, as on a 2-core machine.
        let points = [
            (2.0, 9000.0),
            (3.0, 8000.0),
            (4.0, 7000.0),
            (5.0, 6200.0),
            (6.0, 5600.0),
        ];
        let f = fit(&points).unwrap();
        assert!(f.sigma + f.kappa > 0.1, "{f:?}");
        assert!(f.predict(6.0) < f.predict(2.0));
    }

    #[test]
    fn rejects_unusable_input() {
        assert!(fit(&[(1.0, 1.0), (2.0, 2.0)]).is_err());
        assert!(fit(&[(1.0, 1.0), (2.0, 2.0), (0.0, 3.0)]).is_err());
        assert!(fit(&[(1.0, 1.0), (2.0, f64::NAN), (3.0, 3.0)]).is_err());
        assert!(fit(&[(1.0, 1.0), (1.0, 2.0), (1.0, 3.0)]).is_err());
    }
}
