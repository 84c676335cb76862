//! A builder's state ([`FeedBuilder::state`]) is a checkpoint the manager's feed restarts from:
//! at every sampled point of random trading days (auctions, amends, MTL, closes, nasty input)
//! the engine book each security's state describes is exactly the engine's own export, the state
//! survives bincode, and a builder restored from it (next to an engine restored from those
//! books) produces the same messages as the original for the rest of the day.

mod common;

use common::{Driver, Gen, GenConfig};
use feed::{BuilderState, Completed, FeedBuilder, FeedLevel, Message};
use matching::{Command, Engine, Event, SecurityId};

/// Replays `cmd` through `engine` for each security the driver completed, into `builder`: what
/// the manager's rebuild does after a checkpoint. Returns the messages, in order.
fn continue_from(
    engine: &mut Engine,
    builder: &mut FeedBuilder,
    seq: u64,
    time: i64,
    cmd: &Command,
    securities: &[SecurityId],
) -> Vec<Message> {
    let mut out = Vec::new();
    let mut events: Vec<Event> = Vec::new();
    for &sec in securities {
        events.clear();
        engine.process_for(sec, cmd, &mut events);
        let batch = builder
            .apply(Completed {
                seq,
                time,
                security: sec,
                command: cmd,
                events: &events,
            })
            .unwrap_or_else(|e| panic!("seq {seq}: the restored builder refused a batch: {e}"));
        out.extend_from_slice(batch.messages);
    }
    out
}

fn run_day(seed: u64, commands: usize, checkpoints: &[usize]) {
    let cfg = GenConfig {
        securities: 5,
        phases: 0.01,
        nasty: 0.1,
        ..GenConfig::default()
    };
    let mut gen = Gen::new(seed, cfg);
    let table = gen.table().clone();
    let mut driver = Driver::new(gen.rules(), &table);
    let mut live = FeedBuilder::new(&table).with_indicative(feed::engine_indicative);
    // Restored twins: (engine, builder) started from a checkpoint.
    let mut twins: Vec<(Engine, FeedBuilder)> = Vec::new();
    let mut resting_seen = 0usize;
    for i in 0..commands {
        if checkpoints.contains(&i) {
            let state = live.state();
            let bytes = bincode::serde::encode_to_vec(&state, bincode::config::standard()).unwrap();
            let (back, _): (BuilderState, usize) =
                bincode::serde::decode_from_slice(&bytes, bincode::config::standard()).unwrap();
            assert_eq!(back, state, "seed {seed}, command {i}: bincode round trip");
            let mut engine = Engine::new(gen.rules(), &table);
            for (s, mirror) in state.securities.iter().enumerate() {
                let sec = SecurityId(s as u32);
                let image = mirror.engine_image(sec);
                assert_eq!(
                    Some(&image),
                    driver.engine().export_book(sec).as_ref(),
                    "seed {seed}, command {i}, {sec:?}: the mirror's engine book"
                );
                resting_seen += image.bids.len() + image.asks.len();
                engine.import_book(&image).unwrap();
            }
            let builder = FeedBuilder::from_state(&table, &state)
                .unwrap()
                .with_indicative(feed::engine_indicative);
            assert_eq!(builder.state(), state);
            twins.push((engine, builder));
        }
        let cmd = gen.next_command();
        let mut completed: Vec<(SecurityId, Vec<Message>)> = Vec::new();
        driver.step(&cmd, |c| {
            let batch = live.apply(c).unwrap();
            completed.push((c.security, batch.messages.to_vec()));
        });
        let securities: Vec<SecurityId> = completed.iter().map(|c| c.0).collect();
        let expected: Vec<Message> = completed.into_iter().flat_map(|c| c.1).collect();
        let (seq, time) = (driver.seq, driver.time);
        for (engine, builder) in &mut twins {
            let got = continue_from(engine, builder, seq, time, &cmd, &securities);
            assert_eq!(
                got, expected,
                "seed {seed}, command {i}: a restored builder"
            );
        }
    }
    for (engine, builder) in &twins {
        assert_eq!(builder.state(), live.state());
        for (sec, _, _) in table.iter() {
            assert_eq!(engine.export_book(sec), driver.engine().export_book(sec));
            assert_eq!(
                builder.snapshot(sec, FeedLevel::L3),
                live.snapshot(sec, FeedLevel::L3)
            );
        }
    }
    assert!(resting_seen > 0, "seed {seed}: no checkpoint held an order");
}

#[test]
fn a_restored_builder_and_engine_continue_the_day_exactly() {
    for seed in 0..12 {
        run_day(seed, 6_000, &[0, 1, 700, 2_500, 4_999]);
    }
}

#[test]
fn a_state_for_another_listing_or_with_a_duplicate_order_is_refused() {
    let gen = Gen::new(3, GenConfig::default());
    let table = gen.table().clone();
    let mut driver = Driver::new(gen.rules(), &table);
    let mut gen = gen;
    let mut live = FeedBuilder::new(&table);
    while live.state().securities.iter().all(|s| s.bids.len() < 2) {
        let cmd = gen.next_command();
        driver.step(&cmd, |c| {
            live.apply(c).unwrap();
        });
    }
    let mut state = live.state();
    let mut fewer = state.clone();
    fewer.securities.pop();
    assert!(matches!(
        FeedBuilder::from_state(&table, &fewer),
        Err(feed::StateError::Listing { .. })
    ));
    let s = state
        .securities
        .iter_mut()
        .find(|s| s.bids.len() >= 2)
        .unwrap();
    s.bids[1].id = s.bids[0].id;
    assert!(matches!(
        FeedBuilder::from_state(&table, &state),
        Err(feed::StateError::Book { .. })
    ));
}
