//! Market maker: quotes a ladder of `levels` limit orders on each side of the mid, with a half
//! spread that adapts to the observed spread (an exponentially weighted average, never below
//! its minimum), and skews both sides against its inventory: long, it moves its quotes down (it
//! sells more readily, buys less eagerly); short, up. Quotes stay passive (a bid never reaches
//! the ask).
//!
//! Each refresh reconciles the ladder with what rests: unchanged quotes stay (they keep their
//! time priority), moved ones are AMENDed, extra ones cancelled, missing ones added.
//!
//! Inventory limit: every order and amend is sized so that even if every bid it may still have
//! in the book filled (including quotes it is about to amend or cancel, which may trade before
//! the exchange gets the message) its position stays within `max_inventory`; likewise for asks.
//! In the opening call it places one quote on each side around the last price; it does nothing
//! in the other phases (cancels and amends are not allowed in the call phases).

use matching::{OrderId, Phase, Price, Qty, SecurityId, Side};
use serde::Deserialize;

use crate::account::OrderState;
use crate::agent::{Agent, AgentKind, Ctx};
use crate::kinds::{share, sign, within, ParamError};

/// Section `[market_maker]` of the population file.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MarketMakerConfig {
    pub count: u32,
    /// Order-entry latency in microseconds.
    pub latency_us: u64,
    /// Quotes per side.
    pub levels: u32,
    /// Ticks between two quotes of a side.
    pub level_spacing_ticks: u32,
    /// Smallest distance of the first quote from the (skewed) mid, in ticks.
    pub min_half_spread_ticks: u32,
    /// Weight of the latest observed half spread in its moving average, which starts at the
    /// minimum (0: always the minimum; 1: the last observation).
    pub spread_alpha: f64,
    /// Size of each quote in board lots.
    pub quote_lots: u32,
    /// Position limit, long or short, in shares.
    pub max_inventory: u64,
    /// How many ticks the quotes move at a full inventory.
    pub skew_ticks: u32,
    /// Refresh every this many steps.
    pub every: u32,
}

impl Default for MarketMakerConfig {
    fn default() -> Self {
        MarketMakerConfig {
            count: 0,
            latency_us: 200,
            levels: 3,
            level_spacing_ticks: 1,
            min_half_spread_ticks: 1,
            spread_alpha: 0.3,
            quote_lots: 10,
            max_inventory: 20_000,
            skew_ticks: 4,
            every: 1,
        }
    }
}

impl MarketMakerConfig {
    pub fn check(&self) -> Result<(), ParamError> {
        within("levels", u64::from(self.levels), 1, 50)?;
        within(
            "level_spacing_ticks",
            u64::from(self.level_spacing_ticks),
            1,
            100,
        )?;
        within(
            "min_half_spread_ticks",
            u64::from(self.min_half_spread_ticks),
            1,
            100,
        )?;
        share("spread_alpha", self.spread_alpha)?;
        within("quote_lots", u64::from(self.quote_lots), 1, 100_000)?;
        within(
            "max_inventory",
            self.max_inventory,
            1,
            matching::MAX_ORDER_QTY,
        )?;
        within("skew_ticks", u64::from(self.skew_ticks), 0, 100)?;
        within("every", u64::from(self.every), 1, 10_000)
    }
}

/// One market maker on one security.
#[derive(Clone, Debug)]
pub struct MarketMaker {
    cfg: MarketMakerConfig,
    security: SecurityId,
    /// Moving average of the observed half spread, in ticks.
    half_spread: Option<f64>,
    /// Day of the last opening-call quote.
    called: Option<u32>,
}

impl MarketMaker {
    pub fn new(cfg: MarketMakerConfig, security: SecurityId) -> Self {
        MarketMaker {
            cfg,
            security,
            half_spread: None,
            called: None,
        }
    }

    /// Quote prices best first for one side around `center`.
    fn ladder(
        &self,
        ctx: &Ctx<'_>,
        side: Side,
        center: Price,
        half: i64,
        far: Option<Price>,
    ) -> Vec<Price> {
        let mut prices = Vec::new();
        for i in 0..i64::from(self.cfg.levels) {
            let away = half + i * i64::from(self.cfg.level_spacing_ticks);
            let mut p = ctx.ticks_away(center, -sign(side) * away);
            // Stay passive: a bid below the ask, an ask above the bid.
            if let Some(f) = far {
                p = match side {
                    Side::Buy => p.min(ctx.ticks_away(f, -1)),
                    Side::Sell => p.max(ctx.ticks_away(f, 1)),
                };
            }
            let Some(p) = ctx.on_grid(self.security, p, side == Side::Sell) else {
                continue;
            };
            if !prices.contains(&p) {
                prices.push(p);
            }
        }
        prices
    }

    /// Worst-case capacity left on `side`: what could still be bought (sold) without the
    /// position passing the limit if every live order of that side filled.
    fn capacity(&self, ctx: &Ctx<'_>, side: Side) -> Qty {
        let pos = ctx.account.position(self.security);
        let open = ctx.account.open_qty(self.security, side) as i64;
        let max = self.cfg.max_inventory as i64;
        let room = match side {
            Side::Buy => max - pos - open,
            Side::Sell => max + pos - open,
        };
        room.max(0) as Qty
    }

    /// Makes the live orders of `side` match `prices` (best first) within the capacity.
    fn reconcile(&self, ctx: &mut Ctx<'_>, side: Side, prices: &[Price]) {
        let lot = ctx.lot();
        let size = Qty::from(self.cfg.quote_lots) * lot;
        let mut cap = self.capacity(ctx, side);
        let mut live: Vec<(OrderId, Price, Qty, OrderState)> = ctx
            .account
            .live_on(self.security, side)
            .filter(|o| !o.cancel_sent)
            .map(|o| (o.id, o.price, o.open, o.state))
            .collect();
        // Best first: highest bid, lowest ask.
        live.sort_by_key(|&(id, p, ..)| (-sign(side) * p, id));
        // Capacity goes to amends and new quotes only: a quote left as it is adds nothing.
        let take = |cap: &mut Qty| {
            let q = size.min(*cap) / lot * lot;
            *cap -= q;
            q
        };
        let mut extra: Vec<OrderId> = live.iter().skip(prices.len()).map(|l| l.0).collect();
        for (i, &price) in prices.iter().enumerate() {
            match live.get(i) {
                // In flight: leave it alone this step.
                Some(&(_, _, _, OrderState::Sent)) => {}
                Some(&(_, p, open, _)) if p == price && open == size => {}
                Some(&(id, ..)) => match take(&mut cap) {
                    0 => extra.push(id),
                    q => {
                        let _ = ctx.amend(id, price, q);
                    }
                },
                None => {
                    let q = take(&mut cap);
                    if q > 0 {
                        let _ = ctx.limit(self.security, side, price, q);
                    }
                }
            }
        }
        for id in extra {
            let _ = ctx.cancel(id);
        }
    }

    fn continuous(&mut self, ctx: &mut Ctx<'_>) {
        let Some(s) = ctx.security(self.security) else {
            return;
        };
        let anchor = s.anchor();
        let Some(mid) = ctx.on_grid(self.security, anchor, false) else {
            return;
        };
        let tick = ctx.rules.tick(mid).max(1) as f64;
        let min_half = f64::from(self.cfg.min_half_spread_ticks);
        if let Some(spread) = s.spread() {
            let observed = spread as f64 / tick / 2.0;
            let a = self.cfg.spread_alpha;
            let prev = self.half_spread.unwrap_or(min_half);
            self.half_spread = Some(a * observed + (1.0 - a) * prev);
        }
        let half = self.half_spread.unwrap_or(min_half).max(min_half).round() as i64;
        let inv = ctx.account.position(self.security) as f64;
        let frac = (inv / self.cfg.max_inventory as f64).clamp(-1.0, 1.0);
        let skew = (frac * f64::from(self.cfg.skew_ticks)).round() as i64;
        let center = ctx.ticks_away(mid, -skew);
        let bids = self.ladder(ctx, Side::Buy, center, half, s.best_ask());
        let asks = self.ladder(ctx, Side::Sell, center, half, s.best_bid());
        self.reconcile(ctx, Side::Buy, &bids);
        self.reconcile(ctx, Side::Sell, &asks);
    }

    fn opening_call(&mut self, ctx: &mut Ctx<'_>) {
        if self.called == Some(ctx.view.day) {
            return;
        }
        self.called = Some(ctx.view.day);
        let Some(s) = ctx.security(self.security) else {
            return;
        };
        let base = s.last_price.unwrap_or(s.reference);
        let half = i64::from(self.cfg.min_half_spread_ticks);
        let size = Qty::from(self.cfg.quote_lots) * ctx.lot();
        for side in [Side::Buy, Side::Sell] {
            let qty = size.min(self.capacity(ctx, side)) / ctx.lot() * ctx.lot();
            let p = ctx.ticks_away(base, -sign(side) * half);
            if let (Some(p), true) = (ctx.on_grid(self.security, p, side == Side::Sell), qty > 0) {
                let _ = ctx.limit(self.security, side, p, qty);
            }
        }
    }
}

impl Agent for MarketMaker {
    fn kind(&self) -> AgentKind {
        AgentKind::MarketMaker
    }

    fn security(&self) -> Option<SecurityId> {
        Some(self.security)
    }

    fn decide(&mut self, ctx: &mut Ctx<'_>) {
        match ctx.phase() {
            Phase::Continuous if ctx.view.step.is_multiple_of(self.cfg.every) => {
                self.continuous(ctx)
            }
            Phase::Ato => self.opening_call(ctx),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::Account;
    use crate::kinds::testkit::{decide, flat_fundamental, rng, view, SEC};
    use matching::{Aggressor, BrokerId, Command, Event, Fill, NewOrder, OrderType};

    fn cfg() -> MarketMakerConfig {
        MarketMakerConfig {
            levels: 2,
            quote_lots: 5,
            max_inventory: 2_000,
            skew_ticks: 4,
            spread_alpha: 0.0,
            ..MarketMakerConfig::default()
        }
    }

    fn holding(qty: i64) -> Account {
        let mut acc = Account::new(0);
        if qty != 0 {
            let (buy, sell) = if qty > 0 { (1, 2) } else { (2, 1) };
            acc.on_event(
                &Event::Fill(Fill {
                    security: SEC,
                    price: 20_000,
                    qty: qty.unsigned_abs(),
                    buy: OrderId(buy),
                    sell: OrderId(sell),
                    buy_broker: BrokerId(7),
                    sell_broker: BrokerId(8),
                    aggressor: Aggressor::Buy,
                }),
                |id| id == OrderId(1),
            );
        }
        acc
    }

    fn quotes(cmds: &[Command], side: Side) -> Vec<(Price, Qty)> {
        cmds.iter()
            .filter_map(|c| match c {
                Command::New(o) if o.side == side => Some((o.price, o.qty)),
                _ => None,
            })
            .collect()
    }

    fn wide_book() -> crate::view::MarketView {
        view(Phase::Continuous, &[(19_800, 1_000)], &[(20_200, 1_000)])
    }

    #[test]
    fn quotes_both_sides_around_the_mid_when_flat() {
        let mut mm = MarketMaker::new(cfg(), SEC);
        let cmds = decide(
            &mut mm,
            &wide_book(),
            &holding(0),
            &flat_fundamental(1.0),
            &mut rng(1),
        );
        // Mid 20,000, half spread 1 tick (alpha 0: the minimum), spacing 1 tick.
        assert_eq!(quotes(&cmds, Side::Buy), [(19_950, 500), (19_900, 500)]);
        assert_eq!(quotes(&cmds, Side::Sell), [(20_050, 500), (20_100, 500)]);
    }

    #[test]
    fn skews_down_when_long_and_up_when_short() {
        let f = flat_fundamental(1.0);
        let mut mm = MarketMaker::new(cfg(), SEC);
        // Long 1,000 of 2,000: the centre moves 2 ticks down.
        let cmds = decide(&mut mm, &wide_book(), &holding(1_000), &f, &mut rng(1));
        assert_eq!(quotes(&cmds, Side::Buy), [(19_850, 500), (19_800, 500)]);
        assert_eq!(quotes(&cmds, Side::Sell), [(19_950, 500), (20_000, 500)]);
        let mut mm = MarketMaker::new(cfg(), SEC);
        let cmds = decide(&mut mm, &wide_book(), &holding(-1_000), &f, &mut rng(1));
        assert_eq!(quotes(&cmds, Side::Buy), [(20_050, 500), (20_000, 500)]);
        assert_eq!(quotes(&cmds, Side::Sell), [(20_150, 500), (20_200, 500)]);
    }

    #[test]
    fn respects_the_inventory_limit_counting_every_bid_that_could_fill() {
        let f = flat_fundamental(1.0);
        // Long 1,700 of 2,000: 300 shares of room, so one bid of 300 and nothing deeper.
        let mut mm = MarketMaker::new(cfg(), SEC);
        let cmds = decide(&mut mm, &wide_book(), &holding(1_700), &f, &mut rng(1));
        let bids = quotes(&cmds, Side::Buy);
        assert_eq!(bids.iter().map(|b| b.1).sum::<Qty>(), 300, "{bids:?}");
        // At the limit: no bid at all, asks as usual.
        let mut mm = MarketMaker::new(cfg(), SEC);
        let cmds = decide(&mut mm, &wide_book(), &holding(2_000), &f, &mut rng(1));
        assert!(quotes(&cmds, Side::Buy).is_empty());
        assert_eq!(quotes(&cmds, Side::Sell).len(), 2);
        // Short at the limit: no ask.
        let mut mm = MarketMaker::new(cfg(), SEC);
        let cmds = decide(&mut mm, &wide_book(), &holding(-2_000), &f, &mut rng(1));
        assert!(quotes(&cmds, Side::Sell).is_empty());
        // A resting bid of 1,000 counts as if it had filled: long 500 leaves 500 of room, so the
        // old bid (which might fill before the amend lands) plus the new ones stay within 2,000.
        let mut acc = holding(500);
        acc.on_sent(&Command::New(NewOrder {
            id: OrderId(50),
            broker: BrokerId(7),
            security: SEC,
            side: Side::Buy,
            kind: OrderType::Limit,
            price: 19_000,
            qty: 1_000,
        }));
        acc.on_event(
            &Event::Rested {
                id: OrderId(50),
                security: SEC,
                side: Side::Buy,
                price: 19_000,
                qty: 1_000,
            },
            |_| true,
        );
        let mut mm = MarketMaker::new(cfg(), SEC);
        let cmds = decide(&mut mm, &wide_book(), &acc, &f, &mut rng(1));
        let amended: Qty = cmds
            .iter()
            .filter_map(|c| match c {
                Command::Amend(a) if a.id == OrderId(50) => Some(a.qty),
                _ => None,
            })
            .sum();
        let new_bids: Qty = quotes(&cmds, Side::Buy).iter().map(|b| b.1).sum();
        assert_eq!(amended + new_bids, 500, "{cmds:?}");
        assert!(500 + 1_000 + amended + new_bids <= 2_000);
    }

    #[test]
    fn keeps_unchanged_quotes_amends_moved_ones_and_cancels_extras() {
        let f = flat_fundamental(1.0);
        let mut acc = holding(0);
        let rest = |acc: &mut Account, id: u64, side: Side, price: Price, qty: Qty| {
            acc.on_sent(&Command::New(NewOrder {
                id: OrderId(id),
                broker: BrokerId(7),
                security: SEC,
                side,
                kind: OrderType::Limit,
                price,
                qty,
            }));
            acc.on_event(
                &Event::Rested {
                    id: OrderId(id),
                    security: SEC,
                    side,
                    price,
                    qty,
                },
                |_| true,
            );
        };
        rest(&mut acc, 10, Side::Buy, 19_950, 500); // exactly the best bid wanted: kept
        rest(&mut acc, 11, Side::Buy, 19_700, 500); // moved to 19,900
        rest(&mut acc, 12, Side::Buy, 19_600, 500); // one too many: cancelled
        let mut mm = MarketMaker::new(cfg(), SEC);
        let cmds = decide(&mut mm, &wide_book(), &acc, &f, &mut rng(1));
        assert!(quotes(&cmds, Side::Buy).is_empty(), "{cmds:?}");
        assert!(cmds
            .iter()
            .any(|c| matches!(c, Command::Amend(a) if a.id == OrderId(11) && a.price == 19_900)));
        assert!(cmds
            .iter()
            .any(|c| matches!(c, Command::Cancel(x) if x.id == OrderId(12))));
        assert!(!cmds.iter().any(|c| c.order_id() == Some(OrderId(10))));
    }

    #[test]
    fn quotes_once_in_the_opening_call_and_never_in_the_break() {
        let f = flat_fundamental(1.0);
        let mut mm = MarketMaker::new(cfg(), SEC);
        let v = view(Phase::Ato, &[], &[]);
        let cmds = decide(&mut mm, &v, &holding(0), &f, &mut rng(1));
        assert_eq!(quotes(&cmds, Side::Buy), [(19_950, 500)]);
        assert_eq!(quotes(&cmds, Side::Sell), [(20_050, 500)]);
        assert!(decide(&mut mm, &v, &holding(0), &f, &mut rng(1)).is_empty());
        let v = view(Phase::Break, &[(19_800, 1_000)], &[(20_200, 1_000)]);
        assert!(decide(&mut mm, &v, &holding(0), &f, &mut rng(1)).is_empty());
    }
}
