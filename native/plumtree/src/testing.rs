//! A deterministic in-crate network for tests: N nodes over a graph with a
//! latency per link (so each direction is FIFO, like a TCP connection),
//! failures reported to neighbours after a detection delay, and an optional
//! filter that loses chosen messages. Everything is driven by one seeded
//! RNG and a time-ordered queue, so a seed replays exactly.

use crate::{Config, Event, Input, Message, MessageId, Millis, Output, Plumtree, Round, Timer};
use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};

pub(crate) type NodeId = u32;

/// Decides whether a message in flight is lost: (from, to, message).
pub(crate) type Filter = Box<dyn FnMut(NodeId, NodeId, &Message<NodeId>) -> bool>;

enum Pending {
    Message {
        from: NodeId,
        to: NodeId,
        message: Message<NodeId>,
    },
    Timer {
        node: NodeId,
        timer: Timer<NodeId>,
    },
    NeighborDown {
        node: NodeId,
        peer: NodeId,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Delivery {
    pub id: MessageId<NodeId>,
    pub hops: Round,
    pub at: Millis,
}

pub(crate) struct Net {
    pub now: Millis,
    nodes: Vec<Option<Plumtree<NodeId>>>,
    /// Latency per undirected link, keyed (low, high).
    links: BTreeMap<(NodeId, NodeId), Millis>,
    queue: BTreeMap<(Millis, u64), Pending>,
    next_seq: u64,
    rng: SmallRng,
    /// Delay between a node's death and its neighbours' NeighborDown.
    pub detect_delay: Millis,
    pub deliveries: Vec<Vec<Delivery>>,
    pub events: Vec<(NodeId, Event<NodeId>)>,
    pub filter: Option<Filter>,
    /// Messages lost by the filter.
    pub lost: u64,
}

fn key(a: NodeId, b: NodeId) -> (NodeId, NodeId) {
    (a.min(b), a.max(b))
}

impl Net {
    /// `n` nodes on a ring plus `chords` random extra links per node, with
    /// link latencies uniform in `latency`.
    pub fn random(
        n: usize,
        chords: usize,
        latency: (Millis, Millis),
        seed: u64,
        config: Config,
    ) -> Net {
        let mut net = Net::empty(n, seed, config);
        let mut edges = BTreeSet::new();
        for i in 0..n as NodeId {
            if n > 1 {
                edges.insert(key(i, (i + 1) % n as NodeId));
            }
        }
        for i in 0..n as NodeId {
            for _ in 0..chords {
                let j = net.rng.gen_range(0..n as NodeId);
                if j != i {
                    edges.insert(key(i, j));
                }
            }
        }
        edges.remove(&(0, 0));
        for (a, b) in edges {
            let l = net.rng.gen_range(latency.0..=latency.1);
            net.connect(a, b, l);
        }
        net
    }

    pub fn empty(n: usize, seed: u64, config: Config) -> Net {
        Net {
            now: 0,
            nodes: (0..n as NodeId)
                .map(|i| {
                    Some(
                        Plumtree::new(i, 1, config.clone(), seed ^ u64::from(i))
                            .expect("valid config"),
                    )
                })
                .collect(),
            links: BTreeMap::new(),
            queue: BTreeMap::new(),
            next_seq: 0,
            rng: SmallRng::seed_from_u64(seed),
            detect_delay: 100,
            deliveries: vec![Vec::new(); n],
            events: Vec::new(),
            filter: None,
            lost: 0,
        }
    }

    pub fn connect(&mut self, a: NodeId, b: NodeId, latency: Millis) {
        if a == b || !self.alive(a) || !self.alive(b) {
            return;
        }
        self.links.insert(key(a, b), latency.max(1));
        self.feed(a, Input::NeighborUp(b));
        self.feed(b, Input::NeighborUp(a));
    }

    pub fn alive(&self, node: NodeId) -> bool {
        self.nodes.get(node as usize).is_some_and(Option::is_some)
    }

    pub fn live_nodes(&self) -> Vec<NodeId> {
        (0..self.nodes.len() as NodeId)
            .filter(|&i| self.alive(i))
            .collect()
    }

    pub fn node(&self, node: NodeId) -> &Plumtree<NodeId> {
        self.nodes[node as usize].as_ref().expect("live node")
    }

    pub fn broadcast(&mut self, origin: NodeId, payload: &[u8]) -> MessageId<NodeId> {
        let now = self.now;
        let plumtree = self.nodes[origin as usize].as_mut().expect("live node");
        let id = plumtree
            .broadcast(now, Bytes::copy_from_slice(payload))
            .expect("payload fits");
        self.drain(origin);
        id
    }

    /// Crash `node`: its links vanish (in-flight messages on them are lost)
    /// and each neighbour gets NeighborDown after `detect_delay`.
    pub fn kill(&mut self, node: NodeId) {
        self.nodes[node as usize] = None;
        let gone: Vec<(NodeId, NodeId)> = self
            .links
            .keys()
            .filter(|(a, b)| *a == node || *b == node)
            .cloned()
            .collect();
        for link in gone {
            self.links.remove(&link);
            let peer = if link.0 == node { link.1 } else { link.0 };
            self.schedule(
                self.detect_delay,
                Pending::NeighborDown {
                    node: peer,
                    peer: node,
                },
            );
        }
    }

    /// Process everything due up to `now + duration`.
    pub fn run_for(&mut self, duration: Millis) {
        let end = self.now + duration;
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > end {
                break;
            }
            let ((at, _), pending) = entry.remove_entry();
            self.now = at;
            match pending {
                Pending::Message { from, to, message } => {
                    if self.links.contains_key(&key(from, to)) {
                        self.feed(to, Input::Message { from, message });
                    }
                }
                Pending::Timer { node, timer } => self.feed(node, Input::Timer(timer)),
                Pending::NeighborDown { node, peer } => self.feed(node, Input::NeighborDown(peer)),
            }
        }
        self.now = end;
    }

    pub fn feed(&mut self, node: NodeId, input: Input<NodeId>) {
        let now = self.now;
        let Some(plumtree) = self.nodes[node as usize].as_mut() else {
            return;
        };
        plumtree.handle(now, input);
        self.drain(node);
    }

    fn drain(&mut self, node: NodeId) {
        while let Some(output) = self.nodes[node as usize]
            .as_mut()
            .and_then(Plumtree::poll_output)
        {
            match output {
                Output::Send { to, message } => {
                    let Some(&latency) = self.links.get(&key(node, to)) else {
                        continue;
                    };
                    if let Some(filter) = self.filter.as_mut() {
                        if filter(node, to, &message) {
                            self.lost += 1;
                            continue;
                        }
                    }
                    self.schedule(
                        latency,
                        Pending::Message {
                            from: node,
                            to,
                            message,
                        },
                    );
                }
                Output::Deliver {
                    origin,
                    incarnation,
                    seq,
                    hops,
                    ..
                } => self.deliveries[node as usize].push(Delivery {
                    id: MessageId {
                        origin,
                        incarnation,
                        seq,
                    },
                    hops,
                    at: self.now,
                }),
                Output::SetTimer { after, timer } => {
                    self.schedule(after, Pending::Timer { node, timer })
                }
                Output::Event(event) => self.events.push((node, event)),
            }
        }
    }

    fn schedule(&mut self, after: Millis, pending: Pending) {
        self.next_seq += 1;
        self.queue
            .insert((self.now + after, self.next_seq), pending);
    }

    /// Sum of a counter over live nodes.
    pub fn total(&self, counter: impl Fn(&crate::Stats) -> u64) -> u64 {
        self.nodes
            .iter()
            .flatten()
            .map(|n| counter(n.stats()))
            .sum()
    }

    /// Panics unless every live node except the origin delivered each of
    /// `ids` exactly once, and each origin's seqs in increasing order.
    pub fn assert_exactly_once_in_order(&self, ids: &[MessageId<NodeId>]) {
        for node in self.live_nodes() {
            let got = &self.deliveries[node as usize];
            let mut last: BTreeMap<NodeId, u64> = BTreeMap::new();
            for d in got {
                if let Some(prev) = last.insert(d.id.origin, d.id.seq) {
                    assert!(d.id.seq > prev, "node {node}: {:?} after seq {prev}", d.id);
                }
            }
            for id in ids.iter().filter(|id| id.origin != node) {
                let n = got.iter().filter(|d| d.id == *id).count();
                assert_eq!(n, 1, "node {node} delivered {id:?} {n} times");
            }
        }
    }

    /// Panics if a live node delivered a message twice or an origin's seqs
    /// out of order.
    pub fn assert_at_most_once_in_order(&self) {
        for node in self.live_nodes() {
            let mut last: BTreeMap<NodeId, u64> = BTreeMap::new();
            for d in &self.deliveries[node as usize] {
                if let Some(prev) = last.insert(d.id.origin, d.id.seq) {
                    assert!(d.id.seq > prev, "node {node}: {:?} after seq {prev}", d.id);
                }
            }
        }
    }

    /// Relative message redundancy over `messages` broadcasts reaching all
    /// `nodes` live nodes: payload receptions / (messages × (nodes - 1)) - 1.
    pub fn rmr(gossip_received: u64, messages: u64, nodes: u64) -> f64 {
        gossip_received as f64 / (messages * (nodes - 1)) as f64 - 1.0
    }
}

impl Net {
    /// Live neighbours of every live node (one pass over the links).
    pub fn adjacency(&self) -> BTreeMap<NodeId, Vec<NodeId>> {
        let mut adjacency: BTreeMap<NodeId, Vec<NodeId>> = self
            .live_nodes()
            .into_iter()
            .map(|n| (n, Vec::new()))
            .collect();
        for &(a, b) in self.links.keys() {
            adjacency.entry(a).or_default().push(b);
            adjacency.entry(b).or_default().push(a);
        }
        adjacency
    }

    /// Live neighbours of `node`.
    pub fn neighbors(&self, node: NodeId) -> Vec<NodeId> {
        self.links
            .keys()
            .filter_map(|&(a, b)| match (a == node, b == node) {
                (true, _) => Some(b),
                (_, true) => Some(a),
                _ => None,
            })
            .collect()
    }
}
