//! The per-server actor: owns the node, the listener and every connection.
//!
//! Connection tasks (handshake, reader, writer) live in the actor's `JoinSet`,
//! so dropping or shutting down the actor aborts all of them. They talk back
//! through one bounded channel; the actor never awaits anything but its
//! `select!`, so a slow peer can only fill its own queue.

use crate::wire::{self, Frame, Identity, ReadError, RejectReason, Role};
use crate::{
    ms, Command, Counters, Event, EventSink, LogLevel, Snapshot, SnapshotCell, TransportConfig,
};
use hyparview::{Input, Message, Node, Output, Peer, PeerId, Timer};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
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
/// Messages kept for a peer while its dial is in progress.
const MAX_DIAL_QUEUE: usize = 256;
/// Capacity of the channel from connection tasks to the actor.
const NET_CHANNEL: usize = 1024;
/// Longest a shutdown waits for queued frames to be written.
const SHUTDOWN_FLUSH_MS: u64 = 200;

pub(crate) struct Init {
    pub node: Node,
    pub local: Peer,
    pub secret: Vec<u8>,
    pub transport: TransportConfig,
    pub listener: TcpListener,
    pub listen_port: u16,
    pub sink: Arc<dyn EventSink>,
    pub snapshot: SnapshotCell,
}

enum Origin {
    Accepted,
    Dialed { expected: Peer },
}

enum HandshakeFail {
    Connect,
    Rejected(RejectReason),
}

enum NetEvent {
    Handshaken {
        origin: Origin,
        remote: SocketAddr,
        result: Result<(TcpStream, Peer), HandshakeFail>,
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
    Data(Vec<u8>),
    /// Flush what was queued before, half-close, exit.
    Close,
}

struct Conn {
    peer: Peer,
    remote: SocketAddr,
    /// True when we dialed it (used to pick one of two simultaneous connections).
    dialed: bool,
    tx: mpsc::Sender<WriterCmd>,
    reader: AbortHandle,
    writer: AbortHandle,
    last_rx: Instant,
    last_used: Instant,
    /// Not retired as idle before this: a request (JOIN, NEIGHBOR) sent on
    /// it may still be answered, and over a slow link the answer can take
    /// longer than the idle timeout.
    hold_until: Instant,
    /// Set once a graceful close started: hard close at this deadline.
    closing: Option<Instant>,
}

#[derive(Default)]
struct Dial {
    queue: Vec<Message>,
    close_after: bool,
    /// No dial started: the messages wait for the replacement of a
    /// superseded connection (see `Actor::awaiting`).
    parked: bool,
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
    unauthenticated: usize,
    conns: HashMap<ConnId, Conn>,
    by_peer: HashMap<PeerId, ConnId>,
    dialing: HashMap<PeerId, Dial>,
    next_conn: ConnId,
    tasks: JoinSet<()>,
    net_tx: mpsc::Sender<NetEvent>,
    net_rx: mpsc::Receiver<NetEvent>,
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
    timer_tokens: HashMap<u64, Timer>,
    next_timer: u64,
    next_heartbeat: Instant,
    inbox: VecDeque<Input>,
    feeding: bool,
    pending_events: Vec<Event>,
    counters: Counters,
    sink: Arc<dyn EventSink>,
    snapshot: SnapshotCell,
    rejected_ips: HashSet<IpAddr>,
    /// Active peers already reported lost for lack of a connection.
    orphans: HashSet<PeerId>,
    /// Active peers whose current connection the peer superseded: the
    /// connection it kept is still in our handshake. Not reported lost
    /// before the deadline; dialed at the deadline if anything waits.
    awaiting: HashMap<PeerId, (Peer, Instant)>,
    logged: HashSet<(IpAddr, &'static str)>,
    stop: Option<bool>,
}

impl Actor {
    pub(crate) fn new(init: Init) -> Actor {
        let (net_tx, net_rx) = mpsc::channel(NET_CHANNEL);
        let now = Instant::now();
        let identity = Arc::new(Identity {
            id: init.local.id.to_string(),
            addr: init.local.addr,
            incarnation: init.local.incarnation,
            secret: init.secret,
        });
        let next_heartbeat = now + ms(init.transport.heartbeat_interval);
        Actor {
            node: init.node,
            local: init.local,
            identity,
            cfg: init.transport,
            start: now,
            listener: Some(init.listener),
            listen_port: init.listen_port,
            accept_paused_until: None,
            unauthenticated: 0,
            conns: HashMap::new(),
            by_peer: HashMap::new(),
            dialing: HashMap::new(),
            next_conn: 1,
            tasks: JoinSet::new(),
            net_tx,
            net_rx,
            timers: BinaryHeap::new(),
            timer_tokens: HashMap::new(),
            next_timer: 0,
            next_heartbeat,
            inbox: VecDeque::new(),
            feeding: false,
            pending_events: Vec::new(),
            counters: Counters::new(),
            sink: init.sink,
            snapshot: init.snapshot,
            rejected_ips: HashSet::new(),
            orphans: HashSet::new(),
            awaiting: HashMap::new(),
            logged: HashSet::new(),
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
        for (_, t) in self.awaiting.values() {
            d = d.min(*t);
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
                if let Some(d) = self.dialing.get_mut(&peer.id) {
                    d.close_after = true;
                } else if let Some(&cid) = self.by_peer.get(&peer.id) {
                    self.close_gracefully(cid);
                }
            }
            Output::PeerUp(p) => self.emit(Event::PeerUp(p)),
            Output::PeerDown(p) => self.emit(Event::PeerDown(p)),
            Output::SetTimer { after, timer } => {
                let seq = self.next_timer;
                self.next_timer += 1;
                self.timers.push(Reverse((Instant::now() + ms(after), seq)));
                self.timer_tokens.insert(seq, timer);
            }
        }
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
        if let Some(&cid) = self.by_peer.get(&to.id) {
            self.enqueue_msg(cid, message);
            return;
        }
        if let Some(d) = self.dialing.get_mut(&to.id) {
            if d.queue.len() < MAX_DIAL_QUEUE {
                d.queue.push(message);
            }
            d.close_after = false;
            return;
        }
        if self.awaiting.contains_key(&to.id) {
            // Its replacement connection is on the way: no extra dial.
            self.dialing.insert(
                to.id.clone(),
                Dial {
                    queue: vec![message],
                    close_after: false,
                    parked: true,
                },
            );
            return;
        }
        if !wire::valid_advertised(&to.addr) {
            self.inbox.push_back(Input::DialFailed { peer: to });
            return;
        }
        self.dialing.insert(
            to.id.clone(),
            Dial {
                queue: vec![message],
                close_after: false,
                parked: false,
            },
        );
        self.start_dial(to);
    }

    fn enqueue_msg(&mut self, cid: ConnId, message: Message) {
        let kind = message.kind();
        let request = matches!(message, Message::Join | Message::Neighbor { .. });
        let hold = ms(self
            .node
            .config()
            .neighbor_timeout
            .max(self.cfg.idle_timeout));
        if self.enqueue(cid, &Frame::Msg(message)) {
            bump(&mut self.counters.messages_out, kind);
            if let Some(c) = self.conns.get_mut(&cid) {
                let now = Instant::now();
                c.last_used = now;
                if request {
                    c.hold_until = c.hold_until.max(now + hold);
                }
            }
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
        self.tasks.spawn(async move {
            let addr = expected.addr;
            let result = match timeout(connect_t, TcpStream::connect(addr)).await {
                Ok(Ok(mut stream)) => {
                    let _ = stream.set_nodelay(true);
                    match timeout(
                        hs_t,
                        wire::handshake(&mut stream, &identity, Role::Dialer, Some(&expected.id)),
                    )
                    .await
                    {
                        Ok(Ok(peer)) => Ok((stream, peer)),
                        Ok(Err(r)) => Err(HandshakeFail::Rejected(r)),
                        Err(_) => Err(HandshakeFail::Rejected(RejectReason::Timeout)),
                    }
                }
                _ => Err(HandshakeFail::Connect),
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
                if self.unauthenticated >= self.cfg.max_unauthenticated {
                    // Closing at once keeps a connection flood from holding fds/memory.
                    drop(stream);
                    self.log_once(remote.ip(), "unauth_limit", LogLevel::Warning, || {
                        "too many connections in handshake; dropping new ones".to_string()
                    });
                    return;
                }
                self.unauthenticated += 1;
                let identity = self.identity.clone();
                let tx = self.net_tx.clone();
                let hs_t = ms(self.cfg.handshake_timeout);
                self.tasks.spawn(async move {
                    let mut stream = stream;
                    let _ = stream.set_nodelay(true);
                    let result = match timeout(
                        hs_t,
                        wire::handshake(&mut stream, &identity, Role::Acceptor, None),
                    )
                    .await
                    {
                        Ok(Ok(peer)) => Ok((stream, peer)),
                        Ok(Err(r)) => Err(HandshakeFail::Rejected(r)),
                        Err(_) => Err(HandshakeFail::Rejected(RejectReason::Timeout)),
                    };
                    let _ = tx
                        .send(NetEvent::Handshaken {
                            origin: Origin::Accepted,
                            remote,
                            result,
                        })
                        .await;
                });
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
                if let Origin::Accepted = origin {
                    self.unauthenticated = self.unauthenticated.saturating_sub(1);
                }
                match (origin, result) {
                    (Origin::Accepted, Ok((stream, peer))) => {
                        self.register(stream, peer, remote, false);
                    }
                    (Origin::Accepted, Err(HandshakeFail::Rejected(r))) => self.rejected(remote, r),
                    (Origin::Accepted, Err(HandshakeFail::Connect)) => {}
                    (Origin::Dialed { expected }, Ok((stream, peer))) => {
                        self.register(stream, peer, remote, true);
                        self.flush_dial(&expected.id);
                    }
                    (Origin::Dialed { expected }, Err(fail)) => {
                        self.counters.dial_failures += 1;
                        match fail {
                            HandshakeFail::Rejected(r) => self.rejected(remote, r),
                            HandshakeFail::Connect => {
                                let ip = remote.ip();
                                self.log_once(ip, "dial_failed", LogLevel::Debug, || {
                                    format!("could not connect to {} at {remote}", expected.id)
                                });
                            }
                        }
                        if self.by_peer.contains_key(&expected.id) {
                            // The peer dialed us meanwhile: deliver over that.
                            self.flush_dial(&expected.id);
                        } else {
                            self.dialing.remove(&expected.id);
                            self.feed(Input::DialFailed { peer: expected });
                        }
                    }
                }
            }
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
                c.last_used = now;
                let from = c.peer.clone();
                bump(&mut self.counters.messages_in, message.kind());
                self.feed(Input::Message { from, message });
            }
            Frame::Ping => {
                if c.closing.is_none() {
                    self.enqueue(cid, &Frame::Pong);
                }
            }
            Frame::Pong => {}
            Frame::Superseded => {
                let peer = c.peer.clone();
                if self.by_peer.get(&peer.id) == Some(&cid) {
                    // The peer keeps another connection to us whose handshake
                    // we have not finished: retire this one quietly and give
                    // the replacement until the deadline.
                    self.close_gracefully(cid);
                    if self.node.is_active(&peer.id) {
                        let deadline =
                            now + ms(self.cfg.connect_timeout) + ms(self.cfg.handshake_timeout);
                        self.awaiting.insert(peer.id.clone(), (peer, deadline));
                    }
                }
            }
            Frame::Hello(_) | Frame::Auth { .. } => {
                self.counters.frames_rejected += 1;
                let ip = c.remote.ip();
                self.log_once(ip, "bad_frame", LogLevel::Warning, || {
                    "handshake frame after the handshake; closing".to_string()
                });
                self.fail(cid);
            }
        }
    }

    /// Takes an authenticated connection into use. With two connections to
    /// the same peer id, exactly one stays current; both ends choose the same
    /// one (higher incarnation, else the one dialed by the lower id, else the
    /// newer) so simultaneous dials converge. The loser is closed gracefully
    /// and its loss never reported.
    fn register(&mut self, stream: TcpStream, peer: Peer, remote: SocketAddr, dialed: bool) {
        let cid = self.next_conn;
        self.next_conn += 1;
        let (r, w) = stream.into_split();
        let (tx, rx) = mpsc::channel(self.cfg.write_queue);
        let reader = self.tasks.spawn(reader_task(
            r,
            cid,
            self.net_tx.clone(),
            self.cfg.max_frame_size as usize,
        ));
        let writer = self.tasks.spawn(writer_task(
            w,
            rx,
            cid,
            self.net_tx.clone(),
            ms(self.cfg.failure_timeout),
        ));
        let now = Instant::now();
        self.conns.insert(
            cid,
            Conn {
                peer: peer.clone(),
                remote,
                dialed,
                tx,
                reader,
                writer,
                last_rx: now,
                last_used: now,
                hold_until: now,
                closing: None,
            },
        );
        self.orphans.remove(&peer.id);
        self.awaiting.remove(&peer.id);
        self.choose_current(cid, &peer, dialed);
        if self.dialing.get(&peer.id).is_some_and(|d| d.parked) {
            // Messages held for the replacement of a superseded connection.
            self.flush_dial(&peer.id);
        }
    }

    fn choose_current(&mut self, cid: ConnId, peer: &Peer, dialed: bool) {
        let Some(&old) = self.by_peer.get(&peer.id) else {
            self.by_peer.insert(peer.id.clone(), cid);
            return;
        };
        let (old_inc, old_dialed) = match self.conns.get(&old) {
            Some(o) => (o.peer.incarnation, o.dialed),
            None => {
                self.by_peer.insert(peer.id.clone(), cid);
                return;
            }
        };
        let we_are_lower = self.local.id < peer.id;
        let new_wins = if peer.incarnation != old_inc {
            peer.incarnation > old_inc
        } else if dialed != old_dialed {
            dialed == we_are_lower
        } else {
            true
        };
        if !new_wins {
            self.retire_duplicate(cid);
            return;
        }
        self.by_peer.insert(peer.id.clone(), cid);
        if peer.incarnation > old_inc {
            // The old process is gone: drop its connection outright.
            self.hard_close(old);
        } else {
            self.retire_duplicate(old);
        }
    }

    /// Closes a duplicate (not current) connection, telling the other end
    /// first so that it does not take the close for a failure.
    fn retire_duplicate(&mut self, cid: ConnId) {
        if self.enqueue(cid, &Frame::Superseded) {
            self.close_gracefully(cid);
        }
    }

    /// An active peer must have a connection (or a dial under way): without
    /// one there are no heartbeats and its loss would never be noticed. This
    /// happens when an answer arrives on a connection that was already being
    /// retired (e.g. a NEIGHBOR reply slower than the idle timeout); the
    /// other end sees that connection close, so report the link lost here
    /// too and keep both views symmetric. Reported once per episode.
    fn check_orphans(&mut self) {
        let node = &self.node;
        self.orphans.retain(|id| node.is_active(id));
        let orphans: Vec<Peer> = node
            .active_view()
            .into_iter()
            .filter(|p| {
                !self.by_peer.contains_key(&p.id)
                    && !self.dialing.contains_key(&p.id)
                    && !self.awaiting.contains_key(&p.id)
                    && !self.orphans.contains(&p.id)
            })
            .cloned()
            .collect();
        for peer in orphans {
            self.orphans.insert(peer.id.clone());
            self.counters.failures_detected += 1;
            self.inbox.push_back(Input::ConnectionLost { peer });
        }
        self.drain_inbox();
    }

    /// Sends what was queued while dialing `id` on whatever connection is now
    /// current for it.
    fn flush_dial(&mut self, id: &PeerId) {
        let Some(d) = self.dialing.remove(id) else {
            return;
        };
        let Some(&cid) = self.by_peer.get(id) else {
            return;
        };
        for m in d.queue {
            self.enqueue_msg(cid, m);
        }
        if d.close_after {
            if let Some(&cid) = self.by_peer.get(id) {
                self.close_gracefully(cid);
            }
        }
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
        let id = c.peer.id.clone();
        let queued = c.tx.try_send(WriterCmd::Close).is_ok();
        if self.by_peer.get(&id) == Some(&cid) {
            self.by_peer.remove(&id);
        }
        if !queued {
            self.hard_close(cid);
        }
    }

    fn hard_close(&mut self, cid: ConnId) {
        if let Some(c) = self.conns.remove(&cid) {
            c.reader.abort();
            c.writer.abort();
            if self.by_peer.get(&c.peer.id) == Some(&cid) {
                self.by_peer.remove(&c.peer.id);
            }
        }
    }

    /// The connection broke. Only the loss of the current connection of an
    /// active peer is reported to the node.
    fn fail(&mut self, cid: ConnId) {
        let Some(c) = self.conns.get(&cid) else {
            return;
        };
        let peer = c.peer.clone();
        let current = self.by_peer.get(&peer.id) == Some(&cid);
        self.hard_close(cid);
        if current && self.node.is_active(&peer.id) {
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
        let expired: Vec<Peer> = self
            .awaiting
            .values()
            .filter(|(_, t)| *t <= now)
            .map(|(p, _)| p.clone())
            .collect();
        for peer in expired {
            // No replacement came: dial for what waits, else `check_orphans`
            // reports the link lost.
            self.awaiting.remove(&peer.id);
            if let Some(d) = self.dialing.get_mut(&peer.id) {
                if d.parked {
                    d.parked = false;
                    self.start_dial(peer);
                }
            }
        }
        while let Some(Reverse((t, seq))) = self.timers.peek().copied() {
            if t > now || self.stop.is_some() {
                break;
            }
            self.timers.pop();
            if let Some(timer) = self.timer_tokens.remove(&seq) {
                self.feed(Input::Timer(timer));
            }
        }
        if now >= self.next_heartbeat && self.stop.is_none() {
            self.next_heartbeat = now + ms(self.cfg.heartbeat_interval);
            self.heartbeat(now);
        }
    }

    /// Pings active peers, detects silent (half-open) ones, retires idle
    /// connections to peers outside the active view and overdue closes.
    fn heartbeat(&mut self, now: Instant) {
        let failure = ms(self.cfg.failure_timeout);
        let idle = ms(self.cfg.idle_timeout);
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
            let current = self.by_peer.get(&c.peer.id) == Some(&cid);
            if current && self.node.is_active(&c.peer.id) {
                if now.duration_since(c.last_rx) >= failure {
                    timed_out.push(cid);
                } else {
                    ping.push(cid);
                }
            } else if now.duration_since(c.last_used) >= idle && now >= c.hold_until {
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

    fn rejected(&mut self, remote: SocketAddr, reason: RejectReason) {
        self.counters.handshake_rejections += 1;
        if self.rejected_ips.len() < MAX_REMEMBERED && self.rejected_ips.insert(remote.ip()) {
            self.emit(Event::HandshakeRejected {
                addr: remote,
                reason,
            });
        }
    }

    fn log_once(
        &mut self,
        ip: IpAddr,
        kind: &'static str,
        level: LogLevel,
        msg: impl FnOnce() -> String,
    ) {
        if self.logged.len() < MAX_REMEMBERED && self.logged.insert((ip, kind)) {
            self.emit(Event::Log {
                level,
                message: msg(),
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

async fn reader_task(r: OwnedReadHalf, conn: ConnId, tx: mpsc::Sender<NetEvent>, max: usize) {
    let mut r = BufReader::new(r);
    loop {
        match wire::read_frame(&mut r, max).await {
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

async fn writer_task(
    mut w: OwnedWriteHalf,
    mut rx: mpsc::Receiver<WriterCmd>,
    conn: ConnId,
    tx: mpsc::Sender<NetEvent>,
    write_timeout: std::time::Duration,
) {
    while let Some(cmd) = rx.recv().await {
        match cmd {
            WriterCmd::Data(bytes) => {
                if !matches!(
                    timeout(write_timeout, w.write_all(&bytes)).await,
                    Ok(Ok(()))
                ) {
                    let _ = tx.send(NetEvent::WriteFailed { conn }).await;
                    return;
                }
            }
            WriterCmd::Close => {
                let _ = timeout(write_timeout, async {
                    let _ = w.flush().await;
                    let _ = w.shutdown().await;
                })
                .await;
                return;
            }
        }
    }
}
