//! Protocol messages exchanged between nodes. The transport attributes every
//! received message to the peer authenticated by its connection handshake,
//! so messages carry a sender only where the protocol forwards on behalf of
//! someone else. Everything here is (de)serializable with serde; decoding
//! bytes from the network must never panic, so no field is trusted: TTLs are
//! clamped and peer lists are truncated by the receiver.
//!
//! The kinds of message are listed once, in [`MessageKind::ALL`]: counters,
//! the NIF and the docs iterate it instead of repeating the names.

use crate::{Identity, Peer, PeerId};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(
    serialize = "I: Serialize, I::Addr: Serialize",
    deserialize = "I: Deserialize<'de>, I::Addr: Deserialize<'de>"
))]
pub enum Message<I: Identity = PeerId> {
    /// A new node asks a contact to let it in.
    Join,
    /// Random walk announcing `joiner` (TTL starts at ARWL).
    ForwardJoin { joiner: Peer<I>, ttl: u32 },
    /// Ask to become an active neighbor; `high_priority` when the sender's
    /// active view is empty. `epoch` names the link this request would
    /// create (a Lamport-style counter, so a newer link has a larger epoch).
    /// `merge` marks a merge request (low rate, to a peer that was
    /// unreachable or in another part of the overlay, see the core's
    /// `repair` module): the receiver accepts it even when full.
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
        origin: Peer<I>,
        ttl: u32,
        peers: Vec<Peer<I>>,
    },
    /// Answer to a `Shuffle`, sent straight back to its origin.
    ShuffleReply { peers: Vec<Peer<I>> },
}

impl<I: Identity> Message<I> {
    /// The message's kind, for per-kind counters.
    pub fn kind(&self) -> MessageKind {
        match self {
            Message::Join => MessageKind::Join,
            Message::ForwardJoin { .. } => MessageKind::ForwardJoin,
            Message::Neighbor { .. } => MessageKind::Neighbor,
            Message::NeighborReply { .. } => MessageKind::NeighborReply,
            Message::Disconnect { .. } => MessageKind::Disconnect,
            Message::Shuffle { .. } => MessageKind::Shuffle,
            Message::ShuffleReply { .. } => MessageKind::ShuffleReply,
        }
    }
}

/// One variant per [`Message`] variant, without the payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MessageKind {
    Join,
    ForwardJoin,
    Neighbor,
    NeighborReply,
    Disconnect,
    Shuffle,
    ShuffleReply,
}

impl MessageKind {
    /// Every kind, in declaration order (so `kind as usize` indexes it).
    pub const ALL: [MessageKind; 7] = [
        MessageKind::Join,
        MessageKind::ForwardJoin,
        MessageKind::Neighbor,
        MessageKind::NeighborReply,
        MessageKind::Disconnect,
        MessageKind::Shuffle,
        MessageKind::ShuffleReply,
    ];

    /// Every kind's [`name`](MessageKind::name), in the order of `ALL`.
    pub const NAMES: [&'static str; 7] = {
        let mut names = [""; 7];
        let mut i = 0;
        while i < names.len() {
            names[i] = MessageKind::ALL[i].name();
            i += 1;
        }
        names
    };

    /// Short stable snake_case name (counter keys, NIF atoms).
    pub const fn name(self) -> &'static str {
        match self {
            MessageKind::Join => "join",
            MessageKind::ForwardJoin => "forward_join",
            MessageKind::Neighbor => "neighbor",
            MessageKind::NeighborReply => "neighbor_reply",
            MessageKind::Disconnect => "disconnect",
            MessageKind::Shuffle => "shuffle",
            MessageKind::ShuffleReply => "shuffle_reply",
        }
    }
}

impl std::fmt::Display for MessageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// NEIGHBOR priority (the paper's): a node with an empty active view asks
/// with `High`, which a live receiver never refuses. On the wire it is the
/// `high_priority` bool of [`Message::Neighbor`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    High,
    Low,
}

impl Priority {
    pub fn from_wire(high_priority: bool) -> Priority {
        if high_priority {
            Priority::High
        } else {
            Priority::Low
        }
    }

    pub fn to_wire(self) -> bool {
        self == Priority::High
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_listed_once_and_named_uniquely() {
        let mut names: Vec<&str> = MessageKind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(names, MessageKind::NAMES);
        // `ALL` is in declaration order: a kind indexes counter arrays.
        for (i, k) in MessageKind::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i);
        }
        names.sort();
        names.dedup();
        assert_eq!(names.len(), MessageKind::ALL.len());
        assert_eq!(Message::<PeerId>::Join.kind(), MessageKind::Join);
        assert_eq!(
            Message::<PeerId>::ShuffleReply { peers: vec![] }
                .kind()
                .name(),
            "shuffle_reply"
        );
    }

    #[test]
    fn priority_round_trips_the_wire_bool() {
        for p in [Priority::High, Priority::Low] {
            assert_eq!(Priority::from_wire(p.to_wire()), p);
        }
    }
}
