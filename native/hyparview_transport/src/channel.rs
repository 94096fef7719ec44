//! The record layer of an established channel: the plaintext frame stream
//! (see `wire`) cut into Noise transport messages.
//!
//! Record = u16 big-endian length + ChaCha20-Poly1305 ciphertext (with its
//! 16-byte tag) of up to 65,519 plaintext bytes; the length is the Noise
//! message size limit (65,535). Each direction counts its records from 0 and
//! uses the count as the AEAD nonce, so a record that is tampered with,
//! replayed, reordered, dropped or injected fails to decrypt and closes the
//! connection. A frame larger than one record simply spans several.

use crate::wire::{Decoder, Frame, ReadError};
use snow::StatelessTransportState;
use std::io;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The Noise limit on one message, tag included.
pub const MAX_RECORD: usize = 65535;
pub const TAG: usize = 16;
/// Plaintext bytes one record carries at most.
pub const MAX_RECORD_PLAIN: usize = MAX_RECORD - TAG;

/// The sending half: encrypts plaintext into records.
pub struct Sealer {
    keys: Arc<StatelessTransportState>,
    nonce: u64,
}

/// The receiving half: decrypts records and reassembles frames.
pub struct Opener {
    keys: Arc<StatelessTransportState>,
    nonce: u64,
    plain: Vec<u8>,
    frames: Decoder,
}

/// Both halves of a channel, split between a reader and a writer task.
pub fn split(
    keys: StatelessTransportState,
    max_frame: usize,
    sent: u64,
    received: u64,
) -> (Sealer, Opener) {
    let keys = Arc::new(keys);
    (
        Sealer {
            keys: keys.clone(),
            nonce: sent,
        },
        Opener {
            keys,
            nonce: received,
            plain: Vec::new(),
            frames: Decoder::new(max_frame),
        },
    )
}

impl Opener {
    /// Lets broadcast frames (only those) reach `max_broadcast` bytes, once
    /// the handshake is done; protocol frames keep `max_frame`.
    pub fn allow_broadcast(&mut self, max_broadcast: usize) {
        self.frames.allow_broadcast(max_broadcast);
    }
}

impl Sealer {
    /// Appends `plain` to `out` as one or more records (none for empty input).
    pub fn seal(&mut self, plain: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        for chunk in plain.chunks(MAX_RECORD_PLAIN) {
            let start = out.len();
            out.resize(start + 2 + chunk.len() + TAG, 0);
            let n = self
                .keys
                .write_message(self.nonce, chunk, &mut out[start + 2..])
                .map_err(|_| io::Error::other("record encryption failed"))?;
            // The nonce is a u64 record count: it cannot wrap in practice, but
            // reusing one would be fatal, so refuse rather than wrap.
            self.nonce = self
                .nonce
                .checked_add(1)
                .ok_or_else(|| io::Error::other("channel nonce exhausted"))?;
            out[start..start + 2].copy_from_slice(&(n as u16).to_be_bytes());
            out.truncate(start + 2 + n);
        }
        Ok(())
    }
}

impl Opener {
    /// Decrypts one record (its bytes without the length prefix) and returns
    /// the plaintext.
    pub fn open_raw(&mut self, record: &[u8]) -> Result<&[u8], ReadError> {
        if record.len() < TAG || record.len() > MAX_RECORD {
            return Err(ReadError::Tampered);
        }
        // Sized to the largest record seen, not the largest possible: most
        // connections only ever carry small frames.
        if self.plain.len() < record.len() {
            self.plain.resize(record.len(), 0);
        }
        let n = self
            .keys
            .read_message(self.nonce, record, &mut self.plain)
            .map_err(|_| ReadError::Tampered)?;
        self.nonce += 1;
        Ok(&self.plain[..n])
    }

    /// Decrypts one record into the frame stream; frames come out of
    /// [`Opener::next_frame`].
    pub fn open(&mut self, record: &[u8]) -> Result<(), ReadError> {
        self.open_raw(record)?;
        let Opener { plain, frames, .. } = self;
        let n = record.len() - TAG;
        frames.push(&plain[..n]);
        Ok(())
    }

    pub fn next_frame(&mut self) -> Result<Option<Frame>, ReadError> {
        self.frames.next_frame()
    }
}

/// Reads one record's ciphertext into `buf`. `Eof` only at a record boundary.
pub async fn read_record<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
) -> Result<(), ReadError> {
    let mut len = [0u8; 2];
    let n = r.read(&mut len[..1]).await.map_err(ReadError::Io)?;
    if n == 0 {
        return Err(ReadError::Eof);
    }
    r.read_exact(&mut len[1..]).await.map_err(ReadError::Io)?;
    let len = u16::from_be_bytes(len) as usize;
    if len < TAG {
        return Err(ReadError::Tampered);
    }
    buf.resize(len, 0);
    r.read_exact(buf).await.map_err(ReadError::Io)?;
    Ok(())
}

/// Reads the next frame, reading and opening records as needed.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    opener: &mut Opener,
    buf: &mut Vec<u8>,
) -> Result<Frame, ReadError> {
    loop {
        if let Some(f) = opener.next_frame()? {
            return Ok(f);
        }
        read_record(r, buf).await?;
        opener.open(buf)?;
    }
}

/// Seals and writes frames (a client-side helper; the actor's writer task
/// batches on its own).
pub async fn write_frames<W: AsyncWrite + Unpin>(
    w: &mut W,
    sealer: &mut Sealer,
    frames: &[Frame],
) -> io::Result<()> {
    let mut plain = Vec::new();
    for f in frames {
        crate::wire::encode_into(f, &mut plain);
    }
    let mut out = Vec::with_capacity(plain.len() + 64);
    sealer.seal(&plain, &mut out)?;
    w.write_all(&out).await?;
    w.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::test_pair;
    use hyparview::Message;

    fn frames_of(opener: &mut Opener, wire: &[u8]) -> Result<Vec<Frame>, ReadError> {
        let mut out = Vec::new();
        let mut rest = wire;
        while rest.len() >= 2 {
            let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
            opener.open(&rest[2..2 + len])?;
            rest = &rest[2 + len..];
            while let Some(f) = opener.next_frame()? {
                out.push(f);
            }
        }
        Ok(out)
    }

    #[test]
    fn big_frames_span_records_and_round_trip() {
        let ((mut seal, _), (_, mut open)) = test_pair(1 << 20);
        let big = Frame::Msg(Message::ShuffleReply {
            peers: (0..4000)
                .map(|i| {
                    hyparview::Peer::new(
                        format!("node{i}@10.0.0.1").as_str(),
                        "10.0.0.1:4500".parse().unwrap(),
                        i,
                    )
                })
                .collect(),
        });
        let mut plain = crate::wire::encode(&big);
        assert!(plain.len() > MAX_RECORD_PLAIN, "test frame fits one record");
        crate::wire::encode_into(&Frame::Ping, &mut plain);
        let mut wire = Vec::new();
        seal.seal(&plain, &mut wire).unwrap();
        let got = frames_of(&mut open, &wire).unwrap();
        assert_eq!(got, vec![big, Frame::Ping]);
    }

    #[test]
    fn tampered_replayed_reordered_and_injected_records_fail() {
        let records = |seal: &mut Sealer| {
            let mut a = Vec::new();
            seal.seal(&crate::wire::encode(&Frame::Ping), &mut a)
                .unwrap();
            let mut b = Vec::new();
            seal.seal(&crate::wire::encode(&Frame::Pong), &mut b)
                .unwrap();
            (a, b)
        };
        // Tampered: one flipped bit anywhere in the ciphertext.
        let ((mut seal, _), (_, mut open)) = test_pair(1024);
        let (mut a, _) = records(&mut seal);
        let last = a.len() - 1;
        a[last] ^= 1;
        assert!(matches!(frames_of(&mut open, &a), Err(ReadError::Tampered)));
        // Replayed: the same record twice.
        let ((mut seal, _), (_, mut open)) = test_pair(1024);
        let (a, _) = records(&mut seal);
        assert_eq!(frames_of(&mut open, &a).unwrap(), vec![Frame::Ping]);
        assert!(matches!(frames_of(&mut open, &a), Err(ReadError::Tampered)));
        // Reordered: the second record first.
        let ((mut seal, _), (_, mut open)) = test_pair(1024);
        let (_, b) = records(&mut seal);
        assert!(matches!(frames_of(&mut open, &b), Err(ReadError::Tampered)));
        // Injected: a cleartext frame dressed as a record.
        let ((_, _), (_, mut open)) = test_pair(1024);
        let mut fake = crate::wire::encode(&Frame::Ping);
        fake.resize(TAG + 8, 0);
        let mut rec = (fake.len() as u16).to_be_bytes().to_vec();
        rec.extend_from_slice(&fake);
        assert!(matches!(
            frames_of(&mut open, &rec),
            Err(ReadError::Tampered)
        ));
    }
}
