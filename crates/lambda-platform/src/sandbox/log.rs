//! A sandbox's log: everything its processes write goes to the function's log file, and the
//! current invoke's output is also captured for `LogType: Tail`.

use std::io::Write;

use parking_lot::Mutex;

use super::LOG_TAIL;

/// Per-sandbox log writer: appends to the function's log file and captures the current invoke's
/// output for `LogType: Tail`.
///
/// The platform's own lines of an invoke (`START`, `END`, `REPORT`) are held in memory and
/// written after the invoke has been answered, in one write: writing them in place put two file
/// writes on every invoke's path. Held lines are written before any later output, so the file
/// keeps its order.
pub(super) struct LogSink {
    file: Mutex<Option<std::fs::File>>,
    held: Mutex<Vec<u8>>,
    pub(super) capture: Mutex<Option<Vec<u8>>>,
}

impl LogSink {
    pub(super) fn new(file: Option<std::fs::File>) -> LogSink {
        LogSink {
            file: Mutex::new(file),
            held: Mutex::new(Vec::new()),
            capture: Mutex::new(None),
        }
    }

    /// Appends `bytes` to the file now (after any held lines).
    pub(super) fn write(&self, bytes: &[u8]) {
        self.write_held();
        if let Some(f) = self.file.lock().as_mut() {
            let _ = f.write_all(bytes);
        }
        self.capture(bytes);
    }

    /// Holds `bytes` for the file until [`LogSink::write_held`] or the next [`LogSink::write`];
    /// the tail captures them at once.
    pub(super) fn hold(&self, bytes: &[u8]) {
        self.held.lock().extend_from_slice(bytes);
        self.capture(bytes);
    }

    pub(super) fn write_held(&self) {
        let held = std::mem::take(&mut *self.held.lock());
        if held.is_empty() {
            return;
        }
        if let Some(f) = self.file.lock().as_mut() {
            let _ = f.write_all(&held);
        }
    }

    fn capture(&self, bytes: &[u8]) {
        if let Some(c) = self.capture.lock().as_mut() {
            c.extend_from_slice(bytes);
            // Only the tail is ever returned; bound memory for chatty functions.
            if c.len() > 4 * LOG_TAIL {
                c.drain(..c.len() - LOG_TAIL);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_lines_reach_the_file_in_order_and_the_tail_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.log");
        let file = std::fs::File::create(&path).unwrap();
        let log = LogSink::new(Some(file));
        *log.capture.lock() = Some(Vec::new());
        log.hold(b"START\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
        log.write(b"output\n");
        log.hold(b"END\n");
        assert_eq!(
            log.capture.lock().as_deref(),
            Some(&b"START\noutput\nEND\n"[..])
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "START\noutput\n");
        log.write_held();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "START\noutput\nEND\n"
        );
        log.write_held();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "START\noutput\nEND\n"
        );
    }
}
