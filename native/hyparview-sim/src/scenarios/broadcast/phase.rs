//! One phase of broadcasts and what it measured: delivery, relative message
//! redundancy and last delivery hop as in the Plumtree paper (§5), latency,
//! and per-origin FIFO order at every node.

use super::{BroadcastParams, MeanMax, MeanMin, Overlay, Percentiles};
use hyparview::Millis;
use plumtree::Stats;
use rand::Rng;
use serde::Serialize;
use std::collections::HashMap;

#[derive(Clone, Debug, Serialize)]
pub struct PhaseReport {
    pub name: &'static str,
    pub messages: usize,
    /// Live nodes during the phase (no node fails within a phase).
    pub live_nodes: usize,
    pub delivery: MeanMin,
    /// Messages that reached every live node.
    pub fully_delivered: usize,
    /// Messages whose origin had no live peer in its active view when it
    /// sent them (all its neighbours had just been killed): nobody else
    /// holds them until the origin's new neighbours come up and are told
    /// of them (Plumtree's `catch_up_window`).
    pub cut_off_origin: usize,
    /// `delivery` over the other messages.
    pub delivery_connected: MeanMin,
    /// m / (n - 1) - 1 over the phase: m GOSSIPs (payloads) received, n - 1
    /// the nodes that delivered, summed over the phase's messages.
    pub rmr: f64,
    /// Hops of each message's last delivery.
    pub ldh: MeanMax,
    /// From the broadcast to each delivery.
    pub latency_ms: Percentiles,
    /// Deliveries, during this phase, of messages of earlier phases (they
    /// took longer than the quiet at the end of their phase).
    pub late_deliveries: u64,
    pub gossip_received: u64,
    pub ihave_sent: u64,
    pub grafts_sent: u64,
    pub prunes_sent: u64,
    pub optimizations: u64,
}

/// Per-origin order at every node, over the whole run.
pub struct Tracker {
    /// (node, origin) -> last delivered seq.
    last: HashMap<(u32, u32), u64>,
    pub fifo_violations: u64,
}

fn totals(o: &Overlay) -> Stats {
    let mut t = Stats::default();
    for s in o.trees.iter().map(|t| t.stats()) {
        t.gossip_received += s.gossip_received;
        t.ihave_sent += s.ihave_sent;
        t.grafts_sent += s.grafts_sent;
        t.prunes_sent += s.prunes_sent;
        t.optimizations += s.optimizations;
    }
    t
}

fn percentile(sorted: &[Millis], q: f64) -> Millis {
    if sorted.is_empty() {
        return 0;
    }
    let k = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[k]
}

impl Tracker {
    pub fn new(nodes: usize) -> Tracker {
        Tracker {
            last: HashMap::with_capacity(nodes * 4),
            fifo_violations: 0,
        }
    }

    /// `p.messages` broadcasts `p.interval` apart from random live
    /// `origins` (any live node if none is left), then `settle` ms quiet.
    pub fn phase(
        &mut self,
        o: &mut Overlay,
        name: &'static str,
        origins: &[u32],
        p: &BroadcastParams,
        settle: Millis,
    ) -> PhaseReport {
        let mut senders: Vec<u32> = origins
            .iter()
            .copied()
            .filter(|&i| o.sim.is_alive(i))
            .collect();
        if senders.is_empty() {
            senders = o.sim.live_nodes();
        }
        let before = totals(o);
        // (origin, seq) -> message index; sent_at per index.
        let mut ids = HashMap::with_capacity(p.messages);
        let mut sent_at = Vec::with_capacity(p.messages);
        let mut cut_off = Vec::with_capacity(p.messages);
        for k in 0..p.messages {
            let origin = senders[o.sim.rng().gen_range(0..senders.len())];
            let neighbours = o.sim.active_indices(origin);
            cut_off.push(!neighbours.iter().any(|&v| o.sim.is_alive(v)));
            let seq = o.broadcast(origin, format!("{name} {k}").as_bytes());
            ids.insert((origin, seq), k);
            sent_at.push(o.now());
            let t = o.now() + p.interval;
            o.run_until(t);
        }
        let t = o.now() + settle;
        o.run_until(t);
        let after = totals(o);

        let mut reached = vec![0u64; p.messages];
        let mut hops = vec![0u32; p.messages];
        let mut latencies = Vec::new();
        let mut late = 0;
        for d in std::mem::take(&mut o.deliveries) {
            let last = self.last.entry((d.node, d.origin)).or_insert(u64::MAX);
            if *last != u64::MAX && d.seq <= *last {
                self.fifo_violations += 1;
            }
            *last = if *last == u64::MAX {
                d.seq
            } else {
                d.seq.max(*last)
            };
            if let Some(&k) = ids.get(&(d.origin, d.seq)) {
                reached[k] += 1;
                hops[k] = hops[k].max(d.hops);
                latencies.push(d.at - sent_at[k]);
            } else {
                late += 1;
            }
        }
        latencies.sort_unstable();
        let live = o.sim.live_nodes().len();
        let others = live.saturating_sub(1).max(1) as f64;
        let fractions: Vec<f64> = reached.iter().map(|&r| r as f64 / others).collect();
        let mean_min = |f: &mut dyn Iterator<Item = f64>| {
            let (mut sum, mut n, mut min) = (0.0, 0usize, 1.0f64);
            for x in f {
                sum += x;
                n += 1;
                min = min.min(x);
            }
            MeanMin {
                mean: if n == 0 { 1.0 } else { sum / n as f64 },
                min,
            }
        };
        let delivered: u64 = reached.iter().sum();
        let gossip = after.gossip_received - before.gossip_received;
        PhaseReport {
            name,
            messages: p.messages,
            live_nodes: live,
            delivery: mean_min(&mut fractions.iter().copied()),
            cut_off_origin: cut_off.iter().filter(|&&c| c).count(),
            delivery_connected: mean_min(
                &mut fractions
                    .iter()
                    .zip(&cut_off)
                    .filter(|(_, &c)| !c)
                    .map(|(&f, _)| f),
            ),
            fully_delivered: reached.iter().filter(|&&r| r as f64 >= others).count(),
            rmr: if delivered == 0 {
                0.0
            } else {
                gossip as f64 / delivered as f64 - 1.0
            },
            ldh: MeanMax {
                mean: hops.iter().map(|&h| f64::from(h)).sum::<f64>() / p.messages as f64,
                max: hops.iter().copied().max().unwrap_or(0),
            },
            latency_ms: Percentiles {
                p50: percentile(&latencies, 0.5),
                p99: percentile(&latencies, 0.99),
            },
            late_deliveries: late,
            gossip_received: gossip,
            ihave_sent: after.ihave_sent - before.ihave_sent,
            grafts_sent: after.grafts_sent - before.grafts_sent,
            prunes_sent: after.prunes_sent - before.prunes_sent,
            optimizations: after.optimizations - before.optimizations,
        }
    }
}
