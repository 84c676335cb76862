//! What an agent may see of the market: a plain struct, so the public feed (L2 levels, trades,
//! phase changes, auction results) maps onto it field by field.
//!
//! [`MarketView`] holds only public data. An agent's own orders, cash and inventory come from
//! its own reports ([`crate::Account`]); private signals (the value agents' fundamental) come
//! through [`crate::Ctx`].

use std::collections::VecDeque;

use matching::{Aggressor, Phase, Price, Qty, SecurityId, Timestamp};

/// One aggregated price level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Level {
    pub price: Price,
    pub qty: Qty,
}

/// One public trade print.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TradePrint {
    pub time: Timestamp,
    pub price: Price,
    pub qty: Qty,
    pub aggressor: Aggressor,
}

/// OHLCV of one step. A step without trades gives a flat bar at the previous close (the
/// reference price before the first trade), so bars are evenly spaced in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bar {
    pub day: u32,
    pub step: u32,
    /// Exchange time at which the step started.
    pub time: Timestamp,
    pub phase: Phase,
    pub open: Price,
    pub high: Price,
    pub low: Price,
    pub close: Price,
    pub volume: Qty,
    pub trades: u32,
    /// Best bid and ask when the step ended.
    pub bid: Option<Price>,
    pub ask: Option<Price>,
}

impl Bar {
    /// A bar with no trade yet, opening at `price`.
    pub fn flat(day: u32, step: u32, time: Timestamp, phase: Phase, price: Price) -> Bar {
        Bar {
            day,
            step,
            time,
            phase,
            open: price,
            high: price,
            low: price,
            close: price,
            volume: 0,
            trades: 0,
            bid: None,
            ask: None,
        }
    }

    /// Adds one trade.
    pub fn add(&mut self, price: Price, qty: Qty) {
        if self.trades == 0 {
            self.open = price;
            self.high = price;
            self.low = price;
        } else {
            self.high = self.high.max(price);
            self.low = self.low.min(price);
        }
        self.close = price;
        self.volume = self.volume.saturating_add(qty);
        self.trades = self.trades.saturating_add(1);
    }

    /// Best ask minus best bid at the end of the step, when both sides were quoted.
    pub fn spread(&self) -> Option<Price> {
        Some(self.ask? - self.bid?)
    }
}

/// The public state of one security.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecurityView {
    pub id: SecurityId,
    pub code: String,
    /// Today's reference price (yesterday's close): the band is computed from it.
    pub reference: Price,
    /// Today's `(floor, ceiling)`, both on the tick; `None` when the rules have no band.
    pub band: Option<(Price, Price)>,
    /// Up to N levels per side, best first.
    pub bids: Vec<Level>,
    pub asks: Vec<Level>,
    /// Price of the last trade (continuous or auction), any day.
    pub last_price: Option<Price>,
    /// Most recent trades, oldest first (bounded).
    pub trades: VecDeque<TradePrint>,
    /// Completed step bars, oldest first (bounded; they run across days).
    pub bars: VecDeque<Bar>,
    /// Shares traded today.
    pub day_volume: Qty,
}

impl SecurityView {
    pub fn best_bid(&self) -> Option<Price> {
        self.bids.first().map(|l| l.price)
    }

    pub fn best_ask(&self) -> Option<Price> {
        self.asks.first().map(|l| l.price)
    }

    /// Midpoint of the touch (rounded down), when both sides are quoted.
    pub fn mid(&self) -> Option<Price> {
        let (b, a) = (self.best_bid()?, self.best_ask()?);
        Some(b + (a - b) / 2)
    }

    pub fn spread(&self) -> Option<Price> {
        Some(self.best_ask()? - self.best_bid()?)
    }

    /// The best guess of "the price" with what is public: the mid, else the last trade, else
    /// the reference price.
    pub fn anchor(&self) -> Price {
        self.mid().or(self.last_price).unwrap_or(self.reference)
    }

    /// Sum of the closes of the last `n` completed bars; `None` with fewer than `n` bars.
    /// Moving averages compare sums (`sum_a * n_b` vs `sum_b * n_a`) so they stay exact.
    pub fn close_sum(&self, n: usize) -> Option<i128> {
        if n == 0 || self.bars.len() < n {
            return None;
        }
        Some(
            self.bars
                .iter()
                .rev()
                .take(n)
                .map(|b| i128::from(b.close))
                .sum(),
        )
    }

    /// Simple moving average of the last `n` closes (for display; decisions use
    /// [`SecurityView::close_sum`]).
    pub fn sma(&self, n: usize) -> Option<f64> {
        Some(self.close_sum(n)? as f64 / n as f64)
    }
}

/// Everything public an agent sees when it decides: the market as of the end of the previous
/// step (plus the effects of the phase change that opened this step), and the clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarketView {
    pub day: u32,
    pub step: u32,
    pub steps_per_day: u32,
    /// Exchange time at which this step starts.
    pub time: Timestamp,
    /// The phase of this step (the schedule is public).
    pub phase: Phase,
    /// The traded securities, sorted by id.
    pub securities: Vec<SecurityView>,
}

impl MarketView {
    /// The view of `id`, if it is traded.
    pub fn security(&self, id: SecurityId) -> Option<&SecurityView> {
        self.securities
            .binary_search_by_key(&id, |s| s.id)
            .ok()
            .map(|i| &self.securities[i])
    }

    /// Steps left in the day after this one.
    pub fn steps_left(&self) -> u32 {
        self.steps_per_day.saturating_sub(self.step + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sec(closes: &[Price]) -> SecurityView {
        SecurityView {
            id: SecurityId(0),
            code: "AAA".into(),
            reference: 10_000,
            band: Some((9_300, 10_700)),
            bids: vec![Level {
                price: 9_990,
                qty: 100,
            }],
            asks: vec![Level {
                price: 10_050,
                qty: 100,
            }],
            last_price: None,
            trades: VecDeque::new(),
            bars: closes
                .iter()
                .enumerate()
                .map(|(i, &c)| Bar::flat(0, i as u32, 0, Phase::Continuous, c))
                .collect(),
            day_volume: 0,
        }
    }

    #[test]
    fn touch_mid_and_moving_sums() {
        let s = sec(&[10, 20, 30, 40]);
        assert_eq!(s.mid(), Some(10_020));
        assert_eq!(s.spread(), Some(60));
        assert_eq!(s.anchor(), 10_020);
        assert_eq!(s.close_sum(2), Some(70));
        assert_eq!(s.close_sum(4), Some(100));
        assert_eq!(s.close_sum(5), None);
        assert_eq!(s.close_sum(0), None);
        assert_eq!(s.sma(2), Some(35.0));
        let mut empty = sec(&[]);
        empty.bids.clear();
        assert_eq!(empty.mid(), None);
        assert_eq!(empty.anchor(), 10_000);
        empty.last_price = Some(10_100);
        assert_eq!(empty.anchor(), 10_100);
    }

    #[test]
    fn bars_take_trades_and_stay_flat_without() {
        let mut b = Bar::flat(0, 3, 0, Phase::Continuous, 100);
        assert_eq!((b.open, b.close, b.volume), (100, 100, 0));
        b.add(110, 200);
        b.add(90, 100);
        b.add(105, 100);
        assert_eq!(
            (b.open, b.high, b.low, b.close, b.volume, b.trades),
            (110, 110, 90, 105, 400, 3)
        );
        assert_eq!(b.spread(), None);
        b.bid = Some(100);
        b.ask = Some(120);
        assert_eq!(b.spread(), Some(20));
    }
}
