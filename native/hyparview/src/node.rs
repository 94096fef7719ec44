//! The HyParView state machine.
//!
//! SKELETON: the public API below is the contract with the simulator and the
//! NIF transport. Bodies are to be implemented by the protocol core work.

use crate::{Config, ConfigError, Message, Millis, Peer};
use std::collections::VecDeque;

/// Something that happened to the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Enter the overlay through these contacts (tried in random order; with
    /// backoff when none answers). An empty list makes this node a seed that
    /// waits to be joined.
    Join { contacts: Vec<Peer> },
    /// Leave gracefully: DISCONNECT every active peer, stop all timers.
    Leave,
    /// A message from `from`, whose identity the transport authenticated.
    Message { from: Peer, message: Message },
    /// The established connection to `peer` closed, reset or timed out
    /// (heartbeats). The transport only reports the loss of its *current*
    /// connection to a peer, never of one that a newer connection replaced.
    ConnectionLost { peer: Peer },
    /// A dial to `peer` failed (refused, timed out, handshake rejected) so the
    /// messages queued for it were not delivered.
    DialFailed { peer: Peer },
    /// A timer requested earlier with [`Output::SetTimer`] fired.
    Timer(Timer),
}

/// Something the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Deliver `message` to `to`, dialing if there is no connection yet.
    Send { to: Peer, message: Message },
    /// Close the connection to `peer` once the messages queued before this
    /// output are flushed.
    Disconnect { peer: Peer },
    /// `peer` entered the active view (both ends hold each other).
    PeerUp(Peer),
    /// `peer` left the active view.
    PeerDown(Peer),
    /// Feed `Input::Timer(timer)` back after `after` milliseconds. Timers are
    /// never cancelled by the driver; stale ones are ignored by the node.
    SetTimer { after: Millis, timer: Timer },
}

/// An opaque timer token: the driver stores it and hands it back.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Timer(pub(crate) TimerKind);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum TimerKind {
    Shuffle,
}

/// Counters for observability.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub joins_sent: u64,
    pub neighbor_requests_sent: u64,
    pub promotions: u64,
    pub shuffles_started: u64,
    pub failures_detected: u64,
}

pub struct Node {
    local: Peer,
    config: Config,
    outputs: VecDeque<Output>,
}

impl Node {
    /// A node with empty views. `seed` drives every random choice it makes.
    pub fn new(local: Peer, config: Config, seed: u64) -> Result<Node, ConfigError> {
        config.validate()?;
        let _ = seed;
        Ok(Node {
            local,
            config,
            outputs: VecDeque::new(),
        })
    }

    /// Feed one input at time `now`. Outputs accumulate until drained.
    pub fn handle(&mut self, now: Millis, input: Input) {
        let _ = (now, input);
        todo!("protocol core")
    }

    /// Next pending output, in the order produced.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    pub fn local(&self) -> &Peer {
        &self.local
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Peers in the active view (reported up).
    pub fn active_view(&self) -> Vec<&Peer> {
        todo!("protocol core")
    }

    /// Peers in the passive view.
    pub fn passive_view(&self) -> Vec<&Peer> {
        todo!("protocol core")
    }

    /// True when a node with this id is in the active view.
    pub fn is_active(&self, id: &str) -> bool {
        let _ = id;
        todo!("protocol core")
    }

    pub fn stats(&self) -> Stats {
        Stats::default()
    }
}
