//! The processes `up` starts: each through `lambdamesh up-exec`, which asks the kernel to send
//! it SIGTERM when `up` dies (PR_SET_PDEATHSIG survives the exec) and then execs the command,
//! in a process group of its own (a Ctrl-C on the terminal reaches `up` only, which stops the
//! parts in order), with output appended to its log file and the run's marker in its
//! environment (what the next `up` or `down` looks for if this run dies).

use std::{
    ffi::OsString,
    fs::File,
    io::Read,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use std::os::unix::process::CommandExt as _;

use anyhow::Context;
use rustix::process::{Pid, Signal};

/// The variable marking every process of one run: its value is the state directory.
pub const MARKER: &str = "LAMBDAMESH_UP_STATE";

/// A running part's process.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(how)` once it has exited.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(e.to_string()),
        }
    }

    /// SIGTERM to its process group, SIGKILL after `grace`; waits for it.
    pub fn stop(&mut self, grace: Duration) {
        if self.exited().is_some() {
            return;
        }
        signal_group(self.pid(), Signal::TERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.exited().is_some() {
                // What it left in its group (a shell's children) goes too.
                signal_group(self.pid(), Signal::KILL);
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        tracing::warn!(pid = self.pid(), "did not stop in time; killing");
        signal_group(self.pid(), Signal::KILL);
        let _ = self.child.wait();
    }
}

fn signal_group(pid: u32, sig: Signal) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        let _ = rustix::process::kill_process_group(pid, sig);
    }
}

/// Starts `argv` supervised: cwd `dir`, extra `env`, output appended to `log`.
pub fn spawn(
    state: &Path,
    argv: &[OsString],
    dir: &Path,
    env: &[(String, String)],
    log: &Path,
) -> anyhow::Result<Proc> {
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let out = File::options()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open {}", log.display()))?;
    let err = out.try_clone()?;
    let mut cmd = Command::new(exe);
    cmd.arg("up-exec")
        .arg(std::process::id().to_string())
        .arg("--")
        .args(argv)
        .current_dir(dir)
        .env(MARKER, state)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0);
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {:?}", argv.first()))?;
    Ok(Proc {
        child,
        log: log.to_owned(),
    })
}

/// `lambdamesh up-exec PPID -- PROGRAM ARGS...`: dies with its parent, then becomes PROGRAM.
pub fn exec_supervised(ppid: u32, argv: &[OsString]) -> anyhow::Result<u8> {
    rustix::process::set_parent_process_death_signal(Some(Signal::TERM))
        .context("cannot set the parent-death signal")?;
    // The parent may have died between fork and prctl: then nobody would signal us.
    let parent = rustix::process::getppid().map(|p| p.as_raw_nonzero().get());
    if parent.and_then(|p| u32::try_from(p).ok()) != Some(ppid) {
        return Ok(1);
    }
    let (program, args) = argv.split_first().context("up-exec: no command")?;
    let e = Command::new(program).args(args).exec();
    Err(anyhow::anyhow!(
        "cannot run {}: {e}",
        program.to_string_lossy()
    ))
}

/// The last `n` lines of a log file.
pub fn tail(log: &Path, n: usize) -> Vec<String> {
    let mut text = String::new();
    if let Ok(mut f) = File::open(log) {
        let _ = f.read_to_string(&mut text);
    }
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| (*l).to_owned())
        .collect()
}
