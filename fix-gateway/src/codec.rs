//! FIX tag-value codec: framing with strict BodyLength and CheckSum validation, field splitting
//! (length-prefixed data fields may contain SOH), and a message builder that computes both.
//!
//! Three outcomes for bytes off the wire, as FIX 4.4 (Vol. 2, "garbled messages") asks:
//! - [`Garbled`]: the frame cannot be trusted (BeginString, BodyLength, MsgType not the first three
//!   fields; wrong length; wrong checksum; oversized). The session ignores it: no reply, no
//!   sequence number consumed. The decoder resynchronises on the next `8=FIX`.
//! - [`Malformed`]: the frame is intact but a field is bad (tag not a number, no value, broken
//!   data field). The session answers with a session-level Reject.
//! - [`Message`]: a well-formed message.
//!
//! Never panics on any input (fuzzed by proptest below).

use crate::tags;

/// The field delimiter.
pub const SOH: u8 = 0x01;

/// Smallest possible trailer: `10=NNN<SOH>`.
const TRAILER_LEN: usize = 7;

/// Why a frame was judged garbled (ignored without reply).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Garbled {
    #[error("message does not start with 8=FIX")]
    BadBeginString,
    #[error("BodyLength(9) missing or not a number")]
    BadBodyLength,
    #[error("message of {0} bytes exceeds the limit")]
    TooLong(usize),
    #[error("CheckSum(10) missing or misplaced (BodyLength wrong?)")]
    BadTrailer,
    #[error("CheckSum mismatch: message says {declared}, bytes sum to {computed}")]
    BadChecksum { declared: u8, computed: u8 },
    #[error("MsgType(35) is not the third field")]
    MsgTypeNotThird,
}

/// Session-level reject reasons, SessionRejectReason(373) in FIX 4.4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RejectReason {
    InvalidTagNumber = 0,
    RequiredTagMissing = 1,
    TagNotDefinedForMessageType = 2,
    UndefinedTag = 3,
    TagSpecifiedWithoutValue = 4,
    ValueIsIncorrect = 5,
    IncorrectDataFormat = 6,
    CompIdProblem = 9,
    SendingTimeAccuracyProblem = 10,
    InvalidMsgType = 11,
    TagAppearsMoreThanOnce = 13,
    TagSpecifiedOutOfRequiredOrder = 14,
    Other = 99,
}

impl RejectReason {
    /// The text QuickFIX and most engines put in Text(58) for this reason.
    pub fn text(self) -> &'static str {
        match self {
            RejectReason::InvalidTagNumber => "Invalid tag number",
            RejectReason::RequiredTagMissing => "Required tag missing",
            RejectReason::TagNotDefinedForMessageType => "Tag not defined for this message type",
            RejectReason::UndefinedTag => "Undefined tag",
            RejectReason::TagSpecifiedWithoutValue => "Tag specified without a value",
            RejectReason::ValueIsIncorrect => "Value is incorrect (out of range) for this tag",
            RejectReason::IncorrectDataFormat => "Incorrect data format for value",
            RejectReason::CompIdProblem => "CompID problem",
            RejectReason::SendingTimeAccuracyProblem => "SendingTime accuracy problem",
            RejectReason::InvalidMsgType => "Invalid MsgType",
            RejectReason::TagAppearsMoreThanOnce => "Tag appears more than once",
            RejectReason::TagSpecifiedOutOfRequiredOrder => "Tag specified out of required order",
            RejectReason::Other => "Other",
        }
    }
}

/// The first field defect found in an intact frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Defect {
    pub reason: RejectReason,
    /// The tag concerned, when there is one (RefTagID(371)).
    pub tag: Option<u32>,
}

/// An intact frame whose fields are not all well-formed. Carries what the session needs to
/// reject it: the message's MsgType and MsgSeqNum when they could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    pub defect: Defect,
    pub msg_type: Vec<u8>,
    pub seq_num: Option<u64>,
    /// The whole frame, for logs.
    pub raw: Vec<u8>,
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    Message(Message),
    Malformed(Malformed),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    tag: u32,
    start: u32,
    end: u32,
}

/// A well-formed FIX message: the raw bytes and the position of each field, in wire order.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    raw: Vec<u8>,
    fields: Vec<Span>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Message({})", display_raw(&self.raw))
    }
}

/// The message's bytes with SOH shown as `|`, for logs and test output.
pub fn display_raw(raw: &[u8]) -> String {
    raw.iter()
        .map(|&b| {
            if b == SOH {
                '|'
            } else if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '?'
            }
        })
        .collect()
}

impl Message {
    /// Parses one complete frame (as found by [`Decoder`]). Also validates the frame itself, so
    /// it is safe on arbitrary bytes.
    pub fn parse(raw: Vec<u8>) -> Result<Decoded, Garbled> {
        check_frame(&raw)?;
        Ok(split_fields(raw))
    }

    /// The frame's bytes, exactly as received or built.
    pub fn as_bytes(&self) -> &[u8] {
        &self.raw
    }

    /// Consumes the message, returning its bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.raw
    }

    /// MsgType(35); always present in a parsed message.
    pub fn msg_type(&self) -> &[u8] {
        self.get(tags::MSG_TYPE).unwrap_or_default()
    }

    /// The value of the first occurrence of `tag`.
    pub fn get(&self, tag: u32) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|s| s.tag == tag)
            .map(|s| &self.raw[s.start as usize..s.end as usize])
    }

    /// The value of `tag` as UTF-8 text; `None` if absent or not UTF-8.
    pub fn get_str(&self, tag: u32) -> Option<&str> {
        self.get(tag).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The value of `tag` as an unsigned integer: `Ok(None)` if absent, `Err` if not a number.
    pub fn get_u64(&self, tag: u32) -> Result<Option<u64>, Defect> {
        match self.get(tag) {
            None => Ok(None),
            Some(v) => parse_u64(v).map(Some).ok_or(Defect {
                reason: RejectReason::IncorrectDataFormat,
                tag: Some(tag),
            }),
        }
    }

    /// A Y/N flag: absent = false; anything but Y/N is a defect.
    pub fn get_flag(&self, tag: u32) -> Result<bool, Defect> {
        match self.get(tag) {
            None | Some(b"N") => Ok(false),
            Some(b"Y") => Ok(true),
            Some(_) => Err(Defect {
                reason: RejectReason::IncorrectDataFormat,
                tag: Some(tag),
            }),
        }
    }

    /// Every field in wire order, header and trailer included.
    pub fn fields(&self) -> impl Iterator<Item = (u32, &[u8])> + '_ {
        self.fields
            .iter()
            .map(|s| (s.tag, &self.raw[s.start as usize..s.end as usize]))
    }

    /// The fields after the standard header and before the trailer, in wire order: what a
    /// resend copies into the retransmitted message.
    pub fn body_fields(&self) -> impl Iterator<Item = (u32, &[u8])> + '_ {
        self.fields()
            .filter(|(tag, _)| !tags::is_header_or_trailer(*tag))
    }
}

/// Parses a non-empty run of ASCII digits (no sign, at most 18 digits, so no overflow).
pub fn parse_u64(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |s, &b| s.wrapping_add(b))
}

/// Where the BodyLength value ends: returns (position after `9=N<SOH>`, N).
fn read_prefix(buf: &[u8]) -> Result<Option<(usize, usize)>, Garbled> {
    const BEGIN: &[u8] = b"8=FIX";
    let n = buf.len().min(BEGIN.len());
    if buf[..n] != BEGIN[..n] {
        return Err(Garbled::BadBeginString);
    }
    // BeginString value: at most 16 bytes, then SOH.
    let Some(soh) = buf.iter().take(2 + 17).position(|&b| b == SOH) else {
        return if buf.len() >= 2 + 17 {
            Err(Garbled::BadBeginString)
        } else {
            Ok(None)
        };
    };
    let rest = &buf[soh + 1..];
    let n = rest.len().min(2);
    if rest[..n] != b"9="[..n] {
        return Err(Garbled::BadBodyLength);
    }
    if rest.len() < 2 {
        return Ok(None);
    }
    let digits = &rest[2..];
    let Some(end) = digits.iter().take(8).position(|&b| b == SOH) else {
        return if digits.len() >= 8 {
            Err(Garbled::BadBodyLength)
        } else {
            Ok(None)
        };
    };
    let len = parse_u64(&digits[..end]).ok_or(Garbled::BadBodyLength)? as usize;
    Ok(Some((soh + 1 + 2 + end + 1, len)))
}

/// Validates a complete frame: prefix, length, trailer, checksum, MsgType third.
fn check_frame(raw: &[u8]) -> Result<(), Garbled> {
    let (body_start, len) = read_prefix(raw)?.ok_or(Garbled::BadTrailer)?;
    if body_start + len + TRAILER_LEN != raw.len() {
        return Err(Garbled::BadTrailer);
    }
    check_trailer_and_type(raw, body_start, len)
}

fn check_trailer_and_type(raw: &[u8], body_start: usize, len: usize) -> Result<(), Garbled> {
    let body_end = body_start + len;
    let trailer = &raw[body_end..body_end + TRAILER_LEN];
    if len == 0 || raw[body_end - 1] != SOH || &trailer[..3] != b"10=" || trailer[6] != SOH {
        return Err(Garbled::BadTrailer);
    }
    let declared = parse_u64(&trailer[3..6]).ok_or(Garbled::BadTrailer)?;
    let computed = checksum(&raw[..body_end]);
    if declared != u64::from(computed) {
        return Err(Garbled::BadChecksum {
            declared: declared.min(255) as u8,
            computed,
        });
    }
    if !raw[body_start..].starts_with(b"35=") {
        return Err(Garbled::MsgTypeNotThird);
    }
    Ok(())
}

/// Splits an intact frame into fields. The first defect makes the result [`Malformed`]; the
/// scan goes on so that MsgSeqNum can still be read for the Reject.
fn split_fields(raw: Vec<u8>) -> Decoded {
    let mut fields = Vec::with_capacity(16);
    let mut defect: Option<Defect> = None;
    let note = |d: Defect, defect: &mut Option<Defect>| {
        if defect.is_none() {
            *defect = Some(d);
        }
    };
    let body_end = raw.len().saturating_sub(TRAILER_LEN);
    let mut pos = 0usize;
    // Length of the next data field, announced by its length field.
    let mut data_len: Option<(u32, usize)> = None;
    while pos < raw.len() {
        let Some(eq) = raw[pos..].iter().position(|&b| b == b'=') else {
            note(defect_at(RejectReason::InvalidTagNumber, None), &mut defect);
            break;
        };
        let tag_bytes = &raw[pos..pos + eq];
        let value_start = pos + eq + 1;
        let tag = parse_u64(tag_bytes)
            .filter(|&t| t > 0 && t <= u64::from(u32::MAX))
            .map(|t| t as u32);
        let value_end = match (tag, data_len.take()) {
            (Some(t), Some((data_tag, n))) if t == data_tag => {
                let end = value_start.saturating_add(n);
                // The data must end inside the body: it may not swallow the CheckSum field.
                if end >= body_end || raw[end] != SOH {
                    note(
                        defect_at(RejectReason::IncorrectDataFormat, Some(t)),
                        &mut defect,
                    );
                    match raw[value_start..].iter().position(|&b| b == SOH) {
                        Some(p) => value_start + p,
                        None => raw.len(),
                    }
                } else {
                    end
                }
            }
            _ => match raw[value_start..].iter().position(|&b| b == SOH) {
                Some(p) => value_start + p,
                None => raw.len(),
            },
        };
        match tag {
            None => note(defect_at(RejectReason::InvalidTagNumber, None), &mut defect),
            Some(t) if value_end == value_start => note(
                defect_at(RejectReason::TagSpecifiedWithoutValue, Some(t)),
                &mut defect,
            ),
            Some(t) => {
                if let Some(data_tag) = tags::data_field_for_length(t) {
                    match parse_u64(&raw[value_start..value_end]) {
                        Some(n) => data_len = Some((data_tag, n as usize)),
                        None => note(
                            defect_at(RejectReason::IncorrectDataFormat, Some(t)),
                            &mut defect,
                        ),
                    }
                }
                fields.push(Span {
                    tag: t,
                    start: value_start as u32,
                    end: value_end as u32,
                });
            }
        }
        pos = value_end + 1;
    }
    if defect.is_none() {
        defect = header_defect(&fields);
    }
    let msg = Message { raw, fields };
    match defect {
        None => Decoded::Message(msg),
        Some(defect) => Decoded::Malformed(Malformed {
            defect,
            msg_type: msg.msg_type().to_vec(),
            seq_num: msg.get_u64(tags::MSG_SEQ_NUM).ok().flatten(),
            raw: msg.raw,
        }),
    }
}

fn defect_at(reason: RejectReason, tag: Option<u32>) -> Defect {
    Defect { reason, tag }
}

/// Header fields may appear once; header fields after the body are out of order.
fn header_defect(fields: &[Span]) -> Option<Defect> {
    let mut seen: Vec<u32> = Vec::with_capacity(8);
    let mut in_body = false;
    for s in fields {
        if s.tag == tags::CHECK_SUM {
            break;
        }
        if tags::is_header(s.tag) {
            if seen.contains(&s.tag) {
                return Some(defect_at(RejectReason::TagAppearsMoreThanOnce, Some(s.tag)));
            }
            if in_body {
                return Some(defect_at(
                    RejectReason::TagSpecifiedOutOfRequiredOrder,
                    Some(s.tag),
                ));
            }
            seen.push(s.tag);
        } else {
            in_body = true;
        }
    }
    None
}

/// Streaming frame decoder: appends bytes, takes complete frames off the front.
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    /// Bytes before this were already decoded (compacted on the next `extend`).
    start: usize,
    max_message_len: usize,
}

impl Decoder {
    /// A decoder that judges frames longer than `max_message_len` bytes garbled.
    pub fn new(max_message_len: usize) -> Self {
        Decoder {
            buf: Vec::with_capacity(4096),
            start: 0,
            max_message_len: max_message_len.max(64),
        }
    }

    /// Appends received bytes.
    pub fn extend(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes buffered and not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next frame: `None` when more bytes are needed. A garbled frame is dropped up to the
    /// next `8=FIX` and reported, so the caller can log it and go on.
    pub fn next_frame(&mut self) -> Option<Result<Decoded, Garbled>> {
        let buf = &self.buf[self.start..];
        if buf.is_empty() {
            return None;
        }
        let result = match read_prefix(buf) {
            Ok(None) => return None,
            Ok(Some((body_start, len))) => {
                let total = body_start.saturating_add(len).saturating_add(TRAILER_LEN);
                if total > self.max_message_len {
                    Err(Garbled::TooLong(total))
                } else if buf.len() < total {
                    return None;
                } else {
                    match check_trailer_and_type(&buf[..total], body_start, len) {
                        Ok(()) => {
                            let frame = buf[..total].to_vec();
                            self.start += total;
                            return Some(Ok(split_fields(frame)));
                        }
                        Err(e) => Err(e),
                    }
                }
            }
            Err(e) => Err(e),
        };
        self.resync();
        Some(result)
    }

    /// Drops bytes up to the next possible frame start after the current one.
    fn resync(&mut self) {
        let buf = &self.buf[self.start..];
        let skip = find(&buf[1..], b"8=FIX").map(|p| p + 1).unwrap_or_else(|| {
            // Keep a tail that may be the start of "8=FIX" still arriving.
            let keep = (1..5)
                .rev()
                .find(|&k| k < buf.len() && b"8=FIX".starts_with(&buf[buf.len() - k..]))
                .unwrap_or(0);
            buf.len() - keep
        });
        self.start += skip;
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Builds one message: body fields first, then [`MessageBuilder::finish`] writes BeginString,
/// BodyLength and CheckSum around them.
#[derive(Debug, Clone)]
pub struct MessageBuilder {
    body: Vec<u8>,
}

impl MessageBuilder {
    /// Starts a message of the given MsgType(35).
    pub fn new(msg_type: &[u8]) -> Self {
        let mut b = MessageBuilder {
            body: Vec::with_capacity(256),
        };
        b.field(tags::MSG_TYPE, msg_type);
        b
    }

    /// Starts a run of body fields without MsgType, to be [`MessageBuilder::append`]ed to a
    /// message later (the session writes the header in between).
    pub fn body() -> Self {
        MessageBuilder {
            body: Vec::with_capacity(256),
        }
    }

    /// Appends the fields of `other` (built with [`MessageBuilder::body`]).
    pub fn append(&mut self, other: &MessageBuilder) -> &mut Self {
        self.body.extend_from_slice(&other.body);
        self
    }

    /// Whether no field was written.
    pub fn is_empty(&self) -> bool {
        self.body.is_empty()
    }

    /// Appends `tag=value`. The caller keeps SOH out of non-data values.
    pub fn field(&mut self, tag: u32, value: &[u8]) -> &mut Self {
        let mut t = itoa_buf();
        self.body.extend_from_slice(fmt_u64(&mut t, u64::from(tag)));
        self.body.push(b'=');
        self.body.extend_from_slice(value);
        self.body.push(SOH);
        self
    }

    /// Appends `tag=value` for text; SOH bytes (which would split the field) become spaces.
    pub fn str_field(&mut self, tag: u32, value: &str) -> &mut Self {
        if value.as_bytes().contains(&SOH) {
            let clean: Vec<u8> = value
                .bytes()
                .map(|b| if b == SOH { b' ' } else { b })
                .collect();
            self.field(tag, &clean)
        } else {
            self.field(tag, value.as_bytes())
        }
    }

    /// Appends an unsigned integer field.
    pub fn u64_field(&mut self, tag: u32, value: u64) -> &mut Self {
        let mut t = itoa_buf();
        let digits = fmt_u64(&mut t, value).to_vec();
        self.field(tag, &digits)
    }

    /// Writes the frame: `8=<begin>|9=<len>|<body>10=<sum>|`.
    pub fn finish(&self, begin_string: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 32);
        out.extend_from_slice(b"8=");
        out.extend_from_slice(begin_string.as_bytes());
        out.push(SOH);
        out.extend_from_slice(b"9=");
        let mut t = itoa_buf();
        out.extend_from_slice(fmt_u64(&mut t, self.body.len() as u64));
        out.push(SOH);
        out.extend_from_slice(&self.body);
        let sum = checksum(&out);
        out.extend_from_slice(b"10=");
        out.extend_from_slice(&[b'0' + sum / 100, b'0' + (sum / 10) % 10, b'0' + sum % 10]);
        out.push(SOH);
        out
    }
}

fn itoa_buf() -> [u8; 20] {
    [0u8; 20]
}

fn fmt_u64(buf: &mut [u8; 20], mut n: u64) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Writes a frame by hand (not with the builder), from `|`-separated body text.
    fn hand_frame(body: &str) -> Vec<u8> {
        let body = body.replace('|', "\x01");
        let head = format!("8=FIX.4.4\x019={}\x01", body.len());
        let sum: u32 = head.bytes().chain(body.bytes()).map(u32::from).sum();
        format!("{head}{body}10={:03}\x01", sum % 256).into_bytes()
    }

    fn decode_all(d: &mut Decoder) -> Vec<Result<Decoded, Garbled>> {
        std::iter::from_fn(|| d.next_frame()).collect()
    }

    #[test]
    fn decodes_a_hand_written_message() {
        let mut d = Decoder::new(4096);
        d.extend(&hand_frame("35=0|49=A|56=B|34=7|52=20240101-00:00:00|"));
        let out = decode_all(&mut d);
        let [Ok(Decoded::Message(m))] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(m.msg_type(), b"0");
        assert_eq!(m.get_u64(tags::MSG_SEQ_NUM), Ok(Some(7)));
        assert_eq!(m.get_str(49), Some("A"));
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn builder_output_matches_a_hand_written_frame() {
        let mut b = MessageBuilder::new(b"D");
        b.str_field(11, "ord-1").u64_field(38, 100);
        assert_eq!(b.finish("FIX.4.4"), hand_frame("35=D|11=ord-1|38=100|"));
    }

    #[test]
    fn wrong_checksum_is_garbled_and_the_next_message_survives() {
        let mut bad = hand_frame("35=0|34=1|");
        let n = bad.len();
        bad[n - 2] = if bad[n - 2] == b'9' { b'8' } else { b'9' };
        let mut d = Decoder::new(4096);
        d.extend(&bad);
        d.extend(&hand_frame("35=0|34=2|"));
        let out = decode_all(&mut d);
        assert!(
            matches!(out[0], Err(Garbled::BadChecksum { .. })),
            "{out:?}"
        );
        let Ok(Decoded::Message(m)) = &out[1] else {
            panic!("{out:?}")
        };
        assert_eq!(m.get_u64(34), Ok(Some(2)));
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn body_length_too_long_swallows_nothing_after_resync() {
        // Claims 60 bytes: the decoder waits, then finds no trailer at the claimed end.
        let mut bad = hand_frame("35=0|34=1|");
        let s = String::from_utf8(bad.clone())
            .unwrap()
            .replacen("9=10", "9=60", 1);
        bad = s.into_bytes();
        let mut d = Decoder::new(4096);
        d.extend(&bad);
        assert!(d.next_frame().is_none(), "waits for the claimed length");
        d.extend(&hand_frame("35=0|34=2|"));
        d.extend(&hand_frame("35=0|34=3|"));
        let out = decode_all(&mut d);
        assert!(matches!(out[0], Err(Garbled::BadTrailer)), "{out:?}");
        let seqs: Vec<u64> = out[1..]
            .iter()
            .map(|r| match r {
                Ok(Decoded::Message(m)) => m.get_u64(34).unwrap().unwrap(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(seqs, [2, 3]);
    }

    #[test]
    fn msg_type_not_third_is_garbled() {
        let mut d = Decoder::new(4096);
        d.extend(&hand_frame("34=1|35=0|"));
        assert_eq!(d.next_frame(), Some(Err(Garbled::MsgTypeNotThird)));
    }

    #[test]
    fn oversized_message_is_garbled_without_waiting_for_it() {
        let mut d = Decoder::new(100);
        d.extend(b"8=FIX.4.4\x019=5000\x0135=D\x01");
        assert_eq!(d.next_frame(), Some(Err(Garbled::TooLong(5000 + 7 + 17))));
    }

    #[test]
    fn field_defects_are_malformed_with_the_seq_num() {
        for (body, reason, tag) in [
            (
                "35=D|34=5|58=|",
                RejectReason::TagSpecifiedWithoutValue,
                Some(58),
            ),
            ("35=D|34=5|x1=2|", RejectReason::InvalidTagNumber, None),
            ("35=D|34=5|0=2|", RejectReason::InvalidTagNumber, None),
            (
                "35=D|34=5|34=6|",
                RejectReason::TagAppearsMoreThanOnce,
                Some(34),
            ),
            (
                "35=D|34=5|11=a|49=X|",
                RejectReason::TagSpecifiedOutOfRequiredOrder,
                Some(49),
            ),
            (
                "35=D|34=5|95=x|96=a|",
                RejectReason::IncorrectDataFormat,
                Some(95),
            ),
            (
                "35=D|34=5|95=9|96=ab|",
                RejectReason::IncorrectDataFormat,
                Some(96),
            ),
        ] {
            let mut d = Decoder::new(4096);
            d.extend(&hand_frame(body));
            match d.next_frame() {
                Some(Ok(Decoded::Malformed(m))) => {
                    assert_eq!(m.defect, Defect { reason, tag }, "{body}");
                    assert_eq!(m.seq_num, Some(5), "{body}");
                    assert_eq!(m.msg_type, b"D");
                }
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn data_fields_may_contain_soh() {
        let mut d = Decoder::new(4096);
        d.extend(&hand_frame("35=D|34=5|95=3|96=a|b|58=t|"));
        let Some(Ok(Decoded::Message(m))) = d.next_frame() else {
            panic!()
        };
        assert_eq!(m.get(96), Some(&b"a\x01b"[..]));
        assert_eq!(m.get_str(58), Some("t"));
    }

    #[test]
    fn byte_by_byte_arrival_decodes_the_same() {
        let frames = [hand_frame("35=A|34=1|108=30|"), hand_frame("35=0|34=2|")];
        let all: Vec<u8> = frames.concat();
        let mut d = Decoder::new(4096);
        let mut got = Vec::new();
        for b in all {
            d.extend(&[b]);
            while let Some(r) = d.next_frame() {
                got.push(r);
            }
        }
        assert_eq!(got.len(), 2);
        assert!(got.iter().all(|r| matches!(r, Ok(Decoded::Message(_)))));
    }

    #[test]
    fn garbage_before_a_message_is_reported_then_skipped() {
        let mut d = Decoder::new(4096);
        d.extend(b"hello world");
        d.extend(&hand_frame("35=0|34=9|"));
        let out = decode_all(&mut d);
        assert_eq!(out[0], Err(Garbled::BadBeginString));
        assert!(matches!(&out[1], Ok(Decoded::Message(m)) if m.get_u64(34) == Ok(Some(9))));
    }

    fn arb_value() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(any::<u8>().prop_filter("no SOH", |b| *b != SOH), 1..12)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Arbitrary bytes, in arbitrary chunks, never panic and never loop.
        #[test]
        fn never_panics_on_random_bytes(
            bytes in prop::collection::vec(any::<u8>(), 0..600),
            cut in 1usize..64,
        ) {
            let mut d = Decoder::new(256);
            for chunk in bytes.chunks(cut) {
                d.extend(chunk);
                let mut n = 0;
                while d.next_frame().is_some() {
                    n += 1;
                    prop_assert!(n <= bytes.len() + 1);
                }
            }
            prop_assert!(d.buffered() <= bytes.len());
        }

        /// Valid frames mixed with corrupted copies: every valid frame after a corrupted one is
        /// still decoded, field for field.
        #[test]
        fn valid_frames_survive_corrupted_neighbours(
            bodies in prop::collection::vec(prop::collection::vec((1u32..2000, arb_value()), 0..6), 1..8),
            corrupt in prop::collection::vec((any::<bool>(), any::<prop::sample::Index>(), any::<u8>()), 8),
        ) {
            let mut d = Decoder::new(4096);
            let mut expected = Vec::new();
            for (i, fields) in bodies.iter().enumerate() {
                let mut b = MessageBuilder::new(b"D");
                b.u64_field(34, i as u64 + 1);
                for (tag, value) in fields {
                    // Keep data-length tags and header tags out of the random fields.
                    if tags::data_field_for_length(*tag + 10_000).is_none() {
                        b.field(*tag + 10_000, value);
                    }
                }
                let frame = b.finish("FIX.4.4");
                let (flip, at, byte) = &corrupt[i];
                if *flip {
                    let mut bad = frame.clone();
                    let k = at.index(bad.len());
                    if bad[k] != *byte {
                        bad[k] = *byte;
                        d.extend(&bad);
                    }
                }
                d.extend(&frame);
                expected.push(frame);
            }
            // A corrupted BodyLength may claim more bytes than were sent: the decoder waits for
            // them (as it must on a stream), so later traffic is what exposes the bad frame.
            let filler = MessageBuilder::new(b"0").finish("FIX.4.4");
            for _ in 0..(4096 / filler.len() + 2) {
                d.extend(&filler);
            }
            let got: Vec<Vec<u8>> = std::iter::from_fn(|| d.next_frame())
                .filter_map(|r| match r {
                    Ok(Decoded::Message(m)) => Some(m.into_bytes()),
                    _ => None,
                })
                .collect();
            // A corrupted copy can at most turn into a Malformed or Garbled result; every
            // clean frame arrives, in order (a corrupted copy never swallows its successor).
            let mut it = got.iter();
            for e in &expected {
                prop_assert!(it.any(|g| g == e), "lost frame {}", display_raw(e));
            }
        }

        /// Builder output parses back to the same fields.
        #[test]
        fn builder_round_trips(fields in prop::collection::vec((1u32..100_000, arb_value()), 0..20)) {
            let mut b = MessageBuilder::new(b"8");
            let mut want = vec![(tags::MSG_TYPE, b"8".to_vec())];
            for (tag, value) in &fields {
                if tags::is_header_or_trailer(*tag) || tags::data_field_for_length(*tag).is_some()
                    || tags::is_data_field(*tag) {
                    continue;
                }
                b.field(*tag, value);
                want.push((*tag, value.clone()));
            }
            let frame = b.finish("FIX.4.4");
            let Ok(Decoded::Message(m)) = Message::parse(frame) else { panic!() };
            let got: Vec<(u32, Vec<u8>)> = m.fields().filter(|(t, _)| *t != 8 && *t != 9 && *t != 10)
                .map(|(t, v)| (t, v.to_vec())).collect();
            prop_assert_eq!(got, want);
        }
    }
}
