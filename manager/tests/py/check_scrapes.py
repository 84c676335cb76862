"""Parses /metrics scrapes taken during and after a load with prometheus_client's OpenMetrics
parser, and checks them against what user-sim reported for that load.

usage: check_scrapes.py LOAD_JSON SCRAPE [SCRAPE ...]

Every scrape must parse strictly; counters must never decrease from one scrape to the next; in
the last scrape the commands counted by the manager (orders + cancels + amends, every result)
must equal the commands user-sim sent, its rejects user-sim's rejects, its trades user-sim's
fills. Prints the totals; exits non-zero with a message on any problem.
"""
import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families


def fail(msg):
    print(f"check_scrapes: {msg}", file=sys.stderr)
    sys.exit(1)


def parse(path):
    with open(path) as f:
        text = f.read()
    try:
        families = list(text_string_to_metric_families(text))
    except Exception as e:
        fail(f"{path}: does not parse as OpenMetrics: {e}")
    samples = {}
    for fam in families:
        for s in fam.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = (fam.type, s.value)
    return samples


def total(samples, name, **match):
    return sum(
        v
        for (n, labels), (_, v) in samples.items()
        if n == name and all(dict(labels).get(k) == w for k, w in match.items())
    )


def main():
    load = json.load(open(sys.argv[1]))
    scrapes = [parse(p) for p in sys.argv[2:]]
    for prev, cur in zip(scrapes, scrapes[1:]):
        for key, (kind, v) in prev.items():
            if kind in ("counter", "histogram") and key in cur and cur[key][1] < v:
                fail(f"{key} went down from {v} to {cur[key][1]}")
    last = scrapes[-1]
    commands = (
        total(last, "gridmatch_orders_total")
        + total(last, "gridmatch_cancels_total")
        + total(last, "gridmatch_amends_total")
    )
    rejected = (
        total(last, "gridmatch_orders_total", result="rejected")
        + total(last, "gridmatch_cancels_total", result="rejected")
        + total(last, "gridmatch_amends_total", result="rejected")
    )
    trades = total(last, "gridmatch_trades_total")
    if commands != load["orders"]:
        fail(f"manager counted {commands} commands, user-sim sent {load['orders']}")
    if rejected != load["rejected"]:
        fail(f"manager counted {rejected} rejects, user-sim saw {load['rejected']}")
    if trades != load["fills"]:
        fail(f"manager counted {trades} trades, user-sim saw {load['fills']} fills")
    latency = total(last, "gridmatch_order_latency_seconds_count")
    if latency < load["orders"]:
        fail(f"only {latency} latencies observed for {load['orders']} commands")
    print(int(commands), int(rejected), int(trades))


main()
