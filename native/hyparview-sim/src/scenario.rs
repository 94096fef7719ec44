//! Scenarios (stable, failure, churn, partition), their parameters and the
//! report they produce.

use crate::engine::{NetConfig, Sim};
use crate::metrics::{self, MinMeanMax};
use hyparview::{Config, Millis};
use rand::seq::SliceRandom;
use rand::Rng;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    Stable,
    Failure,
    Churn,
    Partition,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Stable => "stable",
            Scenario::Failure => "failure",
            Scenario::Churn => "churn",
            Scenario::Partition => "partition",
        }
    }

    fn parse(s: &str) -> Option<Scenario> {
        Some(match s {
            "stable" => Scenario::Stable,
            "failure" => Scenario::Failure,
            "churn" => Scenario::Churn,
            "partition" => Scenario::Partition,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug)]
pub struct Params {
    pub scenario: Scenario,
    pub nodes: usize,
    pub seed: u64,
    pub fail: f64,
    pub rounds: usize,
    pub churn: f64,
    pub json: bool,
    pub latency_min: Millis,
    pub latency_max: Millis,
    pub shuffle_interval: Millis,
    pub neighbor_timeout: Millis,
    /// Virtual time between two joins while building the overlay.
    pub join_spacing: Millis,
    /// Rounds of quiet after the last join before the measured phase.
    pub settle_rounds: usize,
    /// Broadcasts averaged per reliability sample.
    pub broadcasts: usize,
    /// Diagnosis only (no flag): trace every event between two nodes.
    pub trace_pair: Option<(u32, u32)>,
}

impl Params {
    pub fn new(scenario: Scenario) -> Params {
        Params {
            scenario,
            nodes: 1000,
            seed: 1,
            fail: 0.5,
            rounds: 10,
            churn: 0.05,
            json: false,
            latency_min: 5,
            latency_max: 50,
            shuffle_interval: Config::default().shuffle_interval,
            neighbor_timeout: Config::default().neighbor_timeout,
            join_spacing: 10,
            settle_rounds: 2,
            broadcasts: 50,
            trace_pair: None,
        }
    }
}

pub const USAGE: &str =
    "usage: hyparview-sim <stable|failure|churn|partition> [--nodes N] [--seed S] \
[--fail F] [--rounds R] [--churn C] [--json] [--latency-min MS] [--latency-max MS] \
[--shuffle-interval MS] [--neighbor-timeout MS] [--join-spacing MS] [--settle-rounds R] [--broadcasts B]";

/// Parses the command line (without the program name).
pub fn parse_args<S: AsRef<str>>(args: &[S]) -> Result<Params, String> {
    let mut it = args.iter().map(|s| s.as_ref());
    let first = it.next().ok_or("missing scenario")?;
    let scenario = Scenario::parse(first).ok_or_else(|| format!("unknown scenario {first:?}"))?;
    let mut p = Params::new(scenario);
    while let Some(flag) = it.next() {
        if flag == "--json" {
            p.json = true;
            continue;
        }
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        fn num<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
            v.parse().map_err(|_| format!("{flag}: cannot parse {v:?}"))
        }
        match flag {
            "--nodes" => p.nodes = num(flag, value()?)?,
            "--seed" => p.seed = num(flag, value()?)?,
            "--fail" => p.fail = num(flag, value()?)?,
            "--rounds" => p.rounds = num(flag, value()?)?,
            "--churn" => p.churn = num(flag, value()?)?,
            "--latency-min" => p.latency_min = num(flag, value()?)?,
            "--latency-max" => p.latency_max = num(flag, value()?)?,
            "--shuffle-interval" => p.shuffle_interval = num(flag, value()?)?,
            "--neighbor-timeout" => p.neighbor_timeout = num(flag, value()?)?,
            "--join-spacing" => p.join_spacing = num(flag, value()?)?,
            "--settle-rounds" => p.settle_rounds = num(flag, value()?)?,
            "--broadcasts" => p.broadcasts = num(flag, value()?)?,
            _ => return Err(format!("unknown option {flag:?}")),
        }
    }
    if p.nodes < 2 {
        return Err("--nodes must be at least 2".into());
    }
    if !(0.0..=1.0).contains(&p.fail) || !(0.0..=1.0).contains(&p.churn) {
        return Err("--fail and --churn must be within 0..1".into());
    }
    if p.latency_min > p.latency_max {
        return Err("--latency-min must not exceed --latency-max".into());
    }
    if p.broadcasts == 0 {
        return Err("--broadcasts must be positive".into());
    }
    let cfg = Config {
        shuffle_interval: p.shuffle_interval,
        neighbor_timeout: p.neighbor_timeout,
        ..Config::default()
    };
    cfg.validate().map_err(|e| e.to_string())?;
    Ok(p)
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub scenario: &'static str,
    pub nodes: usize,
    pub seed: u64,
    pub rounds: usize,
    pub round_ms: Millis,
    pub live_nodes: usize,
    pub components: usize,
    pub isolated: usize,
    pub asymmetric_links: usize,
    /// Active-view entries of live nodes naming dead nodes.
    pub dead_links: usize,
    pub active_view: MinMeanMax,
    pub passive_view: MinMeanMax,
    /// Open connections (transport model) per live node.
    pub connections: MinMeanMax,
    pub clustering_coefficient: f64,
    pub avg_shortest_path: Option<f64>,
    pub max_shortest_path_seen: u32,
    pub avg_shortest_path_sources: usize,
    pub avg_shortest_path_sampled: bool,
    /// Index 0: the moment of the event (end of build for stable), then one
    /// sample per round.
    pub reliability: Vec<f64>,
    pub rounds_to_full_reliability: Option<usize>,
    /// Components and isolated nodes at each reliability sample (taken
    /// just before its broadcasts).
    pub components_by_sample: Vec<usize>,
    pub isolated_by_sample: Vec<usize>,
    pub broadcasts_per_sample: usize,
    pub messages_per_node_per_round: f64,
    pub messages_by_kind: BTreeMap<&'static str, u64>,
    pub dial_failures: u64,
    pub connections_lost: u64,
    /// Idle connections to non-active peers retired by the transport model.
    pub idle_closed: u64,
    /// Active peers reported lost for having no connection (transport's
    /// orphan check).
    pub orphans_reported: u64,
    pub peer_up_events: u64,
    pub peer_down_events: u64,
    /// Live nodes whose PeerUp − PeerDown count differs from their active view size.
    pub peer_event_mismatch: usize,
    /// Up to 10 isolated nodes at the end, for diagnosis.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub isolated_detail: Vec<IsolatedDetail>,
    /// Partition only: components after heal (index 0 = at heal, then per round).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub components_per_round: Option<Vec<usize>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rounds_to_merge: Option<Option<usize>>,
    /// Churn only: nodes that left gracefully / were killed / joined in total.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub churn_left: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub churn_killed: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub churn_joined: Option<usize>,
    pub virtual_ms: Millis,
    pub events: u64,
    pub wall_ms: u128,
}

/// Why an isolated node stays isolated.
#[derive(Clone, Debug, Serialize)]
pub struct IsolatedDetail {
    pub id: String,
    pub passive: usize,
    pub passive_live: usize,
    /// Live nodes holding it in their passive view.
    pub known_by: usize,
    pub contacts_live: usize,
    pub connections: usize,
}

pub fn isolated_detail(sim: &Sim, limit: usize) -> Vec<IsolatedDetail> {
    let live = sim.live_nodes();
    let isolated: Vec<u32> = live
        .iter()
        .copied()
        .filter(|&i| sim.nodes[i as usize].node.active_view().is_empty())
        .take(limit)
        .collect();
    isolated
        .into_iter()
        .map(|i| {
            let n = &sim.nodes[i as usize];
            let passive = sim.passive_indices(i);
            IsolatedDetail {
                id: n.peer.id.to_string(),
                passive: passive.len(),
                passive_live: passive.iter().filter(|&&p| sim.is_alive(p)).count(),
                known_by: live
                    .iter()
                    .filter(|&&j| sim.passive_indices(j).contains(&i))
                    .count(),
                contacts_live: n.contacts.iter().filter(|&&c| sim.is_alive(c)).count(),
                connections: sim.connection_count(i),
            }
        })
        .collect()
}

/// Structural snapshot of the live overlay.
pub struct Snapshot {
    pub live: usize,
    pub components: usize,
    pub isolated: usize,
    pub asymmetric_links: usize,
    pub dead_links: usize,
    pub active_view: MinMeanMax,
    pub passive_view: MinMeanMax,
    pub connections: MinMeanMax,
    pub peer_event_mismatch: usize,
    /// Compact undirected graph of live nodes (for path metrics).
    pub und: Vec<Vec<u32>>,
}

pub fn snapshot(sim: &Sim) -> Snapshot {
    let live = sim.live_nodes();
    let mut compact = vec![u32::MAX; sim.nodes.len()];
    for (k, &i) in live.iter().enumerate() {
        compact[i as usize] = k as u32;
    }
    let mut adj = Vec::with_capacity(live.len());
    let (mut isolated, mut dead_links, mut mismatch) = (0, 0, 0);
    let mut active_sizes = Vec::with_capacity(live.len());
    let mut passive_sizes = Vec::with_capacity(live.len());
    for &i in &live {
        let n = &sim.nodes[i as usize];
        let view = sim.active_indices(i);
        let raw = n.node.active_view().len();
        if raw == 0 {
            isolated += 1;
        }
        if n.peer_ups as i64 - n.peer_downs as i64 != raw as i64 {
            mismatch += 1;
        }
        active_sizes.push(raw);
        passive_sizes.push(n.node.passive_view().len());
        let mut out = Vec::with_capacity(view.len());
        for v in view {
            let c = compact[v as usize];
            if c == u32::MAX {
                dead_links += 1;
            } else {
                out.push(c);
            }
        }
        adj.push(out);
    }
    let und = metrics::undirected(&adj);
    Snapshot {
        live: live.len(),
        components: metrics::components(&und),
        isolated,
        asymmetric_links: metrics::asymmetric_links(&adj),
        dead_links,
        active_view: metrics::min_mean_max(active_sizes),
        passive_view: metrics::min_mean_max(passive_sizes),
        connections: metrics::min_mean_max(live.iter().map(|&i| sim.connection_count(i))),
        peer_event_mismatch: mismatch,
        und,
    }
}

/// Creates `n` nodes that join one every `spacing` ms from now, each through
/// a random node of `pool` (which, when `grow_pool`, takes in each new node
/// so the next one can use it: the build phase).
fn schedule_joins(
    sim: &mut Sim,
    n: usize,
    spacing: Millis,
    pool: &mut Vec<u32>,
    grow_pool: bool,
) -> Millis {
    let start = sim.now;
    for k in 0..n {
        let i = sim.create_node();
        let contacts = if pool.is_empty() {
            vec![]
        } else {
            let c = pool[sim.rng().gen_range(0..pool.len())];
            vec![c]
        };
        sim.schedule_join(i, contacts, start + k as Millis * spacing);
        if grow_pool {
            pool.push(i);
        }
    }
    start + n.saturating_sub(1) as Millis * spacing
}

pub fn run(p: &Params) -> Report {
    run_keep(p).0
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
    let b = p.broadcasts;

    // Build.
    let mut pool = Vec::new();
    let last = schedule_joins(&mut sim, p.nodes, p.join_spacing, &mut pool, true);
    sim.run_until(last + p.settle_rounds as Millis * round);

    sim.counters = Default::default();
    let mut live_sum = 0usize;
    let mut series = Series::default();
    let mut components_per_round = None;
    let (mut left, mut killed, mut joined) = (0, 0, 0);

    match p.scenario {
        Scenario::Stable | Scenario::Failure => {
            if p.scenario == Scenario::Failure {
                let mut live = sim.live_nodes();
                live.shuffle(sim.rng());
                let k = (p.fail * live.len() as f64).round() as usize;
                for &i in &live[..k] {
                    sim.kill(i);
                }
            }
            sample(&mut sim, b, &mut series);
            for _ in 0..p.rounds {
                let t = sim.now + round;
                sim.run_until(t);
                live_sum += sim.live_nodes().len();
                sample(&mut sim, b, &mut series);
            }
        }
        Scenario::Churn => {
            for r in 0..p.rounds {
                let mut live = sim.live_nodes();
                live.shuffle(sim.rng());
                let k = (p.churn * live.len() as f64).round() as usize;
                // Half leave gracefully, half crash.
                for (j, &i) in live[..k].iter().enumerate() {
                    if j % 2 == 0 {
                        sim.leave(i);
                        left += 1;
                    } else {
                        sim.kill(i);
                        killed += 1;
                    }
                }
                let mut survivors: Vec<u32> = live[k..].to_vec();
                survivors.sort_unstable();
                schedule_joins(&mut sim, k, p.join_spacing, &mut survivors, false);
                joined += k;
                if r == 0 {
                    sample(&mut sim, b, &mut series);
                }
                let t = sim.now + round;
                sim.run_until(t);
                live_sum += sim.live_nodes().len();
                sample(&mut sim, b, &mut series);
            }
        }
        Scenario::Partition => {
            let mut live = sim.live_nodes();
            live.shuffle(sim.rng());
            let mut groups = vec![0u8; sim.nodes.len()];
            for &i in &live[..live.len() / 2] {
                groups[i as usize] = 1;
            }
            sim.partition(&groups);
            sample(&mut sim, b, &mut series);
            for _ in 0..p.rounds {
                let t = sim.now + round;
                sim.run_until(t);
                live_sum += sim.live_nodes().len();
                sample(&mut sim, b, &mut series);
            }
            sim.heal();
            let mut comps = vec![snapshot(&sim).components];
            for _ in 0..p.rounds {
                let t = sim.now + round;
                sim.run_until(t);
                live_sum += sim.live_nodes().len();
                sample(&mut sim, b, &mut series);
                comps.push(snapshot(&sim).components);
            }
            components_per_round = Some(comps);
        }
    }

    let measured_rounds = match p.scenario {
        Scenario::Partition => 2 * p.rounds,
        _ => p.rounds,
    };
    let snap = snapshot(&sim);
    let n = snap.und.len();
    let (sources, sampled): (Vec<u32>, bool) = if n <= 2000 {
        ((0..n as u32).collect(), false)
    } else {
        let mut all: Vec<u32> = (0..n as u32).collect();
        all.shuffle(sim.rng());
        all.truncate(100);
        (all, true)
    };
    let (asp, asp_max) = metrics::avg_shortest_path(&snap.und, &sources);
    let mean_live = if measured_rounds == 0 {
        snap.live as f64
    } else {
        live_sum as f64 / measured_rounds as f64
    };
    let messages_per_node_per_round = if measured_rounds == 0 || mean_live == 0.0 {
        0.0
    } else {
        sim.counters.sends as f64 / mean_live / measured_rounds as f64
    };
    let (ups, downs) = sim
        .nodes
        .iter()
        .fold((0, 0), |(u, d), n| (u + n.peer_ups, d + n.peer_downs));
    let rounds_to_merge = components_per_round
        .as_ref()
        .map(|c: &Vec<usize>| c.iter().position(|&x| x == 1));
    let is_churn = p.scenario == Scenario::Churn;
    let report = Report {
        scenario: p.scenario.name(),
        nodes: p.nodes,
        seed: p.seed,
        rounds: p.rounds,
        round_ms: round,
        live_nodes: snap.live,
        components: snap.components,
        isolated: snap.isolated,
        asymmetric_links: snap.asymmetric_links,
        dead_links: snap.dead_links,
        active_view: snap.active_view,
        passive_view: snap.passive_view,
        connections: snap.connections,
        clustering_coefficient: metrics::clustering_coefficient(&snap.und),
        avg_shortest_path: asp,
        max_shortest_path_seen: asp_max,
        avg_shortest_path_sources: sources.len(),
        avg_shortest_path_sampled: sampled,
        rounds_to_full_reliability: series.reliability.iter().position(|&r| r == 1.0),
        reliability: series.reliability,
        components_by_sample: series.components,
        isolated_by_sample: series.isolated,
        broadcasts_per_sample: b,
        messages_per_node_per_round,
        messages_by_kind: sim.counters.by_kind.clone(),
        dial_failures: sim.counters.dial_failures,
        connections_lost: sim.counters.connections_lost,
        idle_closed: sim.counters.idle_closed,
        orphans_reported: sim.counters.orphans_reported,
        peer_up_events: ups,
        peer_down_events: downs,
        peer_event_mismatch: snap.peer_event_mismatch,
        isolated_detail: isolated_detail(&sim, 10),
        components_per_round,
        rounds_to_merge,
        churn_left: is_churn.then_some(left),
        churn_killed: is_churn.then_some(killed),
        churn_joined: is_churn.then_some(joined),
        virtual_ms: sim.now,
        events: sim.events_processed,
        wall_ms: wall.elapsed().as_millis(),
    };
    (report, sim)
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
    series.components.push(snap.components);
    series.isolated.push(snap.isolated);
    series.reliability.push(sim.reliability(broadcasts));
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mmm = |m: &MinMeanMax| format!("min {} / mean {:.2} / max {}", m.min, m.mean, m.max);
        let opt = |o: Option<usize>| o.map_or("never".to_string(), |v| v.to_string());
        writeln!(f, "{:<28} {}", "scenario", self.scenario)?;
        writeln!(f, "{:<28} {}", "nodes", self.nodes)?;
        writeln!(f, "{:<28} {}", "seed", self.seed)?;
        writeln!(f, "{:<28} {} x {} ms", "rounds", self.rounds, self.round_ms)?;
        writeln!(f, "{:<28} {}", "live nodes", self.live_nodes)?;
        writeln!(f, "{:<28} {}", "components", self.components)?;
        writeln!(f, "{:<28} {}", "isolated", self.isolated)?;
        writeln!(f, "{:<28} {}", "asymmetric links", self.asymmetric_links)?;
        writeln!(f, "{:<28} {}", "dead links", self.dead_links)?;
        writeln!(f, "{:<28} {}", "active view", mmm(&self.active_view))?;
        writeln!(f, "{:<28} {}", "passive view", mmm(&self.passive_view))?;
        writeln!(f, "{:<28} {}", "connections", mmm(&self.connections))?;
        writeln!(
            f,
            "{:<28} {:.4}",
            "clustering coefficient", self.clustering_coefficient
        )?;
        writeln!(
            f,
            "{:<28} {} ({} sources{}, max seen {})",
            "avg shortest path",
            self.avg_shortest_path
                .map_or("n/a".to_string(), |v| format!("{v:.3}")),
            self.avg_shortest_path_sources,
            if self.avg_shortest_path_sampled {
                ", sampled"
            } else {
                ", all"
            },
            self.max_shortest_path_seen
        )?;
        writeln!(
            f,
            "per sample (index 0 = event, then per round; {} broadcasts each):",
            self.broadcasts_per_sample
        )?;
        writeln!(
            f,
            "  {:>5}  {:>11}  {:>10}  {:>8}",
            "index", "reliability", "components", "isolated"
        )?;
        for (i, r) in self.reliability.iter().enumerate() {
            let c = self.components_by_sample.get(i).copied().unwrap_or(0);
            let n = self.isolated_by_sample.get(i).copied().unwrap_or(0);
            writeln!(f, "  {i:>5}  {r:>11.4}  {c:>10}  {n:>8}")?;
        }
        writeln!(
            f,
            "{:<28} {}",
            "rounds to full reliability",
            opt(self.rounds_to_full_reliability)
        )?;
        if let Some(c) = &self.components_per_round {
            writeln!(f, "components per round after heal: {c:?}")?;
            writeln!(
                f,
                "{:<28} {}",
                "rounds to merge",
                opt(self.rounds_to_merge.flatten())
            )?;
        }
        if let (Some(l), Some(k), Some(j)) = (self.churn_left, self.churn_killed, self.churn_joined)
        {
            writeln!(f, "{:<28} left {l} / killed {k} / joined {j}", "churn")?;
        }
        writeln!(
            f,
            "{:<28} {:.2}",
            "messages/node/round", self.messages_per_node_per_round
        )?;
        writeln!(f, "{:<28} {:?}", "messages by kind", self.messages_by_kind)?;
        writeln!(
            f,
            "{:<28} dial failures {} / connections lost {} / idle closed {} / orphans {}",
            "transport",
            self.dial_failures,
            self.connections_lost,
            self.idle_closed,
            self.orphans_reported
        )?;
        writeln!(
            f,
            "{:<28} up {} / down {} / mismatched nodes {}",
            "peer events", self.peer_up_events, self.peer_down_events, self.peer_event_mismatch
        )?;
        writeln!(
            f,
            "{:<28} {} ms / {} events",
            "virtual time", self.virtual_ms, self.events
        )?;
        write!(f, "{:<28} {}", "wall ms", self.wall_ms)
    }
}
