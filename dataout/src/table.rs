//! The three tables (orders, trades, bars): one column list per table and one way to turn a row
//! into cells. The CSV and Parquet writers both consume these, so the two formats cannot
//! disagree on a column's name, order, type or null rule.
//!
//! Column types and units (the same in CSV and Parquet):
//!
//! | kind | Parquet (what pyarrow reads) | CSV |
//! |---|---|---|
//! | time | INT64 TIMESTAMP(NANOS, UTC) (`timestamp[ns, tz=UTC]`) | RFC 3339 UTC, 9 fraction digits |
//! | date | INT32 DATE (`date32`), the local trading day | `YYYY-MM-DD` |
//! | u32, u64 | INT32/INT64 INT(32/64, unsigned) (`uint32`, `uint64`) | decimal |
//! | i64 | INT64 INT(64, signed) (`int64`) | decimal |
//! | str | BYTE_ARRAY STRING (`string`) | text |
//! | decimal | FIXED_LEN_BYTE_ARRAY(16) DECIMAL(38, 0) (`decimal128(38, 0)`) | decimal |
//! | f64 | DOUBLE (`float64`) | shortest text that reads back to the same double |
//!
//! A null is an empty CSV field. Prices are in the smallest currency unit (VND), quantities in
//! shares, values in currency units (price x qty).

use matching::{Command, Timestamp};

use crate::bars::{Bar, MAX_VALUE};
use crate::error::DataError;
use crate::record::{OrderRecord, TradeRecord};
use crate::time::day_of_date;

/// The type of a column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Time,
    Date,
    U32,
    U64,
    I64,
    Str,
    Decimal,
    F64,
}

/// One column: name, type, whether it may be null, and what it holds.
#[derive(Clone, Copy, Debug)]
pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
    pub nullable: bool,
    pub doc: &'static str,
}

const fn col(name: &'static str, kind: Kind, doc: &'static str) -> Column {
    Column {
        name,
        kind,
        nullable: false,
        doc,
    }
}

const fn opt(name: &'static str, kind: Kind, doc: &'static str) -> Column {
    Column {
        name,
        kind,
        nullable: true,
        doc,
    }
}

/// One value of a row. `None` is null.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Cell<'a> {
    Time(Timestamp),
    /// Days since 1970-01-01.
    Date(i32),
    U32(u32),
    U64(Option<u64>),
    I64(Option<i64>),
    Str(Option<&'a str>),
    Decimal(i128),
    F64(f64),
}

impl Cell<'_> {
    pub fn kind(&self) -> Kind {
        match self {
            Cell::Time(_) => Kind::Time,
            Cell::Date(_) => Kind::Date,
            Cell::U32(_) => Kind::U32,
            Cell::U64(_) => Kind::U64,
            Cell::I64(_) => Kind::I64,
            Cell::Str(_) => Kind::Str,
            Cell::Decimal(_) => Kind::Decimal,
            Cell::F64(_) => Kind::F64,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Cell::U64(None) | Cell::I64(None) | Cell::Str(None))
    }
}

/// Receives a row's cells in column order.
pub trait CellSink {
    fn cell(&mut self, cell: Cell<'_>) -> Result<(), DataError>;
}

/// A row type that the writers can store.
pub trait Table {
    /// The columns, in file order.
    const COLUMNS: &'static [Column];
    /// Sends this row's cells, one per column in order, to `sink`. Refuses an invalid row
    /// before sending anything.
    fn cells(&self, sink: &mut dyn CellSink) -> Result<(), DataError>;
}

impl<T: Table> Table for &T {
    const COLUMNS: &'static [Column] = T::COLUMNS;

    fn cells(&self, sink: &mut dyn CellSink) -> Result<(), DataError> {
        (**self).cells(sink)
    }
}

/// Columns of `orders.csv` / `orders.parquet`: the replay orders format
/// (`action,order_id,broker,security,side,type,price,qty`) after `time` and `seq`, with the
/// same empty fields: CANCEL has no side, type, price, qty; AMEND no side, type; PHASE only the
/// type column, which holds the phase.
pub const ORDER_COLUMNS: &[Column] = &[
    col(
        "time",
        Kind::Time,
        "exchange time the command was sequenced at",
    ),
    col("seq", Kind::U64, "global sequence number"),
    col("action", Kind::Str, "NEW, CANCEL, AMEND or PHASE"),
    opt("order_id", Kind::U64, "client order id (null for PHASE)"),
    opt("broker", Kind::Str, "broker name (null for PHASE)"),
    opt("security", Kind::Str, "security code (null for PHASE)"),
    opt("side", Kind::Str, "BUY or SELL (NEW only)"),
    opt(
        "type",
        Kind::Str,
        "LO, MP, MTL, IOC, FOK, ATO, ATC (NEW); the phase (PHASE)",
    ),
    opt(
        "price",
        Kind::I64,
        "limit price, 0 for MP/MTL/ATO/ATC (NEW); new price (AMEND)",
    ),
    opt("qty", Kind::U64, "shares (NEW); new open quantity (AMEND)"),
];

/// Columns of `trades.csv` / `trades.parquet`, in tape order (`seq`, `fill`).
pub const TRADE_COLUMNS: &[Column] = &[
    col(
        "time",
        Kind::Time,
        "exchange time of the command that traded",
    ),
    col(
        "seq",
        Kind::U64,
        "sequence number of that command (the PHASE command for auction trades)",
    ),
    col(
        "fill",
        Kind::U32,
        "index of the trade among the command's trades",
    ),
    col("security", Kind::Str, "security code"),
    col("price", Kind::I64, "trade price"),
    col("qty", Kind::U64, "shares traded"),
    col("buy_order_id", Kind::U64, "buying order"),
    col("sell_order_id", Kind::U64, "selling order"),
    col("aggressor", Kind::Str, "BUY, SELL or AUCTION"),
];

/// Columns of `bars_<1s|1m|1d>.csv` / `.parquet`, ordered by security then start.
pub const BAR_COLUMNS: &[Column] = &[
    col("security", Kind::Str, "security code"),
    col("date", Kind::Date, "local trading day the bucket starts on"),
    col(
        "start",
        Kind::Time,
        "bucket start (a day starts at local midnight)",
    ),
    col("open", Kind::I64, "first trade's price"),
    col("high", Kind::I64, "highest price"),
    col("low", Kind::I64, "lowest price"),
    col("close", Kind::I64, "last trade's price"),
    col("volume", Kind::U64, "shares traded"),
    col("value", Kind::Decimal, "sum of price x qty, exact"),
    col("trades", Kind::U64, "number of trades"),
    col("vwap", Kind::F64, "value / volume"),
];

impl Table for TradeRecord<'_> {
    const COLUMNS: &'static [Column] = TRADE_COLUMNS;

    fn cells(&self, s: &mut dyn CellSink) -> Result<(), DataError> {
        self.validate()?;
        s.cell(Cell::Time(self.time))?;
        s.cell(Cell::U64(Some(self.seq)))?;
        s.cell(Cell::U32(self.fill))?;
        s.cell(Cell::Str(Some(self.security)))?;
        s.cell(Cell::I64(Some(self.price)))?;
        s.cell(Cell::U64(Some(self.qty)))?;
        s.cell(Cell::U64(Some(self.buy_order_id)))?;
        s.cell(Cell::U64(Some(self.sell_order_id)))?;
        s.cell(Cell::Str(Some(self.aggressor.as_str())))
    }
}

impl Table for OrderRecord<'_> {
    const COLUMNS: &'static [Column] = ORDER_COLUMNS;

    fn cells(&self, s: &mut dyn CellSink) -> Result<(), DataError> {
        type Fields<'a> = (
            &'static str,
            Option<u64>,
            Option<&'a str>,
            Option<&'a str>,
            Option<&'static str>,
            Option<&'static str>,
            Option<i64>,
            Option<u64>,
        );
        let (broker, security) = (Some(self.broker), Some(self.security));
        let f: Fields<'_> = match self.command {
            Command::New(o) => (
                "NEW",
                Some(o.id.0),
                broker,
                security,
                Some(o.side.as_str()),
                Some(o.kind.as_str()),
                Some(o.price),
                Some(o.qty),
            ),
            Command::Cancel(c) => (
                "CANCEL",
                Some(c.id.0),
                broker,
                security,
                None,
                None,
                None,
                None,
            ),
            Command::Amend(a) => (
                "AMEND",
                Some(a.id.0),
                broker,
                security,
                None,
                None,
                Some(a.price),
                Some(a.qty),
            ),
            Command::Phase(p) => (
                "PHASE",
                None,
                None,
                None,
                None,
                Some(p.as_str()),
                None,
                None,
            ),
        };
        s.cell(Cell::Time(self.time))?;
        s.cell(Cell::U64(Some(self.seq)))?;
        s.cell(Cell::Str(Some(f.0)))?;
        s.cell(Cell::U64(f.1))?;
        s.cell(Cell::Str(f.2))?;
        s.cell(Cell::Str(f.3))?;
        s.cell(Cell::Str(f.4))?;
        s.cell(Cell::Str(f.5))?;
        s.cell(Cell::I64(f.6))?;
        s.cell(Cell::U64(f.7))
    }
}

impl Table for Bar {
    const COLUMNS: &'static [Column] = BAR_COLUMNS;

    fn cells(&self, s: &mut dyn CellSink) -> Result<(), DataError> {
        self.validate()?;
        s.cell(Cell::Str(Some(&self.security)))?;
        s.cell(Cell::Date(day_of_date(self.date)))?;
        s.cell(Cell::Time(self.start))?;
        s.cell(Cell::I64(Some(self.open)))?;
        s.cell(Cell::I64(Some(self.high)))?;
        s.cell(Cell::I64(Some(self.low)))?;
        s.cell(Cell::I64(Some(self.close)))?;
        s.cell(Cell::U64(Some(self.volume)))?;
        s.cell(Cell::Decimal(self.value))?;
        s.cell(Cell::U64(Some(self.trades)))?;
        s.cell(Cell::F64(self.vwap()))
    }
}

impl Bar {
    /// Refuses a bar no trades could have made (the builder only makes valid ones; this guards
    /// bars built by hand).
    pub fn validate(&self) -> Result<(), DataError> {
        let problem = if self.volume == 0 || self.trades == 0 {
            "a bar needs at least one trade and positive volume"
        } else if !(self.low <= self.open.min(self.close) && self.high >= self.open.max(self.close))
            || self.low <= 0
        {
            "prices must satisfy 0 < low <= open, close <= high"
        } else if !(0..=MAX_VALUE).contains(&self.value) {
            "value must be within 0..=10^38-1"
        } else if self.security.is_empty() {
            "security code is empty"
        } else {
            return Ok(());
        };
        Err(DataError::InvalidBar {
            security: self.security.clone(),
            start: self.start,
            problem,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use matching::{
        Aggressor, AmendOrder, BrokerId, CancelOrder, NewOrder, OrderId, OrderType, Phase,
        SecurityId, Side,
    };

    struct Collect(Vec<(Kind, bool)>);
    impl CellSink for Collect {
        fn cell(&mut self, c: Cell<'_>) -> Result<(), DataError> {
            self.0.push((c.kind(), c.is_null()));
            Ok(())
        }
    }

    fn check<T: Table>(row: &T) {
        let mut c = Collect(Vec::new());
        row.cells(&mut c).unwrap();
        assert_eq!(c.0.len(), T::COLUMNS.len());
        for (col, (kind, null)) in T::COLUMNS.iter().zip(c.0) {
            assert_eq!(col.kind, kind, "column {}", col.name);
            assert!(col.nullable || !null, "column {} is not nullable", col.name);
        }
    }

    #[test]
    fn every_row_shape_matches_its_columns() {
        let (b, s) = (BrokerId(0), SecurityId(0));
        for command in [
            Command::New(NewOrder {
                id: OrderId(1),
                broker: b,
                security: s,
                side: Side::Buy,
                kind: OrderType::Mtl,
                price: 0,
                qty: 100,
            }),
            Command::Cancel(CancelOrder {
                id: OrderId(1),
                broker: b,
                security: s,
            }),
            Command::Amend(AmendOrder {
                id: OrderId(1),
                broker: b,
                security: s,
                price: 10,
                qty: 100,
            }),
            Command::Phase(Phase::Atc),
        ] {
            check(&OrderRecord {
                time: 1,
                seq: 2,
                command,
                broker: "B",
                security: "S",
            });
        }
        check(&TradeRecord {
            time: 1,
            seq: 2,
            fill: 0,
            security: "S",
            price: 10,
            qty: 1,
            buy_order_id: 1,
            sell_order_id: 2,
            aggressor: Aggressor::Auction,
        });
        check(&Bar {
            security: "S".into(),
            interval: crate::Interval::Day,
            start: 0,
            date: crate::time::date_of_day(0),
            open: 1,
            high: 2,
            low: 1,
            close: 2,
            volume: 3,
            value: 5,
            trades: 2,
        });
    }

    #[test]
    fn names_are_unique_and_nullability_is_as_documented() {
        for cols in [ORDER_COLUMNS, TRADE_COLUMNS, BAR_COLUMNS] {
            let mut names: Vec<_> = cols.iter().map(|c| c.name).collect();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), cols.len());
        }
        assert!(TRADE_COLUMNS.iter().chain(BAR_COLUMNS).all(|c| !c.nullable));
    }
}
