//! The one trait every strategy implements, and the context it decides in.
//!
//! An agent sees the public [`MarketView`], its own [`Account`], private signals through
//! [`Signals`], and its own seeded random generator. It answers with commands (NEW, CANCEL,
//! AMEND) built through [`Ctx`], which allocates order ids, names the agent's broker, and by
//! default refuses what the market rules or the phase would reject, so honest strategies do
//! not pile up rejects.

use matching::{
    AmendOrder, BrokerId, CancelOrder, Command, MarketRules, NewOrder, OrderId, OrderType, Phase,
    Price, Qty, RejectReason, SecurityId, Side,
};
use rand_chacha::ChaCha8Rng;

use crate::account::Account;
use crate::fundamental::Fundamental;
use crate::view::{MarketView, SecurityView};

/// The kinds of agent a population can hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AgentKind {
    Noise,
    Value,
    Momentum,
    MarketMaker,
    Random,
}

impl AgentKind {
    pub const ALL: [AgentKind; 5] = [
        AgentKind::Noise,
        AgentKind::Value,
        AgentKind::Momentum,
        AgentKind::MarketMaker,
        AgentKind::Random,
    ];

    /// The name used in the population file and the reports.
    pub fn name(self) -> &'static str {
        match self {
            AgentKind::Noise => "noise",
            AgentKind::Value => "value",
            AgentKind::Momentum => "momentum",
            AgentKind::MarketMaker => "market_maker",
            AgentKind::Random => "random",
        }
    }
}

/// A trading strategy. `decide` is called once per step, in a fixed agent order.
pub trait Agent: Send {
    fn kind(&self) -> AgentKind;
    /// The security the agent mainly trades (reports group by it); `None` for many.
    fn security(&self) -> Option<SecurityId>;
    /// Decides this step's commands from `ctx` (may send nothing).
    fn decide(&mut self, ctx: &mut Ctx<'_>);
}

/// Private information some agents get (never part of the public view).
#[derive(Clone, Copy, Debug)]
pub struct Signals<'a> {
    /// The fundamental value process the value agents observe with noise.
    pub fundamental: &'a Fundamental,
}

/// What the phase table (DESIGN.md, "The trading day") says about a command: `Ok` or the
/// reject reason the exchange gives.
pub fn phase_allows(phase: Phase, cmd: &Command) -> Result<(), RejectReason> {
    use Phase::*;
    use RejectReason::{MarketClosed, PhaseForbids};
    let ok_or = |allowed: bool, otherwise: RejectReason| {
        if allowed {
            Ok(())
        } else {
            Err(otherwise)
        }
    };
    match cmd {
        Command::Phase(_) => Ok(()),
        _ if phase == Closed => Err(MarketClosed),
        Command::New(o) => match (phase, o.kind) {
            (Break, _) => Err(MarketClosed),
            (_, OrderType::Limit) => Ok(()),
            (Ato, kind) => ok_or(kind == OrderType::Ato, PhaseForbids),
            (Atc, kind) => ok_or(kind == OrderType::Atc, PhaseForbids),
            (Continuous, kind) => ok_or(!kind.is_auction(), PhaseForbids),
            (Closed, _) => Err(MarketClosed),
        },
        Command::Cancel(_) => match phase {
            Continuous | Break => Ok(()),
            _ => Err(PhaseForbids),
        },
        Command::Amend(_) => match phase {
            Continuous => Ok(()),
            Break => Err(MarketClosed),
            _ => Err(PhaseForbids),
        },
    }
}

/// Why [`Ctx`] refused to send a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The exchange would reject it for this reason.
    #[error("the exchange would reject it: {0}")]
    Rule(RejectReason),
    /// The security is not in the view.
    #[error("security not traded in this population")]
    UnknownSecurity,
    /// CANCEL/AMEND of an order the agent does not hold live.
    #[error("not a live order of this agent")]
    NotMine,
    /// The agent reached its per-step command budget.
    #[error("command budget of the step used up")]
    Budget,
}

/// Most commands one agent may send in one step (keeps every queue bounded).
pub const MAX_COMMANDS_PER_STEP: usize = 256;

/// The decision context of one agent at one step.
pub struct Ctx<'a> {
    pub view: &'a MarketView,
    pub account: &'a Account,
    pub rules: &'a MarketRules,
    pub signals: Signals<'a>,
    pub rng: &'a mut ChaCha8Rng,
    broker: BrokerId,
    next_id: &'a mut u64,
    out: &'a mut Vec<Command>,
    replace_amends: bool,
}

impl<'a> Ctx<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        view: &'a MarketView,
        account: &'a Account,
        rules: &'a MarketRules,
        signals: Signals<'a>,
        rng: &'a mut ChaCha8Rng,
        broker: BrokerId,
        next_id: &'a mut u64,
        out: &'a mut Vec<Command>,
    ) -> Self {
        Ctx {
            view,
            account,
            rules,
            signals,
            rng,
            broker,
            next_id,
            out,
            replace_amends: false,
        }
    }

    /// With `true`, [`Ctx::amend`] sends a CANCEL and a new limit order instead of an AMEND
    /// (for venues without amend; a price change loses time priority either way).
    pub fn replace_amends(mut self, yes: bool) -> Self {
        self.replace_amends = yes;
        self
    }

    pub fn phase(&self) -> Phase {
        self.view.phase
    }

    pub fn security(&self, id: SecurityId) -> Option<&'a SecurityView> {
        self.view.security(id)
    }

    /// Commands decided so far this step.
    pub fn commands(&self) -> &[Command] {
        self.out
    }

    /// Board lot of the market.
    pub fn lot(&self) -> Qty {
        self.rules.lot()
    }

    /// Moves `price` onto the tick grid (up or down) and inside today's band of `security`.
    /// `None` if the band is empty or the price cannot be made positive.
    pub fn on_grid(&self, security: SecurityId, price: Price, up: bool) -> Option<Price> {
        let s = self.view.security(security)?;
        let tick0 = self.rules.tick(1);
        let mut p = self.rules.round_to_tick(price.max(tick0), up);
        if let Some((floor, ceiling)) = s.band {
            if floor > ceiling {
                return None;
            }
            p = p.clamp(floor, ceiling);
        }
        (p > 0).then_some(p)
    }

    /// `price` moved by `ticks` ticks (negative: down), tick by tick, so it crosses the tick
    /// table's boundaries correctly.
    pub fn ticks_away(&self, price: Price, ticks: i64) -> Price {
        let mut p = price;
        for _ in 0..ticks.unsigned_abs().min(10_000) {
            if ticks > 0 {
                p = p.saturating_add(self.rules.tick(p));
            } else {
                let down = p - 1;
                p = self.rules.round_to_tick(down, false);
            }
        }
        p
    }

    /// Sends a NEW if the rules and the phase allow it; returns its id.
    pub fn new_order(
        &mut self,
        security: SecurityId,
        side: Side,
        kind: OrderType,
        price: Price,
        qty: Qty,
    ) -> Result<OrderId, Refused> {
        let s = self
            .view
            .security(security)
            .ok_or(Refused::UnknownSecurity)?;
        let order = self.make_order(security, side, kind, price, qty);
        self.rules
            .check(&order, s.reference)
            .map_err(Refused::Rule)?;
        let cmd = Command::New(order);
        phase_allows(self.view.phase, &cmd).map_err(Refused::Rule)?;
        self.push(cmd)?;
        Ok(order.id)
    }

    /// Sends a NEW without any check: for deliberately invalid orders (the random agent).
    pub fn new_order_unchecked(
        &mut self,
        security: SecurityId,
        side: Side,
        kind: OrderType,
        price: Price,
        qty: Qty,
    ) -> Result<OrderId, Refused> {
        let order = self.make_order(security, side, kind, price, qty);
        self.push(Command::New(order))?;
        Ok(order.id)
    }

    /// Limit order helper.
    pub fn limit(
        &mut self,
        security: SecurityId,
        side: Side,
        price: Price,
        qty: Qty,
    ) -> Result<OrderId, Refused> {
        self.new_order(security, side, OrderType::Limit, price, qty)
    }

    /// Cancels one of the agent's live orders (once: a cancel already on its way is not
    /// repeated).
    pub fn cancel(&mut self, id: OrderId) -> Result<(), Refused> {
        let o = self.account.order(id).ok_or(Refused::NotMine)?;
        if o.cancel_sent || self.already_cancelling(id) {
            return Err(Refused::NotMine);
        }
        let cmd = Command::Cancel(CancelOrder {
            id,
            broker: self.broker,
            security: o.security,
        });
        phase_allows(self.view.phase, &cmd).map_err(Refused::Rule)?;
        self.push(cmd)
    }

    /// Amends one of the agent's resting limit orders to `price` with `qty` open (or cancels
    /// and re-enters it, see [`Ctx::replace_amends`]).
    pub fn amend(&mut self, id: OrderId, price: Price, qty: Qty) -> Result<(), Refused> {
        let o = self.account.order(id).ok_or(Refused::NotMine)?;
        if o.cancel_sent || o.kind != OrderType::Limit && o.kind != OrderType::Mtl {
            return Err(Refused::NotMine);
        }
        let s = self
            .view
            .security(o.security)
            .ok_or(Refused::UnknownSecurity)?;
        let probe = self.probe(o.security, o.side, price, qty);
        self.rules
            .check(&probe, s.reference)
            .map_err(Refused::Rule)?;
        let cmd = Command::Amend(AmendOrder {
            id,
            broker: self.broker,
            security: o.security,
            price,
            qty,
        });
        phase_allows(self.view.phase, &cmd).map_err(Refused::Rule)?;
        if self.replace_amends {
            let (security, side) = (o.security, o.side);
            if self.out.len() + 2 > MAX_COMMANDS_PER_STEP {
                return Err(Refused::Budget);
            }
            self.cancel(id)?;
            return self.limit(security, side, price, qty).map(|_| ());
        }
        self.push(cmd)
    }

    fn already_cancelling(&self, id: OrderId) -> bool {
        self.out
            .iter()
            .any(|c| matches!(c, Command::Cancel(x) if x.id == id))
    }

    fn probe(&self, security: SecurityId, side: Side, price: Price, qty: Qty) -> NewOrder {
        NewOrder {
            id: OrderId(0),
            broker: self.broker,
            security,
            side,
            kind: OrderType::Limit,
            price,
            qty,
        }
    }

    fn make_order(
        &mut self,
        security: SecurityId,
        side: Side,
        kind: OrderType,
        price: Price,
        qty: Qty,
    ) -> NewOrder {
        NewOrder {
            id: OrderId(*self.next_id),
            broker: self.broker,
            security,
            side,
            kind,
            price,
            qty,
        }
    }

    fn push(&mut self, cmd: Command) -> Result<(), Refused> {
        if self.out.len() >= MAX_COMMANDS_PER_STEP {
            return Err(Refused::Budget);
        }
        if let Command::New(_) = cmd {
            *self.next_id += 1;
        }
        self.out.push(cmd);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(kind: OrderType) -> Command {
        Command::New(NewOrder {
            id: OrderId(1),
            broker: BrokerId(0),
            security: SecurityId(0),
            side: Side::Buy,
            kind,
            price: 0,
            qty: 100,
        })
    }

    /// The phase table of DESIGN.md, row by row.
    #[test]
    fn phase_table() {
        use Phase::*;
        let cancel = Command::Cancel(CancelOrder {
            id: OrderId(1),
            broker: BrokerId(0),
            security: SecurityId(0),
        });
        let amend = Command::Amend(AmendOrder {
            id: OrderId(1),
            broker: BrokerId(0),
            security: SecurityId(0),
            price: 10,
            qty: 100,
        });
        let f = Err(RejectReason::PhaseForbids);
        let c = Err(RejectReason::MarketClosed);
        let ok = Ok(());
        // Columns: LO, ATO, ATC, MP, MTL, IOC, FOK, CANCEL, AMEND.
        let table = [
            (Ato, [ok, ok, f, f, f, f, f, f, f]),
            (Continuous, [ok, f, f, ok, ok, ok, ok, ok, ok]),
            (Break, [c, c, c, c, c, c, c, ok, c]),
            (Atc, [ok, f, ok, f, f, f, f, f, f]),
            (Closed, [c, c, c, c, c, c, c, c, c]),
        ];
        for (phase, row) in table {
            let cmds = [
                new(OrderType::Limit),
                new(OrderType::Ato),
                new(OrderType::Atc),
                new(OrderType::Market),
                new(OrderType::Mtl),
                new(OrderType::Ioc),
                new(OrderType::Fok),
                cancel,
                amend,
            ];
            for (cmd, want) in cmds.iter().zip(row) {
                assert_eq!(phase_allows(phase, cmd), want, "{phase:?} {cmd:?}");
            }
        }
        assert_eq!(phase_allows(Closed, &Command::Phase(Ato)), Ok(()));
    }

    #[test]
    fn ctx_refuses_what_the_exchange_would_reject_and_can_replace_amends() {
        use crate::kinds::testkit::{flat_fundamental, rng, view, SEC};
        use crate::Account;
        let v = view(Phase::Continuous, &[(19_950, 100)], &[(20_050, 100)]);
        let f = flat_fundamental(1.0);
        let rules = MarketRules::hose();
        let mut acc = Account::new(0);
        acc.on_sent(&Command::New(NewOrder {
            id: OrderId(5),
            broker: BrokerId(7),
            security: SEC,
            side: Side::Buy,
            kind: OrderType::Limit,
            price: 19_900,
            qty: 200,
        }));
        for replace in [false, true] {
            let (mut r, mut next_id, mut out) = (rng(1), 100, Vec::new());
            let mut ctx = Ctx::new(
                &v,
                &acc,
                &rules,
                Signals { fundamental: &f },
                &mut r,
                BrokerId(7),
                &mut next_id,
                &mut out,
            )
            .replace_amends(replace);
            let off_tick = ctx.limit(SEC, Side::Buy, 19_910, 100);
            assert_eq!(off_tick, Err(Refused::Rule(RejectReason::OffTick)));
            let outside = ctx.limit(SEC, Side::Buy, 30_000, 100);
            assert_eq!(outside, Err(Refused::Rule(RejectReason::OutsideBand)));
            let ato = ctx.new_order(SEC, Side::Buy, OrderType::Ato, 0, 100);
            assert_eq!(ato, Err(Refused::Rule(RejectReason::PhaseForbids)));
            assert_eq!(ctx.cancel(OrderId(99)), Err(Refused::NotMine));
            assert_eq!(
                ctx.limit(SecurityId(3), Side::Buy, 100, 100),
                Err(Refused::UnknownSecurity)
            );
            ctx.amend(OrderId(5), 19_950, 300).unwrap();
            assert_eq!(
                ctx.amend(OrderId(5), 19_950, 150),
                Err(Refused::Rule(RejectReason::OddLot))
            );
            if replace {
                assert!(matches!(out[..], [Command::Cancel(c), Command::New(n)]
                    if c.id == OrderId(5) && n.id == OrderId(100) && n.price == 19_950 && n.qty == 300));
                assert_eq!(next_id, 101);
            } else {
                assert!(
                    matches!(out[..], [Command::Amend(a)] if a.id == OrderId(5) && a.qty == 300)
                );
                assert_eq!(next_id, 100, "refused orders burn no id");
            }
        }
    }
}
