//! tokio TCP transport and actor that drive the HyParView state machine.
//!
//! One process-wide multi-thread runtime (threads named `hyparview-rt`) hosts
//! every [`Server`]. A server is an actor task that owns its
//! [`hyparview::Node`], listener and connections; the handle only enqueues
//! commands (unbounded channel, never blocks) and reads the snapshot the
//! actor republishes after every processed input. Nothing here blocks or
//! joins on the caller's thread, so the NIF can call it from a scheduler.

mod actor;
pub mod wire;

use hyparview::{Config, Peer};
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

pub use wire::{valid_id, RejectReason};

/// Message kinds (from `Message::kind()`) with a counter in [`Counters`].
pub const MESSAGE_KINDS: [&str; 7] = [
    "join",
    "forward_join",
    "neighbor",
    "neighbor_reply",
    "disconnect",
    "shuffle",
    "shuffle_reply",
];

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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportConfig {
    /// Ping period on connections to active peers (ms).
    pub heartbeat_interval: u64,
    /// No frame from an active peer for this long = failed (ms).
    pub failure_timeout: u64,
    pub connect_timeout: u64,
    pub handshake_timeout: u64,
    pub max_frame_size: u32,
    /// A connection to a peer outside the active view is closed after being
    /// unused for this long (ms).
    pub idle_timeout: u64,
    /// Frames queued per connection before the peer counts as failed.
    pub write_queue: usize,
    /// Concurrent accepted connections still in their handshake.
    pub max_unauthenticated: usize,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            heartbeat_interval: 1000,
            failure_timeout: 5000,
            connect_timeout: 2000,
            handshake_timeout: 2000,
            max_frame_size: 65536,
            idle_timeout: 2000,
            write_queue: 1024,
            max_unauthenticated: 64,
        }
    }
}

impl TransportConfig {
    pub fn validate(&self) -> Result<(), StartError> {
        let ms = |key: &'static str, v: u64| {
            if v == 0 || v > 3_600_000 {
                Err(invalid(key, "must be between 1 and 3600000 ms"))
            } else {
                Ok(())
            }
        };
        ms("heartbeat_interval", self.heartbeat_interval)?;
        ms("failure_timeout", self.failure_timeout)?;
        ms("connect_timeout", self.connect_timeout)?;
        ms("handshake_timeout", self.handshake_timeout)?;
        ms("idle_timeout", self.idle_timeout)?;
        if self.failure_timeout <= self.heartbeat_interval {
            return Err(invalid(
                "failure_timeout",
                "must be greater than heartbeat_interval",
            ));
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.max_frame_size) {
            return Err(invalid(
                "max_frame_size",
                "must be between 1024 and 16777216 bytes",
            ));
        }
        if self.write_queue == 0 {
            return Err(invalid("write_queue", "must be positive"));
        }
        if self.max_unauthenticated == 0 {
            return Err(invalid("max_unauthenticated", "must be positive"));
        }
        Ok(())
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
        self.protocol
            .validate()
            .map_err(|e| StartError::InvalidConfig {
                key: e.key,
                message: e.reason,
            })?;
        self.transport.validate()
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    Debug,
    Info,
    Warning,
    Error,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    PeerUp(Peer),
    PeerDown(Peer),
    /// At most once per remote IP per server.
    HandshakeRejected {
        addr: SocketAddr,
        reason: RejectReason,
    },
    Log {
        level: LogLevel,
        message: String,
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
    pub frames_rejected: u64,
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
    Leave,
    Contacts(Vec<Peer>),
    Shutdown { notify: bool },
}

/// Handle to a running server. Dropping it shuts the server down (without
/// [`Event::Stopped`]).
pub struct Server {
    cmd: mpsc::UnboundedSender<Command>,
    snapshot: SnapshotCell,
    local: Peer,
    listen_addr: SocketAddr,
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
        let node =
            hyparview::Node::new(local.clone(), opts.protocol.clone(), opts.seed).map_err(|e| {
                StartError::InvalidConfig {
                    key: e.key,
                    message: e.reason,
                }
            })?;
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
        let actor = actor::Actor::new(actor::Init {
            node,
            local: local.clone(),
            secret: opts.secret,
            transport: opts.transport,
            listener,
            listen_port: listen_addr.port(),
            sink: sink.clone(),
            snapshot: snapshot.clone(),
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
        })
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
