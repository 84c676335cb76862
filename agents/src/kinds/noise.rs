//! Noise trader: wakes at random and sends a random order near the touch. In the continuous
//! session: a market-to-limit order, a limit order at the opposite touch (taking it), or a
//! passive limit order a few ticks around its own side's best; sometimes it cancels its oldest
//! order instead. In the call phases: an ATO/ATC order or a limit order around the last price,
//! on either side of it, so the auctions have something to cross. Nothing in the break.

use matching::{OrderType, Phase, Price, SecurityId, Side};
use rand::Rng;
use serde::Deserialize;

use crate::agent::{Agent, AgentKind, Ctx};
use crate::kinds::{
    auction_kind, lot_range, random_qty, random_side, share, sign, within, ParamError,
};

/// Section `[noise]` of the population file.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NoiseConfig {
    /// Number of noise agents.
    pub count: u32,
    /// Order-entry latency in microseconds.
    pub latency_us: u64,
    /// Probability of acting at a step.
    pub activity: f64,
    /// Share of orders that are market orders (MTL in the continuous session, ATO/ATC in the
    /// call phases).
    pub market_share: f64,
    /// Share of limit orders priced at the opposite touch (they take it).
    pub cross_share: f64,
    /// Passive limit orders land within this many ticks of their side's best.
    pub depth_ticks: u32,
    /// When it holds live orders, the share of its actions that cancel the oldest one.
    pub cancel_share: f64,
    pub min_lots: u32,
    pub max_lots: u32,
    /// At most this many live orders: at the limit it cancels before it adds.
    pub max_live: u32,
}

impl Default for NoiseConfig {
    fn default() -> Self {
        NoiseConfig {
            count: 0,
            latency_us: 5_000,
            activity: 0.01,
            market_share: 0.1,
            cross_share: 0.25,
            depth_ticks: 4,
            cancel_share: 0.2,
            min_lots: 1,
            max_lots: 10,
            max_live: 4,
        }
    }
}

impl NoiseConfig {
    pub fn check(&self) -> Result<(), ParamError> {
        share("activity", self.activity)?;
        share("market_share", self.market_share)?;
        share("cross_share", self.cross_share)?;
        share("cancel_share", self.cancel_share)?;
        within("depth_ticks", u64::from(self.depth_ticks), 0, 1_000)?;
        within("max_live", u64::from(self.max_live), 1, 100)?;
        lot_range(self.min_lots, self.max_lots)
    }
}

/// One noise trader on one security.
#[derive(Clone, Debug)]
pub struct NoiseAgent {
    cfg: NoiseConfig,
    security: SecurityId,
}

impl NoiseAgent {
    pub fn new(cfg: NoiseConfig, security: SecurityId) -> Self {
        NoiseAgent { cfg, security }
    }

    fn continuous(&mut self, ctx: &mut Ctx<'_>) {
        let Some(s) = ctx.security(self.security) else {
            return;
        };
        let live: Vec<_> = ctx
            .account
            .live_orders()
            .filter(|o| !o.cancel_sent)
            .map(|o| o.id)
            .collect();
        if let Some(&oldest) = live.first() {
            if live.len() >= self.cfg.max_live as usize || ctx.rng.gen_bool(self.cfg.cancel_share) {
                let _ = ctx.cancel(oldest);
                return;
            }
        }
        let side = random_side(ctx.rng);
        let qty = random_qty(ctx.rng, self.cfg.min_lots, self.cfg.max_lots, ctx.lot());
        let (own, opposite) = match side {
            Side::Buy => (s.best_bid(), s.best_ask()),
            Side::Sell => (s.best_ask(), s.best_bid()),
        };
        if opposite.is_some() && ctx.rng.gen_bool(self.cfg.market_share) {
            let _ = ctx.new_order(self.security, side, OrderType::Mtl, 0, qty);
            return;
        }
        let depth = i64::from(self.cfg.depth_ticks);
        let price = match (own, opposite) {
            (_, Some(far)) if ctx.rng.gen_bool(self.cfg.cross_share) => far,
            (Some(best), far) => {
                // Up to one tick better than the own touch, never crossing the far one.
                let p = {
                    let k = ctx.rng.gen_range(-depth..=1);
                    ctx.ticks_away(best, sign(side) * k)
                };
                match far {
                    Some(f) if side == Side::Buy && p >= f => ctx.ticks_away(f, -1),
                    Some(f) if side == Side::Sell && p <= f => ctx.ticks_away(f, 1),
                    _ => p,
                }
            }
            (None, Some(far)) => {
                let k = ctx.rng.gen_range(1..=depth + 1);
                ctx.ticks_away(far, -sign(side) * k)
            }
            (None, None) => {
                let k = ctx.rng.gen_range(0..=depth);
                ctx.ticks_away(s.anchor(), -sign(side) * k)
            }
        };
        self.limit(ctx, side, price, qty);
    }

    fn call(&mut self, ctx: &mut Ctx<'_>) {
        let Some(s) = ctx.security(self.security) else {
            return;
        };
        let side = random_side(ctx.rng);
        let qty = random_qty(ctx.rng, self.cfg.min_lots, self.cfg.max_lots, ctx.lot());
        if ctx.rng.gen_bool(self.cfg.market_share) {
            if let Some(kind) = auction_kind(ctx.phase()) {
                let _ = ctx.new_order(self.security, side, kind, 0, qty);
            }
            return;
        }
        // The book is not a guide in a call phase (it may be crossed): quote around the last
        // price, willing to pay up to `depth` ticks through it.
        let depth = i64::from(self.cfg.depth_ticks);
        let base = s.last_price.unwrap_or(s.reference);
        let price = {
            let k = ctx.rng.gen_range(-depth..=depth);
            ctx.ticks_away(base, sign(side) * k)
        };
        self.limit(ctx, side, price, qty);
    }

    fn limit(&self, ctx: &mut Ctx<'_>, side: Side, price: Price, qty: matching::Qty) {
        if let Some(p) = ctx.on_grid(self.security, price, side == Side::Sell) {
            let _ = ctx.limit(self.security, side, p, qty);
        }
    }
}

impl Agent for NoiseAgent {
    fn kind(&self) -> AgentKind {
        AgentKind::Noise
    }

    fn security(&self) -> Option<SecurityId> {
        Some(self.security)
    }

    fn decide(&mut self, ctx: &mut Ctx<'_>) {
        let phase = ctx.phase();
        if matches!(phase, Phase::Break | Phase::Closed) || !ctx.rng.gen_bool(self.cfg.activity) {
            return;
        }
        if phase == Phase::Continuous {
            self.continuous(ctx);
        } else {
            self.call(ctx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::Account;
    use crate::kinds::testkit::{decide, flat_fundamental, rng, view, SEC};
    use matching::Command;

    fn always() -> NoiseConfig {
        NoiseConfig {
            activity: 1.0,
            ..NoiseConfig::default()
        }
    }

    #[test]
    fn continuous_orders_stay_near_the_touch_on_grid_inside_the_band() {
        let v = view(Phase::Continuous, &[(19_950, 500)], &[(20_050, 500)]);
        let fund = flat_fundamental(20_000.0);
        let mut r = rng(1);
        let (mut mtl, mut takes, mut passive) = (0, 0, 0);
        for _ in 0..2_000 {
            let mut a = NoiseAgent::new(always(), SEC);
            let cmds = decide(&mut a, &v, &Account::new(0), &fund, &mut r);
            assert_eq!(cmds.len(), 1);
            let Command::New(o) = cmds[0] else {
                panic!("{cmds:?}")
            };
            assert!(o.qty >= 100 && o.qty <= 1_000 && o.qty % 100 == 0);
            match o.kind {
                OrderType::Mtl => mtl += 1,
                OrderType::Limit => {
                    assert_eq!(o.price % 50, 0, "on the 50 tick");
                    let takes_it = match o.side {
                        Side::Buy => o.price >= 20_050,
                        Side::Sell => o.price <= 19_950,
                    };
                    if takes_it {
                        assert!(o.price == 20_050 || o.price == 19_950, "only at the touch");
                        takes += 1;
                    } else {
                        // Within depth_ticks (4) of its own best, or one tick better.
                        assert!((19_750..=20_250).contains(&o.price), "{}", o.price);
                        passive += 1;
                    }
                }
                k => panic!("unexpected {k:?}"),
            }
        }
        assert!((120..300).contains(&mtl), "{mtl}");
        assert!(takes > 300 && passive > 1_000, "{takes} {passive}");
    }

    #[test]
    fn call_phases_send_auction_orders_or_limits_and_the_break_nothing() {
        let fund = flat_fundamental(20_000.0);
        let mut r = rng(2);
        for (phase, auction) in [(Phase::Ato, OrderType::Ato), (Phase::Atc, OrderType::Atc)] {
            let v = view(phase, &[], &[]);
            let mut kinds = std::collections::HashSet::new();
            for _ in 0..300 {
                let mut a = NoiseAgent::new(always(), SEC);
                for c in decide(&mut a, &v, &Account::new(0), &fund, &mut r) {
                    let Command::New(o) = c else { panic!() };
                    assert!(o.kind == OrderType::Limit || o.kind == auction, "{o:?}");
                    kinds.insert(o.kind);
                }
            }
            assert_eq!(kinds.len(), 2);
        }
        for phase in [Phase::Break, Phase::Closed] {
            let v = view(phase, &[(19_950, 500)], &[(20_050, 500)]);
            let mut a = NoiseAgent::new(always(), SEC);
            assert!(decide(&mut a, &v, &Account::new(0), &fund, &mut r).is_empty());
        }
    }

    #[test]
    fn at_its_live_limit_it_cancels_the_oldest_first() {
        let v = view(Phase::Continuous, &[(19_950, 500)], &[(20_050, 500)]);
        let fund = flat_fundamental(20_000.0);
        let mut acc = Account::new(0);
        let cfg = NoiseConfig {
            max_live: 2,
            cancel_share: 0.0,
            ..always()
        };
        for id in [5, 3] {
            acc.on_sent(&Command::New(matching::NewOrder {
                id: matching::OrderId(id),
                broker: matching::BrokerId(7),
                security: SEC,
                side: Side::Buy,
                kind: OrderType::Limit,
                price: 19_900,
                qty: 100,
            }));
        }
        let mut a = NoiseAgent::new(cfg, SEC);
        let cmds = decide(&mut a, &v, &acc, &fund, &mut rng(3));
        assert!(
            matches!(&cmds[..], [Command::Cancel(c)] if c.id.0 == 3),
            "{cmds:?}"
        );
    }
}
