//! LOBSTER files from the L3 feed, and their parser.
//!
//! [`LobsterWriter`] turns one security's L3 messages into the two LOBSTER files: the message
//! file (`time,type,order_id,size,price,direction` per line) and the orderbook file (`levels`
//! times `ask_price,ask_size,bid_price,bid_size`, the book right after the message on the same
//! line number). [`LobsterBook`] rebuilds a book from a message file, to check one.
//!
//! The mapping (gridmatch -> LOBSTER):
//!
//! | feed message | type | order id | size | price | direction |
//! |---|---|---|---|---|---|
//! | `Add` | 1 submission | order | quantity | limit (0 at market) | side |
//! | `Reduce` (amend keeping priority) | 2 partial cancellation | order | quantity removed | order's | side |
//! | `Delete` (cancel, expiry, unfilled ATO/ATC, amend losing priority) | 3 deletion | order | quantity left | order's | side |
//! | `Trade`, continuous: the resting order | 4 execution | resting order | traded | trade price | resting side |
//! | `Trade`, auction: each of the two orders | 6 cross trade | that order | traded | auction price | its side |
//! | `Phase` | 7 halt indicator | 0 | 0 | -1 BREAK/CLOSED, 0 ATO/ATC (quoting, no trading), 1 CONTINUOUS | -1 |
//! | L3 `Snapshot` | 3 for every order held, then 1 for every order listed, in priority order | | | | |
//!
//! - Time: seconds after midnight, local to the exchange (`utc_offset_seconds`, +7 h for HOSE
//!   by default), with 9 decimals (nanoseconds): `34200.000000001`.
//! - Prices: LOBSTER writes a dollar price times 10,000. gridmatch prices are integer VND, so
//!   the price column is VND x 10,000 (25,050 VND -> `250500000`): a reader that divides by
//!   10,000 as usual gets VND back exactly. Type 7 lines carry the indicator -1/0/1 unscaled.
//! - Order ids are the feed's public ids (see [`crate::message`]), not the brokers' ids.
//! - Direction: 1 buy, -1 sell. A type 4 line has the direction of the executed resting order
//!   (-1: a buyer took liquidity), as LOBSTER does.
//! - An amend that loses priority is a deletion (3) followed by the trades it made and a new
//!   submission (1) under the same order id.
//! - Orders at market (resting ATO/ATC) are submitted with price 0 and shown in the orderbook
//!   file as a level with price 0 ahead of every other level of their side.
//! - Empty orderbook levels use LOBSTER's dummies: ask price 9999999999, bid price
//!   -9999999999, size 0.
//! - Type 5 (hidden executions) never occurs: gridmatch has no hidden orders.

use std::io::{self, Write};

use matching::{Aggressor, OrderId, Phase, Price, Qty, SecurityId, Side, Timestamp};

use crate::book::L3Book;
use crate::message::{Body, BookImage, Message};

/// LOBSTER's price unit: currency units times 10,000.
pub const PRICE_SCALE: i64 = 10_000;
/// Price written for an empty ask level.
pub const EMPTY_ASK_PRICE: i64 = 9_999_999_999;
/// Price written for an empty bid level.
pub const EMPTY_BID_PRICE: i64 = -9_999_999_999;
const NS_PER_DAY: i64 = 86_400 * 1_000_000_000;

/// How the files are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LobsterConfig {
    /// Levels per side in the orderbook file.
    pub levels: usize,
    /// Offset of the exchange's local time from UTC ("midnight" is local midnight).
    pub utc_offset_seconds: i64,
}

impl Default for LobsterConfig {
    /// 10 levels, Vietnam time (UTC+7).
    fn default() -> Self {
        LobsterConfig {
            levels: 10,
            utc_offset_seconds: 7 * 3600,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LobsterError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("LOBSTER files need the L3 feed (order by order), got a level snapshot")]
    NotL3,
    #[error("message does not fit the book: {0}")]
    Inconsistent(&'static str),
    #[error("price {0} is too large for LOBSTER's x10000 scale")]
    PriceTooLarge(Price),
    #[error("line {line}: {problem}")]
    Parse { line: usize, problem: String },
}

/// One line of a message file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LobsterMessage {
    /// Nanoseconds after (local) midnight.
    pub time: i64,
    /// Event type 1..=7.
    pub kind: u8,
    pub order_id: u64,
    pub size: Qty,
    /// Price x 10,000 (types 1-6), or the halt indicator (type 7).
    pub price: i64,
    /// 1 buy, -1 sell.
    pub direction: i8,
}

impl LobsterMessage {
    /// The line, without its newline.
    pub fn to_line(&self) -> String {
        format!(
            "{}.{:09},{},{},{},{},{}",
            self.time / 1_000_000_000,
            self.time % 1_000_000_000,
            self.kind,
            self.order_id,
            self.size,
            self.price,
            self.direction
        )
    }

    /// Parses a line (without its newline).
    pub fn parse(line: &str) -> Result<Self, String> {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 6 {
            return Err(format!("expected 6 fields, found {}", f.len()));
        }
        let (secs, frac) = f[0].split_once('.').unwrap_or((f[0], ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if secs.is_empty() || !digits(secs) || frac.len() > 9 || !digits(frac) {
            return Err(format!("bad time {:?}", f[0]));
        }
        let secs: i64 = secs.parse().map_err(|_| format!("bad time {:?}", f[0]))?;
        let nanos: i64 = format!("{frac:0<9}").parse().unwrap_or(0);
        let time = secs
            .checked_mul(1_000_000_000)
            .and_then(|t| t.checked_add(nanos))
            .filter(|t| (0..NS_PER_DAY).contains(t))
            .ok_or_else(|| format!("time {:?} is not within a day", f[0]))?;
        let num = |i: usize, what: &str| -> Result<i64, String> {
            f[i].parse().map_err(|_| format!("bad {what} {:?}", f[i]))
        };
        let kind = num(1, "event type")?;
        if !(1..=7).contains(&kind) {
            return Err(format!("event type {kind} is not 1 to 7"));
        }
        let order_id: u64 = f[2]
            .parse()
            .map_err(|_| format!("bad order id {:?}", f[2]))?;
        let size: u64 = f[3].parse().map_err(|_| format!("bad size {:?}", f[3]))?;
        let price = num(4, "price")?;
        let direction = match num(5, "direction")? {
            1 => 1,
            -1 => -1,
            d => return Err(format!("direction {d} is not 1 or -1")),
        };
        Ok(LobsterMessage {
            time,
            kind: kind as u8,
            order_id,
            size,
            price,
            direction,
        })
    }

    /// The side its direction names.
    pub fn side(&self) -> Side {
        if self.direction == 1 {
            Side::Buy
        } else {
            Side::Sell
        }
    }
}

fn direction(side: Side) -> i8 {
    match side {
        Side::Buy => 1,
        Side::Sell => -1,
    }
}

fn scale(price: Price) -> Result<i64, LobsterError> {
    price
        .checked_mul(PRICE_SCALE)
        .ok_or(LobsterError::PriceTooLarge(price))
}

/// The orderbook-file line for `book` (without its newline).
pub fn orderbook_line(book: &L3Book, levels: usize) -> String {
    let mut asks = book.window(Side::Sell, usize::MAX);
    let mut bids = book.window(Side::Buy, usize::MAX);
    let mut line = String::with_capacity(levels * 40);
    for i in 0..levels {
        let (ap, asz) = asks.next().map_or((EMPTY_ASK_PRICE, 0), |l| {
            (l.price.saturating_mul(PRICE_SCALE), l.qty)
        });
        let (bp, bsz) = bids.next().map_or((EMPTY_BID_PRICE, 0), |l| {
            (l.price.saturating_mul(PRICE_SCALE), l.qty)
        });
        if i > 0 {
            line.push(',');
        }
        line.push_str(&format!("{ap},{asz},{bp},{bsz}"));
    }
    line
}

/// Parses an orderbook-file line into `(ask_price, ask_size, bid_price, bid_size)` per level.
pub fn parse_orderbook_line(line: &str) -> Result<Vec<(i64, Qty, i64, Qty)>, String> {
    let f: Vec<&str> = line.split(',').collect();
    if f.is_empty() || !f.len().is_multiple_of(4) {
        return Err(format!("{} fields is not a multiple of 4", f.len()));
    }
    f.chunks(4)
        .map(|c| {
            let p = |s: &str| s.parse::<i64>().map_err(|_| format!("bad price {s:?}"));
            let q = |s: &str| s.parse::<u64>().map_err(|_| format!("bad size {s:?}"));
            Ok((p(c[0])?, q(c[1])?, p(c[2])?, q(c[3])?))
        })
        .collect()
}

/// Writes one security's LOBSTER message and orderbook files from its L3 feed messages.
#[derive(Debug)]
pub struct LobsterWriter<M, B> {
    security: SecurityId,
    cfg: LobsterConfig,
    book: L3Book,
    messages: M,
    orderbook: B,
    lines: u64,
}

impl<M: Write, B: Write> LobsterWriter<M, B> {
    pub fn new(security: SecurityId, cfg: LobsterConfig, messages: M, orderbook: B) -> Self {
        LobsterWriter {
            security,
            cfg,
            book: L3Book::new(),
            messages,
            orderbook,
            lines: 0,
        }
    }

    /// Lines written to each file.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// The book as the files describe it so far.
    pub fn book(&self) -> &L3Book {
        &self.book
    }

    /// Flushes and returns the two writers.
    pub fn into_inner(mut self) -> io::Result<(M, B)> {
        self.messages.flush()?;
        self.orderbook.flush()?;
        Ok((self.messages, self.orderbook))
    }

    fn local_time(&self, time: Timestamp) -> i64 {
        time.saturating_add(self.cfg.utc_offset_seconds.saturating_mul(1_000_000_000))
            .rem_euclid(NS_PER_DAY)
    }

    fn line(&mut self, m: LobsterMessage) -> Result<(), LobsterError> {
        writeln!(self.messages, "{}", m.to_line())?;
        writeln!(
            self.orderbook,
            "{}",
            orderbook_line(&self.book, self.cfg.levels)
        )?;
        self.lines += 1;
        Ok(())
    }

    /// Writes the lines for one feed message (messages of other securities, and those LOBSTER
    /// has no line for, are skipped).
    pub fn write(&mut self, msg: &Message) -> Result<(), LobsterError> {
        if msg.body.security() != Some(self.security) {
            return Ok(());
        }
        let time = self.local_time(msg.time);
        let line = |kind, order_id: OrderId, size, price, side| LobsterMessage {
            time,
            kind,
            order_id: order_id.0,
            size,
            price,
            direction: direction(side),
        };
        let bad = LobsterError::Inconsistent;
        match &msg.body {
            Body::Add {
                id,
                side,
                price,
                qty,
                ..
            } => {
                let p = scale(*price)?;
                self.book
                    .add(*id, *side, *price, *qty)
                    .map_err(|_| bad("add of a resting order"))?;
                self.line(line(1, *id, *qty, p, *side))?;
            }
            Body::Reduce { id, qty, .. } => {
                let o = self
                    .book
                    .order(*id)
                    .ok_or(bad("reduce of an unknown order"))?;
                let p = scale(o.price)?;
                self.book
                    .reduce(*id, *qty)
                    .map_err(|_| bad("reduce to a bad quantity"))?;
                self.line(line(2, *id, o.qty - qty, p, o.side))?;
            }
            Body::Delete { id, .. } => {
                let o = self
                    .book
                    .order(*id)
                    .ok_or(bad("delete of an unknown order"))?;
                let p = scale(o.price)?;
                self.book.delete(*id).map_err(|_| bad("delete"))?;
                self.line(line(3, *id, o.qty, p, o.side))?;
            }
            Body::Trade(t) => {
                let kind = if t.aggressor == Aggressor::Auction {
                    6
                } else {
                    4
                };
                let p = scale(t.price)?;
                for (side, id) in [(Side::Buy, t.buy), (Side::Sell, t.sell)] {
                    let Some(id) = id else { continue };
                    self.book
                        .execute(id, t.qty)
                        .map_err(|_| bad("execution of an unknown order or too large"))?;
                    self.line(line(kind, id, t.qty, p, side))?;
                }
            }
            Body::Phase { phase, .. } => {
                let indicator = match phase {
                    Phase::Break | Phase::Closed => -1,
                    Phase::Ato | Phase::Atc => 0,
                    Phase::Continuous => 1,
                };
                self.line(line(7, OrderId(0), 0, indicator, Side::Sell))?;
            }
            Body::Snapshot(s) => {
                let BookImage::Orders { bids, asks } = &s.book else {
                    return Err(LobsterError::NotL3);
                };
                let held: Vec<_> = [Side::Buy, Side::Sell]
                    .into_iter()
                    .flat_map(|side| self.book.orders(side).map(move |o| (side, o)))
                    .collect();
                for (side, o) in held {
                    self.book.delete(o.id).map_err(|_| bad("delete"))?;
                    self.line(line(3, o.id, o.qty, scale(o.price)?, side))?;
                }
                for (side, list) in [(Side::Buy, bids), (Side::Sell, asks)] {
                    for o in list {
                        let p = scale(o.price)?;
                        self.book
                            .add(o.id, side, o.price, o.qty)
                            .map_err(|_| bad("snapshot lists an order twice"))?;
                        self.line(line(1, o.id, o.qty, p, side))?;
                    }
                }
            }
            Body::Level { .. } | Body::Quote { .. } => return Err(LobsterError::NotL3),
            Body::Auction { .. }
            | Body::Indicative { .. }
            | Body::Reference { .. }
            | Body::SnapshotBegin { .. }
            | Body::Heartbeat => {}
        }
        Ok(())
    }
}

/// Rebuilds a book from message-file lines.
#[derive(Clone, Debug, Default)]
pub struct LobsterBook {
    pub book: L3Book,
}

impl LobsterBook {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one message line to the book.
    pub fn apply(&mut self, m: &LobsterMessage) -> Result<(), String> {
        let id = OrderId(m.order_id);
        let r = match m.kind {
            1 => {
                if m.price % PRICE_SCALE != 0 {
                    return Err(format!("price {} is not a whole VND", m.price));
                }
                self.book
                    .add(id, m.side(), m.price / PRICE_SCALE, m.size)
                    .map(|_| ())
            }
            2 => {
                let open = self.book.order(id).map_or(0, |o| o.qty);
                if m.size >= open {
                    return Err(format!("partial cancel of {} from {open}", m.size));
                }
                self.book.reduce(id, open - m.size).map(|_| ())
            }
            3 => self.book.delete(id).map(|_| ()),
            4 | 6 => self.book.execute(id, m.size).map(|_| ()),
            _ => Ok(()),
        };
        r.map_err(|e| e.to_string())
    }

    /// Parses and applies a whole message file.
    pub fn apply_file(&mut self, text: &str) -> Result<usize, LobsterError> {
        let mut n = 0;
        for (i, line) in text.lines().enumerate() {
            let problem = |problem| LobsterError::Parse {
                line: i + 1,
                problem,
            };
            let m = LobsterMessage::parse(line).map_err(problem)?;
            self.apply(&m).map_err(problem)?;
            n += 1;
        }
        Ok(n)
    }
}
