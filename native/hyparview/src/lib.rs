//! HyParView (Leitão, Pereira, Rodrigues — DSN 2007) as a pure state machine.
//!
//! No I/O, no clocks, no threads: a [`Node`] is driven with [`Input`]s, each
//! carrying the current time `now` (milliseconds on any monotonic clock), and
//! produces [`Output`]s (messages to send, connections to close, membership
//! events, timer requests). Randomness comes from an RNG seeded at
//! construction, so the same seed and the same inputs always give the same
//! outputs. The simulator (`hyparview-sim`) and the NIF transport both drive
//! this exact code.

pub mod config;
pub mod message;
pub mod node;
pub mod peer;

pub use config::{Config, ConfigError};
pub use message::Message;
pub use node::{Input, Node, Output, Stats, Timer};
pub use peer::{Peer, PeerId};

/// Milliseconds on the driver's monotonic clock (virtual time in the simulator).
pub type Millis = u64;
