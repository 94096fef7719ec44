//! Handshake failures and per-address reports (rate-limited), and the
//! snapshot published to the owner.

use super::*;

impl Actor {
    /// A handshake that did not complete. A close is no verdict on the
    /// other side (a peer killed mid-handshake, a listener shedding load):
    /// counted, logged at debug, never reported as a rejection.
    pub(super) fn handshake_failed(
        &mut self,
        remote: SocketAddr,
        e: HandshakeError,
        dialed: Option<&Peer>,
    ) {
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

    pub(super) fn rejected(&mut self, remote: SocketAddr, reason: RejectReason) {
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
    pub(super) fn log_once(
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

    pub(super) fn flush_reports(&mut self, now: Instant) {
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

    /// Republishes the snapshot if it changed: the actor calls this after
    /// every wake-up, and most (a timer that did nothing, a frame that
    /// changed no view or counter) change nothing worth a copy of both views.
    pub(super) fn publish(&mut self) {
        self.counters.connections = self.conns.len() as u64;
        {
            let current = self.snapshot.lock().unwrap_or_else(|e| e.into_inner());
            if current.running
                && current.counters == self.counters
                && current.active_view.iter().eq(self.node.active_view())
                && current.passive_view.iter().eq(self.node.passive_view())
            {
                return;
            }
        }
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

    pub(super) fn publish_stopped(&mut self) {
        self.counters.connections = 0;
        let mut g = self.snapshot.lock().unwrap_or_else(|e| e.into_inner());
        let mut s = (**g).clone();
        s.counters = self.counters.clone();
        s.running = false;
        *g = Arc::new(s);
    }
}
