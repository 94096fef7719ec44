//! Prefetching for the event loop: the nodes' state is far larger than the
//! caches and each event lands on a random node, so without it most events
//! would begin with a chain of cache misses. Two stages: two events ahead,
//! the payload and the node's first lines; one event ahead (those lines
//! are in cache by then), what they point to. Hints only: nothing here
//! changes what the simulation does.

use super::{ConnId, End, EventKind, Protocol, Sim, SimNode};
use crate::id::Message;

/// Asks the CPU to start loading the cache line at `r` (no-op off x86_64).
#[inline(always)]
fn prefetch<T>(r: &T) {
    prefetch_ptr((r as *const T).cast());
}

/// [`prefetch`] of a raw address (never dereferenced).
#[inline(always)]
fn prefetch_ptr(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing into the program and never faults,
    // whatever the address.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Where an event lands (the queue's tag of it, read ahead of its
/// payload).
#[derive(Clone, Copy, Default)]
pub(super) struct Target {
    pub(super) node: u32,
    /// The connection end an idle check or EOF is for: when its node no
    /// longer holds it the event does nothing, and nothing is prefetched.
    pub(super) end: Option<(ConnId, End)>,
}

impl<P: Protocol> Sim<P> {
    /// The node an event landing at `t` will read, unless it is an idle
    /// check or EOF for an end the node no longer holds (those read
    /// nothing).
    fn live_target(&self, t: Target) -> Option<&SimNode<P>> {
        if let Some((conn, end)) = t.end {
            if !self.ends.holds(conn, end) {
                return None;
            }
        }
        self.nodes.get(t.node as usize)
    }

    /// Called as an event is popped: prefetches for the two that follow it
    /// (when they are due within the queue's hint horizon), and
    /// the queue's link that names the one after them, so that the next
    /// call reads only lines fetched ahead.
    pub(super) fn prefetch_ahead(&self) {
        if let Some((next, t, d)) = self.events.peek() {
            self.prefetch_deep(next, t);
            if let Some((after, t, _)) = self.events.peek_after(next, d) {
                prefetch_ptr(self.events.link_address(after));
                self.prefetch_event(after, t);
            }
        }
    }

    /// Starts loading what the event in `slot` (the one after next) will
    /// read first, its payload and its node's own lines, while the
    /// current one runs: the nodes' state is far larger than the caches,
    /// so most events would begin with misses. All of the node's lines
    /// (about 1.5 KB): an input reads fields all over it (views, requests,
    /// link table headers, counters), and fetching only the first two left
    /// the rest as demand misses (only the first kilobyte was slower too).
    fn prefetch_event(&self, slot: u32, t: Target) {
        prefetch(&self.payloads[slot as usize]);
        if let Some(n) = self.live_target(t) {
            let base: *const u8 = (n as *const SimNode<P>).cast();
            for off in (0..std::mem::size_of::<SimNode<P>>()).step_by(64) {
                prefetch_ptr(base.wrapping_add(off));
            }
        }
    }

    /// The second stage, for the next event (the first stage fetched its
    /// node's lines one event ago, so they can be read now): what those
    /// lines point to, the whole link table among them (every message
    /// scans it for its peer or connection).
    fn prefetch_deep(&self, slot: u32, t: Target) {
        if let Some(n) = self.live_target(t) {
            prefetch_ptr(n.wires.as_ptr().cast());
            let (links, bytes) = n.links.hot_span();
            for off in (0..bytes).step_by(64) {
                prefetch_ptr(links.wrapping_add(off));
            }
            n.node.for_each_hot_address(prefetch_ptr);
        }
        // A delivery also reads the sender's identity (copied into the
        // input) and the peers it carries.
        if let Some(EventKind::Deliver { from, message, .. }) = &self.payloads[slot as usize].0 {
            prefetch(&self.peers[*from as usize]);
            if let Message::Shuffle { peers, .. } | Message::ShuffleReply { peers } = message {
                prefetch_ptr(peers.as_ptr().cast());
            }
        }
    }
}
