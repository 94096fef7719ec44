//! Plumtree (Leitão, Pereira, Rodrigues — "Epidemic Broadcast Trees", SRDS
//! 2007) as a pure state machine, with per-origin FIFO delivery.
//!
//! No I/O, no clocks, no threads: a [`Plumtree`] is driven with [`Input`]s
//! at a time `now` (milliseconds on any monotonic clock) and produces
//! [`Output`]s (messages to send, payloads to deliver, timer requests,
//! telemetry events). It is generic over the peer id `P`, so the transport
//! runs it with `hyparview::PeerId` and tests with integers; it does not
//! depend on the HyParView crate (HyParView is the paper's "peer sampling
//! service"; any membership that reports neighbours up and down works).
//!
//! # Driving it
//! - Create one per node with an `incarnation` that grows across restarts
//!   of that node (wall-clock ms at start is fine) and a seed.
//! - Feed `NeighborUp(p)` for every peer of HyParView's active view, then
//!   one `NeighborUp`/`NeighborDown` per `PeerUp`/`PeerDown`. Report a
//!   neighbour up before passing on any message from it.
//! - Pass every received [`Message`] as `Input::Message` with the
//!   authenticated sender; drain [`Plumtree::poll_output`] after each
//!   input: `Send` goes to that neighbour, `Deliver` to the application,
//!   `SetTimer` comes back as `Input::Timer` after `after` ms (timers are
//!   never cancelled; stale ones are ignored), `Event` is telemetry.
//! - Broadcast with [`Plumtree::broadcast`] (an error for payloads over
//!   `max_broadcast_size`). The origin never delivers its own broadcast.
//!
//! # Trees
//! Every origin's messages start on one shared eager/lazy tree; the tree
//! optimisation (`optimization_threshold`, off by default: see there when
//! to enable it) gives a busy origin a tree of its own (a copy of the
//! shared one) the first time it moves a link for it, so each busy origin
//! converges to short paths of its own without changing anyone else's. At most `max_trees` origins have one
//! (least recently used back to the shared tree). PRUNE and GRAFT name
//! the origin and the [`Scope`] they change, so both ends of a link change
//! the same tree. An origin that sends once uses the shared tree, whose
//! paths may be several times the shortest; see `tree.rs`. No shared tree
//! does well for such origins: on the simulated 1,000- and 10,000-node
//! overlays the best BFS tree has a mean last delivery hop of 2.2 × the
//! average shortest path (`hyparview-sim broadcast`, `shared_tree_ldh`).
//!
//! # Wire sizes
//! A GOSSIP is the payload plus its id (the origin id, two varints) and a
//! round: a frame limit for broadcast traffic of `max_broadcast_size` plus
//! the largest encoded peer id plus 32 bytes suffices. An IHAVE carries at
//! most `max_ihave_batch` ids; a GRAFT at most as many as were missing
//! ([`MAX_IDS_PER_MESSAGE`] at the most; longer lists received are cut)
//! plus one peer id; a PRUNE is one peer id.
//!
//! # Guarantees (see `stream.rs` for the exact delivery contract)
//! Per origin incarnation, deliveries are in the order the origin sent
//! them, each at most once; a message is held back behind a missing one
//! at most `gap_timeout`, then the gap is skipped and reported. A node
//! first hearing an origin through seq `s > 0` waits up to `gap_timeout`
//! for the seqs just before `s` (they may merely have been overtaken), so
//! the first deliveries from each origin to a newly joined node are late
//! by up to that much. A new neighbour is told (IHAVE) of the messages
//! received within `catch_up_window`, so a message that reached a node
//! whose links then changed (failures, links swapped by the membership)
//! still reaches the nodes behind its new links; older ones are not
//! resent. Memory is bounded by the [`Config`] whatever peers send.
//!
//! Payloads are [`bytes::Bytes`]: one payload sent to several peers and
//! kept in the cache is one allocation.

pub mod config;
pub mod io;
pub mod message;

mod cache;
mod state;
mod stream;
mod tree;

#[cfg(test)]
mod testing;

pub use bytes::Bytes;
pub use config::{Config, ConfigError, MAX_IDS_PER_MESSAGE};
pub use io::{BroadcastError, DropReason, Event, Input, Output, SkipReason, Stats, Timer};
pub use message::{Announcement, Gossip, Message, MessageId, Round, Scope};
pub use state::{Memory, Plumtree};

/// Milliseconds on the driver's monotonic clock (virtual time in tests).
pub type Millis = u64;
#[cfg(test)]
mod net_tests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod scale_tests;
