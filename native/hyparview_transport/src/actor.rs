//! The per-server actor: owns the node, the listener and every connection.
//!
//! Connection tasks (handshake, reader, writer) live in the actor's `JoinSet`,
//! so dropping or shutting down the actor aborts all of them. They talk back
//! through one bounded channel; the actor never awaits anything but its
//! `select!`, so a slow peer can only fill its own queue.

use crate::admission::{Pending, Reports};
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
use tokio::time::{timeout, Instant};

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
    /// The dialer of a pending accepted handshake proved the secret.
    Proved {
        token: u64,
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
    last_rx: Instant,
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
    pending: Pending<AbortHandle>,
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
    next_heartbeat: Instant,
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
        let next_heartbeat = now + ms(init.transport.heartbeat_interval);
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
            next_heartbeat,
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
        self.feed(Input::Join { contacts });
        self.publish();
        self.flush_events();
        while self.stop.is_none() {
            let deadline = self.next_deadline();
            let accepting = self.listener.is_some() && self.accept_paused_until.is_none();
            let wake = tokio::select! {
                c = cmd_rx.recv() => Wake::Cmd(c),
                Some(ev) = self.net_rx.recv() => Wake::Net(ev),
                r = accept(&self.listener), if accepting => Wake::Accept(r),
                _ = tokio::time::sleep_until(deadline) => Wake::Tick,
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
                Wake::Tick => self.on_tick(),
                Wake::Reaped => {}
            }
            self.drain_inbox();
            self.check_orphans();
            if self.stop.is_none() {
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

    fn next_deadline(&self) -> Instant {
        let mut d = self.next_heartbeat;
        if let Some(Reverse((t, _))) = self.timers.peek() {
            d = d.min(*t);
        }
        if let Some(t) = self.accept_paused_until {
            d = d.min(t);
        }
        if let Some(t) = self.links.next_deadline() {
            d = d.min(self.start + ms(t));
        }
        d
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
            self.node.handle(now, input);
            while let Some(out) = self.node.poll_output() {
                self.exec(out);
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
                self.emit(Event::PeerUp(p));
            }
            Output::PeerDown(p) => {
                self.links.peer_down(&Remote(p.clone()));
                self.feed_tree(plumtree::Input::NeighborDown(p.id.clone()));
                self.emit(Event::PeerDown(p));
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

    fn feed_tree(&mut self, input: plumtree::Input<PeerId>) {
        let now = self.now_ms();
        self.tree.handle(now, input);
        self.drain_tree();
    }

    /// Executes Plumtree's outputs. None feeds anything back into it
    /// (a broadcast frame that cannot be queued is dropped, not failed).
    fn drain_tree(&mut self) {
        while let Some(out) = self.tree.poll_output() {
            match out {
                plumtree::Output::Send { to, message } => self.send_tree(&to, message),
                plumtree::Output::Deliver {
                    origin, payload, ..
                } => {
                    self.counters.broadcasts_delivered += 1;
                    self.emit(Event::Broadcast { origin, payload });
                }
                plumtree::Output::SetTimer { after, timer } => {
                    self.set_timer(after, AnyTimer::Tree(timer))
                }
                plumtree::Output::Event(plumtree::Event::GapSkipped { origin, count, .. }) => {
                    self.counters.broadcasts_gap_skipped =
                        self.counters.broadcasts_gap_skipped.saturating_add(count);
                    self.emit(Event::GapSkipped { origin, count });
                }
                plumtree::Output::Event(plumtree::Event::Dropped { reason, .. }) => {
                    let reason = match reason {
                        plumtree::DropReason::TooLarge => "too_large",
                        plumtree::DropReason::StaleIncarnation => "stale_incarnation",
                        plumtree::DropReason::InvalidSeq => "invalid_seq",
                        plumtree::DropReason::Forged => "forged",
                    };
                    self.emit(Event::BroadcastDropped { reason, count: 1 });
                }
            }
        }
    }

    /// Queues a Plumtree message on the current connection to `to` (an
    /// active peer). Never dials and never fails a connection: with no
    /// connection, or its broadcast budget or half its write queue used,
    /// the frame is dropped and counted, so broadcast traffic alone cannot
    /// make a slow peer look failed. A dropped GOSSIP becomes an IHAVE
    /// (a few bytes, queued if the write queue has room): the peer grafts
    /// the payload from this node's cache once it drains, as it would from
    /// a lazy link.
    fn send_tree(&mut self, to: &PeerId, message: plumtree::Message<PeerId>) {
        let kind = message.kind();
        let cid = self
            .node
            .active_view()
            .into_iter()
            .find(|p| &p.id == to)
            .map(|p| Remote(p.clone()))
            .and_then(|r| self.links.current(&r));
        let Some(c) = cid.and_then(|cid| self.conns.get(&cid)) else {
            self.tree_frame_dropped();
            return;
        };
        if c.closing.is_some() {
            return;
        }
        let frame = Frame::Broadcast(message);
        let bytes = wire::encode(&frame);
        let len = bytes.len();
        let budget = self.cfg.broadcast_queue_bytes + crate::BROADCAST_OVERHEAD;
        let headroom = c.tx.capacity() > c.tx.max_capacity() / 2;
        let before = c.broadcast_queued.fetch_add(len, AtomicOrdering::AcqRel);
        if headroom && before + len <= budget {
            match c.tx.try_send(WriterCmd::Broadcast(bytes)) {
                Ok(()) => {
                    bump(&mut self.counters.messages_out, kind);
                    return;
                }
                Err(_) => {
                    c.broadcast_queued.fetch_sub(len, AtomicOrdering::AcqRel);
                }
            }
        } else {
            c.broadcast_queued.fetch_sub(len, AtomicOrdering::AcqRel);
        }
        if let Frame::Broadcast(plumtree::Message::Gossip(g)) = frame {
            let announce = plumtree::Message::IHave(vec![plumtree::Announcement {
                id: g.id,
                round: g.round,
            }]);
            let bytes = wire::encode(&Frame::Broadcast(announce));
            if c.tx.try_send(WriterCmd::Data(bytes)).is_ok() {
                bump(&mut self.counters.messages_out, "ihave");
            }
        }
        self.tree_frame_dropped();
    }

    fn tree_frame_dropped(&mut self) {
        self.counters.broadcast_frames_dropped += 1;
        self.emit(Event::BroadcastDropped {
            reason: "queue_full",
            count: 1,
        });
    }

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
        let Some(c) = self.conns.get(&cid) else {
            return false;
        };
        match c.tx.try_send(WriterCmd::Data(wire::encode(frame))) {
            Ok(()) => true,
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

    fn on_accept(&mut self, r: std::io::Result<(TcpStream, SocketAddr)>) {
        match r {
            Ok((stream, remote)) => {
                self.counters.connections_accepted += 1;
                let (token, evicted) = self.pending.make_room(remote.ip());
                for handle in evicted {
                    // Dropping the task closes its socket; the dialer (if it
                    // was a real one) sees the close and retries.
                    handle.abort();
                    self.counters.handshakes_evicted += 1;
                }
                let identity = self.identity.clone();
                let tx = self.net_tx.clone();
                let now = Instant::now();
                let deadline = now + ms(self.cfg.handshake_timeout);
                let preauth = now + ms(self.cfg.preauth_timeout);
                let max_frame = self.cfg.max_frame_size as usize;
                let handle = self.tasks.spawn(async move {
                    let mut stream = stream;
                    let _ = stream.set_nodelay(true);
                    let proved_tx = tx.clone();
                    let result = handshake::accept(
                        &mut stream,
                        &identity,
                        max_frame,
                        preauth,
                        deadline,
                        move || {
                            // Best effort: a full channel only loses the
                            // eviction preference, nothing else.
                            let _ = proved_tx.try_send(NetEvent::Proved { token });
                        },
                    )
                    .await
                    .map(|session| (stream, session))
                    .map_err(HandshakeFail::Handshake);
                    let _ = tx
                        .send(NetEvent::Handshaken {
                            origin: Origin::Accepted { token },
                            remote,
                            result,
                        })
                        .await;
                });
                self.pending.insert(token, remote.ip(), handle);
            }
            Err(e) => {
                // Typically EMFILE: back off briefly instead of spinning.
                let ip = IpAddr::from([0, 0, 0, 0]);
                self.log_once(ip, "accept_error", LogLevel::Error, || {
                    format!("accept failed: {e}")
                });
                self.accept_paused_until = Some(Instant::now() + ms(100));
            }
        }
    }

    fn on_net(&mut self, ev: NetEvent) {
        match ev {
            NetEvent::Handshaken {
                origin,
                remote,
                result,
            } => {
                if let Origin::Accepted { token } = origin {
                    self.pending.remove(token);
                }
                match (origin, result) {
                    (Origin::Accepted { .. }, Ok((stream, session))) => {
                        self.register(stream, session, remote, false);
                    }
                    (Origin::Accepted { .. }, Err(HandshakeFail::Handshake(e))) => {
                        self.handshake_failed(remote, e, None)
                    }
                    (Origin::Accepted { .. }, Err(HandshakeFail::Connect)) => {}
                    (Origin::Dialed { .. }, Ok((stream, session))) => {
                        // The handshake checked that the peer is `expected`.
                        self.register(stream, session, remote, true);
                    }
                    (Origin::Dialed { expected }, Err(fail)) => {
                        self.counters.dial_failures += 1;
                        match fail {
                            HandshakeFail::Handshake(e) => {
                                self.handshake_failed(remote, e, Some(&expected))
                            }
                            HandshakeFail::Connect => {
                                let ip = remote.ip();
                                self.log_once(ip, "dial_failed", LogLevel::Debug, || {
                                    format!("could not connect to {} at {remote}", expected.id)
                                });
                            }
                        }
                        let now = self.now_ms();
                        let remote = Remote(expected);
                        match self.links.dial_failed(now, &remote) {
                            // The peer dialed us meanwhile: deliver over that.
                            DialFailed::Fallback(f) => self.write_flush(f),
                            DialFailed::Failed => self.feed(Input::DialFailed { peer: remote.0 }),
                            DialFailed::Unknown => {}
                        }
                    }
                }
            }
            NetEvent::Proved { token } => self.pending.proved(token),
            NetEvent::Frame { conn, frame } => self.on_frame(conn, frame),
            NetEvent::ReadClosed { conn, error } => {
                if error.is_protocol_violation() {
                    self.counters.frames_rejected += 1;
                    if let Some(c) = self.conns.get(&conn) {
                        let ip = c.remote.ip();
                        let id = c.peer.id.clone();
                        self.log_once(ip, "bad_frame", LogLevel::Warning, || {
                            format!("closing connection to {id}: {error:?}")
                        });
                    }
                }
                match self.conns.get(&conn) {
                    // The writer is still flushing our side of a graceful close; let it.
                    Some(c) if c.closing.is_some() => {
                        self.conns.remove(&conn);
                    }
                    Some(_) => self.fail(conn),
                    None => {}
                }
            }
            NetEvent::WriteFailed { conn } => self.fail(conn),
        }
    }

    fn on_frame(&mut self, cid: ConnId, frame: Frame) {
        let Some(c) = self.conns.get_mut(&cid) else {
            return;
        };
        let now = Instant::now();
        c.last_rx = now;
        match frame {
            Frame::Msg(message) => {
                let at = self.start.elapsed().as_millis() as u64;
                self.links.received(at, cid);
                let from = c.peer.clone();
                bump(&mut self.counters.messages_in, message.kind().name());
                self.feed(Input::Message { from, message });
            }
            Frame::Ping => {
                if c.closing.is_none() {
                    self.enqueue(cid, &Frame::Pong);
                }
            }
            Frame::Pong => {}
            Frame::Broadcast(message) => {
                // Plumtree's neighbours are the active view: from anyone
                // else (a connection kept for a request, or closing) it is
                // ignored, as the crate requires.
                if c.closing.is_none() && self.node.is_active(&c.peer.id) {
                    let from = c.peer.id.clone();
                    bump(&mut self.counters.messages_in, message.kind());
                    self.feed_tree(plumtree::Input::Message { from, message });
                }
            }
            Frame::Superseded => {
                // The peer keeps another connection to us whose handshake we
                // have not finished: retire this one quietly; the policy
                // gives the replacement until its deadline.
                let activity = Activity::of(self.node.is_active(&c.peer.id));
                let at = self.start.elapsed().as_millis() as u64;
                if let Some(cid) = self.links.superseded(at, cid, activity) {
                    self.close_gracefully(cid);
                }
            }
        }
    }

    /// Takes an authenticated connection into use. With two connections to
    /// the same peer the link policy keeps one current (both ends choose
    /// the same); the other is retired and its loss never reported.
    fn register(&mut self, stream: TcpStream, session: Session, remote: SocketAddr, dialed: bool) {
        let Session {
            peer,
            sealer,
            mut opener,
        } = session;
        opener.allow_broadcast(self.cfg.max_broadcast_frame());
        let broadcast_queued = Arc::new(AtomicUsize::new(0));
        let cid = self.next_conn;
        self.next_conn += 1;
        let (r, w) = stream.into_split();
        let (tx, rx) = mpsc::channel(self.cfg.write_queue);
        let reader = self
            .tasks
            .spawn(reader_task(r, opener, cid, self.net_tx.clone()));
        let writer = self.tasks.spawn(writer_task(
            w,
            sealer,
            rx,
            cid,
            self.net_tx.clone(),
            ms(self.cfg.failure_timeout),
            broadcast_queued.clone(),
        ));
        self.conns.insert(
            cid,
            Conn {
                peer: peer.clone(),
                remote,
                tx,
                reader,
                writer,
                last_rx: Instant::now(),
                broadcast_queued,
                closing: None,
            },
        );
        let origin = if dialed {
            LinkOrigin::Dialed
        } else {
            LinkOrigin::Accepted
        };
        let now = self.now_ms();
        let incarnation = peer.incarnation;
        let r = self
            .links
            .register(now, cid, Remote(peer), incarnation, origin);
        match r.retired {
            // The old process is gone: drop its connection outright.
            Some((old, Retire::Drop)) => self.hard_close(old),
            Some((old, Retire::Supersede)) => self.retire_duplicate(old),
            None => {}
        }
        if let Some(f) = r.flush {
            self.write_flush(f);
        }
    }

    /// Closes a duplicate (not current) connection, telling the other end
    /// first so that it does not take the close for a failure.
    fn retire_duplicate(&mut self, cid: ConnId) {
        if self.enqueue(cid, &Frame::Superseded) {
            self.close_gracefully(cid);
        }
    }

    /// Reports the active peers the link policy finds without any link
    /// (see `Links::orphans`).
    fn check_orphans(&mut self) {
        let active: Vec<Remote> = self
            .node
            .active_view()
            .into_iter()
            .map(|p| Remote(p.clone()))
            .collect();
        for Remote(peer) in self.links.orphans(active.iter()) {
            self.counters.failures_detected += 1;
            self.inbox.push_back(Input::ConnectionLost { peer });
        }
        self.drain_inbox();
    }

    /// Flush, half-close, keep reading until the peer closes or the deadline.
    fn close_gracefully(&mut self, cid: ConnId) {
        let Some(c) = self.conns.get_mut(&cid) else {
            return;
        };
        if c.closing.is_some() {
            return;
        }
        c.closing = Some(Instant::now() + ms(self.cfg.failure_timeout));
        let queued = c.tx.try_send(WriterCmd::Close).is_ok();
        self.links.closing(cid);
        if !queued {
            self.hard_close(cid);
        }
    }

    fn hard_close(&mut self, cid: ConnId) {
        if let Some(c) = self.conns.remove(&cid) {
            c.reader.abort();
            c.writer.abort();
            self.links.closing(cid);
        }
    }

    /// The connection broke. The link policy decides whether the node hears
    /// of it (only the current connection of an active peer).
    fn fail(&mut self, cid: ConnId) {
        let Some(c) = self.conns.get(&cid) else {
            return;
        };
        let peer = c.peer.clone();
        let loss = self
            .links
            .closed(cid, Activity::of(self.node.is_active(&peer.id)));
        self.hard_close(cid);
        if loss == Loss::Report {
            self.counters.failures_detected += 1;
            self.inbox.push_back(Input::ConnectionLost { peer });
            self.drain_inbox();
        }
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
        if now >= self.next_heartbeat && self.stop.is_none() {
            self.next_heartbeat = now + ms(self.cfg.heartbeat_interval);
            self.heartbeat(now);
            self.flush_reports(now);
        }
    }

    /// Pings active peers, detects silent (half-open) ones, retires idle
    /// connections to peers outside the active view and overdue closes.
    fn heartbeat(&mut self, now: Instant) {
        let failure = ms(self.cfg.failure_timeout);
        let idle = ms(self.cfg.idle_timeout);
        let at = self.now_ms();
        let mut ping = Vec::new();
        let mut timed_out = Vec::new();
        let mut retire = Vec::new();
        let mut overdue = Vec::new();
        for (&cid, c) in &self.conns {
            if let Some(deadline) = c.closing {
                if now >= deadline {
                    overdue.push(cid);
                }
                continue;
            }
            let activity = Activity::of(self.node.is_active(&c.peer.id));
            if self.links.peer_of(cid).is_none() {
                // Not current and not closing (not expected): retire once
                // silent for the idle timeout.
                if now.duration_since(c.last_rx) >= idle {
                    retire.push(cid);
                }
            } else if activity == Activity::Active {
                if now.duration_since(c.last_rx) >= failure {
                    timed_out.push(cid);
                } else {
                    ping.push(cid);
                }
            } else if self.links.idle(at, cid, activity) == Idle::Retire {
                retire.push(cid);
            }
        }
        for cid in overdue {
            self.hard_close(cid);
        }
        for cid in retire {
            self.close_gracefully(cid);
        }
        for cid in timed_out {
            self.counters.heartbeat_timeouts += 1;
            if let Some(c) = self.conns.get(&cid) {
                let (ip, id) = (c.remote.ip(), c.peer.id.clone());
                self.log_once(ip, "heartbeat_timeout", LogLevel::Info, || {
                    format!("no heartbeat from {id}; closing connection")
                });
            }
            self.fail(cid);
        }
        for cid in ping {
            self.enqueue(cid, &Frame::Ping);
        }
    }

    // ---- reporting --------------------------------------------------------

    /// A handshake that did not complete. A close is no verdict on the
    /// other side (a peer killed mid-handshake, a listener shedding load):
    /// counted, logged at debug, never reported as a rejection.
    fn handshake_failed(&mut self, remote: SocketAddr, e: HandshakeError, dialed: Option<&Peer>) {
        match e {
            HandshakeError::Closed => {
                self.counters.handshakes_closed += 1;
                self.log_once(
                    remote.ip(),
                    "handshake_closed",
                    LogLevel::Debug,
                    || match dialed {
                        Some(p) => format!(
                            "{remote} ({}) closed the connection during the handshake \
                             (overloaded, or it does not hold our secret)",
                            p.id
                        ),
                        None => format!("{remote} closed the connection during the handshake"),
                    },
                );
            }
            HandshakeError::Rejected(reason) => self.rejected(remote, reason),
        }
    }

    fn rejected(&mut self, remote: SocketAddr, reason: RejectReason) {
        self.counters.handshake_rejections += 1;
        if !self
            .reports
            .allow(Instant::now(), remote.ip(), reason.as_str())
        {
            return;
        }
        if reason == RejectReason::BadVersion {
            self.emit(Event::Log {
                level: LogLevel::Warning,
                message: format!(
                    "{remote} speaks another hyparview protocol version (this node speaks \
                     version {}); upgrade the older node",
                    wire::VERSION
                ),
            });
        }
        self.emit(Event::HandshakeRejected {
            addr: remote,
            reason,
        });
    }

    /// Logs at most once per `log_interval` per address and kind; the
    /// occurrences left out are reported with a count by `flush_reports`.
    fn log_once(
        &mut self,
        ip: IpAddr,
        kind: &'static str,
        level: LogLevel,
        msg: impl FnOnce() -> String,
    ) {
        if self.reports.allow(Instant::now(), ip, kind) {
            self.emit(Event::Log {
                level,
                message: msg(),
            });
        }
    }

    fn flush_reports(&mut self, now: Instant) {
        let secs = self.cfg.log_interval / 1000;
        for (ip, kind, n) in self.reports.flush(now) {
            let from = if ip == crate::admission::MANY {
                "many addresses".to_string()
            } else {
                ip.to_string()
            };
            self.emit(Event::Log {
                level: LogLevel::Info,
                message: format!("{n} more {kind} from {from} in the last {secs} s"),
            });
        }
    }

    fn publish(&mut self) {
        self.counters.connections = self.conns.len() as u64;
        let snap = Snapshot {
            local: self.local.clone(),
            listen_port: self.listen_port,
            active_view: self.node.active_view().into_iter().cloned().collect(),
            passive_view: self.node.passive_view().into_iter().cloned().collect(),
            counters: self.counters.clone(),
            running: true,
        };
        *self.snapshot.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(snap);
    }

    fn publish_stopped(&mut self) {
        self.counters.connections = 0;
        let mut g = self.snapshot.lock().unwrap_or_else(|e| e.into_inner());
        let mut s = (**g).clone();
        s.counters = self.counters.clone();
        s.running = false;
        *g = Arc::new(s);
    }
}

fn bump(v: &mut Vec<(&'static str, u64)>, kind: &'static str) {
    match v.iter_mut().find(|(k, _)| *k == kind) {
        Some(e) => e.1 += 1,
        None => v.push((kind, 1)),
    }
}

async fn accept(l: &Option<TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match l {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// Connects and runs the dialer's handshake once.
async fn dial_once(
    identity: &Identity,
    expected: &Peer,
    connect_t: std::time::Duration,
    hs_t: std::time::Duration,
    max_frame: usize,
) -> Result<(TcpStream, Session), HandshakeFail> {
    let mut stream = match timeout(connect_t, TcpStream::connect(expected.addr)).await {
        Ok(Ok(s)) => s,
        _ => return Err(HandshakeFail::Connect),
    };
    let _ = stream.set_nodelay(true);
    let deadline = Instant::now() + hs_t;
    handshake::dial(
        &mut stream,
        identity,
        Some(&expected.id),
        max_frame,
        deadline,
    )
    .await
    .map(|session| (stream, session))
    .map_err(HandshakeFail::Handshake)
}

async fn reader_task(
    r: OwnedReadHalf,
    mut opener: Opener,
    conn: ConnId,
    tx: mpsc::Sender<NetEvent>,
) {
    // Records larger than the buffer are read straight into `record`.
    let mut r = BufReader::new(r);
    let mut record = Vec::new();
    loop {
        match channel::read_frame(&mut r, &mut opener, &mut record).await {
            Ok(frame) => {
                // Awaiting here is the backpressure on a fast sender.
                if tx.send(NetEvent::Frame { conn, frame }).await.is_err() {
                    return;
                }
            }
            Err(error) => {
                let _ = tx.send(NetEvent::ReadClosed { conn, error }).await;
                return;
            }
        }
    }
}

/// Seals what the actor queued and writes it. Frames queued together go out
/// in as few records and writes as fit `WRITE_BATCH`.
async fn writer_task(
    mut w: OwnedWriteHalf,
    mut sealer: Sealer,
    mut rx: mpsc::Receiver<WriterCmd>,
    conn: ConnId,
    tx: mpsc::Sender<NetEvent>,
    write_timeout: std::time::Duration,
    broadcast_queued: Arc<AtomicUsize>,
) {
    let mut plain = Vec::new();
    let mut out = Vec::new();
    while let Some(cmd) = rx.recv().await {
        let take = |cmd: WriterCmd, plain: &mut Vec<u8>| match cmd {
            WriterCmd::Data(bytes) => {
                plain.extend_from_slice(&bytes);
                false
            }
            WriterCmd::Broadcast(bytes) => {
                broadcast_queued.fetch_sub(bytes.len(), AtomicOrdering::AcqRel);
                plain.extend_from_slice(&bytes);
                false
            }
            WriterCmd::Close => true,
        };
        let mut close = take(cmd, &mut plain);
        while !close && plain.len() < WRITE_BATCH {
            match rx.try_recv() {
                Ok(cmd) => close = take(cmd, &mut plain),
                Err(_) => break,
            }
        }
        out.clear();
        let sealed = sealer.seal(&plain, &mut out);
        plain.clear();
        if sealed.is_err() || !matches!(timeout(write_timeout, w.write_all(&out)).await, Ok(Ok(())))
        {
            let _ = tx.send(NetEvent::WriteFailed { conn }).await;
            return;
        }
        if close {
            let _ = timeout(write_timeout, async {
                let _ = w.flush().await;
                let _ = w.shutdown().await;
            })
            .await;
            return;
        }
    }
}
