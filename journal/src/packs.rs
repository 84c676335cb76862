//! Pack files: every book snapshot of one checkpoint in one file, written with one fsync
//! (instead of one file and one fsync per book), so a checkpoint costs the same few fsyncs
//! whether 2 or 2,000 books changed.
//!
//! ## Pack `pack-<number:010>.gmp`
//! ```text
//! header  magic[4] "GMSP" | version u8 = 1 | number u64 LE | crc u32 LE (of the 13 bytes)
//! book*   one book snapshot each, exactly the bytes of a book file (`BookSnapshot::encode`,
//!         with its own CRC)
//! footer  count uint, per book (securities strictly increasing):
//!           security u32 LE | seq u64 LE | offset u64 LE | len u32 LE
//!         | crc u32 LE (of the footer so far) | footer length u64 LE | magic[4] "GMSE"
//! ```
//! The footer is the per-book index: a reader opens the pack, checks the footer and reads only
//! the books it needs, each checked by its own CRC and against its index entry. A pack is
//! written aside, fsynced and renamed in; whether it counts is the manifest's business
//! ([`crate::snapshots`]): a pack no manifest names is a leftover of a checkpoint that never
//! completed.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::files::{corrupt_in, open_sealed, read_at, SealedKind, SealedWriter};
use crate::snapshots::BookSnapshot;
use crate::varint::{put_uint, Reader};
use crate::{io_err, JournalError};

const MAGIC: &[u8; 4] = b"GMSP";
const END_MAGIC: &[u8; 4] = b"GMSE";
const VERSION: u8 = 1;
const HEADER_LEN: u64 = 17;
const ENTRY_LEN: usize = 24;

/// The name of pack `number`.
pub fn pack_file_name(number: u64) -> String {
    format!("pack-{number:010}.gmp")
}

/// The pack number of a file name, if it is one.
pub fn parse_pack_file_name(name: &str) -> Option<u64> {
    name.strip_prefix("pack-")?
        .strip_suffix(".gmp")?
        .parse()
        .ok()
}

/// One book's place in a pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackEntry {
    pub security: u32,
    pub seq: u64,
    offset: u64,
    len: u32,
}

/// Writes a pack; books in strictly increasing security order.
pub struct PackWriter {
    out: SealedWriter,
    entries: Vec<PackEntry>,
}

impl PackWriter {
    /// Starts pack `number` in `dir` (written aside until [`Self::finish`]).
    pub fn create(dir: &Path, number: u64) -> Result<PackWriter, JournalError> {
        let path = dir.join(pack_file_name(number));
        let tmp = path.with_extension("gmp.tmp");
        let out = SealedWriter::create(path, tmp, MAGIC, VERSION, &number.to_le_bytes())?;
        debug_assert_eq!(out.offset(), HEADER_LEN);
        Ok(PackWriter {
            out,
            entries: Vec::new(),
        })
    }

    /// Appends a book snapshot.
    pub fn push(&mut self, book: &BookSnapshot) -> Result<(), JournalError> {
        self.push_encoded(book.security.0, book.seq, &book.encode())
    }

    /// Appends a book already encoded (a copy out of an older pack: [`Pack::read_encoded`]).
    pub fn push_encoded(
        &mut self,
        security: u32,
        seq: u64,
        bytes: &[u8],
    ) -> Result<(), JournalError> {
        if self.entries.last().is_some_and(|e| e.security >= security) {
            return Err(JournalError::Invalid(format!(
                "books must be packed in increasing security order: {security} after {}",
                self.entries.last().map_or(0, |e| e.security)
            )));
        }
        let len = u32::try_from(bytes.len())
            .map_err(|_| JournalError::Invalid(format!("book {security} is over 4 GiB")))?;
        let offset = self.out.offset();
        self.out.write(bytes)?;
        self.entries.push(PackEntry {
            security,
            seq,
            offset,
            len,
        });
        Ok(())
    }

    /// Books written so far.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Writes the footer, fsyncs (the one fsync of the pack), renames the file in and returns
    /// its index. The directory entry is made durable by the next manifest write.
    pub fn finish(self) -> Result<Vec<PackEntry>, JournalError> {
        let mut footer = Vec::with_capacity(16 + self.entries.len() * ENTRY_LEN);
        put_uint(&mut footer, self.entries.len() as u128);
        for e in &self.entries {
            footer.extend_from_slice(&e.security.to_le_bytes());
            footer.extend_from_slice(&e.seq.to_le_bytes());
            footer.extend_from_slice(&e.offset.to_le_bytes());
            footer.extend_from_slice(&e.len.to_le_bytes());
        }
        self.out.seal(footer, END_MAGIC)?;
        Ok(self.entries)
    }
}

/// An open pack: its index in memory, its books read on demand.
#[derive(Debug)]
pub struct Pack {
    path: PathBuf,
    file: File,
    entries: Vec<PackEntry>,
}

impl Pack {
    /// Opens a pack and checks its header and index (not its books).
    pub fn open(path: &Path) -> Result<Pack, JournalError> {
        let corrupt = corrupt_in(path);
        let sealed = open_sealed(
            path,
            &SealedKind {
                name: "snapshot pack",
                short: "pack",
                magic: MAGIC,
                end_magic: END_MAGIC,
                version: VERSION,
                header_len: HEADER_LEN,
                min_footer: 5,
            },
        )?;
        let (file, fstart, body) = (sealed.file, sealed.footer_start, &sealed.footer[..]);
        let parse = || -> Result<Vec<PackEntry>, String> {
            let mut rd = Reader::new(body);
            let n = rd.u64()?;
            if n > body.len() as u64 / ENTRY_LEN as u64 {
                return Err(format!("{n} books cannot fit the index"));
            }
            let mut entries: Vec<PackEntry> = Vec::with_capacity(n as usize);
            let mut end = HEADER_LEN;
            for _ in 0..n {
                let b = rd.bytes(ENTRY_LEN)?;
                let e = PackEntry {
                    security: u32::from_le_bytes(b[..4].try_into().expect("4")),
                    seq: u64::from_le_bytes(b[4..12].try_into().expect("8")),
                    offset: u64::from_le_bytes(b[12..20].try_into().expect("8")),
                    len: u32::from_le_bytes(b[20..24].try_into().expect("4")),
                };
                if e.offset != end || entries.last().is_some_and(|p| p.security >= e.security) {
                    return Err("index entries out of order".into());
                }
                end = e.offset + u64::from(e.len);
                entries.push(e);
            }
            if end != fstart {
                return Err("books do not end where the footer starts".into());
            }
            if !rd.is_empty() {
                return Err("trailing bytes in the footer".into());
            }
            Ok(entries)
        };
        let entries = parse().map_err(|d| corrupt(fstart, d))?;
        Ok(Pack {
            path: path.to_owned(),
            file,
            entries,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The books it holds, by security.
    pub fn entries(&self) -> &[PackEntry] {
        &self.entries
    }

    fn entry(&self, security: u32) -> Result<PackEntry, JournalError> {
        let i = self
            .entries
            .binary_search_by_key(&security, |e| e.security)
            .map_err(|_| {
                JournalError::Invalid(format!(
                    "{} holds no book of security {security}",
                    self.path.display()
                ))
            })?;
        Ok(self.entries[i])
    }

    /// The stored bytes of `security`'s book, checked (CRC, and the header agrees with the
    /// index), ready to be copied into a newer pack.
    pub fn read_encoded(&self, security: u32) -> Result<Vec<u8>, JournalError> {
        self.read_checked(security).map(|(bytes, _)| bytes)
    }

    /// `security`'s book snapshot.
    pub fn read_book(&self, security: u32) -> Result<BookSnapshot, JournalError> {
        self.read_checked(security).map(|(_, book)| book)
    }

    fn read_checked(&self, security: u32) -> Result<(Vec<u8>, BookSnapshot), JournalError> {
        let e = self.entry(security)?;
        let mut buf = vec![0u8; e.len as usize];
        read_at(&self.file, &mut buf, e.offset).map_err(|err| io_err(&self.path, err))?;
        let corrupt = |detail: String| JournalError::Corrupt {
            segment: self.path.clone(),
            offset: e.offset,
            detail,
        };
        let book =
            BookSnapshot::decode(&buf).map_err(|d| corrupt(format!("book {security}: {d}")))?;
        if book.security.0 != e.security || book.seq != e.seq {
            return Err(corrupt(format!(
                "the index says security {} at seq {}, the book is {} at {}",
                e.security, e.seq, book.security.0, book.seq
            )));
        }
        Ok((buf, book))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshots::LiveOrder;
    use matching::{BrokerId, OrderId, OrderType, Phase, SecurityId, Side};
    use std::fs;

    fn book(security: u32, seq: u64, orders: u64) -> BookSnapshot {
        let o = |id: u64, side| LiveOrder {
            id: OrderId(id),
            broker: BrokerId(id as u32 % 4),
            side,
            kind: OrderType::Limit,
            price: 10_000 + id as i64 % 50,
            qty: 100 + id,
            filled: id % 100,
            client_ref: id * 3,
            since: id,
        };
        BookSnapshot {
            security: SecurityId(security),
            seq,
            phase: Phase::Continuous,
            reference: 10_000,
            last_trade: seq.is_multiple_of(2).then_some(10_010),
            bids: (0..orders).map(|i| o(i * 2 + 1, Side::Buy)).collect(),
            asks: (0..orders / 2).map(|i| o(i * 2 + 2, Side::Sell)).collect(),
        }
    }

    #[test]
    fn pack_round_trip_copy_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        let books = [book(0, 5, 0), book(3, 90, 7), book(1000, 12, 300)];
        let mut w = PackWriter::create(dir.path(), 4).unwrap();
        for b in &books {
            w.push(b).unwrap();
        }
        // Out of order is refused and changes nothing.
        assert!(w.push(&book(3, 1, 1)).is_err());
        assert_eq!(w.len(), 3);
        let index = w.finish().unwrap();
        let path = dir.path().join(pack_file_name(4));
        assert!(!path.with_extension("gmp.tmp").exists());
        let pack = Pack::open(&path).unwrap();
        assert_eq!(pack.entries(), &index[..]);
        for b in &books {
            assert_eq!(&pack.read_book(b.security.0).unwrap(), b);
        }
        assert!(pack.read_book(4).is_err(), "a book it does not hold");
        // A copy into a newer pack is the same book.
        let mut w = PackWriter::create(dir.path(), 5).unwrap();
        w.push_encoded(3, 90, &pack.read_encoded(3).unwrap())
            .unwrap();
        w.finish().unwrap();
        let newer = Pack::open(&dir.path().join(pack_file_name(5))).unwrap();
        assert_eq!(newer.read_book(3).unwrap(), books[1]);
        // An empty pack is valid.
        PackWriter::create(dir.path(), 6).unwrap().finish().unwrap();
        assert!(Pack::open(&dir.path().join(pack_file_name(6)))
            .unwrap()
            .entries()
            .is_empty());
        // Every damaged byte is caught, at open or at the read of the book it hits.
        let bytes = fs::read(&path).unwrap();
        let bad = dir.path().join("bad.gmp");
        for i in (0..bytes.len()).step_by(7).chain([bytes.len() - 1]) {
            let mut b = bytes.clone();
            b[i] ^= 0x41;
            fs::write(&bad, &b).unwrap();
            let read = Pack::open(&bad).and_then(|p| {
                books
                    .iter()
                    .map(|x| p.read_book(x.security.0))
                    .collect::<Result<Vec<_>, _>>()
            });
            assert!(read.is_err(), "byte {i}");
        }
        for n in [0, 10, bytes.len() / 2, bytes.len() - 1] {
            fs::write(&bad, &bytes[..n]).unwrap();
            assert!(Pack::open(&bad).is_err(), "cut at {n}");
        }
        // A book whose header disagrees with the index.
        let mut w = PackWriter::create(dir.path(), 7).unwrap();
        w.push_encoded(9, 90, &pack.read_encoded(3).unwrap())
            .unwrap();
        w.finish().unwrap();
        let liar = Pack::open(&dir.path().join(pack_file_name(7))).unwrap();
        assert!(liar.read_book(9).is_err());
        assert_eq!(parse_pack_file_name(&pack_file_name(77)), Some(77));
        assert_eq!(parse_pack_file_name("pack-x.gmp"), None);
    }
}
