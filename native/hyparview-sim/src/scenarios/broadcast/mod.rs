//! **broadcast**: Plumtree (the `plumtree` crate) over the simulated
//! HyParView overlay. Build the overlay with a Plumtree per node, send
//! `--warmup` phases (default 3) of `--messages` broadcasts each while the
//! trees form (reported, not judged), then a stable phase of as many; with `--fail F`, kill that fraction of
//! the nodes at once and send a phase right away (the tree repairs while
//! the views do) and one more two rounds later (the views have repaired).
//!
//! Workload: `--origins K` fixed origins (default 10: a few services that
//! publish most of the traffic), one broadcast every `--interval` ms
//! (default 20, so 50/s cluster-wide) from a random live origin, with the
//! tree optimisation at threshold 2 (`--threshold`, `none` for the shared
//! tree alone; see `plumtree::Config::optimization_threshold`).
//!
//! Not a [`super::Experiment`]: its nodes are HyParView + Plumtree
//! composites ([`overlay::Member`]) and its phases are counted in messages,
//! not rounds, so it has its own loop, parameters and report.

mod bound;
mod overlay;
mod phase;

pub use overlay::Overlay;
pub use phase::PhaseReport;

use crate::engine::NetConfig;
use crate::measure::snapshot;
use crate::metrics::{self, MinMeanMax};
use hyparview::{Config, Millis};
use phase::Tracker;
use rand::seq::SliceRandom;
use rand::Rng;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Instant;

/// Parameters of a broadcast run.
#[derive(Clone, Debug)]
pub struct BroadcastParams {
    pub nodes: usize,
    pub messages: usize,
    /// Fraction of the nodes killed after the stable phase (0: no failure).
    pub fail: f64,
    pub seed: u64,
    pub json: bool,
    /// Nodes that broadcast (0: every node may).
    pub origins: usize,
    /// Virtual ms between two broadcasts (cluster-wide).
    pub interval: Millis,
    pub threshold: Option<u32>,
    /// Plumtree's `graft_timeout_1` (its `gap_timeout` follows at 3 ×).
    pub graft_timeout: Millis,
    /// Unmeasured phases before the stable one (the trees form).
    pub warmup: usize,
    /// Shuffle intervals of quiet after the last join, before the first
    /// phase (the overlay settles; past crossing's dense phase from 13 on).
    pub settle_rounds: u64,
}

impl Default for BroadcastParams {
    fn default() -> Self {
        BroadcastParams {
            nodes: 1000,
            messages: 200,
            fail: 0.0,
            seed: 1,
            json: false,
            origins: 10,
            interval: 20,
            threshold: Some(2),
            graft_timeout: plumtree::Config::default().graft_timeout_1,
            warmup: 3,
            settle_rounds: 2,
        }
    }
}

pub const BROADCAST_USAGE: &str = "usage: hyparview-sim broadcast [--nodes N] [--messages M] \
[--fail F] [--seed S] [--json] [--origins K] [--interval MS] [--threshold T|none] [--graft-timeout MS] [--warmup W] [--settle-rounds R]";

/// Parses `broadcast`'s flags (the command line after the word `broadcast`).
pub fn parse_broadcast_args<S: AsRef<str>>(args: &[S]) -> Result<BroadcastParams, String> {
    let mut p = BroadcastParams::default();
    let mut it = args.iter().map(|s| s.as_ref());
    fn num<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
        v.parse().map_err(|_| format!("{flag}: cannot parse {v:?}"))
    }
    while let Some(flag) = it.next() {
        if flag == "--json" {
            p.json = true;
            continue;
        }
        let v = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag {
            "--nodes" => p.nodes = num(flag, v)?,
            "--messages" => p.messages = num(flag, v)?,
            "--fail" => p.fail = num(flag, v)?,
            "--seed" => p.seed = num(flag, v)?,
            "--origins" => p.origins = num(flag, v)?,
            "--interval" => p.interval = num(flag, v)?,
            "--threshold" if v == "none" => p.threshold = None,
            "--threshold" => p.threshold = Some(num(flag, v)?),
            "--graft-timeout" => p.graft_timeout = num(flag, v)?,
            "--warmup" => p.warmup = num(flag, v)?,
            "--settle-rounds" => p.settle_rounds = num(flag, v)?,
            _ => return Err(format!("unknown option {flag:?}")),
        }
    }
    if p.nodes < 2 {
        return Err("--nodes must be at least 2".into());
    }
    if p.messages == 0 {
        return Err("--messages must be positive".into());
    }
    if !(0.0..1.0).contains(&p.fail) {
        return Err("--fail must be within 0..1 (below 1)".into());
    }
    if p.graft_timeout == 0 {
        return Err("--graft-timeout must be positive".into());
    }
    if p.threshold == Some(0) {
        return Err("--threshold must be positive or none".into());
    }
    Ok(p)
}

/// Mean and least fraction of the live nodes (but the origin) reached.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct MeanMin {
    pub mean: f64,
    pub min: f64,
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct MeanMax {
    pub mean: f64,
    pub max: u32,
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Percentiles {
    pub p50: Millis,
    pub p99: Millis,
}

/// The overlay at one moment (for comparison with the broadcast paths).
#[derive(Clone, Debug, Serialize)]
pub struct OverlayShape {
    pub live_nodes: usize,
    pub components: usize,
    pub isolated: usize,
    pub active_view: MinMeanMax,
    /// Mean hop distance, BFS from up to 100 sampled live nodes.
    pub avg_shortest_path: Option<f64>,
    pub max_shortest_path_seen: u32,
    /// Mean eccentricity of the same sample: the last delivery hop of a
    /// flood along shortest paths.
    pub mean_eccentricity: f64,
    /// Least mean eccentricity of the sample in a BFS tree rooted at one
    /// of them: about the best last delivery hop of a message that follows
    /// a tree shared by all origins (see `bound.rs`).
    pub shared_tree_ldh: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct BroadcastReport {
    pub scenario: &'static str,
    pub nodes: usize,
    pub seed: u64,
    pub messages: usize,
    pub fail: f64,
    pub origins: usize,
    pub interval_ms: Millis,
    pub optimization_threshold: Option<u32>,
    pub round_ms: Millis,
    /// Quiet rounds between the last join and the first phase.
    pub settle_rounds: u64,
    /// Per phase (warmup, stable, and with a failure: failure, repaired).
    pub delivery: BTreeMap<&'static str, MeanMin>,
    pub rmr: BTreeMap<&'static str, f64>,
    pub ldh: BTreeMap<&'static str, MeanMax>,
    pub latency_ms: BTreeMap<&'static str, Percentiles>,
    /// Deliveries out of per-origin order or repeated, over the whole run.
    pub fifo_violations: u64,
    /// Sequence numbers skipped as unrecoverable gaps, over the whole run.
    pub gap_skipped: u64,
    pub phases: Vec<PhaseReport>,
    /// The overlay at the stable phase, and after the last phase.
    pub overlay_stable: OverlayShape,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overlay_after_failure: Option<OverlayShape>,
    pub virtual_ms: Millis,
    pub wall_ms: u128,
}

fn shape(o: &mut Overlay) -> OverlayShape {
    let snap = snapshot(&o.sim);
    let und = snap.und();
    let mut sources: Vec<u32> = (0..und.len() as u32).collect();
    sources.shuffle(o.sim.rng());
    sources.truncate(100);
    let (asp, max) = metrics::avg_shortest_path(&und, &sources);
    let (mean_eccentricity, shared_tree_ldh) = bound::shared_tree_bound(&und, &sources);
    OverlayShape {
        live_nodes: snap.structure.live_nodes,
        components: snap.structure.components,
        isolated: snap.structure.isolated,
        active_view: snap.structure.active_view,
        avg_shortest_path: asp,
        max_shortest_path_seen: max,
        mean_eccentricity,
        shared_tree_ldh,
    }
}

/// Runs a broadcast experiment.
pub fn run_broadcast(p: &BroadcastParams) -> BroadcastReport {
    let wall = Instant::now();
    let config = Config::default();
    let round = config.shuffle_interval;
    let pt = plumtree::Config {
        optimization_threshold: p.threshold,
        graft_timeout_1: p.graft_timeout,
        gap_timeout: plumtree::Config::default()
            .gap_timeout
            .max(3 * p.graft_timeout),
        ..plumtree::Config::default()
    };
    // Every phase ends with this much quiet: missing messages are grafted
    // (graft_timeout_1 plus jitter, then the next announcer) and gaps time
    // out before measuring.
    let settle = pt.gap_timeout + 2 * pt.graft_timeout_1;
    let mut o = Overlay::new(p.seed, config, NetConfig::default(), pt);

    // Build: one join every 10 ms through a random earlier node, then
    // `--settle-rounds` rounds of quiet (two by default, as the other
    // scenarios do).
    for k in 0..p.nodes {
        let i = o.create_node();
        let contacts = if k == 0 {
            vec![]
        } else {
            vec![o.sim.rng().gen_range(0..i)]
        };
        o.sim.schedule_join(i, contacts, k as Millis * 10);
    }
    let built = (p.nodes as Millis - 1) * 10 + p.settle_rounds * round;
    o.run_until(built);

    let mut origins: Vec<u32> = (0..p.nodes as u32).collect();
    origins.shuffle(o.sim.rng());
    if p.origins > 0 {
        origins.truncate(p.origins.min(p.nodes));
    }
    let mut tracker = Tracker::new(p.nodes);
    let mut phases = Vec::new();
    for _ in 0..p.warmup {
        phases.push(tracker.phase(&mut o, "warmup", &origins, p, settle));
    }
    let overlay_stable = shape(&mut o);
    phases.push(tracker.phase(&mut o, "stable", &origins, p, settle));
    let mut overlay_after_failure = None;
    if p.fail > 0.0 {
        let mut live = o.sim.live_nodes();
        live.shuffle(o.sim.rng());
        let k = (p.fail * live.len() as f64).round() as usize;
        for &i in &live[..k] {
            o.sim.kill(i);
        }
        let killed_at = o.now();
        phases.push(tracker.phase(&mut o, "failure", &origins, p, settle));
        o.run_until(o.now().max(killed_at + 2 * round));
        phases.push(tracker.phase(&mut o, "repaired", &origins, p, settle));
        overlay_after_failure = Some(shape(&mut o));
    }
    BroadcastReport {
        scenario: "broadcast",
        nodes: p.nodes,
        seed: p.seed,
        messages: p.messages,
        fail: p.fail,
        origins: origins.len(),
        interval_ms: p.interval,
        optimization_threshold: p.threshold,
        round_ms: round,
        settle_rounds: p.settle_rounds,
        delivery: phases.iter().map(|x| (x.name, x.delivery)).collect(),
        rmr: phases.iter().map(|x| (x.name, x.rmr)).collect(),
        ldh: phases.iter().map(|x| (x.name, x.ldh)).collect(),
        latency_ms: phases.iter().map(|x| (x.name, x.latency_ms)).collect(),
        fifo_violations: tracker.fifo_violations,
        gap_skipped: o.gap_skipped,
        phases,
        overlay_stable,
        overlay_after_failure,
        virtual_ms: o.now(),
        wall_ms: wall.elapsed().as_millis(),
    }
}

impl fmt::Display for BroadcastReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "broadcast: {} nodes, seed {}, {} messages per phase from {} origins every {} ms, \
optimization_threshold {:?}",
            self.nodes,
            self.seed,
            self.messages,
            self.origins,
            self.interval_ms,
            self.optimization_threshold
        )?;
        let asp = |s: &OverlayShape| {
            s.avg_shortest_path
                .map_or("-".into(), |a| format!("{a:.2}"))
        };
        writeln!(
            f,
            "overlay (stable): {} live, {} components, avg shortest path {}",
            self.overlay_stable.live_nodes,
            self.overlay_stable.components,
            asp(&self.overlay_stable)
        )?;
        if let Some(s) = &self.overlay_after_failure {
            writeln!(
                f,
                "overlay (after failure): {} live, {} components, avg shortest path {}",
                s.live_nodes,
                s.components,
                asp(s)
            )?;
        }
        for x in &self.phases {
            writeln!(
                f,
                "{:>9}: delivery mean {:.4} min {:.4} | rmr {:.3} | ldh mean {:.2} max {} | \
latency p50 {} ms p99 {} ms | live {}",
                x.name,
                x.delivery.mean,
                x.delivery.min,
                x.rmr,
                x.ldh.mean,
                x.ldh.max,
                x.latency_ms.p50,
                x.latency_ms.p99,
                x.live_nodes
            )?;
        }
        write!(
            f,
            "fifo violations {}, gaps skipped {}, virtual {} ms, wall {} ms",
            self.fifo_violations, self.gap_skipped, self.virtual_ms, self.wall_ms
        )
    }
}
