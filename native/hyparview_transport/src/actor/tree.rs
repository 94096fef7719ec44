//! The actor's Plumtree: feeding it the core's membership, running its
//! outputs (broadcast frames on current connections, deliveries to the
//! owner) and counting what a full queue drops.

use super::*;

impl Actor {
    pub(super) fn feed_tree(&mut self, input: plumtree::Input<PeerId>) {
        let now = self.now_ms();
        self.tree.handle(now, input);
        self.drain_tree();
    }

    /// Executes Plumtree's outputs. None feeds anything back into it
    /// (a broadcast frame that cannot be queued is dropped, not failed).
    pub(super) fn drain_tree(&mut self) {
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
    /// (a few bytes, queued while a quarter of the write queue is free):
    /// the peer grafts the payload from this node's cache once it drains,
    /// as it would from a lazy link.
    pub(super) fn send_tree(&mut self, to: &PeerId, message: plumtree::Message<PeerId>) {
        let kind = message.kind();
        let cid = self
            .node
            .active_view()
            .into_iter()
            .find(|p| &p.id == to)
            .map(|p| Remote(p.clone()))
            .and_then(|r| self.links.current(&r));
        let at = self.now_ms();
        let Some(c) = cid.and_then(|cid| self.conns.get_mut(&cid)) else {
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
                    c.last_tx = at;
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
            // The last quarter of the write queue is kept for protocol
            // frames: a full queue fails the connection (`enqueue`), and
            // announcements alone must never do that.
            let reserve = c.tx.capacity() > c.tx.max_capacity() / 4;
            if reserve && c.tx.try_send(WriterCmd::Data(bytes)).is_ok() {
                bump(&mut self.counters.messages_out, "ihave");
            }
        }
        self.tree_frame_dropped();
    }

    pub(super) fn tree_frame_dropped(&mut self) {
        self.counters.broadcast_frames_dropped += 1;
        self.emit(Event::BroadcastDropped {
            reason: "queue_full",
            count: 1,
        });
    }
}
