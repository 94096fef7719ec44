//! What the node does on its own: after every input, keep the active view
//! filled from the passive view (the paper's promotion), merge with a fresh
//! contact when short for a while, and schedule a rejoin or a contact probe
//! when it comes to that; on its timers, shuffle, run the merge tick,
//! rejoin, probe, and give up on unanswered requests.
//!
//! Modification from paper: a node with no promotion candidate left first
//! draws on its reserve (peers evicted from its passive view, see
//! `views.rs`), and only then rejoins through its contacts, with backoff
//! (`join.rs`). Merge requests, contact merges and contact probes are in
//! `repair.rs`.

use crate::message::Priority;
use crate::node::{Node, Phase, TimerKind};
use crate::repair::{jittered, MergeTarget, ViewSizes};
use crate::requests::{Request, RequestKind};
use crate::{Identity, Message, Millis, Peer};

impl<I: Identity> Node<I> {
    /// Returns whether `maintain` should run after it: a probe timer that
    /// sends nothing changes nothing, and skipping `maintain` then keeps
    /// every other decision exactly as without the probe mechanism.
    pub(crate) fn on_timer(&mut self, now: Millis, kind: TimerKind) -> bool {
        let live = |gen| gen == self.timer_gen && self.phase != Phase::Left;
        match kind {
            TimerKind::Shuffle { gen, token } => {
                if live(gen) && self.pace.is_live(token) {
                    self.start_shuffle();
                    // Calm only with both views full and the crossing's
                    // dense phase over (`pace.rs`).
                    let full = self.views.active_full()
                        && self.views.passive.len() >= self.config.passive_view_size;
                    if self.crossing.is_dense() || !full {
                        self.pace.unsettled();
                    } else {
                        self.pace.period_ended();
                    }
                    self.schedule_shuffle(now);
                }
            }
            TimerKind::Merge { gen } => {
                if live(gen) {
                    self.merge_tick(now);
                    self.schedule_merge_tick();
                }
            }
            TimerKind::Rejoin { gen, token } => {
                if live(gen)
                    && self.join.rejoin_fired(token)
                    && self.views.is_isolated()
                    && self.requests.is_empty()
                    && self.join.attempt.is_none()
                {
                    self.stats.rejoins += 1;
                    self.start_join_round();
                }
            }
            TimerKind::Probe { gen, token } => {
                return live(gen) && self.probe.fired(token) && self.on_probe_due();
            }
            TimerKind::Crossing { gen } => {
                // crossing: one crossing per tick of its schedule.
                if live(gen) {
                    self.start_crossing(now);
                    self.schedule_crossing();
                }
            }
            TimerKind::NeighborTimeout { gen, epoch } => {
                if gen == self.timer_gen {
                    if let Some((peer, request)) = self.requests.take_epoch(epoch) {
                        self.request_failed(peer, request.kind);
                    }
                }
            }
            TimerKind::JoinTimeout { gen, nonce } => {
                if gen == self.timer_gen
                    && self.join.attempt.as_ref().is_some_and(|a| a.nonce == nonce)
                {
                    self.try_next_join();
                }
            }
        }
        true
    }

    /// Run after every input.
    pub(crate) fn maintain(&mut self, now: Millis) {
        if !self.views.active.is_empty() {
            self.join.reset_backoff();
        }
        let full = self.views.active_full();
        self.merge.observe(now, full);
        let changes = self.views.changes;
        if self.pace.observe(now, changes, &self.config) && self.phase == Phase::Joined {
            self.schedule_shuffle(now);
        }
        if self.views.passive.is_empty()
            && self.requests.is_empty()
            && !full
            && !self.views.reserve_is_empty()
        {
            let want = (self.config.passive_view_size / 2).max(1);
            self.views.refill_from_reserve(want, &mut self.rng);
        }
        self.fill_active(now);
        self.merge_with_fresh_contact(now);
        if self.phase == Phase::Joined
            && self.views.is_isolated()
            && self.requests.is_empty()
            && self.join.attempt.is_none()
            && !self.join.rejoin_scheduled()
        {
            let (min, max) = (
                self.config.rejoin_backoff_min,
                self.config.rejoin_backoff_max,
            );
            let (after, token) = self.join.schedule_rejoin(min, max, &mut self.rng);
            let gen = self.timer_gen;
            self.set_timer(after, TimerKind::Rejoin { gen, token });
        }
        if self.views.active_full() {
            self.probe.reset();
        } else if !self.needs_probe() {
            // The need must last a whole delay: a passive view refilled
            // meanwhile cancels the pending probe.
            self.probe.unschedule();
        } else if !self.probe.is_scheduled() {
            self.schedule_probe();
        }
    }

    /// The paper's promotion: request NEIGHBOR from random passive peers
    /// until active + pending fills the view. No allocation: this runs
    /// after every input.
    fn fill_active(&mut self, now: Millis) {
        while self.views.active.len() + self.requests.len() < self.config.active_view_size {
            let requests = &self.requests;
            let asked = self.asked_passive();
            let free = |i: usize, s: &crate::views::Slot<I, Millis>| match asked {
                Some(mask) => mask & (1 << i) == 0,
                None => !requests.contains(&s.peer.id),
            };
            // The refusal backoff holds low priority only, and only for
            // candidates that have cooled down before (`pace.rs`).
            let held = !self.views.active.is_empty() && self.pace.holds(now);
            // Preferred: candidates not cooling down.
            let mut pick = self.views.passive.random_where(&mut self.rng, |i, s| {
                (if held { s.meta == 0 } else { s.meta <= now }) && free(i, s)
            });
            // Cooled-down entries only when nothing is in flight: the
            // request is then high priority, which a live peer does not
            // refuse, so this cannot ping-pong with a rejecting peer. (Each
            // failure removes the candidate, so this ends.)
            if pick.is_none() && self.views.active.is_empty() && requests.is_empty() {
                pick = self.views.passive.random_where(&mut self.rng, free);
            }
            let Some(i) = pick else {
                return;
            };
            // Passive entries are mostly gossip: dial them at a bounded rate
            // (the next input after a refill goes on).
            if !self.take_dial(now) {
                return;
            }
            let peer = self.views.passive.at(i).peer.clone();
            let high = self.views.active.is_empty()
                && !self.requests.any(|r| r.priority == Priority::High);
            let priority = if high { Priority::High } else { Priority::Low };
            self.request_neighbor(peer, RequestKind::Promotion, priority);
        }
    }

    /// The passive entries with a request in flight, as a mask by index
    /// (None past 64 entries): a scan per request instead of one per
    /// candidate, on the promotion's path (every input of a short node).
    fn asked_passive(&self) -> Option<u64> {
        let passive = &self.views.passive;
        if passive.len() > 64 {
            return None;
        }
        let mut mask = 0;
        for p in self.requests.peers() {
            if let Some(i) = passive.position(&p.id) {
                mask |= 1u64 << i;
            }
        }
        Some(mask)
    }

    /// The contact merge (see `repair.rs`): short for a while, one merge
    /// request to a fresh contact we do not hold. An isolated node with
    /// nothing in flight JOINs its contacts instead; one whose promotions
    /// are still in flight (which hold its rejoin back) asks with high
    /// priority. Cheap when there is no fresh contact: this runs after
    /// every input.
    fn merge_with_fresh_contact(&mut self, now: Millis) {
        let isolated = self.views.active.is_empty();
        if !self.join.has_fresh()
            || self.phase != Phase::Joined
            || (isolated && (self.requests.is_empty() || self.join.attempt.is_some()))
            || self.views.active_full()
            || !self.merge.contact_due(now, &self.config)
            || self.requests.any(|r| r.kind == RequestKind::Merge)
        {
            return;
        }
        let (local, active, requests) = (&self.local.id, &self.views.active, &self.requests);
        let held =
            |c: &Peer<I>| c.id == *local || active.contains(&c.id) || requests.contains(&c.id);
        let Some(contact) = self.join.take_fresh(held) else {
            return;
        };
        self.merge.contact_merge_sent(now);
        let priority = if isolated {
            Priority::High
        } else {
            Priority::Low
        };
        self.request_neighbor(contact, RequestKind::Merge, priority);
    }

    pub(crate) fn request_neighbor(
        &mut self,
        peer: Peer<I>,
        kind: RequestKind,
        priority: Priority,
    ) {
        if self.requests.contains(&peer.id) {
            return;
        }
        let epoch = self.new_epoch();
        self.stats.neighbor_requests_sent += 1;
        self.send(
            peer.clone(),
            Message::Neighbor {
                high_priority: priority.to_wire(),
                epoch,
                merge: kind == RequestKind::Merge,
            },
        );
        let request = Request {
            epoch,
            kind,
            priority,
        };
        self.requests.insert(peer, request);
        let gen = self.timer_gen;
        self.set_timer(
            self.config.neighbor_timeout,
            TimerKind::NeighborTimeout { gen, epoch },
        );
    }

    /// A request went unanswered or its peer is unreachable.
    pub(crate) fn request_failed(&mut self, peer: Peer<I>, kind: RequestKind) {
        match kind {
            RequestKind::Promotion => self.views.add_suspect(peer),
            RequestKind::ForwardJoin => {}
            RequestKind::Merge => self.views.suspect_failed(&peer.id),
        }
    }

    pub(crate) fn start_join_round(&mut self) {
        let suspects = self.views.suspects.iter().map(|s| &s.peer);
        self.join.start_round(suspects, &mut self.rng);
        self.try_next_join();
    }

    /// JOIN the next contact of the round. When the round is exhausted,
    /// `maintain` schedules the backoff if the node is isolated.
    pub(crate) fn try_next_join(&mut self) {
        let (local, active) = (&self.local.id, &self.views.active);
        let Some(attempt) = self
            .join
            .next_attempt(|c| c.id == *local || active.contains(&c.id))
        else {
            return;
        };
        let (contact, nonce) = (attempt.contact.clone(), attempt.nonce);
        self.stats.joins_sent += 1;
        self.send(contact, Message::Join);
        let gen = self.timer_gen;
        self.set_timer(
            self.config.neighbor_timeout,
            TimerKind::JoinTimeout { gen, nonce },
        );
    }

    pub(crate) fn schedule_shuffle(&mut self, now: Millis) {
        let (after, token) = self.pace.schedule(now, &self.config, &mut self.rng);
        let gen = self.timer_gen;
        self.set_timer(after, TimerKind::Shuffle { gen, token });
    }

    pub(crate) fn schedule_merge_tick(&mut self) {
        let after = jittered(self.config.promotion_interval, &mut self.rng);
        let gen = self.timer_gen;
        self.set_timer(after, TimerKind::Merge { gen });
    }

    /// The paper's SHUFFLE: ka active and kp passive peers plus ourselves,
    /// on a random walk starting at a random neighbour.
    fn start_shuffle(&mut self) {
        if self.views.active.is_empty() {
            return;
        }
        let ka = self.config.shuffle_active_count;
        let kp = self.config.shuffle_passive_count;
        let mut sample = self.views.active.sample(&mut self.rng, ka);
        sample.extend(self.views.passive.sample(&mut self.rng, kp));
        let Some(i) = self.views.active.random_where(&mut self.rng, |_, _| true) else {
            return;
        };
        let target = self.views.active.at(i).peer.clone();
        self.shuffle_sent = Some(sample.clone());
        self.stats.shuffles_started += 1;
        sample.push(self.local.clone());
        let ttl = self.config.shuffle_ttl;
        let origin = self.local.clone();
        self.send(
            target,
            Message::Shuffle {
                origin,
                ttl,
                peers: sample,
            },
        );
    }

    /// Every `promotion_interval`: maybe one merge request (see
    /// `repair.rs` for whom and why).
    fn merge_tick(&mut self, now: Millis) {
        if self.requests.any(|r| r.kind == RequestKind::Merge) {
            return;
        }
        let sizes = ViewSizes {
            full: self.views.active_full(),
            passive: self.views.passive.len(),
            suspects: self.views.suspects.len(),
        };
        let peer = match self.merge.pick(now, sizes, &self.config, &mut self.rng) {
            Some(MergeTarget::Passive(i)) => self.views.passive.at(i).peer.clone(),
            Some(MergeTarget::Suspect(i)) => self.views.suspects.at(i).peer.clone(),
            None => return,
        };
        if self.requests.contains(&peer.id) || self.is_active(&peer.id) {
            return;
        }
        // crossing: a full node merging with a peer proven in its own
        // component would only swap links (the receiver applies the same
        // rule to us, with its own proofs).
        if self.merge_is_pointless(now, &peer.id) {
            return;
        }
        self.request_neighbor(peer, RequestKind::Merge, Priority::Low);
    }

    /// Neighbours, but a short active view and nothing to promote: shuffles
    /// with the few peers held cannot bring anyone new (see `repair.rs`).
    /// Isolation is the rejoin's business.
    fn needs_probe(&self) -> bool {
        self.phase == Phase::Joined
            && !self.views.active.is_empty()
            && !self.views.active_full()
            && self.views.passive.is_empty()
            && self.requests.is_empty()
            && self.join.attempt.is_none()
            && self.join.seed_from.is_none()
    }

    fn schedule_probe(&mut self) {
        let (after, token) = self.probe.schedule(&self.config);
        let gen = self.timer_gen;
        self.set_timer(after, TimerKind::Probe { gen, token });
    }

    /// The live probe timer fired. Returns true when a probe was sent.
    fn on_probe_due(&mut self) -> bool {
        if !self.needs_probe() {
            return false;
        }
        if self.send_probe() {
            return true;
        }
        // Nobody to probe (e.g. a seed without contacts): wait a backoff
        // step before looking again.
        self.schedule_probe();
        false
    }

    /// Send a direct SHUFFLE (TTL 1, so it is not forwarded) to the next
    /// contact we do not hold. The receiver integrates us and our active
    /// sample into its passive view, and its reply refills ours.
    fn send_probe(&mut self) -> bool {
        let (local, active) = (&self.local.id, &self.views.active);
        let held = |id: &I| id == local || active.contains(id);
        let Some(target) = self.probe.next_target(self.join.contacts(), held) else {
            return false;
        };
        let n = self.views.active.len();
        let idx = self.probe.sample(n, self.config.shuffle_active_count);
        let mut sample: Vec<Peer<I>> = idx
            .iter()
            .map(|i| self.views.active.at(i).peer.clone())
            .collect();
        sample.push(self.local.clone());
        self.probe.awaiting = Some(target.id.clone());
        self.stats.probes += 1;
        let origin = self.local.clone();
        self.send(
            target,
            Message::Shuffle {
                origin,
                ttl: 1,
                peers: sample,
            },
        );
        true
    }
}
