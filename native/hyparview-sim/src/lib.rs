//! Deterministic discrete-event simulator for the `hyparview` state machine.
//!
//! [`engine::Sim`] runs many [`hyparview::Node`]s on one virtual clock with a
//! network model faithful to the TCP transport; [`scenario`] builds the
//! stable / failure / churn / partition experiments and their [`Report`];
//! [`metrics`] holds the graph measures. Everything random comes from the
//! seed, so the same parameters always give the same report (but `wall_ms`).

pub mod engine;
pub mod metrics;
pub mod scenario;

pub use engine::{NetConfig, Sim};
pub use scenario::{parse_args, run, run_keep, snapshot, Params, Report, Scenario, USAGE};
