//! Random trader: today's `user-sim` order generator as one more kind of agent. It trades
//! every security of the population, the busy ones much more (popularity ~ 1/rank, shuffled),
//! with every order type: limit orders near the touch, takers (MP, MTL, IOC, FOK in the
//! continuous session; ATO/ATC in the call phases), cancels of its own resting orders, and a
//! small share of deliberately invalid orders (off tick, outside the band, odd lot, zero
//! quantity) that the exchange must reject without effect.

use matching::{OrderType, Phase, Price, Qty, SecurityId, Side};
use rand::seq::SliceRandom;
use rand::Rng;
use serde::Deserialize;

use crate::agent::{Agent, AgentKind, Ctx};
use crate::kinds::{
    auction_kind, lot_range, random_qty, random_side, share, sign, within, ParamError,
};

/// Section `[random]` of the population file.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RandomConfig {
    pub count: u32,
    /// Order-entry latency in microseconds.
    pub latency_us: u64,
    /// Probability of acting at a step.
    pub activity: f64,
    /// Share of actions that are takers (MP, MTL, IOC, FOK; ATO/ATC in a call phase).
    pub taker_share: f64,
    /// Share of actions that cancel one of its resting orders.
    pub cancel_share: f64,
    /// Share of actions that send a deliberately invalid order.
    pub invalid_share: f64,
    pub min_lots: u32,
    pub max_lots: u32,
    /// Limit orders land within this many ticks of their side's best.
    pub depth_ticks: u32,
}

impl Default for RandomConfig {
    fn default() -> Self {
        RandomConfig {
            count: 0,
            latency_us: 5_000,
            activity: 0.05,
            taker_share: 0.1,
            cancel_share: 0.2,
            invalid_share: 0.005,
            min_lots: 1,
            max_lots: 10,
            depth_ticks: 5,
        }
    }
}

impl RandomConfig {
    pub fn check(&self) -> Result<(), ParamError> {
        share("activity", self.activity)?;
        share("taker_share", self.taker_share)?;
        share("cancel_share", self.cancel_share)?;
        share("invalid_share", self.invalid_share)?;
        let sum = self.taker_share + self.cancel_share + self.invalid_share;
        if sum > 1.0 {
            return Err((
                "taker_share",
                format!("taker_share + cancel_share + invalid_share must not exceed 1, got {sum}"),
            ));
        }
        within("depth_ticks", u64::from(self.depth_ticks), 0, 1_000)?;
        lot_range(self.min_lots, self.max_lots)
    }
}

/// One random trader over many securities.
#[derive(Clone, Debug)]
pub struct RandomAgent {
    cfg: RandomConfig,
    securities: Vec<SecurityId>,
    /// Cumulative popularity weights, parallel to `securities`.
    cumulative: Vec<u64>,
}

impl RandomAgent {
    /// A random trader over `securities`; `rng` shuffles which ones are popular.
    pub fn new(cfg: RandomConfig, securities: Vec<SecurityId>, rng: &mut impl Rng) -> Self {
        let mut weights: Vec<u64> = (0..securities.len())
            .map(|rank| (1_000_000 / (rank as u64 + 1)).max(1))
            .collect();
        weights.shuffle(rng);
        let mut acc = 0;
        let cumulative = weights
            .iter()
            .map(|w| {
                acc += w;
                acc
            })
            .collect();
        RandomAgent {
            cfg,
            securities,
            cumulative,
        }
    }

    fn pick(&self, ctx: &mut Ctx<'_>) -> Option<SecurityId> {
        let total = *self.cumulative.last()?;
        let x = ctx.rng.gen_range(0..total);
        let i = self.cumulative.partition_point(|&c| c <= x);
        self.securities.get(i).copied()
    }

    fn invalid(&self, ctx: &mut Ctx<'_>, sec: SecurityId) {
        let Some(s) = ctx.security(sec) else {
            return;
        };
        let side = random_side(ctx.rng);
        let lot = ctx.lot();
        let anchor = s.anchor();
        let (price, qty): (Price, Qty) = match ctx.rng.gen_range(0..4) {
            // One unit off the grid (every tick is at least 10 on HOSE).
            0 => (anchor + 1, lot),
            1 => match s.band {
                Some((_, ceiling)) => (ctx.ticks_away(ceiling, 1), lot),
                None => (-anchor, lot),
            },
            2 => (anchor, lot + lot / 2),
            _ => (anchor, 0),
        };
        let _ = ctx.new_order_unchecked(sec, side, OrderType::Limit, price, qty);
    }

    fn cancel_one(&self, ctx: &mut Ctx<'_>) -> bool {
        let ids: Vec<_> = ctx
            .account
            .live_orders()
            .filter(|o| !o.cancel_sent)
            .map(|o| o.id)
            .collect();
        match ids.choose(ctx.rng) {
            Some(&id) => ctx.cancel(id).is_ok(),
            None => false,
        }
    }

    fn taker(&self, ctx: &mut Ctx<'_>, sec: SecurityId) {
        let Some(s) = ctx.security(sec) else {
            return;
        };
        let side = random_side(ctx.rng);
        let qty = random_qty(ctx.rng, self.cfg.min_lots, self.cfg.max_lots, ctx.lot());
        if let Some(kind) = auction_kind(ctx.phase()) {
            let _ = ctx.new_order(sec, side, kind, 0, qty);
            return;
        }
        let kind = *[
            OrderType::Market,
            OrderType::Mtl,
            OrderType::Ioc,
            OrderType::Fok,
        ]
        .choose(ctx.rng)
        .unwrap_or(&OrderType::Ioc);
        let price = if kind.is_priceless() {
            0
        } else {
            let far = match side {
                Side::Buy => s.best_ask(),
                Side::Sell => s.best_bid(),
            }
            .unwrap_or_else(|| s.anchor());
            let p = {
                let k = ctx.rng.gen_range(0..=2);
                ctx.ticks_away(far, sign(side) * k)
            };
            match ctx.on_grid(sec, p, side == Side::Buy) {
                Some(p) => p,
                None => return,
            }
        };
        let _ = ctx.new_order(sec, side, kind, price, qty);
    }

    fn passive(&self, ctx: &mut Ctx<'_>, sec: SecurityId) {
        let Some(s) = ctx.security(sec) else {
            return;
        };
        let side = random_side(ctx.rng);
        let qty = random_qty(ctx.rng, self.cfg.min_lots, self.cfg.max_lots, ctx.lot());
        let depth = i64::from(self.cfg.depth_ticks);
        let own = match side {
            Side::Buy => s.best_bid(),
            Side::Sell => s.best_ask(),
        };
        // In a call phase (or an empty side) anchor on the last price and allow crossing, so
        // the auctions trade; otherwise a few ticks around the own touch.
        let (base, lo) = match own {
            Some(best) if ctx.phase() == Phase::Continuous => (best, -depth),
            _ => (s.last_price.unwrap_or(s.reference), -depth),
        };
        let p = {
            let k = ctx.rng.gen_range(lo..=1);
            ctx.ticks_away(base, sign(side) * k)
        };
        if let Some(p) = ctx.on_grid(sec, p, side == Side::Sell) {
            let _ = ctx.limit(sec, side, p, qty);
        }
    }
}

impl Agent for RandomAgent {
    fn kind(&self) -> AgentKind {
        AgentKind::Random
    }

    fn security(&self) -> Option<SecurityId> {
        match self.securities[..] {
            [one] => Some(one),
            _ => None,
        }
    }

    fn decide(&mut self, ctx: &mut Ctx<'_>) {
        let phase = ctx.phase();
        if phase == Phase::Closed || !ctx.rng.gen_bool(self.cfg.activity) {
            return;
        }
        let x: f64 = ctx.rng.gen();
        let c = &self.cfg;
        if phase == Phase::Break {
            // Only cancels are accepted in the break.
            if x < c.cancel_share {
                self.cancel_one(ctx);
            }
            return;
        }
        let Some(sec) = self.pick(ctx) else {
            return;
        };
        if x < c.invalid_share {
            self.invalid(ctx, sec);
        } else if x < c.invalid_share + c.cancel_share {
            if phase != Phase::Continuous || !self.cancel_one(ctx) {
                self.passive(ctx, sec);
            }
        } else if x < c.invalid_share + c.cancel_share + c.taker_share {
            self.taker(ctx, sec);
        } else {
            self.passive(ctx, sec);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::Account;
    use crate::kinds::testkit::{decide, flat_fundamental, rng, view, SEC};
    use matching::{Command, MarketRules};

    #[test]
    fn mixes_every_order_type_and_some_invalid_orders() {
        let cfg = RandomConfig {
            activity: 1.0,
            invalid_share: 0.05,
            ..RandomConfig::default()
        };
        let v = view(Phase::Continuous, &[(19_950, 500)], &[(20_050, 500)]);
        let f = flat_fundamental(1.0);
        let mut r = rng(9);
        let mut a = RandomAgent::new(cfg, vec![SEC], &mut r);
        let rules = MarketRules::hose();
        let mut kinds = std::collections::HashSet::new();
        let mut invalid = 0;
        for _ in 0..2_000 {
            for c in decide(&mut a, &v, &Account::new(0), &f, &mut r) {
                let Command::New(o) = c else { continue };
                kinds.insert(o.kind);
                if rules.check(&o, 20_000).is_err() {
                    invalid += 1;
                }
            }
        }
        assert_eq!(kinds.len(), 5, "{kinds:?}");
        assert!((50..150).contains(&invalid), "{invalid}");
    }

    #[test]
    fn popular_securities_trade_more() {
        let mut r = rng(3);
        let secs: Vec<SecurityId> = (0..10).map(SecurityId).collect();
        let a = RandomAgent::new(RandomConfig::default(), secs, &mut r);
        let busiest = a
            .cumulative
            .iter()
            .scan(0, |prev, &c| {
                let w = c - *prev;
                *prev = c;
                Some(w)
            })
            .max()
            .unwrap();
        assert_eq!(busiest, 1_000_000);
        assert_eq!(
            *a.cumulative.last().unwrap(),
            (1..=10).map(|k| 1_000_000 / k).sum()
        );
    }

    #[test]
    fn shares_over_one_are_refused() {
        let bad = RandomConfig {
            taker_share: 0.6,
            cancel_share: 0.5,
            ..RandomConfig::default()
        };
        assert_eq!(bad.check().unwrap_err().0, "taker_share");
    }
}
