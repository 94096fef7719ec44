//! Framing and the authenticated handshake.
//!
//! Frame = u32 big-endian length + postcard payload. Everything read here
//! comes from the network and is untrusted: every failure is an error value,
//! never a panic, and a length above the limit is rejected before anything is
//! allocated for it.

use hmac::{Hmac, Mac};
use hyparview::{Message, Peer};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub const MAGIC: [u8; 4] = *b"HPV1";
pub const VERSION: u16 = 1;
/// Handshake frames are tiny (an id is at most 255 bytes); a small cap keeps
/// unauthenticated peers from making us allocate `max_frame_size` buffers.
pub const HANDSHAKE_MAX_FRAME: usize = 1024;
const AUTH_LABEL: &[u8] = b"hyparview-auth";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub magic: [u8; 4],
    pub version: u16,
    pub id: String,
    pub addr: SocketAddr,
    pub incarnation: u64,
    pub nonce: [u8; 32],
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    Hello(Hello),
    Auth {
        mac: [u8; 32],
    },
    Msg(Message),
    Ping,
    Pong,
    /// Sent on a duplicate connection just before we close it gracefully:
    /// we keep another connection to the sender (see the replacement rule in
    /// the actor), so its close is no link failure. Without it the other end
    /// may see the close before its own handshake of the kept connection
    /// completes and report the peer lost (a spurious PeerDown).
    Superseded,
}

/// Why a handshake was refused; the names are the NIF atoms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectReason {
    BadMagic,
    BadVersion,
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

#[derive(Debug)]
pub enum ReadError {
    /// Clean end of stream at a frame boundary.
    Eof,
    Io(io::Error),
    Oversize(u32),
    Decode,
}

impl ReadError {
    /// True for errors caused by a misbehaving peer (as opposed to a close).
    pub fn is_protocol_violation(&self) -> bool {
        matches!(self, ReadError::Oversize(_) | ReadError::Decode)
    }
}

/// Encodes a frame with its length prefix, ready for a single write.
pub fn encode(frame: &Frame) -> Vec<u8> {
    let mut buf = vec![0u8; 4];
    // Serializing our own in-memory values into a Vec cannot fail.
    buf = postcard::to_extend(frame, buf).unwrap_or_else(|_| vec![0u8; 4]);
    let len = (buf.len() - 4) as u32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    buf
}

pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R, max: usize) -> Result<Frame, ReadError> {
    let mut len = [0u8; 4];
    // Distinguish EOF before the first byte (clean close) from a torn frame.
    let n = r.read(&mut len[..1]).await.map_err(ReadError::Io)?;
    if n == 0 {
        return Err(ReadError::Eof);
    }
    r.read_exact(&mut len[1..]).await.map_err(ReadError::Io)?;
    let len = u32::from_be_bytes(len);
    if len as usize > max {
        return Err(ReadError::Oversize(len));
    }
    let mut buf = vec![0u8; len as usize];
    r.read_exact(&mut buf).await.map_err(ReadError::Io)?;
    postcard::from_bytes(&buf).map_err(|_| ReadError::Decode)
}

pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, frame: &Frame) -> io::Result<()> {
    w.write_all(&encode(frame)).await?;
    w.flush().await
}

/// Node ids are BEAM node names: 3..=255 bytes of `[A-Za-z0-9_.@-]` (plus
/// `[`, `]`, `:` for IPv6 hosts), exactly one `@`, both parts non-empty.
pub fn valid_id(id: &str) -> bool {
    let b = id.as_bytes();
    if b.len() < 3 || b.len() > 255 {
        return false;
    }
    if !b.iter().all(|c| {
        c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'@' | b'-' | b'[' | b']' | b':')
    }) {
        return false;
    }
    let mut parts = id.split('@');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(name), Some(host), None) => !name.is_empty() && !host.is_empty(),
        _ => false,
    }
}

/// A usable advertised address: something another node could dial.
pub fn valid_advertised(addr: &SocketAddr) -> bool {
    addr.port() != 0 && !addr.ip().is_unspecified() && !addr.ip().is_multicast()
}

/// Who we are on the wire.
pub struct Identity {
    pub id: String,
    pub addr: SocketAddr,
    pub incarnation: u64,
    pub secret: Vec<u8>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Dialer = 0,
    Acceptor = 1,
}

fn mac(
    secret: &[u8],
    role: Role,
    own_nonce: &[u8; 32],
    peer_nonce: &[u8; 32],
    own_id: &str,
) -> Hmac<Sha256> {
    // HMAC accepts keys of any length; the error branch is unreachable but
    // must not panic, so fall back to an empty key (which then fails auth).
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| <Hmac<Sha256> as Mac>::new_from_slice(&[0u8]).expect("hmac"));
    m.update(AUTH_LABEL);
    m.update(&[role as u8]);
    m.update(own_nonce);
    m.update(peer_nonce);
    m.update(own_id.as_bytes());
    m
}

fn read_error_reason(e: ReadError) -> RejectReason {
    match e {
        ReadError::Oversize(_) => RejectReason::OversizeFrame,
        _ => RejectReason::BadFrame,
    }
}

/// Runs the symmetric handshake: both sides send `Hello`, check the other's,
/// then send `Auth` and verify the other's. Returns the authenticated peer.
/// The caller bounds it with the handshake timeout.
pub async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    me: &Identity,
    role: Role,
    expected: Option<&str>,
) -> Result<Peer, RejectReason> {
    let mut nonce = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut nonce);
    let hello = Frame::Hello(Hello {
        magic: MAGIC,
        version: VERSION,
        id: me.id.clone(),
        addr: me.addr,
        incarnation: me.incarnation,
        nonce,
    });
    write_frame(stream, &hello)
        .await
        .map_err(|_| RejectReason::BadFrame)?;
    let theirs = match read_frame(stream, HANDSHAKE_MAX_FRAME).await {
        Ok(Frame::Hello(h)) => h,
        Ok(_) => return Err(RejectReason::BadFrame),
        Err(e) => return Err(read_error_reason(e)),
    };
    if theirs.magic != MAGIC {
        return Err(RejectReason::BadMagic);
    }
    if theirs.version != VERSION {
        return Err(RejectReason::BadVersion);
    }
    if !valid_id(&theirs.id) {
        return Err(RejectReason::BadId);
    }
    if theirs.id == me.id {
        return Err(RejectReason::SelfConnection);
    }
    if let Some(x) = expected {
        if x != theirs.id {
            return Err(RejectReason::UnexpectedId);
        }
    }
    if !valid_advertised(&theirs.addr) {
        return Err(RejectReason::BadFrame);
    }
    let ours = mac(&me.secret, role, &nonce, &theirs.nonce, &me.id)
        .finalize()
        .into_bytes();
    let mut mac_bytes = [0u8; 32];
    mac_bytes.copy_from_slice(&ours);
    write_frame(stream, &Frame::Auth { mac: mac_bytes })
        .await
        .map_err(|_| RejectReason::BadFrame)?;
    let their_mac = match read_frame(stream, HANDSHAKE_MAX_FRAME).await {
        Ok(Frame::Auth { mac }) => mac,
        Ok(_) => return Err(RejectReason::BadFrame),
        Err(e) => return Err(read_error_reason(e)),
    };
    let peer_role = match role {
        Role::Dialer => Role::Acceptor,
        Role::Acceptor => Role::Dialer,
    };
    mac(&me.secret, peer_role, &theirs.nonce, &nonce, &theirs.id)
        .verify_slice(&their_mac)
        .map_err(|_| RejectReason::BadAuth)?;
    Ok(Peer::new(theirs.id, theirs.addr, theirs.incarnation))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(valid_id("a@b"));
        assert!(valid_id("app@127.0.0.1"));
        assert!(valid_id("app@[::1]"));
        assert!(!valid_id("ab"));
        assert!(!valid_id("@ab"));
        assert!(!valid_id("ab@"));
        assert!(!valid_id("a@b@c"));
        assert!(!valid_id("abc"));
        assert!(!valid_id("a b@c"));
        assert!(!valid_id("é@cd"));
        assert!(!valid_id(&format!("a@{}", "b".repeat(254))));
    }

    #[test]
    fn frame_roundtrip() {
        let f = Frame::Msg(Message::Join);
        let bytes = encode(&f);
        assert_eq!(
            u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize,
            bytes.len() - 4
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let got = rt.block_on(async { read_frame(&mut &bytes[..], 1024).await });
        assert_eq!(got.unwrap(), f);
        let got = rt.block_on(async { read_frame(&mut &bytes[..], 1).await });
        assert!(matches!(got, Err(ReadError::Oversize(_))));
        let garbage = [0u8, 0, 0, 3, 0xff, 0xff, 0xff];
        let got = rt.block_on(async { read_frame(&mut &garbage[..], 1024).await });
        assert!(matches!(got, Err(ReadError::Decode)));
    }

    #[test]
    fn handshake_pairs() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let mk = |id: &str, secret: &[u8]| Identity {
                id: id.into(),
                addr: "127.0.0.1:9".parse().unwrap(),
                incarnation: 7,
                secret: secret.to_vec(),
            };
            let (mut a, mut b) = tokio::io::duplex(4096);
            let (ia, ib) = (mk("a@h", b"s"), mk("b@h", b"s"));
            let (ra, rb) = tokio::join!(
                handshake(&mut a, &ia, Role::Dialer, Some("b@h")),
                handshake(&mut b, &ib, Role::Acceptor, None)
            );
            assert_eq!(ra.unwrap().id, "b@h");
            assert_eq!(rb.unwrap().incarnation, 7);

            let (mut a, mut b) = tokio::io::duplex(4096);
            let (ia, ib) = (mk("a@h", b"s"), mk("b@h", b"other"));
            let (ra, rb) = tokio::join!(
                handshake(&mut a, &ia, Role::Dialer, None),
                handshake(&mut b, &ib, Role::Acceptor, None)
            );
            assert_eq!(ra.unwrap_err(), RejectReason::BadAuth);
            assert_eq!(rb.unwrap_err(), RejectReason::BadAuth);

            let (mut a, mut b) = tokio::io::duplex(4096);
            let (ia, ib) = (mk("a@h", b"s"), mk("b@h", b"s"));
            let (ra, _rb) = tokio::join!(
                async {
                    let r = handshake(&mut a, &ia, Role::Dialer, Some("c@h")).await;
                    drop(a);
                    r
                },
                async {
                    let r = handshake(&mut b, &ib, Role::Acceptor, None).await;
                    drop(b);
                    r
                }
            );
            assert_eq!(ra.unwrap_err(), RejectReason::UnexpectedId);
        });
    }
}
