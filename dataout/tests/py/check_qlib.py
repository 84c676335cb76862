"""Reads a Qlib data directory back and checks it against the daily bars it was made from.

usage: check_qlib.py QLIB_DIR DAILY_BARS_CSV

Two readers: (1) numpy, exactly as qlib.data.storage.file_storage.FileFeatureStorage reads a
.bin file (first little-endian float32 = start index into the calendar, then one value per
day), and (2) Qlib's own loader, qlib.init + D.features. Both must give the values the bars
imply: the fields of each trading day, NaN on calendar days inside an instrument's span
without trades. Prints "<days> <instruments>"; exits non-zero with a message on any
difference.
"""
import csv
import math
import os
import sys
import tempfile

import numpy as np

FIELDS = ["open", "high", "low", "close", "volume", "vwap", "amount", "factor", "change"]
RESERVED = {"CON", "PRN", "AUX", "NUL"} | {f"COM{i}" for i in range(10)} | {f"LPT{i}" for i in range(10)}


def fail(msg):
    print(f"check_qlib: {msg}", file=sys.stderr)
    sys.exit(1)


def code_to_fname(code):
    # qlib.utils.code_to_fname
    return "_qlib_" + code if code.upper() in RESERVED else code


def expected_from_bars(path):
    """{security: {date: {field: float32}}} from the daily bars CSV."""
    bars = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            bars.setdefault(row["security"], {})[row["date"]] = row
    out = {}
    for sec, days in bars.items():
        prev_close = None
        out[sec] = {}
        for date in sorted(days):
            r = days[date]
            close = int(r["close"])
            change = math.nan if prev_close is None else close / prev_close - 1.0
            out[sec][date] = {
                "open": np.float32(int(r["open"])),
                "high": np.float32(int(r["high"])),
                "low": np.float32(int(r["low"])),
                "close": np.float32(close),
                "volume": np.float32(int(r["volume"])),
                "vwap": np.float32(float(r["vwap"])),
                "amount": np.float32(int(r["value"])),
                "factor": np.float32(1.0),
                "change": np.float32(change),
            }
            prev_close = close
    return out


def same(a, b):
    a, b = np.float32(a), np.float32(b)
    return (np.isnan(a) and np.isnan(b)) or a == b


def check_with_numpy(root, expected):
    with open(os.path.join(root, "calendars", "day.txt")) as f:
        calendar = [line.strip() for line in f if line.strip()]
    all_days = sorted({d for days in expected.values() for d in days})
    if calendar != all_days:
        fail(f"calendar {calendar[:5]}... differs from the bars' trading days {all_days[:5]}...")
    with open(os.path.join(root, "instruments", "all.txt")) as f:
        lines = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    spans = {sym: (start, end) for sym, start, end in lines}
    if len(spans) != len(lines):
        fail("duplicate symbol in instruments/all.txt")
    want = {sec.upper(): (min(d), max(d)) for sec, d in expected.items()}
    if spans != want:
        fail(f"instruments {spans} differ from {want}")
    for sec, days in expected.items():
        first, last = calendar.index(min(days)), calendar.index(max(days))
        for field in FIELDS:
            path = os.path.join(root, "features", code_to_fname(sec).lower(), f"{field}.day.bin")
            with open(path, "rb") as fp:
                start = int(np.frombuffer(fp.read(4), dtype="<f")[0])
                data = np.frombuffer(fp.read(), dtype="<f")
            if start != first:
                fail(f"{path}: start index {start}, expected {first}")
            if len(data) != last - first + 1:
                fail(f"{path}: {len(data)} values, expected {last - first + 1}")
            for i, v in enumerate(data):
                date = calendar[first + i]
                want_v = days[date][field] if date in days else np.float32("nan")
                if not same(v, want_v):
                    fail(f"{path} {date}: {v!r}, expected {want_v!r}")
    return calendar


def check_with_qlib(root, expected, calendar):
    try:
        import qlib
        from qlib.data import D
    except ImportError as e:
        fail(f"Qlib is not importable ({e}): run scripts/venv.sh")
    qlib.init(provider_uri=root, region="cn", kernels=1, expression_cache=None, dataset_cache=None)
    cal = [str(d.date()) for d in D.calendar(freq="day")]
    if cal != calendar:
        fail(f"Qlib calendar {cal[:3]}... differs from calendars/day.txt")
    symbols = sorted(D.list_instruments(D.instruments("all"), as_list=True))
    if symbols != sorted(s.upper() for s in expected):
        fail(f"Qlib instruments {symbols} differ from the bars' securities")
    df = D.features(symbols, ["$" + f for f in FIELDS], freq="day")
    seen = 0
    for (sym, ts), row in df.iterrows():
        sec = next(s for s in expected if s.upper() == sym)
        date = str(ts.date())
        for f in FIELDS:
            want_v = expected[sec][date][f] if date in expected[sec] else np.float32("nan")
            if not same(row["$" + f], want_v):
                fail(f"Qlib D.features {sym} {date} ${f}: {row['$' + f]!r}, expected {want_v!r}")
        seen += 1
    spans = sum(calendar.index(max(d)) - calendar.index(min(d)) + 1 for d in expected.values())
    if seen != spans:
        fail(f"Qlib returned {seen} rows, the instruments' spans hold {spans}")


def main():
    if len(sys.argv) != 3:
        fail(__doc__)
    root, bars = os.path.abspath(sys.argv[1]), sys.argv[2]
    expected = expected_from_bars(bars)
    calendar = check_with_numpy(root, expected)
    # Qlib may create run directories (mlruns) in the working directory: keep them out, and
    # leave nothing behind.
    with tempfile.TemporaryDirectory(prefix="qlib-check-") as scratch:
        os.chdir(scratch)
        check_with_qlib(root, expected, calendar)
        os.chdir(root)
    print(len(calendar), len(expected))


if __name__ == "__main__":
    main()
