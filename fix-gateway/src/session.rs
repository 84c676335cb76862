//! The FIX 4.4 session layer (acceptor side) as a sans-I/O state machine.
//!
//! Inputs: decoded messages, malformed and garbled frames, timer ticks, application messages to
//! send; each carries [`Now`] (the shell's clocks). Outputs ([`Output`]): bytes to send,
//! application messages to deliver, events, and the order to disconnect. No sockets, clocks or
//! threads here; the only side effect is the [`MessageStore`], written before anything that
//! depends on it is sent.
//!
//! Behaviour follows FIX 4.4 Volume 2 (session protocol):
//! - Logon: checked CompIDs, HeartBtInt, EncryptMethod=0; ResetSeqNumFlag resets both sides;
//!   a MsgSeqNum too low ends the session, too high is answered with a ResendRequest after our
//!   Logon.
//! - Sequence: a gap queues the early message (bounded) and sends ResendRequest(expected, 0);
//!   too low without PossDupFlag is a Logout; a PossDup duplicate is ignored.
//! - ResendRequest from the peer: stored application messages are resent with PossDupFlag=Y and
//!   OrigSendingTime; admin messages and holes become SequenceReset-GapFill.
//! - SequenceReset (reset or gap fill), TestRequest -> Heartbeat, heartbeat and test request
//!   timers, Logout handshake with a timeout, session-level Reject for malformed messages,
//!   garbled frames ignored (no reply, no sequence number consumed).

use std::collections::{BTreeMap, VecDeque};

use crate::codec::{Decoded, Defect, Garbled, Malformed, Message, MessageBuilder, RejectReason};
use crate::store::{MessageStore, StoreError};
use crate::tags::{self, msg_type};
use crate::utc;

/// The shell's clocks at the moment of an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Monotonic milliseconds, for timers.
    pub mono_ms: u64,
    /// Wall-clock milliseconds since the Unix epoch (UTC), for SendingTime.
    pub utc_ms: i64,
}

/// Session settings shared by every session of a gateway.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// BeginString(8); FIX.4.4.
    pub begin_string: String,
    /// Our CompID: SenderCompID of what we send, TargetCompID of what we accept.
    pub comp_id: String,
    /// Largest |SendingTime - now| accepted; `None` turns the check off.
    pub max_clock_skew_ms: Option<u64>,
    /// How long we wait for the peer's Logout after sending ours.
    pub logout_timeout_ms: u64,
    /// Largest HeartBtInt(108) accepted, seconds.
    pub max_heartbeat_secs: u64,
    /// Messages held while a gap is being filled; more are dropped (the resend brings them).
    pub max_queued: usize,
}

impl SessionConfig {
    /// FIX 4.4 defaults for `comp_id`.
    pub fn new(comp_id: &str) -> Self {
        SessionConfig {
            begin_string: "FIX.4.4".into(),
            comp_id: comp_id.into(),
            max_clock_skew_ms: Some(120_000),
            logout_timeout_ms: 5_000,
            max_heartbeat_secs: 3_600,
            max_queued: 10_000,
        }
    }
}

/// An application message received in sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppMessage {
    pub message: Message,
    /// PossDupFlag(43)=Y: the peer may have sent it before; the application decides (e.g. by
    /// ClOrdID) whether it is new.
    pub poss_dup: bool,
}

/// Something the session noticed; for logs, metrics and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    LoggedOn {
        heartbeat_secs: u64,
        reset: bool,
    },
    LogonRefused {
        text: String,
    },
    /// The session ended (Logout exchanged, timeout, protocol error); `text` says why.
    LoggedOut {
        text: String,
    },
    Garbled(Garbled),
    /// We rejected a message (session-level Reject sent).
    Rejected {
        ref_seq: Option<u64>,
        reason: RejectReason,
        tag: Option<u32>,
    },
    /// The peer rejected one of ours.
    RejectReceived {
        ref_seq: Option<u64>,
        text: String,
    },
    /// We asked for a resend of `from..` after receiving `seen`.
    GapDetected {
        from: u64,
        seen: u64,
    },
    /// We answered a ResendRequest.
    ResendServed {
        begin: u64,
        end: u64,
        resent: usize,
        gap_filled: usize,
    },
    /// The peer moved our expected sequence number.
    SequenceReset {
        new_seq: u64,
        gap_fill: bool,
    },
    /// A PossDup message below the expected sequence number was ignored.
    DuplicateIgnored {
        seq: u64,
    },
    TestRequestSent,
    StoreFailed(String),
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Write these bytes to the connection, in order.
    Send(Vec<u8>),
    /// Hand this message to the application.
    Deliver(AppMessage),
    Event(Event),
    /// Close the connection (after writing every `Send` before it).
    Disconnect,
}

/// Why an application message could not be accepted for sending.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No connection: application messages are stored for a later resend.
    Offline,
    Active,
    LogoutSent {
        since_ms: u64,
    },
}

/// A message received ahead of a gap, waiting for the gap to be filled.
#[derive(Debug)]
enum Queued {
    Message(Message),
    /// Already acted on (Logon, ResendRequest): only its sequence number is consumed.
    Consumed,
}

/// One FIX session with one counterparty (acceptor side).
pub struct Session {
    cfg: SessionConfig,
    peer: String,
    store: Box<dyn MessageStore>,
    state: State,
    heartbeat_ms: u64,
    last_received_ms: u64,
    last_sent_ms: u64,
    test_request_out: bool,
    test_request_counter: u64,
    /// Highest sequence number our outstanding ResendRequest must bring.
    resend_until: Option<u64>,
    queue: BTreeMap<u64, Queued>,
    out: VecDeque<Output>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("peer", &self.peer)
            .field("state", &self.state)
            .field("next_sender", &self.store.next_sender_seq())
            .field("next_target", &self.store.next_target_seq())
            .finish()
    }
}

impl Session {
    /// A session with `peer` (its SenderCompID), offline until [`Session::on_logon`].
    pub fn new(cfg: SessionConfig, peer: &str, store: Box<dyn MessageStore>) -> Self {
        Session {
            cfg,
            peer: peer.to_string(),
            store,
            state: State::Offline,
            heartbeat_ms: 0,
            last_received_ms: 0,
            last_sent_ms: 0,
            test_request_out: false,
            test_request_counter: 0,
            resend_until: None,
            queue: BTreeMap::new(),
            out: VecDeque::new(),
        }
    }

    /// The counterparty's CompID.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Whether a logged-on connection is attached.
    pub fn is_logged_on(&self) -> bool {
        !matches!(self.state, State::Offline)
    }

    /// MsgSeqNum of our next message.
    pub fn next_sender_seq(&self) -> u64 {
        self.store.next_sender_seq()
    }

    /// MsgSeqNum expected next from the peer.
    pub fn next_target_seq(&self) -> u64 {
        self.store.next_target_seq()
    }

    /// Takes the next output.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// Takes every pending output.
    pub fn drain_output(&mut self) -> impl Iterator<Item = Output> + '_ {
        self.out.drain(..)
    }

    /// The connection closed (by the peer or the shell): back to offline.
    pub fn on_disconnected(&mut self) {
        self.state = State::Offline;
        self.queue.clear();
        self.resend_until = None;
        self.test_request_out = false;
    }

    /// The first message of a connection, a Logon the shell has authenticated.
    pub fn on_logon(&mut self, now: Now, logon: Message) {
        if self.state != State::Offline {
            return self.end(now, "Logon received while logged on", false);
        }
        self.last_received_ms = now.mono_ms;
        let result = (|| -> Result<(), StoreError> {
            if let Err(text) = self.check_logon(now, &logon) {
                self.send_logout(now, &text)?;
                self.finish(text);
                return Ok(());
            }
            let reset = logon.get_flag(tags::RESET_SEQ_NUM_FLAG).unwrap_or(false);
            let poss_dup = logon.get_flag(tags::POSS_DUP_FLAG).unwrap_or(false);
            let seq = logon.get_u64(tags::MSG_SEQ_NUM).ok().flatten().unwrap_or(0);
            let hb = logon
                .get_u64(tags::HEART_BT_INT)
                .ok()
                .flatten()
                .unwrap_or(0);
            if reset {
                self.store.reset()?;
            } else if self.store.is_fresh() && seq > 1 {
                // No history here, yet the peer has numbers behind it: it counted a Logout of
                // ours (a refused first Logon, answered from a store that was not kept) or our
                // store was lost. Any number at or above its own is one it cannot have seen; a
                // number too high costs it a ResendRequest, one too low the session.
                self.store.set_next_sender_seq(seq)?;
            }
            let expected = self.store.next_target_seq();
            if !reset && seq < expected && !poss_dup {
                let text = format!("MsgSeqNum too low, expecting {expected} but received {seq}");
                self.send_logout(now, &text)?;
                self.finish(text);
                return Ok(());
            }
            self.state = State::Active;
            self.heartbeat_ms = hb * 1000;
            self.test_request_out = false;
            let mut reply = MessageBuilder::body();
            reply
                .u64_field(tags::ENCRYPT_METHOD, 0)
                .u64_field(tags::HEART_BT_INT, hb);
            if reset {
                reply.field(tags::RESET_SEQ_NUM_FLAG, b"Y");
            }
            self.send_admin(now, msg_type::LOGON, &reply)?;
            self.event(Event::LoggedOn {
                heartbeat_secs: hb,
                reset,
            });
            if !reset && seq > expected {
                self.queue.insert(seq, Queued::Consumed);
                self.request_resend(now, expected, seq)?;
            } else if reset || seq == expected {
                self.store.set_next_target_seq(seq + 1)?;
            }
            Ok(())
        })();
        self.guard(result);
    }

    /// Refuses a Logon (bad credentials, unknown broker): Logout with `text`, then disconnect.
    /// Our sequence number advances (the peer counts our Logout); the peer's does not, so a
    /// stranger's Logon cannot move a real session's numbers.
    pub fn refuse_logon(&mut self, now: Now, text: &str) {
        let result = self.send_logout(now, text);
        self.guard(result);
        self.event(Event::LogonRefused {
            text: text.to_string(),
        });
        self.out.push_back(Output::Disconnect);
        self.on_disconnected();
    }

    /// One decoded frame from the connection.
    pub fn on_decoded(&mut self, now: Now, decoded: Decoded) {
        match decoded {
            Decoded::Message(m) => self.on_message(now, m),
            Decoded::Malformed(m) => self.on_malformed(now, m),
        }
    }

    /// A garbled frame: ignored, as FIX asks; the gap shows when the next message arrives.
    pub fn on_garbled(&mut self, _now: Now, why: Garbled) {
        self.event(Event::Garbled(why));
    }

    /// An intact frame with a bad field: session-level Reject.
    pub fn on_malformed(&mut self, now: Now, m: Malformed) {
        if self.state == State::Offline {
            return;
        }
        self.last_received_ms = now.mono_ms;
        let result = self.reject(now, &m.msg_type, m.seq_num, m.defect, None);
        self.guard(result);
    }

    /// A well-formed message after the Logon.
    pub fn on_message(&mut self, now: Now, msg: Message) {
        if self.state == State::Offline {
            return;
        }
        self.last_received_ms = now.mono_ms;
        let result = self.process(now, msg, false);
        self.guard(result);
    }

    /// Timers: heartbeat, test request, heartbeat timeout, logout timeout.
    pub fn on_tick(&mut self, now: Now) {
        let result = (|| -> Result<(), StoreError> {
            match self.state {
                State::Offline => {}
                State::LogoutSent { since_ms } => {
                    if now.mono_ms.saturating_sub(since_ms) >= self.cfg.logout_timeout_ms {
                        self.finish("timed out waiting for Logout".into());
                    }
                }
                State::Active if self.heartbeat_ms == 0 => {}
                State::Active => {
                    let quiet = now.mono_ms.saturating_sub(self.last_received_ms);
                    // FIX's "reasonable transmission time": 20% of the interval.
                    let allowance = self.heartbeat_ms / 5;
                    if self.test_request_out && quiet >= 2 * (self.heartbeat_ms + allowance) {
                        self.end(now, "heartbeat timeout", true);
                        return Ok(());
                    }
                    if !self.test_request_out && quiet >= self.heartbeat_ms + allowance {
                        self.test_request_counter += 1;
                        let mut b = MessageBuilder::body();
                        b.str_field(
                            tags::TEST_REQ_ID,
                            &format!("TEST-{}", self.test_request_counter),
                        );
                        self.send_admin(now, msg_type::TEST_REQUEST, &b)?;
                        self.test_request_out = true;
                        self.event(Event::TestRequestSent);
                    } else if now.mono_ms.saturating_sub(self.last_sent_ms) >= self.heartbeat_ms {
                        self.send_admin(now, msg_type::HEARTBEAT, &MessageBuilder::body())?;
                    }
                }
            }
            Ok(())
        })();
        self.guard(result);
    }

    /// Sends an application message (body fields built with [`MessageBuilder::body`]). It is
    /// stored first, so a later ResendRequest can bring it back; while offline it is only
    /// stored, and the peer asks for it after its next Logon. Returns its MsgSeqNum.
    pub fn send_app(
        &mut self,
        now: Now,
        msg_type: &[u8],
        body: &MessageBuilder,
    ) -> Result<u64, SendError> {
        let seq = self.store.next_sender_seq();
        let raw = self.build(now, msg_type, seq, body);
        self.store.store_sent(seq, &raw)?;
        if self.state != State::Offline {
            self.last_sent_ms = now.mono_ms;
            self.out.push_back(Output::Send(raw));
        }
        Ok(seq)
    }

    /// Starts the Logout handshake (e.g. the gateway shuts down or the backend went away).
    pub fn logout(&mut self, now: Now, text: &str) {
        if self.state != State::Active {
            return;
        }
        let result = self.send_logout(now, text);
        self.guard(result);
    }

    /// A business-level reject (BusinessMessageReject, 35=j) of an application message.
    pub fn business_reject(
        &mut self,
        now: Now,
        rejected: &Message,
        reason: u64,
        text: &str,
    ) -> Result<u64, SendError> {
        let mut b = MessageBuilder::body();
        if let Ok(Some(seq)) = rejected.get_u64(tags::MSG_SEQ_NUM) {
            b.u64_field(tags::REF_SEQ_NUM, seq);
        }
        b.field(tags::REF_MSG_TYPE, rejected.msg_type())
            .u64_field(tags::BUSINESS_REJECT_REASON, reason)
            .str_field(tags::TEXT, text);
        self.send_app(now, msg_type::BUSINESS_MESSAGE_REJECT, &b)
    }

    // ---- inbound processing ----

    fn process(&mut self, now: Now, msg: Message, queued: bool) -> Result<(), StoreError> {
        let mtype = msg.msg_type().to_vec();
        if let Err(check) = self.check_header(now, &msg) {
            return self.header_failure(now, &msg, &mtype, check);
        }
        let seq = msg.get_u64(tags::MSG_SEQ_NUM).ok().flatten().unwrap_or(0);
        let poss_dup = msg.get_flag(tags::POSS_DUP_FLAG).unwrap_or(false);
        let expected = self.store.next_target_seq();

        match mtype.as_slice() {
            msg_type::LOGON => {
                self.end(now, "Logon received while logged on", true);
                return Ok(());
            }
            msg_type::LOGOUT => return self.on_logout(now, &msg, seq, expected),
            msg_type::SEQUENCE_RESET if !msg.get_flag(tags::GAP_FILL_FLAG).unwrap_or(false) => {
                // Reset mode ignores MsgSeqNum.
                return self.on_sequence_reset(now, &msg, &mtype, seq, false);
            }
            msg_type::RESEND_REQUEST if !queued => {
                // Answer first, whatever its sequence number; then account for it below.
                self.serve_resend(now, &msg, &mtype, seq)?;
            }
            _ => {}
        }

        if seq > expected {
            if self.queue.len() < self.cfg.max_queued {
                let entry = if mtype == msg_type::RESEND_REQUEST {
                    Queued::Consumed
                } else {
                    Queued::Message(msg)
                };
                self.queue.insert(seq, entry);
            }
            return self.request_resend(now, expected, seq);
        }
        if seq < expected {
            if !poss_dup {
                let text = format!("MsgSeqNum too low, expecting {expected} but received {seq}");
                self.end(now, &text, true);
                return Ok(());
            }
            if mtype != msg_type::SEQUENCE_RESET {
                if let Some(defect) = self.poss_dup_defect(&msg) {
                    return self.reject(now, &mtype, Some(seq), defect, None);
                }
            }
            self.event(Event::DuplicateIgnored { seq });
            return Ok(());
        }

        match mtype.as_slice() {
            msg_type::HEARTBEAT => {
                self.test_request_out = false;
                self.advance(seq)?;
            }
            msg_type::TEST_REQUEST => {
                let Some(id) = msg.get(tags::TEST_REQ_ID) else {
                    let d = Defect {
                        reason: RejectReason::RequiredTagMissing,
                        tag: Some(tags::TEST_REQ_ID),
                    };
                    return self.reject(now, &mtype, Some(seq), d, None);
                };
                let mut b = MessageBuilder::body();
                b.field(tags::TEST_REQ_ID, id);
                self.send_admin(now, msg_type::HEARTBEAT, &b)?;
                self.advance(seq)?;
            }
            msg_type::RESEND_REQUEST => self.advance(seq)?,
            msg_type::SEQUENCE_RESET => {
                return self.on_sequence_reset(now, &msg, &mtype, seq, true);
            }
            msg_type::REJECT => {
                self.event(Event::RejectReceived {
                    ref_seq: msg.get_u64(tags::REF_SEQ_NUM).ok().flatten(),
                    text: msg.get_str(tags::TEXT).unwrap_or_default().to_string(),
                });
                self.advance(seq)?;
            }
            _ => {
                self.advance(seq)?;
                self.out.push_back(Output::Deliver(AppMessage {
                    message: msg,
                    poss_dup,
                }));
            }
        }
        if !queued {
            self.drain_queue(now)?;
        }
        Ok(())
    }

    /// Consumes `seq`, ending the outstanding resend when it is satisfied.
    fn advance(&mut self, seq: u64) -> Result<(), StoreError> {
        self.store.set_next_target_seq(seq + 1)?;
        if self.resend_until.is_some_and(|until| seq >= until) {
            self.resend_until = None;
        }
        Ok(())
    }

    fn drain_queue(&mut self, now: Now) -> Result<(), StoreError> {
        // Drop what a gap fill jumped over.
        let expected = self.store.next_target_seq();
        self.queue = self.queue.split_off(&expected);
        while let Some(entry) = self.queue.remove(&self.store.next_target_seq()) {
            match entry {
                Queued::Consumed => {
                    let seq = self.store.next_target_seq();
                    self.advance(seq)?;
                }
                Queued::Message(m) => {
                    self.process(now, m, true)?;
                    if self.state == State::Offline {
                        return Ok(());
                    }
                }
            }
            let expected = self.store.next_target_seq();
            self.queue = self.queue.split_off(&expected);
        }
        if self.queue.is_empty() && self.resend_until.is_some_and(|u| expected > u) {
            self.resend_until = None;
        }
        Ok(())
    }

    fn request_resend(&mut self, now: Now, expected: u64, seen: u64) -> Result<(), StoreError> {
        if self.resend_until.is_some() {
            // One outstanding request (EndSeqNo=0: everything) covers later gaps too.
            return Ok(());
        }
        let mut b = MessageBuilder::body();
        b.u64_field(tags::BEGIN_SEQ_NO, expected)
            .u64_field(tags::END_SEQ_NO, 0);
        self.send_admin(now, msg_type::RESEND_REQUEST, &b)?;
        self.resend_until = Some(seen - 1);
        self.event(Event::GapDetected {
            from: expected,
            seen,
        });
        Ok(())
    }

    fn on_logout(
        &mut self,
        now: Now,
        msg: &Message,
        seq: u64,
        expected: u64,
    ) -> Result<(), StoreError> {
        if seq == expected {
            self.store.set_next_target_seq(seq + 1)?;
        }
        let text = msg.get_str(tags::TEXT).unwrap_or_default().to_string();
        if self.state == State::Active {
            self.send_admin(now, msg_type::LOGOUT, &MessageBuilder::body())?;
        }
        self.finish(if text.is_empty() {
            "peer logged out".into()
        } else {
            format!("peer logged out: {text}")
        });
        Ok(())
    }

    fn on_sequence_reset(
        &mut self,
        now: Now,
        msg: &Message,
        mtype: &[u8],
        seq: u64,
        gap_fill: bool,
    ) -> Result<(), StoreError> {
        let new_seq = match msg.get_u64(tags::NEW_SEQ_NO) {
            Ok(Some(n)) => n,
            Ok(None) => {
                let d = Defect {
                    reason: RejectReason::RequiredTagMissing,
                    tag: Some(tags::NEW_SEQ_NO),
                };
                return self.reject(now, mtype, Some(seq), d, None);
            }
            Err(d) => return self.reject(now, mtype, Some(seq), d, None),
        };
        let expected = self.store.next_target_seq();
        if new_seq > expected {
            self.store.set_next_target_seq(new_seq)?;
            if self.resend_until.is_some_and(|u| new_seq > u) {
                self.resend_until = None;
            }
            self.event(Event::SequenceReset { new_seq, gap_fill });
            self.drain_queue(now)?;
        } else if new_seq < expected {
            let d = Defect {
                reason: RejectReason::ValueIsIncorrect,
                tag: Some(tags::NEW_SEQ_NO),
            };
            return self.reject(
                now,
                mtype,
                Some(seq),
                d,
                Some(&format!(
                    "NewSeqNo {new_seq} is below the expected MsgSeqNum {expected}"
                )),
            );
        }
        Ok(())
    }

    /// Answers a ResendRequest: stored application messages again (PossDupFlag=Y), everything
    /// else as SequenceReset-GapFill.
    fn serve_resend(
        &mut self,
        now: Now,
        msg: &Message,
        mtype: &[u8],
        seq: u64,
    ) -> Result<(), StoreError> {
        let begin = msg.get_u64(tags::BEGIN_SEQ_NO);
        let end = msg.get_u64(tags::END_SEQ_NO);
        let (begin, end_req) = match (begin, end) {
            (Ok(Some(b)), Ok(Some(e))) => (b, e),
            (Err(d), _) | (_, Err(d)) => return self.reject(now, mtype, Some(seq), d, None),
            (Ok(None), _) | (_, Ok(None)) => {
                let tag = if msg.get(tags::BEGIN_SEQ_NO).is_none() {
                    tags::BEGIN_SEQ_NO
                } else {
                    tags::END_SEQ_NO
                };
                let d = Defect {
                    reason: RejectReason::RequiredTagMissing,
                    tag: Some(tag),
                };
                return self.reject(now, mtype, Some(seq), d, None);
            }
        };
        let last = self.store.next_sender_seq() - 1;
        let end = if end_req == 0 || end_req > last {
            last
        } else {
            end_req
        };
        let begin = begin.max(1);
        if begin > end {
            self.event(Event::ResendServed {
                begin,
                end,
                resent: 0,
                gap_filled: 0,
            });
            return Ok(());
        }
        let stored = self.store.sent_range(begin, end)?;
        let (mut resent, mut gap_filled) = (0, 0);
        let mut next = begin;
        for (s, raw) in stored {
            let Some(again) = self.rebuild_for_resend(now, &raw) else {
                continue; // unreadable: the gap fill below covers it
            };
            if s > next {
                self.gap_fill(now, next, s);
                gap_filled += 1;
            }
            self.out.push_back(Output::Send(again));
            resent += 1;
            next = s + 1;
        }
        if next <= end {
            self.gap_fill(now, next, end + 1);
            gap_filled += 1;
        }
        self.last_sent_ms = now.mono_ms;
        self.event(Event::ResendServed {
            begin,
            end,
            resent,
            gap_filled,
        });
        Ok(())
    }

    fn gap_fill(&mut self, now: Now, seq: u64, new_seq: u64) {
        let stamp = utc::format(now.utc_ms);
        let mut b = MessageBuilder::new(msg_type::SEQUENCE_RESET);
        self.write_header(&mut b, seq, &stamp);
        b.field(tags::POSS_DUP_FLAG, b"Y")
            .str_field(tags::ORIG_SENDING_TIME, &stamp);
        b.field(tags::GAP_FILL_FLAG, b"Y")
            .u64_field(tags::NEW_SEQ_NO, new_seq);
        self.out
            .push_back(Output::Send(b.finish(&self.cfg.begin_string)));
    }

    /// A stored message as a retransmission: same MsgSeqNum and body, PossDupFlag=Y,
    /// OrigSendingTime = the first SendingTime, a new SendingTime.
    fn rebuild_for_resend(&self, now: Now, raw: &[u8]) -> Option<Vec<u8>> {
        let Ok(Decoded::Message(old)) = Message::parse(raw.to_vec()) else {
            return None;
        };
        let seq = old.get_u64(tags::MSG_SEQ_NUM).ok().flatten()?;
        let orig = old.get(tags::SENDING_TIME)?;
        let mut b = MessageBuilder::new(old.msg_type());
        self.write_header(&mut b, seq, &utc::format(now.utc_ms));
        b.field(tags::POSS_DUP_FLAG, b"Y")
            .field(tags::ORIG_SENDING_TIME, orig);
        for (tag, value) in old.body_fields() {
            b.field(tag, value);
        }
        Some(b.finish(&self.cfg.begin_string))
    }

    // ---- checks ----

    fn check_logon(&self, now: Now, logon: &Message) -> Result<(), String> {
        if logon.msg_type() != msg_type::LOGON {
            return Err("first message is not a Logon".into());
        }
        if let Err(check) = self.check_header(now, logon) {
            return Err(check.text());
        }
        match logon.get_u64(tags::ENCRYPT_METHOD) {
            Ok(Some(0)) => {}
            Ok(None) => return Err("Logon without EncryptMethod(98)".into()),
            _ => return Err("EncryptMethod(98) must be 0 (none)".into()),
        }
        match logon.get_u64(tags::HEART_BT_INT) {
            Ok(Some(h)) if h <= self.cfg.max_heartbeat_secs => {}
            Ok(None) => return Err("Logon without HeartBtInt(108)".into()),
            _ => {
                return Err(format!(
                    "HeartBtInt(108) must be 0..={} seconds",
                    self.cfg.max_heartbeat_secs
                ))
            }
        }
        if logon.get_flag(tags::RESET_SEQ_NUM_FLAG).is_err() {
            return Err("ResetSeqNumFlag(141) must be Y or N".into());
        }
        Ok(())
    }

    fn check_header(&self, now: Now, msg: &Message) -> Result<(), HeaderCheck> {
        if msg.get(tags::BEGIN_STRING) != Some(self.cfg.begin_string.as_bytes()) {
            return Err(HeaderCheck::BeginString);
        }
        for tag in [
            tags::MSG_SEQ_NUM,
            tags::SENDER_COMP_ID,
            tags::TARGET_COMP_ID,
            tags::SENDING_TIME,
        ] {
            if msg.get(tag).is_none() {
                return Err(HeaderCheck::Defect(Defect {
                    reason: RejectReason::RequiredTagMissing,
                    tag: Some(tag),
                }));
            }
        }
        if let Err(d) = msg.get_u64(tags::MSG_SEQ_NUM) {
            return Err(HeaderCheck::Defect(d));
        }
        if msg.get_u64(tags::MSG_SEQ_NUM) == Ok(Some(0)) {
            return Err(HeaderCheck::Defect(Defect {
                reason: RejectReason::ValueIsIncorrect,
                tag: Some(tags::MSG_SEQ_NUM),
            }));
        }
        if msg.get(tags::SENDER_COMP_ID) != Some(self.peer.as_bytes())
            || msg.get(tags::TARGET_COMP_ID) != Some(self.cfg.comp_id.as_bytes())
        {
            return Err(HeaderCheck::CompId);
        }
        let Some(sent) = msg.get(tags::SENDING_TIME).and_then(utc::parse) else {
            return Err(HeaderCheck::Defect(Defect {
                reason: RejectReason::IncorrectDataFormat,
                tag: Some(tags::SENDING_TIME),
            }));
        };
        if let Some(max) = self.cfg.max_clock_skew_ms {
            if now.utc_ms.abs_diff(sent) > max {
                return Err(HeaderCheck::SendingTime);
            }
        }
        for flag in [tags::POSS_DUP_FLAG, tags::POSS_RESEND] {
            if let Err(d) = msg.get_flag(flag) {
                return Err(HeaderCheck::Defect(d));
            }
        }
        Ok(())
    }

    fn header_failure(
        &mut self,
        now: Now,
        msg: &Message,
        mtype: &[u8],
        check: HeaderCheck,
    ) -> Result<(), StoreError> {
        let seq = msg.get_u64(tags::MSG_SEQ_NUM).ok().flatten();
        match check {
            HeaderCheck::BeginString => {
                // FIX: Logout naming the problem, wait for the answer, then disconnect.
                self.send_logout(now, "Incorrect BeginString")?;
            }
            HeaderCheck::Defect(d) => self.reject(now, mtype, seq, d, None)?,
            HeaderCheck::CompId | HeaderCheck::SendingTime => {
                let d = Defect {
                    reason: if check == HeaderCheck::CompId {
                        RejectReason::CompIdProblem
                    } else {
                        RejectReason::SendingTimeAccuracyProblem
                    },
                    tag: None,
                };
                self.reject(now, mtype, seq, d, None)?;
                self.send_logout(now, &check.text())?;
            }
        }
        Ok(())
    }

    /// A PossDup message must carry OrigSendingTime, not later than its SendingTime.
    fn poss_dup_defect(&self, msg: &Message) -> Option<Defect> {
        let Some(orig) = msg.get(tags::ORIG_SENDING_TIME) else {
            return Some(Defect {
                reason: RejectReason::RequiredTagMissing,
                tag: Some(tags::ORIG_SENDING_TIME),
            });
        };
        let sent = msg.get(tags::SENDING_TIME).and_then(utc::parse);
        match utc::parse(orig) {
            None => Some(Defect {
                reason: RejectReason::IncorrectDataFormat,
                tag: Some(tags::ORIG_SENDING_TIME),
            }),
            Some(o) if sent.is_some_and(|s| o > s) => Some(Defect {
                reason: RejectReason::SendingTimeAccuracyProblem,
                tag: Some(tags::ORIG_SENDING_TIME),
            }),
            Some(_) => None,
        }
    }

    // ---- outbound ----

    fn write_header(&self, b: &mut MessageBuilder, seq: u64, stamp: &str) {
        b.str_field(tags::SENDER_COMP_ID, &self.cfg.comp_id)
            .str_field(tags::TARGET_COMP_ID, &self.peer)
            .u64_field(tags::MSG_SEQ_NUM, seq)
            .str_field(tags::SENDING_TIME, stamp);
    }

    fn build(&self, now: Now, msg_type: &[u8], seq: u64, body: &MessageBuilder) -> Vec<u8> {
        let mut b = MessageBuilder::new(msg_type);
        self.write_header(&mut b, seq, &utc::format(now.utc_ms));
        b.append(body);
        b.finish(&self.cfg.begin_string)
    }

    /// Sends an admin message: its sequence number is persisted first, the message is not.
    fn send_admin(
        &mut self,
        now: Now,
        msg_type: &[u8],
        body: &MessageBuilder,
    ) -> Result<(), StoreError> {
        let seq = self.store.next_sender_seq();
        let raw = self.build(now, msg_type, seq, body);
        self.store.set_next_sender_seq(seq + 1)?;
        self.last_sent_ms = now.mono_ms;
        self.out.push_back(Output::Send(raw));
        Ok(())
    }

    fn send_logout(&mut self, now: Now, text: &str) -> Result<(), StoreError> {
        let mut b = MessageBuilder::body();
        if !text.is_empty() {
            b.str_field(tags::TEXT, text);
        }
        self.send_admin(now, msg_type::LOGOUT, &b)?;
        if self.state == State::Active {
            self.state = State::LogoutSent {
                since_ms: now.mono_ms,
            };
        }
        Ok(())
    }

    fn reject(
        &mut self,
        now: Now,
        mtype: &[u8],
        seq: Option<u64>,
        defect: Defect,
        text: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut b = MessageBuilder::body();
        // RefSeqNum is required; 0 when the rejected message's own number was unreadable.
        b.u64_field(tags::REF_SEQ_NUM, seq.unwrap_or(0));
        if let Some(tag) = defect.tag {
            b.u64_field(tags::REF_TAG_ID, u64::from(tag));
        }
        if !mtype.is_empty() {
            b.field(tags::REF_MSG_TYPE, mtype);
        }
        b.u64_field(tags::SESSION_REJECT_REASON, defect.reason as u64)
            .str_field(tags::TEXT, text.unwrap_or(defect.reason.text()));
        self.send_admin(now, msg_type::REJECT, &b)?;
        self.event(Event::Rejected {
            ref_seq: seq,
            reason: defect.reason,
            tag: defect.tag,
        });
        // The rejected message still used its number (not so for Logon and SequenceReset).
        let expected = self.store.next_target_seq();
        if seq == Some(expected) && mtype != msg_type::LOGON && mtype != msg_type::SEQUENCE_RESET {
            self.advance(expected)?;
            self.drain_queue(now)?;
        }
        Ok(())
    }

    /// Ends the session: Logout (when `say_why`) and disconnect at once.
    fn end(&mut self, now: Now, text: &str, say_why: bool) {
        if say_why && self.state != State::Offline {
            if let Err(e) = self.send_logout(now, text) {
                self.event(Event::StoreFailed(e.to_string()));
            }
        }
        self.finish(text.to_string());
    }

    fn finish(&mut self, text: String) {
        self.event(Event::LoggedOut { text });
        self.out.push_back(Output::Disconnect);
        self.on_disconnected();
    }

    fn event(&mut self, e: Event) {
        self.out.push_back(Output::Event(e));
    }

    /// A store failure ends the session: we could no longer keep the sequence promises.
    fn guard(&mut self, result: Result<(), StoreError>) {
        if let Err(e) = result {
            self.event(Event::StoreFailed(e.to_string()));
            if self.state != State::Offline {
                self.finish(format!("message store failed: {e}"));
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeaderCheck {
    BeginString,
    CompId,
    SendingTime,
    Defect(Defect),
}

impl HeaderCheck {
    fn text(self) -> String {
        match self {
            HeaderCheck::BeginString => "Incorrect BeginString".into(),
            HeaderCheck::CompId => "CompID problem".into(),
            HeaderCheck::SendingTime => "SendingTime accuracy problem".into(),
            HeaderCheck::Defect(d) => match d.tag {
                Some(t) => format!("{} ({t})", d.reason.text()),
                None => d.reason.text().into(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    const T0: i64 = 1_700_000_000_000;

    fn at(ms: u64) -> Now {
        Now {
            mono_ms: ms,
            utc_ms: T0 + ms as i64,
        }
    }

    /// The counterparty: numbers its messages, stamps them at `now`.
    struct Peer {
        seq: u64,
    }

    impl Peer {
        fn msg(&mut self, now: Now, mtype: &[u8], fields: &[(u32, &str)]) -> Message {
            let m = self.msg_at(now, self.seq, mtype, fields);
            self.seq += 1;
            m
        }
        fn msg_at(&self, now: Now, seq: u64, mtype: &[u8], fields: &[(u32, &str)]) -> Message {
            let mut b = MessageBuilder::new(mtype);
            b.str_field(49, "BRK1")
                .str_field(56, "GRIDMATCH")
                .u64_field(34, seq)
                .str_field(52, &utc::format(now.utc_ms));
            for (t, v) in fields {
                b.str_field(*t, v);
            }
            match Message::parse(b.finish("FIX.4.4")) {
                Ok(Decoded::Message(m)) => m,
                other => panic!("{other:?}"),
            }
        }
    }

    fn session() -> Session {
        Session::new(
            SessionConfig::new("GRIDMATCH"),
            "BRK1",
            Box::new(MemoryStore::default()),
        )
    }

    /// Logged-on session and its peer (peer's next seq 2).
    fn logged_on(hb: &str) -> (Session, Peer) {
        let mut s = session();
        let mut p = Peer { seq: 1 };
        let logon = p.msg(at(0), b"A", &[(98, "0"), (108, hb)]);
        s.on_logon(at(0), logon);
        let out = sent(&mut s);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].msg_type(), b"A");
        (s, p)
    }

    /// The messages the session sent since last asked.
    fn sent(s: &mut Session) -> Vec<Message> {
        outputs(s)
            .into_iter()
            .filter_map(|o| match o {
                Output::Send(b) => match Message::parse(b) {
                    Ok(Decoded::Message(m)) => Some(m),
                    other => panic!("session sent an unparsable message: {other:?}"),
                },
                _ => None,
            })
            .collect()
    }

    fn outputs(s: &mut Session) -> Vec<Output> {
        s.drain_output().collect()
    }

    fn types(ms: &[Message]) -> Vec<String> {
        ms.iter()
            .map(|m| String::from_utf8_lossy(m.msg_type()).into_owned())
            .collect()
    }

    #[test]
    fn heartbeat_then_test_request_then_timeout() {
        let (mut s, mut p) = logged_on("10");
        s.on_tick(at(9_999));
        assert!(sent(&mut s).is_empty());
        s.on_tick(at(10_000));
        assert_eq!(
            types(&sent(&mut s)),
            ["0"],
            "heartbeat after 10 s of our silence"
        );
        // Peer silent for HeartBtInt + 20%: TestRequest.
        s.on_tick(at(12_000));
        let tr = sent(&mut s);
        assert_eq!(types(&tr), ["1"]);
        let id = tr[0].get_str(112).unwrap().to_string();
        // The answer clears it.
        s.on_message(at(12_500), p.msg(at(12_500), b"0", &[(112, &id)]));
        s.on_tick(at(14_000));
        assert!(sent(&mut s).iter().all(|m| m.msg_type() == b"0"));
        // Silence again: TestRequest, then disconnect at twice the allowance.
        s.on_tick(at(24_500));
        assert_eq!(types(&sent(&mut s)), ["1"]);
        s.on_tick(at(36_000));
        assert!(
            !outputs(&mut s).contains(&Output::Disconnect),
            "2.4 x HeartBtInt not yet"
        );
        s.on_tick(at(36_500));
        let out = outputs(&mut s);
        assert!(out.contains(&Output::Disconnect), "{out:?}");
        assert!(!s.is_logged_on());
    }

    #[test]
    fn logon_with_a_too_low_seq_num_is_logged_out() {
        let mut store = MemoryStore::default();
        store.set_next_target_seq(10).unwrap();
        let mut s = Session::new(SessionConfig::new("GRIDMATCH"), "BRK1", Box::new(store));
        let p = Peer { seq: 1 };
        s.on_logon(at(0), p.msg_at(at(0), 5, b"A", &[(98, "0"), (108, "30")]));
        let out = outputs(&mut s);
        let logout = out.iter().find_map(|o| match o {
            Output::Send(b) => Message::parse(b.clone()).ok(),
            _ => None,
        });
        let Some(Decoded::Message(m)) = logout else {
            panic!("{out:?}")
        };
        assert_eq!(m.msg_type(), b"5");
        assert_eq!(
            m.get_str(58),
            Some("MsgSeqNum too low, expecting 10 but received 5")
        );
        assert_eq!(out.last(), Some(&Output::Disconnect));
        assert_eq!(s.next_target_seq(), 10, "unchanged");
    }

    #[test]
    fn a_fresh_store_starts_our_numbers_at_the_peers_and_an_old_one_keeps_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = crate::store::FileStore::path_in(dir.path(), "BRK1");
        let open = || Box::new(crate::store::FileStore::open(&path, false).unwrap());
        let p = Peer { seq: 1 };
        // The peer counted a Logout of ours that no store kept: its Logon is number 3.
        let mut s = Session::new(SessionConfig::new("GRIDMATCH"), "BRK1", open());
        s.on_logon(at(0), p.msg_at(at(0), 3, b"A", &[(98, "0"), (108, "30")]));
        let out = sent(&mut s);
        assert_eq!(
            types(&out),
            ["A", "2"],
            "Logon, then a ResendRequest for 1.."
        );
        assert_eq!(out[0].get_u64(34), Ok(Some(3)));
        assert_eq!(
            (out[1].get_u64(7), out[1].get_u64(16)),
            (Ok(Some(1)), Ok(Some(0)))
        );
        drop(s);
        // The store now has history: a later Logon with a high number does not move ours.
        let mut s = Session::new(SessionConfig::new("GRIDMATCH"), "BRK1", open());
        s.on_logon(
            at(10),
            p.msg_at(at(10), 50, b"A", &[(98, "0"), (108, "30")]),
        );
        let out = sent(&mut s);
        assert_eq!(out[0].get_u64(34), Ok(Some(5)));
    }

    #[test]
    fn logon_checks_comp_ids_heartbeat_and_encryption() {
        for (fields, to, why) in [
            (vec![(108, "30")], "GRIDMATCH", "EncryptMethod"),
            (
                vec![(98, "1"), (108, "30")],
                "GRIDMATCH",
                "EncryptMethod(98) must be 0",
            ),
            (vec![(98, "0")], "GRIDMATCH", "HeartBtInt"),
            (vec![(98, "0"), (108, "99999")], "GRIDMATCH", "HeartBtInt"),
            (vec![(98, "0"), (108, "30")], "OTHER", "CompID problem"),
        ] {
            let mut s = session();
            let mut b = MessageBuilder::new(b"A");
            b.str_field(49, "BRK1")
                .str_field(56, to)
                .u64_field(34, 1)
                .str_field(52, &utc::format(T0));
            for (t, v) in &fields {
                b.str_field(*t, v);
            }
            let Ok(Decoded::Message(m)) = Message::parse(b.finish("FIX.4.4")) else {
                panic!()
            };
            s.on_logon(at(0), m);
            let out = sent(&mut s);
            assert_eq!(types(&out), ["5"], "{why}");
            assert!(out[0].get_str(58).unwrap().contains(why), "{:?}", out[0]);
            assert!(!s.is_logged_on());
        }
    }

    #[test]
    fn a_gap_queues_later_messages_until_the_resend_fills_it() {
        let (mut s, mut p) = logged_on("30");
        let o2 = p.msg(at(1), b"D", &[(11, "two")]);
        let o3 = p.msg(at(1), b"D", &[(11, "three")]);
        let o4 = p.msg(at(1), b"D", &[(11, "four")]);
        s.on_message(at(2), o4.clone());
        s.on_message(at(2), o3.clone());
        let rr = sent(&mut s);
        assert_eq!(types(&rr), ["2"], "one ResendRequest for both");
        assert_eq!(rr[0].get_u64(7), Ok(Some(2)));
        assert_eq!(rr[0].get_u64(16), Ok(Some(0)));
        // The peer resends 2 (PossDup) and the queue drains in order.
        let mut again = MessageBuilder::new(b"D");
        again
            .str_field(49, "BRK1")
            .str_field(56, "GRIDMATCH")
            .u64_field(34, 2)
            .field(43, b"Y")
            .str_field(52, &utc::format(T0 + 3))
            .str_field(122, &utc::format(T0 + 1))
            .str_field(11, "two");
        let Ok(Decoded::Message(again)) = Message::parse(again.finish("FIX.4.4")) else {
            panic!()
        };
        s.on_message(at(3), again);
        let delivered: Vec<(String, bool)> = outputs(&mut s)
            .into_iter()
            .filter_map(|o| match o {
                Output::Deliver(a) => {
                    Some((a.message.get_str(11).unwrap().to_string(), a.poss_dup))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            delivered,
            [
                ("two".into(), true),
                ("three".into(), false),
                ("four".into(), false)
            ]
        );
        assert_eq!(s.next_target_seq(), 5);
        // A late duplicate of 3 with PossDup is ignored; without it, it ends the session.
        let _ = o2;
        let dup = p.msg_at(at(4), 3, b"D", &[(43, "Y"), (122, &utc::format(T0))]);
        s.on_message(at(4), dup);
        let out = outputs(&mut s);
        assert!(
            out.contains(&Output::Event(Event::DuplicateIgnored { seq: 3 })),
            "{out:?}"
        );
        s.on_message(at(5), p.msg_at(at(5), 3, b"D", &[(11, "x")]));
        assert_eq!(types(&sent(&mut s)), ["5"]);
    }

    #[test]
    fn messages_sent_offline_are_stored_and_resent_as_poss_dup_with_gap_fills() {
        let (mut s, mut p) = logged_on("30");
        s.on_message(at(1), p.msg(at(1), b"1", &[(112, "hello")])); // our seq 2: Heartbeat
        assert_eq!(types(&sent(&mut s)), ["0"]);
        s.on_disconnected();
        let mut er = MessageBuilder::body();
        er.str_field(11, "filled-while-away").str_field(150, "F");
        assert_eq!(s.send_app(at(2), b"8", &er).unwrap(), 3);
        assert_eq!(s.send_app(at(2), b"8", &er).unwrap(), 4);
        assert!(sent(&mut s).is_empty(), "nothing on the wire while offline");
        // Reconnect; the peer asks for everything from 2.
        s.on_logon(at(10), p.msg(at(10), b"A", &[(98, "0"), (108, "30")]));
        assert_eq!(types(&sent(&mut s)), ["A"]);
        s.on_message(at(11), p.msg(at(11), b"2", &[(7, "2"), (16, "0")]));
        let out = sent(&mut s);
        assert_eq!(types(&out), ["4", "8", "8", "4"]);
        assert_eq!(out[0].get_u64(34), Ok(Some(2)));
        assert_eq!(out[0].get_u64(36), Ok(Some(3)));
        assert_eq!(out[0].get(123), Some(&b"Y"[..]));
        for (m, seq) in out[1..3].iter().zip([3, 4]) {
            assert_eq!(m.get_u64(34), Ok(Some(seq)));
            assert_eq!(m.get(43), Some(&b"Y"[..]));
            assert_eq!(m.get_str(122), Some(utc::format(T0 + 2).as_str()));
            assert_eq!(m.get_str(11), Some("filled-while-away"));
        }
        // Our Logon (5) is admin: gap-filled up to 6.
        assert_eq!(out[3].get_u64(34), Ok(Some(5)));
        assert_eq!(out[3].get_u64(36), Ok(Some(6)));
    }

    #[test]
    fn malformed_and_header_problems_are_rejected_and_numbered_correctly() {
        let (mut s, mut p) = logged_on("30");
        let raw = {
            let mut b = MessageBuilder::new(b"D");
            b.str_field(49, "BRK1")
                .str_field(56, "GRIDMATCH")
                .u64_field(34, 2)
                .str_field(52, &utc::format(T0))
                .field(58, b"");
            b.finish("FIX.4.4")
        };
        p.seq = 3;
        match Message::parse(raw).unwrap() {
            Decoded::Malformed(m) => s.on_malformed(at(1), m),
            other => panic!("{other:?}"),
        }
        let rej = sent(&mut s);
        assert_eq!(types(&rej), ["3"]);
        assert_eq!(rej[0].get_u64(45), Ok(Some(2)));
        assert_eq!(rej[0].get_u64(373), Ok(Some(4)));
        assert_eq!(
            s.next_target_seq(),
            3,
            "the rejected message used its number"
        );
        // SendingTime far off: Reject (10) and Logout.
        let mut late = p.msg(at(2), b"D", &[(11, "late")]);
        late = {
            let mut b = MessageBuilder::new(b"D");
            b.str_field(49, "BRK1")
                .str_field(56, "GRIDMATCH")
                .u64_field(34, late.get_u64(34).unwrap().unwrap())
                .str_field(52, &utc::format(T0 - 600_000))
                .str_field(11, "late");
            let Ok(Decoded::Message(m)) = Message::parse(b.finish("FIX.4.4")) else {
                panic!()
            };
            m
        };
        s.on_message(at(2), late);
        let out = sent(&mut s);
        assert_eq!(types(&out), ["3", "5"]);
        assert_eq!(out[0].get_u64(373), Ok(Some(10)));
        // Logout answered: disconnect.
        s.on_message(at(3), p.msg(at(3), b"5", &[]));
        assert!(outputs(&mut s).contains(&Output::Disconnect));
    }

    #[test]
    fn logout_we_start_times_out_without_an_answer() {
        let (mut s, _p) = logged_on("30");
        s.logout(at(100), "bye");
        assert_eq!(types(&sent(&mut s)), ["5"]);
        s.on_tick(at(100 + 4_999));
        assert!(!outputs(&mut s).contains(&Output::Disconnect));
        s.on_tick(at(100 + 5_000));
        assert!(outputs(&mut s).contains(&Output::Disconnect));
    }

    #[test]
    fn sequence_reset_below_expected_is_rejected_and_changes_nothing() {
        let (mut s, mut p) = logged_on("30");
        s.on_message(at(1), p.msg(at(1), b"D", &[(11, "a")]));
        let _ = outputs(&mut s);
        s.on_message(at(2), p.msg(at(2), b"4", &[(36, "2")]));
        let out = sent(&mut s);
        assert_eq!(types(&out), ["3"]);
        assert_eq!(out[0].get_u64(373), Ok(Some(5)));
        assert_eq!(s.next_target_seq(), 3);
    }
}
