//! Length-prefixed bincode frames: `u32` little-endian payload length, then the payload.
//!
//! Pure functions over byte slices. Decoding never panics: a frame longer than the limit, a
//! truncated frame or bytes that are not a valid message are errors, and a hostile length field
//! inside the payload cannot make the decoder allocate more than the frame (bincode's limit and
//! serde's cautious preallocation).
//!
//! Limits are per stage: [`HELLO_MAX_FRAME`] before a peer has authenticated, the session's own
//! limit after (see `SessionLimits`), and [`MAX_FRAME`] as the absolute ceiling.

use serde::{de::DeserializeOwned, Serialize};

/// Largest payload accepted or produced by anyone (16 MiB).
pub const MAX_FRAME: usize = 16 * 1024 * 1024;
/// Largest payload read from a peer that has not authenticated yet (its hello).
pub const HELLO_MAX_FRAME: usize = 4 * 1024;
/// Bytes of the length prefix.
pub const HEADER_LEN: usize = 4;

type Config = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<MAX_FRAME>,
>;

fn config() -> Config {
    bincode::config::standard().with_limit::<MAX_FRAME>()
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
pub fn encode_frame<T: Serialize>(msg: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER_LEN]);
    if let Err(e) = bincode::serde::encode_into_writer(msg, VecWriter(out), config()) {
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
struct VecWriter<'a>(&'a mut Vec<u8>);

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
pub fn decode_payload<T: DeserializeOwned>(payload: &[u8]) -> Result<T, CodecError> {
    let (msg, used) = bincode::serde::decode_from_slice(payload, config())
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
pub fn decode_frame<T: DeserializeOwned>(buf: &[u8]) -> Result<Option<(T, usize)>, CodecError> {
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

    proptest::proptest! {
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
