//! rustler glue: exposes `hyparview_transport` servers to the BEAM as
//! `HyParView.Native` (see docs/NIF_API.md). Every NIF only validates, then
//! enqueues a command or reads the last snapshot; nothing blocks a scheduler.
//! Every body runs inside `catch_unwind` so no panic reaches the VM.

use hyparview::{Config, Peer};
use hyparview_transport::{
    Event, EventSink, LogLevel, RejectReason, Server, ServerOptions, Snapshot, TransportConfig,
};
use rustler::types::tuple::make_tuple;
use rustler::{Atom, Binary, Encoder, Env, LocalPid, OwnedEnv, ResourceArc, Term, TermType};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

mod atoms {
    rustler::atoms! {
        ok, error, nil, internal, invalid_config, listen_failed,
        hyparview_nif, peer_up, peer_down, handshake_rejected, log, stopped,
        debug, info, warning,
        // reject reasons
        bad_magic, bad_version, bad_auth, bad_frame, oversize_frame, timeout, bad_id,
        self_connection, unexpected_id,
        // posix
        eaddrinuse, eacces, eaddrnotavail, einval, unknown,
        // opts keys
        id, listen_ip, listen_port, advertise_ip, advertise_port, incarnation, seed, secret,
        contacts, runtime_threads, config,
        // config keys
        active_view_size, passive_view_size, arwl, prwl, shuffle_active_count,
        shuffle_passive_count, shuffle_interval, shuffle_ttl, neighbor_timeout,
        rejoin_backoff_min, rejoin_backoff_max, promotion_interval,
        heartbeat_interval, failure_timeout, connect_timeout, handshake_timeout, max_frame_size,
        // snapshot
        local, active_view, passive_view, counters, messages_in, messages_out, connections,
        connections_accepted, dials, dial_failures, failures_detected, heartbeat_timeouts,
        handshake_rejections, frames_rejected,
        // message kinds
        join, forward_join, neighbor, neighbor_reply, disconnect, shuffle, shuffle_reply,
    }
}

/// The resource handed to Elixir. Dropping it (GC, owner died) drops the
/// `Server`, which only enqueues a shutdown command.
pub struct ServerResource {
    server: Server,
}

#[rustler::resource_impl]
impl rustler::Resource for ServerResource {}

/// Forwards events to the owner pid from runtime threads.
struct OwnerSink {
    owner: LocalPid,
    env: Mutex<OwnedEnv>,
}

impl EventSink for OwnerSink {
    fn send(&self, event: Event) -> bool {
        let owner = self.owner;
        let result = catch_unwind(AssertUnwindSafe(|| {
            let mut env = self.env.lock().unwrap_or_else(|e| e.into_inner());
            env.send_and_clear(&owner, |env| encode_event(env, &event))
                .is_ok()
        }));
        // A dead owner (send failed) makes the server shut down.
        result.unwrap_or(false)
    }
}

fn encode_event<'a>(env: Env<'a>, event: &Event) -> Term<'a> {
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

/// Runs a NIF body; a panic becomes `{:error, :internal}`.
fn guarded<'a>(env: Env<'a>, f: impl FnOnce() -> Term<'a>) -> Term<'a> {
    catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|_| (atoms::error(), atoms::internal()).encode(env))
}

// ---- option decoding -------------------------------------------------------

/// `{:invalid_config, key, message}` as a value to return.
struct Invalid {
    key: Atom,
    message: String,
}

fn invalid(key: Atom, message: impl Into<String>) -> Invalid {
    Invalid {
        key,
        message: message.into(),
    }
}

fn get<'a>(map: Term<'a>, key: Atom) -> Result<Term<'a>, Invalid> {
    map.map_get(key).map_err(|_| invalid(key, "missing"))
}

fn get_u64(map: Term, key: Atom) -> Result<u64, Invalid> {
    get(map, key)?
        .decode::<u64>()
        .map_err(|_| invalid(key, "must be a non-negative integer"))
}

fn get_range(map: Term, key: Atom, min: u64, max: u64) -> Result<u64, Invalid> {
    let v = get_u64(map, key)?;
    if v < min || v > max {
        return Err(invalid(key, format!("must be between {min} and {max}")));
    }
    Ok(v)
}

/// Optional config key: default when absent, error when malformed.
fn opt_range(map: Term, key: Atom, default: u64, min: u64, max: u64) -> Result<u64, Invalid> {
    match map.map_get(key) {
        Err(_) => Ok(default),
        Ok(_) => get_range(map, key, min, max),
    }
}

fn decode_ip(term: Term) -> Option<IpAddr> {
    if term.get_type() != TermType::Tuple {
        return None;
    }
    let parts = rustler::types::tuple::get_tuple(term).ok()?;
    match parts.len() {
        4 => {
            let mut o = [0u8; 4];
            for (i, t) in parts.iter().enumerate() {
                o[i] = t.decode::<u8>().ok()?;
            }
            Some(IpAddr::V4(Ipv4Addr::from(o)))
        }
        8 => {
            let mut s = [0u16; 8];
            for (i, t) in parts.iter().enumerate() {
                s[i] = t.decode::<u16>().ok()?;
            }
            Some(IpAddr::V6(Ipv6Addr::from(s)))
        }
        _ => None,
    }
}

fn get_ip(map: Term, key: Atom) -> Result<IpAddr, Invalid> {
    decode_ip(get(map, key)?).ok_or_else(|| invalid(key, "must be an ip address tuple"))
}

fn decode_binary(term: Term) -> Option<Vec<u8>> {
    if term.get_type() != TermType::Binary {
        return None;
    }
    term.decode::<Binary>().ok().map(|b| b.as_slice().to_vec())
}

fn decode_id(term: Term) -> Option<String> {
    let bytes = decode_binary(term)?;
    let s = String::from_utf8(bytes).ok()?;
    hyparview_transport::valid_id(&s).then_some(s)
}

fn decode_contacts(term: Term) -> Result<Vec<Peer>, Invalid> {
    let bad = || {
        invalid(
            atoms::contacts(),
            "must be a list of {id_binary, ip_tuple, port}",
        )
    };
    let list: Vec<Term> = term.decode().map_err(|_| bad())?;
    let mut out = Vec::with_capacity(list.len());
    for item in list {
        if item.get_type() != TermType::Tuple {
            return Err(bad());
        }
        let parts = rustler::types::tuple::get_tuple(item).map_err(|_| bad())?;
        if parts.len() != 3 {
            return Err(bad());
        }
        let id = decode_id(parts[0])
            .ok_or_else(|| invalid(atoms::contacts(), "contact id is not a valid node name"))?;
        let ip = decode_ip(parts[1]).ok_or_else(bad)?;
        let port: u16 = parts[2].decode().map_err(|_| bad())?;
        if port == 0 || ip.is_unspecified() {
            return Err(invalid(
                atoms::contacts(),
                "contact address must be a concrete ip and port",
            ));
        }
        // Incarnation of a contact is unknown until its handshake.
        out.push(Peer::new(id, SocketAddr::new(ip, port), 0));
    }
    Ok(out)
}

fn decode_config(map: Term) -> Result<(Config, TransportConfig), Invalid> {
    if map.get_type() != TermType::Map {
        return Err(invalid(atoms::config(), "must be a map"));
    }
    let d = Config::default();
    const BIG: u64 = u32::MAX as u64;
    let usize_key = |key, def: usize| opt_range(map, key, def as u64, 0, BIG).map(|v| v as usize);
    let u32_key = |key, def: u32| opt_range(map, key, def as u64, 0, BIG).map(|v| v as u32);
    let ms_key = |key, def: u64| opt_range(map, key, def, 0, BIG);
    // `..d` keeps this compiling if the core grows fields the NIF does not set.
    #[allow(clippy::needless_update)]
    let protocol = Config {
        active_view_size: usize_key(atoms::active_view_size(), d.active_view_size)?,
        passive_view_size: usize_key(atoms::passive_view_size(), d.passive_view_size)?,
        arwl: u32_key(atoms::arwl(), d.arwl)?,
        prwl: u32_key(atoms::prwl(), d.prwl)?,
        shuffle_active_count: usize_key(atoms::shuffle_active_count(), d.shuffle_active_count)?,
        shuffle_passive_count: usize_key(atoms::shuffle_passive_count(), d.shuffle_passive_count)?,
        shuffle_interval: ms_key(atoms::shuffle_interval(), d.shuffle_interval)?,
        shuffle_ttl: u32_key(atoms::shuffle_ttl(), d.shuffle_ttl)?,
        neighbor_timeout: ms_key(atoms::neighbor_timeout(), d.neighbor_timeout)?,
        rejoin_backoff_min: ms_key(atoms::rejoin_backoff_min(), d.rejoin_backoff_min)?,
        rejoin_backoff_max: ms_key(atoms::rejoin_backoff_max(), d.rejoin_backoff_max)?,
        promotion_interval: ms_key(atoms::promotion_interval(), d.promotion_interval)?,
        ..d
    };
    let t = TransportConfig::default();
    let transport = TransportConfig {
        heartbeat_interval: ms_key(atoms::heartbeat_interval(), t.heartbeat_interval)?,
        failure_timeout: ms_key(atoms::failure_timeout(), t.failure_timeout)?,
        connect_timeout: ms_key(atoms::connect_timeout(), t.connect_timeout)?,
        handshake_timeout: ms_key(atoms::handshake_timeout(), t.handshake_timeout)?,
        max_frame_size: u32_key(atoms::max_frame_size(), t.max_frame_size)?,
        ..t
    };
    Ok((protocol, transport))
}

fn decode_opts(opts: Term) -> Result<ServerOptions, Invalid> {
    if opts.get_type() != TermType::Map {
        return Err(invalid(atoms::config(), "options must be a map"));
    }
    let id = decode_id(get(opts, atoms::id())?).ok_or_else(|| {
        invalid(
            atoms::id(),
            "must be a node name binary (name@host, [A-Za-z0-9_.@-])",
        )
    })?;
    let listen_ip = get_ip(opts, atoms::listen_ip())?;
    let listen_port = get_range(opts, atoms::listen_port(), 0, 65535)? as u16;
    let advertise_ip = get_ip(opts, atoms::advertise_ip())?;
    let advertise_port = {
        let t = get(opts, atoms::advertise_port())?;
        if t.decode::<Atom>().ok() == Some(atoms::nil()) {
            None
        } else {
            Some(get_range(opts, atoms::advertise_port(), 1, 65535)? as u16)
        }
    };
    let incarnation = get_u64(opts, atoms::incarnation())?;
    let seed = get_u64(opts, atoms::seed())?;
    let secret = decode_binary(get(opts, atoms::secret())?)
        .filter(|s| (1..=1024).contains(&s.len()))
        .ok_or_else(|| invalid(atoms::secret(), "must be a binary of 1..1024 bytes"))?;
    let contacts = decode_contacts(get(opts, atoms::contacts())?)?;
    let runtime_threads = get_range(opts, atoms::runtime_threads(), 1, 64)? as usize;
    let (protocol, transport) = decode_config(get(opts, atoms::config())?)?;
    Ok(ServerOptions {
        id,
        listen: SocketAddr::new(listen_ip, listen_port),
        advertise_ip,
        advertise_port,
        incarnation,
        seed,
        secret,
        contacts,
        runtime_threads,
        protocol,
        transport,
    })
}

/// Maps a key name reported by validation to its (pre-made) atom.
fn key_atom(key: &str) -> Atom {
    let all = [
        ("id", atoms::id()),
        ("listen_ip", atoms::listen_ip()),
        ("listen_port", atoms::listen_port()),
        ("advertise_ip", atoms::advertise_ip()),
        ("advertise_port", atoms::advertise_port()),
        ("secret", atoms::secret()),
        ("contacts", atoms::contacts()),
        ("runtime_threads", atoms::runtime_threads()),
        ("active_view_size", atoms::active_view_size()),
        ("passive_view_size", atoms::passive_view_size()),
        ("arwl", atoms::arwl()),
        ("prwl", atoms::prwl()),
        ("shuffle_active_count", atoms::shuffle_active_count()),
        ("shuffle_passive_count", atoms::shuffle_passive_count()),
        ("shuffle_interval", atoms::shuffle_interval()),
        ("shuffle_ttl", atoms::shuffle_ttl()),
        ("neighbor_timeout", atoms::neighbor_timeout()),
        ("rejoin_backoff_min", atoms::rejoin_backoff_min()),
        ("rejoin_backoff_max", atoms::rejoin_backoff_max()),
        ("promotion_interval", atoms::promotion_interval()),
        ("heartbeat_interval", atoms::heartbeat_interval()),
        ("failure_timeout", atoms::failure_timeout()),
        ("connect_timeout", atoms::connect_timeout()),
        ("handshake_timeout", atoms::handshake_timeout()),
        ("max_frame_size", atoms::max_frame_size()),
    ];
    all.iter()
        .find(|(k, _)| *k == key)
        .map_or(atoms::config(), |(_, a)| *a)
}

fn invalid_term<'a>(env: Env<'a>, e: Invalid) -> Term<'a> {
    (
        atoms::error(),
        (atoms::invalid_config(), e.key, e.message.as_str()),
    )
        .encode(env)
}

// ---- NIFs ------------------------------------------------------------------

#[rustler::nif]
fn start<'a>(env: Env<'a>, owner: LocalPid, opts: Term<'a>) -> Term<'a> {
    guarded(env, || {
        let opts = match decode_opts(opts) {
            Ok(o) => o,
            Err(e) => return invalid_term(env, e),
        };
        let sink = Arc::new(OwnerSink {
            owner,
            env: Mutex::new(OwnedEnv::new()),
        });
        match Server::start(opts, sink) {
            Ok(server) => (atoms::ok(), ResourceArc::new(ServerResource { server })).encode(env),
            Err(hyparview_transport::StartError::InvalidConfig { key, message }) => invalid_term(
                env,
                Invalid {
                    key: key_atom(key),
                    message,
                },
            ),
            Err(hyparview_transport::StartError::ListenFailed(e)) => {
                use hyparview_transport::ListenError as L;
                let posix = match e {
                    L::AddrInUse => atoms::eaddrinuse(),
                    L::Access => atoms::eacces(),
                    L::AddrNotAvail => atoms::eaddrnotavail(),
                    L::Inval => atoms::einval(),
                    L::Unknown => atoms::unknown(),
                };
                (atoms::error(), (atoms::listen_failed(), posix)).encode(env)
            }
            Err(hyparview_transport::StartError::Internal(_)) => {
                (atoms::error(), atoms::internal()).encode(env)
            }
        }
    })
}

#[rustler::nif]
fn leave(env: Env<'_>, resource: ResourceArc<ServerResource>) -> Term<'_> {
    guarded(env, || {
        resource.server.leave();
        atoms::ok().encode(env)
    })
}

/// Replaces the contacts (`{id_binary, ip_tuple, port}` as for `start`).
#[rustler::nif]
fn set_contacts<'a>(
    env: Env<'a>,
    resource: ResourceArc<ServerResource>,
    contacts: Term<'a>,
) -> Term<'a> {
    guarded(env, || match decode_contacts(contacts) {
        Ok(contacts) => {
            resource.server.set_contacts(contacts);
            atoms::ok().encode(env)
        }
        Err(e) => invalid_term(env, e),
    })
}

#[rustler::nif]
fn stop(env: Env<'_>, resource: ResourceArc<ServerResource>) -> Term<'_> {
    guarded(env, || {
        resource.server.stop();
        atoms::ok().encode(env)
    })
}

#[rustler::nif]
fn snapshot(env: Env<'_>, resource: ResourceArc<ServerResource>) -> Term<'_> {
    guarded(env, || encode_snapshot(env, &resource.server.snapshot()))
}

fn kind_atom(kind: &str) -> Option<Atom> {
    Some(match kind {
        "join" => atoms::join(),
        "forward_join" => atoms::forward_join(),
        "neighbor" => atoms::neighbor(),
        "neighbor_reply" => atoms::neighbor_reply(),
        "disconnect" => atoms::disconnect(),
        "shuffle" => atoms::shuffle(),
        "shuffle_reply" => atoms::shuffle_reply(),
        _ => return None,
    })
}

fn encode_kinds<'a>(env: Env<'a>, v: &[(&'static str, u64)]) -> Term<'a> {
    let mut map = Term::map_new(env);
    // Kinds the NIF has no atom for (a newer core) are left out rather than
    // minting atoms at runtime.
    for (k, n) in v {
        if let Some(a) = kind_atom(k) {
            map = map.map_put(a, *n).unwrap_or(map);
        }
    }
    map
}

fn encode_snapshot<'a>(env: Env<'a>, s: &Snapshot) -> Term<'a> {
    let c = &s.counters;
    let counter_pairs: [(Atom, Term<'a>); 10] = [
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
        (atoms::frames_rejected(), c.frames_rejected.encode(env)),
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

rustler::init!("Elixir.HyParView.Native");
