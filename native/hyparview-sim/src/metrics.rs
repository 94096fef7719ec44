//! Graph metrics over the live nodes' active views. Everything works on a
//! compact directed graph (`adj[u]` = u's active view, live nodes only,
//! indices 0..n) so it can be unit-tested on hand-made graphs.

use serde::Serialize;
use std::collections::VecDeque;

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct MinMeanMax {
    pub min: usize,
    pub mean: f64,
    pub max: usize,
}

pub fn min_mean_max(values: impl IntoIterator<Item = usize>) -> MinMeanMax {
    let (mut min, mut max, mut sum, mut n) = (usize::MAX, 0usize, 0usize, 0usize);
    for v in values {
        min = min.min(v);
        max = max.max(v);
        sum += v;
        n += 1;
    }
    if n == 0 {
        return MinMeanMax::default();
    }
    MinMeanMax {
        min,
        mean: sum as f64 / n as f64,
        max,
    }
}

/// Undirected, deduplicated, sorted neighbour lists of a directed graph.
pub fn undirected(adj: &[Vec<u32>]) -> Vec<Vec<u32>> {
    let mut und: Vec<Vec<u32>> = vec![Vec::new(); adj.len()];
    for (u, vs) in adj.iter().enumerate() {
        for &v in vs {
            if v as usize != u {
                und[u].push(v);
                und[v as usize].push(u as u32);
            }
        }
    }
    for l in und.iter_mut() {
        l.sort_unstable();
        l.dedup();
    }
    und
}

/// Connected components, edges taken as undirected.
pub fn components(und: &[Vec<u32>]) -> usize {
    let mut seen = vec![false; und.len()];
    let mut count = 0;
    let mut stack = Vec::new();
    for s in 0..und.len() {
        if seen[s] {
            continue;
        }
        count += 1;
        seen[s] = true;
        stack.push(s as u32);
        while let Some(u) = stack.pop() {
            for &v in &und[u as usize] {
                if !seen[v as usize] {
                    seen[v as usize] = true;
                    stack.push(v);
                }
            }
        }
    }
    count
}

/// Connected components of a directed graph with its edges taken as
/// undirected (the same count as `components(&undirected(adj))`), by
/// union-find: no undirected copy is built.
pub fn weak_components(adj: &[Vec<u32>]) -> usize {
    let mut parent: Vec<u32> = (0..adj.len() as u32).collect();
    fn root(parent: &mut [u32], mut x: u32) -> u32 {
        while parent[x as usize] != x {
            let up = parent[parent[x as usize] as usize];
            parent[x as usize] = up;
            x = up;
        }
        x
    }
    let mut count = adj.len();
    for (u, vs) in adj.iter().enumerate() {
        for &v in vs {
            let (a, b) = (root(&mut parent, u as u32), root(&mut parent, v));
            if a != b {
                parent[a as usize] = b;
                count -= 1;
            }
        }
    }
    count
}

/// Ordered pairs (a, b) with b in a's view but a not in b's.
pub fn asymmetric_links(adj: &[Vec<u32>]) -> usize {
    adj.iter()
        .enumerate()
        .map(|(a, vs)| {
            vs.iter()
                .filter(|&&b| !adj[b as usize].contains(&(a as u32)))
                .count()
        })
        .sum()
}

/// Mean local clustering coefficient over all nodes of the undirected graph
/// (nodes with fewer than two neighbours count as 0, as in Watts–Strogatz).
pub fn clustering_coefficient(und: &[Vec<u32>]) -> f64 {
    if und.is_empty() {
        return 0.0;
    }
    let mut mark = vec![false; und.len()];
    let mut total = 0.0;
    for nb in und {
        let k = nb.len();
        if k < 2 {
            continue;
        }
        for &v in nb {
            mark[v as usize] = true;
        }
        let mut links = 0usize;
        for &v in nb {
            links += und[v as usize]
                .iter()
                .filter(|&&w| mark[w as usize])
                .count();
        }
        for &v in nb {
            mark[v as usize] = false;
        }
        // Each link among neighbours was counted from both ends.
        total += (links / 2) as f64 / (k * (k - 1) / 2) as f64;
    }
    total / und.len() as f64
}

/// Mean hop distance over reachable (source, target) pairs, BFS from each
/// source. Returns (mean, max distance seen).
pub fn avg_shortest_path(und: &[Vec<u32>], sources: &[u32]) -> (Option<f64>, u32) {
    let mut dist = vec![u32::MAX; und.len()];
    let (mut sum, mut pairs, mut max) = (0u64, 0u64, 0u32);
    let mut queue = VecDeque::new();
    for &s in sources {
        dist.iter_mut().for_each(|d| *d = u32::MAX);
        dist[s as usize] = 0;
        queue.push_back(s);
        while let Some(u) = queue.pop_front() {
            let d = dist[u as usize] + 1;
            for &v in &und[u as usize] {
                if dist[v as usize] == u32::MAX {
                    dist[v as usize] = d;
                    sum += d as u64;
                    pairs += 1;
                    max = max.max(d);
                    queue.push_back(v);
                }
            }
        }
    }
    if pairs == 0 {
        (None, 0)
    } else {
        (Some(sum as f64 / pairs as f64), max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(n: u32) -> Vec<Vec<u32>> {
        (0..n).map(|i| vec![(i + 1) % n, (i + n - 1) % n]).collect()
    }

    #[test]
    fn components_of_two_triangles_and_a_singleton() {
        let adj = vec![
            vec![1],
            vec![2],
            vec![0],
            vec![4, 5],
            vec![],
            vec![],
            vec![],
        ];
        let und = undirected(&adj);
        assert_eq!(components(&und), 3);
        assert_eq!(asymmetric_links(&adj), 5);
    }

    #[test]
    fn weak_components_count_what_the_undirected_graph_has() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(3);
        for _ in 0..200 {
            let n = rng.gen_range(1..40u32);
            let adj: Vec<Vec<u32>> = (0..n)
                .map(|_| {
                    (0..rng.gen_range(0..3))
                        .map(|_| rng.gen_range(0..n))
                        .collect()
                })
                .collect();
            assert_eq!(
                weak_components(&adj),
                components(&undirected(&adj)),
                "{adj:?}"
            );
        }
    }

    #[test]
    fn symmetric_ring() {
        let adj = ring(10);
        let und = undirected(&adj);
        assert_eq!(components(&und), 1);
        assert_eq!(asymmetric_links(&adj), 0);
        assert_eq!(clustering_coefficient(&und), 0.0);
        // Ring of 10: distances from one node 1,1,2,2,3,3,4,4,5 → 25/9.
        let (m, max) = avg_shortest_path(&und, &[0]);
        assert!((m.unwrap() - 25.0 / 9.0).abs() < 1e-12);
        assert_eq!(max, 5);
        let all: Vec<u32> = (0..10).collect();
        assert!((avg_shortest_path(&und, &all).0.unwrap() - 25.0 / 9.0).abs() < 1e-12);
    }

    #[test]
    fn clique_clustering_is_one() {
        let n = 6u32;
        let adj: Vec<Vec<u32>> = (0..n)
            .map(|i| (0..n).filter(|&j| j != i).collect())
            .collect();
        let und = undirected(&adj);
        assert!((clustering_coefficient(&und) - 1.0).abs() < 1e-12);
        assert_eq!(avg_shortest_path(&und, &[0, 3]).0, Some(1.0));
    }

    #[test]
    fn star_with_one_chord() {
        // Centre 0 with leaves 1..=4, plus chord 1-2: C(0)=1/6, C(1)=C(2)=1.
        let adj = vec![vec![1, 2, 3, 4], vec![0, 2], vec![0, 1], vec![0], vec![0]];
        let und = undirected(&adj);
        let expected = (1.0 / 6.0 + 1.0 + 1.0) / 5.0;
        assert!((clustering_coefficient(&und) - expected).abs() < 1e-12);
    }

    #[test]
    fn min_mean_max_works() {
        let m = min_mean_max([3, 5, 4]);
        assert_eq!((m.min, m.max), (3, 5));
        assert!((m.mean - 4.0).abs() < 1e-12);
        assert_eq!(min_mean_max(Vec::<usize>::new()), MinMeanMax::default());
    }
}
