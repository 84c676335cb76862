//! The grid's results for a stream entered through FIX equal `user-sim replay --local` of the
//! same stream, byte for byte: trades (rebuilt from the ExecutionReports both sides' QuickFIX
//! clients received), rejects (from ExecutionReports and OrderCancelRejects) and final book
//! totals (asked of the manager).
//!
//! What makes the comparison exact:
//! - Sequence order = file order. One QuickFIX session per broker, one driver: a row is sent
//!   only after the previous row's answer arrived (an order's first ExecutionReport comes after
//!   the engine processed it; a cancel's or replace's answer likewise), so the manager has
//!   sequenced every earlier row. PHASE rows go through a native gateway session, the one
//!   client allowed to change the phase, waiting for its completion.
//! - A replace carries OrderQty, the gateway turns it into the open quantity with the CumQty
//!   it has reported. Before each AMEND row the driver waits until every fill of the earlier
//!   rows has reached the clients (their number comes from the reference exchange), so the
//!   driver's, the gateway's and the engine's CumQty agree.
//! - Rows a broker session cannot express are left out of the stream (for both sides): cancels
//!   and amends of another broker's order (`not_owner` natively; a broker session cannot even
//!   name it) and a NEW reusing another broker's id (each broker has its own id namespace).
//!   Everything else of the nasty stream stays: every reject reason, dead and unknown targets,
//!   wrong securities, odd lots, ids reused by the same broker (a duplicate ClOrdID), MTL,
//!   ATO, ATC, amends that keep or lose priority, phases in and out of order.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use matching::stream::{self, Action, BrokerRegistry, OrderRow};
use matching::{Event, Exchange, MarketRules, OrderType, Phase, SecurityTable, Side};
use proto::{ClientCommand, ClientMsg, Credentials, ManagerToClient};
use support::grid::FixGrid;
use support::{field, is_in, Client};
use testkit::nasty::{nasty_stream, Nasty};

const WAIT: Duration = Duration::from_secs(20);

fn listing() -> SecurityTable {
    let mut t = SecurityTable::new();
    for line in support::grid::LISTING.lines().skip(1) {
        let (code, price) = line.split_once(',').unwrap();
        t.add(code, price.parse().unwrap()).unwrap();
    }
    t
}

/// The nasty stream without the rows a broker session cannot express (see the module doc).
fn expressible(rows: Vec<OrderRow>) -> Vec<OrderRow> {
    let mut owner: HashMap<u64, String> = HashMap::new();
    rows.into_iter()
        .filter(|r| match r.action {
            Action::Phase => true,
            Action::New => match owner.get(&r.order_id) {
                Some(b) => *b == r.broker,
                None => {
                    owner.insert(r.order_id, r.broker.clone());
                    true
                }
            },
            Action::Cancel | Action::Amend => owner.get(&r.order_id).is_none_or(|b| *b == r.broker),
        })
        .collect()
}

/// Fills the reference exchange makes before each row (cumulative), for the AMEND barrier.
fn fills_before(rows: &[OrderRow], securities: &SecurityTable) -> Vec<usize> {
    let mut ex = Exchange::new(MarketRules::hose(), securities.clone());
    let mut brokers = BrokerRegistry::new();
    let mut events = Vec::new();
    let mut total = 0;
    let mut out = Vec::with_capacity(rows.len() + 1);
    for r in rows {
        out.push(total);
        events.clear();
        ex.process(
            &stream::to_command(r, securities, &mut brokers),
            &mut events,
        );
        total += events
            .iter()
            .filter(|e| matches!(e, Event::Fill(_)))
            .count();
    }
    out.push(total);
    out
}

/// The native gateway session that changes phases and reads the final totals.
struct Operator {
    rt: tokio::runtime::Runtime,
    conn: quinn::Connection,
    w: transport::FrameWriter,
    r: transport::FrameReader,
    next: u64,
    _endpoint: quinn::Endpoint,
}

impl Operator {
    fn connect(fg: &FixGrid) -> Operator {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (endpoint, conn, w, r) = rt.block_on(async {
            let endpoint = transport::quic::client_endpoint(&fg.grid.ca()).unwrap();
            let addr = transport::quic::resolve(&fg.grid.addr).unwrap();
            let creds = Credentials::Gateway {
                token: fg.grid.token(),
            };
            let (conn, w, r, _) = transport::quic::connect(&endpoint, addr, creds)
                .await
                .unwrap();
            (endpoint, conn, w, r)
        });
        Operator {
            rt,
            conn,
            w,
            r,
            next: 0,
            _endpoint: endpoint,
        }
    }

    fn phase(&mut self, phase: Phase) {
        self.next += 1;
        let client_ref = self.next;
        self.rt.block_on(async {
            let cmd = ClientCommand {
                client_ref,
                command: matching::Command::Phase(phase),
            };
            self.w.send(&ClientMsg::Submit(vec![cmd])).await.unwrap();
            loop {
                match self.r.recv::<ManagerToClient>().await.unwrap() {
                    Some(ManagerToClient::Reports(rs)) => {
                        if rs.iter().any(|r| r.client_ref == client_ref && r.last) {
                            return;
                        }
                    }
                    Some(_) => {}
                    None => panic!("the manager closed the operator session"),
                }
            }
        })
    }

    fn totals_csv(&mut self, securities: &SecurityTable) -> String {
        let totals = self.rt.block_on(async {
            self.w
                .send(&ClientMsg::QueryTotals { query: 1 })
                .await
                .unwrap();
            let mut all = Vec::new();
            loop {
                match self.r.recv::<ManagerToClient>().await.unwrap() {
                    Some(ManagerToClient::Totals { totals, last, .. }) => {
                        all.extend(totals);
                        if last {
                            return all;
                        }
                    }
                    Some(_) => {}
                    None => panic!("the manager closed the operator session"),
                }
            }
        });
        let mut c = stream::ReplayCollector::new(securities);
        c.set_final_totals(&totals);
        c.totals_csv()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.conn.close(0u32.into(), b"done");
    }
}

/// NewOrderSingle fields for a NEW row (see the gateway's order type table).
fn new_order_fields(r: &OrderRow) -> String {
    let kind = r.kind.expect("NEW rows have a type");
    let (ord_type, tif) = match kind {
        OrderType::Limit => ("2", ""),
        OrderType::Ioc => ("2", "|59=3"),
        OrderType::Fok => ("2", "|59=4"),
        OrderType::Market => ("1", ""),
        OrderType::Mtl => ("K", ""),
        OrderType::Ato => ("1", "|59=2"),
        OrderType::Atc => ("1", "|59=7"),
    };
    let price = if kind.is_priceless() && r.price == 0 {
        String::new()
    } else {
        format!("|44={}", r.price)
    };
    let side = if r.side == Some(Side::Buy) { 1 } else { 2 };
    format!(
        "35=D|11={}|55={}|54={side}|38={}|40={ord_type}{tif}{price}|60=20240101-00:00:00",
        r.order_id, r.security, r.qty
    )
}

struct Driver {
    clients: BTreeMap<String, Client>,
    /// ClOrdID -> file order id.
    file_id: HashMap<String, u64>,
    /// File order id -> side of its first NEW.
    side: HashMap<u64, Side>,
    /// File order id -> CumQty reported to its owner.
    cum: HashMap<u64, u64>,
    fill_reports: usize,
    /// Per client: lines of `seen` already counted.
    counted: HashMap<String, usize>,
    rejects: Vec<(u64, String)>,
}

impl Driver {
    /// Reads every client's new lines; counts fills and their quantities.
    fn poll(&mut self, wait: Duration) {
        for (name, c) in self.clients.iter_mut() {
            c.poll(wait / 4);
            let counted = self.counted.entry(name.clone()).or_default();
            let from = std::mem::replace(counted, c.seen.len());
            for l in &c.seen[from..] {
                if is_in(l, "8") && field(l, 150) == Some("F") {
                    self.fill_reports += 1;
                    let id = self.file_id[field(l, 11).unwrap()];
                    *self.cum.entry(id).or_default() +=
                        field(l, 32).unwrap().parse::<u64>().unwrap();
                }
            }
        }
    }

    /// Waits for the line `pred` on `broker`'s client (polling everyone meanwhile).
    fn answer(&mut self, broker: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            self.poll(Duration::from_millis(2));
            let c = self.clients.get_mut(broker).unwrap();
            if let Some(line) = c.take_pending(&pred) {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "{broker}: no answer; saw:\n{}",
                c.seen.join("\n")
            );
        }
    }

    fn wait_fills(&mut self, n: usize) {
        let deadline = Instant::now() + WAIT;
        while self.fill_reports < n {
            self.poll(Duration::from_millis(2));
            assert!(
                Instant::now() < deadline,
                "{} fill reports, expected {n}",
                self.fill_reports
            );
        }
    }
}

fn run_exactness(seed: u64, rows: usize, sweep_every: usize) {
    let dir = tempfile::tempdir().unwrap();
    let fg = FixGrid::start(dir.path(), 2);
    let securities = listing();
    let cfg = Nasty {
        rows,
        seed,
        brokers: 3,
        day: true,
        sweep_every,
    };
    let rows = expressible(nasty_stream(&cfg, &securities));
    let orders = dir.path().join("orders.csv");
    std::fs::write(&orders, stream::write_orders(&rows)).unwrap();
    std::fs::write(dir.path().join("securities.csv"), support::grid::LISTING).unwrap();
    testkit::local_reference(
        dir.path(),
        &dir.path().join("securities.csv"),
        &orders,
        "hose",
        "ref",
    );
    let fills = fills_before(&rows, &securities);

    let mut op = Operator::connect(&fg);
    let mut d = Driver {
        clients: BTreeMap::new(),
        file_id: HashMap::new(),
        side: HashMap::new(),
        cum: HashMap::new(),
        fill_reports: 0,
        counted: HashMap::new(),
        rejects: Vec::new(),
    };
    for b in ["B01", "B02", "B03"] {
        let mut c = fg.client(b);
        c.logon();
        d.clients.insert(b.to_string(), c);
    }
    for (k, r) in rows.iter().enumerate() {
        match r.action {
            Action::Phase => op.phase(r.phase.unwrap()),
            Action::New => {
                let cl = r.order_id.to_string();
                d.file_id.insert(cl.clone(), r.order_id);
                d.side.entry(r.order_id).or_insert(r.side.unwrap());
                d.clients
                    .get_mut(&r.broker)
                    .unwrap()
                    .send(&new_order_fields(r));
                let a = d.answer(&r.broker, |l| {
                    is_in(l, "8")
                        && field(l, 11) == Some(cl.as_str())
                        && matches!(field(l, 150), Some("0" | "8"))
                });
                if field(&a, 150) == Some("8") {
                    d.rejects.push((r.order_id, code(&a)));
                }
            }
            Action::Cancel | Action::Amend => {
                let amend = r.action == Action::Amend;
                let cl = format!("{}{k}", if amend { "a" } else { "x" });
                d.file_id.insert(cl.clone(), r.order_id);
                let side = if d.side.get(&r.order_id) == Some(&Side::Sell) {
                    2
                } else {
                    1
                };
                let msg = if amend {
                    // Every fill of the earlier rows first: CumQty must be the engine's.
                    d.wait_fills(2 * fills[k]);
                    let total = d.cum.get(&r.order_id).copied().unwrap_or(0) + r.qty;
                    format!(
                        "35=G|11={cl}|41={}|55={}|54={side}|38={total}|40=2|44={}|60=20240101-00:00:00",
                        r.order_id, r.security, r.price
                    )
                } else {
                    format!(
                        "35=F|11={cl}|41={}|55={}|54={side}|60=20240101-00:00:00",
                        r.order_id, r.security
                    )
                };
                d.clients.get_mut(&r.broker).unwrap().send(&msg);
                let done = if amend { "5" } else { "4" };
                let a = d.answer(&r.broker, |l| {
                    field(l, 11) == Some(cl.as_str())
                        && (is_in(l, "9") || (is_in(l, "8") && field(l, 150) == Some(done)))
                });
                if is_in(&a, "9") {
                    d.rejects.push((r.order_id, code(&a)));
                }
            }
        }
    }
    let total_fills = *fills.last().unwrap();
    d.wait_fills(2 * total_fills);
    // Anything more would be a fill too many; give it time to show.
    d.poll(Duration::from_millis(400));
    assert_eq!(
        d.fill_reports,
        2 * total_fills,
        "fill reports beyond the reference's"
    );

    write_outputs(&d, dir.path(), &securities);
    std::fs::write(
        dir.path().join("fix-totals.csv"),
        op.totals_csv(&securities),
    )
    .unwrap();
    testkit::assert_same_outputs(dir.path(), "ref", "fix");
    let trades = std::fs::read_to_string(dir.path().join("ref-trades.csv")).unwrap();
    let rejects = std::fs::read_to_string(dir.path().join("ref-rejects.csv")).unwrap();
    assert!(
        trades.lines().count() > 50,
        "a stream with trades: {trades}"
    );
    assert!(trades.contains("AUCTION"), "auction trades were part of it");
    assert!(rejects.lines().count() > 20);
    for c in d.clients.values() {
        assert!(
            !c.seen
                .iter()
                .any(|l| is_in(l, "3") || is_in(l, "j") || l == "logout"),
            "no session trouble"
        );
    }
}

fn code(line: &str) -> String {
    field(line, 58)
        .unwrap_or_default()
        .split(':')
        .next()
        .unwrap()
        .to_string()
}

/// trades and rejects CSV from what the clients received.
fn write_outputs(d: &Driver, dir: &std::path::Path, securities: &SecurityTable) {
    struct TradeSide {
        file_id: u64,
        buy: bool,
        aggressor: bool,
        code: String,
        price: String,
        qty: String,
    }
    let mut trades: BTreeMap<(u64, String, u32), Vec<TradeSide>> = BTreeMap::new();
    for c in d.clients.values() {
        for l in c
            .seen
            .iter()
            .filter(|l| is_in(l, "8") && field(l, 150) == Some("F"))
        {
            let id: Vec<&str> = field(l, 527).unwrap().split('.').collect();
            let code = field(l, 55).unwrap().to_string();
            let key = (id[0].parse().unwrap(), code.clone(), id[2].parse().unwrap());
            trades.entry(key).or_default().push(TradeSide {
                file_id: d.file_id[field(l, 11).unwrap()],
                buy: field(l, 54) == Some("1"),
                aggressor: field(l, 851) == Some("2"),
                code,
                price: field(l, 31).unwrap().to_string(),
                qty: field(l, 32).unwrap().to_string(),
            });
        }
    }
    let _ = securities;
    let mut csv = format!("{}\n", stream::TRADES_HEADER);
    // Reference order: by sequence, then security code (byte order), then fill order.
    for (key, sides) in &trades {
        let [a, b] = &sides[..] else {
            panic!("trade {key:?} has {} sides", sides.len())
        };
        let (buy, sell) = if a.buy { (a, b) } else { (b, a) };
        assert!(buy.buy && !sell.buy, "{key:?}");
        assert_eq!(
            (&buy.price, &buy.qty, &buy.code),
            (&sell.price, &sell.qty, &sell.code)
        );
        let aggressor = match (buy.aggressor, sell.aggressor) {
            (true, false) => "BUY",
            (false, true) => "SELL",
            (false, false) => "AUCTION",
            _ => panic!("both sides aggressors in {key:?}"),
        };
        csv += &format!(
            "{},{},{},{},{},{aggressor}\n",
            buy.code, buy.price, buy.qty, buy.file_id, sell.file_id
        );
    }
    std::fs::write(dir.join("fix-trades.csv"), csv).unwrap();
    let mut rej = format!("{}\n", stream::REJECTS_HEADER);
    for (id, code) in &d.rejects {
        rej += &format!("{id},{code}\n");
    }
    std::fs::write(dir.join("fix-rejects.csv"), rej).unwrap();
}

#[test]
fn a_nasty_trading_day_through_fix_equals_the_local_replay() {
    run_exactness(11, 2000, 0);
}

#[test]
fn deep_sweeps_through_fix_equal_the_local_replay() {
    run_exactness(29, 800, 60);
}
