//! Parquet writer for any [`Table`], on the `parquet` crate's own column writers (no Arrow:
//! the `arrow` feature would add arrow-select, arrow-ipc and friends, about half of this
//! crate's build time, for nothing this writer needs).
//!
//! Rows are buffered per column for one row group of at most [`ROW_GROUP_ROWS`] rows (so
//! memory stays bounded whatever the row count), then written column by column with Snappy
//! compression. The logical types carry everything readers need: pyarrow maps them to
//! `timestamp[ns, tz=UTC]`, `date32`, `uint32`/`uint64`, `int64`, `string`,
//! `decimal128(38, 0)` and `float64` (see [`crate::table`]).

use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use parquet::basic::{Compression, LogicalType, Repetition, TimeUnit, Type as Physical};
use parquet::column::writer::ColumnWriter;
use parquet::data_type::{ByteArray, FixedLenByteArray};
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type;

use rustc_hash::FxHashMap;

use crate::error::DataError;
use crate::table::{Cell, CellSink, Column, Kind, Table};

/// Rows per row group (and the most rows held in memory at once).
pub const ROW_GROUP_ROWS: usize = 262_144;

/// The Parquet schema of a table.
pub fn parquet_schema(columns: &[Column]) -> Result<Type, DataError> {
    let fields = columns
        .iter()
        .map(|c| {
            let (physical, logical) = match c.kind {
                Kind::Time => (
                    Physical::INT64,
                    Some(LogicalType::timestamp(true, TimeUnit::NANOS)),
                ),
                Kind::Date => (Physical::INT32, Some(LogicalType::Date)),
                Kind::U32 => (Physical::INT32, Some(LogicalType::integer(32, false))),
                Kind::U64 => (Physical::INT64, Some(LogicalType::integer(64, false))),
                Kind::I64 => (Physical::INT64, Some(LogicalType::integer(64, true))),
                Kind::Str => (Physical::BYTE_ARRAY, Some(LogicalType::String)),
                Kind::Decimal => (
                    Physical::FIXED_LEN_BYTE_ARRAY,
                    Some(LogicalType::decimal(0, 38)),
                ),
                Kind::F64 => (Physical::DOUBLE, None),
            };
            let mut b = Type::primitive_type_builder(c.name, physical)
                .with_logical_type(logical)
                .with_repetition(if c.nullable {
                    Repetition::OPTIONAL
                } else {
                    Repetition::REQUIRED
                });
            if c.kind == Kind::Decimal {
                b = b.with_length(16).with_precision(38).with_scale(0);
            }
            Ok(Arc::new(b.build()?))
        })
        .collect::<Result<Vec<_>, ParquetError>>()?;
    Ok(Type::group_type_builder("schema")
        .with_fields(fields)
        .build()?)
}

/// One column's values for the current row group; `defs` holds 1 (value) or 0 (null) per row
/// for an optional column.
enum Values {
    I32(Vec<i32>),
    I64(Vec<i64>),
    F64(Vec<f64>),
    Bytes(Vec<ByteArray>),
    Fixed(Vec<FixedLenByteArray>),
}

struct Buffer {
    values: Values,
    defs: Option<Vec<i16>>,
    /// Strings seen in this column (codes, sides, actions repeat endlessly): a hit clones a
    /// reference-counted buffer instead of allocating. Capped at [`STRING_CACHE`] entries.
    strings: FxHashMap<Box<[u8]>, ByteArray>,
}

/// Most distinct strings remembered per column.
const STRING_CACHE: usize = 4096;

fn byte_array(cache: &mut FxHashMap<Box<[u8]>, ByteArray>, s: &str) -> ByteArray {
    if let Some(b) = cache.get(s.as_bytes()) {
        return b.clone();
    }
    let b = ByteArray::from(Bytes::copy_from_slice(s.as_bytes()));
    if cache.len() < STRING_CACHE {
        cache.insert(s.as_bytes().into(), b.clone());
    }
    b
}

impl Buffer {
    fn new(c: &Column) -> Buffer {
        let values = match c.kind {
            Kind::Date | Kind::U32 => Values::I32(Vec::new()),
            Kind::Time | Kind::U64 | Kind::I64 => Values::I64(Vec::new()),
            Kind::F64 => Values::F64(Vec::new()),
            Kind::Str => Values::Bytes(Vec::new()),
            Kind::Decimal => Values::Fixed(Vec::new()),
        };
        Buffer {
            values,
            defs: c.nullable.then(Vec::new),
            strings: FxHashMap::default(),
        }
    }

    /// Appends a cell; false if it does not fit the column (a bug in a [`Table`] impl).
    fn push(&mut self, cell: Cell<'_>) -> bool {
        let present = !cell.is_null();
        match (&mut self.defs, present) {
            (Some(d), _) => d.push(i16::from(present)),
            (None, false) => return false,
            (None, true) => {}
        }
        match (&mut self.values, cell) {
            (Values::I64(v), Cell::Time(t)) => v.push(t),
            (Values::I32(v), Cell::Date(d)) => v.push(d),
            // Unsigned values travel as their bit pattern; the logical type says unsigned.
            (Values::I32(v), Cell::U32(x)) => v.push(x as i32),
            (Values::I64(v), Cell::U64(x)) => v.extend(x.map(|x| x as i64)),
            (Values::I64(v), Cell::I64(x)) => v.extend(x),
            (Values::Bytes(v), Cell::Str(s)) => {
                v.extend(s.map(|s| byte_array(&mut self.strings, s)))
            }
            // DECIMAL in a 16-byte fixed array: big-endian two's complement.
            (Values::Fixed(v), Cell::Decimal(x)) => {
                v.push(FixedLenByteArray::from(x.to_be_bytes().to_vec()))
            }
            (Values::F64(v), Cell::F64(x)) => v.push(x),
            _ => return false,
        }
        true
    }

    fn write(&mut self, w: &mut ColumnWriter<'_>) -> Result<(), DataError> {
        let defs = self.defs.as_deref();
        let ok = match (&self.values, w) {
            (Values::I32(v), ColumnWriter::Int32ColumnWriter(w)) => w.write_batch(v, defs, None),
            (Values::I64(v), ColumnWriter::Int64ColumnWriter(w)) => w.write_batch(v, defs, None),
            (Values::F64(v), ColumnWriter::DoubleColumnWriter(w)) => w.write_batch(v, defs, None),
            (Values::Bytes(v), ColumnWriter::ByteArrayColumnWriter(w)) => {
                w.write_batch(v, defs, None)
            }
            (Values::Fixed(v), ColumnWriter::FixedLenByteArrayColumnWriter(w)) => {
                w.write_batch(v, defs, None)
            }
            _ => Err(ParquetError::General(
                "column buffer does not match the schema".into(),
            )),
        };
        ok?;
        match &mut self.values {
            Values::I32(v) => v.clear(),
            Values::I64(v) => v.clear(),
            Values::F64(v) => v.clear(),
            Values::Bytes(v) => v.clear(),
            Values::Fixed(v) => v.clear(),
        }
        if let Some(d) = &mut self.defs {
            d.clear();
        }
        Ok(())
    }
}

struct RowSink {
    columns: &'static [Column],
    buffers: Vec<Buffer>,
    next: usize,
}

impl CellSink for RowSink {
    fn cell(&mut self, cell: Cell<'_>) -> Result<(), DataError> {
        let ok = self
            .buffers
            .get_mut(self.next)
            .is_some_and(|b| b.push(cell));
        if !ok {
            let column = self.columns.get(self.next).map_or("(extra)", |c| c.name);
            return Err(ParquetError::General(format!(
                "column {column}: cell {cell:?} does not fit the column"
            ))
            .into());
        }
        self.next += 1;
        Ok(())
    }
}

/// The writer settings of every file: Snappy, and a `created_by` naming this crate.
fn properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_created_by(format!("gridmatch dataout {}", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Writes `rows` as Parquet to `w` in row groups of [`ROW_GROUP_ROWS`]; returns the number of
/// rows. Stops at the first invalid row (the caller discards the partial output: see
/// [`crate::write_file`]).
pub fn write_parquet<T: Table>(
    w: impl Write + Send,
    rows: impl IntoIterator<Item = T>,
) -> Result<u64, DataError> {
    write_parquet_grouped(w, rows, ROW_GROUP_ROWS)
}

/// [`write_parquet`] with row groups of `group_rows` rows (at least 1).
pub fn write_parquet_grouped<T: Table>(
    w: impl Write + Send,
    rows: impl IntoIterator<Item = T>,
    group_rows: usize,
) -> Result<u64, DataError> {
    let group_rows = group_rows.max(1);
    let schema = Arc::new(parquet_schema(T::COLUMNS)?);
    let mut writer = SerializedFileWriter::new(w, schema, Arc::new(properties()))?;
    let mut sink = RowSink {
        columns: T::COLUMNS,
        buffers: T::COLUMNS.iter().map(Buffer::new).collect(),
        next: 0,
    };
    let flush = |sink: &mut RowSink, writer: &mut SerializedFileWriter<_>| {
        let mut group = writer.next_row_group()?;
        for buffer in &mut sink.buffers {
            let Some(mut column) = group.next_column()? else {
                return Err(ParquetError::General("fewer columns than the schema".into()).into());
            };
            buffer.write(column.untyped())?;
            column.close()?;
        }
        group.close()?;
        Ok::<(), DataError>(())
    };
    let (mut in_group, mut n) = (0usize, 0u64);
    for row in rows {
        sink.next = 0;
        row.cells(&mut sink)?;
        if sink.next != T::COLUMNS.len() {
            return Err(ParquetError::General(format!(
                "row has {} cells, the table {} columns",
                sink.next,
                T::COLUMNS.len()
            ))
            .into());
        }
        in_group += 1;
        n += 1;
        if in_group == group_rows {
            flush(&mut sink, &mut writer)?;
            in_group = 0;
        }
    }
    if in_group > 0 {
        flush(&mut sink, &mut writer)?;
    }
    writer.close()?;
    Ok(n)
}
