//! Parquet writer for any [`Table`], through arrow-rs: rows are gathered into Arrow record
//! batches of [`BATCH_ROWS`] (so memory stays bounded whatever the row count) and written with
//! Snappy compression. The Arrow schema is stored in the file, so readers get the timestamp's
//! UTC zone and the unsigned types back.

use std::io::Write;
use std::sync::Arc;

use arrow_array::builder::{
    Date32Builder, Decimal128Builder, Float64Builder, Int64Builder, StringBuilder,
    TimestampNanosecondBuilder, UInt32Builder, UInt64Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::ArrowError;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::error::DataError;
use crate::table::{schema, Cell, CellSink, Column, Kind, Table};

/// Rows per record batch (and the most rows held in memory at once).
pub const BATCH_ROWS: usize = 65_536;

enum Builder {
    Time(TimestampNanosecondBuilder),
    Date(Date32Builder),
    U32(UInt32Builder),
    U64(UInt64Builder),
    I64(Int64Builder),
    Str(StringBuilder),
    Decimal(Decimal128Builder),
    F64(Float64Builder),
}

impl Builder {
    fn new(kind: Kind) -> Result<Builder, DataError> {
        let n = BATCH_ROWS;
        Ok(match kind {
            Kind::Time => {
                Builder::Time(TimestampNanosecondBuilder::with_capacity(n).with_timezone("UTC"))
            }
            Kind::Date => Builder::Date(Date32Builder::with_capacity(n)),
            Kind::U32 => Builder::U32(UInt32Builder::with_capacity(n)),
            Kind::U64 => Builder::U64(UInt64Builder::with_capacity(n)),
            Kind::I64 => Builder::I64(Int64Builder::with_capacity(n)),
            Kind::Str => Builder::Str(StringBuilder::with_capacity(n, n * 8)),
            Kind::Decimal => Builder::Decimal(
                Decimal128Builder::with_capacity(n).with_precision_and_scale(38, 0)?,
            ),
            Kind::F64 => Builder::F64(Float64Builder::with_capacity(n)),
        })
    }

    fn push(&mut self, cell: Cell<'_>) -> bool {
        match (self, cell) {
            (Builder::Time(b), Cell::Time(v)) => b.append_value(v),
            (Builder::Date(b), Cell::Date(v)) => b.append_value(v),
            (Builder::U32(b), Cell::U32(v)) => b.append_value(v),
            (Builder::U64(b), Cell::U64(v)) => b.append_option(v),
            (Builder::I64(b), Cell::I64(v)) => b.append_option(v),
            (Builder::Str(b), Cell::Str(v)) => b.append_option(v),
            (Builder::Decimal(b), Cell::Decimal(v)) => b.append_value(v),
            (Builder::F64(b), Cell::F64(v)) => b.append_value(v),
            _ => return false,
        }
        true
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Time(b) => Arc::new(b.finish()),
            Builder::Date(b) => Arc::new(b.finish()),
            Builder::U32(b) => Arc::new(b.finish()),
            Builder::U64(b) => Arc::new(b.finish()),
            Builder::I64(b) => Arc::new(b.finish()),
            Builder::Str(b) => Arc::new(b.finish()),
            Builder::Decimal(b) => Arc::new(b.finish()),
            Builder::F64(b) => Arc::new(b.finish()),
        }
    }
}

struct BatchSink {
    columns: &'static [Column],
    builders: Vec<Builder>,
    next: usize,
}

impl CellSink for BatchSink {
    fn cell(&mut self, cell: Cell<'_>) -> Result<(), DataError> {
        let column = self.columns.get(self.next).map_or("(extra)", |c| c.name);
        let ok = self
            .builders
            .get_mut(self.next)
            .is_some_and(|b| b.push(cell));
        if !ok {
            return Err(ArrowError::SchemaError(format!(
                "column {column}: cell {cell:?} does not fit the column"
            ))
            .into());
        }
        self.next += 1;
        Ok(())
    }
}

/// The writer settings of every file: Snappy, one row group per 1 Mi rows, and a `created_by`
/// naming this crate.
fn properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(1 << 20))
        .set_created_by(format!("gridmatch dataout {}", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Writes `rows` as Parquet to `w`; returns the number of rows. Stops at the first invalid row
/// (the caller discards the partial output: see [`crate::write_file`]).
pub fn write_parquet<T: Table>(
    w: impl Write + Send,
    rows: impl IntoIterator<Item = T>,
) -> Result<u64, DataError> {
    let schema = schema::<T>();
    let mut writer = ArrowWriter::try_new(w, schema.clone(), Some(properties()))?;
    let mut sink = BatchSink {
        columns: T::COLUMNS,
        builders: T::COLUMNS
            .iter()
            .map(|c| Builder::new(c.kind))
            .collect::<Result<_, _>>()?,
        next: 0,
    };
    let mut in_batch = 0usize;
    let mut n = 0u64;
    let flush = |sink: &mut BatchSink, writer: &mut ArrowWriter<_>| -> Result<(), DataError> {
        let arrays: Vec<ArrayRef> = sink.builders.iter_mut().map(Builder::finish).collect();
        writer.write(&RecordBatch::try_new(schema.clone(), arrays)?)?;
        Ok(())
    };
    for row in rows {
        sink.next = 0;
        row.cells(&mut sink)?;
        if sink.next != T::COLUMNS.len() {
            return Err(ArrowError::SchemaError(format!(
                "row has {} cells, the table {} columns",
                sink.next,
                T::COLUMNS.len()
            ))
            .into());
        }
        in_batch += 1;
        n += 1;
        if in_batch == BATCH_ROWS {
            flush(&mut sink, &mut writer)?;
            in_batch = 0;
        }
    }
    if in_batch > 0 {
        flush(&mut sink, &mut writer)?;
    }
    writer.close()?;
    Ok(n)
}
