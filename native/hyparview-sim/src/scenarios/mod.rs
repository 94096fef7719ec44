//! Scenarios: one module each, all over one measuring loop ([`run_keep`]).
//!
//! The loop builds the overlay (nodes join one at a time), lets it settle,
//! calls the scenario's [`Experiment::start`] (the event: kill, cut, first
//! churn step), takes sample 0, then for each measured round calls
//! [`Experiment::before_round`], runs one round of virtual time, samples
//! (structure, then reliability) and calls [`Experiment::after_round`].
//! A new scenario is a module with a type implementing [`Experiment`], a
//! variant of [`Scenario`] and its flags in `params.rs`; it may replace the
//! build too ([`Experiment::build`]).

pub mod broadcast;
mod churn;
mod failure;
mod params;
mod partition;
mod rollout;
mod stable;

pub use params::{parse_args, Params, USAGE};

use crate::discovery::{Discovery, DiscoveryConfig};
use crate::engine::{NetConfig, Sim};
use crate::measure::{isolated_detail, reliability, snapshot};
use crate::metrics;
use crate::report::Report;
use hyparview::{Config, Millis};
use rand::seq::SliceRandom;
use rand::Rng;
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    Stable,
    Failure,
    Churn,
    Partition,
    /// Every node joins at once through the same few contacts.
    Rollout,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Stable => "stable",
            Scenario::Failure => "failure",
            Scenario::Churn => "churn",
            Scenario::Partition => "partition",
            Scenario::Rollout => "rollout",
        }
    }

    fn parse(s: &str) -> Option<Scenario> {
        Some(match s {
            "stable" => Scenario::Stable,
            "failure" => Scenario::Failure,
            "churn" => Scenario::Churn,
            "partition" => Scenario::Partition,
            "rollout" => Scenario::Rollout,
            _ => return None,
        })
    }

    fn experiment(self) -> Box<dyn Experiment> {
        match self {
            Scenario::Stable => Box::new(stable::Stable),
            Scenario::Failure => Box::new(failure::Failure),
            Scenario::Churn => Box::<churn::Churn>::default(),
            Scenario::Partition => Box::<partition::Partition>::default(),
            Scenario::Rollout => Box::new(rollout::Rollout),
        }
    }
}

/// One experiment over the shared loop.
pub trait Experiment {
    /// Rounds measured after the event (the partition scenario measures
    /// the cut and the heal).
    fn measured_rounds(&self, p: &Params) -> usize {
        p.rounds
    }

    /// Brings the overlay up; by default every node joins, `join_spacing`
    /// apart, through a random node that joined before it, then
    /// `settle_rounds` rounds pass. With `--rollout`, the rollout build.
    fn build(&mut self, sim: &mut Sim, p: &Params) {
        if p.rollout {
            return rollout::build(sim, p);
        }
        let mut pool = Vec::new();
        let last = schedule_joins(
            sim,
            p.nodes,
            p.join_spacing,
            &mut pool,
            Pool::Grow,
            p.contacts,
        );
        sim.run_until(last + p.settle_rounds as Millis * p.shuffle_interval);
    }

    /// The event, just before sample 0.
    fn start(&mut self, sim: &mut Sim, p: &Params);

    /// Before measured round `r` (0-based).
    fn before_round(&mut self, _sim: &mut Sim, _p: &Params, _r: usize) {}

    /// After measured round `r` and its sample.
    fn after_round(&mut self, _sim: &mut Sim, _p: &Params, _r: usize) {}

    /// Scenario-specific fields of the report.
    fn finish(&self, _report: &mut Report) {}
}

/// Whether the contact pool takes in each new node.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pool {
    /// The build: the next joiner may use the previous one.
    Grow,
    Fixed,
}

/// Creates `n` nodes that join one every `spacing` ms from now, each through
/// `contacts` distinct random nodes of `pool` (all of it while it is
/// smaller; `--contacts`). Returns the time of the last join.
pub(crate) fn schedule_joins(
    sim: &mut Sim,
    n: usize,
    spacing: Millis,
    pool: &mut Vec<u32>,
    grow: Pool,
    contacts: usize,
) -> Millis {
    let start = sim.now;
    for k in 0..n {
        let i = sim.create_node();
        let contacts = pick_contacts(sim, pool, contacts);
        sim.schedule_join(i, contacts, start + k as Millis * spacing);
        if grow == Pool::Grow {
            pool.push(i);
        }
    }
    start + n.saturating_sub(1) as Millis * spacing
}

/// `k` distinct random nodes of `pool`, or all of it when it has no more
/// than `k` (but for `k` = 1, which draws even from a pool of one, as the
/// single-contact build always has).
fn pick_contacts(sim: &mut Sim, pool: &[u32], k: usize) -> Vec<u32> {
    if pool.len() <= k && k > 1 {
        return pool.to_vec();
    }
    let mut out = Vec::with_capacity(k);
    while out.len() < k.min(pool.len()) {
        let c = pool[sim.rng().gen_range(0..pool.len())];
        if !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

pub fn run(p: &Params) -> Report {
    run_keep(p).0
}

/// Per-sample series, aligned with `reliability`.
#[derive(Default)]
struct Series {
    reliability: Vec<f64>,
    components: Vec<usize>,
    isolated: Vec<usize>,
}

/// Structure first (the broadcasts feed losses into the nodes), then
/// reliability.
fn sample(sim: &mut Sim, broadcasts: usize, series: &mut Series) {
    let snap = snapshot(sim);
    series.components.push(snap.structure.components);
    series.isolated.push(snap.structure.isolated);
    series.reliability.push(reliability(sim, broadcasts));
}

/// Runs the scenario and also returns the simulator in its final state (for
/// tests and diagnosis that keep stepping it).
pub fn run_keep(p: &Params) -> (Report, Sim) {
    let wall = Instant::now();
    let config = Config {
        shuffle_interval: p.shuffle_interval,
        neighbor_timeout: p.neighbor_timeout,
        ..Config::default()
    };
    let net = NetConfig {
        latency_min: p.latency_min,
        latency_max: p.latency_max,
        ..NetConfig::default()
    };
    let round = p.shuffle_interval;
    let mut sim = Sim::new(p.seed, config, net);
    sim.trace_pair = p.trace_pair;
    let mut exp = p.scenario.experiment();

    exp.build(&mut sim, p);
    sim.counters = Default::default();
    exp.start(&mut sim, p);
    let mut series = Series::default();
    sample(&mut sim, p.broadcasts, &mut series);
    let measured_rounds = exp.measured_rounds(p);
    let mut discovery = p.discovery.then(|| {
        let cfg = DiscoveryConfig {
            interval: p.discovery_interval,
            refresh: p.discovery_refresh,
            contacts: p.contacts,
        };
        Discovery::new(&sim, p.seed, cfg)
    });
    let mut live_sum = 0usize;
    for r in 0..measured_rounds {
        exp.before_round(&mut sim, p, r);
        let t = sim.now + round;
        match discovery.as_mut() {
            Some(d) => d.run_until(&mut sim, t),
            None => sim.run_until(t),
        }
        live_sum += sim.live_nodes().len();
        sample(&mut sim, p.broadcasts, &mut series);
        exp.after_round(&mut sim, p, r);
    }

    let snap = snapshot(&sim);
    let und = snap.und();
    let n = und.len();
    let (sources, sampled): (Vec<u32>, bool) = if n <= 2000 {
        ((0..n as u32).collect(), false)
    } else {
        let mut all: Vec<u32> = (0..n as u32).collect();
        all.shuffle(sim.rng());
        all.truncate(100);
        (all, true)
    };
    let (asp, asp_max) = metrics::avg_shortest_path(&und, &sources);
    let mean_live = if measured_rounds == 0 {
        snap.structure.live_nodes as f64
    } else {
        live_sum as f64 / measured_rounds as f64
    };
    let messages_per_node_per_round = if measured_rounds == 0 || mean_live == 0.0 {
        0.0
    } else {
        sim.counters.sends as f64 / mean_live / measured_rounds as f64
    };
    let (ups, downs) = sim.nodes.iter().fold((0u64, 0u64), |(u, d), n| {
        (u + u64::from(n.peer_ups), d + u64::from(n.peer_downs))
    });
    let mut report = Report {
        scenario: p.scenario.name(),
        nodes: p.nodes,
        seed: p.seed,
        rounds: p.rounds,
        round_ms: round,
        structure: snap.structure,
        clustering_coefficient: metrics::clustering_coefficient(&und),
        avg_shortest_path: asp,
        max_shortest_path_seen: asp_max,
        avg_shortest_path_sources: sources.len(),
        avg_shortest_path_sampled: sampled,
        rounds_to_full_reliability: series.reliability.iter().position(|&r| r == 1.0),
        reliability: series.reliability,
        components_by_sample: series.components,
        isolated_by_sample: series.isolated,
        broadcasts_per_sample: p.broadcasts,
        messages_per_node_per_round,
        messages_by_kind: sim.counters.by_kind(),
        dial_failures: sim.counters.dial_failures,
        connections_lost: sim.counters.connections_lost,
        idle_closed: sim.counters.idle_closed,
        orphans_reported: sim.counters.orphans_reported,
        peer_up_events: ups,
        peer_down_events: downs,
        peer_event_mismatch: snap.peer_event_mismatch,
        isolated_detail: isolated_detail(&sim, 10),
        discovery_runs: discovery.as_ref().map(|d| d.runs),
        components_per_round: None,
        rounds_to_merge: None,
        churn_left: None,
        churn_killed: None,
        churn_joined: None,
        virtual_ms: sim.now,
        events: sim.events_processed,
        wall_ms: 0,
    };
    exp.finish(&mut report);
    report.wall_ms = wall.elapsed().as_millis();
    (report, sim)
}
