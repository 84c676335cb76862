//! Whole trading days (DESIGN.md, "The trading day"): the generator's rows wrapped in the HOSE
//! day's phases, each part with the flow a real market shows in it.
//!
//! One day, in rows (PHASE rows are extra, six a day):
//! - `PHASE ATO`, then the opening call (10% of the day's order rows): limit orders priced a
//!   few ticks either side of the fair value, so buyers and sellers cross, and ATO market
//!   orders (a fifth of them); a few misplaced instructions (an MP, a cancel) that the phase
//!   refuses with `phase_forbids`;
//! - `PHASE CONTINUOUS`, the morning (40%): the continuous mix, with MTL among the takers and
//!   amends beside the cancels;
//! - `PHASE BREAK`, the lunch break (2%): cancels (allowed), and orders and amends that get
//!   `market_closed`;
//! - `PHASE CONTINUOUS`, the afternoon (38%);
//! - `PHASE ATC`, the closing call (10%): limit orders and ATC orders, crossing;
//! - `PHASE CLOSED`: every resting order expires; each security's reference becomes its close.
//!
//! The next day's prices follow the new references (read back from the shadow exchange), so
//! the band moves with the market from day to day.

use matching::stream::OrderRow;
use matching::{OrderType, Phase, Price};
use rand::Rng;

use super::{GenError, Generator, SecState};

/// Most trading days one stream may hold.
pub const MAX_DAYS: u32 = 1000;
/// Fewest order rows a day needs (every part of the day gets at least one).
pub const MIN_ROWS_PER_DAY: u64 = 20;

/// Percent of a day's order rows in each part: opening call, morning, break, afternoon,
/// closing call.
const PARTS_PCT: [u64; 5] = [10, 40, 2, 38, 10];
/// The phase each part runs in.
const PARTS: [Phase; 5] = [
    Phase::Ato,
    Phase::Continuous,
    Phase::Break,
    Phase::Continuous,
    Phase::Atc,
];
/// Percent of call-phase rows that are the phase's market order (ATO or ATC).
const AUCTION_ORDER_PCT: u32 = 20;
/// Percent of call-phase rows that the phase refuses (an MP order, a cancel).
const MISPLACED_PCT: u32 = 2;
/// Largest overnight move of a fair value, percent of the reference (HOSE's band is 7%).
const OVERNIGHT_GAP_PCT: i64 = 3;

/// The shape of a generated trading-day stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DayShape {
    /// Trading days; the generator's `orders` are spread evenly over them.
    pub days: u32,
}

impl DayShape {
    pub(super) fn validate(&self, orders: u64) -> Result<(), GenError> {
        if !(1..=MAX_DAYS).contains(&self.days) {
            return Err(GenError::Days(self.days));
        }
        if orders < MIN_ROWS_PER_DAY * u64::from(self.days) {
            return Err(GenError::TooFewForDays {
                orders,
                days: self.days,
                min: MIN_ROWS_PER_DAY,
            });
        }
        Ok(())
    }

    /// Order rows of each part of day `d` (0-based): the day's even share of `orders` (the
    /// last day takes the remainder), split by [`PARTS_PCT`], every part at least one row.
    fn parts(&self, orders: u64, d: u32) -> [u64; 5] {
        let days = u64::from(self.days);
        let mut day = orders / days;
        if u64::from(d) + 1 == days {
            day += orders % days;
        }
        let mut parts = PARTS_PCT.map(|pct| (day * pct / 100).max(1));
        let used: u64 = parts.iter().sum();
        // Rounding leftovers go to the afternoon (the largest part).
        parts[3] = (parts[3] + day).saturating_sub(used).max(1);
        parts
    }
}

/// A security's walking state at `reference`: the band (or a wide range without one) and the
/// fair value on the tick grid inside it.
pub(super) fn sec_state(
    rules: &matching::MarketRules,
    id: matching::SecurityId,
    code: &str,
    reference: Price,
) -> SecState {
    let band = rules.band(reference);
    let (floor, ceiling) = band.unwrap_or((
        (reference / 2).max(rules.tick(reference)),
        reference.saturating_add(reference / 2),
    ));
    SecState {
        id,
        code: code.to_string(),
        floor,
        ceiling,
        band,
        mid: rules.round_to_tick(reference, false).clamp(floor, ceiling),
    }
}

impl Generator<'_> {
    pub(super) fn run_days(mut self, shape: DayShape) -> Vec<OrderRow> {
        let orders = self.cfg.orders;
        let mut rows = Vec::with_capacity(orders as usize + 6 * shape.days as usize);
        let mut id = 0u64;
        for d in 0..shape.days {
            for (part, (phase, n)) in PARTS.into_iter().zip(shape.parts(orders, d)).enumerate() {
                self.push(OrderRow::phase(phase), &mut rows);
                for _ in 0..n {
                    id += 1;
                    let row = match part {
                        0 => self.call_row(id, OrderType::Ato),
                        2 => self.break_row(id),
                        4 => self.call_row(id, OrderType::Atc),
                        _ => self.continuous_row(id),
                    };
                    self.push(row, &mut rows);
                }
            }
            self.push(OrderRow::phase(Phase::Closed), &mut rows);
            self.next_day();
        }
        rows
    }

    fn push(&mut self, row: OrderRow, rows: &mut Vec<OrderRow>) {
        self.apply(&row);
        rows.push(row);
    }

    /// A row of a call phase whose market order is `auction` (ATO or ATC).
    fn call_row(&mut self, id: u64, auction: OrderType) -> OrderRow {
        let roll: f64 = self.rng.gen_range(0.0..100.0);
        if roll < self.cfg.invalid_pct {
            return self.invalid(id);
        }
        let sec = self.pick_security();
        self.walk(sec);
        let side = self.side();
        let broker = self.rng.gen_range(0..self.brokers.len());
        let code = self.secs[sec as usize].code.clone();
        let qty = self.qty();
        let pick = self.rng.gen_range(0..100u32);
        if pick < MISPLACED_PCT {
            // A broker early or late: an MP, or a cancel, that the call phase refuses.
            if pick == 0 {
                if let Some(row) = self.cancel() {
                    return row;
                }
            }
            return self.new_row(id, broker, &code, side, OrderType::Market, 0, qty);
        }
        if pick < MISPLACED_PCT + AUCTION_ORDER_PCT {
            return self.new_row(id, broker, &code, side, auction, 0, qty);
        }
        // Buyers bid up to 3 ticks above the fair value, sellers ask down to 3 below it: the
        // two sides overlap, so the call has something to uncross.
        let mid = self.secs[sec as usize].mid;
        let steps = match side {
            matching::Side::Buy => self.rng.gen_range(-4..=3i64),
            matching::Side::Sell => self.rng.gen_range(-3..=4i64),
        };
        let mut p = mid;
        for _ in 0..steps.abs() {
            p = if steps > 0 {
                p + self.rules.tick(p)
            } else {
                p - self.rules.tick(p - 1)
            };
        }
        let price = self.legal(sec, p, steps > 0);
        self.new_row(id, broker, &code, side, OrderType::Limit, price, qty)
    }

    /// A row of the lunch break: half cancels of resting orders (the break admits them),
    /// the rest limit orders and amends that the break refuses with `market_closed`.
    fn break_row(&mut self, id: u64) -> OrderRow {
        match self.rng.gen_range(0..10) {
            0..=4 => self.cancel(),
            5..=7 => None,
            _ => self.amend(),
        }
        .unwrap_or_else(|| self.limit(id))
    }

    /// After the close: the shadow exchange's new references set each security's band and
    /// fair value, and overnight news moves the fair value up to [`OVERNIGHT_GAP_PCT`] either
    /// way (the next opening call prices it); nothing rests any more, so no candidate is
    /// worth keeping.
    fn next_day(&mut self) {
        let rules = self.rules;
        for i in 0..self.secs.len() {
            let s = &self.secs[i];
            let reference = self.exchange.gateway().reference(s.id).unwrap_or(s.mid);
            let mut next = sec_state(rules, s.id, &s.code, reference);
            let gap = reference * self.rng.gen_range(-OVERNIGHT_GAP_PCT..=OVERNIGHT_GAP_PCT) / 100;
            next.mid = rules
                .round_to_tick(reference + gap, gap > 0)
                .clamp(next.floor, next.ceiling);
            self.secs[i] = next;
        }
        self.candidates.iter_mut().for_each(Vec::clear);
        debug_assert!(self.live.is_empty(), "the close expires every order");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::{generate, GenConfig};
    use matching::stream::{to_command, Action, BrokerRegistry};
    use matching::{Aggressor, Event, Exchange, MarketRules, RejectReason, SecurityTable};

    fn day_cfg(orders: u64, days: u32, seed: u64) -> GenConfig {
        GenConfig {
            orders,
            seed,
            invalid_pct: 0.0,
            amend_pct: 10.0,
            day: Some(DayShape { days }),
            ..GenConfig::default()
        }
    }

    /// What a local replay of a day stream showed, per part of the day (0..5: ATO, morning,
    /// break, afternoon, ATC), summed over days.
    #[derive(Default, Debug)]
    struct Seen {
        rows: [u64; 5],
        rejects: Vec<(usize, Action, Option<OrderType>, RejectReason)>,
        kinds: Vec<(usize, OrderType)>,
        amended_kept: u64,
        amended_moved: u64,
        amends: u64,
        cancels_done: u64,
        auction_trades: u64,
        auctions: u64,
        continuous_trades: u64,
        /// References set at each close: (day, security, price).
        references: Vec<(u32, u32, Price)>,
        /// Every book's totals right after each CLOSED.
        closed_totals: Vec<(u64, u64)>,
    }

    fn replay(rows: &[OrderRow], secs: &SecurityTable, rules: MarketRules) -> Seen {
        let mut ex = Exchange::new(rules, secs.clone());
        let mut brokers = BrokerRegistry::new();
        let mut seen = Seen::default();
        let mut part = 0usize;
        let mut day = 0u32;
        let mut events = Vec::new();
        for row in rows {
            events.clear();
            ex.process(&to_command(row, secs, &mut brokers), &mut events);
            if row.action == Action::Phase {
                let phase = row.phase.unwrap();
                if phase == Phase::Closed {
                    for ev in &events {
                        if let Event::Reference { security, price } = *ev {
                            seen.references.push((day, security.0, price));
                        }
                        if let Event::Totals {
                            bid_total,
                            ask_total,
                            ..
                        } = *ev
                        {
                            seen.closed_totals.push((bid_total, ask_total));
                        }
                    }
                    day += 1;
                } else {
                    part = PARTS
                        .iter()
                        .enumerate()
                        .skip(if phase == Phase::Continuous && part >= 1 {
                            3
                        } else {
                            0
                        })
                        .find(|(_, p)| **p == phase)
                        .map(|(i, _)| i)
                        .unwrap();
                }
                for ev in &events {
                    match ev {
                        Event::Fill(f) if f.aggressor == Aggressor::Auction => {
                            seen.auction_trades += 1
                        }
                        Event::Auction { .. } => seen.auctions += 1,
                        _ => {}
                    }
                }
                continue;
            }
            seen.rows[part] += 1;
            if let Some(k) = row.kind {
                seen.kinds.push((part, k));
            }
            if row.action == Action::Amend {
                seen.amends += 1;
            }
            for ev in &events {
                match *ev {
                    Event::Rejected { reason, .. } => {
                        seen.rejects.push((part, row.action, row.kind, reason))
                    }
                    Event::Amended { priority_kept, .. } => {
                        if priority_kept {
                            seen.amended_kept += 1
                        } else {
                            seen.amended_moved += 1
                        }
                    }
                    Event::Cancelled {
                        reason: matching::CancelReason::Requested,
                        ..
                    } => seen.cancels_done += 1,
                    Event::Fill(f) => {
                        assert_ne!(f.aggressor, Aggressor::Auction, "{row:?}");
                        seen.continuous_trades += 1;
                    }
                    _ => {}
                }
            }
        }
        seen
    }

    #[test]
    fn a_day_stream_is_reproducible_and_has_the_hose_shape() {
        let secs = SecurityTable::synthetic(30).unwrap();
        let rules = MarketRules::hose();
        let cfg = day_cfg(12_000, 2, 5);
        let rows = generate(&cfg, &secs, &rules);
        assert_eq!(rows, generate(&cfg, &secs, &rules), "same seed, same rows");
        assert_ne!(rows, generate(&day_cfg(12_000, 2, 6), &secs, &rules));
        let phases: Vec<Phase> = rows.iter().filter_map(|r| r.phase).collect();
        let day = [
            Phase::Ato,
            Phase::Continuous,
            Phase::Break,
            Phase::Continuous,
            Phase::Atc,
            Phase::Closed,
        ];
        assert_eq!(phases, [day, day].concat());
        assert_eq!(rows.first().and_then(|r| r.phase), Some(Phase::Ato));
        assert_eq!(rows.last().and_then(|r| r.phase), Some(Phase::Closed));
        assert_eq!(
            rows.len(),
            12_000 + 12,
            "order rows plus six PHASE rows a day"
        );
        let seen = replay(&rows, &secs, rules);
        let shape = DayShape { days: 2 };
        let want: Vec<u64> = (0..5)
            .map(|p| shape.parts(12_000, 0)[p] + shape.parts(12_000, 1)[p])
            .collect();
        assert_eq!(seen.rows.to_vec(), want);
        assert_eq!(want, [1200, 4800, 240, 4560, 1200]);

        // Calls: LO and the phase's own market order; only the misplaced few are refused.
        for (part, own) in [(0, OrderType::Ato), (4, OrderType::Atc)] {
            let kinds: Vec<OrderType> = seen
                .kinds
                .iter()
                .filter(|(p, _)| *p == part)
                .map(|(_, k)| *k)
                .collect();
            let auction = kinds.iter().filter(|k| **k == own).count();
            assert!(
                auction * 100 > kinds.len() * 12,
                "{own:?}: {auction} of {}",
                kinds.len()
            );
            assert!(
                kinds
                    .iter()
                    .all(|k| matches!(k, OrderType::Limit | OrderType::Market) || *k == own),
                "{kinds:?}"
            );
            let refused = seen.rejects.iter().filter(|r| r.0 == part).count();
            assert!(refused > 0 && refused * 100 < kinds.len() * 5, "{refused}");
            assert!(seen
                .rejects
                .iter()
                .filter(|r| r.0 == part)
                .all(|r| r.3 == RejectReason::PhaseForbids));
        }
        // Both calls of both days uncross with real volume.
        assert!(seen.auctions >= 2 * 2 * 10, "{} auctions", seen.auctions);
        assert!(seen.auction_trades > seen.auctions);
        // Continuous trading: nothing refused, MTL traded, amends of both kinds.
        assert!(seen
            .rejects
            .iter()
            .all(|r| r.0 == 0 || r.0 == 2 || r.0 == 4));
        assert!(seen
            .kinds
            .iter()
            .any(|(p, k)| *p == 1 && *k == OrderType::Mtl));
        assert!(seen
            .kinds
            .iter()
            .any(|(p, k)| *p == 3 && *k == OrderType::Mtl));
        assert!(seen.amends > 700, "{} amends", seen.amends);
        assert!(
            seen.amended_kept > 100 && seen.amended_moved > 300,
            "{seen:?}"
        );
        assert!(seen.continuous_trades > 1_000);
        // The break: cancels work, every order and amend gets market_closed.
        let break_rejects: Vec<_> = seen.rejects.iter().filter(|r| r.0 == 2).collect();
        assert!(break_rejects.len() > 50);
        assert!(break_rejects
            .iter()
            .all(|r| r.3 == RejectReason::MarketClosed && r.1 != Action::Cancel));
        assert!(seen.cancels_done > 100);
        // The close empties every book, twice; the references follow the market.
        assert_eq!(seen.closed_totals.len(), 2 * secs.len());
        assert!(seen.closed_totals.iter().all(|t| *t == (0, 0)));
        let moved = seen
            .references
            .iter()
            .filter(|(d, s, p)| *d == 0 && secs.reference(matching::SecurityId(*s)) != Some(*p))
            .count();
        assert!(moved > 15, "only {moved} of 30 references moved on day 1");
    }

    #[test]
    fn the_band_follows_the_close_from_day_to_day() {
        // Over 20 days the closes wander away from the listing's reference; no valid order
        // may fall outside its day's band (no outside_band reject), and some later prices lie
        // outside the first day's band (the band really moved with the market).
        let secs = SecurityTable::synthetic(2).unwrap();
        let rules = MarketRules::hose();
        let rows = generate(&day_cfg(20_000, 20, 9), &secs, &rules);
        let seen = replay(&rows, &secs, rules);
        assert!(seen
            .rejects
            .iter()
            .all(|r| matches!(r.3, RejectReason::PhaseForbids | RejectReason::MarketClosed)));
        let mut outside_first_band = 0;
        let mut closed = 0;
        for r in &rows {
            if r.phase == Some(Phase::Closed) {
                closed += 1;
            }
            if closed >= 1 && r.action == Action::New && r.price > 0 {
                let reference = secs.reference(secs.lookup(&r.security)).unwrap();
                let (lo, hi) = rules.band(reference).unwrap();
                if !(lo..=hi).contains(&r.price) {
                    outside_first_band += 1;
                }
            }
        }
        assert!(outside_first_band > 0, "the band never moved in 20 days");
    }

    #[test]
    fn tiny_and_odd_days_still_make_valid_streams() {
        let rules = MarketRules::hose();
        for (listings, brokers, orders, days) in [(1, 1, 20, 1), (2, 1, 2_000, 100), (5, 99, 21, 1)]
        {
            let secs = SecurityTable::synthetic(listings).unwrap();
            let cfg = GenConfig {
                brokers,
                invalid_pct: 5.0,
                ..day_cfg(orders, days, 1)
            };
            let rows = generate(&cfg, &secs, &rules);
            let phases = rows.iter().filter(|r| r.action == Action::Phase).count();
            assert_eq!(rows.len() - phases, orders as usize);
            assert_eq!(phases, 6 * days as usize);
            let out = matching::stream::replay_local(rules, &secs, &rows);
            assert!(out.reject_count() < rows.len());
        }
        let none = MarketRules::none();
        let secs = SecurityTable::synthetic(4).unwrap();
        let rows = generate(&day_cfg(3_000, 2, 3), &secs, &none);
        let seen = replay(&rows, &secs, none);
        assert!(seen.auctions > 0);
        assert!(seen
            .rejects
            .iter()
            .all(|r| matches!(r.3, RejectReason::PhaseForbids | RejectReason::MarketClosed)));
    }

    #[test]
    fn bad_day_configs_are_refused() {
        let secs = SecurityTable::synthetic(3).unwrap();
        for cfg in [
            day_cfg(1_000, 0, 1),
            day_cfg(1_000, MAX_DAYS + 1, 1),
            day_cfg(39, 2, 1),
        ] {
            assert!(cfg.validate(&secs).is_err(), "{cfg:?}");
            assert!(generate(&cfg, &secs, &MarketRules::hose()).is_empty());
        }
        assert!(matches!(
            day_cfg(39, 2, 1).validate(&secs),
            Err(GenError::TooFewForDays { min: 20, .. })
        ));
        assert!(day_cfg(40, 2, 1).validate(&secs).is_ok());
    }
}
