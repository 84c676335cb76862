//! The finished-order index: immutable sorted runs of orders that reached a final state
//! (filled, cancelled, expired, or rejected before sequencing), so the manager can drop them
//! from memory and still answer queries and id checks exactly.
//!
//! ## Run file `run-<number:010>.fin`
//! ```text
//! header  magic[4] "GMFI" | version u8 = 1 | level u8 | number u64 LE | crc u32 LE (of the 14 bytes)
//! block*  len u32 LE | payload | crc u32 LE (of the payload)
//!         payload: count uint, then per record (ids strictly increasing):
//!         id delta uint (the first: the id itself) | broker uint | security uint
//!         | flags u8: bit 0 side (0 BUY, 1 SELL), bits 1-3 type (OrderType::ALL index),
//!           bits 4-5 state (0 FILLED, 1 CANCELLED, 2 EXPIRED, 3 REJECTED)
//!         | [reason uint (RejectReason::ALL index), REJECTED only]
//!         | zz(price) | qty uint | filled uint
//! footer  fences uint, per block: first id u64 LE | last id u64 LE | offset u64 LE | len u32 LE
//!         | records u64 LE | prefixes u32 LE, per prefix: prefix u32 LE | max id u64 LE
//!         | crc u32 LE (of the footer so far) | footer length u64 LE | magic[4] "GMFE"
//! ```
//! A prefix is `id >> 40`: the id namespace of one broker (or 0, the gateway's). The footer's
//! fences (24 bytes per block of about [`BLOCK_BYTES`]) are the only part kept in memory; a
//! lookup reads one block. A file is written aside, fsynced and renamed in, so a run either
//! exists whole or not at all; which runs count is the manifest's business
//! ([`crate::snapshots`]).

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use matching::{
    ArchivedId, BrokerId, OrderId, OrderType, Price, Qty, RejectReason, SecurityId, Side,
};

use crate::codec::{side_kind_bits, side_kind_of};
use crate::files::{corrupt_in, open_sealed, read_at, SealedKind, SealedWriter};
use crate::varint::{put_uint, zigzag, Reader};
use crate::{io_err, JournalError};

const MAGIC: &[u8; 4] = b"GMFI";
const END_MAGIC: &[u8; 4] = b"GMFE";
const VERSION: u8 = 1;
const HEADER_LEN: u64 = 18;
/// Target size of one block's payload.
pub const BLOCK_BYTES: usize = 4096;
/// Largest block payload a reader accepts.
const MAX_BLOCK: u32 = 1 << 20;

/// How an order ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FinalState {
    Filled,
    Cancelled,
    /// Still resting when the market closed.
    Expired,
    /// Refused before sequencing (its id is burnt).
    Rejected(RejectReason),
}

/// One finished order, as queries report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FinishedOrder {
    /// Exchange-wide id.
    pub id: OrderId,
    pub broker: BrokerId,
    pub security: SecurityId,
    pub side: Side,
    pub kind: OrderType,
    /// Limit price (an MTL remainder's, or an amend's new price).
    pub price: Price,
    /// Filled plus what was open when it ended.
    pub qty: Qty,
    pub filled: Qty,
    pub state: FinalState,
}

impl FinishedOrder {
    /// What the gateway needs of it: owner, book, and whether it was ever sequenced.
    pub fn archived_id(&self) -> ArchivedId {
        ArchivedId {
            broker: self.broker,
            security: self.security,
            accepted: !matches!(self.state, FinalState::Rejected(_)),
        }
    }
}

/// The namespace of an id: `id >> 40` (one per broker, 0 for exchange-wide ids).
pub fn prefix_of(id: u64) -> u32 {
    (id >> 40) as u32
}

fn encode_record(prev: Option<u64>, r: &FinishedOrder, out: &mut Vec<u8>) {
    put_uint(out, u128::from(r.id.0 - prev.unwrap_or(0)));
    put_uint(out, u128::from(r.broker.0));
    put_uint(out, u128::from(r.security.0));
    let (state, reason) = match r.state {
        FinalState::Filled => (0u8, None),
        FinalState::Cancelled => (1, None),
        FinalState::Expired => (2, None),
        FinalState::Rejected(why) => (
            3,
            Some(
                RejectReason::ALL
                    .iter()
                    .position(|x| *x == why)
                    .unwrap_or(0),
            ),
        ),
    };
    out.push(side_kind_bits(r.side, r.kind) | state << 4);
    if let Some(reason) = reason {
        put_uint(out, reason as u128);
    }
    put_uint(out, zigzag(i128::from(r.price)));
    put_uint(out, u128::from(r.qty));
    put_uint(out, u128::from(r.filled));
}

fn decode_record(prev: Option<u64>, rd: &mut Reader<'_>) -> Result<FinishedOrder, String> {
    let delta = rd.u64()?;
    let id = match prev {
        None => delta,
        Some(p) => {
            if delta == 0 {
                return Err("ids are not strictly increasing".into());
            }
            p.checked_add(delta).ok_or("id overflows")?
        }
    };
    let broker = BrokerId(rd.u32()?);
    let security = SecurityId(rd.u32()?);
    let flags = rd.byte()?;
    if flags & 0xc0 != 0 {
        return Err(format!("unknown flags {flags:#04x}"));
    }
    let (side, kind) = side_kind_of(flags)?;
    let state = match flags >> 4 & 3 {
        0 => FinalState::Filled,
        1 => FinalState::Cancelled,
        2 => FinalState::Expired,
        _ => FinalState::Rejected(
            *RejectReason::ALL
                .get(rd.u32()? as usize)
                .ok_or("unknown reject reason")?,
        ),
    };
    let price =
        i64::try_from(rd.signed()?).map_err(|_| "price does not fit 64 bits".to_string())?;
    let qty = rd.u64()?;
    let filled = rd.u64()?;
    Ok(FinishedOrder {
        id: OrderId(id),
        broker,
        security,
        side,
        kind,
        price,
        qty,
        filled,
        state,
    })
}

/// One block's place in a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fence {
    first: u64,
    last: u64,
    offset: u64,
    len: u32,
}

/// The name of run `number`.
pub fn run_file_name(number: u64) -> String {
    format!("run-{number:010}.fin")
}

/// The run number of a file name, if it is one.
pub fn parse_run_file_name(name: &str) -> Option<u64> {
    name.strip_prefix("run-")?
        .strip_suffix(".fin")?
        .parse()
        .ok()
}

/// Writes a run from records in strictly increasing id order.
pub struct RunWriter {
    out: SealedWriter,
    block: Vec<u8>,
    block_count: u64,
    block_first: u64,
    prev: Option<u64>,
    fences: Vec<Fence>,
    records: u64,
    prefixes: Vec<(u32, u64)>,
    number: u64,
    level: u8,
}

impl RunWriter {
    /// Starts run `number` at compaction `level` in `dir` (written aside until
    /// [`Self::finish`]).
    pub fn create(dir: &Path, number: u64, level: u8) -> Result<RunWriter, JournalError> {
        fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let path = dir.join(run_file_name(number));
        let tmp = path.with_extension("fin.tmp");
        let mut fields = vec![level];
        fields.extend_from_slice(&number.to_le_bytes());
        let out = SealedWriter::create(path, tmp, MAGIC, VERSION, &fields)?;
        debug_assert_eq!(out.offset(), HEADER_LEN);
        Ok(RunWriter {
            out,
            block: Vec::with_capacity(BLOCK_BYTES + 64),
            block_count: 0,
            block_first: 0,
            prev: None,
            fences: Vec::new(),
            records: 0,
            prefixes: Vec::new(),
            number,
            level,
        })
    }

    /// Appends one record; its id must exceed the previous one's.
    pub fn push(&mut self, r: &FinishedOrder) -> Result<(), JournalError> {
        if self.prev.is_some_and(|p| r.id.0 <= p) {
            return Err(JournalError::Invalid(format!(
                "finished orders must be written in increasing id order: {} after {}",
                r.id.0,
                self.prev.unwrap_or(0)
            )));
        }
        let in_block = self.block_count > 0;
        if !in_block {
            self.block_first = r.id.0;
        }
        encode_record(
            in_block.then_some(self.prev.unwrap_or(0)),
            r,
            &mut self.block,
        );
        self.block_count += 1;
        self.prev = Some(r.id.0);
        self.records += 1;
        let p = prefix_of(r.id.0);
        match self.prefixes.last_mut() {
            Some((q, max)) if *q == p => *max = r.id.0,
            _ => self.prefixes.push((p, r.id.0)),
        }
        if self.block.len() >= BLOCK_BYTES {
            self.end_block()?;
        }
        Ok(())
    }

    fn end_block(&mut self) -> Result<(), JournalError> {
        if self.block_count == 0 {
            return Ok(());
        }
        let mut payload = Vec::with_capacity(self.block.len() + 8);
        put_uint(&mut payload, u128::from(self.block_count));
        payload.extend_from_slice(&self.block);
        let len = payload.len() as u32;
        let crc = crc32fast::hash(&payload);
        let offset = self.out.offset();
        self.out.write(&len.to_le_bytes())?;
        self.out.write(&payload)?;
        self.out.write(&crc.to_le_bytes())?;
        self.fences.push(Fence {
            first: self.block_first,
            last: self.prev.unwrap_or(0),
            offset,
            len,
        });
        self.block.clear();
        self.block_count = 0;
        Ok(())
    }

    /// Writes the footer, fsyncs, renames the file in and returns its reader. The directory
    /// entry is made durable by the caller's next [`crate::sync_dir`] (a manifest write does it).
    pub fn finish(mut self) -> Result<FinishedRun, JournalError> {
        self.end_block()?;
        let mut footer = Vec::with_capacity(16 + self.fences.len() * 28);
        put_uint(&mut footer, self.fences.len() as u128);
        for f in &self.fences {
            footer.extend_from_slice(&f.first.to_le_bytes());
            footer.extend_from_slice(&f.last.to_le_bytes());
            footer.extend_from_slice(&f.offset.to_le_bytes());
            footer.extend_from_slice(&f.len.to_le_bytes());
        }
        footer.extend_from_slice(&self.records.to_le_bytes());
        footer.extend_from_slice(&(self.prefixes.len() as u32).to_le_bytes());
        for (p, max) in &self.prefixes {
            footer.extend_from_slice(&p.to_le_bytes());
            footer.extend_from_slice(&max.to_le_bytes());
        }
        let path = self.out.seal(footer, END_MAGIC)?;
        FinishedRun::open(&path)
    }

    /// The number of the run being written.
    pub fn number(&self) -> u64 {
        self.number
    }

    /// Its compaction level.
    pub fn level(&self) -> u8 {
        self.level
    }
}

/// An open run: its fences in memory, its blocks read on demand.
#[derive(Debug)]
pub struct FinishedRun {
    path: PathBuf,
    file: File,
    number: u64,
    level: u8,
    fences: Vec<Fence>,
    records: u64,
    prefixes: Vec<(u32, u64)>,
    bytes: u64,
}

impl FinishedRun {
    /// Opens a run and reads its header and footer (not its blocks).
    pub fn open(path: &Path) -> Result<FinishedRun, JournalError> {
        let corrupt = corrupt_in(path);
        let sealed = open_sealed(
            path,
            &SealedKind {
                name: "finished-order run",
                short: "run",
                magic: MAGIC,
                end_magic: END_MAGIC,
                version: VERSION,
                header_len: HEADER_LEN,
                min_footer: 4,
            },
        )?;
        let (file, fstart, body) = (sealed.file, sealed.footer_start, &sealed.footer[..]);
        let level = sealed.header[5];
        let number = u64::from_le_bytes(sealed.header[6..14].try_into().expect("8 bytes"));
        let bytes = sealed.bytes;
        /// Fences, the record count, and the highest id per broker prefix.
        type Footer = (Vec<Fence>, u64, Vec<(u32, u64)>);
        let parse = || -> Result<Footer, String> {
            let mut rd = Reader::new(body);
            let n = rd.u64()?;
            if n > body.len() as u64 / 28 {
                return Err(format!("{n} fences cannot fit the footer"));
            }
            let mut fences = Vec::with_capacity(n as usize);
            let mut end = HEADER_LEN;
            for _ in 0..n {
                let b = rd.bytes(28)?;
                let f = Fence {
                    first: u64::from_le_bytes(b[..8].try_into().expect("8")),
                    last: u64::from_le_bytes(b[8..16].try_into().expect("8")),
                    offset: u64::from_le_bytes(b[16..24].try_into().expect("8")),
                    len: u32::from_le_bytes(b[24..28].try_into().expect("4")),
                };
                let prev_last = fences.last().map(|p: &Fence| p.last);
                if f.offset != end
                    || f.len > MAX_BLOCK
                    || f.first > f.last
                    || prev_last.is_some_and(|p| f.first <= p)
                {
                    return Err("fences out of order".into());
                }
                end = f.offset + 8 + u64::from(f.len);
                fences.push(f);
            }
            if end != fstart {
                return Err("blocks do not end where the footer starts".into());
            }
            let records = u64::from_le_bytes(rd.bytes(8)?.try_into().expect("8"));
            let np = u32::from_le_bytes(rd.bytes(4)?.try_into().expect("4"));
            let mut prefixes = Vec::new();
            for _ in 0..np {
                let p = u32::from_le_bytes(rd.bytes(4)?.try_into().expect("4"));
                let max = u64::from_le_bytes(rd.bytes(8)?.try_into().expect("8"));
                prefixes.push((p, max));
            }
            if !rd.is_empty() {
                return Err("trailing bytes in the footer".into());
            }
            Ok((fences, records, prefixes))
        };
        let (fences, records, prefixes) = parse().map_err(|d| corrupt(fstart, d))?;
        Ok(FinishedRun {
            path: path.to_owned(),
            file,
            number,
            level,
            fences,
            records,
            prefixes,
            bytes,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn number(&self) -> u64 {
        self.number
    }

    pub fn level(&self) -> u8 {
        self.level
    }

    /// Records in the run.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Size of the file.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Bytes of fences held in memory.
    pub fn memory_bytes(&self) -> usize {
        self.fences.capacity() * std::mem::size_of::<Fence>()
            + self.prefixes.capacity() * std::mem::size_of::<(u32, u64)>()
    }

    /// The highest id in each id namespace (`id >> 40`) the run holds.
    pub fn prefix_max(&self) -> &[(u32, u64)] {
        &self.prefixes
    }

    /// The lowest and highest id, if any.
    pub fn id_range(&self) -> Option<(u64, u64)> {
        Some((self.fences.first()?.first, self.fences.last()?.last))
    }

    fn block(&self, i: usize) -> Result<Vec<FinishedOrder>, JournalError> {
        let mut out = Vec::new();
        self.visit_block(i, &mut |r| {
            out.push(r);
            true
        })?;
        Ok(out)
    }

    /// Reads block `i` (length and CRC checked) and hands its records to `f` in id order until
    /// `f` returns false (a lookup decodes half a block on average). A block decoded to its
    /// end is checked against its fence.
    fn visit_block(
        &self,
        i: usize,
        f: &mut dyn FnMut(FinishedOrder) -> bool,
    ) -> Result<(), JournalError> {
        let fence = self.fences[i];
        let mut buf = vec![0u8; fence.len as usize + 8];
        read_at(&self.file, &mut buf, fence.offset).map_err(|e| io_err(&self.path, e))?;
        let corrupt = |detail: String| JournalError::Corrupt {
            segment: self.path.clone(),
            offset: fence.offset,
            detail,
        };
        let len = u32::from_le_bytes(buf[..4].try_into().expect("4"));
        if len != fence.len {
            return Err(corrupt(format!(
                "block length {len}, fence says {}",
                fence.len
            )));
        }
        let (payload, crc) = buf[4..].split_at(fence.len as usize);
        if crc32fast::hash(payload) != u32::from_le_bytes(crc.try_into().expect("4")) {
            return Err(corrupt("block CRC mismatch".into()));
        }
        let mut rd = Reader::new(payload);
        let n = rd.u64().map_err(&corrupt)?;
        if n == 0 || n > payload.len() as u64 {
            return Err(corrupt(format!("{n} records cannot fit the block")));
        }
        let (mut first, mut prev) = (None, None);
        for _ in 0..n {
            let r = decode_record(prev, &mut rd).map_err(&corrupt)?;
            first = first.or(Some(r.id.0));
            prev = Some(r.id.0);
            if !f(r) {
                return Ok(());
            }
        }
        if !rd.is_empty() || first != Some(fence.first) || prev != Some(fence.last) {
            return Err(corrupt("block does not match its fence".into()));
        }
        Ok(())
    }

    /// The record of `id`, reading at most one block.
    pub fn get(&self, id: OrderId) -> Result<Option<FinishedOrder>, JournalError> {
        let i = self.fences.partition_point(|f| f.last < id.0);
        let mut found = None;
        if self.fences.get(i).is_some_and(|f| f.first <= id.0) {
            self.visit_block(i, &mut |r| {
                if r.id.0 < id.0 {
                    return true;
                }
                found = (r.id == id).then_some(r);
                false
            })?;
        }
        Ok(found)
    }

    /// Calls `f` for the records of `ids` (sorted, no duplicates) this run holds, in id order,
    /// reading each block at most once: many ids cost the blocks they fall in, not a block
    /// read per id.
    pub fn get_many(
        &self,
        ids: &[u64],
        f: &mut dyn FnMut(FinishedOrder),
    ) -> Result<(), JournalError> {
        let mut k = 0;
        while k < ids.len() {
            let i = self.fences.partition_point(|x| x.last < ids[k]);
            let Some(fence) = self.fences.get(i) else {
                break;
            };
            if ids[k] < fence.first {
                // Between two blocks: not in the run.
                k += ids[k..].partition_point(|&id| id < fence.first);
                continue;
            }
            let end = k + ids[k..].partition_point(|&id| id <= fence.last);
            let wanted = &ids[k..end];
            let mut w = 0;
            self.visit_block(i, &mut |r| {
                while w < wanted.len() && wanted[w] < r.id.0 {
                    w += 1;
                }
                if wanted.get(w) == Some(&r.id.0) {
                    f(r);
                    w += 1;
                }
                w < wanted.len()
            })?;
            k = end;
        }
        Ok(())
    }

    /// Calls `f` for every record with `lo <= id <= hi`, in id order.
    pub fn scan(
        &self,
        lo: u64,
        hi: u64,
        f: &mut dyn FnMut(&FinishedOrder),
    ) -> Result<(), JournalError> {
        let start = self.fences.partition_point(|x| x.last < lo);
        for i in start..self.fences.len() {
            if self.fences[i].first > hi {
                break;
            }
            self.visit_block(i, &mut |r| {
                if (lo..=hi).contains(&r.id.0) {
                    f(&r);
                }
                true
            })?;
        }
        Ok(())
    }

    /// Every record in id order, a block at a time (merges).
    pub fn iter(&self) -> RunIter<'_> {
        RunIter {
            run: self,
            block: 0,
            buf: Vec::new().into_iter(),
        }
    }
}

/// Streams a run's records in id order.
pub struct RunIter<'a> {
    run: &'a FinishedRun,
    block: usize,
    buf: std::vec::IntoIter<FinishedOrder>,
}

impl Iterator for RunIter<'_> {
    type Item = Result<FinishedOrder, JournalError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(r) = self.buf.next() {
                return Some(Ok(r));
            }
            if self.block >= self.run.fences.len() {
                return None;
            }
            match self.run.block(self.block) {
                Ok(b) => self.buf = b.into_iter(),
                Err(e) => {
                    self.block = self.run.fences.len();
                    return Some(Err(e));
                }
            }
            self.block += 1;
        }
    }
}

/// Writes a run of `records` (sorted by id, unique) and returns it.
pub fn write_run(
    dir: &Path,
    number: u64,
    level: u8,
    records: &[FinishedOrder],
) -> Result<FinishedRun, JournalError> {
    let mut w = RunWriter::create(dir, number, level)?;
    for r in records {
        w.push(r)?;
    }
    w.finish()
}

/// Merges `inputs` into one run (streaming, one block per input in memory). An id in several
/// inputs (it cannot happen with a consistent manifest) is kept once, from the earliest input.
pub fn merge_runs(
    dir: &Path,
    inputs: &[&FinishedRun],
    number: u64,
    level: u8,
) -> Result<FinishedRun, JournalError> {
    let mut w = RunWriter::create(dir, number, level)?;
    let mut iters: Vec<_> = inputs.iter().map(|r| r.iter()).collect();
    let mut heads: Vec<Option<FinishedOrder>> = Vec::with_capacity(iters.len());
    for it in &mut iters {
        heads.push(it.next().transpose()?);
    }
    let mut last: Option<u64> = None;
    while let Some(k) = (0..heads.len())
        .filter(|&k| heads[k].is_some())
        .min_by_key(|&k| heads[k].map(|r| r.id.0))
    {
        let r = heads[k].expect("some");
        heads[k] = iters[k].next().transpose()?;
        if last == Some(r.id.0) {
            continue;
        }
        last = Some(r.id.0);
        w.push(&r)?;
    }
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: u64, k: u64) -> FinishedOrder {
        FinishedOrder {
            id: OrderId(id),
            broker: BrokerId((k % 5) as u32),
            security: SecurityId((k % 300) as u32),
            side: if k.is_multiple_of(2) {
                Side::Buy
            } else {
                Side::Sell
            },
            kind: OrderType::ALL[(k % 7) as usize],
            price: (k as i64 % 1000) * 50 - 100,
            qty: k * 100,
            filled: k * 37,
            state: match k % 4 {
                0 => FinalState::Filled,
                1 => FinalState::Cancelled,
                2 => FinalState::Expired,
                _ => FinalState::Rejected(RejectReason::ALL[(k % 14) as usize]),
            },
        }
    }

    #[test]
    fn round_trip_lookup_scan_and_merge() {
        let dir = tempfile::tempdir().unwrap();
        let a: Vec<_> = (0..20_000u64).map(|k| rec(k * 3 + 1, k)).collect();
        let b: Vec<_> = (0..7_000u64)
            .map(|k| rec((3 << 40) + k * 2, k + 11))
            .chain((0..5u64).map(|k| rec(u64::MAX - 5 + k, k)))
            .collect();
        let ra = write_run(dir.path(), 1, 0, &a).unwrap();
        let rb = write_run(dir.path(), 2, 0, &b).unwrap();
        assert!(ra.fences.len() > 10, "several blocks");
        for r in a.iter().chain(&b) {
            let found = ra.get(r.id).unwrap().or(rb.get(r.id).unwrap());
            assert_eq!(found, Some(*r));
        }
        for miss in [0u64, 2, 3, 60_001, (3 << 40) + 1, u64::MAX - 6] {
            assert_eq!(ra.get(OrderId(miss)).unwrap(), None);
            assert_eq!(rb.get(OrderId(miss)).unwrap(), None);
        }
        assert_eq!(
            rb.prefix_max(),
            &[(3, (3 << 40) + 13_998), (0xff_ffff, u64::MAX - 1)]
        );
        let mut seen = Vec::new();
        ra.scan(100, 200, &mut |r| seen.push(r.id.0)).unwrap();
        assert_eq!(seen, (100..=200).filter(|x| x % 3 == 1).collect::<Vec<_>>());
        let m = merge_runs(dir.path(), &[&ra, &rb], 3, 1).unwrap();
        assert_eq!(m.records(), (a.len() + b.len()) as u64);
        assert_eq!(m.level(), 1);
        let all: Vec<_> = m.iter().map(Result::unwrap).collect();
        let mut want: Vec<_> = a.iter().chain(&b).copied().collect();
        want.sort_by_key(|r| r.id);
        assert_eq!(all, want);
        let again = FinishedRun::open(m.path()).unwrap();
        assert_eq!(again.records(), m.records());
        assert_eq!(again.get(OrderId(u64::MAX - 1)).unwrap(), b.last().copied());
    }

    #[test]
    fn get_many_finds_exactly_what_get_finds() {
        let dir = tempfile::tempdir().unwrap();
        let records: Vec<_> = (0..30_000u64)
            .map(|k| rec(k * 3 + 1, k))
            .chain((0..3_000u64).map(|k| rec((2 << 40) + k * 5, k)))
            .collect();
        let run = write_run(dir.path(), 1, 0, &records).unwrap();
        // Present and absent ids mixed: dense runs, strays, ids before, between and after the
        // blocks, one block's first and last, a lone id far out.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut ids: Vec<u64> = (0..40_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                match x % 4 {
                    0 => x % 95_000,
                    1 => (2 << 40) + x % 16_000,
                    2 => x % 400,
                    _ => x,
                }
            })
            .chain(
                run.fences
                    .iter()
                    .flat_map(|f| [f.first, f.last, f.last + 1]),
            )
            .chain([0, 1, u64::MAX])
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let mut found = Vec::new();
        run.get_many(&ids, &mut |r| found.push(r)).unwrap();
        let expected: Vec<_> = ids
            .iter()
            .filter_map(|&id| run.get(OrderId(id)).unwrap())
            .collect();
        assert!(expected.len() > 3_000, "many of the ids are present");
        assert_eq!(found, expected, "the same records, in id order");
        let mut none = Vec::new();
        run.get_many(&[], &mut |r| none.push(r)).unwrap();
        run.get_many(&[2, 3, 95_000, 1 << 40], &mut |r| none.push(r))
            .unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn out_of_order_records_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = RunWriter::create(dir.path(), 1, 0).unwrap();
        w.push(&rec(5, 1)).unwrap();
        assert!(w.push(&rec(5, 2)).is_err());
        assert!(w.push(&rec(4, 2)).is_err());
    }

    #[test]
    fn every_damaged_byte_is_an_error_or_a_miss_never_a_wrong_record() {
        let dir = tempfile::tempdir().unwrap();
        let recs: Vec<_> = (0..600u64).map(|k| rec(k * 7 + 3, k)).collect();
        let run = write_run(dir.path(), 9, 0, &recs).unwrap();
        let bytes = fs::read(run.path()).unwrap();
        let path = dir.path().join("damaged.fin");
        for i in (0..bytes.len()).step_by(37) {
            let mut b = bytes.clone();
            b[i] ^= 0x5a;
            fs::write(&path, &b).unwrap();
            let Ok(r) = FinishedRun::open(&path) else {
                continue;
            };
            for want in recs.iter().step_by(13) {
                if let Ok(Some(got)) = r.get(want.id) {
                    assert_eq!(got, *want, "byte {i}");
                }
            }
        }
        // A truncated file does not open.
        fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        assert!(FinishedRun::open(&path).is_err());
    }

    #[test]
    fn names() {
        assert_eq!(run_file_name(42), "run-0000000042.fin");
        assert_eq!(parse_run_file_name("run-0000000042.fin"), Some(42));
        assert_eq!(parse_run_file_name("run-42.fin.tmp"), None);
    }
}
