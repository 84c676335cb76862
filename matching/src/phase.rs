//! The trading-day phase table (DESIGN.md, "The trading day"): which instruction each phase
//! admits. One copy, used by the gateway (NEW) and by the engine (NEW again for robustness,
//! CANCEL and AMEND after their liveness and rule checks).

use crate::types::{OrderType, Phase, RejectReason};

impl Phase {
    /// Whether a NEW order of `kind` may enter in this phase.
    ///
    /// | phase | LO | ATO | ATC | MP, MTL, IOC, FOK |
    /// |---|---|---|---|---|
    /// | ATO | rests | rests | `phase_forbids` | `phase_forbids` |
    /// | CONTINUOUS | matches | `phase_forbids` | `phase_forbids` | match |
    /// | BREAK | `market_closed` | `market_closed` | `market_closed` | `market_closed` |
    /// | ATC | rests | `phase_forbids` | rests | `phase_forbids` |
    /// | CLOSED | `market_closed` | `market_closed` | `market_closed` | `market_closed` |
    #[inline]
    pub fn admits_new(self, kind: OrderType) -> Result<(), RejectReason> {
        let ok = match self {
            Phase::Break | Phase::Closed => return Err(RejectReason::MarketClosed),
            Phase::Ato => matches!(kind, OrderType::Limit | OrderType::Ato),
            Phase::Atc => matches!(kind, OrderType::Limit | OrderType::Atc),
            Phase::Continuous => !kind.is_auction(),
        };
        if ok {
            Ok(())
        } else {
            Err(RejectReason::PhaseForbids)
        }
    }

    /// Whether a CANCEL may act in this phase: CONTINUOUS and BREAK yes; ATO and ATC
    /// `phase_forbids`; CLOSED `market_closed`.
    #[inline]
    pub fn admits_cancel(self) -> Result<(), RejectReason> {
        match self {
            Phase::Continuous | Phase::Break => Ok(()),
            Phase::Ato | Phase::Atc => Err(RejectReason::PhaseForbids),
            Phase::Closed => Err(RejectReason::MarketClosed),
        }
    }

    /// Whether an AMEND may act in this phase: CONTINUOUS only; ATO and ATC `phase_forbids`;
    /// BREAK and CLOSED `market_closed`.
    #[inline]
    pub fn admits_amend(self) -> Result<(), RejectReason> {
        match self {
            Phase::Continuous => Ok(()),
            Phase::Ato | Phase::Atc => Err(RejectReason::PhaseForbids),
            Phase::Break | Phase::Closed => Err(RejectReason::MarketClosed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RejectReason::{MarketClosed as MC, PhaseForbids as PF};

    #[test]
    fn table_for_new_matches_design() {
        // Rows: phase; columns: LO, MP, MTL, IOC, FOK, ATO, ATC (OrderType::ALL order).
        let ok = Ok(());
        let rows: [(Phase, [Result<(), RejectReason>; 7]); 5] = [
            (
                Phase::Ato,
                [ok, Err(PF), Err(PF), Err(PF), Err(PF), ok, Err(PF)],
            ),
            (Phase::Continuous, [ok, ok, ok, ok, ok, Err(PF), Err(PF)]),
            (Phase::Break, [Err(MC); 7]),
            (
                Phase::Atc,
                [ok, Err(PF), Err(PF), Err(PF), Err(PF), Err(PF), ok],
            ),
            (Phase::Closed, [Err(MC); 7]),
        ];
        for (phase, expected) in rows {
            for (kind, want) in OrderType::ALL.into_iter().zip(expected) {
                assert_eq!(phase.admits_new(kind), want, "{phase:?} {kind:?}");
            }
        }
    }

    #[test]
    fn table_for_cancel_and_amend_matches_design() {
        let cancel = [Err(PF), Ok(()), Ok(()), Err(PF), Err(MC)];
        let amend = [Err(PF), Ok(()), Err(MC), Err(PF), Err(MC)];
        for (i, phase) in Phase::ALL.into_iter().enumerate() {
            assert_eq!(phase.admits_cancel(), cancel[i], "{phase:?}");
            assert_eq!(phase.admits_amend(), amend[i], "{phase:?}");
        }
    }
}
