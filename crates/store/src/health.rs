//! Whether the backing store answers: the embedded log always does; an etcd replica records each
//! answer it gets from etcd and each failure, so reads served from its copy while etcd is away
//! can say how stale they may be (Consul's `X-Consul-KnownLeader` / `X-Consul-LastContact`).

use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// What a read reports about the store behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contact {
    /// The store answered at its last attempt.
    pub known_leader: bool,
    /// Time since the last answer (zero while in contact).
    pub last_contact: Duration,
}

pub(crate) struct Health {
    inner: Mutex<(bool, Instant)>,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            inner: Mutex::new((true, Instant::now())),
        }
    }
}

impl Health {
    pub(crate) fn get(&self) -> Contact {
        let (up, at) = *self.inner.lock();
        Contact {
            known_leader: up,
            last_contact: if up { Duration::ZERO } else { at.elapsed() },
        }
    }

    pub(crate) fn ok(&self) {
        *self.inner.lock() = (true, Instant::now());
    }

    /// Marks the store unreachable; the time of the last answer is kept.
    pub(crate) fn failed(&self) -> bool {
        let mut g = self.inner.lock();
        let was = g.0;
        g.0 = false;
        was
    }
}
