//! Measurements, not checks (ignored by default): handshakes per second
//! against a running server, ping round trips and pipelined frame
//! throughput on one connection, and the convergence time of a small
//! overlay. Run them in release mode:
//!
//! ```text
//! cargo test --release -p hyparview_transport --test bench -- --ignored --nocapture --test-threads 1
//! ```
//! Only the `client` module touches the channel's API, so the same file
//! measures another protocol version with that module swapped
//! (`bench/transport.sh` does that for the version before the Noise channel
//! and runs both in one go). `BENCH_ROUNDS=n` repeats the convergence
//! measurement n times in one process; `BENCH_TRACE=1` prints each change
//! of the first overlay problem while it converges.

mod common;

use common::*;
use hyparview_transport::runtime;
use hyparview_transport::wire::Frame;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

// client: begin
mod client {
    use super::*;
    use hyparview_transport::channel;
    use hyparview_transport::handshake::{self, Identity, Session};

    pub struct Conn {
        s: TcpStream,
        session: Session,
        buf: Vec<u8>,
    }

    pub async fn connect(to: std::net::SocketAddr, id: &str) -> Conn {
        let me = Identity::new(id, "127.0.0.1:9".parse().unwrap(), 1, SECRET);
        let mut s = TcpStream::connect(to).await.unwrap();
        s.set_nodelay(true).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let session = handshake::dial(&mut s, &me, None, 65536, deadline)
            .await
            .unwrap();
        Conn {
            s,
            session,
            buf: Vec::new(),
        }
    }

    pub async fn send(c: &mut Conn, frames: &[Frame]) {
        channel::write_frames(&mut c.s, &mut c.session.sealer, frames)
            .await
            .unwrap();
    }

    pub async fn recv(c: &mut Conn) -> Frame {
        channel::read_frame(&mut c.s, &mut c.session.opener, &mut c.buf)
            .await
            .unwrap()
    }

    pub fn evicted(c: &hyparview_transport::Counters) -> u64 {
        c.handshakes_evicted
    }

    /// CPU of one handshake, both sides, without sockets.
    #[test]
    #[ignore]
    fn bench_handshake_cpu() {
        use hyparview_transport::handshake::{run_pair, Identity};
        let a = Identity::new("a@h", "127.0.0.1:9".parse().unwrap(), 1, SECRET);
        let b = Identity::new("b@h", "127.0.0.1:9".parse().unwrap(), 1, SECRET);
        let n = 2000;
        let started = Instant::now();
        for _ in 0..n {
            let (x, y) = run_pair(&a, &b, Some("b@h"), 65536);
            assert!(x.is_ok() && y.is_ok());
        }
        println!(
            "BENCH handshake cpu: {:.1} us for both sides",
            started.elapsed().as_secs_f64() * 1e6 / n as f64
        );
    }

    /// Where one handshake's CPU goes, step by step (both machines driven
    /// in memory, as `run_pair` does).
    #[test]
    #[ignore]
    fn bench_handshake_steps() {
        use hyparview_transport::handshake::{Identity, Initiator, Responder, Step};
        let a = Identity::new("a@h", "127.0.0.1:9".parse().unwrap(), 1, SECRET);
        let b = Identity::new("b@h", "127.0.0.1:9".parse().unwrap(), 1, SECRET);
        let names = [
            "dialer: set up (params, builder)",
            "dialer: message 1 (ephemeral key)",
            "listener: set up (params, builder)",
            "listener: preamble and length",
            "listener: message 1 read, message 2 (ephemeral key, ee, Hello)",
            "dialer: message 2 read (ee, Hello check), Hello record",
            "listener: Hello record opened and checked",
        ];
        let mut spent = [Duration::ZERO; 7];
        let n = 2000;
        let sends = |s: Step| match s {
            Step::Read { send, n } => (send, n),
            Step::Done { send, .. } => (send, 0),
        };
        for _ in 0..n {
            let mut t = Instant::now();
            let mut lap = |i: usize| {
                let now = Instant::now();
                spent[i] += now - t;
                t = now;
            };
            let mut i = Initiator::new(&a, Some("b@h"), 65536);
            lap(0);
            let (m1, _) = sends(i.step(&[]).unwrap());
            lap(1);
            let mut r = Responder::new(&b, 65536);
            lap(2);
            let (_, k) = sends(r.step(&m1[..6]).unwrap());
            let (_, k2) = sends(r.step(&m1[6..6 + k]).unwrap());
            lap(3);
            let (mut m2, k3) = sends(r.step(&m1[6 + k..6 + k + k2]).unwrap());
            if m2.is_empty() && k3 == 0 {
                // Message 1 verified; message 2 is the next step.
                m2 = sends(r.step(&[]).unwrap()).0;
            }
            lap(4);
            let (_, k) = sends(i.step(&m2[..2]).unwrap());
            let (h, _) = sends(i.step(&m2[2..2 + k]).unwrap());
            lap(5);
            let (_, k) = sends(r.step(&h[..2]).unwrap());
            assert!(matches!(r.step(&h[2..2 + k]), Ok(Step::Done { .. })));
            lap(6);
        }
        let total: Duration = spent.iter().sum();
        for (name, d) in names.iter().zip(spent) {
            println!(
                "BENCH handshake step: {:7.1} us  {name}",
                d.as_secs_f64() * 1e6 / n as f64
            );
        }
        println!(
            "BENCH handshake steps total: {:.1} us",
            total.as_secs_f64() * 1e6 / n as f64
        );
    }
}
// client: end

#[test]
#[ignore]
fn bench_handshakes_per_second() {
    let mut o = options("bench_hs", vec![]);
    o.transport.idle_timeout = 60_000;
    let a = TestNode::start(o);
    let rt = runtime(2).unwrap();
    let n = 1000;
    let started = Instant::now();
    rt.block_on(async {
        for i in 0..n {
            let c = client::connect(a.addr(), &format!("hs{i}@127.0.0.1")).await;
            drop(c);
        }
    });
    let secs = started.elapsed().as_secs_f64();
    println!(
        "BENCH handshakes: {n} sequential in {secs:.3} s = {:.0}/s",
        n as f64 / secs
    );
}

#[test]
#[ignore]
fn bench_ping_latency_and_frame_throughput() {
    let mut o = options("bench_rtt", vec![]);
    o.transport.idle_timeout = 60_000;
    o.transport.write_queue = 65536;
    let a = TestNode::start(o);
    let rt = runtime(2).unwrap();
    rt.block_on(async {
        let mut c = client::connect(a.addr(), "rtt@127.0.0.1").await;
        let rounds = 2000;
        let started = Instant::now();
        for _ in 0..rounds {
            client::send(&mut c, &[Frame::Ping]).await;
            assert_eq!(client::recv(&mut c).await, Frame::Pong);
        }
        let rtt = started.elapsed().as_secs_f64() / rounds as f64;
        println!("BENCH ping round trip: {:.1} us", rtt * 1e6);
        // Pipelined: batches of pings, all pongs read back.
        let total = 100_000;
        let batch = vec![Frame::Ping; 500];
        let started = Instant::now();
        for _ in 0..total / batch.len() {
            client::send(&mut c, &batch).await;
            for _ in 0..batch.len() {
                assert_eq!(client::recv(&mut c).await, Frame::Pong);
            }
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "BENCH frame throughput: {total} ping/pong in {secs:.3} s = {:.0} frames/s each way",
            total as f64 / secs
        );
    });
}

#[test]
#[ignore]
fn bench_convergence_of_a_small_overlay() {
    let n = 64;
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1);
    for round in 0..rounds {
        let started = Instant::now();
        let mut nodes = start_overlay(&format!("conv{round}x"), n);
        let refs: Vec<&TestNode> = nodes.iter().collect();
        let trace = std::env::var("BENCH_TRACE").is_ok();
        let mut last = String::new();
        let ok = wait_until(Duration::from_secs(60), || {
            let p = overlay_problem(&refs, protocol().active_view_size);
            if trace {
                let s = format!("{p:?}");
                if s != last {
                    println!("TRACE {:.3} {s}", started.elapsed().as_secs_f64());
                    last = s;
                }
            }
            p.is_none()
        });
        assert!(ok, "did not converge:{}", dump(&refs));
        let took = started.elapsed().as_secs_f64();
        let dials: u64 = nodes.iter().map(|n| n.snap().counters.dials).sum();
        let evicted: u64 = nodes
            .iter()
            .map(|n| client::evicted(&n.snap().counters))
            .sum();
        println!("BENCH convergence: {n} nodes, connected and symmetric after {took:.3} s ({dials} dials, {evicted} handshakes evicted)");
        let sum = |f: &dyn Fn(&hyparview_transport::Counters) -> u64| -> u64 {
            nodes.iter().map(|n| f(&n.snap().counters)).sum()
        };
        let mut kinds: Vec<(&str, u64)> = Vec::new();
        for node in &nodes {
            for (k, v) in &node.snap().counters.messages_out {
                match kinds.iter_mut().find(|e| e.0 == *k) {
                    Some(e) => e.1 += v,
                    None => kinds.push((k, *v)),
                }
            }
        }
        println!(
            "DETAIL accepted {} dial_failures {} rejections {} failures {} heartbeat_timeouts {} sent {:?}",
            sum(&|c| c.connections_accepted),
            sum(&|c| c.dial_failures),
            sum(&|c| c.handshake_rejections),
            sum(&|c| c.failures_detected),
            sum(&|c| c.heartbeat_timeouts),
            kinds.iter().filter(|e| e.1 > 0).collect::<Vec<_>>()
        );
        for node in nodes.iter_mut() {
            node.stop();
        }
    }
}
