//! The sequential reference for feed tests: sequences an order stream the way the manager does
//! (gateway check, dense seqs, a PHASE fanned out to every book) through one engine, giving the
//! journal records and the feed items the grid must produce, and the LOBSTER files the feed
//! must yield for them.

#![allow(dead_code)] // each test binary uses a different subset

use feed::lobster::{LobsterConfig, LobsterWriter};
use journal::{Entry, JournalRecord};
use manager::feed::FeedItem;
use matching::stream::{BrokerRegistry, OrderRow};
use matching::{Engine, Event, Gateway, MarketRules, SecurityId, SecurityTable};

/// Exchange time of the first command (any fixed value: the reference has no clock).
pub const T0: i64 = 1_750_000_000_000_000_000;

pub struct Sequenced {
    pub records: Vec<JournalRecord>,
    /// Per command, per security it touched, in seq order.
    pub items: Vec<FeedItem>,
    /// The engine after the whole stream.
    pub engine: Engine,
}

/// Sequences `rows` like the manager: refused commands take no seq.
pub fn sequence(rows: &[OrderRow], table: &SecurityTable, rules: MarketRules) -> Sequenced {
    let mut gateway = Gateway::new(rules, table.clone());
    let mut engine = Engine::new(rules, table);
    for (id, _, _) in table.iter() {
        engine.open_book(id);
    }
    let mut brokers = BrokerRegistry::new();
    let (mut records, mut items) = (Vec::new(), Vec::new());
    let mut seq = 0u64;
    for row in rows {
        let cmd = matching::stream::to_command(row, table, &mut brokers);
        if gateway.check(&cmd).is_err() {
            continue;
        }
        seq += 1;
        let time = T0 + seq as i64 * 1_000;
        records.push(JournalRecord {
            seq,
            time,
            client_ref: 0,
            entry: Entry::Command(cmd),
        });
        let secs: Vec<SecurityId> = match cmd.security() {
            Some(s) => vec![s],
            None => table.iter().map(|(id, _, _)| id).collect(),
        };
        for security in secs {
            let mut events = Vec::new();
            engine.process_for(security, &cmd, &mut events);
            for e in &events {
                if let Event::Reference { security, price } = *e {
                    gateway.set_reference(security, price);
                }
            }
            events.retain(|e| !matches!(e, Event::Accepted { .. }));
            items.push(FeedItem {
                seq,
                time,
                security,
                command: cmd,
                events: events.into(),
            });
        }
    }
    Sequenced {
        records,
        items,
        engine,
    }
}

/// The LOBSTER (message, orderbook) file texts the L3 feed of `items` yields for `security`,
/// with `levels` levels, starting from an empty book.
pub fn reference_lobster(
    items: &[FeedItem],
    table: &SecurityTable,
    security: SecurityId,
    levels: usize,
) -> (String, String) {
    let mut builder = manager::feed::new_builder(table);
    let cfg = LobsterConfig {
        levels,
        ..LobsterConfig::default()
    };
    let mut w = LobsterWriter::new(security, cfg, Vec::new(), Vec::new());
    for it in items.iter().filter(|i| i.security == security) {
        builder
            .apply(feed::Completed {
                seq: it.seq,
                time: it.time,
                security: it.security,
                command: &it.command,
                events: &it.events,
            })
            .expect("the reference feed accepts the engine's events");
        for m in builder.last_batch().messages {
            w.write(m).expect("reference LOBSTER");
        }
    }
    let (m, b) = w.into_inner().expect("in memory");
    (
        String::from_utf8(m).expect("utf8"),
        String::from_utf8(b).expect("utf8"),
    )
}

/// A message file without its time column (the grid's exchange times are the wall clock's).
pub fn without_time(message_file: &str) -> Vec<&str> {
    message_file
        .lines()
        .map(|l| l.split_once(',').map_or(l, |(_, rest)| rest))
        .collect()
}
