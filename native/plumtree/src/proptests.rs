//! Random, hostile input to one node: it never panics, its memory stays
//! within the configured bounds, and what it delivers is per-origin FIFO
//! and at most once.

use crate::{
    Announcement, Config, Gossip, Input, Message, MessageId, Output, Plumtree, Scope, Timer,
};
use bytes::Bytes;
use proptest::prelude::*;
use std::collections::HashMap;

fn config() -> Config {
    Config {
        cache_max_messages: 16,
        cache_max_bytes: 256,
        max_broadcast_size: 64,
        max_buffered_per_origin: 4,
        max_buffered_bytes: 128,
        max_origins: 6,
        max_missing: 8,
        max_ihave_batch: 4,
        optimization_threshold: Some(1),
        max_trees: 3,
        ..Config::default()
    }
}

fn seq() -> impl Strategy<Value = u64> {
    prop_oneof![0..20u64, (u64::MAX - 3)..=u64::MAX, any::<u64>()]
}

fn id() -> impl Strategy<Value = MessageId<u8>> {
    (0..12u8, 0..3u64, seq()).prop_map(|(origin, incarnation, seq)| MessageId {
        origin,
        incarnation,
        seq,
    })
}

fn scope() -> impl Strategy<Value = Scope> {
    prop_oneof![Just(Scope::Shared), Just(Scope::Origin)]
}

fn message() -> impl Strategy<Value = Message<u8>> {
    prop_oneof![
        (id(), any::<u32>(), 0..80usize).prop_map(|(id, round, len)| Message::Gossip(Gossip {
            id,
            round,
            payload: Bytes::from(vec![1; len]),
        })),
        prop::collection::vec((id(), any::<u32>()), 0..40).prop_map(|v| Message::IHave(
            v.into_iter()
                .map(|(id, round)| Announcement { id, round })
                .collect()
        )),
        (0..12u8, scope(), prop::collection::vec(id(), 0..10))
            .prop_map(|(origin, scope, ids)| Message::Graft { origin, scope, ids }),
        (0..12u8, scope()).prop_map(|(origin, scope)| Message::Prune { origin, scope }),
    ]
}

#[derive(Clone, Debug)]
enum Step {
    Up(u8),
    Down(u8),
    Broadcast(usize),
    Receive(u8, Message<u8>),
    /// Advance the clock and fire the `n`-th pending timer (if any).
    Tick(u64, usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        1 => (0..12u8).prop_map(Step::Up),
        1 => (0..12u8).prop_map(Step::Down),
        1 => (0..100usize).prop_map(Step::Broadcast),
        4 => ((0..12u8), message()).prop_map(|(p, m)| Step::Receive(p, m)),
        3 => ((0..5_000u64), any::<usize>()).prop_map(|(dt, n)| Step::Tick(dt, n)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn hostile_input_keeps_every_bound(steps in prop::collection::vec(step(), 1..200)) {
        let config = config();
        let mut node = Plumtree::new(0u8, 1, config.clone(), 3).unwrap();
        let mut now = 0u64;
        let mut timers: Vec<(u64, Timer<u8>)> = Vec::new();
        let mut last: HashMap<(u8, u64), u64> = HashMap::new();
        for step in steps {
            let evicted = node.stats().streams_evicted;
            match step {
                Step::Up(p) => node.handle(now, Input::NeighborUp(p)),
                Step::Down(p) => node.handle(now, Input::NeighborDown(p)),
                Step::Broadcast(len) => node.handle(now, Input::Broadcast { payload: Bytes::from(vec![0; len]) }),
                Step::Receive(from, message) => node.handle(now, Input::Message { from, message }),
                Step::Tick(dt, n) => {
                    now += dt;
                    let due: Vec<usize> = (0..timers.len()).filter(|&i| timers[i].0 <= now).collect();
                    if !due.is_empty() {
                        let (_, timer) = timers.swap_remove(due[n % due.len()]);
                        node.handle(now, Input::Timer(timer));
                    }
                }
            }
            while let Some(output) = node.poll_output() {
                match output {
                    Output::SetTimer { after, timer } => {
                        prop_assert!(after > 0);
                        timers.push((now + after, timer));
                    }
                    Output::Deliver { origin, incarnation, seq, payload, .. } => {
                        prop_assert!(origin != 0, "own broadcast delivered");
                        prop_assert!(payload.len() <= config.max_broadcast_size);
                        if let Some(prev) = last.insert((origin, incarnation), seq) {
                            prop_assert!(seq > prev, "{origin}/{incarnation}: {seq} after {prev}");
                        }
                    }
                    Output::Send { to, message } => {
                        prop_assert!(to != 0, "sent to self");
                        if let Message::IHave(list) = &message {
                            prop_assert!(list.len() <= config.max_ihave_batch);
                        }
                    }
                    Output::Event(_) => {}
                }
            }
            if node.stats().streams_evicted > evicted {
                // A forgotten origin starts afresh (documented in stream.rs):
                // FIFO and at-most-once hold per remembered stream.
                last.clear();
            }
            let m = node.memory();
            prop_assert!(m.cached_messages <= config.cache_max_messages, "{m:?}");
            prop_assert!(m.cached_bytes <= config.cache_max_bytes, "{m:?}");
            prop_assert!(m.buffered_bytes <= config.max_buffered_bytes, "{m:?}");
            prop_assert!(m.buffered_messages <= config.max_buffered_per_origin * config.max_origins, "{m:?}");
            prop_assert!(m.origins <= config.max_origins, "{m:?}");
            prop_assert!(m.missing <= config.max_missing, "{m:?}");
            prop_assert!(m.trees <= config.max_trees, "{m:?}");
            prop_assert!(m.queued_announcements <= 12 * config.max_ihave_batch, "{m:?}");
            // Timers stay bounded too: one per missing id, per stream, plus
            // the two periodic ones (stale ones are dropped as they fire).
            prop_assert!(timers.len() <= 1_000);
        }
    }
}
