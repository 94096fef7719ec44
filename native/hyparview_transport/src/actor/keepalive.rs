//! Keepalives: the actor's one periodic job, and what a connection's
//! reader shares with the actor so that keepalives do not wake it.

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

impl Actor {
    /// The one periodic job of the actor (a single timer, every
    /// `heartbeat_interval`, for all connections at once): keeps links to
    /// active peers alive and fails the silent (half-open) ones, retires
    /// idle connections to peers outside the active view and overdue
    /// closes.
    ///
    /// A link gets a keepalive PING only when we queued nothing on it for
    /// half an interval, so the peer hears from us at least every 1.5
    /// intervals and a busy link carries no heartbeats at all. Between
    /// active peers a PING is not answered (each end sends its own), so an
    /// idle link carries one frame per direction per interval, and the
    /// reader records it without waking the actor (`Liveness`).
    pub(super) fn heartbeat(&mut self, now: Instant) {
        let failure = self.cfg.failure_timeout;
        let idle = self.cfg.idle_timeout;
        let keepalive = self.cfg.heartbeat_interval / 2;
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
            let current = self.links.peer_of(cid).is_some();
            let activity = Activity::of(self.node.is_active(&c.peer.id));
            let keeps_alive = current && activity == Activity::Active;
            // An unconfirmed peer's first PING confirms it (`confirm.rs`).
            let quiet = keeps_alive && !self.unconfirmed.iter().any(|p| p.id == c.peer.id);
            c.liveness.quiet_pings.store(quiet, AtomicOrdering::Relaxed);
            if !current {
                // Not current and not closing (not expected): retire once
                // silent for the idle timeout.
                if silent >= idle {
                    retire.push(cid);
                }
            } else if keeps_alive {
                if silent >= failure {
                    timed_out.push(cid);
                } else if at.saturating_sub(c.last_tx) >= keepalive {
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
}
