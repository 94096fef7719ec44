//! Read-only views of a [`Plumtree`], for drivers, telemetry and tests.

use super::Plumtree;
use crate::{Config, Stats};
use std::fmt::Debug;
use std::hash::Hash;

impl<P: Clone + Eq + Hash + Ord + Debug> Plumtree<P> {
    pub fn local(&self) -> &P {
        &self.local
    }

    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Peers receiving payloads eagerly on the shared tree (the one every
    /// origin without a tree of its own uses), in order.
    pub fn eager_peers(&self) -> impl Iterator<Item = &P> {
        self.trees.shared().eager.iter()
    }

    /// Peers receiving only announcements on the shared tree, in order.
    pub fn lazy_peers(&self) -> impl Iterator<Item = &P> {
        self.trees.shared().lazy.iter()
    }

    /// Peers receiving `origin`'s payloads eagerly, in order: its own tree
    /// if it has one here, else the shared tree.
    pub fn eager_peers_for(&self, origin: &P) -> impl Iterator<Item = &P> {
        self.trees.get(origin).eager.iter()
    }

    /// Sizes of every bounded structure, for tests and telemetry.
    pub fn memory(&self) -> Memory {
        Memory {
            cached_messages: self.cache.len(),
            cached_bytes: self.cache.bytes(),
            origins: self.streams.len(),
            buffered_messages: self.streams.buffered_messages(),
            buffered_bytes: self.streams.buffered_bytes(),
            missing: self.missing.len(),
            queued_announcements: self.lazy_queue.values().map(Vec::len).sum(),
            trees: self.trees.own_len(),
        }
    }
}

/// What a node holds, see [`Plumtree::memory`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    pub cached_messages: usize,
    pub cached_bytes: usize,
    pub origins: usize,
    pub buffered_messages: usize,
    pub buffered_bytes: usize,
    pub missing: usize,
    pub queued_announcements: usize,
    /// Origins with a tree of their own.
    pub trees: usize,
}
