//! [`Links`]: the per-peer table the rules of the crate work on.

use crate::{
    is_request, Activity, AfterFlush, DialFailed, Flush, Idle, LinkConfig, Loss, Origin,
    Registered, Retire, Route, MAX_DIAL_QUEUE,
};
use hyparview::{Identity, Message, Millis, PeerId};

/// The connection state of one node towards all its peers.
///
/// Invariants: at most one entry per peer; an entry exists only while it
/// holds a current connection, a dial, a replacement deadline or an orphan
/// mark; a connection handle is current for at most one peer.
#[derive(Debug)]
pub struct Links<K, C, I: Identity = PeerId> {
    local: K,
    cfg: LinkConfig,
    peers: Vec<Entry<K, C, I>>,
}

#[derive(Debug)]
struct Entry<K, C, I: Identity> {
    peer: K,
    current: Option<Conn<C>>,
    /// Boxed: dials are rare, and the table is scanned on every message.
    dial: Option<Box<Dial<I>>>,
    /// The peer superseded our current connection: the one it kept is on
    /// its way, until this deadline.
    awaiting: Option<Millis>,
    /// Already reported lost for lack of a connection (this episode).
    orphan: bool,
}

#[derive(Clone, Copy, Debug)]
struct Conn<C> {
    id: C,
    origin: Origin,
    incarnation: u64,
    last_used: Millis,
    /// Not retired as idle before this (a request on it may be answered).
    hold_until: Millis,
}

#[derive(Debug)]
struct Dial<I: Identity> {
    queue: Vec<Message<I>>,
    after: AfterFlush,
    state: DialState,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DialState {
    /// The driver is dialing.
    Started,
    /// No dial: the messages wait for the replacement of a superseded
    /// connection (see [`Links::superseded`]).
    Parked,
}

impl<K, C, I: Identity> Entry<K, C, I> {
    fn is_empty(&self) -> bool {
        self.current.is_none() && self.dial.is_none() && self.awaiting.is_none() && !self.orphan
    }
}

impl<C: Copy> Conn<C> {
    /// Records a message written on it now.
    fn used<I: Identity>(&mut self, now: Millis, m: &Message<I>, hold: Millis) {
        // `last_used` may lie ahead of `now` when the driver registered the
        // connection at its (future) handshake time: the simulator does.
        self.last_used = self.last_used.max(now);
        if is_request(m) {
            self.hold_until = self.hold_until.max(self.last_used + hold);
        }
    }
}

impl<K: Clone + Eq + Ord, C: Copy + Eq, I: Identity> Links<K, C, I> {
    /// The table of the node whose own key is `local` (used to break the tie
    /// between two connections both ends opened at once).
    pub fn new(local: K, cfg: LinkConfig) -> Links<K, C, I> {
        Links::with_capacity(local, cfg, 0)
    }

    /// [`new`](Links::new) with room for `n` peers allocated now: a driver
    /// of many tables (the simulator) creates them in a row, so each sits
    /// next to its node's other hot memory instead of wherever it grew.
    pub fn with_capacity(local: K, cfg: LinkConfig, n: usize) -> Links<K, C, I> {
        Links {
            local,
            cfg,
            peers: Vec::with_capacity(n),
        }
    }

    /// Where the table's entries live, and how many bytes they span: a
    /// driver of many tables may prefetch them before an input (a lookup
    /// scans them all). A hint only; never dereferenced here.
    pub fn hot_span(&self) -> (*const u8, usize) {
        (
            self.peers.as_ptr().cast(),
            std::mem::size_of_val(self.peers.as_slice()),
        )
    }

    pub fn config(&self) -> &LinkConfig {
        &self.cfg
    }

    fn find(&self, peer: &K) -> Option<usize> {
        self.peers.iter().position(|e| e.peer == *peer)
    }

    fn find_conn(&self, conn: C) -> Option<usize> {
        self.peers
            .iter()
            .position(|e| e.current.is_some_and(|c| c.id == conn))
    }

    fn entry(&mut self, peer: &K) -> usize {
        match self.find(peer) {
            Some(i) => i,
            None => {
                self.peers.push(Entry {
                    peer: peer.clone(),
                    current: None,
                    dial: None,
                    awaiting: None,
                    orphan: false,
                });
                self.peers.len() - 1
            }
        }
    }

    fn prune(&mut self, i: usize) {
        if self.peers[i].is_empty() {
            self.peers.swap_remove(i);
        }
    }

    /// The connection that carries `peer`'s traffic.
    pub fn current(&self, peer: &K) -> Option<C> {
        self.find(peer)
            .and_then(|i| self.peers[i].current.map(|c| c.id))
    }

    /// The peer whose current connection is `conn`.
    pub fn peer_of(&self, conn: C) -> Option<&K> {
        self.find_conn(conn).map(|i| &self.peers[i].peer)
    }

    /// True while a dial to `peer` is under way (or its messages wait for
    /// a replacement connection).
    pub fn is_dialing(&self, peer: &K) -> bool {
        self.find(peer)
            .is_some_and(|i| self.peers[i].dial.is_some())
    }

    /// Number of current connections.
    pub fn connections(&self) -> usize {
        self.peers.iter().filter(|e| e.current.is_some()).count()
    }

    /// Forgets everything (the node stopped).
    pub fn clear(&mut self) {
        self.peers.clear();
    }

    /// The core sends `message` to `peer`.
    pub fn send(&mut self, now: Millis, peer: &K, message: Message<I>) -> Route<C, I> {
        let hold = self.cfg.request_hold;
        let i = self.entry(peer);
        let e = &mut self.peers[i];
        if let Some(c) = &mut e.current {
            c.used(now, &message, hold);
            return Route::Conn(c.id, message);
        }
        if let Some(d) = &mut e.dial {
            if d.queue.len() < MAX_DIAL_QUEUE {
                d.queue.push(message);
            }
            // A send after a disconnect means the core wants the link again.
            d.after = AfterFlush::Keep;
            return Route::Queued;
        }
        let state = if e.awaiting.is_some() {
            // Its replacement connection is on the way: no extra dial.
            DialState::Parked
        } else {
            DialState::Started
        };
        e.dial = Some(Box::new(Dial {
            queue: vec![message],
            after: AfterFlush::Keep,
            state,
        }));
        match state {
            DialState::Parked => Route::Queued,
            DialState::Started => Route::Dial,
        }
    }

    /// The core disconnects from `peer`. Returns the connection to close
    /// gracefully (no longer current); a dial under way takes the close
    /// instead and closes after writing its queue.
    pub fn disconnect(&mut self, peer: &K) -> Option<C> {
        let i = self.find(peer)?;
        let e = &mut self.peers[i];
        if let Some(d) = &mut e.dial {
            d.after = AfterFlush::Close;
            return None;
        }
        let c = e.current.take().map(|c| c.id);
        self.prune(i);
        c
    }

    /// A connection to `peer` finished its handshake. With two connections
    /// to the same peer exactly one stays current, and both ends choose the
    /// same one: the higher incarnation, else the one dialed by the lower
    /// key, else the newer. The loser is returned for retirement; its close
    /// is never reported as a loss.
    pub fn register(
        &mut self,
        now: Millis,
        conn: C,
        peer: K,
        incarnation: u64,
        origin: Origin,
    ) -> Registered<C, I> {
        let we_are_lower = self.local < peer;
        let i = self.entry(&peer);
        let e = &mut self.peers[i];
        // The authenticated identity is the one to dial later.
        e.peer = peer;
        e.orphan = false;
        e.awaiting = None;
        let new = Conn {
            id: conn,
            origin,
            incarnation,
            last_used: now,
            hold_until: now,
        };
        let (current, retired) = match e.current.take() {
            None => (new, None),
            Some(old) => {
                let new_wins = if incarnation != old.incarnation {
                    incarnation > old.incarnation
                } else if origin != old.origin {
                    (origin == Origin::Dialed) == we_are_lower
                } else {
                    true
                };
                if !new_wins {
                    (old, Some((conn, Retire::Supersede)))
                } else if incarnation > old.incarnation {
                    (new, Some((old.id, Retire::Drop)))
                } else {
                    (new, Some((old.id, Retire::Supersede)))
                }
            }
        };
        e.current = Some(current);
        let waits = match &e.dial {
            Some(d) => origin == Origin::Dialed || d.state == DialState::Parked,
            None => false,
        };
        let flush = if waits { self.flush(now, i) } else { None };
        Registered {
            current: current.id,
            retired,
            flush,
        }
    }

    /// Writes entry `i`'s dial queue out over its current connection.
    fn flush(&mut self, now: Millis, i: usize) -> Option<Flush<C, I>> {
        let hold = self.cfg.request_hold;
        let e = &mut self.peers[i];
        let c = e.current.as_mut()?;
        let d = *e.dial.take()?;
        for m in &d.queue {
            c.used(now, m, hold);
        }
        let conn = c.id;
        if d.after == AfterFlush::Close {
            e.current = None;
        }
        let flush = Flush {
            conn,
            messages: d.queue,
            after: d.after,
        };
        self.prune(i);
        Some(flush)
    }

    /// The dial to `peer` failed.
    pub fn dial_failed(&mut self, now: Millis, peer: &K) -> DialFailed<C, I> {
        let Some(i) = self.find(peer) else {
            return DialFailed::Unknown;
        };
        if self.peers[i].dial.is_none() {
            return DialFailed::Unknown;
        }
        if self.peers[i].current.is_some() {
            // The peer dialed us meanwhile: deliver over that.
            return match self.flush(now, i) {
                Some(f) => DialFailed::Fallback(f),
                None => DialFailed::Unknown,
            };
        }
        self.peers[i].dial = None;
        self.prune(i);
        DialFailed::Failed
    }

    /// The peer told us (SUPERSEDED) that it keeps another connection to us,
    /// still in our handshake. Returns `conn` when it was current: close it
    /// gracefully. An active peer is not reported lost before the
    /// replacement grace is over.
    pub fn superseded(&mut self, now: Millis, conn: C, activity: Activity) -> Option<C> {
        let i = self.find_conn(conn)?;
        let e = &mut self.peers[i];
        e.current = None;
        if activity == Activity::Active {
            e.awaiting = Some(now + self.cfg.replacement_grace);
        }
        self.prune(i);
        Some(conn)
    }

    /// The driver started closing `conn` itself (idle retirement, a
    /// duplicate): it is no longer current, and nothing is reported.
    pub fn closing(&mut self, conn: C) {
        if let Some(i) = self.find_conn(conn) {
            self.peers[i].current = None;
            self.prune(i);
        }
    }

    /// `conn` broke (reset, write failure, heartbeat timeout, EOF). Only the
    /// loss of the current connection of an active peer is reported.
    pub fn closed(&mut self, conn: C, activity: Activity) -> Loss {
        let Some(i) = self.find_conn(conn) else {
            return Loss::Quiet;
        };
        self.peers[i].current = None;
        self.prune(i);
        match activity {
            Activity::Active => Loss::Report,
            Activity::Inactive => Loss::Quiet,
        }
    }

    /// A message arrived on `conn`.
    pub fn received(&mut self, now: Millis, conn: C) {
        if let Some(i) = self.find_conn(conn) {
            if let Some(c) = &mut self.peers[i].current {
                c.last_used = c.last_used.max(now);
            }
        }
    }

    /// Idle retirement: connections to active peers are kept by heartbeats;
    /// the others close once unused for the idle timeout, but not while a
    /// request sent on them may still be answered.
    pub fn idle(&self, now: Millis, conn: C, activity: Activity) -> Idle {
        let Some(i) = self.find_conn(conn) else {
            return Idle::Keep;
        };
        let Some(c) = &self.peers[i].current else {
            return Idle::Keep;
        };
        if activity == Activity::Active {
            return Idle::Keep;
        }
        let due = (c.last_used + self.cfg.idle_timeout).max(c.hold_until);
        if now >= due {
            Idle::Retire
        } else {
            Idle::NotBefore(due)
        }
    }

    /// Replacement deadlines that passed: the peers whose messages waited
    /// for a replacement that did not come; dial them now. (A peer with
    /// nothing waiting is left to the orphan check.)
    pub fn expire(&mut self, now: Millis) -> Vec<K> {
        let mut dial = Vec::new();
        let mut i = 0;
        while i < self.peers.len() {
            let e = &mut self.peers[i];
            if e.awaiting.is_some_and(|t| t <= now) {
                e.awaiting = None;
                if let Some(d) = &mut e.dial {
                    if d.state == DialState::Parked {
                        d.state = DialState::Started;
                        dial.push(e.peer.clone());
                    }
                }
                if e.is_empty() {
                    self.peers.swap_remove(i);
                    continue;
                }
            }
            i += 1;
        }
        dial
    }

    /// The earliest replacement deadline, if any.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.peers.iter().filter_map(|e| e.awaiting).min()
    }

    /// The orphan check. An active peer must have a connection (or a dial,
    /// or a replacement on the way): without one there are no heartbeats
    /// and its loss would never be noticed. This happens when an answer
    /// arrives on a connection already being retired (a NEIGHBOR reply
    /// slower than the idle timeout, FINDINGS F1); the other end sees that
    /// connection close, so report the link lost here too and keep both
    /// views symmetric. Returns the peers to report, once per episode; an
    /// episode ends when the peer leaves the active view.
    pub fn orphans<'a>(&mut self, active: impl IntoIterator<Item = &'a K>) -> Vec<K>
    where
        K: 'a,
    {
        let active: Vec<K> = active.into_iter().cloned().collect();
        let mut lost = Vec::new();
        self.orphans_into(&active, &mut lost);
        lost
    }

    /// [`orphans`](Links::orphans) without allocating: the peers to report
    /// are appended to `lost`.
    pub fn orphans_into(&mut self, active: &[K], lost: &mut Vec<K>) {
        let mut i = 0;
        while i < self.peers.len() {
            let e = &mut self.peers[i];
            if e.orphan && !active.contains(&e.peer) {
                e.orphan = false;
                if e.is_empty() {
                    self.peers.swap_remove(i);
                    continue;
                }
            }
            i += 1;
        }
        for peer in active {
            // Entries are never empty between calls: a peer without one
            // has nothing, and gets one carrying the mark.
            let Some(i) = self.find(peer) else {
                self.peers.push(Entry {
                    peer: peer.clone(),
                    current: None,
                    dial: None,
                    awaiting: None,
                    orphan: true,
                });
                lost.push(peer.clone());
                continue;
            };
            let e = &mut self.peers[i];
            if e.current.is_none() && e.dial.is_none() && e.awaiting.is_none() && !e.orphan {
                e.orphan = true;
                lost.push(peer.clone());
            }
        }
    }

    /// `peer` left the active view: a later orphan report is a new episode.
    pub fn peer_down(&mut self, peer: &K) {
        if let Some(i) = self.find(peer) {
            self.peers[i].orphan = false;
            self.prune(i);
        }
    }
}
