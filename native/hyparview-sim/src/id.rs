//! The simulator's node id: a `Copy` handle in place of the production
//! [`hyparview::PeerId`], so the protocol core (the same generic code the
//! transport runs with `PeerId`) clones, compares and hashes ids in
//! registers instead of touching a shared, reference-counted name on a
//! random cache line for every copy.
//!
//! A handle is node `i`'s index plus the top 16 bits of the FNV-1a hash of
//! the name `PeerId` would carry (`n{i}@sim`): the core's peer sets tag
//! members with exactly those bits, so each scan finds the same candidates
//! as with `PeerId`, and two handles' hashes are equal only for the same
//! node (as the names' are). Together with `Ord` never steering the core,
//! a seed gives the same report with either id type. A simulated peer
//! has no address (the core only carries it): peers are a third of their
//! production size, which is most of a node's memory.

use hyparview::Identity;
use std::fmt;

/// Node `i` of the run: bits 0..24 its index, 48..64 its name's hash tag.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SimId(u64);

/// Simulated nodes are numbered below this (their addresses are 10.x.y.z).
pub const MAX_NODES: u32 = 1 << 24;

impl SimId {
    pub fn of(i: u32) -> SimId {
        assert!(i < MAX_NODES, "at most {MAX_NODES} simulated nodes");
        let tag = hyparview::PeerId::new(&name(i)).hash64() & 0xFFFF_0000_0000_0000;
        SimId(tag | u64::from(i))
    }

    /// The node's index in the run.
    pub fn index(self) -> u32 {
        (self.0 & u64::from(MAX_NODES - 1)) as u32
    }
}

/// The name node `i` would have with production ids (and in reports).
pub fn name(i: u32) -> String {
    format!("n{i}@sim")
}

impl Identity for SimId {
    /// The handle is all the engine needs to reach a node, so a simulated
    /// peer is 16 bytes (id and incarnation) instead of 48.
    type Addr = ();
    #[inline]
    fn hash64(&self) -> u64 {
        self.0
    }
    /// Every simulated node is named like a BEAM node (`n{i}@sim`).
    fn is_node_name(&self) -> bool {
        true
    }
    fn is_printable(&self) -> bool {
        true
    }
}

impl fmt::Debug for SimId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&name(self.index()), f)
    }
}

impl fmt::Display for SimId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&name(self.index()))
    }
}

/// The core's types over simulator ids.
pub type Peer = hyparview::Peer<SimId>;
pub type Node = hyparview::Node<SimId>;
pub type Input = hyparview::Input<SimId>;
pub type Output = hyparview::Output<SimId>;
pub type Message = hyparview::Message<SimId>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_keep_the_index_and_the_names_tag() {
        for i in [0, 1, 9_999, MAX_NODES - 1] {
            let id = SimId::of(i);
            assert_eq!(id.index(), i);
            let named = hyparview::PeerId::new(&name(i));
            assert_eq!(id.hash64() >> 48, named.hash64() >> 48);
            assert_eq!(format!("{id:?}"), format!("{named:?}"));
        }
        assert_ne!(SimId::of(1), SimId::of(2));
        assert_ne!(SimId::of(1).hash64(), SimId::of(2).hash64());
    }
}
