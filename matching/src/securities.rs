//! The security table: code <-> dense [`SecurityId`] (from 0, in listing order) and the
//! reference price each security's daily band is computed from. At most [`MAX_LISTINGS`]
//! securities.

use rustc_hash::FxHashMap;

use crate::stream::StreamError;
use crate::types::{Price, SecurityId};

/// Most securities one table lists. Far above any real exchange (HOSE lists about 400), far
/// below what the synthetic code scheme can name (26^4 = 456,976 four-letter codes), and small
/// enough that per-security tables indexed by id (engine books, gateway bands) stay a few MB.
pub const MAX_LISTINGS: usize = 100_000;

/// Listed securities. Ids are dense indexes in the order the securities were added.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecurityTable {
    codes: Vec<String>,
    references: Vec<Price>,
    by_code: FxHashMap<String, u32>,
}

/// A code must be non-empty and free of characters that would break the CSV formats.
pub(crate) fn valid_code(code: &str) -> bool {
    !code.is_empty()
        && code
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b',' && b != b'"')
}

/// Security code for index `i` in a listing of `m` names: `AAA`, `AAB`, ... (four letters
/// when three are not enough).
fn listing_code(i: usize, m: usize) -> String {
    let width = if m <= 26 * 26 * 26 { 3 } else { 4 };
    let mut code = vec![b'A'; width];
    let mut n = i;
    for slot in code.iter_mut().rev() {
        *slot = b'A' + (n % 26) as u8;
        n /= 26;
    }
    code.into_iter().map(char::from).collect()
}

/// SplitMix64: a tiny deterministic mixer, so synthetic listings need no random-number crate.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl SecurityTable {
    /// `m` synthetic listings `AAA`, `AAB`, ... whose reference prices cycle through the three
    /// HOSE tick regions (below 10,000; 10,000 to 49,950; 50,000 and above), each on its HOSE
    /// tick. Depends on `m` only: the manager's default listing and the generator's agree.
    /// Errors with [`StreamError::TooManySecurities`] beyond [`MAX_LISTINGS`].
    pub fn synthetic(m: usize) -> Result<SecurityTable, StreamError> {
        if m > MAX_LISTINGS {
            return Err(StreamError::TooManySecurities { max: MAX_LISTINGS });
        }
        let hose = crate::MarketRules::hose();
        let mut table = SecurityTable::new();
        for i in 0..m {
            let r = mix(i as u64 ^ ((m as u64) << 32));
            let raw: Price = match i % 3 {
                0 => 2_000 + (r % 7_900) as Price,
                1 => 10_000 + (r % 39_000) as Price,
                _ => 50_000 + (r % 200_000) as Price,
            };
            let reference = hose.round_to_tick(raw, false);
            table.add(&listing_code(i, m), reference)?;
        }
        Ok(table)
    }

    pub fn new() -> Self {
        Self::default()
    }

    /// Lists a security. Errors on a duplicate or malformed code, a non-positive reference, or
    /// a table already holding [`MAX_LISTINGS`] securities.
    pub fn add(&mut self, code: &str, reference: Price) -> Result<SecurityId, StreamError> {
        if !valid_code(code) {
            return Err(StreamError::InvalidCode {
                code: code.to_string(),
            });
        }
        if reference <= 0 {
            return Err(StreamError::InvalidReference {
                code: code.to_string(),
                price: reference,
            });
        }
        if self.by_code.contains_key(code) {
            return Err(StreamError::DuplicateSecurity {
                code: code.to_string(),
            });
        }
        if self.codes.len() >= MAX_LISTINGS {
            return Err(StreamError::TooManySecurities { max: MAX_LISTINGS });
        }
        let id = self.codes.len() as u32; // < MAX_LISTINGS, never SecurityId::UNKNOWN
        self.codes.push(code.to_string());
        self.references.push(reference);
        self.by_code.insert(code.to_string(), id);
        Ok(SecurityId(id))
    }

    /// The id of `code`, or [`SecurityId::UNKNOWN`] if it is not listed.
    pub fn lookup(&self, code: &str) -> SecurityId {
        self.by_code
            .get(code)
            .map_or(SecurityId::UNKNOWN, |&i| SecurityId(i))
    }

    pub fn code(&self, id: SecurityId) -> Option<&str> {
        self.codes.get(id.0 as usize).map(String::as_str)
    }

    pub fn reference(&self, id: SecurityId) -> Option<Price> {
        self.references.get(id.0 as usize).copied()
    }

    pub fn len(&self) -> usize {
        self.codes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }

    /// `(id, code, reference)` in id order.
    pub fn iter(&self) -> impl Iterator<Item = (SecurityId, &str, Price)> {
        self.codes
            .iter()
            .zip(&self.references)
            .enumerate()
            .map(|(i, (c, &r))| (SecurityId(i as u32), c.as_str(), r))
    }

    /// Parses `security,reference_price` CSV (header optional, blank lines ignored).
    pub fn parse_csv(text: &str) -> Result<Self, StreamError> {
        let mut table = Self::new();
        let mut first_content = true;
        for (i, raw) in text.split('\n').enumerate() {
            let line_no = i + 1;
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            let is_first = std::mem::replace(&mut first_content, false);
            let mut fields = line.split(',').map(str::trim);
            let code = fields.next().unwrap_or("");
            let price = fields.next();
            if is_first && code.eq_ignore_ascii_case("security") {
                match price {
                    Some(p) if p.eq_ignore_ascii_case("reference_price") => continue,
                    _ => {
                        return Err(StreamError::line(
                            line_no,
                            "header must be `security,reference_price`",
                        ))
                    }
                }
            }
            let Some(price) = price else {
                return Err(StreamError::line(
                    line_no,
                    format!("expected `security,reference_price`, got {line:?}"),
                ));
            };
            if fields.next().is_some() {
                return Err(StreamError::line(
                    line_no,
                    format!("expected 2 fields, got more in {line:?}"),
                ));
            }
            let reference: Price = price.parse().map_err(|_| {
                StreamError::line(
                    line_no,
                    format!("reference_price {price:?} is not an integer"),
                )
            })?;
            table
                .add(code, reference)
                .map_err(|e| StreamError::line(line_no, e.to_string()))?;
        }
        Ok(table)
    }

    /// Writes the table as CSV with a header, in id order.
    pub fn to_csv(&self) -> String {
        let mut s = String::from("security,reference_price\n");
        for (_, code, r) in self.iter() {
            s.push_str(code);
            s.push(',');
            s.push_str(&r.to_string());
            s.push('\n');
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::{listing_code, SecurityTable, MAX_LISTINGS};
    use crate::stream::StreamError;

    #[test]
    fn listing_codes_count_in_base_26() {
        assert_eq!(listing_code(0, 10), "AAA");
        assert_eq!(listing_code(1, 10), "AAB");
        assert_eq!(listing_code(26, 10), "ABA");
        assert_eq!(listing_code(26 * 26 * 26 - 1, 26 * 26 * 26), "ZZZ");
        assert_eq!(listing_code(0, 26 * 26 * 26 + 1), "AAAA");
    }

    #[test]
    fn synthetic_listing_is_reproducible_on_tick_and_spans_tick_regions() {
        let t = SecurityTable::synthetic(300).unwrap();
        assert_eq!(t.len(), 300);
        assert_eq!(t.to_csv(), SecurityTable::synthetic(300).unwrap().to_csv());
        let hose = crate::MarketRules::hose();
        let refs: Vec<i64> = t.iter().map(|(_, _, r)| r).collect();
        assert!(refs.iter().all(|r| *r > 0 && r % hose.tick(*r) == 0));
        assert!(refs.iter().any(|r| *r < 10_000));
        assert!(refs.iter().any(|r| (10_000..50_000).contains(r)));
        assert!(refs.iter().any(|r| *r >= 50_000));
    }

    #[test]
    fn listing_count_is_bounded_with_an_error() {
        let t = SecurityTable::synthetic(MAX_LISTINGS).unwrap();
        assert_eq!(t.len(), MAX_LISTINGS);
        assert_eq!(t.code(crate::SecurityId(0)), Some("AAAA"));
        let mut t = t;
        let err = t.add("ONE_MORE", 10_000).unwrap_err();
        assert_eq!(err, StreamError::TooManySecurities { max: MAX_LISTINGS });
        assert!(err.to_string().contains("100000"), "{err}");
        for m in [MAX_LISTINGS + 1, 26 * 26 * 26 * 26 + 1, usize::MAX] {
            assert_eq!(
                SecurityTable::synthetic(m).unwrap_err(),
                StreamError::TooManySecurities { max: MAX_LISTINGS }
            );
        }
        assert!(SecurityTable::synthetic(0).unwrap().is_empty());
    }
}
