//! Discrete-event engine: N `hyparview::Node`s on one virtual clock, each
//! with the production connection policy (`hyparview_link::Links`) over a
//! model of the TCP network, so the protocol sees the inputs it would see in
//! production. The engine only moves events; what is measured lives in
//! `metrics` and the scenarios.
//!
//! Network model (what `hyparview_link` does not decide; see `net.rs`):
//! - a write on an open connection is delivered after a random latency,
//!   FIFO per connection (TCP keeps order within a connection);
//! - a dial to a live, reachable peer opens both ends at once, and the
//!   first message arrives after five one-way latencies (TCP connect,
//!   Hello/Auth handshake, the message); the accepting end drops any older
//!   connection to the dialer, which the dialer had already closed. A dial
//!   to a dead or unreachable peer fails after the connect timeout;
//! - a broken connection (peer killed, or cut by a partition) silently drops
//!   writes until the break is noticed: after one latency for a killed peer
//!   (RST), after the failure timeout for a partition (heartbeats);
//! - a graceful close removes the local end at once; the remote end reads
//!   the EOF once the messages sent before have arrived.

mod counters;
mod ends;
mod net;
mod prefetch;
mod queue;
#[cfg(test)]
mod tests;
mod trace;

pub use counters::Counters;
pub use net::NetConfig;

use crate::id::{Input, Message, Node, Output, Peer, SimId};
use ends::{End, Ends};
use hyparview::{Config, Millis, Timer};
use hyparview_link::{LinkConfig, Links};
use prefetch::Target;
use queue::EventQueue;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::VecDeque;

/// What the engine needs from a participant: `hyparview::Node` in real
/// runs; a scripted stand-in in the engine's own tests.
pub trait Protocol {
    fn handle(&mut self, now: Millis, input: Input);
    fn poll_output(&mut self) -> Option<Output>;
    /// `handle`, then every pending output appended to `out`.
    fn handle_into(&mut self, now: Millis, input: Input, out: &mut VecDeque<Output>) {
        self.handle(now, input);
        while let Some(o) = self.poll_output() {
            out.push_back(o);
        }
    }
    fn active_view(&self) -> Vec<&Peer>;
    /// Calls `f` on each active peer (the hot path's `active_view`).
    fn for_each_active(&self, f: &mut dyn FnMut(&Peer)) {
        self.active_view().into_iter().for_each(f)
    }
    fn passive_view(&self) -> Vec<&Peer>;
    /// Addresses the next input will likely read (a prefetch hint).
    /// (Generic, not `dyn`: it runs before every event, and the indirect
    /// call and its closure cost more than the prefetches.)
    fn for_each_hot_address(&self, _f: impl FnMut(*const u8)) {}
    fn is_active(&self, id: &SimId) -> bool;
}

impl Protocol for Node {
    fn handle(&mut self, now: Millis, input: Input) {
        Node::handle(self, now, input)
    }
    fn poll_output(&mut self) -> Option<Output> {
        Node::poll_output(self)
    }
    fn handle_into(&mut self, now: Millis, input: Input, out: &mut VecDeque<Output>) {
        Node::handle_into(self, now, input, out)
    }
    fn active_view(&self) -> Vec<&Peer> {
        Node::active_view(self)
    }
    fn for_each_active(&self, f: &mut dyn FnMut(&Peer)) {
        self.active_peers().for_each(f)
    }
    fn for_each_hot_address(&self, f: impl FnMut(*const u8)) {
        self.hot_addresses().into_iter().for_each(f)
    }
    fn passive_view(&self) -> Vec<&Peer> {
        Node::passive_view(self)
    }
    fn is_active(&self, id: &SimId) -> bool {
        Node::is_active(self, id)
    }
}

/// Builds the participant for (identity, per-node seed).
pub type Factory<P> = Box<dyn FnMut(Peer, u64) -> P>;

/// A connection handle (unique over the run).
type ConnId = u32;

/// One simulated participant. `repr(C)`: the fields every event reads
/// (liveness, the orphan flag, the connection tables' headers) share the
/// first cache line instead of trailing the protocol state.
#[repr(C)]
pub struct SimNode<P = Node> {
    /// Started and not killed/left.
    pub alive: bool,
    /// Has been started (a scheduled join has not yet).
    pub started: bool,
    pub group: u8,
    /// Something happened that can leave an active peer without a
    /// connection (a peer came up, a connection or dial went away).
    orphan_check: bool,
    pub peer_ups: u32,
    pub peer_downs: u32,
    /// The network side of each current connection (the same set as the
    /// current connections in `links`).
    wires: Vec<Wire>,
    /// The connection policy, keyed by node index.
    links: Links<u32, ConnId, SimId>,
    /// The contacts it joined through.
    pub contacts: Vec<u32>,
    pub peer: Peer,
    pub node: P,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WireState {
    Open,
    /// The connection is dead but its owner has not noticed yet.
    Broken,
}

/// One end of a connection, as the network sees it.
#[derive(Clone, Copy, Debug)]
struct Wire {
    conn: ConnId,
    peer: u32,
    /// Which end of `conn` this is (its bit in `Sim::ends`).
    end: End,
    state: WireState,
    /// An idle check is scheduled for it.
    idle_check: IdleCheck,
    /// Arrival time of the last message written on it (FIFO order).
    last_arrival: Millis,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IdleCheck {
    Scheduled,
    None,
}

enum EventKind {
    Deliver {
        to: u32,
        from: u32,
        message: Message,
    },
    Timer {
        node: u32,
        timer: Timer,
    },
    DialFailed {
        node: u32,
        peer: u32,
    },
    /// `node` notices that its connection `conn` to `peer` broke, or reads
    /// the EOF of a close by the remote end.
    Gone {
        node: u32,
        peer: u32,
        conn: ConnId,
        end: End,
    },
    IdleCheck {
        node: u32,
        peer: u32,
        conn: ConnId,
        end: End,
    },
    Join {
        node: u32,
        contacts: Vec<u32>,
    },
}

impl EventKind {
    /// Where the event lands (see `prefetch.rs`).
    fn target(&self) -> Target {
        let end = match *self {
            EventKind::Gone { conn, end, .. } | EventKind::IdleCheck { conn, end, .. } => {
                Some((conn, end))
            }
            _ => None,
        };
        Target {
            node: self.node(),
            end,
        }
    }

    /// The node the event happens at.
    fn node(&self) -> u32 {
        match *self {
            EventKind::Deliver { to, .. } => to,
            EventKind::Timer { node, .. }
            | EventKind::DialFailed { node, .. }
            | EventKind::Gone { node, .. }
            | EventKind::IdleCheck { node, .. }
            | EventKind::Join { node, .. } => node,
        }
    }
}

/// A queued event's payload, one cache line each: unaligned, 56-byte
/// payloads mostly straddled two lines, and the loop prefetches one.
#[repr(align(64))]
struct Payload(Option<EventKind>);

pub struct Sim<P: Protocol = Node> {
    pub now: Millis,
    pub nodes: Vec<SimNode<P>>,
    /// `peers[i]` is node `i`'s identity; kept apart from `nodes` so the
    /// hot path reads a small dense array.
    peers: Vec<Peer>,
    factory: Factory<P>,
    /// Slots of `payloads`, each tagged with where its event happens
    /// (read ahead of the payload, to prefetch that node).
    events: EventQueue<Target>,
    payloads: Vec<Payload>,
    /// Outputs of the input being applied: one buffer for every node, so
    /// no node keeps (or reallocates) its own.
    outputs: VecDeque<Output>,
    /// Scratch for the orphan check.
    active_buf: Vec<u32>,
    lost_buf: Vec<u32>,
    free_slots: Vec<u32>,
    next_conn: ConnId,
    /// The connection ends the nodes hold (mirrors their `wires`).
    ends: Ends,
    rng: SmallRng,
    seed: u64,
    net: NetConfig,
    link: LinkConfig,
    partitioned: bool,
    pub counters: Counters,
    pub events_processed: u64,
    /// Diagnosis: print every event between these two nodes to stderr.
    pub trace_pair: Option<(u32, u32)>,
}

/// SplitMix64 finaliser: decorrelates per-node seeds from the sim seed.
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Identity of simulated node `i` (its handle; no address: see `id.rs`).
pub fn peer_of(i: u32) -> Peer {
    Peer {
        id: SimId::of(i),
        addr: (),
        incarnation: 1,
    }
}

impl Sim<Node> {
    /// Simulator of `hyparview::Node`s; `config` must be valid.
    pub fn new(seed: u64, config: Config, mut net: NetConfig) -> Sim<Node> {
        config.validate().expect("simulator config must be valid");
        net.request_hold = config.neighbor_timeout.max(net.idle_timeout);
        // One copy for all nodes: read from cache instead of from each
        // node's own lines.
        let config = std::sync::Arc::new(config);
        Sim::with_factory(
            seed,
            net,
            Box::new(move |peer, node_seed| {
                Node::shared(peer, config.clone(), node_seed).expect("validated above")
            }),
        )
    }
}

impl<P: Protocol> Sim<P> {
    pub fn with_factory(seed: u64, net: NetConfig, factory: Factory<P>) -> Sim<P> {
        assert!(
            net.latency_min <= net.latency_max,
            "latency_min > latency_max"
        );
        let link = LinkConfig {
            idle_timeout: net.idle_timeout,
            request_hold: net.request_hold,
            // The model has no handshake race (no SUPERSEDED), so this is
            // never used; the transport's value.
            replacement_grace: net.connect_timeout,
        };
        Sim {
            now: 0,
            factory,
            nodes: Vec::new(),
            peers: Vec::new(),
            events: EventQueue::new(),
            payloads: Vec::new(),
            outputs: VecDeque::new(),
            active_buf: Vec::new(),
            lost_buf: Vec::new(),
            free_slots: Vec::new(),
            next_conn: 0,
            ends: Ends::default(),
            // The sim's own stream is separate from every node's stream.
            rng: SmallRng::seed_from_u64(mix64(seed ^ 0x5EED_0F51_A7A7)),
            seed,
            net,
            link,
            partitioned: false,
            counters: Counters::default(),
            events_processed: 0,
            trace_pair: None,
        }
    }

    pub fn rng(&mut self) -> &mut SmallRng {
        &mut self.rng
    }

    /// Creates a node (not yet started). Returns its index.
    pub fn create_node(&mut self) -> u32 {
        let i = self.nodes.len() as u32;
        let peer = peer_of(i);
        self.peers.push(peer.clone());
        let node_seed = mix64(self.seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ mix64(i as u64));
        let node = (self.factory)(peer.clone(), node_seed);
        self.nodes.push(SimNode {
            node,
            peer,
            alive: false,
            started: false,
            group: 0,
            contacts: Vec::new(),
            // Room for a settled node's connections (its active view and a
            // few exchanges), allocated now, next to the core's peer sets
            // (allocated at creation too), not wherever they would grow.
            links: Links::with_capacity(i, self.link, 8),
            wires: Vec::with_capacity(8),
            orphan_check: false,
            peer_ups: 0,
            peer_downs: 0,
        });
        i
    }

    /// Schedules `node` to start and join through `contacts` at `at`.
    pub fn schedule_join(&mut self, node: u32, contacts: Vec<u32>, at: Millis) {
        self.push(at.max(self.now), EventKind::Join { node, contacts });
    }

    /// Starts `node` now.
    pub fn join_now(&mut self, node: u32, contacts: Vec<u32>) {
        self.start(node, contacts);
    }

    /// Index of the node with `peer`'s id (the handle holds it), if that
    /// node was created.
    pub fn lookup(&self, peer: &Peer) -> Option<u32> {
        let i = peer.id.index();
        (self.peers.get(i as usize)?.id == peer.id).then_some(i)
    }

    pub fn is_alive(&self, i: u32) -> bool {
        self.nodes[i as usize].alive
    }

    pub fn live_nodes(&self) -> Vec<u32> {
        (0..self.nodes.len() as u32)
            .filter(|&i| self.nodes[i as usize].alive)
            .collect()
    }

    pub fn pending_events(&self) -> usize {
        self.events.len
    }

    /// Connections currently held by `i` (open or broken, not dials).
    pub fn connection_count(&self, i: u32) -> usize {
        self.nodes[i as usize].wires.len()
    }

    /// True when `a` can reach `b` (no partition between them).
    pub fn reachable(&self, a: u32, b: u32) -> bool {
        !self.partitioned || self.nodes[a as usize].group == self.nodes[b as usize].group
    }

    fn push(&mut self, time: Millis, kind: EventKind) {
        let target = kind.target();
        let slot = match self.free_slots.pop() {
            Some(slot) => {
                self.payloads[slot as usize] = Payload(Some(kind));
                slot
            }
            None => {
                self.payloads.push(Payload(Some(kind)));
                (self.payloads.len() - 1) as u32
            }
        };
        self.events.push(time, slot, target);
    }

    fn latency(&mut self) -> Millis {
        self.rng
            .gen_range(self.net.latency_min..=self.net.latency_max)
    }

    fn is_active(&self, a: u32, b: u32) -> bool {
        self.nodes[a as usize]
            .node
            .is_active(&self.peers[b as usize].id)
    }

    /// Processes every event up to and including time `t`, then sets now = t.
    pub fn run_until(&mut self, t: Millis) {
        while let Some((time, slot)) = self.events.pop_until(t) {
            let kind = self.payloads[slot as usize]
                .0
                .take()
                .expect("every queued slot holds a payload");
            self.free_slots.push(slot);
            self.prefetch_ahead();
            self.now = time;
            self.events_processed += 1;
            if self.trace_pair.is_some() {
                self.trace_event(&kind);
            }
            self.dispatch(kind);
        }
        self.now = self.now.max(t);
    }

    fn dispatch(&mut self, kind: EventKind) {
        match kind {
            EventKind::Deliver { to, from, message } => self.deliver(to, from, message),
            EventKind::Timer { node, timer } => {
                if self.nodes[node as usize].alive {
                    self.feed(node, Input::Timer(timer));
                }
            }
            EventKind::DialFailed { node, peer } => self.dial_failed(node, peer),
            // An end its node no longer holds: nothing to do, and nothing
            // of the node is read (see `ends.rs`).
            EventKind::Gone {
                node,
                peer,
                conn,
                end,
            } => {
                if self.ends.holds(conn, end) {
                    self.connection_gone(node, peer, conn);
                }
            }
            EventKind::IdleCheck {
                node,
                peer,
                conn,
                end,
            } => {
                if self.ends.holds(conn, end) {
                    self.idle_check(node, peer, conn);
                }
            }
            EventKind::Join { node, contacts } => self.start(node, contacts),
        }
    }

    fn start(&mut self, node: u32, contacts: Vec<u32>) {
        let n = &mut self.nodes[node as usize];
        assert!(!n.started, "node {node} started twice");
        n.started = true;
        n.alive = true;
        let peers = contacts
            .iter()
            .map(|&c| self.peers[c as usize].clone())
            .collect();
        self.nodes[node as usize].contacts = contacts;
        self.feed(node, Input::Join { contacts: peers });
    }

    /// Feeds one input to a live node and applies its outputs.
    pub fn feed(&mut self, i: u32, input: Input) {
        debug_assert!(self.nodes[i as usize].alive);
        let now = self.now;
        // Applying outputs never feeds a node (only the orphan check
        // below does), so the buffer is free again by then.
        let mut outputs = std::mem::take(&mut self.outputs);
        self.nodes[i as usize]
            .node
            .handle_into(now, input, &mut outputs);
        while let Some(out) = outputs.pop_front() {
            self.apply(i, out);
        }
        self.outputs = outputs;
        self.maybe_check_orphans(i);
    }

    /// Applies the outputs `i` has pending (they are produced by `feed`;
    /// exposed for scripted participants in tests).
    pub fn flush(&mut self, i: u32) {
        while let Some(out) = self.nodes[i as usize].node.poll_output() {
            self.apply(i, out);
        }
    }

    fn apply(&mut self, a: u32, out: Output) {
        if self.trace_pair.is_some() {
            let b = match &out {
                Output::Send { to: p, .. }
                | Output::Disconnect { peer: p }
                | Output::PeerUp(p)
                | Output::PeerDown(p) => self.lookup(p),
                Output::SetTimer { .. } => None,
            };
            if let Some(b) = b.filter(|&b| self.traced(a, b)) {
                eprintln!("t={} n{a}/n{b}: n{a} outputs {out:?}", self.now);
            }
        }
        match out {
            Output::Send { to, message } => {
                self.counters.sends += 1;
                self.counters.count_kind(message.kind());
                match self.lookup(&to) {
                    Some(b) if b != a => self.send(a, b, message),
                    // Self or an id no node has: nothing to deliver to.
                    _ => {}
                }
            }
            Output::Disconnect { peer } => {
                if let Some(b) = self.lookup(&peer) {
                    self.disconnect(a, b);
                }
            }
            Output::PeerUp(_) => {
                self.nodes[a as usize].peer_ups += 1;
                self.nodes[a as usize].orphan_check = true;
            }
            Output::PeerDown(peer) => {
                self.nodes[a as usize].peer_downs += 1;
                if let Some(b) = self.lookup(&peer) {
                    self.peer_down(a, b);
                }
            }
            Output::SetTimer { after, timer } => {
                let at = self.now + after;
                self.push(at, EventKind::Timer { node: a, timer });
            }
        }
    }

    /// Active view of `i` as node indices (unknown ids dropped).
    pub fn active_indices(&self, i: u32) -> Vec<u32> {
        self.nodes[i as usize]
            .node
            .active_view()
            .into_iter()
            .filter_map(|p| self.lookup(p))
            .collect()
    }

    pub fn passive_indices(&self, i: u32) -> Vec<u32> {
        self.nodes[i as usize]
            .node
            .passive_view()
            .into_iter()
            .filter_map(|p| self.lookup(p))
            .collect()
    }
}
