//! Frames: what travels inside the encrypted channel once the handshake is
//! done (see `channel` for the records that carry them, `handshake` for how
//! the channel is set up).
//!
//! Frame = u32 big-endian length + postcard payload. A frame may span several
//! channel records and a record may hold several frames: the [`Decoder`]
//! reassembles the plaintext stream. Everything here comes from the network
//! and is untrusted: every failure is an error value, never a panic, and a
//! length above the limit is rejected before anything is allocated for it.

use hyparview::{Message, PeerId};
use serde::{Deserialize, Serialize};
use std::io;
use std::net::SocketAddr;

/// First bytes a dialer sends, so a listener can tell our protocol (and its
/// version) from anything else that connects.
pub const MAGIC: [u8; 4] = *b"HYPV";
/// Version 1 was the HMAC handshake with cleartext frames; 2 is the Noise
/// channel. Peers of different versions cannot talk and say so in one line.
pub const VERSION: u16 = 2;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    Msg(Message),
    Ping,
    Pong,
    /// Sent on a duplicate connection just before we close it gracefully:
    /// we keep another connection to the sender (see the replacement rule in
    /// the actor), so its close is no link failure. Without it the other end
    /// may see the close before its own handshake of the kept connection
    /// completes and report the peer lost (a spurious PeerDown).
    Superseded,
    /// A Plumtree message on an overlay connection to an active peer. The
    /// only kind allowed past `max_frame_size` (up to the broadcast limit):
    /// see [`Decoder`].
    Broadcast(plumtree::Message<PeerId>),
}

/// Postcard's tag of [`Frame::Broadcast`] (variant index 4, one varint byte):
/// the first byte of its encoding, which the [`Decoder`] reads to bound a
/// frame by its kind before buffering it.
const BROADCAST_TAG: u8 = 4;

/// Why a connection's byte stream was given up.
#[derive(Debug)]
pub enum ReadError {
    /// Clean end of stream at a record boundary.
    Eof,
    Io(io::Error),
    /// A frame or record length above the limit.
    Oversize(u32),
    /// Authentic bytes that are not a frame.
    Decode,
    /// A record that does not decrypt: tampered, replayed, reordered or
    /// injected by someone without the session keys.
    Tampered,
}

impl ReadError {
    /// True for errors caused by a misbehaving peer or path (as opposed to a close).
    pub fn is_protocol_violation(&self) -> bool {
        matches!(
            self,
            ReadError::Oversize(_) | ReadError::Decode | ReadError::Tampered
        )
    }
}

/// Encodes a frame with its length prefix.
pub fn encode(frame: &Frame) -> Vec<u8> {
    let mut buf = Vec::with_capacity(32);
    encode_into(frame, &mut buf);
    buf
}

/// Appends a frame with its length prefix to `buf`.
pub fn encode_into(frame: &Frame, buf: &mut Vec<u8>) {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; 4]);
    // Serializing our own in-memory values into a Vec cannot fail; if it
    // ever did, drop the frame rather than send a torn one.
    match postcard::to_extend(frame, std::mem::take(buf)) {
        Ok(b) => *buf = b,
        Err(_) => return,
    }
    let len = (buf.len() - start - 4) as u32;
    buf[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// Reassembles frames from a plaintext byte stream (sans-IO: push bytes,
/// pop frames). Holds at most one partial frame: at most `max`, or at most
/// `max_broadcast` for a broadcast frame (told by its first byte, so a
/// protocol frame never gets the broadcast allowance).
pub struct Decoder {
    buf: Vec<u8>,
    /// Start of the unconsumed bytes in `buf`.
    pos: usize,
    max: usize,
    max_broadcast: usize,
}

impl Decoder {
    pub fn new(max: usize) -> Decoder {
        Decoder::with_broadcast(max, max)
    }

    /// As [`Decoder::new`], with broadcast frames allowed up to `max_broadcast`.
    pub fn with_broadcast(max: usize, max_broadcast: usize) -> Decoder {
        Decoder {
            buf: Vec::new(),
            pos: 0,
            max,
            max_broadcast: max_broadcast.max(max),
        }
    }

    /// Raises the broadcast allowance (never below `max`).
    pub fn allow_broadcast(&mut self, max_broadcast: usize) {
        self.max_broadcast = max_broadcast.max(self.max);
    }

    pub fn push(&mut self, bytes: &[u8]) {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, ReadError> {
        let avail = &self.buf[self.pos..];
        if avail.len() < 4 {
            self.compact();
            return Ok(None);
        }
        let len = u32::from_be_bytes([avail[0], avail[1], avail[2], avail[3]]);
        if len as usize > self.max {
            // Only a broadcast frame may be longer; its tag is the next byte.
            if len as usize > self.max_broadcast {
                return Err(ReadError::Oversize(len));
            }
            if avail.len() < 5 {
                self.compact();
                return Ok(None);
            }
            if avail[4] != BROADCAST_TAG {
                return Err(ReadError::Oversize(len));
            }
        }
        let end = 4 + len as usize;
        if avail.len() < end {
            self.compact();
            return Ok(None);
        }
        let frame = postcard::from_bytes(&avail[4..end]).map_err(|_| ReadError::Decode)?;
        self.pos += end;
        Ok(Some(frame))
    }

    /// Bytes held for a frame not yet complete.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn compact(&mut self) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
    }
}

/// Node ids are BEAM node names; the core checks gossiped ids with the
/// same function.
pub use hyparview::valid_id;

/// A usable advertised address: something another node could dial.
pub fn valid_advertised(addr: &SocketAddr) -> bool {
    addr.port() != 0 && !addr.ip().is_unspecified() && !addr.ip().is_multicast()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_the_cores_rule() {
        assert!(valid_id("app@[::1]"));
        assert!(!valid_id("a\0@b") && !valid_id(""));
    }

    #[test]
    fn decoder_reassembles_split_and_joined_frames() {
        let frames = [Frame::Msg(Message::Join), Frame::Ping, Frame::Superseded];
        let mut bytes = Vec::new();
        for f in &frames {
            encode_into(f, &mut bytes);
        }
        assert_eq!(
            u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize,
            encode(&frames[0]).len() - 4
        );
        // One byte at a time: every frame comes out once, in order.
        let mut d = Decoder::new(1024);
        let mut got = Vec::new();
        for b in &bytes {
            d.push(std::slice::from_ref(b));
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, frames);
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn only_broadcast_frames_get_the_broadcast_limit() {
        let payload = plumtree::Bytes::from(vec![7u8; 3000]);
        let big = Frame::Broadcast(plumtree::Message::Gossip(plumtree::Gossip {
            id: plumtree::MessageId {
                origin: PeerId::new("a@h"),
                incarnation: 1,
                seq: 0,
            },
            round: 0,
            payload,
        }));
        let bytes = encode(&big);
        assert_eq!(bytes[4], BROADCAST_TAG);
        let mut d = Decoder::with_broadcast(1024, 4096);
        d.push(&bytes);
        assert_eq!(d.next_frame().unwrap(), Some(big.clone()));
        // Over the broadcast limit: refused from the header alone.
        let mut d = Decoder::with_broadcast(1024, 2048);
        d.push(&bytes[..5]);
        assert!(matches!(d.next_frame(), Err(ReadError::Oversize(_))));
        // A protocol frame claiming the same length is refused too.
        let mut forged = bytes.clone();
        forged[4] = 0;
        let mut d = Decoder::with_broadcast(1024, 4096);
        d.push(&forged[..5]);
        assert!(matches!(d.next_frame(), Err(ReadError::Oversize(_))));
        // The header alone is not enough to decide: wait for the tag.
        let mut d = Decoder::with_broadcast(1024, 4096);
        d.push(&bytes[..4]);
        assert!(matches!(d.next_frame(), Ok(None)));
    }

    #[test]
    fn decoder_rejects_oversize_before_buffering_and_garbage() {
        let mut d = Decoder::new(16);
        d.push(&[0, 0, 0, 17]);
        assert!(matches!(d.next_frame(), Err(ReadError::Oversize(17))));
        let mut d = Decoder::new(1024);
        d.push(&[0, 0, 0, 3, 0xff, 0xff, 0xff]);
        assert!(matches!(d.next_frame(), Err(ReadError::Decode)));
    }
}
