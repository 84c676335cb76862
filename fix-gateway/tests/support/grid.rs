//! A real grid (manager, executors: testkit) with the real `fix-gateway` in front of it, and
//! QuickFIX/C++ clients logged on as the grid's brokers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use testkit::{Grid, GridOptions};

use super::{Client, ClientOpts, Gateway};

/// The listing of grid tests: HOSE rules (VNM: tick 50, band 9,300..10,700).
pub const LISTING: &str = "security,reference_price\nVNM,10000\nFPT,50000\nHPG,25000\n";

pub struct FixGrid {
    pub grid: Grid,
    pub gateway: Option<Gateway>,
    pub dir: PathBuf,
    pub creds: BTreeMap<String, String>,
    pub port: u16,
}

impl FixGrid {
    /// A manager with `executors` executors (0: `--local`) and a gateway in front of it.
    pub fn start(dir: &Path, executors: usize) -> FixGrid {
        let listing = dir.join("listing.csv");
        std::fs::write(&listing, LISTING).unwrap();
        let grid = Grid::start(
            dir,
            GridOptions {
                executors,
                local: executors == 0,
                securities: Some(listing),
                ..GridOptions::default()
            },
        );
        let text = std::fs::read_to_string(grid.credentials()).unwrap();
        let creds = transport::credentials::parse(&text, "brokers.csv").unwrap();
        let gateway = Gateway::for_manager(&dir.join("gw"), &grid.addr, &grid.ca(), 0);
        let port = gateway.addr.port();
        FixGrid {
            grid,
            gateway: Some(gateway),
            dir: dir.to_path_buf(),
            creds,
            port,
        }
    }

    pub fn secret(&self, broker: &str) -> &str {
        &self.creds[broker]
    }

    /// A QuickFIX client for `broker` with its own store (kept across client restarts).
    pub fn client(&self, broker: &str) -> Client {
        self.client_with(broker, self.secret(broker))
    }

    pub fn client_with(&self, broker: &str, password: &str) -> Client {
        Client::start(
            self.port,
            &self.dir.join(format!("qf-{broker}")),
            ClientOpts {
                sender: broker,
                password,
                ..ClientOpts::default()
            },
        )
    }

    /// kill -9 the gateway.
    pub fn kill_gateway(&mut self) {
        if let Some(g) = self.gateway.take() {
            g.kill();
        }
    }

    /// Starts the gateway again on the same port and data directory.
    pub fn start_gateway(&mut self) {
        let g = Gateway::for_manager(
            &self.dir.join("gw"),
            &self.grid.addr,
            &self.grid.ca(),
            self.port,
        );
        self.gateway = Some(g);
    }

    pub fn gateway_log(&self) -> String {
        self.gateway.as_ref().map(Gateway::log).unwrap_or_default()
    }
}
