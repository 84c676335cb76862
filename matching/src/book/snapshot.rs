//! Book images: export, validation, import.

use super::{key_of, Book, OrderIndex, Slot, NIL};
use crate::image::{BookImage, ImportError, RestingKind, RestingOrder};
use crate::rules::MarketRules;
use crate::types::{BrokerId, OrderId, Phase, Side, MAX_ORDER_QTY};

impl Book {
    /// The book's exact state as plain data.
    pub(crate) fn export(&self) -> BookImage {
        let side = |side: Side| {
            self.priority(side)
                .map(|slot| {
                    let s = &self.slots[slot as usize];
                    RestingOrder {
                        id: OrderId(s.id),
                        broker: BrokerId(s.broker),
                        qty: s.qty,
                        kind: s.kind,
                        price: s.price,
                    }
                })
                .collect()
        };
        BookImage {
            security: self.security,
            phase: self.phase,
            reference: self.reference,
            last_trade: self.last_trade,
            bids: side(Side::Buy),
            asks: side(Side::Sell),
        }
    }

    /// Checks that `image` is a state some history could have produced (the engine checks
    /// the listing and the ids' uniqueness across books).
    pub(crate) fn validate(image: &BookImage) -> Result<(), ImportError> {
        if image.phase == Phase::Closed && !(image.bids.is_empty() && image.asks.is_empty()) {
            return Err(ImportError::RestingWhileClosed);
        }
        let mut best = [None, None];
        for (i, (side, orders)) in [(Side::Buy, &image.bids), (Side::Sell, &image.asks)]
            .into_iter()
            .enumerate()
        {
            // Priority order: (0 for ATO/ATC, 1 for limit; then the side-normalised price
            // from best to worst) never decreases.
            let mut previous: Option<(u8, i64)> = None;
            for o in orders {
                if o.qty == 0 || o.qty > MAX_ORDER_QTY {
                    return Err(ImportError::BadQuantity {
                        id: o.id,
                        qty: o.qty,
                    });
                }
                let rank = match o.kind {
                    RestingKind::Limit => (1, !key_of(side, o.price)),
                    RestingKind::Ato | RestingKind::Atc => {
                        let own = match image.phase {
                            Phase::Ato => RestingKind::Ato,
                            Phase::Atc => RestingKind::Atc,
                            _ => RestingKind::Limit,
                        };
                        if o.kind != own || o.price != 0 {
                            return Err(ImportError::KindOutOfPhase {
                                id: o.id,
                                kind: o.kind,
                                phase: image.phase,
                            });
                        }
                        (0, 0)
                    }
                };
                if previous.is_some_and(|p| rank < p) {
                    return Err(ImportError::OutOfOrder(o.id));
                }
                previous = Some(rank);
                if o.kind == RestingKind::Limit && best[i].is_none() {
                    best[i] = Some(o.price);
                }
            }
        }
        if let [Some(bid), Some(ask)] = best {
            if !image.phase.is_call() && bid >= ask {
                return Err(ImportError::Crossed { bid, ask });
            }
        }
        Ok(())
    }

    /// Builds a book from a validated image whose ids are free in `index`.
    pub(crate) fn from_image(
        rules: MarketRules,
        image: &BookImage,
        index: &mut OrderIndex,
    ) -> Self {
        let mut book = Book::new(image.security, rules, image.reference);
        book.phase = image.phase;
        book.last_trade = image.last_trade;
        for (side, orders) in [(Side::Buy, &image.bids), (Side::Sell, &image.asks)] {
            for o in orders {
                book.rest(
                    Slot {
                        id: o.id.0,
                        qty: o.qty,
                        price: o.price,
                        broker: o.broker.0,
                        next: NIL,
                        prev: NIL,
                        side,
                        kind: o.kind,
                    },
                    index,
                );
            }
        }
        book
    }
}
