//! Checkpoints of a long trading day: book snapshots, the finished-order runs
//! ([`crate::finished`]) and the manifest that says which of them count, all in one directory
//! (`<data>/snapshots/`). With them a manager restarts from the latest snapshot of every book
//! plus the journal after it, instead of the whole day.
//!
//! ## Book snapshot
//! One book right after command `seq` of its security: the engine's exact state (priority
//! order included) and, per resting order, what the manager's projection knows of it. The
//! books of one checkpoint are stored together in one pack ([`crate::packs`]); data dirs of the
//! previous format kept one file per book, `book-<security:06>-<seq:012>.snap`, and are still
//! read.
//! ```text
//! magic[4] "GMSB" | version u8 = 1 | security u32 LE | seq u64 LE
//! | phase u8 (Phase::ALL index) | zz(reference) | has_last u8 | [zz(last trade)]
//! | bids uint | asks uint | per order, bids then asks, each side in priority order:
//!   id uint | broker uint | flags u8 (bit 0 side, bits 1-3 OrderType::ALL index)
//!   | zz(price) | qty uint | filled uint | client_ref uint | since uint
//! | crc u32 LE (of everything before)
//! ```
//!
//! ## `MANIFEST`
//! Text, one item per line, ending with the CRC32 of the lines before it:
//! ```text
//! gridmatch-snapshots 1
//! generation <n>          each write is one more
//! next_seq <n>            the journal's next seq when it was written
//! resume_seq <n>          recovery reads the journal from this seq on
//! phase <PHASE>           the market phase as sequenced
//! last_time <ns>          exchange time of the last sequenced command
//! max_order_id <n>        highest order id any NEW used
//! next_run <n>            number for the next run file
//! broker <id> <hex name> <max own id>
//! run <number> <level>    a run that counts (runs not listed are leftovers)
//! book <security> <seq> <file | ->   the pack (or old book file) holding it; -: empty book
//! crc32 <8 hex digits>
//! ```
//! Written aside, fsynced, renamed in, directory fsynced: the checkpoint is the manifest, so
//! a crash leaves the previous one whole. Files it does not name are leftovers of a
//! checkpoint that never completed and are removed.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use matching::{
    BookImage, BrokerId, OrderId, OrderType, Phase, Price, Qty, RestingKind, RestingOrder,
    SecurityId, Side,
};

use crate::codec::{side_kind_bits, side_kind_of};
use crate::files::{sync_dir, write_aside};
use crate::packs::{parse_pack_file_name, Pack};
use crate::varint::{put_uint, zigzag, Reader};
use crate::{io_err, JournalError};

const BOOK_MAGIC: &[u8; 4] = b"GMSB";
const BOOK_VERSION: u8 = 1;
const MANIFEST: &str = "MANIFEST";
const MANIFEST_HEADER: &str = "gridmatch-snapshots 1";

/// A resting order in a book snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiveOrder {
    pub id: OrderId,
    pub broker: BrokerId,
    pub side: Side,
    /// LO or MTL (a rested MTL remainder), or ATO/ATC in their call phase.
    pub kind: OrderType,
    /// Resting price (0 for ATO/ATC).
    pub price: Price,
    /// Filled plus open.
    pub qty: Qty,
    pub filled: Qty,
    /// The client reference of its NEW (for reports about it).
    pub client_ref: u64,
    /// The seq that gave it its time priority (its arrival, or the amend that cost it).
    pub since: u64,
}

impl LiveOrder {
    /// Open (resting) quantity.
    pub fn open(&self) -> Qty {
        self.qty - self.filled
    }
}

/// One book right after command `seq` of its security.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BookSnapshot {
    pub security: SecurityId,
    pub seq: u64,
    pub phase: Phase,
    pub reference: Price,
    pub last_trade: Option<Price>,
    /// In priority order.
    pub bids: Vec<LiveOrder>,
    pub asks: Vec<LiveOrder>,
}

impl BookSnapshot {
    /// The engine's image of the book.
    pub fn image(&self) -> BookImage {
        let resting = |o: &LiveOrder| RestingOrder {
            id: o.id,
            broker: o.broker,
            qty: o.open(),
            kind: match o.kind {
                OrderType::Ato => RestingKind::Ato,
                OrderType::Atc => RestingKind::Atc,
                _ => RestingKind::Limit,
            },
            price: o.price,
        };
        BookImage {
            security: self.security,
            phase: self.phase,
            reference: self.reference,
            last_trade: self.last_trade,
            bids: self.bids.iter().map(resting).collect(),
            asks: self.asks.iter().map(resting).collect(),
        }
    }

    /// Resting orders.
    pub fn len(&self) -> usize {
        self.bids.len() + self.asks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bids.is_empty() && self.asks.is_empty()
    }

    /// The file the snapshot is kept in.
    pub fn file_name(&self) -> String {
        format!("book-{:06}-{:012}.snap", self.security.0, self.seq)
    }

    /// The file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.len() * 24);
        out.extend_from_slice(BOOK_MAGIC);
        out.push(BOOK_VERSION);
        out.extend_from_slice(&self.security.0.to_le_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.push(phase_index(self.phase));
        put_uint(&mut out, zigzag(i128::from(self.reference)));
        match self.last_trade {
            Some(p) => {
                out.push(1);
                put_uint(&mut out, zigzag(i128::from(p)));
            }
            None => out.push(0),
        }
        put_uint(&mut out, self.bids.len() as u128);
        put_uint(&mut out, self.asks.len() as u128);
        for o in self.bids.iter().chain(&self.asks) {
            put_uint(&mut out, u128::from(o.id.0));
            put_uint(&mut out, u128::from(o.broker.0));
            out.push(side_kind_bits(o.side, o.kind));
            put_uint(&mut out, zigzag(i128::from(o.price)));
            put_uint(&mut out, u128::from(o.qty));
            put_uint(&mut out, u128::from(o.filled));
            put_uint(&mut out, u128::from(o.client_ref));
            put_uint(&mut out, u128::from(o.since));
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Parses a file's bytes; every damage is an error naming what is wrong.
    pub fn decode(bytes: &[u8]) -> Result<BookSnapshot, String> {
        if bytes.len() < 4 + 1 + 4 + 8 + 4 {
            return Err("too short for a book snapshot".into());
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
            return Err("CRC mismatch".into());
        }
        if &body[..4] != BOOK_MAGIC {
            return Err("not a book snapshot (bad magic)".into());
        }
        if body[4] != BOOK_VERSION {
            return Err(format!("unsupported book snapshot version {}", body[4]));
        }
        let security = SecurityId(u32::from_le_bytes(body[5..9].try_into().expect("4")));
        let seq = u64::from_le_bytes(body[9..17].try_into().expect("8"));
        let mut rd = Reader::new(&body[17..]);
        let phase = *Phase::ALL
            .get(usize::from(rd.byte()?))
            .ok_or("unknown phase")?;
        let price = |rd: &mut Reader<'_>| {
            i64::try_from(rd.signed()?).map_err(|_| "price does not fit 64 bits".to_string())
        };
        let reference = price(&mut rd)?;
        let last_trade = match rd.byte()? {
            0 => None,
            1 => Some(price(&mut rd)?),
            b => return Err(format!("bad last-trade flag {b}")),
        };
        let nb = rd.u64()?;
        let na = rd.u64()?;
        // Every order takes at least 8 bytes: a count beyond that is damage.
        if nb.saturating_add(na) > body.len() as u64 / 8 {
            return Err(format!("{nb} + {na} orders cannot fit the file"));
        }
        let order = |rd: &mut Reader<'_>| -> Result<LiveOrder, String> {
            let id = OrderId(rd.u64()?);
            let broker = BrokerId(rd.u32()?);
            let flags = rd.byte()?;
            if flags & 0xf0 != 0 {
                return Err(format!("unknown order flags {flags:#04x}"));
            }
            let (side, kind) = side_kind_of(flags)?;
            let price = price(rd)?;
            let qty = rd.u64()?;
            let filled = rd.u64()?;
            if filled >= qty {
                return Err(format!("order {} rests with nothing open", id.0));
            }
            Ok(LiveOrder {
                id,
                broker,
                side,
                kind,
                price,
                qty,
                filled,
                client_ref: rd.u64()?,
                since: rd.u64()?,
            })
        };
        let bids = (0..nb)
            .map(|_| order(&mut rd))
            .collect::<Result<Vec<_>, _>>()?;
        let asks = (0..na)
            .map(|_| order(&mut rd))
            .collect::<Result<Vec<_>, _>>()?;
        if !rd.is_empty() {
            return Err("trailing bytes".into());
        }
        if bids.iter().any(|o| o.side != Side::Buy) || asks.iter().any(|o| o.side != Side::Sell) {
            return Err("an order on the wrong side".into());
        }
        Ok(BookSnapshot {
            security,
            seq,
            phase,
            reference,
            last_trade,
            bids,
            asks,
        })
    }
}

fn phase_index(p: Phase) -> u8 {
    Phase::ALL.iter().position(|x| *x == p).unwrap_or(0) as u8
}

/// A run the manifest counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunRef {
    pub number: u64,
    pub level: u8,
}

/// A book's durable snapshot, as the manifest names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BookRef {
    pub security: SecurityId,
    /// The snapshot is the book right after this seq (0 with no file: the empty book).
    pub seq: u64,
    pub file: Option<String>,
}

/// One broker as the manifest keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerRef {
    pub id: BrokerId,
    pub name: String,
    /// Highest of its own order ids used so far.
    pub max_own_id: u64,
}

/// Which snapshots and runs make up the latest checkpoint, and what recovery needs besides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    pub generation: u64,
    pub next_seq: u64,
    /// The journal is read from this seq on: every book's snapshot covers what came before,
    /// and every finished order and rejected NEW before it is in the runs.
    pub resume_seq: u64,
    pub phase: Phase,
    /// Exchange time of the last sequenced command (a restarted schedule resumes after it).
    pub last_time: i64,
    pub max_order_id: u64,
    /// How many NEWs refused after seq `next_seq - 1` were journaled before the checkpoint:
    /// all of them are in its runs (like every refusal journaled before that seq). `None` in
    /// manifests written before it was recorded.
    pub refusals_at_next_seq: Option<u64>,
    pub next_run: u64,
    pub brokers: Vec<BrokerRef>,
    pub runs: Vec<RunRef>,
    pub books: Vec<BookRef>,
}

impl Manifest {
    fn encode(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{MANIFEST_HEADER}");
        let _ = writeln!(s, "generation {}", self.generation);
        let _ = writeln!(s, "next_seq {}", self.next_seq);
        let _ = writeln!(s, "resume_seq {}", self.resume_seq);
        let _ = writeln!(s, "phase {}", self.phase.as_str());
        let _ = writeln!(s, "last_time {}", self.last_time);
        let _ = writeln!(s, "max_order_id {}", self.max_order_id);
        if let Some(k) = self.refusals_at_next_seq {
            let _ = writeln!(s, "refusals_at_next_seq {k}");
        }
        let _ = writeln!(s, "next_run {}", self.next_run);
        for b in &self.brokers {
            let hex: String = b.name.bytes().map(|x| format!("{x:02x}")).collect();
            let _ = writeln!(s, "broker {} {hex} {}", b.id.0, b.max_own_id);
        }
        for r in &self.runs {
            let _ = writeln!(s, "run {} {}", r.number, r.level);
        }
        for b in &self.books {
            let _ = writeln!(
                s,
                "book {} {} {}",
                b.security.0,
                b.seq,
                b.file.as_deref().unwrap_or("-")
            );
        }
        let crc = crc32fast::hash(s.as_bytes());
        let _ = writeln!(s, "crc32 {crc:08x}");
        s
    }

    fn decode(text: &str) -> Result<Manifest, String> {
        let body_end = text
            .trim_end_matches('\n')
            .rfind('\n')
            .map(|i| i + 1)
            .ok_or("no CRC line")?;
        let (body, last) = text.split_at(body_end);
        let crc = last
            .trim_end()
            .strip_prefix("crc32 ")
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or("the last line is not the CRC")?;
        if crc32fast::hash(body.as_bytes()) != crc {
            return Err("CRC mismatch".into());
        }
        let mut lines = body.lines();
        if lines.next() != Some(MANIFEST_HEADER) {
            return Err(format!("the first line is not {MANIFEST_HEADER:?}"));
        }
        let mut m = Manifest {
            generation: 0,
            next_seq: 1,
            resume_seq: 1,
            phase: Phase::Continuous,
            last_time: 0,
            max_order_id: 0,
            refusals_at_next_seq: None,
            next_run: 1,
            brokers: Vec::new(),
            runs: Vec::new(),
            books: Vec::new(),
        };
        for line in lines {
            let f: Vec<&str> = line.split(' ').collect();
            let num = |i: usize| -> Result<u64, String> {
                f.get(i)
                    .and_then(|x| x.parse().ok())
                    .ok_or_else(|| format!("bad line {line:?}"))
            };
            match (f[0], f.len()) {
                ("generation", 2) => m.generation = num(1)?,
                ("next_seq", 2) => m.next_seq = num(1)?,
                ("resume_seq", 2) => m.resume_seq = num(1)?,
                ("phase", 2) => {
                    m.phase = Phase::ALL
                        .into_iter()
                        .find(|p| p.as_str() == f[1])
                        .ok_or_else(|| format!("bad phase {:?}", f[1]))?
                }
                ("last_time", 2) => {
                    m.last_time = f[1].parse().map_err(|_| format!("bad line {line:?}"))?
                }
                ("max_order_id", 2) => m.max_order_id = num(1)?,
                ("refusals_at_next_seq", 2) => m.refusals_at_next_seq = Some(num(1)?),
                ("next_run", 2) => m.next_run = num(1)?,
                ("broker", 4) => {
                    let hex = f[2];
                    if !hex.len().is_multiple_of(2) {
                        return Err(format!("bad broker name in {line:?}"));
                    }
                    let bytes = (0..hex.len())
                        .step_by(2)
                        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
                        .collect::<Result<Vec<u8>, _>>()
                        .map_err(|_| format!("bad broker name in {line:?}"))?;
                    m.brokers.push(BrokerRef {
                        id: BrokerId(u32::try_from(num(1)?).map_err(|_| "bad broker id")?),
                        name: String::from_utf8(bytes)
                            .map_err(|_| format!("broker name not UTF-8 in {line:?}"))?,
                        max_own_id: num(3)?,
                    })
                }
                ("run", 3) => m.runs.push(RunRef {
                    number: num(1)?,
                    level: u8::try_from(num(2)?).map_err(|_| "bad run level")?,
                }),
                ("book", 4) => m.books.push(BookRef {
                    security: SecurityId(u32::try_from(num(1)?).map_err(|_| "bad security")?),
                    seq: num(2)?,
                    file: (f[3] != "-").then(|| f[3].to_string()),
                }),
                _ => return Err(format!("unknown line {line:?}")),
            }
        }
        Ok(m)
    }
}

/// The directory of book snapshots, runs and the manifest.
#[derive(Clone, Debug)]
pub struct SnapshotDir {
    dir: PathBuf,
}

impl SnapshotDir {
    /// `dir`, created if missing.
    pub fn open(dir: &Path) -> Result<SnapshotDir, JournalError> {
        fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        Ok(SnapshotDir {
            dir: dir.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Writes a single-book snapshot file, the format before packs (tests of reading it), and
    /// returns its file name.
    #[cfg(test)]
    pub fn write_book(&self, snap: &BookSnapshot) -> Result<String, JournalError> {
        let name = snap.file_name();
        let path = self.dir.join(&name);
        let tmp = path.with_extension("snap.tmp");
        write_aside(&tmp, &path, &snap.encode())?;
        Ok(name)
    }

    /// Reads every book snapshot `m` names, each checked against its manifest line: from
    /// packs (each opened once) or from single book files of the previous format.
    pub fn read_books(&self, m: &Manifest) -> Result<Vec<BookSnapshot>, JournalError> {
        let mut packs: rustc_hash::FxHashMap<&str, Pack> = Default::default();
        let mut out = Vec::with_capacity(m.books.len());
        for b in &m.books {
            let Some(file) = b.file.as_deref() else {
                continue;
            };
            let snap = if parse_pack_file_name(file).is_some() {
                if !packs.contains_key(file) {
                    packs.insert(file, Pack::open(&self.dir.join(file))?);
                }
                packs[file].read_book(b.security.0)?
            } else {
                self.read_book(file)?
            };
            if snap.security != b.security || snap.seq != b.seq {
                return Err(JournalError::Corrupt {
                    segment: self.dir.join(file),
                    offset: 0,
                    detail: format!(
                        "holds security {} at seq {}, the manifest says {} at {}",
                        snap.security.0, snap.seq, b.security.0, b.seq
                    ),
                });
            }
            out.push(snap);
        }
        Ok(out)
    }

    /// Reads and checks a single-book snapshot file (the format before packs).
    pub fn read_book(&self, name: &str) -> Result<BookSnapshot, JournalError> {
        let path = self.dir.join(name);
        let bytes = fs::read(&path).map_err(|e| io_err(&path, e))?;
        BookSnapshot::decode(&bytes).map_err(|detail| JournalError::Corrupt {
            segment: path,
            offset: 0,
            detail,
        })
    }

    /// Makes `m` the checkpoint: written aside, fsynced, renamed in, directory fsynced (which
    /// also makes the books and runs written before it durable).
    pub fn write_manifest(&self, m: &Manifest) -> Result<(), JournalError> {
        let path = self.dir.join(MANIFEST);
        let tmp = self.dir.join("MANIFEST.tmp");
        write_aside(&tmp, &path, m.encode().as_bytes())?;
        sync_dir(&self.dir)
    }

    /// The checkpoint, if one was ever written.
    pub fn read_manifest(&self) -> Result<Option<Manifest>, JournalError> {
        let path = self.dir.join(MANIFEST);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path, e)),
        };
        Manifest::decode(&text)
            .map(Some)
            .map_err(|detail| JournalError::Corrupt {
                segment: path,
                offset: 0,
                detail,
            })
    }

    /// Removes every book, pack, run and temporary file `m` does not name (leftovers of a
    /// checkpoint that never completed, or replaced by a later one). Returns how many.
    pub fn remove_unreferenced(&self, m: Option<&Manifest>) -> Result<usize, JournalError> {
        let keep_books: rustc_hash::FxHashSet<&str> = m
            .iter()
            .flat_map(|m| m.books.iter().filter_map(|b| b.file.as_deref()))
            .collect();
        let keep_runs: rustc_hash::FxHashSet<u64> = m
            .iter()
            .flat_map(|m| m.runs.iter().map(|r| r.number))
            .collect();
        let mut removed = 0;
        for entry in fs::read_dir(&self.dir).map_err(|e| io_err(&self.dir, e))? {
            let entry = entry.map_err(|e| io_err(&self.dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let stale = if name.ends_with(".tmp") {
                true
            } else if (name.starts_with("book-") && name.ends_with(".snap"))
                || parse_pack_file_name(&name).is_some()
            {
                !keep_books.contains(name.as_str())
            } else if let Some(n) = crate::finished::parse_run_file_name(&name) {
                !keep_runs.contains(&n)
            } else {
                false
            };
            if stale {
                let p = entry.path();
                fs::remove_file(&p).map_err(|e| io_err(&p, e))?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap() -> BookSnapshot {
        let o = |id: u64, side, kind, price, since| LiveOrder {
            id: OrderId(id),
            broker: BrokerId(id as u32 % 3),
            side,
            kind,
            price,
            qty: 1_000 + id % 1_000_000,
            filled: id % 1_000,
            client_ref: id.wrapping_mul(11),
            since,
        };
        BookSnapshot {
            security: SecurityId(7),
            seq: 123_456,
            phase: Phase::Atc,
            reference: 25_000,
            last_trade: Some(-5),
            bids: vec![
                o(9, Side::Buy, OrderType::Atc, 0, 5),
                o(1 << 45, Side::Buy, OrderType::Limit, 25_100, 2),
                o(3, Side::Buy, OrderType::Mtl, 25_000, 1),
            ],
            asks: vec![o(u64::MAX, Side::Sell, OrderType::Limit, 26_000, 9)],
        }
    }

    #[test]
    fn book_round_trip_and_damage() {
        let s = snap();
        let bytes = s.encode();
        assert_eq!(BookSnapshot::decode(&bytes).unwrap(), s);
        let img = s.image();
        assert_eq!(img.bids[0].kind, RestingKind::Atc);
        assert_eq!(img.bids[2].kind, RestingKind::Limit);
        assert_eq!(img.bids[1].qty, s.bids[1].qty - s.bids[1].filled);
        assert_eq!(img.asks[0].id, OrderId(u64::MAX));
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x21;
            assert!(BookSnapshot::decode(&b).is_err(), "byte {i}");
        }
        for n in 0..bytes.len() {
            assert!(BookSnapshot::decode(&bytes[..n]).is_err());
        }
        let empty = BookSnapshot {
            bids: vec![],
            asks: vec![],
            last_trade: None,
            ..s
        };
        assert_eq!(BookSnapshot::decode(&empty.encode()).unwrap(), empty);
    }

    #[test]
    fn books_are_read_from_packs_and_old_book_files_and_checked_against_the_manifest() {
        use crate::packs::{pack_file_name, PackWriter};
        let dir = tempfile::tempdir().unwrap();
        let sd = SnapshotDir::open(dir.path()).unwrap();
        let a = snap();
        let b = BookSnapshot {
            security: SecurityId(9),
            seq: 7,
            ..snap()
        };
        let mut w = PackWriter::create(sd.path(), 3).unwrap();
        w.push(&a).unwrap();
        w.push(&b).unwrap();
        w.finish().unwrap();
        let old = BookSnapshot {
            security: SecurityId(11),
            ..snap()
        };
        let old_file = sd.write_book(&old).unwrap();
        let r = |sec: u32, seq: u64, file: &str| BookRef {
            security: SecurityId(sec),
            seq,
            file: Some(file.into()),
        };
        let mut m = Manifest {
            generation: 1,
            next_seq: 200_000,
            resume_seq: 10,
            phase: Phase::Continuous,
            last_time: 0,
            max_order_id: 0,
            refusals_at_next_seq: None,
            next_run: 4,
            brokers: vec![],
            runs: vec![],
            books: vec![
                r(7, a.seq, &pack_file_name(3)),
                r(9, 7, &pack_file_name(3)),
                r(11, old.seq, &old_file),
                BookRef {
                    security: SecurityId(12),
                    seq: 0,
                    file: None,
                },
            ],
        };
        assert_eq!(sd.read_books(&m).unwrap(), vec![a, b, old]);
        // Leftovers: an unnamed pack and its temporary file go, the named ones stay.
        PackWriter::create(sd.path(), 5).unwrap().finish().unwrap();
        fs::write(sd.path().join("pack-0000000006.gmp.tmp"), b"x").unwrap();
        assert_eq!(sd.remove_unreferenced(Some(&m)).unwrap(), 2);
        assert!(sd.path().join(pack_file_name(3)).exists());
        // A manifest line the pack does not answer is an error.
        m.books[1].seq = 8;
        assert!(sd.read_books(&m).is_err());
        m.books[1] = r(10, 7, &pack_file_name(3));
        assert!(sd.read_books(&m).is_err());
    }

    #[test]
    fn manifest_round_trip_damage_and_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let sd = SnapshotDir::open(&dir.path().join("snapshots")).unwrap();
        assert_eq!(sd.read_manifest().unwrap(), None);
        let s = snap();
        let name = sd.write_book(&s).unwrap();
        assert_eq!(sd.read_book(&name).unwrap(), s);
        let m = Manifest {
            generation: 4,
            next_seq: 1_000,
            resume_seq: 900,
            phase: Phase::Break,
            last_time: -17,
            max_order_id: u64::MAX,
            refusals_at_next_seq: Some(3),
            next_run: 12,
            brokers: vec![BrokerRef {
                id: BrokerId(3),
                name: "B 01,é".into(),
                max_own_id: 77,
            }],
            runs: vec![RunRef {
                number: 11,
                level: 2,
            }],
            books: vec![
                BookRef {
                    security: SecurityId(7),
                    seq: s.seq,
                    file: Some(name.clone()),
                },
                BookRef {
                    security: SecurityId(8),
                    seq: 0,
                    file: None,
                },
            ],
        };
        sd.write_manifest(&m).unwrap();
        assert_eq!(sd.read_manifest().unwrap(), Some(m.clone()));
        // Leftovers: a book and a run it does not name, a temporary file.
        let other = BookSnapshot {
            seq: 5,
            ..s.clone()
        };
        sd.write_book(&other).unwrap();
        fs::write(sd.path().join(crate::finished::run_file_name(12)), b"x").unwrap();
        fs::write(sd.path().join(crate::finished::run_file_name(11)), b"x").unwrap();
        fs::write(sd.path().join("book-000001-000000000001.snap.tmp"), b"x").unwrap();
        assert_eq!(sd.remove_unreferenced(Some(&m)).unwrap(), 3);
        assert!(sd.path().join(&name).exists());
        assert!(sd.path().join(crate::finished::run_file_name(11)).exists());
        // A damaged manifest is an error, never a silently different checkpoint.
        let path = sd.path().join(MANIFEST);
        let text = fs::read(&path).unwrap();
        for i in 0..text.len() {
            let mut b = text.clone();
            b[i] = if b[i] == b'1' { b'2' } else { b'1' };
            fs::write(&path, &b).unwrap();
            assert!(sd.read_manifest().is_err(), "byte {i}");
        }
    }
}
