//! Alone in its own test binary (process) because it measures process-wide
//! state: the shared runtime's threads and alive tasks.

mod common;

use common::*;
use hyparview_transport::{runtime, Event};
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

fn runtime_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "hyparview-rt")
        .count()
}

#[test]
fn servers_share_one_runtime_and_start_stop_cycles_leak_no_tasks() {
    let rt = runtime(2).unwrap();
    let baseline = rt.metrics().num_alive_tasks();

    // 20 servers: still the two worker threads of the one runtime.
    let mut many: Vec<TestNode> = (0..20)
        .map(|i| TestNode::start(options(&format!("many{i}"), vec![])))
        .collect();
    assert_eq!(rt.metrics().num_workers(), 2);
    // A new thread names itself once it runs, so allow it a moment.
    let mut threads = 0;
    wait_until(T, || {
        threads = runtime_threads();
        threads == 2
    });
    assert_eq!(threads, 2, "threads named hyparview-rt");
    for n in &mut many {
        n.stop();
    }

    for cycle in 0..15 {
        let mut a = TestNode::start(options(&format!("cyc{cycle}a"), vec![]));
        let mut b = TestNode::start(options(&format!("cyc{cycle}b"), vec![a.contact()]));
        let bid = b.id.clone();
        assert!(a
            .wait_event(T, |e| matches!(e, Event::PeerUp(p) if p.id == bid))
            .is_some());
        if cycle % 2 == 0 {
            a.stop();
            b.stop();
        } else {
            // Dropped handles shut down too.
            drop(a);
            drop(b);
        }
    }
    let mut alive = 0;
    let ok = wait_until(T, || {
        alive = rt.metrics().num_alive_tasks();
        alive == baseline
    });
    assert!(
        ok,
        "{alive} tasks alive after all servers stopped (baseline {baseline})"
    );
}
