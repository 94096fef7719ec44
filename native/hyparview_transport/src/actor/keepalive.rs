//! Keepalives and the other per-connection deadlines, and what a
//! connection's reader shares with the actor so that keepalives do not
//! wake it.
//!
//! Nothing here is periodic. After every wake-up the actor computes when a
//! connection next needs it (`Actor::plan_keepalive`): a PING due, an
//! active peer silent for the failure timeout, an idle connection to
//! retire, an overdue close, suppressed reports to flush; the actor sleeps
//! until the earliest of those. On an idle node whose active links are in
//! step that is one wake-up per `heartbeat_interval`, and none at all
//! without connections.

use super::*;
use std::sync::atomic::{AtomicBool, AtomicU64};

/// What the reader of a connection and the actor share.
pub(super) struct Liveness {
    /// When the last frame arrived (ms since `Actor::start`).
    pub(super) rx: AtomicU64,
    /// Set while the connection is the current one of an active, confirmed
    /// peer: that peer sends its own keepalives, so its pings need no
    /// answer and the reader takes them without waking the actor.
    pub(super) quiet_pings: AtomicBool,
}

impl Liveness {
    pub(super) fn new(now: u64) -> Liveness {
        Liveness {
            rx: AtomicU64::new(now),
            quiet_pings: AtomicBool::new(false),
        }
    }

    pub(super) fn last_rx(&self) -> u64 {
        self.rx.load(AtomicOrdering::Relaxed)
    }
}

/// What a connection needs from the keepalive pass.
enum Due {
    /// Nothing, ever (until its state changes).
    Never,
    /// Nothing before this time (ms since `Actor::start`).
    At(u64),
}

impl Due {
    fn min(self, t: u64) -> Due {
        match self {
            Due::Never => Due::At(t),
            Due::At(d) => Due::At(d.min(t)),
        }
    }
}

impl Actor {
    /// Whether the connection `cid` is the current one of an active peer:
    /// then we keep it alive and watch it for silence.
    fn keeps_alive(&self, cid: ConnId, c: &Conn) -> bool {
        self.links.peer_of(cid).is_some() && self.node.is_active(&c.peer.id)
    }

    /// Run after every wake-up of the actor (the only time a connection's
    /// role can change): tells each reader whether to take pings quietly,
    /// and sets `next_heartbeat` to the earliest time a connection needs
    /// `heartbeat`, or `None` when none ever will as things stand.
    ///
    /// A reader records arrivals without waking us, so a failure deadline
    /// computed here may prove stale when it comes; `heartbeat` then only
    /// finds the link alive and the next plan moves the deadline. On a
    /// healthy link that never costs a wake-up: the peer's keepalives come
    /// more often than the failure timeout, and our own PING deadline on
    /// the same link (sooner) re-plans it first.
    pub(super) fn plan_keepalive(&mut self) {
        let keepalive = self.cfg.heartbeat_interval;
        let failure = self.cfg.failure_timeout;
        let idle = self.cfg.idle_timeout;
        let at = self.now_ms();
        let mut due = Due::Never;
        for (&cid, c) in &self.conns {
            let keeps_alive = self.keeps_alive(cid, c);
            // An unconfirmed peer's first PING confirms it (`confirm.rs`).
            let quiet = keeps_alive && !self.unconfirmed.iter().any(|p| p.id == c.peer.id);
            c.liveness.quiet_pings.store(quiet, AtomicOrdering::Relaxed);
            let rx = c.liveness.last_rx();
            due = if let Some(deadline) = c.closing {
                due.min(self.ms_at(deadline))
            } else if self.links.peer_of(cid).is_none() {
                due.min(rx + idle)
            } else if keeps_alive {
                due.min(c.last_tx + keepalive).min(rx + failure)
            } else {
                match self.links.idle(at, cid, Activity::Inactive) {
                    Idle::Retire => due.min(at),
                    Idle::NotBefore(t) => due.min(t),
                    Idle::Keep => due,
                }
            };
        }
        if let Some(t) = self.reports.next_flush() {
            due = due.min(self.ms_at(t));
        }
        self.next_heartbeat = match due {
            Due::Never => None,
            Due::At(t) => Some(self.start + ms(t)),
        };
    }

    /// `t` in ms since `start` (rounded up, so that a deadline read back
    /// from it is never early).
    fn ms_at(&self, t: Instant) -> u64 {
        let d = t.saturating_duration_since(self.start);
        d.as_millis() as u64 + u64::from(!d.subsec_nanos().is_multiple_of(1_000_000))
    }

    /// The work `plan_keepalive` found due, for all connections at once:
    /// keeps links to active peers alive and fails the silent (half-open,
    /// frozen) ones, retires idle connections to peers outside the active
    /// view and overdue closes, flushes suppressed reports.
    ///
    /// A link gets a keepalive PING once we queued nothing on it for
    /// `heartbeat_interval`, so the peer hears from us at least that often
    /// and a busy link carries no keepalives at all. A pass pings every
    /// link silent for half an interval or more, not only those due: the
    /// links of a node fall into step (one wake-up per interval for all of
    /// them) and stay there. Between active peers a PING is not answered
    /// (each end sends its own), so an idle link carries one frame per
    /// direction per interval, and the reader records it without waking
    /// the actor (`Liveness`).
    pub(super) fn heartbeat(&mut self, now: Instant) {
        let failure = self.cfg.failure_timeout;
        let idle = self.cfg.idle_timeout;
        let early = self.cfg.heartbeat_interval / 2;
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
            let silent = at.saturating_sub(c.liveness.last_rx());
            if self.links.peer_of(cid).is_none() {
                // Not current and not closing (not expected): retire once
                // silent for the idle timeout.
                if silent >= idle {
                    retire.push(cid);
                }
            } else if self.keeps_alive(cid, c) {
                if silent >= failure {
                    timed_out.push(cid);
                } else if at.saturating_sub(c.last_tx) >= early {
                    ping.push(cid);
                }
            } else if self.links.idle(at, cid, Activity::Inactive) == Idle::Retire {
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
        self.flush_reports(now);
    }
}
