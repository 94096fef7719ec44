//! The connection tasks: accept, dial, and the reader and writer of one
//! authenticated connection. They talk to the actor only through channels.

use super::*;

pub(super) fn bump(v: &mut Vec<(&'static str, u64)>, kind: &'static str) {
    match v.iter_mut().find(|(k, _)| *k == kind) {
        Some(e) => e.1 += 1,
        None => v.push((kind, 1)),
    }
}

pub(super) async fn accept(l: &Option<TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match l {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// Connects and runs the dialer's handshake once.
pub(super) async fn dial_once(
    identity: &Identity,
    expected: &Peer,
    connect_t: std::time::Duration,
    hs_t: std::time::Duration,
    max_frame: usize,
) -> Result<(TcpStream, Session), HandshakeFail> {
    let mut stream = match timeout(connect_t, TcpStream::connect(expected.addr)).await {
        Ok(Ok(s)) => s,
        _ => return Err(HandshakeFail::Connect),
    };
    let _ = stream.set_nodelay(true);
    let deadline = Instant::now() + hs_t;
    handshake::dial(
        &mut stream,
        identity,
        Some(&expected.id),
        max_frame,
        deadline,
    )
    .await
    .map(|session| (stream, session))
    .map_err(HandshakeFail::Handshake)
}

/// Reads frames and hands them to the actor. Every frame counts as a sign
/// of life (`liveness.rx`); keepalives that need no answer (every PONG, and
/// a PING while `quiet_pings`) stop here, so an idle link does not wake the
/// actor.
pub(super) async fn reader_task(
    r: OwnedReadHalf,
    mut opener: Opener,
    conn: ConnId,
    tx: mpsc::Sender<NetEvent>,
    start: Instant,
    liveness: Arc<Liveness>,
) {
    // Records larger than the buffer are read straight into `record`.
    let mut r = BufReader::new(r);
    let mut record = Vec::new();
    loop {
        match channel::read_frame(&mut r, &mut opener, &mut record).await {
            Ok(frame) => {
                let at = start.elapsed().as_millis() as u64;
                liveness.rx.store(at, AtomicOrdering::Relaxed);
                let quiet = match frame {
                    Frame::Pong => true,
                    Frame::Ping => liveness.quiet_pings.load(AtomicOrdering::Relaxed),
                    _ => false,
                };
                if quiet {
                    continue;
                }
                // Awaiting here is the backpressure on a fast sender.
                if tx.send(NetEvent::Frame { conn, frame }).await.is_err() {
                    return;
                }
            }
            Err(error) => {
                let _ = tx.send(NetEvent::ReadClosed { conn, error }).await;
                return;
            }
        }
    }
}

/// Seals what the actor queued and writes it. Frames queued together go out
/// in as few records and writes as fit `WRITE_BATCH`.
pub(super) async fn writer_task(
    mut w: OwnedWriteHalf,
    mut sealer: Sealer,
    mut rx: mpsc::Receiver<WriterCmd>,
    conn: ConnId,
    tx: mpsc::Sender<NetEvent>,
    write_timeout: std::time::Duration,
    broadcast_queued: Arc<AtomicUsize>,
) {
    let mut plain = Vec::new();
    let mut out = Vec::new();
    while let Some(cmd) = rx.recv().await {
        let take = |cmd: WriterCmd, plain: &mut Vec<u8>| match cmd {
            WriterCmd::Data(bytes) => {
                plain.extend_from_slice(&bytes);
                false
            }
            WriterCmd::Broadcast(bytes) => {
                broadcast_queued.fetch_sub(bytes.len(), AtomicOrdering::AcqRel);
                plain.extend_from_slice(&bytes);
                false
            }
            WriterCmd::Close => true,
        };
        let mut close = take(cmd, &mut plain);
        while !close && plain.len() < WRITE_BATCH {
            match rx.try_recv() {
                Ok(cmd) => close = take(cmd, &mut plain),
                Err(_) => break,
            }
        }
        out.clear();
        let sealed = sealer.seal(&plain, &mut out);
        plain.clear();
        if sealed.is_err() || !matches!(timeout(write_timeout, w.write_all(&out)).await, Ok(Ok(())))
        {
            let _ = tx.send(NetEvent::WriteFailed { conn }).await;
            return;
        }
        if close {
            let _ = timeout(write_timeout, async {
                let _ = w.flush().await;
                let _ = w.shutdown().await;
            })
            .await;
            return;
        }
    }
}
