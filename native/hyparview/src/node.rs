//! The HyParView state machine: inputs, outputs, and the paper's handlers
//! (JOIN, FORWARDJOIN, NEIGHBOR, DISCONNECT; SHUFFLE and SHUFFLEREPLY are in
//! `membership.rs`, next to the integration of what they carry).
//!
//! The state is owned by sub-states with their own invariants: the peer
//! sets (`views.rs`), the NEIGHBOR requests in flight (`requests.rs`), the
//! contacts, JOIN round and rejoin backoff (`join.rs`), and the repair that
//! goes beyond the paper, merge requests and contact probes (`repair.rs`),
//! and the pace of the periodic work in a settled overlay (`pace.rs`).
//! What runs after every input (filling the active view, scheduling
//! rejoins and probes) and the timers are in `maintain.rs`. (A little over
//! 600 lines: the paper's handlers read best in one place.)
//!
//! Modifications from paper:
//! - Every active link carries an `epoch` from a Lamport-style counter: a
//!   link created after another one between the same two nodes always has a
//!   larger epoch, and `Disconnect { epoch }` only removes links with an
//!   epoch `<= epoch`. A late DISCONNECT therefore never tears down a newer
//!   link. When both ends propose a link at once, both keep the larger epoch.
//! - The acceptor of a NEIGHBOR/JOIN reports the peer up when it accepts; the
//!   requester when the acceptance arrives, and it echoes the acceptance so an
//!   acceptor that lost the link meanwhile answers DISCONNECT. FORWARDJOIN and
//!   SHUFFLE from a peer we do not hold are answered with DISCONNECT.
//! - The contact that accepts a JOIN seeds the joiner's passive view with a
//!   SHUFFLEREPLY, so a joiner whose contact dies early has peers to try.
//! - Losing a neighbour never triggers a JOIN while anything else is known;
//!   high priority is only used with an empty active view.
//! - A restarted peer (same id, higher incarnation) replaces every entry of
//!   its older run; anything from an older run is ignored.
//! - Bytes from the network are untrusted: TTLs are clamped, peer lists are
//!   truncated, self and stale incarnations are ignored, per-peer state is
//!   bounded, and nothing indexes out of bounds.
//! - Gossip is untrusted even from a node that holds the secret: a peer's
//!   incarnation is learned only from its own messages (the transport
//!   authenticates `from`), gossiped ids must have the shape of ours, and
//!   the passive entries a sender brings and the dials to gossiped peers
//!   are budgeted (`quota.rs`).

pub use crate::events::{Input, Output, Stats, Timer};

use crate::crossing::Crossing;
pub(crate) use crate::events::TimerKind;
use crate::join::Join;
use crate::membership::Gossip;
use crate::membership::Loss;
use crate::message::Priority;
use crate::pace::Pace;
use crate::peer::{IdLike, IdRule};
use crate::quota::{Bucket, SenderBudgets};
use crate::repair::{Merge, Probe};
use crate::requests::{RequestKind, Requests};
use crate::views::Views;
use crate::{Config, ConfigError, Identity, Message, Millis, Peer, PeerId};
use rand::rngs::SmallRng;
use rand::SeedableRng;
use std::collections::VecDeque;
use std::sync::Arc;

/// Peer lists longer than this in a received message are truncated.
pub(crate) const MAX_PEERS_IN_MESSAGE: usize = 64;

/// Where the node is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Created, never joined.
    Idle,
    /// Join was requested (timers running) and no Leave since.
    Joined,
    Left,
}

/// How a link the other end holds reached us (see `link_accepted`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Offer {
    /// The answer to our JOIN, FORWARDJOIN or merge request: taken even when
    /// full (a random peer is evicted).
    Forced,
    /// The answer to our promotion: taken when there is room.
    Requested,
    /// An acceptance we did not ask for (late, or after a request timed
    /// out): taken when there is room, refused when we dropped this link.
    Unsolicited,
}

pub struct Node<I: Identity = PeerId> {
    pub(crate) local: Peer<I>,
    /// Shared by every node of a driver that runs many (see `shared`).
    pub(crate) config: Arc<Config>,
    pub(crate) outputs: VecDeque<Output<I>>,
    pub(crate) rng: SmallRng,
    pub(crate) views: Views<I>,
    pub(crate) requests: Requests<I>,
    pub(crate) join: Join<I>,
    pub(crate) merge: Merge,
    pub(crate) probe: Probe<I>,
    /// The shuffle period and the refusal backoff (see `pace.rs`).
    pub(crate) pace: Pace,
    /// crossing: merges components whose active views are full.
    pub(crate) crossing: Crossing<I>,
    /// The peers our outstanding SHUFFLE carried, until its reply.
    pub(crate) shuffle_sent: Option<Vec<Peer<I>>>,
    /// Lamport clock for link epochs.
    pub(crate) clock: u64,
    pub(crate) timer_gen: u64,
    pub(crate) phase: Phase,
    pub(crate) stats: Stats,
    /// Which gossiped ids are accepted (the shape of our own, see `IdRule`).
    pub(crate) id_rule: IdRule,
    /// NEIGHBOR requests to peers learned from gossip (see `quota.rs`).
    pub(crate) dials: Bucket,
    /// New passive entries each sender's SHUFFLEs may still bring.
    pub(crate) senders: SenderBudgets<I>,
}

impl<I: Identity> Node<I> {
    /// A node with empty views. `seed` drives every random choice it makes.
    pub fn new(local: Peer<I>, config: Config, seed: u64) -> Result<Node<I>, ConfigError> {
        Node::shared(local, Arc::new(config), seed)
    }

    /// [`new`](Node::new) with a configuration shared with other nodes: a
    /// driver of many nodes (the simulator) then keeps one copy, read from
    /// cache, instead of one per node.
    pub fn shared(local: Peer<I>, config: Arc<Config>, seed: u64) -> Result<Node<I>, ConfigError> {
        config.validate()?;
        let dials = Bucket::full(0, crate::quota::dial_burst(&config));
        Ok(Node {
            id_rule: IdRule::of_local(&local.id),
            dials,
            senders: SenderBudgets::default(),
            views: Views::new(local.id.clone(), &config),
            local,
            config,
            outputs: VecDeque::new(),
            rng: SmallRng::seed_from_u64(seed),
            requests: Requests::default(),
            join: Join::default(),
            merge: Merge::default(),
            probe: Probe::new(seed),
            pace: Pace::default(),
            crossing: Crossing::new(seed),
            shuffle_sent: None,
            clock: 0,
            timer_gen: 0,
            phase: Phase::Idle,
            stats: Stats::default(),
        })
    }

    /// Feed one input at time `now`. Outputs accumulate until drained.
    pub fn handle(&mut self, now: Millis, input: Input<I>) {
        match input {
            Input::Join { contacts } => self.on_join_input(now, contacts),
            Input::Contacts { contacts } => self.on_contacts(contacts),
            Input::Leave => self.on_leave(),
            Input::Message { from, message } => self.on_message(now, from, message),
            Input::ConnectionLost { peer } => self.on_unreachable(peer, Loss::Connection),
            Input::DialFailed { peer } => self.on_unreachable(peer, Loss::Dial),
            Input::Timer(Timer(kind)) => {
                if !self.on_timer(now, kind) {
                    return;
                }
            }
        }
        if self.phase != Phase::Left {
            self.maintain(now);
        }
    }

    /// [`handle`](Node::handle), with the outputs appended to `out` (after
    /// any still pending) instead of kept for [`poll_output`]: a driver of
    /// many nodes passes one buffer to all of them, so no node holds or
    /// regrows its own.
    ///
    /// [`poll_output`]: Node::poll_output
    pub fn handle_into(&mut self, now: Millis, input: Input<I>, out: &mut VecDeque<Output<I>>) {
        // Outputs left from `handle` are rare; an empty append still
        // calls memcpy (1 % of the simulator's instructions).
        if !self.outputs.is_empty() {
            out.append(&mut self.outputs);
        }
        std::mem::swap(&mut self.outputs, out);
        self.handle(now, input);
        std::mem::swap(&mut self.outputs, out);
    }

    /// Next pending output, in the order produced.
    pub fn poll_output(&mut self) -> Option<Output<I>> {
        let out = self.outputs.pop_front();
        if out.is_none() && self.outputs.capacity() > 8 {
            // A rare burst (a JOIN to forward) must not keep its buffer:
            // per-node memory counts at 50,000 nodes.
            self.outputs = VecDeque::new();
        }
        out
    }

    pub fn local(&self) -> &Peer<I> {
        &self.local
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Peers in the active view (reported up).
    pub fn active_view(&self) -> Vec<&Peer<I>> {
        self.views.active.peers()
    }

    /// [`active_view`](Node::active_view) without collecting it.
    pub fn active_peers(&self) -> impl Iterator<Item = &Peer<I>> + '_ {
        self.views.active.iter().map(|s| &s.peer)
    }

    /// Where the node's peer sets live (their tags and first slots, and
    /// the crossing proofs' tags and recency that every SHUFFLE reads): a
    /// driver of many nodes may prefetch them before an input. A hint
    /// only; never dereferenced here.
    pub fn hot_addresses(&self) -> [*const u8; 6] {
        let [a, b, c, d] = self.views.hot_addresses();
        let [e, f] = self.crossing.hot_addresses();
        [a, b, c, d, e, f]
    }

    /// Peers in the passive view.
    pub fn passive_view(&self) -> Vec<&Peer<I>> {
        self.views.passive.peers()
    }

    /// Peers that recently failed; merge requests may go to them.
    pub fn suspected(&self) -> Vec<&Peer<I>> {
        self.views.suspects.peers()
    }

    /// The current contact list (see [`Input::Contacts`]).
    pub fn contacts(&self) -> &[Peer<I>] {
        self.join.contacts()
    }

    /// True when a node with this id (a [`PeerId`] or a name) is in the
    /// active view.
    pub fn is_active<K: IdLike<I> + ?Sized>(&self, id: &K) -> bool {
        self.views.active.contains(id)
    }

    /// True when a node with this id is in the passive view.
    pub fn is_passive<K: IdLike<I> + ?Sized>(&self, id: &K) -> bool {
        self.views.passive.contains(id)
    }

    /// Epoch of the active link to `id` (see [`Message::Neighbor`]).
    pub fn active_epoch<K: IdLike<I> + ?Sized>(&self, id: &K) -> Option<u64> {
        self.views.active.get(id).map(|a| a.meta)
    }

    /// True while a NEIGHBOR or JOIN sent to `id` awaits its answer. A
    /// transport should not retire an idle connection to such a peer.
    pub fn awaiting_reply<K: IdLike<I> + ?Sized>(&self, id: &K) -> bool {
        self.requests.contains(id)
            || self
                .join
                .attempt
                .as_ref()
                .is_some_and(|a| id.same_id(&a.contact.id))
    }

    /// Number of NEIGHBOR requests awaiting an answer.
    pub fn pending_requests(&self) -> usize {
        self.requests.len()
    }

    pub fn stats(&self) -> Stats {
        self.stats.clone()
    }

    // ----------------------------------------------------------------- inputs

    fn on_join_input(&mut self, now: Millis, contacts: Vec<Peer<I>>) {
        self.phase = Phase::Joined;
        self.join.set_contacts(&self.local.id, contacts);
        self.join.forget_fresh();
        // Restart the periodic timers under a fresh generation.
        self.timer_gen = self.timer_gen.wrapping_add(1);
        self.join.cancel_rejoin();
        self.probe.reset();
        self.schedule_shuffle(now);
        self.schedule_merge_tick();
        // crossing: a Join restarts the dense phase of the schedule.
        self.crossing.reset();
        self.schedule_crossing();
        if self.views.active.is_empty()
            && self.join.attempt.is_none()
            && !self.join.contacts().is_empty()
        {
            self.start_join_round();
        }
    }

    fn on_contacts(&mut self, contacts: Vec<Peer<I>>) {
        let fresh = self.join.set_contacts(&self.local.id, contacts);
        if !fresh {
            return;
        }
        // The probe round in progress was drawn from the old list.
        self.probe.restart_rounds();
        if self.phase == Phase::Joined && self.join.rejoin_scheduled() {
            // Waiting out a backoff that the old contacts earned: retry
            // after the first step instead (maintain schedules it).
            self.join.cancel_rejoin();
        }
    }

    fn on_leave(&mut self) {
        while !self.views.active.is_empty() {
            let a = self.views.remove_active_at(0);
            self.send(a.peer.clone(), Message::Disconnect { epoch: a.meta });
            self.outputs.push_back(Output::Disconnect {
                peer: a.peer.clone(),
            });
            self.outputs.push_back(Output::PeerDown(a.peer.clone()));
            self.insert_passive(a.peer, 0, &[]);
        }
        self.requests.clear();
        self.join.stop();
        self.shuffle_sent = None;
        self.probe.reset();
        self.crossing.reset();
        self.timer_gen = self.timer_gen.wrapping_add(1);
        self.phase = Phase::Left;
    }

    fn on_message(&mut self, now: Millis, from: Peer<I>, message: Message<I>) {
        if from.id == self.local.id || !self.admit_incarnation(&from) {
            return;
        }
        // A direct message proves the sender is alive.
        if self.views.suspects.remove(&from.id).is_some() {
            self.insert_passive(from.clone(), 0, &[]);
        }
        if self.phase == Phase::Left {
            self.answer_after_leave(from, message);
            return;
        }
        match message {
            Message::Join => self.on_join(from),
            Message::ForwardJoin { joiner, ttl } => self.on_forward_join(now, from, joiner, ttl),
            Message::Neighbor {
                high_priority,
                epoch,
                merge,
            } => {
                // The receiver cannot tell a promotion from a FORWARDJOIN
                // acceptance, and need not: only a merge is handled apart.
                let kind = if merge {
                    RequestKind::Merge
                } else {
                    RequestKind::Promotion
                };
                self.on_neighbor(now, from, Priority::from_wire(high_priority), epoch, kind)
            }
            Message::NeighborReply { accepted, epoch } => {
                self.on_neighbor_reply(now, from, accepted, epoch)
            }
            Message::Disconnect { epoch } => self.on_disconnect(now, from, epoch),
            Message::Shuffle { origin, ttl, peers } => {
                self.on_shuffle(now, from, origin, ttl, peers)
            }
            Message::ShuffleReply { peers } => self.on_shuffle_reply(now, &from, peers),
        }
    }

    /// A node that left refuses every request and undoes late acceptances.
    fn answer_after_leave(&mut self, from: Peer<I>, message: Message<I>) {
        let refuse = |epoch| Message::NeighborReply {
            accepted: false,
            epoch,
        };
        match message {
            Message::Neighbor { epoch, .. } => self.refuse_and_close(from, refuse(epoch)),
            Message::Join => self.refuse_and_close(from, refuse(0)),
            Message::NeighborReply {
                accepted: true,
                epoch,
            } => self.send(from, Message::Disconnect { epoch }),
            _ => {}
        }
    }

    fn refuse_and_close(&mut self, to: Peer<I>, message: Message<I>) {
        self.send(to.clone(), message);
        self.outputs.push_back(Output::Disconnect { peer: to });
    }

    fn accept(&mut self, to: Peer<I>, epoch: u64) {
        self.send(
            to,
            Message::NeighborReply {
                accepted: true,
                epoch,
            },
        );
    }

    fn on_join(&mut self, from: Peer<I>) {
        if let Some(epoch) = self.active_epoch(&from.id) {
            // Duplicate JOIN (reply lost?): confirm the existing link, no walk.
            self.accept(from, epoch);
            return;
        }
        self.requests.take(&from.id);
        let epoch = self.new_epoch();
        self.add_active(from.clone(), epoch);
        self.accept(from.clone(), epoch);
        // Seed the joiner's passive view: if its contact and neighbours die
        // early it has more than a handful of peers to fall back on.
        let seed = self
            .views
            .passive
            .sample(&mut self.rng, self.config.passive_view_size);
        if !seed.is_empty() {
            self.send(from.clone(), Message::ShuffleReply { peers: seed });
        }
        let ttl = self.config.arwl;
        for i in 0..self.views.active.len() {
            let t = self.views.active.at(i).peer.clone();
            if t.id != from.id {
                let joiner = from.clone();
                self.send(t, Message::ForwardJoin { joiner, ttl });
            }
        }
    }

    fn on_forward_join(&mut self, now: Millis, from: Peer<I>, joiner: Peer<I>, ttl: u32) {
        self.check_implied_link(&from);
        let ttl = ttl.min(self.config.arwl);
        // The joiner's incarnation is gossip: never trusted (see `gossiped`).
        let Some(joiner) = self.gossiped(&from, joiner) else {
            return;
        };
        if self.is_active(&joiner.id) || self.requests.contains(&joiner.id) {
            return;
        }
        if ttl == 0 || self.views.active.len() <= 1 {
            self.accept_forward_join(now, &from, joiner);
            return;
        }
        if ttl == self.config.prwl {
            self.integrate(
                now,
                vec![joiner.clone()],
                &[],
                Gossip::Unsolicited(&from.id),
            );
        }
        match self.random_active_except(&from.id, &joiner.id) {
            Some(next) => self.send(
                next,
                Message::ForwardJoin {
                    joiner,
                    ttl: ttl - 1,
                },
            ),
            None => self.accept_forward_join(now, &from, joiner),
        }
    }

    /// End of the FORWARDJOIN walk: ask the joiner to become a neighbour.
    /// Requests in flight are bounded (a flood of walks for distinct joiners
    /// must not grow state) and so is their rate (the joiner is an address
    /// someone else gave us, see `quota.rs`); beyond that the joiner only
    /// lands in passive, within the sender's budget.
    fn accept_forward_join(&mut self, now: Millis, from: &Peer<I>, joiner: Peer<I>) {
        if self.requests.len() >= self.config.active_view_size.saturating_mul(2)
            || !self.take_dial(now)
        {
            self.integrate(now, vec![joiner], &[], Gossip::Unsolicited(&from.id));
        } else {
            self.request_neighbor(joiner, RequestKind::ForwardJoin, Priority::Low);
        }
    }

    fn on_neighbor(
        &mut self,
        now: Millis,
        from: Peer<I>,
        priority: Priority,
        epoch: u64,
        kind: RequestKind,
    ) {
        self.observe_epoch(epoch);
        if let Some(a) = self.views.active.get_mut(&from.id) {
            a.meta = a.meta.max(epoch);
            self.accept(from, epoch);
            return;
        }
        // crossing: a merge within our component would only swap links.
        let merge = kind == RequestKind::Merge && !self.merge_is_pointless(now, &from.id);
        if priority == Priority::High || merge || !self.views.active_full() {
            self.requests.take(&from.id);
            self.add_active(from.clone(), epoch);
            self.accept(from, epoch);
            if merge {
                self.merge.merged(now, &self.config);
            }
        } else {
            self.send(
                from.clone(),
                Message::NeighborReply {
                    accepted: false,
                    epoch,
                },
            );
            // It is alive: a good passive candidate.
            self.insert_passive(from.clone(), 0, &[]);
            self.close_if_idle(&from);
        }
    }

    fn on_neighbor_reply(&mut self, now: Millis, from: Peer<I>, accepted: bool, epoch: u64) {
        self.observe_epoch(epoch);
        if self.join.is_joining_via(&from.id) {
            if accepted {
                self.join.accepted(from.id.clone());
                self.link_accepted(from, epoch, Offer::Forced);
            } else {
                self.try_next_join();
            }
            return;
        }
        // crossing: whether our merge found another component.
        self.crossing.answered(&from.id, accepted);
        let Some((_, request)) = self.requests.take_answered(&from.id, epoch) else {
            // Unsolicited or late answer: the sender holds us now. Accept it
            // if we can, otherwise tell it so the link does not stay
            // one-sided.
            if accepted {
                self.link_accepted(from, epoch, Offer::Unsolicited);
            }
            return;
        };
        if accepted {
            match request.kind {
                RequestKind::Promotion => {
                    if self.link_accepted(from, epoch, Offer::Requested) {
                        self.stats.promotions += 1;
                    }
                }
                RequestKind::ForwardJoin => {
                    self.link_accepted(from, epoch, Offer::Forced);
                }
                RequestKind::Merge => {
                    if self.link_accepted(from, epoch, Offer::Forced) {
                        self.stats.merges += 1;
                        self.merge.merged(now, &self.config);
                    }
                }
            }
            return;
        }
        if request.kind == RequestKind::Promotion && request.priority == Priority::High {
            // A high-priority request is only refused by a leaving node: do
            // not ask it again soon.
            self.views.add_suspect(from.clone());
        } else {
            if request.kind == RequestKind::Promotion {
                self.merge.refused();
                self.pace.refused(now, &self.config, &mut self.rng);
            }
            let cool = now.saturating_add(self.config.shuffle_interval);
            self.insert_passive(from.clone(), cool, &[]);
        }
        self.close_if_idle(&from);
    }

    /// The other end holds a link `epoch` to `from`. Take it (evicting a
    /// random peer when `Forced` and full) or refuse it with a DISCONNECT.
    /// Returns true when the link is now held.
    ///
    /// The new link is confirmed to the other end with an echo of its
    /// acceptance: a no-op when it holds the link, but if it lost it
    /// meanwhile (e.g. the connection carrying our request was closed) it
    /// answers DISCONNECT and the link cannot stay one-sided.
    fn link_accepted(&mut self, from: Peer<I>, epoch: u64, offer: Offer) -> bool {
        if let Some(a) = self.views.active.get_mut(&from.id) {
            a.meta = a.meta.max(epoch);
            return true;
        }
        if offer == Offer::Unsolicited && self.views.was_dropped(&from, epoch) {
            // Our end of this very link is gone: say so.
            self.stats.stale_ignored += 1;
            self.send(from, Message::Disconnect { epoch });
            return false;
        }
        if offer == Offer::Forced || !self.views.active_full() {
            self.requests.take(&from.id);
            self.add_active(from.clone(), epoch);
            self.accept(from, epoch);
            true
        } else {
            self.stats.asymmetry_repairs += 1;
            self.send(from.clone(), Message::Disconnect { epoch });
            self.insert_passive(from.clone(), 0, &[]);
            self.close_if_idle(&from);
            false
        }
    }

    fn on_disconnect(&mut self, now: Millis, from: Peer<I>, epoch: u64) {
        self.observe_epoch(epoch);
        let Some(i) = self.views.active.position(&from.id) else {
            return;
        };
        if epoch < self.views.active.at(i).meta {
            self.stats.stale_ignored += 1;
            return;
        }
        let a = self.views.remove_active_at(i);
        self.outputs.push_back(Output::PeerDown(a.peer.clone()));
        // Not the first candidate to promote again.
        let cool = now.saturating_add(self.config.shuffle_interval);
        self.insert_passive(a.peer, cool, &[]);
    }

    pub(crate) fn new_epoch(&mut self) -> u64 {
        self.clock = self.clock.saturating_add(1);
        self.clock
    }

    pub(crate) fn observe_epoch(&mut self, epoch: u64) {
        self.clock = self.clock.max(epoch);
    }

    pub(crate) fn send(&mut self, to: Peer<I>, message: Message<I>) {
        self.outputs.push_back(Output::Send { to, message });
    }

    pub(crate) fn set_timer(&mut self, after: Millis, kind: TimerKind) {
        self.outputs.push_back(Output::SetTimer {
            after,
            timer: Timer(kind),
        });
    }
}
