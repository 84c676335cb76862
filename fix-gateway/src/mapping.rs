//! FIX 4.4 fields <-> gridmatch values: order types, sides, prices and quantities, reject
//! reasons. Pure functions; the order state lives in [`crate::orders`].
//!
//! Order types (OrdType(40) x TimeInForce(59); TimeInForce absent = 0 Day):
//!
//! | gridmatch | OrdType | TimeInForce | Price(44) |
//! |---|---|---|---|
//! | LO  | 2 Limit | 0 Day | the limit |
//! | IOC | 2 Limit | 3 ImmediateOrCancel | the limit |
//! | FOK | 2 Limit | 4 FillOrKill | the limit |
//! | MP  | 1 Market | 0 Day or 3 ImmediateOrCancel | absent (or 0) |
//! | MTL | K MarketWithLeftOverAsLimit | 0 Day | absent (or 0) |
//! | ATO | 1 Market | 2 AtTheOpening | absent (or 0) |
//! | ATC | 1 Market | 7 AtTheClose | absent (or 0) |
//!
//! Anything else (GTC, GTD, GTX, limit-on-open/close, stops, pegs) is refused with
//! OrdRejReason 11 (unsupported order characteristic): every order expires at the close. A price
//! given with a market-type order is passed on, and the exchange rejects it
//! (`market_order_with_price`), as it would a native order.
//!
//! Prices are whole VND: `10000`, `10000.0` and `10000.00` are the same price; a fraction is
//! refused (no tick is smaller than 1). Quantities are whole shares.

use matching::{CancelReason, OrderType, Price, Qty, RejectReason, Side};

/// OrdType(40) and TimeInForce(59) -> the gridmatch order type.
pub fn order_type(ord_type: &[u8], tif: Option<&[u8]>) -> Result<OrderType, String> {
    let tif = tif.unwrap_or(b"0");
    Ok(match (ord_type, tif) {
        (b"2", b"0") => OrderType::Limit,
        (b"2", b"3") => OrderType::Ioc,
        (b"2", b"4") => OrderType::Fok,
        (b"1", b"0" | b"3") => OrderType::Market,
        (b"K", b"0") => OrderType::Mtl,
        (b"1", b"2") => OrderType::Ato,
        (b"1", b"7") => OrderType::Atc,
        _ => {
            return Err(format!(
            "OrdType {} with TimeInForce {} is not supported (see the gateway's order type table)",
            String::from_utf8_lossy(ord_type),
            String::from_utf8_lossy(tif)
        ))
        }
    })
}

/// The OrdType(40) and TimeInForce(59) we echo for an order type.
pub fn fix_type(kind: OrderType) -> (&'static [u8], &'static [u8]) {
    match kind {
        OrderType::Limit => (b"2", b"0"),
        OrderType::Ioc => (b"2", b"3"),
        OrderType::Fok => (b"2", b"4"),
        OrderType::Market => (b"1", b"0"),
        OrderType::Mtl => (b"K", b"0"),
        OrderType::Ato => (b"1", b"2"),
        OrderType::Atc => (b"1", b"7"),
    }
}

pub fn side(v: &[u8]) -> Option<Side> {
    match v {
        b"1" => Some(Side::Buy),
        b"2" => Some(Side::Sell),
        _ => None,
    }
}

pub fn fix_side(side: Side) -> &'static [u8] {
    match side {
        Side::Buy => b"1",
        Side::Sell => b"2",
    }
}

/// A FIX Price as whole currency units: an optional sign, digits, and an optional fraction of
/// zeros only.
pub fn price(v: &[u8]) -> Result<Price, String> {
    let text = String::from_utf8_lossy(v);
    let (neg, digits) = match v.first() {
        Some(b'-') => (true, &v[1..]),
        Some(b'+') => (false, &v[1..]),
        _ => (false, v),
    };
    let whole =
        whole_number(digits).ok_or_else(|| format!("price {text:?} is not a whole number"))?;
    let p = i64::try_from(whole).map_err(|_| format!("price {text:?} is out of range"))?;
    Ok(if neg { -p } else { p })
}

/// A FIX Qty as whole shares (no sign; a fraction of zeros allowed).
pub fn qty(v: &[u8]) -> Result<Qty, String> {
    whole_number(v).ok_or_else(|| {
        format!(
            "quantity {:?} is not a whole number of shares",
            String::from_utf8_lossy(v)
        )
    })
}

/// `digits[.0*]`, at most 18 digits before the point.
fn whole_number(v: &[u8]) -> Option<u64> {
    let (int, frac) = match v.iter().position(|&b| b == b'.') {
        Some(p) => (&v[..p], &v[p + 1..]),
        None => (v, &[][..]),
    };
    if !frac.iter().all(|&b| b == b'0') {
        return None;
    }
    crate::codec::parse_u64(int)
}

/// `notional / qty` as a FIX Price with up to 4 decimals (trailing zeros trimmed); 0 for no
/// quantity.
pub fn avg_px(notional: i128, qty: Qty) -> String {
    if qty == 0 {
        return "0".into();
    }
    let q = i128::from(qty);
    // Rounded to 1/10000, half away from zero.
    let scaled = notional * 10_000;
    let (mut units, rem) = (scaled / q, scaled % q);
    if rem.abs() * 2 >= q {
        units += scaled.signum();
    }
    let sign = if units < 0 { "-" } else { "" };
    let units = units.abs();
    let (int, frac) = (units / 10_000, units % 10_000);
    if frac == 0 {
        return format!("{sign}{int}");
    }
    let f = format!("{frac:04}");
    format!("{sign}{int}.{}", f.trim_end_matches('0'))
}

/// Text(58) of a reject: our reason code first (machine-readable), then the words.
pub fn reject_text(reason: RejectReason) -> String {
    format!("{}: {reason}", reason.code())
}

/// The reason code at the start of a Text(58) written by [`reject_text`].
pub fn code_of_text(text: &str) -> &str {
    text.split(':').next().unwrap_or(text)
}

/// OrdRejReason(103) for an exchange reject of a new order.
pub fn ord_rej_reason(reason: RejectReason) -> u32 {
    match reason {
        RejectReason::UnknownSecurity => 1,
        RejectReason::MarketClosed => 2,
        RejectReason::DuplicateOrderId => 6,
        RejectReason::UnknownOrder | RejectReason::NotOwner => 5,
        RejectReason::ZeroQuantity | RejectReason::QuantityTooLarge | RejectReason::OddLot => 13,
        RejectReason::PhaseForbids => 0,
        RejectReason::NonPositivePrice
        | RejectReason::MarketOrderWithPrice
        | RejectReason::OffTick
        | RejectReason::OutsideBand
        | RejectReason::OrderNotLive => 99,
    }
}

/// CxlRejReason(102) for an exchange reject of a cancel or a replace.
pub fn cxl_rej_reason(reason: RejectReason) -> u32 {
    match reason {
        RejectReason::OrderNotLive => 0,
        RejectReason::UnknownOrder | RejectReason::NotOwner => 1,
        RejectReason::PhaseForbids | RejectReason::MarketClosed => 2,
        RejectReason::DuplicateOrderId => 6,
        _ => 99,
    }
}

/// ExecType(150) and OrdStatus(39) of a cancellation, and its Text.
pub fn cancel_exec(reason: CancelReason) -> (u8, &'static str) {
    match reason {
        CancelReason::Requested => (b'4', "cancelled on request"),
        CancelReason::Unfilled => (b'4', "unfilled: the remainder was cancelled"),
        CancelReason::Expired => (b'C', "expired at the close"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_types_round_trip_through_the_table() {
        for kind in OrderType::ALL {
            let (t, tif) = fix_type(kind);
            assert_eq!(order_type(t, Some(tif)), Ok(kind), "{kind:?}");
        }
        assert_eq!(order_type(b"2", None), Ok(OrderType::Limit));
        assert_eq!(order_type(b"1", Some(b"3")), Ok(OrderType::Market));
        for (t, tif) in [
            (&b"2"[..], &b"1"[..]),
            (b"2", b"6"),
            (b"2", b"2"),
            (b"3", b"0"),
            (b"K", b"3"),
            (b"", b"0"),
            (b"22", b"0"),
        ] {
            assert!(order_type(t, Some(tif)).is_err(), "{t:?} {tif:?}");
        }
    }

    #[test]
    fn prices_and_quantities_are_whole() {
        assert_eq!(price(b"10000"), Ok(10_000));
        assert_eq!(price(b"10000.000"), Ok(10_000));
        assert_eq!(price(b"-50"), Ok(-50));
        assert_eq!(price(b"+50."), Ok(50));
        for bad in [
            &b"10000.5"[..],
            b"",
            b"-",
            b"1e4",
            b"10 000",
            b"99999999999999999999",
            b".",
        ] {
            assert!(price(bad).is_err(), "{bad:?}");
        }
        assert_eq!(qty(b"100"), Ok(100));
        assert_eq!(qty(b"100.00"), Ok(100));
        for bad in [&b"-100"[..], b"100.5", b"", b"abc"] {
            assert!(qty(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn average_price_is_rounded_to_four_decimals() {
        assert_eq!(avg_px(0, 0), "0");
        assert_eq!(avg_px(10_000 * 300, 300), "10000");
        // 100 @ 10000 + 200 @ 10050 = 10033.333...
        assert_eq!(avg_px(100 * 10_000 + 200 * 10_050, 300), "10033.3333");
        // 2/3 = 0.66666.. -> 0.6667
        assert_eq!(avg_px(2, 3), "0.6667");
        assert_eq!(avg_px(1, 2), "0.5");
        assert_eq!(avg_px(-1, 2), "-0.5");
    }

    #[test]
    fn every_reject_reason_has_codes_and_its_text_starts_with_the_code() {
        for r in RejectReason::ALL {
            let text = reject_text(r);
            assert_eq!(code_of_text(&text), r.code());
            assert!([0, 1, 2, 5, 6, 13, 99].contains(&ord_rej_reason(r)));
            assert!([0, 1, 2, 6, 99].contains(&cxl_rej_reason(r)));
        }
    }
}
