//! crossing: the proofs that peers are in our component (see `crossing.rs`
//! for what proves a peer and what a proof is for), kept like the peer
//! sets of `views.rs`: the members' 16-bit id tags apart from the rest, so
//! the lookup that every SHUFFLE walk through us makes (one to five per
//! walk) reads two cache lines of tags instead of every entry.
//!
//! A bounded set: a peer proven again is renewed in place; a new peer past
//! the bound takes the place of the one proven least recently (the same
//! set an oldest-first queue that moves renewed entries to its back keeps).

use crate::views::{find_tag, tag_of, Tag};
use crate::{Identity, Millis};

pub(crate) struct Proofs<I> {
    tags: Vec<Tag>,
    ids: Vec<I>,
    /// When each was proven last.
    at: Vec<Millis>,
    /// Recency: larger is more recent; the bound evicts the smallest.
    stamps: Vec<u32>,
    next: u32,
}

impl<I> Default for Proofs<I> {
    fn default() -> Self {
        Proofs {
            tags: Vec::new(),
            ids: Vec::new(),
            at: Vec::new(),
            stamps: Vec::new(),
            next: 0,
        }
    }
}

impl<I: Identity> Proofs<I> {
    fn position(&self, id: &I) -> Option<usize> {
        let t = tag_of(id.hash64());
        let mut from = 0;
        while let Some(i) = find_tag(&self.tags, t, from) {
            if self.ids[i] == *id {
                return Some(i);
            }
            from = i + 1;
        }
        None
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    /// `id` was proven at `now`; at most `cap` proofs are kept.
    pub(crate) fn met(&mut self, id: &I, now: Millis, cap: usize) {
        let stamp = self.stamp();
        if let Some(i) = self.position(id) {
            self.at[i] = now;
            self.stamps[i] = stamp;
            return;
        }
        if self.ids.len() >= cap {
            let Some(oldest) = (0..self.stamps.len()).min_by_key(|&i| self.stamps[i]) else {
                return;
            };
            self.tags[oldest] = tag_of(id.hash64());
            self.ids[oldest] = id.clone();
            self.at[oldest] = now;
            self.stamps[oldest] = stamp;
            return;
        }
        if self.ids.capacity() == 0 && cap <= 64 {
            // Exactly the bound: growing by doubling would hold up to twice it.
            self.tags.reserve_exact(cap);
            self.ids.reserve_exact(cap);
            self.at.reserve_exact(cap);
            self.stamps.reserve_exact(cap);
        }
        self.tags.push(tag_of(id.hash64()));
        self.ids.push(id.clone());
        self.at.push(now);
        self.stamps.push(stamp);
    }

    /// The next recency stamp; before the counter would wrap, the stamps
    /// are renumbered 0.. in their order (never in practice: 2^32 proofs).
    fn stamp(&mut self) -> u32 {
        if self.next == u32::MAX {
            let mut order: Vec<usize> = (0..self.stamps.len()).collect();
            order.sort_by_key(|&i| self.stamps[i]);
            for (rank, i) in order.into_iter().enumerate() {
                self.stamps[i] = rank as u32;
            }
            self.next = self.stamps.len() as u32;
        }
        let s = self.next;
        self.next += 1;
        s
    }

    /// True when `id` was proven within `horizon` of `now`.
    pub(crate) fn proven(&self, id: &I, now: Millis, horizon: Millis) -> bool {
        self.position(id)
            .is_some_and(|i| now.saturating_sub(self.at[i]) <= horizon)
    }

    pub(crate) fn clear(&mut self) {
        self.tags.clear();
        self.ids.clear();
        self.at.clear();
        self.stamps.clear();
        self.next = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PeerId;
    use std::collections::VecDeque;

    /// The queue the set stands for: oldest first, renewed to the back.
    fn queue_met(q: &mut VecDeque<(u32, Millis)>, id: u32, now: Millis, cap: usize) {
        if let Some(i) = q.iter().position(|&(p, _)| p == id) {
            q.remove(i);
        }
        if q.len() == cap {
            q.pop_front();
        }
        q.push_back((id, now));
    }

    #[test]
    fn keeps_what_an_oldest_first_queue_keeps() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(4);
        let ids: Vec<PeerId> = (0..40).map(|i| PeerId::new(&format!("p{i}"))).collect();
        let (mut set, mut q) = (Proofs::default(), VecDeque::new());
        for now in 0..5_000u64 {
            let k = rng.gen_range(0..ids.len());
            set.met(&ids[k], now, 16);
            queue_met(&mut q, k as u32, now, 16);
            if now == 2_500 {
                // Renumbering keeps the order.
                set.next = u32::MAX;
            }
            assert_eq!(set.len(), q.len());
            for (j, id) in ids.iter().enumerate() {
                let want = q.iter().find(|&&(p, _)| p == j as u32).map(|&(_, at)| at);
                let got = set.position(id).map(|i| set.at[i]);
                assert_eq!(got, want, "{id:?} at {now}");
            }
        }
        assert!(set.proven(&ids[q[0].0 as usize], 5_000, 5_000));
        set.clear();
        assert_eq!(set.len(), 0);
        assert!(!set.proven(&ids[0], 0, 10));
    }
}
