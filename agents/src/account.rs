//! One agent's private book-keeping, built only from its own commands and its own reports:
//! its live orders and their states, cash, inventory per security, and order counts.
//!
//! Cash and positions are signed: the simulated exchange does not check holdings, so an agent
//! may sell short (ABIDES' agents do too); the market maker limits itself.

use std::collections::BTreeMap;

use matching::{
    CancelReason, Command, Event, OrderId, OrderType, Price, Qty, RejectReason, SecurityId, Side,
};

/// Where one of the agent's orders stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderState {
    /// Decided or submitted; no final word yet.
    Sent,
    /// Resting in the book with `open` shares.
    Resting,
}

/// A live order of the agent (finished orders leave the account; their counts stay).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnOrder {
    pub id: OrderId,
    pub security: SecurityId,
    pub side: Side,
    pub kind: OrderType,
    /// Limit price (an MTL remainder rests at its last fill price; ATO/ATC orders: 0).
    pub price: Price,
    /// Shares still open.
    pub open: Qty,
    pub filled: Qty,
    pub state: OrderState,
    /// A CANCEL for it is on its way (no second one is needed).
    pub cancel_sent: bool,
}

/// Order counts of one agent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// NEW orders sent.
    pub sent: u64,
    pub cancels_sent: u64,
    pub amends_sent: u64,
    /// Commands (NEW, CANCEL or AMEND) the exchange rejected.
    pub rejected: u64,
    /// Orders that filled completely.
    pub filled: u64,
    /// Orders that traded at least once.
    pub traded: u64,
    /// Trades the agent took part in (a self-trade counts twice).
    pub fills: u64,
    /// Quantity removed without trading (cancels, unfilled market orders, expiry).
    pub cancelled_qty: Qty,
    pub bought: Qty,
    pub sold: Qty,
}

/// The agent's account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub starting_cash: i128,
    /// Cash now: starting cash minus purchases plus sales.
    pub cash: i128,
    positions: BTreeMap<SecurityId, i64>,
    orders: BTreeMap<OrderId, OwnOrder>,
    pub counts: Counts,
    /// Rejects by reason, for the run report.
    rejects: BTreeMap<&'static str, u64>,
}

impl Account {
    pub fn new(starting_cash: i128) -> Self {
        Account {
            starting_cash,
            cash: starting_cash,
            positions: BTreeMap::new(),
            orders: BTreeMap::new(),
            counts: Counts::default(),
            rejects: BTreeMap::new(),
        }
    }

    /// Signed shares held in `security`.
    pub fn position(&self, security: SecurityId) -> i64 {
        self.positions.get(&security).copied().unwrap_or(0)
    }

    /// Every non-zero position, by security id.
    pub fn positions(&self) -> impl Iterator<Item = (SecurityId, i64)> + '_ {
        self.positions
            .iter()
            .filter(|(_, q)| **q != 0)
            .map(|(s, q)| (*s, *q))
    }

    /// Live orders (sent or resting), by order id.
    pub fn live_orders(&self) -> impl Iterator<Item = &OwnOrder> {
        self.orders.values()
    }

    /// Live orders on one security and side, by order id (oldest first).
    pub fn live_on(&self, security: SecurityId, side: Side) -> impl Iterator<Item = &OwnOrder> {
        self.orders
            .values()
            .filter(move |o| o.security == security && o.side == side)
    }

    pub fn order(&self, id: OrderId) -> Option<&OwnOrder> {
        self.orders.get(&id)
    }

    /// Open shares of live orders on one side of `security`.
    pub fn open_qty(&self, security: SecurityId, side: Side) -> Qty {
        self.live_on(security, side).map(|o| o.open).sum()
    }

    /// Rejects by reason code, sorted by code.
    pub fn rejects(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.rejects.iter().map(|(k, v)| (*k, *v))
    }

    /// Cash plus every position marked at `mark(security)`, minus the starting cash.
    pub fn pnl(&self, mark: impl Fn(SecurityId) -> Price) -> i128 {
        let held: i128 = self
            .positions
            .iter()
            .map(|(s, q)| i128::from(*q) * i128::from(mark(*s)))
            .sum();
        self.cash + held - self.starting_cash
    }

    /// Records a command the agent sends.
    pub fn on_sent(&mut self, cmd: &Command) {
        match cmd {
            Command::New(o) => {
                self.counts.sent += 1;
                self.orders.insert(
                    o.id,
                    OwnOrder {
                        id: o.id,
                        security: o.security,
                        side: o.side,
                        kind: o.kind,
                        price: o.price,
                        open: o.qty,
                        filled: 0,
                        state: OrderState::Sent,
                        cancel_sent: false,
                    },
                );
            }
            Command::Cancel(c) => {
                self.counts.cancels_sent += 1;
                if let Some(o) = self.orders.get_mut(&c.id) {
                    o.cancel_sent = true;
                }
            }
            Command::Amend(_) => self.counts.amends_sent += 1,
            Command::Phase(_) => {}
        }
    }

    /// A reject of the agent's command `cmd`.
    pub fn on_rejected(&mut self, cmd: &Command, reason: RejectReason) {
        self.counts.rejected += 1;
        *self.rejects.entry(reason.code()).or_default() += 1;
        match cmd {
            Command::New(o) => {
                self.orders.remove(&o.id);
            }
            Command::Cancel(c) => {
                if let Some(o) = self.orders.get_mut(&c.id) {
                    o.cancel_sent = false;
                }
            }
            Command::Amend(_) | Command::Phase(_) => {}
        }
    }

    /// One event about the agent's own order(s). `Rejected` is handled by
    /// [`Account::on_rejected`], which needs the command; market-wide events are ignored.
    pub fn on_event(&mut self, event: &Event, owns: impl Fn(OrderId) -> bool) {
        match *event {
            Event::Fill(f) => {
                let value = i128::from(f.price) * i128::from(f.qty);
                if owns(f.buy) {
                    self.counts.fills += 1;
                    self.counts.bought += f.qty;
                    self.cash -= value;
                    *self.positions.entry(f.security).or_default() += f.qty as i64;
                    self.fill_order(f.buy, f.qty, f.price);
                }
                if owns(f.sell) {
                    self.counts.fills += 1;
                    self.counts.sold += f.qty;
                    self.cash += value;
                    *self.positions.entry(f.security).or_default() -= f.qty as i64;
                    self.fill_order(f.sell, f.qty, f.price);
                }
            }
            Event::Rested { id, price, qty, .. } => {
                if let Some(o) = self.orders.get_mut(&id) {
                    o.state = OrderState::Resting;
                    o.price = price;
                    o.open = qty;
                }
            }
            Event::Amended { id, price, qty, .. } => {
                if let Some(o) = self.orders.get_mut(&id) {
                    o.price = price;
                    o.open = qty;
                }
            }
            Event::Cancelled { id, qty, reason } => {
                if let Some(o) = self.orders.get_mut(&id) {
                    self.counts.cancelled_qty += qty;
                    o.open = o.open.saturating_sub(qty);
                    if o.open == 0 || reason == CancelReason::Expired {
                        self.orders.remove(&id);
                    }
                }
            }
            _ => {}
        }
    }

    fn fill_order(&mut self, id: OrderId, qty: Qty, price: Price) {
        if let Some(o) = self.orders.get_mut(&id) {
            if o.filled == 0 {
                self.counts.traded += 1;
            }
            o.filled += qty;
            o.open = o.open.saturating_sub(qty);
            if o.kind == OrderType::Mtl {
                // A remainder would rest at the price of its last fill.
                o.price = price;
            }
            if o.open == 0 {
                self.counts.filled += 1;
                self.orders.remove(&id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use matching::{Aggressor, BrokerId, CancelOrder, Fill, NewOrder};

    const S: SecurityId = SecurityId(0);

    fn new(id: u64, side: Side, price: Price, qty: Qty) -> Command {
        Command::New(NewOrder {
            id: OrderId(id),
            broker: BrokerId(0),
            security: S,
            side,
            kind: OrderType::Limit,
            price,
            qty,
        })
    }

    fn fill(buy: u64, sell: u64, price: Price, qty: Qty) -> Event {
        Event::Fill(Fill {
            security: S,
            price,
            qty,
            buy: OrderId(buy),
            sell: OrderId(sell),
            buy_broker: BrokerId(0),
            sell_broker: BrokerId(1),
            aggressor: Aggressor::Buy,
        })
    }

    #[test]
    fn fills_move_cash_and_inventory_and_finish_orders() {
        let mut a = Account::new(1_000_000);
        let mine = |id: OrderId| id.0 < 100;
        a.on_sent(&new(1, Side::Buy, 100, 300));
        a.on_event(&fill(1, 500, 100, 100), mine);
        a.on_event(
            &Event::Rested {
                id: OrderId(1),
                security: S,
                side: Side::Buy,
                price: 100,
                qty: 200,
            },
            mine,
        );
        assert_eq!(a.position(S), 100);
        assert_eq!(a.cash, 1_000_000 - 10_000);
        let o = a.order(OrderId(1)).unwrap();
        assert_eq!((o.state, o.open, o.filled), (OrderState::Resting, 200, 100));
        a.on_event(&fill(1, 501, 100, 200), mine);
        assert!(a.order(OrderId(1)).is_none(), "filled orders leave");
        assert_eq!(a.counts.filled, 1);
        assert_eq!(a.counts.traded, 1);
        assert_eq!(a.counts.fills, 2);
        // Sell 100 at 120: P&L marked at 110 = cash - start + 200 * 110.
        a.on_sent(&new(2, Side::Sell, 120, 100));
        a.on_event(&fill(502, 2, 120, 100), mine);
        assert_eq!(a.position(S), 200);
        assert_eq!(a.pnl(|_| 110), -30_000 + 12_000 + 200 * 110);
    }

    #[test]
    fn a_self_trade_moves_nothing_but_counts_twice() {
        let mut a = Account::new(0);
        a.on_sent(&new(1, Side::Buy, 100, 100));
        a.on_sent(&new(2, Side::Sell, 100, 100));
        a.on_event(&fill(1, 2, 100, 100), |_| true);
        assert_eq!((a.position(S), a.cash, a.counts.fills), (0, 0, 2));
        assert_eq!(a.live_orders().count(), 0);
    }

    #[test]
    fn rejects_cancels_and_expiry() {
        let mut a = Account::new(0);
        let mine = |_| true;
        let cmd = new(1, Side::Buy, 100, 100);
        a.on_sent(&cmd);
        a.on_rejected(&cmd, RejectReason::OffTick);
        assert_eq!(a.live_orders().count(), 0);
        a.on_sent(&new(2, Side::Buy, 100, 300));
        let cancel = Command::Cancel(CancelOrder {
            id: OrderId(2),
            broker: BrokerId(0),
            security: S,
        });
        a.on_sent(&cancel);
        assert!(a.order(OrderId(2)).unwrap().cancel_sent);
        a.on_rejected(&cancel, RejectReason::PhaseForbids);
        assert!(
            !a.order(OrderId(2)).unwrap().cancel_sent,
            "may cancel again"
        );
        a.on_event(
            &Event::Cancelled {
                id: OrderId(2),
                qty: 100,
                reason: CancelReason::Requested,
            },
            mine,
        );
        assert_eq!(a.open_qty(S, Side::Buy), 200);
        a.on_event(
            &Event::Cancelled {
                id: OrderId(2),
                qty: 200,
                reason: CancelReason::Expired,
            },
            mine,
        );
        assert_eq!(a.live_orders().count(), 0);
        assert_eq!(a.counts.rejected, 2);
        assert_eq!(a.counts.cancelled_qty, 300);
        let reasons: Vec<_> = a.rejects().collect();
        assert_eq!(reasons, [("off_tick", 1), ("phase_forbids", 1)]);
    }

    #[test]
    fn amend_and_mtl_remainder_update_the_price() {
        let mut a = Account::new(0);
        let mine = |id: OrderId| id.0 == 1;
        a.on_sent(&Command::New(NewOrder {
            id: OrderId(1),
            broker: BrokerId(0),
            security: S,
            side: Side::Buy,
            kind: OrderType::Mtl,
            price: 0,
            qty: 300,
        }));
        a.on_event(&fill(1, 9, 150, 100), mine);
        assert_eq!(a.order(OrderId(1)).unwrap().price, 150);
        a.on_event(
            &Event::Amended {
                id: OrderId(1),
                security: S,
                price: 140,
                qty: 100,
                priority_kept: false,
            },
            mine,
        );
        let o = a.order(OrderId(1)).unwrap();
        assert_eq!((o.price, o.open), (140, 100));
    }
}
