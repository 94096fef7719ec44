//! The HyParView state machine.
//!
//! Design notes (beyond the paper):
//! - Every active link carries an `epoch` from a Lamport-style counter: a
//!   link created after another one between the same two nodes always has a
//!   larger epoch, and `Disconnect { epoch }` only removes links with an
//!   epoch `<= epoch`. A late DISCONNECT therefore never tears down a newer
//!   link. When both ends propose a link at once, both keep the larger epoch.
//! - The acceptor of a NEIGHBOR/JOIN reports the peer up when it accepts; the
//!   requester when the acceptance arrives, and it echoes the acceptance so an
//!   acceptor that lost the link meanwhile answers DISCONNECT. FORWARDJOIN and
//!   SHUFFLE from a peer we do not hold are answered with DISCONNECT.
//! - A peer that failed (connection lost, dial failed, no answer) goes to a
//!   bounded *suspect* list instead of being forgotten. Suspects are not
//!   promotion candidates, but every `promotion_interval` one random suspect
//!   may be sent a `merge` NEIGHBOR that is accepted even by a full node:
//!   this is what lets two halves of a healed partition find each other.
//!   A node whose active view stays short while its low-priority requests
//!   are refused (its passive peers are all full, e.g. a small island left
//!   by a massive failure) escalates the same way to a passive peer.
//! - Losing a neighbour never triggers a JOIN while anything else is known;
//!   high priority is only used with an empty active view. With no candidate
//!   left the node draws on a reserve of peers evicted from its passive view,
//!   then rejoins through its contacts with exponential backoff and jitter.
//! - A node that still has neighbours but a short active view and an empty
//!   passive view (a cold overlay cut by a partition) cannot learn anyone
//!   new from shuffles with the few peers it holds. After a shuffle period
//!   it probes its `Join` contacts one at a time with a direct SHUFFLE
//!   (TTL 1), backing off like a rejoin; the reply and the receiver's own
//!   integration refill a passive view and normal promotion follows. No
//!   JOIN is involved, and the probe stops once a passive candidate exists
//!   or the active view is full. (Suspects are already probed by the merge
//!   NEIGHBORs.)
//! - A restarted peer (same id, higher incarnation) replaces every entry of
//!   its older run; anything from an older run is ignored.
//! - Bytes from the network are untrusted: TTLs are clamped, peer lists are
//!   truncated, self and stale incarnations are ignored, per-peer state is
//!   bounded, and nothing indexes out of bounds.

use crate::{Config, ConfigError, Message, Millis, Peer, PeerId};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::VecDeque;

/// Peer lists longer than this in a received message are truncated.
const MAX_PEERS_IN_MESSAGE: usize = 64;
/// A node with a full active view probes a suspect on one promotion tick in
/// this many (see `try_merge`).
const MERGE_ODDS: u32 = 4;
/// A full node with no suspect to probe probes a random passive peer on one
/// promotion tick in this many (see `try_merge`).
const PASSIVE_PROBE_ODDS: u32 = 32;
/// A node whose active view is not full escalates to a `merge` NEIGHBOR
/// to a passive peer once this many low-priority promotions were refused
/// (see `try_merge`).
const REFUSALS_BEFORE_ESCALATION: u32 = 2;
/// Remembered removed links (see `Node::dropped`).
const DROPPED_MEMORY: usize = 32;
/// The reserve holds this many times `passive_view_size` peers.
const RESERVE_FACTOR: usize = 3;
/// Contacts beyond this are ignored.
const MAX_CONTACTS: usize = 1024;

/// Something that happened to the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Enter the overlay through these contacts (tried in random order; with
    /// backoff when none answers). An empty list makes this node a seed that
    /// waits to be joined.
    Join { contacts: Vec<Peer> },
    /// Replace the contacts (rejoin and probe targets) without restarting,
    /// e.g. with what a discovery source found. A node that is isolated and
    /// not joining starts a join round through them at once.
    Contacts { contacts: Vec<Peer> },
    /// Leave gracefully: DISCONNECT every active peer, stop all timers.
    Leave,
    /// A message from `from`, whose identity the transport authenticated.
    Message { from: Peer, message: Message },
    /// The established connection to `peer` closed, reset or timed out
    /// (heartbeats). The transport only reports the loss of its *current*
    /// connection to a peer, never of one that a newer connection replaced.
    ConnectionLost { peer: Peer },
    /// A dial to `peer` failed (refused, timed out, handshake rejected) so the
    /// messages queued for it were not delivered.
    DialFailed { peer: Peer },
    /// A timer requested earlier with [`Output::SetTimer`] fired.
    Timer(Timer),
}

/// Something the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Deliver `message` to `to`, dialing if there is no connection yet.
    Send { to: Peer, message: Message },
    /// Close the connection to `peer` once the messages queued before this
    /// output are flushed.
    Disconnect { peer: Peer },
    /// `peer` entered the active view (both ends hold each other).
    PeerUp(Peer),
    /// `peer` left the active view.
    PeerDown(Peer),
    /// Feed `Input::Timer(timer)` back after `after` milliseconds. Timers are
    /// never cancelled by the driver; stale ones are ignored by the node.
    SetTimer { after: Millis, timer: Timer },
}

/// An opaque timer token: the driver stores it and hands it back.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Timer(pub(crate) TimerKind);

/// `gen` is the node's timer generation: bumped by Join/Leave so timers of
/// an earlier run are ignored.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum TimerKind {
    Shuffle { gen: u64 },
    Promotion { gen: u64 },
    Rejoin { gen: u64 },
    Probe { gen: u64, token: u64 },
    NeighborTimeout { gen: u64, epoch: u64 },
    JoinTimeout { gen: u64, nonce: u64 },
}

/// Counters for observability.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub joins_sent: u64,
    pub neighbor_requests_sent: u64,
    pub promotions: u64,
    pub shuffles_started: u64,
    pub failures_detected: u64,
    /// Join rounds started by the isolation backoff timer.
    pub rejoins: u64,
    /// Successful merge promotions (suspect re-linked, see `promotion_interval`).
    pub merges: u64,
    /// Direct SHUFFLEs sent to a contact by a short node with an empty
    /// passive view (see the module docs).
    pub probes: u64,
    /// DISCONNECTs sent to repair a link the other end held alone.
    pub asymmetry_repairs: u64,
    /// Inputs ignored as stale (old incarnation, old link epoch).
    pub stale_ignored: u64,
}

/// FNV-1a of a peer id: compared before the id itself, so scanning the
/// views costs integer compares rather than string compares (hot path).
fn id_hash(id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[derive(Clone, Debug)]
struct ActiveEntry {
    h: u64,
    peer: Peer,
    epoch: u64,
}

#[derive(Clone, Debug)]
struct PassiveEntry {
    h: u64,
    peer: Peer,
    /// Not a preferred promotion candidate before this time (just
    /// disconnected or rejected us).
    cooldown_until: Millis,
}

#[derive(Clone, Debug)]
struct Suspect {
    h: u64,
    peer: Peer,
    failures: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PendingKind {
    /// Filling the active view from the passive view.
    Promote,
    /// End of a FORWARDJOIN walk: asking the joiner.
    ForwardJoin,
    /// Low-rate probe of a suspect (partition healing).
    Merge,
}

#[derive(Clone, Debug)]
struct Pending {
    h: u64,
    peer: Peer,
    epoch: u64,
    kind: PendingKind,
    high: bool,
}

#[derive(Clone, Debug)]
struct JoinAttempt {
    contact: Peer,
    nonce: u64,
}

/// Where a peer id is known, and with which incarnation.
enum Freshness {
    Unknown,
    Same,
    Older,
    Newer,
}

pub struct Node {
    local: Peer,
    config: Config,
    outputs: VecDeque<Output>,
    rng: SmallRng,
    /// Separate stream for the probes (see `send_probe`): scheduling one
    /// that never fires leaves every other random choice unchanged.
    probe_rng: SmallRng,
    active: Vec<ActiveEntry>,
    passive: Vec<PassiveEntry>,
    suspects: Vec<Suspect>,
    pending: Vec<Pending>,
    contacts: Vec<Peer>,
    join: Option<JoinAttempt>,
    join_queue: Vec<Peer>,
    /// Lamport clock for link epochs.
    clock: u64,
    nonce: u64,
    timer_gen: u64,
    /// Join was requested (timers running) and no Leave since.
    joined: bool,
    left: bool,
    rejoin_scheduled: bool,
    rejoin_attempts: u32,
    probe_scheduled: bool,
    /// Names the live probe timer: one scheduled before the need went away
    /// (even if it came back since) is ignored.
    probe_token: u64,
    /// Probe rounds started (each tries every contact not held once);
    /// drives the probe backoff.
    probe_rounds: u32,
    /// Peers left to probe in the current round (popped from the back).
    probe_queue: Vec<Peer>,
    /// The peer our last probe SHUFFLE went to, until it answers.
    probe_from: Option<PeerId>,
    shuffle_sent: Vec<Peer>,
    shuffle_outstanding: bool,
    /// Peers recently evicted from the passive view (most recent at the
    /// back). Not a view: only drawn from when no promotion candidate is
    /// left, so a node whose whole neighbourhood died still knows whom else
    /// to try before falling back to its contacts.
    reserve: VecDeque<Peer>,
    /// Links recently removed from the active view: (id hash, incarnation,
    /// epoch). A late acceptance of one of them is refused, not re-added.
    dropped: VecDeque<(u64, u64, u64)>,
    /// The contact that accepted our JOIN, until its passive-view seed
    /// (a `ShuffleReply`) arrives.
    join_seed_from: Option<PeerId>,
    merge_quiet_until: Millis,
    /// Since when the active view has not been full (None while full).
    short_since: Option<Millis>,
    /// Low-priority promotions refused since the active view was last full
    /// or since the last escalation to a merge NEIGHBOR.
    refusals: u32,
    stats: Stats,
}

impl Node {
    /// A node with empty views. `seed` drives every random choice it makes.
    pub fn new(local: Peer, config: Config, seed: u64) -> Result<Node, ConfigError> {
        config.validate()?;
        Ok(Node {
            local,
            config,
            outputs: VecDeque::new(),
            rng: SmallRng::seed_from_u64(seed),
            probe_rng: SmallRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15),
            active: Vec::new(),
            passive: Vec::new(),
            suspects: Vec::new(),
            pending: Vec::new(),
            contacts: Vec::new(),
            join: None,
            join_queue: Vec::new(),
            clock: 0,
            nonce: 0,
            timer_gen: 0,
            joined: false,
            left: false,
            rejoin_scheduled: false,
            rejoin_attempts: 0,
            probe_scheduled: false,
            probe_token: 0,
            probe_rounds: 0,
            probe_queue: Vec::new(),
            probe_from: None,
            shuffle_sent: Vec::new(),
            shuffle_outstanding: false,
            reserve: VecDeque::new(),
            dropped: VecDeque::new(),
            join_seed_from: None,
            merge_quiet_until: 0,
            short_since: None,
            refusals: 0,
            stats: Stats::default(),
        })
    }

    /// Feed one input at time `now`. Outputs accumulate until drained.
    pub fn handle(&mut self, now: Millis, input: Input) {
        match input {
            Input::Join { contacts } => self.on_join_input(now, contacts),
            Input::Contacts { contacts } => self.on_contacts_input(now, contacts),
            Input::Leave => self.on_leave(),
            Input::Message { from, message } => self.on_message(now, from, message),
            Input::ConnectionLost { peer } => self.on_unreachable(now, peer, false),
            Input::DialFailed { peer } => self.on_unreachable(now, peer, true),
            Input::Timer(Timer(TimerKind::Probe { gen, token })) => {
                // A probe timer that sends nothing changes nothing: skipping
                // `maintain` keeps every other decision exactly as without
                // the probe mechanism.
                if !self.on_probe_timer(gen, token) {
                    return;
                }
            }
            Input::Timer(Timer(kind)) => self.on_timer(now, kind),
        }
        if !self.left {
            self.maintain(now);
        }
    }

    /// Next pending output, in the order produced.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    pub fn local(&self) -> &Peer {
        &self.local
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Peers in the active view (reported up).
    pub fn active_view(&self) -> Vec<&Peer> {
        self.active.iter().map(|a| &a.peer).collect()
    }

    /// Peers in the passive view.
    pub fn passive_view(&self) -> Vec<&Peer> {
        self.passive.iter().map(|p| &p.peer).collect()
    }

    /// Peers that recently failed; probed every `promotion_interval`.
    pub fn suspected(&self) -> Vec<&Peer> {
        self.suspects.iter().map(|s| &s.peer).collect()
    }

    /// True when a node with this id is in the active view.
    pub fn is_active(&self, id: &str) -> bool {
        self.active_index(id).is_some()
    }

    /// True when a node with this id is in the passive view.
    pub fn is_passive(&self, id: &str) -> bool {
        self.passive_index(id).is_some()
    }

    /// Epoch of the active link to `id` (see [`Message::Neighbor`]).
    pub fn active_epoch(&self, id: &str) -> Option<u64> {
        self.active_index(id).map(|i| self.active[i].epoch)
    }

    /// True while a NEIGHBOR or JOIN sent to `id` awaits its answer. A
    /// transport should not retire an idle connection to such a peer.
    pub fn awaiting_reply(&self, id: &str) -> bool {
        self.pending_index(id).is_some() || self.join.as_ref().is_some_and(|j| j.contact.id == id)
    }

    /// Number of NEIGHBOR requests awaiting an answer.
    pub fn pending_requests(&self) -> usize {
        self.pending.len()
    }

    pub fn stats(&self) -> Stats {
        self.stats.clone()
    }

    // ----------------------------------------------------------------- inputs

    fn on_join_input(&mut self, now: Millis, contacts: Vec<Peer>) {
        self.left = false;
        self.joined = true;
        self.set_contacts(contacts);
        // Restart the periodic timers under a fresh generation.
        self.timer_gen = self.timer_gen.wrapping_add(1);
        self.rejoin_scheduled = false;
        self.rejoin_attempts = 0;
        self.reset_probe();
        self.schedule_shuffle();
        self.schedule_promotion();
        if self.active.is_empty() && self.join.is_none() && !self.contacts.is_empty() {
            self.start_join_round(now);
        }
    }

    fn on_contacts_input(&mut self, now: Millis, contacts: Vec<Peer>) {
        self.set_contacts(contacts);
        // Without this an isolated node would wait out its rejoin backoff
        // (up to `rejoin_backoff_max`) before trying the fresh contacts.
        if self.joined
            && !self.left
            && self.active.is_empty()
            && self.join.is_none()
            && self.pending.is_empty()
            && !self.contacts.is_empty()
        {
            self.start_join_round(now);
        }
    }

    /// Contacts without self or duplicates, at most `MAX_CONTACTS`.
    fn set_contacts(&mut self, contacts: Vec<Peer>) {
        self.contacts.clear();
        for c in contacts {
            if self.contacts.len() >= MAX_CONTACTS {
                break;
            }
            if c.id != self.local.id && !self.contacts.iter().any(|k| k.id == c.id) {
                self.contacts.push(c);
            }
        }
    }

    fn on_leave(&mut self) {
        for a in std::mem::take(&mut self.active) {
            self.record_drop(&a);
            self.send(a.peer.clone(), Message::Disconnect { epoch: a.epoch });
            self.outputs.push_back(Output::Disconnect {
                peer: a.peer.clone(),
            });
            self.outputs.push_back(Output::PeerDown(a.peer.clone()));
            self.insert_passive(a.peer, 0, &[]);
        }
        self.pending.clear();
        self.join = None;
        self.join_seed_from = None;
        self.join_queue.clear();
        self.shuffle_outstanding = false;
        self.rejoin_scheduled = false;
        self.reset_probe();
        self.timer_gen = self.timer_gen.wrapping_add(1);
        self.joined = false;
        self.left = true;
    }

    /// Failure mode 6: a peer seen with an older incarnation than we know is
    /// stale (counted, to be ignored); a newer one replaces every entry of the
    /// old run first. Returns whether the caller may go on.
    fn admit_incarnation(&mut self, peer: &Peer) -> bool {
        match self.freshness(peer) {
            Freshness::Older => {
                self.stats.stale_ignored += 1;
                false
            }
            Freshness::Newer => {
                self.purge_old_incarnation(peer);
                true
            }
            Freshness::Same | Freshness::Unknown => true,
        }
    }

    fn on_message(&mut self, now: Millis, from: Peer, message: Message) {
        if from.id == self.local.id {
            return;
        }
        if !self.admit_incarnation(&from) {
            return;
        }
        // A direct message proves the sender is alive.
        if let Some(i) = self.suspect_index(&from.id) {
            let s = self.suspects.remove(i);
            if !self.is_active(&s.peer.id) {
                self.insert_passive(from.clone(), 0, &[]);
            }
        }
        if self.left {
            match message {
                Message::Neighbor { epoch, .. } => {
                    self.send(
                        from.clone(),
                        Message::NeighborReply {
                            accepted: false,
                            epoch,
                        },
                    );
                    self.outputs.push_back(Output::Disconnect { peer: from });
                }
                Message::Join => {
                    self.send(
                        from.clone(),
                        Message::NeighborReply {
                            accepted: false,
                            epoch: 0,
                        },
                    );
                    self.outputs.push_back(Output::Disconnect { peer: from });
                }
                Message::NeighborReply {
                    accepted: true,
                    epoch,
                } => {
                    self.send(from, Message::Disconnect { epoch });
                }
                _ => {}
            }
            return;
        }
        match message {
            Message::Join => self.on_join_msg(now, from),
            Message::ForwardJoin { joiner, ttl } => self.on_forward_join(from, joiner, ttl),
            Message::Neighbor {
                high_priority,
                epoch,
                merge,
            } => self.on_neighbor(now, from, high_priority, epoch, merge),
            Message::NeighborReply { accepted, epoch } => {
                self.on_neighbor_reply(now, from, accepted, epoch)
            }
            Message::Disconnect { epoch } => self.on_disconnect(now, from, epoch),
            Message::Shuffle { origin, ttl, peers } => self.on_shuffle(from, origin, ttl, peers),
            Message::ShuffleReply { peers } => self.on_shuffle_reply(&from, peers),
        }
    }

    fn on_join_msg(&mut self, now: Millis, from: Peer) {
        if let Some(i) = self.active_index(&from.id) {
            // Duplicate JOIN (reply lost?): confirm the existing link, no walk.
            let epoch = self.active[i].epoch;
            self.send(
                from,
                Message::NeighborReply {
                    accepted: true,
                    epoch,
                },
            );
            return;
        }
        self.remove_pending_to(&from.id);
        let epoch = self.new_epoch();
        self.add_active(now, from.clone(), epoch);
        self.send(
            from.clone(),
            Message::NeighborReply {
                accepted: true,
                epoch,
            },
        );
        // Seed the joiner's passive view: if its contact and neighbours die
        // early it has more than a handful of peers to fall back on.
        let seed = self.sample_passive(self.config.passive_view_size);
        if !seed.is_empty() {
            self.send(from.clone(), Message::ShuffleReply { peers: seed });
        }
        let ttl = self.config.arwl;
        let targets: Vec<Peer> = self
            .active
            .iter()
            .filter(|a| a.peer.id != from.id)
            .map(|a| a.peer.clone())
            .collect();
        for t in targets {
            self.send(
                t,
                Message::ForwardJoin {
                    joiner: from.clone(),
                    ttl,
                },
            );
        }
    }

    fn on_forward_join(&mut self, from: Peer, joiner: Peer, ttl: u32) {
        self.check_implied_link(&from);
        let ttl = ttl.min(self.config.arwl);
        if joiner.id == self.local.id {
            return;
        }
        if !self.admit_incarnation(&joiner) {
            return;
        }
        if self.is_active(&joiner.id) || self.pending_index(&joiner.id).is_some() {
            return;
        }
        if ttl == 0 || self.active.len() <= 1 {
            self.accept_forward_join(joiner);
            return;
        }
        if ttl == self.config.prwl {
            self.insert_passive(joiner.clone(), 0, &[]);
        }
        let next = self.random_active_except(&[&from.id, &joiner.id]);
        match next {
            Some(next) => self.send(
                next,
                Message::ForwardJoin {
                    joiner,
                    ttl: ttl - 1,
                },
            ),
            None => self.accept_forward_join(joiner),
        }
    }

    /// End of the FORWARDJOIN walk: ask the joiner to become a neighbour.
    /// Requests in flight are bounded (a flood of walks for distinct joiners
    /// must not grow state); beyond that the joiner only lands in passive.
    fn accept_forward_join(&mut self, joiner: Peer) {
        if self.pending.len() >= self.config.active_view_size.saturating_mul(2) {
            self.insert_passive(joiner, 0, &[]);
        } else {
            self.request_neighbor(joiner, PendingKind::ForwardJoin, false);
        }
    }

    fn on_neighbor(&mut self, now: Millis, from: Peer, high: bool, epoch: u64, merge: bool) {
        self.observe_epoch(epoch);
        if let Some(i) = self.active_index(&from.id) {
            let e = &mut self.active[i].epoch;
            *e = (*e).max(epoch);
            self.send(
                from,
                Message::NeighborReply {
                    accepted: true,
                    epoch,
                },
            );
            return;
        }
        if high || merge || self.active.len() < self.config.active_view_size {
            self.remove_pending_to(&from.id);
            self.add_active(now, from.clone(), epoch);
            self.send(
                from,
                Message::NeighborReply {
                    accepted: true,
                    epoch,
                },
            );
            if merge {
                self.merge_quiet_until = now.saturating_add(self.merge_quiet_period());
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

    fn on_neighbor_reply(&mut self, now: Millis, from: Peer, accepted: bool, epoch: u64) {
        self.observe_epoch(epoch);
        if self.join.as_ref().is_some_and(|j| j.contact.id == from.id) {
            if accepted {
                self.join = None;
                self.join_queue.clear();
                self.join_seed_from = Some(from.id.clone());
                self.link_accepted(now, from, epoch, true, true);
            } else {
                self.try_next_join(now);
            }
            return;
        }
        if let Some(i) = self
            .pending
            .iter()
            .position(|p| p.peer.id == from.id && p.epoch == epoch)
        {
            let p = self.pending.remove(i);
            if accepted {
                match p.kind {
                    PendingKind::Promote => {
                        if self.link_accepted(now, from, epoch, false, true) {
                            self.stats.promotions += 1;
                        }
                    }
                    PendingKind::ForwardJoin => {
                        self.link_accepted(now, from, epoch, true, true);
                    }
                    PendingKind::Merge => {
                        if self.link_accepted(now, from, epoch, true, true) {
                            self.stats.merges += 1;
                            self.merge_quiet_until = now.saturating_add(self.merge_quiet_period());
                        }
                    }
                }
            } else {
                match p.kind {
                    PendingKind::Promote if p.high => {
                        // A high-priority request is only refused by a
                        // leaving node: do not ask it again soon.
                        self.add_suspect(from.clone());
                    }
                    _ => {
                        if p.kind == PendingKind::Promote {
                            self.refusals = self.refusals.saturating_add(1);
                        }
                        let cool = now.saturating_add(self.config.shuffle_interval);
                        self.insert_passive(from.clone(), cool, &[]);
                    }
                }
                self.close_if_idle(&from);
            }
            return;
        }
        // Unsolicited or late answer: the sender holds us now. Accept it if
        // we can, otherwise tell it so the link does not stay one-sided.
        if accepted {
            self.link_accepted(now, from, epoch, false, false);
        }
    }

    /// The other end holds a link `epoch` to `from`. Take it (evicting a
    /// random peer when `force` and full) or refuse it with a DISCONNECT.
    /// Returns true when the link is now held.
    ///
    /// The new link is confirmed to the other end with an echo of its
    /// acceptance: a no-op when it holds the link, but if it lost it
    /// meanwhile (e.g. the connection carrying our request was closed) it
    /// answers DISCONNECT and the link cannot stay one-sided.
    fn link_accepted(
        &mut self,
        now: Millis,
        from: Peer,
        epoch: u64,
        force: bool,
        solicited: bool,
    ) -> bool {
        if let Some(i) = self.active_index(&from.id) {
            let e = &mut self.active[i].epoch;
            *e = (*e).max(epoch);
            return true;
        }
        let h = id_hash(&from.id);
        let was_dropped = self
            .dropped
            .iter()
            .any(|&(dh, inc, e)| dh == h && inc == from.incarnation && e == epoch);
        if !solicited && was_dropped {
            // Our end of this very link is gone: say so.
            self.stats.stale_ignored += 1;
            self.send(from, Message::Disconnect { epoch });
            return false;
        }
        if force || self.active.len() < self.config.active_view_size {
            self.remove_pending_to(&from.id);
            self.add_active(now, from.clone(), epoch);
            self.send(
                from,
                Message::NeighborReply {
                    accepted: true,
                    epoch,
                },
            );
            true
        } else {
            self.stats.asymmetry_repairs += 1;
            self.send(from.clone(), Message::Disconnect { epoch });
            self.insert_passive(from.clone(), 0, &[]);
            self.close_if_idle(&from);
            false
        }
    }

    fn on_disconnect(&mut self, now: Millis, from: Peer, epoch: u64) {
        self.observe_epoch(epoch);
        let Some(i) = self.active_index(&from.id) else {
            return;
        };
        if epoch < self.active[i].epoch {
            self.stats.stale_ignored += 1;
            return;
        }
        let a = self.active.remove(i);
        self.record_drop(&a);
        self.outputs.push_back(Output::PeerDown(a.peer.clone()));
        // Not the first candidate to promote again.
        let cool = now.saturating_add(self.config.shuffle_interval);
        self.insert_passive(a.peer, cool, &[]);
    }

    fn on_shuffle(&mut self, from: Peer, origin: Peer, ttl: u32, mut peers: Vec<Peer>) {
        // A direct SHUFFLE with TTL 1 may be a probe (see `send_probe`) from
        // a node that does not hold us: no link is implied.
        if !(ttl <= 1 && from.id == origin.id) {
            self.check_implied_link(&from);
        }
        let ttl = ttl.min(self.config.shuffle_ttl).saturating_sub(1);
        if origin.id == self.local.id {
            return;
        }
        peers.truncate(MAX_PEERS_IN_MESSAGE);
        if ttl > 0 && self.active.len() > 1 {
            if let Some(next) = self.random_active_except(&[&from.id, &origin.id]) {
                self.send(next, Message::Shuffle { origin, ttl, peers });
                return;
            }
        }
        if !self.admit_incarnation(&origin) {
            return;
        }
        let reply = self.sample_passive(peers.len());
        self.send(
            origin.clone(),
            Message::ShuffleReply {
                peers: reply.clone(),
            },
        );
        self.integrate(peers, &reply);
        self.close_if_idle(&origin);
    }

    fn on_shuffle_reply(&mut self, from: &Peer, mut peers: Vec<Peer>) {
        if self.probe_from.as_deref() == Some(from.id.as_str()) {
            // Answer to our probe: the contact answered, so it is alive too.
            self.probe_from = None;
            peers.truncate(MAX_PEERS_IN_MESSAGE);
            self.integrate(peers, &[]);
            self.insert_passive(from.clone(), 0, &[]);
            return;
        }
        if self.join_seed_from.as_deref() == Some(from.id.as_str()) {
            // The passive-view seed from the contact that accepted our JOIN.
            self.join_seed_from = None;
            peers.truncate(MAX_PEERS_IN_MESSAGE);
            self.integrate(peers, &[]);
            return;
        }
        if !self.shuffle_outstanding {
            return;
        }
        self.shuffle_outstanding = false;
        peers.truncate(MAX_PEERS_IN_MESSAGE);
        let sent = std::mem::take(&mut self.shuffle_sent);
        self.integrate(peers, &sent);
    }

    /// Connection lost or dial failed: `peer` is (probably) unreachable.
    fn on_unreachable(&mut self, now: Millis, peer: Peer, dial: bool) {
        if peer.id == self.local.id {
            return;
        }
        if let Some(i) = self.active_index(&peer.id) {
            if peer.incarnation < self.active[i].peer.incarnation {
                self.stats.stale_ignored += 1;
                return;
            }
            let a = self.active.remove(i);
            self.record_drop(&a);
            self.stats.failures_detected += 1;
            self.outputs.push_back(Output::PeerDown(a.peer.clone()));
            self.add_suspect(a.peer);
            // The neighbourhood shrank: probe promptly if it comes to that.
            self.probe_rounds = 0;
            self.probe_queue.clear();
        }
        if let Some(i) = self.pending_index(&peer.id) {
            let p = self.pending.remove(i);
            match p.kind {
                PendingKind::Promote => self.add_suspect(p.peer),
                PendingKind::ForwardJoin => {}
                PendingKind::Merge => self.suspect_failed(&p.peer.id),
            }
        }
        if self.join.as_ref().is_some_and(|j| j.contact.id == peer.id) {
            self.try_next_join(now);
        }
        if dial {
            // Whatever we sent it was lost; a passive entry we cannot reach
            // is no longer a preferred candidate.
            if let Some(i) = self.passive_index(&peer.id) {
                if self.passive[i].peer.incarnation <= peer.incarnation {
                    let p = self.passive.remove(i);
                    self.add_suspect(p.peer);
                }
            } else if self.suspect_index(&peer.id).is_some() {
                self.suspect_failed(&peer.id);
            }
        }
    }

    fn on_timer(&mut self, now: Millis, kind: TimerKind) {
        match kind {
            TimerKind::Shuffle { gen } => {
                if gen != self.timer_gen || self.left {
                    return;
                }
                self.start_shuffle();
                self.schedule_shuffle();
            }
            TimerKind::Promotion { gen } => {
                if gen != self.timer_gen || self.left {
                    return;
                }
                self.try_merge(now);
                self.schedule_promotion();
            }
            TimerKind::Rejoin { gen } => {
                if gen != self.timer_gen || self.left || !self.rejoin_scheduled {
                    return;
                }
                self.rejoin_scheduled = false;
                if self.is_isolated() && self.pending.is_empty() && self.join.is_none() {
                    self.stats.rejoins += 1;
                    self.start_join_round(now);
                }
            }
            TimerKind::Probe { gen, token } => {
                self.on_probe_timer(gen, token);
            }
            TimerKind::NeighborTimeout { gen, epoch } => {
                if gen != self.timer_gen {
                    return;
                }
                if let Some(i) = self.pending.iter().position(|p| p.epoch == epoch) {
                    let p = self.pending.remove(i);
                    match p.kind {
                        PendingKind::Promote => self.add_suspect(p.peer),
                        PendingKind::ForwardJoin => {}
                        PendingKind::Merge => self.suspect_failed(&p.peer.id),
                    }
                }
            }
            TimerKind::JoinTimeout { gen, nonce } => {
                if gen != self.timer_gen {
                    return;
                }
                if let Some(j) = &self.join {
                    if j.nonce == nonce {
                        self.try_next_join(now);
                    }
                }
            }
        }
    }

    // ------------------------------------------------------------ maintenance

    fn is_isolated(&self) -> bool {
        self.active.is_empty() && self.passive.is_empty()
    }

    /// Run after every input: keep the active view filled from the passive
    /// view, and rejoin (with backoff) when nothing else is left.
    fn maintain(&mut self, now: Millis) {
        if !self.active.is_empty() {
            self.rejoin_attempts = 0;
        }
        if self.active.len() >= self.config.active_view_size {
            self.short_since = None;
            self.refusals = 0;
        } else if self.short_since.is_none() {
            self.short_since = Some(now);
        }
        if self.passive.is_empty()
            && self.pending.is_empty()
            && self.active.len() < self.config.active_view_size
            && !self.reserve.is_empty()
        {
            self.refill_from_reserve();
        }
        self.fill_active(now);
        if self.joined
            && self.is_isolated()
            && self.pending.is_empty()
            && self.join.is_none()
            && !self.rejoin_scheduled
        {
            self.schedule_rejoin();
        }
        if self.active.len() >= self.config.active_view_size {
            self.reset_probe();
        } else if !self.needs_probe() {
            // The need must last a whole delay: a passive view refilled
            // meanwhile cancels the pending probe.
            self.probe_scheduled = false;
        } else if !self.probe_scheduled {
            self.schedule_probe();
        }
    }

    /// Returns true when a probe was sent.
    fn on_probe_timer(&mut self, gen: u64, token: u64) -> bool {
        if gen != self.timer_gen || self.left || !self.probe_scheduled || token != self.probe_token
        {
            return false;
        }
        self.probe_scheduled = false;
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

    /// Neighbours, but a short active view and nothing to promote: shuffles
    /// with the few peers held cannot bring anyone new (see module docs).
    /// Isolation is the rejoin's business.
    fn needs_probe(&self) -> bool {
        self.joined
            && !self.active.is_empty()
            && self.active.len() < self.config.active_view_size
            && self.passive.is_empty()
            && self.pending.is_empty()
            && self.join.is_none()
            && self.join_seed_from.is_none()
    }

    fn reset_probe(&mut self) {
        self.probe_scheduled = false;
        self.probe_rounds = 0;
        self.probe_queue.clear();
        self.probe_from = None;
    }

    /// Same backoff as the rejoin, per probe round (within a round the
    /// candidates are tried one per delay), but never sooner than a shuffle
    /// period: shuffles and the JOIN seed normally fill the passive view,
    /// and a node still short after that is really stuck.
    fn schedule_probe(&mut self) {
        let b = backoff(
            &self.config,
            self.probe_rounds.saturating_sub(1),
            &mut self.probe_rng,
        );
        let i = self.config.shuffle_interval;
        let s = self
            .probe_rng
            .gen_range(i - i / 4..=i.saturating_add(i / 4));
        self.probe_scheduled = true;
        self.probe_token = self.probe_token.wrapping_add(1);
        let (gen, token) = (self.timer_gen, self.probe_token);
        self.set_timer(b.max(s).max(1), TimerKind::Probe { gen, token });
    }

    /// Send a direct SHUFFLE (TTL 1, so it is not forwarded) to the next
    /// contact we do not hold. The receiver integrates us and our active
    /// sample into its passive view, and its reply refills ours.
    fn send_probe(&mut self) -> bool {
        let mut target = None;
        for _ in 0..2 {
            while let Some(p) = self.probe_queue.pop() {
                if p.id != self.local.id && !self.is_active(&p.id) {
                    target = Some(p);
                    break;
                }
            }
            if target.is_some() {
                break;
            }
            // Round exhausted: start the next one, a backoff step later.
            self.probe_rounds = self.probe_rounds.saturating_add(1);
            let mut queue: Vec<Peer> = Vec::new();
            for p in self.contacts.iter() {
                if !self.is_active(&p.id) && !queue.iter().any(|q| q.id == p.id) {
                    queue.push(p.clone());
                }
            }
            if queue.is_empty() {
                return false;
            }
            for i in (1..queue.len()).rev() {
                let j = self.probe_rng.gen_range(0..=i);
                queue.swap(i, j);
            }
            self.probe_queue = queue;
        }
        let Some(target) = target else {
            return false;
        };
        let ka = self.config.shuffle_active_count;
        let idx = rand::seq::index::sample(
            &mut self.probe_rng,
            self.active.len(),
            ka.min(self.active.len()),
        );
        let mut sample: Vec<Peer> = idx.iter().map(|i| self.active[i].peer.clone()).collect();
        sample.push(self.local.clone());
        self.probe_from = Some(target.id.clone());
        self.stats.probes += 1;
        self.send(
            target,
            Message::Shuffle {
                origin: self.local.clone(),
                ttl: 1,
                peers: sample,
            },
        );
        true
    }

    fn fill_active(&mut self, now: Millis) {
        loop {
            if self.active.len() + self.pending.len() >= self.config.active_view_size {
                return;
            }
            // Preferred: candidates not cooling down. An empty active view
            // takes anyone (each failure removes the candidate, so this ends).
            let mut cands: Vec<usize> = Vec::new();
            for (i, p) in self.passive.iter().enumerate() {
                if p.cooldown_until <= now
                    && !self
                        .pending
                        .iter()
                        .any(|q| q.h == p.h && q.peer.id == p.peer.id)
                {
                    cands.push(i);
                }
            }
            // Cooled-down entries only when nothing is in flight: the request
            // is then high priority, which a live peer does not refuse, so
            // this cannot ping-pong with a rejecting peer.
            if cands.is_empty() && self.active.is_empty() && self.pending.is_empty() {
                for (i, p) in self.passive.iter().enumerate() {
                    if !self
                        .pending
                        .iter()
                        .any(|q| q.h == p.h && q.peer.id == p.peer.id)
                    {
                        cands.push(i);
                    }
                }
            }
            if cands.is_empty() {
                return;
            }
            let pick = cands[self.rng.gen_range(0..cands.len())];
            let peer = self.passive[pick].peer.clone();
            let high = self.active.is_empty() && !self.pending.iter().any(|p| p.high);
            self.request_neighbor(peer, PendingKind::Promote, high);
        }
    }

    fn request_neighbor(&mut self, peer: Peer, kind: PendingKind, high: bool) {
        if self.pending_index(&peer.id).is_some() {
            return;
        }
        let epoch = self.new_epoch();
        self.stats.neighbor_requests_sent += 1;
        self.send(
            peer.clone(),
            Message::Neighbor {
                high_priority: high,
                epoch,
                merge: kind == PendingKind::Merge,
            },
        );
        self.pending.push(Pending {
            h: id_hash(&peer.id),
            peer,
            epoch,
            kind,
            high,
        });
        let gen = self.timer_gen;
        self.set_timer(
            self.config.neighbor_timeout,
            TimerKind::NeighborTimeout { gen, epoch },
        );
    }

    fn start_join_round(&mut self, now: Millis) {
        let mut queue: Vec<Peer> = self.contacts.clone();
        for s in &self.suspects {
            if !queue.iter().any(|c| c.id == s.peer.id) {
                queue.push(s.peer.clone());
            }
        }
        // Fisher-Yates; popped from the back.
        for i in (1..queue.len()).rev() {
            let j = self.rng.gen_range(0..=i);
            queue.swap(i, j);
        }
        self.join_queue = queue;
        self.join = None;
        self.try_next_join(now);
    }

    fn try_next_join(&mut self, _now: Millis) {
        self.join = None;
        while let Some(c) = self.join_queue.pop() {
            if c.id == self.local.id || self.is_active(&c.id) {
                continue;
            }
            self.nonce = self.nonce.wrapping_add(1);
            let nonce = self.nonce;
            self.stats.joins_sent += 1;
            self.send(c.clone(), Message::Join);
            self.join = Some(JoinAttempt { contact: c, nonce });
            let gen = self.timer_gen;
            self.set_timer(
                self.config.neighbor_timeout,
                TimerKind::JoinTimeout { gen, nonce },
            );
            return;
        }
        // Round exhausted: maintain() schedules the backoff when isolated.
    }

    fn schedule_rejoin(&mut self) {
        let after = backoff(&self.config, self.rejoin_attempts, &mut self.rng);
        self.rejoin_attempts = self.rejoin_attempts.saturating_add(1);
        self.rejoin_scheduled = true;
        let gen = self.timer_gen;
        self.set_timer(after, TimerKind::Rejoin { gen });
    }

    fn jittered(&mut self, interval: Millis) -> Millis {
        let lo = interval - interval / 4;
        let hi = interval.saturating_add(interval / 4);
        self.rng.gen_range(lo..=hi).max(1)
    }

    fn schedule_shuffle(&mut self) {
        let after = self.jittered(self.config.shuffle_interval);
        let gen = self.timer_gen;
        self.set_timer(after, TimerKind::Shuffle { gen });
    }

    fn schedule_promotion(&mut self) {
        let after = self.jittered(self.config.promotion_interval);
        let gen = self.timer_gen;
        self.set_timer(after, TimerKind::Promotion { gen });
    }

    fn merge_quiet_period(&self) -> Millis {
        self.config.promotion_interval.saturating_mul(4)
    }

    fn start_shuffle(&mut self) {
        if self.active.is_empty() {
            return;
        }
        let ka = self.config.shuffle_active_count;
        let kp = self.config.shuffle_passive_count;
        let mut sample: Vec<Peer> = Vec::with_capacity(ka + kp + 1);
        let idx =
            rand::seq::index::sample(&mut self.rng, self.active.len(), ka.min(self.active.len()));
        for i in idx.iter() {
            sample.push(self.active[i].peer.clone());
        }
        sample.extend(self.sample_passive(kp));
        let Some(target) = self.random_active_except(&[]) else {
            return;
        };
        self.shuffle_sent = sample.clone();
        self.shuffle_outstanding = true;
        self.stats.shuffles_started += 1;
        sample.push(self.local.clone());
        let ttl = self.config.shuffle_ttl;
        self.send(
            target,
            Message::Shuffle {
                origin: self.local.clone(),
                ttl,
                peers: sample,
            },
        );
    }

    /// Every `promotion_interval`: maybe probe one peer with a merge
    /// NEIGHBOR, which a full receiver accepts by evicting a random peer.
    ///
    /// Suspects (peers that failed) come first: a healed partition shows up
    /// as a suspect that answers again. A full node probes a suspect only
    /// with probability 1/MERGE_ODDS (a heal needs a few bridges, not one per
    /// node) and, with no suspect picked, a random passive peer with
    /// probability 1/PASSIVE_PROBE_ODDS: that is what merges two halves that
    /// split without any failure (e.g. through evictions under high latency),
    /// at the cost of one link swap per node every ~16 minutes by default.
    ///
    /// A node whose active view has not been full for a whole
    /// `promotion_interval`, and whose low-priority promotions were refused
    /// at least REFUSALS_BEFORE_ESCALATION times meanwhile, probes a random
    /// passive peer instead (half the time when it also has suspects). Its
    /// passive peers are alive but full: a small island left by a massive
    /// failure knows only nodes of the big component, which refuse low
    /// priority for good. In a healthy overlay a short node is usually
    /// filled by another short one well within that time, so this rarely
    /// fires there; when it does it moves one missing link elsewhere.
    /// After a merge (either side) the node stays quiet for a while.
    fn try_merge(&mut self, now: Millis) {
        if now < self.merge_quiet_until || self.pending.iter().any(|p| p.kind == PendingKind::Merge)
        {
            return;
        }
        let full = self.active.len() >= self.config.active_view_size;
        let escalate = !full
            && !self.passive.is_empty()
            && self.refusals >= REFUSALS_BEFORE_ESCALATION
            && self
                .short_since
                .is_some_and(|t| now.saturating_sub(t) >= self.config.promotion_interval);
        let peer = if escalate && (self.suspects.is_empty() || self.rng.gen_bool(0.5)) {
            self.refusals = 0;
            let i = self.rng.gen_range(0..self.passive.len());
            self.passive[i].peer.clone()
        } else if !self.suspects.is_empty() && (!full || self.rng.gen_ratio(1, MERGE_ODDS)) {
            let i = self.rng.gen_range(0..self.suspects.len());
            self.suspects[i].peer.clone()
        } else if full && !self.passive.is_empty() && self.rng.gen_ratio(1, PASSIVE_PROBE_ODDS) {
            let i = self.rng.gen_range(0..self.passive.len());
            self.passive[i].peer.clone()
        } else {
            return;
        };
        if self.pending_index(&peer.id).is_some() || self.is_active(&peer.id) {
            return;
        }
        self.request_neighbor(peer, PendingKind::Merge, false);
    }

    // ---------------------------------------------------------- view helpers

    fn add_active(&mut self, _now: Millis, peer: Peer, epoch: u64) {
        if let Some(i) = self.active_index(&peer.id) {
            self.active[i].epoch = self.active[i].epoch.max(epoch);
            return;
        }
        if self.active.len() >= self.config.active_view_size {
            self.evict_random_active();
        }
        if let Some(i) = self.passive_index(&peer.id) {
            self.passive.remove(i);
        }
        if let Some(i) = self.suspect_index(&peer.id) {
            self.suspects.remove(i);
        }
        self.outputs.push_back(Output::PeerUp(peer.clone()));
        self.active.push(ActiveEntry {
            h: id_hash(&peer.id),
            peer,
            epoch,
        });
        self.rejoin_attempts = 0;
    }

    /// Drop a random active peer to make room; it moves to the passive view.
    fn evict_random_active(&mut self) {
        if self.active.is_empty() {
            return;
        }
        let i = self.rng.gen_range(0..self.active.len());
        let a = self.active.remove(i);
        self.record_drop(&a);
        self.send(a.peer.clone(), Message::Disconnect { epoch: a.epoch });
        self.outputs.push_back(Output::Disconnect {
            peer: a.peer.clone(),
        });
        self.outputs.push_back(Output::PeerDown(a.peer.clone()));
        self.insert_passive(a.peer, 0, &[]);
    }

    /// Add to the passive view (unless self/active), evicting first an entry
    /// listed in `prefer_evict`, else a random one.
    fn insert_passive(&mut self, peer: Peer, cooldown_until: Millis, prefer_evict: &[Peer]) {
        if peer.id == self.local.id || self.is_active(&peer.id) {
            return;
        }
        if let Some(i) = self.suspect_index(&peer.id) {
            self.suspects.remove(i);
        }
        if let Some(i) = self.passive_index(&peer.id) {
            let e = &mut self.passive[i];
            if peer.incarnation >= e.peer.incarnation {
                e.peer = peer;
            }
            e.cooldown_until = e.cooldown_until.max(cooldown_until);
            return;
        }
        let cap = self.config.passive_view_size;
        if cap == 0 {
            return;
        }
        if self.passive.len() >= cap {
            let victim = prefer_evict
                .iter()
                .find_map(|s| self.passive_index(&s.id))
                .unwrap_or_else(|| self.rng.gen_range(0..self.passive.len()));
            let old = self.passive.remove(victim);
            self.remember(old.peer);
        }
        self.passive.push(PassiveEntry {
            h: id_hash(&peer.id),
            peer,
            cooldown_until,
        });
    }

    fn record_drop(&mut self, a: &ActiveEntry) {
        if self.dropped.len() >= DROPPED_MEMORY {
            self.dropped.pop_front();
        }
        self.dropped.push_back((a.h, a.peer.incarnation, a.epoch));
    }

    fn reserve_capacity(&self) -> usize {
        self.config.passive_view_size.saturating_mul(RESERVE_FACTOR)
    }

    fn remember(&mut self, peer: Peer) {
        let cap = self.reserve_capacity();
        if cap == 0 {
            return;
        }
        // Duplicates are possible and harmless: known peers are skipped
        // when drawing.
        if self.reserve.len() >= cap {
            self.reserve.pop_front();
        }
        self.reserve.push_back(peer);
    }

    /// No promotion candidate left: move some remembered peers back into the
    /// passive view (most recent first). Dead ones fail and become suspects.
    fn refill_from_reserve(&mut self) {
        let want = (self.config.passive_view_size / 2).max(1);
        let mut moved = 0;
        while moved < want {
            let Some(p) = self.reserve.pop_back() else {
                break;
            };
            if p.id == self.local.id
                || self.is_active(&p.id)
                || self.passive_index(&p.id).is_some()
                || self.suspect_index(&p.id).is_some()
            {
                continue;
            }
            self.insert_passive(p, 0, &[]);
            moved += 1;
        }
    }

    fn add_suspect(&mut self, peer: Peer) {
        if peer.id == self.local.id || self.is_active(&peer.id) {
            return;
        }
        if let Some(i) = self.passive_index(&peer.id) {
            self.passive.remove(i);
        }
        if let Some(i) = self.suspect_index(&peer.id) {
            let s = &mut self.suspects[i];
            if peer.incarnation > s.peer.incarnation {
                s.peer = peer;
                s.failures = 0;
            }
            return;
        }
        let cap = self.suspect_capacity();
        if self.suspects.len() >= cap {
            // Drop the one that failed most often (oldest on ties).
            let mut worst = 0;
            for (i, s) in self.suspects.iter().enumerate() {
                if s.failures > self.suspects[worst].failures {
                    worst = i;
                }
            }
            self.suspects.remove(worst);
        }
        self.suspects.push(Suspect {
            h: id_hash(&peer.id),
            peer,
            failures: 0,
        });
    }

    fn suspect_failed(&mut self, id: &str) {
        if let Some(i) = self.suspect_index(id) {
            let s = &mut self.suspects[i];
            s.failures = s.failures.saturating_add(1);
        }
    }

    fn suspect_capacity(&self) -> usize {
        self.config
            .passive_view_size
            .max(self.config.active_view_size)
    }

    fn integrate(&mut self, peers: Vec<Peer>, sent: &[Peer]) {
        for p in peers {
            if p.id == self.local.id {
                continue;
            }
            match self.freshness(&p) {
                Freshness::Older | Freshness::Same => continue,
                Freshness::Newer => {
                    self.purge_old_incarnation(&p);
                    if self.suspect_index(&p.id).is_some() {
                        continue;
                    }
                }
                Freshness::Unknown => {}
            }
            self.insert_passive(p, 0, sent);
        }
    }

    fn sample_passive(&mut self, k: usize) -> Vec<Peer> {
        let n = self.passive.len();
        let idx = rand::seq::index::sample(&mut self.rng, n, k.min(n));
        idx.iter().map(|i| self.passive[i].peer.clone()).collect()
    }

    fn random_active_except(&mut self, except: &[&str]) -> Option<Peer> {
        // Hashes first: this runs on every forwarded SHUFFLE/FORWARDJOIN,
        // and comparing ids would read every active peer's id.
        let mut skip = [(0u64, ""); 2];
        let mut skip_vec = Vec::new();
        let except_h: &[(u64, &str)] = if except.len() <= skip.len() {
            for (slot, id) in skip.iter_mut().zip(except) {
                *slot = (id_hash(id), id);
            }
            &skip[..except.len()]
        } else {
            skip_vec.extend(except.iter().map(|id| (id_hash(id), *id)));
            &skip_vec
        };
        let keep = |a: &ActiveEntry| !except_h.iter().any(|&(h, id)| a.h == h && a.peer.id == id);
        let n = self.active.iter().filter(|a| keep(a)).count();
        if n == 0 {
            return None;
        }
        let k = self.rng.gen_range(0..n);
        self.active
            .iter()
            .filter(|a| keep(a))
            .nth(k)
            .map(|a| a.peer.clone())
    }

    /// A FORWARDJOIN or SHUFFLE from `from` implies it holds us in its active
    /// view; if we do not hold it, tell it (asymmetric link repair).
    fn check_implied_link(&mut self, from: &Peer) {
        let joining_via = self.join.as_ref().is_some_and(|j| j.contact.id == from.id);
        if !self.is_active(&from.id) && self.pending_index(&from.id).is_none() && !joining_via {
            self.stats.asymmetry_repairs += 1;
            // Our clock bounds every epoch we ever agreed to with it, so this
            // cannot tear down a link it proposes afterwards.
            let epoch = self.clock;
            self.send(from.clone(), Message::Disconnect { epoch });
        }
    }

    /// Close a connection used only for a one-off exchange.
    fn close_if_idle(&mut self, peer: &Peer) {
        if !self.is_active(&peer.id) && self.pending_index(&peer.id).is_none() {
            self.outputs
                .push_back(Output::Disconnect { peer: peer.clone() });
        }
    }

    fn freshness(&self, peer: &Peer) -> Freshness {
        let h = id_hash(&peer.id);
        let id = peer.id.as_str();
        let known = if let Some(i) = self.active_index_h(h, id) {
            &self.active[i].peer
        } else if let Some(i) = self.pending_index_h(h, id) {
            &self.pending[i].peer
        } else if let Some(i) = self.passive_index_h(h, id) {
            &self.passive[i].peer
        } else if let Some(i) = self.suspect_index_h(h, id) {
            &self.suspects[i].peer
        } else {
            return Freshness::Unknown;
        };
        match known.incarnation.cmp(&peer.incarnation) {
            std::cmp::Ordering::Equal => Freshness::Same,
            std::cmp::Ordering::Greater => Freshness::Older,
            std::cmp::Ordering::Less => Freshness::Newer,
        }
    }

    /// `peer` restarted: forget every entry of its older incarnations.
    fn purge_old_incarnation(&mut self, peer: &Peer) {
        if let Some(i) = self.active_index(&peer.id) {
            if self.active[i].peer.incarnation < peer.incarnation {
                let a = self.active.remove(i);
                self.record_drop(&a);
                self.outputs.push_back(Output::PeerDown(a.peer));
            }
        }
        self.pending
            .retain(|p| !(p.peer.id == peer.id && p.peer.incarnation < peer.incarnation));
        if let Some(i) = self.passive_index(&peer.id) {
            if self.passive[i].peer.incarnation < peer.incarnation {
                self.passive[i].peer = peer.clone();
                self.passive[i].cooldown_until = 0;
            }
        }
        if let Some(i) = self.suspect_index(&peer.id) {
            if self.suspects[i].peer.incarnation < peer.incarnation {
                self.suspects.remove(i);
                if self.passive_index(&peer.id).is_none() {
                    self.insert_passive(peer.clone(), 0, &[]);
                }
            }
        }
    }

    fn remove_pending_to(&mut self, id: &str) {
        self.pending.retain(|p| p.peer.id != id);
    }

    fn active_index(&self, id: &str) -> Option<usize> {
        self.active_index_h(id_hash(id), id)
    }

    fn passive_index(&self, id: &str) -> Option<usize> {
        self.passive_index_h(id_hash(id), id)
    }

    fn suspect_index(&self, id: &str) -> Option<usize> {
        self.suspect_index_h(id_hash(id), id)
    }

    fn pending_index(&self, id: &str) -> Option<usize> {
        self.pending_index_h(id_hash(id), id)
    }

    fn active_index_h(&self, h: u64, id: &str) -> Option<usize> {
        self.active.iter().position(|a| a.h == h && a.peer.id == id)
    }

    fn passive_index_h(&self, h: u64, id: &str) -> Option<usize> {
        self.passive
            .iter()
            .position(|p| p.h == h && p.peer.id == id)
    }

    fn suspect_index_h(&self, h: u64, id: &str) -> Option<usize> {
        self.suspects
            .iter()
            .position(|s| s.h == h && s.peer.id == id)
    }

    fn pending_index_h(&self, h: u64, id: &str) -> Option<usize> {
        self.pending
            .iter()
            .position(|p| p.h == h && p.peer.id == id)
    }

    fn new_epoch(&mut self) -> u64 {
        self.clock = self.clock.saturating_add(1);
        self.clock
    }

    fn observe_epoch(&mut self, epoch: u64) {
        self.clock = self.clock.max(epoch);
    }

    fn send(&mut self, to: Peer, message: Message) {
        self.outputs.push_back(Output::Send { to, message });
    }

    fn set_timer(&mut self, after: Millis, kind: TimerKind) {
        self.outputs.push_back(Output::SetTimer {
            after,
            timer: Timer(kind),
        });
    }
}

/// `rejoin_backoff_min` doubled `attempts` times, capped at
/// `rejoin_backoff_max`, with jitter in [d/2, d] so nodes do not retry in
/// lockstep.
fn backoff(config: &Config, attempts: u32, rng: &mut SmallRng) -> Millis {
    let min = config.rejoin_backoff_min;
    let max = config.rejoin_backoff_max;
    let mut d = min;
    for _ in 0..attempts.min(64) {
        d = d.saturating_mul(2);
        if d >= max {
            break;
        }
    }
    let d = d.min(max);
    rng.gen_range(d / 2..=d).max(1)
}
