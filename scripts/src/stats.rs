//! Order statistics for repeated runs: median, quartiles, min/max.

use crate::runs::{Executors, RunRecord};

/// Summary of one cell's repeats.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub min: f64,
    pub q1: f64,
    pub median: f64,
    pub q3: f64,
    pub max: f64,
}

impl Summary {
    /// Summarises `values`; `None` if empty or if any value is NaN.
    pub fn of(values: &[f64]) -> Option<Summary> {
        if values.is_empty() || values.iter().any(|v| v.is_nan()) {
            return None;
        }
        let mut v = values.to_vec();
        v.sort_by(|a, b| a.total_cmp(b));
        Some(Summary {
            n: v.len(),
            min: v[0],
            q1: quantile_sorted(&v, 0.25),
            median: quantile_sorted(&v, 0.5),
            q3: quantile_sorted(&v, 0.75),
            max: v[v.len() - 1],
        })
    }

    /// Interquartile range.
    pub fn iqr(&self) -> f64 {
        self.q3 - self.q1
    }
}

/// Median of `values` (mean of the two middle values for an even count); `None` if empty.
pub fn median(values: &[f64]) -> Option<f64> {
    Summary::of(values).map(|s| s.median)
}

/// Quantile `q` in [0,1] of sorted, non-empty data with linear interpolation between ranks
/// (type 7, the default of R and numpy).
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let q = q.clamp(0.0, 1.0);
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Summaries of every measure of one cell (one orders x executors combination).
#[derive(Debug, Clone)]
pub struct CellStats {
    pub orders: u64,
    pub executors: Executors,
    /// Distinct invocation ids of the cell's runs, in first-seen order (one after a publish,
    /// which replaces whole cells).
    pub invocations: Vec<String>,
    pub elapsed_s: Summary,
    pub mean_us_per_order: Summary,
    pub throughput: Summary,
    pub p50_us: Summary,
    pub p99_us: Summary,
    pub p999_us: Summary,
}

/// Groups runs (of one scenario) by cell and summarises each, sorted by orders then executors.
pub fn cells(records: &[&RunRecord]) -> Vec<CellStats> {
    let mut keys: Vec<(u64, Executors)> = records.iter().map(|r| (r.orders, r.executors)).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|(orders, executors)| {
            let rs: Vec<&&RunRecord> = records
                .iter()
                .filter(|r| r.orders == orders && r.executors == executors)
                .collect();
            let of = |f: &dyn Fn(&RunRecord) -> f64| {
                Summary::of(&rs.iter().map(|r| f(r)).collect::<Vec<_>>())
            };
            let mut invocations: Vec<String> = Vec::new();
            for r in &rs {
                if !invocations.contains(&r.invocation) {
                    invocations.push(r.invocation.clone());
                }
            }
            Some(CellStats {
                orders,
                executors,
                invocations,
                elapsed_s: of(&|r| r.elapsed_s)?,
                mean_us_per_order: of(&|r| r.mean_us_per_order)?,
                throughput: of(&|r| r.throughput)?,
                p50_us: of(&|r| r.p50_us as f64)?,
                p99_us: of(&|r| r.p99_us as f64)?,
                p999_us: of(&|r| r.p999_us as f64)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_and_even_medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[1.0, f64::NAN]), None);
    }

    #[test]
    fn quartiles_match_numpy() {
        // numpy.percentile([1,2,3,4,5,6,7,8,9,10], [25,75]) == [3.25, 7.75]
        let s = Summary::of(&[10.0, 9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0]).unwrap();
        assert_eq!(
            (s.min, s.q1, s.median, s.q3, s.max),
            (1.0, 3.25, 5.5, 7.75, 10.0)
        );
        assert_eq!(s.iqr(), 4.5);
        assert_eq!(s.n, 10);
        let one = Summary::of(&[7.0]).unwrap();
        assert_eq!(
            (one.min, one.median, one.max, one.iqr()),
            (7.0, 7.0, 7.0, 0.0)
        );
    }

    #[test]
    fn cells_group_by_orders_and_executors() {
        let mk = |orders: u64, executors: Executors, elapsed_s: f64| RunRecord {
            invocation: String::new(),
            cell: RunRecord::cell_label(orders, executors),
            orders,
            executors,
            repeat: 0,
            mode: "loopback".into(),
            netem_ms: 0.0,
            work_us: 0,
            brokers: 1,
            elapsed_s,
            mean_us_per_order: elapsed_s * 1e6 / orders as f64,
            throughput: orders as f64 / elapsed_s,
            p50_us: 1,
            p99_us: 2,
            p999_us: 3,
            accept_p50_us: 1,
            accept_p99_us: 2,
            accepted: orders,
            rejected: 0,
            fills: 0,
            started_unix: 0,
        };
        let rows = [
            mk(2000, Executors::Grid(2), 1.0),
            mk(1000, Executors::Local, 3.0),
            mk(2000, Executors::Grid(2), 2.0),
            mk(2000, Executors::Grid(2), 9.0),
        ];
        let refs: Vec<&RunRecord> = rows.iter().collect();
        let c = cells(&refs);
        assert_eq!(c.len(), 2);
        assert_eq!(
            (c[0].orders, c[0].executors, c[0].elapsed_s.n),
            (1000, Executors::Local, 1)
        );
        assert_eq!(
            (
                c[1].elapsed_s.median,
                c[1].elapsed_s.min,
                c[1].elapsed_s.max
            ),
            (2.0, 1.0, 9.0)
        );
        assert_eq!(c[1].throughput.median, 1000.0);
    }
}
