use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// A HyParView participant.
///
/// `id` is the node name (for BEAM nodes the distribution name, for example
/// `app@10.0.0.1`) and is the identity used in the views: two `Peer`s with the
/// same `id` are the same node. `addr` is where its transport listens.
/// `incarnation` distinguishes successive runs of a node that restarted with
/// the same id (the runtime uses the start time); a higher incarnation
/// replaces a lower one.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Peer {
    pub id: String,
    pub addr: SocketAddr,
    pub incarnation: u64,
}

impl Peer {
    pub fn new(id: impl Into<String>, addr: SocketAddr, incarnation: u64) -> Self {
        Peer {
            id: id.into(),
            addr,
            incarnation,
        }
    }

    /// True when both describe the same node id (any incarnation).
    pub fn same_node(&self, other: &Peer) -> bool {
        self.id == other.id
    }
}
