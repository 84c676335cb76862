//! Engine benchmark (plain `main`, no harness): one seeded stream, several order books.
//!
//! `cargo bench -p user-sim --bench engine` prints orders/s (median of 3 runs) for:
//! - `matching::Engine` (books opened up front, validated commands, output cleared per command);
//! - `matching::Exchange` (gateway checks + engine), the apples-to-apples peer of the naive one;
//! - the naive reference exchange (`matching::reference`, feature `reference`), on a prefix of
//!   the stream when the whole would take too long;
//! - two crates.io limit order books fed the same commands: `orderbook-rs` (maintained,
//!   concurrent, feature-rich) and `lobster` (small, single-threaded);
//! - and a local replay of 1,000,000 orders from a CSV file (parse + run + write).
//!
//! Environment: `BENCH_EVENTS` (default 5,000,000) sets the stream length, `BENCH_REPLAY`
//! (default 1,000,000) the replay size.

use std::hint::black_box;
use std::time::{Duration, Instant};

use matching::reference::NaiveExchange;
use matching::stream::{to_command, BrokerRegistry};
use matching::{Command, Engine, Event, Exchange, MarketRules, OrderType, SecurityTable, Side};
use user_sim::generate::{generate, GenConfig};

const SEED: u64 = 20_260_101;
const LISTINGS: usize = 300;
/// Target wall time of one naive run; longer streams are cut to a prefix.
const NAIVE_BUDGET: Duration = Duration::from_secs(10);

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// Runs `f` three times; returns the median duration and the last run's trade count.
fn median3(mut f: impl FnMut() -> u64) -> (Duration, u64) {
    let mut runs = Vec::with_capacity(3);
    let mut trades = 0;
    for _ in 0..3 {
        let start = Instant::now();
        trades = f();
        runs.push(start.elapsed());
    }
    runs.sort();
    (runs[1], trades)
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn count_fills(events: &[Event]) -> u64 {
    events
        .iter()
        .filter(|e| matches!(e, Event::Fill(_)))
        .count() as u64
}

fn run_engine(cmds: &[Command], books: usize) -> u64 {
    let listing = SecurityTable::synthetic(books).expect("a valid listing count");
    let mut engine = Engine::new(matching::MarketRules::none(), &listing);
    for i in 0..books {
        engine.open_book(matching::SecurityId(i as u32));
    }
    let mut out = Vec::with_capacity(64);
    let mut trades = 0;
    for c in cmds {
        out.clear();
        engine.process(c, &mut out);
        trades += count_fills(&out);
    }
    black_box(&engine);
    trades
}

fn run_exchange(cmds: &[Command], rules: MarketRules, secs: &SecurityTable) -> u64 {
    let mut ex = Exchange::new(rules, secs.clone());
    let mut out = Vec::with_capacity(64);
    let mut trades = 0;
    for c in cmds {
        out.clear();
        ex.process(c, &mut out);
        trades += count_fills(&out);
    }
    black_box(&ex);
    trades
}

/// How many leading commands the naive exchange processes within [`NAIVE_BUDGET`].
fn naive_prefix(cmds: &[Command], rules: MarketRules, secs: &SecurityTable) -> usize {
    let mut ex = NaiveExchange::new(&rules, secs);
    let mut out = Vec::with_capacity(64);
    let start = Instant::now();
    for (i, c) in cmds.iter().enumerate() {
        if i % 10_000 == 0 && start.elapsed() > NAIVE_BUDGET {
            return i;
        }
        out.clear();
        ex.process(c, &mut out);
    }
    cmds.len()
}

fn run_naive(cmds: &[Command], rules: MarketRules, secs: &SecurityTable) -> u64 {
    let mut ex = NaiveExchange::new(&rules, secs);
    let mut out = Vec::with_capacity(64);
    let mut trades = 0;
    for c in cmds {
        out.clear();
        ex.process(c, &mut out);
        trades += count_fills(&out);
    }
    black_box(&ex);
    trades
}

/// orderbook-rs: one `OrderBook` per security. LO -> GTC limit, IOC -> IOC limit, FOK -> FOK
/// limit, MP -> `submit_market_order`, CANCEL -> `cancel_order`. Trades are counted from the
/// returned match results, so the crate builds its fills just as our engine builds events.
fn run_orderbook_rs(cmds: &[Command], secs: &SecurityTable) -> u64 {
    use orderbook_rs::OrderBook;
    use orderbook_rs::{Id, Side as PSide, TimeInForce};
    let books: Vec<OrderBook<()>> = secs
        .iter()
        .map(|(_, code, _)| OrderBook::new(code))
        .collect();
    let mut trades = 0u64;
    for c in cmds {
        match c {
            Command::New(o) => {
                let book = &books[o.security.0 as usize];
                let side = match o.side {
                    Side::Buy => PSide::Buy,
                    Side::Sell => PSide::Sell,
                };
                let id = Id::Sequential(o.id.0);
                let tif = match o.kind {
                    OrderType::Market => {
                        if let Ok(m) = book.submit_market_order(id, o.qty, side) {
                            trades += m.trades().len() as u64;
                        }
                        continue;
                    }
                    OrderType::Limit => TimeInForce::Gtc,
                    OrderType::Ioc => TimeInForce::Ioc,
                    OrderType::Fok => TimeInForce::Fok,
                    // Not in the comparison stream (no counterpart in the other books).
                    OrderType::Mtl | OrderType::Ato | OrderType::Atc => continue,
                };
                if let Ok((_, Some(t))) =
                    book.add_limit_order_with_result(id, o.price as u128, o.qty, side, tif, None)
                {
                    trades += t.match_result.trades().len() as u64;
                }
            }
            Command::Cancel(x) => {
                let _ =
                    black_box(books[x.security.0 as usize].cancel_order(Id::Sequential(x.id.0)));
            }
            Command::Amend(_) | Command::Phase(_) => {}
        }
    }
    black_box(&books);
    trades
}

/// lobster: one `OrderBook` per security. LO -> limit, MP -> market, CANCEL -> cancel. Lobster
/// has no IOC/FOK: both become a limit order followed by a cancel of any rested remainder
/// (FOK's all-or-nothing check is lost, so it may trade where ours kills).
fn run_lobster(cmds: &[Command], secs: &SecurityTable) -> u64 {
    use lobster::{OrderBook, OrderEvent, OrderType as LType, Side as LSide};
    let mut books: Vec<OrderBook> = (0..secs.len()).map(|_| OrderBook::default()).collect();
    let mut trades = 0u64;
    let fills = |e: &OrderEvent| match e {
        OrderEvent::PartiallyFilled { fills, .. } | OrderEvent::Filled { fills, .. } => {
            fills.len() as u64
        }
        _ => 0,
    };
    for c in cmds {
        match c {
            Command::New(o) => {
                let book = &mut books[o.security.0 as usize];
                let side = match o.side {
                    Side::Buy => LSide::Bid,
                    Side::Sell => LSide::Ask,
                };
                let id = o.id.0 as u128;
                let ev = match o.kind {
                    OrderType::Market => book.execute(LType::Market {
                        id,
                        side,
                        qty: o.qty,
                    }),
                    _ => book.execute(LType::Limit {
                        id,
                        side,
                        qty: o.qty,
                        price: o.price as u64,
                    }),
                };
                trades += fills(&ev);
                if matches!(o.kind, OrderType::Ioc | OrderType::Fok)
                    && matches!(
                        ev,
                        OrderEvent::Placed { .. } | OrderEvent::PartiallyFilled { .. }
                    )
                {
                    black_box(book.execute(LType::Cancel { id }));
                }
            }
            Command::Cancel(x) => {
                black_box(
                    books[x.security.0 as usize].execute(LType::Cancel { id: x.id.0 as u128 }),
                );
            }
            Command::Amend(_) | Command::Phase(_) => {}
        }
    }
    black_box(&books);
    trades
}

fn line(name: &str, n: usize, d: Duration, trades: u64, note: &str) -> f64 {
    let r = rate(n, d);
    println!(
        "{name:<28} {n:>10} {:>10.3} {:>14.0} {trades:>10}  {note}",
        d.as_secs_f64(),
        r
    );
    r
}

fn main() {
    let events = env_usize("BENCH_EVENTS", 5_000_000);
    let replay_n = env_usize("BENCH_REPLAY", 1_000_000);
    let rules = MarketRules::hose();
    let secs = matching::SecurityTable::synthetic(LISTINGS).expect("a valid listing count");
    let cfg = GenConfig {
        orders: events as u64,
        seed: SEED,
        brokers: 8,
        invalid_pct: 0.0,
        cancel_pct: 20.0,
        taker_pct: 10.0,
        ..GenConfig::default()
    };
    let t = Instant::now();
    let rows = generate(&cfg, &secs, &rules);
    let mut brokers = BrokerRegistry::new();
    let cmds: Vec<Command> = rows
        .iter()
        .map(|r| to_command(r, &secs, &mut brokers))
        .collect();
    drop(rows);
    let news = cmds.iter().filter(|c| matches!(c, Command::New(_))).count();
    let lo = cmds
        .iter()
        .filter(|c| matches!(c, Command::New(o) if o.kind == OrderType::Limit))
        .count();
    println!(
        "stream: {} events over {} HOSE listings, seed {SEED}: {:.1}% LO, {:.1}% MP/IOC/FOK, \
         {:.1}% CANCEL, no invalid rows (generated + converted in {:.1} s)",
        cmds.len(),
        LISTINGS,
        100.0 * lo as f64 / cmds.len() as f64,
        100.0 * (news - lo) as f64 / cmds.len() as f64,
        100.0 * (cmds.len() - news) as f64 / cmds.len() as f64,
        t.elapsed().as_secs_f64()
    );
    println!("median of 3 runs, single thread");
    println!(
        "{:<28} {:>10} {:>10} {:>14} {:>10}",
        "book", "events", "seconds", "orders/s", "trades"
    );

    let (d, tr) = median3(|| run_engine(&cmds, secs.len()));
    let engine = line("matching::Engine", cmds.len(), d, tr, "");
    let (d, tr) = median3(|| run_exchange(&cmds, rules, &secs));
    let exchange = line("matching::Exchange", cmds.len(), d, tr, "gateway + engine");

    // The naive books scan linearly, so its cost grows with book depth: size its prefix by
    // running it once with a clock check every 10,000 commands until the budget is spent.
    let naive_n = naive_prefix(&cmds, rules, &secs);
    let prefix = &cmds[..naive_n];
    let (d, tr) = median3(|| run_naive(prefix, rules, &secs));
    let note = if naive_n < cmds.len() {
        "PREFIX of the stream (too slow for all of it)"
    } else {
        ""
    };
    let naive = line("naive reference exchange", naive_n, d, tr, note);
    let (d, tr) = median3(|| run_exchange(prefix, rules, &secs));
    let exchange_prefix = line("matching::Exchange (prefix)", naive_n, d, tr, "same prefix");

    let (d, tr) = median3(|| run_orderbook_rs(&cmds, &secs));
    let obrs = line("orderbook-rs 0.15", cmds.len(), d, tr, "");
    let (d, tr) = median3(|| run_lobster(&cmds, &secs));
    let lob = line("lobster 0.7", cmds.len(), d, tr, "IOC/FOK = limit + cancel");

    println!();
    println!("Engine / orderbook-rs      = {:.2}x", engine / obrs);
    println!("Engine / lobster           = {:.2}x", engine / lob);
    println!(
        "Exchange / naive (prefix)  = {:.2}x",
        exchange_prefix / naive
    );
    println!(
        "Engine / naive (prefix)    = {:.2}x (naive includes gateway checks)",
        engine / naive
    );
    println!("Exchange / Engine          = {:.2}", exchange / engine);

    // Local replay from a CSV file: parse + run + write three files.
    let dir = std::env::temp_dir().join(format!("gridmatch-bench-{}", std::process::id()));
    if std::fs::create_dir_all(&dir).is_err() {
        println!("cannot create {}: replay timing skipped", dir.display());
        return;
    }
    let sec_path = dir.join("securities.csv");
    let orders_path = dir.join("orders.csv");
    let replay_rows = generate(
        &GenConfig {
            orders: replay_n as u64,
            ..cfg.clone()
        },
        &secs,
        &rules,
    );
    let written = std::fs::write(&sec_path, secs.to_csv())
        .and_then(|_| std::fs::write(&orders_path, matching::stream::write_orders(&replay_rows)));
    if let Err(e) = written {
        println!("cannot write replay inputs: {e}");
        return;
    }
    let job = user_sim::replay::LocalReplay {
        rules,
        securities: sec_path,
        orders: orders_path.clone(),
        trades_out: dir.join("trades.csv"),
        totals_out: dir.join("totals.csv"),
        rejects_out: dir.join("rejects.csv"),
    };
    let size = std::fs::metadata(&orders_path)
        .map(|m| m.len())
        .unwrap_or(0);
    let mut trades = 0;
    let (d, _) = median3(|| match user_sim::replay::run_local(&job) {
        Ok(s) => {
            trades = s.trades as u64;
            s.orders as u64
        }
        Err(e) => {
            println!("replay failed: {e}");
            0
        }
    });
    println!();
    line(
        "replay --local from CSV",
        replay_n,
        d,
        trades,
        &format!("parse {:.1} MB + run + write 3 files", size as f64 / 1e6),
    );
    let _ = std::fs::remove_dir_all(&dir);
}
