//! Plotting and the Markdown block from synthetic runs: files are real PNGs, the table and the
//! USL coefficients appear.

use scripts::runs::{Executors, RunRecord};
use scripts::{plots, table, usl};

fn synthetic() -> Vec<RunRecord> {
    let mut out = Vec::new();
    for repeat in 0..3u32 {
        for orders in [1000u64, 3000, 5000] {
            for executors in [
                Executors::Local,
                Executors::Grid(2),
                Executors::Grid(4),
                Executors::Grid(6),
            ] {
                let x = match executors {
                    Executors::Local => 20_000.0,
                    Executors::Grid(n) => usl::usl(9000.0, 0.2, 0.03, n as f64),
                } * (1.0 + 0.01 * repeat as f64);
                let elapsed_s = orders as f64 / x;
                out.push(RunRecord {
                    cell: RunRecord::cell_label(orders, executors),
                    orders,
                    executors,
                    repeat,
                    mode: "loopback".into(),
                    netem_ms: 0.0,
                    work_us: 0,
                    brokers: 4,
                    elapsed_s,
                    mean_us_per_order: elapsed_s * 1e6 / orders as f64,
                    throughput: x,
                    p50_us: 500 + 100 * executors.axis() as u64,
                    p99_us: 3000 + 700 * executors.axis() as u64,
                    p999_us: 9000,
                    accept_p50_us: 200,
                    accept_p99_us: 1000,
                    accepted: orders,
                    rejected: 0,
                    fills: orders / 3,
                    started_unix: 0,
                });
            }
        }
    }
    out
}

#[test]
fn writes_pngs_and_markdown() {
    let dir = tempfile::tempdir().unwrap();
    let records = synthetic();
    let fits = table::fits(&records);
    assert_eq!(fits.len(), 1);
    let (scenario, orders, fit) = &fits[0];
    assert_eq!(*orders, 5000);
    let fit = fit.as_ref().unwrap();
    // 3 grid points per N at +0/1/2% noise: sigma and kappa near the truth.
    assert!(
        (fit.sigma - 0.2).abs() < 0.05 && (fit.kappa - 0.03).abs() < 0.01,
        "{fit:?}"
    );
    let refs: Vec<&RunRecord> = records.iter().collect();
    let files =
        plots::plot_scenario(dir.path(), scenario, &refs, Some(fit), "2 cores, test").unwrap();
    assert_eq!(files.len(), 3);
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        assert!(
            bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
            "{} is not a PNG",
            f.display()
        );
        assert!(bytes.len() > 10_000, "{} suspiciously small", f.display());
    }
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let md = table::generated(&records, "2 cores, test", &[(scenario.slug(), names)]);
    assert!(
        md.contains("| orders | local | 2 exec | 4 exec | 6 exec |"),
        "{md}"
    );
    assert!(md.contains("![processing_time_loopback.png](processing_time_loopback.png)"));
    assert!(md.contains("| loopback | 5000 |"));
}
