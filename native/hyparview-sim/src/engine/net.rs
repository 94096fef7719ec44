//! The network model around the connection policy: every decision about
//! which connection carries what, when a connection retires and which
//! losses the core hears of is `hyparview_link`'s; this file only moves
//! bytes and EOFs through virtual time.

use super::{ConnId, End, EventKind, IdleCheck, Protocol, Sim, Wire, WireState};
use crate::id::{Input, Message, SimId};
use hyparview::Millis;
use hyparview_link::{Activity, AfterFlush, DialFailed, Flush, Idle, Loss, Origin, Route};
use rand::Rng;

/// Network and timing parameters of the simulated transport (defaults are
/// the transport's).
#[derive(Clone, Debug)]
pub struct NetConfig {
    pub latency_min: Millis,
    pub latency_max: Millis,
    /// A dial to a dead or unreachable peer fails after this long.
    pub connect_timeout: Millis,
    /// Heartbeat-based detection of a connection cut by a partition.
    pub failure_timeout: Millis,
    /// Connections to peers outside the active view close when unused this
    /// long (checked on the transport's heartbeat tick).
    pub idle_timeout: Millis,
    pub heartbeat_interval: Millis,
    /// A connection that carried a JOIN/NEIGHBOR is not retired for this
    /// long (the transport uses max(neighbor_timeout, idle_timeout);
    /// `Sim::new` sets it so).
    pub request_hold: Millis,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            latency_min: 5,
            latency_max: 50,
            connect_timeout: 2_000,
            failure_timeout: 5_000,
            idle_timeout: 2_000,
            heartbeat_interval: 1_000,
            request_hold: 2_000,
        }
    }
}

impl<P: Protocol> Sim<P> {
    pub(super) fn wire_pos(&self, a: u32, conn: ConnId) -> Option<usize> {
        self.nodes[a as usize]
            .wires
            .iter()
            .position(|w| w.conn == conn)
    }

    /// Removes `a`'s wire at `p` (and its end from `ends`).
    fn remove_wire(&mut self, a: u32, p: usize) -> Wire {
        let w = self.nodes[a as usize].wires.swap_remove(p);
        self.ends.release(w.conn, w.end);
        w
    }

    /// Gives `a` a wire (and its end in `ends`).
    fn add_wire(&mut self, a: u32, w: Wire) {
        self.ends.hold(w.conn, w.end);
        self.nodes[a as usize].wires.push(w);
    }

    fn activity(&self, a: u32, b: u32) -> Activity {
        Activity::of(self.is_active(a, b))
    }

    pub(super) fn deliver(&mut self, to: u32, from: u32, message: Message) {
        // A message in flight across a new cut is lost with the link.
        if !self.nodes[to as usize].alive || !self.reachable(from, to) {
            return;
        }
        let now = self.now;
        let links = &mut self.nodes[to as usize].links;
        if let Some(c) = links.current(&from) {
            links.received(now, c);
        }
        self.counters.delivered += 1;
        let from = self.peers[from as usize].clone();
        self.feed(to, Input::Message { from, message });
    }

    pub(super) fn send(&mut self, a: u32, b: u32, message: Message) {
        let now = self.now;
        match self.nodes[a as usize].links.send(now, &b, message) {
            Route::Conn(conn, message) => self.write(a, conn, message),
            Route::Queued => {}
            Route::Dial => self.dial(a, b),
        }
    }

    /// Writes on `a`'s connection `conn`: delivered in order after a latency,
    /// or lost if the connection broke unnoticed.
    fn write(&mut self, a: u32, conn: ConnId, message: Message) {
        let Some(p) = self.wire_pos(a, conn) else {
            return;
        };
        let w = self.nodes[a as usize].wires[p];
        if w.state == WireState::Broken {
            return; // lost; the break is noticed later
        }
        let t = (self.now + self.latency()).max(w.last_arrival);
        self.nodes[a as usize].wires[p].last_arrival = t;
        self.push(
            t,
            EventKind::Deliver {
                to: w.peer,
                from: a,
                message,
            },
        );
    }

    fn dial(&mut self, a: u32, b: u32) {
        if !(self.nodes[b as usize].alive && self.reachable(a, b)) {
            let t = self.now + self.net.connect_timeout;
            self.push(t, EventKind::DialFailed { node: a, peer: b });
            return;
        }
        self.next_conn += 1;
        let conn = self.next_conn;
        // TCP connect (one round trip) and the Hello/Auth exchange (one
        // more): both ends hold the connection from then on; the first
        // message takes one more trip.
        let registered = self.now + (0..4).map(|_| self.latency()).sum::<Millis>();
        let arrival = registered + self.latency();
        // b's side exists from the accept, about when the first message
        // lands. Its older connection to a, if any, is one a already
        // closed (its EOF still in flight): it goes, unreported.
        if let Some(old) = self.nodes[b as usize].links.current(&a) {
            self.nodes[b as usize].links.closing(old);
            if let Some(q) = self.wire_pos(b, old) {
                self.remove_wire(b, q);
            }
        }
        let wire = |peer, end, last_arrival| Wire {
            conn,
            peer,
            end,
            state: WireState::Open,
            idle_check: IdleCheck::None,
            last_arrival,
        };
        self.add_wire(b, wire(a, End::Acceptor, 0));
        let rb = self.nodes[b as usize]
            .links
            .register(arrival, conn, a, 1, Origin::Accepted);
        // The first message lands at `arrival` (writes before the handshake
        // is done wait for it, FIFO).
        self.add_wire(a, wire(b, End::Dialer, arrival));
        let ra = self.nodes[a as usize]
            .links
            .register(registered, conn, b, 1, Origin::Dialed);
        debug_assert!(ra.retired.is_none() && rb.retired.is_none());
        if let Some(f) = rb.flush {
            self.write_flush(b, f);
        }
        if let Some(f) = ra.flush {
            self.write_flush(a, f);
        }
        self.schedule_idle_check(a, conn);
        self.schedule_idle_check(b, conn);
    }

    fn write_flush(&mut self, a: u32, f: Flush<ConnId, SimId>) {
        for m in f.messages {
            self.write(a, f.conn, m);
        }
        if f.after == AfterFlush::Close {
            self.close_wire(a, f.conn);
        }
    }

    /// `a`'s end of `conn` goes now; the remote reads the EOF after
    /// everything `a` wrote before.
    fn close_wire(&mut self, a: u32, conn: ConnId) {
        let Some(p) = self.wire_pos(a, conn) else {
            return;
        };
        let w = self.remove_wire(a, p);
        // Only an active peer can be left without a connection by this
        // (see `maybe_check_orphans`).
        if self.is_active(a, w.peer) {
            self.nodes[a as usize].orphan_check = true;
        }
        if w.state != WireState::Open {
            return; // across a cut or to a dead peer: nothing reaches b
        }
        let t = (self.now + self.latency()).max(w.last_arrival);
        if !self.ends.holds(conn, w.end.other()) {
            // b closed its end first: the EOF would find nothing (the
            // latency is still drawn, so later draws stay the same).
            return;
        }
        self.push(
            t,
            EventKind::Gone {
                node: w.peer,
                peer: a,
                conn,
                end: w.end.other(),
            },
        );
    }

    pub(super) fn disconnect(&mut self, a: u32, b: u32) {
        if let Some(conn) = self.nodes[a as usize].links.disconnect(&b) {
            self.close_wire(a, conn);
        }
    }

    pub(super) fn peer_down(&mut self, a: u32, b: u32) {
        let n = &mut self.nodes[a as usize];
        n.links.peer_down(&b);
        // Its connection is no longer heartbeat-kept: idle rules apply.
        if let Some(conn) = n.links.current(&b) {
            self.schedule_idle_check(a, conn);
        }
    }

    pub(super) fn dial_failed(&mut self, a: u32, b: u32) {
        if !self.nodes[a as usize].alive {
            return;
        }
        let now = self.now;
        match self.nodes[a as usize].links.dial_failed(now, &b) {
            DialFailed::Unknown => {}
            DialFailed::Fallback(f) => {
                self.nodes[a as usize].orphan_check = true;
                self.write_flush(a, f);
                self.maybe_check_orphans(a);
            }
            DialFailed::Failed => {
                self.nodes[a as usize].orphan_check = true;
                self.counters.dial_failures += 1;
                let peer = self.peers[b as usize].clone();
                self.feed(a, Input::DialFailed { peer });
            }
        }
    }

    /// `node`'s connection `conn` to `peer` is gone (reset, timed out or
    /// closed by the remote).
    pub(super) fn connection_gone(&mut self, node: u32, peer: u32, conn: ConnId) {
        if !self.nodes[node as usize].alive {
            return;
        }
        debug_assert!(self.wire_pos(node, conn).is_some(), "ends mirror wires");
        let Some(p) = self.wire_pos(node, conn) else {
            return;
        };
        self.remove_wire(node, p);
        let activity = self.activity(node, peer);
        if activity == Activity::Active {
            self.nodes[node as usize].orphan_check = true;
        }
        match self.nodes[node as usize].links.closed(conn, activity) {
            Loss::Report => {
                self.counters.connections_lost += 1;
                let peer = self.peers[peer as usize].clone();
                self.feed(node, Input::ConnectionLost { peer });
            }
            Loss::Quiet => self.maybe_check_orphans(node),
        }
    }

    /// Idle retirement runs on the transport's heartbeat tick: the check is
    /// scheduled for the first tick past the policy's deadline.
    fn schedule_idle_check(&mut self, node: u32, conn: ConnId) {
        let Some(p) = self.wire_pos(node, conn) else {
            return;
        };
        let w = self.nodes[node as usize].wires[p];
        if w.idle_check == IdleCheck::Scheduled || w.state != WireState::Open {
            return;
        }
        // The deadline as if the peer were inactive; an active one is
        // re-checked when it goes down.
        let links = &self.nodes[node as usize].links;
        let due = match links.idle(self.now, conn, Activity::Inactive) {
            Idle::Keep => return,
            Idle::Retire => self.now,
            Idle::NotBefore(t) => t,
        };
        self.nodes[node as usize].wires[p].idle_check = IdleCheck::Scheduled;
        let tick = self.rng.gen_range(0..self.net.heartbeat_interval.max(1));
        let at = due.max(self.now) + tick;
        let (peer, end) = (w.peer, w.end);
        self.push(
            at,
            EventKind::IdleCheck {
                node,
                peer,
                conn,
                end,
            },
        );
    }

    pub(super) fn idle_check(&mut self, node: u32, peer: u32, conn: ConnId) {
        if !self.nodes[node as usize].alive {
            return;
        }
        debug_assert!(self.wire_pos(node, conn).is_some(), "ends mirror wires");
        let Some(p) = self.wire_pos(node, conn) else {
            return;
        };
        let w = &mut self.nodes[node as usize].wires[p];
        w.idle_check = IdleCheck::None;
        // Broken connections are handled by their pending loss.
        if w.state != WireState::Open {
            return;
        }
        let activity = self.activity(node, peer);
        match self.nodes[node as usize]
            .links
            .idle(self.now, conn, activity)
        {
            Idle::Keep => {}
            Idle::Retire => {
                self.counters.idle_closed += 1;
                self.nodes[node as usize].links.closing(conn);
                self.close_wire(node, conn);
                self.maybe_check_orphans(node);
            }
            Idle::NotBefore(_) => self.schedule_idle_check(node, conn),
        }
    }

    /// The policy's orphan check. The transport runs it after every input;
    /// its outcome can only change when a peer comes up or an active
    /// peer's connection or a dial goes, so the model runs it only then.
    /// (A connection to a peer outside the active view orphans nobody: a
    /// peer that comes up later raises the check itself. The check also
    /// clears the marks of peers no longer active, but here `peer_down`
    /// already did, as every peer that leaves the view is reported down.
    /// Most connections are one-off exchanges with inactive peers: the
    /// check after each of their closes was ~5 % of a run.) Inlined: it
    /// follows every input and rarely has anything to do.
    #[inline]
    pub(super) fn maybe_check_orphans(&mut self, i: u32) {
        let n = &self.nodes[i as usize];
        if n.alive && n.orphan_check {
            self.check_orphans(i);
        }
    }

    fn check_orphans(&mut self, i: u32) {
        self.nodes[i as usize].orphan_check = false;
        let mut active = std::mem::take(&mut self.active_buf);
        let mut lost = std::mem::take(&mut self.lost_buf);
        active.clear();
        self.nodes[i as usize].node.for_each_active(&mut |p| {
            if let Some(b) = self.lookup(p) {
                active.push(b);
            }
        });
        self.nodes[i as usize]
            .links
            .orphans_into(&active, &mut lost);
        self.active_buf = active;
        for b in lost.drain(..) {
            self.counters.orphans_reported += 1;
            self.counters.connections_lost += 1;
            let peer = self.peers[b as usize].clone();
            self.feed(i, Input::ConnectionLost { peer });
        }
        self.lost_buf = lost;
    }

    /// `u` finds its connection to dead `v` gone on a send (the reliability
    /// measure's broadcasts): reported at once, replacing the pending report.
    pub fn detect_dead(&mut self, u: u32, v: u32) {
        if let Some(conn) = self.nodes[u as usize].links.current(&v) {
            self.nodes[u as usize].links.closing(conn);
            if let Some(p) = self.wire_pos(u, conn) {
                self.remove_wire(u, p);
            }
            self.nodes[u as usize].orphan_check = true;
        }
        self.counters.connections_lost += 1;
        let peer = self.peers[v as usize].clone();
        self.feed(u, Input::ConnectionLost { peer });
    }

    /// Kills `i` (no goodbye): peers with an open connection see it reset
    /// after one latency, after every message `i` had sent them.
    pub fn kill(&mut self, i: u32) {
        let n = &mut self.nodes[i as usize];
        if !n.alive {
            return;
        }
        n.alive = false;
        n.links.clear();
        let wires = std::mem::take(&mut n.wires);
        for w in &wires {
            self.ends.release(w.conn, w.end);
        }
        for w in wires {
            if w.state != WireState::Open {
                continue; // broken: its loss is already scheduled
            }
            let b = w.peer;
            let Some(q) = self.wire_pos(b, w.conn) else {
                continue;
            };
            let theirs = &mut self.nodes[b as usize].wires[q];
            if theirs.state != WireState::Open {
                continue;
            }
            theirs.state = WireState::Broken;
            let end = theirs.end;
            let t = (self.now + self.latency()).max(w.last_arrival);
            self.push(
                t,
                EventKind::Gone {
                    node: b,
                    peer: i,
                    conn: w.conn,
                    end,
                },
            );
        }
    }

    /// Graceful leave: the node DISCONNECTs its active view, then stops
    /// (remaining connections close, which peers see as a loss).
    pub fn leave(&mut self, i: u32) {
        if !self.nodes[i as usize].alive {
            return;
        }
        self.feed(i, Input::Leave);
        self.kill(i);
    }

    /// Cuts the network between nodes of different `groups[i]` (nodes past
    /// the slice are in group 0). Every open cross-cut connection breaks and
    /// is noticed after the failure timeout.
    pub fn partition(&mut self, groups: &[u8]) {
        for (i, n) in self.nodes.iter_mut().enumerate() {
            n.group = groups.get(i).copied().unwrap_or(0);
        }
        self.partitioned = true;
        let t = self.now + self.net.failure_timeout;
        let groups: Vec<u8> = self.nodes.iter().map(|n| n.group).collect();
        let mut losses = Vec::new();
        for (a, n) in self.nodes.iter_mut().enumerate() {
            for w in n.wires.iter_mut() {
                if w.state == WireState::Open && groups[w.peer as usize] != groups[a] {
                    w.state = WireState::Broken;
                    losses.push((a as u32, w.peer, w.conn, w.end));
                }
            }
        }
        for (node, peer, conn, end) in losses {
            self.push(
                t,
                EventKind::Gone {
                    node,
                    peer,
                    conn,
                    end,
                },
            );
        }
    }

    pub fn heal(&mut self) {
        self.partitioned = false;
    }

    pub fn is_partitioned(&self) -> bool {
        self.partitioned
    }
}
