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
    /// active view is empty.
    Neighbor { high_priority: bool },
    /// Answer to `Neighbor` (and to `Join`/`ForwardJoin` acceptance).
    NeighborReply { accepted: bool },
    /// The sender removed us from its active view.
    Disconnect,
    /// Shuffle random walk started by `origin`.
    Shuffle { origin: Peer, ttl: u32, peers: Vec<Peer> },
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
            Message::Disconnect => "disconnect",
            Message::Shuffle { .. } => "shuffle",
            Message::ShuffleReply { .. } => "shuffle_reply",
        }
    }
}
