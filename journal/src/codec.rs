//! Record framing (length + payload + CRC32) and the delta-encoded payloads of every record
//! type. The byte layout is documented in the crate doc; this file is its single implementation.
//!
//! Encoders never change the [`DeltaState`]; the writer applies a record with the same `apply_*`
//! calls the decoder makes after decoding it, so both sides evolve identical copies.

use matching::{
    Aggressor, AmendOrder, BrokerId, CancelOrder, Command, Fill, NewOrder, OrderId, OrderType,
    Phase, RejectReason, SecurityId, Side, Timestamp,
};
use rustc_hash::FxHashMap;

use crate::records::{Entry, TapeFill};
use crate::varint::{
    put_scaled, put_scaled_signed, put_uint, scale_code, zigzag, Reader, PRICE_SCALES, QTY_SCALES,
    TIME_SCALES,
};

/// Largest payload a writer produces or a reader accepts; anything longer is damage.
pub(crate) const MAX_PAYLOAD: usize = 1024;
/// Longest broker name the dictionary stores (UTF-8 bytes).
pub const MAX_BROKER_NAME: usize = 256;
/// Longest rules preset name a META record stores (bytes).
pub const MAX_RULES_NAME: usize = 32;
/// The format version in segment headers and META records.
pub const FORMAT_VERSION: u8 = 2;

const TAG_DICT: u8 = 0x00;
const TAG_META: u8 = 0x02;
const TAG_CANCEL: u8 = 0x04;
const TAG_AMEND: u8 = 0x06;
const TAG_PHASE: u8 = 0x08;
const TAG_GAP: u8 = 0x0A;
const TAG_REJECTED: u8 = 0x0C;
/// Low bit set: NEW in the journal, FILL on the tape.
const TAG_NEW_OR_FILL: u8 = 0x01;

/// What a segment's META record says: the format, the listing and rules the log was written
/// with, and (tape only) the highest seq of any fill in earlier segments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    pub version: u8,
    /// [`crate::listing_fingerprint`] of the listing.
    pub fingerprint: u64,
    /// The market rules preset name (`MarketRules::name`).
    pub rules: String,
    /// Tape: the highest seq of any fill in the segments before this one (0 if none), which
    /// lets a reader skip whole segments. Journal: 0.
    pub prior_max_seq: u64,
}

/// Per-broker delta references of one segment.
#[derive(Clone, Copy, Default, Debug)]
struct BrokerRefs {
    /// Last order id of a NEW or rejected NEW (journal) or of a fill side (tape).
    last_id: u64,
    /// Last client reference (journal).
    last_ref: u64,
}

/// Delta references and the broker dictionary. Reset at every segment start, so each segment
/// decodes alone.
#[derive(Default, Debug)]
pub(crate) struct DeltaState {
    has_meta: bool,
    prev_time: Timestamp,
    refs: FxHashMap<u32, BrokerRefs>,
    /// Brokers whose dictionary record is already in this segment (journal).
    names: FxHashMap<u32, String>,
    /// Last non-zero price per security.
    last_price: FxHashMap<u32, i64>,
    /// Tape: the previous fill's seq, security and index, when there is one in this segment.
    prev_fill: Option<(u64, u32, u32)>,
}

impl DeltaState {
    pub(crate) fn reset(&mut self) {
        self.has_meta = false;
        self.prev_time = 0;
        self.refs.clear();
        self.names.clear();
        self.last_price.clear();
        self.prev_fill = None;
    }

    pub(crate) fn knows_broker(&self, broker: BrokerId) -> bool {
        self.names.contains_key(&broker.0)
    }

    fn last_price(&self, security: SecurityId) -> i64 {
        self.last_price.get(&security.0).copied().unwrap_or(0)
    }

    fn refs(&self, broker: BrokerId) -> BrokerRefs {
        self.refs.get(&broker.0).copied().unwrap_or_default()
    }

    pub(crate) fn apply_meta(&mut self) {
        self.has_meta = true;
    }

    pub(crate) fn apply_dict(&mut self, broker: BrokerId, name: &str) {
        self.names
            .entry(broker.0)
            .or_insert_with(|| name.to_owned());
    }

    fn apply_price(&mut self, security: SecurityId, price: i64) {
        if price != 0 {
            self.last_price.insert(security.0, price);
        }
    }

    /// A broker's command (or rejected NEW): its client ref, and the id when it names a new
    /// order.
    fn apply_broker(&mut self, broker: BrokerId, client_ref: u64, new_id: Option<OrderId>) {
        let r = self.refs.entry(broker.0).or_default();
        r.last_ref = client_ref;
        if let Some(id) = new_id {
            r.last_id = id.0;
        }
    }

    /// Updates the state as if the sequenced record had been encoded.
    pub(crate) fn apply_record(&mut self, time: Timestamp, client_ref: u64, entry: &Entry) {
        self.prev_time = time;
        match entry {
            Entry::Command(Command::New(o)) => {
                self.apply_broker(o.broker, client_ref, Some(o.id));
                self.apply_price(o.security, o.price);
            }
            Entry::Command(Command::Cancel(c)) => self.apply_broker(c.broker, client_ref, None),
            Entry::Command(Command::Amend(a)) => {
                self.apply_broker(a.broker, client_ref, None);
                self.apply_price(a.security, a.price);
            }
            Entry::Command(Command::Phase(_)) | Entry::Gap { .. } => {}
        }
    }

    pub(crate) fn apply_rejected(&mut self, time: Timestamp, client_ref: u64, order: &NewOrder) {
        self.prev_time = time;
        self.apply_broker(order.broker, client_ref, Some(order.id));
    }

    pub(crate) fn apply_fill(&mut self, f: &TapeFill) {
        self.prev_time = f.time;
        self.prev_fill = Some((f.seq, f.fill.security.0, f.fill_index));
        self.last_price.insert(f.fill.security.0, f.fill.price);
        self.refs.entry(f.fill.buy_broker.0).or_default().last_id = f.fill.buy.0;
        self.refs.entry(f.fill.sell_broker.0).or_default().last_id = f.fill.sell.0;
    }
}

/// Appends one framed record: stop-bit length of the payload, the payload, then CRC32 (LE) of
/// the length bytes and the payload.
pub(crate) fn frame(out: &mut Vec<u8>, payload: &[u8]) {
    let start = out.len();
    put_uint(out, payload.len() as u128);
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// Parses the framed record starting at `pos`: returns the payload range and the position after
/// the record, or why the bytes there are not a whole, intact record.
pub(crate) fn parse_frame(data: &[u8], pos: usize) -> Result<(usize, usize, usize), String> {
    let mut r = Reader::new(data.get(pos..).unwrap_or_default());
    let len = match r.uint(3) {
        Ok(len) => len as usize,
        Err(e) if r.is_empty() => {
            return Err(format!("length prefix runs past end of segment ({e})"))
        }
        Err(e) => return Err(format!("bad length prefix: {e}")),
    };
    if len == 0 || len > MAX_PAYLOAD {
        return Err(format!(
            "record length {len} out of range 1..={MAX_PAYLOAD}"
        ));
    }
    let body = pos + r.pos();
    let end = body + len + 4;
    if end > data.len() {
        return Err(format!(
            "record of {len} payload bytes runs past end of segment ({} bytes left)",
            data.len() - pos
        ));
    }
    let stored = u32::from_le_bytes([data[end - 4], data[end - 3], data[end - 2], data[end - 1]]);
    let computed = crc32fast::hash(&data[pos..end - 4]);
    if stored != computed {
        return Err(format!(
            "checksum mismatch (stored {stored:08x}, computed {computed:08x})"
        ));
    }
    Ok((body, body + len, end))
}

fn side_bit(side: Side) -> u8 {
    match side {
        Side::Buy => 0,
        Side::Sell => 1,
    }
}

fn side_of(bit: u8) -> Side {
    if bit == 0 {
        Side::Buy
    } else {
        Side::Sell
    }
}

fn kind_code(kind: OrderType) -> u8 {
    OrderType::ALL
        .iter()
        .position(|k| *k == kind)
        .unwrap_or_default() as u8
}

fn kind_of(code: u8) -> Result<OrderType, String> {
    OrderType::ALL
        .get(usize::from(code))
        .copied()
        .ok_or_else(|| format!("unknown order type code {code}"))
}

/// The low four bits of a finished-order or book-image record's flags: bit 0 the side (0 BUY,
/// 1 SELL), bits 1-3 the type's index in `OrderType::ALL`.
pub(crate) fn side_kind_bits(side: Side, kind: OrderType) -> u8 {
    side_bit(side) | kind_code(kind) << 1
}

/// The side and type [`side_kind_bits`] put in `flags`.
pub(crate) fn side_kind_of(flags: u8) -> Result<(Side, OrderType), String> {
    Ok((side_of(flags & 1), kind_of(flags >> 1 & 7)?))
}

fn phase_code(phase: Phase) -> u8 {
    Phase::ALL
        .iter()
        .position(|p| *p == phase)
        .unwrap_or_default() as u8
}

fn aggressor_code(a: Aggressor) -> u8 {
    match a {
        Aggressor::Buy => 0,
        Aggressor::Sell => 1,
        Aggressor::Auction => 2,
    }
}

fn reason_code(r: RejectReason) -> u8 {
    RejectReason::ALL
        .iter()
        .position(|x| *x == r)
        .unwrap_or_default() as u8
}

fn delta(value: u64, reference: u64) -> u128 {
    zigzag(i128::from(value) - i128::from(reference))
}

/// Appends a DICT record.
pub(crate) fn encode_dict(broker: BrokerId, name: &str, payload: &mut Vec<u8>, out: &mut Vec<u8>) {
    payload.clear();
    payload.push(TAG_DICT);
    put_uint(payload, broker.0.into());
    put_uint(payload, name.len() as u128);
    payload.extend_from_slice(name.as_bytes());
    frame(out, payload);
}

/// Appends a META record.
pub(crate) fn encode_meta(meta: &Meta, payload: &mut Vec<u8>, out: &mut Vec<u8>) {
    payload.clear();
    payload.push(TAG_META);
    put_uint(payload, meta.version.into());
    payload.extend_from_slice(&meta.fingerprint.to_le_bytes());
    put_uint(payload, meta.rules.len() as u128);
    payload.extend_from_slice(meta.rules.as_bytes());
    put_uint(payload, meta.prior_max_seq.into());
    frame(out, payload);
}

fn put_time(state: &DeltaState, time: Timestamp, payload: &mut Vec<u8>) {
    put_scaled_signed(
        payload,
        i128::from(time) - i128::from(state.prev_time),
        &TIME_SCALES,
    );
}

/// Broker, its client reference and an order id, each against the broker's own references
/// (for CANCEL and AMEND the id is the order they name, against the broker's last NEW).
fn put_broker_ref_id(
    state: &DeltaState,
    broker: BrokerId,
    client_ref: u64,
    id: OrderId,
    payload: &mut Vec<u8>,
) {
    let refs = state.refs(broker);
    put_uint(payload, broker.0.into());
    put_uint(payload, delta(client_ref, refs.last_ref));
    put_uint(payload, delta(id.0, refs.last_id));
}

/// A price against the security's last price, as the scale code (returned, it rides in the
/// tag) and the scaled delta (appended to `tail`).
fn price_delta(state: &DeltaState, security: SecurityId, price: i64) -> (u8, u128) {
    let d = i128::from(price) - i128::from(state.last_price(security));
    let pc = scale_code(d.unsigned_abs(), &PRICE_SCALES);
    (pc as u8, zigzag(d / PRICE_SCALES[pc] as i128))
}

/// Encodes one sequenced record (its seq is implicit). Does not change `state`; the caller
/// writes the broker's DICT record first when `state` does not know the broker yet.
pub(crate) fn encode_record(
    state: &DeltaState,
    time: Timestamp,
    client_ref: u64,
    entry: &Entry,
    payload: &mut Vec<u8>,
    out: &mut Vec<u8>,
) {
    payload.clear();
    match entry {
        Entry::Command(Command::New(o)) => {
            let omit_price = o.price == 0;
            let (pc, price) = if omit_price {
                (0, 0)
            } else {
                price_delta(state, o.security, o.price)
            };
            payload.push(
                TAG_NEW_OR_FILL
                    | side_bit(o.side) << 1
                    | kind_code(o.kind) << 2
                    | u8::from(omit_price) << 5
                    | pc << 6,
            );
            put_time(state, time, payload);
            put_broker_ref_id(state, o.broker, client_ref, o.id, payload);
            put_uint(payload, o.security.0.into());
            if !omit_price {
                put_uint(payload, price);
            }
            put_scaled(payload, o.qty.into(), &QTY_SCALES);
        }
        Entry::Command(Command::Cancel(c)) => {
            payload.push(TAG_CANCEL);
            put_time(state, time, payload);
            put_broker_ref_id(state, c.broker, client_ref, c.id, payload);
            put_uint(payload, c.security.0.into());
        }
        Entry::Command(Command::Amend(a)) => {
            let (pc, price) = price_delta(state, a.security, a.price);
            payload.push(TAG_AMEND | pc << 4);
            put_time(state, time, payload);
            put_broker_ref_id(state, a.broker, client_ref, a.id, payload);
            put_uint(payload, a.security.0.into());
            put_uint(payload, price);
            put_scaled(payload, a.qty.into(), &QTY_SCALES);
        }
        Entry::Command(Command::Phase(p)) => {
            payload.push(TAG_PHASE | phase_code(*p) << 4);
            put_time(state, time, payload);
            put_uint(payload, client_ref.into());
        }
        Entry::Gap { count } => {
            payload.push(TAG_GAP);
            put_time(state, time, payload);
            put_uint(payload, client_ref.into());
            put_uint(payload, (*count).into());
        }
    }
    frame(out, payload);
}

/// Encodes a rejected NEW. Does not change `state`.
pub(crate) fn encode_rejected(
    state: &DeltaState,
    time: Timestamp,
    client_ref: u64,
    order: &NewOrder,
    reason: RejectReason,
    payload: &mut Vec<u8>,
    out: &mut Vec<u8>,
) {
    payload.clear();
    payload.push(TAG_REJECTED);
    put_time(state, time, payload);
    put_broker_ref_id(state, order.broker, client_ref, order.id, payload);
    put_uint(payload, order.security.0.into());
    payload.push(side_bit(order.side) << 3 | kind_code(order.kind));
    put_uint(payload, zigzag(order.price.into()));
    put_uint(payload, order.qty.into());
    put_uint(payload, reason_code(reason).into());
    frame(out, payload);
}

/// Encodes one fill. Does not change `state`.
pub(crate) fn encode_fill(
    state: &DeltaState,
    f: &TapeFill,
    payload: &mut Vec<u8>,
    out: &mut Vec<u8>,
) {
    payload.clear();
    let fill = &f.fill;
    // The common case (next fill of the same command in the same book) drops seq, time,
    // security and index.
    let follows = state.prev_fill.is_some_and(|(seq, sec, idx)| {
        seq == f.seq
            && sec == fill.security.0
            && idx.checked_add(1) == Some(f.fill_index)
            && state.prev_time == f.time
    });
    let (pc, price) = {
        let d = i128::from(fill.price) - i128::from(state.last_price(fill.security));
        let pc = scale_code(d.unsigned_abs(), &PRICE_SCALES);
        (pc as u8, zigzag(d / PRICE_SCALES[pc] as i128))
    };
    let qc = scale_code(fill.qty.into(), &QTY_SCALES);
    payload.push(
        TAG_NEW_OR_FILL
            | aggressor_code(fill.aggressor) << 1
            | u8::from(follows) << 3
            | pc << 4
            | (qc as u8) << 6,
    );
    if !follows {
        let prev_seq = state.prev_fill.map_or(0, |(s, _, _)| s);
        put_uint(payload, delta(f.seq, prev_seq));
        put_time(state, f.time, payload);
        put_uint(payload, fill.security.0.into());
        put_uint(payload, f.fill_index.into());
    }
    put_uint(payload, price);
    put_uint(payload, u128::from(fill.qty) / QTY_SCALES[qc]);
    let (buy_ref, sell_ref) = (
        state.refs(fill.buy_broker).last_id,
        state.refs(fill.sell_broker).last_id,
    );
    put_uint(payload, fill.buy_broker.0.into());
    put_uint(payload, delta(fill.buy.0, buy_ref));
    put_uint(payload, fill.sell_broker.0.into());
    put_uint(payload, delta(fill.sell.0, sell_ref));
    frame(out, payload);
}

/// One decoded record; seqs are assigned by the caller from the segment's numbering.
#[derive(Debug, PartialEq)]
pub(crate) enum Decoded {
    Dict(BrokerId, String),
    Meta(Meta),
    Record {
        time: Timestamp,
        client_ref: u64,
        entry: Entry,
    },
    Rejected {
        time: Timestamp,
        client_ref: u64,
        order: NewOrder,
        reason: RejectReason,
    },
    Fill(TapeFill),
}

/// Which log a payload comes from: the low tag bit means NEW in one and FILL in the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Log {
    Journal,
    Tape,
}

fn apply_delta_u64(base: u64, delta: i128, what: &str) -> Result<u64, String> {
    u64::try_from(i128::from(base) + delta).map_err(|_| format!("{what} out of range"))
}

fn apply_delta_i64(base: i64, delta: i128, what: &str) -> Result<i64, String> {
    i64::try_from(i128::from(base) + delta).map_err(|_| format!("{what} out of range"))
}

fn exact_tag(tag: u8, expected: u8) -> Result<(), String> {
    if tag == expected {
        Ok(())
    } else {
        Err(format!("reserved bits set in tag {tag:#04x}"))
    }
}

fn read_time(state: &DeltaState, r: &mut Reader<'_>) -> Result<Timestamp, String> {
    apply_delta_i64(state.prev_time, r.scaled_signed(&TIME_SCALES)?, "time")
}

/// Broker (which must have its DICT record in this segment), client ref and an order id
/// against that broker's references.
fn read_broker_ref_id(
    state: &DeltaState,
    r: &mut Reader<'_>,
) -> Result<(BrokerId, u64, OrderId), String> {
    let broker = BrokerId(r.u32()?);
    if !state.knows_broker(broker) {
        return Err(format!(
            "broker {} used before its dictionary record in this segment",
            broker.0
        ));
    }
    let refs = state.refs(broker);
    let client_ref = apply_delta_u64(refs.last_ref, r.signed()?, "client ref")?;
    let id = apply_delta_u64(refs.last_id, r.signed()?, "order id")?;
    Ok((broker, client_ref, OrderId(id)))
}

fn read_price(
    state: &DeltaState,
    r: &mut Reader<'_>,
    security: SecurityId,
    pc: u8,
) -> Result<i64, String> {
    apply_delta_i64(
        state.last_price(security),
        r.signed_times(PRICE_SCALES[usize::from(pc)])?,
        "price",
    )
}

fn read_qty(r: &mut Reader<'_>) -> Result<u64, String> {
    u64::try_from(r.scaled(&QTY_SCALES)?).map_err(|_| "qty out of range".to_string())
}

fn decode_meta(r: &mut Reader<'_>) -> Result<Meta, String> {
    let version = r.u32()?;
    if version != u32::from(FORMAT_VERSION) {
        return Err(format!(
            "META says format version {version}, expected {FORMAT_VERSION}"
        ));
    }
    let mut fp = [0u8; 8];
    fp.copy_from_slice(r.bytes(8)?);
    let len = r.u64()?;
    if len > MAX_RULES_NAME as u64 {
        return Err(format!("rules name of {len} bytes is too long"));
    }
    let rules = std::str::from_utf8(r.bytes(len as usize)?)
        .map_err(|_| "rules name is not UTF-8".to_string())?
        .to_owned();
    let prior_max_seq = r.u64()?;
    Ok(Meta {
        version: FORMAT_VERSION,
        fingerprint: u64::from_le_bytes(fp),
        rules,
        prior_max_seq,
    })
}

fn decode_dict(state: &DeltaState, r: &mut Reader<'_>) -> Result<Decoded, String> {
    let id = r.u32()?;
    let len = r.u64()?;
    if len > MAX_BROKER_NAME as u64 {
        return Err(format!("broker name of {len} bytes is too long"));
    }
    let name = std::str::from_utf8(r.bytes(len as usize)?)
        .map_err(|_| "broker name is not UTF-8".to_string())?
        .to_owned();
    if let Some(old) = state.names.get(&id) {
        return Err(format!(
            "second dictionary record for broker {id} in this segment ({old:?}, then {name:?})"
        ));
    }
    Ok(Decoded::Dict(BrokerId(id), name))
}

fn decode_journal(state: &DeltaState, tag: u8, r: &mut Reader<'_>) -> Result<Decoded, String> {
    if tag & TAG_NEW_OR_FILL != 0 {
        let side = side_of(tag >> 1 & 1);
        let kind = kind_of(tag >> 2 & 7)?;
        let omit_price = tag & 0x20 != 0;
        let pc = tag >> 6;
        if omit_price && pc != 0 {
            return Err(format!("reserved bits set in tag {tag:#04x}"));
        }
        let time = read_time(state, r)?;
        let (broker, client_ref, id) = read_broker_ref_id(state, r)?;
        let security = SecurityId(r.u32()?);
        let price = if omit_price {
            0
        } else {
            let p = read_price(state, r, security, pc)?;
            if p == 0 {
                return Err("zero price written without the omitted-price flag".into());
            }
            p
        };
        let qty = read_qty(r)?;
        let order = NewOrder {
            id,
            broker,
            security,
            side,
            kind,
            price,
            qty,
        };
        return Ok(Decoded::Record {
            time,
            client_ref,
            entry: Entry::Command(Command::New(order)),
        });
    }
    match tag & 0x0f {
        TAG_DICT => {
            exact_tag(tag, TAG_DICT)?;
            decode_dict(state, r)
        }
        TAG_CANCEL | TAG_AMEND => {
            let is_amend = tag & 0x0f == TAG_AMEND;
            let pc = tag >> 4;
            if (is_amend && pc > 3) || (!is_amend && pc != 0) {
                return Err(format!("reserved bits set in tag {tag:#04x}"));
            }
            let time = read_time(state, r)?;
            let (broker, client_ref, id) = read_broker_ref_id(state, r)?;
            let security = SecurityId(r.u32()?);
            let command = if is_amend {
                let price = read_price(state, r, security, pc)?;
                let qty = read_qty(r)?;
                Command::Amend(AmendOrder {
                    id,
                    broker,
                    security,
                    price,
                    qty,
                })
            } else {
                Command::Cancel(CancelOrder {
                    id,
                    broker,
                    security,
                })
            };
            Ok(Decoded::Record {
                time,
                client_ref,
                entry: Entry::Command(command),
            })
        }
        TAG_PHASE => {
            let code = tag >> 4;
            let phase = Phase::ALL
                .get(usize::from(code))
                .copied()
                .ok_or_else(|| format!("unknown phase code {code}"))?;
            let time = read_time(state, r)?;
            let client_ref = r.u64()?;
            Ok(Decoded::Record {
                time,
                client_ref,
                entry: Entry::Command(Command::Phase(phase)),
            })
        }
        TAG_GAP => {
            exact_tag(tag, TAG_GAP)?;
            let time = read_time(state, r)?;
            let client_ref = r.u64()?;
            let count = r.u64()?;
            if count == 0 {
                return Err("gap of 0 seqs".into());
            }
            Ok(Decoded::Record {
                time,
                client_ref,
                entry: Entry::Gap { count },
            })
        }
        TAG_REJECTED => {
            exact_tag(tag, TAG_REJECTED)?;
            let time = read_time(state, r)?;
            let (broker, client_ref, id) = read_broker_ref_id(state, r)?;
            let security = SecurityId(r.u32()?);
            let sk = r.byte()?;
            if sk & !0x0f != 0 {
                return Err(format!("reserved bits set in side/type byte {sk:#04x}"));
            }
            let kind = kind_of(sk & 7)?;
            let price = i64::try_from(r.signed()?).map_err(|_| "price out of range")?;
            let qty = r.u64()?;
            let code = r.u32()?;
            let reason = RejectReason::ALL
                .get(code as usize)
                .copied()
                .ok_or_else(|| format!("unknown reject reason code {code}"))?;
            Ok(Decoded::Rejected {
                time,
                client_ref,
                order: NewOrder {
                    id,
                    broker,
                    security,
                    side: side_of(sk >> 3 & 1),
                    kind,
                    price,
                    qty,
                },
                reason,
            })
        }
        _ => Err(format!(
            "unknown record tag {tag:#04x} in the order journal"
        )),
    }
}

fn decode_fill(state: &DeltaState, tag: u8, r: &mut Reader<'_>) -> Result<Decoded, String> {
    let aggressor = match tag >> 1 & 3 {
        0 => Aggressor::Buy,
        1 => Aggressor::Sell,
        2 => Aggressor::Auction,
        _ => return Err(format!("unknown aggressor code in tag {tag:#04x}")),
    };
    let follows = tag & 0x08 != 0;
    let pc = tag >> 4 & 3;
    let qc = usize::from(tag >> 6);
    let (seq, time, security, fill_index) = if follows {
        let (seq, sec, idx) = state
            .prev_fill
            .ok_or("continuation fill without a previous fill in the segment")?;
        let idx = idx.checked_add(1).ok_or("fill index overflows")?;
        (seq, state.prev_time, SecurityId(sec), idx)
    } else {
        let prev_seq = state.prev_fill.map_or(0, |(s, _, _)| s);
        let seq = apply_delta_u64(prev_seq, r.signed()?, "seq")?;
        let time = read_time(state, r)?;
        (seq, time, SecurityId(r.u32()?), r.u32()?)
    };
    let price = read_price(state, r, security, pc)?;
    let qty = r
        .uint(10)?
        .checked_mul(QTY_SCALES[qc])
        .and_then(|q| u64::try_from(q).ok())
        .ok_or("qty out of range")?;
    let buy_broker = BrokerId(r.u32()?);
    let buy = apply_delta_u64(state.refs(buy_broker).last_id, r.signed()?, "buy order id")?;
    let sell_broker = BrokerId(r.u32()?);
    let sell = apply_delta_u64(
        state.refs(sell_broker).last_id,
        r.signed()?,
        "sell order id",
    )?;
    Ok(Decoded::Fill(TapeFill {
        seq,
        time,
        fill_index,
        fill: Fill {
            security,
            price,
            qty,
            buy: OrderId(buy),
            sell: OrderId(sell),
            buy_broker,
            sell_broker,
            aggressor,
        },
    }))
}

/// Decodes one payload of `log` and advances `state` exactly as the writer did. The first
/// record of a segment must be its META, and only the first.
pub(crate) fn decode(state: &mut DeltaState, log: Log, payload: &[u8]) -> Result<Decoded, String> {
    let mut r = Reader::new(payload);
    let tag = r.byte()?;
    let decoded = if tag == TAG_META {
        if state.has_meta {
            return Err("second META record in one segment".into());
        }
        Decoded::Meta(decode_meta(&mut r)?)
    } else if !state.has_meta {
        return Err("record before the segment's META record".into());
    } else {
        match log {
            Log::Journal => decode_journal(state, tag, &mut r)?,
            Log::Tape if tag & TAG_NEW_OR_FILL != 0 => decode_fill(state, tag, &mut r)?,
            Log::Tape => return Err(format!("unknown record tag {tag:#04x} on the trade tape")),
        }
    };
    if !r.is_empty() {
        return Err(format!(
            "{} unexpected trailing bytes",
            payload.len() - r.pos()
        ));
    }
    match &decoded {
        Decoded::Meta(_) => state.apply_meta(),
        Decoded::Dict(id, name) => state.apply_dict(*id, name),
        Decoded::Record {
            time,
            client_ref,
            entry,
        } => state.apply_record(*time, *client_ref, entry),
        Decoded::Rejected {
            time,
            client_ref,
            order,
            ..
        } => state.apply_rejected(*time, *client_ref, order),
        Decoded::Fill(f) => state.apply_fill(f),
    }
    Ok(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = 1_764_000_000_000_000_000;

    fn meta() -> Meta {
        Meta {
            version: FORMAT_VERSION,
            fingerprint: 0x0123_4567_89ab_cdef,
            rules: "hose".into(),
            prior_max_seq: 0,
        }
    }

    fn new(id: u64, broker: u32, sec: u32, price: i64, qty: u64, kind: OrderType) -> Command {
        Command::New(NewOrder {
            id: OrderId(id),
            broker: BrokerId(broker),
            security: SecurityId(sec),
            side: Side::Sell,
            kind,
            price,
            qty,
        })
    }

    /// A journal writer in miniature: META, then DICT before a broker's first record.
    struct Enc {
        st: DeltaState,
        payload: Vec<u8>,
        out: Vec<u8>,
    }

    impl Enc {
        fn new() -> Self {
            let mut e = Enc {
                st: DeltaState::default(),
                payload: Vec::new(),
                out: Vec::new(),
            };
            encode_meta(&meta(), &mut e.payload, &mut e.out);
            e.st.apply_meta();
            e
        }
        fn dict(&mut self, broker: Option<BrokerId>) {
            if let Some(b) = broker.filter(|b| !self.st.knows_broker(*b)) {
                let name = format!("B{}", b.0);
                encode_dict(b, &name, &mut self.payload, &mut self.out);
                self.st.apply_dict(b, &name);
            }
        }
        fn record(&mut self, time: Timestamp, client_ref: u64, entry: Entry) {
            if let Entry::Command(c) = entry {
                self.dict(c.broker());
            }
            encode_record(
                &self.st,
                time,
                client_ref,
                &entry,
                &mut self.payload,
                &mut self.out,
            );
            self.st.apply_record(time, client_ref, &entry);
        }
    }

    fn decode_all(log: Log, bytes: &[u8]) -> Vec<Decoded> {
        let mut st = DeltaState::default();
        let mut pos = 0;
        let mut out = Vec::new();
        while pos < bytes.len() {
            let (b, e, next) = parse_frame(bytes, pos).unwrap();
            out.push(decode(&mut st, log, &bytes[b..e]).unwrap());
            pos = next;
        }
        out
    }

    #[test]
    fn every_command_type_round_trips_with_extremes() {
        let mut entries: Vec<(Timestamp, u64, Entry)> = Vec::new();
        for (i, kind) in OrderType::ALL.into_iter().enumerate() {
            let price = if kind.is_priceless() { 0 } else { 25_000 };
            entries.push((
                T0 + i as i64,
                i as u64 + 1,
                Entry::Command(new(i as u64 + 1, 3, 0, price, 1_000, kind)),
            ));
        }
        for p in Phase::ALL {
            entries.push((T0 + 100, 0, Entry::Command(Command::Phase(p))));
        }
        entries.extend([
            (
                i64::MIN,
                u64::MAX,
                Entry::Command(new(
                    u64::MAX,
                    4,
                    u32::MAX,
                    i64::MIN,
                    u64::MAX,
                    OrderType::Fok,
                )),
            ),
            (
                i64::MAX,
                0,
                Entry::Command(new(0, 4, 1, i64::MAX, 1, OrderType::Limit)),
            ),
            (
                0,
                7,
                Entry::Command(Command::Cancel(CancelOrder {
                    id: OrderId(1),
                    broker: BrokerId(3),
                    security: SecurityId(0),
                })),
            ),
            (
                -5,
                u64::MAX,
                Entry::Command(Command::Amend(AmendOrder {
                    id: OrderId(u64::MAX),
                    broker: BrokerId(u32::MAX),
                    security: SecurityId(u32::MAX),
                    price: i64::MIN,
                    qty: u64::MAX,
                })),
            ),
            (
                T0,
                9,
                Entry::Command(Command::Amend(AmendOrder {
                    id: OrderId(2),
                    broker: BrokerId(3),
                    security: SecurityId(0),
                    price: 0,
                    qty: 0,
                })),
            ),
            (T0, 0, Entry::Gap { count: u64::MAX }),
            (T0, u64::MAX, Entry::Gap { count: 1 }),
        ]);
        let mut enc = Enc::new();
        for (t, r, e) in &entries {
            enc.record(*t, *r, *e);
        }
        let back: Vec<_> = decode_all(Log::Journal, &enc.out)
            .into_iter()
            .filter_map(|d| match d {
                Decoded::Record {
                    time,
                    client_ref,
                    entry,
                } => Some((time, client_ref, entry)),
                _ => None,
            })
            .collect();
        assert_eq!(back, entries);
    }

    #[test]
    fn rejected_new_round_trips() {
        let mut enc = Enc::new();
        let orders = [
            NewOrder {
                id: OrderId(5),
                broker: BrokerId(2),
                security: SecurityId::UNKNOWN,
                side: Side::Buy,
                kind: OrderType::Atc,
                price: -3,
                qty: 0,
            },
            NewOrder {
                id: OrderId(u64::MAX),
                broker: BrokerId(2),
                security: SecurityId(1),
                side: Side::Sell,
                kind: OrderType::Mtl,
                price: i64::MIN,
                qty: u64::MAX,
            },
        ];
        for (i, o) in orders.iter().enumerate() {
            enc.dict(Some(o.broker));
            let reason = RejectReason::ALL[i * 5];
            encode_rejected(
                &enc.st,
                T0,
                40 + i as u64,
                o,
                reason,
                &mut enc.payload,
                &mut enc.out,
            );
            enc.st.apply_rejected(T0, 40 + i as u64, o);
        }
        let back: Vec<_> = decode_all(Log::Journal, &enc.out)
            .into_iter()
            .filter_map(|d| match d {
                Decoded::Rejected {
                    order,
                    reason,
                    client_ref,
                    time,
                } => Some((order, reason, client_ref, time)),
                _ => None,
            })
            .collect();
        assert_eq!(
            back,
            vec![
                (orders[0], RejectReason::ALL[0], 40, T0),
                (orders[1], RejectReason::ALL[5], 41, T0),
            ]
        );
    }

    #[test]
    fn typical_records_are_compact() {
        let mut enc = Enc::new();
        enc.record(
            T0,
            1,
            Entry::Command(new(100, 1, 2, 25_000, 1_000, OrderType::Limit)),
        );
        let sizes: Vec<usize> = [
            // Next order of the same broker a few microseconds later.
            (
                T0 + 7_000,
                2,
                Entry::Command(new(101, 1, 2, 24_950, 500, OrderType::Limit)),
            ),
            // Same batch (same time stamp).
            (
                T0 + 7_000,
                3,
                Entry::Command(new(102, 1, 2, 0, 500, OrderType::Mtl)),
            ),
            (
                T0 + 9_000,
                4,
                Entry::Command(Command::Cancel(CancelOrder {
                    id: OrderId(101),
                    broker: BrokerId(1),
                    security: SecurityId(2),
                })),
            ),
            (
                T0 + 9_000,
                5,
                Entry::Command(Command::Amend(AmendOrder {
                    id: OrderId(100),
                    broker: BrokerId(1),
                    security: SecurityId(2),
                    price: 24_900,
                    qty: 500,
                })),
            ),
        ]
        .into_iter()
        .map(|(t, r, e)| {
            let before = enc.out.len();
            enc.record(t, r, e);
            enc.out.len() - before
        })
        .collect();
        // NEW: len 1 + tag 1 + time 1 + broker 1 + ref 1 + id 1 + security 1 + price 1 + qty 1 +
        // crc 4; without a price 12; CANCEL 11 (no price, no qty); AMEND 13.
        assert_eq!(sizes, vec![13, 12, 11, 13]);
    }

    #[test]
    fn fills_round_trip_including_auction_spans() {
        let f = |sec: u32, price, qty, buy, sell, aggressor| Fill {
            security: SecurityId(sec),
            price,
            qty,
            buy: OrderId(buy),
            sell: OrderId(sell),
            buy_broker: BrokerId(1),
            sell_broker: BrokerId(2),
            aggressor,
        };
        let big = Fill {
            security: SecurityId(u32::MAX),
            price: i64::MIN,
            qty: u64::MAX,
            buy: OrderId(u64::MAX),
            sell: OrderId(0),
            buy_broker: BrokerId(u32::MAX),
            sell_broker: BrokerId(u32::MAX),
            aggressor: Aggressor::Sell,
        };
        let tf = |seq, time, fill_index, fill| TapeFill {
            seq,
            time,
            fill_index,
            fill,
        };
        let fills = [
            tf(5, T0, 0, f(1, 10_000, 300, 9, 3, Aggressor::Buy)),
            tf(5, T0, 1, f(1, 10_010, 300, 9, 4, Aggressor::Buy)),
            // An auction: one PHASE seq, fills in many securities each from 0.
            tf(9, T0 + 1, 0, f(0, 9_990, 1000, 2, 11, Aggressor::Auction)),
            tf(9, T0 + 1, 1, f(0, 9_990, 100, 3, 11, Aggressor::Auction)),
            tf(9, T0 + 1, 0, f(1, 20_000, 100, 3, 12, Aggressor::Auction)),
            tf(3, T0 - 5, 2, f(1, 20_000, 100, 3, 12, Aggressor::Sell)),
            tf(u64::MAX, i64::MAX, u32::MAX, big),
            tf(
                u64::MAX,
                i64::MIN,
                u32::MAX,
                Fill {
                    price: i64::MAX,
                    qty: 10_000,
                    ..big
                },
            ),
        ];
        let mut st = DeltaState::default();
        let (mut payload, mut out) = (Vec::new(), Vec::new());
        encode_meta(&meta(), &mut payload, &mut out);
        st.apply_meta();
        let mut sizes = Vec::new();
        for x in &fills {
            let before = out.len();
            encode_fill(&st, x, &mut payload, &mut out);
            st.apply_fill(x);
            sizes.push(out.len() - before);
        }
        let back: Vec<_> = decode_all(Log::Tape, &out)
            .into_iter()
            .filter_map(|d| match d {
                Decoded::Fill(f) => Some(f),
                _ => None,
            })
            .collect();
        assert_eq!(back, fills);
        assert!(
            sizes[1] < sizes[0],
            "a continuation fill drops its seq, time, security, index: {sizes:?}"
        );
    }

    #[test]
    fn frame_damage_is_reported() {
        let mut out = Vec::new();
        frame(&mut out, b"hello");
        assert!(parse_frame(&out, 0).is_ok());
        let mut bad = out.clone();
        bad[3] ^= 1;
        assert!(parse_frame(&bad, 0).unwrap_err().contains("checksum"));
        assert!(parse_frame(&out[..out.len() - 1], 0)
            .unwrap_err()
            .contains("past end"));
        assert!(parse_frame(&[0, 0, 0, 0], 0).is_err());
        assert!(parse_frame(&out, out.len() + 5).is_err());
    }

    #[test]
    fn undecodable_payloads_are_errors_not_panics() {
        for log in [Log::Journal, Log::Tape] {
            let mut st = DeltaState::default();
            assert!(decode(&mut st, log, &[TAG_NEW_OR_FILL])
                .unwrap_err()
                .contains("META"));
            let mut m = Vec::new();
            let mut framed = Vec::new();
            encode_meta(&meta(), &mut m, &mut framed);
            decode(&mut st, log, &m).unwrap();
            assert!(decode(&mut st, log, &m)
                .unwrap_err()
                .contains("second META"));
            for p in [
                &[0xffu8][..],
                &[TAG_NEW_OR_FILL],
                &[TAG_CANCEL, 0x80, 0x81, 0x80],
                &[TAG_NEW_OR_FILL | 0x08],
                &[0, 0x81, 0x85, b'a'],
                &[TAG_PHASE | 0x50, 0x80, 0x80],
                &[TAG_GAP, 0x80, 0x80, 0x80],
                &[0x0E],
                &[TAG_NEW_OR_FILL | 0x06],
            ] {
                assert!(decode(&mut st, log, p).is_err(), "{log:?} {p:?}");
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// Any payload, after a META or not, decodes to a value or an error: never a panic.
        #[test]
        fn arbitrary_payloads_never_panic(
            payloads in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40), 1..6),
            meta_first in proptest::prelude::any::<bool>(),
        ) {
            for log in [Log::Journal, Log::Tape] {
                let mut st = DeltaState::default();
                if meta_first {
                    let (mut p, mut framed) = (Vec::new(), Vec::new());
                    encode_meta(&meta(), &mut p, &mut framed);
                    decode(&mut st, log, &p).unwrap();
                    encode_dict(BrokerId(1), "b", &mut p, &mut framed);
                    if log == Log::Journal {
                        decode(&mut st, log, &p).unwrap();
                    }
                }
                for p in &payloads {
                    let _ = decode(&mut st, log, p);
                    let _ = parse_frame(p, 0);
                }
            }
        }
    }
}
