//! Text formats (no file I/O): securities, orders, trades, totals and rejects CSV, and the
//! [`ReplayCollector`] that turns per-command events into the output files. Local and grid
//! replay share the collector, so both write byte-identical files.

use std::fmt::Write as _;

use rustc_hash::FxHashMap;

use crate::exchange::Exchange;
use crate::rules::MarketRules;
use crate::securities::SecurityTable;
use crate::types::{
    AmendOrder, BrokerId, CancelOrder, Command, Event, Fill, NewOrder, OrderId, OrderType, Phase,
    Price, Qty, SecurityId, Side,
};

/// Errors of the text formats. Parse errors name the 1-based line and the problem.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error("line {line}: {problem}")]
    Parse { line: usize, problem: String },
    #[error("security {code:?} is listed twice")]
    DuplicateSecurity { code: String },
    #[error("security {code:?}: reference price {price} must be positive")]
    InvalidReference { code: String, price: Price },
    #[error("security code {code:?} is invalid: it must be non-empty printable ASCII without spaces, commas or quotes")]
    InvalidCode { code: String },
    #[error("too many securities: at most {max} may be listed")]
    TooManySecurities { max: usize },
}

impl StreamError {
    pub(crate) fn line(line: usize, problem: impl Into<String>) -> Self {
        StreamError::Parse {
            line,
            problem: problem.into(),
        }
    }
}

/// `NEW`, `CANCEL`, `AMEND` or `PHASE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    New,
    Cancel,
    Amend,
    Phase,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::New => "NEW",
            Action::Cancel => "CANCEL",
            Action::Amend => "AMEND",
            Action::Phase => "PHASE",
        }
    }
}

/// One row of an orders CSV.
/// - NEW: every field.
/// - CANCEL: `order_id`, `broker`, `security`; `side`/`kind`/`phase` `None`, `price`/`qty` 0.
/// - AMEND: `order_id`, `broker`, `security`, the new `price` and the new open `qty`.
/// - PHASE: only `phase` (written in the type column); `order_id` 0, names empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderRow {
    pub action: Action,
    pub order_id: u64,
    pub broker: String,
    pub security: String,
    pub side: Option<Side>,
    pub kind: Option<OrderType>,
    pub price: Price,
    pub qty: Qty,
    pub phase: Option<Phase>,
}

impl OrderRow {
    /// A PHASE row.
    pub fn phase(phase: Phase) -> OrderRow {
        OrderRow {
            action: Action::Phase,
            order_id: 0,
            broker: String::new(),
            security: String::new(),
            side: None,
            kind: None,
            price: 0,
            qty: 0,
            phase: Some(phase),
        }
    }
}

/// Header of the orders CSV.
pub const ORDERS_HEADER: &str = "action,order_id,broker,security,side,type,price,qty";
/// Header of the trades CSV.
pub const TRADES_HEADER: &str = "security,price,qty,buy_order_id,sell_order_id,aggressor";
/// Header of the totals CSV.
pub const TOTALS_HEADER: &str = "security,bid_total,ask_total";
/// Header of the rejects CSV.
pub const REJECTS_HEADER: &str = "order_id,reason";

fn parse_side(s: &str) -> Option<Side> {
    match s {
        "BUY" => Some(Side::Buy),
        "SELL" => Some(Side::Sell),
        _ => None,
    }
}

/// Fast unsigned decimal parse: digits only, no sign, no overflow.
#[inline]
fn parse_u64(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &c in b {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(d as u64)?;
    }
    Some(v)
}

#[inline]
fn parse_i64(s: &str) -> Option<i64> {
    match s.strip_prefix('-') {
        Some(rest) => {
            let v = parse_u64(rest)?;
            if v <= i64::MAX as u64 + 1 {
                Some((v as i64).wrapping_neg())
            } else {
                None
            }
        }
        None => i64::try_from(parse_u64(s.strip_prefix('+').unwrap_or(s))?).ok(),
    }
}

fn too_many_fields(n: usize) -> StreamError {
    StreamError::line(n, format!("expected 8 fields ({ORDERS_HEADER}), got more"))
}

/// Splits an unquoted line (the fast path) into trimmed fields; returns the field count.
#[inline]
fn split_plain<'a>(line: &'a str, f: &mut [&'a str; 8], n: usize) -> Result<usize, StreamError> {
    let mut count = 0;
    for field in line.split(',') {
        if count == 8 {
            return Err(too_many_fields(n));
        }
        f[count] = field.trim();
        count += 1;
    }
    Ok(count)
}

/// Splits one record with RFC 4180 quoting: a field may be enclosed in double quotes, inside
/// which commas and line breaks are data and `""` is one quote. `first` is the record's first
/// physical line (with its `\r`, if any); a quoted field still open at a line end continues on
/// the next lines of `more`. Unquoted fields are trimmed; quoted ones are kept verbatim, with
/// blanks allowed around the quotes.
fn split_quoted<'a>(
    first: &str,
    more: &mut impl Iterator<Item = (usize, &'a str)>,
    n: usize,
) -> Result<Vec<String>, StreamError> {
    #[derive(PartialEq)]
    enum St {
        Start,
        Unquoted,
        Quoted,
        /// A quote inside a quoted field: the closing one, or the first of `""`.
        QuoteSeen,
        /// Blanks after the closing quote.
        After,
    }
    let mut fields = Vec::with_capacity(8);
    let mut cur = String::new();
    let mut st = St::Start;
    let mut line = first;
    loop {
        for c in line.chars() {
            match st {
                St::Start | St::Unquoted if c == ',' => {
                    fields.push(cur.trim().to_string());
                    cur.clear();
                    st = St::Start;
                }
                St::Start if c == '"' => st = St::Quoted,
                St::Start if c.is_whitespace() => {}
                St::Start | St::Unquoted if c == '"' => {
                    return Err(StreamError::line(
                        n,
                        format!(
                            "quote inside the unquoted field {:?}: quote the whole field",
                            cur.trim()
                        ),
                    ))
                }
                St::Start | St::Unquoted => {
                    cur.push(c);
                    st = St::Unquoted;
                }
                St::Quoted if c == '"' => st = St::QuoteSeen,
                St::Quoted => cur.push(c),
                St::QuoteSeen if c == '"' => {
                    cur.push('"');
                    st = St::Quoted;
                }
                St::QuoteSeen | St::After if c == ',' => {
                    fields.push(std::mem::take(&mut cur));
                    st = St::Start;
                }
                St::QuoteSeen | St::After if c.is_whitespace() => st = St::After,
                St::QuoteSeen | St::After => {
                    return Err(StreamError::line(
                        n,
                        format!("unexpected {c:?} after the closing quote of {cur:?}"),
                    ))
                }
            }
        }
        if st != St::Quoted {
            break;
        }
        // The line break belongs to the quoted field.
        cur.push('\n');
        line = match more.next() {
            Some((_, next)) => next,
            None => {
                return Err(StreamError::line(
                    n,
                    "quoted field is not closed before the end of the file",
                ))
            }
        };
    }
    fields.push(match st {
        St::Start | St::Unquoted => cur.trim().to_string(),
        _ => cur,
    });
    if fields.len() > 8 {
        return Err(too_many_fields(n));
    }
    Ok(fields)
}

/// Parses the fields of one non-blank record into a row.
fn parse_fields(f: &[&str; 8], count: usize, n: usize) -> Result<OrderRow, StreamError> {
    let action = match f[0] {
        "NEW" => Action::New,
        "CANCEL" => Action::Cancel,
        "AMEND" => Action::Amend,
        "PHASE" => Action::Phase,
        other => {
            return Err(StreamError::line(
                n,
                format!("action must be NEW, CANCEL, AMEND or PHASE, got {other:?}"),
            ))
        }
    };
    let needed = match action {
        Action::New | Action::Amend => 8,
        Action::Cancel => 4,
        Action::Phase => 6,
    };
    if count < needed {
        return Err(StreamError::line(
            n,
            format!(
                "{} row needs {needed} fields ({ORDERS_HEADER}), got {count}",
                action.as_str()
            ),
        ));
    }
    if action == Action::Phase {
        let phase = Phase::parse(f[5]).ok_or_else(|| {
            StreamError::line(
                n,
                format!(
                    "PHASE row: type must be ATO, CONTINUOUS, BREAK, ATC or CLOSED, got {:?}",
                    f[5]
                ),
            )
        })?;
        if let Some(i) = [1, 2, 3, 4, 6, 7].into_iter().find(|&i| !f[i].is_empty()) {
            return Err(StreamError::line(
                n,
                format!(
                    "PHASE row: only the type column is set (`PHASE,,,,,<phase>,,`), got {:?} in column {}",
                    f[i],
                    i + 1
                ),
            ));
        }
        return Ok(OrderRow::phase(phase));
    }
    let order_id = parse_u64(f[1]).ok_or_else(|| {
        StreamError::line(
            n,
            format!("order_id {:?} is not a non-negative integer", f[1]),
        )
    })?;
    if f[2].is_empty() {
        return Err(StreamError::line(n, "broker is empty"));
    }
    if f[3].is_empty() {
        return Err(StreamError::line(n, "security is empty"));
    }
    let parse_price = |v: &str| {
        parse_i64(v).ok_or_else(|| StreamError::line(n, format!("price {v:?} is not an integer")))
    };
    let parse_qty = |v: &str| {
        parse_u64(v)
            .ok_or_else(|| StreamError::line(n, format!("qty {v:?} is not a non-negative integer")))
    };
    let (side, kind, price, qty) = match action {
        Action::Cancel | Action::Phase => (None, None, 0, 0),
        Action::Amend => (None, None, parse_price(f[6])?, parse_qty(f[7])?),
        Action::New => {
            let side = parse_side(f[4]).ok_or_else(|| {
                StreamError::line(n, format!("side must be BUY or SELL, got {:?}", f[4]))
            })?;
            let kind = OrderType::parse(f[5]).ok_or_else(|| {
                StreamError::line(
                    n,
                    format!(
                        "type must be LO, MP, MTL, IOC, FOK, ATO or ATC, got {:?}",
                        f[5]
                    ),
                )
            })?;
            (Some(side), Some(kind), parse_price(f[6])?, parse_qty(f[7])?)
        }
    };
    Ok(OrderRow {
        action,
        order_id,
        broker: f[2].to_string(),
        security: f[3].to_string(),
        side,
        kind,
        price,
        qty,
        phase: None,
    })
}

/// Parses an orders CSV. The header is optional (detected on the first non-blank line); blank
/// lines are skipped; `\r\n` line ends are accepted; fields may be quoted as in RFC 4180 (a
/// broker name with a comma, a quote or a line break). Lines without a quote take a fast path.
pub fn parse_orders(text: &str) -> Result<Vec<OrderRow>, StreamError> {
    // Rough row count estimate (about 30 bytes a row) avoids repeated regrowth.
    let mut rows = Vec::with_capacity(text.len() / 30 + 1);
    let mut first = true;
    let mut lines = text.split('\n').enumerate();
    let mut quoted: Vec<String>;
    while let Some((i, raw)) = lines.next() {
        let n = i + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.trim().is_empty() {
            continue;
        }
        let mut f: [&str; 8] = [""; 8];
        let count = if line.as_bytes().contains(&b'"') {
            quoted = split_quoted(raw, &mut lines, n)?;
            for (slot, v) in f.iter_mut().zip(&quoted) {
                *slot = v;
            }
            quoted.len()
        } else {
            split_plain(line, &mut f, n)?
        };
        if std::mem::replace(&mut first, false) && f[0] == "action" {
            if count != 8 || f.join(",") != ORDERS_HEADER {
                return Err(StreamError::line(
                    n,
                    format!("header must be `{ORDERS_HEADER}`"),
                ));
            }
            continue;
        }
        rows.push(parse_fields(&f, count, n)?);
    }
    Ok(rows)
}

/// A text field as CSV: quoted (RFC 4180) only when it holds a comma, a quote, a line break,
/// or blanks at either end that an unquoted field would lose.
fn csv_field(s: &str) -> std::borrow::Cow<'_, str> {
    let needs_quotes = s.bytes().any(|b| matches!(b, b',' | b'"' | b'\n' | b'\r')) || s.trim() != s;
    if needs_quotes {
        format!("\"{}\"", s.replace('"', "\"\"")).into()
    } else {
        s.into()
    }
}

/// Writes rows as an orders CSV with header. CANCEL rows leave side, type, price, qty empty;
/// AMEND rows side and type; PHASE rows everything but the type column. Broker and security
/// names are quoted only when they need it.
pub fn write_orders(rows: &[OrderRow]) -> String {
    let mut s = String::with_capacity(rows.len() * 40 + ORDERS_HEADER.len() + 1);
    s.push_str(ORDERS_HEADER);
    s.push('\n');
    for r in rows {
        match r.action {
            Action::New => {
                let _ = writeln!(
                    s,
                    "NEW,{},{},{},{},{},{},{}",
                    r.order_id,
                    csv_field(&r.broker),
                    csv_field(&r.security),
                    r.side.map_or("", Side::as_str),
                    r.kind.map_or("", OrderType::as_str),
                    r.price,
                    r.qty
                );
            }
            Action::Cancel => {
                let _ = writeln!(
                    s,
                    "CANCEL,{},{},{},,,,",
                    r.order_id,
                    csv_field(&r.broker),
                    csv_field(&r.security)
                );
            }
            Action::Amend => {
                let _ = writeln!(
                    s,
                    "AMEND,{},{},{},,,{},{}",
                    r.order_id,
                    csv_field(&r.broker),
                    csv_field(&r.security),
                    r.price,
                    r.qty
                );
            }
            Action::Phase => {
                let _ = writeln!(s, "PHASE,,,,,{},,", r.phase.map_or("", Phase::as_str));
            }
        }
    }
    s
}

/// Broker name <-> [`BrokerId`], interned in first-seen order.
#[derive(Clone, Debug, Default)]
pub struct BrokerRegistry {
    names: Vec<String>,
    ids: FxHashMap<String, u32>,
}

impl BrokerRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// The id of `name`, assigning the next one if it is new.
    pub fn intern(&mut self, name: &str) -> BrokerId {
        if let Some(&id) = self.ids.get(name) {
            return BrokerId(id);
        }
        let id = self.names.len() as u32;
        self.names.push(name.to_string());
        self.ids.insert(name.to_string(), id);
        BrokerId(id)
    }

    /// The id of `name` if it was interned.
    pub fn get(&self, name: &str) -> Option<BrokerId> {
        self.ids.get(name).map(|&i| BrokerId(i))
    }

    pub fn name(&self, id: BrokerId) -> Option<&str> {
        self.names.get(id.0 as usize).map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// Turns a row into a command. An unlisted code maps to [`SecurityId::UNKNOWN`] (the gateway
/// rejects it). A NEW row without side/type (impossible from `parse_orders`) becomes a
/// BUY LO, which the rules then judge like any other order; a PHASE row without a phase
/// (equally impossible) becomes CONTINUOUS.
pub fn to_command(
    row: &OrderRow,
    securities: &SecurityTable,
    brokers: &mut BrokerRegistry,
) -> Command {
    let id = OrderId(row.order_id);
    let mut names = |row: &OrderRow| {
        (
            brokers.intern(&row.broker),
            securities.lookup(&row.security),
        )
    };
    match row.action {
        Action::Phase => Command::Phase(row.phase.unwrap_or_default()),
        Action::New => {
            let (broker, security) = names(row);
            Command::New(NewOrder {
                id,
                broker,
                security,
                side: row.side.unwrap_or(Side::Buy),
                kind: row.kind.unwrap_or(OrderType::Limit),
                price: row.price,
                qty: row.qty,
            })
        }
        Action::Cancel => {
            let (broker, security) = names(row);
            Command::Cancel(CancelOrder {
                id,
                broker,
                security,
            })
        }
        Action::Amend => {
            let (broker, security) = names(row);
            Command::Amend(AmendOrder {
                id,
                broker,
                security,
                price: row.price,
                qty: row.qty,
            })
        }
    }
}

/// Collects per-command events (in any sequence order) into the trades, totals and rejects
/// CSV files.
#[derive(Clone, Debug)]
pub struct ReplayCollector {
    codes: Vec<String>,
    /// Security ids in code byte order, for the totals file.
    by_code: Vec<u32>,
    /// Per security id: its rank in code byte order (a PHASE's auction trades are written in
    /// that order, whatever order the grid delivered them in).
    rank: Vec<u32>,
    /// (seq, code rank of the security, fill): sorted by the first two, stably.
    trades: Vec<(u64, u32, Fill)>,
    trades_sorted: bool,
    rejects: Vec<(u64, OrderId, &'static str)>,
    rejects_sorted: bool,
    /// Per security: (seq, bid_total, ask_total) of the highest seq seen.
    totals: Vec<Option<(u64, Qty, Qty)>>,
    commands: u64,
}

impl ReplayCollector {
    pub fn new(securities: &SecurityTable) -> Self {
        let codes: Vec<String> = securities.iter().map(|(_, c, _)| c.to_string()).collect();
        let mut by_code: Vec<u32> = (0..codes.len() as u32).collect();
        by_code.sort_by(|&a, &b| {
            codes[a as usize]
                .as_bytes()
                .cmp(codes[b as usize].as_bytes())
        });
        let mut rank = vec![0u32; codes.len()];
        for (r, &id) in by_code.iter().enumerate() {
            rank[id as usize] = r as u32;
        }
        Self {
            totals: vec![None; codes.len()],
            codes,
            by_code,
            rank,
            trades: Vec::new(),
            trades_sorted: true,
            rejects: Vec::new(),
            rejects_sorted: true,
            commands: 0,
        }
    }

    /// Records ALL events of the command with sequence `seq` (0-based input position).
    pub fn record(&mut self, seq: u64, events: &[Event]) {
        self.commands += 1;
        for ev in events {
            match *ev {
                Event::Fill(f) => {
                    let rank = self
                        .rank
                        .get(f.security.0 as usize)
                        .copied()
                        .unwrap_or(u32::MAX);
                    if self
                        .trades
                        .last()
                        .is_some_and(|&(s, r, _)| (s, r) > (seq, rank))
                    {
                        self.trades_sorted = false;
                    }
                    self.trades.push((seq, rank, f));
                }
                Event::Rejected { id, reason } => {
                    if self.rejects.last().is_some_and(|&(s, _, _)| s > seq) {
                        self.rejects_sorted = false;
                    }
                    self.rejects.push((seq, id, reason.code()));
                }
                Event::Totals {
                    security,
                    bid_total,
                    ask_total,
                } => {
                    if let Some(t) = self.totals.get_mut(security.0 as usize) {
                        if t.is_none_or(|(s, _, _)| s < seq) {
                            *t = Some((seq, bid_total, ask_total));
                        }
                    }
                }
                Event::Accepted { .. }
                | Event::Cancelled { .. }
                | Event::Rested { .. }
                | Event::Amended { .. }
                | Event::Auction { .. }
                | Event::Reference { .. } => {}
            }
        }
    }

    /// Number of `record` calls so far.
    pub fn commands(&self) -> u64 {
        self.commands
    }

    pub fn trade_count(&self) -> usize {
        self.trades.len()
    }

    pub fn reject_count(&self) -> usize {
        self.rejects.len()
    }

    /// Indexes of `trades` in output order: by seq, then security code, then fill order
    /// (the sort is stable).
    fn trade_order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.trades.len()).collect();
        if !self.trades_sorted {
            order.sort_by_key(|&i| (self.trades[i].0, self.trades[i].1));
        }
        order
    }

    /// Trades in output order: by seq, then security code, then fill order.
    pub fn trades(&self) -> Vec<Fill> {
        self.trade_order()
            .into_iter()
            .map(|i| self.trades[i].2)
            .collect()
    }

    fn code(&self, id: SecurityId) -> &str {
        self.codes.get(id.0 as usize).map_or("?", String::as_str)
    }

    pub fn trades_csv(&self) -> String {
        let mut s = String::with_capacity(self.trades.len() * 40 + 64);
        s.push_str(TRADES_HEADER);
        s.push('\n');
        let mut write = |f: &Fill| {
            let _ = writeln!(
                s,
                "{},{},{},{},{},{}",
                self.code(f.security),
                f.price,
                f.qty,
                f.buy.0,
                f.sell.0,
                f.aggressor.as_str()
            );
        };
        for i in self.trade_order() {
            write(&self.trades[i].2);
        }
        s
    }

    /// One row per listed security, sorted by code; `(0, 0)` for a security never touched.
    /// Replaces the totals with the books' final state as reported by an exchange (the grid's
    /// manager), for runs whose events alone do not cover every book (e.g. after a restart).
    pub fn set_final_totals(&mut self, totals: &[(SecurityId, Qty, Qty)]) {
        for &(id, bid, ask) in totals {
            if let Some(t) = self.totals.get_mut(id.0 as usize) {
                *t = Some((u64::MAX, bid, ask));
            }
        }
    }

    pub fn totals_csv(&self) -> String {
        let mut s = String::with_capacity(self.codes.len() * 24 + 32);
        s.push_str(TOTALS_HEADER);
        s.push('\n');
        for &i in &self.by_code {
            let (_, bid, ask) = self.totals[i as usize].unwrap_or((0, 0, 0));
            let _ = writeln!(s, "{},{},{}", self.codes[i as usize], bid, ask);
        }
        s
    }

    /// Rejects in input order.
    pub fn rejects_csv(&self) -> String {
        let mut r: Vec<&(u64, OrderId, &'static str)> = self.rejects.iter().collect();
        if !self.rejects_sorted {
            r.sort_by_key(|x| x.0);
        }
        let mut s = String::with_capacity(r.len() * 24 + 32);
        s.push_str(REJECTS_HEADER);
        s.push('\n');
        for (_, id, code) in r {
            let _ = writeln!(s, "{},{}", id.0, code);
        }
        s
    }
}

/// Replays rows through a fresh [`Exchange`] in input order (seq = row index).
pub fn replay_local(
    rules: MarketRules,
    securities: &SecurityTable,
    rows: &[OrderRow],
) -> ReplayCollector {
    let mut exchange = Exchange::new(rules, securities.clone());
    let mut brokers = BrokerRegistry::new();
    let mut collector = ReplayCollector::new(securities);
    let mut events = Vec::with_capacity(64);
    for (seq, row) in rows.iter().enumerate() {
        events.clear();
        let cmd = to_command(row, securities, &mut brokers);
        exchange.process(&cmd, &mut events);
        collector.record(seq as u64, &events);
    }
    collector
}
