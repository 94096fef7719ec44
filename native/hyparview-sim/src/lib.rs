//! Deterministic discrete-event simulator for the `hyparview` state machine.
//!
//! [`engine::Sim`] runs many [`hyparview::Node`]s (over [`id::SimId`]
//! handles, see there) on one virtual clock, each
//! with the production connection policy (`hyparview_link`) over a model of
//! the TCP network; [`scenarios`] holds the experiments (one module each)
//! over one measuring loop; [`measure`] and [`metrics`] hold what is
//! measured; [`report`] the result; [`discovery`] the model of a discovery
//! service (`--discovery`). Everything random comes from the seed,
//! so the same parameters always give the same report (but `wall_ms`).

pub mod discovery;
pub mod engine;
pub mod id;
pub mod measure;
pub mod metrics;
pub mod report;
pub mod scenarios;

pub use engine::{NetConfig, Sim};
pub use id::SimId;
pub use measure::{snapshot, Snapshot};
pub use report::Report;
pub use scenarios::broadcast::{
    parse_broadcast_args, run_broadcast, BroadcastParams, BroadcastReport, BROADCAST_USAGE,
};
pub use scenarios::{parse_args, run, run_keep, Experiment, Params, Scenario, USAGE};
