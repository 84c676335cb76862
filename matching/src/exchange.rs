//! Gateway + engine with every listed security's book open: the sequential reference the grid
//! must reproduce exactly.

use crate::engine::Engine;
use crate::gateway::Gateway;
use crate::rules::MarketRules;
use crate::securities::SecurityTable;
use crate::types::{Command, Event};

/// The sequential exchange.
#[derive(Clone, Debug)]
pub struct Exchange {
    gateway: Gateway,
    engine: Engine,
}

impl Exchange {
    pub fn new(rules: MarketRules, securities: SecurityTable) -> Self {
        let mut engine = Engine::new(rules, &securities);
        for (id, _, _) in securities.iter() {
            engine.open_book(id);
        }
        Self {
            gateway: Gateway::new(rules, securities),
            engine,
        }
    }

    /// Processes one command, appending its events to `out`: a gateway reject yields only
    /// `Rejected`; otherwise the engine's events. A `Reference` event (the close) moves the
    /// gateway's band for the next day.
    pub fn process(&mut self, cmd: &Command, out: &mut Vec<Event>) {
        match self.gateway.check(cmd) {
            Ok(()) => {
                let start = out.len();
                self.engine.process(cmd, out);
                if matches!(cmd, Command::Phase(_)) {
                    for ev in &out[start..] {
                        if let Event::Reference { security, price } = *ev {
                            self.gateway.set_reference(security, price);
                        }
                    }
                }
            }
            Err(reason) => {
                if let Some(id) = cmd.order_id() {
                    out.push(Event::Rejected { id, reason })
                }
            }
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn gateway(&self) -> &Gateway {
        &self.gateway
    }
}
