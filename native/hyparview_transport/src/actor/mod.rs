//! The per-server actor: owns the node, the listener and every connection.
//!
//! Connection tasks (handshake, reader, writer) live in the actor's `JoinSet`,
//! so dropping or shutting down the actor aborts all of them. They talk back
//! through one bounded channel; the actor never awaits anything but its
//! `select!`, so a slow peer can only fill its own queue.

mod alarm;
mod confirm;
mod conns;
mod keepalive;
mod reports;
mod tasks;
mod tree;

use alarm::Alarm;
use confirm::Confirmation;
use keepalive::Liveness;
use tasks::{accept, bump, dial_once, reader_task, writer_task};

use crate::admission::{Pending, Reports, Stage};
use crate::channel::{self, Opener, Sealer};
use crate::handshake::{self, HandshakeError, Identity, Session};
use crate::wire::{self, Frame, ReadError};
use crate::RejectReason;
use crate::{
    ms, Command, Counters, Event, EventSink, LogLevel, Snapshot, SnapshotCell, TransportConfig,
};
use hyparview::{Input, Message, Node, Output, Peer, PeerId, Timer};
use hyparview_link::{
    Activity, AfterFlush, DialFailed, Flush, Idle, LinkConfig, Links, Loss, Origin as LinkOrigin,
    Retire, Route,
};
use plumtree::Plumtree;
use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::Arc;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::{timeout, timeout_at, Instant};

type ConnId = u64;

/// Bound on the per-ip / per-kind rate-limit memories so a scan of many
/// addresses cannot grow them without limit.
const MAX_REMEMBERED: usize = 4096;
/// Capacity of the channel from connection tasks to the actor.
const NET_CHANNEL: usize = 1024;
/// Longest a shutdown waits for queued frames to be written.
const SHUTDOWN_FLUSH_MS: u64 = 200;
/// Extra attempts of a dial whose handshake the other side closed: a
/// listener under a connection flood drops its oldest pending handshakes,
/// and a reachable contact should be retried at once, not after the
/// node's rejoin backoff.
const DIAL_RETRIES: u32 = 2;
/// Plaintext the writer batches into one write (a few records).
const WRITE_BATCH: usize = 4 * channel::MAX_RECORD_PLAIN;

pub(crate) struct Init {
    pub node: Node,
    pub local: Peer,
    pub secret: Vec<u8>,
    pub transport: TransportConfig,
    pub listener: TcpListener,
    pub listen_port: u16,
    pub sink: Arc<dyn EventSink>,
    pub snapshot: SnapshotCell,
    /// Payload bytes of local broadcasts the handle queued and we have not
    /// taken yet (the handle's bound; we subtract what we take).
    pub queued: Arc<AtomicUsize>,
    pub tree: Plumtree<PeerId>,
}

enum Origin {
    /// `token` names its slot among the pending handshakes.
    Accepted {
        token: u64,
    },
    Dialed {
        expected: Peer,
    },
}

enum HandshakeFail {
    Connect,
    Handshake(HandshakeError),
}

enum NetEvent {
    Handshaken {
        origin: Origin,
        remote: SocketAddr,
        result: Result<(TcpStream, Session), HandshakeFail>,
    },
    Frame {
        conn: ConnId,
        frame: Frame,
    },
    ReadClosed {
        conn: ConnId,
        error: ReadError,
    },
    WriteFailed {
        conn: ConnId,
    },
}

enum WriterCmd {
    /// Encoded frames (plaintext; the writer seals them).
    Data(Vec<u8>),
    /// An encoded broadcast frame, counted in the connection's broadcast
    /// budget until the writer takes it.
    Broadcast(Vec<u8>),
    /// Flush what was queued before, half-close, exit.
    Close,
}

/// Which connection is current per peer, the dial queues, request hold,
/// idle retirement and the orphan check are `hyparview_link`'s; a `Conn`
/// is only the IO side of one connection.
struct Conn {
    peer: Peer,
    remote: SocketAddr,
    tx: mpsc::Sender<WriterCmd>,
    reader: AbortHandle,
    writer: AbortHandle,
    /// Shared with the reader, which records every frame here itself so
    /// that keepalives never wake the actor.
    liveness: Arc<Liveness>,
    /// When we last queued a frame on it (ms since `Actor::start`): a link
    /// that carried traffic recently needs no keepalive.
    last_tx: u64,
    /// Bytes of broadcast frames queued to the writer (see `send_tree`).
    broadcast_queued: Arc<AtomicUsize>,
    /// Set once a graceful close started: hard close at this deadline.
    closing: Option<Instant>,
}

/// A peer as the link policy keys it: by id only (its address and
/// incarnation ride along, for dialing it later).
#[derive(Clone, Debug)]
struct Remote(Peer);

impl PartialEq for Remote {
    fn eq(&self, other: &Remote) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for Remote {}

impl PartialOrd for Remote {
    fn partial_cmp(&self, other: &Remote) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Remote {
    fn cmp(&self, other: &Remote) -> Ordering {
        self.0.id.cmp(&other.0.id)
    }
}

/// A timer of either state machine, in the one timer heap.
enum AnyTimer {
    Core(Timer),
    Tree(plumtree::Timer<PeerId>),
}

enum Wake {
    Cmd(Option<Command>),
    Net(NetEvent),
    Accept(std::io::Result<(TcpStream, SocketAddr)>),
    Tick,
    Reaped,
}

pub(crate) struct Actor {
    node: Node,
    local: Peer,
    identity: Arc<Identity>,
    cfg: TransportConfig,
    start: Instant,
    listener: Option<TcpListener>,
    listen_port: u16,
    accept_paused_until: Option<Instant>,
    /// Handshakes in progress on accepted connections.
    pending: Pending<conns::PendingConn>,
    conns: HashMap<ConnId, Conn>,
    links: Links<Remote, ConnId>,
    next_conn: ConnId,
    tasks: JoinSet<()>,
    net_tx: mpsc::Sender<NetEvent>,
    net_rx: mpsc::Receiver<NetEvent>,
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
    timer_tokens: HashMap<u64, AnyTimer>,
    /// Plumtree beside the core: its neighbours are the core's active view.
    tree: Plumtree<PeerId>,
    queued: Arc<AtomicUsize>,
    next_timer: u64,
    /// When a connection next needs `heartbeat` (`plan_keepalive`).
    next_heartbeat: Option<Instant>,
    /// Active peers not announced yet, and those the input being handled
    /// added (see `confirm.rs`).
    unconfirmed: Vec<Peer>,
    fresh: Vec<PeerId>,
    inbox: VecDeque<Input>,
    feeding: bool,
    pending_events: Vec<Event>,
    counters: Counters,
    sink: Arc<dyn EventSink>,
    snapshot: SnapshotCell,
    /// Rate limit of per-address reports (rejections and warnings).
    reports: Reports,
    stop: Option<bool>,
}

impl Actor {
    pub(crate) fn new(init: Init) -> Actor {
        let (net_tx, net_rx) = mpsc::channel(NET_CHANNEL);
        let now = Instant::now();
        let identity = Arc::new(Identity::new(
            &init.local.id,
            init.local.addr,
            init.local.incarnation,
            &init.secret,
        ));
        let pending = Pending::new(
            init.transport.max_unauthenticated,
            init.transport.max_unauthenticated_per_ip,
        );
        let reports = Reports::new(ms(init.transport.log_interval), MAX_REMEMBERED);
        let t = &init.transport;
        let links = Links::new(
            Remote(init.local.clone()),
            LinkConfig {
                idle_timeout: t.idle_timeout,
                request_hold: init.node.config().neighbor_timeout.max(t.idle_timeout),
                replacement_grace: t.connect_timeout + t.handshake_timeout,
            },
        );
        Actor {
            node: init.node,
            local: init.local,
            identity,
            cfg: init.transport,
            start: now,
            listener: Some(init.listener),
            listen_port: init.listen_port,
            accept_paused_until: None,
            pending,
            conns: HashMap::new(),
            links,
            next_conn: 1,
            tasks: JoinSet::new(),
            net_tx,
            net_rx,
            timers: BinaryHeap::new(),
            timer_tokens: HashMap::new(),
            tree: init.tree,
            queued: init.queued,
            next_timer: 0,
            next_heartbeat: None,
            unconfirmed: Vec::new(),
            fresh: Vec::new(),
            inbox: VecDeque::new(),
            feeding: false,
            pending_events: Vec::new(),
            counters: Counters::new(),
            sink: init.sink,
            snapshot: init.snapshot,
            reports,
            stop: None,
        }
    }

    pub(crate) async fn run(
        mut self,
        mut cmd_rx: mpsc::UnboundedReceiver<Command>,
        contacts: Vec<Peer>,
    ) {
        let mut alarm = Alarm::new();
        self.feed(Input::Join { contacts });
        self.plan_keepalive();
        self.publish();
        self.flush_events();
        while self.stop.is_none() {
            alarm.set(self.next_deadline());
            let accepting = self.listener.is_some() && self.accept_paused_until.is_none();
            let wake = tokio::select! {
                c = cmd_rx.recv() => Wake::Cmd(c),
                Some(ev) = self.net_rx.recv() => Wake::Net(ev),
                r = accept(&self.listener), if accepting => Wake::Accept(r),
                _ = alarm.wait() => Wake::Tick,
                Some(_) = self.tasks.join_next(), if !self.tasks.is_empty() => Wake::Reaped,
            };
            match wake {
                Wake::Cmd(Some(Command::Broadcast(payload))) => {
                    self.queued.fetch_sub(payload.len(), AtomicOrdering::AcqRel);
                    let now = self.now_ms();
                    match self.tree.broadcast(now, payload) {
                        Ok(_) => self.counters.broadcasts_sent += 1,
                        // The handle checked the size against the same limit.
                        Err(_) => self.emit(Event::BroadcastDropped {
                            reason: "too_large",
                            count: 1,
                        }),
                    }
                    self.drain_tree();
                }
                Wake::Cmd(Some(Command::Leave)) => self.feed(Input::Leave),
                Wake::Cmd(Some(Command::Contacts(contacts))) => {
                    self.feed(Input::Contacts { contacts })
                }
                Wake::Cmd(Some(Command::Shutdown { notify })) => self.stop = Some(notify),
                // Every handle is gone.
                Wake::Cmd(None) => self.stop = Some(false),
                Wake::Net(ev) => self.on_net(ev),
                Wake::Accept(r) => self.on_accept(r),
                Wake::Tick => {
                    alarm.fired();
                    self.on_tick();
                }
                Wake::Reaped => {}
            }
            self.drain_inbox();
            self.check_orphans();
            if self.stop.is_none() {
                self.plan_keepalive();
                self.publish();
            }
            self.flush_events();
        }
        let notify = self.stop.unwrap_or(false);
        self.listener = None;
        self.flush_on_shutdown().await;
        self.conns.clear();
        self.tasks.shutdown().await;
        self.publish_stopped();
        if notify {
            self.sink.send(Event::Stopped);
        }
    }

    /// Frames already queued (the DISCONNECTs of a `leave` just before a
    /// stop) get a short, bounded chance to reach the wire before every
    /// task is aborted.
    async fn flush_on_shutdown(&mut self) {
        let deadline = Instant::now() + ms(SHUTDOWN_FLUSH_MS);
        let writers: Vec<AbortHandle> = self
            .conns
            .values()
            .map(|c| {
                let _ = c.tx.try_send(WriterCmd::Close);
                c.writer.clone()
            })
            .collect();
        while writers.iter().any(|w| !w.is_finished()) {
            tokio::select! {
                r = self.tasks.join_next() => if r.is_none() { break },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// The earliest thing due, if anything is.
    fn next_deadline(&self) -> Option<Instant> {
        let timer = self.timers.peek().map(|Reverse((t, _))| *t);
        let replacement = self.links.next_deadline().map(|t| self.start + ms(t));
        [
            self.next_heartbeat,
            timer,
            self.accept_paused_until,
            replacement,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ---- driving the node -------------------------------------------------

    /// Feeds an input and executes every output; outputs that produce new
    /// inputs (a failed send) queue them instead of recursing.
    fn feed(&mut self, input: Input) {
        self.inbox.push_back(input);
        self.drain_inbox();
    }

    fn drain_inbox(&mut self) {
        // Re-entrant calls (an output that fails a connection) just leave
        // their input in the inbox for the outer loop.
        if self.feeding {
            return;
        }
        self.feeding = true;
        while let Some(input) = self.inbox.pop_front() {
            let now = self.now_ms();
            let holds_us = confirm::holds_us(&input);
            self.fresh.clear();
            self.node.handle(now, input);
            while let Some(out) = self.node.poll_output() {
                self.exec(out);
            }
            if let Some(id) = holds_us {
                let by = Confirmation::of(&id, &self.fresh);
                self.confirm(&id, by);
            }
        }
        self.feeding = false;
    }

    fn exec(&mut self, out: Output) {
        match out {
            Output::Send { to, message } => self.send(to, message),
            Output::Disconnect { peer } => {
                if let Some(cid) = self.links.disconnect(&Remote(peer)) {
                    self.close_gracefully(cid);
                }
            }
            Output::PeerUp(p) => {
                self.feed_tree(plumtree::Input::NeighborUp(p.id.clone()));
                self.peer_up(p);
            }
            Output::PeerDown(p) => {
                self.links.peer_down(&Remote(p.clone()));
                self.feed_tree(plumtree::Input::NeighborDown(p.id.clone()));
                self.peer_down(p);
            }
            Output::SetTimer { after, timer } => self.set_timer(after, AnyTimer::Core(timer)),
        }
    }

    fn set_timer(&mut self, after: u64, timer: AnyTimer) {
        let seq = self.next_timer;
        self.next_timer += 1;
        self.timers.push(Reverse((Instant::now() + ms(after), seq)));
        self.timer_tokens.insert(seq, timer);
    }

    // ---- driving the broadcast tree ---------------------------------------

    /// Events wait until the snapshot reflecting them is published, so an
    /// owner that reads the snapshot after an event never sees older state.
    fn emit(&mut self, ev: Event) {
        self.pending_events.push(ev);
    }

    fn flush_events(&mut self) {
        for ev in std::mem::take(&mut self.pending_events) {
            if self.stop == Some(false) {
                break;
            }
            if !self.sink.send(ev) {
                self.stop = Some(false);
            }
        }
    }

    fn send(&mut self, to: Peer, message: Message) {
        if to.id == self.local.id {
            // Never dial ourselves (e.g. our own id among the contacts).
            self.inbox.push_back(Input::DialFailed { peer: to });
            return;
        }
        let now = self.now_ms();
        let remote = Remote(to);
        match self.links.send(now, &remote, message) {
            Route::Conn(cid, message) => self.write_msg(cid, message),
            Route::Queued => {}
            Route::Dial if !wire::valid_advertised(&remote.0.addr) => {
                let _ = self.links.dial_failed(now, &remote);
                self.inbox.push_back(Input::DialFailed { peer: remote.0 });
            }
            Route::Dial => self.start_dial(remote.0),
        }
    }

    /// Writes a message the link policy routed to `cid`.
    fn write_msg(&mut self, cid: ConnId, message: Message) {
        let kind = message.kind().name();
        if self.enqueue(cid, &Frame::Msg(message)) {
            bump(&mut self.counters.messages_out, kind);
        }
    }

    /// Writes a dial queue out, then closes if the core disconnected meanwhile.
    fn write_flush(&mut self, f: Flush<ConnId>) {
        for m in f.messages {
            self.write_msg(f.conn, m);
        }
        if f.after == AfterFlush::Close {
            self.close_gracefully(f.conn);
        }
    }

    /// Queues a frame on a connection. A full queue means the peer is not
    /// draining: it is treated as failed instead of buffering more.
    fn enqueue(&mut self, cid: ConnId, frame: &Frame) -> bool {
        let at = self.now_ms();
        let Some(c) = self.conns.get_mut(&cid) else {
            return false;
        };
        match c.tx.try_send(WriterCmd::Data(wire::encode(frame))) {
            Ok(()) => {
                c.last_tx = at;
                true
            }
            Err(_) => {
                let ip = c.remote.ip();
                self.log_once(ip, "write_queue_full", LogLevel::Warning, || {
                    format!("peer at {ip} is not draining its connection; closing it")
                });
                self.fail(cid);
                false
            }
        }
    }

    // ---- connections ------------------------------------------------------

    fn start_dial(&mut self, expected: Peer) {
        self.counters.dials += 1;
        let identity = self.identity.clone();
        let tx = self.net_tx.clone();
        let connect_t = ms(self.cfg.connect_timeout);
        let hs_t = ms(self.cfg.handshake_timeout);
        let max_frame = self.cfg.max_frame_size as usize;
        self.tasks.spawn(async move {
            let addr = expected.addr;
            let mut attempt = 0;
            let result = loop {
                let r = dial_once(&identity, &expected, connect_t, hs_t, max_frame).await;
                match r {
                    Err(HandshakeFail::Handshake(HandshakeError::Closed))
                        if attempt < DIAL_RETRIES =>
                    {
                        // Reachable but dropped mid-handshake (e.g. evicted
                        // by a listener under a flood): retry soon, with
                        // jitter so evicted dialers do not return in step.
                        attempt += 1;
                        let jitter = rand::random::<u64>() % 100;
                        tokio::time::sleep(ms(50 * attempt as u64 + jitter)).await;
                    }
                    r => break r,
                }
            };
            let _ = tx
                .send(NetEvent::Handshaken {
                    origin: Origin::Dialed { expected },
                    remote: addr,
                    result,
                })
                .await;
        });
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        if self.accept_paused_until.is_some_and(|t| t <= now) {
            self.accept_paused_until = None;
        }
        // No replacement came: dial for what waits (the others are left
        // to the orphan check).
        for Remote(peer) in self.links.expire(self.now_ms()) {
            self.start_dial(peer);
        }
        while let Some(Reverse((t, seq))) = self.timers.peek().copied() {
            if t > now || self.stop.is_some() {
                break;
            }
            self.timers.pop();
            match self.timer_tokens.remove(&seq) {
                Some(AnyTimer::Core(timer)) => self.feed(Input::Timer(timer)),
                Some(AnyTimer::Tree(timer)) => self.feed_tree(plumtree::Input::Timer(timer)),
                None => {}
            }
        }
        if self.next_heartbeat.is_some_and(|t| t <= now) && self.stop.is_none() {
            self.heartbeat(now);
        }
    }

    // ---- reporting --------------------------------------------------------
}
