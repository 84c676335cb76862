//! The population file (TOML): the seed, the securities, the days and steps, and per kind of
//! agent its count, latency and parameters. Unknown keys are errors (a typo must not silently
//! fall back to a default); every value is range-checked with an error naming the field.
//!
//! ```toml
//! seed = 42
//! days = 1
//! steps_per_day = 345          # one-minute steps
//! securities = ["AAA"]         # or "all" (the whole listing)
//!
//! [noise]
//! count = 1000
//! activity = 0.01
//!
//! [market_maker]
//! count = 2
//! max_inventory = 20000
//! ```

use std::fmt;
use std::path::Path;

use matching::{MarketRules, SecurityId, SecurityTable};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

use crate::agent::AgentKind;
use crate::fundamental::FundamentalParams;
use crate::kinds::market_maker::MarketMakerConfig;
use crate::kinds::momentum::MomentumConfig;
use crate::kinds::noise::NoiseConfig;
use crate::kinds::random::RandomConfig;
use crate::kinds::value::ValueConfig;
use crate::kinds::ParamError;
use crate::schedule::{ClockError, Date, DayClock, MAX_STEPS_PER_DAY, MIN_STEPS_PER_DAY};

/// Most agents in one population.
pub const MAX_AGENTS: u64 = 100_000;
/// Most bars the run keeps for its report (days x steps x securities).
pub const MAX_BARS: u64 = 5_000_000;
/// Largest order-entry latency: one hour.
pub const MAX_LATENCY_US: u64 = 3_600_000_000;

/// Why a population file is refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("population file: {0}")]
    Parse(String),
    #[error("population file: `{field}` {message}")]
    Invalid { field: String, message: String },
    #[error("population file: `securities`: {0:?} is not in the listing ([market] listing)")]
    UnknownSecurity(String),
    #[error("population file: no agents (give at least one kind a count)")]
    NoAgents,
    #[error("population file: the listing is empty, nothing to trade")]
    EmptyListing,
}

impl ConfigError {
    fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Which securities the population trades.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Selection {
    /// Every listed security.
    #[default]
    All,
    /// These codes.
    Codes(Vec<String>),
}

impl<'de> Deserialize<'de> for Selection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Selection;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#""all" or a list of security codes"#)
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Selection, E> {
                if s == "all" {
                    Ok(Selection::All)
                } else {
                    Err(E::custom(format!(
                        r#"expected "all" or a list of security codes, got {s:?}"#
                    )))
                }
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Selection, A::Error> {
                let mut codes = Vec::new();
                while let Some(code) = seq.next_element::<String>()? {
                    codes.push(code);
                }
                Ok(Selection::Codes(codes))
            }
        }
        d.deserialize_any(V)
    }
}

/// Lockstep (reproducible) or real time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Every agent decides from the market as of the end of the previous step, and a step
    /// ends only when all its commands are final: same seed, same trades.
    #[default]
    Lockstep,
    /// Steps follow the clock; agents decide from whatever the market shows then.
    Realtime,
}

/// `[market]`: the market for local runs (over the grid the manager's rules and listing hold).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MarketConfig {
    /// Market rules: hose, hnx, upcom or none.
    pub rules: String,
    /// Size of the synthetic listing (`AAA`, `AAB`, ...) the manager also uses by default.
    pub listing: usize,
}

impl Default for MarketConfig {
    fn default() -> Self {
        MarketConfig {
            rules: "hose".into(),
            listing: 200,
        }
    }
}

fn yes() -> bool {
    true
}
fn default_days() -> u32 {
    1
}
fn default_steps() -> u32 {
    345
}
fn default_levels() -> usize {
    5
}
fn default_cash() -> i64 {
    10_000_000_000
}

/// A parsed population file.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Population {
    /// Seeds every agent (with its index) and the fundamental.
    pub seed: u64,
    #[serde(default = "default_days")]
    pub days: u32,
    /// Steps per trading day (345: one-minute steps; at least 23).
    #[serde(default = "default_steps")]
    pub steps_per_day: u32,
    /// First trading day (a TOML date, e.g. `2025-06-02`); weekends are skipped.
    #[serde(default)]
    pub start_date: Option<toml::value::Datetime>,
    #[serde(default)]
    pub securities: Selection,
    /// Price levels per side in the agents' view.
    #[serde(default = "default_levels")]
    pub depth_levels: usize,
    /// Cash each agent starts with (VND).
    #[serde(default = "default_cash")]
    pub starting_cash: i64,
    #[serde(default)]
    pub mode: Mode,
    /// `false`: agents cancel and re-enter an order instead of amending it (venues or
    /// engines without AMEND).
    #[serde(default = "yes")]
    pub use_amend: bool,
    #[serde(default)]
    pub market: MarketConfig,
    #[serde(default)]
    pub fundamental: FundamentalParams,
    #[serde(default)]
    pub noise: NoiseConfig,
    #[serde(default)]
    pub value: ValueConfig,
    #[serde(default)]
    pub momentum: MomentumConfig,
    #[serde(default)]
    pub market_maker: MarketMakerConfig,
    #[serde(default)]
    pub random: RandomConfig,
}

impl Population {
    /// Parses and validates a population file's text.
    pub fn from_toml(text: &str) -> Result<Population, ConfigError> {
        let pop: Population =
            toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string().trim().into()))?;
        pop.validate()?;
        Ok(pop)
    }

    /// Reads, parses and validates a population file.
    pub fn load(path: &Path) -> Result<Population, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Population::from_toml(&text)
    }

    /// The count and latency of every kind, in the fixed kind order.
    pub fn kinds(&self) -> [(AgentKind, u32, u64); 5] {
        [
            (AgentKind::Noise, self.noise.count, self.noise.latency_us),
            (AgentKind::Value, self.value.count, self.value.latency_us),
            (
                AgentKind::Momentum,
                self.momentum.count,
                self.momentum.latency_us,
            ),
            (
                AgentKind::MarketMaker,
                self.market_maker.count,
                self.market_maker.latency_us,
            ),
            (AgentKind::Random, self.random.count, self.random.latency_us),
        ]
    }

    /// Total number of agents.
    pub fn agent_count(&self) -> u64 {
        self.kinds().iter().map(|k| u64::from(k.1)).sum()
    }

    /// The first trading day (default 2025-06-02, a Monday).
    pub fn start(&self) -> Result<Date, ConfigError> {
        let Some(dt) = &self.start_date else {
            return Ok(Date::new(2025, 6, 2).expect("a real date"));
        };
        match (dt.date, dt.time) {
            (Some(d), None) => Date::new(i32::from(d.year), d.month, d.day)
                .ok_or_else(|| ConfigError::invalid("start_date", format!("{dt} is not a date"))),
            _ => Err(ConfigError::invalid(
                "start_date",
                format!("must be a plain date like 2025-06-02, got {dt}"),
            )),
        }
    }

    /// The lockstep clock of the run.
    pub fn clock(&self) -> Result<DayClock, ConfigError> {
        DayClock::new(self.start()?, self.days, self.steps_per_day).map_err(|e| match e {
            ClockError::Steps(n) => ConfigError::invalid(
                "steps_per_day",
                format!(
                    "must be between {MIN_STEPS_PER_DAY} and {MAX_STEPS_PER_DAY} (every phase \
                     needs a step; 345 = one-minute steps), got {n}"
                ),
            ),
            ClockError::NoDays => ConfigError::invalid("days", "must be at least 1"),
        })
    }

    /// The market rules named in `[market]`.
    pub fn rules(&self) -> Result<MarketRules, ConfigError> {
        self.market
            .rules
            .parse()
            .map_err(|e: matching::rules::UnknownRules| {
                ConfigError::invalid("market.rules", e.to_string())
            })
    }

    /// The synthetic listing named in `[market] listing` (the manager's default listing has
    /// the same securities for the same count).
    pub fn listing(&self) -> Result<SecurityTable, ConfigError> {
        SecurityTable::synthetic(self.market.listing)
            .map_err(|e| ConfigError::invalid("market.listing", e.to_string()))
    }

    /// Every check that does not need the listing.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.clock()?;
        if self.days > 250 {
            return Err(ConfigError::invalid(
                "days",
                format!("must be at most 250, got {}", self.days),
            ));
        }
        if !(1..=50).contains(&self.depth_levels) {
            return Err(ConfigError::invalid(
                "depth_levels",
                format!("must be between 1 and 50, got {}", self.depth_levels),
            ));
        }
        if self.starting_cash < 0 {
            return Err(ConfigError::invalid(
                "starting_cash",
                format!("must not be negative, got {}", self.starting_cash),
            ));
        }
        self.rules()?;
        if !(1..=100_000).contains(&self.market.listing) {
            return Err(ConfigError::invalid(
                "market.listing",
                format!("must be between 1 and 100000, got {}", self.market.listing),
            ));
        }
        if let Selection::Codes(codes) = &self.securities {
            if codes.is_empty() {
                return Err(ConfigError::invalid(
                    "securities",
                    r#"is empty: name at least one code, or "all""#,
                ));
            }
        }
        let section = |name: &str, r: Result<(), ParamError>| {
            r.map_err(|(field, msg)| ConfigError::invalid(format!("{name}.{field}"), msg))
        };
        section("fundamental", self.fundamental.check())?;
        section("noise", self.noise.check())?;
        section("value", self.value.check())?;
        section("momentum", self.momentum.check())?;
        section("market_maker", self.market_maker.check())?;
        section("random", self.random.check())?;
        for (kind, count, latency) in self.kinds() {
            if latency > MAX_LATENCY_US {
                return Err(ConfigError::invalid(
                    format!("{}.latency_us", kind.name()),
                    format!("must be at most {MAX_LATENCY_US} (one hour), got {latency}"),
                ));
            }
            if u64::from(count) > MAX_AGENTS {
                return Err(ConfigError::invalid(
                    format!("{}.count", kind.name()),
                    format!("must be at most {MAX_AGENTS}, got {count}"),
                ));
            }
        }
        let total = self.agent_count();
        if total == 0 {
            return Err(ConfigError::NoAgents);
        }
        if total > MAX_AGENTS {
            return Err(ConfigError::invalid(
                "count",
                format!("all kinds together must be at most {MAX_AGENTS} agents, got {total}"),
            ));
        }
        Ok(())
    }

    /// The traded securities in `listing`, sorted by id: every name must be listed.
    pub fn universe(&self, listing: &SecurityTable) -> Result<Vec<SecurityId>, ConfigError> {
        if listing.is_empty() {
            return Err(ConfigError::EmptyListing);
        }
        let mut ids: Vec<SecurityId> = match &self.securities {
            Selection::All => listing.iter().map(|(id, _, _)| id).collect(),
            Selection::Codes(codes) => codes
                .iter()
                .map(|c| match listing.lookup(c) {
                    SecurityId::UNKNOWN => Err(ConfigError::UnknownSecurity(c.clone())),
                    id => Ok(id),
                })
                .collect::<Result<_, _>>()?,
        };
        ids.sort();
        ids.dedup();
        let bars = u64::from(self.days) * u64::from(self.steps_per_day) * ids.len() as u64;
        if bars > MAX_BARS {
            return Err(ConfigError::invalid(
                "securities",
                format!(
                    "days x steps_per_day x securities = {bars} bars, more than the {MAX_BARS} \
                     a run keeps; trade fewer securities, days or steps"
                ),
            ));
        }
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Population::from_toml(text).unwrap_err().to_string()
    }

    #[test]
    fn minimal_file_takes_the_defaults() {
        let p = Population::from_toml("seed = 7\n[noise]\ncount = 3\n").unwrap();
        assert_eq!((p.seed, p.days, p.steps_per_day), (7, 1, 345));
        assert_eq!(p.securities, Selection::All);
        assert_eq!(p.mode, Mode::Lockstep);
        assert!(p.use_amend);
        assert_eq!(p.noise.count, 3);
        assert_eq!(p.noise.activity, NoiseConfig::default().activity);
        assert_eq!(p.value.count, 0);
        assert_eq!(p.agent_count(), 3);
        assert_eq!(p.start().unwrap().to_string(), "2025-06-02");
        assert_eq!(p.rules().unwrap(), MarketRules::hose());
    }

    #[test]
    fn a_full_file_parses() {
        let p = Population::from_toml(
            r#"
            seed = 42
            days = 2
            steps_per_day = 69
            start_date = 2025-06-05
            securities = ["AAB", "AAA"]
            depth_levels = 10
            starting_cash = 5_000_000
            mode = "realtime"
            use_amend = false
            [market]
            rules = "hnx"
            listing = 3
            [fundamental]
            kappa = 0.01
            [noise]
            count = 10
            latency_us = 100
            [value]
            count = 2
            obs_noise = 0.01
            [momentum]
            count = 1
            short = 3
            long = 9
            [market_maker]
            count = 1
            levels = 5
            [random]
            count = 1
            invalid_share = 0.1
            "#,
        )
        .unwrap();
        assert_eq!(p.mode, Mode::Realtime);
        assert!(!p.use_amend);
        assert_eq!(p.agent_count(), 15);
        assert_eq!(p.start().unwrap().to_string(), "2025-06-05");
        assert_eq!(p.momentum.short, 3);
        let listing = SecurityTable::synthetic(3).unwrap();
        assert_eq!(
            p.universe(&listing).unwrap(),
            [SecurityId(0), SecurityId(1)]
        );
    }

    #[test]
    fn errors_name_the_problem() {
        let cases = [
            ("", "missing field `seed`"),
            ("seed = -1\n[noise]\ncount=1", "seed"),
            ("seed = 1", "no agents"),
            (
                "seed = 1\nsteps = 3\n[noise]\ncount=1",
                "unknown field `steps`",
            ),
            (
                "seed = 1\n[noise]\ncount=1\nactivty=0.1",
                "unknown field `activty`",
            ),
            ("seed = 1\n[nosie]\ncount=1", "unknown field `nosie`"),
            (
                "seed = 1\nsteps_per_day = 10\n[noise]\ncount=1",
                "`steps_per_day` must be between 23",
            ),
            (
                "seed = 1\ndays = 0\n[noise]\ncount=1",
                "`days` must be at least 1",
            ),
            (
                "seed = 1\ndays = 251\n[noise]\ncount=1",
                "`days` must be at most 250",
            ),
            (
                "seed = 1\n[noise]\ncount=1\nactivity=1.5",
                "`noise.activity` must be a probability",
            ),
            (
                "seed = 1\n[noise]\ncount=1\nactivity=nan",
                "`noise.activity`",
            ),
            (
                "seed = 1\n[noise]\ncount=1\nmin_lots=5\nmax_lots=2",
                "`noise.max_lots` must be at least min_lots",
            ),
            (
                "seed = 1\n[noise]\ncount=1\nlatency_us=4000000000",
                "`noise.latency_us` must be at most",
            ),
            (
                "seed = 1\n[noise]\ncount=100001",
                "`noise.count` must be at most 100000",
            ),
            (
                "seed = 1\n[noise]\ncount=60000\n[value]\ncount=60000",
                "all kinds together",
            ),
            (
                "seed = 1\n[value]\ncount=1\nobs_noise=-1",
                "`value.obs_noise`",
            ),
            (
                "seed = 1\n[momentum]\ncount=1\nshort=30",
                "`momentum.short` must be below long",
            ),
            (
                "seed = 1\n[market_maker]\ncount=1\nlevels=0",
                "`market_maker.levels`",
            ),
            (
                "seed = 1\n[random]\ncount=1\ncancel_share=0.9\ntaker_share=0.9",
                "`random.taker_share`",
            ),
            (
                "seed = 1\n[fundamental]\nvolatility=5\n[noise]\ncount=1",
                "`fundamental.volatility`",
            ),
            (
                "seed = 1\nsecurities = \"some\"\n[noise]\ncount=1",
                r#"expected "all" or a list"#,
            ),
            (
                "seed = 1\nsecurities = []\n[noise]\ncount=1",
                "`securities` is empty",
            ),
            (
                "seed = 1\nsecurities = [1]\n[noise]\ncount=1",
                "invalid type",
            ),
            (
                "seed = 1\nstart_date = 2025-02-30\n[noise]\ncount=1",
                "start_date",
            ),
            (
                "seed = 1\nstart_date = 2025-06-02T09:00:00\n[noise]\ncount=1",
                "must be a plain date",
            ),
            (
                "seed = 1\nmode = \"fast\"\n[noise]\ncount=1",
                "unknown variant `fast`",
            ),
            (
                "seed = 1\n[market]\nrules = \"nyse\"\n[noise]\ncount=1",
                "`market.rules` unknown market rules",
            ),
            (
                "seed = 1\ndepth_levels = 0\n[noise]\ncount=1",
                "`depth_levels`",
            ),
            (
                "seed = 1\nstarting_cash = -5\n[noise]\ncount=1",
                "`starting_cash`",
            ),
            ("seed = 1\n[noise]\ncount=1\n[noise]\ncount=2", "duplicate"),
            ("seed = 1\n[noise\ncount=1", "population file"),
        ];
        for (text, want) in cases {
            let got = err(text);
            assert!(got.contains(want), "{text:?}\n  got: {got}\n want: {want}");
        }
    }

    #[test]
    fn parse_errors_point_at_the_line() {
        let got = err("seed = 1\n\n[noise]\ncount = \"many\"\n");
        assert!(got.contains("line 4"), "{got}");
    }

    #[test]
    fn universe_checks_the_listing() {
        let listing = SecurityTable::synthetic(3).unwrap();
        let p = Population::from_toml("seed=1\nsecurities=[\"AAA\",\"ZZZ\"]\n[noise]\ncount=1")
            .unwrap();
        assert!(matches!(
            p.universe(&listing),
            Err(ConfigError::UnknownSecurity(c)) if c == "ZZZ"
        ));
        let p = Population::from_toml("seed=1\n[noise]\ncount=1").unwrap();
        assert_eq!(p.universe(&listing).unwrap().len(), 3);
        assert!(matches!(
            p.universe(&SecurityTable::new()),
            Err(ConfigError::EmptyListing)
        ));
        let p = Population::from_toml("seed=1\ndays=250\nsteps_per_day=20700\n[noise]\ncount=1")
            .unwrap();
        assert!(p
            .universe(&listing)
            .unwrap_err()
            .to_string()
            .contains("bars"));
    }
}
