"""Parses /metrics scrapes with prometheus_client's OpenMetrics parser and checks them.

usage: check_metrics.py EXPECTED_JSON SCRAPE [SCRAPE ...]

Every scrape must parse strictly; label names must come from the bounded set; histograms
must be cumulative with _count equal to the +Inf bucket; counters and histogram series must
never decrease from one scrape to the next. The last scrape must hold exactly the expected
values (EXPECTED_JSON: {"families": [names], "samples": [[name, {labels}, value], ...]}).
Prints the number of samples checked; exits non-zero with a message on any problem.
"""
import json
import math
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families

ALLOWED_LABELS = {"type", "side", "result", "action", "reason", "aggressor", "kind", "phase", "executor", "view", "le"}


def sample_key(name, labels):
    """Labels sorted; `le` compared as a number (1e-06 and 0.000001 are one bound)."""
    items = [(k, repr(float(v)) if k == "le" else v) for k, v in labels.items()]
    return (name, tuple(sorted(items)))


def fail(msg):
    print(f"check_metrics: {msg}", file=sys.stderr)
    sys.exit(1)


def parse(path):
    with open(path) as f:
        text = f.read()
    try:
        families = list(text_string_to_metric_families(text))
    except Exception as e:  # the parser raises ValueError with the offending line
        fail(f"{path}: does not parse as OpenMetrics: {e}")
    samples = {}
    for fam in families:
        for s in fam.samples:
            extra = set(s.labels) - ALLOWED_LABELS
            if extra:
                fail(f"{path}: {s.name} has unbounded-looking labels {extra}")
            key = sample_key(s.name, s.labels)
            if key in samples:
                fail(f"{path}: duplicate sample {key}")
            samples[key] = (s.value, fam.type)
        if fam.type == "histogram":
            check_histogram(path, fam)
    return {f.name: f.type for f in families}, samples


def check_histogram(path, fam):
    series = {}
    for s in fam.samples:
        labels = {k: v for k, v in s.labels.items() if k != "le"}
        key = tuple(sorted(labels.items()))
        entry = series.setdefault(key, {"buckets": [], "count": None})
        if s.name.endswith("_bucket"):
            entry["buckets"].append((float(s.labels["le"]), s.value))
        elif s.name.endswith("_count"):
            entry["count"] = s.value
    for key, e in series.items():
        bounds = [b for b, _ in e["buckets"]]
        if bounds != sorted(bounds) or not math.isinf(bounds[-1]):
            fail(f"{path}: {fam.name}{key} buckets out of order or without +Inf")
        counts = [c for _, c in e["buckets"]]
        if counts != sorted(counts):
            fail(f"{path}: {fam.name}{key} buckets are not cumulative: {counts}")
        if e["count"] != counts[-1]:
            fail(f"{path}: {fam.name}{key} _count {e['count']} != +Inf bucket {counts[-1]}")
        finite = [b for b in bounds if not math.isinf(b)]
        if finite[0] > 1e-5:
            fail(f"{path}: {fam.name} has no microsecond buckets (first bound {finite[0]} s)")


def main():
    if len(sys.argv) < 3:
        fail(__doc__)
    with open(sys.argv[1]) as f:
        expected = json.load(f)
    previous = None
    for path in sys.argv[2:]:
        types, samples = parse(path)
        if previous is not None:
            for key, (value, kind) in previous.items():
                if kind in ("counter", "histogram") and key in samples and samples[key][0] < value:
                    fail(f"{path}: {key} went down from {value} to {samples[key][0]}")
        previous = samples
    if sorted(types) != sorted(expected["families"]):
        fail(f"families {sorted(types)} != expected {sorted(expected['families'])}")
    for name, labels, value in expected["samples"]:
        key = sample_key(name, labels)
        if key not in samples:
            fail(f"missing sample {name}{labels}")
        got = samples[key][0]
        if not math.isclose(got, value, rel_tol=1e-9, abs_tol=1e-12):
            fail(f"{name}{labels} = {got}, expected {value}")
    print(len(expected["samples"]))


if __name__ == "__main__":
    main()
