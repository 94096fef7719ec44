//! NEIGHBOR requests awaiting their answer.
//!
//! At most one request per peer; each is named by the epoch of the link it
//! would create, so a late or duplicated answer (or timeout) that names
//! another epoch does not match. The number in flight is bounded by the
//! callers (promotions fill at most the free active slots, FORWARDJOIN
//! acceptances at most 2 × `active_view_size`, one merge request at a time).

use crate::message::Priority;
use crate::peer::IdLike;
use crate::views::PeerSet;
use crate::{Identity, Peer, PeerId};

/// Why we asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RequestKind {
    /// Filling the active view from the passive view (the paper's
    /// promotion).
    Promotion,
    /// End of a FORWARDJOIN walk: asking the joiner.
    ForwardJoin,
    /// Low-rate merge request (partition healing, see `repair.rs`).
    Merge,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Request {
    pub(crate) epoch: u64,
    pub(crate) kind: RequestKind,
    pub(crate) priority: Priority,
}

pub(crate) struct Requests<I: Identity = PeerId> {
    set: Option<PeerSet<I, Request>>,
}

impl<I: Identity> Default for Requests<I> {
    fn default() -> Self {
        Requests { set: None }
    }
}

impl<I: Identity> Requests<I> {
    /// The set is allocated on first use and kept (emptied, not freed)
    /// until `clear`: requests come and go all the time on a node that is
    /// short, and freeing the set whenever it emptied made each request
    /// allocate and free it again. Its size is bounded by the callers.
    fn set(&self) -> Option<&PeerSet<I, Request>> {
        self.set.as_ref()
    }

    pub(crate) fn len(&self) -> usize {
        self.set().map_or(0, |s| s.len())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn contains<K: IdLike<I> + ?Sized>(&self, id: &K) -> bool {
        self.set().is_some_and(|s| s.contains(id))
    }

    pub(crate) fn peer<K: IdLike<I> + ?Sized>(&self, id: &K) -> Option<&Peer<I>> {
        self.set().and_then(|s| s.get(id)).map(|s| &s.peer)
    }

    /// The peers asked.
    pub(crate) fn peers(&self) -> impl Iterator<Item = &Peer<I>> {
        self.set()
            .into_iter()
            .flat_map(|s| s.iter().map(|r| &r.peer))
    }

    pub(crate) fn any(&self, f: impl Fn(&Request) -> bool) -> bool {
        self.set().is_some_and(|s| s.iter().any(|r| f(&r.meta)))
    }

    pub(crate) fn insert(&mut self, peer: Peer<I>, request: Request) {
        debug_assert!(!self.contains(&peer.id));
        self.set
            .get_or_insert_with(PeerSet::new)
            .push(peer, request);
    }

    /// Takes the request to `id`, whatever its epoch.
    pub(crate) fn take(&mut self, id: &I) -> Option<(Peer<I>, Request)> {
        self.set.as_mut()?.remove(id).map(|s| (s.peer, s.meta))
    }

    /// Takes the request to `id` only if it is the one named `epoch`.
    pub(crate) fn take_answered(&mut self, id: &I, epoch: u64) -> Option<(Peer<I>, Request)> {
        let set = self.set.as_mut()?;
        let i = set.position(id)?;
        if set.at(i).meta.epoch != epoch {
            return None;
        }
        let s = set.remove_at(i);
        Some((s.peer, s.meta))
    }

    /// Takes the request named `epoch` (its timeout fired).
    pub(crate) fn take_epoch(&mut self, epoch: u64) -> Option<(Peer<I>, Request)> {
        let set = self.set.as_mut()?;
        let i = set.iter().position(|s| s.meta.epoch == epoch)?;
        let s = set.remove_at(i);
        Some((s.peer, s.meta))
    }

    /// Forgets requests to incarnations of `peer` older than it; a request
    /// to a gossiped peer (incarnation unknown) learns it instead.
    pub(crate) fn purge_older(&mut self, peer: &Peer<I>) {
        if let Some(set) = self.set.as_mut() {
            set.retain(|s| {
                !(s.peer.id == peer.id
                    && s.peer.incarnation != crate::peer::UNKNOWN_INCARNATION
                    && s.peer.incarnation < peer.incarnation)
            });
            if let Some(s) = set.get_mut(&peer.id) {
                if s.peer.incarnation < peer.incarnation {
                    s.peer = peer.clone();
                }
            }
        }
    }

    pub(crate) fn clear(&mut self) {
        self.set = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn peer(id: &str, inc: u64) -> Peer {
        Peer::new(id, SocketAddr::from(([127, 0, 0, 1], 1)), inc)
    }

    fn req(epoch: u64) -> Request {
        Request {
            epoch,
            kind: RequestKind::Promotion,
            priority: Priority::Low,
        }
    }

    #[test]
    fn answers_match_only_their_epoch() {
        let mut r = Requests::default();
        r.insert(peer("a", 1), req(7));
        let a = PeerId::new("a");
        assert!(r.take_answered(&a, 6).is_none());
        assert!(r.contains("a"));
        assert_eq!(r.take_answered(&a, 7).map(|(_, q)| q.epoch), Some(7));
        assert!(r.is_empty() && r.set.is_some(), "kept when empty");
        r.clear();
        assert!(r.set.is_none(), "freed by clear");
    }

    #[test]
    fn timeouts_find_requests_by_epoch_and_restarts_purge_them() {
        let mut r = Requests::default();
        r.insert(peer("a", 1), req(1));
        r.insert(peer("b", 1), req(2));
        assert_eq!(
            r.take_epoch(2).map(|(p, _)| p.id.to_string()),
            Some("b".into())
        );
        r.purge_older(&peer("a", 1));
        assert_eq!(r.len(), 1, "same incarnation kept");
        r.purge_older(&peer("a", 2));
        assert!(r.is_empty());
    }
}
