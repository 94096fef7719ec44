//! HyParView (Leitão, Pereira, Rodrigues — DSN 2007) as a pure state machine.
//!
//! No I/O, no clocks, no threads: a [`Node`] is driven with [`Input`]s, each
//! carrying the current time `now` (milliseconds on any monotonic clock), and
//! produces [`Output`]s (messages to send, connections to close, membership
//! events, timer requests). Randomness comes from an RNG seeded at
//! construction, so the same seed and the same inputs always give the same
//! outputs. The simulator (`hyparview-sim`) and the NIF transport both drive
//! this exact code.
//!
//! Every type that names peers is generic over the node id ([`Identity`]),
//! defaulting to [`PeerId`] (the name, as the wire carries it): production
//! uses the default, the simulator a `Copy` handle that keeps id cache
//! lines and reference counts off its hot path.
//!
//! Layout: `events` (inputs, outputs, timers, counters), `node` (the
//! paper's handlers), `membership` (moves between views, the
//! SHUFFLE handlers), `quota` (budgets on gossip and dials), `maintain`
//! (promotion after every input, timers), and the sub-states it owns:
//! `views` (active, passive, suspects, reserve), `requests` (NEIGHBORs in
//! flight), `join` (contacts, JOIN rounds, rejoin backoff) `repair`
//! (merge requests and contact probes, beyond the paper) and `crossing`
//! (the low-rate merge of components whose active views are full).

pub mod config;
mod crossing;
mod events;
mod join;
mod maintain;
mod membership;
pub mod message;
pub mod node;
mod pace;
pub mod peer;
mod proofs;
mod quota;
mod repair;
mod requests;
mod tags;
mod views;

pub use config::{Config, ConfigError};
pub use message::{Message, MessageKind, Priority};
pub use node::{Input, Node, Output, Stats, Timer};
pub use peer::{valid_id, IdLike, Identity, Peer, PeerId, MAX_ID_BYTES};

/// Milliseconds on the driver's monotonic clock (virtual time in the simulator).
pub type Millis = u64;
