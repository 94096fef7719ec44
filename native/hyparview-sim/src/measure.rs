//! What the scenarios measure on a running simulator: the overlay's
//! structure (a [`Snapshot`]), why isolated nodes stay isolated, and the
//! reliability of flood broadcasts. The engine only moves events.

use crate::engine::{Protocol, Sim};
use crate::metrics::{self, MinMeanMax};
use rand::Rng;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};

/// The live overlay's structure at one instant, as a report carries it
/// (its fields are the report's, flattened into its JSON).
#[derive(Clone, Debug, Serialize)]
pub struct Structure {
    pub live_nodes: usize,
    pub components: usize,
    pub isolated: usize,
    pub asymmetric_links: usize,
    /// Active-view entries of live nodes naming dead nodes.
    pub dead_links: usize,
    pub active_view: MinMeanMax,
    pub passive_view: MinMeanMax,
    /// Active view size -> number of live nodes with it.
    pub active_view_hist: BTreeMap<usize, usize>,
    pub passive_view_hist: BTreeMap<usize, usize>,
    /// Open connections (transport model) per live node.
    pub connections: MinMeanMax,
}

/// Structural snapshot of the live overlay.
pub struct Snapshot {
    pub structure: Structure,
    /// Live nodes whose PeerUp − PeerDown count differs from their active
    /// view size.
    pub peer_event_mismatch: usize,
    /// Compact directed graph of live nodes: `adj[u]` = u's active view.
    pub adj: Vec<Vec<u32>>,
}

impl Snapshot {
    /// The compact graph undirected (for path metrics); built on demand,
    /// as the per-round samples need none.
    pub fn und(&self) -> Vec<Vec<u32>> {
        metrics::undirected(&self.adj)
    }
}

fn hist(sizes: &[usize]) -> BTreeMap<usize, usize> {
    let mut h = BTreeMap::new();
    for &s in sizes {
        *h.entry(s).or_insert(0) += 1;
    }
    h
}

pub fn snapshot<P: Protocol>(sim: &Sim<P>) -> Snapshot {
    let live = sim.live_nodes();
    let mut compact = vec![u32::MAX; sim.nodes.len()];
    for (k, &i) in live.iter().enumerate() {
        compact[i as usize] = k as u32;
    }
    let mut adj = Vec::with_capacity(live.len());
    let (mut isolated, mut dead_links, mut mismatch) = (0, 0, 0);
    let mut active_sizes = Vec::with_capacity(live.len());
    let mut passive_sizes = Vec::with_capacity(live.len());
    let mut view = Vec::new();
    for &i in &live {
        let n = &sim.nodes[i as usize];
        // One pass over the view: its size and the known nodes in it.
        let mut raw = 0;
        view.clear();
        n.node.for_each_active(&mut |p| {
            raw += 1;
            view.extend(sim.lookup(p));
        });
        if raw == 0 {
            isolated += 1;
        }
        if n.peer_ups as i64 - n.peer_downs as i64 != raw as i64 {
            mismatch += 1;
        }
        active_sizes.push(raw);
        passive_sizes.push(n.node.passive_view().len());
        let mut out = Vec::with_capacity(view.len());
        for &v in &view {
            let c = compact[v as usize];
            if c == u32::MAX {
                dead_links += 1;
            } else {
                out.push(c);
            }
        }
        adj.push(out);
    }
    let structure = Structure {
        live_nodes: live.len(),
        components: metrics::weak_components(&adj),
        isolated,
        asymmetric_links: metrics::asymmetric_links(&adj),
        dead_links,
        active_view_hist: hist(&active_sizes),
        passive_view_hist: hist(&passive_sizes),
        active_view: metrics::min_mean_max(active_sizes),
        passive_view: metrics::min_mean_max(passive_sizes),
        connections: metrics::min_mean_max(live.iter().map(|&i| sim.connection_count(i))),
    };
    Snapshot {
        structure,
        peer_event_mismatch: mismatch,
        adj,
    }
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

pub fn isolated_detail<P: Protocol>(sim: &Sim<P>, limit: usize) -> Vec<IsolatedDetail> {
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

/// Mean fraction of live nodes reached by `n` flood broadcasts over
/// active views, each from a random live node, all at the current
/// instant. A forward to a dead peer fails and the forwarder is told
/// right away (`ConnectionLost`), as in the paper, so later broadcasts
/// of the same sample already see the repaired views.
pub fn reliability<P: Protocol>(sim: &mut Sim<P>, n: usize) -> f64 {
    let live = sim.live_nodes();
    if live.is_empty() || n == 0 {
        return 0.0;
    }
    let len = sim.nodes.len();
    // Views only change for the nodes fed a loss below (their outputs are
    // only scheduled): read every view once, flat, and re-read only those.
    let alive: Vec<bool> = sim.nodes.iter().map(|x| x.alive).collect();
    let mut start = vec![0usize; len + 1];
    let mut edges = Vec::with_capacity(live.len() * 6);
    for i in 0..len {
        if alive[i] {
            edges.extend(sim.active_indices(i as u32));
        }
        start[i + 1] = edges.len();
    }
    if !sim.is_partitioned()
        && edges.iter().all(|&v| alive[v as usize])
        && strongly_connected(&start, &edges, &alive, live[0])
    {
        // No broadcast can meet a dead peer (so none changes a view) and
        // each reaches every live node: the loop below would add exactly
        // 1.0 per broadcast. Its draws are still made, so the runs that
        // follow are the same.
        for _ in 0..n {
            sim.rng().gen_range(0..live.len());
        }
        return 1.0;
    }
    let mut reread: HashMap<u32, Vec<u32>> = HashMap::new();
    // visited[v] == k: reached by broadcast k.
    let mut visited = vec![usize::MAX; len];
    let mut queue = VecDeque::new();
    let mut total = 0.0;
    for k in 0..n {
        let src = live[sim.rng().gen_range(0..live.len())];
        visited[src as usize] = k;
        queue.push_back(src);
        let mut reached = 1usize;
        while let Some(u) = queue.pop_front() {
            // (Most samples feed no loss: skip hashing then.)
            let own = if reread.is_empty() {
                None
            } else {
                reread.remove(&u)
            };
            let view = own
                .as_deref()
                .unwrap_or(&edges[start[u as usize]..start[u as usize + 1]]);
            let mut changed = false;
            for &v in view {
                if !alive[v as usize] {
                    sim.detect_dead(u, v);
                    changed = true;
                    continue;
                }
                if visited[v as usize] == k || !sim.reachable(u, v) {
                    continue;
                }
                visited[v as usize] = k;
                reached += 1;
                queue.push_back(v);
            }
            if changed {
                reread.insert(u, sim.active_indices(u));
            } else if let Some(own) = own {
                reread.insert(u, own);
            }
        }
        total += reached as f64 / live.len() as f64;
    }
    total / n as f64
}

/// True when every live node reaches `root` and is reached from it over
/// the directed graph (`edges[start[u]..start[u + 1]]` = u's view; dead
/// nodes have none, and no view names one).
fn strongly_connected(start: &[usize], edges: &[u32], alive: &[bool], root: u32) -> bool {
    let len = alive.len();
    let live = alive.iter().filter(|&&a| a).count();
    // The reverse graph, in the same layout.
    let mut rstart = vec![0usize; len + 1];
    for &v in edges {
        rstart[v as usize + 1] += 1;
    }
    for i in 0..len {
        rstart[i + 1] += rstart[i];
    }
    let mut fill = rstart.clone();
    let mut redges = vec![0u32; edges.len()];
    for u in 0..len {
        for &v in &edges[start[u]..start[u + 1]] {
            redges[fill[v as usize]] = u as u32;
            fill[v as usize] += 1;
        }
    }
    let reached = |start: &[usize], edges: &[u32]| {
        let mut seen = vec![false; len];
        let mut stack = vec![root];
        seen[root as usize] = true;
        let mut count = 1;
        while let Some(u) = stack.pop() {
            for &v in &edges[start[u as usize]..start[u as usize + 1]] {
                if !seen[v as usize] {
                    seen[v as usize] = true;
                    count += 1;
                    stack.push(v);
                }
            }
        }
        count
    };
    reached(start, edges) == live && reached(&rstart, &redges) == live
}

#[cfg(test)]
mod tests {
    use super::strongly_connected;

    /// CSR layout of `adj`.
    fn csr(adj: &[&[u32]]) -> (Vec<usize>, Vec<u32>) {
        let mut start = vec![0];
        let mut edges = Vec::new();
        for vs in adj {
            edges.extend_from_slice(vs);
            start.push(edges.len());
        }
        (start, edges)
    }

    #[test]
    fn strongly_connected_needs_a_path_both_ways_between_live_nodes() {
        // A directed ring: every node reaches every other.
        let (s, e) = csr(&[&[1], &[2], &[0]]);
        assert!(strongly_connected(&s, &e, &[true; 3], 0));
        // A chain: 2 reaches no one.
        let (s, e) = csr(&[&[1], &[2], &[]]);
        assert!(!strongly_connected(&s, &e, &[true; 3], 0));
        // A dead node (no view, named by none) does not count.
        let (s, e) = csr(&[&[1], &[0], &[]]);
        assert!(strongly_connected(&s, &e, &[true, true, false], 1));
        // Two pairs.
        let (s, e) = csr(&[&[1], &[0], &[3], &[2]]);
        assert!(!strongly_connected(&s, &e, &[true; 4], 0));
    }
}
