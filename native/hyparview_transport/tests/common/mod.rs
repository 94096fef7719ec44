//! Helpers shared by the integration tests: in-process servers on loopback
//! with ephemeral ports and fast timings, and condition waits with deadlines.
#![allow(dead_code)]

use hyparview::{Config, Peer};
use hyparview_transport::{Event, Server, ServerOptions, Snapshot, TransportConfig};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const SECRET: &[u8] = b"test-secret";

pub fn protocol() -> Config {
    Config {
        active_view_size: 4,
        passive_view_size: 12,
        arwl: 4,
        prwl: 2,
        shuffle_active_count: 2,
        shuffle_passive_count: 3,
        shuffle_interval: 200,
        shuffle_ttl: 4,
        neighbor_timeout: 500,
        rejoin_backoff_min: 100,
        rejoin_backoff_max: 1000,
        promotion_interval: 1000,
    }
}

pub fn transport() -> TransportConfig {
    TransportConfig {
        heartbeat_interval: 100,
        failure_timeout: 500,
        connect_timeout: 500,
        handshake_timeout: 500,
        ..TransportConfig::default()
    }
}

pub fn options(name: &str, contacts: Vec<Peer>) -> ServerOptions {
    let mut o = ServerOptions::new(
        format!("{name}@127.0.0.1"),
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1".parse().unwrap(),
        SECRET,
    );
    o.contacts = contacts;
    o.runtime_threads = 2;
    o.protocol = protocol();
    o.transport = transport();
    o.seed = name
        .bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
    o
}

/// A server plus the events its sink received.
pub struct TestNode {
    pub server: Option<Server>,
    pub id: String,
    pub peer: Peer,
    events: Receiver<Event>,
    seen: VecDeque<Event>,
}

impl TestNode {
    pub fn start(opts: ServerOptions) -> TestNode {
        let (tx, rx) = channel();
        let id = opts.id.clone();
        let server = Server::start(opts, Arc::new(move |ev| tx.send(ev).is_ok())).expect("start");
        let peer = server.local().clone();
        TestNode {
            server: Some(server),
            id,
            peer,
            events: rx,
            seen: VecDeque::new(),
        }
    }

    pub fn server(&self) -> &Server {
        self.server.as_ref().expect("running")
    }

    pub fn snap(&self) -> Arc<Snapshot> {
        self.server().snapshot()
    }

    pub fn addr(&self) -> SocketAddr {
        self.peer.addr
    }

    /// Contact entry for this node as another node's config would name it.
    pub fn contact(&self) -> Peer {
        Peer::new(self.id.clone(), self.peer.addr, 0)
    }

    pub fn active_ids(&self) -> HashSet<String> {
        self.snap()
            .active_view
            .iter()
            .map(|p| p.id.to_string())
            .collect()
    }

    /// Waits for an event matching `pred`; consumes it and the ones before
    /// it that did not match stay available to later waits.
    pub fn wait_event(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&Event) -> bool,
    ) -> Option<Event> {
        if let Some(i) = self.seen.iter().position(&pred) {
            return self.seen.remove(i);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.events.recv_timeout(left) {
                Ok(ev) if pred(&ev) => return Some(ev),
                Ok(ev) => self.seen.push_back(ev),
                Err(_) => return None,
            }
        }
    }

    /// Every event received so far (drains the channel).
    pub fn events(&mut self) -> Vec<Event> {
        while let Ok(ev) = self.events.try_recv() {
            self.seen.push_back(ev);
        }
        self.seen.iter().cloned().collect()
    }

    /// Stops and waits for `Stopped`.
    pub fn stop(&mut self) {
        self.server().stop();
        assert!(
            self.wait_event(Duration::from_secs(5), |e| *e == Event::Stopped)
                .is_some(),
            "{} did not report Stopped",
            self.id
        );
    }
}

/// Polls `cond` every 10 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Starts `n` nodes; node 0 is the seed, node i joins through a random
/// earlier node (deterministic choice).
pub fn start_overlay(prefix: &str, n: usize) -> Vec<TestNode> {
    let mut nodes: Vec<TestNode> = Vec::new();
    for i in 0..n {
        let contacts = if i == 0 {
            vec![]
        } else {
            vec![nodes[(i * 7 + 3) % i].contact()]
        };
        nodes.push(TestNode::start(options(&format!("{prefix}{i}"), contacts)));
    }
    nodes
}

/// Checks the overlay invariants over the running nodes: every active view is
/// non-empty, within bounds, symmetric, names only running nodes, and the
/// active graph is connected. Returns a description of the first violation.
pub fn overlay_problem(nodes: &[&TestNode], max_active: usize) -> Option<String> {
    let views: HashMap<String, HashSet<String>> = nodes
        .iter()
        .map(|n| (n.id.clone(), n.active_ids()))
        .collect();
    for (id, view) in &views {
        if view.is_empty() {
            return Some(format!("{id} has an empty active view"));
        }
        if view.len() > max_active {
            return Some(format!("{id} has {} active peers", view.len()));
        }
        for p in view {
            match views.get(p) {
                None => return Some(format!("{id} holds {p}, which is not running")),
                Some(other) if !other.contains(id) => {
                    return Some(format!("{id} holds {p} but not the reverse"))
                }
                _ => {}
            }
        }
    }
    let start = nodes.first()?.id.clone();
    let mut seen = HashSet::from([start.clone()]);
    let mut stack = vec![start];
    while let Some(x) = stack.pop() {
        for y in &views[&x] {
            if seen.insert(y.clone()) {
                stack.push(y.clone());
            }
        }
    }
    if seen.len() != views.len() {
        return Some(format!(
            "overlay not connected: {} of {} reachable",
            seen.len(),
            views.len()
        ));
    }
    None
}

/// Views and counters of every node, for failure messages.
pub fn dump(nodes: &[&TestNode]) -> String {
    let mut out = String::new();
    for n in nodes {
        let s = n.snap();
        let ids = |v: &[Peer]| {
            v.iter()
                .map(|p| p.id.split('@').next().unwrap_or("").to_string())
                .collect::<Vec<_>>()
        };
        out.push_str(&format!(
            "\n{}: active {:?} passive {:?} conns {} dials {} dial_failures {} failures {} in {:?} out {:?}",
            n.id,
            ids(&s.active_view),
            ids(&s.passive_view),
            s.counters.connections,
            s.counters.dials,
            s.counters.dial_failures,
            s.counters.failures_detected,
            s.counters.messages_in,
            s.counters.messages_out,
        ));
    }
    out
}
