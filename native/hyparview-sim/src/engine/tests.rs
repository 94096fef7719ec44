//! The network model, driven by a scripted participant.

use super::*;
use std::collections::VecDeque;

/// A participant that records its inputs and emits scripted outputs.
#[derive(Default)]
struct Script {
    inbox: Vec<(Millis, Input)>,
    out: VecDeque<Output>,
    active: Vec<Peer>,
    /// Keep lost peers in the active view (a protocol that ignores losses).
    sticky: bool,
}

impl Protocol for Script {
    fn handle(&mut self, now: Millis, input: Input) {
        if let Input::ConnectionLost { peer } | Input::DialFailed { peer } = &input {
            if !self.sticky {
                self.active.retain(|p| p != peer);
            }
        }
        self.inbox.push((now, input));
    }
    fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }
    fn active_view(&self) -> Vec<&Peer> {
        self.active.iter().collect()
    }
    fn passive_view(&self) -> Vec<&Peer> {
        Vec::new()
    }
    fn is_active(&self, id: &crate::SimId) -> bool {
        self.active.iter().any(|p| p.id == *id)
    }
}

/// `b` enters `a`'s active view, announced like the core does.
fn activate(s: &mut Sim<Script>, a: u32, b: u32) {
    let n = &mut s.nodes[a as usize].node;
    n.active.push(peer_of(b));
    n.out.push_back(Output::PeerUp(peer_of(b)));
    s.flush(a);
}

fn deactivate_all(s: &mut Sim<Script>, a: u32) {
    let n = &mut s.nodes[a as usize].node;
    for p in std::mem::take(&mut n.active) {
        n.out.push_back(Output::PeerDown(p));
    }
    s.flush(a);
}

fn sim(n: u32) -> Sim<Script> {
    let mut s = Sim::with_factory(7, NetConfig::default(), Box::new(|_, _| Script::default()));
    for _ in 0..n {
        let i = s.create_node();
        s.join_now(i, vec![]);
        s.nodes[i as usize].node.inbox.clear();
    }
    s
}

fn numbered(k: u32) -> Message {
    Message::ForwardJoin {
        joiner: peer_of(999),
        ttl: k,
    }
}

fn send(s: &mut Sim<Script>, a: u32, b: u32, m: Message) {
    s.nodes[a as usize].node.out.push_back(Output::Send {
        to: peer_of(b),
        message: m,
    });
    s.flush(a);
}

fn disconnect(s: &mut Sim<Script>, a: u32, b: u32) {
    let peer = peer_of(b);
    s.nodes[a as usize]
        .node
        .out
        .push_back(Output::Disconnect { peer });
    s.flush(a);
}

fn inbox(s: &Sim<Script>, i: u32) -> &[(Millis, Input)] {
    &s.nodes[i as usize].node.inbox
}

fn count(s: &Sim<Script>, i: u32, f: impl Fn(&Input) -> bool) -> usize {
    inbox(s, i).iter().filter(|(_, x)| f(x)).count()
}

fn is_lost(x: &Input) -> bool {
    matches!(x, Input::ConnectionLost { .. })
}
fn is_dial_failed(x: &Input) -> bool {
    matches!(x, Input::DialFailed { .. })
}

#[test]
fn delivery_is_fifo_with_latency_and_attributed() {
    let mut s = sim(2);
    for k in 0..50 {
        send(&mut s, 0, 1, numbered(k));
    }
    s.run_until(10_000);
    let got = inbox(&s, 1);
    assert_eq!(got.len(), 50);
    for (k, (t, input)) in got.iter().enumerate() {
        assert_eq!(
            input,
            &Input::Message {
                from: peer_of(0),
                message: numbered(k as u32)
            }
        );
        // The first message pays the handshake too.
        assert!(*t >= 25 && *t <= 250, "{t}");
    }
    assert!(got.windows(2).all(|w| w[0].0 <= w[1].0));
    assert_eq!(count(&s, 0, |_| true), 0);
}

#[test]
fn dial_to_dead_node_fails_once_after_connect_timeout() {
    let mut s = sim(2);
    s.kill(1);
    s.run_until(100);
    send(&mut s, 0, 1, numbered(0));
    send(&mut s, 0, 1, numbered(1));
    s.run_until(10_000);
    assert_eq!(
        inbox(&s, 0),
        &[(2_100, Input::DialFailed { peer: peer_of(1) })]
    );
    assert!(inbox(&s, 1).is_empty());
}

#[test]
fn killed_peer_is_reported_lost_once_after_its_last_message() {
    let mut s = sim(3);
    activate(&mut s, 0, 1);
    activate(&mut s, 2, 1);
    send(&mut s, 0, 1, numbered(0));
    send(&mut s, 2, 1, numbered(0));
    s.run_until(1_000);
    send(&mut s, 1, 0, numbered(1));
    s.kill(1);
    send(&mut s, 0, 1, numbered(2)); // dropped on the broken connection
    s.run_until(1_500);
    let got = inbox(&s, 0);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(matches!(got[0].1, Input::Message { .. }));
    assert_eq!(got[1].1, Input::ConnectionLost { peer: peer_of(1) });
    assert!(got[0].0 <= got[1].0 && got[1].0 <= 1_050);
    assert_eq!(count(&s, 2, is_lost), 1);
    // After the loss, a new send dials and fails.
    send(&mut s, 0, 1, numbered(3));
    s.run_until(5_000);
    assert_eq!(count(&s, 0, is_dial_failed), 1);
    assert_eq!(count(&s, 0, is_lost), 1);
}

#[test]
fn disconnect_is_quiet_and_flushes_first() {
    let mut s = sim(2);
    send(&mut s, 0, 1, numbered(0));
    s.run_until(1_000);
    send(&mut s, 0, 1, numbered(1));
    disconnect(&mut s, 0, 1);
    s.run_until(2_000);
    assert_eq!(inbox(&s, 1).len(), 2);
    s.kill(1);
    s.run_until(10_000);
    assert!(inbox(&s, 0).is_empty(), "{:?}", inbox(&s, 0));
}

#[test]
fn partition_cuts_reports_after_failure_timeout_and_heals() {
    let mut s = sim(4);
    // 0,1 | 2,3 ; 0-2 connected (active) before the cut, 1-3 not.
    activate(&mut s, 0, 2);
    activate(&mut s, 2, 0);
    send(&mut s, 0, 2, numbered(0));
    s.run_until(1_000);
    s.partition(&[0, 0, 1, 1]);
    send(&mut s, 0, 2, numbered(1)); // silently lost
    send(&mut s, 1, 3, numbered(2)); // dial fails
    send(&mut s, 0, 1, numbered(3)); // same side: fine
    s.run_until(20_000);
    assert_eq!(
        inbox(&s, 0),
        &[(6_000, Input::ConnectionLost { peer: peer_of(2) })]
    );
    let at2: Vec<_> = inbox(&s, 2).iter().filter(|(_, x)| is_lost(x)).collect();
    assert_eq!(
        at2,
        vec![&(6_000, Input::ConnectionLost { peer: peer_of(0) })]
    );
    assert_eq!(inbox(&s, 2).len(), 2);
    assert_eq!(count(&s, 1, |x| matches!(x, Input::Message { .. })), 1);
    let fails: Vec<_> = inbox(&s, 1)
        .iter()
        .filter(|(_, x)| is_dial_failed(x))
        .collect();
    assert_eq!(
        fails,
        vec![&(3_000, Input::DialFailed { peer: peer_of(3) })]
    );
    assert_eq!(inbox(&s, 3).len(), 0);
    s.heal();
    send(&mut s, 1, 3, numbered(4));
    s.run_until(21_000);
    assert_eq!(inbox(&s, 3).len(), 1);
}

#[test]
fn broadcast_floods_active_views_and_reports_dead_peers() {
    let mut s = sim(5);
    // Ring 0-1-2-3-4-0, node 2 dead. Views are set by hand without
    // connections, so keep them from reacting to orphan reports.
    for i in 0..5u32 {
        s.nodes[i as usize].node.sticky = true;
        s.nodes[i as usize].node.active = vec![peer_of((i + 1) % 5), peer_of((i + 4) % 5)];
    }
    s.kill(2);
    let r = crate::measure::reliability(&mut s, 20);
    assert_eq!(r, 1.0);
    // 1 and 3 each learnt of the failure.
    let dead = |x: &Input| x == &Input::ConnectionLost { peer: peer_of(2) };
    assert!(count(&s, 1, dead) >= 1);
    assert!(count(&s, 3, dead) >= 1);
    // Cut the ring twice: 0,1 | 3,4 unreachable from each other.
    s.nodes[4].node.active = vec![peer_of(3)];
    s.nodes[0].node.active = vec![peer_of(1)];
    let r = crate::measure::reliability(&mut s, 10);
    assert!((r - 0.5).abs() < 1e-12, "{r}");
}

#[test]
fn losses_are_reported_only_for_active_peers() {
    let mut s = sim(3);
    activate(&mut s, 0, 2);
    send(&mut s, 0, 1, numbered(0));
    send(&mut s, 0, 2, numbered(0));
    s.run_until(1_000);
    s.kill(1);
    s.kill(2);
    s.run_until(1_500);
    assert_eq!(
        inbox(&s, 0)
            .iter()
            .map(|(_, x)| x.clone())
            .collect::<Vec<_>>(),
        vec![Input::ConnectionLost { peer: peer_of(2) }]
    );
}

#[test]
fn idle_connections_to_non_active_peers_are_retired() {
    let mut s = sim(3);
    activate(&mut s, 0, 1);
    activate(&mut s, 2, 0);
    send(&mut s, 0, 1, numbered(0));
    send(&mut s, 0, 2, numbered(0));
    s.run_until(1_000);
    send(&mut s, 0, 2, numbered(1));
    s.run_until(2_900);
    // 0's connection to 2 was used at 1000: not idle yet.
    assert_eq!(s.connection_count(2), 1);
    s.run_until(5_000);
    // 0 retired its idle connection to 2; 2 (which holds 0 as active)
    // reads the EOF and reports the loss. 1 does not hold 0 as active:
    // it retires its end, and 0, which holds 1 as active, reports that.
    assert_eq!(s.connection_count(0), 0);
    assert_eq!(s.connection_count(1), 0);
    assert_eq!(s.connection_count(2), 0);
    assert_eq!(count(&s, 2, is_lost), 1);
    assert_eq!(
        inbox(&s, 0)
            .iter()
            .map(|(_, x)| x.clone())
            .collect::<Vec<_>>(),
        vec![Input::ConnectionLost { peer: peer_of(1) }]
    );
    assert_eq!(s.counters.idle_closed, 2);
}

#[test]
fn active_peer_without_connection_is_reported_once_per_episode() {
    let mut s = sim(3);
    s.nodes[0].node.sticky = true;
    activate(&mut s, 0, 1);
    // Any input 0 handles runs the check; 2's messages provide them.
    send(&mut s, 2, 0, numbered(0));
    s.run_until(1_000);
    assert_eq!(count(&s, 0, is_lost), 1);
    send(&mut s, 2, 0, numbered(1));
    s.run_until(2_000);
    assert_eq!(count(&s, 0, is_lost), 1, "still the same episode");
    // Once the peer has left the view and come back, it counts again.
    deactivate_all(&mut s, 0);
    send(&mut s, 2, 0, numbered(2));
    s.run_until(3_000);
    activate(&mut s, 0, 1);
    send(&mut s, 2, 0, numbered(3));
    s.run_until(4_000);
    assert_eq!(count(&s, 0, is_lost), 2);
    assert_eq!(s.counters.orphans_reported, 2);
    // With a connection (or a dial) there is nothing to report.
    send(&mut s, 0, 1, numbered(4));
    send(&mut s, 2, 0, numbered(5));
    deactivate_all(&mut s, 0);
    s.run_until(4_500);
    activate(&mut s, 0, 1);
    send(&mut s, 2, 0, numbered(6));
    s.run_until(4_600);
    assert_eq!(s.counters.orphans_reported, 2);
}

#[test]
fn failed_dial_falls_back_to_a_connection_the_peer_opened() {
    let mut s = sim(2);
    s.partition(&[0, 1]);
    send(&mut s, 0, 1, numbered(0)); // dial across the cut: will fail
    send(&mut s, 0, 1, numbered(1)); // queued on the dial
    s.heal();
    s.run_until(500);
    send(&mut s, 1, 0, numbered(2)); // 1 dials 0: succeeds
    s.run_until(5_000);
    assert_eq!(count(&s, 0, is_dial_failed), 0);
    let got: Vec<_> = inbox(&s, 1).iter().map(|(t, x)| (*t, x.clone())).collect();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got.iter().all(|(t, _)| *t >= 2_000), "{got:?}");
    assert_eq!(
        got[0].1,
        Input::Message {
            from: peer_of(0),
            message: numbered(0)
        }
    );
}

#[test]
fn connection_awaiting_an_answer_is_not_retired() {
    let net = NetConfig {
        latency_min: 500,
        latency_max: 500,
        heartbeat_interval: 1, // no tick jitter
        request_hold: 5_000,
        ..NetConfig::default()
    };
    let mut s = Sim::with_factory(1, net, Box::new(|_, _| Script::default()));
    for _ in 0..3 {
        let i = s.create_node();
        s.join_now(i, vec![]);
    }
    // 0 sends a JOIN, 2 a plain message: both connections are up at 2 s
    // (four legs) and the messages land at 2.5 s.
    send(&mut s, 0, 1, Message::Join);
    send(&mut s, 2, 1, numbered(0));
    s.run_until(3_900);
    send(&mut s, 1, 0, numbered(1)); // the answer, lands at 4.4 s
    s.run_until(4_300);
    // 2's connection, unused since 2 s, was retired at 4 s; 0's is held.
    assert_eq!(s.connection_count(2), 0);
    assert_eq!(s.connection_count(0), 1);
    s.run_until(20_000);
    assert_eq!(count(&s, 0, |x| matches!(x, Input::Message { .. })), 1);
    assert_eq!(s.connection_count(0), 0);
    assert_eq!(s.connection_count(1), 0);
}

#[test]
fn timers_of_dead_nodes_are_dropped_and_joins_start_nodes() {
    let mut s = sim(1);
    let j = s.create_node();
    s.schedule_join(j, vec![0], 500);
    assert!(!s.is_alive(j));
    s.run_until(499);
    assert!(!s.is_alive(j));
    s.run_until(500);
    assert!(s.is_alive(j));
    assert_eq!(
        inbox(&s, j),
        &[(
            500,
            Input::Join {
                contacts: vec![peer_of(0)]
            }
        )]
    );
    assert_eq!(s.live_nodes(), vec![0, j]);
}

#[test]
fn lookup_maps_node_ids_and_nothing_else() {
    let s = sim(3);
    assert_eq!(s.lookup(&s.nodes[2].peer), Some(2));
    assert_eq!(s.lookup(&peer_of(2)), Some(2));
    // A handle past the nodes created names no node.
    assert_eq!(s.lookup(&peer_of(7)), None);
}
