//! `user-sim record`: subscribes to the manager's L3 market-data feed and writes, per security,
//! the LOBSTER message and orderbook files, plus one trades CSV for all of them.
//!
//! Files in the output directory:
//! - `<CODE>_message_<N>.csv`: `time,type,order_id,size,price,direction` per event;
//! - `<CODE>_orderbook_<N>.csv`: N levels of `ask_price,ask_size,bid_price,bid_size`, the book
//!   right after the message on the same line;
//! - `trades.csv`: every trade ([`feed::export::TRADES_HEADER`]).
//!
//! The mapping from feed messages to LOBSTER lines is [`feed::lobster`]'s (its crate doc has
//! the table): type 1 add, 2 reduce in place, 3 delete (cancel, expiry, unfilled ATO/ATC, an
//! amend that lost priority), 4 execution of a resting order in continuous trading, 6 an
//! auction trade (one line per side), 7 a phase change; prices are VND x 10,000; order ids are
//! the feed's public ids (the sequence number of the command that rested the order, never a
//! broker's id); times are seconds after local midnight with nanoseconds.
//!
//! Counting only (`RecordConfig::out` = `None`): the same subscriber (messages decoded,
//! applied to the books, gaps repaired) without files, to load the manager's feed without
//! loading the machine with file writes; several such sessions can share one process
//! ([`run_records`]). Either way, `books_out` writes the final books ([`feed::export`]'s books
//! CSV), to compare with the engine's (`user-sim replay --local --books-out`).
//!
//! Gaps: the recorder checks the feed's sequence numbers; on a gap it asks for a resync and
//! ignores messages until the snapshot. The snapshot is written as a type 3 line for every
//! order held and a type 1 line for every order listed, so the files stay consistent (each
//! orderbook line is still the book after its message); trades inside the lost span are not in
//! the trades CSV. A lost connection is redialled and resynced the same way.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use feed::lobster::{LobsterConfig, LobsterWriter};
use feed::{Applied, Body, FeedClient, FeedLevel, Message, ResyncGate, Securities, Subscription};
use matching::{SecurityId, SecurityTable};
use proto::{Credentials, FeedRequest, FeedUpdate};
use tracing::Instrument;

use crate::client::{connect, table_from, GridTarget};

/// Time to wait for a snapshot after a resync request before asking again.
const RESYNC_RETRY_MS: u64 = 2000;

/// How a feed session proves itself: a broker's secret, or the operator token.
#[derive(Clone, Debug)]
pub enum FeedAuth {
    Broker { name: String, secret: String },
    Token(String),
}

impl FeedAuth {
    pub fn credentials(&self) -> Credentials {
        match self {
            FeedAuth::Broker { name, secret } => Credentials::Feed {
                broker: Some(name.clone()),
                secret: secret.clone(),
            },
            FeedAuth::Token(t) => Credentials::Feed {
                broker: None,
                secret: t.clone(),
            },
        }
    }
}

#[derive(Clone, Debug)]
pub struct RecordConfig {
    pub target: GridTarget,
    pub auth: FeedAuth,
    /// Where the files go; `None`: count only (decode and apply, write nothing).
    pub out: Option<PathBuf>,
    /// At the end, write the final books of the recorded securities here (books CSV).
    pub books_out: Option<PathBuf>,
    /// Levels per side in the orderbook files.
    pub levels: usize,
    /// Security codes to record (empty: all).
    pub securities: Vec<String>,
    /// Stop after this long (else at Ctrl-C / SIGTERM).
    pub duration: Option<Duration>,
    /// Testing the gap recovery: discard every n-th message received, as if it were lost.
    pub drop_every: Option<u64>,
}

/// What a recording holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordSummary {
    pub securities: usize,
    pub messages: u64,
    /// Lines written to each of the message and orderbook files, over all securities.
    pub lobster_lines: u64,
    pub trades: u64,
    pub gaps: u64,
    pub resyncs: u64,
    pub discarded: u64,
    pub sessions: u64,
    /// Counted only: no files written.
    pub count_only: bool,
}

impl RecordSummary {
    /// Adds another subscription's summary (several in one process).
    pub fn add(&mut self, o: &RecordSummary) {
        self.securities = self.securities.max(o.securities);
        self.messages += o.messages;
        self.lobster_lines += o.lobster_lines;
        self.trades += o.trades;
        self.gaps += o.gaps;
        self.resyncs += o.resyncs;
        self.discarded += o.discarded;
        self.sessions += o.sessions;
        self.count_only |= o.count_only;
    }
}

impl std::fmt::Display for RecordSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "recorded {} feed messages of {} securities: {} LOBSTER lines, {} trades; {} gaps, {} snapshots, {} sessions",
            self.messages,
            self.securities,
            self.lobster_lines,
            self.trades,
            self.gaps,
            self.resyncs,
            self.sessions
        )?;
        if self.discarded > 0 {
            write!(f, " ({} messages discarded on purpose)", self.discarded)?;
        }
        if self.count_only {
            write!(f, " (counted only: no files)")?;
        }
        Ok(())
    }
}

type Lobster = LobsterWriter<BufWriter<File>, BufWriter<File>>;

/// The files of one recording (sans network): feed messages in, lines out.
pub struct Recorder {
    /// Indexed by security id; `None` for a security not recorded (all when counting only).
    writers: Vec<Option<Lobster>>,
    codes: Vec<String>,
    /// `None` when counting only.
    trades: Option<BufWriter<File>>,
    wanted: Vec<SecurityId>,
    client: FeedClient,
    gate: ResyncGate,
    summary: RecordSummary,
}

/// The per-security file names.
pub fn file_names(code: &str, levels: usize) -> (String, String) {
    (
        format!("{code}_message_{levels}.csv"),
        format!("{code}_orderbook_{levels}.csv"),
    )
}

fn create(path: &Path) -> anyhow::Result<BufWriter<File>> {
    let f = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    Ok(BufWriter::with_capacity(64 << 10, f))
}

impl Recorder {
    /// Creates the output directory and the files of the `wanted` securities.
    pub fn create(
        out: &Path,
        table: &SecurityTable,
        wanted: &[SecurityId],
        levels: usize,
    ) -> anyhow::Result<Recorder> {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        let cfg = LobsterConfig {
            levels,
            ..LobsterConfig::default()
        };
        let mut writers: Vec<Option<Lobster>> = (0..table.len()).map(|_| None).collect();
        let mut codes = vec![String::new(); table.len()];
        for (id, code, _) in table.iter() {
            codes[id.0 as usize] = code.to_string();
            if !wanted.contains(&id) {
                continue;
            }
            let (m, b) = file_names(code, levels);
            writers[id.0 as usize] = Some(LobsterWriter::new(
                id,
                cfg,
                create(&out.join(m))?,
                create(&out.join(b))?,
            ));
        }
        let mut trades = create(&out.join("trades.csv"))?;
        writeln!(trades, "{}", feed::export::TRADES_HEADER)?;
        let mut r = Recorder::counting(table, wanted);
        r.writers = writers;
        r.trades = Some(trades);
        r.summary.count_only = false;
        Ok(r)
    }

    /// A recorder that writes nothing: messages are decoded, applied and counted.
    pub fn counting(table: &SecurityTable, wanted: &[SecurityId]) -> Recorder {
        let mut codes = vec![String::new(); table.len()];
        for (id, code, _) in table.iter() {
            codes[id.0 as usize] = code.to_string();
        }
        Recorder {
            writers: (0..table.len()).map(|_| None).collect(),
            codes,
            trades: None,
            wanted: wanted.to_vec(),
            client: FeedClient::new(),
            gate: ResyncGate::default(),
            summary: RecordSummary {
                securities: wanted.len(),
                count_only: true,
                ..RecordSummary::default()
            },
        }
    }

    /// The books as the feed built them: every recorded security in listing order (a
    /// security with no book yet writes only zero totals).
    pub fn write_books(&self, w: &mut impl Write) -> std::io::Result<()> {
        writeln!(w, "{}", feed::export::BOOKS_HEADER)?;
        let mut wanted = self.wanted.clone();
        wanted.sort();
        for sec in wanted {
            let code = &self.codes[sec.0 as usize];
            let (depth, totals) = match self.client.security(sec) {
                Some(v) => {
                    let depth = v.book.depth(usize::MAX);
                    let sum = |l: &[(matching::Price, matching::Qty)]| {
                        l.iter().map(|l| l.1).sum::<matching::Qty>()
                    };
                    let at_market =
                        |side| v.book.at_market(side).map_or(0, |l: feed::LevelInfo| l.qty);
                    let totals = (
                        sum(&depth.0) + at_market(matching::Side::Buy),
                        sum(&depth.1) + at_market(matching::Side::Sell),
                    );
                    (depth, totals)
                }
                None => ((Vec::new(), Vec::new()), (0, 0)),
            };
            feed::export::write_book_rows(w, code, &depth, totals)?;
        }
        Ok(())
    }

    /// Applies one received message; true when the feed should be asked for a resync.
    pub fn on_message(&mut self, m: &Message, now_ms: u64) -> anyhow::Result<bool> {
        self.summary.messages += 1;
        let applied = self.client.apply(m);
        match applied {
            Applied::Applied => self.write(m)?,
            Applied::Gap { expected, got } => {
                self.summary.gaps += 1;
                tracing::warn!(expected, got, "feed gap; asking for a resync");
            }
            Applied::Inconsistent(why) => {
                self.summary.gaps += 1;
                tracing::warn!("feed message does not fit the book ({why}); asking for a resync");
            }
            Applied::Ignored => {}
        }
        if m.body == Body::Heartbeat && !self.client.needs_resync() {
            tracing::info!(
                view_seq = m.seq,
                messages = self.summary.messages,
                "feed heartbeat: caught up"
            );
        }
        Ok(self
            .gate
            .after(applied, &self.client, now_ms, RESYNC_RETRY_MS))
    }

    fn write(&mut self, m: &Message) -> anyhow::Result<()> {
        match &m.body {
            Body::SnapshotBegin { .. } => {
                self.summary.resyncs += 1;
                return Ok(());
            }
            Body::Trade(t) => {
                if let Some(trades) = &mut self.trades {
                    let code = &self.codes[t.security.0 as usize];
                    feed::export::write_trade_row(trades, m.time, code, t)?;
                }
                self.summary.trades += 1;
            }
            _ => {}
        }
        let Some(sec) = m.body.security() else {
            return Ok(());
        };
        if let Some(Some(w)) = self.writers.get_mut(sec.0 as usize) {
            let before = w.lines();
            w.write(m).with_context(|| {
                format!(
                    "writing the LOBSTER files of {}",
                    self.codes[sec.0 as usize]
                )
            })?;
            self.summary.lobster_lines += w.lines() - before;
        }
        Ok(())
    }

    /// Counts a message discarded on purpose (gap testing).
    pub fn discarded(&mut self) {
        self.summary.discarded += 1;
    }

    /// A new session starts: its snapshot replaces whatever the files hold.
    pub fn new_session(&mut self) {
        self.summary.sessions += 1;
        self.client = FeedClient::new();
        self.gate = ResyncGate::default();
    }

    /// Flushes every file.
    pub fn finish(self) -> anyhow::Result<RecordSummary> {
        for w in self.writers.into_iter().flatten() {
            w.into_inner().context("flushing the LOBSTER files")?;
        }
        if let Some(mut trades) = self.trades {
            trades.flush().context("flushing trades.csv")?;
        }
        Ok(self.summary)
    }
}

/// The ids of `codes` in `table` (all of them when empty).
pub fn resolve_codes(table: &SecurityTable, codes: &[String]) -> anyhow::Result<Vec<SecurityId>> {
    if codes.is_empty() {
        return Ok(table.iter().map(|(id, _, _)| id).collect());
    }
    let mut ids = Vec::new();
    for c in codes {
        let id = table.lookup(c.trim());
        if id == SecurityId::UNKNOWN {
            bail!("security {c:?} is not listed by the manager");
        }
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// How one session ended.
enum End {
    /// The recording should stop (deadline reached).
    Done,
    /// The connection was lost: dial again.
    Lost(String),
}

/// Records until `stop` completes (or the configured duration passes); returns the summary.
pub async fn run_record(
    cfg: RecordConfig,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<RecordSummary> {
    let started = Instant::now();
    let deadline = cfg.duration.map(|d| started + d);
    let mut session = connect(&cfg.target, cfg.auth.credentials()).await?;
    let table = table_from(&session.welcome)?;
    let wanted = resolve_codes(&table, &cfg.securities)?;
    let mut rec = match &cfg.out {
        Some(out) => Recorder::create(out, &table, &wanted, cfg.levels)?,
        None => Recorder::counting(&table, &wanted),
    };
    let subscription = Subscription {
        level: FeedLevel::L3,
        securities: if cfg.securities.is_empty() {
            Securities::All
        } else {
            Securities::Only(wanted.clone())
        },
    };
    tokio::pin!(stop);
    let mut received = 0u64;
    let mut attempt = 0u32;
    loop {
        rec.new_session();
        let end = tokio::select! {
            end = one_session(&mut session, &subscription, &mut rec, &cfg, started, deadline, &mut received) => end?,
            _ = &mut stop => End::Done,
        };
        session.conn.close(0u32.into(), b"recorder done");
        match end {
            End::Done => break,
            End::Lost(why) => {
                attempt += 1;
                let delay = Duration::from_millis((250u64 << attempt.min(5)).min(5000));
                tracing::warn!(retry_in = ?delay, "feed session lost ({why}); redialling");
                let redial = async {
                    loop {
                        tokio::time::sleep(delay).await;
                        match connect(&cfg.target, cfg.auth.credentials()).await {
                            Ok(s) => return s,
                            Err(e) => tracing::warn!("redial failed: {e:#}"),
                        }
                    }
                };
                tokio::select! {
                    s = redial => {
                        if table_from(&s.welcome)?.to_csv() != table.to_csv() {
                            bail!("the manager came back with another listing; stopping the recording");
                        }
                        session = s;
                    }
                    _ = &mut stop => break,
                }
            }
        }
    }
    if let Some(path) = &cfg.books_out {
        let mut w = create(path)?;
        rec.write_books(&mut w)
            .and_then(|()| w.flush())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    rec.finish()
}

/// `n` subscriptions of the same configuration in this process (their own connections and
/// books), until `stop`; returns each one's summary. With `n` > 1, subscription `i` (from 1)
/// writes its files under `<out>/<i>` and its books to `<books_out>.<i>`.
pub async fn run_records(
    cfg: RecordConfig,
    n: usize,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Vec<RecordSummary>> {
    if n <= 1 {
        return Ok(vec![run_record(cfg, stop).await?]);
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut set = tokio::task::JoinSet::new();
    for i in 1..=n {
        let mut c = cfg.clone();
        c.out = cfg.out.as_ref().map(|o| o.join(i.to_string()));
        c.books_out = cfg.books_out.as_ref().map(|b| {
            let mut s = b.clone().into_os_string();
            s.push(format!(".{i}"));
            PathBuf::from(s)
        });
        let mut rx = stop_rx.clone();
        let span = tracing::info_span!("subscription", n = i);
        set.spawn(
            async move {
                let stopped = async move {
                    let _ = rx.wait_for(|s| *s).await;
                };
                (i, run_record(c, stopped).await)
            }
            .instrument(span),
        );
    }
    tokio::pin!(stop);
    let mut out: Vec<Option<RecordSummary>> = vec![None; n];
    let mut stopping = false;
    while !set.is_empty() {
        tokio::select! {
            done = set.join_next() => match done {
                Some(Ok((i, r))) => out[i - 1] = Some(r.with_context(|| format!("subscription {i}"))?),
                Some(Err(e)) => bail!("a subscription task failed: {e}"),
                None => break,
            },
            _ = &mut stop, if !stopping => {
                stopping = true;
                let _ = stop_tx.send(true);
            }
        }
    }
    Ok(out.into_iter().flatten().collect())
}

async fn one_session(
    session: &mut crate::client::Session,
    subscription: &Subscription,
    rec: &mut Recorder,
    cfg: &RecordConfig,
    started: Instant,
    deadline: Option<Instant>,
    received: &mut u64,
) -> anyhow::Result<End> {
    session
        .writer
        .send(&FeedRequest::Subscribe(subscription.clone()))
        .await
        .context("subscribing")?;
    loop {
        let next = session.reader.recv::<FeedUpdate>();
        let update = match deadline {
            Some(d) => match tokio::time::timeout_at(d.into(), next).await {
                Ok(u) => u,
                Err(_) => return Ok(End::Done),
            },
            None => next.await,
        };
        let msgs = match update {
            Ok(Some(FeedUpdate::Messages(m))) => m,
            Ok(Some(FeedUpdate::Closed(why))) => bail!("the manager ended the feed session: {why}"),
            Ok(None) => return Ok(End::Lost("the manager closed the feed stream".into())),
            Err(e) if e.is_fatal() => return Err(e).context("feed session"),
            Err(e) => return Ok(End::Lost(e.to_string())),
        };
        let mut resync = false;
        for m in &msgs {
            *received += 1;
            if cfg
                .drop_every
                .is_some_and(|n| (*received).is_multiple_of(n))
            {
                rec.discarded();
                continue;
            }
            let now_ms = started.elapsed().as_millis() as u64;
            resync |= rec.on_message(m, now_ms)?;
        }
        if resync {
            session
                .writer
                .send(&FeedRequest::Resync)
                .await
                .context("asking for a resync")?;
        }
    }
}
