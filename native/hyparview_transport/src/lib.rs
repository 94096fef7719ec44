//! tokio TCP transport and actor that drive the HyParView state machine.
//!
//! One process-wide multi-thread runtime (threads named `hyparview-rt`) hosts
//! every [`Server`]. A server is an actor task that owns its
//! [`hyparview::Node`], listener and connections; the handle only enqueues
//! commands (unbounded channel, never blocks) and reads the snapshot the
//! actor republishes after every processed input. Nothing here blocks or
//! joins on the caller's thread, so the NIF can call it from a scheduler.
//!
//! Past ~600 lines because the public surface (config and its key table,
//! options, errors, events, counters, snapshot) is kept in one place, with
//! the tests of the config table.

mod actor;
mod admission;
pub mod channel;
mod ephemeral;
pub mod handshake;
pub mod wire;

use hyparview::config::{self, ConfigError, Key, Unit};
use hyparview::{Config, Peer};
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

pub use handshake::{cookie_secret, RejectReason};
pub use wire::valid_id;

/// Message kinds with a counter in [`Counters`]: HyParView's (from
/// `Message::kind()`) then Plumtree's (`plumtree::Message::kind()`).
pub const MESSAGE_KINDS: [&str; 11] = {
    let core = hyparview::MessageKind::NAMES;
    let tree = BROADCAST_KINDS;
    let mut names = [""; 11];
    let mut i = 0;
    while i < core.len() {
        names[i] = core[i];
        i += 1;
    }
    let mut j = 0;
    while j < tree.len() {
        names[i + j] = tree[j];
        j += 1;
    }
    names
};

/// Plumtree's message kinds, as `plumtree::Message::kind()` names them.
pub const BROADCAST_KINDS: [&str; 4] = ["gossip", "ihave", "graft", "prune"];

/// Bytes a broadcast frame carries beside its payload at most: the frame
/// header, the origin id (255 bytes and its length), incarnation, seq and
/// round varints and the enum tags (see the plumtree crate's "Wire sizes").
pub const BROADCAST_OVERHEAD: usize = 4 + 1 + 1 + 2 + 255 + 10 + 10 + 5 + 5 + 32;

static RUNTIME: OnceLock<Runtime> = OnceLock::new();
static RUNTIME_INIT: Mutex<()> = Mutex::new(());

/// The shared runtime, created on first use with `threads` workers (later
/// calls ignore `threads`).
pub fn runtime(threads: usize) -> io::Result<&'static Runtime> {
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    // Serialize creation so two concurrent first starts don't both build one.
    let _guard = RUNTIME_INIT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.clamp(1, 64))
        .thread_name("hyparview-rt")
        .enable_all()
        .build()?;
    Ok(RUNTIME.get_or_init(|| rt))
}

/// Timing and limits of the transport (the runtime part of the NIF `config`).
/// The meaning of each field is stated once, in [`TRANSPORT_KEYS`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportConfig {
    pub heartbeat_interval: u64,
    pub failure_timeout: u64,
    pub connect_timeout: u64,
    pub handshake_timeout: u64,
    pub max_frame_size: u32,
    pub idle_timeout: u64,
    pub write_queue: usize,
    /// Concurrent accepted connections still in their handshake; when full,
    /// the oldest is dropped to make room (a flood cannot lock newcomers out).
    pub max_unauthenticated: usize,
    /// Of those, at most this many from one source IP (the oldest of that IP
    /// is dropped to make room).
    pub max_unauthenticated_per_ip: usize,
    /// An accepted connection must prove the secret (the handshake's first
    /// message) within this long (ms; capped by `handshake_timeout`).
    pub preauth_timeout: u64,
    /// Rejected handshakes and other per-address warnings are reported at
    /// most once per this interval per address and kind, with a count (ms).
    pub log_interval: u64,
    /// Broadcast (Plumtree) parameters; see the rows of [`TRANSPORT_KEYS`].
    pub max_broadcast_size: usize,
    pub gap_timeout: u64,
    pub ihave_interval: u64,
    pub graft_timeout: u64,
    pub graft_retry_timeout: u64,
    pub broadcast_cache_messages: usize,
    pub broadcast_cache_bytes: usize,
    pub broadcast_cache_age: u64,
    pub broadcast_queue_bytes: usize,
}

/// An hour: the cap of every transport time.
const HOUR: u64 = 3_600_000;

/// The transport keys, in the shape of [`hyparview::config::KEYS`] (the NIF
/// decodes both tables alike). Adding a key = a field on [`TransportConfig`]
/// plus one line here. Cross-key rules are in [`TransportConfig::validate`].
#[rustfmt::skip]
pub const TRANSPORT_KEYS: &[Key<TransportConfig>] = &[
    Key { name: "heartbeat_interval", default: 5_000, min: 1, max: HOUR, unit: Unit::Millis,
          meaning: "a connection to an active peer that carried nothing from us for this long gets a ping",
          get: |c| c.heartbeat_interval, set: |c, v| c.heartbeat_interval = v },
    Key { name: "failure_timeout", default: 15_000, min: 1, max: HOUR, unit: Unit::Millis,
          meaning: "an active peer silent this long is declared failed",
          get: |c| c.failure_timeout, set: |c, v| c.failure_timeout = v },
    Key { name: "connect_timeout", default: 2_000, min: 1, max: HOUR, unit: Unit::Millis,
          meaning: "TCP connect deadline of a dial",
          get: |c| c.connect_timeout, set: |c, v| c.connect_timeout = v },
    Key { name: "handshake_timeout", default: 2_000, min: 1, max: HOUR, unit: Unit::Millis,
          meaning: "deadline of the authentication handshake on a new connection",
          get: |c| c.handshake_timeout, set: |c, v| c.handshake_timeout = v },
    Key { name: "max_frame_size", default: 65_536, min: 1_024, max: 16_777_216, unit: Unit::Bytes,
          meaning: "largest frame accepted; a longer length prefix closes the connection unread",
          get: |c| c.max_frame_size as u64, set: |c, v| c.max_frame_size = v as u32 },
    Key { name: "idle_timeout", default: 2_000, min: 1, max: HOUR, unit: Unit::Millis,
          meaning: "a connection to a peer outside the active view is closed after this long unused",
          get: |c| c.idle_timeout, set: |c, v| c.idle_timeout = v },
    Key { name: "write_queue", default: 1_024, min: 1, max: 1_048_576, unit: Unit::Count,
          meaning: "frames queued per connection before the peer counts as failed",
          get: |c| c.write_queue as u64, set: |c, v| c.write_queue = v as usize },
    Key { name: "max_unauthenticated", default: 128, min: 1, max: 65_536, unit: Unit::Count,
          meaning: "accepted connections that may be in their handshake at once; when full the oldest is dropped",
          get: |c| c.max_unauthenticated as u64, set: |c, v| c.max_unauthenticated = v as usize },
    Key { name: "max_unauthenticated_per_ip", default: 32, min: 1, max: 65_536, unit: Unit::Count,
          meaning: "of those, at most this many from one source IP (that IP's oldest is dropped)",
          get: |c| c.max_unauthenticated_per_ip as u64, set: |c, v| c.max_unauthenticated_per_ip = v as usize },
    Key { name: "preauth_timeout", default: 1_000, min: 1, max: HOUR, unit: Unit::Millis,
          meaning: "an accepted connection must prove the secret within this long (capped by handshake_timeout)",
          get: |c| c.preauth_timeout, set: |c, v| c.preauth_timeout = v },
    Key { name: "log_interval", default: 60_000, min: 1, max: HOUR, unit: Unit::Millis,
          meaning: "per-address rejection reports at most once per this interval, with a count",
          get: |c| c.log_interval, set: |c, v| c.log_interval = v },
    Key { name: "max_broadcast_size", default: 1_048_576, min: 1, max: 67_108_864, unit: Unit::Bytes,
          meaning: "largest broadcast payload; broadcast frames may exceed max_frame_size by this much",
          get: |c| c.max_broadcast_size as u64, set: |c, v| c.max_broadcast_size = v as usize },
    Key { name: "gap_timeout", default: 3_000, min: 1, max: HOUR, unit: Unit::Millis,
          meaning: "a broadcast waiting for an earlier one of its origin is delivered after this long, the gap skipped",
          get: |c| c.gap_timeout, set: |c, v| c.gap_timeout = v },
    Key { name: "ihave_interval", default: 50, min: 1, max: HOUR, unit: Unit::Millis,
          meaning: "lazy-push announcements (IHAVE) are batched for at most this long",
          get: |c| c.ihave_interval, set: |c, v| c.ihave_interval = v },
    Key { name: "graft_timeout", default: 1_000, min: 1, max: HOUR, unit: Unit::Millis,
          meaning: "an announced broadcast missing this long (plus jitter) is requested with a GRAFT",
          get: |c| c.graft_timeout, set: |c, v| c.graft_timeout = v },
    Key { name: "graft_retry_timeout", default: 250, min: 1, max: HOUR, unit: Unit::Millis,
          meaning: "after a GRAFT, wait this long before grafting the next announcer",
          get: |c| c.graft_retry_timeout, set: |c, v| c.graft_retry_timeout = v },
    Key { name: "broadcast_cache_messages", default: 4_096, min: 1, max: 1_048_576, unit: Unit::Count,
          meaning: "recent broadcasts kept to answer GRAFTs",
          get: |c| c.broadcast_cache_messages as u64, set: |c, v| c.broadcast_cache_messages = v as usize },
    Key { name: "broadcast_cache_bytes", default: 67_108_864, min: 1, max: 17_179_869_184, unit: Unit::Bytes,
          meaning: "payload bytes of those at most (at least max_broadcast_size)",
          get: |c| c.broadcast_cache_bytes as u64, set: |c, v| c.broadcast_cache_bytes = v as usize },
    Key { name: "broadcast_cache_age", default: 30_000, min: 1, max: HOUR, unit: Unit::Millis,
          meaning: "a cached broadcast is kept at most this long",
          get: |c| c.broadcast_cache_age, set: |c, v| c.broadcast_cache_age = v },
    Key { name: "broadcast_queue_bytes", default: 8_388_608, min: 1, max: 17_179_869_184, unit: Unit::Bytes,
          meaning: "broadcast bytes queued per connection (and for local broadcasts) before more are dropped (at least max_broadcast_size)",
          get: |c| c.broadcast_queue_bytes as u64, set: |c, v| c.broadcast_queue_bytes = v as usize },
];

impl Default for TransportConfig {
    fn default() -> Self {
        // Placeholders, every field is overwritten from TRANSPORT_KEYS.
        let mut c = TransportConfig {
            heartbeat_interval: 0,
            failure_timeout: 0,
            connect_timeout: 0,
            handshake_timeout: 0,
            max_frame_size: 0,
            idle_timeout: 0,
            write_queue: 0,
            max_unauthenticated: 0,
            max_unauthenticated_per_ip: 0,
            preauth_timeout: 0,
            log_interval: 0,
            max_broadcast_size: 0,
            gap_timeout: 0,
            ihave_interval: 0,
            graft_timeout: 0,
            graft_retry_timeout: 0,
            broadcast_cache_messages: 0,
            broadcast_cache_bytes: 0,
            broadcast_cache_age: 0,
            broadcast_queue_bytes: 0,
        };
        for k in TRANSPORT_KEYS {
            (k.set)(&mut c, k.default);
        }
        c
    }
}

impl TransportConfig {
    /// Checks every key's range, then the cross-key rules.
    pub fn validate(&self) -> Result<(), ConfigError> {
        config::check_ranges(TRANSPORT_KEYS, self)?;
        config::rule(
            self.failure_timeout > self.heartbeat_interval,
            "failure_timeout",
            "must be greater than heartbeat_interval",
        )?;
        config::rule(
            self.broadcast_queue_bytes >= self.max_broadcast_size,
            "broadcast_queue_bytes",
            "must be at least max_broadcast_size",
        )?;
        self.plumtree().validate().map_err(|e| ConfigError {
            // Plumtree's own names for the keys renamed here.
            key: match e.key {
                "graft_timeout_1" => "graft_timeout",
                "graft_timeout_2" => "graft_retry_timeout",
                "cache_max_messages" => "broadcast_cache_messages",
                "cache_max_bytes" => "broadcast_cache_bytes",
                "cache_max_age" => "broadcast_cache_age",
                key => key,
            },
            reason: e.reason.replace("graft_timeout_1", "graft_timeout"),
        })
    }

    /// The Plumtree parameters: the keys above, the rest Plumtree's defaults.
    pub fn plumtree(&self) -> plumtree::Config {
        plumtree::Config {
            ihave_interval: self.ihave_interval,
            graft_timeout_1: self.graft_timeout,
            graft_timeout_2: self.graft_retry_timeout,
            cache_max_messages: self.broadcast_cache_messages,
            cache_max_bytes: self.broadcast_cache_bytes,
            cache_max_age: self.broadcast_cache_age,
            gap_timeout: self.gap_timeout,
            max_broadcast_size: self.max_broadcast_size,
            max_buffered_bytes: plumtree::Config::default()
                .max_buffered_bytes
                .max(self.max_broadcast_size),
            ..plumtree::Config::default()
        }
    }

    /// Longest frame the reader accepts: protocol frames are held to
    /// `max_frame_size`, broadcast frames (told by their kind) to this.
    pub fn max_broadcast_frame(&self) -> usize {
        (self.max_frame_size as usize).max(self.max_broadcast_size + BROADCAST_OVERHEAD)
    }
}

#[derive(Clone, Debug)]
pub struct ServerOptions {
    pub id: String,
    pub listen: SocketAddr,
    pub advertise_ip: IpAddr,
    /// `None` = the actually bound port.
    pub advertise_port: Option<u16>,
    pub incarnation: u64,
    pub seed: u64,
    pub secret: Vec<u8>,
    /// JOIN through these; their incarnation is unknown (use 0).
    pub contacts: Vec<Peer>,
    pub runtime_threads: usize,
    pub protocol: Config,
    pub transport: TransportConfig,
}

impl ServerOptions {
    /// Options with defaults for everything but identity and addresses.
    pub fn new(
        id: impl Into<String>,
        listen: SocketAddr,
        advertise_ip: IpAddr,
        secret: &[u8],
    ) -> Self {
        ServerOptions {
            id: id.into(),
            listen,
            advertise_ip,
            advertise_port: None,
            incarnation: 0,
            seed: 0,
            secret: secret.to_vec(),
            contacts: Vec::new(),
            runtime_threads: 1,
            protocol: Config::default(),
            transport: TransportConfig::default(),
        }
    }

    pub fn validate(&self) -> Result<(), StartError> {
        if !valid_id(&self.id) {
            return Err(invalid(
                "id",
                "must be 3..255 bytes of [A-Za-z0-9_.@-] with one '@'",
            ));
        }
        if self.advertise_ip.is_unspecified() || self.advertise_ip.is_multicast() {
            return Err(invalid(
                "advertise_ip",
                "must be a concrete unicast address",
            ));
        }
        if self.advertise_port == Some(0) {
            return Err(invalid("advertise_port", "must be between 1 and 65535"));
        }
        if self.secret.is_empty() || self.secret.len() > 1024 {
            return Err(invalid("secret", "must be 1..1024 bytes"));
        }
        if !(1..=64).contains(&self.runtime_threads) {
            return Err(invalid("runtime_threads", "must be between 1 and 64"));
        }
        for c in &self.contacts {
            if !valid_id(&c.id) {
                return Err(invalid("contacts", "contact id is not a valid node name"));
            }
            if !wire::valid_advertised(&c.addr) {
                return Err(invalid(
                    "contacts",
                    "contact address must be a concrete ip and port",
                ));
            }
        }
        self.protocol.validate()?;
        self.transport.validate()?;
        Ok(())
    }
}

fn invalid(key: &'static str, message: &str) -> StartError {
    StartError::InvalidConfig {
        key,
        message: message.to_string(),
    }
}

/// posix-ish reason a listener could not be bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenError {
    AddrInUse,
    Access,
    AddrNotAvail,
    Inval,
    Unknown,
}

impl ListenError {
    pub fn as_str(self) -> &'static str {
        match self {
            ListenError::AddrInUse => "eaddrinuse",
            ListenError::Access => "eacces",
            ListenError::AddrNotAvail => "eaddrnotavail",
            ListenError::Inval => "einval",
            ListenError::Unknown => "unknown",
        }
    }

    fn from_io(e: &io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::AddrInUse => ListenError::AddrInUse,
            io::ErrorKind::PermissionDenied => ListenError::Access,
            io::ErrorKind::AddrNotAvailable => ListenError::AddrNotAvail,
            io::ErrorKind::InvalidInput => ListenError::Inval,
            _ => ListenError::Unknown,
        }
    }
}

#[derive(Debug)]
pub enum StartError {
    InvalidConfig {
        key: &'static str,
        message: String,
    },
    ListenFailed(ListenError),
    /// The runtime could not be created or another internal failure.
    Internal(String),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::InvalidConfig { key, message } => write!(f, "invalid {key}: {message}"),
            StartError::ListenFailed(e) => write!(f, "listen failed: {}", e.as_str()),
            StartError::Internal(m) => write!(f, "internal: {m}"),
        }
    }
}

impl std::error::Error for StartError {}

impl From<ConfigError> for StartError {
    fn from(e: ConfigError) -> Self {
        StartError::InvalidConfig {
            key: e.key,
            message: e.reason,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Info,
    Warning,
    Error,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Sent once both ends hold the link (see the actor's `confirm.rs`).
    PeerUp(Peer),
    PeerDown(Peer),
    /// Sent just before the `PeerUp` of a peer that held the link before
    /// this node announced it: this end is the last of the two to announce
    /// it, so by now both have. An owner that opens one connection per link
    /// (the libcluster strategy) opens it from this end.
    Connect(hyparview::PeerId),
    /// At most once per `log_interval` per remote IP (a `Log` line counts the
    /// ones left out). A peer that merely closed mid-handshake is no rejection.
    HandshakeRejected {
        addr: SocketAddr,
        reason: RejectReason,
    },
    Log {
        level: LogLevel,
        message: String,
    },
    /// A broadcast from `origin` (never this node), in that origin's order.
    Broadcast {
        origin: hyparview::PeerId,
        payload: plumtree::Bytes,
    },
    /// `count` broadcasts of `origin` will never be delivered here (a gap
    /// not filled within `gap_timeout`, or a buffer limit).
    GapSkipped {
        origin: hyparview::PeerId,
        count: u64,
    },
    /// `count` broadcast frames or messages were dropped: `reason` is
    /// `"queue_full"` (a peer's write queue), or a Plumtree refusal
    /// (`"too_large"`, `"stale_incarnation"`, `"invalid_seq"`, `"forged"`).
    BroadcastDropped {
        reason: &'static str,
        count: u64,
    },
    /// Last event of a server stopped with [`Server::stop`]; the port is free.
    Stopped,
}

/// Receives a server's events on runtime threads, in order.
pub trait EventSink: Send + Sync + 'static {
    /// Returns `false` when the receiver is gone; the server then shuts down.
    fn send(&self, event: Event) -> bool;
}

impl<F: Fn(Event) -> bool + Send + Sync + 'static> EventSink for F {
    fn send(&self, event: Event) -> bool {
        self(event)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Per `Message::kind()`, every name of [`MESSAGE_KINDS`] present.
    pub messages_in: Vec<(&'static str, u64)>,
    pub messages_out: Vec<(&'static str, u64)>,
    /// Currently open authenticated connections, both directions.
    pub connections: u64,
    pub connections_accepted: u64,
    pub dials: u64,
    pub dial_failures: u64,
    pub failures_detected: u64,
    pub heartbeat_timeouts: u64,
    pub handshake_rejections: u64,
    /// Handshakes the other side closed or reset before finishing.
    pub handshakes_closed: u64,
    /// Pending handshakes dropped to make room for newer ones.
    pub handshakes_evicted: u64,
    pub frames_rejected: u64,
    /// Local broadcasts accepted, broadcasts delivered here.
    pub broadcasts_sent: u64,
    pub broadcasts_delivered: u64,
    /// Broadcast sequence numbers skipped over (gaps never filled).
    pub broadcasts_gap_skipped: u64,
    /// Broadcast frames not queued because a connection's broadcast budget
    /// (`broadcast_queue_bytes`) or write queue was full (GRAFTs repair).
    pub broadcast_frames_dropped: u64,
}

impl Counters {
    fn new() -> Self {
        let zero: Vec<(&'static str, u64)> = MESSAGE_KINDS.iter().map(|k| (*k, 0)).collect();
        Counters {
            messages_in: zero.clone(),
            messages_out: zero,
            ..Default::default()
        }
    }

    pub fn message_in(&self, kind: &str) -> u64 {
        self.messages_in
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(0, |e| e.1)
    }

    pub fn message_out(&self, kind: &str) -> u64 {
        self.messages_out
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(0, |e| e.1)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Advertised identity.
    pub local: Peer,
    pub listen_port: u16,
    pub active_view: Vec<Peer>,
    pub passive_view: Vec<Peer>,
    pub counters: Counters,
    /// False once the actor has shut down.
    pub running: bool,
}

type SnapshotCell = Arc<Mutex<Arc<Snapshot>>>;

pub(crate) enum Command {
    Broadcast(plumtree::Bytes),
    Leave,
    Contacts(Vec<Peer>),
    Shutdown { notify: bool },
}

/// Why [`Server::broadcast`] refused a payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BroadcastError {
    /// Over `max_broadcast_size`.
    TooLarge { size: usize, max: usize },
    /// Local broadcasts not yet taken up by the server exceed
    /// `broadcast_queue_bytes`: the caller outpaces the server.
    Overloaded,
    /// The server has stopped.
    Stopped,
}

impl fmt::Display for BroadcastError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BroadcastError::TooLarge { size, max } => {
                write!(
                    f,
                    "payload of {size} bytes exceeds max_broadcast_size {max}"
                )
            }
            BroadcastError::Overloaded => write!(f, "broadcast queue full"),
            BroadcastError::Stopped => write!(f, "server stopped"),
        }
    }
}

impl std::error::Error for BroadcastError {}

/// Handle to a running server. Dropping it shuts the server down (without
/// [`Event::Stopped`]).
pub struct Server {
    cmd: mpsc::UnboundedSender<Command>,
    snapshot: SnapshotCell,
    local: Peer,
    listen_addr: SocketAddr,
    max_broadcast_size: usize,
    broadcast_queue_bytes: usize,
    /// Payload bytes of `Command::Broadcast`s not yet taken by the actor.
    queued: Arc<AtomicUsize>,
}

impl Server {
    /// Binds the listener now (so `EADDRINUSE` is reported here) and spawns
    /// the actor on the shared runtime.
    pub fn start(opts: ServerOptions, sink: Arc<dyn EventSink>) -> Result<Server, StartError> {
        opts.validate()?;
        let rt = runtime(opts.runtime_threads).map_err(|e| StartError::Internal(e.to_string()))?;
        let std_listener = bind(opts.listen)?;
        let listen_addr = std_listener
            .local_addr()
            .map_err(|e| StartError::ListenFailed(ListenError::from_io(&e)))?;
        let advertised = SocketAddr::new(
            opts.advertise_ip,
            opts.advertise_port.unwrap_or(listen_addr.port()),
        );
        let local = Peer::new(opts.id.clone(), advertised, opts.incarnation);
        let node = hyparview::Node::new(local.clone(), opts.protocol.clone(), opts.seed)?;
        // The validated config always builds one; the key map is `validate`'s.
        let tree = plumtree::Plumtree::new(
            local.id.clone(),
            opts.incarnation,
            opts.transport.plumtree(),
            opts.seed ^ 0x9e37_79b9_7f4a_7c15,
        )
        .map_err(|e| StartError::Internal(e.to_string()))?;
        let listener = {
            // Registering with the reactor needs the runtime context.
            let _enter = rt.enter();
            tokio::net::TcpListener::from_std(std_listener)
                .map_err(|e| StartError::ListenFailed(ListenError::from_io(&e)))?
        };
        let snapshot: SnapshotCell = Arc::new(Mutex::new(Arc::new(Snapshot {
            local: local.clone(),
            listen_port: listen_addr.port(),
            active_view: Vec::new(),
            passive_view: Vec::new(),
            counters: Counters::new(),
            running: true,
        })));
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let max_broadcast_size = opts.transport.max_broadcast_size;
        let broadcast_queue_bytes = opts.transport.broadcast_queue_bytes;
        let actor = actor::Actor::new(actor::Init {
            node,
            local: local.clone(),
            secret: opts.secret,
            transport: opts.transport,
            listener,
            listen_port: listen_addr.port(),
            sink: sink.clone(),
            snapshot: snapshot.clone(),
            queued: queued.clone(),
            tree,
        });
        let contacts = opts.contacts;
        let handle = rt.spawn(actor.run(cmd_rx, contacts));
        // A panic in the protocol core kills only the actor task (tokio
        // catches it; its state, sockets and tasks are dropped). Tell the owner.
        let snap = snapshot.clone();
        rt.spawn(async move {
            if let Err(e) = handle.await {
                if e.is_panic() {
                    mark_stopped(&snap);
                    sink.send(Event::Log {
                        level: LogLevel::Error,
                        message: "hyparview server crashed (internal panic)".into(),
                    });
                    sink.send(Event::Stopped);
                }
            }
        });
        Ok(Server {
            cmd: cmd_tx,
            snapshot,
            local,
            listen_addr,
            max_broadcast_size,
            broadcast_queue_bytes,
            queued,
        })
    }

    /// Broadcasts `payload` to every node of the overlay (Plumtree over the
    /// active view). Only enqueues: the bytes the actor has not taken up
    /// yet are bounded by `broadcast_queue_bytes`.
    pub fn broadcast(&self, payload: plumtree::Bytes) -> Result<(), BroadcastError> {
        let size = payload.len();
        if size > self.max_broadcast_size {
            return Err(BroadcastError::TooLarge {
                size,
                max: self.max_broadcast_size,
            });
        }
        let before = self.queued.fetch_add(size, AtomicOrdering::AcqRel);
        if before + size > self.broadcast_queue_bytes {
            self.queued.fetch_sub(size, AtomicOrdering::AcqRel);
            return Err(BroadcastError::Overloaded);
        }
        if self.cmd.send(Command::Broadcast(payload)).is_err() {
            self.queued.fetch_sub(size, AtomicOrdering::AcqRel);
            return Err(BroadcastError::Stopped);
        }
        Ok(())
    }

    /// Checks a payload size without building anything (the NIF calls it
    /// before copying the binary).
    pub fn check_broadcast_size(&self, size: usize) -> Result<(), BroadcastError> {
        if size > self.max_broadcast_size {
            Err(BroadcastError::TooLarge {
                size,
                max: self.max_broadcast_size,
            })
        } else {
            Ok(())
        }
    }

    /// Graceful leave: DISCONNECT every active peer; keeps running until stopped.
    pub fn leave(&self) {
        let _ = self.cmd.send(Command::Leave);
    }

    /// Replace the contacts the node rejoins and probes through
    /// (`Input::Contacts`), e.g. with what discovery found; no restart.
    pub fn set_contacts(&self, contacts: Vec<Peer>) {
        let _ = self.cmd.send(Command::Contacts(contacts));
    }

    /// Shut down; [`Event::Stopped`] follows once every socket is closed.
    /// Idempotent.
    pub fn stop(&self) {
        let _ = self.cmd.send(Command::Shutdown { notify: true });
    }

    /// The last published snapshot (never waits on the actor).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Advertised identity.
    pub fn local(&self) -> &Peer {
        &self.local
    }

    /// The bound listen address (real port when 0 was asked).
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen_addr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.cmd.send(Command::Shutdown { notify: false });
    }
}

fn mark_stopped(cell: &SnapshotCell) {
    let mut g = cell.lock().unwrap_or_else(|e| e.into_inner());
    let mut s = (**g).clone();
    s.running = false;
    *g = Arc::new(s);
}

fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, StartError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let fail = |e: io::Error| StartError::ListenFailed(ListenError::from_io(&e));
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(fail)?;
    // Lets a restarted server rebind while old connections sit in TIME_WAIT.
    socket.set_reuse_address(true).map_err(fail)?;
    socket.set_nonblocking(true).map_err(fail)?;
    socket.bind(&addr.into()).map_err(fail)?;
    socket.listen(1024).map_err(fail)?;
    Ok(socket.into())
}

/// Milliseconds as a `Duration`.
pub(crate) fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_transport_field_has_one_row() {
        // Debug prints `name: value` per field; each field needs a row.
        let fields = format!("{:?}", TransportConfig::default())
            .matches(": ")
            .count();
        assert_eq!(fields, TRANSPORT_KEYS.len());
        let c = TransportConfig::default();
        for k in TRANSPORT_KEYS {
            assert_eq!((k.get)(&c), k.default, "{}", k.name);
            assert!(k.min <= k.default && k.default <= k.max, "{}", k.name);
            assert!(
                config::find(hyparview::config::KEYS, k.name).is_none(),
                "{}",
                k.name
            );
        }
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn transport_rules_name_the_key() {
        let c = TransportConfig {
            write_queue: 0,
            ..TransportConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "write_queue");
        let c = TransportConfig {
            heartbeat_interval: TransportConfig::default().failure_timeout,
            ..TransportConfig::default()
        };
        assert_eq!(c.validate().unwrap_err().key, "failure_timeout");
    }
}
