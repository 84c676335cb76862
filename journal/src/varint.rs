//! Stop-bit integers (the FAST encoding), zigzag for signed values, and "scaled" integers that
//! divide out a round factor (prices sit on ticks of 10/50/100, quantities on lots of 100).
//!
//! Stop-bit: 7 bits per byte, most significant group first, and the high bit (0x80) set on the
//! LAST byte only. Encodings are canonical: a non-final leading 0x00 byte is rejected, which also
//! makes a run of zero bytes (a preallocated or torn tail) invalid at its first byte.

/// Appends `v` as a stop-bit integer (1 to 19 bytes; 1 to 10 for values below 2^70).
pub(crate) fn put_uint(out: &mut Vec<u8>, mut v: u128) {
    let mut buf = [0u8; 19];
    let mut i = buf.len() - 1;
    buf[i] = (v & 0x7f) as u8 | 0x80;
    v >>= 7;
    while v != 0 {
        i -= 1;
        buf[i] = (v & 0x7f) as u8;
        v >>= 7;
    }
    out.extend_from_slice(&buf[i..]);
}

/// Maps signed to unsigned so small magnitudes stay small: 0,-1,1,-2 -> 0,1,2,3.
pub(crate) fn zigzag(v: i128) -> u128 {
    ((v << 1) ^ (v >> 127)) as u128
}

pub(crate) fn unzigzag(v: u128) -> i128 {
    ((v >> 1) as i128) ^ -((v & 1) as i128)
}

/// Scale factors for price deltas (ticks of 10, 50 and 100 VND).
pub(crate) const PRICE_SCALES: [u128; 4] = [1, 10, 50, 100];
/// Scale factors for quantities (board lot 100; round lots of 1,000).
pub(crate) const QTY_SCALES: [u128; 4] = [1, 10, 100, 1000];
/// Scale factors for time deltas in nanoseconds (exact microseconds, milliseconds, seconds).
pub(crate) const TIME_SCALES: [u128; 4] = [1, 1_000, 1_000_000, 1_000_000_000];

/// Appends a signed `v` as `zz(v / scales[c]) << 2 | c` with the largest scale that divides it.
pub(crate) fn put_scaled_signed(out: &mut Vec<u8>, v: i128, scales: &[u128; 4]) {
    let c = scale_code(v.unsigned_abs(), scales);
    put_uint(out, (zigzag(v / scales[c] as i128) << 2) | c as u128);
}

/// Appends `v` divided by the largest scale that divides it, with the scale's index in the low
/// two bits: `(v / scales[c]) << 2 | c`. Values up to 2^68 fit in 10 bytes.
pub(crate) fn put_scaled(out: &mut Vec<u8>, v: u128, scales: &[u128; 4]) {
    let c = scale_code(v, scales);
    put_uint(out, ((v / scales[c]) << 2) | c as u128);
}

/// Index of the largest of `scales` that divides `m` (0 for `m == 0`).
pub(crate) fn scale_code(m: u128, scales: &[u128; 4]) -> usize {
    if m == 0 {
        0
    } else {
        (1..4)
            .rev()
            .find(|&c| m.checked_rem(scales[c]) == Some(0))
            .unwrap_or(0)
    }
}

/// Reads fields out of one record payload. Every error is a short description for
/// [`super::JournalError::Corrupt`].
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub(crate) fn byte(&mut self) -> Result<u8, String> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| "record ends inside a field".to_string())?;
        self.pos += 1;
        Ok(b)
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| "record ends inside a field".to_string())?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// A stop-bit integer of at most `max_bytes` bytes.
    pub(crate) fn uint(&mut self, max_bytes: usize) -> Result<u128, String> {
        let mut acc: u128 = 0;
        for i in 0..max_bytes {
            let b = self.byte()?;
            if i == 0 && b == 0 {
                return Err("non-canonical integer (leading zero byte)".into());
            }
            acc = (acc << 7) | u128::from(b & 0x7f);
            if b & 0x80 != 0 {
                return Ok(acc);
            }
        }
        Err(format!("integer longer than {max_bytes} bytes"))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, String> {
        u64::try_from(self.uint(10)?).map_err(|_| "integer does not fit 64 bits".to_string())
    }

    pub(crate) fn u32(&mut self) -> Result<u32, String> {
        u32::try_from(self.uint(5)?).map_err(|_| "integer does not fit 32 bits".to_string())
    }

    /// A zigzag-encoded signed value (as written by `put_uint(zigzag(v))`).
    pub(crate) fn signed(&mut self) -> Result<i128, String> {
        Ok(unzigzag(self.uint(10)?))
    }

    /// The inverse of [`put_scaled`].
    pub(crate) fn scaled(&mut self, scales: &[u128; 4]) -> Result<u128, String> {
        let raw = self.uint(10)?;
        (raw >> 2)
            .checked_mul(scales[(raw & 3) as usize])
            .ok_or_else(|| "scaled integer overflows".to_string())
    }

    /// The inverse of [`put_scaled_signed`].
    pub(crate) fn scaled_signed(&mut self, scales: &[u128; 4]) -> Result<i128, String> {
        let raw = self.uint(10)?;
        unzigzag(raw >> 2)
            .checked_mul(scales[(raw & 3) as usize] as i128)
            .ok_or_else(|| "scaled integer overflows".to_string())
    }

    /// A zigzagged signed value times `scale` (the scale code travels elsewhere).
    pub(crate) fn signed_times(&mut self, scale: u128) -> Result<i128, String> {
        self.signed()?
            .checked_mul(scale as i128)
            .ok_or_else(|| "scaled integer overflows".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(v: u128) -> (usize, u128) {
        let mut out = Vec::new();
        put_uint(&mut out, v);
        let mut r = Reader::new(&out);
        let back = r.uint(19).unwrap();
        assert!(r.is_empty());
        (out.len(), back)
    }

    #[test]
    fn stop_bit_layout_and_round_trip() {
        let mut out = Vec::new();
        put_uint(&mut out, 0);
        put_uint(&mut out, 127);
        put_uint(&mut out, 128);
        assert_eq!(out, vec![0x80, 0xff, 0x01, 0x80]);
        for v in [0u128, 1, 127, 128, 16383, 16384, u64::MAX as u128, 1 << 68] {
            assert_eq!(round(v).1, v);
        }
        assert_eq!(round(u64::MAX as u128).0, 10);
    }

    #[test]
    fn zeros_and_overlong_are_rejected() {
        assert!(Reader::new(&[0, 0, 0x81]).uint(10).is_err());
        assert!(Reader::new(&[0x01; 11]).uint(10).is_err());
        assert!(Reader::new(&[0x01]).uint(10).is_err());
        assert!(Reader::new(&[0x01, 0x01, 0x01, 0x01, 0x01, 0x80])
            .u32()
            .is_err());
    }

    #[test]
    fn zigzag_and_scaled() {
        for v in [
            0i128,
            -1,
            1,
            -2,
            i64::MIN as i128 * 2,
            i64::MAX as i128 * 2 + 1,
        ] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        assert_eq!(zigzag(-1), 1);
        let mut out = Vec::new();
        put_scaled(&mut out, 500, &QTY_SCALES);
        assert_eq!(out.len(), 1, "500 = 5 x 100 fits one byte");
        assert_eq!(scale_code(250, &PRICE_SCALES), 2, "250 = 5 x 50");
        assert_eq!(scale_code(0, &PRICE_SCALES), 0);
        put_uint(&mut out, zigzag(-250 / 50));
        assert_eq!(out.len(), 2, "-250 = -5 x 50 fits one byte");
        let extreme = -(i64::MAX as i128) * 2 - 1;
        put_uint(&mut out, zigzag(extreme));
        put_scaled(&mut out, u64::MAX as u128, &QTY_SCALES);
        let mut r = Reader::new(&out);
        assert_eq!(r.scaled(&QTY_SCALES).unwrap(), 500);
        assert_eq!(r.signed_times(50).unwrap(), -250);
        assert_eq!(r.signed_times(1).unwrap(), extreme);
        assert_eq!(r.scaled(&QTY_SCALES).unwrap(), u64::MAX as u128);
        assert!(r.is_empty());
    }

    #[test]
    fn scaled_signed_time_deltas() {
        let cases = [
            (0i128, 1usize),
            (5_000, 1),
            (-7_000_000, 1),
            (3_000_000_000, 1),
            (12_345, 3),
            (i128::from(i64::MAX) - i128::from(i64::MIN), 10),
            (i128::from(i64::MIN) - i128::from(i64::MAX), 10),
        ];
        for (v, len) in cases {
            let mut out = Vec::new();
            put_scaled_signed(&mut out, v, &TIME_SCALES);
            assert_eq!(out.len(), len, "{v}");
            let mut r = Reader::new(&out);
            assert_eq!(r.scaled_signed(&TIME_SCALES).unwrap(), v);
            assert!(r.is_empty());
        }
    }
}
