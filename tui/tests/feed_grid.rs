//! The tui's feed task against a real grid: the books it hands the Market view end equal to the
//! sequential engine's top levels over what the journal holds, and its trades are every trade.

use std::sync::Arc;
use std::time::{Duration, Instant};

use matching::stream::{parse_orders, BrokerRegistry};
use matching::{Engine, Event, Gateway, MarketRules, SecurityId, SecurityTable};
use testkit::{bin, Grid, GridOptions};
use tui::market::{MarketPicture, FEED_LEVELS};
use tui::net::{self, Inbox, NetConfig};
use tui::NetEvent;

/// The journal's commands through one engine, as the manager sequences them.
fn reference(grid: &Grid, table: &SecurityTable) -> (Engine, usize) {
    let export = grid.dir.join("export");
    let o = std::process::Command::new(bin("manager"))
        .args(["journal", "export", "--csv", "--data-dir"])
        .arg(&grid.data_dir)
        .arg("--out-dir")
        .arg(&export)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows = parse_orders(&std::fs::read_to_string(export.join("orders.csv")).unwrap()).unwrap();
    let rules = MarketRules::hose();
    let mut gateway = Gateway::new(rules, table.clone());
    let mut engine = Engine::new(rules, table);
    for (id, _, _) in table.iter() {
        engine.open_book(id);
    }
    let mut brokers = BrokerRegistry::new();
    let mut trades = 0;
    for row in &rows {
        let cmd = matching::stream::to_command(row, table, &mut brokers);
        if gateway.check(&cmd).is_err() {
            continue;
        }
        let secs: Vec<SecurityId> = match cmd.security() {
            Some(s) => vec![s],
            None => table.iter().map(|(id, _, _)| id).collect(),
        };
        for security in secs {
            let mut events = Vec::new();
            engine.process_for(security, &cmd, &mut events);
            for e in &events {
                match *e {
                    Event::Reference { security, price } => gateway.set_reference(security, price),
                    Event::Fill(_) => trades += 1,
                    _ => {}
                }
            }
        }
    }
    (engine, trades)
}

fn matches(picture: &MarketPicture, engine: &Engine, table: &SecurityTable) -> bool {
    picture.synced
        && table.iter().all(|(id, _, _)| {
            picture.books.get(&id).is_some_and(|b| {
                (b.bids.clone(), b.asks.clone()) == engine.depth(id, FEED_LEVELS as usize)
            })
        })
}

#[test]
fn the_market_views_feed_ends_on_the_engines_books_with_every_trade() {
    let tmp = tempfile::tempdir().unwrap();
    let listing = tmp.path().join("listing.csv");
    std::fs::write(&listing, SecurityTable::synthetic(5).unwrap().to_csv()).unwrap();
    let grid = Grid::start(
        tmp.path(),
        GridOptions {
            executors: 2,
            securities: Some(listing),
            ..GridOptions::default()
        },
    );
    let table =
        SecurityTable::parse_csv(&std::fs::read_to_string(grid.securities()).unwrap()).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let inbox = Arc::new(Inbox::default());
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let endpoint = {
        let _g = runtime.enter();
        transport::quic::client_endpoint(&grid.ca()).unwrap()
    };
    let cfg = NetConfig {
        manager: grid.addr.clone(),
        token: grid.token(),
        feed_levels: FEED_LEVELS,
    };
    let task = runtime.spawn(net::run_feed(endpoint, cfg, inbox.clone(), stop_rx));

    // Subscribed and synced (the first picture follows the first snapshot) before the load,
    // so that every trade comes as a trade.
    let (mut picture, mut trades_seen, mut up) = (MarketPicture::default(), 0usize, 0);
    let drain = |picture: &mut MarketPicture, trades_seen: &mut usize, up: &mut u32| {
        let mut pictures = 0;
        for ev in inbox.drain() {
            match ev {
                NetEvent::Market(p) => {
                    *picture = p;
                    pictures += 1;
                }
                NetEvent::FeedTrades(t) => *trades_seen += t.len(),
                NetEvent::FeedUp { .. } => *up += 1,
                NetEvent::FeedDown(why) => panic!("feed lost: {why}"),
                _ => {}
            }
        }
        pictures
    };
    let start = Instant::now();
    while drain(&mut picture, &mut trades_seen, &mut up) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no first picture"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(picture.synced && picture.books.len() == 5, "{picture:?}");
    let load = grid.load(&["--orders", "6000", "--quiet"]);
    assert!(
        load.status.success(),
        "{}",
        String::from_utf8_lossy(&load.stderr)
    );
    let (engine, trades_made) = reference(&grid, &table);
    assert!(trades_made > 100, "{trades_made} trades");

    // Drain the inbox like the UI until the books match (or time runs out on a stuck feed).
    let start = Instant::now();
    while !(matches(&picture, &engine, &table) && trades_seen == trades_made) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "feed never caught up: {trades_seen} of {trades_made} trades, picture {picture:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
        drain(&mut picture, &mut trades_seen, &mut up);
    }
    assert_eq!(up, 1);
    assert_eq!(picture.gaps, 0);
    assert_eq!(inbox.dropped(), 0);
    assert_eq!(trades_seen, trades_made);
    eprintln!(
        "feed: {trades_made} trades, {} messages, books {:?}",
        picture.messages,
        picture
            .books
            .values()
            .map(|b| b.bids.len() + b.asks.len())
            .collect::<Vec<_>>()
    );
    let _ = stop.send(true);
    runtime.block_on(task).unwrap();
}
