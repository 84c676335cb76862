//! Record framing (length + payload + CRC32) and the delta-encoded payloads of order, broker
//! dictionary and fill records. The byte layout is documented in the module doc of
//! [`super`]; this file is its single implementation.

use matching::{
    BrokerId, CancelOrder, Command, Fill, NewOrder, OrderId, OrderType, SecurityId, Side,
};
use rustc_hash::FxHashMap;

use super::varint::{put_scaled, put_uint, scale_code, zigzag, Reader, PRICE_SCALES, QTY_SCALES};

/// Largest payload a writer produces or a reader accepts; anything longer is damage.
pub(crate) const MAX_PAYLOAD: usize = 1024;
/// Longest broker name the dictionary stores (UTF-8 bytes).
pub(crate) const MAX_BROKER_NAME: usize = 256;

const TAG_DICT: u8 = 0;
const TAG_NEW: u8 = 1;
const TAG_CANCEL: u8 = 2;
const TAG_FILL: u8 = 3;

/// Delta references and the broker dictionary. Reset at every segment start, so each segment
/// decodes alone; writer and reader evolve identical copies.
#[derive(Default)]
pub(crate) struct DeltaState {
    /// Last new-order id (orders) or larger id of the last fill (trades).
    prev_id: u64,
    /// Last fill's seq and fill index; `has_fill` says whether they are set.
    prev_seq: u64,
    prev_fill_index: u32,
    has_fill: bool,
    /// Last non-zero price per security.
    last_price: FxHashMap<u32, i64>,
    /// Brokers whose dictionary record is already in this segment.
    brokers: FxHashMap<u32, String>,
}

impl DeltaState {
    pub(crate) fn reset(&mut self) {
        self.prev_id = 0;
        self.prev_seq = 0;
        self.prev_fill_index = 0;
        self.has_fill = false;
        self.last_price.clear();
        self.brokers.clear();
    }

    fn last_price(&self, security: SecurityId) -> i64 {
        self.last_price.get(&security.0).copied().unwrap_or(0)
    }

    /// Updates the state as if `cmd` (with its broker's name) had been encoded.
    pub(crate) fn apply_order(&mut self, cmd: &Command, broker_name: &str) {
        self.brokers
            .entry(cmd.broker().map_or(0, |b| b.0))
            .or_insert_with(|| broker_name.to_owned());
        if let Command::New(o) = cmd {
            self.prev_id = o.id.0;
            if o.price != 0 {
                self.last_price.insert(o.security.0, o.price);
            }
        }
    }

    pub(crate) fn apply_fill(&mut self, seq: u64, fill_index: u32, fill: &Fill) {
        self.prev_seq = seq;
        self.prev_fill_index = fill_index;
        self.has_fill = true;
        self.prev_id = fill.buy.0.max(fill.sell.0);
        self.last_price.insert(fill.security.0, fill.price);
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
    let mut r = Reader::new(&data[pos..]);
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

fn kind_bits(kind: OrderType) -> u8 {
    match kind {
        OrderType::Limit => 0,
        OrderType::Market => 1,
        OrderType::Ioc => 2,
        OrderType::Fok => 3,
        // Journal v1 has no code for them; `OrderJournal::append` refuses them first.
        OrderType::Mtl | OrderType::Ato | OrderType::Atc => 0,
    }
}

fn id_delta(id: u64, reference: u64) -> u128 {
    zigzag(i128::from(id) - i128::from(reference))
}

/// Encodes one sequenced command, preceded by a dictionary record when its broker is not yet in
/// this segment's dictionary. `payload` is scratch space. Does not change `state`.
pub(crate) fn encode_order(
    state: &DeltaState,
    cmd: &Command,
    broker_name: &str,
    payload: &mut Vec<u8>,
    out: &mut Vec<u8>,
) {
    let broker = cmd.broker().map_or(0, |b| b.0);
    if !state.brokers.contains_key(&broker) {
        payload.clear();
        payload.push(TAG_DICT);
        put_uint(payload, broker.into());
        put_uint(payload, broker_name.len() as u128);
        payload.extend_from_slice(broker_name.as_bytes());
        frame(out, payload);
    }
    payload.clear();
    match cmd {
        Command::New(o) => {
            let omit_price = o.price == 0;
            let delta = i128::from(o.price) - i128::from(state.last_price(o.security));
            // The price scale rides in the tag's spare bits, so the delta keeps all 7 bits.
            let pc = if omit_price {
                0
            } else {
                scale_code(delta.unsigned_abs(), &PRICE_SCALES)
            };
            payload.push(
                TAG_NEW
                    | side_bit(o.side) << 2
                    | kind_bits(o.kind) << 3
                    | u8::from(omit_price) << 5
                    | (pc as u8) << 6,
            );
            put_uint(payload, id_delta(o.id.0, state.prev_id));
            put_uint(payload, broker.into());
            put_uint(payload, o.security.0.into());
            if !omit_price {
                put_uint(payload, zigzag(delta / PRICE_SCALES[pc] as i128));
            }
            put_scaled(payload, o.qty.into(), &QTY_SCALES);
        }
        Command::Cancel(c) => {
            payload.push(TAG_CANCEL);
            put_uint(payload, id_delta(c.id.0, state.prev_id));
            put_uint(payload, broker.into());
            put_uint(payload, c.security.0.into());
        }
        // Refused by `OrderJournal::append` (journal v1).
        Command::Amend(_) | Command::Phase(_) => {}
    }
    frame(out, payload);
}

/// Encodes one fill. Does not change `state`.
pub(crate) fn encode_fill(
    state: &DeltaState,
    seq: u64,
    fill_index: u32,
    fill: &Fill,
    payload: &mut Vec<u8>,
    out: &mut Vec<u8>,
) {
    payload.clear();
    // The common case (next fill of the same order) drops seq and index entirely.
    let follows = state.has_fill
        && seq == state.prev_seq
        && Some(fill_index) == state.prev_fill_index.checked_add(1);
    let delta = i128::from(fill.price) - i128::from(state.last_price(fill.security));
    let pc = scale_code(delta.unsigned_abs(), &PRICE_SCALES);
    let qc = scale_code(fill.qty.into(), &QTY_SCALES);
    payload.push(
        TAG_FILL
            | side_bit(fill.aggressor.side().unwrap_or(Side::Buy)) << 2
            | u8::from(follows) << 3
            | (pc as u8) << 4
            | (qc as u8) << 6,
    );
    if !follows {
        put_uint(
            payload,
            zigzag(i128::from(seq) - i128::from(state.prev_seq)),
        );
        put_uint(payload, fill_index.into());
    }
    put_uint(payload, fill.security.0.into());
    put_uint(payload, zigzag(delta / PRICE_SCALES[pc] as i128));
    put_uint(payload, u128::from(fill.qty) / QTY_SCALES[qc]);
    put_uint(payload, id_delta(fill.buy.0, state.prev_id));
    put_uint(payload, id_delta(fill.sell.0, fill.buy.0));
    put_uint(payload, fill.buy_broker.0.into());
    put_uint(payload, fill.sell_broker.0.into());
    frame(out, payload);
}

/// One decoded record.
#[derive(Debug, PartialEq)]
pub(crate) enum Decoded {
    Broker(BrokerId, String),
    Order(Command),
    Fill(u64, u32, Fill),
}

fn apply_delta_u64(base: u64, delta: i128, what: &str) -> Result<u64, String> {
    u64::try_from(i128::from(base) + delta).map_err(|_| format!("{what} out of range"))
}

fn apply_delta_i64(base: i64, delta: i128, what: &str) -> Result<i64, String> {
    i64::try_from(i128::from(base) + delta).map_err(|_| format!("{what} out of range"))
}

fn side_of(bit: u8) -> Side {
    if bit == 0 {
        Side::Buy
    } else {
        Side::Sell
    }
}

/// Decodes one payload and advances `state` exactly as the writer did.
pub(crate) fn decode(state: &mut DeltaState, payload: &[u8]) -> Result<Decoded, String> {
    let mut r = Reader::new(payload);
    let tag = r.byte()?;
    let decoded = match tag & 3 {
        TAG_DICT => {
            if tag != TAG_DICT {
                return Err(format!("reserved bits set in tag {tag:#04x}"));
            }
            let id = r.u32()?;
            let len = r.u64()? as usize;
            if len > MAX_BROKER_NAME {
                return Err(format!("broker name of {len} bytes is too long"));
            }
            let name = std::str::from_utf8(r.bytes(len)?)
                .map_err(|_| "broker name is not UTF-8".to_string())?
                .to_owned();
            match state.brokers.get(&id) {
                Some(old) if *old != name => {
                    return Err(format!("broker {id} renamed from {old:?} to {name:?}"))
                }
                _ => {}
            }
            state.brokers.insert(id, name.clone());
            Decoded::Broker(BrokerId(id), name)
        }
        TAG_NEW => {
            let price_scale = PRICE_SCALES[usize::from(tag >> 6)];
            let side = side_of(tag >> 2 & 1);
            let kind = match tag >> 3 & 3 {
                0 => OrderType::Limit,
                1 => OrderType::Market,
                2 => OrderType::Ioc,
                _ => OrderType::Fok,
            };
            let id = apply_delta_u64(state.prev_id, r.signed()?, "order id")?;
            let broker = known_broker(state, r.u32()?)?;
            let security = SecurityId(r.u32()?);
            let price = if tag & 0x20 != 0 {
                0
            } else {
                let p = apply_delta_i64(
                    state.last_price(security),
                    r.signed_times(price_scale)?,
                    "price",
                )?;
                if p == 0 {
                    return Err("zero price written without the omitted-price flag".into());
                }
                p
            };
            let qty = u64::try_from(r.scaled(&QTY_SCALES)?).map_err(|_| "qty out of range")?;
            let cmd = Command::New(NewOrder {
                id: OrderId(id),
                broker,
                security,
                side,
                kind,
                price,
                qty,
            });
            state.apply_order(&cmd, "");
            Decoded::Order(cmd)
        }
        TAG_CANCEL => {
            if tag != TAG_CANCEL {
                return Err(format!("reserved bits set in tag {tag:#04x}"));
            }
            let id = apply_delta_u64(state.prev_id, r.signed()?, "order id")?;
            let broker = known_broker(state, r.u32()?)?;
            let security = SecurityId(r.u32()?);
            Decoded::Order(Command::Cancel(CancelOrder {
                id: OrderId(id),
                broker,
                security,
            }))
        }
        _ => {
            let price_scale = PRICE_SCALES[usize::from(tag >> 4 & 3)];
            let qty_scale = QTY_SCALES[usize::from(tag >> 6)];
            let (seq, fill_index) = if tag & 0x08 != 0 {
                if !state.has_fill {
                    return Err("continuation fill without a previous fill in the segment".into());
                }
                let idx = state
                    .prev_fill_index
                    .checked_add(1)
                    .ok_or("fill index overflows")?;
                (state.prev_seq, idx)
            } else {
                (
                    apply_delta_u64(state.prev_seq, r.signed()?, "seq")?,
                    r.u32()?,
                )
            };
            let security = SecurityId(r.u32()?);
            let price = apply_delta_i64(
                state.last_price(security),
                r.signed_times(price_scale)?,
                "price",
            )?;
            let qty = r
                .uint(10)?
                .checked_mul(qty_scale)
                .and_then(|q| u64::try_from(q).ok())
                .ok_or("qty out of range")?;
            let buy = apply_delta_u64(state.prev_id, r.signed()?, "buy order id")?;
            let sell = apply_delta_u64(buy, r.signed()?, "sell order id")?;
            let fill = Fill {
                security,
                price,
                qty,
                buy: OrderId(buy),
                sell: OrderId(sell),
                buy_broker: BrokerId(r.u32()?),
                sell_broker: BrokerId(r.u32()?),
                aggressor: side_of(tag >> 2 & 1).into(),
            };
            state.apply_fill(seq, fill_index, &fill);
            Decoded::Fill(seq, fill_index, fill)
        }
    };
    if !r.is_empty() {
        return Err(format!(
            "{} unexpected trailing bytes",
            payload.len() - r.pos()
        ));
    }
    Ok(decoded)
}

fn known_broker(state: &DeltaState, id: u32) -> Result<BrokerId, String> {
    if state.brokers.contains_key(&id) {
        Ok(BrokerId(id))
    } else {
        Err(format!(
            "broker {id} used before its dictionary record in this segment"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn decode_all(bytes: &[u8]) -> Vec<Decoded> {
        let mut st = DeltaState::default();
        let mut pos = 0;
        let mut out = Vec::new();
        while pos < bytes.len() {
            let (b, e, next) = parse_frame(bytes, pos).unwrap();
            out.push(decode(&mut st, &bytes[b..e]).unwrap());
            pos = next;
        }
        out
    }

    #[test]
    fn orders_round_trip_with_dictionary_and_extremes() {
        let cmds = [
            new(1, 3, 0, 25_000, 1_000, OrderType::Limit),
            new(2, 3, 0, 25_050, 100, OrderType::Ioc),
            new(u64::MAX, 4, u32::MAX, i64::MIN, u64::MAX, OrderType::Fok),
            new(0, 4, 1, 0, 0, OrderType::Market),
            new(7, 3, 1, i64::MAX, 1, OrderType::Limit),
            Command::Cancel(CancelOrder {
                id: OrderId(1),
                broker: BrokerId(3),
                security: SecurityId(0),
            }),
        ];
        let mut st = DeltaState::default();
        let (mut payload, mut out) = (Vec::new(), Vec::new());
        for c in &cmds {
            let name = format!("B{}", c.broker().0);
            encode_order(&st, c, &name, &mut payload, &mut out);
            st.apply_order(c, &name);
        }
        let decoded = decode_all(&out);
        let orders: Vec<_> = decoded
            .iter()
            .filter_map(|d| match d {
                Decoded::Order(c) => Some(*c),
                _ => None,
            })
            .collect();
        assert_eq!(orders, cmds);
        assert_eq!(decoded[0], Decoded::Broker(BrokerId(3), "B3".into()));
        assert_eq!(
            decoded.len(),
            cmds.len() + 2,
            "one dictionary record per broker"
        );
    }

    #[test]
    fn typical_order_is_compact() {
        let mut st = DeltaState::default();
        let (mut payload, mut out) = (Vec::new(), Vec::new());
        let first = new(100, 1, 2, 25_000, 1_000, OrderType::Limit);
        encode_order(&st, &first, "b", &mut payload, &mut out);
        st.apply_order(&first, "b");
        out.clear();
        encode_order(
            &st,
            &new(101, 1, 2, 24_950, 500, OrderType::Limit),
            "b",
            &mut payload,
            &mut out,
        );
        // len 1 + tag 1 + id 1 + broker 1 + security 1 + price 1 + qty 1 + crc 4.
        assert_eq!(out.len(), 11);
    }

    #[test]
    fn fills_round_trip() {
        let big = Fill {
            security: SecurityId(u32::MAX),
            price: i64::MIN,
            qty: u64::MAX,
            buy: OrderId(u64::MAX),
            sell: OrderId(0),
            buy_broker: BrokerId(u32::MAX),
            sell_broker: BrokerId(0),
            aggressor: Side::Sell,
        };
        let f = |price, buy, sell, aggressor| Fill {
            security: SecurityId(1),
            price,
            qty: 300,
            buy: OrderId(buy),
            sell: OrderId(sell),
            buy_broker: BrokerId(1),
            sell_broker: BrokerId(2),
            aggressor,
        };
        let fills = [
            (5u64, 0u32, f(10_000, 9, 3, Side::Buy)),
            (5, 1, f(10_010, 9, 4, Side::Buy)),
            (9, 0, f(9_990, 2, 11, Side::Sell)),
            (9, 3, f(9_990, 2, 11, Side::Sell)),
            (u64::MAX, u32::MAX, big),
            (
                u64::MAX,
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
        for (s, i, fill) in &fills {
            encode_fill(&st, *s, *i, fill, &mut payload, &mut out);
            st.apply_fill(*s, *i, fill);
        }
        let back: Vec<_> = decode_all(&out)
            .into_iter()
            .map(|d| match d {
                Decoded::Fill(s, i, f) => (s, i, f),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(back, fills);
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
    }

    #[test]
    fn undecodable_payloads_are_errors_not_panics() {
        let mut st = DeltaState::default();
        for p in [
            &[0xffu8][..],
            &[TAG_NEW],
            &[TAG_CANCEL, 0x82, 0x81, 0x80],
            &[TAG_FILL | 8],
            &[0, 0x81, 0x85, b'a'],
        ] {
            assert!(decode(&mut st, p).is_err(), "{p:?}");
        }
    }
}
