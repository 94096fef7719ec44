//! What a tree shared by every origin can do at best, for comparison with
//! the measured last delivery hop of one-off origins: a message that is its
//! origin's only one follows whatever tree exists, and on a tree its last
//! delivery hop is the origin's eccentricity in that tree.

use std::collections::VecDeque;

/// Hop distances from `source` and each node's BFS parent (`u32::MAX`
/// for the source and the unreachable).
fn bfs(adj: &[Vec<u32>], source: u32) -> (Vec<u32>, Vec<u32>) {
    let mut dist = vec![u32::MAX; adj.len()];
    let mut parent = vec![u32::MAX; adj.len()];
    let mut queue = VecDeque::from([source]);
    dist[source as usize] = 0;
    while let Some(u) = queue.pop_front() {
        for &v in &adj[u as usize] {
            if dist[v as usize] == u32::MAX {
                dist[v as usize] = dist[u as usize] + 1;
                parent[v as usize] = u;
                queue.push_back(v);
            }
        }
    }
    (dist, parent)
}

fn eccentricity(adj: &[Vec<u32>], source: u32) -> u32 {
    let (dist, _) = bfs(adj, source);
    dist.into_iter()
        .filter(|&d| d != u32::MAX)
        .max()
        .unwrap_or(0)
}

fn mean_eccentricity(adj: &[Vec<u32>], origins: &[u32]) -> f64 {
    let sum: u64 = origins
        .iter()
        .map(|&u| u64::from(eccentricity(adj, u)))
        .sum();
    sum as f64 / origins.len().max(1) as f64
}

/// The mean over `origins` of their eccentricity in the graph (the last
/// delivery hop of a flood along shortest paths), and the least mean
/// eccentricity over the BFS trees rooted at each of `origins` (the best
/// shared tree of that kind: a tree rooted near the centre has about the
/// smallest diameter of all spanning trees).
pub fn shared_tree_bound(und: &[Vec<u32>], origins: &[u32]) -> (f64, f64) {
    let best = origins
        .iter()
        .map(|&root| {
            let (_, parent) = bfs(und, root);
            let mut tree = vec![Vec::new(); und.len()];
            for (v, &p) in parent.iter().enumerate() {
                if p != u32::MAX {
                    tree[v].push(p);
                    tree[p as usize].push(v as u32);
                }
            }
            mean_eccentricity(&tree, origins)
        })
        .fold(f64::INFINITY, f64::min);
    (mean_eccentricity(und, origins), best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_a_cycle_every_tree_is_a_path() {
        // A 6-cycle: eccentricity 3 everywhere; a BFS tree drops one edge,
        // leaving a path whose nodes have eccentricity 3, 3, 4, 4, 5, 5.
        let und: Vec<Vec<u32>> = (0..6u32).map(|i| vec![(i + 5) % 6, (i + 1) % 6]).collect();
        let (graph, tree) = shared_tree_bound(&und, &[0, 1, 2, 3, 4, 5]);
        assert_eq!(graph, 3.0);
        assert_eq!(tree, 4.0);
    }
}
