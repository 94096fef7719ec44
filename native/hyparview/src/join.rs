//! Entering the overlay: the contact list, the JOIN round in progress, and
//! the rejoin backoff of an isolated node.
//!
//! A JOIN round tries the contacts (and the suspects, which may have come
//! back) one at a time in random order, each for `neighbor_timeout`. A round
//! that ends without an acceptance leaves the node isolated, and the node
//! schedules the next round after an exponential backoff with jitter.
//!
//! Modification from paper: the paper joins once through one contact. Here
//! an isolated node (empty active and passive views) rejoins with backoff,
//! and the contact list can be replaced at run time ([`Join::set_contacts`],
//! fed by discovery): fresh contacts cut a pending backoff short, and a
//! node that is short but not isolated may merge with one of them (the
//! *contact merge*, `repair.rs`), so it keeps the few it has not tried.

use crate::{Identity, Millis, Peer, PeerId};
use rand::rngs::SmallRng;
use rand::Rng;

/// Contacts beyond this are ignored.
pub(crate) const MAX_CONTACTS: usize = 1024;
/// Fresh contacts kept for a contact merge (the newest): one is used per
/// shuffle interval at most, so older ones would be stale by their turn.
const FRESH_KEPT: usize = 4;

/// The JOIN we are waiting on.
#[derive(Clone, Debug)]
pub(crate) struct Attempt<I: Identity = PeerId> {
    pub(crate) contact: Peer<I>,
    pub(crate) nonce: u64,
}

pub(crate) struct Join<I: Identity = PeerId> {
    contacts: Vec<Peer<I>>,
    /// Contacts that a replacement of the list brought and that no contact
    /// merge has used yet, oldest first (a subset of `contacts`).
    fresh: Vec<Peer<I>>,
    pub(crate) attempt: Option<Attempt<I>>,
    /// Left to try in this round (popped from the back).
    queue: Vec<Peer<I>>,
    nonce: u64,
    /// The contact that accepted our JOIN, until its passive-view seed (a
    /// `ShuffleReply`) arrives.
    pub(crate) seed_from: Option<I>,
    /// Names the live rejoin timer (None: no rejoin scheduled). A timer
    /// superseded by a sooner one is ignored.
    rejoin: Option<u64>,
    rejoin_token: u64,
    rejoin_attempts: u32,
}

impl<I: Identity> Default for Join<I> {
    fn default() -> Self {
        Join {
            contacts: Default::default(),
            fresh: Default::default(),
            attempt: Default::default(),
            queue: Default::default(),
            nonce: Default::default(),
            seed_from: Default::default(),
            rejoin: Default::default(),
            rejoin_token: Default::default(),
            rejoin_attempts: Default::default(),
        }
    }
}

impl<I: Identity> Join<I> {
    pub(crate) fn contacts(&self) -> &[Peer<I>] {
        &self.contacts
    }

    /// Replaces the contact list (self and duplicates dropped, at most
    /// MAX_CONTACTS). Returns true when it names a node the old list did
    /// not. Fresh contacts that arrive during a round are tried next: the
    /// rest of the round may be dead suspects, one `neighbor_timeout` each;
    /// they are also kept for a contact merge (see [`Join::take_fresh`]).
    pub(crate) fn set_contacts(&mut self, local: &I, contacts: Vec<Peer<I>>) -> bool {
        let old = std::mem::take(&mut self.contacts);
        for c in contacts {
            if self.contacts.len() >= MAX_CONTACTS {
                break;
            }
            if c.id != *local && !self.contacts.iter().any(|k| k.id == c.id) {
                self.contacts.push(c);
            }
        }
        self.contacts.shrink_to_fit();
        // A fresh contact the new list no longer names is not offered any
        // more (the few kept, against the list: no quadratic work).
        let contacts = &self.contacts;
        self.fresh.retain(|f| contacts.iter().any(|c| c.id == f.id));
        let mut fresh = false;
        let in_round = self.attempt.is_some() || !self.queue.is_empty();
        for c in &self.contacts {
            if old.iter().any(|o| o.id == c.id) {
                continue;
            }
            fresh = true;
            if in_round {
                // Popped from the back: next.
                self.queue.retain(|q| q.id != c.id);
                self.queue.push(c.clone());
            }
            // Not in the old list, so not among the fresh ones kept.
            self.fresh.push(c.clone());
        }
        let excess = self.fresh.len().saturating_sub(FRESH_KEPT);
        self.fresh.drain(..excess);
        fresh
    }

    /// The list given with `Input::Join` is where the node starts from,
    /// not news: nothing is fresh after it.
    pub(crate) fn forget_fresh(&mut self) {
        self.fresh = Vec::new();
    }

    pub(crate) fn has_fresh(&self) -> bool {
        !self.fresh.is_empty()
    }

    /// The newest fresh contact not `held`, removed so it is used once;
    /// those `held` on the way are dropped too (already neighbours).
    pub(crate) fn take_fresh(&mut self, held: impl Fn(&Peer<I>) -> bool) -> Option<Peer<I>> {
        while let Some(c) = self.fresh.pop() {
            if !held(&c) {
                return Some(c);
            }
        }
        None
    }

    pub(crate) fn is_joining_via(&self, id: &I) -> bool {
        self.attempt.as_ref().is_some_and(|a| a.contact.id == *id)
    }

    /// A new round: the contacts, then the suspects not among them, in
    /// random order (Fisher-Yates; popped from the back).
    pub(crate) fn start_round<'a>(
        &mut self,
        suspects: impl Iterator<Item = &'a Peer<I>>,
        rng: &mut SmallRng,
    ) {
        let mut queue = self.contacts.clone();
        for s in suspects {
            if !queue.iter().any(|c| c.id == s.id) {
                queue.push(s.clone());
            }
        }
        for i in (1..queue.len()).rev() {
            let j = rng.gen_range(0..=i);
            queue.swap(i, j);
        }
        self.queue = queue;
        self.attempt = None;
    }

    /// The next contact to send JOIN to, skipping those `skip` rejects; it
    /// becomes the attempt. None: the round is exhausted.
    pub(crate) fn next_attempt(&mut self, skip: impl Fn(&Peer<I>) -> bool) -> Option<&Attempt<I>> {
        self.attempt = None;
        while let Some(c) = self.queue.pop() {
            if skip(&c) {
                continue;
            }
            self.nonce = self.nonce.wrapping_add(1);
            self.attempt = Some(Attempt {
                contact: c,
                nonce: self.nonce,
            });
            return self.attempt.as_ref();
        }
        None
    }

    /// Our JOIN was accepted by `from`: the round is over.
    pub(crate) fn accepted(&mut self, from: I) {
        self.attempt = None;
        self.queue = Vec::new();
        self.seed_from = Some(from);
    }

    /// Stop everything in flight (Leave).
    pub(crate) fn stop(&mut self) {
        self.fresh = Vec::new();
        self.attempt = None;
        self.queue = Vec::new();
        self.seed_from = None;
        self.rejoin = None;
    }

    /// A neighbour again: the next isolation starts from the first step.
    pub(crate) fn reset_backoff(&mut self) {
        self.rejoin_attempts = 0;
    }

    pub(crate) fn rejoin_scheduled(&self) -> bool {
        self.rejoin.is_some()
    }

    /// Schedules the next rejoin: returns its delay and token.
    pub(crate) fn schedule_rejoin(
        &mut self,
        min: Millis,
        max: Millis,
        rng: &mut SmallRng,
    ) -> (Millis, u64) {
        let after = crate::repair::backoff(min, max, self.rejoin_attempts, rng);
        self.rejoin_attempts = self.rejoin_attempts.saturating_add(1);
        self.rejoin_token = self.rejoin_token.wrapping_add(1);
        self.rejoin = Some(self.rejoin_token);
        (after, self.rejoin_token)
    }

    /// The rejoin timer `token` fired: true when it is the live one.
    pub(crate) fn rejoin_fired(&mut self, token: u64) -> bool {
        if self.rejoin != Some(token) {
            return false;
        }
        self.rejoin = None;
        true
    }

    /// Forget the pending rejoin and its backoff (fresh contacts, or a new
    /// Join input).
    pub(crate) fn cancel_rejoin(&mut self) {
        self.rejoin = None;
        self.rejoin_attempts = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use std::net::SocketAddr;

    fn peer(id: &str) -> Peer {
        Peer::new(id, SocketAddr::from(([127, 0, 0, 1], 1)), 1)
    }

    #[test]
    fn contacts_are_deduplicated_bounded_and_exclude_self() {
        let mut j: Join = Join::default();
        let me = PeerId::new("me");
        let mut list = vec![peer("me"), peer("a"), peer("a"), peer("b")];
        list.extend((0..2000).map(|i| peer(&format!("c{i}"))));
        assert!(j.set_contacts(&me, list));
        assert_eq!(j.contacts().len(), MAX_CONTACTS);
        assert_eq!(j.contacts()[0].id, "a");
        assert_eq!(j.contacts()[1].id, "b");
    }

    #[test]
    fn only_unknown_contacts_count_as_fresh() {
        let mut j: Join = Join::default();
        let me = PeerId::new("me");
        assert!(j.set_contacts(&me, vec![peer("a"), peer("b")]));
        assert!(!j.set_contacts(&me, vec![peer("b")]), "a subset");
        assert!(!j.set_contacts(&me, vec![peer("b"), peer("me")]));
        assert!(j.set_contacts(&me, vec![peer("b"), peer("c")]));
        assert!(!j.set_contacts(&me, vec![]));
    }

    #[test]
    fn fresh_contacts_are_kept_newest_first_used_once_and_bounded() {
        let mut j: Join = Join::default();
        let me = PeerId::new("me");
        j.set_contacts(&me, vec![peer("a")]);
        j.forget_fresh();
        assert!(!j.has_fresh(), "the Join list is not news");
        j.set_contacts(&me, vec![peer("a"), peer("b")]);
        j.set_contacts(&me, vec![peer("b"), peer("c"), peer("d")]);
        // "a" was never fresh; "b" stays fresh while listed.
        let held = |p: &Peer| p.id == "d";
        assert_eq!(j.take_fresh(held).unwrap().id, "c", "newest, skipping held");
        assert_eq!(j.take_fresh(held).unwrap().id, "b");
        assert!(j.take_fresh(held).is_none(), "each once; d dropped as held");
        // A contact the new list drops is not offered.
        j.set_contacts(&me, vec![peer("e"), peer("f")]);
        j.set_contacts(&me, vec![peer("f")]);
        assert_eq!(j.take_fresh(|_| false).unwrap().id, "f");
        assert!(!j.has_fresh());
        // Bounded: only the newest are kept.
        j.set_contacts(&me, (0..50).map(|i| peer(&format!("x{i}"))).collect());
        let mut n = 0;
        while j.take_fresh(|_| false).is_some() {
            n += 1;
        }
        assert_eq!(n, FRESH_KEPT);
    }

    #[test]
    fn a_round_tries_contacts_and_suspects_once_each() {
        let mut j: Join = Join::default();
        let mut rng = SmallRng::seed_from_u64(3);
        j.set_contacts(&PeerId::new("me"), vec![peer("a"), peer("b")]);
        let suspects = [peer("b"), peer("s")];
        j.start_round(suspects.iter(), &mut rng);
        let mut seen = Vec::new();
        while let Some(a) = j.next_attempt(|p| p.id == "a") {
            seen.push(a.contact.id.to_string());
        }
        seen.sort();
        assert_eq!(seen, ["b", "s"]);
        assert!(j.attempt.is_none());
    }

    #[test]
    fn fresh_contacts_during_a_round_are_tried_next() {
        let mut j: Join = Join::default();
        let mut rng = SmallRng::seed_from_u64(5);
        let me = PeerId::new("me");
        j.set_contacts(&me, vec![peer("a")]);
        let suspects: Vec<Peer> = (0..30).map(|i| peer(&format!("s{i}"))).collect();
        j.start_round(suspects.iter(), &mut rng);
        j.next_attempt(|_| false).expect("a first attempt");
        assert!(j.set_contacts(&me, vec![peer("fresh"), peer("a"), peer("s3")]));
        let next: Vec<String> = (0..2)
            .filter_map(|_| j.next_attempt(|_| false).map(|a| a.contact.id.to_string()))
            .collect();
        // The new ones, in some order, before the 28+ left of the round
        // ("a" and "s3" were already in it: tried in their turn, once).
        assert!(next.contains(&"fresh".to_string()), "{next:?}");
        let mut rest = Vec::new();
        while let Some(a) = j.next_attempt(|_| false) {
            rest.push(a.contact.id.to_string());
        }
        let all: Vec<&String> = next.iter().chain(&rest).collect();
        for id in ["fresh", "s3"] {
            assert_eq!(all.iter().filter(|x| x.as_str() == id).count(), 1, "{id}");
        }
        // Outside a round nothing is queued.
        assert!(j.set_contacts(&me, vec![peer("later")]));
        assert!(j.next_attempt(|_| false).is_none());
    }

    #[test]
    fn only_the_live_rejoin_timer_counts_and_backoff_grows() {
        let mut j: Join = Join::default();
        let mut rng = SmallRng::seed_from_u64(1);
        let (d1, t1) = j.schedule_rejoin(500, 30_000, &mut rng);
        assert!((250..=500).contains(&d1));
        let (d2, t2) = j.schedule_rejoin(500, 30_000, &mut rng);
        assert!((500..=1000).contains(&d2));
        assert!(!j.rejoin_fired(t1), "superseded");
        assert!(j.rejoin_fired(t2));
        assert!(!j.rejoin_fired(t2), "fires once");
        j.cancel_rejoin();
        let (d3, _) = j.schedule_rejoin(500, 30_000, &mut rng);
        assert!((250..=500).contains(&d3), "backoff restarted");
    }
}
