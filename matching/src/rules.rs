//! Market rule presets (tick size, board lot, daily price band) and per-order validation.
//!
//! All arithmetic is integer; the band is computed in `i128` so no reference price can overflow.

use std::fmt;
use std::str::FromStr;

use crate::types::{NewOrder, Price, Qty, RejectReason, MAX_ORDER_QTY};

/// Which preset a [`MarketRules`] value is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Preset {
    Hose,
    Hnx,
    Upcom,
    None,
}

/// A market's static order rules: tick table, board lot and daily price band.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MarketRules {
    preset: Preset,
}

/// `FromStr` error for [`MarketRules`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown market rules {0:?}: expected one of hose, hnx, upcom, none")]
pub struct UnknownRules(pub String);

impl Default for MarketRules {
    /// HOSE is the default market.
    fn default() -> Self {
        Self::hose()
    }
}

impl MarketRules {
    /// Ho Chi Minh Stock Exchange: tick 10/50/100 by price, lot 100, band +/-7%.
    pub fn hose() -> Self {
        Self {
            preset: Preset::Hose,
        }
    }
    /// Hanoi Stock Exchange: tick 100, lot 100, band +/-10%.
    pub fn hnx() -> Self {
        Self {
            preset: Preset::Hnx,
        }
    }
    /// UPCoM: tick 100, lot 100, band +/-15%.
    pub fn upcom() -> Self {
        Self {
            preset: Preset::Upcom,
        }
    }
    /// No market rules: any positive price and quantity (tick 1, lot 1, no band).
    pub fn none() -> Self {
        Self {
            preset: Preset::None,
        }
    }

    /// The preset's name as accepted by `FromStr`.
    pub fn name(&self) -> &'static str {
        match self.preset {
            Preset::Hose => "hose",
            Preset::Hnx => "hnx",
            Preset::Upcom => "upcom",
            Preset::None => "none",
        }
    }

    /// Tick size that applies at `price`.
    pub fn tick(&self, price: Price) -> Price {
        match self.preset {
            Preset::Hose => {
                if price < 10_000 {
                    10
                } else if price < 50_000 {
                    50
                } else {
                    100
                }
            }
            Preset::Hnx | Preset::Upcom => 100,
            Preset::None => 1,
        }
    }

    /// Board lot: order quantities must be a multiple of it.
    pub fn lot(&self) -> Qty {
        match self.preset {
            Preset::Hose | Preset::Hnx | Preset::Upcom => 100,
            Preset::None => 1,
        }
    }

    /// Band width in percent, or `None` when there is no band.
    fn band_percent(&self) -> Option<i128> {
        match self.preset {
            Preset::Hose => Some(7),
            Preset::Hnx => Some(10),
            Preset::Upcom => Some(15),
            Preset::None => None,
        }
    }

    /// Daily `(floor, ceiling)` for a reference price, both rounded inward to the tick.
    /// `None` for the `none` preset.
    pub fn band(&self, reference: Price) -> Option<(Price, Price)> {
        let pct = self.band_percent()?;
        let r = reference as i128;
        let raw_ceiling = (r * (100 + pct)).div_euclid(100);
        let raw_floor = -((-(r * (100 - pct))).div_euclid(100)); // ceil division
        let ceiling = clamp_i64(raw_ceiling);
        let floor = clamp_i64(raw_floor);
        Some((
            self.round_to_tick(floor, true),
            self.round_to_tick(ceiling, false),
        ))
    }

    /// Rounds `price` onto the tick grid: up (towards +inf) or down, using the tick at `price`.
    /// Prices at tick-table boundaries are multiples of every smaller tick, so rounding up
    /// across a boundary still lands on a valid price.
    pub fn round_to_tick(&self, price: Price, up: bool) -> Price {
        let t = self.tick(price);
        let rem = price.rem_euclid(t);
        if rem == 0 {
            price
        } else if up {
            price.saturating_add(t - rem)
        } else {
            price - rem
        }
    }

    /// Validates a NEW order against the rules, in the documented order of checks.
    pub fn check(&self, order: &NewOrder, reference: Price) -> Result<(), RejectReason> {
        self.check_in_band(order, self.band(reference))
    }

    /// [`Self::check`] with the band already computed (the gateway caches one per security).
    pub(crate) fn check_in_band(
        &self,
        order: &NewOrder,
        band: Option<(Price, Price)>,
    ) -> Result<(), RejectReason> {
        if order.qty == 0 {
            return Err(RejectReason::ZeroQuantity);
        }
        if order.qty > MAX_ORDER_QTY {
            return Err(RejectReason::QuantityTooLarge);
        }
        if !order.qty.is_multiple_of(self.lot()) {
            return Err(RejectReason::OddLot);
        }
        if order.kind.is_priceless() {
            return if order.price != 0 {
                Err(RejectReason::MarketOrderWithPrice)
            } else {
                Ok(())
            };
        }
        if order.price <= 0 {
            return Err(RejectReason::NonPositivePrice);
        }
        if order.price % self.tick(order.price) != 0 {
            return Err(RejectReason::OffTick);
        }
        if let Some((floor, ceiling)) = band {
            if order.price < floor || order.price > ceiling {
                return Err(RejectReason::OutsideBand);
            }
        }
        Ok(())
    }
}

fn clamp_i64(v: i128) -> i64 {
    v.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

impl fmt::Display for MarketRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for MarketRules {
    type Err = UnknownRules;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        [Self::hose(), Self::hnx(), Self::upcom(), Self::none()]
            .into_iter()
            .find(|r| r.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownRules(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{BrokerId, OrderId, OrderType, SecurityId, Side};

    fn order(kind: OrderType, price: Price, qty: Qty) -> NewOrder {
        NewOrder {
            id: OrderId(1),
            broker: BrokerId(0),
            security: SecurityId(0),
            side: Side::Buy,
            kind,
            price,
            qty,
        }
    }

    #[test]
    fn hose_tick_table_boundaries() {
        let r = MarketRules::hose();
        assert_eq!(r.tick(1), 10);
        assert_eq!(r.tick(9_990), 10);
        assert_eq!(r.tick(9_999), 10);
        assert_eq!(r.tick(10_000), 50);
        assert_eq!(r.tick(49_950), 50);
        assert_eq!(r.tick(49_999), 50);
        assert_eq!(r.tick(50_000), 100);
        assert_eq!(r.tick(1_000_000), 100);
        assert_eq!(r.lot(), 100);
    }

    #[test]
    fn other_presets_tick_lot() {
        for r in [MarketRules::hnx(), MarketRules::upcom()] {
            assert_eq!(r.tick(5_000), 100);
            assert_eq!(r.tick(60_000), 100);
            assert_eq!(r.lot(), 100);
        }
        let n = MarketRules::none();
        assert_eq!((n.tick(7), n.lot(), n.band(10_000)), (1, 1, None));
    }

    #[test]
    fn hose_band_rounds_inward() {
        let r = MarketRules::hose();
        // 10,000 * 1.07 = 10,700 (on 50 tick); 10,000 * 0.93 = 9,300 (on 10 tick).
        assert_eq!(r.band(10_000), Some((9_300, 10_700)));
        // 25,350: ceil 27,124.5 -> 27,124 -> 27,100; floor 23,575.5 -> 23,576 -> 23,600.
        assert_eq!(r.band(25_350), Some((23_600, 27_100)));
        // 50,000: 53,500 and 46,500 both on tick.
        assert_eq!(r.band(50_000), Some((46_500, 53_500)));
        // 9,990: ceiling 10,689.3 -> 10,689 -> 10,650; floor 9,290.7 -> 9,291 -> 9,300.
        assert_eq!(r.band(9_990), Some((9_300, 10_650)));
        // 47,000: ceiling 50,290 -> 50,200 (tick 100); floor 43,710 (tick 50) -> 43,750.
        assert_eq!(r.band(47_000), Some((43_750, 50_200)));
        // 53,700: floor 49,941 (tick 50) -> 49,950, a 50-tick price below 50,000.
        assert_eq!(r.band(53_700), Some((49_950, 57_400)));
        // Tiny reference: 15 -> ceiling 16.05 -> 16 -> 10; floor 13.95 -> 14 -> 20.
        assert_eq!(r.band(15), Some((20, 10)));
    }

    #[test]
    fn hnx_upcom_bands() {
        assert_eq!(MarketRules::hnx().band(10_050), Some((9_100, 11_000)));
        assert_eq!(MarketRules::upcom().band(10_000), Some((8_500, 11_500)));
    }

    #[test]
    fn round_to_tick_both_ways() {
        let r = MarketRules::hose();
        assert_eq!(r.round_to_tick(9_995, true), 10_000);
        assert_eq!(r.round_to_tick(9_995, false), 9_990);
        assert_eq!(r.round_to_tick(10_020, false), 10_000);
        assert_eq!(r.round_to_tick(10_020, true), 10_050);
        assert_eq!(r.round_to_tick(49_990, true), 50_000);
        assert_eq!(r.round_to_tick(50_100, true), 50_100);
        assert_eq!(r.round_to_tick(-5, false), -10);
    }

    #[test]
    fn check_order_of_rules() {
        let r = MarketRules::hose();
        let lo = OrderType::Limit;
        assert_eq!(
            r.check(&order(lo, 10_000, 0), 10_000),
            Err(RejectReason::ZeroQuantity)
        );
        assert_eq!(
            r.check(&order(lo, 10_000, 150), 10_000),
            Err(RejectReason::OddLot)
        );
        assert_eq!(
            r.check(&order(lo, 0, 100), 10_000),
            Err(RejectReason::NonPositivePrice)
        );
        assert_eq!(
            r.check(&order(OrderType::Ioc, -10, 100), 10_000),
            Err(RejectReason::NonPositivePrice)
        );
        assert_eq!(
            r.check(&order(lo, 10_010, 100), 10_000),
            Err(RejectReason::OffTick)
        );
        assert_eq!(
            r.check(&order(lo, 9_995, 100), 10_000),
            Err(RejectReason::OffTick)
        );
        assert_eq!(
            r.check(&order(lo, 10_750, 100), 10_000),
            Err(RejectReason::OutsideBand)
        );
        assert_eq!(
            r.check(&order(lo, 9_290, 100), 10_000),
            Err(RejectReason::OutsideBand)
        );
        assert_eq!(r.check(&order(lo, 10_700, 100), 10_000), Ok(()));
        assert_eq!(r.check(&order(OrderType::Fok, 9_300, 200), 10_000), Ok(()));
        let mp = OrderType::Market;
        assert_eq!(r.check(&order(mp, 0, 100), 10_000), Ok(()));
        assert_eq!(
            r.check(&order(mp, 10_000, 100), 10_000),
            Err(RejectReason::MarketOrderWithPrice)
        );
        assert_eq!(
            r.check(&order(mp, 0, 50), 10_000),
            Err(RejectReason::OddLot)
        );
        // MTL, ATO and ATC are priceless like MP.
        for kind in [OrderType::Mtl, OrderType::Ato, OrderType::Atc] {
            assert_eq!(r.check(&order(kind, 0, 100), 10_000), Ok(()));
            assert_eq!(
                r.check(&order(kind, 10_000, 100), 10_000),
                Err(RejectReason::MarketOrderWithPrice)
            );
            assert_eq!(
                r.check(&order(kind, -10, 100), 10_000),
                Err(RejectReason::MarketOrderWithPrice)
            );
        }
        // The quantity cap comes before the lot and the price.
        assert_eq!(
            r.check(&order(lo, 1, MAX_ORDER_QTY + 100), 10_000),
            Err(RejectReason::QuantityTooLarge)
        );
        assert_eq!(r.check(&order(lo, 10_000, MAX_ORDER_QTY), 10_000), Ok(()));
        let n = MarketRules::none();
        assert_eq!(
            n.check(&order(lo, 1, MAX_ORDER_QTY + 1), 10),
            Err(RejectReason::QuantityTooLarge)
        );
        assert_eq!(n.check(&order(lo, 1, 1), 10_000), Ok(()));
        assert_eq!(n.check(&order(lo, 1_000_000, 7), 10), Ok(()));
        assert_eq!(
            n.check(&order(lo, 0, 7), 10),
            Err(RejectReason::NonPositivePrice)
        );
    }

    #[test]
    fn parse_names() {
        for name in ["hose", "hnx", "upcom", "none"] {
            let r: MarketRules = name.parse().unwrap();
            assert_eq!(r.name(), name);
        }
        assert_eq!("HOSE".parse::<MarketRules>(), Ok(MarketRules::hose()));
        let err = "nyse".parse::<MarketRules>().unwrap_err();
        assert!(err.to_string().contains("nyse") && err.to_string().contains("hose"));
    }
}
