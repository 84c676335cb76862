//! Builds the [`MarketView`] from public market data: trades (engine fills or feed trade
//! messages), the next day's reference prices, and book depth snapshots (the local exchange's
//! book, or the feed's L2). It also keeps every completed bar for the plots and the stylized
//! facts.
//!
//! Bars follow the lockstep: [`MarketTracker::begin_step`] closes the bar of the previous step
//! (stamping the touch as it was then) and opens the next one, so trades made by a phase change
//! that opens a step (the opening auction) land in that step's bar, and the closing auction,
//! which runs at the close after the last step, lands in the day's last bar.

use std::collections::VecDeque;

use matching::{Event, MarketRules, Phase, Price, Qty, SecurityId, SecurityTable, Timestamp};

use crate::view::{Bar, Level, MarketView, SecurityView, TradePrint};

/// Completed bars kept in the view per security (the history keeps all of them).
pub const BARS_IN_VIEW: usize = 256;
/// Recent trades kept in the view per security.
pub const TRADES_IN_VIEW: usize = 32;

/// The view builder.
#[derive(Clone, Debug)]
pub struct MarketTracker {
    view: MarketView,
    rules: MarketRules,
    levels: usize,
    /// The bar in progress, parallel to `view.securities`.
    current: Vec<Option<Bar>>,
    history: Vec<Vec<Bar>>,
    dirty: Vec<bool>,
    /// Reference prices announced at the close, applied when the next day starts.
    next_reference: Vec<Option<Price>>,
}

impl MarketTracker {
    /// A tracker for `universe` (ids listed in `securities`; unknown ids are skipped) showing
    /// `levels` price levels per side.
    pub fn new(
        securities: &SecurityTable,
        universe: &[SecurityId],
        rules: MarketRules,
        levels: usize,
        steps_per_day: u32,
    ) -> Self {
        let mut ids: Vec<SecurityId> = universe.to_vec();
        ids.sort();
        ids.dedup();
        let views: Vec<SecurityView> = ids
            .iter()
            .filter_map(|&id| {
                let code = securities.code(id)?;
                let reference = securities.reference(id)?;
                Some(SecurityView {
                    id,
                    code: code.to_string(),
                    reference,
                    band: rules.band(reference),
                    bids: Vec::new(),
                    asks: Vec::new(),
                    last_price: None,
                    trades: VecDeque::new(),
                    bars: VecDeque::new(),
                    day_volume: 0,
                })
            })
            .collect();
        let n = views.len();
        MarketTracker {
            view: MarketView {
                day: 0,
                step: 0,
                steps_per_day,
                time: 0,
                phase: Phase::Continuous,
                securities: views,
            },
            rules,
            levels,
            current: vec![None; n],
            history: vec![Vec::new(); n],
            dirty: vec![true; n],
            next_reference: vec![None; n],
        }
    }

    pub fn view(&self) -> &MarketView {
        &self.view
    }

    /// Levels per side shown in the view.
    pub fn levels(&self) -> usize {
        self.levels
    }

    /// Closes the previous step's bar and opens the bar of `step`. The first step of a day
    /// also applies the reference prices announced at the previous close.
    pub fn begin_step(&mut self, day: u32, step: u32, time: Timestamp, phase: Phase) {
        self.close_bars();
        if step == 0 {
            for (i, s) in self.view.securities.iter_mut().enumerate() {
                if let Some(r) = self.next_reference[i].take() {
                    s.reference = r;
                    s.band = self.rules.band(r);
                }
                s.day_volume = 0;
            }
        }
        self.view.day = day;
        self.view.step = step;
        self.view.time = time;
        self.view.phase = phase;
        for (i, s) in self.view.securities.iter().enumerate() {
            let price = s.last_price.unwrap_or(s.reference);
            self.current[i] = Some(Bar::flat(day, step, time, phase, price));
        }
    }

    /// Closes the day's last bar (after the closing phase change's events).
    pub fn end_day(&mut self) {
        self.close_bars();
        self.view.phase = Phase::Closed;
    }

    fn close_bars(&mut self) {
        for (i, s) in self.view.securities.iter_mut().enumerate() {
            if let Some(mut bar) = self.current[i].take() {
                bar.bid = s.best_bid();
                bar.ask = s.best_ask();
                self.history[i].push(bar);
                if s.bars.len() == BARS_IN_VIEW {
                    s.bars.pop_front();
                }
                s.bars.push_back(bar);
            }
        }
    }

    /// Takes the public part of one engine event at exchange time `time`: trades, and the
    /// reference price announced at the close. Anything else is private or carries no news
    /// for the view (book changes arrive as depth).
    pub fn on_event(&mut self, time: Timestamp, event: &Event) {
        match event {
            Event::Fill(f) => self.on_trade(f.security, time, f.price, f.qty, f.aggressor),
            Event::Reference { security, price } => {
                if let Some(i) = self.index(*security) {
                    self.next_reference[i] = Some(*price);
                }
            }
            Event::Rested { security, .. }
            | Event::Amended { security, .. }
            | Event::Totals { security, .. } => self.mark_dirty(*security),
            _ => {}
        }
    }

    /// One public trade.
    pub fn on_trade(
        &mut self,
        security: SecurityId,
        time: Timestamp,
        price: Price,
        qty: Qty,
        aggressor: matching::Aggressor,
    ) {
        let Some(i) = self.index(security) else {
            return;
        };
        self.dirty[i] = true;
        let s = &mut self.view.securities[i];
        s.last_price = Some(price);
        s.day_volume = s.day_volume.saturating_add(qty);
        if s.trades.len() == TRADES_IN_VIEW {
            s.trades.pop_front();
        }
        s.trades.push_back(TradePrint {
            time,
            price,
            qty,
            aggressor,
        });
        if let Some(bar) = self.current[i].as_mut() {
            bar.add(price, qty);
        }
    }

    /// Marks a security whose book changed, so the next depth refresh includes it.
    pub fn mark_dirty(&mut self, security: SecurityId) {
        if let Some(i) = self.index(security) {
            self.dirty[i] = true;
        }
    }

    /// Securities whose book may have changed since the last [`MarketTracker::set_depth`].
    pub fn dirty(&self) -> Vec<SecurityId> {
        self.view
            .securities
            .iter()
            .zip(&self.dirty)
            .filter(|(_, d)| **d)
            .map(|(s, _)| s.id)
            .collect()
    }

    /// Replaces the shown levels of `security` (best first, at most `levels` kept).
    pub fn set_depth(
        &mut self,
        security: SecurityId,
        bids: &[(Price, Qty)],
        asks: &[(Price, Qty)],
    ) {
        let Some(i) = self.index(security) else {
            return;
        };
        self.dirty[i] = false;
        let levels = self.levels;
        let s = &mut self.view.securities[i];
        let to_levels = |side: &[(Price, Qty)], out: &mut Vec<Level>| {
            out.clear();
            out.extend(
                side.iter()
                    .take(levels)
                    .map(|&(price, qty)| Level { price, qty }),
            );
        };
        to_levels(bids, &mut s.bids);
        to_levels(asks, &mut s.asks);
    }

    /// Every completed bar of `security`, oldest first.
    pub fn history(&self, security: SecurityId) -> &[Bar] {
        self.index(security)
            .map_or(&[][..], |i| self.history[i].as_slice())
    }

    fn index(&self, id: SecurityId) -> Option<usize> {
        self.view
            .securities
            .binary_search_by_key(&id, |s| s.id)
            .ok()
    }

    /// Mutable access for tests that hand-build a view.
    pub fn view_mut(&mut self) -> &mut MarketView {
        &mut self.view
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use matching::{Aggressor, BrokerId, Fill, OrderId};

    fn tracker() -> MarketTracker {
        let t = SecurityTable::synthetic(3).unwrap();
        MarketTracker::new(
            &t,
            &[SecurityId(2), SecurityId(0), SecurityId(0), SecurityId(9)],
            MarketRules::hose(),
            2,
            23,
        )
    }

    fn fill(sec: u32, price: Price, qty: Qty) -> Event {
        Event::Fill(Fill {
            security: SecurityId(sec),
            price,
            qty,
            buy: OrderId(1),
            sell: OrderId(2),
            buy_broker: BrokerId(0),
            sell_broker: BrokerId(1),
            aggressor: Aggressor::Buy,
        })
    }

    #[test]
    fn universe_is_sorted_deduplicated_and_listed_only() {
        let t = tracker();
        let ids: Vec<u32> = t.view().securities.iter().map(|s| s.id.0).collect();
        assert_eq!(ids, [0, 2]);
        assert!(t.view().security(SecurityId(1)).is_none());
        let s = t.view().security(SecurityId(0)).unwrap();
        assert_eq!(s.band, MarketRules::hose().band(s.reference));
    }

    #[test]
    fn trades_fill_bars_and_flat_bars_carry_the_close() {
        let mut t = tracker();
        let r = t.view().security(SecurityId(0)).unwrap().reference;
        t.begin_step(0, 0, 100, Phase::Ato);
        t.begin_step(0, 1, 200, Phase::Continuous);
        t.on_event(250, &fill(0, r + 10, 300));
        t.on_event(260, &fill(0, r - 10, 100));
        t.on_event(260, &fill(7, 1, 100)); // not traded here: ignored
        t.set_depth(
            SecurityId(0),
            &[(r - 10, 100), (r - 20, 5), (r - 30, 1)],
            &[],
        );
        t.begin_step(0, 2, 300, Phase::Continuous);
        let s = t.view().security(SecurityId(0)).unwrap();
        assert_eq!(s.bids.len(), 2, "levels capped");
        let bars: Vec<_> = s.bars.iter().map(|b| (b.open, b.close, b.volume)).collect();
        assert_eq!(bars, [(r, r, 0), (r + 10, r - 10, 400)]);
        assert_eq!(s.bars[1].bid, Some(r - 10));
        assert_eq!(s.bars[1].ask, None);
        assert_eq!(s.last_price, Some(r - 10));
        assert_eq!(s.trades.len(), 2);
        assert_eq!(s.day_volume, 400);
        t.end_day();
        let h = t.history(SecurityId(0));
        assert_eq!(h.len(), 3);
        assert_eq!(h[2].close, r - 10, "flat bar at the last close");
    }

    #[test]
    fn reference_applies_at_the_next_day() {
        let mut t = tracker();
        t.begin_step(0, 0, 0, Phase::Ato);
        t.on_event(
            5,
            &Event::Reference {
                security: SecurityId(2),
                price: 60_000,
            },
        );
        assert_ne!(t.view().security(SecurityId(2)).unwrap().reference, 60_000);
        t.end_day();
        t.begin_step(1, 0, 10, Phase::Ato);
        let s = t.view().security(SecurityId(2)).unwrap();
        assert_eq!(s.reference, 60_000);
        assert_eq!(s.band, Some((55_800, 64_200)));
        assert_eq!(s.day_volume, 0);
    }

    #[test]
    fn view_keeps_bounded_bars_and_trades() {
        let mut t = tracker();
        for step in 0..(BARS_IN_VIEW as u32 + 10) {
            t.begin_step(0, step, i64::from(step), Phase::Continuous);
            for _ in 0..3 {
                t.on_event(0, &fill(0, 5_000, 100));
            }
        }
        t.end_day();
        let s = t.view().security(SecurityId(0)).unwrap();
        assert_eq!(s.bars.len(), BARS_IN_VIEW);
        assert_eq!(s.trades.len(), TRADES_IN_VIEW);
        assert_eq!(t.history(SecurityId(0)).len(), BARS_IN_VIEW + 10);
    }
}
