//! The Plumtree node: the paper's handlers (Algorithms 1-3) over owned
//! parts — the eager/lazy peer sets ([`Trees`]), the lazy-push queue, the
//! missing announcements, the payload [`Cache`] and the FIFO [`Streams`].
//! A little over 600 lines: the handlers of Algorithms 1-3 read and write
//! the same parts, and split across files they would no longer read as
//! the paper's pseudocode does.

use crate::cache::Cache;
use crate::config::{Config, ConfigError, MAX_IDS_PER_MESSAGE};
use crate::io::{BroadcastError, DropReason, Event, Input, Output, Stats, Timer, TimerKind};
use crate::message::{Announcement, Gossip, Message, MessageId, Scope};
use crate::stream::{Sink, Status, Streams};
use crate::tree::{Link, Trees};
use crate::{Millis, Round};
use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Debug;
use std::hash::Hash;

mod queries;
pub use queries::Memory;

/// Announcers remembered per missing id (the paper keeps them all).
const MAX_ANNOUNCERS: usize = 8;
/// An origin whose messages come at most this far apart gets a tree of its
/// own when the optimisation first moves a link for it.
const BUSY_WITHIN: Millis = 5_000;
/// Neighbours beyond this are ignored: HyParView's active view is far
/// smaller, so only a broken driver gets here.
const MAX_NEIGHBORS: usize = 1024;

/// A message announced by IHAVE but not received (the paper's `missing`).
struct Missing<P> {
    /// (announcer, round) in arrival order; the first is grafted first.
    announcers: VecDeque<(P, Round)>,
    token: u64,
}

/// One node's Plumtree state, generic over the peer id `P`.
pub struct Plumtree<P> {
    local: P,
    incarnation: u64,
    next_seq: u64,
    config: Config,
    rng: SmallRng,
    trees: Trees<P>,
    /// Announcements waiting for the next IHAVE dispatch, per lazy peer.
    lazy_queue: BTreeMap<P, Vec<Announcement<P>>>,
    ihave_timer_pending: bool,
    missing: HashMap<MessageId<P>, Missing<P>>,
    next_token: u64,
    cache: Cache<P>,
    evict_timer_pending: bool,
    streams: Streams<P>,
    outputs: VecDeque<Output<P>>,
    stats: Stats,
}

impl<P: Clone + Eq + Hash + Ord + Debug> Plumtree<P> {
    /// A node broadcasting as `local`. `incarnation` MUST grow across
    /// restarts of the same `local` (e.g. wall-clock milliseconds at start),
    /// or peers that remember the previous run treat the new broadcasts as
    /// duplicates until the old stream is forgotten. `seed` drives the only
    /// randomness (graft timer jitter): the same seed and inputs always give
    /// the same outputs.
    pub fn new(
        local: P,
        incarnation: u64,
        config: Config,
        seed: u64,
    ) -> Result<Plumtree<P>, ConfigError> {
        config.validate()?;
        Ok(Plumtree {
            local,
            incarnation,
            next_seq: 0,
            cache: Cache::new(
                config.cache_max_messages,
                config.cache_max_bytes,
                config.cache_max_age,
            ),
            streams: Streams::new(
                config.max_buffered_per_origin,
                config.max_buffered_bytes,
                config.max_origins,
                config.gap_timeout,
            ),
            trees: Trees::new(config.max_trees),
            config,
            rng: SmallRng::seed_from_u64(seed),
            lazy_queue: BTreeMap::new(),
            ihave_timer_pending: false,
            missing: HashMap::new(),
            next_token: 0,
            evict_timer_pending: false,
            outputs: VecDeque::new(),
            stats: Stats::default(),
        })
    }

    /// Feed one input at time `now`. Outputs accumulate until drained.
    pub fn handle(&mut self, now: Millis, input: Input<P>) {
        match input {
            Input::NeighborUp(peer) => self.on_neighbor_up(now, peer),
            Input::NeighborDown(peer) => self.on_neighbor_down(&peer),
            Input::Broadcast { payload } => {
                if self.broadcast(now, payload).is_err() {
                    self.drop_message(None, DropReason::TooLarge);
                }
            }
            Input::Message { from, message } => self.on_message(now, from, message),
            Input::Timer(Timer(kind)) => self.on_timer(now, kind),
        }
    }

    /// Next pending output, in the order produced.
    pub fn poll_output(&mut self) -> Option<Output<P>> {
        self.outputs.pop_front()
    }

    /// Broadcast `payload` from this node (the paper's Broadcast(m)): push
    /// it to every eager peer, announce it to every lazy one. The origin
    /// does not deliver its own broadcast.
    pub fn broadcast(
        &mut self,
        now: Millis,
        payload: Bytes,
    ) -> Result<MessageId<P>, BroadcastError> {
        if payload.len() > self.config.max_broadcast_size {
            return Err(BroadcastError::TooLarge {
                size: payload.len(),
                max: self.config.max_broadcast_size,
            });
        }
        // seq u64::MAX is reserved (see `DropReason::InvalidSeq`); 2^64 - 1
        // broadcasts are out of reach, so saturating is only for form.
        let id = MessageId {
            origin: self.local.clone(),
            incarnation: self.incarnation,
            seq: self.next_seq.min(u64::MAX - 1),
        };
        self.next_seq = self.next_seq.saturating_add(1);
        self.stats.broadcasts += 1;
        self.push(&id, 0, &payload, None);
        self.cache_payload(now, id.clone(), payload, 0, None);
        Ok(id)
    }

    fn on_message(&mut self, now: Millis, from: P, message: Message<P>) {
        if from == self.local {
            // Only a broken transport delivers our own messages back; a
            // reply would be sent to ourselves.
            return self.drop_message(Some(from), DropReason::Forged);
        }
        match message {
            Message::Gossip(gossip) => self.on_gossip(now, from, gossip),
            Message::IHave(announcements) => self.on_ihave(from, announcements),
            Message::Graft { origin, scope, ids } => self.on_graft(from, origin, scope, ids),
            Message::Prune { origin, scope } => self.on_prune(from, origin, scope),
        }
    }

    /// Paper: "upon Receive(GOSSIP, m, mID, round, sender)".
    fn on_gossip(&mut self, now: Millis, from: P, gossip: Gossip<P>) {
        self.stats.gossip_received += 1;
        let Gossip { id, round, payload } = gossip;
        if payload.len() > self.config.max_broadcast_size {
            return self.drop_message(Some(from), DropReason::TooLarge);
        }
        match self.status(&id) {
            Err(reason) => self.drop_message(Some(from), reason),
            Ok(Status::Known) => {
                // Paper: a duplicate means a redundant eager link; prune it.
                self.stats.duplicates += 1;
                if self.is_neighbor(&from) {
                    let origin = id.origin;
                    let scope = self.trees.scope(&origin);
                    self.trees.change(&origin, scope, &from, Link::Lazy, &[]);
                    self.send(from, Message::Prune { origin, scope });
                    self.stats.prunes_sent += 1;
                }
            }
            Ok(_) => {
                let announced = self.missing.remove(&id);
                let optimizable = self.optimizable(now, &id.origin);
                let send_round = round.saturating_add(1);
                self.push(&id, send_round, &payload, Some(&from));
                // Without `from` the cache entry cannot trigger the
                // optimisation when a later IHAVE announces it.
                let eager = optimizable.then(|| (from.clone(), round));
                self.cache_payload(now, id.clone(), payload.clone(), send_round, eager);
                let mut sink = Sink {
                    out: &mut self.outputs,
                    stats: &mut self.stats,
                };
                self.streams
                    .accept(now, &id, send_round, payload, &mut sink);
                // Paper, Algorithm 3 ("Optimization"): a lazy link that
                // announced this message `threshold` rounds earlier than the
                // eager link delivered it becomes the eager link.
                if let Some(missing) = announced.filter(|_| optimizable) {
                    let best = missing
                        .announcers
                        .iter()
                        .filter(|(q, _)| *q != from && self.is_neighbor(q))
                        .min_by_key(|(_, r)| *r)
                        .cloned();
                    if let Some((q, r)) = best {
                        self.optimize(&id.origin, &from, round, q, r);
                    }
                }
            }
        }
    }

    /// Paper: "upon Receive(IHAVE, mID, round, sender)". Announcements from
    /// peers that are not neighbours are ignored: we could not graft them.
    fn on_ihave(&mut self, from: P, announcements: Vec<Announcement<P>>) {
        self.stats.ihave_received += 1;
        if !self.is_neighbor(&from) {
            return;
        }
        let ignored = announcements.len().saturating_sub(MAX_IDS_PER_MESSAGE);
        self.stats.ids_ignored += ignored as u64;
        for Announcement { id, round } in announcements.into_iter().take(MAX_IDS_PER_MESSAGE) {
            match self.status(&id) {
                Ok(Status::New) => self.note_missing(&from, id, round),
                Ok(Status::Known) => self.optimize_known(&from, &id, round),
                _ => {}
            }
        }
    }

    fn note_missing(&mut self, from: &P, id: MessageId<P>, round: Round) {
        if let Some(missing) = self.missing.get_mut(&id) {
            if missing.announcers.len() < MAX_ANNOUNCERS
                && !missing.announcers.iter().any(|(q, _)| q == from)
            {
                missing.announcers.push_back((from.clone(), round));
            }
            return;
        }
        if self.missing.len() >= self.config.max_missing {
            self.stats.ids_ignored += 1;
            return;
        }
        // Paper: "if ∄ timer for mID: setup Timer(mID, timeout1)".
        // Modification from paper: timeout1 is jittered up to +50 %. When a
        // tree branch breaks, every node below it hears the IHAVEs at about
        // the same time; without jitter they all graft at once, adding a
        // redundant eager link each, whose duplicates then prune links
        // elsewhere (concurrent broadcasts from several origins can prune
        // two links of one cycle) and break the tree again. With jitter the
        // first graft usually repairs the branch before the others fire.
        let token = self.token();
        let t1 = self.config.graft_timeout_1;
        let after = t1 + self.rng.gen_range(0..=t1 / 2);
        self.set_timer(
            after,
            TimerKind::Graft {
                id: id.clone(),
                token,
            },
        );
        self.missing.insert(
            id,
            Missing {
                announcers: VecDeque::from([(from.clone(), round)]),
                token,
            },
        );
    }

    /// Modification from paper: the optimisation also runs when the IHAVE
    /// comes after the payload (the usual order once IHAVEs are batched),
    /// using the round the payload came with, at most once per message.
    fn optimize_known(&mut self, announcer: &P, id: &MessageId<P>, round: Round) {
        let Some(cached) = self.cache.get_mut(id) else {
            return;
        };
        let Some((eager, eager_round)) = cached.from.clone() else {
            return;
        };
        let tree = self.trees.get(&id.origin);
        if eager == *announcer || !tree.eager.contains(&eager) || !tree.lazy.contains(announcer) {
            return;
        }
        let Some(threshold) = self.config.optimization_threshold else {
            return;
        };
        if round.saturating_add(threshold) <= eager_round {
            cached.from = None;
            self.optimize(&id.origin, &eager, eager_round, announcer.clone(), round);
        }
    }

    /// Whether the tree optimisation may move links for `origin`: it has a
    /// tree of its own here, or its previous message came at most
    /// [`BUSY_WITHIN`] ago.
    ///
    /// Modification from paper: an origin that sends rarely keeps to the
    /// shared tree. Its own tree would be optimised for one message, then
    /// go stale while the shared tree moves on (measured in
    /// `scale_tests.rs` with 1,000 origins on 1,000 nodes: RMR 0.05 and
    /// longer paths than the shared tree's, against RMR 0 without).
    fn optimizable(&self, now: Millis, origin: &P) -> bool {
        self.trees.scope(origin) == Scope::Origin
            || self
                .streams
                .last_active(origin)
                .is_some_and(|at| now.saturating_sub(at) <= BUSY_WITHIN)
    }

    /// Swap eager link `eager` (delivering at `eager_round`) for lazy link
    /// `lazy` (announcing at `lazy_round`) in `origin`'s own tree if it is
    /// shorter by the threshold. The shared tree is left alone: a swap that
    /// shortens one origin's paths may lengthen every other origin's.
    fn optimize(&mut self, origin: &P, eager: &P, eager_round: Round, lazy: P, lazy_round: Round) {
        let Some(threshold) = self.config.optimization_threshold else {
            return;
        };
        if lazy_round.saturating_add(threshold) > eager_round
            || !self.trees.get(origin).eager.contains(eager)
        {
            return;
        }
        self.stats.optimizations += 1;
        let scope = Scope::Origin;
        self.trees.change(origin, scope, &lazy, Link::Eager, &[]);
        let graft = Message::Graft {
            origin: origin.clone(),
            scope,
            ids: Vec::new(),
        };
        self.send(lazy, graft);
        self.stats.grafts_sent += 1;
        self.trees.change(origin, scope, eager, Link::Lazy, &[]);
        let prune = Message::Prune {
            origin: origin.clone(),
            scope,
        };
        self.send(eager.clone(), prune);
        self.stats.prunes_sent += 1;
    }

    /// Paper: "upon Receive(GRAFT, mID, round, sender)": the link becomes
    /// eager and the payloads asked for are sent if still cached. A graft
    /// from a peer that is not (or no longer) a neighbour is still answered,
    /// which helps it repair, but does not add it to the tree.
    fn on_graft(&mut self, from: P, origin: P, scope: Scope, mut ids: Vec<MessageId<P>>) {
        self.stats.grafts_received += 1;
        let ignored = ids.len().saturating_sub(MAX_IDS_PER_MESSAGE);
        self.stats.ids_ignored += ignored as u64;
        ids.truncate(MAX_IDS_PER_MESSAGE);
        if self.is_neighbor(&from) {
            let others = Self::origins(&ids);
            self.trees
                .change(&origin, scope, &from, Link::Eager, &others);
        }
        for id in ids {
            let Some(cached) = self.cache.get(&id) else {
                self.stats.graft_misses += 1;
                continue;
            };
            let message = Message::Gossip(Gossip {
                round: cached.send_round,
                payload: cached.payload.clone(),
                id,
            });
            self.stats.gossip_sent += 1;
            self.send(from.clone(), message);
        }
    }

    /// Paper: "upon Receive(PRUNE, sender)".
    fn on_prune(&mut self, from: P, origin: P, scope: Scope) {
        self.stats.prunes_received += 1;
        self.trees.change(&origin, scope, &from, Link::Lazy, &[]);
    }

    /// The distinct origins of `ids`, in order.
    fn origins(ids: &[MessageId<P>]) -> Vec<&P> {
        let mut origins: Vec<&P> = ids.iter().map(|id| &id.origin).collect();
        origins.sort();
        origins.dedup();
        origins
    }

    /// Paper: "upon NeighborUp(node)": new links start eager.
    ///
    /// Modification from paper: the new neighbour is also told (IHAVE) of
    /// the messages received within `catch_up_window`. A link comes up when
    /// the membership replaces a failed or swapped one; a message can have
    /// reached this node while all its other links were dead (or before the
    /// link existed), and then nobody would ever announce it to the nodes
    /// of the new links: the paper pushes a message once, on the links of
    /// the moment. Measured in the simulator (1,000 nodes, half killed at
    /// once), the messages sent at the kill reached a single node without.
    fn on_neighbor_up(&mut self, now: Millis, peer: P) {
        if peer == self.local || self.trees.neighbors() >= MAX_NEIGHBORS {
            return;
        }
        let known = self.is_neighbor(&peer);
        self.trees.neighbor_up(&peer);
        let window = self.config.catch_up_window;
        if known || window == 0 {
            return;
        }
        let mut recent: Vec<Announcement<P>> = self
            .cache
            .since(now.saturating_sub(window))
            .map(|(id, round)| Announcement {
                id: id.clone(),
                round,
            })
            .collect();
        recent.reverse();
        for batch in recent.chunks(self.config.max_ihave_batch) {
            self.send_ihave(peer.clone(), batch.to_vec());
        }
    }

    /// Paper: "upon NeighborDown(node)". Missing entries keep the peer as an
    /// announcer; grafting skips peers that are no longer neighbours.
    fn on_neighbor_down(&mut self, peer: &P) {
        self.trees.neighbor_down(peer);
        self.lazy_queue.remove(peer);
    }

    fn on_timer(&mut self, now: Millis, kind: TimerKind<P>) {
        match kind {
            TimerKind::DispatchIHave => {
                self.ihave_timer_pending = false;
                for (peer, announcements) in std::mem::take(&mut self.lazy_queue) {
                    self.send_ihave(peer, announcements);
                }
            }
            TimerKind::Graft { id, token } => self.on_graft_timer(id, token),
            TimerKind::Gap {
                origin,
                incarnation,
            } => {
                let mut sink = Sink {
                    out: &mut self.outputs,
                    stats: &mut self.stats,
                };
                self.streams
                    .on_gap_timer(now, &origin, incarnation, &mut sink);
            }
            TimerKind::EvictCache => {
                self.evict_timer_pending = false;
                self.cache.evict(now);
                self.schedule_eviction(now);
            }
        }
    }

    /// Paper: "upon Timer(mID)": graft the first announcer still a
    /// neighbour, and give the next one `timeout2` more.
    fn on_graft_timer(&mut self, id: MessageId<P>, token: u64) {
        if self.missing.get(&id).is_none_or(|m| m.token != token) {
            return;
        }
        if self.status(&id) != Ok(Status::New) {
            self.missing.remove(&id);
            return;
        }
        loop {
            let next = self
                .missing
                .get_mut(&id)
                .and_then(|m| m.announcers.pop_front());
            let Some((peer, _)) = next else {
                // Nobody left to ask: the gap timer bounds the wait.
                self.missing.remove(&id);
                return;
            };
            if !self.is_neighbor(&peer) {
                continue;
            }
            let token = self.token();
            if let Some(m) = self.missing.get_mut(&id) {
                m.token = token;
            }
            let ids = self.also_announced_by(&peer, &id);
            let others = Self::origins(&ids);
            self.trees
                .change(&id.origin, Scope::Shared, &peer, Link::Eager, &others);
            let graft = Message::Graft {
                origin: id.origin.clone(),
                scope: Scope::Shared,
                ids,
            };
            self.send(peer, graft);
            self.stats.grafts_sent += 1;
            self.set_timer(self.config.graft_timeout_2, TimerKind::Graft { id, token });
            return;
        }
    }

    /// `id` and every other missing id `peer` announced.
    ///
    /// Modification from paper: one GRAFT asks for all of them. When a
    /// branch breaks, every message sent meanwhile is missing below it;
    /// grafting them one by one lets each message's timer fire at a
    /// different node of the branch, each adding a redundant eager link
    /// (and the duplicates on those links then prune others). Fetching
    /// them all through the first repaired link lets the eager pushes
    /// below it arrive before the other timers fire. `peer` is taken off
    /// those ids' announcers so that their own timers try someone else.
    fn also_announced_by(&mut self, peer: &P, id: &MessageId<P>) -> Vec<MessageId<P>> {
        let mut others: Vec<MessageId<P>> = self
            .missing
            .iter()
            .filter(|(other, m)| *other != id && m.announcers.iter().any(|(q, _)| q == peer))
            .map(|(other, _)| other.clone())
            .collect();
        // The map's order is arbitrary: sort so that the same inputs give
        // the same outputs (and the oldest seqs go first).
        others.sort();
        others.truncate(MAX_IDS_PER_MESSAGE - 1);
        for other in &others {
            if let Some(m) = self.missing.get_mut(other) {
                m.announcers.retain(|(q, _)| q != peer);
            }
        }
        let mut ids = Vec::with_capacity(others.len() + 1);
        ids.push(id.clone());
        ids.extend(others);
        ids
    }

    /// Paper: EagerPush and LazyPush, skipping the peer it came from.
    fn push(&mut self, id: &MessageId<P>, round: Round, payload: &Bytes, from: Option<&P>) {
        let tree = self.trees.route(&id.origin);
        let eager: Vec<P> = tree
            .eager
            .iter()
            .filter(|p| Some(*p) != from)
            .cloned()
            .collect();
        let lazy: Vec<P> = tree
            .lazy
            .iter()
            .filter(|p| Some(*p) != from)
            .cloned()
            .collect();
        for peer in eager {
            self.stats.gossip_sent += 1;
            let message = Message::Gossip(Gossip {
                id: id.clone(),
                round,
                payload: payload.clone(),
            });
            self.send(peer, message);
        }

        for peer in lazy {
            let queue = self.lazy_queue.entry(peer.clone()).or_default();
            queue.push(Announcement {
                id: id.clone(),
                round,
            });
            if queue.len() >= self.config.max_ihave_batch {
                let full = self.lazy_queue.remove(&peer).unwrap_or_default();
                self.send_ihave(peer, full);
            } else if !self.ihave_timer_pending {
                self.ihave_timer_pending = true;
                self.set_timer(self.config.ihave_interval, TimerKind::DispatchIHave);
            }
        }
    }

    fn send_ihave(&mut self, peer: P, announcements: Vec<Announcement<P>>) {
        if announcements.is_empty() || !self.is_neighbor(&peer) {
            return;
        }
        self.stats.ihave_sent += 1;
        self.send(peer, Message::IHave(announcements));
    }

    fn cache_payload(
        &mut self,
        now: Millis,
        id: MessageId<P>,
        payload: Bytes,
        send_round: Round,
        from: Option<(P, Round)>,
    ) {
        self.cache.insert(now, id, payload, send_round, from);
        self.schedule_eviction(now);
    }

    fn schedule_eviction(&mut self, now: Millis) {
        if self.evict_timer_pending {
            return;
        }
        if let Some(oldest) = self.cache.oldest() {
            let due = oldest.saturating_add(self.cache.max_age());
            self.evict_timer_pending = true;
            self.set_timer(due.saturating_sub(now).max(1), TimerKind::EvictCache);
        }
    }

    /// Where `id` stands; own-origin ids are checked against our counter.
    fn status(&self, id: &MessageId<P>) -> Result<Status, DropReason> {
        if id.seq == u64::MAX {
            return Err(DropReason::InvalidSeq);
        }
        if id.origin == self.local {
            return if id.incarnation == self.incarnation && id.seq < self.next_seq {
                Ok(Status::Known)
            } else {
                Err(DropReason::Forged)
            };
        }
        match self.streams.classify(id) {
            Status::Stale => Err(DropReason::StaleIncarnation),
            status => Ok(status),
        }
    }

    fn drop_message(&mut self, from: Option<P>, reason: DropReason) {
        self.stats.dropped += 1;
        self.outputs
            .push_back(Output::Event(Event::Dropped { from, reason }));
    }

    fn is_neighbor(&self, peer: &P) -> bool {
        self.trees.is_neighbor(peer)
    }

    fn token(&mut self) -> u64 {
        self.next_token = self.next_token.wrapping_add(1);
        self.next_token
    }

    fn send(&mut self, to: P, message: Message<P>) {
        self.outputs.push_back(Output::Send { to, message });
    }

    fn set_timer(&mut self, after: Millis, kind: TimerKind<P>) {
        self.outputs.push_back(Output::SetTimer {
            after,
            timer: Timer(kind),
        });
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
