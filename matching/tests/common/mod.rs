//! Shared test helpers.
#![allow(dead_code)]

pub mod naive;

use matching::{
    BrokerId, CancelOrder, Command, NewOrder, OrderId, OrderType, Price, Qty, SecurityId, Side,
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

pub fn buy(id: u64, price: Price, qty: Qty) -> Command {
    new(id, 0, 0, Side::Buy, OrderType::Limit, price, qty)
}

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
