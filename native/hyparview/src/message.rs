//! Protocol messages exchanged between nodes. The transport attributes every
//! received message to the peer authenticated by its connection handshake,
//! so messages carry a sender only where the protocol forwards on behalf of
//! someone else. Everything here is (de)serializable with serde; decoding
//! bytes from the network must never panic, so no field is trusted: TTLs are
//! clamped and peer lists are truncated by the receiver.
//!
//! NOTE for the core implementer: the variants below are the skeleton agreed
//! with the transport; add fields/variants as the protocol needs, but keep
//! `kind()` returning a short stable name per variant (used for counters).

use crate::Peer;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// A new node asks a contact to let it in.
    Join,
    /// Random walk announcing `joiner` (TTL starts at ARWL).
    ForwardJoin { joiner: Peer, ttl: u32 },
    /// Ask to become an active neighbor; `high_priority` when the sender's
    /// active view is empty. `epoch` names the link this request would
    /// create (a Lamport-style counter, so a newer link has a larger epoch).
    /// `merge` marks the low-rate promotion of a peer that was unreachable
    /// (possible healed partition): the receiver accepts it even when full.
    Neighbor {
        high_priority: bool,
        epoch: u64,
        merge: bool,
    },
    /// Answer to `Neighbor` (same `epoch`), and the contact's acceptance of a
    /// `Join` (a fresh `epoch`).
    NeighborReply { accepted: bool, epoch: u64 },
    /// The sender removed us from its active view. Only links with an epoch
    /// `<= epoch` are affected, so a late DISCONNECT cannot tear down a link
    /// established after it was sent.
    Disconnect { epoch: u64 },
    /// Shuffle random walk started by `origin`.
    Shuffle {
        origin: Peer,
        ttl: u32,
        peers: Vec<Peer>,
    },
    /// Answer to a `Shuffle`, sent straight back to its origin.
    ShuffleReply { peers: Vec<Peer> },
}

impl Message {
    /// Short stable name of the message type, for per-type counters.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Join => "join",
            Message::ForwardJoin { .. } => "forward_join",
            Message::Neighbor { .. } => "neighbor",
            Message::NeighborReply { .. } => "neighbor_reply",
            Message::Disconnect { .. } => "disconnect",
            Message::Shuffle { .. } => "shuffle",
            Message::ShuffleReply { .. } => "shuffle_reply",
        }
    }
}
