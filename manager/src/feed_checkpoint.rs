//! The feed's checkpoint: the whole feed builder at a journal seq, so a restarted manager (or a
//! feed that lost input) replays only the journal after it instead of the whole day.
//!
//! The builder's mirror books hold every resting order with its private id, owner and priority,
//! which is exactly the engine's book ([`feed::SecurityMirror::engine_image`]), so the rebuild
//! restores a local engine from the same file and runs the journal's tail through both.
//!
//! ## File `<data>/feed/checkpoint`
//! ```text
//! magic[4] "GMFC" | version u8 = 1 | through u64 LE | len u64 LE | crc u32 LE (of through and
//! the payload)
//! payload  bincode (standard config) of feed::BuilderState
//! ```
//! `through`: every command up to this seq is in the state, for every book; a book's own
//! `last_seq` may be later (its items arrived before others' earlier ones). Written aside,
//! fsynced and renamed in, so it is whole or absent. Private: never sent to anyone.

use std::path::{Path, PathBuf};

use anyhow::Context;
use feed::{BuilderState, FeedBuilder};
use matching::{Engine, MarketRules, SecurityId, SecurityTable};

const MAGIC: &[u8; 4] = b"GMFC";
const VERSION: u8 = 1;
const HEADER_LEN: usize = 4 + 1 + 8 + 8 + 4;
/// Largest payload a reader accepts (a damaged length must not allocate the machine).
const MAX_PAYLOAD: u64 = 1 << 34;

/// A builder state and the seq it covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedCheckpoint {
    pub through: u64,
    pub state: BuilderState,
}

/// The checkpoint's path in a data directory.
pub fn path_in(data_dir: &Path) -> PathBuf {
    data_dir.join("feed").join("checkpoint")
}

fn checksum(through: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&through.to_le_bytes());
    h.update(payload);
    h.finalize()
}

fn encode(cp: &FeedCheckpoint) -> anyhow::Result<Vec<u8>> {
    let payload = bincode::serde::encode_to_vec(&cp.state, bincode::config::standard())
        .context("encoding the feed checkpoint")?;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&cp.through.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&checksum(cp.through, &payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

fn decode(bytes: &[u8]) -> Result<FeedCheckpoint, String> {
    if bytes.len() < HEADER_LEN || &bytes[..4] != MAGIC {
        return Err("not a feed checkpoint".into());
    }
    if bytes[4] != VERSION {
        return Err(format!("version {} (this build reads {VERSION})", bytes[4]));
    }
    let u64_at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
    let through = u64_at(5);
    let len = u64_at(13);
    let crc = u32::from_le_bytes(bytes[21..25].try_into().expect("4 bytes"));
    let payload = &bytes[HEADER_LEN..];
    if len > MAX_PAYLOAD || payload.len() as u64 != len {
        return Err(format!(
            "payload of {} bytes, header says {len}",
            payload.len()
        ));
    }
    if checksum(through, payload) != crc {
        return Err("CRC mismatch".into());
    }
    let (state, used): (BuilderState, usize) =
        bincode::serde::decode_from_slice(payload, bincode::config::standard())
            .map_err(|e| format!("payload: {e}"))?;
    if used != payload.len() {
        return Err("trailing bytes after the payload".into());
    }
    Ok(FeedCheckpoint { through, state })
}

/// Writes `cp` to `path`: aside, fsynced, renamed in, directory fsynced.
pub fn write(path: &Path, cp: &FeedCheckpoint) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .context("a feed checkpoint path has a directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    journal::write_aside(&path.with_extension("tmp"), path, &encode(cp)?)?;
    journal::sync_dir(dir)?;
    Ok(())
}

/// The checkpoint at `path`: `Ok(None)` when there is none, an error when it is unreadable.
pub fn read(path: &Path) -> anyhow::Result<Option<FeedCheckpoint>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    decode(&bytes)
        .map(Some)
        .map_err(|e| anyhow::anyhow!("{} is damaged: {e}", path.display()))
}

/// The builder and the local engine a checkpoint describes, for `table`.
pub fn restore(
    cp: &FeedCheckpoint,
    rules: MarketRules,
    table: &SecurityTable,
) -> anyhow::Result<(Engine, FeedBuilder)> {
    let builder = FeedBuilder::from_state(table, &cp.state)?;
    let mut engine = Engine::new(rules, table);
    for (i, mirror) in cp.state.securities.iter().enumerate() {
        let sec = SecurityId(i as u32);
        engine
            .import_book(&mirror.engine_image(sec))
            .with_context(|| format!("the book of security {i} in the feed checkpoint"))?;
    }
    Ok((engine, builder))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> FeedCheckpoint {
        let mut table = SecurityTable::new();
        table.add("AAA", 10_000).unwrap();
        table.add("BBB", 20_000).unwrap();
        let mut state = FeedBuilder::new(&table).state();
        state.feed_seq = 77;
        state.securities[1].status.last_seq = Some(41);
        FeedCheckpoint { through: 40, state }
    }

    #[test]
    fn a_checkpoint_round_trips_and_every_damaged_byte_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        assert_eq!(read(&path).unwrap(), None);
        let cp = sample();
        write(&path, &cp).unwrap();
        assert_eq!(read(&path).unwrap(), Some(cp.clone()));
        let good = std::fs::read(&path).unwrap();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x41;
            assert!(decode(&bad).is_err(), "byte {i} flipped was accepted");
        }
        assert!(decode(&good[..good.len() - 1]).is_err());
    }
}
