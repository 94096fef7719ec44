//! The report a scenario produces (JSON fields and text form).

use crate::measure::{IsolatedDetail, Structure};
use crate::metrics::MinMeanMax;
use hyparview::Millis;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub scenario: &'static str,
    pub nodes: usize,
    pub seed: u64,
    pub rounds: usize,
    pub round_ms: Millis,
    /// At the end of the run.
    #[serde(flatten)]
    pub structure: Structure,
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
    /// `--discovery` only: answers the discovery service handed out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discovery_runs: Option<u64>,
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

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mmm = |m: &MinMeanMax| format!("min {} / mean {:.2} / max {}", m.min, m.mean, m.max);
        let opt = |o: Option<usize>| o.map_or("never".to_string(), |v| v.to_string());
        writeln!(f, "{:<28} {}", "scenario", self.scenario)?;
        writeln!(f, "{:<28} {}", "nodes", self.nodes)?;
        writeln!(f, "{:<28} {}", "seed", self.seed)?;
        writeln!(f, "{:<28} {} x {} ms", "rounds", self.rounds, self.round_ms)?;
        writeln!(f, "{:<28} {}", "live nodes", self.structure.live_nodes)?;
        writeln!(f, "{:<28} {}", "components", self.structure.components)?;
        writeln!(f, "{:<28} {}", "isolated", self.structure.isolated)?;
        writeln!(
            f,
            "{:<28} {}",
            "asymmetric links", self.structure.asymmetric_links
        )?;
        writeln!(f, "{:<28} {}", "dead links", self.structure.dead_links)?;
        writeln!(
            f,
            "{:<28} {}",
            "active view",
            mmm(&self.structure.active_view)
        )?;
        writeln!(
            f,
            "{:<28} {}",
            "passive view",
            mmm(&self.structure.passive_view)
        )?;
        let sizes = |h: &BTreeMap<usize, usize>| {
            h.iter()
                .map(|(size, count)| format!("{size}: {count}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        writeln!(
            f,
            "{:<28} {}",
            "active view sizes",
            sizes(&self.structure.active_view_hist)
        )?;
        writeln!(
            f,
            "{:<28} {}",
            "passive view sizes",
            sizes(&self.structure.passive_view_hist)
        )?;
        writeln!(
            f,
            "{:<28} {}",
            "connections",
            mmm(&self.structure.connections)
        )?;
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
        if let Some(n) = self.discovery_runs {
            writeln!(f, "{:<28} {n}", "discovery answers")?;
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
