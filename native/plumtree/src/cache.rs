//! Recent payloads, kept to answer GRAFTs (the paper's `ReceivedMsgs`
//! payload store). Bounded by count, total bytes and age; the oldest go
//! first.

use crate::message::MessageId;
use crate::{Millis, Round};
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

#[derive(Clone, Debug)]
pub(crate) struct Cached<P> {
    pub payload: Bytes,
    /// Round this node sends the payload with (0 at the origin).
    pub send_round: Round,
    /// The peer that delivered it and the round it came with; `None` at
    /// the origin, and once the tree optimisation used it (so that one
    /// message moves at most one link).
    pub from: Option<(P, Round)>,
    inserted: Millis,
}

pub(crate) struct Cache<P> {
    entries: HashMap<MessageId<P>, Cached<P>>,
    /// Insertion order; every id in `entries` appears here exactly once.
    order: VecDeque<MessageId<P>>,
    bytes: usize,
    max_messages: usize,
    max_bytes: usize,
    max_age: Millis,
}

impl<P: Clone + Eq + Hash> Cache<P> {
    pub fn new(max_messages: usize, max_bytes: usize, max_age: Millis) -> Cache<P> {
        Cache {
            entries: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            max_messages,
            max_bytes,
            max_age,
        }
    }

    /// Keeps `payload` (unless the id is already cached or the payload alone
    /// exceeds the byte bound), evicting the oldest entries to make room.
    pub fn insert(
        &mut self,
        now: Millis,
        id: MessageId<P>,
        payload: Bytes,
        send_round: Round,
        from: Option<(P, Round)>,
    ) {
        if self.entries.contains_key(&id) || payload.len() > self.max_bytes {
            return;
        }
        self.evict(now);
        while self.entries.len() >= self.max_messages || self.bytes + payload.len() > self.max_bytes
        {
            self.pop_oldest();
        }
        self.bytes += payload.len();
        self.order.push_back(id.clone());
        self.entries.insert(
            id,
            Cached {
                payload,
                send_round,
                from,
                inserted: now,
            },
        );
    }

    pub fn get(&self, id: &MessageId<P>) -> Option<&Cached<P>> {
        self.entries.get(id)
    }

    pub fn get_mut(&mut self, id: &MessageId<P>) -> Option<&mut Cached<P>> {
        self.entries.get_mut(id)
    }

    /// Ids inserted at `since` or later, with the round each is sent with,
    /// newest first.
    pub fn since(&self, since: Millis) -> impl Iterator<Item = (&MessageId<P>, Round)> {
        self.order.iter().rev().map_while(move |id| {
            let c = self.entries.get(id)?;
            (c.inserted >= since).then_some((id, c.send_round))
        })
    }

    /// Drops entries at least `max_age` old.
    pub fn evict(&mut self, now: Millis) {
        while let Some(inserted) = self.oldest() {
            if now.saturating_sub(inserted) < self.max_age {
                break;
            }
            self.pop_oldest();
        }
    }

    /// When the oldest entry was inserted.
    pub fn oldest(&self) -> Option<Millis> {
        self.order
            .front()
            .and_then(|id| self.entries.get(id))
            .map(|c| c.inserted)
    }

    pub fn max_age(&self) -> Millis {
        self.max_age
    }

    fn pop_oldest(&mut self) {
        if let Some(id) = self.order.pop_front() {
            if let Some(c) = self.entries.remove(&id) {
                self.bytes -= c.payload.len();
            }
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(seq: u64) -> MessageId<u32> {
        MessageId {
            origin: 1,
            incarnation: 0,
            seq,
        }
    }

    fn bytes(n: usize) -> Bytes {
        Bytes::from(vec![7u8; n])
    }

    #[test]
    fn count_bound_evicts_oldest_first() {
        let mut c = Cache::new(3, 1000, 1000);
        for seq in 0..5 {
            c.insert(0, id(seq), bytes(1), 0, None);
        }
        assert_eq!(c.len(), 3);
        assert!(c.get(&id(1)).is_none());
        assert!(c.get(&id(2)).is_some() && c.get(&id(4)).is_some());
    }

    #[test]
    fn byte_bound_holds_and_oversized_payloads_are_not_kept() {
        let mut c = Cache::new(100, 10, 1000);
        c.insert(0, id(0), bytes(4), 0, None);
        c.insert(0, id(1), bytes(4), 0, None);
        c.insert(0, id(2), bytes(4), 0, None);
        assert_eq!((c.len(), c.bytes()), (2, 8));
        assert!(c.get(&id(0)).is_none());
        c.insert(0, id(3), bytes(11), 0, None);
        assert!(c.get(&id(3)).is_none());
        assert_eq!(c.bytes(), 8);
    }

    #[test]
    fn age_bound_evicts_on_evict_and_on_insert() {
        let mut c = Cache::new(100, 100, 50);
        c.insert(0, id(0), bytes(1), 0, None);
        c.insert(30, id(1), bytes(1), 0, None);
        c.evict(49);
        assert_eq!(c.len(), 2);
        c.evict(50);
        assert_eq!(c.len(), 1);
        assert_eq!(c.oldest(), Some(30));
        c.insert(80, id(2), bytes(1), 0, None);
        assert_eq!(c.len(), 1);
        assert_eq!(c.bytes(), 1);
    }

    #[test]
    fn since_lists_the_newest_entries_down_to_a_time() {
        let mut c = Cache::new(10, 100, 100);
        for (at, seq) in [(0, 0), (10, 1), (20, 2)] {
            c.insert(at, id(seq), bytes(1), seq as Round, None);
        }
        let seqs = |since| c.since(since).map(|(i, r)| (i.seq, r)).collect::<Vec<_>>();
        assert_eq!(seqs(10), vec![(2, 2), (1, 1)]);
        assert_eq!(seqs(21), vec![]);
        assert_eq!(seqs(0).len(), 3);
    }

    #[test]
    fn reinserting_an_id_keeps_the_first_copy() {
        let mut c = Cache::new(10, 100, 100);
        c.insert(0, id(0), bytes(1), 0, None);
        c.insert(1, id(0), bytes(5), 4, None);
        assert_eq!((c.len(), c.bytes()), (1, 1));
        assert_eq!(c.get(&id(0)).unwrap().send_round, 0);
    }
}
