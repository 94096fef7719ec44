//! Wire messages of Plumtree (paper §4, Algorithms 1-3). The transport
//! encodes them (postcard); every field may come from an untrusted peer, so
//! the state machine bounds how much of each list it looks at.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Hops a message travelled before the node sending it: the origin sends
/// round 0, a node that received round `r` forwards round `r + 1` (the
/// paper's `round`). Saturates instead of overflowing.
pub type Round = u32;

/// A broadcast's identity: its origin, the origin's incarnation (a number
/// the origin picks at start and that grows across its restarts) and the
/// origin's sequence number within that incarnation (0, 1, 2, ...).
///
/// Modification from paper: the paper's `mID` is any unique id; an
/// (origin, incarnation, seq) triple additionally gives each origin a FIFO
/// stream, and lets a restarted origin replace its old stream.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MessageId<P> {
    pub origin: P,
    pub incarnation: u64,
    pub seq: u64,
}

/// A payload in full, pushed eagerly along tree branches or sent in reply
/// to a [`Message::Graft`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gossip<P> {
    pub id: MessageId<P>,
    pub round: Round,
    pub payload: Bytes,
}

impl<P: fmt::Debug> fmt::Debug for Gossip<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gossip")
            .field("id", &self.id)
            .field("round", &self.round)
            .field("payload", &format_args!("<{} bytes>", self.payload.len()))
            .finish()
    }
}

/// One entry of an IHAVE: "I have `id` and would send it to you at `round`".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement<P> {
    pub id: MessageId<P>,
    pub round: Round,
}

/// The four messages of the paper.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message<P> {
    /// GOSSIP(m, mID, round): a payload.
    Gossip(Gossip<P>),
    /// IHAVE(mID, round), batched: payload ids announced on lazy links.
    /// Modification from paper: one IHAVE carries many announcements (the
    /// paper's lazy-push "policy" is left open; we batch on a timer).
    IHave(Vec<Announcement<P>>),
    /// GRAFT(mID, round): make the link eager again in `scope` for
    /// `origin`, and send the payloads of `ids`. A repair (missing
    /// messages) is `Scope::Shared` and also makes the link eager in the
    /// own trees of the ids' origins; the tree optimisation sends an empty
    /// list with `Scope::Origin`.
    /// Modification from paper: a list instead of one id; the round is not
    /// carried because the replying node uses its own distance; the origin
    /// and scope name the tree (see `tree.rs`).
    Graft {
        origin: P,
        scope: Scope,
        ids: Vec<MessageId<P>>,
    },
    /// PRUNE: the sender moved this link to lazy in `scope` for `origin`
    /// (a duplicate of one of `origin`'s messages came on it, or the tree
    /// optimisation replaced it); do the same.
    Prune { origin: P, scope: Scope },
}

/// Which tree a PRUNE or GRAFT changes. The sender names the tree it
/// changed, so both ends of a link change the same one even when only one
/// of them has a tree of its own for the origin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Scope {
    /// The shared tree, and the origin's own tree where one exists.
    Shared,
    /// Only the origin's own tree (copied from the shared one if needed).
    Origin,
}

impl<P> Message<P> {
    /// Short name for logs and telemetry.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Gossip(_) => "gossip",
            Message::IHave(_) => "ihave",
            Message::Graft { .. } => "graft",
            Message::Prune { .. } => "prune",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(seq: u64) -> MessageId<String> {
        MessageId {
            origin: "a@h".to_string(),
            incarnation: 7,
            seq,
        }
    }

    #[test]
    fn every_message_roundtrips_through_postcard() {
        let messages = vec![
            Message::Gossip(Gossip {
                id: id(u64::MAX - 1),
                round: 3,
                payload: Bytes::from_static(b"hello"),
            }),
            Message::IHave(vec![
                Announcement {
                    id: id(1),
                    round: 0,
                },
                Announcement {
                    id: id(2),
                    round: 9,
                },
            ]),
            Message::Graft {
                origin: "a@h".to_string(),
                scope: Scope::Shared,
                ids: vec![id(1)],
            },
            Message::Graft {
                origin: "b@h".to_string(),
                scope: Scope::Origin,
                ids: vec![],
            },
            Message::Prune {
                origin: "a@h".to_string(),
                scope: Scope::Origin,
            },
        ];
        for message in messages {
            let bytes = postcard::to_stdvec(&message).unwrap();
            let back: Message<String> = postcard::from_bytes(&bytes).unwrap();
            assert_eq!(back, message);
        }
    }

    #[test]
    fn garbage_bytes_fail_to_decode_without_panicking() {
        for bytes in [
            &[][..],
            &[0xff; 3][..],
            &[0, 200, 1][..],
            &[2, 255, 255, 255, 255, 15][..],
        ] {
            let _ = postcard::from_bytes::<Message<String>>(bytes);
        }
    }

    #[test]
    fn runs_with_hyparview_peer_ids_and_postcard() {
        use crate::{Config, Input, Output, Plumtree};
        use hyparview::PeerId;
        let (a, b) = (PeerId::new("a@h"), PeerId::new("b@h"));
        let mut sender = Plumtree::new(a.clone(), 1, Config::default(), 1).unwrap();
        let mut receiver = Plumtree::new(b.clone(), 1, Config::default(), 2).unwrap();
        sender.handle(0, Input::NeighborUp(b.clone()));
        receiver.handle(0, Input::NeighborUp(a.clone()));
        sender.broadcast(0, Bytes::from_static(b"hi")).unwrap();
        let Some(Output::Send { to, message }) = sender.poll_output() else {
            panic!("expected a send")
        };
        assert_eq!(to, b);
        let wire = postcard::to_stdvec(&message).unwrap();
        let message: Message<PeerId> = postcard::from_bytes(&wire).unwrap();
        receiver.handle(
            1,
            Input::Message {
                from: a.clone(),
                message,
            },
        );
        let delivered = std::iter::from_fn(|| receiver.poll_output())
            .find_map(|o| match o {
                Output::Deliver {
                    origin, payload, ..
                } => Some((origin, payload)),
                _ => None,
            })
            .unwrap();
        assert_eq!(delivered, (a, Bytes::from_static(b"hi")));
    }

    #[test]
    fn gossip_debug_hides_the_payload() {
        let g = Gossip {
            id: id(0),
            round: 0,
            payload: Bytes::from(vec![0u8; 1000]),
        };
        assert!(format!("{g:?}").contains("<1000 bytes>"));
    }
}
