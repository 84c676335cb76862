//! The stateful checks made BEFORE sequencing: listing, order-id uniqueness, market rules and
//! cancel ownership. The grid's manager runs it; local replay runs it too (via
//! [`crate::Exchange`]). Whether a cancelled order is still live is the engine's call.

use crate::idmap::IdMap;
use crate::rules::MarketRules;
use crate::securities::SecurityTable;
use crate::types::{BrokerId, Command, OrderId, Price, RejectReason, SecurityId};

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

/// Pre-sequencing validator.
#[derive(Clone, Debug)]
pub struct Gateway {
    rules: MarketRules,
    securities: SecurityTable,
    /// Per security id: its daily band (computed once; `None` if the rules have no band).
    bands: Vec<Option<(Price, Price)>>,
    ids: IdMap<Seen>,
    /// Highest order id any NEW has used (a hint for clients choosing fresh ids).
    max_id: u64,
}

impl Gateway {
    pub fn new(rules: MarketRules, securities: SecurityTable) -> Self {
        let bands = securities.iter().map(|(_, _, r)| rules.band(r)).collect();
        Self {
            rules,
            bands,
            securities,
            ids: IdMap::new(Seen::NONE),
            max_id: 0,
        }
    }

    pub fn securities(&self) -> &SecurityTable {
        &self.securities
    }

    pub fn rules(&self) -> &MarketRules {
        &self.rules
    }

    /// Checks one command and records its effect on the gateway's state.
    ///
    /// NEW: every NEW burns its id (whatever the outcome) unless the id was already used.
    pub fn check(&mut self, cmd: &Command) -> Result<(), RejectReason> {
        match cmd {
            Command::New(o) => {
                let band = self.bands.get(o.security.0 as usize).copied();
                if self.ids.contains(o.id.0) {
                    // An unknown security is reported first, as documented.
                    return Err(if band.is_none() {
                        RejectReason::UnknownSecurity
                    } else {
                        RejectReason::DuplicateOrderId
                    });
                }
                let result = match band {
                    None => Err(RejectReason::UnknownSecurity),
                    Some(band) => self.rules.check_in_band(o, band),
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
            Command::Cancel(c) => self.check_owner(c.id, c.broker, c.security),
            Command::Amend(a) => self.check_owner(a.id, a.broker, a.security),
            // TODO(trading day): the phase table.
            Command::Phase(_) => Ok(()),
        }
    }

    /// CANCEL and AMEND: the order was accepted, for this security, from this broker.
    fn check_owner(
        &self,
        id: OrderId,
        broker: BrokerId,
        security: SecurityId,
    ) -> Result<(), RejectReason> {
        match self.ids.get(id.0).and_then(|s| s.accepted()) {
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

    /// The highest order id used so far by any NEW (0 if none): ids above it are free.
    pub fn max_order_id(&self) -> u64 {
        self.max_id
    }

    /// Owner and security of an accepted NEW.
    pub fn owner(&self, id: OrderId) -> Option<(BrokerId, SecurityId)> {
        self.ids.get(id.0).and_then(|s| s.accepted())
    }

    /// Records a NEW that was rejected (journal recovery): its id stays burnt.
    pub fn restore_rejected(&mut self, o: &crate::types::NewOrder) {
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

    /// The next day's reference price of `security` (the engine reports it at the close): the
    /// daily band follows it.
    pub fn set_reference(&mut self, security: SecurityId, price: Price) {
        if let Some(band) = self.bands.get_mut(security.0 as usize) {
            *band = self.rules.band(price);
        }
    }

    /// Records a command already known to be accepted (journal recovery), without checks.
    pub fn restore(&mut self, cmd: &Command) {
        if let Command::New(o) = cmd {
            let seen = Seen {
                state: ACCEPTED,
                broker: o.broker,
                security: o.security,
            };
            self.ids.set(o.id.0, seen);
            self.max_id = self.max_id.max(o.id.0);
        }
    }
}
