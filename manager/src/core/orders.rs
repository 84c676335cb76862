//! The order-state projection: what the manager knows of every order (owner, security, side,
//! price, open and filled quantity, state) and of every book's outstanding totals, built from
//! the executors' events. It answers brokers' queries, and it is the yardstick every executor
//! event is checked against before anything of it is delivered.
//!
//! Invariant: a group of events is applied whole or not at all. [`Projection::apply_group`]
//! checks each event against the routed command and the projection (the owner's security, live
//! orders, quantities, prices, the phase, the resulting totals) while applying it; on the first
//! inconsistency it rolls everything back and says why, and the caller treats the executor as
//! failed. A well-behaved engine's events always pass: the checks restate the engine's contract
//! (matching/src/types.rs), they do not re-run the matching.
//!
//! Memory: live orders stay (every event is checked against them); an order that reached a
//! final state is listed under its security ([`Projection::take_finished`]) and leaves memory
//! once a checkpoint has put it in the finished-order index ([`Projection::archive`]). Book
//! images are checked against the projection before they are trusted
//! ([`Projection::verify_image`]): every resting order, its quantity, side, price, owner, kind
//! and time priority (the seq it last rested at), the totals, phase, reference and last trade.

use journal::{BookSnapshot, FinalState, FinishedOrder, LiveOrder};
use matching::idmap::IdTable;
use matching::{
    Aggressor, BookImage, BrokerId, CancelReason, Command, Event, Fill, OrderId, OrderType, Phase,
    Price, Qty, RejectReason, RestingKind, RestingOrder, SecurityId, Side,
};
use proto::{OrderState, OrderStatus, Routed};

use super::records::RecordTable;

/// Events of a group whose orders [`Projection::prefetch`] asks for (a sweep's first ones).
const PREFETCH_EVENTS: usize = 4;
/// How far ahead [`Projection::verify_image`] fetches an image's records (and twice as far,
/// their slots).
const IMAGE_AHEAD: usize = 8;

/// What [`Projection::prefetch`] starts loading.
#[derive(Clone, Copy, Debug)]
pub enum Ahead {
    /// Where the orders' slot numbers are.
    Slots,
    /// The orders' records (their slot numbers are read now).
    Records,
}

/// One order as the manager knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OrderRecord {
    pub broker: BrokerId,
    pub client_ref: u64,
    pub security: SecurityId,
    pub side: Side,
    pub kind: OrderType,
    /// Limit price: the order's, an MTL remainder's resting price, or an amend's new price.
    pub price: Price,
    /// Filled plus open.
    pub qty: Qty,
    pub filled: Qty,
    /// Resting quantity when `state` is Resting; the unexecuted remainder of an incoming order
    /// while its command is being applied.
    pub open: Qty,
    pub state: OrderState,
    pub reject: Option<RejectReason>,
    /// The seq that gave a resting order its time priority: the command it rested at (its
    /// NEW, or an AMEND that cost it priority).
    pub since: u64,
}

impl OrderRecord {
    /// What fresh slab chunks are filled with (never read as an order's record).
    const FILLER: OrderRecord = OrderRecord {
        broker: BrokerId(u32::MAX),
        client_ref: 0,
        security: SecurityId(0),
        side: Side::Buy,
        kind: OrderType::Limit,
        price: 0,
        qty: 0,
        filled: 0,
        open: 0,
        state: OrderState::Pending,
        reject: None,
        since: 0,
    };

    /// `qty` of this resting order traded. Returns whether that filled it.
    fn fill_resting(&mut self, qty: Qty) -> bool {
        self.open -= qty;
        self.filled += qty;
        let gone = self.open == 0;
        if gone {
            self.state = OrderState::Filled;
        }
        gone
    }

    /// A NEW as it is before its events: all of it open.
    pub fn pending(o: &matching::NewOrder, client_ref: u64) -> OrderRecord {
        OrderRecord {
            broker: o.broker,
            client_ref,
            security: o.security,
            side: o.side,
            kind: o.kind,
            price: o.price,
            qty: o.qty,
            filled: 0,
            open: o.qty,
            state: OrderState::Pending,
            reject: None,
            since: 0,
        }
    }

    pub fn status(&self, id: OrderId) -> OrderStatus {
        OrderStatus {
            id,
            security: self.security,
            side: self.side,
            kind: self.kind,
            price: self.price,
            qty: self.qty,
            filled: self.filled,
            state: self.state,
            reject: self.reject,
        }
    }

    /// The record of a finished order for the index (`None` while it can still change).
    pub fn finished(&self, id: OrderId) -> Option<FinishedOrder> {
        let state = match self.state {
            OrderState::Filled => FinalState::Filled,
            OrderState::Cancelled => FinalState::Cancelled,
            OrderState::Expired => FinalState::Expired,
            OrderState::Rejected => FinalState::Rejected(self.reject?),
            OrderState::Pending | OrderState::Resting => return None,
        };
        Some(FinishedOrder {
            id,
            broker: self.broker,
            security: self.security,
            side: self.side,
            kind: self.kind,
            price: self.price,
            qty: self.qty,
            filled: self.filled,
            state,
        })
    }
}

/// A finished order from the index, as a query answers it.
pub(crate) fn finished_status(f: &FinishedOrder) -> OrderStatus {
    let (state, reject) = match f.state {
        FinalState::Filled => (OrderState::Filled, None),
        FinalState::Cancelled => (OrderState::Cancelled, None),
        FinalState::Expired => (OrderState::Expired, None),
        FinalState::Rejected(r) => (OrderState::Rejected, Some(r)),
    };
    OrderStatus {
        id: f.id,
        security: f.security,
        side: f.side,
        kind: f.kind,
        price: f.price,
        qty: f.qty,
        filled: f.filled,
        state,
        reject,
    }
}

/// A rolled-back change.
enum Undo {
    Record(OrderId, Option<OrderRecord>),
    Book(usize, BookState),
}

/// Per security: what the projection tracks of the book as a whole.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct BookState {
    pub bid_total: Qty,
    pub ask_total: Qty,
    pub phase: Phase,
    pub reference: Price,
    /// Price of the last trade since the last CLOSED.
    pub day_last: Option<Price>,
    /// Resting orders.
    pub live: u64,
}

/// Orders and books as the executors' events have left them.
pub(crate) struct Projection {
    /// Keyed by order id: a dense slab behind a direct table of each broker's increasing ids,
    /// so the next NEW's slot is cache-hot and the table never rehashes or moves all at once.
    records: RecordTable<OrderRecord>,
    books: Vec<BookState>,
    undo: Vec<Undo>,
    /// Per security: orders that reached a final state, in the order they did.
    finished: Vec<Vec<OrderId>>,
    /// NEWs refused before sequencing, not yet archived.
    rejected: Vec<OrderId>,
    /// Orders the group being applied finished (moved to `finished` if it applies).
    finishing: Vec<OrderId>,
}

/// What `apply_group` learned that the rest of the core acts on.
#[derive(Debug, Default)]
pub(crate) struct GroupOutcome {
    /// `Reference` events: the gateway's band follows them.
    pub references: Vec<(SecurityId, Price)>,
    pub auction: Option<(Price, Qty)>,
}

type Check = Result<(), String>;

fn ensure(ok: bool, why: impl FnOnce() -> String) -> Check {
    if ok {
        Ok(())
    } else {
        Err(why())
    }
}

/// The order a command is about, while its group is applied.
struct Incoming {
    id: OrderId,
    side: Side,
    /// Not yet executed or rested.
    remaining: Qty,
    last_fill: Option<Price>,
    /// An amend that lost priority: the order re-enters like a new limit order.
    reentering: bool,
}

impl Projection {
    pub fn new(references: impl IntoIterator<Item = Price>) -> Self {
        Projection {
            records: RecordTable::new(OrderRecord::FILLER),
            books: references
                .into_iter()
                .map(|reference| BookState {
                    reference,
                    ..BookState::default()
                })
                .collect(),
            undo: Vec::new(),
            finished: Vec::new(),
            rejected: Vec::new(),
            finishing: Vec::new(),
        }
    }

    pub fn get(&self, id: OrderId) -> Option<&OrderRecord> {
        self.records.get_ref(id.0)
    }

    /// Starts loading what validating `events` will read: the records of the orders they name.
    /// A resting order's record lies anywhere in a large table, two dependent cache misses
    /// away (its slot number, then the record), which the core thread otherwise waits out one
    /// by one. The caller asks for the slots two groups ahead and the records one ahead. A hint
    /// only: nothing read or written changes.
    pub fn prefetch(&self, events: &[Event], ahead: Ahead) {
        for ev in events.iter().take(PREFETCH_EVENTS) {
            let (id, other) = match *ev {
                Event::Fill(f) => (f.buy, Some(f.sell)),
                Event::Cancelled { id, .. }
                | Event::Amended { id, .. }
                | Event::Rested { id, .. } => (id, None),
                _ => continue,
            };
            for id in std::iter::once(id).chain(other) {
                match ahead {
                    Ahead::Slots => self.records.prefetch_slot(id.0),
                    Ahead::Records => self.records.prefetch_record(id.0),
                }
            }
        }
    }

    /// Order records in memory (live, finished but not yet archived, rejected).
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// The orders of `sec` that finished since the last call (its book's image was just
    /// trusted: they are ready for the index).
    pub fn take_finished(&mut self, sec: SecurityId) -> Vec<OrderId> {
        self.finished
            .get_mut(sec.0 as usize)
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Whether NEWs were refused before sequencing since the last [`Projection::take_rejected`].
    pub fn has_rejected(&self) -> bool {
        !self.rejected.is_empty()
    }

    /// NEWs refused before sequencing since the last call.
    pub fn take_rejected(&mut self) -> Vec<OrderId> {
        std::mem::take(&mut self.rejected)
    }

    /// Removes finished orders from memory and returns their index records, sorted by id. An
    /// id that is unknown or not final (never the case for ids from `take_*`) is skipped.
    pub fn archive(&mut self, ids: &[OrderId]) -> Vec<FinishedOrder> {
        let mut out: Vec<FinishedOrder> = ids
            .iter()
            .filter_map(|id| {
                let f = self.records.get_ref(id.0)?.finished(*id)?;
                self.records.remove(id.0);
                Some(f)
            })
            .collect();
        out.sort_unstable_by_key(|f| f.id);
        out
    }

    /// Gives the record table's memory back after archiving emptied most of it.
    pub fn shrink(&mut self) {
        self.records.shrink_if_sparse();
    }

    /// Checks an executor's image of `sec`'s book (taken right after command `seq`, which the
    /// projection has just completed) against what the events said, and returns the book
    /// snapshot to keep: the image with what the manager knows of each order. Any difference
    /// (a missing, extra or changed order, another priority order, other totals, phase,
    /// reference or last trade) is an error: a forged or broken image is never trusted.
    pub fn verify_image(
        &self,
        sec: SecurityId,
        seq: u64,
        image: &BookImage,
    ) -> Result<BookSnapshot, String> {
        let i = sec.0 as usize;
        let book = self
            .books
            .get(i)
            .ok_or_else(|| format!("security {} is not listed", sec.0))?;
        ensure(image.security == sec, || {
            "the image names another security".into()
        })?;
        ensure(
            image.phase == book.phase
                && image.reference == book.reference
                && image.last_trade == book.day_last,
            || {
                format!(
                    "image header {:?}/{}/{:?} but the book is {:?}/{}/{:?}",
                    image.phase,
                    image.reference,
                    image.last_trade,
                    book.phase,
                    book.reference,
                    book.day_last
                )
            },
        )?;
        ensure(
            (image.bids.len() + image.asks.len()) as u64 == book.live,
            || {
                format!(
                    "image of {} orders but {} rest",
                    image.bids.len() + image.asks.len(),
                    book.live
                )
            },
        )?;
        // No set of the ids seen: a side's ranks must rise strictly, and an order's rank is
        // its record's (its price and kind are checked equal to the record's, its time is
        // the record's), so an order listed twice breaks the rise; and the record's side
        // must be the list's, so no order is on both. That walk costs a lookup per order, and
        // a book can hold tens of thousands: the records are fetched a few orders ahead.
        let side_orders =
            |side: Side, orders: &[RestingOrder]| -> Result<(Vec<LiveOrder>, Qty), String> {
                let mut out = Vec::with_capacity(orders.len());
                let mut total: Qty = 0;
                // Priority: ATO/ATC first, then the better price, then the earlier time.
                let mut previous: Option<(u8, i64, u64)> = None;
                for (i, o) in orders.iter().enumerate() {
                    if let Some(ahead) = orders.get(i + 2 * IMAGE_AHEAD) {
                        self.records.prefetch_slot(ahead.id.0);
                    }
                    if let Some(ahead) = orders.get(i + IMAGE_AHEAD) {
                        self.records.prefetch_record(ahead.id.0);
                    }
                    let r = self
                        .records
                        .get_ref(o.id.0)
                        .ok_or_else(|| format!("order {} is unknown", o.id.0))?;
                    let kind_ok = match o.kind {
                        RestingKind::Limit => matches!(r.kind, OrderType::Limit | OrderType::Mtl),
                        RestingKind::Ato => r.kind == OrderType::Ato,
                        RestingKind::Atc => r.kind == OrderType::Atc,
                    };
                    ensure(
                        r.state == OrderState::Resting
                            && r.security == sec
                            && r.side == side
                            && r.broker == o.broker
                            && r.open == o.qty
                            && r.price == o.price
                            && kind_ok,
                        || format!("order {} in the image does not match it", o.id.0),
                    )?;
                    let price_rank = match side {
                        Side::Buy => -o.price,
                        Side::Sell => o.price,
                    };
                    let rank = match o.kind {
                        RestingKind::Limit => (1, price_rank, r.since),
                        _ => (0, 0, r.since),
                    };
                    ensure(previous.is_none_or(|p| p < rank), || {
                        format!("order {} is out of priority order", o.id.0)
                    })?;
                    previous = Some(rank);
                    total = total.checked_add(o.qty).ok_or("totals overflow")?;
                    out.push(LiveOrder {
                        id: o.id,
                        broker: r.broker,
                        side,
                        kind: r.kind,
                        price: r.price,
                        qty: r.qty,
                        filled: r.filled,
                        client_ref: r.client_ref,
                        since: r.since,
                    });
                }
                Ok((out, total))
            };
        let (bids, bid_total) = side_orders(Side::Buy, &image.bids)?;
        let (asks, ask_total) = side_orders(Side::Sell, &image.asks)?;
        ensure(
            bid_total == book.bid_total && ask_total == book.ask_total,
            || "image totals differ from the book's".into(),
        )?;
        Ok(BookSnapshot {
            security: sec,
            seq,
            phase: image.phase,
            reference: image.reference,
            last_trade: image.last_trade,
            bids,
            asks,
        })
    }

    /// Installs a book from a snapshot (recovery): its resting orders and its state.
    pub fn restore_book(&mut self, snap: &BookSnapshot) -> Result<(), String> {
        let i = snap.security.0 as usize;
        ensure(i < self.books.len(), || {
            format!("snapshot of unlisted security {}", snap.security.0)
        })?;
        let mut book = BookState {
            phase: snap.phase,
            reference: snap.reference,
            day_last: snap.last_trade,
            ..BookState::default()
        };
        for o in snap.bids.iter().chain(&snap.asks) {
            ensure(!self.records.contains(o.id.0), || {
                format!("order {} rests in two snapshots", o.id.0)
            })?;
            let open = o.open();
            *Self::side_total(&mut book, o.side) += open;
            book.live += 1;
            self.records.insert_new(
                o.id.0,
                OrderRecord {
                    broker: o.broker,
                    client_ref: o.client_ref,
                    security: snap.security,
                    side: o.side,
                    kind: o.kind,
                    price: o.price,
                    qty: o.qty,
                    filled: o.filled,
                    open,
                    state: OrderState::Resting,
                    reject: None,
                    since: o.since,
                },
            );
        }
        self.books[i] = book;
        Ok(())
    }

    pub fn book(&self, sec: SecurityId) -> Option<&BookState> {
        self.books.get(sec.0 as usize)
    }

    pub fn totals(&self) -> impl Iterator<Item = (SecurityId, Qty, Qty)> + '_ {
        self.books
            .iter()
            .enumerate()
            .map(|(i, b)| (SecurityId(i as u32), b.bid_total, b.ask_total))
    }

    /// Every record in memory.
    pub fn iter(&self) -> impl Iterator<Item = (OrderId, &OrderRecord)> + '_ {
        self.records.iter().map(|(id, r)| (OrderId(id), r))
    }

    /// The records of the orders `broker` placed itself (ids in its own namespace): the cost
    /// is its own orders', not every broker's.
    pub fn of_broker(
        &self,
        broker: BrokerId,
    ) -> impl Iterator<Item = (OrderId, &OrderRecord)> + '_ {
        self.records
            .iter_space(super::namespace(broker))
            .filter(move |(_, r)| r.broker == broker)
            .map(|(id, r)| (OrderId(id), r))
    }

    /// Records a NEW refused before sequencing (its id is burnt; its broker can query it).
    pub fn insert_rejected(
        &mut self,
        o: &matching::NewOrder,
        client_ref: u64,
        reason: RejectReason,
    ) {
        let fresh = self.records.insert_if_absent(o.id.0, || OrderRecord {
            open: 0,
            state: OrderState::Rejected,
            reject: Some(reason),
            ..OrderRecord::pending(o, client_ref)
        });
        if fresh {
            self.rejected.push(o.id);
        }
    }

    /// Applies the events of `routed` (all of them, for that one security), checking each;
    /// all-or-nothing.
    pub fn apply_group(
        &mut self,
        routed: &Routed,
        client_ref: u64,
        events: &[Event],
    ) -> Result<GroupOutcome, String> {
        self.undo.clear();
        self.finishing.clear();
        let result = self.apply_inner(routed, client_ref, events);
        if result.is_ok() {
            let i = routed.security.0 as usize;
            if self.finished.len() <= i {
                self.finished.resize_with(i + 1, Vec::new);
            }
            self.finished[i].append(&mut self.finishing);
        } else {
            self.finishing.clear();
            while let Some(u) = self.undo.pop() {
                match u {
                    Undo::Record(id, Some(r)) => self.records.set(id.0, r),
                    Undo::Record(id, None) => {
                        self.records.remove(id.0);
                    }
                    Undo::Book(i, b) => self.books[i] = b,
                }
            }
        }
        self.undo.clear();
        result
    }

    /// A known order, mutably, after saving it for rollback (one lookup).
    fn touch(&mut self, id: OrderId) -> Option<&mut OrderRecord> {
        let r = self.records.get_mut(id.0)?;
        self.undo.push(Undo::Record(id, Some(*r)));
        Some(r)
    }

    fn save_book(&mut self, i: usize) {
        self.undo.push(Undo::Book(i, self.books[i]));
    }

    /// A live (resting) order of security `sec`, mutably, after saving it for rollback.
    fn resting(&mut self, id: OrderId, sec: SecurityId) -> Result<&mut OrderRecord, String> {
        match self.records.get_mut(id.0) {
            Some(r) if r.security == sec && r.state == OrderState::Resting => {
                self.undo.push(Undo::Record(id, Some(*r)));
                Ok(r)
            }
            Some(r) => Err(format!(
                "order {} is not resting in security {} (state {:?}, security {})",
                id.0, sec.0, r.state, r.security.0
            )),
            None => Err(format!("order {} is unknown", id.0)),
        }
    }

    fn book_mut(&mut self, i: usize) -> &mut BookState {
        self.save_book(i);
        &mut self.books[i]
    }

    fn side_total(book: &mut BookState, side: Side) -> &mut Qty {
        match side {
            Side::Buy => &mut book.bid_total,
            Side::Sell => &mut book.ask_total,
        }
    }

    /// Removes `qty` of a resting order from its side's total.
    fn take_from_book(&mut self, i: usize, side: Side, qty: Qty) -> Check {
        let total = Self::side_total(self.book_mut(i), side);
        *total = total
            .checked_sub(qty)
            .ok_or_else(|| format!("book totals would go negative on security {i}"))?;
        Ok(())
    }

    /// A resting order with `qty` open leaves the book without trading.
    fn leave_book(&mut self, i: usize, side: Side, qty: Qty) -> Check {
        self.take_from_book(i, side, qty)?;
        self.book_mut(i).live -= 1;
        Ok(())
    }

    /// `qty` of resting order `id` left its book's depth (traded, or all of its rest cancelled
    /// or expired), and the order left the book if `gone` (nothing of it rests any more).
    fn out_of_book(
        &mut self,
        id: OrderId,
        sec: SecurityId,
        side: Side,
        qty: Qty,
        gone: bool,
    ) -> Check {
        if gone {
            self.finishing.push(id);
            self.leave_book(sec.0 as usize, side, qty)
        } else {
            self.take_from_book(sec.0 as usize, side, qty)
        }
    }

    /// Takes resting order `id` (its `qty` open) out of its book as `state`, once `check`
    /// accepts the record.
    fn end_resting(
        &mut self,
        id: OrderId,
        sec: SecurityId,
        qty: Qty,
        state: OrderState,
        check: impl FnOnce(&OrderRecord) -> Check,
    ) -> Check {
        let r = self.resting(id, sec)?;
        check(r)?;
        let side = r.side;
        r.open = 0;
        r.state = state;
        self.out_of_book(id, sec, side, qty, true)
    }

    fn add_to_book(&mut self, i: usize, side: Side, qty: Qty) -> Check {
        let total = Self::side_total(self.book_mut(i), side);
        *total = total
            .checked_add(qty)
            .ok_or_else(|| format!("book totals overflow on security {i}"))?;
        Ok(())
    }

    fn apply_inner(
        &mut self,
        routed: &Routed,
        client_ref: u64,
        events: &[Event],
    ) -> Result<GroupOutcome, String> {
        let sec = routed.security;
        let i = sec.0 as usize;
        ensure(i < self.books.len(), || {
            format!("security {} is not listed", sec.0)
        })?;
        ensure(routed.command.security().is_none_or(|s| s == sec), || {
            "the command names another security".into()
        })?;
        let mut outcome = GroupOutcome::default();
        let mut incoming = None;
        match routed.command {
            Command::New(o) => {
                if !self
                    .records
                    .insert_if_absent(o.id.0, || OrderRecord::pending(&o, client_ref))
                {
                    return Err(format!("order {} already exists", o.id.0));
                }
                self.undo.push(Undo::Record(o.id, None));
                incoming = Some(Incoming {
                    id: o.id,
                    side: o.side,
                    remaining: o.qty,
                    last_fill: None,
                    reentering: false,
                });
            }
            Command::Amend(_) | Command::Cancel(_) | Command::Phase(_) => {}
        }
        let phase_before = self.books[i].phase;
        let mut auction_price: Option<Price> = None;
        let mut auction_volume: Qty = 0;
        let mut answered = false;
        let n = events.len();
        for (k, ev) in events.iter().enumerate() {
            match *ev {
                Event::Accepted { id } => {
                    ensure(routed.command.order_id() == Some(id), || {
                        format!("accepted order {} is not the command's", id.0)
                    })?;
                }
                Event::Rejected { id, reason } => {
                    self.check_reject(&routed.command, id, reason, phase_before)?;
                    answered = true;
                }
                Event::Fill(f) => {
                    ensure(f.security == sec, || "fill for another security".into())?;
                    ensure(f.qty > 0, || "fill of zero shares".into())?;
                    match f.aggressor {
                        Aggressor::Auction => {
                            ensure(
                                matches!(routed.command, Command::Phase(p) if phase_before.is_call() && p != phase_before),
                                || "auction fill outside a call-phase uncross".into(),
                            )?;
                            let p = *auction_price.get_or_insert(f.price);
                            ensure(f.price == p, || "auction fills at different prices".into())?;
                            self.auction_side(&f, Side::Buy, p)?;
                            self.auction_side(&f, Side::Sell, p)?;
                            auction_volume = auction_volume
                                .checked_add(f.qty)
                                .ok_or("auction volume overflows")?;
                        }
                        Aggressor::Buy | Aggressor::Sell => {
                            ensure(self.books[i].phase == Phase::Continuous, || {
                                format!("continuous fill in phase {}", self.books[i].phase.as_str())
                            })?;
                            self.continuous_fill(&f, incoming.as_mut())?;
                        }
                    }
                    self.book_mut(i).day_last = Some(f.price);
                }
                Event::Rested {
                    id,
                    security,
                    side,
                    price,
                    qty,
                } => {
                    ensure(security == sec, || "rested in another security".into())?;
                    let inc = incoming
                        .as_mut()
                        .filter(|inc| inc.id == id)
                        .ok_or_else(|| {
                            format!("order {} rested but is not the incoming order", id.0)
                        })?;
                    ensure(side == inc.side && qty > 0 && qty == inc.remaining, || {
                        format!(
                            "order {} rests {qty} of a remainder of {}",
                            id.0, inc.remaining
                        )
                    })?;
                    let expected_price = match routed.command {
                        Command::New(o) => match o.kind {
                            OrderType::Limit => Some(o.price),
                            OrderType::Mtl => inc.last_fill,
                            OrderType::Ato | OrderType::Atc => Some(0),
                            _ => None,
                        },
                        Command::Amend(a) if inc.reentering => Some(a.price),
                        _ => None,
                    };
                    ensure(expected_price == Some(price), || {
                        format!(
                            "order {} rests at {price}, expected {expected_price:?}",
                            id.0
                        )
                    })?;
                    inc.remaining = 0;
                    let r = self.touch(id).ok_or("rested order unknown")?;
                    r.price = price;
                    r.open = qty;
                    r.state = OrderState::Resting;
                    r.since = routed.seq;
                    self.add_to_book(i, side, qty)?;
                    self.book_mut(i).live += 1;
                    answered = true;
                }
                Event::Amended {
                    id,
                    security,
                    price,
                    qty,
                    priority_kept,
                } => {
                    let Command::Amend(a) = routed.command else {
                        return Err("amended without an AMEND".into());
                    };
                    ensure(
                        a.id == id
                            && security == sec
                            && a.price == price
                            && a.qty == qty
                            && qty > 0,
                        || "amended event does not match the AMEND".into(),
                    )?;
                    let r = self.resting(id, sec)?;
                    let (side, old_open, old_price) = (r.side, r.open, r.price);
                    if priority_kept {
                        ensure(price == old_price && qty <= old_open, || {
                            "priority kept on an amend that changes price or adds quantity".into()
                        })?;
                        r.open = qty;
                        r.qty = r.filled + qty;
                        self.take_from_book(i, side, old_open - qty)?;
                    } else {
                        r.open = qty;
                        r.qty = r.filled + qty;
                        r.price = price;
                        r.state = OrderState::Pending;
                        self.take_from_book(i, side, old_open)?;
                        self.book_mut(i).live -= 1;
                        incoming = Some(Incoming {
                            id,
                            side,
                            remaining: qty,
                            last_fill: None,
                            reentering: true,
                        });
                    }
                    answered = true;
                }
                Event::Cancelled { id, qty, reason } => {
                    self.check_cancel(
                        &routed.command,
                        id,
                        qty,
                        reason,
                        phase_before,
                        sec,
                        incoming.as_mut(),
                    )?;
                    answered = true;
                }
                Event::Auction {
                    security,
                    price,
                    volume,
                } => {
                    ensure(
                        security == sec && Some(price) == auction_price && volume == auction_volume,
                        || "auction result does not match its fills".into(),
                    )?;
                    outcome.auction = Some((price, volume));
                }
                Event::Reference { security, price } => {
                    ensure(
                        security == sec
                            && matches!(routed.command, Command::Phase(Phase::Closed))
                            && phase_before != Phase::Closed,
                        || "reference price outside a close".into(),
                    )?;
                    let book = self.books[i];
                    let expected = book.day_last.unwrap_or(book.reference);
                    ensure(price == expected, || {
                        format!("reference {price} is not the closing price {expected}")
                    })?;
                    let b = self.book_mut(i);
                    b.reference = price;
                    b.day_last = None;
                    outcome.references.push((sec, price));
                }
                Event::Totals {
                    security,
                    bid_total,
                    ask_total,
                } => {
                    let b = &self.books[i];
                    ensure(
                        security == sec && bid_total == b.bid_total && ask_total == b.ask_total,
                        || {
                            format!(
                                "totals {bid_total}/{ask_total} but the orders add up to {}/{}",
                                b.bid_total, b.ask_total
                            )
                        },
                    )?;
                    ensure(k + 1 == n, || "events after the totals".into())?;
                }
            }
        }
        match routed.command {
            Command::Phase(p) => {
                if p != phase_before {
                    ensure(matches!(events.last(), Some(Event::Totals { .. })), || {
                        "a phase change must end with the book's totals".into()
                    })?;
                    self.book_mut(i).phase = p;
                } else {
                    ensure(events.is_empty(), || {
                        "a PHASE naming the current phase changes nothing".into()
                    })?;
                }
            }
            _ => {
                // A NEW is answered by its fills, resting or cancel (checked below).
                ensure(
                    answered || matches!(routed.command, Command::New(_)),
                    || "the command got no answer".into(),
                )?;
                ensure(matches!(events.last(), Some(Event::Totals { .. })), || {
                    "a command's events must end with the book's totals".into()
                })?;
                if let Some(inc) = incoming {
                    ensure(inc.remaining == 0, || {
                        format!(
                            "order {} left {} shares unaccounted for",
                            inc.id.0, inc.remaining
                        )
                    })?;
                }
            }
        }
        Ok(outcome)
    }

    fn check_reject(
        &self,
        cmd: &Command,
        id: OrderId,
        reason: RejectReason,
        phase: Phase,
    ) -> Check {
        use RejectReason::*;
        let ok = match (cmd, reason) {
            (Command::Cancel(c), OrderNotLive) => c.id == id && !self.is_live(id),
            (Command::Amend(a), OrderNotLive) => a.id == id && !self.is_live(id),
            (Command::Cancel(c), PhaseForbids) => c.id == id && phase.is_call(),
            (Command::Cancel(c), MarketClosed) => c.id == id && phase == Phase::Closed,
            (Command::Amend(a), PhaseForbids) => a.id == id && phase.is_call(),
            (Command::Amend(a), MarketClosed) => {
                a.id == id && matches!(phase, Phase::Break | Phase::Closed)
            }
            (
                Command::Amend(a),
                ZeroQuantity | QuantityTooLarge | OddLot | NonPositivePrice | OffTick | OutsideBand,
            ) => a.id == id && self.is_live(id),
            _ => false,
        };
        ensure(ok, || {
            format!(
                "reject {} of order {} does not fit the command or the order's state",
                reason.code(),
                id.0
            )
        })
    }

    fn is_live(&self, id: OrderId) -> bool {
        self.records
            .get_ref(id.0)
            .is_some_and(|r| r.state == OrderState::Resting)
    }

    /// A continuous fill: the incoming order (NEW or re-entering AMEND) takes from a resting one
    /// at the resting order's price.
    fn continuous_fill(&mut self, f: &Fill, incoming: Option<&mut Incoming>) -> Check {
        let side = f.aggressor.side().expect("continuous");
        let inc = incoming.ok_or("a continuous fill without an incoming order")?;
        let (agg_id, agg_broker, rest_id, rest_broker) = match side {
            Side::Buy => (f.buy, f.buy_broker, f.sell, f.sell_broker),
            Side::Sell => (f.sell, f.sell_broker, f.buy, f.buy_broker),
        };
        ensure(agg_id == inc.id && side == inc.side, || {
            format!(
                "fill's aggressor {} is not the incoming order {}",
                agg_id.0, inc.id.0
            )
        })?;
        inc.remaining = inc
            .remaining
            .checked_sub(f.qty)
            .ok_or_else(|| format!("order {} fills more than its quantity", inc.id.0))?;
        inc.last_fill = Some(f.price);
        let agg = self.records.get_ref(agg_id.0).ok_or("aggressor unknown")?;
        ensure(agg.broker == agg_broker, || {
            "fill names the wrong broker".into()
        })?;
        let sec = agg.security;
        let r = self.resting(rest_id, sec)?;
        ensure(
            r.side == side.opposite()
                && r.broker == rest_broker
                && r.price == f.price
                && r.open >= f.qty
                && r.kind != OrderType::Ato
                && r.kind != OrderType::Atc,
            || format!("fill against order {} does not match it", rest_id.0),
        )?;
        let gone = r.fill_resting(f.qty);
        let rest_side = r.side;
        self.out_of_book(rest_id, sec, rest_side, f.qty, gone)?;
        let a = self.touch(agg_id).expect("checked above");
        a.filled += f.qty;
        a.open = a.open.saturating_sub(f.qty);
        if a.filled == a.qty {
            a.state = OrderState::Filled;
            self.finishing.push(agg_id);
        }
        Ok(())
    }

    /// One side of an auction trade: a resting order executable at the auction price.
    fn auction_side(&mut self, f: &Fill, side: Side, p: Price) -> Check {
        let (id, broker) = match side {
            Side::Buy => (f.buy, f.buy_broker),
            Side::Sell => (f.sell, f.sell_broker),
        };
        let r = self.resting(id, f.security)?;
        let executable = r.kind.is_auction()
            || match side {
                Side::Buy => r.price >= p,
                Side::Sell => r.price <= p,
            };
        ensure(
            r.side == side && r.broker == broker && r.open >= f.qty && executable,
            || format!("auction fill of order {} does not match it", id.0),
        )?;
        let gone = r.fill_resting(f.qty);
        self.out_of_book(id, f.security, side, f.qty, gone)
    }

    #[allow(clippy::too_many_arguments)]
    fn check_cancel(
        &mut self,
        cmd: &Command,
        id: OrderId,
        qty: Qty,
        reason: CancelReason,
        phase: Phase,
        sec: SecurityId,
        incoming: Option<&mut Incoming>,
    ) -> Check {
        match (reason, cmd) {
            (CancelReason::Requested, Command::Cancel(c)) if c.id == id => {
                self.end_resting(id, sec, qty, OrderState::Cancelled, |r| {
                    ensure(r.open == qty, || {
                        format!("cancel of {qty} but {} rest", r.open)
                    })
                })
            }
            (CancelReason::Unfilled, Command::New(o)) if o.id == id => {
                ensure(
                    matches!(
                        o.kind,
                        OrderType::Market | OrderType::Mtl | OrderType::Ioc | OrderType::Fok
                    ),
                    || "only MP, MTL, IOC and FOK remainders are cancelled at once".into(),
                )?;
                let inc = incoming.ok_or("no incoming order")?;
                ensure(inc.remaining == qty && qty > 0, || {
                    format!("cancelled {qty} of a remainder of {}", inc.remaining)
                })?;
                inc.remaining = 0;
                let r = self.touch(id).ok_or("order unknown")?;
                r.open = 0;
                r.state = OrderState::Cancelled;
                self.finishing.push(id);
                Ok(())
            }
            (CancelReason::Unfilled, Command::Phase(p)) if phase.is_call() && *p != phase => self
                .end_resting(id, sec, qty, OrderState::Cancelled, |r| {
                    ensure(r.kind.is_auction() && r.open == qty, || {
                        "only ATO/ATC orders are cancelled by an uncross".into()
                    })
                }),
            (CancelReason::Expired, Command::Phase(Phase::Closed)) if phase != Phase::Closed => {
                self.end_resting(id, sec, qty, OrderState::Expired, |r| {
                    ensure(r.open == qty, || {
                        format!("expired {qty} but {} rest", r.open)
                    })
                })
            }
            _ => Err(format!(
                "cancel ({reason:?}) of order {} does not fit the command",
                id.0
            )),
        }
    }
}
