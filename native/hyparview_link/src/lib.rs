//! The connection policy of a HyParView node, as a pure state machine.
//!
//! The protocol core (`hyparview::Node`) speaks of peers; a transport speaks
//! of connections. Between the two sit a handful of rules that decide which
//! connection carries a peer's traffic and when the core hears that a link
//! is gone. They live here, once, so that the tokio transport and the
//! simulator apply exactly the same rules:
//!
//! - **current connection**: at most one open connection per peer carries
//!   its traffic; with two (simultaneous dials, a restarted peer) both ends
//!   keep the same one ([`Links::register`]);
//! - **dial queue**: messages for a peer being dialed wait, at most
//!   [`MAX_DIAL_QUEUE`] of them ([`Links::send`]);
//! - **request hold**: a connection that carried a JOIN or NEIGHBOR is not
//!   retired as idle before the answer can arrive ([`LinkConfig::request_hold`]);
//! - **idle retirement**: a connection to a peer outside the active view is
//!   closed once unused for [`LinkConfig::idle_timeout`] ([`Links::idle`]);
//! - **orphan check**: an active peer with neither a connection nor a dial
//!   is reported lost, once per episode ([`Links::orphans`]);
//! - **loss report**: a broken connection is reported to the core only when
//!   it is the current one of an active peer ([`Links::closed`]).
//!
//! Sans-IO: no sockets, no clocks, no tasks. Inputs carry `now`; outputs are
//! values the driver executes. Connection handles `C` are opaque ids chosen
//! by the driver; peers are keyed by `K` (a `PeerId` in the transport, a
//! node index in the simulator). A node holds few connections (its active
//! view plus a few short-lived ones), so entries live in a small vector.

use hyparview::{Identity, Message, Millis, PeerId};

mod table;
pub use table::Links;

#[cfg(test)]
mod tests;

/// Messages kept for a peer while its dial is in progress; more are dropped
/// (the core repeats what matters).
pub const MAX_DIAL_QUEUE: usize = 256;

/// Timing of the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkConfig {
    /// A connection to a peer outside the active view closes when unused
    /// this long.
    pub idle_timeout: Millis,
    /// A connection that carried a JOIN/NEIGHBOR is not retired as idle for
    /// this long after it (over a slow link the answer can take longer than
    /// the idle timeout: FINDINGS F1). Drivers use
    /// `max(neighbor_timeout, idle_timeout)`.
    pub request_hold: Millis,
    /// How long a peer that superseded our current connection gets for the
    /// connection it kept to reach us before its link counts as lost.
    pub replacement_grace: Millis,
}

/// Who opened a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Dialed,
    Accepted,
}

/// Whether the peer is in the core's active view (the driver asks the core).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activity {
    Active,
    Inactive,
}

impl Activity {
    pub fn of(active: bool) -> Activity {
        if active {
            Activity::Active
        } else {
            Activity::Inactive
        }
    }
}

/// Where a message for a peer goes.
#[derive(Debug, PartialEq)]
pub enum Route<C, I: Identity = PeerId> {
    /// Write it on this connection now.
    Conn(C, Message<I>),
    /// It waits in the peer's dial queue (a dial or a replacement is under
    /// way; or the queue is full and it was dropped).
    Queued,
    /// It waits in a new dial queue: start a dial to the peer.
    Dial,
}

/// What to do after a dial queue was written out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterFlush {
    Keep,
    /// The core asked to disconnect while the dial was under way.
    Close,
}

/// A dial queue to write on a connection, in order; the hold and last use
/// of that connection are already updated for these messages.
#[derive(Debug, PartialEq)]
pub struct Flush<C, I: Identity = PeerId> {
    pub conn: C,
    pub messages: Vec<Message<I>>,
    pub after: AfterFlush,
}

/// How to retire the connection that lost the choice of current one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retire {
    /// Same process at the other end: tell it (SUPERSEDED) and close
    /// gracefully, so it does not take the close for a failure.
    Supersede,
    /// The old process is gone (a higher incarnation replaced it): close now.
    Drop,
}

/// What [`Links::register`] decided.
#[derive(Debug, PartialEq)]
pub struct Registered<C, I: Identity = PeerId> {
    /// The connection that is now current for the peer.
    pub current: C,
    /// The other connection, if there were two.
    pub retired: Option<(C, Retire)>,
    /// Messages that waited for this peer.
    pub flush: Option<Flush<C, I>>,
}

/// Outcome of a failed dial.
#[derive(Debug, PartialEq)]
pub enum DialFailed<C, I: Identity = PeerId> {
    /// The peer connected to us meanwhile: the queue goes over that.
    Fallback(Flush<C, I>),
    /// Report `DialFailed` to the core; the queue is dropped.
    Failed,
    /// No dial was under way (a stale report).
    Unknown,
}

/// Whether a connection loss goes to the core as `ConnectionLost`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    Report,
    Quiet,
}

/// Verdict on an open connection at a heartbeat tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Idle {
    /// Close it gracefully (and call [`Links::closing`]).
    Retire,
    /// Kept by the heartbeat (active peer) or not known here.
    Keep,
    /// Unused, but not retired before this time (last use + idle timeout,
    /// or a request hold).
    NotBefore(Millis),
}

/// True for the messages whose answer comes back on the same connection and
/// may take a while: JOIN and NEIGHBOR.
pub fn is_request<I: Identity>(m: &Message<I>) -> bool {
    matches!(m, Message::Join | Message::Neighbor { .. })
}
