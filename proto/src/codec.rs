//! Length-prefixed bincode frames: `u32` little-endian payload length, then the payload.
//!
//! Pure functions over byte slices, through bincode's own derives (`Encode`, `Decode`) in its
//! standard layout. Decoding never panics: a frame longer than the limit, a truncated frame or
//! bytes that are not a valid message are errors, and a hostile length field inside the
//! payload cannot make the decoder reserve more than [`DECODE_CLAIM_LIMIT`], or than its
//! stage's share of it ([`decode_payload_within`]).
//!
//! Limits are per stage: [`HELLO_MAX_FRAME`] before a peer has authenticated, the session's own
//! limit after (see `SessionLimits`), and [`MAX_FRAME`] as the absolute ceiling.

use crate::limits::CLIENT_MAX_FRAME;

/// Largest payload accepted or produced by anyone (16 MiB).
pub const MAX_FRAME: usize = 16 * 1024 * 1024;
/// Largest payload read from a peer that has not authenticated yet (its hello).
pub const HELLO_MAX_FRAME: usize = 4 * 1024;
/// Bytes of the length prefix.
pub const HEADER_LEN: usize = 4;

/// What decoding one payload may claim. bincode counts what it decodes against this in memory
/// terms: 8 bytes for each `u64` read whatever its varint took, and a container's announced
/// length times its item's size before the items arrive (released as they do). So a false
/// length costs an error and never more than this in allocation. Decoded data takes more room
/// than the wire (an L3 book image's order: 24 bytes against 3 or more), so the limit is a
/// multiple of the largest frame: a book image that fills a frame still decodes (with one
/// frame's worth, the serde path refused any of more than about 700k orders).
pub const DECODE_CLAIM_LIMIT: usize = CLAIM_PER_FRAME_BYTE * MAX_FRAME;
/// How many bytes decoding may claim per byte a frame may have (see [`DECODE_CLAIM_LIMIT`]).
pub const CLAIM_PER_FRAME_BYTE: usize = 8;

type Config<const LIMIT: usize> = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<LIMIT>,
>;

/// bincode's standard layout (little-endian, varints): the bytes serde's bincode layer gives
/// for the same types, so frames and recordings read the same either way.
fn config<const LIMIT: usize>() -> Config<LIMIT> {
    bincode::config::standard().with_limit::<LIMIT>()
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("frame could not be encoded: {0}")]
    Encode(String),
}

/// Appends one frame holding `msg` to `out`.
pub fn encode_frame<T: bincode::Encode>(msg: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    if let Err(e) = bincode::encode_into_writer(msg, VecWriter(out), config::<MAX_FRAME>()) {
        out.truncate(start);
        return Err(CodecError::Encode(e.to_string()));
    }
    let len = out.len() - start - HEADER_LEN;
    if len > MAX_FRAME {
        out.truncate(start);
        return Err(CodecError::TooLarge {
            len,
            max: MAX_FRAME,
        });
    }
    out[start..start + HEADER_LEN].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(())
}

/// Appends to a vector directly: bincode's `std::io::Write` adapter maps an I/O error (that a
/// vector never returns) around every byte written, and the encoder writes field by field.
pub struct VecWriter<'a>(pub &'a mut Vec<u8>);

impl bincode::enc::write::Writer for VecWriter<'_> {
    #[inline(always)]
    fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

/// Reads the payload length from a frame header, checking it against `limit` (itself capped at
/// [`MAX_FRAME`]).
pub fn frame_len(header: [u8; HEADER_LEN], limit: usize) -> Result<usize, CodecError> {
    let len = u32::from_le_bytes(header) as usize;
    let max = limit.min(MAX_FRAME);
    if len > max {
        return Err(CodecError::TooLarge { len, max });
    }
    Ok(len)
}

/// Decodes one payload (without its header); trailing bytes are an error.
pub fn decode_payload<T: bincode::Decode<()>>(payload: &[u8]) -> Result<T, CodecError> {
    decode_payload_within(payload, MAX_FRAME)
}

/// [`decode_payload`] for a payload read under a stage's frame limit (`FrameReader`): what
/// decoding may claim scales with that limit, [`CLAIM_PER_FRAME_BYTE`] times it. So a peer
/// that has not authenticated can make the decoder reserve at most 32 KiB whatever lengths its
/// hello announces, and a client at most 8 MiB.
pub fn decode_payload_within<T: bincode::Decode<()>>(
    payload: &[u8],
    frame_limit: usize,
) -> Result<T, CodecError> {
    if frame_limit <= HELLO_MAX_FRAME {
        decode_claiming::<T, { CLAIM_PER_FRAME_BYTE * HELLO_MAX_FRAME }>(payload)
    } else if frame_limit <= CLIENT_MAX_FRAME {
        decode_claiming::<T, { CLAIM_PER_FRAME_BYTE * CLIENT_MAX_FRAME }>(payload)
    } else {
        decode_claiming::<T, DECODE_CLAIM_LIMIT>(payload)
    }
}

fn decode_claiming<T: bincode::Decode<()>, const CLAIM: usize>(
    payload: &[u8],
) -> Result<T, CodecError> {
    let (msg, used) = bincode::decode_from_slice(payload, config::<CLAIM>())
        .map_err(|e| CodecError::Malformed(e.to_string()))?;
    if used != payload.len() {
        return Err(CodecError::Malformed(format!(
            "{} trailing bytes after the message",
            payload.len() - used
        )));
    }
    Ok(msg)
}

/// Decodes the first complete frame in `buf`: `Ok(None)` if more bytes are needed, else the
/// message and the number of bytes it used.
pub fn decode_frame<T: bincode::Decode<()>>(buf: &[u8]) -> Result<Option<(T, usize)>, CodecError> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let mut h = [0u8; HEADER_LEN];
    h.copy_from_slice(header);
    let len = frame_len(h, MAX_FRAME)?;
    let Some(payload) = buf.get(HEADER_LEN..HEADER_LEN + len) else {
        return Ok(None);
    };
    Ok(Some((decode_payload(payload)?, HEADER_LEN + len)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::*;
    use matching::*;

    fn sample() -> ClientMsg {
        let cmd = |client_ref, command| ClientCommand {
            client_ref,
            command,
        };
        ClientMsg::Submit(vec![
            cmd(
                1,
                Command::New(NewOrder {
                    id: OrderId(7),
                    broker: BrokerId(1),
                    security: SecurityId(3),
                    side: Side::Buy,
                    kind: OrderType::Limit,
                    price: 65_000,
                    qty: 300,
                }),
            ),
            cmd(
                2,
                Command::Cancel(CancelOrder {
                    id: OrderId(5),
                    broker: BrokerId(1),
                    security: SecurityId(3),
                }),
            ),
            cmd(
                3,
                Command::Amend(AmendOrder {
                    id: OrderId(7),
                    broker: BrokerId(1),
                    security: SecurityId(3),
                    price: 64_900,
                    qty: 200,
                }),
            ),
            cmd(4, Command::Phase(Phase::Atc)),
        ])
    }

    #[test]
    fn round_trips_and_reports_length() {
        let mut buf = Vec::new();
        encode_frame(&sample(), &mut buf).unwrap();
        encode_frame(&ClientMsg::QueryTotals { query: 9 }, &mut buf).unwrap();
        let (first, used) = decode_frame::<ClientMsg>(&buf).unwrap().unwrap();
        assert_eq!(first, sample());
        let (second, used2) = decode_frame::<ClientMsg>(&buf[used..]).unwrap().unwrap();
        assert_eq!(second, ClientMsg::QueryTotals { query: 9 });
        assert_eq!(used + used2, buf.len());
    }

    #[test]
    fn partial_frames_need_more_bytes() {
        let mut buf = Vec::new();
        encode_frame(&sample(), &mut buf).unwrap();
        for cut in 0..buf.len() {
            assert!(
                decode_frame::<ClientMsg>(&buf[..cut]).unwrap().is_none(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn oversized_length_is_refused_before_reading() {
        let mut buf = ((MAX_FRAME + 1) as u32).to_le_bytes().to_vec();
        buf.extend_from_slice(&[0; 16]);
        assert!(matches!(
            decode_frame::<ClientMsg>(&buf),
            Err(CodecError::TooLarge { .. })
        ));
    }

    #[test]
    fn stage_limit_caps_the_announced_length() {
        let header = ((HELLO_MAX_FRAME + 1) as u32).to_le_bytes();
        assert!(matches!(
            frame_len(header, HELLO_MAX_FRAME),
            Err(CodecError::TooLarge { max, .. }) if max == HELLO_MAX_FRAME
        ));
        assert_eq!(frame_len(header, MAX_FRAME).unwrap(), HELLO_MAX_FRAME + 1);
        // No stage may raise the ceiling.
        let huge = ((MAX_FRAME + 1) as u32).to_le_bytes();
        assert!(frame_len(huge, usize::MAX).is_err());
    }

    #[test]
    fn hostile_inner_length_does_not_allocate_or_panic() {
        // Variant 0 (Submit) followed by a varint claiming u64::MAX elements.
        let payload = [0u8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert!(decode_payload::<ClientMsg>(&payload).is_err());
    }

    #[test]
    fn trailing_bytes_are_malformed() {
        let mut buf = Vec::new();
        encode_frame(&ClientMsg::QueryTotals { query: 1 }, &mut buf).unwrap();
        buf.push(0);
        let len = buf.len() - HEADER_LEN;
        buf[..HEADER_LEN].copy_from_slice(&(len as u32).to_le_bytes());
        assert!(matches!(
            decode_frame::<ClientMsg>(&buf),
            Err(CodecError::Malformed(_))
        ));
    }

    #[test]
    fn a_false_length_within_the_claim_limit_is_an_error() {
        // Submit (variant 0) announcing as many commands as the claim limit allows, then one
        // command's bytes: the decoder reserves the claim, runs out of bytes and says so.
        let mut one = Vec::new();
        encode_frame(&sample(), &mut one).unwrap();
        let claimed = (DECODE_CLAIM_LIMIT / std::mem::size_of::<ClientCommand>() - 1) as u32;
        let mut payload = vec![0u8, 252];
        payload.extend_from_slice(&claimed.to_le_bytes());
        payload.extend_from_slice(&one[HEADER_LEN + 2..]);
        assert!(matches!(
            decode_payload::<ClientMsg>(&payload),
            Err(CodecError::Malformed(_))
        ));
    }

    #[test]
    fn a_book_image_that_fills_a_frame_decodes() {
        // An L3 snapshot of a side of 1.2M orders: under the frame limit on the wire, above it
        // in memory (24 bytes an order), so a claim limit of one frame would refuse it.
        let orders: Vec<feed::OrderInfo> = (0..1_200_000u64)
            .map(|i| feed::OrderInfo {
                id: OrderId(1 + i),
                price: 25_000 + (i % 40) as i64 * 50,
                qty: 100 * (1 + i % 5),
            })
            .collect();
        let update = FeedUpdate::Messages(vec![feed::Message {
            seq: 1,
            time: 0,
            body: feed::Body::Snapshot(Box::new(feed::Snapshot {
                security: SecurityId(0),
                phase: Phase::Continuous,
                reference: 25_000,
                last_trade: None,
                indicative: None,
                book: feed::BookImage::Orders {
                    bids: orders,
                    asks: Vec::new(),
                },
            })),
        }]);
        let mut frame = Vec::new();
        encode_frame(&update, &mut frame).unwrap();
        assert!(frame.len() < MAX_FRAME);
        assert!(1_200_000 * std::mem::size_of::<feed::OrderInfo>() > MAX_FRAME);
        let (back, used) = decode_frame::<FeedUpdate>(&frame).unwrap().unwrap();
        assert_eq!(used, frame.len());
        assert_eq!(back, update);
    }

    #[test]
    fn what_a_payload_may_claim_follows_its_stage() {
        // A hello-sized payload announcing a 100 KiB name: under the stage's claim (32 KiB for
        // a hello) it is refused for the claim, before anything is reserved; with a client's
        // or the full claim it gets as far as running out of bytes.
        // Version 0, then `Credentials::Broker` (variant 0) whose name claims 100 KiB.
        let mut payload = vec![0u8, 0];
        payload.push(252);
        payload.extend_from_slice(&(100u32 << 10).to_le_bytes());
        payload.extend_from_slice(b"B01");
        let claimed = |r: Result<Hello, CodecError>| match r {
            Err(CodecError::Malformed(why)) => why.contains("LimitExceeded"),
            other => panic!("{other:?}"),
        };
        assert!(claimed(decode_payload_within(&payload, HELLO_MAX_FRAME)));
        assert!(!claimed(decode_payload_within(&payload, CLIENT_MAX_FRAME)));
        assert!(!claimed(decode_payload(&payload)));
        // An honest hello decodes under the hello stage's claim.
        let hello = Hello {
            version: 1,
            credentials: Credentials::Broker {
                name: "B01".into(),
                secret: "s3cret".into(),
            },
        };
        let mut frame = Vec::new();
        encode_frame(&hello, &mut frame).unwrap();
        let back: Hello = decode_payload_within(&frame[HEADER_LEN..], HELLO_MAX_FRAME).unwrap();
        assert_eq!(back, hello);
    }

    /// Frames of every kind on the order path and the feed, to mutate.
    fn seeds() -> Vec<(&'static str, Vec<u8>)> {
        // A message's payload: its frame without the header.
        fn payload<T: bincode::Encode>(msg: &T) -> Vec<u8> {
            let mut frame = Vec::new();
            encode_frame(msg, &mut frame).unwrap();
            frame.split_off(HEADER_LEN)
        }
        let ClientMsg::Submit(cmds) = sample() else {
            unreachable!()
        };
        let routed: Vec<Routed> = cmds
            .iter()
            .enumerate()
            .map(|(i, c)| Routed {
                seq: 1 + i as u64,
                security: SecurityId(3),
                command: c.command,
            })
            .collect();
        let fill = Fill {
            security: SecurityId(3),
            price: 65_000,
            qty: 300,
            buy: OrderId(7),
            sell: OrderId(2),
            buy_broker: BrokerId(1),
            sell_broker: BrokerId(2),
            aggressor: Aggressor::Buy,
        };
        let events: crate::GroupEvents = vec![
            Event::Fill(fill),
            Event::Cancelled {
                id: OrderId(7),
                qty: 100,
                reason: CancelReason::Unfilled,
            },
            Event::Totals {
                security: SecurityId(3),
                bid_total: 1_000,
                ask_total: 0,
            },
        ]
        .into();
        let report = |event, last| Report {
            client_ref: 9,
            seq: 4,
            time: 1_795_560_121_629_263_241,
            order: OrderId(7),
            event,
            last,
            passive: !last,
        };
        let trade = TradeId {
            seq: 4,
            security: SecurityId(3),
            index: 0,
        };
        let group = EventGroup {
            seq: 4,
            security: SecurityId(3),
            events,
            last: true,
        };
        let reports = vec![
            report(ReportEvent::Accepted, false),
            report(ReportEvent::Trade { fill, trade }, false),
            report(
                ReportEvent::Rejected {
                    reason: RejectReason::OffTick,
                },
                true,
            ),
        ];
        let msg = |seq, body| feed::Message { seq, time: 5, body };
        let update = FeedUpdate::Messages(vec![
            msg(
                1,
                feed::Body::Add {
                    security: SecurityId(3),
                    id: OrderId(7),
                    side: Side::Buy,
                    price: 65_000,
                    qty: 300,
                },
            ),
            msg(
                2,
                feed::Body::Quote {
                    security: SecurityId(3),
                    bid: Some(feed::LevelInfo {
                        price: 65_000,
                        qty: 300,
                        orders: 1,
                    }),
                    ask: None,
                },
            ),
        ]);
        vec![
            ("client", payload(&sample())),
            ("to executor", payload(&ToExecutor::Orders(routed))),
            ("from executor", payload(&FromExecutor::Events(vec![group]))),
            ("to client", payload(&ManagerToClient::Reports(reports))),
            ("feed", payload(&update)),
        ]
    }

    /// Decodes `bytes` as a `T` natively and through bincode's serde layer (the codec's former
    /// path, and what other tools may use): both fail, or both give the same message from the
    /// same bytes, which encodes back to the same bytes either way.
    fn native_and_serde_agree<T>(bytes: &[u8])
    where
        T: bincode::Encode
            + bincode::Decode<()>
            + serde::Serialize
            + serde::de::DeserializeOwned
            + PartialEq
            + std::fmt::Debug,
    {
        let native = bincode::decode_from_slice::<T, _>(bytes, config::<DECODE_CLAIM_LIMIT>());
        let serde =
            bincode::serde::decode_from_slice::<T, _>(bytes, config::<DECODE_CLAIM_LIMIT>());
        match (native, serde) {
            (Ok((a, used_a)), Ok((b, used_b))) => {
                assert_eq!(a, b);
                assert_eq!(used_a, used_b);
                let mut frame = Vec::new();
                encode_frame(&a, &mut frame).unwrap();
                let through_serde =
                    bincode::serde::encode_to_vec(&a, config::<MAX_FRAME>()).unwrap();
                assert_eq!(&frame[HEADER_LEN..], &through_serde[..]);
            }
            (Err(_), Err(_)) => {}
            (a, b) => panic!(
                "native decoding {:?} but serde {:?}",
                a.map(|(_, n)| n),
                b.map(|(_, n)| n)
            ),
        }
    }

    fn all_agree(bytes: &[u8]) {
        native_and_serde_agree::<ClientMsg>(bytes);
        native_and_serde_agree::<ManagerToClient>(bytes);
        native_and_serde_agree::<ToExecutor>(bytes);
        native_and_serde_agree::<FromExecutor>(bytes);
        native_and_serde_agree::<FeedUpdate>(bytes);
        native_and_serde_agree::<MonitorMsg>(bytes);
        native_and_serde_agree::<Hello>(bytes);
        native_and_serde_agree::<HelloReply>(bytes);
    }

    #[test]
    fn every_seed_frame_reads_the_same_through_serde() {
        for (kind, payload) in seeds() {
            all_agree(&payload);
            // And each decodes as what it was encoded from.
            let ok = match kind {
                "client" => decode_payload::<ClientMsg>(&payload).is_ok(),
                "to executor" => decode_payload::<ToExecutor>(&payload).is_ok(),
                "from executor" => decode_payload::<FromExecutor>(&payload).is_ok(),
                "to client" => decode_payload::<ManagerToClient>(&payload).is_ok(),
                _ => decode_payload::<FeedUpdate>(&payload).is_ok(),
            };
            assert!(ok, "{kind}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 2000, ..Default::default() })]
        /// Damaged frames (bytes changed, cut off or inserted): native decoding and serde's
        /// agree on each, message for message and error for error.
        #[test]
        fn damaged_frames_read_the_same_natively_and_through_serde(
            seed in 0usize..5,
            edits in proptest::collection::vec((proptest::num::usize::ANY, proptest::num::u8::ANY, 0u8..3), 1..4),
        ) {
            let mut bytes = seeds()[seed].1.clone();
            for (at, byte, how) in edits {
                let i = at % (bytes.len() + 1);
                match how {
                    0 if i < bytes.len() => bytes[i] = byte,
                    1 => bytes.truncate(i),
                    _ => bytes.insert(i, byte),
                }
            }
            all_agree(&bytes);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = decode_frame::<ClientMsg>(&bytes);
            let _ = decode_frame::<ToExecutor>(&bytes);
            let _ = decode_frame::<FromExecutor>(&bytes);
            let _ = decode_frame::<Hello>(&bytes);
            let _ = decode_payload::<HelloReply>(&bytes);
            let _ = decode_payload::<ManagerToClient>(&bytes);
            let _ = decode_payload::<MonitorMsg>(&bytes);
        }
    }
}
