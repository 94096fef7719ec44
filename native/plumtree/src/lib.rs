//! Plumtree (Leitão, Pereira, Rodrigues — "Epidemic Broadcast Trees", SRDS
//! 2007) as a pure state machine, with per-origin FIFO delivery.
//!
//! No I/O, no clocks, no threads: a [`Plumtree`] is driven with [`Input`]s
//! at a time `now` (milliseconds on any monotonic clock) and produces
//! [`Output`]s (messages to send, payloads to deliver, timer requests,
//! telemetry events). It is generic over the peer id `P`, so the transport
//! runs it with `hyparview::PeerId` and tests with integers; the peer
//! sampling service (HyParView's active view) feeds it `NeighborUp` /
//! `NeighborDown`.
//!
//! Payloads are [`bytes::Bytes`]: one payload sent to several peers and
//! kept in the cache is one allocation.

pub mod config;
pub mod io;
pub mod message;

mod cache;
mod state;
mod stream;

#[cfg(test)]
mod testing;

pub use bytes::Bytes;
pub use config::{Config, ConfigError, MAX_IDS_PER_MESSAGE};
pub use io::{BroadcastError, DropReason, Event, Input, Output, SkipReason, Stats, Timer};
pub use message::{Announcement, Gossip, Message, MessageId, Round};
pub use state::{Memory, Plumtree};

/// Milliseconds on the driver's monotonic clock (virtual time in tests).
pub type Millis = u64;
#[cfg(test)]
mod net_tests;
#[cfg(test)]
mod proptests;
