//! Blocking-query waiters. A waiter registers one `Notify` under each key its query depends on;
//! the committer wakes only the waiters of the keys a write touched. Registration happens before
//! the index check, so a write landing in between leaves a stored permit and is never missed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::Shared;
use crate::state::WatchKey;

/// Result of a wait: the index the query now has, and whether it moved past the caller's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchOutcome {
    Changed(u64),
    TimedOut(u64),
}

impl WatchOutcome {
    pub fn index(self) -> u64 {
        match self {
            Self::Changed(i) | Self::TimedOut(i) => i,
        }
    }
}

/// Waiters by key, each under its own ID so that leaving is O(1) per key: thousands of
/// proxies wait on the same few config keys, and a linear scan there was quadratic.
#[derive(Default)]
pub(crate) struct Registry {
    waiters: Mutex<HashMap<WatchKey, HashMap<u64, Arc<Notify>>>>,
    next_id: std::sync::atomic::AtomicU64,
}

impl Registry {
    fn register(&self, keys: &[WatchKey], notify: &Arc<Notify>) -> u64 {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut map = self.waiters.lock();
        for k in keys {
            // Most keys already have waiters (proxies share their config keys): look up first,
            // so the key is cloned only when it is new.
            match map.get_mut(k) {
                Some(list) => {
                    list.insert(id, notify.clone());
                }
                None => {
                    map.insert(k.clone(), HashMap::from([(id, notify.clone())]));
                }
            }
        }
        id
    }

    fn unregister(&self, keys: &[WatchKey], id: u64) {
        let mut map = self.waiters.lock();
        for k in keys {
            if let Some(list) = map.get_mut(k) {
                list.remove(&id);
                if list.is_empty() {
                    map.remove(k);
                }
            }
        }
    }

    /// Wakes every waiter registered under any of `keys` (and forgets them: they re-register).
    pub(crate) fn fire(&self, keys: &[WatchKey]) {
        let mut woken = Vec::new();
        {
            let mut map = self.waiters.lock();
            for k in keys {
                if let Some(list) = map.remove(k) {
                    woken.extend(list.into_values());
                }
            }
        }
        for n in woken {
            n.notify_one();
        }
    }

    /// Wakes every waiter (after a resync replaced the state wholesale).
    pub(crate) fn fire_all(&self) {
        let woken: Vec<_> = std::mem::take(&mut *self.waiters.lock())
            .into_values()
            .flat_map(HashMap::into_values)
            .collect();
        for n in woken {
            n.notify_one();
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.waiters.lock().values().map(HashMap::len).sum()
    }
}

pub(crate) async fn wait(
    shared: &Shared,
    keys: &[WatchKey],
    min_index: u64,
    timeout: Duration,
) -> WatchOutcome {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let notify = Arc::new(Notify::new());
        let id = shared.watches.register(keys, &notify);
        let index = shared.state.read().index_of(keys);
        if index > min_index {
            shared.watches.unregister(keys, id);
            return WatchOutcome::Changed(index);
        }
        let woke = tokio::time::timeout_at(deadline, notify.notified())
            .await
            .is_ok();
        shared.watches.unregister(keys, id);
        if !woke {
            return WatchOutcome::TimedOut(shared.state.read().index_of(keys));
        }
    }
}
