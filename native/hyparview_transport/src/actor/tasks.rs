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
    let mut hs = handshake::Initiator::new(identity, Some(&expected.id), max_frame);
    let first = hs.start().map_err(HandshakeFail::Handshake)?;
    let (mut stream, sent) = match timeout(connect_t, connect_sending(expected.addr, &first)).await
    {
        Ok(Ok(c)) => c,
        _ => return Err(HandshakeFail::Connect),
    };
    let deadline = Instant::now() + hs_t;
    let rest = async {
        if sent < first.len() {
            match timeout_at(deadline, stream.write_all(&first[sent..])).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(HandshakeError::Closed),
                Err(_) => return Err(RejectReason::Timeout.into()),
            }
        }
        handshake::dial_after_first_flight(&mut stream, hs, deadline).await
    };
    rest.await
        .map(|session| (stream, session))
        .map_err(HandshakeFail::Handshake)
}

/// Connects to `addr` and sends what it can of `first` at once: on Linux
/// in the same poll as the `connect`, which on loopback and most LANs has
/// already established the connection, instead of after the runtime has
/// reported the socket writable. On a busy runtime that report can take
/// milliseconds, while the listener already counts the connection as a
/// pending handshake that has sent nothing, the first to go when it has to
/// drop one (a 64-node join storm on one host evicted up to 28 dialers
/// this way). Returns the stream and how many bytes went out.
#[cfg(target_os = "linux")]
async fn connect_sending(addr: SocketAddr, first: &[u8]) -> std::io::Result<(TcpStream, usize)> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    // Not connected yet: `EAGAIN`, and the bytes go once it is. No SIGPIPE
    // if it was reset meanwhile (as std's own writes).
    let sent = match socket.send_with_flags(first, libc::MSG_NOSIGNAL) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
        Err(e) => return Err(e),
    };
    let stream = TcpStream::from_std(socket.into())?;
    if sent == 0 {
        stream.writable().await?;
        if let Some(e) = stream.take_error()? {
            return Err(e);
        }
    }
    Ok((stream, sent))
}

#[cfg(not(target_os = "linux"))]
async fn connect_sending(addr: SocketAddr, _: &[u8]) -> std::io::Result<(TcpStream, usize)> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok((stream, 0))
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
