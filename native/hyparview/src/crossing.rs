//! Crossing: the low-rate exchange that merges components whose active
//! views are all full (issue 12, the cold-start split).
//!
//! Why the overlay cannot heal without it: once every active view of two
//! components is full, SHUFFLE walks stay inside their component, so passive
//! views only ever hold nodes of the same component; promotions and the
//! passive merge probe therefore pick peers of the same component, and the
//! contact probe only runs with an empty passive view. A fleet that starts
//! at once through the same few contacts builds one star per contact, and
//! the stars can lose every link between them to evictions before any
//! shuffle ran: a split that lasts forever.
//!
//! The mechanism: on a schedule of its own (dense right after `Join`, then
//! sparse), a node whose active view is full sends one `merge` NEIGHBOR to
//! a peer that may lie outside its component, drawn from one of two
//! sources (each with probability 1/2 when both exist):
//! - a *contact* (the one thing the nodes of every component share): the
//!   node sends it a direct SHUFFLE (TTL 1, the contact probe's message: no
//!   link implied) and, when the reply comes, asks a random peer of that
//!   reply (the contact's passive view: its component, plus joiners it
//!   integrated), or the contact itself if the reply is empty — not the
//!   contact by default, so the contacts do not become hubs;
//! - a peer it knows but does not hold (passive view or the reserve of
//!   evicted passive peers): those learned during the join storm, before
//!   the split, are the only peers outside the component it may still know.
//!
//! A merge NEIGHBOR is accepted even by a full node, so one that lands in
//! another component joins the two (both ends evict a random peer, which
//! refills as after any eviction). Short nodes do not cross: they have
//! their own repairs (promotion, escalation, contact probe, rejoin), and a
//! split that lasts is one whose views are full.
//!
//! Nothing to merge, no swap. A crossing that lands in our own component
//! would only swap links (and every swap leaves the BEAM's `Node.list()`
//! behind the active view for a moment), so a node keeps *proofs*: peers
//! shown to be in its component by a SHUFFLE walk through active links —
//! the origin of a walk that reached us from an active peer, the active
//! part of that walk's sample (the first `shuffle_active_count` entries
//! of a full sample, as `start_shuffle` builds it), and the node at which
//! our own walk ended. A proof counts for `MET_ROUNDS` shuffle periods
//! (the node's own: up to 4 intervals when calm, see `pace.rs`)
//! and all are dropped when an active link fails (the component may have
//! split); at most `MET_CAP` are kept. A crossing whose target is proven is
//! not sent, and a full node refuses a merge NEIGHBOR from a proven sender
//! (a short node takes it: it needs the link). After `IDLE_STOP` crossings
//! in a row that found nothing (no target, a proven one, or a refusal) the
//! dense phase ends: the next tick is skipped and the schedule goes on at
//! the steady gap. A proof can only be wrong if the sender's shuffle counts
//! differ from ours (we then read one of its passive peers as active): the
//! cost is one skipped crossing, not a lost merge — the other nodes of the
//! component keep crossing.
//!
//! Why components meet in bounded time. A proof is about the component of
//! the moment of the walk; it can span two components only if they split
//! by evictions after it (a split by failures voids it), and then for at
//! most `MET_ROUNDS` periods, skipping that one target. In a rollout the
//! split forms in the join storm, before the first walks (a node's first
//! SHUFFLE leaves 0.75-1.25 intervals after its Join), so between
//! components every crossing is blind, as without proofs, and the argument
//! is the one for blind crossings. Rollout case (every node has the same
//! contacts): a B node crossing picks a contact c outside B with
//! probability at least 1/(2K), K the number of contacts, whenever B lacks
//! one (with several components, all but at most K lack some contact, and
//! one holding only c is entered from every component holding another);
//! c answers with peers of its passive view, which are outside B unless c
//! integrated them from B's own crossings. B has at least
//! `active_view_size + 1` nodes, all full, each crossing at every tick, so
//! the expected number of bridges per tick is of the order of (a+1)/(2K)
//! (1.5 with a = 5, K = 2) or more, and the first comes within about one
//! tick. The dense phase ticks at 0.5, 1.5, 2, 2.5, 3.5, 4.5, 6.5 and 10.5
//! shuffle intervals after the Join (each gap ±25 %): the first, blind (no
//! walk has run yet), merges what the join storm split (the 64-node splits
//! traced were one component within that tick), and five more chances
//! follow before 5 intervals. None falls between 0.6 and 1.1 intervals, so
//! a fleet that did not split is left alone while it settles. A B node
//! stops early only after `IDLE_STOP` crossings in a row found nothing,
//! and B's other nodes keep crossing. Without a contact outside (each node
//! joined through an earlier joiner, so B's contacts are B's own), the
//! passive and reserve draws reach the peers known from before the split;
//! that is not bounded by an argument but measured (the simulator's
//! `stable --join-spacing 0`). After the dense phase every node crosses
//! once every `STEADY_ROUNDS` intervals, so any later split with a
//! contact outside merges in expected O(STEADY_ROUNDS / |B|) intervals.
//! Schedules restart on every `Join`, so a fleet restarted at once gets the
//! dense phase again.
//!
//! Cost. A crossing is one direct SHUFFLE and its reply (contact source
//! only), one NEIGHBOR and its reply, and, when it swaps a link, two
//! DISCONNECTs and the refill of the two evicted peers, whose low-priority
//! requests are mostly refused by full nodes: ~20-40 messages and one link
//! swap in a full overlay; 2-4 messages and no swap when it finds its
//! target proven. A proof costs no message (walks run anyway) and at most
//! `MET_CAP` ids of memory. At steady state (one crossing per node per
//! 128 shuffle intervals) that is at most ~0.16-0.31 messages per node per
//! shuffle interval and one link swap per node every ~21 minutes with the
//! default 10 s interval, and the simulator cannot tell it from the
//! overlay's own upkeep: `stable --nodes 1000 --settle-rounds 12 --rounds
//! 20`, seeds 1-3, measured (before the calm shuffle of `pace.rs`)
//! 7.73-7.76 messages per node per interval with crossing and 8.00-8.06
//! without. The dense phase (at most 8 crossings per
//! node, once, over the first ~10 intervals; fewer when it rests):
//! `rollout --settle-rounds 0 --rounds 10`, seeds 1-3, measures 14.6-16.5
//! messages per node per interval at 64 nodes (24.7-24.9 before proofs,
//! 11.0-11.3 without crossing) and 22.7-23.0 at 1,000 (24.3-24.5, 11.2-11.5):
//! at 64 nodes the walks prove much of the fleet within a few intervals and
//! ~70 % of the link changes crossing causes go; at 1,000 a node proves a
//! few dozen peers, so most crossings stay blind and ~16 % go
//! (bench/results/coldstart.md).
//!
//! This module holds the sub-state, its choices and the node's side of the
//! exchange; `Node` calls it from the places marked `crossing:` in node.rs,
//! maintain.rs and membership.rs: the Join input (restart the schedule),
//! the Crossing timer, the SHUFFLE and its reply (proofs; the contact's
//! answer), a merge NEIGHBOR and its reply (refuse a proven sender; count
//! our crossing's outcome), a lost active link (void the proofs) and Leave
//! (forget everything).

use crate::events::TimerKind;
use crate::membership::Gossip;
use crate::message::Priority;
use crate::node::Node;
use crate::proofs::Proofs;
use crate::requests::RequestKind;
use crate::{Identity, Message, Millis, Peer, PeerId};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Gaps between crossings right after `Join`, in half shuffle intervals:
/// the split forms in the first seconds of a simultaneous start, so that is
/// when crossing pays off. Crossings at 0.5, 1.5, 2, 2.5, 3.5, 4.5, 6.5 and
/// 10.5 intervals: the gap after the first lets a fleet that did not split
/// settle (at 64 nodes most of its later targets are proven by then).
const DENSE_HALVES: [u32; 8] = [1, 2, 1, 1, 2, 2, 4, 8];
/// Gap between crossings after the dense phase, in shuffle intervals.
pub(crate) const STEADY_ROUNDS: u32 = 128;
/// The dense phase ends after this many crossings in a row found nothing
/// to merge (their target proven in our component).
const IDLE_STOP: u32 = 2;
/// How long a proof that a peer is in our component counts, in shuffle
/// intervals.
const MET_ROUNDS: u64 = 4;
/// At most this many proven peers are remembered (oldest forgotten first).
const MET_CAP: usize = 64;

/// Where a crossing goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target<I: Identity = PeerId> {
    /// Ask this contact for peers of its component first (direct SHUFFLE).
    Contact(Peer<I>),
    /// Send the merge NEIGHBOR to this known peer directly.
    Known(Peer<I>),
}

pub(crate) struct Crossing<I: Identity = PeerId> {
    /// Own stream: crossing choices leave every other random choice of the
    /// node unchanged.
    rng: SmallRng,
    /// Crossings scheduled since the last `Join`.
    ticks: u32,
    /// The contact our crossing SHUFFLE went to, until it answers.
    awaiting: Option<I>,
    /// The target of our merge NEIGHBOR, until it answers.
    sent: Option<I>,
    /// Crossings in a row that found nothing to merge.
    idle: u32,
    /// Peers proven in our component, with when: they reached us, or we
    /// them, through active links (see [`Crossing::met`]).
    met: Proofs<I>,
}

impl<I: Identity> Crossing<I> {
    pub(crate) fn new(seed: u64) -> Crossing<I> {
        Crossing {
            rng: SmallRng::seed_from_u64(seed ^ 0x6a09_e667_f3bc_c909),
            ticks: 0,
            awaiting: None,
            sent: None,
            idle: 0,
            met: Proofs::bounded(MET_CAP),
        }
    }

    /// `Join` or `Leave`: the schedule starts over, nothing is outstanding,
    /// nothing is proven.
    pub(crate) fn reset(&mut self) {
        self.ticks = 0;
        self.awaiting = None;
        self.sent = None;
        self.idle = 0;
        self.met.clear();
    }

    /// `peer` is in our component now: its SHUFFLE walk reached us through
    /// an active link, or our walk ended at it.
    pub(crate) fn met(&mut self, peer: &I, now: Millis) {
        self.met.met(peer, now, MET_CAP);
    }

    /// See [`Node::hot_addresses`].
    pub(crate) fn hot_addresses(&self) -> [*const u8; 2] {
        self.met.hot_addresses()
    }

    /// An active link failed: the component may have split, so no proof
    /// holds any more.
    pub(crate) fn forget_met(&mut self) {
        self.met.clear();
    }

    /// True when `peer` was proven in our component within the last
    /// `MET_ROUNDS` shuffle periods (`period`): a merge with it would only
    /// swap links.
    pub(crate) fn proven(&self, peer: &I, now: Millis, period: Millis) -> bool {
        let horizon = period.saturating_mul(MET_ROUNDS);
        self.met.proven(peer, now, horizon)
    }

    /// Whether the schedule is still in its dense phase (it has not rested
    /// and its last dense crossing is yet to come).
    pub(crate) fn is_dense(&self) -> bool {
        self.ticks as usize <= DENSE_HALVES.len()
    }

    /// This crossing found nothing to merge (no target, or one proven in
    /// our component, or the target refused: it had the proof).
    fn found_nothing(&mut self) {
        self.idle = self.idle.saturating_add(1);
    }

    /// True (once) when the dense phase should end here: `IDLE_STOP`
    /// crossings in a row found nothing. The tick is skipped and the
    /// schedule goes on at the steady gap.
    fn take_rest(&mut self) -> bool {
        if self.idle < IDLE_STOP || self.ticks as usize > DENSE_HALVES.len() {
            return false;
        }
        self.idle = 0;
        self.ticks = self.ticks.max(DENSE_HALVES.len() as u32);
        true
    }

    /// Our merge NEIGHBOR went to `peer`.
    fn sent_to(&mut self, peer: &I) {
        self.sent = Some(peer.clone());
    }

    /// The answer to a merge NEIGHBOR from `from`: counted when it answers
    /// ours (a refusal means the target proved us in its component).
    pub(crate) fn answered(&mut self, from: &I, accepted: bool) {
        if self.sent.as_ref() != Some(from) {
            return;
        }
        self.sent = None;
        if accepted {
            self.idle = 0;
        } else {
            self.found_nothing();
        }
    }

    /// Delay until the next crossing: the next gap of the schedule with
    /// ±25 % jitter, so a fleet does not cross in lockstep.
    pub(crate) fn next_delay(&mut self, shuffle_interval: Millis) -> Millis {
        let halves = gap_halves(self.ticks);
        self.ticks = self.ticks.saturating_add(1);
        let d = (shuffle_interval / 2)
            .max(1)
            .saturating_mul(Millis::from(halves));
        self.rng
            .gen_range(d - d / 4..=d.saturating_add(d / 4))
            .max(1)
    }

    /// Picks this tick's target: a contact on half of the ticks (when there
    /// is one not `held`), otherwise a known peer not `held`. `known` lists
    /// the passive view and the reserve (duplicates are harmless).
    pub(crate) fn choose<'a>(
        &mut self,
        contacts: &'a [Peer<I>],
        known: impl Iterator<Item = &'a Peer<I>>,
        held: impl Fn(&Peer<I>) -> bool,
    ) -> Option<Target<I>> {
        let contact = pick(&mut self.rng, contacts.iter(), &held);
        let prefer_contact = self.rng.gen_bool(0.5);
        if prefer_contact {
            if let Some(c) = contact {
                return Some(Target::Contact(c.clone()));
            }
        }
        if let Some(p) = pick(&mut self.rng, known, &held) {
            return Some(Target::Known(p.clone()));
        }
        contact.map(|c| Target::Contact(c.clone()))
    }

    /// `k` distinct indices below `n` (fewer when `n < k`): which active
    /// peers the crossing SHUFFLE names.
    pub(crate) fn sample(&mut self, n: usize, k: usize) -> Vec<usize> {
        rand::seq::index::sample(&mut self.rng, n, k.min(n)).into_vec()
    }

    /// A crossing SHUFFLE went to `contact`.
    pub(crate) fn expect_reply(&mut self, contact: &I) {
        self.awaiting = Some(contact.clone());
    }

    /// True (once) when a SHUFFLE reply from `from` answers our crossing.
    pub(crate) fn take_reply(&mut self, from: &I) -> bool {
        if self.awaiting.as_ref() == Some(from) {
            self.awaiting = None;
            return true;
        }
        false
    }

    /// The merge target among the contact's answer: a random peer not
    /// `held`, else the contact itself (an empty answer).
    pub(crate) fn pick_from_reply(
        &mut self,
        contact: &Peer<I>,
        reply: &[Peer<I>],
        held: impl Fn(&Peer<I>) -> bool,
    ) -> Option<Peer<I>> {
        pick(&mut self.rng, reply.iter(), &held)
            .or_else(|| (!held(contact)).then_some(contact))
            .cloned()
    }
}

impl<I: Identity> Node<I> {
    pub(crate) fn schedule_crossing(&mut self) {
        let after = self.crossing.next_delay(self.config.shuffle_interval);
        let gen = self.timer_gen;
        self.set_timer(after, TimerKind::Crossing { gen });
    }

    /// A crossing tick: a merge NEIGHBOR to a known peer we do not hold, or
    /// a direct SHUFFLE to a contact whose answer names the merge target.
    /// Only a full node crosses (see the module docs); skipped while another
    /// merge request is in flight, and the tick that ends the dense phase.
    pub(crate) fn start_crossing(&mut self, now: Millis) {
        if self.crossing.take_rest() {
            return;
        }
        if !self.views.active_full() || self.requests.any(|r| r.kind == RequestKind::Merge) {
            return;
        }
        // Crossing ticks are rare: unpacking the reserve here is cheap.
        let reserve: Vec<Peer<I>> = self.views.reserve().collect();
        let known = self
            .views
            .passive
            .iter()
            .map(|s| &s.peer)
            .chain(reserve.iter());
        // Field by field, so the closure does not borrow `self.crossing`.
        let (local, views, requests) = (&self.local, &self.views, &self.requests);
        let held = |p: &Peer<I>| {
            p.id == local.id
                || views.active.contains(&p.id)
                || requests.contains(&p.id)
                || views.suspects.contains(&p.id)
        };
        match self.crossing.choose(self.join.contacts(), known, held) {
            Some(Target::Known(peer)) => self.send_merge(now, peer),
            Some(Target::Contact(contact)) => {
                // The probe's message: a direct SHUFFLE implies no link.
                let n = self.views.active.len();
                let idx = self.crossing.sample(n, self.config.shuffle_active_count);
                let mut sample: Vec<Peer<I>> = idx
                    .into_iter()
                    .map(|i| self.views.active.at(i).peer.clone())
                    .collect();
                sample.push(self.local.clone());
                self.crossing.expect_reply(&contact.id);
                let origin = self.local.clone();
                self.send(
                    contact,
                    Message::Shuffle {
                        origin,
                        ttl: 1,
                        peers: sample,
                    },
                );
            }
            None => self.crossing.found_nothing(),
        }
    }

    /// The contact answered our crossing SHUFFLE: merge with a peer of its
    /// answer (or with it).
    pub(crate) fn finish_crossing(&mut self, now: Millis, contact: &Peer<I>, peers: Vec<Peer<I>>) {
        let (local, views, requests) = (&self.local, &self.views, &self.requests);
        let held = |p: &Peer<I>| {
            p.id == local.id || views.active.contains(&p.id) || requests.contains(&p.id)
        };
        let target = self.crossing.pick_from_reply(contact, &peers, held);
        // The answer is fresh knowledge either way.
        self.integrate(now, peers, &[], Gossip::Solicited);
        self.insert_passive(contact.clone(), 0, &[]);
        self.close_if_idle(contact);
        match target {
            Some(peer) if !self.requests.any(|r| r.kind == RequestKind::Merge) => {
                self.send_merge(now, peer)
            }
            Some(_) => {}
            None => self.crossing.found_nothing(),
        }
    }

    /// The merge NEIGHBOR of a crossing, unless `peer` is proven in our
    /// component: then there is nothing to merge and no link is swapped.
    fn send_merge(&mut self, now: Millis, peer: Peer<I>) {
        if self
            .crossing
            .proven(&peer.id, now, self.pace.period(&self.config))
        {
            self.crossing.found_nothing();
            return;
        }
        self.stats.crossings += 1;
        self.crossing.sent_to(&peer.id);
        self.request_neighbor(peer, RequestKind::Merge, Priority::Low);
    }

    /// A SHUFFLE walk from `origin` reached us from `from`: if `from` is an
    /// active peer, the walk ran on active links, so its origin and the
    /// active part of its sample (the first `shuffle_active_count` entries
    /// of a full sample, as `start_shuffle` builds it) are in our component.
    pub(crate) fn prove_walk(
        &mut self,
        now: Millis,
        from: &Peer<I>,
        origin: &Peer<I>,
        peers: &[Peer<I>],
    ) {
        if !self.views.active.contains(&from.id) {
            return;
        }
        self.crossing.met(&origin.id, now);
        let (ka, kp) = (
            self.config.shuffle_active_count,
            self.config.shuffle_passive_count,
        );
        if peers.len() == ka + kp + 1 {
            for p in &peers[..ka] {
                self.crossing.met(&p.id, now);
            }
        }
    }

    /// A merge NEIGHBOR from `from` reaches a full node: refused (no link
    /// swapped) when `from` is proven in our component.
    pub(crate) fn merge_is_pointless(&self, now: Millis, from: &I) -> bool {
        self.views.active_full()
            && self
                .crossing
                .proven(from, now, self.pace.period(&self.config))
    }
}

/// The `tick`-th gap of the schedule, in half shuffle intervals.
fn gap_halves(tick: u32) -> u32 {
    DENSE_HALVES
        .get(tick as usize)
        .copied()
        .unwrap_or(2 * STEADY_ROUNDS)
}

/// Uniform choice among the items not `held`. One pass that lists them:
/// `held` is three tag scans and a crossing judges the passive view and
/// the reserve (~120 peers), so a second pass cost more than the list
/// (crossings are rare).
fn pick<'a, I: Identity + 'a>(
    rng: &mut SmallRng,
    items: impl Iterator<Item = &'a Peer<I>>,
    held: &impl Fn(&Peer<I>) -> bool,
) -> Option<&'a Peer<I>> {
    let free: Vec<&Peer<I>> = items.filter(|p| !held(p)).collect();
    if free.is_empty() {
        return None;
    }
    Some(free[rng.gen_range(0..free.len())])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(name: &str) -> Peer {
        Peer::new(name, "127.0.0.1:1".parse().unwrap(), 1)
    }

    fn peers(names: &[&str]) -> Vec<Peer> {
        names.iter().map(|n| peer(n)).collect()
    }

    #[test]
    fn schedule_is_dense_then_steady() {
        let mut c: Crossing = Crossing::new(1);
        for i in 0..DENSE_HALVES.len() as u32 + 3 {
            let g = c.next_delay(1000);
            let d = 500 * u64::from(gap_halves(i));
            assert!((d - d / 4..=d + d / 4).contains(&g), "gap {i}: {g}");
        }
        assert_eq!(gap_halves(100), 2 * STEADY_ROUNDS);
        c.reset();
        assert!(c.next_delay(1000) <= 625, "Join restarts the dense phase");
    }

    #[test]
    fn choose_never_returns_a_held_peer_and_uses_both_sources() {
        let contacts = peers(&["c1", "c2"]);
        let known = peers(&["k1", "k2", "k3"]);
        let mut c: Crossing = Crossing::new(7);
        let (mut via_contact, mut direct) = (0, 0);
        for _ in 0..200 {
            match c.choose(&contacts, known.iter(), |p| p.id == "c1" || p.id == "k2") {
                Some(Target::Contact(p)) => {
                    assert_eq!(p.id, "c2");
                    via_contact += 1;
                }
                Some(Target::Known(p)) => {
                    assert!(p.id == "k1" || p.id == "k3", "{p:?}");
                    direct += 1;
                }
                None => panic!("a target exists"),
            }
        }
        assert!(via_contact > 50 && direct > 50, "{via_contact} {direct}");
        // Nothing left but one source: always that one; nothing at all: none.
        let only_known = c.choose(&[], known.iter(), |_| false);
        assert!(matches!(only_known, Some(Target::Known(_))));
        let only_contact = c.choose(&contacts, [].iter(), |_| false);
        assert!(matches!(only_contact, Some(Target::Contact(_))));
        assert_eq!(c.choose(&contacts, known.iter(), |_| true), None);
    }

    #[test]
    fn reply_is_taken_once_and_only_from_the_contact() {
        let mut c: Crossing = Crossing::new(3);
        let contact = peer("c1");
        c.expect_reply(&contact.id);
        assert!(!c.take_reply(&peer("x").id));
        assert!(c.take_reply(&contact.id));
        assert!(!c.take_reply(&contact.id), "second reply is a normal one");
        c.expect_reply(&contact.id);
        c.reset();
        assert!(!c.take_reply(&contact.id), "reset forgets the exchange");
    }

    #[test]
    fn merge_target_comes_from_the_reply_else_the_contact() {
        let mut c: Crossing = Crossing::new(5);
        let contact = peer("c1");
        let reply = peers(&["a", "b"]);
        for _ in 0..20 {
            let t = c.pick_from_reply(&contact, &reply, |p| p.id == "a");
            assert_eq!(t.map(|p| p.id.to_string()), Some("b".to_string()));
        }
        let t = c.pick_from_reply(&contact, &[], |_| false);
        assert_eq!(t, Some(contact.clone()));
        assert_eq!(c.pick_from_reply(&contact, &reply, |_| true), None);
    }

    #[test]
    fn proofs_expire_are_capped_and_voided() {
        let mut c: Crossing = Crossing::new(9);
        let x = peer("x").id;
        c.met(&x, 100);
        assert!(c.proven(&x, 100 + 4 * 1000, 1000));
        assert!(!c.proven(&x, 101 + 4 * 1000, 1000), "older than MET_ROUNDS");
        c.met(&x, 5000);
        assert!(c.proven(&x, 5001, 1000), "a new walk renews it");
        for i in 0..MET_CAP {
            c.met(&peer(&format!("p{i}")).id, 5000);
        }
        assert_eq!(c.met.len(), MET_CAP);
        assert!(!c.proven(&x, 5001, 1000), "the oldest is forgotten first");
        assert!(c.proven(&peer("p0").id, 5001, 1000));
        c.forget_met();
        assert!(!c.proven(&peer("p0").id, 5001, 1000));
    }

    #[test]
    fn the_dense_phase_rests_after_idle_crossings() {
        let mut c: Crossing = Crossing::new(2);
        c.next_delay(1000);
        c.next_delay(1000);
        // One idle crossing is not enough; a merge accepted resets the count.
        c.found_nothing();
        assert!(!c.take_rest());
        c.sent_to(&peer("t").id);
        c.answered(&peer("other").id, false);
        c.answered(&peer("t").id, true);
        c.found_nothing();
        assert!(!c.take_rest());
        // A refusal of ours counts: IDLE_STOP in a row end the dense phase.
        c.sent_to(&peer("t").id);
        c.answered(&peer("t").id, false);
        assert!(c.take_rest());
        assert!(!c.take_rest(), "once");
        let g = c.next_delay(1000);
        let d = 1000 * u64::from(STEADY_ROUNDS);
        assert!((d - d / 4..=d + d / 4).contains(&g), "steady gap: {g}");
        // Steady ticks are never skipped, however idle.
        for _ in 0..IDLE_STOP {
            c.found_nothing();
        }
        assert!(!c.take_rest());
        c.reset();
        assert!(c.next_delay(1000) <= 625, "Join restarts the dense phase");
    }
}
