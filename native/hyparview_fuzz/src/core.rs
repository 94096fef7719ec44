//! The protocol core fed what a buggy or hostile peer that holds the secret
//! could send: contradictory messages, huge lists, extreme TTLs, epochs and
//! incarnations, duplicate and malformed ids, and failures out of order.
//! Authenticated senders are any of a small pool, so messages collide.

use hyparview::{Config, Input, Message, Node, Output, Peer};
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::Rng;

fn id(rng: &mut SmallRng) -> String {
    match rng.gen_range(0..12) {
        0 => String::new(),
        1 => "x".repeat(rng.gen_range(256..6000)),
        2 => "a\0b@h".to_string(),
        3 => "me@127.0.0.1".to_string(),
        _ => format!("p{}@127.0.0.1", rng.gen_range(0..8)),
    }
}

fn extreme(rng: &mut SmallRng) -> u64 {
    *[0, 1, u64::MAX, u64::MAX - 1, rng.gen()]
        .choose(rng)
        .unwrap_or(&0)
}

fn peer(rng: &mut SmallRng) -> Peer {
    let port = *[0u16, 1, 4500, 65535].choose(rng).unwrap_or(&1);
    Peer::new(
        id(rng).as_str(),
        format!("127.0.0.{}:{port}", rng.gen::<u8>())
            .parse()
            .expect("addr"),
        extreme(rng),
    )
}

fn ttl(rng: &mut SmallRng) -> u32 {
    *[0, 1, 2, 6, u32::MAX, rng.gen()].choose(rng).unwrap_or(&0)
}

fn peers(rng: &mut SmallRng) -> Vec<Peer> {
    let n = match rng.gen_range(0..10) {
        0 => rng.gen_range(500..3000),
        _ => rng.gen_range(0..10),
    };
    let mut v: Vec<Peer> = (0..n.min(64)).map(|_| peer(rng)).collect();
    // Huge lists are mostly duplicates: cheap to build, and dedup matters.
    while v.len() < n {
        let p = v[rng
            .gen_range(0..v.len().max(1))
            .min(v.len().saturating_sub(1))]
        .clone();
        v.push(p);
    }
    v
}

fn message(rng: &mut SmallRng) -> Message {
    match rng.gen_range(0..7) {
        0 => Message::Join,
        1 => Message::ForwardJoin {
            joiner: peer(rng),
            ttl: ttl(rng),
        },
        2 => Message::Neighbor {
            high_priority: rng.gen(),
            epoch: extreme(rng),
            merge: rng.gen(),
        },
        3 => Message::NeighborReply {
            accepted: rng.gen(),
            epoch: extreme(rng),
        },
        4 => Message::Disconnect {
            epoch: extreme(rng),
        },
        5 => Message::Shuffle {
            origin: peer(rng),
            ttl: ttl(rng),
            peers: peers(rng),
        },
        _ => Message::ShuffleReply { peers: peers(rng) },
    }
}

/// Authenticated senders: valid ids (the transport checks them), a few of
/// them, with varying incarnations.
fn sender(rng: &mut SmallRng) -> Peer {
    Peer::new(
        format!("p{}@127.0.0.1", rng.gen_range(0..8)).as_str(),
        format!("127.0.0.1:{}", 4500 + rng.gen_range(0..8))
            .parse()
            .expect("addr"),
        extreme(rng),
    )
}

pub fn node(rng: &mut SmallRng) {
    let config = Config {
        active_view_size: rng.gen_range(1..6),
        passive_view_size: rng.gen_range(1..30),
        ..Config::default()
    };
    let local = Peer::new("me@127.0.0.1", "127.0.0.1:4500".parse().expect("addr"), 5);
    let Ok(mut node) = Node::new(local, config.clone(), rng.gen()) else {
        return;
    };
    let mut now: u64 = rng.gen_range(0..1 << 40);
    let mut timers = Vec::new();
    for _ in 0..rng.gen_range(1..300) {
        now = now.saturating_add(*[0, 1, 100, 30_000, 1 << 32].choose(rng).unwrap_or(&1));
        let input = match rng.gen_range(0..20) {
            0 => Input::Join {
                contacts: (0..rng.gen_range(0..5)).map(|_| sender(rng)).collect(),
            },
            1 if rng.gen_ratio(1, 10) => Input::Leave,
            2 | 3 => Input::ConnectionLost { peer: sender(rng) },
            4 => Input::DialFailed { peer: sender(rng) },
            5..=7 if !timers.is_empty() => {
                Input::Timer(timers.swap_remove(rng.gen_range(0..timers.len())))
            }
            _ => Input::Message {
                from: sender(rng),
                message: message(rng),
            },
        };
        node.handle(now, input);
        while let Some(out) = node.poll_output() {
            if let Output::SetTimer { timer, .. } = out {
                if timers.len() < 256 {
                    timers.push(timer);
                }
            }
        }
        assert!(
            node.active_view().len() <= config.active_view_size,
            "active view over its bound"
        );
        assert!(
            node.passive_view().len() <= config.passive_view_size,
            "passive view over its bound"
        );
    }
}
