//! File plumbing shared by the journal's file kinds: positioned reads, durable directory
//! entries, files written aside and renamed in, and sealed files (a header and a footer, each
//! with its CRC, the footer found from the end) as finished-order runs and snapshot packs are.
//!
//! ```text
//! header  magic[4] | version u8 | fields | crc u32 LE (of the header so far)
//! body    what the file kind writes
//! footer  what the file kind writes | crc u32 LE (of the footer so far)
//!         | footer length u64 LE (with its crc) | end magic[4]
//! ```

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::{io_err, JournalError};

/// The footer's fixed tail: its length and the end magic.
const TAIL_LEN: u64 = 12;

#[cfg(unix)]
pub(crate) fn read_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.read_exact_at(buf, offset)
}

#[cfg(windows)]
pub(crate) fn read_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        let n = file.seek_read(buf, offset)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf = &mut buf[n..];
        offset += n as u64;
    }
    Ok(())
}

/// Makes new directory entries (renamed-in files) durable; directories cannot be opened on
/// Windows.
pub fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, e))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Writes `bytes` to `tmp`, fsyncs it and renames it to `path`: the file exists whole or not
/// at all. Its directory entry is durable after the next [`sync_dir`].
pub fn write_aside(tmp: &Path, path: &Path, bytes: &[u8]) -> Result<(), JournalError> {
    (|| {
        let mut f = File::create(tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })()
    .map_err(|e| io_err(tmp, e))?;
    fs::rename(tmp, path).map_err(|e| io_err(path, e))
}

/// A sealed file being written aside (`tmp`) until [`SealedWriter::seal`] renames it in.
pub(crate) struct SealedWriter {
    path: PathBuf,
    tmp: PathBuf,
    file: BufWriter<File>,
    /// Bytes written so far (the offset of the next write).
    offset: u64,
}

impl SealedWriter {
    /// Creates `tmp` and writes the header: `magic`, `version`, `fields`, its CRC.
    pub fn create(
        path: PathBuf,
        tmp: PathBuf,
        magic: &[u8; 4],
        version: u8,
        fields: &[u8],
    ) -> Result<SealedWriter, JournalError> {
        let f = File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
        let mut w = SealedWriter {
            path,
            tmp,
            file: BufWriter::with_capacity(1 << 16, f),
            offset: 0,
        };
        let mut header = Vec::with_capacity(9 + fields.len());
        header.extend_from_slice(magic);
        header.push(version);
        header.extend_from_slice(fields);
        let crc = crc32fast::hash(&header);
        header.extend_from_slice(&crc.to_le_bytes());
        w.write(&header)?;
        Ok(w)
    }

    /// Appends body bytes.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), JournalError> {
        self.file
            .write_all(bytes)
            .map_err(|e| io_err(&self.tmp, e))?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    /// The offset of the next write.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Appends `footer` with its CRC, length and `end_magic`, fsyncs the file (its one fsync)
    /// and renames it in; returns the final path. The directory entry is durable after the
    /// next [`sync_dir`].
    pub fn seal(
        mut self,
        mut footer: Vec<u8>,
        end_magic: &[u8; 4],
    ) -> Result<PathBuf, JournalError> {
        let crc = crc32fast::hash(&footer);
        footer.extend_from_slice(&crc.to_le_bytes());
        let len = footer.len() as u64;
        footer.extend_from_slice(&len.to_le_bytes());
        footer.extend_from_slice(end_magic);
        self.write(&footer)?;
        let tmp = self.tmp;
        let file = self
            .file
            .into_inner()
            .map_err(|e| io_err(&tmp, e.into_error()))?;
        file.sync_all().map_err(|e| io_err(&tmp, e))?;
        drop(file);
        fs::rename(&tmp, &self.path).map_err(|e| io_err(&self.path, e))?;
        Ok(self.path)
    }
}

/// What a reader expects of a sealed file.
pub(crate) struct SealedKind<'a> {
    /// In messages: "finished-order run", "snapshot pack".
    pub name: &'a str,
    /// In the version message: "run", "pack".
    pub short: &'a str,
    pub magic: &'a [u8; 4],
    pub end_magic: &'a [u8; 4],
    pub version: u8,
    /// Header length, CRC included.
    pub header_len: u64,
    /// Shortest footer body plus its CRC.
    pub min_footer: u64,
}

/// A sealed file's checked parts.
pub(crate) struct Sealed {
    pub file: File,
    /// The header without its CRC.
    pub header: Vec<u8>,
    /// The footer without its CRC, length and magic.
    pub footer: Vec<u8>,
    /// Where the footer starts (where the body ends).
    pub footer_start: u64,
    /// Size of the file.
    pub bytes: u64,
}

/// Opens `path` and checks its header and footer (magic, CRCs, version, lengths).
/// A `Corrupt` error at an offset of `path`.
pub(crate) fn corrupt_in(path: &Path) -> impl Fn(u64, String) -> JournalError + '_ {
    move |offset, detail| JournalError::Corrupt {
        segment: path.to_owned(),
        offset,
        detail,
    }
}

pub(crate) fn open_sealed(path: &Path, kind: &SealedKind<'_>) -> Result<Sealed, JournalError> {
    let corrupt = corrupt_in(path);
    let file = File::open(path).map_err(|e| io_err(path, e))?;
    let bytes = file.metadata().map_err(|e| io_err(path, e))?.len();
    if bytes < kind.header_len + TAIL_LEN + kind.min_footer {
        return Err(corrupt(
            0,
            format!("a {} of {bytes} bytes is too short", kind.short),
        ));
    }
    let mut header = vec![0u8; kind.header_len as usize];
    read_at(&file, &mut header, 0).map_err(|e| io_err(path, e))?;
    if &header[..4] != kind.magic {
        return Err(corrupt(0, format!("not a {} (bad magic)", kind.name)));
    }
    let (fields, crc) = header.split_at(header.len() - 4);
    if crc32fast::hash(fields) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
        return Err(corrupt(0, "header CRC mismatch".into()));
    }
    if header[4] != kind.version {
        return Err(corrupt(
            0,
            format!("unsupported {} version {}", kind.short, header[4]),
        ));
    }
    header.truncate(header.len() - 4);
    let mut tail = [0u8; TAIL_LEN as usize];
    read_at(&file, &mut tail, bytes - TAIL_LEN).map_err(|e| io_err(path, e))?;
    if &tail[8..] != kind.end_magic {
        return Err(corrupt(bytes - 4, "missing footer (bad end magic)".into()));
    }
    let flen = u64::from_le_bytes(tail[..8].try_into().expect("8 bytes"));
    if flen < kind.min_footer || flen > bytes - kind.header_len - TAIL_LEN {
        return Err(corrupt(
            bytes - TAIL_LEN,
            format!("footer length {flen} out of range"),
        ));
    }
    let footer_start = bytes - TAIL_LEN - flen;
    let mut footer = vec![0u8; flen as usize];
    read_at(&file, &mut footer, footer_start).map_err(|e| io_err(path, e))?;
    let (body, crc) = footer.split_at(footer.len() - 4);
    if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
        return Err(corrupt(footer_start, "footer CRC mismatch".into()));
    }
    footer.truncate(footer.len() - 4);
    Ok(Sealed {
        file,
        header,
        footer,
        footer_start,
        bytes,
    })
}
