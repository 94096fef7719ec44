//! Moving peers between the views as the handlers decide: making room in
//! the active view, the SHUFFLE handlers and integrating received peers
//! (with their budgets, `quota.rs`), incarnation checks, the asymmetric-link
//! repair, and what a lost connection or failed dial does. The sets and
//! their invariants are in `views.rs`.
//!
//! Modification from paper: a restarted peer (same id, higher incarnation,
//! seen in its own message: never from gossip) replaces every entry of its
//! older run, and a FORWARDJOIN or SHUFFLE from
//! a peer we do not hold is answered with DISCONNECT so no link stays
//! one-sided.

use crate::events::Output;
use crate::node::{Node, MAX_PEERS_IN_MESSAGE};
use crate::quota;
use crate::views::Evict;
use crate::{Identity, Message, Millis, Peer};

/// Where a peer id is known, and with which incarnation.
pub(crate) enum Freshness {
    Unknown,
    Same,
    Older,
    Newer,
}

/// Where gossiped peers come from, for their budget (see `quota.rs`).
#[derive(Clone, Copy)]
pub(crate) enum Gossip<'a, I> {
    /// An answer we asked for (our SHUFFLE, probe or JOIN): one per request.
    Solicited,
    /// Pushed by this (authenticated) sender: within its budget.
    Unsolicited(&'a I),
}

/// Why a peer is unreachable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Loss {
    Connection,
    Dial,
}

impl<I: Identity> Node<I> {
    /// Connection lost or dial failed: `peer` is (probably) unreachable.
    pub(crate) fn on_unreachable(&mut self, peer: Peer<I>, loss: Loss) {
        if peer.id == self.local.id {
            return;
        }
        if let Some(i) = self.views.active.position(&peer.id) {
            if peer.incarnation < self.views.active.at(i).peer.incarnation {
                self.stats.stale_ignored += 1;
                return;
            }
            let a = self.views.remove_active_at(i);
            self.stats.failures_detected += 1;
            self.outputs.push_back(Output::PeerDown(a.peer.clone()));
            self.views.add_suspect(a.peer);
            // crossing: the component may have split.
            self.crossing.forget_met();
            // The neighbourhood shrank: probe promptly if it comes to that.
            self.probe.restart_rounds();
        }
        if let Some((p, request)) = self.requests.take(&peer.id) {
            self.request_failed(p, request.kind);
        }
        if self.join.is_joining_via(&peer.id) {
            self.try_next_join();
        }
        if loss == Loss::Dial {
            // Whatever we sent it was lost; a passive entry we cannot reach
            // is no longer a preferred candidate.
            match self.views.passive.get(&peer.id) {
                Some(e) if e.peer.incarnation <= peer.incarnation => {
                    let e = self.views.passive.remove(&peer.id).expect("just found");
                    self.views.add_suspect(e.peer);
                }
                Some(_) => {}
                None => self.views.suspect_failed(&peer.id),
            }
        }
    }

    /// A peer seen with an older incarnation than we know is stale
    /// (counted, to be ignored); a newer one replaces every entry of the old
    /// run first. Returns whether the caller may go on.
    pub(crate) fn admit_incarnation(&mut self, peer: &Peer<I>) -> bool {
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

    /// Puts `peer` in the active view (making room by evicting a random
    /// peer), or refreshes the epoch of its link.
    pub(crate) fn add_active(&mut self, peer: Peer<I>, epoch: u64) {
        if let Some(a) = self.views.active.get_mut(&peer.id) {
            a.meta = a.meta.max(epoch);
            return;
        }
        if self.views.active_full() {
            self.evict_random_active();
        }
        self.outputs.push_back(Output::PeerUp(peer.clone()));
        self.views.push_active(peer, epoch);
        self.join.reset_backoff();
    }

    /// Drops a random active peer to make room; it moves to the passive view.
    pub(crate) fn evict_random_active(&mut self) {
        let Some(i) = self.views.active.random_where(&mut self.rng, |_, _| true) else {
            return;
        };
        let a = self.views.remove_active_at(i);
        self.send(a.peer.clone(), Message::Disconnect { epoch: a.meta });
        self.outputs.push_back(Output::Disconnect {
            peer: a.peer.clone(),
        });
        self.outputs.push_back(Output::PeerDown(a.peer.clone()));
        self.insert_passive(a.peer, 0, &[]);
    }

    pub(crate) fn insert_passive(&mut self, peer: Peer<I>, cooldown: Millis, prefer: &[Peer<I>]) {
        self.views
            .insert_passive(peer, cooldown, prefer, &mut self.rng);
    }

    /// The paper's SHUFFLE: forwarded along its walk; at its end the
    /// peers received are integrated (within budget) and answered with a
    /// passive sample.
    pub(crate) fn on_shuffle(
        &mut self,
        now: Millis,
        from: Peer<I>,
        origin: Peer<I>,
        ttl: u32,
        mut peers: Vec<Peer<I>>,
    ) {
        // A direct SHUFFLE with TTL 1 may be a contact probe from a node
        // that does not hold us: no link is implied.
        if !(ttl <= 1 && from.id == origin.id) {
            self.check_implied_link(&from);
        }
        let ttl = ttl.min(self.config.shuffle_ttl).saturating_sub(1);
        // The origin is gossip unless it is the sender (see `gossiped`).
        let Some(origin) = self.gossiped(&from, origin) else {
            return;
        };
        // crossing: a walk through active links proves the component.
        self.prove_walk(now, &from, &origin, &peers);
        peers.truncate(MAX_PEERS_IN_MESSAGE);
        if ttl > 0 && self.views.active.len() > 1 {
            if let Some(next) = self.random_active_except(&from.id, &origin.id) {
                self.send(next, Message::Shuffle { origin, ttl, peers });
                return;
            }
        }
        let reply = self.views.passive.sample(&mut self.rng, peers.len());
        self.integrate(now, peers, &reply, Gossip::Unsolicited(&from.id));
        self.send(origin.clone(), Message::ShuffleReply { peers: reply });
        self.close_if_idle(&origin);
    }

    pub(crate) fn on_shuffle_reply(
        &mut self,
        now: Millis,
        from: &Peer<I>,
        mut peers: Vec<Peer<I>>,
    ) {
        peers.truncate(MAX_PEERS_IN_MESSAGE);
        // Only answers we asked for are integrated, one per request: their
        // rate is ours, so only the per-message bound applies.
        if self.crossing.take_reply(&from.id) {
            // crossing: the contact's answer names the merge target.
            self.finish_crossing(now, from, peers);
        } else if self.probe.awaiting.as_ref() == Some(&from.id) {
            // Answer to our contact probe: the contact is alive too.
            self.probe.awaiting = None;
            self.integrate(now, peers, &[], Gossip::Solicited);
            self.insert_passive(from.clone(), 0, &[]);
        } else if self.join.seed_from.as_ref() == Some(&from.id) {
            // The passive-view seed from the contact that accepted our JOIN.
            self.join.seed_from = None;
            self.integrate(now, peers, &[], Gossip::Solicited);
        } else if let Some(sent) = self.shuffle_sent.take() {
            // crossing: our walk ended at `from` through active links.
            self.crossing.met(&from.id, now);
            self.integrate(now, peers, &sent, Gossip::Solicited);
        }
    }

    /// Received peers enter the passive view unless known, invalid or over
    /// budget; `sent` are evicted first when it is full (the paper's rule).
    ///
    /// Modification from paper: a known entry is kept as it is (gossip never
    /// purges or replaces it: an incarnation is learned only from the peer's
    /// own messages), a new one is stored with an unknown incarnation, one
    /// message replaces at most a SHUFFLE's worth of entries, and a sender's
    /// unsolicited entries are budgeted over time.
    pub(crate) fn integrate(
        &mut self,
        now: Millis,
        peers: Vec<Peer<I>>,
        sent: &[Peer<I>],
        from: Gossip<I>,
    ) {
        let cap = quota::shuffle_size(&self.config);
        let period = quota::sender_period(&self.config);
        let mut replaced = 0;
        let mut evict = Evict::first(sent);
        for p in peers {
            if p.id == self.local.id || self.known(&p.id).is_some() {
                continue;
            }
            if !self.id_rule.admits(&p.id) {
                self.stats.gossip_ignored += 1;
                continue;
            }
            let full = self.views.passive_full();
            if full && replaced >= cap {
                self.stats.gossip_ignored += 1;
                continue;
            }
            if let Gossip::Unsolicited(sender) = from {
                if !self.senders.take(sender, now, cap, period) {
                    self.stats.gossip_ignored += 1;
                    continue;
                }
            }
            replaced += u64::from(full);
            let p = Peer {
                incarnation: crate::peer::UNKNOWN_INCARNATION,
                ..p
            };
            let rng = &mut self.rng;
            self.views.insert_unknown_passive(p, 0, &mut evict, rng);
        }
    }

    /// A peer named in a message from `from`: `from` itself (authenticated
    /// by the transport), else the entry we know, else the named peer with
    /// its incarnation unknown. None for ourselves and for invalid ids.
    pub(crate) fn gossiped(&mut self, from: &Peer<I>, p: Peer<I>) -> Option<Peer<I>> {
        if p.id == from.id {
            return Some(from.clone());
        }
        if p.id == self.local.id {
            return None;
        }
        if let Some(known) = self.known(&p.id) {
            return Some(known.clone());
        }
        if !self.id_rule.admits(&p.id) {
            self.stats.gossip_ignored += 1;
            return None;
        }
        Some(Peer {
            incarnation: crate::peer::UNKNOWN_INCARNATION,
            ..p
        })
    }

    /// One NEIGHBOR request to a gossiped peer, if the dial budget allows.
    pub(crate) fn take_dial(&mut self, now: Millis) -> bool {
        let cap = quota::dial_burst(&self.config);
        if self.dials.take(now, cap, self.config.shuffle_interval) {
            true
        } else {
            self.stats.dials_deferred += 1;
            false
        }
    }

    /// A random active peer other than `a` and `b` (hash compares only).
    pub(crate) fn random_active_except(&mut self, a: &I, b: &I) -> Option<Peer<I>> {
        let i = self
            .views
            .active
            .random_where(&mut self.rng, |_, s| s.peer.id != *a && s.peer.id != *b)?;
        Some(self.views.active.at(i).peer.clone())
    }

    /// A FORWARDJOIN or SHUFFLE from `from` implies it holds us in its active
    /// view; if we do not hold it, tell it (asymmetric link repair).
    pub(crate) fn check_implied_link(&mut self, from: &Peer<I>) {
        if !self.is_active(&from.id)
            && !self.requests.contains(&from.id)
            && !self.join.is_joining_via(&from.id)
        {
            self.stats.asymmetry_repairs += 1;
            // Our clock bounds every epoch we ever agreed to with it, so this
            // cannot tear down a link it proposes afterwards.
            let epoch = self.clock;
            self.send(from.clone(), Message::Disconnect { epoch });
        }
    }

    /// Close a connection used only for a one-off exchange.
    pub(crate) fn close_if_idle(&mut self, peer: &Peer<I>) {
        if !self.is_active(&peer.id) && !self.requests.contains(&peer.id) {
            self.outputs
                .push_back(Output::Disconnect { peer: peer.clone() });
        }
    }

    /// The entry held for `id` in any set, with its incarnation.
    pub(crate) fn known(&self, id: &I) -> Option<&Peer<I>> {
        let v = &self.views;
        v.active
            .get(id)
            .map(|s| &s.peer)
            .or_else(|| self.requests.peer(id))
            .or_else(|| v.passive.get(id).map(|s| &s.peer))
            .or_else(|| v.suspects.get(id).map(|s| &s.peer))
    }

    pub(crate) fn freshness(&self, peer: &Peer<I>) -> Freshness {
        let Some(known) = self.known(&peer.id) else {
            return Freshness::Unknown;
        };
        match known.incarnation.cmp(&peer.incarnation) {
            std::cmp::Ordering::Equal => Freshness::Same,
            std::cmp::Ordering::Greater => Freshness::Older,
            std::cmp::Ordering::Less => Freshness::Newer,
        }
    }

    /// `peer` restarted: forget every entry of its older incarnations.
    pub(crate) fn purge_old_incarnation(&mut self, peer: &Peer<I>) {
        let id = &peer.id;
        if let Some(i) = self.views.active.position(id) {
            if self.views.active.at(i).peer.incarnation < peer.incarnation {
                let a = self.views.remove_active_at(i);
                self.outputs.push_back(Output::PeerDown(a.peer));
            }
        }
        self.requests.purge_older(peer);
        if let Some(e) = self.views.passive.get_mut(id) {
            if e.peer.incarnation < peer.incarnation {
                e.peer = peer.clone();
                e.meta = 0;
            }
        }
        let restarted_suspect = self
            .views
            .suspects
            .get(id)
            .is_some_and(|s| s.peer.incarnation < peer.incarnation);
        if restarted_suspect {
            self.views.suspects.remove(id);
            if !self.views.passive.contains(id) {
                self.insert_passive(peer.clone(), 0, &[]);
            }
        }
    }
}
