//! Decoding of the `start` options and the config map. Every size is checked
//! before anything is copied, every integer against its range before it is
//! narrowed, and nothing here panics or mints an atom from input: errors name
//! a key that is a static name (or the caller's own atom).

use hyparview::config::{Key, KEYS};
use hyparview::{Config, Peer};
use hyparview_transport::{ServerOptions, TransportConfig, TRANSPORT_KEYS};
use rustler::types::tuple::get_tuple;
use rustler::{Atom, Binary, Term, TermType};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Longest node name accepted (as in `HyParView.Peer`).
pub const MAX_ID_BYTES: usize = 255;
/// Longest shared secret accepted.
pub const MAX_SECRET_BYTES: usize = 1024;
/// Most contacts one `start` takes: JOIN needs a few, and the bound keeps
/// decoding far below a millisecond.
pub const MAX_CONTACTS: usize = 1024;

/// The key an error is about: one of the static names, or an unknown atom
/// the caller passed (returned to it unchanged).
pub enum KeyName {
    Static(&'static str),
    Caller(Atom),
}

/// `{:invalid_config, key, message}` as a value to return.
pub struct Invalid {
    pub key: KeyName,
    pub message: String,
}

pub fn invalid(key: &'static str, message: impl Into<String>) -> Invalid {
    Invalid {
        key: KeyName::Static(key),
        message: message.into(),
    }
}

fn get<'a>(map: Term<'a>, key: Atom, name: &'static str) -> Result<Term<'a>, Invalid> {
    map.map_get(key).map_err(|_| invalid(name, "missing"))
}

/// A non-negative integer within `min..=max` (bignums and negatives fail
/// the decode, so nothing is truncated).
fn ranged(term: Term, name: &'static str, min: u64, max: u64) -> Result<u64, Invalid> {
    match term.decode::<u64>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(invalid(name, format!("must be an integer in {min}..{max}"))),
    }
}

fn decode_ip(term: Term) -> Option<IpAddr> {
    if term.get_type() != TermType::Tuple {
        return None;
    }
    let parts = get_tuple(term).ok()?;
    let part = |t: &Term, max: u64| t.decode::<u64>().ok().filter(|v| *v <= max);
    match parts.len() {
        4 => {
            let mut o = [0u8; 4];
            for (slot, t) in o.iter_mut().zip(&parts) {
                *slot = part(t, u8::MAX as u64)? as u8;
            }
            Some(IpAddr::V4(Ipv4Addr::from(o)))
        }
        8 => {
            let mut s = [0u16; 8];
            for (slot, t) in s.iter_mut().zip(&parts) {
                *slot = part(t, u16::MAX as u64)? as u16;
            }
            Some(IpAddr::V6(Ipv6Addr::from(s)))
        }
        _ => None,
    }
}

fn get_ip(map: Term, key: Atom, name: &'static str) -> Result<IpAddr, Invalid> {
    decode_ip(get(map, key, name)?).ok_or_else(|| invalid(name, "must be an ip address tuple"))
}

/// The bytes of a binary of at most `max` bytes, copied only after the check.
fn bounded_binary(term: Term, max: usize) -> Option<Vec<u8>> {
    if term.get_type() != TermType::Binary {
        return None;
    }
    let bin = term.decode::<Binary>().ok()?;
    (bin.len() <= max).then(|| bin.as_slice().to_vec())
}

fn decode_id(term: Term) -> Option<String> {
    let s = String::from_utf8(bounded_binary(term, MAX_ID_BYTES)?).ok()?;
    hyparview_transport::valid_id(&s).then_some(s)
}

/// The elements of a proper list of at most `max` elements. Walks at most
/// `max + 1` cells, so an over-long list costs no more than a full one.
fn bounded_list(term: Term, max: usize) -> Option<Vec<Term>> {
    let mut out = Vec::new();
    let mut rest = term;
    while let Ok((head, tail)) = rest.list_get_cell() {
        if out.len() == max {
            return None;
        }
        out.push(head);
        rest = tail;
    }
    // The walk ends at the first non-cons tail: proper lists end in [].
    (rest.get_type() == TermType::List && rest.list_length().ok() == Some(0)).then_some(out)
}

pub fn decode_contacts(term: Term) -> Result<Vec<Peer>, Invalid> {
    let bad = || {
        invalid(
            "contacts",
            format!(
                "must be a proper list of at most {MAX_CONTACTS} {{id_binary, ip_tuple, port}}"
            ),
        )
    };
    let list = bounded_list(term, MAX_CONTACTS).ok_or_else(bad)?;
    let mut out = Vec::with_capacity(list.len());
    for item in list {
        if item.get_type() != TermType::Tuple {
            return Err(bad());
        }
        let parts = get_tuple(item).map_err(|_| bad())?;
        if parts.len() != 3 {
            return Err(bad());
        }
        let id = decode_id(parts[0])
            .ok_or_else(|| invalid("contacts", "contact id is not a valid node name"))?;
        let ip = decode_ip(parts[1]).ok_or_else(bad)?;
        let port = ranged(parts[2], "contacts", 1, u16::MAX as u64)? as u16;
        if ip.is_unspecified() {
            return Err(invalid(
                "contacts",
                "contact address must be a concrete ip and port",
            ));
        }
        // Incarnation of a contact is unknown until its handshake.
        out.push(Peer::new(id, SocketAddr::new(ip, port), 0));
    }
    Ok(out)
}

/// Stores `value` under the key of `table` named `name`; `None` when the
/// table has no such key.
fn assign<C>(
    table: &[Key<C>],
    config: &mut C,
    name: &str,
    value: Term,
) -> Option<Result<(), Invalid>> {
    let key = hyparview::config::find(table, name)?;
    let result = ranged(value, key.name, key.min, key.max).map(|v| (key.set)(config, v));
    Some(result)
}

/// The config map: every key optional (absent = the table's default), every
/// key known to one of the two tables, every value in its key's range.
/// Cross-key rules are checked by `validate`.
pub fn decode_config(map: Term) -> Result<(Config, TransportConfig), Invalid> {
    let most = KEYS.len() + TRANSPORT_KEYS.len();
    if map.get_type() != TermType::Map || map.map_size().map_or(true, |n| n > most) {
        return Err(invalid(
            "config",
            format!("must be a map of at most {most} known keys"),
        ));
    }
    let mut protocol = Config::default();
    let mut transport = TransportConfig::default();
    let iter = rustler::types::map::MapIterator::new(map)
        .ok_or_else(|| invalid("config", "must be a map"))?;
    for (key, value) in iter {
        let atom = key
            .decode::<Atom>()
            .map_err(|_| invalid("config", "keys must be atoms"))?;
        let unknown = || Invalid {
            key: KeyName::Caller(atom),
            message: "unknown key".into(),
        };
        // Key atoms are the caller's own; the name is only compared.
        let name = key.atom_to_string().map_err(|_| unknown())?;
        assign(KEYS, &mut protocol, &name, value)
            .or_else(|| assign(TRANSPORT_KEYS, &mut transport, &name, value))
            .unwrap_or_else(|| Err(unknown()))?;
    }
    Ok((protocol, transport))
}

/// Decodes and checks a config map, cross-key rules included.
pub fn validate_config(map: Term) -> Result<(), Invalid> {
    let (protocol, transport) = decode_config(map)?;
    let e = |e: hyparview::ConfigError| invalid(e.key, e.reason);
    protocol.validate().map_err(e)?;
    transport.validate().map_err(e)
}

pub fn decode_opts(opts: Term) -> Result<ServerOptions, Invalid> {
    use crate::atoms;
    if opts.get_type() != TermType::Map {
        return Err(invalid("config", "options must be a map"));
    }
    let id = decode_id(get(opts, atoms::id(), "id")?).ok_or_else(|| {
        invalid(
            "id",
            "must be a node name binary (name@host, [A-Za-z0-9_.@-], at most 255 bytes)",
        )
    })?;
    let listen_ip = get_ip(opts, atoms::listen_ip(), "listen_ip")?;
    let listen_port = ranged(
        get(opts, atoms::listen_port(), "listen_port")?,
        "listen_port",
        0,
        65_535,
    )? as u16;
    let advertise_ip = get_ip(opts, atoms::advertise_ip(), "advertise_ip")?;
    let advertise_port = {
        let t = get(opts, atoms::advertise_port(), "advertise_port")?;
        if t.decode::<Atom>().ok() == Some(atoms::nil()) {
            None
        } else {
            Some(ranged(t, "advertise_port", 1, 65_535)? as u16)
        }
    };
    let incarnation = ranged(
        get(opts, atoms::incarnation(), "incarnation")?,
        "incarnation",
        0,
        u64::MAX,
    )?;
    let seed = ranged(get(opts, atoms::seed(), "seed")?, "seed", 0, u64::MAX)?;
    let secret = bounded_binary(get(opts, atoms::secret(), "secret")?, MAX_SECRET_BYTES)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            invalid(
                "secret",
                format!("must be a binary of 1..{MAX_SECRET_BYTES} bytes"),
            )
        })?;
    let contacts = decode_contacts(get(opts, atoms::contacts(), "contacts")?)?;
    let runtime_threads = ranged(
        get(opts, atoms::runtime_threads(), "runtime_threads")?,
        "runtime_threads",
        1,
        64,
    )? as usize;
    let (protocol, transport) = decode_config(get(opts, atoms::config(), "config")?)?;
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
