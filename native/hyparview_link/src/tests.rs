//! One test per rule of the policy.

use crate::*;
use hyparview::{Message, Peer};

const CFG: LinkConfig = LinkConfig {
    idle_timeout: 2_000,
    request_hold: 5_000,
    replacement_grace: 3_000,
};

/// Node 5's table; peers are small integers, connections u64.
fn links() -> Links<u32, u64> {
    Links::new(5, CFG)
}

fn msg(k: u32) -> Message {
    Message::ForwardJoin {
        joiner: Peer::new("j", "127.0.0.1:1".parse().unwrap(), 1),
        ttl: k,
    }
}

fn flushed(f: Option<Flush<u64>>) -> (u64, Vec<Message>, AfterFlush) {
    let f = f.expect("a flush");
    (f.conn, f.messages, f.after)
}

#[test]
fn send_without_connection_dials_once_and_queues_in_order() {
    let mut l = links();
    assert_eq!(l.send(0, &1, msg(0)), Route::Dial);
    assert_eq!(l.send(1, &1, msg(1)), Route::Queued);
    assert!(l.is_dialing(&1));
    let r = l.register(10, 77, 1, 1, Origin::Dialed);
    assert_eq!(r.current, 77);
    assert_eq!(r.retired, None);
    assert_eq!(
        flushed(r.flush),
        (77, vec![msg(0), msg(1)], AfterFlush::Keep)
    );
    assert!(!l.is_dialing(&1));
    assert_eq!(l.send(11, &1, msg(2)), Route::Conn(77, msg(2)));
}

#[test]
fn dial_queue_is_bounded() {
    let mut l = links();
    assert_eq!(l.send(0, &1, msg(0)), Route::Dial);
    for k in 1..MAX_DIAL_QUEUE as u32 + 50 {
        assert_eq!(l.send(0, &1, msg(k)), Route::Queued);
    }
    let (_, q, _) = flushed(l.register(1, 9, 1, 1, Origin::Dialed).flush);
    assert_eq!(q.len(), MAX_DIAL_QUEUE);
    assert_eq!(q.last(), Some(&msg(MAX_DIAL_QUEUE as u32 - 1)));
}

#[test]
fn disconnect_during_a_dial_closes_after_the_queue_unless_sent_again() {
    let mut l = links();
    l.send(0, &1, msg(0));
    assert_eq!(l.disconnect(&1), None);
    let (c, q, after) = flushed(l.register(1, 9, 1, 1, Origin::Dialed).flush);
    assert_eq!((c, q.len(), after), (9, 1, AfterFlush::Close));
    assert_eq!(l.current(&1), None, "closing: no longer current");

    let mut l = links();
    l.send(0, &1, msg(0));
    l.disconnect(&1);
    l.send(0, &1, msg(1));
    let (_, _, after) = flushed(l.register(1, 9, 1, 1, Origin::Dialed).flush);
    assert_eq!(after, AfterFlush::Keep);
    assert_eq!(l.current(&1), Some(9));
}

#[test]
fn disconnect_returns_the_current_connection() {
    let mut l = links();
    l.register(0, 3, 1, 1, Origin::Accepted);
    assert_eq!(l.disconnect(&1), Some(3));
    assert_eq!(l.current(&1), None);
    assert_eq!(l.disconnect(&1), None);
    assert_eq!(l.connections(), 0);
}

#[test]
fn failed_dial_falls_back_to_a_connection_the_peer_opened() {
    let mut l = links();
    l.send(0, &1, msg(0));
    // The peer's own dial arrives while ours is under way: its queue waits
    // for our dial's outcome.
    assert_eq!(l.register(5, 4, 1, 1, Origin::Accepted).flush, None);
    match l.dial_failed(6, &1) {
        DialFailed::Fallback(f) => assert_eq!((f.conn, f.messages), (4, vec![msg(0)])),
        other => panic!("{other:?}"),
    }
    l.send(7, &2, msg(0));
    assert_eq!(l.dial_failed(8, &2), DialFailed::Failed);
    assert_eq!(l.dial_failed(8, &2), DialFailed::Unknown);
    assert_eq!(
        l.send(9, &2, msg(1)),
        Route::Dial,
        "a new dial after a failure"
    );
}

#[test]
fn two_connections_converge_on_the_same_one_at_both_ends() {
    // Same incarnation, one dialed by each: both keep the one the lower
    // key dialed. Node 5 (lower than 8) keeps the one it dialed.
    let mut a: Links<u32, u64> = Links::new(5, CFG);
    let mut b: Links<u32, u64> = Links::new(8, CFG);
    a.register(0, 1, 8, 1, Origin::Dialed); // conn 1: a dialed b
    b.register(0, 2, 5, 1, Origin::Dialed); // conn 2: b dialed a
    let ra = a.register(1, 2, 8, 1, Origin::Accepted);
    let rb = b.register(1, 1, 5, 1, Origin::Accepted);
    assert_eq!((ra.current, ra.retired), (1, Some((2, Retire::Supersede))));
    assert_eq!((rb.current, rb.retired), (1, Some((2, Retire::Supersede))));
}

#[test]
fn higher_incarnation_wins_and_drops_the_old_connection() {
    let mut l = links();
    l.register(0, 1, 8, 1, Origin::Dialed);
    let r = l.register(1, 2, 8, 2, Origin::Accepted);
    assert_eq!((r.current, r.retired), (2, Some((1, Retire::Drop))));
    let r = l.register(2, 3, 8, 1, Origin::Dialed);
    assert_eq!((r.current, r.retired), (2, Some((3, Retire::Supersede))));
    // Same incarnation and origin: the newer wins.
    let r = l.register(3, 4, 8, 2, Origin::Accepted);
    assert_eq!((r.current, r.retired), (4, Some((2, Retire::Supersede))));
}

#[test]
fn only_the_current_connection_of_an_active_peer_is_reported() {
    let mut l = links();
    l.register(0, 1, 8, 1, Origin::Dialed);
    l.register(0, 2, 9, 1, Origin::Dialed);
    assert_eq!(l.closed(7, Activity::Active), Loss::Quiet, "unknown");
    assert_eq!(l.closed(1, Activity::Inactive), Loss::Quiet);
    assert_eq!(l.closed(2, Activity::Active), Loss::Report);
    assert_eq!(l.closed(2, Activity::Active), Loss::Quiet, "once");
    // A retired duplicate is not current: its loss is quiet.
    l.register(0, 3, 8, 1, Origin::Dialed);
    let r = l.register(0, 4, 8, 1, Origin::Dialed);
    let (old, _) = r.retired.unwrap();
    assert_eq!(l.closed(old, Activity::Active), Loss::Quiet);
    l.closing(4);
    assert_eq!(l.closed(4, Activity::Active), Loss::Quiet);
}

#[test]
fn idle_connections_to_inactive_peers_retire_after_the_idle_timeout() {
    let mut l = links();
    l.register(0, 1, 8, 1, Origin::Dialed);
    assert_eq!(l.send(500, &8, msg(0)), Route::Conn(1, msg(0)));
    assert_eq!(l.idle(2_000, 1, Activity::Inactive), Idle::NotBefore(2_500));
    l.received(1_000, 1);
    assert_eq!(l.idle(2_999, 1, Activity::Inactive), Idle::NotBefore(3_000));
    assert_eq!(l.idle(3_000, 1, Activity::Inactive), Idle::Retire);
    assert_eq!(l.idle(9_000, 1, Activity::Active), Idle::Keep);
    assert_eq!(l.idle(9_000, 2, Activity::Inactive), Idle::Keep, "unknown");
}

#[test]
fn a_request_holds_its_connection_past_the_idle_timeout() {
    let mut l = links();
    l.register(0, 1, 8, 1, Origin::Dialed);
    assert!(matches!(l.send(100, &8, Message::Join), Route::Conn(1, _)));
    assert_eq!(l.idle(2_100, 1, Activity::Inactive), Idle::NotBefore(5_100));
    assert_eq!(l.idle(5_100, 1, Activity::Inactive), Idle::Retire);
    // A hold from a queued request counts from the registration.
    let mut l = links();
    l.send(0, &8, Message::Join);
    l.register(300, 1, 8, 1, Origin::Dialed);
    assert_eq!(l.idle(2_300, 1, Activity::Inactive), Idle::NotBefore(5_300));
}

#[test]
fn an_active_peer_without_a_link_is_reported_once_per_episode() {
    let mut l = links();
    assert_eq!(l.orphans([&8, &9]), vec![8, 9]);
    assert_eq!(l.orphans([&8, &9]), Vec::<u32>::new(), "same episode");
    // 9 leaves the view (checked) and comes back: a new episode.
    assert_eq!(l.orphans([&8]), Vec::<u32>::new());
    assert_eq!(l.orphans([&8, &9]), vec![9]);
    // PeerDown ends the episode even between two checks.
    l.peer_down(&8);
    assert_eq!(l.orphans([&8, &9]), vec![8]);
    // A connection, a dial or an awaited replacement is a link.
    let mut l = links();
    l.register(0, 1, 1, 1, Origin::Dialed);
    l.send(0, &2, msg(0));
    l.register(0, 3, 3, 1, Origin::Dialed);
    l.superseded(0, 3, Activity::Active);
    assert_eq!(l.orphans([&1, &2, &3]), Vec::<u32>::new());
    // Registering ends an episode too.
    let mut l = links();
    assert_eq!(l.orphans([&1]), vec![1]);
    l.register(0, 1, 1, 1, Origin::Dialed);
    l.closing(1);
    assert_eq!(l.orphans([&1]), vec![1]);
}

#[test]
fn superseded_connection_waits_for_its_replacement_then_dials() {
    let mut l = links();
    l.register(0, 1, 8, 1, Origin::Dialed);
    assert_eq!(l.superseded(100, 1, Activity::Active), Some(1));
    assert_eq!(l.superseded(100, 1, Activity::Active), None);
    assert_eq!(l.next_deadline(), Some(3_100));
    // Sends park instead of dialing.
    assert_eq!(l.send(200, &8, msg(0)), Route::Queued);
    assert!(l.expire(3_099).is_empty());
    assert_eq!(l.orphans([&8]), Vec::<u32>::new());
    assert_eq!(l.expire(3_100), vec![8]);
    assert_eq!(l.next_deadline(), None);
    // The dial now under way takes its queue on success.
    let (_, q, _) = flushed(l.register(3_500, 2, 8, 1, Origin::Dialed).flush);
    assert_eq!(q, vec![msg(0)]);
}

#[test]
fn the_replacement_arriving_in_time_gets_the_parked_messages() {
    let mut l = links();
    l.register(0, 1, 8, 1, Origin::Dialed);
    l.superseded(100, 1, Activity::Active);
    l.send(200, &8, msg(0));
    let r = l.register(300, 2, 8, 1, Origin::Accepted);
    assert_eq!(flushed(r.flush), (2, vec![msg(0)], AfterFlush::Keep));
    assert_eq!(l.next_deadline(), None);
    // Without anything waiting, an expired replacement is left to the
    // orphan check.
    l.superseded(400, 2, Activity::Active);
    assert!(l.expire(10_000).is_empty());
    assert_eq!(l.orphans([&8]), vec![8]);
    // An inactive peer's superseded connection awaits nothing.
    l.register(0, 3, 9, 1, Origin::Dialed);
    l.superseded(0, 3, Activity::Inactive);
    assert_eq!(l.send(1, &9, msg(1)), Route::Dial);
}

#[test]
fn entries_are_dropped_when_empty() {
    let mut l = links();
    for p in 0..100 {
        l.register(0, p as u64, p, 1, Origin::Dialed);
        l.closed(p as u64, Activity::Inactive);
        l.send(0, &p, msg(0));
        l.dial_failed(0, &p);
    }
    assert!(l.orphans([]).is_empty());
    assert_eq!(l.connections(), 0);
    assert_eq!(format!("{l:?}").matches("Entry").count(), 0);
}
