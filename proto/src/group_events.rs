//! [`GroupEvents`]: the events of one [`crate::EventGroup`], held inline when there are few.
//!
//! Nearly every command yields two or three events once the engine's `Accepted` is dropped: an
//! order that rests (`Rested`, `Totals`), a cancel (`Cancelled`, `Totals`), one fill and the rest
//! resting (`Fill`, `Rested`, `Totals`). Each group used to be a heap vector of its own:
//! allocated by the executor, allocated again by the manager's decoder, freed by its core thread,
//! once per order. Inline room for three removes all three; a sweep spills to the heap as before.
//!
//! On the wire it is a sequence, byte for byte what a `Vec<Event>` encodes to. Decoding never
//! reserves more than [`RESERVE_CAP`] events ahead of the ones that actually arrive, whatever
//! length a peer announces (the frame size limit bounds what it can send, not what it claims).

use std::fmt;
use std::ops::{Deref, DerefMut};

use bincode::{Decode, Encode};
use matching::Event;
use serde::de::{SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use smallvec::SmallVec;

/// Events held without a heap allocation.
pub const INLINE_EVENTS: usize = 3;
/// Most events reserved ahead of decoding them.
const RESERVE_CAP: usize = 4096;

/// One group's events (see the module doc).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct GroupEvents(SmallVec<[Event; INLINE_EVENTS]>);

impl GroupEvents {
    pub fn new() -> Self {
        GroupEvents(SmallVec::new())
    }

    pub fn push(&mut self, event: Event) {
        self.0.push(event);
    }

    /// Everything from `at` on, leaving the first `at` events.
    pub fn split_off(&mut self, at: usize) -> GroupEvents {
        let rest = self.0.drain(at..).collect();
        GroupEvents(rest)
    }

    /// Whether the events are on the heap (more than [`INLINE_EVENTS`]).
    pub fn spilled(&self) -> bool {
        self.0.spilled()
    }
}

impl fmt::Debug for GroupEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter()).finish()
    }
}

impl Deref for GroupEvents {
    type Target = [Event];
    fn deref(&self) -> &[Event] {
        &self.0
    }
}

impl DerefMut for GroupEvents {
    fn deref_mut(&mut self) -> &mut [Event] {
        &mut self.0
    }
}

impl From<Vec<Event>> for GroupEvents {
    fn from(events: Vec<Event>) -> Self {
        GroupEvents(SmallVec::from_vec(events))
    }
}

impl FromIterator<Event> for GroupEvents {
    fn from_iter<I: IntoIterator<Item = Event>>(iter: I) -> Self {
        GroupEvents(iter.into_iter().collect())
    }
}

impl Extend<Event> for GroupEvents {
    fn extend<I: IntoIterator<Item = Event>>(&mut self, iter: I) {
        self.0.extend(iter);
    }
}

impl IntoIterator for GroupEvents {
    type Item = Event;
    type IntoIter = smallvec::IntoIter<[Event; INLINE_EVENTS]>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a GroupEvents {
    type Item = &'a Event;
    type IntoIter = std::slice::Iter<'a, Event>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<'a> IntoIterator for &'a mut GroupEvents {
    type Item = &'a mut Event;
    type IntoIter = std::slice::IterMut<'a, Event>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter_mut()
    }
}

impl Serialize for GroupEvents {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter())
    }
}

impl<'de> Deserialize<'de> for GroupEvents {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Events;
        impl<'de> Visitor<'de> for Events {
            type Value = GroupEvents;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sequence of events")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<GroupEvents, A::Error> {
                let mut events = SmallVec::new();
                events.reserve(seq.size_hint().unwrap_or(0).min(RESERVE_CAP));
                while let Some(e) = seq.next_element()? {
                    events.push(e);
                }
                Ok(GroupEvents(events))
            }
        }
        deserializer.deserialize_seq(Events)
    }
}

impl Encode for GroupEvents {
    fn encode<E: bincode::enc::Encoder>(
        &self,
        encoder: &mut E,
    ) -> Result<(), bincode::error::EncodeError> {
        // A sequence: its length as a u64, then the events (what a `Vec<Event>` encodes to).
        (self.0.len() as u64).encode(encoder)?;
        self.0.iter().try_for_each(|e| e.encode(encoder))
    }
}

impl<Context> Decode<Context> for GroupEvents {
    fn decode<D: bincode::de::Decoder<Context = Context>>(
        decoder: &mut D,
    ) -> Result<Self, bincode::error::DecodeError> {
        let claimed = u64::decode(decoder)?;
        let len = usize::try_from(claimed)
            .map_err(|_| bincode::error::DecodeError::OutsideUsizeRange(claimed))?;
        // Room for what the peer claims only up to RESERVE_CAP: the rest grows as events
        // actually arrive, so a false length costs an error, not an allocation.
        let mut events = SmallVec::new();
        events.reserve(len.min(RESERVE_CAP));
        for _ in 0..len {
            events.push(Event::decode(decoder)?);
        }
        Ok(GroupEvents(events))
    }
}

bincode::impl_borrow_decode!(GroupEvents);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec;
    use matching::{CancelReason, OrderId, Qty};

    fn cancelled(id: u64, qty: Qty) -> Event {
        Event::Cancelled {
            id: OrderId(id),
            qty,
            reason: CancelReason::Requested,
        }
    }

    #[test]
    fn encodes_exactly_as_a_vector_of_events_and_back() {
        for n in [0usize, 1, 2, 3, 40] {
            let v: Vec<Event> = (0..n as u64).map(|i| cancelled(i, i + 1)).collect();
            let g = GroupEvents::from(v.clone());
            assert_eq!(g.spilled(), n > INLINE_EVENTS);
            let mut a = Vec::new();
            let mut b = Vec::new();
            codec::encode_frame(&v, &mut a).unwrap();
            codec::encode_frame(&g, &mut b).unwrap();
            assert_eq!(a, b, "{n} events");
            let back: GroupEvents = codec::decode_frame(&a).unwrap().unwrap().0;
            assert_eq!(&back[..], &v[..]);
        }
    }

    #[test]
    fn a_claimed_length_beyond_the_bytes_sent_is_an_error_not_an_allocation() {
        // One event's bytes behind a length claiming 2^40 of them (bincode's u64 marker 253).
        // Reserving the claim would abort the process; the decoder must just run out of bytes.
        let mut frame = Vec::new();
        codec::encode_frame(&vec![cancelled(7, 1)], &mut frame).unwrap();
        let event_bytes = &frame[codec::HEADER_LEN + 1..];
        let mut payload = vec![253u8];
        payload.extend_from_slice(&(1u64 << 40).to_le_bytes());
        payload.extend_from_slice(event_bytes);
        assert!(codec::decode_payload::<GroupEvents>(&payload).is_err());
        // The same bytes with the true length decode.
        let mut honest = vec![1u8];
        honest.extend_from_slice(event_bytes);
        let g: GroupEvents = codec::decode_payload(&honest).unwrap();
        assert_eq!(&g[..], &[cancelled(7, 1)]);
    }

    #[test]
    fn split_off_keeps_the_head_and_returns_the_tail() {
        let mut g: GroupEvents = (0..5).map(|i| cancelled(i, 1)).collect();
        let tail = g.split_off(2);
        assert_eq!(&g[..], &[cancelled(0, 1), cancelled(1, 1)]);
        assert_eq!(
            &tail[..],
            &[cancelled(2, 1), cancelled(3, 1), cancelled(4, 1)]
        );
    }
}
