//! HyParView and Plumtree on one simulated network: the engine runs the
//! `hyparview::Node`s (wrapped in [`Member`], which reports their PeerUp /
//! PeerDown), and [`Overlay`] runs one `plumtree::Plumtree` per node beside
//! it on the same virtual clock. Plumtree's NeighborUp/NeighborDown are the
//! node's own PeerUp/PeerDown, fed at the instant HyParView output them.
//!
//! Plumtree messages use the engine's latency model (uniform between the
//! same bounds), FIFO per directed pair like a TCP connection, and are lost
//! when the receiver is dead (a write to a killed peer). The engine itself
//! is unchanged: its queue carries HyParView messages only, so the other
//! scenarios run exactly as before.

use crate::engine::{mix64, NetConfig, Protocol, Sim};
use crate::id::{Input, Node, Output, Peer, SimId};
use hyparview::{Config, Millis};
use plumtree::{Message, Plumtree, Timer};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::rc::Rc;

/// A change of some node's active view, as HyParView reported it.
struct ViewChange {
    at: Millis,
    node: u32,
    peer: Peer,
    up: Change,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Change {
    Up,
    Down,
}

type ViewLog = Rc<RefCell<Vec<ViewChange>>>;

/// A `hyparview::Node` that also logs its PeerUp/PeerDown outputs for the
/// Plumtree beside it (the composite node of this scenario).
pub struct Member {
    node: Node,
    index: u32,
    now: Millis,
    log: ViewLog,
}

impl Protocol for Member {
    fn handle(&mut self, now: Millis, input: Input) {
        self.now = now;
        self.node.handle(now, input)
    }
    fn poll_output(&mut self) -> Option<Output> {
        let out = self.node.poll_output()?;
        let change = match &out {
            Output::PeerUp(p) => Some((p, Change::Up)),
            Output::PeerDown(p) => Some((p, Change::Down)),
            _ => None,
        };
        if let Some((peer, up)) = change {
            self.log.borrow_mut().push(ViewChange {
                at: self.now,
                node: self.index,
                peer: peer.clone(),
                up,
            });
        }
        Some(out)
    }
    fn active_view(&self) -> Vec<&Peer> {
        self.node.active_view()
    }
    fn passive_view(&self) -> Vec<&Peer> {
        self.node.passive_view()
    }
    fn is_active(&self, id: &SimId) -> bool {
        self.node.is_active(id)
    }
}

/// What a delivery told the measurement.
pub struct Delivery {
    pub node: u32,
    pub origin: u32,
    pub seq: u64,
    pub hops: u32,
    pub at: Millis,
}

enum Event {
    Message {
        to: u32,
        from: u32,
        message: Message<u32>,
    },
    Timer {
        node: u32,
        timer: Timer<u32>,
    },
}

/// The engine's HyParView simulation with a Plumtree per node.
pub struct Overlay {
    pub sim: Sim<Member>,
    pub trees: Vec<Plumtree<u32>>,
    log: ViewLog,
    config: plumtree::Config,
    seed: u64,
    queue: BinaryHeap<Reverse<(Millis, u64)>>,
    events: HashMap<u64, Event>,
    next_event: u64,
    /// Arrival of the last message on each directed pair (FIFO).
    last_arrival: HashMap<(u32, u32), Millis>,
    rng: SmallRng,
    latency: (Millis, Millis),
    /// Deliveries since the measurement last took them.
    pub deliveries: Vec<Delivery>,
    pub gap_skipped: u64,
}

impl Overlay {
    pub fn new(seed: u64, config: Config, mut net: NetConfig, pt: plumtree::Config) -> Overlay {
        config.validate().expect("simulator config must be valid");
        pt.validate().expect("plumtree config must be valid");
        // As `Sim::new` does for plain nodes.
        net.request_hold = config.neighbor_timeout.max(net.idle_timeout);
        let latency = (net.latency_min, net.latency_max);
        let log: ViewLog = Rc::default();
        let shared = log.clone();
        let mut next = 0u32;
        let sim = Sim::with_factory(
            seed,
            net,
            Box::new(move |peer, node_seed| {
                let index = next;
                next += 1;
                Member {
                    node: Node::new(peer, config.clone(), node_seed).expect("validated above"),
                    index,
                    now: 0,
                    log: shared.clone(),
                }
            }),
        );
        Overlay {
            sim,
            trees: Vec::new(),
            log,
            config: pt,
            seed,
            queue: BinaryHeap::new(),
            events: HashMap::new(),
            next_event: 0,
            last_arrival: HashMap::new(),
            rng: SmallRng::seed_from_u64(mix64(seed ^ 0x9107_7AEE)),
            latency,
            deliveries: Vec::new(),
            gap_skipped: 0,
        }
    }

    /// Creates a node and its Plumtree (not yet started).
    pub fn create_node(&mut self) -> u32 {
        let i = self.sim.create_node();
        debug_assert_eq!(i as usize, self.trees.len());
        let seed = mix64(self.seed ^ mix64(u64::from(i) ^ 0x7EE5));
        let tree = Plumtree::new(i, 1, self.config.clone(), seed).expect("validated in new");
        self.trees.push(tree);
        i
    }

    pub fn now(&self) -> Millis {
        self.sim.now
    }

    /// Broadcasts `payload` from `origin` now; returns its sequence number.
    pub fn broadcast(&mut self, origin: u32, payload: &[u8]) -> u64 {
        let now = self.sim.now;
        let id = self.trees[origin as usize]
            .broadcast(now, plumtree::Bytes::copy_from_slice(payload))
            .expect("payload within max_broadcast_size");
        self.flush(origin, now);
        id.seq
    }

    /// Runs both protocols up to and including `t`, in time order.
    pub fn run_until(&mut self, t: Millis) {
        loop {
            let next = match self.queue.peek() {
                Some(Reverse((at, _))) if *at <= t => *at,
                _ => {
                    self.sim.run_until(t);
                    self.apply_view_changes();
                    return;
                }
            };
            self.sim.run_until(next);
            self.apply_view_changes();
            let Some(Reverse((at, key))) = self.queue.pop() else {
                continue;
            };
            let event = self.events.remove(&key).expect("queued events are stored");
            self.dispatch(at, event);
        }
    }

    fn apply_view_changes(&mut self) {
        let changes = std::mem::take(&mut *self.log.borrow_mut());
        for c in changes {
            if !self.sim.is_alive(c.node) {
                continue;
            }
            let Some(peer) = self.sim.lookup(&c.peer) else {
                continue;
            };
            let input = match c.up {
                Change::Up => plumtree::Input::NeighborUp(peer),
                Change::Down => plumtree::Input::NeighborDown(peer),
            };
            self.trees[c.node as usize].handle(c.at, input);
            self.flush(c.node, c.at);
        }
    }

    fn dispatch(&mut self, at: Millis, event: Event) {
        let (node, input) = match event {
            Event::Message { to, from, message } => {
                (to, plumtree::Input::Message { from, message })
            }
            Event::Timer { node, timer } => (node, plumtree::Input::Timer(timer)),
        };
        if !self.sim.is_alive(node) {
            return; // a write to a killed peer, or a dead node's timer
        }
        self.trees[node as usize].handle(at, input);
        self.flush(node, at);
    }

    fn push(&mut self, at: Millis, event: Event) {
        let key = self.next_event;
        self.next_event += 1;
        self.events.insert(key, event);
        self.queue.push(Reverse((at, key)));
    }

    fn flush(&mut self, node: u32, now: Millis) {
        while let Some(out) = self.trees[node as usize].poll_output() {
            match out {
                plumtree::Output::Send { to, message } => {
                    let latency = self.rng.gen_range(self.latency.0..=self.latency.1);
                    let last = self.last_arrival.entry((node, to)).or_insert(0);
                    let at = (now + latency).max(*last);
                    *last = at;
                    self.push(
                        at,
                        Event::Message {
                            to,
                            from: node,
                            message,
                        },
                    );
                }
                plumtree::Output::Deliver {
                    origin, seq, hops, ..
                } => self.deliveries.push(Delivery {
                    node,
                    origin,
                    seq,
                    hops,
                    at: now,
                }),
                plumtree::Output::SetTimer { after, timer } => {
                    self.push(now + after, Event::Timer { node, timer })
                }
                plumtree::Output::Event(plumtree::Event::GapSkipped { count, .. }) => {
                    self.gap_skipped += count
                }
                plumtree::Output::Event(_) => {}
            }
        }
    }
}
