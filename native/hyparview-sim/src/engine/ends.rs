//! Which ends of each connection are still held, two bits per connection
//! id, kept apart from the nodes: an idle check or an EOF for an end its
//! node no longer holds does nothing, and in a steady run most do (the
//! other end closed first, or both ends closed after a one-shot exchange).
//! Answering that from this dense table spares those events the cold read
//! of their node. Mirrors the `wires` lists exactly: set when a wire is
//! pushed, cleared when it is removed.

use super::ConnId;

/// One end of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum End {
    Dialer,
    Acceptor,
}

impl End {
    pub(super) fn other(self) -> End {
        match self {
            End::Dialer => End::Acceptor,
            End::Acceptor => End::Dialer,
        }
    }

    fn bit(self, conn: ConnId) -> (usize, u8) {
        let shift = (conn % 4) * 2 + if self == End::Dialer { 0 } else { 1 };
        ((conn / 4) as usize, 1 << shift)
    }
}

/// The held ends, indexed by connection id (ids are handed out in order,
/// so the table grows at its tail and its hot part is the recent ids).
#[derive(Default)]
pub(super) struct Ends {
    bits: Vec<u8>,
}

impl Ends {
    pub(super) fn hold(&mut self, conn: ConnId, end: End) {
        let (i, b) = end.bit(conn);
        if i >= self.bits.len() {
            self.bits.resize(i + 1, 0);
        }
        self.bits[i] |= b;
    }

    pub(super) fn release(&mut self, conn: ConnId, end: End) {
        let (i, b) = end.bit(conn);
        if let Some(x) = self.bits.get_mut(i) {
            *x &= !b;
        }
    }

    pub(super) fn holds(&self, conn: ConnId, end: End) -> bool {
        let (i, b) = end.bit(conn);
        self.bits.get(i).is_some_and(|x| x & b != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_are_held_and_released_one_by_one() {
        let mut e = Ends::default();
        assert!(!e.holds(5, End::Dialer));
        e.hold(5, End::Dialer);
        e.hold(5, End::Acceptor);
        e.hold(6, End::Dialer);
        e.release(5, End::Dialer);
        assert!(!e.holds(5, End::Dialer));
        assert!(e.holds(5, End::Acceptor));
        assert!(e.holds(6, End::Dialer));
        assert!(!e.holds(6, End::Acceptor));
        assert!(!e.holds(4, End::Acceptor));
        e.release(1_000, End::Acceptor); // never held: nothing to do
    }
}
