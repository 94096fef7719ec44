use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::ops::Deref;
use std::sync::Arc;

/// A node id: an immutable name shared by every copy, with its hash computed
/// once. Cloning is a reference-count increment, and comparing two copies of
/// the same id is a pointer compare; different ids almost always differ in
/// their hash, so the name itself is compared only on a hash match. This is
/// what keeps id strings off the hot path (views, messages, timers) while
/// the wire still carries names.
#[derive(Clone)]
pub struct PeerId(Arc<IdInner>);

struct IdInner {
    hash: u64,
    /// Its shape, judged once (see [`IdRule`]): gossip checks every id it
    /// stores.
    node_name: bool,
    printable: bool,
    name: Box<str>,
}

impl PeerId {
    pub fn new(name: &str) -> PeerId {
        PeerId(Arc::new(IdInner {
            hash: fnv1a(name),
            node_name: valid_id(name),
            printable: printable(name),
            name: name.into(),
        }))
    }

    /// The address of the shared name: equal for copies of one id (so a
    /// driver may index ids it handed out by it); different addresses may
    /// still hold equal names.
    pub fn as_ptr(&self) -> *const () {
        Arc::as_ptr(&self.0).cast()
    }

    pub fn as_str(&self) -> &str {
        &self.0.name
    }

    /// The id's 64-bit FNV-1a hash (stable across runs and machines).
    pub fn hash64(&self) -> u64 {
        self.0.hash
    }
}

/// FNV-1a: cheap, stable, and good enough to tell node names apart.
fn fnv1a(id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl Deref for PeerId {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for PeerId {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for PeerId {
    fn eq(&self, other: &PeerId) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
            || (self.0.hash == other.0.hash && self.0.name == other.0.name)
    }
}

impl Eq for PeerId {}

impl Hash for PeerId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0.hash);
    }
}

impl PartialOrd for PeerId {
    fn partial_cmp(&self, other: &PeerId) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PeerId {
    fn cmp(&self, other: &PeerId) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl PartialEq<str> for PeerId {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for PeerId {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for PeerId {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other.as_str()
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for PeerId {
    fn from(s: &str) -> PeerId {
        PeerId::new(s)
    }
}

impl From<&String> for PeerId {
    fn from(s: &String) -> PeerId {
        PeerId::new(s)
    }
}

impl From<String> for PeerId {
    fn from(s: String) -> PeerId {
        PeerId::new(&s)
    }
}

impl Serialize for PeerId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for PeerId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PeerId, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(PeerId::new(&s))
    }
}

/// What the core needs of a node id: equality, a stable 64-bit hash (the
/// views' tags, the record of dropped links) and its shape (the gossip
/// rule, see `IdRule`). The core is generic over it, the way `foca` is
/// over its `Identity`: production runs it with [`PeerId`] (the name, as
/// the wire carries it), the simulator with a `Copy` handle, so both drive
/// the same state machines. `Ord` is only for drivers and tests: no choice
/// of the core depends on the order of ids.
pub trait Identity: Clone + Eq + Hash + Ord + fmt::Debug + 'static {
    /// Where the node is reached, carried with the id in every [`Peer`]
    /// and never read by the core: a `SocketAddr` for [`PeerId`]; the
    /// simulator, whose handle says everything, uses `()`.
    type Addr: Address;
    /// 64-bit hash, equal for equal ids (for [`PeerId`]: FNV-1a of the name).
    fn hash64(&self) -> u64;
    /// The id has the shape of a BEAM node name ([`valid_id`]).
    fn is_node_name(&self) -> bool;
    /// The id is printable and not oversized (the `IdRule::Printable`
    /// shape).
    fn is_printable(&self) -> bool;
}

impl Identity for PeerId {
    type Addr = SocketAddr;
    #[inline]
    fn hash64(&self) -> u64 {
        self.0.hash
    }
    fn is_node_name(&self) -> bool {
        self.0.node_name
    }
    fn is_printable(&self) -> bool {
        self.0.printable
    }
}

/// A peer's address as the core stores it: opaque, and packed where a
/// node keeps many (the reserve of `views.rs`).
pub trait Address: Clone + Eq + Hash + Ord + fmt::Debug + 'static {
    /// The stored form.
    type Packed: Clone + fmt::Debug;
    fn pack(self) -> Self::Packed;
    fn unpack(packed: Self::Packed) -> Self;
}

/// A [`SocketAddr`] in 8 bytes when it is IPv4 (almost every address),
/// boxed otherwise: 16 bytes instead of 32.
#[derive(Clone, Debug)]
pub enum PackedAddr {
    V4 { ip: u32, port: u16 },
    Other(Box<SocketAddr>),
}

impl Address for SocketAddr {
    type Packed = PackedAddr;
    fn pack(self) -> PackedAddr {
        match self {
            SocketAddr::V4(a) => PackedAddr::V4 {
                ip: u32::from(*a.ip()),
                port: a.port(),
            },
            other => PackedAddr::Other(Box::new(other)),
        }
    }
    fn unpack(packed: PackedAddr) -> SocketAddr {
        match packed {
            PackedAddr::V4 { ip, port } => {
                SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port))
            }
            PackedAddr::Other(a) => *a,
        }
    }
}

impl Address for () {
    type Packed = ();
    fn pack(self) {}
    fn unpack(_: ()) {}
}

/// Anything that names a node of id type `I`: an `I` itself, or for
/// [`PeerId`] a plain `str` (hashed on the spot). Lets the node's accessors
/// take either without the core ever holding a `String`.
pub trait IdLike<I> {
    /// The hash [`Identity::hash64`] would give for this id.
    fn id_hash(&self) -> u64;
    /// True when `id` names the same node. Callers compare hashes first.
    fn same_id(&self, id: &I) -> bool;
}

impl<I: Identity> IdLike<I> for I {
    #[inline]
    fn id_hash(&self) -> u64 {
        self.hash64()
    }
    #[inline]
    fn same_id(&self, id: &I) -> bool {
        self == id
    }
}

impl IdLike<PeerId> for str {
    fn id_hash(&self) -> u64 {
        fnv1a(self)
    }
    fn same_id(&self, id: &PeerId) -> bool {
        id.as_str() == self
    }
}

impl IdLike<PeerId> for String {
    fn id_hash(&self) -> u64 {
        fnv1a(self)
    }
    fn same_id(&self, id: &PeerId) -> bool {
        id.as_str() == self.as_str()
    }
}

impl IdLike<PeerId> for &str {
    fn id_hash(&self) -> u64 {
        fnv1a(self)
    }
    fn same_id(&self, id: &PeerId) -> bool {
        id.as_str() == *self
    }
}

/// The longest id accepted anywhere (a BEAM atom holds at most 255 bytes).
pub const MAX_ID_BYTES: usize = 255;

/// Whether `id` is a BEAM node name, the rule `HyParView.Peer.new/2`
/// enforces: 3..=255 bytes of `[A-Za-z0-9_.@-]` (plus `[`, `]`, `:` for
/// IPv6 hosts), exactly one `@`, both parts non-empty. The transport checks
/// handshake ids and the core checks gossiped ids with this one function.
pub fn valid_id(id: &str) -> bool {
    let b = id.as_bytes();
    if b.len() < 3 || b.len() > MAX_ID_BYTES {
        return false;
    }
    if !b.iter().all(|c| {
        c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'@' | b'-' | b'[' | b']' | b':')
    }) {
        return false;
    }
    let mut parts = id.split('@');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(name), Some(host), None) => !name.is_empty() && !host.is_empty(),
        _ => false,
    }
}

/// Which ids a node accepts from gossip: those of the shape its own id has.
/// A node whose own id is a node name (every node the runtime starts, see
/// [`valid_id`]) accepts only node names; a node with a bare test id
/// ("n1") accepts any printable id of at most [`MAX_ID_BYTES`] bytes. Both
/// refuse empty, oversized and control-character ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IdRule {
    NodeName,
    Printable,
}

impl IdRule {
    pub(crate) fn of_local<I: Identity>(local: &I) -> IdRule {
        if local.is_node_name() {
            IdRule::NodeName
        } else {
            IdRule::Printable
        }
    }

    pub(crate) fn admits<I: Identity>(self, id: &I) -> bool {
        match self {
            IdRule::NodeName => id.is_node_name(),
            IdRule::Printable => id.is_printable(),
        }
    }
}

/// The [`IdRule::Printable`] shape.
fn printable(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_BYTES && !id.chars().any(char::is_control)
}

/// A HyParView participant.
///
/// `id` is the node name (for BEAM nodes the distribution name, for example
/// `app@10.0.0.1`) and is the identity used in the views: two `Peer`s with the
/// same `id` are the same node. `addr` is where its transport listens.
/// `incarnation` distinguishes successive runs of a node that restarted with
/// the same id (the runtime uses the start time); a higher incarnation
/// replaces a lower one. A node's incarnation is learned only from its own
/// handshake; a peer learned from gossip carries [`Peer::UNKNOWN_INCARNATION`]
/// until it talks to us itself.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(bound(
    serialize = "I: Serialize, I::Addr: Serialize",
    deserialize = "I: Deserialize<'de>, I::Addr: Deserialize<'de>"
))]
pub struct Peer<I: Identity = PeerId> {
    pub id: I,
    pub addr: I::Addr,
    pub incarnation: u64,
}

/// The incarnation of a peer we only heard of: lower than any real one
/// (the runtime uses its start time), so the peer's own first message
/// replaces it.
pub const UNKNOWN_INCARNATION: u64 = 0;

impl Peer<PeerId> {
    /// [`UNKNOWN_INCARNATION`].
    pub const UNKNOWN_INCARNATION: u64 = UNKNOWN_INCARNATION;

    pub fn new(id: impl Into<PeerId>, addr: SocketAddr, incarnation: u64) -> Self {
        Peer {
            id: id.into(),
            addr,
            incarnation,
        }
    }
}

impl<I: Identity> Peer<I> {
    /// True when both describe the same node id (any incarnation).
    pub fn same_node(&self, other: &Peer<I>) -> bool {
        self.id == other.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_compare_by_name_and_share_storage() {
        let a = PeerId::new("a@h");
        let b = PeerId::from("a@h".to_string());
        assert_eq!(a, b);
        assert_eq!(a.hash64(), b.hash64());
        assert_ne!(a, PeerId::new("b@h"));
        assert!(a == "a@h");
        let c = a.clone();
        assert!(Arc::ptr_eq(&a.0, &c.0));
        assert!(PeerId::new("a") < PeerId::new("b"));
    }

    #[test]
    fn names_and_ids_hash_alike() {
        let a = PeerId::new("a@h");
        assert_eq!("a@h".id_hash(), a.id_hash());
        assert_eq!("a@h".to_string().id_hash(), a.id_hash());
        assert!("a@h".same_id(&a));
        assert!(!"b@h".same_id(&a));
        assert!(IdLike::same_id(&a, &a.clone()));
    }

    #[test]
    fn ids_follow_the_node_name_rule() {
        assert!(valid_id("a@b"));
        assert!(valid_id("app@127.0.0.1"));
        assert!(valid_id("app@[::1]"));
        for bad in [
            "", "ab", "@ab", "ab@", "a@b@c", "abc", "a b@c", "é@cd", "a\0@b",
        ] {
            assert!(!valid_id(bad), "{bad:?}");
        }
        assert!(!valid_id(&format!("a@{}", "b".repeat(254))));
        assert!(valid_id(&format!("a@{}", "b".repeat(253))));
    }

    #[test]
    fn gossip_ids_follow_the_local_ids_shape() {
        let id = PeerId::new;
        let strict = IdRule::of_local(&id("me@host"));
        assert_eq!(strict, IdRule::NodeName);
        assert!(strict.admits(&id("p1@host")) && !strict.admits(&id("p1")));
        let plain = IdRule::of_local(&id("n1"));
        assert_eq!(plain, IdRule::Printable);
        assert!(plain.admits(&id("p1")) && plain.admits(&id("p1@host")));
        for bad in [String::new(), "a\0b".into(), "a\nb".into(), "x".repeat(256)] {
            assert!(
                !plain.admits(&id(&bad)) && !strict.admits(&id(&bad)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn serializes_as_a_plain_string() {
        let id = PeerId::new("n1@sim");
        let bytes = postcard::to_stdvec(&id).unwrap();
        assert_eq!(bytes, postcard::to_stdvec("n1@sim").unwrap());
        let back: PeerId = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, id);
    }
}
