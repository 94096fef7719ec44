//! crossing: the proofs that peers are in our component (see `crossing.rs`
//! for what proves a peer and what a proof is for), kept like the peer
//! sets of `views.rs`: the members' 16-bit id tags apart from the rest, so
//! the lookup that every SHUFFLE walk through us makes (one to five per
//! walk) reads two cache lines of tags instead of every entry.
//!
//! A bounded queue, oldest first: a peer proven again moves to the back,
//! and past the bound the front is forgotten. Most proofs are of peers not
//! in it (nine in ten in a settled overlay), so the common case is a
//! lookup that misses, one pop and one push; a 1,024-bit filter of the
//! tags ([`TagFilter`], in the queue itself: 64 members set at most 64
//! of its bits, plus up to 16 removed ones) ends most of those lookups
//! without scanning the two lines of tags.

use crate::tags::{find_tag, tag_of, Tag, TagFilter};
use crate::{Identity, Millis};
use std::collections::VecDeque;

/// Oldest first; `tags[i]` is the tag of `entries[i]`.
pub(crate) struct Proofs<I> {
    /// Rebuilt every 16 removals: every proof of a new peer removes one.
    filter: TagFilter<16, 16>,
    tags: VecDeque<Tag>,
    entries: VecDeque<(I, Millis)>,
}

impl<I> Default for Proofs<I> {
    fn default() -> Self {
        Proofs {
            filter: TagFilter::default(),
            tags: VecDeque::new(),
            entries: VecDeque::new(),
        }
    }
}

impl<I> Proofs<I> {
    /// No proofs, with room for exactly `cap` (the bound [`met`](Proofs::met)
    /// is given), allocated now rather than on the first proof: a driver of
    /// many nodes creates them in a row, so each one's hot memory ends up
    /// together instead of scattered over the heap.
    pub(crate) fn bounded(cap: usize) -> Self {
        let mut proofs = Self::default();
        proofs.reserve_bound(cap);
        proofs
    }

    /// Room for exactly the bound `cap` (small ones only): growing by
    /// doubling would hold up to twice it.
    fn reserve_bound(&mut self, cap: usize) {
        if cap <= 64 {
            self.tags.reserve_exact(cap);
            self.entries.reserve_exact(cap);
        }
    }
}

impl<I: Identity> Proofs<I> {
    fn position(&self, id: &I) -> Option<usize> {
        let t = tag_of(id.hash64());
        if !self.filter.may_hold(t) {
            return None;
        }
        let (front, back) = self.tags.as_slices();
        let scan = |tags: &[Tag], base: usize| {
            let mut from = 0;
            while let Some(i) = find_tag(tags, t, from) {
                if self.entries[base + i].0 == *id {
                    return Some(base + i);
                }
                from = i + 1;
            }
            None
        };
        scan(front, 0).or_else(|| scan(back, front.len()))
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// `id` was proven at `now`: it moves to the back (renewed), and at
    /// most `cap` proofs are kept (the oldest forgotten first).
    pub(crate) fn met(&mut self, id: &I, now: Millis, cap: usize) {
        if let Some(i) = self.position(id) {
            self.tags.remove(i);
            self.entries.remove(i);
            self.filter.removed(self.tags.iter());
        }
        if cap == 0 {
            return;
        }
        if self.entries.len() >= cap {
            self.tags.pop_front();
            self.entries.pop_front();
            self.filter.removed(self.tags.iter());
        }
        if self.entries.capacity() == 0 {
            self.reserve_bound(cap);
        }
        let t = tag_of(id.hash64());
        self.filter.insert(t);
        self.tags.push_back(t);
        self.entries.push_back((id.clone(), now));
    }

    /// See [`crate::Node::hot_addresses`].
    pub(crate) fn hot_addresses(&self) -> [*const u8; 2] {
        [
            self.tags.as_slices().0.as_ptr().cast(),
            self.entries.as_slices().0.as_ptr().cast(),
        ]
    }

    /// True when `id` was proven within `horizon` of `now`.
    pub(crate) fn proven(&self, id: &I, now: Millis, horizon: Millis) -> bool {
        self.position(id)
            .is_some_and(|i| now.saturating_sub(self.entries[i].1) <= horizon)
    }

    pub(crate) fn clear(&mut self) {
        self.filter = TagFilter::default();
        self.tags.clear();
        self.entries.clear();
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
            assert_eq!(set.len(), q.len());
            for (j, id) in ids.iter().enumerate() {
                let want = q.iter().find(|&&(p, _)| p == j as u32).map(|&(_, at)| at);
                let got = set.position(id).map(|i| set.entries[i].1);
                assert_eq!(got, want, "{id:?} at {now}");
            }
        }
        assert!(set.proven(&ids[q[0].0 as usize], 5_000, 5_000));
        set.clear();
        assert_eq!(set.len(), 0);
        assert!(!set.proven(&ids[0], 0, 10));
    }
}
