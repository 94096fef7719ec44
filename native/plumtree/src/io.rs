//! What goes into and comes out of a [`crate::Plumtree`].

use crate::message::{Message, MessageId};
use crate::{Millis, Round};
use bytes::Bytes;
use std::fmt;

/// Something that happened to the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input<P> {
    /// `peer` entered HyParView's active view: push to it eagerly (the
    /// paper's NeighborUp). Feed one for every active peer at start.
    NeighborUp(P),
    /// `peer` left the active view (the paper's NeighborDown).
    NeighborDown(P),
    /// Broadcast `payload` from this node; see also
    /// [`crate::Plumtree::broadcast`], which reports a refusal as an error
    /// rather than as an [`Event::Dropped`].
    Broadcast { payload: Bytes },
    /// A message from `from`, whose identity the transport authenticated.
    Message { from: P, message: Message<P> },
    /// A timer requested earlier with [`Output::SetTimer`] fired.
    Timer(Timer<P>),
}

/// Something the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output<P> {
    /// Send `message` to the neighbour `to`.
    Send { to: P, message: Message<P> },
    /// Hand a broadcast to the application. For one (origin, incarnation),
    /// `seq` strictly increases from one `Deliver` to the next.
    Deliver {
        origin: P,
        incarnation: u64,
        seq: u64,
        /// Hops the payload travelled (1 = straight from the origin).
        hops: Round,
        payload: Bytes,
    },
    /// Feed `Input::Timer(timer)` back after `after` milliseconds. Timers
    /// are never cancelled; stale ones are ignored.
    SetTimer { after: Millis, timer: Timer<P> },
    /// Something worth a telemetry event.
    Event(Event<P>),
}

/// An opaque timer token: the driver stores it and hands it back.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Timer<P>(pub(crate) TimerKind<P>);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum TimerKind<P> {
    /// Send the batched IHAVEs.
    DispatchIHave,
    /// The paper's timer for a missing `id`; `token` tells a current timer
    /// from one of an earlier missing entry for the same id.
    Graft { id: MessageId<P>, token: u64 },
    /// Some message of this origin stream may have waited `gap_timeout`.
    Gap { origin: P, incarnation: u64 },
    /// Drop cached payloads older than `cache_max_age`.
    EvictCache,
}

/// Telemetry: deliveries that could not happen as the origin sent them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event<P> {
    /// Messages `first_seq .. first_seq + count` of this origin stream will
    /// never be delivered here: later ones were delivered past them.
    GapSkipped {
        origin: P,
        incarnation: u64,
        first_seq: u64,
        count: u64,
        reason: SkipReason,
    },
    /// A message (or broadcast request) was refused.
    Dropped {
        /// `None` for a local broadcast.
        from: Option<P>,
        reason: DropReason,
    },
}

/// Why a gap was skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// A message after the gap waited `gap_timeout`.
    Timeout,
    /// The origin's (or the node's) out-of-order buffer was full.
    BufferFull,
    /// The origin restarted: what remained of its old stream is flushed.
    NewIncarnation,
    /// The origin was forgotten (`max_origins`): its buffer is flushed.
    Evicted,
}

/// Why a message was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Payload over `max_broadcast_size`.
    TooLarge,
    /// From an incarnation older than the one already followed.
    StaleIncarnation,
    /// Sequence number `u64::MAX` (reserved so `seq + 1` never overflows).
    InvalidSeq,
    /// Claims this node as origin but is not one of its broadcasts.
    Forged,
}

/// Why [`crate::Plumtree::broadcast`] refused a payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BroadcastError {
    TooLarge { size: usize, max: usize },
}

impl fmt::Display for BroadcastError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BroadcastError::TooLarge { size, max } => {
                write!(
                    f,
                    "payload of {size} bytes exceeds max_broadcast_size {max}"
                )
            }
        }
    }
}

impl std::error::Error for BroadcastError {}

/// Counters for observability (monotonic).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Local broadcasts accepted.
    pub broadcasts: u64,
    /// GOSSIP messages sent (eager pushes and graft replies).
    pub gossip_sent: u64,
    /// GOSSIP messages received (new or not): the RMR numerator.
    pub gossip_received: u64,
    /// Payloads handed to the application.
    pub delivered: u64,
    /// GOSSIPs received for a message already known.
    pub duplicates: u64,
    pub ihave_sent: u64,
    pub ihave_received: u64,
    pub grafts_sent: u64,
    pub grafts_received: u64,
    pub prunes_sent: u64,
    pub prunes_received: u64,
    /// Lazy links that replaced an eager one (tree optimisation).
    pub optimizations: u64,
    /// Sequence numbers skipped over (sum of `GapSkipped.count`, saturating).
    pub gap_skipped: u64,
    /// Messages refused (`Event::Dropped`).
    pub dropped: u64,
    /// Ids not looked at: beyond `MAX_IDS_PER_MESSAGE`, or not tracked
    /// because `max_missing` was reached.
    pub ids_ignored: u64,
    /// GRAFTs for ids no longer (or never) cached.
    pub graft_misses: u64,
    /// Origin streams forgotten because of `max_origins`.
    pub streams_evicted: u64,
}
