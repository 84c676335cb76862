//! Shared by the feed's tests and its benchmark: a nasty seeded command generator and a driver
//! that runs commands through the real gateway and engine the way the manager does (a PHASE
//! command once per security, in security-code byte order) and hands each per-security batch
//! to the feed.
#![allow(dead_code)]

use matching::{
    AmendOrder, BrokerId, CancelOrder, Command, Engine, Event, Exchange, MarketRules, NewOrder,
    OrderId, OrderType, Phase, Price, Qty, SecurityId, SecurityTable, Side, Timestamp,
    MAX_ORDER_QTY,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// 2026-01-05 02:00:00 UTC = 09:00 in Hanoi.
pub const DAY_START: Timestamp = 1_767_578_400_000_000_000;

/// `n` listed securities `S000`, `S001`, ... with reference prices cycling through the three
/// HOSE tick regions (below 10,000; 10,000 to 49,950; 50,000 and above), each on its tick.
pub fn listing(n: usize) -> SecurityTable {
    let mut table = SecurityTable::new();
    for i in 0..n {
        let k = (i / 3) as Price;
        let reference = match i % 3 {
            0 => 5_000 + 10 * k,
            1 => 25_000 + 50 * k,
            _ => 80_000 + 100 * k,
        };
        table.add(&format!("S{i:03}"), reference).unwrap();
    }
    table
}

/// Generator knobs.
#[derive(Clone, Copy, Debug)]
pub struct GenConfig {
    pub securities: usize,
    /// Half-width of the usual price range around the reference, in ticks.
    pub spread_ticks: i64,
    /// Share (0..1) of commands that are meant to be rejected or to miss (bad prices, odd lots,
    /// unknown ids, wrong owners, duplicate ids, unknown securities).
    pub nasty: f64,
    /// Share of PHASE commands.
    pub phases: f64,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            securities: 6,
            spread_ticks: 12,
            nasty: 0.08,
            phases: 0.002,
        }
    }
}

/// A seeded stream of commands of every kind, valid and not.
pub struct Gen {
    rng: ChaCha8Rng,
    cfg: GenConfig,
    rules: MarketRules,
    table: SecurityTable,
    next_id: u64,
    /// Every id issued by a NEW: (id, broker, security). Cancels and amends pick from it.
    issued: Vec<(u64, u32, u32)>,
}

impl Gen {
    pub fn new(seed: u64, cfg: GenConfig) -> Self {
        Gen {
            rng: ChaCha8Rng::seed_from_u64(seed),
            cfg,
            rules: MarketRules::hose(),
            table: listing(cfg.securities),
            next_id: 1,
            issued: Vec::new(),
        }
    }

    pub fn table(&self) -> &SecurityTable {
        &self.table
    }

    pub fn rules(&self) -> MarketRules {
        self.rules
    }

    fn price(&mut self, sec: u32) -> Price {
        // An unlisted security (a nasty order's) is priced like a listed one.
        let sec = sec % self.cfg.securities as u32;
        let reference = self.table.reference(SecurityId(sec)).unwrap();
        let tick = self.rules.tick(reference);
        let (floor, ceiling) = self.rules.band(reference).unwrap();
        // Mostly near the reference (busy levels, deep FIFOs); sometimes anywhere in the band.
        let p = if self.rng.gen_bool(0.9) {
            let k = self
                .rng
                .gen_range(-self.cfg.spread_ticks..=self.cfg.spread_ticks);
            reference + k * tick
        } else {
            self.rng.gen_range(floor..=ceiling)
        };
        self.rules
            .round_to_tick(p.clamp(floor, ceiling), false)
            .max(floor)
    }

    fn qty(&mut self) -> Qty {
        match self.rng.gen_range(0..100) {
            0 => MAX_ORDER_QTY / 100 * 100,
            1..=60 => 100 * self.rng.gen_range(1..=10),
            _ => 100 * self.rng.gen_range(1..=300),
        }
    }

    fn bad_new(&mut self, mut o: NewOrder) -> NewOrder {
        match self.rng.gen_range(0..9) {
            0 => o.qty = 0,
            1 => o.qty = 150,
            2 => o.qty = MAX_ORDER_QTY + 100,
            3 => o.price += 1,
            4 => o.price = 1_000_000_000,
            5 => o.price = -100,
            6 => o.security = SecurityId(self.cfg.securities as u32 + 7),
            7 => o.security = SecurityId::UNKNOWN,
            _ => {
                // A duplicate id (maybe of a resting order).
                if let Some(&(id, _, _)) = self.pick() {
                    o.id = OrderId(id);
                }
            }
        }
        o
    }

    fn pick(&mut self) -> Option<&(u64, u32, u32)> {
        if self.issued.is_empty() {
            return None;
        }
        // Recent orders are more likely to still rest.
        let n = self.issued.len();
        let back = (self.rng.gen::<f64>().powi(3) * n as f64) as usize;
        self.issued.get(n - 1 - back.min(n - 1))
    }

    pub fn next_command(&mut self) -> Command {
        let nasty = self.rng.gen_bool(self.cfg.nasty);
        if self.rng.gen_bool(self.cfg.phases) {
            return Command::Phase(Phase::ALL[self.rng.gen_range(0..Phase::ALL.len())]);
        }
        let roll = self.rng.gen_range(0..100);
        if roll < 20 {
            if let Some(&(id, broker, sec)) = self.pick() {
                let mut c = CancelOrder {
                    id: OrderId(id),
                    broker: BrokerId(broker),
                    security: SecurityId(sec),
                };
                if nasty {
                    match self.rng.gen_range(0..3) {
                        0 => c.broker = BrokerId(broker + 1),
                        1 => c.id = OrderId(self.next_id + 1_000_000),
                        _ => {
                            c.security =
                                SecurityId(sec.wrapping_add(1) % self.cfg.securities as u32)
                        }
                    }
                }
                return Command::Cancel(c);
            }
        } else if roll < 35 {
            if let Some(&(id, broker, sec)) = self.pick() {
                let price = self.price(sec);
                let qty = self.qty();
                let mut a = AmendOrder {
                    id: OrderId(id),
                    broker: BrokerId(broker),
                    security: SecurityId(sec),
                    price,
                    qty,
                };
                if nasty {
                    match self.rng.gen_range(0..3) {
                        0 => a.broker = BrokerId(broker + 1),
                        1 => a.qty = 150,
                        _ => a.price += 1,
                    }
                }
                return Command::Amend(a);
            }
        }
        let sec = self.rng.gen_range(0..self.cfg.securities as u32);
        let kind = match self.rng.gen_range(0..100) {
            0..=79 => OrderType::Limit,
            80..=83 => OrderType::Market,
            84..=87 => OrderType::Mtl,
            88..=92 => OrderType::Ioc,
            93..=95 => OrderType::Fok,
            96..=97 => OrderType::Ato,
            _ => OrderType::Atc,
        };
        let price = if kind.is_priceless() {
            0
        } else {
            self.price(sec)
        };
        let broker = self.rng.gen_range(0..8);
        let mut o = NewOrder {
            id: OrderId(self.next_id),
            broker: BrokerId(broker),
            security: SecurityId(sec),
            side: if self.rng.gen_bool(0.5) {
                Side::Buy
            } else {
                Side::Sell
            },
            kind,
            price,
            qty: self.qty(),
        };
        self.next_id += 1;
        if nasty {
            o = self.bad_new(o);
        }
        if o.id.0 == self.next_id - 1 {
            self.issued.push((o.id.0, o.broker.0, o.security.0));
        }
        Command::New(o)
    }
}

/// The sequential reference exchange, its events handed out the way the manager hands them to
/// the feed: per command and per security; a PHASE once per security (with that book's events:
/// the engine emits them book by book, each group closed by the book's `Totals`).
pub struct Driver {
    pub exchange: Exchange,
    pub seq: u64,
    pub time: Timestamp,
    by_code: Vec<SecurityId>,
    events: Vec<Event>,
    groups: Vec<Vec<Event>>,
    rng: ChaCha8Rng,
}

impl Driver {
    pub fn new(rules: MarketRules, table: &SecurityTable) -> Self {
        let mut by_code: Vec<(String, SecurityId)> = table
            .iter()
            .map(|(id, code, _)| (code.to_string(), id))
            .collect();
        by_code.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        Driver {
            exchange: Exchange::new(rules, table.clone()),
            seq: 0,
            time: DAY_START,
            by_code: by_code.into_iter().map(|(_, id)| id).collect(),
            events: Vec::new(),
            groups: vec![Vec::new(); table.len()],
            rng: ChaCha8Rng::seed_from_u64(7),
        }
    }

    pub fn engine(&self) -> &Engine {
        self.exchange.engine()
    }

    /// Steps `cmd` and applies every group it completes to `feed`.
    pub fn step_feed(&mut self, cmd: &Command, feed: &mut feed::Feed) {
        self.step(cmd, |c| feed.apply(c).unwrap());
    }

    /// Sequences one command; calls `f` with each per-security batch it completes (none for a
    /// gateway reject).
    pub fn step(&mut self, cmd: &Command, mut f: impl FnMut(feed::Completed<'_>)) {
        self.seq += 1;
        self.time += self.rng.gen_range(0..2_000_000);
        self.events.clear();
        self.exchange.process(cmd, &mut self.events);
        match cmd.security() {
            Some(sec) => {
                let gateway_reject = matches!(self.events.as_slice(), [Event::Rejected { .. }]);
                if !gateway_reject {
                    f(feed::Completed {
                        seq: self.seq,
                        time: self.time,
                        security: sec,
                        command: cmd,
                        events: &self.events,
                    });
                }
            }
            None => {
                let mut start = 0;
                for (i, e) in self.events.iter().enumerate() {
                    if let Event::Totals { security, .. } = e {
                        self.groups[security.0 as usize] = self.events[start..=i].to_vec();
                        start = i + 1;
                    }
                }
                assert_eq!(
                    start,
                    self.events.len(),
                    "phase events after the last Totals"
                );
                for i in 0..self.by_code.len() {
                    let sec = self.by_code[i];
                    let group = std::mem::take(&mut self.groups[sec.0 as usize]);
                    f(feed::Completed {
                        seq: self.seq,
                        time: self.time,
                        security: sec,
                        command: cmd,
                        events: &group,
                    });
                }
            }
        }
    }
}
