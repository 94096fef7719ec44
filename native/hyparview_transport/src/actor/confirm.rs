//! Announcing an active peer only once both ends hold the link.
//!
//! The core puts a peer in its active view at one end first: the end that
//! accepts a JOIN or NEIGHBOR holds the link a round trip before the end
//! that asked, and that end may still refuse it (a full view answers
//! DISCONNECT). An owner that acts on `PeerUp` at once (the libcluster
//! strategy connects Erlang distribution) would act on a link the other end
//! does not hold yet, and the other end would see a link outside its view.
//! So `Event::PeerUp` waits until the peer has shown that it holds us:
//!
//! - a NEIGHBOR reply accepting the link: the answer to our JOIN or
//!   NEIGHBOR (the peer took us before answering), or the echo that the
//!   asking end sends when it takes a link we accepted (`link_accepted` in
//!   the core), so both ends hear it within a round trip;
//! - a PING on its current connection: peers ping only their active peers
//!   (`Actor::heartbeat`), and the asking end sends one right behind its
//!   echo: the fallback for a link whose echo never came.
//!
//! Until then the peer is *unconfirmed*: the core and Plumtree use it, the
//! snapshot lists it, but the owner hears nothing, and if it leaves the
//! view first, nothing at all (no `PeerDown` for a peer never announced).
//!
//! The end confirmed by a later message than the one that made it take the
//! link (the accepting end, by the echo) announces last, when the other end
//! already has: `Event::Connect` tells the owner so, right before the
//! `PeerUp`. That end has also handled everything the link cost it (the
//! `PeerDown` of the peer it evicted for it came out first), so an owner
//! connecting from there adds its link after its own evictions, and the
//! other end had made room a round trip earlier.

use super::*;

/// The peer whose message `input` is, when that message shows it holds us
/// in its active view.
pub(super) fn holds_us(input: &Input) -> Option<PeerId> {
    match input {
        Input::Message {
            from,
            message: Message::NeighborReply { accepted: true, .. },
        } => Some(from.id.clone()),
        _ => None,
    }
}

impl Actor {
    /// The core took `peer` into its active view (while handling the input
    /// `drain_inbox` is on: `fresh` names the peers it added).
    pub(super) fn peer_up(&mut self, peer: Peer) {
        self.unconfirmed.retain(|p| p.id != peer.id);
        self.fresh.push(peer.id.clone());
        self.unconfirmed.push(peer);
    }

    /// The core dropped `peer` from its active view.
    pub(super) fn peer_down(&mut self, peer: Peer) {
        match self.unconfirmed.iter().position(|p| p.id == peer.id) {
            Some(i) => {
                self.unconfirmed.swap_remove(i);
            }
            None => self.emit(Event::PeerDown(peer)),
        }
    }

    /// `id` holds us: announce it if we hold it too and had not yet. The
    /// message that showed it is the one that made us take the link (the
    /// answer to our request: the peer announced it before answering), or
    /// a later one (then we announce last).
    pub(super) fn confirm(&mut self, id: &PeerId, by: Confirmation) {
        if let Some(i) = self.unconfirmed.iter().position(|p| &p.id == id) {
            let peer = self.unconfirmed.swap_remove(i);
            match by {
                Confirmation::Later => self.emit(Event::Connect(peer.id.clone())),
                // The other end is confirmed by our echo; a PING right
                // behind it is the fallback should the echo not come
                // through, without waiting a keepalive interval.
                Confirmation::Same => {
                    if let Some(cid) = self.links.current(&Remote(peer.clone())) {
                        self.enqueue(cid, &Frame::Ping);
                    }
                }
            }
            self.emit(Event::PeerUp(peer));
        }
    }
}

/// Which message confirmed a link, relative to the one that made us take it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Confirmation {
    Same,
    Later,
}

impl Confirmation {
    /// For a confirmation of `id` by the input just handled, which took the
    /// peers in `fresh` into the view.
    pub(super) fn of(id: &PeerId, fresh: &[PeerId]) -> Confirmation {
        if fresh.contains(id) {
            Confirmation::Same
        } else {
            Confirmation::Later
        }
    }
}
