//! The node's interface: what happens to it ([`Input`]), what it asks its
//! driver to do ([`Output`]), the timers it hands out, and its counters.

use crate::{Identity, Message, Millis, Peer, PeerId};

/// Something that happened to the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input<I: Identity = PeerId> {
    /// Enter the overlay through these contacts (tried in random order; with
    /// backoff when none answers). An empty list makes this node a seed that
    /// waits to be joined.
    Join { contacts: Vec<Peer<I>> },
    /// Replace the contact list without a restart (e.g. from discovery):
    /// later rejoins and contact probes use it. Duplicates and self are
    /// dropped, at most 1024 are kept. A node isolated and waiting on its
    /// rejoin backoff retries soon when the list names a node the old one
    /// did not.
    Contacts { contacts: Vec<Peer<I>> },
    /// Leave gracefully: DISCONNECT every active peer, stop all timers.
    Leave,
    /// A message from `from`, whose identity the transport authenticated.
    Message { from: Peer<I>, message: Message<I> },
    /// The established connection to `peer` closed, reset or timed out
    /// (heartbeats). The transport only reports the loss of its *current*
    /// connection to a peer, never of one that a newer connection replaced.
    ConnectionLost { peer: Peer<I> },
    /// A dial to `peer` failed (refused, timed out, handshake rejected) so the
    /// messages queued for it were not delivered.
    DialFailed { peer: Peer<I> },
    /// A timer requested earlier with [`Output::SetTimer`] fired.
    Timer(Timer),
}

/// Something the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output<I: Identity = PeerId> {
    /// Deliver `message` to `to`, dialing if there is no connection yet.
    Send { to: Peer<I>, message: Message<I> },
    /// Close the connection to `peer` once the messages queued before this
    /// output are flushed.
    Disconnect { peer: Peer<I> },
    /// `peer` entered the active view (both ends hold each other).
    PeerUp(Peer<I>),
    /// `peer` left the active view.
    PeerDown(Peer<I>),
    /// Feed `Input::Timer(timer)` back after `after` milliseconds. Timers are
    /// never cancelled by the driver; stale ones are ignored by the node.
    SetTimer { after: Millis, timer: Timer },
}

/// An opaque timer token: the driver stores it and hands it back.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Timer(pub(crate) TimerKind);

/// `gen` is the node's timer generation: bumped by Join/Leave so timers of
/// an earlier run are ignored. `token` names the live timer of a kind that
/// can be superseded.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum TimerKind {
    /// `token` names the live one: a change of the active view after a
    /// calm period reschedules it (see `pace.rs`).
    Shuffle {
        gen: u64,
        token: u64,
    },
    /// The merge tick, every `promotion_interval` (see `repair.rs`).
    Merge {
        gen: u64,
    },
    Rejoin {
        gen: u64,
        token: u64,
    },
    /// A contact probe (see `repair.rs`).
    Probe {
        gen: u64,
        token: u64,
    },
    /// A crossing tick (see `crossing.rs`).
    Crossing {
        gen: u64,
    },
    NeighborTimeout {
        gen: u64,
        epoch: u64,
    },
    JoinTimeout {
        gen: u64,
        nonce: u64,
    },
}

/// Counters for observability.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub joins_sent: u64,
    pub neighbor_requests_sent: u64,
    pub promotions: u64,
    pub shuffles_started: u64,
    pub failures_detected: u64,
    /// Join rounds started by the isolation backoff timer.
    pub rejoins: u64,
    /// Successful merge requests (see `promotion_interval`).
    pub merges: u64,
    /// Contact probes: direct SHUFFLEs sent to a contact by a short node
    /// with an empty passive view.
    pub probes: u64,
    /// `merge` NEIGHBORs sent by the crossing schedule (see `crossing.rs`).
    pub crossings: u64,
    /// DISCONNECTs sent to repair a link the other end held alone.
    pub asymmetry_repairs: u64,
    /// Inputs ignored as stale (old incarnation, old link epoch).
    pub stale_ignored: u64,
    /// Gossiped peers not stored: invalid ids, or over the per-message or
    /// per-sender budget.
    pub gossip_ignored: u64,
    /// Promotions and FORWARDJOIN acceptances put off by the dial budget.
    pub dials_deferred: u64,
}
