//! Books as the feed sees them: [`L3Book`] (order by order, the builder's mirror and an L3
//! subscriber's copy) and [`LevelBook`] (aggregated levels, an L1/L2 subscriber's copy).
//!
//! `L3Book` keeps orders in a slab with intrusive FIFO links (O(1) delete from the middle of a
//! level, as many cancels do) and each side's limit levels in a `Vec` sorted with the best level
//! last; orders at market (price 0, resting ATO/ATC) sit in a separate FIFO ahead of every limit
//! level. It can record an undo log so a whole command is applied or nothing is.

use matching::{BrokerId, OrderId, Price, Qty, Side};
use rustc_hash::FxHashMap;

use crate::message::{LevelInfo, OrderInfo};

const NIL: u32 = u32::MAX;
/// A slab smaller than this is never compacted (not worth the copy).
const COMPACT_MIN: usize = 1024;
/// An undo log that grew past this many entries is freed at commit rather than kept.
const UNDO_KEEP: usize = 4096;

/// Why an update does not fit the book.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BookError {
    #[error("order {0:?} is already resting")]
    DuplicateOrder(OrderId),
    #[error("order {0:?} is not resting in this book")]
    UnknownOrder(OrderId),
    #[error("order {id:?}: quantity {qty} is not valid here (open {open})")]
    BadQuantity { id: OrderId, qty: Qty, open: Qty },
    #[error("order {0:?}: negative price")]
    BadPrice(OrderId),
}

/// Where a change happened: the level's rank from the best (0 = best, at-market first).
pub type Rank = usize;

#[derive(Clone, Copy, Debug)]
struct Node {
    id: u64,
    /// The id published for the order (see [`L3Book::add_public`]).
    public: u64,
    /// The broker that owns it: kept for the manager's feed checkpoint (the engine's book needs
    /// it), never published. 0 where unknown (a subscriber's copy).
    owner: u32,
    price: Price,
    qty: Qty,
    side: Side,
    prev: u32,
    next: u32,
}

/// One price level: a FIFO through the slab, with its totals.
#[derive(Clone, Copy, Debug)]
struct Fifo {
    price: Price,
    qty: Qty,
    orders: u32,
    head: u32,
    tail: u32,
}

impl Fifo {
    fn empty(price: Price) -> Self {
        Fifo {
            price,
            qty: 0,
            orders: 0,
            head: NIL,
            tail: NIL,
        }
    }
    fn info(&self) -> LevelInfo {
        LevelInfo {
            price: self.price,
            qty: self.qty,
            orders: self.orders,
        }
    }
}

#[derive(Clone, Debug)]
struct SideBook {
    /// Orders at market (price 0): ahead of every limit level.
    market: Fifo,
    /// Limit levels sorted by `key`, best LAST.
    levels: Vec<Fifo>,
    total: Qty,
}

impl SideBook {
    fn new() -> Self {
        SideBook {
            market: Fifo::empty(0),
            levels: Vec::new(),
            total: 0,
        }
    }
}

/// Side-normalised key: ascending order puts the best limit level last.
fn key(side: Side, price: Price) -> i64 {
    match side {
        Side::Buy => price,
        Side::Sell => !price,
    }
}

fn side_ix(side: Side) -> usize {
    match side {
        Side::Buy => 0,
        Side::Sell => 1,
    }
}

/// True when a level at price `a` comes before one at `b` on `side` (0 = at market, first).
pub fn better(side: Side, a: Price, b: Price) -> bool {
    match (a == 0, b == 0) {
        (true, _) => b != 0,
        (false, true) => false,
        (false, false) => key(side, a) > key(side, b),
    }
}

#[derive(Clone, Copy, Debug)]
enum Undo {
    Added(u64),
    Qty(u64, Qty),
    /// The node as it was, and the order it followed in its level.
    Removed {
        node: Node,
        prev: Option<u64>,
    },
}

/// A resting order as [`L3Book::order`] reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resting {
    pub side: Side,
    pub price: Price,
    pub qty: Qty,
    /// The id published for it.
    pub public: OrderId,
}

/// A resting order with its private id and owner ([`L3Book::owned_orders`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OwnedOrder {
    pub id: OrderId,
    pub public: OrderId,
    pub owner: BrokerId,
    pub price: Price,
    pub qty: Qty,
}

/// An order-by-order book. Quantities add and subtract with wrapping arithmetic like the
/// engine's totals, so they are exact whenever the true totals fit a [`Qty`].
#[derive(Clone, Debug)]
pub struct L3Book {
    slots: Vec<Node>,
    free: Vec<u32>,
    index: FxHashMap<u64, u32>,
    sides: [SideBook; 2],
    undo: Vec<Undo>,
    recording: bool,
}

impl Default for L3Book {
    fn default() -> Self {
        Self::new()
    }
}

impl L3Book {
    pub fn new() -> Self {
        L3Book {
            slots: Vec::new(),
            free: Vec::new(),
            index: FxHashMap::default(),
            sides: [SideBook::new(), SideBook::new()],
            undo: Vec::new(),
            recording: false,
        }
    }

    /// Number of resting orders.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// `(bid_total, ask_total)`: resting quantity per side, orders at market included.
    pub fn totals(&self) -> (Qty, Qty) {
        (self.sides[0].total, self.sides[1].total)
    }

    pub fn order(&self, id: OrderId) -> Option<Resting> {
        let n = &self.slots[*self.index.get(&id.0)? as usize];
        Some(Resting {
            side: n.side,
            price: n.price,
            qty: n.qty,
            public: OrderId(n.public),
        })
    }

    /// The order first in line on `side` (at market first, then the best limit level's head).
    pub fn head(&self, side: Side) -> Option<OrderId> {
        let s = &self.sides[side_ix(side)];
        let fifo = if s.market.orders > 0 {
            &s.market
        } else {
            s.levels.last()?
        };
        Some(OrderId(self.slots[fifo.head as usize].id))
    }

    /// The limit levels of `side`, best first (orders at market are not at a price: see
    /// [`L3Book::at_market`]).
    pub fn levels(&self, side: Side) -> impl Iterator<Item = LevelInfo> + '_ {
        self.sides[side_ix(side)]
            .levels
            .iter()
            .rev()
            .map(Fifo::info)
    }

    /// The orders of `side` resting at market (ATO/ATC in their call phase), as a level with
    /// price 0; `None` when there are none.
    pub fn at_market(&self, side: Side) -> Option<LevelInfo> {
        let m = &self.sides[side_ix(side)].market;
        (m.orders > 0).then(|| m.info())
    }

    /// What a subscriber's window of `n` levels shows: the at-market level (if any), then the
    /// best `n` limit levels.
    pub fn window(&self, side: Side, n: usize) -> impl Iterator<Item = LevelInfo> + '_ {
        self.at_market(side)
            .into_iter()
            .chain(self.levels(side).take(n))
    }

    /// Aggregated limit `(bids, asks)`, at most `n` levels per side, best first, as
    /// `matching::Engine::depth` reports them (orders at market excluded).
    pub fn depth(&self, n: usize) -> matching::book::Depth {
        let side = |s| self.levels(s).take(n).map(|l| (l.price, l.qty)).collect();
        (side(Side::Buy), side(Side::Sell))
    }

    /// The orders of `side` in priority order, under their public ids.
    pub fn orders(&self, side: Side) -> impl Iterator<Item = OrderInfo> + '_ {
        self.nodes(side).map(|n| OrderInfo {
            id: OrderId(n.public),
            price: n.price,
            qty: n.qty,
        })
    }

    /// The orders of `side` in priority order with their private ids and owners (what the
    /// engine's book holds): for the manager's feed checkpoint, never for subscribers.
    pub fn owned_orders(&self, side: Side) -> impl Iterator<Item = OwnedOrder> + '_ {
        self.nodes(side).map(|n| OwnedOrder {
            id: OrderId(n.id),
            public: OrderId(n.public),
            owner: BrokerId(n.owner),
            price: n.price,
            qty: n.qty,
        })
    }

    /// The nodes of `side` in priority order.
    fn nodes(&self, side: Side) -> impl Iterator<Item = &Node> + '_ {
        let s = &self.sides[side_ix(side)];
        std::iter::once(&s.market)
            .chain(s.levels.iter().rev())
            .flat_map(move |fifo| {
                let mut cur = fifo.head;
                std::iter::from_fn(move || {
                    if cur == NIL {
                        return None;
                    }
                    let n = &self.slots[cur as usize];
                    cur = n.next;
                    Some(n)
                })
            })
    }

    /// Rebuilds the book at the size of what rests now, in the same priority order, when its
    /// slab is at least four times that (a busy hour or a close that expired the book would
    /// otherwise keep its peak's memory for the rest of the run). Amortised O(1) per removal:
    /// a rebuild of k orders comes after at least 3k removals since the previous one.
    fn compact_if_sparse(&mut self) {
        if self.slots.len() < COMPACT_MIN || self.index.len() * 4 > self.slots.len() {
            return;
        }
        let mut fresh = L3Book::new();
        for side in [Side::Buy, Side::Sell] {
            for n in self.nodes(side) {
                fresh.link(*n, Place::Tail);
            }
        }
        *self = fresh;
    }

    /// After `node` (a copy taken before it was unlinked) left the book: logs it for rollback
    /// while recording, else trims the slab.
    fn after_removal(&mut self, node: Node) {
        if self.recording {
            let prev = (node.prev != NIL).then(|| self.slots[node.prev as usize].id);
            self.undo.push(Undo::Removed { node, prev });
        } else {
            self.compact_if_sparse();
        }
    }

    /// Slots in the slab (live and free): what [`L3Book::compact_if_sparse`] bounds.
    #[cfg(test)]
    fn slab_len(&self) -> usize {
        self.slots.len()
    }

    /// Drops every order (and any undo log).
    pub fn clear(&mut self) {
        *self = L3Book::new();
    }

    /// Starts recording an undo log: [`L3Book::rollback`] returns to this point.
    pub fn begin(&mut self) {
        self.undo.clear();
        self.recording = true;
    }

    /// Keeps every change since [`L3Book::begin`].
    pub fn commit(&mut self) {
        if self.undo.capacity() > UNDO_KEEP {
            // One huge command (a close expiring the book) must not pin its undo log.
            self.undo = Vec::new();
        } else {
            self.undo.clear();
        }
        self.recording = false;
        self.compact_if_sparse();
    }

    /// Undoes every change since [`L3Book::begin`], restoring the exact FIFO order.
    pub fn rollback(&mut self) {
        self.recording = false;
        while let Some(u) = self.undo.pop() {
            // Each step restores the state right after the logged change, so it cannot fail.
            match u {
                Undo::Added(id) => {
                    let _ = self.unlink(id);
                }
                Undo::Qty(id, qty) => {
                    let _ = self.set_qty(id, qty);
                }
                Undo::Removed { node, prev } => {
                    self.link(node, prev.map_or(Place::Head, Place::After));
                }
            }
        }
    }

    /// Adds order `id` at the back of its level (price 0: at market), published as itself.
    /// Returns the level's rank.
    pub fn add(
        &mut self,
        id: OrderId,
        side: Side,
        price: Price,
        qty: Qty,
    ) -> Result<Rank, BookError> {
        self.add_public(id, id, BrokerId(0), side, price, qty)
    }

    /// Adds order `id` of broker `owner` at the back of its level, published as `public`
    /// ([`L3Book::orders`] lists it under that id; every other call names it by `id`).
    pub fn add_public(
        &mut self,
        id: OrderId,
        public: OrderId,
        owner: BrokerId,
        side: Side,
        price: Price,
        qty: Qty,
    ) -> Result<Rank, BookError> {
        if self.index.contains_key(&id.0) {
            return Err(BookError::DuplicateOrder(id));
        }
        if qty == 0 {
            return Err(BookError::BadQuantity { id, qty, open: 0 });
        }
        if price < 0 {
            return Err(BookError::BadPrice(id));
        }
        let node = Node {
            id: id.0,
            public: public.0,
            owner: owner.0,
            price,
            qty,
            side,
            prev: NIL,
            next: NIL,
        };
        let rank = self.link(node, Place::Tail);
        if self.recording {
            self.undo.push(Undo::Added(id.0));
        }
        Ok(rank)
    }

    /// Removes `qty` of order `id` by execution (the order leaves when nothing is left).
    /// Returns the level's rank (before any removal) and the open quantity left.
    pub fn execute(&mut self, id: OrderId, qty: Qty) -> Result<(Rank, Qty), BookError> {
        let slot = *self.index.get(&id.0).ok_or(BookError::UnknownOrder(id))?;
        let node = self.slots[slot as usize];
        if qty == 0 || qty > node.qty {
            return Err(BookError::BadQuantity {
                id,
                qty,
                open: node.qty,
            });
        }
        let at = self
            .find(node.side, node.price)
            .expect("a resting order's level exists");
        let rank = self.rank(node.side, at);
        let left = node.qty - qty;
        if left == 0 {
            self.index.remove(&id.0);
            self.unlink_slot(slot, at);
            self.after_removal(node);
        } else {
            self.adjust(slot, at, left);
            if self.recording {
                self.undo.push(Undo::Qty(id.0, node.qty));
            }
        }
        Ok((rank, left))
    }

    /// Executes `qty` of the order first in line on `side`, which must be `id` (the level is
    /// then the best: rank 0). Returns the order as it was before.
    pub fn execute_head(
        &mut self,
        side: Side,
        id: OrderId,
        qty: Qty,
    ) -> Result<Resting, HeadError> {
        let s = &self.sides[side_ix(side)];
        let at = if s.market.orders > 0 {
            At::Market
        } else if s.levels.is_empty() {
            return Err(HeadError::NotFirst(None));
        } else {
            At::Limit(s.levels.len() - 1)
        };
        let slot = self.fifo(side, at).head;
        let node = self.slots[slot as usize];
        if node.id != id.0 {
            return Err(HeadError::NotFirst(Some(OrderId(node.id))));
        }
        let before = Resting {
            side,
            price: node.price,
            qty: node.qty,
            public: OrderId(node.public),
        };
        if qty == 0 || qty > node.qty {
            return Err(HeadError::Book(BookError::BadQuantity {
                id,
                qty,
                open: node.qty,
            }));
        }
        if qty == node.qty {
            self.index.remove(&id.0);
            self.unlink_slot(slot, at);
            // The head: no order before it.
            self.after_removal(node);
        } else {
            self.adjust(slot, at, node.qty - qty);
            if self.recording {
                self.undo.push(Undo::Qty(id.0, node.qty));
            }
        }
        Ok(before)
    }

    /// Sets order `id`'s open quantity to `qty` (0 < qty <= open), keeping its place.
    pub fn reduce(&mut self, id: OrderId, qty: Qty) -> Result<Rank, BookError> {
        let open = self.order(id).ok_or(BookError::UnknownOrder(id))?.qty;
        if qty == 0 || qty > open {
            return Err(BookError::BadQuantity { id, qty, open });
        }
        let rank = self.set_qty(id.0, qty)?;
        if self.recording {
            self.undo.push(Undo::Qty(id.0, open));
        }
        Ok(rank)
    }

    /// Removes order `id`. Returns its level's rank before the removal.
    pub fn delete(&mut self, id: OrderId) -> Result<Rank, BookError> {
        let (node, rank) = self.unlink(id.0)?;
        self.after_removal(node);
        Ok(rank)
    }

    /// The level of (`side`, `price`), if it exists.
    fn find(&self, side: Side, price: Price) -> Option<At> {
        if price == 0 {
            return Some(At::Market);
        }
        let k = key(side, price);
        let levels = &self.sides[side_ix(side)].levels;
        // Activity clusters at the touch (the end): try it first.
        if levels.last().is_some_and(|l| l.price == price) {
            return Some(At::Limit(levels.len() - 1));
        }
        levels
            .binary_search_by(|l| key(side, l.price).cmp(&k))
            .ok()
            .map(At::Limit)
    }

    /// The level of (`side`, `price`), created empty if missing.
    fn find_or_insert(&mut self, side: Side, price: Price) -> At {
        if let Some(at) = self.find(side, price) {
            return at;
        }
        let k = key(side, price);
        let levels = &mut self.sides[side_ix(side)].levels;
        let i = levels
            .binary_search_by(|l| key(side, l.price).cmp(&k))
            .unwrap_or_else(|i| i);
        levels.insert(i, Fifo::empty(price));
        At::Limit(i)
    }

    fn fifo(&self, side: Side, at: At) -> &Fifo {
        let s = &self.sides[side_ix(side)];
        match at {
            At::Market => &s.market,
            At::Limit(i) => &s.levels[i],
        }
    }

    fn fifo_mut(&mut self, side: Side, at: At) -> &mut Fifo {
        let s = &mut self.sides[side_ix(side)];
        match at {
            At::Market => &mut s.market,
            At::Limit(i) => &mut s.levels[i],
        }
    }

    /// Rank of a level: its distance from the best limit level; 0 for the at-market level
    /// (which every window shows).
    fn rank(&self, side: Side, at: At) -> Rank {
        match at {
            At::Market => 0,
            At::Limit(i) => self.sides[side_ix(side)].levels.len() - 1 - i,
        }
    }

    /// Inserts `node` (its links are set here) into its level at `place`; returns the level's
    /// rank afterwards.
    fn link(&mut self, mut node: Node, place: Place) -> Rank {
        let Node {
            id,
            side,
            price,
            qty,
            ..
        } = node;
        let at = self.find_or_insert(side, price);
        node.prev = match place {
            Place::Tail => self.fifo(side, at).tail,
            Place::After(p) => self.index.get(&p).copied().unwrap_or(NIL),
            Place::Head => NIL,
        };
        node.next = NIL;
        let prev = node.prev;
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = node;
                s
            }
            None => {
                self.slots.push(node);
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(id, slot);
        let next = if prev == NIL {
            let fifo = self.fifo_mut(side, at);
            let old = fifo.head;
            fifo.head = slot;
            old
        } else {
            let n = self.slots[prev as usize].next;
            self.slots[prev as usize].next = slot;
            n
        };
        self.slots[slot as usize].next = next;
        let fifo = self.fifo_mut(side, at);
        if next == NIL {
            fifo.tail = slot;
        }
        fifo.qty = fifo.qty.wrapping_add(qty);
        fifo.orders += 1;
        if next != NIL {
            self.slots[next as usize].prev = slot;
        }
        let s = &mut self.sides[side_ix(side)];
        s.total = s.total.wrapping_add(qty);
        self.rank(side, at)
    }

    /// Takes a node out of its level (dropping the level if it empties); returns the node as it
    /// was (links included) and its level's rank before the removal.
    fn unlink(&mut self, id: u64) -> Result<(Node, Rank), BookError> {
        let slot = self
            .index
            .remove(&id)
            .ok_or(BookError::UnknownOrder(OrderId(id)))?;
        let node = self.slots[slot as usize];
        let at = self
            .find(node.side, node.price)
            .expect("a resting order's level exists");
        let rank = self.rank(node.side, at);
        self.unlink_slot(slot, at);
        Ok((node, rank))
    }

    /// Unlinks the node at `slot` (already out of the index) from its level `at`.
    fn unlink_slot(&mut self, slot: u32, at: At) {
        let node = self.slots[slot as usize];
        if node.prev != NIL {
            self.slots[node.prev as usize].next = node.next;
        }
        if node.next != NIL {
            self.slots[node.next as usize].prev = node.prev;
        }
        self.free.push(slot);
        let s = &mut self.sides[side_ix(node.side)];
        s.total = s.total.wrapping_sub(node.qty);
        let fifo = self.fifo_mut(node.side, at);
        if node.prev == NIL {
            fifo.head = node.next;
        }
        if node.next == NIL {
            fifo.tail = node.prev;
        }
        fifo.qty = fifo.qty.wrapping_sub(node.qty);
        fifo.orders -= 1;
        if let (0, At::Limit(i)) = (fifo.orders, at) {
            self.sides[side_ix(node.side)].levels.remove(i);
        }
    }

    /// Sets the open quantity of the node at `slot` in level `at`.
    fn adjust(&mut self, slot: u32, at: At, qty: Qty) {
        let node = &mut self.slots[slot as usize];
        let (old, side) = (node.qty, node.side);
        node.qty = qty;
        let s = &mut self.sides[side_ix(side)];
        s.total = s.total.wrapping_sub(old).wrapping_add(qty);
        let fifo = self.fifo_mut(side, at);
        fifo.qty = fifo.qty.wrapping_sub(old).wrapping_add(qty);
    }

    fn set_qty(&mut self, id: u64, qty: Qty) -> Result<Rank, BookError> {
        let slot = *self
            .index
            .get(&id)
            .ok_or(BookError::UnknownOrder(OrderId(id)))?;
        let node = self.slots[slot as usize];
        let at = self
            .find(node.side, node.price)
            .expect("a resting order's level exists");
        self.adjust(slot, at, qty);
        Ok(self.rank(node.side, at))
    }
}

/// Where [`L3Book::link`] puts a node in its level.
#[derive(Clone, Copy, Debug)]
enum Place {
    Tail,
    Head,
    /// Right after this order (which is at the same level).
    After(u64),
}

/// A level of one side: the at-market FIFO, or the limit level at an index of the ladder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum At {
    Market,
    Limit(usize),
}

/// Why [`L3Book::execute_head`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadError {
    /// The order is not first in line; the one that is (if any).
    NotFirst(Option<OrderId>),
    Book(BookError),
}

/// Aggregated levels, best first, the at-market level (price 0) ahead of the limit levels:
/// an L1/L2 subscriber's window.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LevelBook {
    bids: Vec<LevelInfo>,
    asks: Vec<LevelInfo>,
}

impl LevelBook {
    pub fn new(bids: Vec<LevelInfo>, asks: Vec<LevelInfo>) -> Self {
        LevelBook { bids, asks }
    }

    fn side_mut(&mut self, side: Side) -> &mut Vec<LevelInfo> {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }

    /// Every level of `side`, at market first.
    pub fn levels(&self, side: Side) -> &[LevelInfo] {
        match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        }
    }

    /// The at-market level of `side`, if any.
    pub fn at_market(&self, side: Side) -> Option<LevelInfo> {
        self.levels(side).first().copied().filter(|l| l.price == 0)
    }

    /// Replaces the limit levels of `side` by `best` (an L1 quote), keeping the at-market level.
    pub fn set_best(&mut self, side: Side, best: Option<LevelInfo>) {
        let v = self.side_mut(side);
        v.retain(|l| l.price == 0);
        v.extend(best);
    }

    /// Applies one level update: `qty` 0 removes the level, anything else sets it.
    pub fn set(&mut self, side: Side, level: LevelInfo) {
        let v = self.side_mut(side);
        let pos = v.iter().position(|l| !better(side, l.price, level.price));
        match pos {
            Some(i) if v[i].price == level.price => {
                if level.qty == 0 {
                    v.remove(i);
                } else {
                    v[i] = level;
                }
            }
            _ if level.qty == 0 => {}
            Some(i) => v.insert(i, level),
            None => v.push(level),
        }
    }

    /// Limit `(bids, asks)` as `(price, qty)`, at most `n` levels per side (the at-market level
    /// excluded, as in `matching::Engine::depth`).
    pub fn depth(&self, n: usize) -> matching::book::Depth {
        let f = |v: &[LevelInfo]| {
            v.iter()
                .filter(|l| l.price != 0)
                .take(n)
                .map(|l| (l.price, l.qty))
                .collect()
        };
        (f(&self.bids), f(&self.asks))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(book: &L3Book, side: Side) -> Vec<u64> {
        book.orders(side).map(|o| o.id.0).collect()
    }

    #[test]
    fn fifo_levels_ranks_and_market_first() {
        let mut b = L3Book::new();
        assert_eq!(b.add(OrderId(1), Side::Buy, 100, 5), Ok(0));
        assert_eq!(b.add(OrderId(2), Side::Buy, 101, 5), Ok(0));
        assert_eq!(b.add(OrderId(3), Side::Buy, 100, 7), Ok(1));
        assert_eq!(b.add(OrderId(4), Side::Buy, 99, 1), Ok(2));
        // An order at market goes ahead of every limit level (first in line, in every window)
        // but is not at a price: depth leaves it out, totals count it.
        assert_eq!(b.add(OrderId(5), Side::Buy, 0, 2), Ok(0));
        assert_eq!(b.head(Side::Buy), Some(OrderId(5)));
        assert_eq!(ids(&b, Side::Buy), vec![5, 2, 1, 3, 4]);
        assert_eq!(b.depth(10).0, vec![(101, 5), (100, 12), (99, 1)]);
        let window: Vec<_> = b.window(Side::Buy, 2).map(|l| (l.price, l.qty)).collect();
        assert_eq!(window, vec![(0, 2), (101, 5), (100, 12)]);
        assert_eq!(b.at_market(Side::Sell), None);
        assert_eq!(b.totals(), (20, 0));
        assert_eq!(b.delete(OrderId(1)), Ok(1));
        assert_eq!(ids(&b, Side::Buy), vec![5, 2, 3, 4]);
        assert_eq!(b.execute(OrderId(5), 2), Ok((0, 0)));
        assert_eq!(b.execute(OrderId(2), 1), Ok((0, 4)));
        assert_eq!(b.depth(1).0, vec![(101, 4)]);
        assert_eq!(
            b.execute(OrderId(2), 5),
            Err(BookError::BadQuantity {
                id: OrderId(2),
                qty: 5,
                open: 4
            })
        );
        assert_eq!(
            b.add(OrderId(3), Side::Sell, 1, 1),
            Err(BookError::DuplicateOrder(OrderId(3)))
        );
        assert_eq!(
            b.reduce(OrderId(9), 1),
            Err(BookError::UnknownOrder(OrderId(9)))
        );
        // Asks: lower is better.
        b.add(OrderId(10), Side::Sell, 105, 1).unwrap();
        b.add(OrderId(11), Side::Sell, 103, 1).unwrap();
        assert_eq!(b.depth(5).1, vec![(103, 1), (105, 1)]);
        assert_eq!(b.head(Side::Sell), Some(OrderId(11)));
    }

    #[test]
    fn rollback_restores_exact_fifo_order() {
        let mut b = L3Book::new();
        for (id, price) in [(1, 100), (2, 100), (3, 100), (4, 101), (5, 0), (6, 0)] {
            b.add(OrderId(id), Side::Buy, price, 10).unwrap();
        }
        let before: Vec<_> = b.orders(Side::Buy).collect();
        let depth = b.depth(10);
        b.begin();
        b.delete(OrderId(2)).unwrap();
        b.delete(OrderId(1)).unwrap();
        b.execute(OrderId(3), 4).unwrap();
        b.delete(OrderId(3)).unwrap();
        b.delete(OrderId(5)).unwrap();
        b.add(OrderId(7), Side::Buy, 100, 3).unwrap();
        b.add(OrderId(2), Side::Buy, 102, 3).unwrap();
        b.reduce(OrderId(4), 1).unwrap();
        b.delete(OrderId(4)).unwrap();
        b.rollback();
        assert_eq!(b.orders(Side::Buy).collect::<Vec<_>>(), before);
        assert_eq!(b.depth(10), depth);
        assert_eq!(b.totals(), (60, 0));
        assert_eq!(b.len(), 6);
    }

    /// A reference book: every resting order with its arrival number, priority by sorting.
    #[derive(Clone, Default)]
    struct Model {
        orders: Vec<(u64, Side, Price, Qty, u64)>,
        arrivals: u64,
    }

    impl Model {
        fn add(&mut self, id: u64, side: Side, price: Price, qty: Qty) {
            self.arrivals += 1;
            self.orders.push((id, side, price, qty, self.arrivals));
        }
        fn take(&mut self, id: u64, qty: Qty) {
            let i = self.orders.iter().position(|o| o.0 == id).unwrap();
            self.orders[i].3 -= qty;
            if self.orders[i].3 == 0 {
                self.orders.remove(i);
            }
        }
        fn side(&self, side: Side) -> Vec<(u64, Price, Qty)> {
            let mut v: Vec<_> = self.orders.iter().filter(|o| o.1 == side).collect();
            v.sort_by_key(|o| (o.2 != 0, -key(side, o.2), o.4));
            v.iter().map(|o| (o.0, o.2, o.3)).collect()
        }
    }

    fn assert_same(b: &L3Book, m: &Model) {
        for side in [Side::Buy, Side::Sell] {
            let got: Vec<_> = b.orders(side).map(|o| (o.id.0, o.price, o.qty)).collect();
            assert_eq!(got, m.side(side), "{side:?}");
        }
        let total = |side| {
            m.orders
                .iter()
                .filter(|o| o.1 == side)
                .map(|o| o.3)
                .sum::<Qty>()
        };
        assert_eq!(b.totals(), (total(Side::Buy), total(Side::Sell)));
        assert_eq!(b.len(), m.orders.len());
        assert!(
            b.slab_len() < COMPACT_MIN || b.slab_len() <= 4 * b.len().max(1),
            "slab {} for {} orders",
            b.slab_len(),
            b.len()
        );
    }

    #[test]
    fn a_book_that_empties_out_gives_its_memory_back_in_priority_order() {
        // Thousands of orders rest, then most leave by every path (delete, execute, execute at
        // the head; outside and inside a recorded command, committed or rolled back); the slab
        // is rebuilt as it goes and the book stays exactly the reference book.
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut b = L3Book::new();
        let mut m = Model::default();
        let mut next_id = 1u64;
        let mut add = |b: &mut L3Book, m: &mut Model, rng: &mut rand_chacha::ChaCha8Rng| {
            let side = if rng.gen_bool(0.5) {
                Side::Buy
            } else {
                Side::Sell
            };
            let price = if rng.gen_ratio(1, 20) {
                0
            } else {
                rng.gen_range(95..=105)
            };
            let qty = rng.gen_range(1..=5);
            b.add(OrderId(next_id), side, price, qty).unwrap();
            m.add(next_id, side, price, qty);
            next_id += 1;
        };
        for _ in 0..6000 {
            add(&mut b, &mut m, &mut rng);
        }
        assert_same(&b, &m);
        let peak = b.slab_len();
        let remove = |b: &mut L3Book, m: &mut Model, rng: &mut rand_chacha::ChaCha8Rng| {
            let o = m.orders[rng.gen_range(0..m.orders.len())];
            match rng.gen_range(0..3) {
                0 => {
                    b.delete(OrderId(o.0)).unwrap();
                    m.take(o.0, o.3);
                }
                1 => {
                    let qty = rng.gen_range(1..=o.3);
                    b.execute(OrderId(o.0), qty).unwrap();
                    m.take(o.0, qty);
                }
                _ => {
                    let (id, _, qty) = m.side(o.1)[0];
                    b.execute_head(o.1, OrderId(id), qty).unwrap();
                    m.take(id, qty);
                }
            }
        };
        let mut step = 0;
        while m.orders.len() > 50 {
            step += 1;
            if step % 50 == 0 {
                // A recorded command: compaction waits for its commit, a rollback restores.
                let keep = rng.gen_bool(0.5);
                let before = m.clone();
                b.begin();
                for _ in 0..rng.gen_range(1..200).min(m.orders.len() - 1) {
                    remove(&mut b, &mut m, &mut rng);
                }
                add(&mut b, &mut m, &mut rng);
                if keep {
                    b.commit();
                } else {
                    b.rollback();
                    m = before;
                }
            } else {
                remove(&mut b, &mut m, &mut rng);
            }
            assert_same(&b, &m);
        }
        assert!(
            b.slab_len() < peak / 10,
            "slab {} after a peak of {peak}",
            b.slab_len()
        );
        // The rebuilt book works as before.
        for _ in 0..3000 {
            add(&mut b, &mut m, &mut rng);
        }
        assert_same(&b, &m);
    }

    #[test]
    fn level_book_keeps_order_and_removes_on_zero() {
        let mut l = LevelBook::default();
        let lv = |price, qty| LevelInfo {
            price,
            qty,
            orders: 1,
        };
        l.set(Side::Sell, lv(105, 1));
        l.set(Side::Sell, lv(103, 2));
        l.set(Side::Sell, lv(0, 3));
        l.set(Side::Sell, lv(104, 4));
        l.set(Side::Sell, lv(103, 5));
        l.set(Side::Sell, lv(110, 0));
        assert_eq!(l.depth(9).1, vec![(103, 5), (104, 4), (105, 1)]);
        assert_eq!(l.at_market(Side::Sell), Some(lv(0, 3)));
        l.set(Side::Sell, lv(104, 0));
        l.set(Side::Buy, lv(50, 1));
        l.set(Side::Buy, lv(51, 1));
        assert_eq!(
            l.depth(9),
            (vec![(51, 1), (50, 1)], vec![(103, 5), (105, 1)])
        );
        // A quote replaces the limit levels only.
        l.set_best(Side::Sell, Some(lv(102, 7)));
        assert_eq!(l.levels(Side::Sell), &[lv(0, 3), lv(102, 7)]);
        l.set_best(Side::Sell, None);
        assert_eq!(l.levels(Side::Sell), &[lv(0, 3)]);
    }
}
