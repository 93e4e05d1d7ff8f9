//! The state directory of a topology: the server's data, the platform's functions, the parts'
//! logs, and the run record (`run.json`: who runs it, its parts and entry points). `up` holds
//! an exclusive lock on `up.lock` for its whole life, so "a run is alive" is a lock test, not a
//! PID guess; a record without its lock is a dead run, whose leftovers are found by the marker
//! every process of the run carries (or by a working directory inside the state directory: the
//! platform's sandboxes start with a clean environment in their code directory).

use std::{
    fs::File,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Context;
use rustix::{
    fs::FlockOperation,
    process::{Pid, Signal},
};
use serde_json::{Value, json};

use super::child::MARKER;

/// The directories and files of one state directory.
#[derive(Clone, Debug)]
pub struct StateDir {
    pub root: PathBuf,
}

impl StateDir {
    /// `root` made absolute (the marker compares paths).
    pub fn new(root: &Path) -> anyhow::Result<StateDir> {
        std::fs::create_dir_all(root)
            .with_context(|| format!("cannot create the state directory {}", root.display()))?;
        let root = root
            .canonicalize()
            .with_context(|| format!("cannot resolve {}", root.display()))?;
        std::fs::create_dir_all(root.join("logs"))?;
        Ok(StateDir { root })
    }

    /// An existing state directory, without creating it.
    pub fn existing(root: &Path) -> Option<StateDir> {
        root.canonicalize().ok().map(|root| StateDir { root })
    }

    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// A part's log: `logs/<part>.log`; a federated part's in its datacenter's directory
    /// (`dc2/sidecar api` → `logs/dc2/sidecar-api.log`).
    pub fn log(&self, part: &str) -> PathBuf {
        let path = self.logs().join(format!("{}.log", part.replace(' ', "-")));
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        path
    }

    fn record_path(&self) -> PathBuf {
        self.root.join("run.json")
    }

    /// Takes the run lock; `None` when another `up` holds it.
    pub fn lock(&self) -> anyhow::Result<Option<File>> {
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.root.join("up.lock"))
            .context("cannot open the run lock")?;
        match rustix::fs::flock(&f, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(f)),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(e).context("cannot lock the run lock"),
        }
    }

    /// Whether a live `up` holds the lock.
    pub fn running(&self) -> bool {
        self.root.join("up.lock").exists() && matches!(self.lock(), Ok(None))
    }

    pub fn read_record(&self) -> Option<Value> {
        let text = std::fs::read_to_string(self.record_path()).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Writes the run record atomically.
    pub fn write_record(&self, record: &Value) -> anyhow::Result<()> {
        let tmp = self.root.join("run.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(record)?)?;
        std::fs::rename(&tmp, self.record_path())?;
        Ok(())
    }

    pub fn clear_record(&self) {
        let _ = std::fs::remove_file(self.record_path());
    }

    /// Kills every process a dead run left (its marker in their environment, or their working
    /// directory inside the state directory) and waits until they are gone. Returns how many.
    pub fn clean_leftovers(&self) -> usize {
        let me = std::process::id();
        let marker = format!("{MARKER}={}", self.root.display());
        let inside = format!("{}/", self.root.display());
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if pid == me {
                continue;
            }
            let dir = entry.path();
            let marked = std::fs::read(dir.join("environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|kv| kv == marker.as_bytes()));
            let cwd_inside = std::fs::read_link(dir.join("cwd"))
                .is_ok_and(|cwd| format!("{}/", cwd.display()).starts_with(&inside));
            if marked || cwd_inside {
                found.push(pid);
            }
        }
        for pid in &found {
            if let Some(p) = i32::try_from(*pid).ok().and_then(Pid::from_raw) {
                // A frozen sandbox is stopped: SIGKILL ends it anyway, SIGCONT is for tidiness.
                let _ = rustix::process::kill_process(p, Signal::CONT);
                let _ = rustix::process::kill_process(p, Signal::KILL);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline
            && found
                .iter()
                .any(|pid| Path::new(&format!("/proc/{pid}")).exists() && !zombie(*pid))
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        if !found.is_empty() {
            tracing::info!(processes = found.len(), state = %self.root.display(), "cleaned up after a dead run");
        }
        found.len()
    }
}

fn zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// A fresh run record.
pub fn record(file: &Path) -> Value {
    json!({
        "pid": std::process::id(),
        "file": file.display().to_string(),
        "ready": false,
        "parts": [],
        "endpoints": {},
    })
}
