//! The strategies. Each module holds one kind's parameters (a section of the population file,
//! with defaults and range checks) and its decision logic.

pub mod market_maker;
pub mod momentum;
pub mod noise;
pub mod random;
pub mod value;

use matching::{OrderType, Phase, Qty, Side};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// A parameter out of range: `(field, explanation)`.
pub type ParamError = (&'static str, String);

/// Checks a probability.
pub(crate) fn share(name: &'static str, v: f64) -> Result<(), ParamError> {
    if v.is_finite() && (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err((
            name,
            format!("must be a probability between 0 and 1, got {v}"),
        ))
    }
}

/// Checks an integer range.
pub(crate) fn within(name: &'static str, v: u64, lo: u64, hi: u64) -> Result<(), ParamError> {
    if (lo..=hi).contains(&v) {
        Ok(())
    } else {
        Err((name, format!("must be between {lo} and {hi}, got {v}")))
    }
}

/// Checks a `min_lots..=max_lots` pair.
pub(crate) fn lot_range(min: u32, max: u32) -> Result<(), ParamError> {
    within("min_lots", u64::from(min), 1, 100_000)?;
    within("max_lots", u64::from(max), 1, 100_000)?;
    if min > max {
        return Err((
            "max_lots",
            format!("must be at least min_lots ({min}), got {max}"),
        ));
    }
    Ok(())
}

/// A random quantity of `min..=max` board lots.
pub(crate) fn random_qty(rng: &mut ChaCha8Rng, min: u32, max: u32, lot: Qty) -> Qty {
    let lots = rng.gen_range(min.min(max)..=max.max(min));
    Qty::from(lots) * lot
}

pub(crate) fn random_side(rng: &mut ChaCha8Rng) -> Side {
    if rng.gen_bool(0.5) {
        Side::Buy
    } else {
        Side::Sell
    }
}

/// The call-auction market order type of a call phase.
pub(crate) fn auction_kind(phase: Phase) -> Option<OrderType> {
    match phase {
        Phase::Ato => Some(OrderType::Ato),
        Phase::Atc => Some(OrderType::Atc),
        _ => None,
    }
}

/// `+1` for a buy, `-1` for a sell: how many ticks "more aggressive" means.
pub(crate) fn sign(side: Side) -> i64 {
    match side {
        Side::Buy => 1,
        Side::Sell => -1,
    }
}

#[cfg(test)]
pub(crate) mod testkit {
    //! Hand-made views and a context around them, for the kinds' decision tests.

    use std::collections::VecDeque;

    use matching::{Command, MarketRules, Phase, Price, Qty, SecurityId};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use crate::account::Account;
    use crate::agent::{Agent, Ctx, Signals};
    use crate::fundamental::{Fundamental, FundamentalParams};
    use crate::view::{Bar, Level, MarketView, SecurityView};

    pub const SEC: SecurityId = SecurityId(0);

    /// A one-security view with reference 20,000 (tick 50, band 18,600..21,400) and the given
    /// touch.
    pub fn view(phase: Phase, bids: &[(Price, Qty)], asks: &[(Price, Qty)]) -> MarketView {
        let lv = |side: &[(Price, Qty)]| {
            side.iter()
                .map(|&(price, qty)| Level { price, qty })
                .collect()
        };
        MarketView {
            day: 0,
            step: 100,
            steps_per_day: 345,
            time: 0,
            phase,
            securities: vec![SecurityView {
                id: SEC,
                code: "AAA".into(),
                reference: 20_000,
                band: MarketRules::hose().band(20_000),
                bids: lv(bids),
                asks: lv(asks),
                last_price: None,
                trades: VecDeque::new(),
                bars: VecDeque::new(),
                day_volume: 0,
            }],
        }
    }

    /// Appends bars with these closes.
    pub fn with_closes(mut v: MarketView, closes: &[Price]) -> MarketView {
        let s = &mut v.securities[0];
        for &c in closes {
            let step = s.bars.len() as u32;
            s.bars
                .push_back(Bar::flat(0, step, 0, Phase::Continuous, c));
        }
        s.last_price = closes.last().copied();
        v
    }

    /// Runs one decision of `agent` and returns its commands.
    pub fn decide(
        agent: &mut dyn Agent,
        view: &MarketView,
        account: &Account,
        fundamental: &Fundamental,
        rng: &mut ChaCha8Rng,
    ) -> Vec<Command> {
        let rules = MarketRules::hose();
        let mut next_id = 1_000;
        let mut out = Vec::new();
        let mut ctx = Ctx::new(
            view,
            account,
            &rules,
            Signals { fundamental },
            rng,
            matching::BrokerId(7),
            &mut next_id,
            &mut out,
        );
        agent.decide(&mut ctx);
        out
    }

    pub fn flat_fundamental(value: f64) -> Fundamental {
        let params = FundamentalParams {
            volatility: 0.0,
            shocks_per_day: 0.0,
            ..FundamentalParams::default()
        };
        Fundamental::new(params, vec![value], 1, 1.0)
    }

    /// A fundamental with the default dynamics, mean `mean`, currently at `value`.
    pub fn fundamental(mean: f64, value: f64) -> Fundamental {
        let mut f = Fundamental::new(FundamentalParams::default(), vec![mean], 1, 1.0);
        f.set_value(0, value);
        f
    }

    pub fn rng(seed: u64) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(seed)
    }
}
