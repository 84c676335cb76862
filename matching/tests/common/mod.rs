//! Shared test helpers.
#![allow(dead_code)]

pub mod gen;
pub mod naive;

use matching::{
    AmendOrder, BrokerId, CancelOrder, Command, Event, Exchange, MarketRules, NewOrder, OrderId,
    OrderType, Phase, Price, Qty, SecurityId, SecurityTable, Side,
};

pub fn new(
    id: u64,
    broker: u32,
    sec: u32,
    side: Side,
    kind: OrderType,
    price: Price,
    qty: Qty,
) -> Command {
    Command::New(NewOrder {
        id: OrderId(id),
        broker: BrokerId(broker),
        security: SecurityId(sec),
        side,
        kind,
        price,
        qty,
    })
}

/// A limit buy of broker 0 in security 0.
pub fn buy(id: u64, price: Price, qty: Qty) -> Command {
    new(id, 0, 0, Side::Buy, OrderType::Limit, price, qty)
}

/// A limit sell of broker 1 in security 0.
pub fn sell(id: u64, price: Price, qty: Qty) -> Command {
    new(id, 1, 0, Side::Sell, OrderType::Limit, price, qty)
}

pub fn cancel(id: u64, broker: u32, sec: u32) -> Command {
    Command::Cancel(CancelOrder {
        id: OrderId(id),
        broker: BrokerId(broker),
        security: SecurityId(sec),
    })
}

pub fn amend(id: u64, broker: u32, sec: u32, price: Price, qty: Qty) -> Command {
    Command::Amend(AmendOrder {
        id: OrderId(id),
        broker: BrokerId(broker),
        security: SecurityId(sec),
        price,
        qty,
    })
}

pub fn phase(p: Phase) -> Command {
    Command::Phase(p)
}

/// Listed codes `S0`, `S1`, ... each with `reference`.
pub fn table(n: usize, reference: Price) -> SecurityTable {
    let mut t = SecurityTable::new();
    for i in 0..n {
        t.add(&format!("S{i}"), reference).unwrap();
    }
    t
}

/// Runs one command through an exchange, returning its events.
pub fn run(ex: &mut Exchange, cmd: Command) -> Vec<Event> {
    let mut out = Vec::new();
    ex.process(&cmd, &mut out);
    out
}

/// A HOSE exchange with `VNM` (reference 10,000) and `FPT` (reference 50,000).
pub fn hose() -> Exchange {
    let mut t = SecurityTable::new();
    t.add("VNM", 10_000).unwrap();
    t.add("FPT", 50_000).unwrap();
    Exchange::new(MarketRules::hose(), t)
}
