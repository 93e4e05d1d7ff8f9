//! Free loopback ports for children (Envoy, a server) that must be told their address before
//! they start.
//!
//! The usual trick, binding `127.0.0.1:0` and closing, returns a port from the kernel's
//! ephemeral range; until the child binds it, any outgoing connection on the machine may take it
//! as its source port, and the child then fails with "address already in use" (seen as a flaky
//! Envoy admin bind under parallel tests). So ports come from below the ephemeral range instead,
//! where the kernel never picks on its own.
//!
//! Test processes run in parallel (nextest runs every test in its own process), so each process
//! first claims a stretch of that range of its own: an exclusive lock on
//! `$TMPDIR/lambdamesh-test-ports/<first port>.lock`, which the kernel drops when the process
//! ends, however it ends. Ports are then handed out from the stretch, each checked bindable. Where
//! no lock can be taken (no writable temp dir), the process falls back to a stretch picked from
//! its pid and the clock, which two processes may then share.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Lowest port handed out: above the well-known and common registered service ports.
const LOW: u32 = 10_000;

/// Ports in one claimed stretch: more than any test or benchmark process uses (the most, this
/// crate's own test, takes 200). Past it, a process walks on into its neighbours' stretches.
const STRETCH: u32 = 500;

/// Calls so far in this process: the offset within its stretch.
static NEXT: AtomicU32 = AtomicU32::new(0);

/// Claims a stretch: the first port of one whose lock file this process now holds (the file
/// stays open, so the lock lasts as long as the process), or `None` when no lock can be had.
fn claim_stretch(low: u32, high: u32) -> Option<u32> {
    let dir = std::env::temp_dir().join("lambdamesh-test-ports");
    std::fs::create_dir_all(&dir).ok()?;
    let count = (high - low) / STRETCH;
    let first = start(count.max(1));
    for i in 0..count {
        let base = low + ((first + i) % count) * STRETCH;
        let Ok(file) = std::fs::File::create(dir.join(format!("{base}.lock"))) else {
            return None;
        };
        if file.try_lock().is_ok() {
            // Held until the process exits; nothing else may ever unlock it.
            std::mem::forget(file);
            return Some(base);
        }
    }
    None
}

/// The start of this process's stretch, in `0..span`.
fn start(span: u32) -> u32 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    std::process::id()
        .wrapping_mul(2_654_435_761)
        .wrapping_add(nanos)
        % span
}

/// The first port of the kernel's ephemeral range (`ip_local_port_range`), 32768 if unknown.
fn ephemeral_low() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .filter(|&p: &u32| p > LOW + 1_000)
        .unwrap_or(32_768)
}

/// A port on 127.0.0.1 that was bindable just now and that the kernel does not hand out by
/// itself. Falls back to a kernel-chosen port if the whole stretch is taken.
pub fn free_port() -> u16 {
    static BASE: std::sync::OnceLock<(u32, u32)> = std::sync::OnceLock::new();
    let &(span, first) = BASE.get_or_init(|| {
        let high = ephemeral_low();
        let span = high - LOW;
        // Offsets are taken from `LOW`, so a claimed stretch starts at `base - LOW`.
        match claim_stretch(LOW, high) {
            Some(base) => (span, base - LOW),
            None => (span, start(span)),
        }
    });
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = LOW + (first + n) % span;
        if let Ok(port) = u16::try_from(port)
            && TcpListener::bind(("127.0.0.1", port)).is_ok()
        {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_or(0, |a| a.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claimed_stretch_is_not_claimed_again_while_held() {
        // Within one process a second open file description is a second claimant, as another
        // process would be.
        let high = ephemeral_low();
        let a = claim_stretch(LOW, high).unwrap();
        let b = claim_stretch(LOW, high).unwrap();
        assert_ne!(a, b);
        for base in [a, b] {
            assert!(base >= LOW && base + STRETCH <= high && (base - LOW).is_multiple_of(STRETCH));
        }
    }

    #[test]
    fn ports_are_distinct_bindable_and_outside_the_ephemeral_range() {
        let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ports.len());
        let high = ephemeral_low();
        for p in ports {
            assert!(u32::from(p) >= LOW && u32::from(p) < high, "{p}");
            TcpListener::bind(("127.0.0.1", p)).unwrap();
        }
    }
}
