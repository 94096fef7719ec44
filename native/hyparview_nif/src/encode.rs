//! Encoding of events and snapshots for the owner pid (see docs/ARCHITECTURE.md,
//! "NIF"). Only static names become atoms.

use crate::atoms;
use hyparview::Peer;
use hyparview_transport::{Event, LogLevel, RejectReason, Snapshot};
use rustler::types::tuple::make_tuple;
use rustler::{Atom, Encoder, Env, OwnedBinary, Term};
use std::net::IpAddr;

pub fn encode_event<'a>(env: Env<'a>, event: &Event) -> Term<'a> {
    let tag = atoms::hyparview_nif().encode(env);
    match event {
        Event::PeerUp(p) => make_tuple(
            env,
            &[tag, atoms::peer_up().encode(env), encode_peer(env, p)],
        ),
        Event::PeerDown(p) => make_tuple(
            env,
            &[tag, atoms::peer_down().encode(env), encode_peer(env, p)],
        ),
        // {:hyparview_nif, :connect, id_binary}
        Event::Connect(id) => make_tuple(
            env,
            &[tag, atoms::connect().encode(env), id.as_ref().encode(env)],
        ),
        Event::HandshakeRejected { addr, reason } => {
            let address = make_tuple(env, &[encode_ip(env, addr.ip()), addr.port().encode(env)]);
            make_tuple(
                env,
                &[
                    tag,
                    atoms::handshake_rejected().encode(env),
                    address,
                    reject_atom(*reason).encode(env),
                ],
            )
        }
        Event::Log { level, message } => {
            let level = match level {
                LogLevel::Debug => atoms::debug(),
                LogLevel::Info => atoms::info(),
                LogLevel::Warning => atoms::warning(),
                LogLevel::Error => atoms::error(),
            };
            make_tuple(
                env,
                &[
                    tag,
                    atoms::log().encode(env),
                    level.encode(env),
                    message.as_str().encode(env),
                ],
            )
        }
        Event::Stopped => make_tuple(env, &[tag, atoms::stopped().encode(env)]),
        // {:hyparview_nif, :broadcast, origin_id_binary, payload_binary}
        Event::Broadcast { origin, payload } => {
            let mut binary = OwnedBinary::new(payload.len());
            binary.as_mut_slice().copy_from_slice(payload);
            let payload = binary.release(env).encode(env);
            make_tuple(
                env,
                &[
                    tag,
                    atoms::broadcast().encode(env),
                    origin.as_ref().encode(env),
                    payload,
                ],
            )
        }
        // {:hyparview_nif, :gap_skipped, origin_id_binary, count}
        Event::GapSkipped { origin, count } => make_tuple(
            env,
            &[
                tag,
                atoms::gap_skipped().encode(env),
                origin.as_ref().encode(env),
                count.encode(env),
            ],
        ),
        // {:hyparview_nif, :dropped, reason_atom, count}
        Event::BroadcastDropped { reason, count } => make_tuple(
            env,
            &[
                tag,
                atoms::dropped().encode(env),
                drop_atom(reason).encode(env),
                count.encode(env),
            ],
        ),
    }
}

/// The transport's fixed set of drop reasons (never input).
fn drop_atom(reason: &str) -> Atom {
    match reason {
        "queue_full" => atoms::queue_full(),
        "too_large" => atoms::too_large(),
        "stale_incarnation" => atoms::stale_incarnation(),
        "invalid_seq" => atoms::invalid_seq(),
        "forged" => atoms::forged(),
        _ => atoms::unknown(),
    }
}

fn reject_atom(r: RejectReason) -> Atom {
    match r {
        RejectReason::BadMagic => atoms::bad_magic(),
        RejectReason::BadVersion => atoms::bad_version(),
        RejectReason::BadAuth => atoms::bad_auth(),
        RejectReason::BadFrame => atoms::bad_frame(),
        RejectReason::OversizeFrame => atoms::oversize_frame(),
        RejectReason::Timeout => atoms::timeout(),
        RejectReason::BadId => atoms::bad_id(),
        RejectReason::SelfConnection => atoms::self_connection(),
        RejectReason::UnexpectedId => atoms::unexpected_id(),
    }
}

fn encode_ip(env: Env<'_>, ip: IpAddr) -> Term<'_> {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            (o[0], o[1], o[2], o[3]).encode(env)
        }
        IpAddr::V6(v6) => {
            let parts: Vec<Term> = v6.segments().iter().map(|s| s.encode(env)).collect();
            make_tuple(env, &parts)
        }
    }
}

/// `{id_binary, ip_tuple, port}`
fn encode_peer<'a>(env: Env<'a>, p: &Peer) -> Term<'a> {
    make_tuple(
        env,
        &[
            p.id.as_str().encode(env),
            encode_ip(env, p.addr.ip()),
            p.addr.port().encode(env),
        ],
    )
}

fn encode_kinds<'a>(env: Env<'a>, v: &[(&'static str, u64)]) -> Term<'a> {
    let mut map = Term::map_new(env);
    // Kind names are the transport's static MESSAGE_KINDS, a fixed set; the
    // atoms exist once loaded and are never made from input.
    for (k, n) in v {
        if let Ok(a) = Atom::from_str(env, k) {
            map = map.map_put(a, *n).unwrap_or(map);
        }
    }
    map
}

pub fn encode_snapshot<'a>(env: Env<'a>, s: &Snapshot) -> Term<'a> {
    let c = &s.counters;
    let counter_pairs: [(Atom, Term<'a>); 16] = [
        (atoms::messages_in(), encode_kinds(env, &c.messages_in)),
        (atoms::messages_out(), encode_kinds(env, &c.messages_out)),
        (atoms::connections(), c.connections.encode(env)),
        (
            atoms::connections_accepted(),
            c.connections_accepted.encode(env),
        ),
        (atoms::dials(), c.dials.encode(env)),
        (atoms::dial_failures(), c.dial_failures.encode(env)),
        (atoms::failures_detected(), c.failures_detected.encode(env)),
        (
            atoms::heartbeat_timeouts(),
            c.heartbeat_timeouts.encode(env),
        ),
        (
            atoms::handshake_rejections(),
            c.handshake_rejections.encode(env),
        ),
        (atoms::handshakes_closed(), c.handshakes_closed.encode(env)),
        (
            atoms::handshakes_evicted(),
            c.handshakes_evicted.encode(env),
        ),
        (atoms::frames_rejected(), c.frames_rejected.encode(env)),
        (atoms::broadcasts_sent(), c.broadcasts_sent.encode(env)),
        (
            atoms::broadcasts_delivered(),
            c.broadcasts_delivered.encode(env),
        ),
        (
            atoms::broadcasts_gap_skipped(),
            c.broadcasts_gap_skipped.encode(env),
        ),
        (
            atoms::broadcast_frames_dropped(),
            c.broadcast_frames_dropped.encode(env),
        ),
    ];
    let mut counters = Term::map_new(env);
    for (k, v) in counter_pairs {
        counters = counters.map_put(k, v).unwrap_or(counters);
    }
    let peers = |v: &[Peer]| -> Term<'a> {
        let list: Vec<Term<'a>> = v.iter().map(|p| encode_peer(env, p)).collect();
        list.encode(env)
    };
    let pairs: [(Atom, Term<'a>); 5] = [
        (atoms::local(), encode_peer(env, &s.local)),
        (atoms::listen_port(), s.listen_port.encode(env)),
        (atoms::active_view(), peers(&s.active_view)),
        (atoms::passive_view(), peers(&s.passive_view)),
        (atoms::counters(), counters),
    ];
    let mut map = Term::map_new(env);
    for (k, v) in pairs {
        map = map.map_put(k, v).unwrap_or(map);
    }
    map
}
