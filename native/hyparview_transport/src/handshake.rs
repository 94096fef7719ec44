//! The channel handshake: Noise `NNpsk0_25519_ChaChaPoly_BLAKE2s` keyed by
//! the shared secret (why this pattern: SECURITY.md).
//!
//! ```text
//! dialer -> listener   "HYPV" u16-version | u16 len | Noise msg 1 (psk, e)
//!                      the listener checks the psk here, before any
//!                      public-key work and before sending anything
//! listener -> dialer   u16 len | Noise msg 2 (e, ee) carrying the
//!                      listener's Hello (id, address, incarnation)
//!                      the dialer checks it is the id it meant to reach
//! dialer -> listener   record 0 of the channel: the dialer's Hello
//!                      (proves the dialer holds the session keys now)
//! ```
//! The preamble is the Noise prologue, so the version is bound to the
//! transcript. Ids, addresses and incarnations only ever travel encrypted
//! under keys that need both the secret and a fresh ephemeral key.
//!
//! [`Initiator`] and [`Responder`] are sans-IO step machines (the fuzzer
//! drives them directly); [`dial`] and [`accept`] run them on a stream.
//! (Past 600 lines with its tests: both machines share one wire format and
//! one set of checks, and reading them side by side is the point.)

use crate::channel::{self, Opener, Sealer};
use crate::ephemeral::{Draw, Resolver};
use crate::wire::{valid_advertised, valid_id, MAGIC, VERSION};
use hmac::{Hmac, Mac};
use hyparview::Peer;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use snow::{HandshakeState, StatelessTransportState};
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{timeout_at, Instant};

const NOISE: &str = "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s";
const PSK_LABEL: &[u8] = b"hyparview/2 noise psk";
pub const PREAMBLE_LEN: usize = 6;
/// Message 1 with an empty payload: ephemeral key + tag.
const MSG1_LEN: usize = 32 + channel::TAG;
/// Handshake messages carry at most a Hello (an id is at most 255 bytes):
/// a small cap keeps unauthenticated peers from making us allocate more.
pub const MAX_HANDSHAKE_MSG: usize = 1024;

/// Why a handshake was refused; the names are the NIF atoms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectReason {
    BadMagic,
    /// A peer of another protocol version (e.g. a version-1 node).
    BadVersion,
    /// The other side does not hold the shared secret, or a record of the
    /// handshake was forged or replayed.
    BadAuth,
    BadFrame,
    OversizeFrame,
    Timeout,
    BadId,
    SelfConnection,
    UnexpectedId,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::BadMagic => "bad_magic",
            RejectReason::BadVersion => "bad_version",
            RejectReason::BadAuth => "bad_auth",
            RejectReason::BadFrame => "bad_frame",
            RejectReason::OversizeFrame => "oversize_frame",
            RejectReason::Timeout => "timeout",
            RejectReason::BadId => "bad_id",
            RejectReason::SelfConnection => "self_connection",
            RejectReason::UnexpectedId => "unexpected_id",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What each side tells the other about itself, inside the channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub id: String,
    pub addr: SocketAddr,
    pub incarnation: u64,
}

/// The default shared secret of a distributed node: SHA-256 of
/// `"hyparview-cookie:" <> cookie`, so nodes that share a cookie share the
/// overlay's secret (computed here so the BEAM side needs no `:crypto`).
pub fn cookie_secret(cookie: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    let mut h = Sha256::new();
    h.update(b"hyparview-cookie:");
    h.update(cookie);
    h.finalize().into()
}

/// Who we are on the wire.
pub struct Identity {
    pub hello: Hello,
    psk: [u8; 32],
}

impl Identity {
    /// The Noise psk is HMAC-SHA256(secret, label): any secret length works
    /// and the secret itself never enters the handshake.
    pub fn new(id: &str, addr: SocketAddr, incarnation: u64, secret: &[u8]) -> Identity {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret)
            .unwrap_or_else(|_| <Hmac<Sha256> as Mac>::new_from_slice(&[0]).expect("hmac key"));
        m.update(PSK_LABEL);
        let mut psk = [0u8; 32];
        psk.copy_from_slice(&m.finalize().into_bytes());
        Identity {
            hello: Hello {
                id: id.to_string(),
                addr,
                incarnation,
            },
            psk,
        }
    }
}

/// Why a handshake did not complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandshakeError {
    /// The other side closed or reset the connection: no verdict on it.
    Closed,
    Rejected(RejectReason),
}

impl From<RejectReason> for HandshakeError {
    fn from(r: RejectReason) -> Self {
        HandshakeError::Rejected(r)
    }
}

/// An established channel: the authenticated peer and both record halves.
pub struct Session {
    pub peer: Peer,
    pub sealer: Sealer,
    pub opener: Opener,
}

/// One step of a handshake machine.
pub enum Step {
    /// Write `send` (may be empty), then read exactly `n` bytes and pass them
    /// to the next `step` call.
    Read { send: Vec<u8>, n: usize },
    /// Write `send`; the channel is established.
    Done { send: Vec<u8>, session: Session },
}

fn preamble() -> [u8; PREAMBLE_LEN] {
    let v = VERSION.to_be_bytes();
    [MAGIC[0], MAGIC[1], MAGIC[2], MAGIC[3], v[0], v[1]]
}

/// The handshake state of one side, with the X25519 of `ephemeral` (the
/// spare key) and snow's other primitives.
fn noise(psk: &[u8; 32], initiator: bool) -> (HandshakeState, Arc<Draw>) {
    static PARAMS: OnceLock<snow::params::NoiseParams> = OnceLock::new();
    // Fixed, valid parameters and a 32-byte psk: building cannot fail.
    let params = PARAMS.get_or_init(|| NOISE.parse().expect("noise params"));
    let prologue = preamble();
    let draw = Draw::new();
    let resolver = Box::new(Resolver::new(draw.clone()));
    let b = snow::Builder::with_resolver(params.clone(), resolver)
        .prologue(&prologue)
        .and_then(|b| b.psk(0, psk))
        .expect("noise builder");
    let hs = if initiator {
        b.build_initiator().expect("noise initiator")
    } else {
        b.build_responder().expect("noise responder")
    };
    (hs, draw)
}

fn framed(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + msg.len());
    out.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    out.extend_from_slice(msg);
    out
}

fn check_len(len: usize, min: usize) -> Result<(), RejectReason> {
    if len > MAX_HANDSHAKE_MSG {
        Err(RejectReason::OversizeFrame)
    } else if len < min {
        Err(RejectReason::BadFrame)
    } else {
        Ok(())
    }
}

fn length(b: &[u8]) -> usize {
    u16::from_be_bytes([b[0], b[1]]) as usize
}

/// The checks both sides apply to the other's Hello.
fn check_hello(bytes: &[u8], me: &Hello, expected: Option<&str>) -> Result<Hello, RejectReason> {
    let h: Hello = postcard::from_bytes(bytes).map_err(|_| RejectReason::BadFrame)?;
    if !valid_id(&h.id) {
        return Err(RejectReason::BadId);
    }
    if h.id == me.id {
        return Err(RejectReason::SelfConnection);
    }
    if expected.is_some_and(|x| x != h.id) {
        return Err(RejectReason::UnexpectedId);
    }
    if !valid_advertised(&h.addr) {
        return Err(RejectReason::BadFrame);
    }
    Ok(h)
}

fn encode_hello(h: &Hello) -> Vec<u8> {
    postcard::to_allocvec(h).unwrap_or_default()
}

fn session(
    keys: StatelessTransportState,
    hello: Hello,
    max_frame: usize,
    sent: u64,
    received: u64,
) -> Session {
    let (sealer, opener) = channel::split(keys, max_frame, sent, received);
    Session {
        peer: Peer::new(hello.id.as_str(), hello.addr, hello.incarnation),
        sealer,
        opener,
    }
}

enum IState {
    Start,
    Msg2Len,
    /// A zero length: maybe a version-1 listener's cleartext Hello.
    OldProbe,
    Msg2,
    Finished,
}

/// The dialer's side.
pub struct Initiator<'a> {
    me: &'a Identity,
    expected: Option<&'a str>,
    max_frame: usize,
    noise: Option<HandshakeState>,
    draw: Arc<Draw>,
    state: IState,
}

impl<'a> Initiator<'a> {
    pub fn new(me: &'a Identity, expected: Option<&'a str>, max_frame: usize) -> Self {
        let (hs, draw) = noise(&me.psk, true);
        Initiator {
            me,
            expected,
            max_frame,
            noise: Some(hs),
            draw,
            state: IState::Start,
        }
    }

    /// Replaces the spare ephemeral key this handshake used, once it has
    /// made its own (see `ephemeral`); call it after writing, while the
    /// other side computes. Does nothing otherwise.
    pub fn top_up(&self) {
        self.draw.top_up();
    }

    /// The first step: the bytes to send first (preamble and message 1),
    /// after which [`dial_after_first_flight`] reads the answer.
    pub fn start(&mut self) -> Result<Vec<u8>, HandshakeError> {
        match self.step(&[])? {
            Step::Read { send, .. } => Ok(send),
            Step::Done { .. } => Err(RejectReason::BadFrame.into()),
        }
    }

    pub fn step(&mut self, input: &[u8]) -> Result<Step, HandshakeError> {
        let mut buf = [0u8; MAX_HANDSHAKE_MSG];
        match self.state {
            IState::Start => {
                let hs = self.noise.as_mut().ok_or(RejectReason::BadFrame)?;
                let n = hs
                    .write_message(&[], &mut buf)
                    .map_err(|_| RejectReason::BadFrame)?;
                let mut send = preamble().to_vec();
                send.extend_from_slice(&framed(&buf[..n]));
                self.state = IState::Msg2Len;
                Ok(Step::Read { send, n: 2 })
            }
            IState::Msg2Len => {
                let len = length(input);
                if len == 0 {
                    self.state = IState::OldProbe;
                    return Ok(Step::Read {
                        send: Vec::new(),
                        n: 7,
                    });
                }
                check_len(len, MSG1_LEN)?;
                self.state = IState::Msg2;
                Ok(Step::Read {
                    send: Vec::new(),
                    n: len,
                })
            }
            IState::OldProbe => {
                // Version 1 opened with a u32 length and a postcard Hello:
                // [0 0 | 0 len | 0 'H' 'P' 'V' '1' ...].
                if input.len() == 7 && input[2..7] == [0, b'H', b'P', b'V', b'1'] {
                    Err(RejectReason::BadVersion.into())
                } else {
                    Err(RejectReason::BadFrame.into())
                }
            }
            IState::Msg2 => {
                let mut hs = self.noise.take().ok_or(RejectReason::BadFrame)?;
                let n = hs
                    .read_message(input, &mut buf)
                    .map_err(|_| RejectReason::BadAuth)?;
                let theirs = check_hello(&buf[..n], &self.me.hello, self.expected)?;
                let keys = hs
                    .into_stateless_transport_mode()
                    .map_err(|_| RejectReason::BadFrame)?;
                let mut s = session(keys, theirs, self.max_frame, 0, 0);
                let mut send = Vec::new();
                s.sealer
                    .seal(&encode_hello(&self.me.hello), &mut send)
                    .map_err(|_| RejectReason::BadFrame)?;
                self.state = IState::Finished;
                Ok(Step::Done { send, session: s })
            }
            IState::Finished => Err(RejectReason::BadFrame.into()),
        }
    }
}

enum RState {
    Preamble,
    /// Not our magic, but it may be a version-1 peer's Hello.
    OldProbe,
    Msg1Len,
    Msg1,
    /// Message 1 verified: message 2 is next.
    Msg2,
    HelloLen,
    Hello,
    Finished,
}

/// The listener's side.
pub struct Responder<'a> {
    me: &'a Identity,
    max_frame: usize,
    noise: Option<HandshakeState>,
    draw: Arc<Draw>,
    keys: Option<StatelessTransportState>,
    state: RState,
}

impl<'a> Responder<'a> {
    pub fn new(me: &'a Identity, max_frame: usize) -> Self {
        let (hs, draw) = noise(&me.psk, false);
        Responder {
            me,
            max_frame,
            noise: Some(hs),
            draw,
            keys: None,
            state: RState::Preamble,
        }
    }

    /// As [`Initiator::top_up`]: the listener makes its key only for
    /// message 2, after message 1 proved the secret, so before that this
    /// does nothing.
    pub fn top_up(&self) {
        self.draw.top_up();
    }

    /// Bytes of the first step: the preamble.
    pub fn first_read() -> usize {
        PREAMBLE_LEN
    }

    /// True once the dialer has shown it holds the secret (message 1): from
    /// then on the handshake has its full deadline, not the pre-auth one.
    pub fn proved(&self) -> bool {
        matches!(
            self.state,
            RState::Msg2 | RState::HelloLen | RState::Hello | RState::Finished
        )
    }

    pub fn step(&mut self, input: &[u8]) -> Result<Step, HandshakeError> {
        let read = |n| {
            Ok(Step::Read {
                send: Vec::new(),
                n,
            })
        };
        match self.state {
            RState::Preamble => {
                if input.len() != PREAMBLE_LEN {
                    return Err(RejectReason::BadFrame.into());
                }
                if input[..4] != MAGIC {
                    // Version 1: [0 0 0 len | 0 'H' 'P' 'V' '1' ...].
                    if input[..2] == [0, 0] && input[4..6] == [0, b'H'] {
                        self.state = RState::OldProbe;
                        return read(3);
                    }
                    return Err(RejectReason::BadMagic.into());
                }
                if input[4..6] != VERSION.to_be_bytes() {
                    return Err(RejectReason::BadVersion.into());
                }
                self.state = RState::Msg1Len;
                read(2)
            }
            RState::OldProbe => {
                if input == b"PV1" {
                    Err(RejectReason::BadVersion.into())
                } else {
                    Err(RejectReason::BadMagic.into())
                }
            }
            RState::Msg1Len => {
                let len = length(input);
                check_len(len, MSG1_LEN)?;
                self.state = RState::Msg1;
                read(len)
            }
            RState::Msg1 => {
                let hs = self.noise.as_mut().ok_or(RejectReason::BadFrame)?;
                let mut buf = [0u8; MAX_HANDSHAKE_MSG];
                // Decrypting the (empty) payload checks the psk: a wrong
                // secret or garbage fails here, cheaply and before we have
                // sent a single byte or done any public-key work.
                hs.read_message(input, &mut buf)
                    .map_err(|_| RejectReason::BadAuth)?;
                // Proved: message 2 (our ephemeral key, `ee`, Hello) comes
                // with the next step, so the proof is known before that work.
                self.state = RState::Msg2;
                read(0)
            }
            RState::Msg2 => {
                let mut hs = self.noise.take().ok_or(RejectReason::BadFrame)?;
                let mut buf = [0u8; MAX_HANDSHAKE_MSG];
                let n = hs
                    .write_message(&encode_hello(&self.me.hello), &mut buf)
                    .map_err(|_| RejectReason::BadFrame)?;
                self.keys = Some(
                    hs.into_stateless_transport_mode()
                        .map_err(|_| RejectReason::BadFrame)?,
                );
                self.state = RState::HelloLen;
                Ok(Step::Read {
                    send: framed(&buf[..n]),
                    n: 2,
                })
            }
            RState::HelloLen => {
                let len = length(input);
                check_len(len, channel::TAG)?;
                self.state = RState::Hello;
                read(len)
            }
            RState::Hello => {
                let keys = self.keys.take().ok_or(RejectReason::BadFrame)?;
                let (sealer, mut opener) = channel::split(keys, self.max_frame, 0, 0);
                // Only the holder of the dialer's ephemeral key can make this
                // record: a replayed message 1 stops here.
                let plain = opener.open_raw(input).map_err(|_| RejectReason::BadAuth)?;
                let theirs = check_hello(plain, &self.me.hello, None)?;
                self.state = RState::Finished;
                Ok(Step::Done {
                    send: Vec::new(),
                    session: Session {
                        peer: Peer::new(theirs.id.as_str(), theirs.addr, theirs.incarnation),
                        sealer,
                        opener,
                    },
                })
            }
            RState::Finished => Err(RejectReason::BadFrame.into()),
        }
    }
}

/// The dialer's first flight as a version-2 dialer sends it: preamble,
/// length, message 1 with its empty payload.
pub const FIRST_FLIGHT: usize = PREAMBLE_LEN + 2 + MSG1_LEN;

/// What the listener can tell from the bytes a new connection has sent so
/// far (see [`first_flight`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirstFlight {
    /// Not all of message 1 is there yet.
    Incomplete,
    /// Message 1 verified: the dialer holds the secret.
    Proved,
    /// What is there already fails the handshake.
    Rejected(RejectReason),
}

/// Checks the start of a connection's bytes, as the listener's handshake
/// will when it reads them, up to and including message 1's psk proof (no
/// public-key work). The listener's accept loop uses it on bytes it peeked
/// at, to tell a connection that has proved the secret from one that has
/// not before deciding which pending handshake to drop.
pub fn first_flight(me: &Identity, bytes: &[u8]) -> FirstFlight {
    let mut r = Responder::new(me, MAX_HANDSHAKE_MSG);
    let (mut at, mut need) = (0, Responder::first_read());
    while !r.proved() {
        let Some(piece) = bytes.get(at..at + need) else {
            return FirstFlight::Incomplete;
        };
        at += need;
        match r.step(piece) {
            Ok(Step::Read { n, .. }) => need = n,
            Ok(Step::Done { .. }) => break,
            Err(HandshakeError::Rejected(reason)) => return FirstFlight::Rejected(reason),
            Err(HandshakeError::Closed) => return FirstFlight::Incomplete,
        }
    }
    FirstFlight::Proved
}

async fn read_n<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut [u8],
    deadline: Instant,
) -> Result<(), HandshakeError> {
    match timeout_at(deadline, s.read_exact(buf)).await {
        Ok(Ok(_)) => Ok(()),
        // EOF, reset, any IO error: the other side went away.
        Ok(Err(_)) => Err(HandshakeError::Closed),
        Err(_) => Err(RejectReason::Timeout.into()),
    }
}

async fn write<S: AsyncWrite + Unpin>(
    s: &mut S,
    bytes: &[u8],
    deadline: Instant,
) -> Result<(), HandshakeError> {
    if bytes.is_empty() {
        return Ok(());
    }
    match timeout_at(deadline, s.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(HandshakeError::Closed),
        Err(_) => Err(RejectReason::Timeout.into()),
    }
}

/// Runs the dialer's side on a connected stream, checking that the listener
/// is `expected` (when given). Reads exactly the handshake's bytes, so
/// frames that follow stay in the stream for the reader.
pub async fn dial<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    me: &Identity,
    expected: Option<&str>,
    max_frame: usize,
    deadline: Instant,
) -> Result<Session, HandshakeError> {
    let mut hs = Initiator::new(me, expected, max_frame);
    let first = hs.start()?;
    write(stream, &first, deadline).await?;
    dial_after_first_flight(stream, hs, deadline).await
}

/// The rest of [`dial`], once the bytes of `hs.start()` are on their way
/// (a caller that sends them itself, as early as the connection allows).
pub async fn dial_after_first_flight<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    mut hs: Initiator<'_>,
    deadline: Instant,
) -> Result<Session, HandshakeError> {
    hs.top_up();
    // The answer's length first.
    let mut input = vec![0u8; 2];
    read_n(stream, &mut input, deadline).await?;
    loop {
        match hs.step(&input)? {
            Step::Read { send, n } => {
                write(stream, &send, deadline).await?;
                hs.top_up();
                input.resize(n, 0);
                read_n(stream, &mut input, deadline).await?;
            }
            Step::Done { send, session } => {
                write(stream, &send, deadline).await?;
                return Ok(session);
            }
        }
    }
}

/// Runs the listener's side: the dialer must prove the secret by
/// `preauth_deadline`, and finish by `deadline`. `on_proved` is called when
/// it has.
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    me: &Identity,
    max_frame: usize,
    preauth_deadline: Instant,
    deadline: Instant,
    mut on_proved: impl FnMut(),
) -> Result<Session, HandshakeError> {
    let mut hs = Responder::new(me, max_frame);
    let mut told = false;
    let mut input = vec![0u8; Responder::first_read()];
    read_n(stream, &mut input, preauth_deadline.min(deadline)).await?;
    loop {
        match hs.step(&input)? {
            Step::Read { send, n } => {
                write(stream, &send, deadline).await?;
                hs.top_up();
                input.resize(n, 0);
                let by = if hs.proved() {
                    if !told {
                        told = true;
                        on_proved();
                    }
                    deadline
                } else {
                    preauth_deadline.min(deadline)
                };
                read_n(stream, &mut input, by).await?;
            }
            Step::Done { send, session } => {
                write(stream, &send, deadline).await?;
                return Ok(session);
            }
        }
    }
}

/// Runs both machines against each other in memory: ((dialer sealer,
/// dialer opener), (listener sealer, listener opener)).
#[cfg(test)]
pub(crate) fn test_pair(max_frame: usize) -> ((Sealer, Opener), (Sealer, Opener)) {
    let a = Identity::new("a@h", "127.0.0.1:9".parse().unwrap(), 1, b"s");
    let b = Identity::new("b@h", "127.0.0.1:9".parse().unwrap(), 1, b"s");
    let (da, db) = run_pair(&a, &b, Some("b@h"), max_frame);
    let (da, db) = (da.unwrap(), db.unwrap());
    ((da.sealer, da.opener), (db.sealer, db.opener))
}

/// Drives an initiator and a responder against each other without IO.
pub fn run_pair(
    dialer: &Identity,
    listener: &Identity,
    expected: Option<&str>,
    max_frame: usize,
) -> (
    Result<Session, HandshakeError>,
    Result<Session, HandshakeError>,
) {
    let mut i = Initiator::new(dialer, expected, max_frame);
    let mut r = Responder::new(listener, max_frame);
    // Bytes in flight each way.
    let (mut to_r, mut to_i) = (Vec::<u8>::new(), Vec::<u8>::new());
    let (mut i_need, mut r_need) = (0usize, Responder::first_read());
    let mut i_input = Vec::new();
    let (mut i_done, mut r_done) = (None, None);
    loop {
        if i_done.is_none() && to_i.len() >= i_need {
            let input: Vec<u8> = to_i.drain(..i_need).collect();
            i_input.clear();
            i_input.extend_from_slice(&input);
            match i.step(&i_input) {
                Ok(Step::Read { send, n }) => {
                    to_r.extend_from_slice(&send);
                    i_need = n;
                }
                Ok(Step::Done { send, session }) => {
                    to_r.extend_from_slice(&send);
                    i_done = Some(Ok(session));
                }
                Err(e) => i_done = Some(Err(e)),
            }
            continue;
        }
        if r_done.is_none() && to_r.len() >= r_need {
            let input: Vec<u8> = to_r.drain(..r_need).collect();
            match r.step(&input) {
                Ok(Step::Read { send, n }) => {
                    to_i.extend_from_slice(&send);
                    r_need = n;
                }
                Ok(Step::Done { send, session }) => {
                    to_i.extend_from_slice(&send);
                    r_done = Some(Ok(session));
                }
                Err(e) => r_done = Some(Err(e)),
            }
            continue;
        }
        // Neither can move: whoever is still waiting sees the other close.
        let close =
            |d: Option<Result<Session, HandshakeError>>| d.unwrap_or(Err(HandshakeError::Closed));
        return (close(i_done), close(r_done));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str, secret: &[u8]) -> Identity {
        Identity::new(name, "127.0.0.1:9".parse().unwrap(), 7, secret)
    }

    #[test]
    fn pair_authenticates_both_ways() {
        let (a, b) = (id("a@h", b"s"), id("b@h", b"s"));
        let (ra, rb) = run_pair(&a, &b, Some("b@h"), 1024);
        assert_eq!(ra.unwrap().peer.id, "b@h");
        let rb = rb.unwrap();
        assert_eq!(rb.peer.id, "a@h");
        assert_eq!(rb.peer.incarnation, 7);
    }

    #[test]
    fn wrong_secret_is_refused_by_the_listener_before_it_sends_anything() {
        let (a, b) = (id("a@h", b"s"), id("b@h", b"other"));
        let mut i = Initiator::new(&a, None, 1024);
        let Ok(Step::Read { send, .. }) = i.step(&[]) else {
            panic!("initiator did not start");
        };
        let mut r = Responder::new(&b, 1024);
        let Ok(Step::Read { send: nothing, n }) = r.step(&send[..PREAMBLE_LEN]) else {
            panic!("preamble refused");
        };
        assert!(nothing.is_empty());
        let _ = r.step(&send[PREAMBLE_LEN..PREAMBLE_LEN + n]);
        let res = r.step(&send[PREAMBLE_LEN + n..]);
        assert!(matches!(
            res,
            Err(HandshakeError::Rejected(RejectReason::BadAuth))
        ));
        let (ra, rb) = run_pair(&a, &b, None, 1024);
        assert!(matches!(
            rb,
            Err(HandshakeError::Rejected(RejectReason::BadAuth))
        ));
        assert!(matches!(ra, Err(HandshakeError::Closed)));
    }

    #[test]
    fn dialer_refuses_an_unexpected_id_and_the_listener_learns_nothing() {
        let (a, b) = (id("a@h", b"s"), id("b@h", b"s"));
        let (ra, rb) = run_pair(&a, &b, Some("c@h"), 1024);
        assert!(matches!(
            ra,
            Err(HandshakeError::Rejected(RejectReason::UnexpectedId))
        ));
        assert!(matches!(rb, Err(HandshakeError::Closed)));
        let (ra, _) = run_pair(&a, &id("a@h", b"s"), None, 1024);
        assert!(matches!(
            ra,
            Err(HandshakeError::Rejected(RejectReason::SelfConnection))
        ));
    }

    #[test]
    fn a_first_flight_is_checked_up_to_the_psk_proof_only() {
        let me = id("b@h", b"s");
        let opening = |secret: &[u8]| {
            let dialer = id("a@h", secret);
            let mut i = Initiator::new(&dialer, None, 1024);
            i.start().unwrap()
        };
        let good = opening(b"s");
        assert_eq!(good.len(), FIRST_FLIGHT);
        assert_eq!(first_flight(&me, &good), FirstFlight::Proved);
        // Still arriving: no verdict, whatever is missing.
        for n in [0, 1, PREAMBLE_LEN, PREAMBLE_LEN + 2, FIRST_FLIGHT - 1] {
            assert_eq!(
                first_flight(&me, &good[..n]),
                FirstFlight::Incomplete,
                "{n}"
            );
        }
        assert_eq!(
            first_flight(&me, &opening(b"other")),
            FirstFlight::Rejected(RejectReason::BadAuth)
        );
        let mut forged = good.clone();
        forged[FIRST_FLIGHT - 1] ^= 1;
        assert_eq!(
            first_flight(&me, &forged),
            FirstFlight::Rejected(RejectReason::BadAuth)
        );
        assert_eq!(
            first_flight(&me, b"GET / HTTP/1.1\r\n"),
            FirstFlight::Rejected(RejectReason::BadMagic)
        );
        // The same bytes again (a replay) prove as much as they did: the
        // listener's own handshake would accept them up to here too.
        assert_eq!(first_flight(&me, &good), FirstFlight::Proved);
    }

    #[test]
    fn version_one_peers_are_recognised() {
        // A v1 Hello frame as an old node sends it first: u32 length,
        // variant 0, magic "HPV1", version 1, ...
        let old = [0u8, 0, 0, 60, 0, b'H', b'P', b'V', b'1', 1, 3];
        let me = id("b@h", b"s");
        let mut r = Responder::new(&me, 1024);
        let Ok(Step::Read { n, .. }) = r.step(&old[..PREAMBLE_LEN]) else {
            panic!("old preamble not probed");
        };
        assert!(matches!(
            r.step(&old[PREAMBLE_LEN..PREAMBLE_LEN + n]),
            Err(HandshakeError::Rejected(RejectReason::BadVersion))
        ));
        let mut i = Initiator::new(&me, None, 1024);
        let _ = i.step(&[]);
        let Ok(Step::Read { n, .. }) = i.step(&old[..2]) else {
            panic!("zero length not probed");
        };
        assert!(matches!(
            i.step(&old[2..2 + n]),
            Err(HandshakeError::Rejected(RejectReason::BadVersion))
        ));
        let mut r = Responder::new(&me, 1024);
        assert!(matches!(
            r.step(b"HYPV\x00\x09"),
            Err(HandshakeError::Rejected(RejectReason::BadVersion))
        ));
        let mut r = Responder::new(&me, 1024);
        assert!(matches!(
            r.step(b"GET / "),
            Err(HandshakeError::Rejected(RejectReason::BadMagic))
        ));
    }
}
