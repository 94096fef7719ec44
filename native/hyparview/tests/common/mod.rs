//! A tiny deterministic network for tests: zero-latency FIFO delivery,
//! virtual time driven by the timers nodes request, dial failures for dead
//! or partitioned peers.
#![allow(dead_code)]

use hyparview::{Config, Input, Message, Node, Output, Peer, Timer};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

pub fn peer(id: &str) -> Peer {
    peer_inc(id, 1)
}

pub fn peer_inc(id: &str, inc: u64) -> Peer {
    let n: u16 = id
        .bytes()
        .fold(0u16, |a, b| a.wrapping_mul(31).wrapping_add(b as u16));
    Peer::new(
        id,
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 1000 + n % 60000),
        inc,
    )
}

pub fn name(i: usize) -> String {
    format!("n{i}")
}

/// Every invariant a node must keep, whatever it was fed.
pub fn check_invariants(node: &Node) {
    let cfg = node.config();
    let me = &node.local().id;
    let active = node.active_view();
    let passive = node.passive_view();
    assert!(active.len() <= cfg.active_view_size, "active too big");
    assert!(passive.len() <= cfg.passive_view_size, "passive too big");
    let mut ids = BTreeSet::new();
    for p in active.iter().chain(passive.iter()) {
        assert_ne!(&p.id, me, "self in a view");
        assert!(
            ids.insert(p.id.to_string()),
            "duplicate or overlap: {}",
            p.id
        );
    }
    for p in node.suspected() {
        assert_ne!(&p.id, me, "self suspected");
        assert!(!node.is_active(&p.id), "suspect also active");
        assert!(!node.is_passive(&p.id), "suspect also passive");
    }
}

pub struct Net {
    pub cfg: Config,
    pub nodes: BTreeMap<String, Node>,
    pub dead: BTreeSet<String>,
    /// Unordered pairs that cannot reach each other.
    pub blocked: BTreeSet<(String, String)>,
    pub now: u64,
    queue: VecDeque<(String, Input)>,
    timers: BTreeMap<(u64, u64), (String, Timer)>,
    seq: u64,
    pub log: Vec<(String, Output)>,
    pub keep_log: bool,
    pub steps: u64,
}

impl Net {
    pub fn new(cfg: Config) -> Net {
        Net {
            cfg,
            nodes: BTreeMap::new(),
            dead: BTreeSet::new(),
            blocked: BTreeSet::new(),
            now: 0,
            queue: VecDeque::new(),
            timers: BTreeMap::new(),
            seq: 0,
            log: Vec::new(),
            keep_log: true,
            steps: 0,
        }
    }

    pub fn add(&mut self, id: &str, inc: u64, seed: u64) {
        let node = Node::new(peer_inc(id, inc), self.cfg.clone(), seed).unwrap();
        self.nodes.insert(id.to_string(), node);
        self.dead.remove(id);
    }

    pub fn input(&mut self, id: &str, input: Input) {
        self.queue.push_back((id.to_string(), input));
        self.drain();
    }

    pub fn join(&mut self, id: &str, contacts: &[&str]) {
        let contacts = contacts
            .iter()
            .map(|c| {
                self.nodes
                    .get(*c)
                    .map(|n| n.local().clone())
                    .unwrap_or_else(|| peer(c))
            })
            .collect();
        self.input(id, Input::Join { contacts });
    }

    fn is_blocked(&self, a: &str, b: &str) -> bool {
        let k = if a < b {
            (a.to_string(), b.to_string())
        } else {
            (b.to_string(), a.to_string())
        };
        self.blocked.contains(&k)
    }

    pub fn block(&mut self, a: &str, b: &str) {
        let k = if a < b {
            (a.to_string(), b.to_string())
        } else {
            (b.to_string(), a.to_string())
        };
        self.blocked.insert(k);
    }

    /// Crash `id`: peers holding it see their connection drop.
    pub fn kill(&mut self, id: &str) {
        self.dead.insert(id.to_string());
        let p = self.nodes[id].local().clone();
        let holders: Vec<String> = self
            .nodes
            .iter()
            .filter(|(k, n)| !self.dead.contains(*k) && n.is_active(id))
            .map(|(k, _)| k.clone())
            .collect();
        for h in holders {
            self.queue
                .push_back((h, Input::ConnectionLost { peer: p.clone() }));
        }
        self.drain();
    }

    /// Split into two groups: cross links drop, cross traffic fails.
    pub fn partition(&mut self, left: &[String], right: &[String]) {
        for a in left {
            for b in right {
                self.block(a, b);
            }
        }
        for a in left.iter().chain(right.iter()) {
            let other: &[String] = if left.contains(a) { right } else { left };
            for b in other {
                if self.nodes[a].is_active(b) {
                    let p = self.nodes[b].local().clone();
                    self.queue
                        .push_back((a.clone(), Input::ConnectionLost { peer: p }));
                }
            }
        }
        self.drain();
    }

    pub fn heal(&mut self) {
        self.blocked.clear();
    }

    fn drain(&mut self) {
        while let Some((id, input)) = self.queue.pop_front() {
            self.steps += 1;
            assert!(self.steps < 50_000_000, "runaway message loop");
            if self.dead.contains(&id) {
                continue;
            }
            let Some(node) = self.nodes.get_mut(&id) else {
                continue;
            };
            node.handle(self.now, input);
            let from = node.local().clone();
            let mut outs = Vec::new();
            while let Some(o) = node.poll_output() {
                outs.push(o);
            }
            check_invariants(node);
            for o in outs {
                match &o {
                    Output::Send { to, message } => {
                        if self.dead.contains(to.id.as_str())
                            || !self.nodes.contains_key(to.id.as_str())
                            || self.is_blocked(&id, &to.id)
                        {
                            self.queue
                                .push_back((id.clone(), Input::DialFailed { peer: to.clone() }));
                        } else {
                            self.queue.push_back((
                                to.id.to_string(),
                                Input::Message {
                                    from: from.clone(),
                                    message: message.clone(),
                                },
                            ));
                        }
                    }
                    Output::SetTimer { after, timer } => {
                        self.seq += 1;
                        self.timers
                            .insert((self.now + after, self.seq), (id.clone(), timer.clone()));
                    }
                    _ => {}
                }
                if self.keep_log {
                    self.log.push((id.clone(), o));
                }
            }
        }
    }

    /// Advance virtual time to `until`, firing timers in order.
    pub fn run_until(&mut self, until: u64) {
        while let Some((&(t, s), _)) = self.timers.iter().next() {
            if t > until {
                break;
            }
            let (id, timer) = self.timers.remove(&(t, s)).unwrap();
            self.now = t;
            self.queue.push_back((id, Input::Timer(timer)));
            self.drain();
        }
        self.now = until;
    }

    pub fn run_for(&mut self, d: u64) {
        let t = self.now + d;
        self.run_until(t);
    }

    pub fn alive(&self) -> Vec<String> {
        self.nodes
            .keys()
            .filter(|k| !self.dead.contains(*k))
            .cloned()
            .collect()
    }

    /// Pairs (a, b) where a holds b active but b does not hold a.
    pub fn asymmetric(&self) -> Vec<(String, String)> {
        let mut v = Vec::new();
        for a in self.alive() {
            for b in self.nodes[&a].active_view() {
                let ok = !self.dead.contains(b.id.as_str())
                    && self
                        .nodes
                        .get(b.id.as_str())
                        .is_some_and(|n| n.is_active(&a));
                if !ok {
                    v.push((a.clone(), b.id.to_string()));
                }
            }
        }
        v
    }

    /// Connected components of the live active-view graph.
    pub fn components(&self) -> usize {
        let alive = self.alive();
        let mut seen = BTreeSet::new();
        let mut comps = 0;
        for s in &alive {
            if seen.contains(s) {
                continue;
            }
            comps += 1;
            let mut stack = vec![s.clone()];
            seen.insert(s.clone());
            while let Some(x) = stack.pop() {
                for p in self.nodes[&x].active_view() {
                    if !self.dead.contains(p.id.as_str()) && seen.insert(p.id.to_string()) {
                        stack.push(p.id.to_string());
                    }
                }
            }
        }
        comps
    }

    pub fn isolated(&self) -> usize {
        self.alive()
            .iter()
            .filter(|a| self.nodes[*a].active_view().is_empty())
            .count()
    }

    pub fn sends_of(&self, id: &str, kind: &str) -> usize {
        self.log
            .iter()
            .filter(|(n, o)| {
                n == id
                    && matches!(o, Output::Send { message, .. } if message.kind().name() == kind)
            })
            .count()
    }

    /// A cluster of `n` nodes joined one after another through n0.
    pub fn cluster(cfg: Config, n: usize, seed: u64) -> Net {
        let mut net = Net::new(cfg);
        for i in 0..n {
            net.add(&name(i), 1, seed.wrapping_mul(1000).wrapping_add(i as u64));
        }
        net.join(&name(0), &[]);
        for i in 1..n {
            let c = name(i.saturating_sub(1) / 2);
            net.join(&name(i), &[&c]);
            net.run_for(50);
        }
        net
    }
}

pub fn msg(from: &Peer, message: Message) -> Input {
    Input::Message {
        from: from.clone(),
        message,
    }
}

pub fn drain(node: &mut Node) -> Vec<Output> {
    let mut v = Vec::new();
    while let Some(o) = node.poll_output() {
        v.push(o);
    }
    v
}
