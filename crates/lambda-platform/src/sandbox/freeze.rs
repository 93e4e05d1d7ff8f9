//! Freezing a sandbox between invokes, as Lambda does: once the runtime and every extension are
//! back waiting for their next event, every process group of the sandbox is stopped (SIGSTOP);
//! the next event (an invoke, or SHUTDOWN) continues them first (SIGCONT). So timers, refresh
//! loops and keep-alives of functions and extensions behave as on AWS, where nothing runs
//! between invokes. It costs one signal per process on each side of an invoke.
//!
//! Must not depend on the Runtime API's state: the sandbox decides when to freeze and calls in.

use parking_lot::Mutex;
use rustix::process::{Pid, Signal, kill_process_group};
use tracing::debug;

/// The sandbox's process groups and whether they are stopped.
#[derive(Default)]
pub(super) struct Freezer {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Process group ids (each process is started as a group leader).
    groups: Vec<i32>,
    frozen: bool,
    /// Bumped by every thaw: a freeze decided before it is void.
    generation: u64,
    /// Never frozen again (stopping).
    done: bool,
}

impl Freezer {
    /// Records a started process (its own group leader).
    pub(super) fn add(&self, pid: u32) {
        if let Ok(pid) = i32::try_from(pid) {
            self.inner.lock().groups.push(pid);
        }
    }

    /// Continues the processes if frozen; returns the generation a later freeze must match.
    pub(super) fn thaw(&self) -> u64 {
        let mut inner = self.inner.lock();
        inner.generation += 1;
        if inner.frozen {
            signal(&inner.groups, Signal::CONT);
            inner.frozen = false;
        }
        inner.generation
    }

    /// Continues the processes for good (the sandbox is stopping).
    pub(super) fn thaw_for_good(&self) {
        self.thaw();
        self.inner.lock().done = true;
    }

    /// Stops the processes unless a thaw came after `generation` was taken; whether it did.
    pub(super) fn freeze(&self, generation: u64) -> bool {
        let mut inner = self.inner.lock();
        if inner.done || inner.frozen || inner.generation != generation {
            return false;
        }
        signal(&inner.groups, Signal::STOP);
        inner.frozen = true;
        true
    }
}

fn signal(groups: &[i32], sig: Signal) {
    for &g in groups {
        let Some(pid) = Pid::from_raw(g) else {
            continue;
        };
        // A group that has exited is no error: the sandbox notices the exit on its own.
        if let Err(e) = kill_process_group(pid, sig) {
            debug!(group = g, error = %e, "cannot signal a sandbox process group");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt;

    use super::*;

    fn state(pid: u32) -> char {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit_once(')')?.1.trim_start().chars().next())
            .unwrap_or('?')
    }

    #[test]
    fn a_group_is_stopped_and_continued_and_a_late_freeze_is_void() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let f = Freezer::default();
        f.add(child.id());
        let g = f.thaw();
        assert!(f.freeze(g));
        for _ in 0..100 {
            if state(child.id()) == 'T' {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(state(child.id()), 'T');
        let g2 = f.thaw();
        assert!(!f.freeze(g), "a freeze decided before the thaw is void");
        for _ in 0..100 {
            if state(child.id()) != 'T' {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_ne!(state(child.id()), 'T');
        f.thaw_for_good();
        assert!(!f.freeze(g2 + 1));
        let _ = child.kill();
        let _ = child.wait();
    }
}
