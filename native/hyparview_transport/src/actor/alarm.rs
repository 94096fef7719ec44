//! The actor's one timer, armed for its earliest deadline.
//!
//! On Linux it is a timerfd the runtime polls like any socket, so a
//! deadline costs the thread exactly one wake-up when it is due. tokio's
//! own timer wheel wakes its thread at the start of the wheel slot holding
//! a deadline and again at the deadline (a deadline 3 s away costs two or
//! three wake-ups): on an idle node that was a third of them. Elsewhere, or
//! if no timerfd can be had (fd limit), it is `tokio::time::sleep_until`.

use tokio::time::Instant;

pub(super) struct Alarm {
    timer: Option<timerfd::TimerFd>,
    armed: Option<Instant>,
}

impl Alarm {
    /// Needs the runtime (registers with its reactor).
    pub(super) fn new() -> Alarm {
        Alarm {
            timer: timerfd::TimerFd::new().ok(),
            armed: None,
        }
    }

    /// Arms for `at` (disarms with `None`); a no-op when unchanged.
    pub(super) fn set(&mut self, at: Option<Instant>) {
        if self.armed != at {
            self.armed = at;
            if let Some(t) = &self.timer {
                t.arm(at);
            }
        }
    }

    /// The alarm went off: the next `set` arms it even for the same time
    /// (a deadline that survived its wake-up is then retried, not lost).
    pub(super) fn fired(&mut self) {
        self.armed = None;
    }

    /// Until the armed time (forever while disarmed). Cancel-safe.
    pub(super) async fn wait(&self) {
        match (&self.timer, self.armed) {
            (_, None) => std::future::pending().await,
            (Some(t), Some(_)) => t.expired().await,
            (None, Some(at)) => tokio::time::sleep_until(at).await,
        }
    }
}

#[cfg(target_os = "linux")]
mod timerfd {
    use super::Instant;
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use tokio::io::unix::AsyncFd;
    use tokio::io::Interest;

    pub(super) struct TimerFd(AsyncFd<OwnedFd>);

    const ZERO: libc::timespec = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };

    impl TimerFd {
        pub(super) fn new() -> io::Result<TimerFd> {
            // SAFETY: a plain syscall; the fd is owned from here on.
            let raw = unsafe {
                libc::timerfd_create(
                    libc::CLOCK_MONOTONIC,
                    libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
                )
            };
            if raw < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `raw` is a fresh fd nobody else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            // SAFETY: the OwnedFd stays open, and the same fd, for as
            // long as the AsyncFd that owns it.
            unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
                .map(TimerFd)
                .map_err(|e| e.into())
        }

        pub(super) fn arm(&self, at: Option<Instant>) {
            // Relative to now: the kernel adds it to a clock read after
            // ours, so the alarm is never early. A zero value disarms, so
            // a deadline already passed is armed 1 ns ahead.
            let it_value = match at {
                None => ZERO,
                Some(t) => {
                    let d = t.saturating_duration_since(Instant::now());
                    libc::timespec {
                        tv_sec: d.as_secs() as libc::time_t,
                        tv_nsec: d.subsec_nanos().max(u32::from(d.as_secs() == 0)) as _,
                    }
                }
            };
            let spec = libc::itimerspec {
                it_interval: ZERO,
                it_value,
            };
            // SAFETY: a valid fd and pointers; cannot fail for these
            // values. Re-arming also clears an expiry not read yet.
            unsafe {
                libc::timerfd_settime(self.0.as_raw_fd(), 0, &spec, std::ptr::null_mut());
            }
        }

        pub(super) async fn expired(&self) {
            loop {
                let Ok(mut guard) = self.0.readable().await else {
                    return std::future::pending().await;
                };
                // Ok once the expiry count is read; WouldBlock (an expiry
                // cleared by re-arming) clears the readiness: wait again.
                let read = guard.try_io(|fd| {
                    let mut n = 0u64;
                    // SAFETY: reads at most 8 bytes into `n`.
                    let r = unsafe { libc::read(fd.as_raw_fd(), (&mut n as *mut u64).cast(), 8) };
                    if r < 0 {
                        Err(io::Error::last_os_error())
                    } else {
                        Ok(())
                    }
                });
                if let Ok(Ok(())) = read {
                    return;
                }
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod timerfd {
    use super::Instant;
    use std::io;

    pub(super) enum TimerFd {}

    impl TimerFd {
        pub(super) fn new() -> io::Result<TimerFd> {
            Err(io::ErrorKind::Unsupported.into())
        }

        pub(super) fn arm(&self, _: Option<Instant>) {
            match *self {}
        }

        pub(super) async fn expired(&self) {
            match *self {}
        }
    }
}
