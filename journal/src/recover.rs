//! Recovery: open journal and tape read-only, cross-check them against each other and the
//! high-water mark, and report exactly what (if anything) was lost before anything is cut.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use matching::Timestamp;

use crate::codec::{encode_record, Decoded, DeltaState, Meta};
use crate::hwm::HighWaterMark;
use crate::listing::Binding;
use crate::orders::{Names, OrderJournal};
use crate::records::Entry;
use crate::segment::{
    file_name, remove_files, Hole as ScanHole, Scanner, SegmentId, SegmentWriter, Tail,
    WriterStats, JOURNAL, TAPE,
};
use crate::tape::TradeTape;
use crate::{io_err, thousands, JournalError, StoreConfig};

/// Bytes cut (or to be cut) from the end of a segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cut {
    pub file: PathBuf,
    /// The intact prefix ends here: the file is cut to this length.
    pub offset: u64,
    /// The file's length.
    pub length: u64,
    /// What the high-water mark says was committed in this file, when it names it.
    pub committed_length: Option<u64>,
}

impl Cut {
    /// Whether the cut reaches below committed bytes (a loss, not a torn tail).
    pub fn below_committed(&self) -> bool {
        self.committed_length.is_some_and(|c| self.offset < c)
    }
}

/// Seqs inside the journal that no segment holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hole {
    pub first: u64,
    pub last: u64,
    /// The segment that follows the hole.
    pub next_segment: PathBuf,
    /// Fills of these seqs on the tape.
    pub tape_fills: u64,
    prev: Option<SegmentId>,
}

/// Seqs after the journal's end that were committed or traded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TailLoss {
    pub first: u64,
    pub last: u64,
    /// The high-water mark's seq, when it is beyond the journal's end.
    pub committed_seq: Option<u64>,
    /// The tape's highest seq, when it is beyond the journal's end.
    pub tape_max_seq: Option<u64>,
    /// Fills of `first..=last` on the tape.
    pub tape_fills: u64,
}

/// Everything recovery found missing. `Display` is the exact report for the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loss {
    pub journal_dir: PathBuf,
    /// The last seq the journal holds (0: none).
    pub journal_end: u64,
    pub holes: Vec<Hole>,
    pub tail: Option<TailLoss>,
    /// Cuts that reach below the committed length.
    pub cuts: Vec<Cut>,
    /// The high-water mark names a segment that does not exist.
    pub missing_segment: Option<String>,
    /// There is no high-water mark beside a journal or tape that has records.
    pub no_high_water_mark: bool,
}

impl Loss {
    /// Every lost seq range, in order.
    pub fn lost_seqs(&self) -> Vec<(u64, u64)> {
        let mut v: Vec<_> = self.holes.iter().map(|h| (h.first, h.last)).collect();
        v.extend(self.tail.iter().map(|t| (t.first, t.last)));
        v
    }

    /// Fills on the tape of lost seqs.
    pub fn tape_fills(&self) -> u64 {
        self.holes.iter().map(|h| h.tape_fills).sum::<u64>()
            + self.tail.as_ref().map_or(0, |t| t.tape_fills)
    }
}

fn name_of(p: &Path) -> String {
    p.file_name().map_or_else(
        || p.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

impl fmt::Display for Loss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "journal {} lost committed data:",
            self.journal_dir.display()
        )?;
        let end = thousands(self.journal_end);
        if let Some(t) = &self.tail {
            let range = format!("{}..={}", thousands(t.first), thousands(t.last));
            match (t.committed_seq, t.tape_max_seq) {
                (Some(c), tape) => {
                    write!(
                        f,
                        "\n- journal ends at seq {end} but seqs {}..={} were committed (high-water mark)",
                        thousands(t.first),
                        thousands(c)
                    )?;
                    match tape {
                        Some(m) if m > c => write!(
                            f,
                            " and the tape holds {} fills of seqs {range}",
                            thousands(t.tape_fills)
                        )?,
                        _ => write!(
                            f,
                            " and the tape holds {} fills of them",
                            thousands(t.tape_fills)
                        )?,
                    }
                }
                (None, _) => write!(
                    f,
                    "\n- journal ends at seq {end} but the tape holds {} fills of seqs {range}",
                    thousands(t.tape_fills)
                )?,
            }
        }
        for h in &self.holes {
            write!(
                f,
                "\n- seqs {}..={} are missing: no segment holds them before {} (the tape holds {} fills of them)",
                thousands(h.first),
                thousands(h.last),
                name_of(&h.next_segment),
                thousands(h.tape_fills)
            )?;
        }
        for c in &self.cuts {
            let committed = c.committed_length.unwrap_or_default();
            if c.offset < c.length {
                write!(
                    f,
                    "\n- {} holds intact records only up to byte {} of {}, below its committed length of {} bytes",
                    c.file.display(),
                    thousands(c.offset),
                    thousands(c.length),
                    thousands(committed)
                )?;
            } else {
                write!(
                    f,
                    "\n- {} is {} bytes long, below its committed length of {} bytes",
                    c.file.display(),
                    thousands(c.length),
                    thousands(committed)
                )?;
            }
        }
        if let Some(s) = &self.missing_segment {
            write!(f, "\n- the high-water mark names {s}, which is missing")?;
        }
        if self.no_high_water_mark {
            write!(
                f,
                "\n- there is no high-water mark ({}) beside a journal of {} seqs: the loss of its newest records cannot be ruled out",
                self.journal_dir.join(crate::hwm::FILE).display(),
                end
            )?;
        }
        Ok(())
    }
}

/// What recovery found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The seq the journal's files continue at (a GAP over a tail loss comes first).
    pub journal_next_seq: u64,
    /// The high-water mark found, if any.
    pub high_water_mark: Option<HighWaterMark>,
    /// Fills on the tape, and the highest seq among them.
    pub tape_fills: u64,
    pub tape_max_seq: u64,
    /// Torn tails and torn trailing segments (journal and tape) that are cut with a WARN.
    pub torn: Vec<Cut>,
    /// Committed data that is gone; `None` when nothing was lost.
    pub loss: Option<Loss>,
}

/// The result of a scan, ready to continue appending.
#[derive(Debug)]
struct LogScan {
    tail: Option<Tail>,
    state: DeltaState,
    next: u64,
    torn_files: Vec<PathBuf>,
}

/// The outcome of [`recover`]: a report, and the writers once the caller decides.
#[derive(Debug)]
pub struct Recovery {
    cfg: StoreConfig,
    binding: Binding,
    report: RecoveryReport,
    copy_missing: bool,
    journal: LogScan,
    names: Names,
    holes: Vec<Hole>,
    tape: LogScan,
}

/// The writers of a recovered data directory.
#[derive(Debug)]
pub struct Store {
    pub journal: OrderJournal,
    pub tape: TradeTape,
    pub report: RecoveryReport,
}

fn check_meta(
    binding: &Binding,
    meta: &Meta,
    segment: Option<&(SegmentId, PathBuf)>,
    copy_missing: bool,
    dir: &Path,
) -> Result<(), JournalError> {
    let path = segment.map_or_else(PathBuf::new, |(_, p)| p.clone());
    binding.check_meta(&path, meta, copy_missing, dir)
}

/// Opens the journal and tape of `cfg` read-only, checks them against `binding` (a different
/// listing or rules preset is an error), cross-checks them with each other and the high-water
/// mark, and reports. Changes nothing: [`Recovery::open`] or [`Recovery::accept_loss`] do.
pub fn recover(cfg: &StoreConfig, binding: &Binding) -> Result<Recovery, JournalError> {
    recover_from(cfg, binding, 1)
}

/// [`recover`] for a store whose state before seq `verify_from` is kept elsewhere (a
/// checkpoint's book snapshots and finished-order index): records are decoded and checked from
/// the segment holding `verify_from - 1` on, so a restart late in a long day does not read the
/// whole day. Earlier segments are only checked to belong to this listing (their META);
/// holes among them are not looked for (readers of the whole journal, such as `export`, report
/// them). `verify_from` 1 checks everything.
pub fn recover_from(
    cfg: &StoreConfig,
    binding: &Binding,
    verify_from: u64,
) -> Result<Recovery, JournalError> {
    cfg.validate()?;
    let jdir = &cfg.journal_dir;
    let copy_missing = binding.check_copy(jdir)?;

    let segments = crate::segment::list_segments(jdir, JOURNAL)?;
    let start = crate::orders::journal_start(&segments, verify_from);
    for (id, path) in &segments[..start] {
        let meta = crate::segment::read_meta(path, JOURNAL, *id)?;
        check_meta(
            binding,
            &meta,
            Some(&(*id, path.clone())),
            copy_missing,
            jdir,
        )?;
    }
    let mut scan = Scanner::new(jdir, JOURNAL, start, true)?;
    let mut names = Names::default();
    while let Some(item) = scan.next_item()? {
        match &item.decoded {
            Decoded::Meta(m) => check_meta(binding, m, item.segment.as_ref(), copy_missing, jdir)?,
            Decoded::Dict(id, name) => {
                names
                    .learn(*id, name)
                    .map_err(|detail| JournalError::Corrupt {
                        segment: scan.current_path(),
                        offset: scan.current_offset(),
                        detail,
                    })?
            }
            _ => {}
        }
    }
    let journal_segments: Vec<String> = scan.segments().iter().map(|(_, p)| name_of(p)).collect();
    let journal_end = scan.next - 1;
    let mut holes: Vec<Hole> = scan
        .holes
        .iter()
        .map(|h: &ScanHole| Hole {
            first: h.first,
            last: h.last,
            next_segment: h.next.clone(),
            tape_fills: 0,
            prev: h.prev,
        })
        .collect();
    let hwm = HighWaterMark::read(jdir)?;

    let tape_segments = crate::segment::list_segments(&cfg.tape_dir, TAPE)?;
    let (tape_start, skipped_max) = crate::tape::tape_start(&tape_segments, verify_from)?;
    let mut tscan = Scanner::new(&cfg.tape_dir, TAPE, tape_start, false)?;
    let (mut tape_fills, mut tape_max, mut beyond) = (0u64, skipped_max, 0u64);
    while let Some(item) = tscan.next_item()? {
        match &item.decoded {
            Decoded::Meta(m) => check_meta(binding, m, item.segment.as_ref(), copy_missing, jdir)?,
            Decoded::Fill(f) => {
                tape_fills += 1;
                tape_max = tape_max.max(f.seq);
                if f.seq > journal_end {
                    beyond += 1;
                } else if let Some(h) = holes
                    .iter_mut()
                    .find(|h| (h.first..=h.last).contains(&f.seq))
                {
                    h.tape_fills += 1;
                }
            }
            _ => {}
        }
    }

    // Torn tails: harmless unless they reach below the high-water mark.
    let committed_in = |path: &Path| {
        hwm.as_ref()
            .filter(|m| m.segment == name_of(path))
            .map(|m| m.length)
    };
    let mut torn = Vec::new();
    let mut loss_cuts = Vec::new();
    for (t, files) in [
        (&scan.tail, &scan.torn_files),
        (&tscan.tail, &tscan.torn_files),
    ] {
        let is_journal = std::ptr::eq(files, &scan.torn_files);
        let mut cuts: Vec<Cut> = files
            .iter()
            .map(|p| Cut {
                file: p.clone(),
                offset: 0,
                length: fs::metadata(p).map_or(0, |m| m.len()),
                committed_length: None,
            })
            .collect();
        if let Some(t) = t {
            cuts.push(Cut {
                file: t.path.clone(),
                offset: t.valid_len,
                length: t.file_len,
                committed_length: None,
            });
        }
        for mut c in cuts {
            if is_journal {
                c.committed_length = committed_in(&c.file);
            }
            if c.below_committed() {
                loss_cuts.push(c);
            } else if c.offset < c.length {
                torn.push(c);
            }
        }
    }

    let committed_seq = hwm.as_ref().map(|m| m.seq).filter(|&s| s > journal_end);
    let tape_beyond = (tape_max > journal_end).then_some(tape_max);
    let tail = committed_seq.or(tape_beyond).map(|_| TailLoss {
        first: journal_end + 1,
        last: committed_seq.unwrap_or(0).max(tape_beyond.unwrap_or(0)),
        committed_seq,
        tape_max_seq: tape_beyond,
        tape_fills: beyond,
    });
    let missing_segment = hwm
        .as_ref()
        .filter(|m| !journal_segments.contains(&m.segment))
        .filter(|m| !scan.torn_files.iter().any(|p| name_of(p) == m.segment))
        .map(|m| m.segment.clone());
    let no_high_water_mark = hwm.is_none() && (journal_end > 0 || tape_fills > 0);
    let any = !holes.is_empty()
        || tail.is_some()
        || !loss_cuts.is_empty()
        || missing_segment.is_some()
        || no_high_water_mark;
    holes.sort_by_key(|h| h.first);
    let report = RecoveryReport {
        journal_next_seq: scan.next,
        high_water_mark: hwm,
        tape_fills,
        tape_max_seq: tape_max,
        torn,
        loss: any.then(|| Loss {
            journal_dir: jdir.clone(),
            journal_end,
            holes: holes.clone(),
            tail,
            cuts: loss_cuts,
            missing_segment,
            no_high_water_mark,
        }),
    };
    Ok(Recovery {
        cfg: cfg.clone(),
        binding: binding.clone(),
        report,
        copy_missing,
        names,
        holes,
        journal: LogScan {
            tail: scan.tail,
            state: scan.state,
            next: scan.next,
            torn_files: scan.torn_files,
        },
        tape: LogScan {
            tail: tscan.tail,
            state: tscan.state,
            next: tscan.next,
            torn_files: tscan.torn_files,
        },
    })
}

impl Recovery {
    pub fn report(&self) -> &RecoveryReport {
        &self.report
    }

    /// Opens the writers when nothing was lost: cuts torn tails (with a WARN) and continues.
    /// With a loss it changes nothing and returns [`JournalError::Loss`].
    pub fn open(self) -> Result<Store, JournalError> {
        if let Some(loss) = &self.report.loss {
            return Err(JournalError::Loss(Box::new(loss.clone())));
        }
        self.finish(None)
    }

    /// The operator accepted the loss: journals a GAP (stamped `time`) over every lost seq
    /// range, so numbering stays dense and no lost seq is ever used again, cuts what is
    /// damaged, writes a fresh high-water mark and opens the writers. Without a loss it is
    /// [`Recovery::open`].
    pub fn accept_loss(self, time: Timestamp) -> Result<Store, JournalError> {
        self.finish(Some(time))
    }

    fn finish(self, accept_at: Option<Timestamp>) -> Result<Store, JournalError> {
        let Recovery {
            cfg,
            binding,
            report,
            copy_missing,
            journal,
            names,
            holes,
            tape,
        } = self;
        for dir in [&cfg.journal_dir, &cfg.tape_dir] {
            fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        }
        if copy_missing {
            binding.write_copy(&cfg.journal_dir)?;
        }
        for c in &report.torn {
            tracing::warn!(
                file = %c.file.display(),
                at = c.offset,
                bytes = c.length - c.offset,
                "cutting a torn tail (an incomplete last write after the last commit)"
            );
        }
        let time = accept_at.unwrap_or_default();
        let loss = report.loss.clone();
        if let Some(loss) = &loss {
            tracing::warn!(%loss, "continuing after a loss the operator accepted");
        }
        remove_files(&journal.torn_files)?;
        remove_files(&tape.torn_files)?;
        let meta = binding.meta(0);
        for h in &holes {
            let part = h
                .prev
                .filter(|p| p.first == h.first)
                .map_or(0, |p| p.part + 1);
            write_filler(
                &cfg,
                &meta,
                SegmentId {
                    first: h.first,
                    part,
                },
                time,
                h.last - h.first + 1,
            )?;
        }
        let mut j = OrderJournal::resume(
            &cfg,
            meta.clone(),
            journal.tail.as_ref(),
            journal.state,
            names,
            journal.next,
        )?;
        if let Some(t) = loss.as_ref().and_then(|l| l.tail.as_ref()) {
            j.append_gap(t.first, time, t.last - t.first + 1)?;
        }
        j.commit()?;
        if loss.is_some() || report.high_water_mark.is_none() {
            j.write_hwm()?;
        }
        let tape = TradeTape::resume(
            &cfg,
            meta,
            tape.tail.as_ref(),
            tape.state,
            tape.next,
            report.tape_max_seq,
        )?;
        Ok(Store {
            journal: j,
            tape,
            report,
        })
    }
}

/// A segment holding only a GAP over a hole in the journal, so the numbering is dense again.
fn write_filler(
    cfg: &StoreConfig,
    meta: &Meta,
    id: SegmentId,
    time: Timestamp,
    count: u64,
) -> Result<(), JournalError> {
    let mut w = SegmentWriter::create(
        &cfg.journal_dir,
        JOURNAL,
        id,
        meta,
        cfg.segment_bytes,
        cfg.durability,
        WriterStats::default(),
    )?;
    let mut st = DeltaState::default();
    st.apply_meta();
    let mut rec = Vec::new();
    encode_record(
        &st,
        time,
        0,
        &Entry::Gap { count },
        &mut Vec::new(),
        &mut rec,
    );
    w.push(&rec)?;
    w.commit()?;
    tracing::warn!(segment = %file_name(JOURNAL, id), first = id.first, count, "wrote a GAP segment over missing seqs");
    Ok(())
}
