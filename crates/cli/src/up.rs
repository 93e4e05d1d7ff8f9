//! `lambdamesh up [FILE|DIR]`, `down`, `status`, `logs`: a whole topology on one machine, from
//! one file (`docs/up.md`). `up` runs in the foreground on one thread: it starts every part in
//! dependency order (`up/run.rs`, `up/parts.rs`), prints the entry points, watches the parts,
//! and stops them in reverse order on Ctrl-C, SIGTERM or `down`. Children die with it even on
//! SIGKILL (`up/child.rs`); what a dead run left is cleaned by the next `up` or `down`
//! (`up/state.rs`). A file of several datacenters starts them all, the primary first, each
//! secondary joined through the primary's mesh gateways; parts are named `dc2/server`.

mod calls;
mod child;
mod federation;
mod parts;
mod progress;
mod run;
mod state;

use std::{
    ffi::OsString,
    io::Write,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use clap::Args;
use serde_json::Value;

pub use child::exec_supervised;
use run::{PartError, Run};
use state::StateDir;

#[derive(Args, Debug)]
pub struct UpArgs {
    /// The topology: a file, or a directory holding lambdamesh.hcl (default: .).
    #[arg(default_value = ".")]
    pub path: PathBuf,
    /// The state directory (default: the file's `state_dir`, else `<dir>/.lambdamesh`).
    #[arg(long = "state-dir")]
    pub state_dir: Option<PathBuf>,
    /// Move every port of the file to a free one (a second copy next to a running one, CI).
    #[arg(long = "free-ports")]
    pub free_ports: bool,
    /// Check the file (and the machine: commands, files, ports) and exit.
    #[arg(long)]
    pub check: bool,
}

#[derive(Args, Debug)]
pub struct DownArgs {
    #[arg(default_value = ".")]
    pub path: PathBuf,
    #[arg(long = "state-dir")]
    pub state_dir: Option<PathBuf>,
    /// Also remove the state directory (the server's data, the functions, the logs).
    #[arg(long)]
    pub purge: bool,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[arg(default_value = ".")]
    pub path: PathBuf,
    #[arg(long = "state-dir")]
    pub state_dir: Option<PathBuf>,
    /// Print the run record as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// A part (`server`, `platform`, `service NAME` or `NAME`, `sidecar NAME`, `gateway NAME`,
    /// a function's name); all parts when absent.
    pub name: Option<String>,
    /// Keep printing what is appended.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// The topology (default: .).
    #[arg(long = "file", default_value = ".")]
    pub path: PathBuf,
    #[arg(long = "state-dir")]
    pub state_dir: Option<PathBuf>,
}

/// The state directory for a topology path: the flag, else the file's `state_dir`, else
/// `<dir>/.lambdamesh` (read without failing on a broken file, so `down` always works).
fn state_dir_for(path: &Path, flag: Option<&PathBuf>) -> PathBuf {
    if let Some(d) = flag {
        return d.clone();
    }
    match topology::load(path) {
        Ok(t) => t.state_dir,
        Err(_) => topology::resolve(path)
            .parent()
            .map_or_else(|| PathBuf::from(".lambdamesh"), |d| d.join(".lambdamesh")),
    }
}

/// Where Envoy is: `ENVOY_BIN`, `envoy` on PATH, or a `.venv/bin/envoy` above `base`
/// (`scripts/setup.sh` links the pinned one there).
pub(crate) fn envoy_bin(base: &Path) -> String {
    if let Ok(e) = std::env::var("ENVOY_BIN") {
        return e;
    }
    if let Some(p) = topology::probe::find_program(base, "envoy") {
        return p.display().to_string();
    }
    venv_file(base, "bin/envoy").map_or_else(|| "envoy".into(), |p| p.display().to_string())
}

/// The Python for functions: `LAMBDAMESH_PYTHON`, a `.venv/bin/python` above `base`, else
/// `python3`.
fn python_for(base: &Path) -> PathBuf {
    if let Some(p) = std::env::var_os("LAMBDAMESH_PYTHON") {
        return PathBuf::from(p);
    }
    venv_file(base, "bin/python").unwrap_or_else(|| PathBuf::from("python3"))
}

fn venv_file(base: &Path, rel: &str) -> Option<PathBuf> {
    let base = base.canonicalize().ok()?;
    base.ancestors()
        .map(|d| d.join(".venv").join(rel))
        .find(|p| p.exists())
}

fn out(text: &str) -> anyhow::Result<()> {
    let mut o = std::io::stdout().lock();
    o.write_all(text.as_bytes())?;
    o.flush()?;
    Ok(())
}

pub fn up(args: UpArgs) -> anyhow::Result<u8> {
    let mut t = match topology::load(&args.path) {
        Ok(t) => t,
        Err(p) => {
            eprintln!("{p}");
            bail!(
                "{} problem(s) in the topology; nothing was started",
                p.problems.len()
            );
        }
    };
    if let Some(d) = &args.state_dir {
        t.state_dir = d.clone();
    }
    let state = StateDir::new(&t.state_dir)?;
    let Some(_lock) = state.lock()? else {
        let pid = state
            .read_record()
            .and_then(|r| r["pid"].as_u64())
            .map_or_else(String::new, |p| format!(" (pid {p})"));
        bail!(
            "this topology is already up{pid}: `lambdamesh down {}` stops it",
            args.path.display()
        );
    };
    // A run that died (SIGKILL, power loss) left its record and maybe processes.
    if state.read_record().is_some() {
        eprintln!("up: cleaning up after a run that did not stop");
    }
    state.clean_leftovers();
    state.clear_record();
    if args.free_ports {
        t.remap_ports(|| run::free_port().unwrap_or(0));
    }
    if let Err(p) = topology::probe::check(&t) {
        eprintln!("{p}");
        bail!(
            "{} problem(s) in the topology; nothing was started",
            p.problems.len()
        );
    }
    if args.check {
        out(&format!("{}: ok\n", t.file.display()))?;
        return Ok(0);
    }

    let stop = Arc::new(AtomicBool::new(false));
    watch_signals(stop.clone());
    let python = python_for(&t.base);
    let mut run = Run::new(t, state, stop, python)?;
    let started = Instant::now();
    let result = run.start_all();
    let code = match result {
        Err(PartError::Interrupted) => {
            run.progress.line("up: stopping");
            0
        }
        Err(PartError::Failed { .. }) => {
            run.progress.line("up: stopping what was started");
            1
        }
        Ok(()) => {
            let banner = banner(&run, started.elapsed());
            run.progress.line("");
            out(&banner)?;
            match run.watch() {
                None => 0,
                Some(failure) => {
                    run.progress.line(&failure);
                    1
                }
            }
        }
    };
    run.stop_all();
    Ok(code)
}

fn banner(run: &Run, took: Duration) -> String {
    let t = &run.t;
    let mut b = format!(
        "\nUp in {:.1} s: {}\n",
        took.as_secs_f64(),
        t.file.display()
    );
    for (i, d) in t.datacenters.iter().enumerate() {
        if t.federated {
            b.push_str(&format!(
                "\n  Datacenter {}{}\n",
                d.name,
                if i == t.primary { " (primary)" } else { "" }
            ));
        } else {
            b.push('\n');
        }
        datacenter_banner(&mut b, d);
    }
    b.push_str(&format!(
        "  Logs       {}   (lambdamesh logs [NAME] [-f])\n\nCtrl-C or `lambdamesh down` stops everything.\n",
        run.state.logs().display()
    ));
    b
}

fn datacenter_banner(b: &mut String, d: &topology::Datacenter) {
    b.push_str(&format!(
        "  HTTP API   http://{}   (the CLI and Consul's clients use it with no setting{})\n",
        d.server.http,
        if d.server.http.port() == 8500 {
            String::new()
        } else {
            format!("; export CONSUL_HTTP_ADDR={}", d.server.http)
        }
    ));
    b.push_str(&format!(
        "  Lambda     http://{}   (AWS_ENDPOINT_URL; credentials test/test{})\n",
        d.platform.addr,
        if d.platform.region == topology::DEFAULT_REGION {
            String::new()
        } else {
            format!("; AWS_REGION={}", d.platform.region)
        }
    ));
    for s in &d.services {
        if !s.command.is_empty() {
            b.push_str(&format!("  {:<10} http://127.0.0.1:{}/\n", s.name, s.port));
        }
        for u in s.sidecar.iter().flat_map(|sc| &sc.upstreams) {
            if s.command.is_empty() {
                b.push_str(&format!(
                    "  {:<10} its upstream {} on http://127.0.0.1:{}/\n",
                    s.name,
                    u.label(),
                    u.port
                ));
            }
        }
    }
    // What to curl: the way in (a service called `ingress`), else the first upstream of a
    // service that runs elsewhere.
    let try_url = d
        .services
        .iter()
        .find(|s| s.name == "ingress" && !s.command.is_empty())
        .map(|s| format!("http://127.0.0.1:{}/", s.port))
        .or_else(|| {
            d.services
                .iter()
                .filter(|s| s.command.is_empty())
                .flat_map(|s| s.sidecar.iter().flat_map(|sc| &sc.upstreams))
                .map(|u| format!("http://127.0.0.1:{}/", u.port))
                .next()
        });
    if let Some(url) = try_url {
        b.push_str(&format!("\n  Try:       curl {url}\n\n"));
    }
}

/// SIGINT/SIGTERM set `stop`; the main thread notices within 50 ms.
pub(crate) fn watch_signals(stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        if let Ok(rt) = rt {
            rt.block_on(crate::signals::shutdown_signal());
        }
        stop.store(true, Ordering::SeqCst);
    });
}

pub fn down(args: DownArgs) -> anyhow::Result<u8> {
    let dir = state_dir_for(&args.path, args.state_dir.as_ref());
    let Some(state) = StateDir::existing(&dir) else {
        out("nothing to stop\n")?;
        return Ok(0);
    };
    if state.running() {
        let pid = state
            .read_record()
            .and_then(|r| r["pid"].as_u64())
            .and_then(|p| i32::try_from(p).ok())
            .and_then(rustix::process::Pid::from_raw);
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        // `up` stops its parts in order and then releases the lock.
        let deadline = Instant::now() + Duration::from_secs(60);
        while state.running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if state.running() {
            bail!("up did not stop within 60 s");
        }
    }
    let left = state.clean_leftovers();
    state.clear_record();
    if left > 0 {
        out(&format!(
            "stopped {left} process(es) left by a run that died\n"
        ))?;
    }
    if args.purge {
        std::fs::remove_dir_all(&state.root)
            .with_context(|| format!("cannot remove {}", state.root.display()))?;
        out(&format!("removed {}\n", state.root.display()))?;
    }
    out("down\n")?;
    Ok(0)
}

/// Exit 0 when up and ready, 1 while starting, 3 when not running.
pub fn status(args: StatusArgs) -> anyhow::Result<u8> {
    let dir = state_dir_for(&args.path, args.state_dir.as_ref());
    let state = StateDir::existing(&dir);
    let running = state.as_ref().is_some_and(StateDir::running);
    let record = state.as_ref().and_then(StateDir::read_record);
    let (true, Some(record)) = (running, record) else {
        out("not running\n")?;
        return Ok(3);
    };
    if args.json {
        out(&format!("{}\n", serde_json::to_string_pretty(&record)?))?;
    } else {
        let ready = record["ready"] == Value::Bool(true);
        let mut s = format!(
            "{} (pid {}): {}\n",
            record["file"].as_str().unwrap_or_default(),
            record["pid"],
            if ready { "up" } else { "starting" }
        );
        let parts = record["parts"].as_array().cloned().unwrap_or_default();
        let width = parts
            .iter()
            .filter_map(|p| p["name"].as_str())
            .map(|n| n.chars().count())
            .max()
            .unwrap_or(0)
            .max(28);
        for p in &parts {
            let pid = p["pid"].as_u64().unwrap_or(0);
            let alive = Path::new(&format!("/proc/{pid}")).exists();
            s.push_str(&format!(
                "  {:<width$} pid {:<8} {}\n",
                p["name"].as_str().unwrap_or_default(),
                pid,
                if alive { "running" } else { "exited" }
            ));
        }
        if let Some(eps) = record["endpoints"].as_object() {
            for (k, v) in eps {
                s.push_str(&format!("  {k}: {}\n", v.as_str().unwrap_or_default()));
            }
        }
        out(&s)?;
        if !ready {
            return Ok(1);
        }
    }
    Ok(0)
}

pub fn logs(args: LogsArgs) -> anyhow::Result<u8> {
    let dir = state_dir_for(&args.path, args.state_dir.as_ref());
    let Some(state) = StateDir::existing(&dir) else {
        bail!("no state directory at {}", dir.display());
    };
    // Each log with its name: the part's (`server`, `dc2/sidecar-api`), a function's (its
    // name, `dc2/NAME`).
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    collect_logs(&state.logs(), "", &mut files);
    let datacenters = std::iter::once(String::new()).chain(
        std::fs::read_dir(&state.root)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join("lambda").is_dir() && e.file_name() != "lambda")
            .filter_map(|e| e.file_name().to_str().map(|n| format!("{n}/"))),
    );
    for prefix in datacenters {
        let dir = state.root.join(&prefix).join("lambda").join("logs");
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = e.path();
            if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                files.push((format!("{prefix}{stem}"), path));
            }
        }
    }
    files.sort();
    if let Some(name) = &args.name {
        // `sidecar web`, `dc2/sidecar web`, `web` (its service), a function's name.
        let name = name.replace(' ', "-");
        let (scope, bare) = name
            .rsplit_once('/')
            .map_or((String::new(), name.as_str()), |(dc, n)| {
                (format!("{dc}/"), n)
            });
        let want = [
            format!("{scope}{bare}"),
            format!("{scope}service-{bare}"),
            format!("{scope}function-{bare}"),
        ];
        files.retain(|(label, _)| want.contains(label));
        if files.is_empty() {
            bail!("no log for {name:?} in {}", state.logs().display());
        }
    }
    let many = files.len() > 1;
    let mut offsets: Vec<u64> = vec![0; files.len()];
    loop {
        for (i, (label, f)) in files.iter().enumerate() {
            let Ok(bytes) = std::fs::read(f) else {
                continue;
            };
            let start = usize::try_from(offsets[i]).unwrap_or(0).min(bytes.len());
            let new = &bytes[start..];
            offsets[i] = bytes.len() as u64;
            if new.is_empty() {
                continue;
            }
            let text = String::from_utf8_lossy(new);
            let mut o = String::new();
            for line in text.lines() {
                if many {
                    o.push_str(&format!("{label:>22} | {line}\n"));
                } else {
                    o.push_str(line);
                    o.push('\n');
                }
            }
            out(&o)?;
        }
        if !args.follow {
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The `.log` files under `dir`, each named by its path below the logs directory without
/// `.log` (a federated part's log is in its datacenter's directory).
fn collect_logs(dir: &Path, prefix: &str, out: &mut Vec<(String, PathBuf)>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = e.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if path.is_dir() {
            collect_logs(&path, &format!("{prefix}{name}/"), out);
        } else if let Some(stem) = name.strip_suffix(".log") {
            out.push((format!("{prefix}{stem}"), path));
        }
    }
}

/// The hidden `up-exec` subcommand's arguments.
#[derive(Args, Debug)]
pub struct UpExecArgs {
    pub ppid: u32,
    #[arg(last = true, required = true)]
    pub argv: Vec<OsString>,
}
