//! Diagnosis: with `Sim::trace_pair` set, every event between two nodes
//! goes to stderr (set from code while diagnosing; there is no flag).

use super::{EventKind, Protocol, Sim};

impl<P: Protocol> Sim<P> {
    pub(super) fn traced(&self, a: u32, b: u32) -> bool {
        self.trace_pair
            .is_some_and(|(x, y)| (a, b) == (x, y) || (a, b) == (y, x))
    }

    pub(super) fn trace_event(&self, kind: &EventKind) {
        let (node, peer, what) = match kind {
            EventKind::Deliver { to, from, message } => {
                (*to, *from, format!("n{to} receives {message:?}"))
            }
            EventKind::DialFailed { node, peer } => (*node, *peer, format!("n{node} dial failed")),
            EventKind::Gone {
                node, peer, conn, ..
            } => (*node, *peer, format!("n{node} loses conn {conn}")),
            EventKind::IdleCheck {
                node, peer, conn, ..
            } => (*node, *peer, format!("n{node} idle check conn {conn}")),
            _ => return,
        };
        if self.traced(node, peer) {
            let (x, y) = (node.min(peer), node.max(peer));
            eprintln!(
                "t={} {what} [active: n{x}->n{y} {} / n{y}->n{x} {}]",
                self.now,
                self.is_active(x, y),
                self.is_active(y, x)
            );
        }
    }
}
