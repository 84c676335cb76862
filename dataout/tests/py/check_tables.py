"""Reads a table written as CSV and as Parquet and checks that pyarrow gets the documented
schema and exactly the same rows from both.

usage: check_tables.py TABLE CSV PARQUET
TABLE is orders, trades or bars. Prints the row count and the number of row groups; exits non-zero with a message on any
difference.
"""
import json
import sys

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

TS = pa.timestamp("ns", tz="UTC")

# The documented schema (README "Data out"): column, Arrow type, nullable.
SCHEMAS = {
    "orders": [
        ("time", TS, False),
        ("seq", pa.uint64(), False),
        ("action", pa.string(), False),
        ("order_id", pa.uint64(), True),
        ("broker", pa.string(), True),
        ("security", pa.string(), True),
        ("side", pa.string(), True),
        ("type", pa.string(), True),
        ("price", pa.int64(), True),
        ("qty", pa.uint64(), True),
    ],
    "trades": [
        ("time", TS, False),
        ("seq", pa.uint64(), False),
        ("fill", pa.uint32(), False),
        ("security", pa.string(), False),
        ("price", pa.int64(), False),
        ("qty", pa.uint64(), False),
        ("buy_order_id", pa.uint64(), False),
        ("sell_order_id", pa.uint64(), False),
        ("aggressor", pa.string(), False),
    ],
    "bars": [
        ("security", pa.string(), False),
        ("date", pa.date32(), False),
        ("start", TS, False),
        ("open", pa.int64(), False),
        ("high", pa.int64(), False),
        ("low", pa.int64(), False),
        ("close", pa.int64(), False),
        ("volume", pa.uint64(), False),
        ("value", pa.decimal128(38, 0), False),
        ("trades", pa.uint64(), False),
        ("vwap", pa.float64(), False),
    ],
}


def fail(msg):
    print(f"check_tables: {msg}", file=sys.stderr)
    sys.exit(1)


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in SCHEMAS:
        fail(__doc__)
    table, csv_path, parquet_path = sys.argv[1:]
    expected = pa.schema([pa.field(n, t, nullable=null) for n, t, null in SCHEMAS[table]])

    pf = pq.ParquetFile(parquet_path)
    from_parquet = pf.read()
    if not from_parquet.schema.equals(expected, check_metadata=False):
        fail(f"Parquet schema differs:\n{from_parquet.schema}\nexpected:\n{expected}")
    # The physical Parquet schema: timestamps are INT64 TIMESTAMP(NANOS, UTC).
    for i, (name, typ, _) in enumerate(SCHEMAS[table]):
        col = pf.schema.column(i)
        if col.name != name:
            fail(f"Parquet column {i} is {col.name}, expected {name}")
        if typ == TS:
            lt = json.loads(col.logical_type.to_json())
            if col.physical_type != "INT64" or lt.get("Type") != "Timestamp" \
                    or lt.get("isAdjustedToUTC") is not True or lt.get("timeUnit") != "nanoseconds":
                fail(f"column {name}: {col.physical_type} {lt}, expected INT64 TIMESTAMP(NANOS, UTC)")

    from_csv = pacsv.read_csv(
        csv_path,
        read_options=pacsv.ReadOptions(block_size=1 << 24),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types={n: t for n, t, _ in SCHEMAS[table]},
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            null_values=[""],
            true_values=[],
            false_values=[],
        ),
    )
    if from_csv.column_names != [n for n, _, _ in SCHEMAS[table]]:
        fail(f"CSV header is {from_csv.column_names}")
    from_csv = from_csv.cast(expected)
    if from_csv.num_rows != from_parquet.num_rows:
        fail(f"CSV has {from_csv.num_rows} rows, Parquet {from_parquet.num_rows}")
    for name in from_csv.column_names:
        a = from_csv.column(name).combine_chunks()
        b = from_parquet.column(name).combine_chunks()
        if not a.equals(b):
            for i in range(len(a)):
                if a[i] != b[i] and not (a[i].is_valid is False and b[i].is_valid is False):
                    fail(f"column {name} row {i}: CSV {a[i]!r}, Parquet {b[i]!r}")
            fail(f"column {name} differs")
    print(from_parquet.num_rows, pf.metadata.num_row_groups)


if __name__ == "__main__":
    main()
