//! The application side of one broker's FIX session, sans-I/O: FIX orders in, manager commands
//! out; manager reports in, ExecutionReports and OrderCancelRejects out.
//!
//! Inputs: application messages from the session ([`OrderEntry::on_message`]), reports from
//! the manager ([`OrderEntry::on_report`]), order states from a query after a reconnection
//! ([`OrderEntry::on_status`]). Outputs: [`Action`]s. The only side effect is the order log,
//! written before anything that depends on it leaves (a command is logged before it is
//! submitted, an order's new state before its ExecutionReport is handed to the session).
//!
//! Identity: every ClOrdID the session ever used (new orders, cancels, replaces) maps to the
//! numeric id of its order, in the broker's own id namespace (below 2^40). Ids are handed out in
//! increasing order above every id the broker used before (the manager's welcome says which).
//! A ClOrdID used twice is a duplicate, unless the message is a possible resend (PossDupFlag or
//! PossResend): then the order's current state is reported instead (ExecType I).
//!
//! Reports -> FIX (ExecType/OrdStatus):
//! - the first engine event of a new order acknowledges it: `New` (0/0) before its fills, its
//!   rest or its cancellation; an exchange reject is `Rejected` (8/8) with OrdRejReason and our
//!   reason code in Text;
//! - each fill: `Trade` (F, OrdStatus 1 or 2) with LastQty, LastPx, CumQty, LeavesQty, AvgPx,
//!   the trade's id in SecondaryExecID (the same on both sides of a trade) and LastLiquidityInd
//!   (1 resting, 2 aggressor; none for an auction trade);
//! - a cancellation: `Canceled` (4/4); an expiry at the close: `Expired` (C/C);
//! - an amend: `Replaced` (5, OrdStatus 0 or 1) with the new Price, OrderQty = CumQty + the new
//!   open quantity, and whether the order kept its time priority in Text;
//! - a refused cancel or replace: OrderCancelReject with CxlRejReason and our code in Text.
//!
//! OrderCancelReplaceRequest -> AMEND with new open quantity = OrderQty - CumQty, CumQty as
//! this session last reported it. A fill still in flight when the replace is sequenced is not
//! in that CumQty: the order then ends up with more quantity in total than the OrderQty asked
//! (the exchange's AMEND takes an open quantity, not a total).

use std::collections::HashMap;
use std::path::Path;

use matching::{
    AmendOrder, BrokerId, CancelOrder, CancelReason, Command, NewOrder, OrderId, OrderType, Price,
    Qty, SecurityId, Side,
};
use proto::limits::MAX_BROKER_ORDER_ID;
use proto::{ClientCommand, Liquidity, OrderState, OrderStatus, Report, ReportEvent, SecurityInfo};

use crate::backend::Outbound;
use crate::codec::{Message, MessageBuilder};
use crate::mapping;
use crate::reclog::{LogError, RecordLog};
use crate::session::AppMessage;
use crate::tags;
use crate::utc;

/// Longest ClOrdID accepted (bytes); they are kept for the life of the order log.
pub const MAX_CL_ORD_ID: usize = 64;
/// Most orders one session keeps; beyond it new orders are refused (every order's ClOrdID is
/// remembered, so the map must stay bounded).
pub const MAX_ORDERS: usize = 4_000_000;

// FIX tags of the application messages.
const CL_ORD_ID: u32 = 11;
const ORIG_CL_ORD_ID: u32 = 41;
const ORDER_ID: u32 = 37;
const EXEC_ID: u32 = 17;
const SECONDARY_EXEC_ID: u32 = 527;
const EXEC_TYPE: u32 = 150;
const ORD_STATUS: u32 = 39;
const ORD_REJ_REASON: u32 = 103;
const SYMBOL: u32 = 55;
const SIDE: u32 = 54;
const ORDER_QTY: u32 = 38;
const ORD_TYPE: u32 = 40;
const PRICE: u32 = 44;
const TIME_IN_FORCE: u32 = 59;
const LAST_QTY: u32 = 32;
const LAST_PX: u32 = 31;
const LEAVES_QTY: u32 = 151;
const CUM_QTY: u32 = 14;
const AVG_PX: u32 = 6;
const TRANSACT_TIME: u32 = 60;
const LAST_LIQUIDITY_IND: u32 = 851;
const EXEC_RESTATEMENT_REASON: u32 = 378;
const CXL_REJ_REASON: u32 = 102;
const CXL_REJ_RESPONSE_TO: u32 = 434;
const BUSINESS_REJECT_REF_ID: u32 = 379;

/// What the order entry asks its shell to do, in order.
#[derive(Debug, Clone)]
pub enum Action {
    /// Submit this command to the manager.
    Submit(ClientCommand),
    /// Send this application message to the FIX client.
    Reply(Outbound),
}

/// An order's state as the FIX client sees it (OrdStatus).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Sent to the exchange, not yet acknowledged (no ExecutionReport yet).
    PendingNew,
    New,
    Partial,
    Filled,
    Canceled,
    Expired,
    Rejected,
}

impl Status {
    /// OrdStatus(39).
    pub fn code(self) -> u8 {
        match self {
            Status::PendingNew => b'A',
            Status::New => b'0',
            Status::Partial => b'1',
            Status::Filled => b'2',
            Status::Canceled => b'4',
            Status::Expired => b'C',
            Status::Rejected => b'8',
        }
    }

    fn from_code(c: u8) -> Option<Status> {
        [
            Status::PendingNew,
            Status::New,
            Status::Partial,
            Status::Filled,
            Status::Canceled,
            Status::Expired,
            Status::Rejected,
        ]
        .into_iter()
        .find(|s| s.code() == c)
    }

    /// No more reports can change it.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Status::Filled | Status::Canceled | Status::Expired | Status::Rejected
        )
    }
}

/// One order of the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// In the broker's own id namespace.
    pub id: u64,
    /// The ClOrdID the order is known by now (the last accepted cancel's or replace's).
    pub cl_ord_id: String,
    pub symbol: String,
    pub security: SecurityId,
    pub side: Side,
    pub kind: OrderType,
    pub price: Price,
    /// CumQty + open quantity.
    pub order_qty: Qty,
    pub cum_qty: Qty,
    /// Sum of price x quantity of the fills, for AvgPx.
    pub notional: i128,
    pub leaves: Qty,
    pub status: Status,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Request {
    New {
        order: u64,
    },
    Cancel {
        order: u64,
        cl_ord_id: String,
        orig: String,
    },
    Replace {
        order: u64,
        cl_ord_id: String,
        orig: String,
    },
}

impl Request {
    fn order(&self) -> u64 {
        match self {
            Request::New { order }
            | Request::Cancel { order, .. }
            | Request::Replace { order, .. } => *order,
        }
    }
}

/// The listed securities, by code and by id.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    by_code: HashMap<String, SecurityId>,
}

impl Listing {
    pub fn new(securities: &[SecurityInfo]) -> Self {
        Listing {
            by_code: securities.iter().map(|s| (s.code.clone(), s.id)).collect(),
        }
    }

    /// The id of `code`; [`SecurityId::UNKNOWN`] for an unlisted one (the exchange rejects it
    /// as `unknown_security`, exactly as a native order).
    pub fn lookup(&self, code: &str) -> SecurityId {
        self.by_code
            .get(code)
            .copied()
            .unwrap_or(SecurityId::UNKNOWN)
    }
}

// Order log records.
const REC_ORDER: u8 = 1;
const REC_REQUEST: u8 = 2;
const REC_STATE: u8 = 3;
const SEP: u8 = 0x01;
/// Records beyond twice the state's size tolerated before a compaction on open.
const COMPACT_SLACK: usize = 10_000;

/// Where the order log goes.
enum Store {
    File(RecordLog),
    /// Tests: records kept in memory, so a restart can be played.
    Memory(Vec<(u8, u64, Vec<u8>)>),
}

impl Store {
    fn append(&mut self, kind: u8, value: u64, data: Vec<u8>) -> Result<(), LogError> {
        match self {
            Store::File(log) => log.append(kind, value, &data).map(|_| ()),
            Store::Memory(v) => {
                v.push((kind, value, data));
                Ok(())
            }
        }
    }
}

/// One broker session's orders: the ClOrdID map, each order's state, the requests in flight.
pub struct OrderEntry {
    listing: Listing,
    store: Store,
    orders: HashMap<u64, Order>,
    cl_ord_ids: HashMap<String, u64>,
    /// client_ref -> what it asked, until its last report.
    requests: HashMap<u64, Request>,
    /// Requests whose reports were lost with the connection, until a query settles them.
    lost: Vec<Request>,
    next_id: u64,
    next_ref: u64,
    /// For ExecIDs of reports not tied to an exchange event.
    local_seq: u64,
}

impl std::fmt::Debug for OrderEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderEntry")
            .field("orders", &self.orders.len())
            .field("requests", &self.requests.len())
            .field("next_id", &self.next_id)
            .finish()
    }
}

impl OrderEntry {
    /// Opens (or creates) the order log at `path` and recovers the session's orders.
    /// A log much longer than the state it holds (every fill appends a state record) is
    /// compacted on open: one record per order and per extra ClOrdID.
    pub fn open(path: &Path, fsync: bool, listing: Listing) -> Result<Self, LogError> {
        let (log, records) = RecordLog::open(path, fsync)?;
        let n = records.len();
        let records = records.into_iter().map(|r| (r.kind, r.value, r.data));
        let mut e = Self::restore(Store::File(log), listing, records);
        if n > 2 * (e.orders.len() + e.cl_ord_ids.len()) + COMPACT_SLACK {
            let compact = e.snapshot();
            if let Store::File(log) = &mut e.store {
                log.rewrite(&compact)?;
                tracing::info!(path = %path.display(), before = n, after = compact.len(), "order log compacted");
            }
        }
        Ok(e)
    }

    /// Records that restore exactly this state.
    fn snapshot(&self) -> Vec<(u8, u64, Vec<u8>)> {
        let last_ref = self.next_ref.saturating_sub(1).to_string();
        let mut out = Vec::with_capacity(2 * self.orders.len() + self.cl_ord_ids.len());
        let mut ids: Vec<&u64> = self.orders.keys().collect();
        ids.sort_unstable();
        for id in ids {
            let o = &self.orders[id];
            out.push((
                REC_ORDER,
                o.id,
                join(&[
                    last_ref.as_bytes(),
                    o.cl_ord_id.as_bytes(),
                    o.symbol.as_bytes(),
                    if o.side == Side::Buy { b"B" } else { b"S" },
                    o.kind.as_str().as_bytes(),
                    o.price.to_string().as_bytes(),
                    o.order_qty.to_string().as_bytes(),
                ]),
            ));
            out.push((REC_STATE, o.id, state_record(o)));
        }
        let mut extra: Vec<(&String, &u64)> = self
            .cl_ord_ids
            .iter()
            .filter(|(cl, id)| self.orders.get(id).is_none_or(|o| &o.cl_ord_id != *cl))
            .collect();
        extra.sort_unstable();
        for (cl, id) in extra {
            out.push((
                REC_REQUEST,
                *id,
                join(&[last_ref.as_bytes(), cl.as_bytes()]),
            ));
        }
        out
    }

    /// An order entry whose log lives in memory (tests).
    pub fn in_memory(listing: Listing) -> Self {
        Self::restore(Store::Memory(Vec::new()), listing, std::iter::empty())
    }

    /// A restart of an in-memory order entry: a new one recovered from this one's records.
    pub fn restarted(&self) -> Self {
        let records = match &self.store {
            Store::Memory(v) => v.clone(),
            Store::File(_) => Vec::new(),
        };
        Self::restore(
            Store::Memory(records.clone()),
            self.listing.clone(),
            records.into_iter(),
        )
    }

    /// The log file path of `broker` inside `dir`.
    pub fn path_in(dir: &Path, broker: &str) -> std::path::PathBuf {
        dir.join(format!("{broker}.orders"))
    }

    fn restore(
        store: Store,
        listing: Listing,
        records: impl Iterator<Item = (u8, u64, Vec<u8>)>,
    ) -> Self {
        let mut e = OrderEntry {
            listing,
            store,
            orders: HashMap::new(),
            cl_ord_ids: HashMap::new(),
            requests: HashMap::new(),
            lost: Vec::new(),
            next_id: 1,
            next_ref: 1,
            local_seq: 0,
        };
        for (kind, id, data) in records {
            let f: Vec<&[u8]> = data.split(|&b| b == SEP).collect();
            let ok = match kind {
                REC_ORDER => e.restore_order(id, &f),
                REC_REQUEST => e.restore_request(id, &f),
                REC_STATE => e.restore_state(id, &f),
                _ => None,
            };
            if ok.is_none() {
                tracing::warn!(kind, id, "order log: unreadable record skipped");
            }
        }
        e
    }

    fn restore_order(&mut self, id: u64, f: &[&[u8]]) -> Option<()> {
        let [client_ref, cl, symbol, side, kind, price, qty] = f else {
            return None;
        };
        let cl = text(cl)?;
        let symbol = text(symbol)?;
        let qty = crate::codec::parse_u64(qty)?;
        let order = Order {
            id,
            cl_ord_id: cl.clone(),
            security: self.listing.lookup(&symbol),
            symbol,
            side: match *side {
                b"B" => Side::Buy,
                b"S" => Side::Sell,
                _ => return None,
            },
            kind: OrderType::parse(std::str::from_utf8(kind).ok()?)?,
            price: std::str::from_utf8(price).ok()?.parse().ok()?,
            order_qty: qty,
            cum_qty: 0,
            notional: 0,
            leaves: qty,
            status: Status::PendingNew,
        };
        let client_ref = crate::codec::parse_u64(client_ref)?;
        self.next_ref = self.next_ref.max(client_ref + 1);
        self.next_id = self.next_id.max(id + 1);
        self.cl_ord_ids.insert(cl, id);
        self.orders.insert(id, order);
        Some(())
    }

    fn restore_request(&mut self, order: u64, f: &[&[u8]]) -> Option<()> {
        let [client_ref, cl] = f else { return None };
        let client_ref = crate::codec::parse_u64(client_ref)?;
        self.next_ref = self.next_ref.max(client_ref + 1);
        self.cl_ord_ids.insert(text(cl)?, order);
        Some(())
    }

    fn restore_state(&mut self, id: u64, f: &[&[u8]]) -> Option<()> {
        let [cl, price, order_qty, cum, notional, leaves, status] = f else {
            return None;
        };
        let num = |v: &[u8]| crate::codec::parse_u64(v);
        let o = self.orders.get_mut(&id)?;
        o.cl_ord_id = text(cl)?;
        o.price = std::str::from_utf8(price).ok()?.parse().ok()?;
        o.order_qty = num(order_qty)?;
        o.cum_qty = num(cum)?;
        o.notional = std::str::from_utf8(notional).ok()?.parse().ok()?;
        o.leaves = num(leaves)?;
        o.status = Status::from_code(*status.first()?)?;
        Some(())
    }

    /// The broker's highest order id so far, from the manager's welcome: new ids go above it.
    pub fn set_id_floor(&mut self, max_used: u64) {
        self.next_id = self.next_id.max(max_used.saturating_add(1));
    }

    /// Commands sent whose last report has not arrived.
    pub fn in_flight(&self) -> usize {
        self.requests.len()
    }

    pub fn order(&self, id: u64) -> Option<&Order> {
        self.orders.get(&id)
    }

    /// The order a ClOrdID (any in its chain) names.
    pub fn order_by_cl_ord_id(&self, cl: &str) -> Option<&Order> {
        self.cl_ord_ids.get(cl).and_then(|id| self.orders.get(id))
    }

    pub fn order_count(&self) -> usize {
        self.orders.len()
    }

    // ------------------------------------------------------------------ FIX messages in

    /// An application message from the client. `link_up`: whether the manager can be reached
    /// now (if not, new requests are refused at once rather than queued).
    pub fn on_message(
        &mut self,
        now_ms: i64,
        app: &AppMessage,
        link_up: bool,
        out: &mut Vec<Action>,
    ) -> Result<(), LogError> {
        let m = &app.message;
        let resend = app.poss_dup || m.get_flag(tags::POSS_RESEND) == Ok(true);
        match m.msg_type() {
            b"D" => self.new_order(now_ms, m, resend, link_up, out),
            b"F" => self.cancel_or_replace(now_ms, m, resend, link_up, false, out),
            b"G" => self.cancel_or_replace(now_ms, m, resend, link_up, true, out),
            b"H" => {
                self.status_request(now_ms, m, out);
                Ok(())
            }
            _ => {
                out.push(Action::Reply(business_reject(
                    m,
                    3,
                    "Unsupported Message Type",
                )));
                Ok(())
            }
        }
    }

    fn new_order(
        &mut self,
        now_ms: i64,
        m: &Message,
        resend: bool,
        link_up: bool,
        out: &mut Vec<Action>,
    ) -> Result<(), LogError> {
        let cl = match usable_id(m, CL_ORD_ID) {
            Ok(cl) => cl,
            Err(why) => {
                out.push(Action::Reply(business_reject(m, 5, &why)));
                return Ok(());
            }
        };
        for tag in [SYMBOL, SIDE, ORDER_QTY, ORD_TYPE] {
            if m.get(tag).is_none() {
                let why = format!("required tag {tag} missing");
                out.push(Action::Reply(business_reject(m, 5, &why)));
                return Ok(());
            }
        }
        if let Some(&id) = self.cl_ord_ids.get(&cl) {
            if resend {
                let er = self.status_report(now_ms, id, &cl, "possible resend of a known ClOrdID");
                out.push(Action::Reply(er));
            } else {
                out.push(self.local_reject(
                    now_ms,
                    m,
                    6,
                    &format!("duplicate_order_id: ClOrdID {cl} was used before in this session"),
                ));
            }
            return Ok(());
        }
        let parsed = parse_new_order(m);
        let (symbol, side, kind, price, qty) = match parsed {
            Ok(p) => p,
            Err((reason, text)) => {
                out.push(self.local_reject(now_ms, m, reason, &text));
                return Ok(());
            }
        };
        if !link_up {
            out.push(self.local_reject(now_ms, m, 99, "no connection to the exchange: not sent"));
            return Ok(());
        }
        if self.next_id > MAX_BROKER_ORDER_ID || self.orders.len() >= MAX_ORDERS {
            out.push(self.local_reject(now_ms, m, 99, "this session has no order ids left"));
            return Ok(());
        }
        let id = self.next_id;
        self.next_id += 1;
        let client_ref = self.next_ref;
        self.next_ref += 1;
        let order = Order {
            id,
            cl_ord_id: cl.clone(),
            security: self.listing.lookup(&symbol),
            symbol,
            side,
            kind,
            price,
            order_qty: qty,
            cum_qty: 0,
            notional: 0,
            leaves: qty,
            status: Status::PendingNew,
        };
        self.store.append(
            REC_ORDER,
            id,
            join(&[
                client_ref.to_string().as_bytes(),
                cl.as_bytes(),
                order.symbol.as_bytes(),
                if side == Side::Buy { b"B" } else { b"S" },
                kind.as_str().as_bytes(),
                price.to_string().as_bytes(),
                qty.to_string().as_bytes(),
            ]),
        )?;
        let command = Command::New(NewOrder {
            id: OrderId(id),
            broker: BrokerId(0), // the manager sets the session's own broker
            security: order.security,
            side,
            kind,
            price,
            qty,
        });
        self.cl_ord_ids.insert(cl, id);
        self.orders.insert(id, order);
        self.requests.insert(client_ref, Request::New { order: id });
        out.push(Action::Submit(ClientCommand {
            client_ref,
            command,
        }));
        Ok(())
    }

    fn cancel_or_replace(
        &mut self,
        now_ms: i64,
        m: &Message,
        resend: bool,
        link_up: bool,
        replace: bool,
        out: &mut Vec<Action>,
    ) -> Result<(), LogError> {
        let (cl, orig) = match (usable_id(m, CL_ORD_ID), usable_id(m, ORIG_CL_ORD_ID)) {
            (Ok(cl), Ok(orig)) => (cl, orig),
            (Err(why), _) | (_, Err(why)) => {
                out.push(Action::Reply(business_reject(m, 5, &why)));
                return Ok(());
            }
        };
        let reject = |me: &Self, reason: u32, text: &str| {
            let order = me.cl_ord_ids.get(&orig).and_then(|id| me.orders.get(id));
            Action::Reply(cancel_reject(
                now_ms, order, &cl, &orig, replace, reason, text,
            ))
        };
        if let Some(&id) = self.cl_ord_ids.get(&cl) {
            if resend {
                let er = self.status_report(now_ms, id, &cl, "possible resend of a known ClOrdID");
                out.push(Action::Reply(er));
            } else {
                out.push(reject(
                    self,
                    6,
                    &format!("duplicate_cl_ord_id: ClOrdID {cl} was used before in this session"),
                ));
            }
            return Ok(());
        }
        let Some(order) = self
            .cl_ord_ids
            .get(&orig)
            .and_then(|id| self.orders.get(id))
        else {
            out.push(reject(
                self,
                1,
                &format!("unknown_order: no order with ClOrdID {orig} in this session"),
            ));
            return Ok(());
        };
        let security = match m.get_str(SYMBOL) {
            Some(s) => self.listing.lookup(s),
            None => order.security,
        };
        if m.get(SIDE)
            .is_some_and(|s| mapping::side(s) != Some(order.side))
        {
            out.push(reject(self, 99, "the Side of an order cannot change"));
            return Ok(());
        }
        let command = if replace {
            if m.get(ORD_TYPE) != Some(b"2") {
                let text =
                    "only the price and quantity of a limit order (OrdType 2) can be replaced";
                out.push(reject(self, 99, text));
                return Ok(());
            }
            let price = m
                .get(PRICE)
                .ok_or_else(|| "Price(44) is required".to_string());
            let qty = m
                .get(ORDER_QTY)
                .ok_or_else(|| "OrderQty(38) is required".to_string());
            let (price, qty) = match (price.and_then(mapping::price), qty.and_then(mapping::qty)) {
                (Ok(p), Ok(q)) => (p, q),
                (Err(e), _) | (_, Err(e)) => {
                    out.push(reject(self, 99, &e));
                    return Ok(());
                }
            };
            Command::Amend(AmendOrder {
                id: OrderId(order.id),
                broker: BrokerId(0),
                security,
                price,
                // The exchange takes the new open quantity.
                qty: qty.saturating_sub(order.cum_qty),
            })
        } else {
            Command::Cancel(CancelOrder {
                id: OrderId(order.id),
                broker: BrokerId(0),
                security,
            })
        };
        if !link_up {
            out.push(reject(self, 99, "no connection to the exchange: not sent"));
            return Ok(());
        }
        let id = order.id;
        let client_ref = self.next_ref;
        self.next_ref += 1;
        self.store.append(
            REC_REQUEST,
            id,
            join(&[client_ref.to_string().as_bytes(), cl.as_bytes()]),
        )?;
        self.cl_ord_ids.insert(cl.clone(), id);
        let req = if replace {
            Request::Replace {
                order: id,
                cl_ord_id: cl,
                orig,
            }
        } else {
            Request::Cancel {
                order: id,
                cl_ord_id: cl,
                orig,
            }
        };
        self.requests.insert(client_ref, req);
        out.push(Action::Submit(ClientCommand {
            client_ref,
            command,
        }));
        Ok(())
    }

    fn status_request(&mut self, now_ms: i64, m: &Message, out: &mut Vec<Action>) {
        let cl = match usable_id(m, CL_ORD_ID) {
            Ok(cl) => cl,
            Err(why) => {
                out.push(Action::Reply(business_reject(m, 5, &why)));
                return;
            }
        };
        match self.cl_ord_ids.get(&cl) {
            Some(&id) => {
                let er = self.status_report(now_ms, id, &cl, "order status");
                out.push(Action::Reply(er));
            }
            None => {
                self.local_seq += 1;
                let mut b = MessageBuilder::body();
                b.field(ORDER_ID, b"NONE")
                    .str_field(CL_ORD_ID, &cl)
                    .str_field(EXEC_ID, &format!("S{now_ms}.{}", self.local_seq))
                    .field(EXEC_TYPE, b"I")
                    .field(ORD_STATUS, b"8")
                    .u64_field(ORD_REJ_REASON, 5);
                echo(&mut b, m, &[SYMBOL, SIDE]);
                b.field(LEAVES_QTY, b"0")
                    .field(CUM_QTY, b"0")
                    .field(AVG_PX, b"0")
                    .str_field(TRANSACT_TIME, &utc::format(now_ms))
                    .str_field(tags::TEXT, "unknown_order: no order with this ClOrdID");
                out.push(Action::Reply(er(b)));
            }
        }
    }

    /// ExecType I: the current state of order `id`, under ClOrdID `cl`.
    fn status_report(&mut self, now_ms: i64, id: u64, cl: &str, text: &str) -> Outbound {
        self.local_seq += 1;
        let exec_id = format!("S{now_ms}.{}", self.local_seq);
        let o = &self.orders[&id];
        let mut b = report_body(o, &exec_id, b'I', cl, None, now_ms);
        b.str_field(tags::TEXT, text);
        er(b)
    }

    /// ExecType 8 for a request that never became an order.
    fn local_reject(&mut self, now_ms: i64, m: &Message, reason: u32, text: &str) -> Action {
        self.local_seq += 1;
        let mut b = MessageBuilder::body();
        b.field(ORDER_ID, b"NONE");
        echo(&mut b, m, &[CL_ORD_ID]);
        b.str_field(EXEC_ID, &format!("L{now_ms}.{}", self.local_seq))
            .field(EXEC_TYPE, b"8")
            .field(ORD_STATUS, b"8")
            .u64_field(ORD_REJ_REASON, u64::from(reason));
        echo(
            &mut b,
            m,
            &[SYMBOL, SIDE, ORDER_QTY, ORD_TYPE, PRICE, TIME_IN_FORCE],
        );
        b.field(LEAVES_QTY, b"0")
            .field(CUM_QTY, b"0")
            .field(AVG_PX, b"0")
            .str_field(TRANSACT_TIME, &utc::format(now_ms))
            .str_field(tags::TEXT, text);
        Action::Reply(er(b))
    }

    // ------------------------------------------------------------------- reports in

    /// A report from the manager; ExecutionReports and OrderCancelRejects for the client go to
    /// `out`.
    pub fn on_report(
        &mut self,
        now_ms: i64,
        r: &Report,
        out: &mut Vec<Outbound>,
    ) -> Result<(), LogError> {
        let time_ms = if r.time > 0 {
            r.time / 1_000_000
        } else {
            now_ms
        };
        if r.passive {
            if self.orders.contains_key(&r.order.0) {
                self.apply_event(time_ms, r, None, out)?;
            } else {
                tracing::debug!(
                    order = r.order.0,
                    "report about an order this session did not place"
                );
            }
            return Ok(());
        }
        let Some(req) = self.requests.get(&r.client_ref).cloned() else {
            tracing::warn!(
                client_ref = r.client_ref,
                "report for no request of this session"
            );
            return Ok(());
        };
        if r.last {
            self.requests.remove(&r.client_ref);
        }
        let replace = matches!(req, Request::Replace { .. });
        match r.event {
            ReportEvent::Rejected { reason } => match req {
                Request::New { order } => {
                    let Some(o) = self.orders.get_mut(&order) else {
                        return Ok(());
                    };
                    o.status = Status::Rejected;
                    o.leaves = 0;
                    let o = o.clone();
                    self.save(&o)?;
                    let mut b = report_body(
                        &o,
                        &format!("{}.J", o.id),
                        b'8',
                        &o.cl_ord_id,
                        None,
                        time_ms,
                    );
                    b.u64_field(ORD_REJ_REASON, u64::from(mapping::ord_rej_reason(reason)))
                        .str_field(tags::TEXT, &mapping::reject_text(reason));
                    out.push(er(b));
                }
                Request::Cancel {
                    order,
                    cl_ord_id,
                    orig,
                }
                | Request::Replace {
                    order,
                    cl_ord_id,
                    orig,
                } => {
                    let o = self.orders.get(&order);
                    out.push(cancel_reject(
                        time_ms,
                        o,
                        &cl_ord_id,
                        &orig,
                        replace,
                        mapping::cxl_rej_reason(reason),
                        &mapping::reject_text(reason),
                    ));
                }
            },
            ReportEvent::Amended {
                price,
                qty,
                priority_kept,
            } => {
                let Request::Replace {
                    order,
                    cl_ord_id,
                    orig,
                } = req
                else {
                    return Ok(());
                };
                let Some(o) = self.orders.get_mut(&order) else {
                    return Ok(());
                };
                if o.status.is_final() {
                    // The exchange checks liveness first; an ended order stays ended.
                    tracing::warn!(order, "amend reported for an order that had ended");
                    let o = o.clone();
                    out.push(cancel_reject(
                        time_ms,
                        Some(&o),
                        &cl_ord_id,
                        &orig,
                        true,
                        0,
                        "order_not_live: the order had ended",
                    ));
                    return Ok(());
                }
                o.price = price;
                o.leaves = qty;
                o.order_qty = o.cum_qty + qty;
                o.cl_ord_id = cl_ord_id.clone();
                let o = o.clone();
                self.save(&o)?;
                let mut b = report_body(
                    &o,
                    &format!("{}.R{}", o.id, r.seq),
                    b'5',
                    &cl_ord_id,
                    Some(&orig),
                    time_ms,
                );
                b.str_field(
                    tags::TEXT,
                    if priority_kept {
                        "replaced: time priority kept"
                    } else {
                        "replaced: time priority lost"
                    },
                );
                out.push(er(b));
            }
            ReportEvent::Fill(_) | ReportEvent::Rested { .. } | ReportEvent::Cancelled { .. } => {
                if self.orders.contains_key(&r.order.0) {
                    self.apply_event(time_ms, r, Some(&req), out)?;
                }
            }
            ReportEvent::Accepted
            | ReportEvent::Totals { .. }
            | ReportEvent::Trade { .. }
            | ReportEvent::Auction { .. }
            | ReportEvent::Reference { .. }
            | ReportEvent::PhaseChanged { .. } => {}
        }
        Ok(())
    }

    /// A fill, rest or cancellation of one of the session's orders.
    fn apply_event(
        &mut self,
        time_ms: i64,
        r: &Report,
        req: Option<&Request>,
        out: &mut Vec<Outbound>,
    ) -> Result<(), LogError> {
        let id = r.order.0;
        let fill = matches!(r.event, ReportEvent::Fill(_));
        if !fill && self.orders.get(&id).is_some_and(|o| o.status.is_final()) {
            // Nothing rests or is cancelled after the end; a fill is reported whatever we
            // thought (it is a fact at the exchange).
            return Ok(());
        }
        self.acknowledge(time_ms, id, out)?;
        let Some(o) = self.orders.get_mut(&id) else {
            return Ok(());
        };
        match r.event {
            ReportEvent::Fill(f) => {
                o.cum_qty += f.qty;
                o.notional += i128::from(f.price) * i128::from(f.qty);
                o.leaves = o.leaves.saturating_sub(f.qty);
                if !o.status.is_final() || o.status == Status::Filled {
                    o.status = if o.leaves == 0 {
                        Status::Filled
                    } else {
                        Status::Partial
                    };
                }
                let o = o.clone();
                self.save(&o)?;
                let side = if f.side == Side::Buy { 'B' } else { 'S' };
                let trade = format!("{}.{}.{}", f.trade.seq, f.trade.security.0, f.trade.index);
                let exec_id = format!("{trade}.{side}");
                let mut b = report_body(&o, &exec_id, b'F', &o.cl_ord_id, None, time_ms);
                b.u64_field(LAST_QTY, f.qty)
                    .str_field(LAST_PX, &f.price.to_string())
                    .str_field(SECONDARY_EXEC_ID, &trade);
                match f.liquidity {
                    Liquidity::Maker => {
                        b.field(LAST_LIQUIDITY_IND, b"1");
                    }
                    Liquidity::Taker => {
                        b.field(LAST_LIQUIDITY_IND, b"2");
                    }
                    Liquidity::Auction => {
                        b.str_field(tags::TEXT, "auction trade");
                    }
                }
                out.push(er(b));
            }
            ReportEvent::Rested { price, qty } => {
                // An MTL remainder rests as a limit at its last fill's price.
                if o.kind == OrderType::Mtl && price != 0 {
                    o.price = price;
                }
                o.leaves = qty;
                let o = o.clone();
                self.save(&o)?;
            }
            ReportEvent::Cancelled { reason, .. } => {
                o.leaves = 0;
                let (exec_type, text) = mapping::cancel_exec(reason);
                o.status = if reason == CancelReason::Expired {
                    Status::Expired
                } else {
                    Status::Canceled
                };
                let mut orig = None;
                if let Some(Request::Cancel {
                    cl_ord_id,
                    orig: o2,
                    ..
                }) = req
                {
                    if reason == CancelReason::Requested {
                        o.cl_ord_id = cl_ord_id.clone();
                        orig = Some(o2.clone());
                    }
                }
                let o = o.clone();
                self.save(&o)?;
                let mut b = report_body(
                    &o,
                    &format!("{}.C", o.id),
                    exec_type,
                    &o.cl_ord_id,
                    orig.as_deref(),
                    time_ms,
                );
                b.str_field(tags::TEXT, text);
                out.push(er(b));
            }
            _ => {}
        }
        Ok(())
    }

    /// The first engine event of a new order: `New` before anything else is reported.
    fn acknowledge(
        &mut self,
        time_ms: i64,
        id: u64,
        out: &mut Vec<Outbound>,
    ) -> Result<(), LogError> {
        let Some(o) = self.orders.get_mut(&id) else {
            return Ok(());
        };
        if o.status != Status::PendingNew {
            return Ok(());
        }
        o.status = Status::New;
        let o = o.clone();
        self.save(&o)?;
        out.push(er(report_body(
            &o,
            &format!("{}.N", o.id),
            b'0',
            &o.cl_ord_id,
            None,
            time_ms,
        )));
        Ok(())
    }

    fn save(&mut self, o: &Order) -> Result<(), LogError> {
        self.store.append(REC_STATE, o.id, state_record(o))
    }

    // ------------------------------------------------------- after a lost connection

    /// The connection to the manager was lost (or the gateway restarted): the reports of the
    /// requests in flight will never come; [`OrderEntry::on_status`] settles them.
    pub fn link_lost(&mut self) {
        let lost: Vec<Request> = self.requests.drain().map(|(_, r)| r).collect();
        self.lost.extend(lost);
    }

    /// The orders to query after a reconnection: every order not final, and every order with a
    /// request whose answer was lost.
    pub fn to_reconcile(&self) -> Vec<OrderId> {
        let mut ids: Vec<u64> = self
            .orders
            .values()
            .filter(|o| !o.status.is_final())
            .map(|o| o.id)
            .chain(self.lost.iter().map(Request::order))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids.into_iter().map(OrderId).collect()
    }

    /// The manager's state of an order after a reconnection, compared with what the client was
    /// told. Emits what the client missed: the acknowledgement or reject of a new order, the
    /// answer to a cancel or replace that was in flight, a cancellation or expiry, and fills as
    /// a restatement (ExecType D: their quantity is known, their individual prices are not;
    /// AvgPx counts missed fills of a limit order at its limit price, which is exact for fills
    /// while it rested in continuous trading, not for auction fills).
    pub fn on_status(
        &mut self,
        now_ms: i64,
        st: &OrderStatus,
        out: &mut Vec<Outbound>,
    ) -> Result<(), LogError> {
        let id = st.id.0;
        if !self.orders.contains_key(&id) {
            return Ok(());
        }
        let (pending, rest): (Vec<Request>, Vec<Request>) = std::mem::take(&mut self.lost)
            .into_iter()
            .partition(|r| r.order() == id);
        self.lost = rest;
        let o = self.orders.get_mut(&id).expect("present");
        if st.state == OrderState::Rejected {
            if o.status == Status::PendingNew {
                o.status = Status::Rejected;
                o.leaves = 0;
                let o = o.clone();
                self.save(&o)?;
                let reason = st.reject.unwrap_or(matching::RejectReason::UnknownOrder);
                let mut b =
                    report_body(&o, &format!("{}.J", o.id), b'8', &o.cl_ord_id, None, now_ms);
                b.u64_field(ORD_REJ_REASON, u64::from(mapping::ord_rej_reason(reason)))
                    .str_field(tags::TEXT, &mapping::reject_text(reason));
                out.push(er(b));
            }
            return Ok(());
        }
        self.acknowledge(now_ms, id, out)?;
        let o = self.orders.get_mut(&id).expect("present");
        let mut restated = false;
        if st.filled > o.cum_qty {
            let missed = st.filled - o.cum_qty;
            if !o.kind.is_priceless() {
                o.notional += i128::from(o.price) * i128::from(missed);
            }
            o.cum_qty = st.filled;
            restated = true;
        }
        let live = matches!(st.state, OrderState::Resting | OrderState::Pending);
        let open = if live {
            st.qty.saturating_sub(st.filled)
        } else {
            0
        };
        let mut replaced = None;
        if live && (st.price != o.price || st.qty != o.order_qty) {
            o.price = st.price;
            o.order_qty = st.qty;
            replaced = pending.iter().find_map(|r| match r {
                Request::Replace {
                    cl_ord_id, orig, ..
                } => Some((cl_ord_id.clone(), orig.clone())),
                _ => None,
            });
            restated |= replaced.is_none();
        }
        o.leaves = open;
        let was_final = o.status.is_final();
        o.status = match st.state {
            OrderState::Cancelled => Status::Canceled,
            OrderState::Expired => Status::Expired,
            _ if o.leaves == 0 && o.cum_qty > 0 => Status::Filled,
            _ if o.cum_qty > 0 => Status::Partial,
            _ => Status::New,
        };
        let mut cancelled_by = None;
        if o.status == Status::Canceled {
            cancelled_by = pending.iter().find_map(|r| match r {
                Request::Cancel {
                    cl_ord_id, orig, ..
                } => Some((cl_ord_id.clone(), orig.clone())),
                _ => None,
            });
            if let Some((cl, _)) = &cancelled_by {
                o.cl_ord_id = cl.clone();
            }
        }
        if let Some((cl, _)) = &replaced {
            o.cl_ord_id = cl.clone();
        }
        let o = o.clone();
        self.save(&o)?;
        self.local_seq += 1;
        let exec_id = format!("{}.D{now_ms}.{}", o.id, self.local_seq);
        if let Some((cl, orig)) = &replaced {
            let mut b = report_body(&o, &exec_id, b'5', cl, Some(orig), now_ms);
            b.str_field(
                tags::TEXT,
                "replaced (answer recovered after a reconnection)",
            );
            out.push(er(b));
        }
        if restated {
            let mut b = report_body(&o, &format!("{exec_id}r"), b'D', &o.cl_ord_id, None, now_ms);
            let text = if o.kind.is_priceless() {
                "restated after a reconnection: fills missed while disconnected"
            } else {
                "restated after a reconnection: fills missed while disconnected, priced at the order's limit"
            };
            b.u64_field(EXEC_RESTATEMENT_REASON, 99)
                .str_field(tags::TEXT, text);
            out.push(er(b));
        }
        if !was_final && matches!(o.status, Status::Canceled | Status::Expired) {
            let orig = cancelled_by.as_ref().map(|(_, orig)| orig.as_str());
            let (exec_type, text) = if o.status == Status::Expired {
                (b'C', "expired while the gateway was not connected")
            } else {
                (b'4', "cancelled while the gateway was not connected")
            };
            let mut b = report_body(
                &o,
                &format!("{exec_id}c"),
                exec_type,
                &o.cl_ord_id,
                orig,
                now_ms,
            );
            b.str_field(tags::TEXT, text);
            out.push(er(b));
        }
        // Requests whose answer was lost and that the state does not settle.
        for req in &pending {
            let settled = match req {
                Request::Replace { .. } => replaced.is_some(),
                Request::Cancel { .. } => cancelled_by.is_some(),
                Request::New { .. } => true,
            };
            if let (
                false,
                Request::Cancel {
                    cl_ord_id, orig, ..
                }
                | Request::Replace {
                    cl_ord_id, orig, ..
                },
            ) = (settled, req)
            {
                out.push(cancel_reject(
                    now_ms,
                    Some(&o),
                    cl_ord_id,
                    orig,
                    matches!(req, Request::Replace { .. }),
                    99,
                    "outcome unknown: the connection to the exchange was lost; see the order's state",
                ));
            }
        }
        Ok(())
    }

    /// An order the manager does not know after a reconnection: its NEW never arrived.
    pub fn on_missing(
        &mut self,
        now_ms: i64,
        id: OrderId,
        out: &mut Vec<Outbound>,
    ) -> Result<(), LogError> {
        self.lost.retain(|r| r.order() != id.0);
        let Some(o) = self.orders.get_mut(&id.0) else {
            return Ok(());
        };
        if o.status != Status::PendingNew {
            return Ok(());
        }
        o.status = Status::Rejected;
        o.leaves = 0;
        let o = o.clone();
        self.save(&o)?;
        let mut b = report_body(&o, &format!("{}.J", o.id), b'8', &o.cl_ord_id, None, now_ms);
        b.u64_field(ORD_REJ_REASON, 99).str_field(
            tags::TEXT,
            "lost: the connection to the exchange failed before the order arrived",
        );
        out.push(er(b));
        Ok(())
    }
}

/// A NewOrderSingle's order fields: symbol, side, type, price, quantity.
type NewFields = (String, Side, OrderType, Price, Qty);

/// Reads a NewOrderSingle's order fields; an error carries OrdRejReason and Text.
fn parse_new_order(m: &Message) -> Result<NewFields, (u32, String)> {
    let symbol = usable_id(m, SYMBOL).map_err(|e| (99, e))?;
    let side = m
        .get(SIDE)
        .and_then(mapping::side)
        .ok_or((11, "Side(54) must be 1 (buy) or 2 (sell)".to_string()))?;
    let kind = mapping::order_type(m.get(ORD_TYPE).unwrap_or_default(), m.get(TIME_IN_FORCE))
        .map_err(|e| (11, e))?;
    let price = match m.get(PRICE) {
        Some(p) => mapping::price(p).map_err(|e| (99, e))?,
        None if kind.is_priceless() => 0,
        None => return Err((99, "Price(44) is required for a limit order".into())),
    };
    let qty = mapping::qty(m.get(ORDER_QTY).unwrap_or_default()).map_err(|e| (13, e))?;
    Ok((symbol, side, kind, price, qty))
}

fn state_record(o: &Order) -> Vec<u8> {
    join(&[
        o.cl_ord_id.as_bytes(),
        o.price.to_string().as_bytes(),
        o.order_qty.to_string().as_bytes(),
        o.cum_qty.to_string().as_bytes(),
        o.notional.to_string().as_bytes(),
        o.leaves.to_string().as_bytes(),
        &[o.status.code()],
    ])
}

/// Text of an identifier field: 1..=64 printable ASCII bytes.
fn usable_id(m: &Message, tag: u32) -> Result<String, String> {
    match m.get(tag) {
        None => Err(format!("required tag {tag} missing")),
        Some(v) if v.is_empty() || v.len() > MAX_CL_ORD_ID => {
            Err(format!("tag {tag} must be 1 to {MAX_CL_ORD_ID} characters"))
        }
        Some(v) if !v.iter().all(|b| (0x20..0x7f).contains(b)) => {
            Err(format!("tag {tag} must be printable ASCII"))
        }
        Some(v) => Ok(String::from_utf8_lossy(v).into_owned()),
    }
}

fn text(v: &[u8]) -> Option<String> {
    std::str::from_utf8(v).ok().map(str::to_string)
}

fn join(fields: &[&[u8]]) -> Vec<u8> {
    let mut v = Vec::with_capacity(fields.iter().map(|f| f.len() + 1).sum());
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            v.push(SEP);
        }
        v.extend_from_slice(f);
    }
    v
}

/// Copies `tags` from the request when present.
fn echo(b: &mut MessageBuilder, m: &Message, tags: &[u32]) {
    for &t in tags {
        if let Some(v) = m.get(t) {
            b.field(t, v);
        }
    }
}

fn er(body: MessageBuilder) -> Outbound {
    Outbound {
        msg_type: b"8".to_vec(),
        body,
    }
}

/// The fields every ExecutionReport about an order carries.
fn report_body(
    o: &Order,
    exec_id: &str,
    exec_type: u8,
    cl: &str,
    orig: Option<&str>,
    time_ms: i64,
) -> MessageBuilder {
    let mut b = MessageBuilder::body();
    let (ord_type, tif) = mapping::fix_type(o.kind);
    b.str_field(ORDER_ID, &o.id.to_string())
        .str_field(CL_ORD_ID, cl);
    if let Some(orig) = orig {
        b.str_field(ORIG_CL_ORD_ID, orig);
    }
    b.str_field(EXEC_ID, exec_id)
        .field(EXEC_TYPE, &[exec_type])
        .field(ORD_STATUS, &[o.status.code()])
        .str_field(SYMBOL, &o.symbol)
        .field(SIDE, mapping::fix_side(o.side))
        .u64_field(ORDER_QTY, o.order_qty)
        .field(ORD_TYPE, ord_type);
    if !o.kind.is_priceless() || o.price != 0 {
        b.str_field(PRICE, &o.price.to_string());
    }
    b.field(TIME_IN_FORCE, tif)
        .u64_field(LEAVES_QTY, o.leaves)
        .u64_field(CUM_QTY, o.cum_qty)
        .str_field(AVG_PX, &mapping::avg_px(o.notional, o.cum_qty))
        .str_field(TRANSACT_TIME, &utc::format(time_ms));
    b
}

/// OrderCancelReject (35=9).
fn cancel_reject(
    time_ms: i64,
    order: Option<&Order>,
    cl: &str,
    orig: &str,
    replace: bool,
    reason: u32,
    text: &str,
) -> Outbound {
    let mut b = MessageBuilder::body();
    match order {
        Some(o) => b.str_field(ORDER_ID, &o.id.to_string()),
        None => b.field(ORDER_ID, b"NONE"),
    };
    b.str_field(CL_ORD_ID, cl)
        .str_field(ORIG_CL_ORD_ID, orig)
        .field(ORD_STATUS, &[order.map_or(b'8', |o| o.status.code())])
        .field(CXL_REJ_RESPONSE_TO, if replace { b"2" } else { b"1" })
        .u64_field(CXL_REJ_REASON, u64::from(reason))
        .str_field(TRANSACT_TIME, &utc::format(time_ms))
        .str_field(tags::TEXT, text);
    Outbound {
        msg_type: b"9".to_vec(),
        body: b,
    }
}

/// BusinessMessageReject (35=j) of an application message.
fn business_reject(m: &Message, reason: u64, text: &str) -> Outbound {
    let mut b = MessageBuilder::body();
    if let Ok(Some(seq)) = m.get_u64(tags::MSG_SEQ_NUM) {
        b.u64_field(tags::REF_SEQ_NUM, seq);
    }
    b.field(tags::REF_MSG_TYPE, m.msg_type());
    if let Ok(cl) = usable_id(m, CL_ORD_ID) {
        b.str_field(BUSINESS_REJECT_REF_ID, &cl);
    }
    b.u64_field(tags::BUSINESS_REJECT_REASON, reason)
        .str_field(tags::TEXT, text);
    Outbound {
        msg_type: tags::msg_type::BUSINESS_MESSAGE_REJECT.to_vec(),
        body: b,
    }
}

#[cfg(test)]
#[path = "orders_tests.rs"]
mod tests;
