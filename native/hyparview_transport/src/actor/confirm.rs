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
//!   (`Actor::heartbeat`), a fallback for a link whose echo never came.
//!
//! Until then the peer is *unconfirmed*: the core and Plumtree use it, the
//! snapshot lists it, but the owner hears nothing, and if it leaves the
//! view first, nothing at all (no `PeerDown` for a peer never announced).

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
    /// The core took `peer` into its active view.
    pub(super) fn peer_up(&mut self, peer: Peer) {
        self.unconfirmed.retain(|p| p.id != peer.id);
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

    /// `id` holds us: announce it if we hold it too and had not yet.
    pub(super) fn confirm(&mut self, id: &PeerId) {
        if let Some(i) = self.unconfirmed.iter().position(|p| &p.id == id) {
            let peer = self.unconfirmed.swap_remove(i);
            self.emit(Event::PeerUp(peer));
        }
    }
}
