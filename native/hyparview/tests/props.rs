//! Property tests: random (often nonsensical) input sequences must keep the
//! view invariants, never panic, and be deterministic.
mod common;
use common::*;
use hyparview::{Config, Input, Message, Node, Output, Peer, Timer};
use proptest::prelude::*;
use std::collections::BTreeSet;

const IDS: [&str; 10] = ["me", "a", "b", "c", "d", "e", "f", "g", "h", ""];

fn arb_peer() -> impl Strategy<Value = Peer> {
    (0..IDS.len(), 0u64..4).prop_map(|(i, inc)| peer_inc(IDS[i], inc))
}

fn arb_u32() -> impl Strategy<Value = u32> {
    prop_oneof![0u32..8, Just(u32::MAX), any::<u32>()]
}

fn arb_u64() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..200, Just(u64::MAX), any::<u64>()]
}

fn arb_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        Just(Message::Join),
        (arb_peer(), arb_u32()).prop_map(|(joiner, ttl)| Message::ForwardJoin { joiner, ttl }),
        (any::<bool>(), arb_u64(), any::<bool>()).prop_map(|(high_priority, epoch, merge)| {
            Message::Neighbor {
                high_priority,
                epoch,
                merge,
            }
        }),
        (any::<bool>(), arb_u64())
            .prop_map(|(accepted, epoch)| Message::NeighborReply { accepted, epoch }),
        arb_u64().prop_map(|epoch| Message::Disconnect { epoch }),
        (
            arb_peer(),
            arb_u32(),
            prop::collection::vec(arb_peer(), 0..80)
        )
            .prop_map(|(origin, ttl, peers)| Message::Shuffle { origin, ttl, peers }),
        prop::collection::vec(arb_peer(), 0..80).prop_map(|peers| Message::ShuffleReply { peers }),
    ]
}

#[derive(Clone, Debug)]
enum Op {
    Join(Vec<Peer>),
    Leave,
    Msg(Peer, Message),
    Lost(Peer),
    DialFailed(Peer),
    /// Fire the n-th timer the node requested (modulo how many).
    Timer(usize),
    Advance(u64),
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => prop::collection::vec(arb_peer(), 0..4).prop_map(Op::Join),
        1 => Just(Op::Leave),
        12 => (arb_peer(), arb_message()).prop_map(|(p, m)| Op::Msg(p, m)),
        2 => arb_peer().prop_map(Op::Lost),
        2 => arb_peer().prop_map(Op::DialFailed),
        4 => any::<usize>().prop_map(Op::Timer),
        2 => (0u64..60_000).prop_map(Op::Advance),
    ]
}

fn arb_config() -> impl Strategy<Value = Config> {
    (1usize..7, 0usize..10, 1u32..8, 1u32..8).prop_map(|(a, p, arwl, sttl)| Config {
        active_view_size: a,
        passive_view_size: p,
        arwl,
        prwl: arwl / 2,
        shuffle_active_count: a.min(3),
        shuffle_passive_count: p.min(4),
        shuffle_ttl: sttl,
        ..Config::default()
    })
}

/// Runs `ops`, checking invariants after every step; returns all outputs.
fn run(cfg: &Config, seed: u64, ops: &[Op]) -> Vec<Output> {
    let mut n = Node::new(peer_inc("me", 1), cfg.clone(), seed).unwrap();
    let mut now = 0u64;
    let mut timers: Vec<Timer> = Vec::new();
    let mut all = Vec::new();
    let mut up: BTreeSet<Peer> = BTreeSet::new();
    for op in ops {
        let input = match op.clone() {
            Op::Join(contacts) => Input::Join { contacts },
            Op::Leave => Input::Leave,
            Op::Msg(from, message) => Input::Message { from, message },
            Op::Lost(peer) => Input::ConnectionLost { peer },
            Op::DialFailed(peer) => Input::DialFailed { peer },
            Op::Timer(i) => {
                if timers.is_empty() {
                    continue;
                }
                Input::Timer(timers[i % timers.len()].clone())
            }
            Op::Advance(d) => {
                now += d;
                continue;
            }
        };
        n.handle(now, input);
        for o in drain(&mut n) {
            match &o {
                Output::SetTimer { after, timer } => {
                    assert!(*after > 0, "zero-delay timer would spin");
                    timers.push(timer.clone());
                }
                Output::PeerUp(p) => assert!(up.insert(p.clone()), "PeerUp twice: {p:?}"),
                Output::PeerDown(p) => assert!(up.remove(p), "PeerDown of a peer not up: {p:?}"),
                Output::Send { to, .. } | Output::Disconnect { peer: to } => {
                    assert_ne!(to.id, "me", "sending to self")
                }
            }
            all.push(o);
        }
        check_invariants(&n);
        let held: BTreeSet<Peer> = n.active_view().into_iter().cloned().collect();
        assert_eq!(held, up, "PeerUp/PeerDown events match the active view");
        assert!(n.pending_requests() <= 2 * cfg.active_view_size + 1);
    }
    all
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn random_inputs_keep_invariants(cfg in arb_config(), seed in any::<u64>(), ops in prop::collection::vec(arb_op(), 0..200)) {
        run(&cfg, seed, &ops);
    }

    #[test]
    fn same_seed_same_inputs_same_outputs(seed in any::<u64>(), ops in prop::collection::vec(arb_op(), 0..120)) {
        let cfg = Config::default();
        prop_assert_eq!(run(&cfg, seed, &ops), run(&cfg, seed, &ops));
    }
}

#[derive(Clone, Debug)]
enum NetOp {
    Kill(usize),
    Restart(usize),
    Partition(usize),
    Heal,
    Run(u64),
}

fn arb_net_op() -> impl Strategy<Value = NetOp> {
    prop_oneof![
        2 => (0usize..24).prop_map(NetOp::Kill),
        2 => (0usize..24).prop_map(NetOp::Restart),
        1 => (1usize..23).prop_map(NetOp::Partition),
        1 => Just(NetOp::Heal),
        4 => (100u64..30_000).prop_map(NetOp::Run),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    /// Random crashes, restarts and partitions on a 24-node overlay; once
    /// everything is alive and healed again, the overlay must settle into a
    /// single, symmetric component.
    #[test]
    fn overlay_recovers_from_random_faults(seed in any::<u64>(), ops in prop::collection::vec(arb_net_op(), 1..25)) {
        let mut net = Net::cluster(Config::default(), 24, seed);
        net.keep_log = false;
        net.run_for(30_000);
        let mut inc = 1u64;
        for op in ops {
            match op {
                NetOp::Kill(i) => {
                    let id = name(i);
                    if !net.dead.contains(&id) && net.alive().len() > 2 {
                        net.kill(&id);
                    }
                }
                NetOp::Restart(i) => {
                    let id = name(i);
                    if net.dead.contains(&id) {
                        inc += 1;
                        net.add(&id, inc, seed ^ inc);
                        let contact = net.alive().into_iter().find(|a| *a != id).unwrap();
                        net.join(&id, &[&contact]);
                    }
                }
                NetOp::Partition(k) => {
                    let all: Vec<String> = (0..24).map(name).collect();
                    let (l, r) = all.split_at(k);
                    net.partition(l, r);
                }
                NetOp::Heal => net.heal(),
                NetOp::Run(d) => net.run_for(d),
            }
        }
        // Everyone back, network healed.
        net.heal();
        for i in 0..24 {
            let id = name(i);
            if net.dead.contains(&id) {
                inc += 1;
                net.add(&id, inc, seed ^ inc);
                let contact = net.alive().into_iter().find(|a| *a != id).unwrap();
                net.join(&id, &[&contact]);
            }
        }
        net.run_for(400_000);
        prop_assert_eq!(net.isolated(), 0);
        prop_assert!(net.asymmetric().is_empty(), "asymmetric: {:?}", net.asymmetric());
        prop_assert_eq!(net.components(), 1);
    }
}
