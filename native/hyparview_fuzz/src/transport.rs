//! Targets for the bytes a network peer controls: frames, records and both
//! handshake machines.

use crate::mutate;
use hyparview::{Message, Peer};
use hyparview_transport::channel::Opener;
use hyparview_transport::handshake::{run_pair, Identity, Initiator, Responder, Step};
use hyparview_transport::wire::{encode_into, Decoder, Frame};
use rand::rngs::SmallRng;
use rand::Rng;

fn peer(rng: &mut SmallRng) -> Peer {
    Peer::new(
        format!("n{}@10.0.0.{}", rng.gen::<u16>(), rng.gen::<u8>()).as_str(),
        "10.0.0.1:4500".parse().expect("addr"),
        rng.gen(),
    )
}

fn frame(rng: &mut SmallRng) -> Frame {
    let peers = |rng: &mut SmallRng| (0..rng.gen_range(0..8)).map(|_| peer(rng)).collect();
    match rng.gen_range(0..10) {
        0 => Frame::Ping,
        1 => Frame::Pong,
        2 => Frame::Superseded,
        3 => Frame::Msg(Message::Join),
        4 => Frame::Msg(Message::ForwardJoin {
            joiner: peer(rng),
            ttl: rng.gen(),
        }),
        5 => Frame::Msg(Message::Neighbor {
            high_priority: rng.gen(),
            epoch: rng.gen(),
            merge: rng.gen(),
        }),
        6 => Frame::Msg(Message::NeighborReply {
            accepted: rng.gen(),
            epoch: rng.gen(),
        }),
        7 => Frame::Msg(Message::Disconnect { epoch: rng.gen() }),
        8 => Frame::Msg(Message::Shuffle {
            origin: peer(rng),
            ttl: rng.gen(),
            peers: peers(rng),
        }),
        _ => Frame::Msg(Message::ShuffleReply { peers: peers(rng) }),
    }
}

fn frames(rng: &mut SmallRng) -> Vec<u8> {
    let mut b = Vec::new();
    for _ in 0..rng.gen_range(1..6) {
        encode_into(&frame(rng), &mut b);
    }
    b
}

fn identity(name: &str, secret: &[u8]) -> Identity {
    Identity::new(name, "127.0.0.1:4500".parse().expect("addr"), 1, secret)
}

/// Mutated frame streams, pushed in random pieces.
pub fn decoder(rng: &mut SmallRng) {
    let valid = frames(rng);
    let bytes = mutate(rng, valid);
    let max = rng.gen_range(16..=1 << 20);
    let mut d = Decoder::new(max);
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        let n = rng.gen_range(1..=rest.len());
        d.push(&rest[..n]);
        rest = &rest[n..];
        loop {
            match d.next_frame() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
}

fn open_stream(opener: &mut Opener, mut wire: &[u8]) {
    while wire.len() >= 2 {
        let len = u16::from_be_bytes([wire[0], wire[1]]) as usize;
        let Some(record) = wire.get(2..2 + len) else {
            return;
        };
        if opener.open(record).is_err() {
            return;
        }
        loop {
            match opener.next_frame() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
        wire = &wire[2 + len..];
    }
}

/// Records of a real session, mutated on the way (tampering, replays,
/// truncation) or replaced by garbage.
pub fn records(rng: &mut SmallRng) {
    let (a, b) = (identity("a@h", b"s"), identity("b@h", b"s"));
    let max = rng.gen_range(16..=1 << 20);
    let (Ok(mut da), Ok(mut db)) = run_pair(&a, &b, Some("b@h"), max) else {
        panic!("a valid handshake failed");
    };
    let mut wire = Vec::new();
    for _ in 0..rng.gen_range(1..4) {
        da.sealer
            .seal(&frames(rng), &mut wire)
            .expect("sealing works");
    }
    let wire = if rng.gen_ratio(1, 8) {
        wire
    } else {
        mutate(rng, wire)
    };
    open_stream(&mut db.opener, &wire);
    // And the other direction, which has its own nonces.
    let mut back = Vec::new();
    db.sealer
        .seal(&frames(rng), &mut back)
        .expect("sealing works");
    let back = mutate(rng, back);
    open_stream(&mut da.opener, &back);
}

/// The listener's machine fed a mutated dialer's opening (and junk after).
pub fn responder(rng: &mut SmallRng) {
    let me = identity("b@h", b"s");
    let dialer = identity("a@h", if rng.gen_ratio(1, 4) { b"x" } else { b"s" });
    let mut i = Initiator::new(&dialer, None, 1024);
    let Ok(Step::Read {
        send: mut opening, ..
    }) = i.step(&[])
    else {
        panic!("initiator did not start");
    };
    opening.extend((0..rng.gen_range(0..128)).map(|_| rng.gen::<u8>()));
    let stream = mutate(rng, opening);
    let mut r = Responder::new(&me, rng.gen_range(16..=1 << 20));
    let mut need = Responder::first_read();
    let mut at = 0;
    loop {
        let Some(piece) = stream.get(at..at + need) else {
            return;
        };
        at += need;
        match r.step(piece) {
            Ok(Step::Read { n, .. }) => need = n,
            Ok(Step::Done { .. }) | Err(_) => return,
        }
    }
}

/// The dialer's machine fed a mutated version of a real listener's answer.
pub fn initiator(rng: &mut SmallRng) {
    let me = identity("a@h", b"s");
    let listener = identity(if rng.gen_ratio(1, 4) { "a@h" } else { "b@h" }, b"s");
    let expected = rng.gen_ratio(1, 2).then_some("b@h");
    let mut i = Initiator::new(&me, expected, rng.gen_range(16..=1 << 20));
    let Ok(Step::Read { send: opening, .. }) = i.step(&[]) else {
        panic!("initiator did not start");
    };
    // A real responder's answer to this very opening.
    let mut r = Responder::new(&listener, 1024);
    let mut answer = Vec::new();
    let mut at = 0;
    let mut need = Responder::first_read();
    while let Some(piece) = opening.get(at..at + need) {
        at += need;
        match r.step(piece) {
            Ok(Step::Read { send, n }) => {
                answer.extend_from_slice(&send);
                need = n;
            }
            _ => break,
        }
    }
    let stream = if rng.gen_ratio(1, 8) {
        answer
    } else {
        mutate(rng, answer)
    };
    let mut need = 2;
    let mut at = 0;
    loop {
        let Some(piece) = stream.get(at..at + need) else {
            return;
        };
        at += need;
        match i.step(piece) {
            Ok(Step::Read { n, .. }) => need = n,
            Ok(Step::Done { .. }) | Err(_) => return,
        }
    }
}
