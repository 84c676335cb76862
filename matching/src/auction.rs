//! The call auction's price rule (DESIGN.md, "The trading day", steps 1-3), as a pure function
//! of aggregated levels. The book's uncross, [`crate::Engine::indicative`] and outside users (a
//! market-data feed deriving the indicative price from its L2 mirror) share this one copy.
//!
//! 1. Candidates: every limit price resting on either side; only when no limit order rests is
//!    the anchor the one candidate.
//! 2. D(p) = market buys + limit buys priced >= p; S(p) = market sells + limit sells priced
//!    <= p; V(p) = min(D, S).
//! 3. The price maximises V; ties go to the smallest |p - anchor| (in price, not ticks), then
//!    to the higher price. V = 0 means no auction.
//!
//! One merge pass over both sides' levels: O(levels), no allocation. Sums are `u128`, so no
//! input can overflow.

use crate::types::{Price, Qty};

/// The auction price and volume for a call book, or `None` when nothing would trade.
///
/// `bids` and `asks` are limit levels `(price, qty)` best first (bids by descending price, asks
/// by ascending price, as [`crate::Engine::depth`] returns them); `market_buy` and
/// `market_sell` are the resting ATO/ATC quantities; `anchor` is the last trade price since
/// the last close, else the reference price. Levels out of order give a meaningless answer but
/// never a panic; a level repeated at one price is summed.
pub fn clearing_price(
    bids: &[(Price, Qty)],
    asks: &[(Price, Qty)],
    market_buy: Qty,
    market_sell: Qty,
    anchor: Price,
) -> Option<(Price, Qty)> {
    clear(
        market_buy,
        bids.iter().rev().copied(),
        market_sell,
        asks.iter().copied(),
        anchor,
    )
}

/// The best candidate so far: highest volume, then nearest the anchor, then highest price.
struct Best {
    anchor: Price,
    found: Option<(Price, u128)>,
}

impl Best {
    fn consider(&mut self, price: Price, volume: u128) {
        let better = match self.found {
            None => true,
            Some((p, v)) => {
                let (d, best_d) = (price.abs_diff(self.anchor), p.abs_diff(self.anchor));
                volume > v || (volume == v && (d < best_d || (d == best_d && price > p)))
            }
        };
        if better {
            self.found = Some((price, volume));
        }
    }
}

/// The rule over levels in ASCENDING price order on both sides (so one forward merge gives the
/// running supply; demand starts at its total and drops as bid prices are passed).
pub(crate) fn clear<B, A>(
    market_buy: Qty,
    bids_ascending: B,
    market_sell: Qty,
    asks_ascending: A,
    anchor: Price,
) -> Option<(Price, Qty)>
where
    B: Iterator<Item = (Price, Qty)> + Clone,
    A: Iterator<Item = (Price, Qty)>,
{
    let limit_bids: u128 = bids_ascending.clone().map(|(_, q)| u128::from(q)).sum();
    // D(p) for p at or below the lowest bid: every buy counts.
    let mut demand = u128::from(market_buy) + limit_bids;
    let mut supply = u128::from(market_sell);
    let mut bids = bids_ascending.peekable();
    let mut asks = asks_ascending.peekable();
    let mut best = Best {
        anchor,
        found: None,
    };
    let mut any_limit = false;
    loop {
        let price = match (bids.peek(), asks.peek()) {
            (None, None) => break,
            (Some(&(b, _)), None) => b,
            (None, Some(&(a, _))) => a,
            (Some(&(b, _)), Some(&(a, _))) => b.min(a),
        };
        any_limit = true;
        // Sells priced <= p join the supply at p.
        while let Some(&(a, q)) = asks.peek() {
            if a > price {
                break;
            }
            supply += u128::from(q);
            asks.next();
        }
        best.consider(price, demand.min(supply));
        // Bids priced p still count at p; above p they no longer do.
        while let Some(&(b, q)) = bids.peek() {
            if b > price {
                break;
            }
            demand = demand.saturating_sub(u128::from(q));
            bids.next();
        }
    }
    if !any_limit {
        best.consider(anchor, u128::from(market_buy).min(u128::from(market_sell)));
    }
    match best.found {
        Some((price, volume)) if volume > 0 => {
            Some((price, Qty::try_from(volume).unwrap_or(Qty::MAX)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::clearing_price;

    #[test]
    fn maximises_volume() {
        // Bids 10 @ 102, 10 @ 101; asks 5 @ 100, 10 @ 101. V(100) = 5, V(101) = 15, V(102) = 10.
        let bids = [(102, 10), (101, 10)];
        let asks = [(100, 5), (101, 10)];
        assert_eq!(clearing_price(&bids, &asks, 0, 0, 50), Some((101, 15)));
    }

    #[test]
    fn ties_go_to_the_anchor_then_higher() {
        // Bid 10 @ 103, ask 10 @ 100: V = 10 at 100 and at 103.
        let bids = [(103, 10)];
        let asks = [(100, 10)];
        assert_eq!(clearing_price(&bids, &asks, 0, 0, 99), Some((100, 10)));
        assert_eq!(clearing_price(&bids, &asks, 0, 0, 104), Some((103, 10)));
        // Anchor 102 is 2 away from both 100 and 104: the higher price wins.
        assert_eq!(
            clearing_price(&[(104, 10)], &[(100, 10)], 0, 0, 102),
            Some((104, 10))
        );
    }

    #[test]
    fn only_market_orders_trade_at_the_anchor() {
        assert_eq!(clearing_price(&[], &[], 300, 200, 777), Some((777, 200)));
        assert_eq!(clearing_price(&[], &[], 300, 0, 777), None);
        // A limit order anywhere removes the anchor from the candidates.
        assert_eq!(
            clearing_price(&[(500, 1)], &[], 300, 200, 777),
            Some((500, 200))
        );
    }

    #[test]
    fn no_cross_no_auction() {
        assert_eq!(clearing_price(&[(99, 10)], &[(100, 10)], 0, 0, 100), None);
        assert_eq!(clearing_price(&[], &[], 0, 0, 100), None);
    }

    #[test]
    fn huge_quantities_do_not_overflow() {
        let m = u64::MAX;
        assert_eq!(
            clearing_price(&[(10, m), (9, m)], &[(9, m), (10, m)], m, m, 10),
            Some((10, u64::MAX))
        );
    }
}
