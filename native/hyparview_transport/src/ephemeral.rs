//! The handshake's ephemeral X25519 keys, and one spare made ahead of time.
//!
//! Each side of a handshake makes one ephemeral key pair (a base-point
//! multiplication) and one Diffie-Hellman (`ee`). On a connection that is
//! being set up both sit on the path: the dialer makes its key before
//! message 1, the listener makes its own after message 1 has proved the
//! secret and before it can answer. Here one spare key pair is kept, made
//! right after a handshake sent its message and is waiting for the other
//! side's (the dialer while the listener computes, the
//! listener while the dialer computes), so the next handshake finds its key
//! ready instead of computing it on its path. One spare serves the whole
//! process (every server and direction): ephemeral keys belong to no
//! identity.
//!
//! What does not change:
//! - Every key is used for exactly one handshake: [`Spare::take`] moves it
//!   out, and it is zeroed when dropped.
//! - No public-key work for a connection that has not proved the secret:
//!   the listener draws its key only when it writes message 2, which it
//!   does only after message 1 verified, and a spare is made only to
//!   replace one a handshake drew (or, once, after handshakes found none):
//!   every key pair made is used by a handshake, except the one spare (and
//!   rarely one made by two top-ups at once), so no peer can make us
//!   compute more than before.
//! - The key pairs come from the OS random source, like snow's own.
//!
//! A spare waits in memory until the next handshake, instead of being
//! made at its start; someone who can read the process's memory can read
//! its live session keys too, so this exposes nothing new.
//!
//! snow takes its primitives from a resolver: [`Resolver`] is snow's
//! default one, with [`SpareDh`] for X25519 (the same curve25519-dalek
//! operations as snow's own, plus the spare).

use curve25519_dalek::montgomery::MontgomeryPoint;
use rand::RngCore;
use snow::params::{CipherChoice, DHChoice, HashChoice};
use snow::resolvers::{CryptoResolver, DefaultResolver};
use snow::types::{Cipher, Dh, Hash, Random};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use zeroize::Zeroize;

/// An X25519 key pair.
pub(crate) struct KeyPair {
    secret: [u8; 32],
    public: [u8; 32],
}

impl KeyPair {
    fn from_secret(secret: [u8; 32]) -> KeyPair {
        let public = MontgomeryPoint::mul_base_clamped(secret).to_bytes();
        KeyPair { secret, public }
    }

    /// A fresh key pair from the OS random source.
    fn generate() -> Option<KeyPair> {
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.try_fill_bytes(&mut secret).ok()?;
        Some(KeyPair::from_secret(secret))
    }
}

impl Drop for KeyPair {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

/// The process's spare ephemeral key pair.
static SPARE: Spare = Spare::new();

pub(crate) struct Spare {
    key: Mutex<Option<KeyPair>>,
    /// A handshake found no spare: the next top-up may make one.
    wanted: AtomicBool,
}

impl Spare {
    const fn new() -> Spare {
        Spare {
            key: Mutex::new(None),
            wanted: AtomicBool::new(false),
        }
    }

    /// The spare, if there is one; it is never handed out twice.
    fn take(&self) -> Option<KeyPair> {
        let key = self.key.lock().unwrap_or_else(|e| e.into_inner()).take();
        if key.is_none() {
            self.wanted.store(true, Ordering::Relaxed);
        }
        key
    }

    /// Makes a spare if there is none and `drew` (the caller's handshake
    /// took the last one) or a handshake found none since the last top-up.
    /// At most one key pair per call, computed outside the lock.
    fn top_up(&self, drew: bool) {
        if !drew && !self.wanted.swap(false, Ordering::Relaxed) {
            return;
        }
        if self.key.lock().unwrap_or_else(|e| e.into_inner()).is_some() {
            return;
        }
        let Some(fresh) = KeyPair::generate() else {
            return;
        };
        let mut slot = self.key.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(fresh);
        }
    }
}

/// What one handshake drew: shared by its resolver's key objects and the
/// machine that tops the spare up.
pub(crate) struct Draw {
    spare: &'static Spare,
    /// This handshake's ephemeral key was made (from the spare or not).
    made: AtomicBool,
    /// It was the spare.
    took: AtomicBool,
    /// The spare was topped up for it already.
    settled: AtomicBool,
}

impl Draw {
    pub(crate) fn new() -> Arc<Draw> {
        Draw::on(&SPARE)
    }

    fn on(spare: &'static Spare) -> Arc<Draw> {
        Arc::new(Draw {
            spare,
            made: AtomicBool::new(false),
            took: AtomicBool::new(false),
            settled: AtomicBool::new(false),
        })
    }

    /// Once this handshake has made its ephemeral key, replaces the spare
    /// if it took it (see [`Spare::top_up`]); later calls do nothing. The
    /// driver calls it after writing, while it waits for the other side.
    pub(crate) fn top_up(&self) {
        if !self.made.load(Ordering::Relaxed) || self.settled.swap(true, Ordering::Relaxed) {
            return;
        }
        self.spare.top_up(self.took.load(Ordering::Relaxed));
    }
}

/// snow's default primitives, with [`SpareDh`] for X25519.
pub(crate) struct Resolver {
    draw: Arc<Draw>,
}

impl Resolver {
    pub(crate) fn new(draw: Arc<Draw>) -> Resolver {
        Resolver { draw }
    }
}

impl CryptoResolver for Resolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        DefaultResolver.resolve_rng()
    }

    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        match choice {
            DHChoice::Curve25519 => Some(Box::new(SpareDh {
                draw: self.draw.clone(),
                key: None,
            })),
            _ => None,
        }
    }

    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        DefaultResolver.resolve_hash(choice)
    }

    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        DefaultResolver.resolve_cipher(choice)
    }
}

/// X25519 as snow's `Dh25519` computes it; `generate` takes the spare
/// when there is one.
pub(crate) struct SpareDh {
    draw: Arc<Draw>,
    key: Option<KeyPair>,
}

const EMPTY: [u8; 32] = [0; 32];

impl Dh for SpareDh {
    fn name(&self) -> &'static str {
        "25519"
    }

    fn pub_len(&self) -> usize {
        32
    }

    fn priv_len(&self) -> usize {
        32
    }

    fn set(&mut self, privkey: &[u8]) {
        let mut secret = [0u8; 32];
        let n = privkey.len().min(32);
        secret[..n].copy_from_slice(&privkey[..n]);
        self.key = Some(KeyPair::from_secret(secret));
        secret.zeroize();
    }

    fn generate(&mut self, rng: &mut dyn Random) -> Result<(), snow::Error> {
        let key = match self.draw.spare.take() {
            Some(key) => {
                self.draw.took.store(true, Ordering::Relaxed);
                key
            }
            None => {
                let mut secret = [0u8; 32];
                rng.try_fill_bytes(&mut secret)?;
                let key = KeyPair::from_secret(secret);
                secret.zeroize();
                key
            }
        };
        self.key = Some(key);
        self.draw.made.store(true, Ordering::Relaxed);
        Ok(())
    }

    fn pubkey(&self) -> &[u8] {
        self.key.as_ref().map_or(&EMPTY, |k| &k.public)
    }

    fn privkey(&self) -> &[u8] {
        self.key.as_ref().map_or(&EMPTY, |k| &k.secret)
    }

    fn dh(&self, pubkey: &[u8], out: &mut [u8]) -> Result<(), snow::Error> {
        let (Some(key), Some(theirs)) = (&self.key, pubkey.get(..32)) else {
            return Err(snow::Error::Dh);
        };
        let mut point = [0u8; 32];
        point.copy_from_slice(theirs);
        let shared = MontgomeryPoint(point).mul_clamped(key.secret).to_bytes();
        let out = out.get_mut(..32).ok_or(snow::Error::Dh)?;
        out.copy_from_slice(&shared);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spare_is_used_once_and_replaced_only_for_who_took_it() {
        // A spare of the test's own (the process's is shared by tests
        // running in parallel).
        let spare: &'static Spare = Box::leak(Box::new(Spare::new()));
        // Nothing to take at first; that handshake's top-up makes one.
        let first = Draw::on(spare);
        let mut dh = SpareDh {
            draw: first.clone(),
            key: None,
        };
        let mut rng = DefaultResolver.resolve_rng().unwrap();
        dh.generate(&mut *rng).unwrap();
        assert!(!first.took.load(Ordering::Relaxed));
        first.top_up();
        let made = spare.key.lock().unwrap().as_ref().map(|k| k.public);
        assert!(made.is_some());
        // The next handshake takes exactly that key, and the slot is empty.
        let second = Draw::on(spare);
        let mut dh2 = SpareDh {
            draw: second.clone(),
            key: None,
        };
        dh2.generate(&mut *rng).unwrap();
        assert_eq!(Some(dh2.pubkey().try_into().unwrap()), made);
        assert!(spare.key.lock().unwrap().is_none());
        // A handshake that did not make a key yet (a listener before
        // message 1 verified) never makes one.
        Draw::on(spare).top_up();
        assert!(spare.key.lock().unwrap().is_none());
        // The one that took it replaces it with a different key, once.
        second.top_up();
        let next = spare.key.lock().unwrap().as_ref().map(|k| k.public);
        assert!(next.is_some() && next != made);
        spare.key.lock().unwrap().take();
        second.top_up();
        assert!(spare.key.lock().unwrap().is_none());
    }

    #[test]
    fn both_sides_agree_like_snows_own_x25519() {
        let mut rng = DefaultResolver.resolve_rng().unwrap();
        let mut a = Resolver::new(Draw::new())
            .resolve_dh(&DHChoice::Curve25519)
            .unwrap();
        let mut b = DefaultResolver.resolve_dh(&DHChoice::Curve25519).unwrap();
        a.generate(&mut *rng).unwrap();
        b.generate(&mut *rng).unwrap();
        let (mut ab, mut ba) = ([0u8; 32], [0u8; 32]);
        a.dh(b.pubkey(), &mut ab).unwrap();
        b.dh(a.pubkey(), &mut ba).unwrap();
        assert_eq!(ab, ba);
        assert_ne!(ab, [0u8; 32]);
        // `set` derives the same public key as snow's.
        let mut c = Resolver::new(Draw::new())
            .resolve_dh(&DHChoice::Curve25519)
            .unwrap();
        c.set(b.privkey());
        assert_eq!(c.pubkey(), b.pubkey());
    }
}
