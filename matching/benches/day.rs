//! Engine throughput on the benchmark mix (70% LO, 10% MP/IOC/FOK, 10% cancels, 10% amends)
//! over 300 listings, against the naive reference on a prefix in the same run; the same mix
//! over whole trading days through the exchange; and the uncross time of a 100k-order book.
//!
//! `cargo bench -p matching --bench day [-- --commands N]` (release profile). Prints figures;
//! asserts nothing about speed.

#[allow(dead_code)]
#[path = "../tests/common/naive.rs"]
mod naive;

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use matching::{
    AmendOrder, BrokerId, CancelOrder, Command, Engine, Event, Exchange, MarketRules, NewOrder,
    OrderId, OrderType, Phase, Price, Qty, SecurityId, SecurityTable, Side,
};
use naive::NaiveExchange;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const LISTINGS: usize = 300;
const SEED: u64 = 7;
const NAIVE_PREFIX: usize = 100_000;

/// A price `steps` ticks from `reference` on the HOSE grid.
fn price_near(rules: &MarketRules, reference: Price, steps: i64) -> Price {
    let mut p = rules.round_to_tick(reference, true);
    for _ in 0..steps.abs() {
        p = if steps > 0 {
            p + rules.tick(p)
        } else {
            rules.round_to_tick(p - 1, false)
        };
    }
    p
}

/// One of the generator's own resting orders, as it knows it from the shadow exchange's events.
#[derive(Clone, Copy)]
struct Live {
    broker: u32,
    side: Side,
    price: Price,
    qty: Qty,
}

/// The generator's view of its orders: what a broker learns from its reports.
#[derive(Default)]
struct Orders {
    live: HashMap<u64, Live>,
    /// Per security: ids that rested (some since gone; pruned when picked).
    candidates: Vec<Vec<u64>>,
}

impl Orders {
    fn learn(&mut self, cmd: &Command, events: &[Event]) {
        for ev in events {
            match *ev {
                Event::Rested {
                    id,
                    security,
                    side,
                    price,
                    qty,
                } => {
                    let broker = cmd.broker().map_or(0, |b| b.0);
                    self.live.insert(
                        id.0,
                        Live {
                            broker,
                            side,
                            price,
                            qty,
                        },
                    );
                    self.candidates[security.0 as usize].push(id.0);
                }
                Event::Fill(f) => {
                    for id in [f.buy.0, f.sell.0] {
                        if let Some(l) = self.live.get_mut(&id) {
                            l.qty = l.qty.saturating_sub(f.qty);
                            if l.qty == 0 {
                                self.live.remove(&id);
                            }
                        }
                    }
                }
                Event::Cancelled { id, .. } => {
                    self.live.remove(&id.0);
                }
                Event::Amended {
                    id,
                    price,
                    qty,
                    priority_kept,
                    ..
                } => {
                    if priority_kept {
                        if let Some(l) = self.live.get_mut(&id.0) {
                            (l.price, l.qty) = (price, qty);
                        }
                    } else {
                        // Re-enters: its Fills and Rested follow.
                        self.live.remove(&id.0);
                    }
                }
                _ => {}
            }
        }
    }

    /// A live order of security `s`, if one of a few random picks finds one.
    fn pick(&mut self, s: usize, rng: &mut ChaCha8Rng) -> Option<(u64, Live)> {
        let c = &mut self.candidates[s];
        for _ in 0..8 {
            if c.is_empty() {
                return None;
            }
            let i = rng.gen_range(0..c.len());
            match self.live.get(&c[i]) {
                Some(l) => return Some((c[i], *l)),
                None => {
                    c.swap_remove(i);
                }
            }
        }
        None
    }
}

/// A limit price placed against the shadow book's touch, as traders do: a quarter cross the
/// spread (up to 2 ticks through the opposite best), the rest join or sit up to 4 ticks behind
/// their own side's best (around the reference when that side is empty). Kept inside the band.
fn limit_price(
    rules: &MarketRules,
    shadow: &Exchange,
    sec: SecurityId,
    reference: Price,
    side: Side,
    rng: &mut ChaCha8Rng,
) -> Price {
    let (bids, asks) = shadow.engine().depth(sec, 1);
    let (own, opposite, away) = match side {
        Side::Buy => (bids.first(), asks.first(), -1),
        Side::Sell => (asks.first(), bids.first(), 1),
    };
    let price = match (opposite, rng.gen_range(0..4)) {
        (Some(&(p, _)), 0) => price_near(rules, p, -away * rng.gen_range(0..=2)),
        _ => match own {
            Some(&(p, _)) => price_near(rules, p, away * rng.gen_range(0..=4)),
            None => price_near(rules, reference, away * rng.gen_range(1..=3)),
        },
    };
    let (lo, hi) = shadow
        .engine()
        .book(sec)
        .and_then(|b| b.band())
        .unwrap_or((1, Price::MAX));
    price.clamp(lo, hi)
}

/// The seeded benchmark stream. Limit prices are placed against the current touch (see
/// [`limit_price`]); cancels and amends aim at the
/// generator's own live orders, as a broker's would (tracked from a shadow exchange's events),
/// so books stay a realistic size. `day_every`: a phase change (HOSE schedule) every that many
/// commands; in call phases the takers become the phase's ATO/ATC orders.
fn stream(table: &SecurityTable, n: usize, day_every: Option<usize>) -> Vec<Command> {
    const SCHEDULE: [Phase; 6] = [
        Phase::Ato,
        Phase::Continuous,
        Phase::Break,
        Phase::Continuous,
        Phase::Atc,
        Phase::Closed,
    ];
    let rules = MarketRules::hose();
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let refs: Vec<Price> = table.iter().map(|(_, _, r)| r).collect();
    let mut shadow = Exchange::new(rules, table.clone());
    let mut orders = Orders {
        candidates: vec![Vec::new(); refs.len()],
        ..Orders::default()
    };
    let mut out = Vec::new();
    let mut cmds = Vec::with_capacity(n + n / 1_000);
    let mut phase_step = 1;
    let mut phase = Phase::Continuous;
    for i in 0..n as u64 {
        if let Some(every) = day_every {
            if i > 0 && i % every as u64 == 0 {
                phase_step = (phase_step + 1) % SCHEDULE.len();
                phase = SCHEDULE[phase_step];
                let cmd = Command::Phase(phase);
                out.clear();
                shadow.process(&cmd, &mut out);
                orders.learn(&cmd, &out);
                cmds.push(cmd);
            }
        }
        let s = rng.gen_range(0..refs.len());
        let sec = SecurityId(s as u32);
        let broker = rng.gen_range(0..16u32);
        let id = i + 1;
        let side = if rng.gen_bool(0.5) {
            Side::Buy
        } else {
            Side::Sell
        };
        let price = limit_price(&rules, &shadow, sec, refs[s], side, &mut rng);
        let qty = 100 * rng.gen_range(1..=10u64);
        let mut r = rng.gen_range(0..100);
        let target = if r >= 80 {
            orders.pick(s, &mut rng)
        } else {
            None
        };
        if r >= 80 && target.is_none() {
            r = 0; // nothing of ours rests there: place a limit order instead
        }
        let cmd = match (r, target) {
            (80..=89, Some((id, l))) => Command::Cancel(CancelOrder {
                id: OrderId(id),
                broker: BrokerId(l.broker),
                security: sec,
            }),
            (90.., Some((id, l))) => {
                // Half keep priority (same price, at most the open quantity), half re-price.
                let (price, qty) = if rng.gen_bool(0.5) {
                    (l.price, 100 * rng.gen_range(1..=(l.qty / 100).max(1)))
                } else {
                    (
                        limit_price(&rules, &shadow, sec, refs[s], l.side, &mut rng),
                        qty,
                    )
                };
                Command::Amend(AmendOrder {
                    id: OrderId(id),
                    broker: BrokerId(l.broker),
                    security: sec,
                    price,
                    qty,
                })
            }
            _ => {
                let kind = match r {
                    // In a call phase only LO and the phase's own auction order enter.
                    70.. if phase.is_call() => {
                        if phase == Phase::Ato {
                            OrderType::Ato
                        } else {
                            OrderType::Atc
                        }
                    }
                    0..=69 => OrderType::Limit,
                    70..=73 => OrderType::Market,
                    74..=76 => OrderType::Ioc,
                    _ => OrderType::Fok,
                };
                Command::New(NewOrder {
                    id: OrderId(id),
                    broker: BrokerId(broker),
                    security: sec,
                    side,
                    kind,
                    price: if kind.is_priceless() { 0 } else { price },
                    qty,
                })
            }
        };
        out.clear();
        shadow.process(&cmd, &mut out);
        orders.learn(&cmd, &out);
        cmds.push(cmd);
    }
    cmds
}

fn mps(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64() / 1e6
}

/// CPU time of the calling thread: on a machine shared with other builds, wall time mostly
/// measures the scheduler; CPU time measures the code (cache effects included).
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant Linux supports.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// A timing: the best thread CPU time and the best wall time over several runs.
#[derive(Clone, Copy)]
struct Timing {
    cpu: Duration,
    wall: Duration,
}

/// Best of `runs` timings of `f` on fresh state from `setup` (setup not timed).
fn best_of<S, R>(runs: usize, setup: impl Fn() -> S, f: impl Fn(&mut S) -> R) -> Timing {
    let mut best = Timing {
        cpu: Duration::MAX,
        wall: Duration::MAX,
    };
    for _ in 0..runs {
        let mut state = setup();
        let (c, w) = (thread_cpu(), Instant::now());
        black_box(f(&mut state));
        best.wall = best.wall.min(w.elapsed());
        best.cpu = best.cpu.min(thread_cpu() - c);
    }
    best
}

/// `"x.xx M/s (cpu), y.yy M/s (wall)"` for `n` items.
fn rates(n: usize, t: Timing) -> String {
    format!(
        "{:>6.2} M/s by CPU time, {:>6.2} M/s by wall time",
        mps(n, t.cpu),
        mps(n, t.wall)
    )
}

fn engine_run(e: &mut Engine, cmds: &[Command]) -> usize {
    let mut out = Vec::with_capacity(256);
    let mut events = 0;
    for c in cmds {
        out.clear();
        e.process(c, &mut out);
        events += out.len();
    }
    events
}

fn exchange_run(ex: &mut Exchange, cmds: &[Command]) -> usize {
    let mut out = Vec::with_capacity(256);
    let mut events = 0;
    for c in cmds {
        out.clear();
        ex.process(c, &mut out);
        events += out.len();
    }
    events
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args
        .iter()
        .position(|a| a == "--commands")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    let rules = MarketRules::hose();
    let table = SecurityTable::synthetic(LISTINGS).expect("300 listings");
    let cmds = stream(&table, n, None);
    let fresh_engine = || {
        let mut e = Engine::new(rules, &table);
        for (id, _, _) in table.iter() {
            e.open_book(id);
        }
        e
    };
    let fresh_exchange = || Exchange::new(rules, table.clone());

    // Sanity: the stream really trades, amends and rejects, and fast == naive on the prefix.
    let prefix = &cmds[..NAIVE_PREFIX.min(cmds.len())];
    let mut fast = fresh_exchange();
    let mut slow = NaiveExchange::new(&rules, &table);
    let (mut fills, mut amends, mut rejects) = (0, 0, 0);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for c in prefix {
        a.clear();
        b.clear();
        fast.process(c, &mut a);
        slow.process(c, &mut b);
        assert_eq!(a, b, "fast and naive disagree on {c:?}");
        for e in &a {
            match e {
                Event::Fill(_) => fills += 1,
                Event::Amended { .. } => amends += 1,
                Event::Rejected { .. } => rejects += 1,
                _ => {}
            }
        }
    }

    println!(
        "matching day bench: {LISTINGS} listings, {} commands (70% LO, 10% MP/IOC/FOK, 10% cancels and 10% amends of live orders), seed {SEED}",
        cmds.len()
    );
    println!(
        "  first {} commands: {fills} fills, {amends} amends done, {rejects} rejects; fast == naive",
        prefix.len()
    );
    let engine = best_of(3, fresh_engine, |e| engine_run(e, &cmds));
    let exchange = best_of(3, fresh_exchange, |ex| exchange_run(ex, &cmds));
    let naive = best_of(
        1,
        || NaiveExchange::new(&rules, &table),
        |nx| {
            let mut out = Vec::new();
            for c in prefix {
                out.clear();
                nx.process(c, &mut out);
            }
        },
    );
    let engine_prefix = best_of(3, fresh_engine, |e| engine_run(e, prefix));
    let mut end = fresh_engine();
    engine_run(&mut end, &cmds);
    println!(
        "  resting orders at the end: {} (engine CPU {:?} for the whole stream)",
        end.live_orders(),
        engine.cpu
    );
    println!("  engine alone        : {}", rates(cmds.len(), engine));
    println!("  exchange (+gateway) : {}", rates(cmds.len(), exchange));
    println!(
        "  naive reference     : {} (first {} commands)",
        rates(prefix.len(), naive),
        prefix.len()
    );
    println!(
        "  engine on that prefix: {} -> {:.0}x the naive reference (CPU time)",
        rates(prefix.len(), engine_prefix),
        naive.cpu.as_secs_f64() / engine_prefix.cpu.as_secs_f64()
    );

    // The same mix over whole trading days (a phase change every 20,000 commands), through
    // the exchange: auctions, rejects of forbidden types, closes.
    let day_cmds = stream(&table, n, Some(20_000));
    let days = best_of(3, fresh_exchange, |ex| exchange_run(ex, &day_cmds));
    println!(
        "  exchange, trading days (a phase every 20k): {}",
        rates(day_cmds.len(), days)
    );

    uncross_bench(rules);
    parse_bench();
}

/// `parse_orders` on 1M rows: the unquoted fast path, and the same rows with every broker name
/// quoted (RFC 4180, with commas and doubled quotes inside).
fn parse_bench() {
    use matching::stream::parse_orders;
    let mut plain = String::from("action,order_id,broker,security,side,type,price,qty\n");
    let mut quoted = plain.clone();
    for i in 0..1_000_000u64 {
        let row = |broker: &str| {
            format!(
                "NEW,{i},{broker},VNM,{},LO,{},{}\n",
                if i % 2 == 0 { "BUY" } else { "SELL" },
                10_000 + (i % 7) * 50,
                100 * (1 + i % 9)
            )
        };
        plain.push_str(&row(&format!("B{}", i % 16)));
        quoted.push_str(&row(&format!("\"Broker, \"\"{}\"\"\"", i % 16)));
    }
    for (name, text) in [("unquoted", &plain), ("quoted brokers", &quoted)] {
        let t = best_of(3, || (), |_| parse_orders(text).expect("valid rows").len());
        println!(
            "  parse_orders, 1M rows ({name}, {} MB): {:?} CPU, {:?} wall",
            text.len() / 1_000_000,
            t.cpu,
            t.wall
        );
    }
}

/// One book with 100,000 resting orders in ATO (5% ATO orders on both sides, limit orders over
/// ~2,000 levels per side): the time to uncross it (PHASE CONTINUOUS) and to compute its
/// indicative price.
fn uncross_bench(rules: MarketRules) {
    let mut t = SecurityTable::new();
    t.add("BIG", 2_000_000).unwrap();
    let mut e = Engine::new(rules, &t);
    e.open_book(SecurityId(0));
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let mut out = Vec::new();
    e.process(&Command::Phase(Phase::Ato), &mut out);
    for i in 0..100_000u64 {
        let side = if i % 2 == 0 { Side::Buy } else { Side::Sell };
        let (kind, price) = if i % 20 == 0 {
            (OrderType::Ato, 0)
        } else {
            // 2,000 levels per side on the 100 tick, buys skewed low and sells high, with
            // 1,000 levels of overlap.
            let skew = if side == Side::Buy { -500 } else { 500 };
            (
                OrderType::Limit,
                2_000_000 + 100 * (rng.gen_range(-1_000..1_000) + skew),
            )
        };
        e.process(
            &Command::New(NewOrder {
                id: OrderId(i + 1),
                broker: BrokerId((i % 16) as u32),
                security: SecurityId(0),
                side,
                kind,
                price,
                qty: 100 * rng.gen_range(1..=20),
            }),
            &mut out,
        );
    }
    let book = e.book(SecurityId(0)).unwrap();
    let levels = book.depth(usize::MAX);
    let (price, volume) = e.indicative(SecurityId(0)).expect("the book crosses");
    let indicative = best_of(5, || (), |_| e.indicative(SecurityId(0))).cpu;
    let mut fills = 0;
    let uncross = best_of(
        5,
        || (e.clone(), Vec::with_capacity(200_000)),
        |(e, out): &mut (Engine, Vec<Event>)| {
            e.process(&Command::Phase(Phase::Continuous), out);
            out.len()
        },
    )
    .cpu;
    let mut copy = e.clone();
    out.clear();
    copy.process(&Command::Phase(Phase::Continuous), &mut out);
    fills += out.iter().filter(|e| matches!(e, Event::Fill(_))).count();
    println!(
        "  uncross of {} orders ({} bid + {} ask levels): {:?} CPU (best of 5; {} fills at {} for {}); indicative price {:?}",
        book.len(),
        levels.0.len(),
        levels.1.len(),
        uncross,
        fills,
        price,
        volume,
        indicative
    );
}
