//! Value trader: holds a private estimate of its security's fundamental and trades toward it.
//!
//! When it wakes it observes the fundamental with noise and updates its estimate with a
//! Kalman filter for the mean-reverting process (prior: the estimate carried forward with the
//! process's own decay and diffusion; posterior: weighted by the observation noise). It then
//! projects the estimate to the close. Above the mid it buys, below it sells: with probability
//! `aggression` at the opposite touch, else passively up to `depth_spread` spreads behind it;
//! never paying more (or selling for less) than its estimate. A resting order on the same side
//! is amended to the new price (an AMEND); one on the other side is cancelled. In the call
//! phases it places one limit order at its estimate, so the auctions find the consensus value.

use matching::{OrderType, Phase, Price, Qty, SecurityId, Side};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::Deserialize;

use crate::agent::{Agent, AgentKind, Ctx};
use crate::kinds::{lot_range, random_qty, share, within, ParamError};

/// Section `[value]` of the population file.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValueConfig {
    pub count: u32,
    /// Order-entry latency in microseconds.
    pub latency_us: u64,
    /// Probability of waking at a step.
    pub activity: f64,
    /// Standard deviation of the observation noise, as a fraction of the fundamental's mean.
    pub obs_noise: f64,
    /// Share of wakes that take the opposite touch.
    pub aggression: f64,
    /// Passive orders land up to this many spreads behind the opposite touch.
    pub depth_spread: f64,
    pub min_lots: u32,
    pub max_lots: u32,
    /// Largest position, long or short, counting open orders (shares).
    pub max_position: u64,
}

impl Default for ValueConfig {
    fn default() -> Self {
        ValueConfig {
            count: 0,
            latency_us: 2_000,
            activity: 0.03,
            obs_noise: 0.002,
            aggression: 0.1,
            depth_spread: 2.0,
            min_lots: 1,
            max_lots: 10,
            max_position: 20_000,
        }
    }
}

impl ValueConfig {
    pub fn check(&self) -> Result<(), ParamError> {
        share("activity", self.activity)?;
        share("aggression", self.aggression)?;
        if !self.obs_noise.is_finite() || !(0.0..=0.5).contains(&self.obs_noise) {
            return Err((
                "obs_noise",
                format!("must be between 0 and 0.5, got {}", self.obs_noise),
            ));
        }
        if !self.depth_spread.is_finite() || !(0.0..=100.0).contains(&self.depth_spread) {
            return Err((
                "depth_spread",
                format!("must be between 0 and 100, got {}", self.depth_spread),
            ));
        }
        within(
            "max_position",
            self.max_position,
            1,
            matching::MAX_ORDER_QTY,
        )?;
        lot_range(self.min_lots, self.max_lots)
    }
}

/// One value trader on one security.
#[derive(Clone, Debug)]
pub struct ValueAgent {
    cfg: ValueConfig,
    security: SecurityId,
    /// Index of the security in the fundamental process.
    fund_index: usize,
    /// Posterior mean and variance of the fundamental now; `None` before the first wake.
    estimate: Option<(f64, f64)>,
    /// Global step (day * steps + step) of the last observation.
    last_seen: u64,
}

impl ValueAgent {
    pub fn new(cfg: ValueConfig, security: SecurityId, fund_index: usize) -> Self {
        ValueAgent {
            cfg,
            security,
            fund_index,
            estimate: None,
            last_seen: 0,
        }
    }

    /// The current estimate of the fundamental (posterior mean), if it has looked.
    pub fn estimate(&self) -> Option<f64> {
        self.estimate.map(|(m, _)| m)
    }

    /// Observes the fundamental and returns the projected value at the close.
    fn observe(&mut self, ctx: &mut Ctx<'_>) -> f64 {
        let f = ctx.signals.fundamental;
        let mean = f.mean(self.fund_index);
        let p = f.params();
        let dt = f.step_minutes();
        let now =
            u64::from(ctx.view.day) * u64::from(ctx.view.steps_per_day) + u64::from(ctx.view.step);
        let obs_sd = self.cfg.obs_noise * mean;
        let z: f64 = StandardNormal.sample(ctx.rng);
        let obs = f.value(self.fund_index) + obs_sd * z;
        let a = (-p.kappa * dt).exp();
        let q = (p.volatility * mean).powi(2) * dt; // diffusion variance per step (small kappa)
        let (prior_m, prior_v) = match self.estimate {
            None => (mean, (p.volatility * mean).powi(2) * 345.0),
            Some((m, v)) => {
                let steps = now.saturating_sub(self.last_seen) as i32;
                let decay = a.powi(steps);
                let var = if a < 1.0 {
                    decay * decay * v + q * (1.0 - decay * decay) / (1.0 - a * a)
                } else {
                    v + q * f64::from(steps)
                };
                (mean + (m - mean) * decay, var)
            }
        };
        let r = obs_sd * obs_sd;
        let gain = if prior_v + r > 0.0 {
            prior_v / (prior_v + r)
        } else {
            1.0
        };
        let post_m = prior_m + gain * (obs - prior_m);
        let post_v = (1.0 - gain) * prior_v;
        self.estimate = Some((post_m, post_v));
        self.last_seen = now;
        mean + (post_m - mean) * a.powi(ctx.view.steps_left() as i32)
    }

    /// Room left on `side` under the position limit, counting open orders.
    fn room(&self, ctx: &Ctx<'_>, side: Side) -> Qty {
        let pos = ctx.account.position(self.security);
        let open = ctx.account.open_qty(self.security, side) as i64;
        let max = self.cfg.max_position as i64;
        let room = match side {
            Side::Buy => max - pos - open,
            Side::Sell => max + pos - open,
        };
        room.max(0) as Qty
    }

    fn continuous(&mut self, ctx: &mut Ctx<'_>, target: f64) {
        let Some(s) = ctx.security(self.security) else {
            return;
        };
        let (side, price) = match (s.best_bid(), s.best_ask()) {
            (Some(bid), Some(ask)) => {
                let mid = (bid + ask) as f64 / 2.0;
                if (target - mid).abs() < 0.5 {
                    return;
                }
                let side = if target > mid { Side::Buy } else { Side::Sell };
                let spread = ask - bid;
                let behind = if ctx.rng.gen_bool(self.cfg.aggression) {
                    0
                } else {
                    let max = (self.cfg.depth_spread * spread as f64) as i64;
                    ctx.rng.gen_range(0..=max.max(0))
                };
                match side {
                    // Never pay above the estimate, never sell below it.
                    Side::Buy => (side, (ask - behind).min(target.floor() as Price)),
                    Side::Sell => (side, (bid + behind).max(target.ceil() as Price)),
                }
            }
            _ => {
                let last = s.last_price.unwrap_or(s.reference) as f64;
                if (target - last).abs() < 0.5 {
                    return;
                }
                let side = if target > last { Side::Buy } else { Side::Sell };
                (side, target.round() as Price)
            }
        };
        let Some(price) = ctx.on_grid(self.security, price, side == Side::Sell) else {
            return;
        };
        // The opposite side's orders contradict the new view: cancel them.
        let opposite: Vec<_> = ctx
            .account
            .live_on(self.security, side.opposite())
            .map(|o| o.id)
            .collect();
        for id in opposite {
            let _ = ctx.cancel(id);
        }
        let qty = random_qty(ctx.rng, self.cfg.min_lots, self.cfg.max_lots, ctx.lot());
        let same: Vec<_> = ctx
            .account
            .live_on(self.security, side)
            .filter(|o| !o.cancel_sent)
            .map(|o| (o.id, o.price, o.open, o.kind))
            .collect();
        match same.split_first() {
            Some((&(id, old_price, open, kind), rest)) => {
                for &(extra, ..) in rest {
                    let _ = ctx.cancel(extra);
                }
                // Room counts the resting order's open quantity already.
                let qty = qty.min(self.room(ctx, side) + open) / ctx.lot() * ctx.lot();
                if kind == OrderType::Limit && old_price != price && qty > 0 {
                    let _ = ctx.amend(id, price, qty);
                }
            }
            None => {
                let qty = qty.min(self.room(ctx, side)) / ctx.lot() * ctx.lot();
                if qty > 0 {
                    let _ = ctx.limit(self.security, side, price, qty);
                }
            }
        }
    }

    fn call(&mut self, ctx: &mut Ctx<'_>, target: f64) {
        let Some(s) = ctx.security(self.security) else {
            return;
        };
        if ctx.account.live_orders().next().is_some() {
            return; // No cancel or amend in a call phase: its order stands.
        }
        let last = s.last_price.unwrap_or(s.reference) as f64;
        if (target - last).abs() < 0.5 {
            return;
        }
        let side = if target > last { Side::Buy } else { Side::Sell };
        let Some(price) = ctx.on_grid(self.security, target.round() as Price, side == Side::Sell)
        else {
            return;
        };
        let qty = random_qty(ctx.rng, self.cfg.min_lots, self.cfg.max_lots, ctx.lot());
        let qty = qty.min(self.room(ctx, side)) / ctx.lot() * ctx.lot();
        if qty > 0 {
            let _ = ctx.limit(self.security, side, price, qty);
        }
    }
}

impl Agent for ValueAgent {
    fn kind(&self) -> AgentKind {
        AgentKind::Value
    }

    fn security(&self) -> Option<SecurityId> {
        Some(self.security)
    }

    fn decide(&mut self, ctx: &mut Ctx<'_>) {
        let phase = ctx.phase();
        if matches!(phase, Phase::Break | Phase::Closed) || !ctx.rng.gen_bool(self.cfg.activity) {
            return;
        }
        let target = self.observe(ctx);
        if phase == Phase::Continuous {
            self.continuous(ctx, target);
        } else {
            self.call(ctx, target);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::Account;
    use crate::kinds::testkit::{decide, flat_fundamental, fundamental, rng, view, SEC};
    use matching::{BrokerId, Command, NewOrder, OrderId};

    fn always() -> ValueConfig {
        ValueConfig {
            activity: 1.0,
            obs_noise: 0.0005,
            ..ValueConfig::default()
        }
    }

    fn news(cmds: &[Command]) -> Vec<NewOrder> {
        cmds.iter()
            .filter_map(|c| match c {
                Command::New(o) => Some(*o),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn buys_below_its_estimate_and_sells_above_never_beyond_it() {
        let v = view(Phase::Continuous, &[(19_950, 500)], &[(20_050, 500)]);
        for (value, want) in [(20_600.0, Side::Buy), (19_400.0, Side::Sell)] {
            let fund = fundamental(20_000.0, value);
            let mut r = rng(4);
            for _ in 0..200 {
                let mut a = ValueAgent::new(always(), SEC, 0);
                let cmds = decide(&mut a, &v, &Account::new(0), &fund, &mut r);
                // The prior (the mean, wide) gives way to the precise observation.
                let est = a.estimate().unwrap();
                assert!((est - value).abs() < 40.0, "{est}");
                let orders = news(&cmds);
                assert_eq!(orders.len(), 1, "{cmds:?}");
                let o = orders[0];
                assert_eq!((o.side, o.kind), (want, OrderType::Limit));
                match want {
                    // Somewhere between two spreads behind the ask and the ask itself.
                    Side::Buy => assert!((19_850..=20_050).contains(&o.price), "{}", o.price),
                    Side::Sell => assert!((19_950..=20_150).contains(&o.price), "{}", o.price),
                }
            }
        }
        // Estimate between the touches, just above the mid: it bids but not above 20,010.
        let fund = flat_fundamental(20_010.0);
        let mut a = ValueAgent::new(
            ValueConfig {
                obs_noise: 0.0,
                aggression: 1.0,
                ..always()
            },
            SEC,
            0,
        );
        let o = news(&decide(&mut a, &v, &Account::new(0), &fund, &mut rng(5)))[0];
        assert_eq!((o.side, o.price), (Side::Buy, 20_000));
    }

    #[test]
    fn amends_its_resting_order_toward_the_estimate_and_cancels_the_other_side() {
        let v = view(Phase::Continuous, &[(19_950, 500)], &[(20_050, 500)]);
        let fund = flat_fundamental(20_600.0);
        let mut acc = Account::new(0);
        for (id, side, price) in [(1, Side::Buy, 19_800), (2, Side::Sell, 20_300)] {
            acc.on_sent(&Command::New(NewOrder {
                id: OrderId(id),
                broker: BrokerId(7),
                security: SEC,
                side,
                kind: OrderType::Limit,
                price,
                qty: 300,
            }));
        }
        let cfg = ValueConfig {
            aggression: 1.0,
            ..always()
        };
        let mut a = ValueAgent::new(cfg, SEC, 0);
        let cmds = decide(&mut a, &v, &acc, &fund, &mut rng(6));
        assert!(
            matches!(cmds[0], Command::Cancel(c) if c.id == OrderId(2)),
            "{cmds:?}"
        );
        assert!(
            matches!(cmds[1], Command::Amend(x) if x.id == OrderId(1) && x.price == 20_050),
            "{cmds:?}"
        );
        assert_eq!(cmds.len(), 2, "no new order while one rests");
    }

    #[test]
    fn respects_its_position_limit() {
        let v = view(Phase::Continuous, &[(19_950, 500)], &[(20_050, 500)]);
        let fund = flat_fundamental(20_600.0);
        let mut acc = Account::new(0);
        // Long 1,000 already with a 1,000 max: no buy.
        acc.on_sent(&Command::New(NewOrder {
            id: OrderId(1),
            broker: BrokerId(7),
            security: SEC,
            side: Side::Buy,
            kind: OrderType::Limit,
            price: 20_000,
            qty: 1_000,
        }));
        acc.on_event(
            &matching::Event::Fill(matching::Fill {
                security: SEC,
                price: 20_000,
                qty: 1_000,
                buy: OrderId(1),
                sell: OrderId(99),
                buy_broker: BrokerId(7),
                sell_broker: BrokerId(8),
                aggressor: matching::Aggressor::Buy,
            }),
            |id| id == OrderId(1),
        );
        let cfg = ValueConfig {
            max_position: 1_000,
            ..always()
        };
        let mut a = ValueAgent::new(cfg, SEC, 0);
        assert!(decide(&mut a, &v, &acc, &fund, &mut rng(7)).is_empty());
    }

    #[test]
    fn call_phase_order_sits_at_the_estimate() {
        let v = view(Phase::Ato, &[], &[]);
        let fund = flat_fundamental(20_600.0);
        let cfg = ValueConfig {
            obs_noise: 0.0,
            ..always()
        };
        let mut a = ValueAgent::new(cfg, SEC, 0);
        let o = news(&decide(&mut a, &v, &Account::new(0), &fund, &mut rng(8)))[0];
        assert_eq!(
            (o.side, o.kind, o.price),
            (Side::Buy, OrderType::Limit, 20_600)
        );
        let v = view(Phase::Break, &[], &[]);
        assert!(decide(&mut a, &v, &Account::new(0), &fund, &mut rng(8)).is_empty());
    }
}
