//! rustler glue: exposes `hyparview_transport` servers to the BEAM as
//! `HyParView.Native` (see docs/ARCHITECTURE.md, "NIF"). `start` runs on a
//! dirty I/O scheduler (it binds a socket and may create the runtime); every
//! other NIF only enqueues a command or reads the last snapshot. Every body
//! runs inside `catch_unwind` so no panic reaches the VM.

mod decode;
mod encode;

use decode::{decode_contacts, Invalid, KeyName};
use hyparview::config::{Key, KEYS};
use hyparview_transport::BroadcastError;
use hyparview_transport::{Event, EventSink, Server, StartError, TRANSPORT_KEYS};
use plumtree::Bytes;
use rustler::{Atom, Binary, Encoder, Env, LocalPid, OwnedEnv, ResourceArc, Term};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

mod atoms {
    rustler::atoms! {
        ok, error, nil, internal, invalid_config, listen_failed, too_long,
        hyparview_nif, peer_up, peer_down, connect, handshake_rejected, log, stopped,
        debug, info, warning,
        // reject reasons
        bad_magic, bad_version, bad_auth, bad_frame, oversize_frame, timeout, bad_id,
        self_connection, unexpected_id,
        // posix
        eaddrinuse, eacces, eaddrnotavail, einval, unknown,
        // opts keys (config keys come from the tables)
        id, listen_ip, listen_port, advertise_ip, advertise_port, incarnation, seed, secret,
        contacts, runtime_threads, config,
        // schema
        key, layer, protocol, transport, default, min, max, unit, meaning,
        // snapshot
        local, active_view, passive_view, counters, messages_in, messages_out, connections,
        connections_accepted, dials, dial_failures, failures_detected, heartbeat_timeouts,
        handshake_rejections, handshakes_closed, handshakes_evicted, frames_rejected,
        broadcasts_sent, broadcasts_delivered, broadcasts_gap_skipped, broadcast_frames_dropped,
        // broadcast
        broadcast, gap_skipped, dropped, too_large, overloaded, not_binary, queue_full,
        stale_incarnation, invalid_seq, forged,
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
            env.send_and_clear(&owner, |env| encode::encode_event(env, &event))
                .is_ok()
        }));
        // A dead owner (send failed) makes the server shut down.
        result.unwrap_or(false)
    }
}

/// Runs a NIF body; a panic becomes `{:error, :internal}`.
fn guarded<'a>(env: Env<'a>, f: impl FnOnce() -> Term<'a>) -> Term<'a> {
    catch_unwind(AssertUnwindSafe(f))
        .unwrap_or_else(|_| (atoms::error(), atoms::internal()).encode(env))
}

/// `{:error, {:invalid_config, key, message}}`. Static key names are the
/// tables' and the options' (a fixed set of atoms); an unknown key is the
/// caller's own atom.
fn invalid_term<'a>(env: Env<'a>, e: Invalid) -> Term<'a> {
    let key = match e.key {
        KeyName::Caller(atom) => atom,
        KeyName::Static(name) => Atom::from_str(env, name).unwrap_or(atoms::config()),
    };
    (
        atoms::error(),
        (atoms::invalid_config(), key, e.message.as_str()),
    )
        .encode(env)
}

// ---- NIFs ------------------------------------------------------------------

#[rustler::nif(schedule = "DirtyIo")]
fn start<'a>(env: Env<'a>, owner: LocalPid, opts: Term<'a>) -> Term<'a> {
    guarded(env, || {
        let opts = match decode::decode_opts(opts) {
            Ok(o) => o,
            Err(e) => return invalid_term(env, e),
        };
        let sink = Arc::new(OwnerSink {
            owner,
            env: Mutex::new(OwnedEnv::new()),
        });
        match Server::start(opts, sink) {
            Ok(server) => (atoms::ok(), ResourceArc::new(ServerResource { server })).encode(env),
            Err(StartError::InvalidConfig { key, message }) => {
                invalid_term(env, decode::invalid(key, message))
            }
            Err(StartError::ListenFailed(e)) => {
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
            Err(StartError::Internal(_)) => (atoms::error(), atoms::internal()).encode(env),
        }
    })
}

/// `:ok` or `{:error, {:invalid_config, key, message}}` for a config map: the
/// one validation of `HyParView.Config` (ranges from the tables, cross-key
/// rules from `Config::validate` and `TransportConfig::validate`).
#[rustler::nif]
fn validate_config<'a>(env: Env<'a>, config: Term<'a>) -> Term<'a> {
    guarded(env, || match decode::validate_config(config) {
        Ok(()) => atoms::ok().encode(env),
        Err(e) => invalid_term(env, e),
    })
}

fn encode_keys<'a, C>(env: Env<'a>, layer: Atom, table: &[Key<C>], out: &mut Vec<Term<'a>>) {
    for k in table {
        let unit = Atom::from_str(env, k.unit.as_str());
        let pairs: [(Atom, Term<'a>); 7] = [
            (
                atoms::key(),
                Atom::from_str(env, k.name)
                    .unwrap_or(atoms::config())
                    .encode(env),
            ),
            (atoms::layer(), layer.encode(env)),
            (atoms::default(), k.default.encode(env)),
            (atoms::min(), k.min.encode(env)),
            (atoms::max(), k.max.encode(env)),
            (atoms::unit(), unit.unwrap_or(atoms::unknown()).encode(env)),
            (atoms::meaning(), k.meaning.encode(env)),
        ];
        let mut map = Term::map_new(env);
        for (key, value) in pairs {
            map = map.map_put(key, value).unwrap_or(map);
        }
        out.push(map);
    }
}

/// Longest cookie `cookie_secret` hashes (a cookie is an atom: at most 255
/// characters), so the call stays far below a millisecond.
const MAX_COOKIE_BYTES: usize = 1024;

/// `{:ok, secret}`: the default secret for `cookie` (see
/// `hyparview_transport::cookie_secret`); `{:error, :too_long}` past
/// `MAX_COOKIE_BYTES`.
#[rustler::nif]
fn cookie_secret<'a>(env: Env<'a>, cookie: Binary<'a>) -> Term<'a> {
    guarded(env, || {
        if cookie.len() > MAX_COOKIE_BYTES {
            return (atoms::error(), atoms::too_long()).encode(env);
        }
        let digest = hyparview_transport::cookie_secret(cookie.as_slice());
        let mut out = rustler::OwnedBinary::new(digest.len());
        out.as_mut_slice().copy_from_slice(&digest);
        (atoms::ok(), out.release(env)).encode(env)
    })
}

/// The config schema: one map per key (`key`, `layer`, `default`, `min`,
/// `max`, `unit`, `meaning`), protocol keys first, in table order.
#[rustler::nif]
fn schema(env: Env<'_>) -> Term<'_> {
    guarded(env, || {
        let mut out = Vec::with_capacity(KEYS.len() + TRANSPORT_KEYS.len());
        encode_keys(env, atoms::protocol(), KEYS, &mut out);
        encode_keys(env, atoms::transport(), TRANSPORT_KEYS, &mut out);
        out.encode(env)
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

/// Broadcasts a binary (`:ok`, `{:error, :too_large | :overloaded |
/// :stopped | :not_binary}`). The size is checked before the one copy of
/// the payload (at most `max_broadcast_size`, 1 MiB by default: well
/// under a millisecond); the server only enqueues it.
#[rustler::nif]
fn broadcast<'a>(
    env: Env<'a>,
    resource: ResourceArc<ServerResource>,
    payload: Term<'a>,
) -> Term<'a> {
    guarded(env, || {
        let Ok(binary) = payload.decode::<Binary>() else {
            return (atoms::error(), atoms::not_binary()).encode(env);
        };
        let server = &resource.server;
        let result = server
            .check_broadcast_size(binary.len())
            .and_then(|()| server.broadcast(Bytes::copy_from_slice(binary.as_slice())));
        match result {
            Ok(()) => atoms::ok().encode(env),
            Err(BroadcastError::TooLarge { .. }) => {
                (atoms::error(), atoms::too_large()).encode(env)
            }
            Err(BroadcastError::Overloaded) => (atoms::error(), atoms::overloaded()).encode(env),
            Err(BroadcastError::Stopped) => (atoms::error(), atoms::stopped()).encode(env),
        }
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
    guarded(env, || {
        encode::encode_snapshot(env, &resource.server.snapshot())
    })
}

rustler::init!("Elixir.HyParView.Native");
