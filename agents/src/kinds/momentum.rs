//! Momentum trader: the moving-average crossover of the seeds' quant tool. On the step bars
//! built from the feed, when the short average (MA5) crosses above the long one (MA20) it buys
//! a fixed position; when it crosses back below it sells out. Long only: it never sells what
//! it does not hold. It trades with IOC orders a few ticks through the touch and keeps trying
//! (one order per step) until its position matches the signal. The averages compare exact
//! integer sums; equal averages keep the previous state.

use std::cmp::Ordering;

use matching::{OrderType, Phase, Qty, SecurityId, Side};
use serde::Deserialize;

use crate::agent::{Agent, AgentKind, Ctx};
use crate::kinds::{within, ParamError};

/// Section `[momentum]` of the population file.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MomentumConfig {
    pub count: u32,
    /// Order-entry latency in microseconds.
    pub latency_us: u64,
    /// Bars in the short moving average.
    pub short: u32,
    /// Bars in the long moving average.
    pub long: u32,
    /// Position taken on a buy signal, in board lots.
    pub lots: u32,
    /// How many ticks through the touch its IOC orders go.
    pub slippage_ticks: u32,
}

impl Default for MomentumConfig {
    fn default() -> Self {
        MomentumConfig {
            count: 0,
            latency_us: 1_000,
            short: 5,
            long: 20,
            lots: 10,
            slippage_ticks: 2,
        }
    }
}

impl MomentumConfig {
    pub fn check(&self) -> Result<(), ParamError> {
        within("short", u64::from(self.short), 1, 200)?;
        within(
            "long",
            u64::from(self.long),
            2,
            crate::tracker::BARS_IN_VIEW as u64,
        )?;
        if self.short >= self.long {
            return Err((
                "short",
                format!("must be below long ({}), got {}", self.long, self.short),
            ));
        }
        within("lots", u64::from(self.lots), 1, 100_000)?;
        within("slippage_ticks", u64::from(self.slippage_ticks), 0, 100)
    }
}

/// One momentum trader on one security.
#[derive(Clone, Debug)]
pub struct MomentumAgent {
    cfg: MomentumConfig,
    security: SecurityId,
    /// Short average versus long at the last strict comparison.
    relation: Option<Ordering>,
    /// Position the signal asks for.
    target: Qty,
}

impl MomentumAgent {
    pub fn new(cfg: MomentumConfig, security: SecurityId) -> Self {
        MomentumAgent {
            cfg,
            security,
            relation: None,
            target: 0,
        }
    }

    /// The position the current signal asks for.
    pub fn target(&self) -> Qty {
        self.target
    }

    /// Updates the signal from the bars; returns the new relation when it crossed.
    fn update_signal(&mut self, ctx: &Ctx<'_>) -> Option<Ordering> {
        let s = ctx.security(self.security)?;
        let (n_short, n_long) = (self.cfg.short as usize, self.cfg.long as usize);
        let short = s.close_sum(n_short)?;
        let long = s.close_sum(n_long)?;
        // MA_short vs MA_long  <=>  short * n_long vs long * n_short.
        let rel = (short * n_long as i128).cmp(&(long * n_short as i128));
        if rel == Ordering::Equal {
            return None;
        }
        let crossed = self.relation.is_some_and(|prev| prev != rel);
        self.relation = Some(rel);
        if crossed {
            self.target = match rel {
                Ordering::Greater => Qty::from(self.cfg.lots) * ctx.lot(),
                _ => 0,
            };
            Some(rel)
        } else {
            None
        }
    }
}

impl Agent for MomentumAgent {
    fn kind(&self) -> AgentKind {
        AgentKind::Momentum
    }

    fn security(&self) -> Option<SecurityId> {
        Some(self.security)
    }

    fn decide(&mut self, ctx: &mut Ctx<'_>) {
        if ctx.phase() != Phase::Continuous {
            return;
        }
        self.update_signal(ctx);
        if ctx.account.live_orders().next().is_some() {
            return; // Its last order is still working.
        }
        let Some(s) = ctx.security(self.security) else {
            return;
        };
        let held = ctx.account.position(self.security).max(0) as Qty;
        let slip = i64::from(self.cfg.slippage_ticks);
        let (side, qty, touch) = match held.cmp(&self.target) {
            Ordering::Less => (Side::Buy, self.target - held, s.best_ask()),
            Ordering::Greater => (Side::Sell, held - self.target, s.best_bid()),
            Ordering::Equal => return,
        };
        let Some(touch) = touch else {
            return;
        };
        let through = match side {
            Side::Buy => ctx.ticks_away(touch, slip),
            Side::Sell => ctx.ticks_away(touch, -slip),
        };
        let Some(price) = ctx.on_grid(self.security, through, side == Side::Buy) else {
            return;
        };
        let qty = qty / ctx.lot() * ctx.lot();
        if qty > 0 {
            let _ = ctx.new_order(self.security, side, OrderType::Ioc, price, qty);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::Account;
    use crate::kinds::testkit::{decide, flat_fundamental, rng, view, with_closes, SEC};
    use matching::{Aggressor, BrokerId, Command, Event, Fill, OrderId};

    fn book() -> crate::view::MarketView {
        view(Phase::Continuous, &[(19_950, 5_000)], &[(20_050, 5_000)])
    }

    fn step(a: &mut MomentumAgent, closes: &[i64], acc: &Account) -> Vec<Command> {
        let v = with_closes(book(), closes);
        decide(a, &v, acc, &flat_fundamental(20_000.0), &mut rng(1))
    }

    fn bought(acc: &mut Account, id: u64, side: Side, qty: Qty) {
        let (buy, sell) = match side {
            Side::Buy => (OrderId(id), OrderId(9_999)),
            Side::Sell => (OrderId(9_999), OrderId(id)),
        };
        acc.on_event(
            &Event::Fill(Fill {
                security: SEC,
                price: 20_000,
                qty,
                buy,
                sell,
                buy_broker: BrokerId(7),
                sell_broker: BrokerId(7),
                aggressor: Aggressor::Buy,
            }),
            |x| x.0 == id,
        );
    }

    #[test]
    fn buys_on_the_cross_up_and_sells_out_on_the_cross_back() {
        let mut a = MomentumAgent::new(MomentumConfig::default(), SEC);
        let mut acc = Account::new(0);
        // 20 falling bars: MA5 below MA20, no cross yet, nothing to do.
        let mut closes: Vec<i64> = (0..20).map(|i| 21_000 - 50 * i).collect();
        assert!(step(&mut a, &closes, &acc).is_empty());
        assert_eq!(a.relation, Some(Ordering::Less));
        // A rally lifts MA5 above MA20: buy 10 lots with an IOC two ticks through the ask.
        closes.extend([20_500, 20_800, 21_000, 21_200, 21_400]);
        let cmds = step(&mut a, &closes, &acc);
        let [Command::New(o)] = cmds[..] else {
            panic!("{cmds:?}")
        };
        assert_eq!(
            (o.side, o.kind, o.price, o.qty),
            (Side::Buy, OrderType::Ioc, 20_150, 1_000)
        );
        // Half filled: next step it buys the rest, without a new cross.
        acc.on_sent(&Command::New(o));
        bought(&mut acc, o.id.0, Side::Buy, 600);
        acc.on_event(
            &Event::Cancelled {
                id: o.id,
                qty: 400,
                reason: matching::CancelReason::Unfilled,
            },
            |_| true,
        );
        closes.push(21_500);
        let cmds = step(&mut a, &closes, &acc);
        assert!(matches!(cmds[..], [Command::New(x)] if x.side == Side::Buy && x.qty == 400));
        let Command::New(o2) = cmds[0] else { panic!() };
        acc.on_sent(&cmds[0]);
        bought(&mut acc, o2.id.0, Side::Buy, 400);
        // Holding 1,000 and still above: nothing.
        closes.push(21_500);
        assert!(step(&mut a, &closes, &acc).is_empty());
        // The fall: MA5 back below MA20, sell everything held, two ticks through the bid.
        closes.extend([19_000, 18_800, 18_700, 18_600, 18_600]);
        let cmds = step(&mut a, &closes, &acc);
        let [Command::New(o)] = cmds[..] else {
            panic!("{cmds:?}")
        };
        assert_eq!(
            (o.side, o.kind, o.price, o.qty),
            (Side::Sell, OrderType::Ioc, 19_850, 1_000)
        );
        acc.on_sent(&cmds[0]);
        bought(&mut acc, o.id.0, Side::Sell, 1_000);
        // Flat and below: no short sale.
        closes.push(18_500);
        assert!(step(&mut a, &closes, &acc).is_empty());
        assert_eq!(acc.position(SEC), 0);
    }

    #[test]
    fn needs_long_bars_and_ignores_ties_and_other_phases() {
        let mut a = MomentumAgent::new(MomentumConfig::default(), SEC);
        let acc = Account::new(0);
        assert!(step(&mut a, &[20_000; 19], &acc).is_empty());
        assert_eq!(a.relation, None, "fewer than 20 bars");
        assert!(step(&mut a, &[20_000; 25], &acc).is_empty());
        assert_eq!(a.relation, None, "equal averages say nothing");
        // In a call phase it does not even look.
        let v = with_closes(view(Phase::Atc, &[], &[]), &[20_000; 25]);
        assert!(decide(&mut a, &v, &acc, &flat_fundamental(1.0), &mut rng(1)).is_empty());
    }

    #[test]
    fn config_checks() {
        let bad = MomentumConfig {
            short: 20,
            long: 20,
            ..MomentumConfig::default()
        };
        assert_eq!(bad.check().unwrap_err().0, "short");
        let bad = MomentumConfig {
            long: 10_000,
            ..MomentumConfig::default()
        };
        assert_eq!(bad.check().unwrap_err().0, "long");
    }
}
