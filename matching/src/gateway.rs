//! The stateful checks made BEFORE sequencing: listing, order-id uniqueness, market rules and
//! the phase table for a NEW, cancel and amend ownership. The grid's manager runs it; local
//! replay runs it too (via [`crate::Exchange`]). Whether a cancelled or amended order is still
//! live, an amend's new price and quantity, and the phase of a cancel or amend are the
//! engine's call (they come after liveness in the order of checks).
//!
//! The registry of used ids is split: ids in memory, and ids the caller moved out
//! ([`Gateway::forget`], e.g. to an on-disk index of finished orders). [`Gateway::check_with`]
//! asks the caller's archive about an id only when memory does not know it, so a day of fresh,
//! increasing ids never leaves memory, and memory holds only the ids not yet archived.

use crate::idmap::{IdMap, IdTable};
use crate::rules::MarketRules;
use crate::securities::SecurityTable;
use crate::types::{BrokerId, Command, NewOrder, OrderId, Phase, Price, RejectReason, SecurityId};

/// What the gateway remembers about an order id (12 bytes, kept flat for the id table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Seen {
    state: u8,
    broker: BrokerId,
    security: SecurityId,
}

const UNUSED: u8 = 0;
/// Used by a rejected NEW: the id is burnt but nothing can be cancelled.
const REJECTED: u8 = 1;
/// Accepted NEW: `broker` and `security` are its owner and book.
const ACCEPTED: u8 = 2;

impl Seen {
    const NONE: Seen = Seen {
        state: UNUSED,
        broker: BrokerId(0),
        security: SecurityId(0),
    };
    fn accepted(&self) -> Option<(BrokerId, SecurityId)> {
        (self.state == ACCEPTED).then_some((self.broker, self.security))
    }
}

/// What an archive remembers of an id the gateway forgot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArchivedId {
    pub broker: BrokerId,
    pub security: SecurityId,
    /// A sequenced NEW (false: a NEW rejected before sequencing; its id is only burnt).
    pub accepted: bool,
}

impl ArchivedId {
    fn seen(self) -> Seen {
        Seen {
            state: if self.accepted { ACCEPTED } else { REJECTED },
            broker: self.broker,
            security: self.security,
        }
    }
}

/// Pre-sequencing validator.
#[derive(Clone, Debug)]
pub struct Gateway {
    rules: MarketRules,
    securities: SecurityTable,
    /// Per security id: today's reference price (it follows the engine's `Reference` events).
    references: Vec<Price>,
    /// Per security id: the band of `references` (`None` if the rules have no band).
    bands: Vec<Option<(Price, Price)>>,
    ids: IdMap<Seen>,
    /// Highest order id any NEW has used (a hint for clients choosing fresh ids).
    max_id: u64,
    /// The market-wide phase (a stream starts in CONTINUOUS).
    phase: Phase,
}

impl Gateway {
    pub fn new(rules: MarketRules, securities: SecurityTable) -> Self {
        let references: Vec<Price> = securities.iter().map(|(_, _, r)| r).collect();
        let bands = references.iter().map(|&r| rules.band(r)).collect();
        Self {
            rules,
            references,
            bands,
            securities,
            ids: IdMap::new(Seen::NONE),
            max_id: 0,
            phase: Phase::Continuous,
        }
    }

    /// The market-wide phase, as the last PHASE command set it.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Today's reference price of `sec` (`None` if it is not listed).
    pub fn reference(&self, sec: SecurityId) -> Option<Price> {
        self.references.get(sec.0 as usize).copied()
    }

    /// Sets `sec`'s reference price (the engine's `Reference` event at the close); the band
    /// follows. Ignored for an unlisted security.
    pub fn set_reference(&mut self, sec: SecurityId, price: Price) {
        let i = sec.0 as usize;
        if let (Some(r), Some(b)) = (self.references.get_mut(i), self.bands.get_mut(i)) {
            *r = price;
            *b = self.rules.band(price);
        }
    }

    pub fn securities(&self) -> &SecurityTable {
        &self.securities
    }

    pub fn rules(&self) -> &MarketRules {
        &self.rules
    }

    /// Checks one command and records its effect on the gateway's state (every id is in
    /// memory: nothing was ever forgotten).
    ///
    /// NEW: `unknown_security`, `duplicate_order_id`, the rules, then the phase table; every
    /// NEW burns its id (whatever the outcome) unless the id was already used.
    /// CANCEL/AMEND: `unknown_order` (also for an order of another security), `not_owner`.
    /// PHASE: always accepted; it becomes the gateway's phase.
    pub fn check(&mut self, cmd: &Command) -> Result<(), RejectReason> {
        let none = |_: OrderId| Ok::<_, std::convert::Infallible>(None);
        match self.check_with(cmd, none) {
            Ok(r) => r,
            Err(e) => match e {},
        }
    }

    /// [`Self::check`] for a gateway some of whose ids were forgotten: `archive` is asked about
    /// an id memory does not hold (only then). Its error (an I/O failure) is returned as is,
    /// and the gateway is left unchanged.
    pub fn check_with<E>(
        &mut self,
        cmd: &Command,
        mut archive: impl FnMut(OrderId) -> Result<Option<ArchivedId>, E>,
    ) -> Result<Result<(), RejectReason>, E> {
        let mut seen = |ids: &IdMap<Seen>, id: OrderId| -> Result<Option<Seen>, E> {
            match ids.get(id.0) {
                Some(s) => Ok(Some(s)),
                None => Ok(archive(id)?.map(ArchivedId::seen)),
            }
        };
        Ok(match cmd {
            Command::New(o) => {
                let band = self.bands.get(o.security.0 as usize).copied();
                if seen(&self.ids, o.id)?.is_some() {
                    // An unknown security is reported first, as documented.
                    return Ok(Err(if band.is_none() {
                        RejectReason::UnknownSecurity
                    } else {
                        RejectReason::DuplicateOrderId
                    }));
                }
                let result = match band {
                    None => Err(RejectReason::UnknownSecurity),
                    Some(band) => self
                        .rules
                        .check_in_band(o, band)
                        .and_then(|()| self.phase.admits_new(o.kind)),
                };
                let state = if result.is_ok() { ACCEPTED } else { REJECTED };
                self.max_id = self.max_id.max(o.id.0);
                self.ids.insert_new(
                    o.id.0,
                    Seen {
                        state,
                        broker: o.broker,
                        security: o.security,
                    },
                );
                result
            }
            Command::Cancel(c) => {
                let s = seen(&self.ids, c.id)?;
                Self::check_owner(s, c.broker, c.security)
            }
            Command::Amend(a) => {
                let s = seen(&self.ids, a.id)?;
                Self::check_owner(s, a.broker, a.security)
            }
            Command::Phase(p) => {
                self.phase = *p;
                Ok(())
            }
        })
    }

    /// CANCEL and AMEND: the order was accepted, for this security, from this broker.
    fn check_owner(
        seen: Option<Seen>,
        broker: BrokerId,
        security: SecurityId,
    ) -> Result<(), RejectReason> {
        match seen.and_then(|s| s.accepted()) {
            Some((owner, sec)) if sec == security => {
                if owner == broker {
                    Ok(())
                } else {
                    Err(RejectReason::NotOwner)
                }
            }
            _ => Err(RejectReason::UnknownOrder),
        }
    }

    /// Drops `id` from memory once the caller's archive answers for it (see
    /// [`Self::check_with`]). False if memory did not hold it.
    pub fn forget(&mut self, id: OrderId) -> bool {
        self.ids.remove(id.0).is_some()
    }

    /// Ids held in memory.
    pub fn ids_in_memory(&self) -> usize {
        self.ids.len()
    }

    /// Whether memory holds `id` (whatever an archive may hold).
    pub fn remembers(&self, id: OrderId) -> bool {
        self.ids.contains(id.0)
    }

    /// The highest order id used so far by any NEW (0 if none): ids above it are free.
    pub fn max_order_id(&self) -> u64 {
        self.max_id
    }

    /// Owner and security of an accepted NEW.
    pub fn owner(&self, id: OrderId) -> Option<(BrokerId, SecurityId)> {
        self.ids.get(id.0).and_then(|s| s.accepted())
    }

    /// Records a command already known to be accepted (journal recovery), without checks: a
    /// NEW's id becomes its owner's, a PHASE becomes the phase. References are not journaled:
    /// feed the replayed engine's `Reference` events to [`Self::set_reference`].
    pub fn restore(&mut self, cmd: &Command) {
        match cmd {
            Command::New(o) => {
                let seen = Seen {
                    state: ACCEPTED,
                    broker: o.broker,
                    security: o.security,
                };
                self.ids.set(o.id.0, seen);
                self.max_id = self.max_id.max(o.id.0);
            }
            Command::Phase(p) => self.phase = *p,
            Command::Cancel(_) | Command::Amend(_) => {}
        }
    }

    /// Records an accepted order (recovery from a book snapshot: a live order), without checks.
    pub fn restore_accepted(&mut self, id: OrderId, broker: BrokerId, security: SecurityId) {
        self.ids.set(
            id.0,
            Seen {
                state: ACCEPTED,
                broker,
                security,
            },
        );
        self.max_id = self.max_id.max(id.0);
    }

    /// Raises the highest used order id (recovery: ids used before, now archived).
    pub fn restore_max_id(&mut self, id: u64) {
        self.max_id = self.max_id.max(id);
    }

    /// Records a NEW the gateway rejected (journal recovery): its id stays burnt, so re-using
    /// it after a restart is still `duplicate_order_id`. An id already in use keeps its record
    /// (a rejected duplicate never changed the original).
    pub fn restore_rejected(&mut self, o: &NewOrder) {
        if !self.ids.contains(o.id.0) {
            self.ids.insert_new(
                o.id.0,
                Seen {
                    state: REJECTED,
                    broker: o.broker,
                    security: o.security,
                },
            );
        }
        self.max_id = self.max_id.max(o.id.0);
    }
}
