//! Manager recovery after a restart: the latest checkpoint (book snapshots, the manifest; the
//! finished orders stay in the archive) plus the journal after it. Time and memory depend on
//! the live books and the tail since the checkpoint, not on the length of the day.

use std::sync::Arc;

use journal::{BookSnapshot, JournalItem, Manifest};
use matching::{BrokerId, Command, Event, SecurityId};
use proto::{ImagePart, Routed, ToExecutor, IMAGE_PART_ORDERS};

use super::{Core, TapeEntry};

/// What the last checkpoint left: its manifest and the book snapshots it names.
#[derive(Clone, Debug, Default)]
pub struct Restart {
    pub manifest: Option<Manifest>,
    pub books: Vec<BookSnapshot>,
}

impl Restart {
    /// The seq the journal must be read from.
    pub fn resume_seq(&self) -> u64 {
        self.manifest.as_ref().map_or(1, |m| m.resume_seq)
    }
}

/// Names that can never be a real broker's (real names are letters, digits, `_ - .`): they hold
/// the place of a broker id interned but never journaled before a crash.
fn placeholder(id: BrokerId) -> String {
    format!("~unused-{}", id.0)
}

impl Core {
    /// Interns brokers by their journaled ids (ids must stay what they were): a known id must
    /// keep its name; an id beyond the known ones gets placeholders for any ids skipped.
    pub fn restore_brokers(&mut self, brokers: &[(BrokerId, String)]) -> anyhow::Result<()> {
        let mut sorted: Vec<&(BrokerId, String)> = brokers.iter().collect();
        sorted.sort_by_key(|(id, _)| id.0);
        for (id, name) in sorted {
            if let Some(known) = self.brokers.name(*id) {
                if known == name {
                    continue;
                }
                anyhow::ensure!(
                    known == placeholder(*id),
                    "journal broker {} is {name:?} but was restored as {known:?}",
                    id.0
                );
                anyhow::bail!(
                    "journal broker {} ({name:?}) appears after later brokers were restored",
                    id.0
                );
            }
            while (self.brokers.len() as u32) < id.0 {
                let gap = BrokerId(self.brokers.len() as u32);
                self.brokers.intern(&placeholder(gap));
            }
            let got = self.brokers.intern(name);
            anyhow::ensure!(
                got == *id,
                "broker {name:?} is journaled as id {} but interned as {}",
                id.0,
                got.0
            );
        }
        self.sync_front();
        Ok(())
    }

    /// Rebuilds state after a restart from the checkpoint `restart` and the journal items from
    /// `restart.resume_seq()` on (records and rejected NEWs in journal order): the gateway's
    /// memory (live ids, burnt ids, phase, reference prices), every security's base and the
    /// history after it (all of it completed: the books are recomputed here by a sequential
    /// engine started from the snapshots, and rebuilt on the executors from the same), the
    /// projection, and the fills the trade tape is missing (`taped` holds the tape's
    /// (seq, security, fill index) keys from the resume seq on). Returns how many fills were
    /// restored to the tape. Intern the journal's brokers with [`Self::restore_brokers`]
    /// afterwards (their names are known once the tail is read).
    pub fn recover(
        &mut self,
        restart: Restart,
        items: impl IntoIterator<Item = anyhow::Result<JournalItem>>,
        taped: &rustc_hash::FxHashSet<(u64, u32, u32)>,
    ) -> anyhow::Result<u64> {
        let n = self.listing.len();
        let mut engine = executor::ExecutorCore::new(self.rules, &self.listing);
        let mut groups = Vec::new();
        engine.apply(
            ToExecutor::Assign {
                map_version: 0,
                securities: (0..n as u32).map(SecurityId).collect(),
            },
            &mut groups,
        );
        // Per security: commands up to this seq are in its snapshot.
        let mut covered = vec![0u64; n];
        if let Some(m) = &restart.manifest {
            let brokers: Vec<(BrokerId, String)> =
                m.brokers.iter().map(|b| (b.id, b.name.clone())).collect();
            self.restore_brokers(&brokers)?;
            for b in &m.brokers {
                if b.max_own_id > 0 {
                    self.broker_max_id.insert(b.id, b.max_own_id);
                }
            }
            self.gw().restore(&Command::Phase(m.phase));
            self.phase = m.phase;
            self.note_phase(m.resume_seq.saturating_sub(1), m.phase);
            self.gw().restore_max_id(m.max_order_id);
            self.last_time = m.last_time;
            self.next_seq = m.resume_seq;
        }
        for snap in restart.books {
            let i = snap.security.0 as usize;
            anyhow::ensure!(
                i < n,
                "snapshot of security {} is not in the listing",
                snap.security.0
            );
            self.projection
                .restore_book(&snap)
                .map_err(|e| anyhow::anyhow!("snapshot {}: {e}", snap.file_name()))?;
            for o in snap.bids.iter().chain(&snap.asks) {
                self.gw().restore_accepted(o.id, o.broker, snap.security);
            }
            self.gw().set_reference(snap.security, snap.reference);
            for part in ImagePart::split(&snap.image(), snap.seq, IMAGE_PART_ORDERS) {
                if let Some(Err(e)) = engine.apply(ToExecutor::Image(part), &mut groups).installed {
                    anyhow::bail!("snapshot {} does not install: {e}", snap.file_name());
                }
            }
            covered[i] = snap.seq;
            let st = &mut self.shards.secs[i];
            st.base = Some(Arc::new(snap));
            st.base_durable = true;
        }
        // Every checkpoint archives all the NEWs refused before it, and the manifest says
        // where the journal was then: its `next_seq`, and how many refusals came after seq
        // `next_seq - 1`. So whether a refusal is in the archive is known without a lookup
        // (late in a day one reads a block in several runs); only manifests written before
        // the count was recorded leave the refusals at `next_seq` to a lookup.
        let (checkpoint_seq, refusals_at) = restart
            .manifest
            .as_ref()
            .map_or((0, Some(0)), |m| (m.next_seq, m.refusals_at_next_seq));
        // Refusals since the last record: at the checkpoint's seq, which of them it holds.
        self.refusals_at_next_seq = 0;
        let mut restored = 0u64;
        let mut parts = proto::GroupEvents::new();
        for item in items {
            let rec = match item? {
                JournalItem::Rejected(r) => {
                    self.refusals_at_next_seq += 1;
                    let archived = if r.next_seq < checkpoint_seq {
                        true
                    } else if r.next_seq > checkpoint_seq {
                        false
                    } else {
                        match refusals_at {
                            Some(k) => self.refusals_at_next_seq <= k,
                            None => self
                                .archive
                                .lock()
                                .expect("archive lock")
                                .get(r.order.id)?
                                .is_some(),
                        }
                    };
                    if !archived {
                        self.gw().restore_rejected(&r.order);
                        self.projection
                            .insert_rejected(&r.order, r.client_ref, r.reason);
                        super::sequencer::note_max_id(&mut self.broker_max_id, &r.order);
                    }
                    self.last_time = self.last_time.max(r.time);
                    continue;
                }
                JournalItem::Record(rec) => rec,
            };
            self.last_time = self.last_time.max(rec.time);
            self.refusals_at_next_seq = 0;
            let command = match rec.entry {
                journal::Entry::Gap { .. } => {
                    // Seqs an operator accepted as lost: never reused.
                    anyhow::ensure!(
                        rec.seq <= self.next_seq,
                        "journal gap: expected seq {}, found {}",
                        self.next_seq,
                        rec.seq
                    );
                    self.next_seq = self.next_seq.max(rec.next_seq());
                    continue;
                }
                journal::Entry::Command(c) => c,
            };
            anyhow::ensure!(
                rec.seq == self.next_seq,
                "journal gap: expected seq {}, found {}",
                self.next_seq,
                rec.seq
            );
            self.next_seq += 1;
            if let Command::New(o) = &command {
                super::sequencer::note_max_id(&mut self.broker_max_id, o);
            }
            let routed: Vec<Routed> = self
                .fan_out(rec.seq, &command)
                .filter(|r| rec.seq > covered[r.security.0 as usize])
                .collect();
            if let Command::Phase(p) = command {
                self.phase = p;
                self.note_phase(rec.seq, p);
            }
            if routed.is_empty() {
                // Wholly in the snapshots: its ids are live there or in the archive.
                match command {
                    Command::New(o) => self.gw().restore_max_id(o.id.0),
                    Command::Phase(_) => self.gw().restore(&command),
                    Command::Cancel(_) | Command::Amend(_) => {}
                }
                continue;
            }
            // The gateway's memory is rebuilt from NEWs and PHASEs; a CANCEL or AMEND changes
            // nothing there (it passed the gateway when it was journaled). A NEW after its
            // book's snapshot is never in the archive: an order leaves memory only once an
            // image taken after its end is trusted, and a refused NEW never shares an accepted
            // one's id. So no lookup is needed, which late in a day would read a block in
            // several runs per id.
            let checked = match command {
                Command::Cancel(_) | Command::Amend(_) => Ok(()),
                Command::New(_) | Command::Phase(_) => self.gw().check(&command),
            };
            if let Err(reason) = checked {
                anyhow::bail!(
                    "journaled command seq {} is refused on replay ({}): the journal does not match this listing or these rules",
                    rec.seq,
                    reason.code()
                );
            }
            groups.clear();
            engine.process(&routed, &mut groups);
            for r in &routed {
                self.shards.secs[r.security.0 as usize].history.push(*r);
            }
            for g in groups.drain(..) {
                // A command with more events than one group holds comes in parts (as from an
                // executor): applied whole, once its last part is here.
                if !g.last {
                    parts.extend(g.events);
                    continue;
                }
                let events = if parts.is_empty() {
                    g.events
                } else {
                    parts.extend(g.events);
                    std::mem::take(&mut parts)
                };
                let routed = Routed {
                    seq: rec.seq,
                    security: g.security,
                    command,
                };
                let outcome = self
                    .projection
                    .apply_group(&routed, rec.client_ref, &events)
                    .map_err(|e| {
                        anyhow::anyhow!("journal replay of seq {} is inconsistent: {e}", rec.seq)
                    })?;
                for (sec, price) in outcome.references {
                    self.gw().set_reference(sec, price);
                }
                let mut fill_index = 0u32;
                for ev in &events {
                    if let Event::Fill(f) = ev {
                        if !taped.contains(&(rec.seq, g.security.0, fill_index)) {
                            self.tape.append_trade(&TapeEntry {
                                seq: rec.seq,
                                time: rec.time,
                                fill_index,
                                fill: *f,
                            })?;
                            restored += 1;
                        }
                        fill_index += 1;
                    }
                }
            }
        }
        for st in &mut self.shards.secs {
            st.completed = st.history.len();
            st.sent = if self.config.local { st.completed } else { 0 };
        }
        self.tape.commit()?;
        if self.config.local {
            self.local = Some(engine);
        }
        self.max_order_id = self.gw().max_order_id();
        self.sync_front();
        Ok(restored)
    }

    /// The gateway of the in-thread sequencing stage (recovery runs before any split).
    fn gw(&mut self) -> &mut matching::Gateway {
        &mut self.front().gateway
    }

    /// Recovery rebuilt the sequencing state here: the stage continues from it.
    fn sync_front(&mut self) {
        let (next_seq, last_time, phase) = (self.next_seq, self.last_time, self.phase);
        let (brokers, max_ids) = (self.brokers.clone(), self.broker_max_id.clone());
        self.front()
            .restore(next_seq, last_time, phase, &brokers, &max_ids);
    }
}
