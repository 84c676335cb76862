//! CSV writer for any [`Table`]: a header row of the column names, then one record per row.
//! Nulls are empty fields; see [`crate::table`] for how each type is written.

use std::fmt::Write as _;
use std::io::Write;

use crate::error::DataError;
use crate::table::{Cell, CellSink, Table};
use crate::time::{date_of_day, write_date, write_timestamp};

struct CsvSink<W: Write> {
    out: csv::Writer<W>,
    field: String,
}

impl<W: Write> CellSink for CsvSink<W> {
    fn cell(&mut self, cell: Cell<'_>) -> Result<(), DataError> {
        let f = &mut self.field;
        f.clear();
        match cell {
            Cell::Time(t) => write_timestamp(f, t),
            Cell::Date(d) => write_date(f, date_of_day(d)),
            Cell::U32(v) => {
                let _ = write!(f, "{v}");
            }
            Cell::U64(v) => {
                if let Some(v) = v {
                    let _ = write!(f, "{v}");
                }
            }
            Cell::I64(v) => {
                if let Some(v) = v {
                    let _ = write!(f, "{v}");
                }
            }
            Cell::Str(v) => f.push_str(v.unwrap_or("")),
            Cell::Decimal(v) => {
                let _ = write!(f, "{v}");
            }
            // Rust prints the shortest decimal that parses back to the same double.
            Cell::F64(v) => {
                let _ = write!(f, "{v}");
            }
        }
        self.out.write_field(f.as_bytes())?;
        Ok(())
    }
}

/// Writes `rows` as CSV to `w`; returns the number of rows. Stops at the first invalid row
/// (the caller discards the partial output: see [`crate::write_file`]).
pub fn write_csv<T: Table>(
    w: impl Write,
    rows: impl IntoIterator<Item = T>,
) -> Result<u64, DataError> {
    let mut sink = CsvSink {
        out: csv::WriterBuilder::new()
            .terminator(csv::Terminator::Any(b'\n'))
            .from_writer(w),
        field: String::with_capacity(40),
    };
    sink.out.write_record(T::COLUMNS.iter().map(|c| c.name))?;
    let mut n = 0u64;
    for row in rows {
        row.cells(&mut sink)?;
        sink.out.write_record(None::<&[u8]>)?;
        n += 1;
    }
    sink.out.flush().map_err(csv::Error::from)?;
    Ok(n)
}
