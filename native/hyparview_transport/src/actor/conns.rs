//! Connection lifecycle: accept, network events, frames in, registration
//! of an authenticated connection with the link policy, and closing.

use super::*;
use crate::handshake::{first_flight, FirstFlight, FIRST_FLIGHT};

/// A pending handshake on an accepted connection, as the actor keeps it.
pub(super) struct PendingConn {
    task: AbortHandle,
    watch: Option<std::net::TcpStream>,
}

/// Pending handshakes whose sockets are checked for a waiting proof
/// before one is dropped, per accepted connection at most (bounds the
/// actor's work under a flood).
const PEEK_AT_MOST: usize = 4;

/// A second descriptor of an accepted connection's socket, kept with its
/// pending handshake so that the accept loop can look at what the dialer
/// sent without taking it out of the socket (the task reads the same
/// bytes). Dropping it closes only this descriptor.
#[cfg(unix)]
fn watch(stream: &TcpStream) -> Option<std::net::TcpStream> {
    use std::os::fd::AsFd;
    let fd = stream.as_fd().try_clone_to_owned().ok()?;
    Some(std::net::TcpStream::from(fd))
}

#[cfg(not(unix))]
fn watch(_: &TcpStream) -> Option<std::net::TcpStream> {
    None
}

/// What a pending connection has sent so far, checked up to message 1's
/// psk proof. The socket is non-blocking, so is the peek.
fn peek_first_flight(watch: Option<&std::net::TcpStream>, me: &Identity) -> FirstFlight {
    let mut buf = [0u8; FIRST_FLIGHT];
    match watch.map(|s| s.peek(&mut buf)) {
        Some(Ok(n)) if n > 0 => first_flight(me, &buf[..n]),
        // Nothing yet, or an error the task will see too.
        _ => FirstFlight::Incomplete,
    }
}

impl Actor {
    pub(super) fn on_accept(&mut self, r: std::io::Result<(TcpStream, SocketAddr)>) {
        match r {
            Ok((stream, remote)) => {
                self.counters.connections_accepted += 1;
                // When a newcomer would push out a pending handshake, look
                // at what the dialers have sent: one whose message 1 is
                // waiting and verifies (the psk proof only) has proved the
                // secret and no longer counts against its address, and a
                // newcomer that already failed goes now instead of taking
                // anyone's slot. Under a join storm the handshake tasks lag
                // behind the accepts, and real joiners from one address
                // used to evict each other while their proofs sat unread.
                let ip = remote.ip();
                let watch = watch(&stream);
                let mut proved = false;
                if self.pending.is_full_for(ip) {
                    match peek_first_flight(watch.as_ref(), &self.identity) {
                        FirstFlight::Proved => proved = true,
                        FirstFlight::Rejected(reason) => {
                            self.rejected(remote, reason);
                            return;
                        }
                        FirstFlight::Incomplete => {}
                    }
                    for token in self.pending.candidates(ip, proved, PEEK_AT_MOST) {
                        let w = self.pending.get(token).and_then(|p| p.watch.as_ref());
                        if peek_first_flight(w, &self.identity) == FirstFlight::Proved {
                            self.pending.prove(token);
                        }
                    }
                }
                let (token, evicted) = self.pending.make_room(ip, proved);
                for p in evicted {
                    // Dropping the task closes its socket (and `p` its
                    // watching descriptor); the dialer (if it was a real
                    // one) sees the close and retries.
                    p.task.abort();
                    self.counters.handshakes_evicted += 1;
                }
                let identity = self.identity.clone();
                let tx = self.net_tx.clone();
                let now = Instant::now();
                let deadline = now + ms(self.cfg.handshake_timeout);
                let preauth = now + ms(self.cfg.preauth_timeout);
                let max_frame = self.cfg.max_frame_size as usize;
                let stage = Arc::new(Stage::default());
                if proved {
                    stage.prove();
                }
                let progress = stage.clone();
                let handle = self.tasks.spawn(async move {
                    let mut stream = stream;
                    let _ = stream.set_nodelay(true);
                    let result = handshake::accept(
                        &mut stream,
                        &identity,
                        max_frame,
                        preauth,
                        deadline,
                        || progress.prove(),
                    )
                    .await
                    .map(|session| (stream, session))
                    .map_err(HandshakeFail::Handshake);
                    progress.finish();
                    let _ = tx
                        .send(NetEvent::Handshaken {
                            origin: Origin::Accepted { token },
                            remote,
                            result,
                        })
                        .await;
                });
                let p = PendingConn {
                    task: handle,
                    watch,
                };
                self.pending.insert(token, ip, p, stage);
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

    pub(super) fn on_net(&mut self, ev: NetEvent) {
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

    pub(super) fn on_frame(&mut self, cid: ConnId, frame: Frame) {
        let Some(c) = self.conns.get_mut(&cid) else {
            return;
        };
        // The reader recorded its arrival (`Liveness`).
        match frame {
            Frame::Msg(message) => {
                let at = self.start.elapsed().as_millis() as u64;
                self.links.received(at, cid);
                let from = c.peer.clone();
                bump(&mut self.counters.messages_in, message.kind().name());
                self.feed(Input::Message { from, message });
            }
            Frame::Ping if c.closing.is_some() => {}
            // The reader forwards a PING only while we do not take it as a
            // keepalive (see `Actor::heartbeat`): from an active peer not yet
            // confirmed it confirms the link (peers ping only their active
            // peers); anyone else gets an answer.
            Frame::Ping => {
                if self.node.is_active(&c.peer.id) && self.links.peer_of(cid).is_some() {
                    let id = c.peer.id.clone();
                    self.confirm(&id, Confirmation::Later);
                } else {
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
    pub(super) fn register(
        &mut self,
        stream: TcpStream,
        session: Session,
        remote: SocketAddr,
        dialed: bool,
    ) {
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
        let now = self.now_ms();
        let liveness = Arc::new(Liveness::new(now));
        let reader = self.tasks.spawn(reader_task(
            r,
            opener,
            cid,
            self.net_tx.clone(),
            self.start,
            liveness.clone(),
        ));
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
                liveness,
                last_tx: now,
                broadcast_queued,
                closing: None,
            },
        );
        let origin = if dialed {
            LinkOrigin::Dialed
        } else {
            LinkOrigin::Accepted
        };
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
    pub(super) fn retire_duplicate(&mut self, cid: ConnId) {
        if self.enqueue(cid, &Frame::Superseded) {
            self.close_gracefully(cid);
        }
    }

    /// Reports the active peers the link policy finds without any link
    /// (see `Links::orphans`).
    pub(super) fn check_orphans(&mut self) {
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
    pub(super) fn close_gracefully(&mut self, cid: ConnId) {
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

    pub(super) fn hard_close(&mut self, cid: ConnId) {
        if let Some(c) = self.conns.remove(&cid) {
            c.reader.abort();
            c.writer.abort();
            self.links.closing(cid);
        }
    }

    /// The connection broke. The link policy decides whether the node hears
    /// of it (only the current connection of an active peer).
    pub(super) fn fail(&mut self, cid: ConnId) {
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
}
