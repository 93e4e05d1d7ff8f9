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

#[derive(Default)]
pub(crate) struct Registry {
    waiters: Mutex<HashMap<WatchKey, Vec<Arc<Notify>>>>,
}

impl Registry {
    fn register(&self, keys: &[WatchKey], notify: &Arc<Notify>) {
        let mut map = self.waiters.lock();
        for k in keys {
            map.entry(k.clone()).or_default().push(notify.clone());
        }
    }

    fn unregister(&self, keys: &[WatchKey], notify: &Arc<Notify>) {
        let mut map = self.waiters.lock();
        for k in keys {
            if let Some(list) = map.get_mut(k) {
                list.retain(|n| !Arc::ptr_eq(n, notify));
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
                    woken.extend(list);
                }
            }
        }
        for n in woken {
            n.notify_one();
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.waiters.lock().values().map(Vec::len).sum()
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
        shared.watches.register(keys, &notify);
        let index = shared.state.read().index_of(keys);
        if index > min_index {
            shared.watches.unregister(keys, &notify);
            return WatchOutcome::Changed(index);
        }
        let woke = tokio::time::timeout_at(deadline, notify.notified())
            .await
            .is_ok();
        shared.watches.unregister(keys, &notify);
        if !woke {
            return WatchOutcome::TimedOut(shared.state.read().index_of(keys));
        }
    }
}
