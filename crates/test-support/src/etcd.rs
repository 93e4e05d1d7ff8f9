//! A real etcd cluster on loopback for the HA tests and benchmarks: members on free ports, data
//! dirs in a scratch directory of their own, every member killed and the directory removed on
//! drop. Uses Debian's `etcd` and `etcdctl` (`scripts/setup.sh`), or `ETCD_BIN`/`ETCDCTL_BIN`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

fn etcd_bin() -> String {
    std::env::var("ETCD_BIN").unwrap_or_else(|_| "etcd".into())
}

fn etcdctl_bin() -> String {
    std::env::var("ETCDCTL_BIN").unwrap_or_else(|_| "etcdctl".into())
}

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

/// A running cluster. Dropping it kills every member and removes the data.
pub struct EtcdCluster {
    dir: PathBuf,
    token: String,
    members: Vec<Member>,
}

impl EtcdCluster {
    /// Starts `n` members and waits until every one reports healthy.
    ///
    /// # Errors
    /// etcd is not installed, or the cluster does not become healthy within 30 s.
    pub fn start(n: usize) -> Result<Self, String> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let id = format!("lambdamesh-etcd-{}-{nanos}", std::process::id());
        let dir = std::env::temp_dir().join(&id);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let members = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                child: None,
            })
            .collect();
        let mut cluster = Self {
            dir,
            token: id,
            members,
        };
        for i in 0..n {
            cluster.spawn(i, "new")?;
        }
        for i in 0..n {
            cluster.wait_healthy(i, Duration::from_secs(30))?;
        }
        Ok(cluster)
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn spawn(&mut self, i: usize, state: &str) -> Result<(), String> {
        let initial = self.initial_cluster();
        let dir = self.dir.clone();
        let token = self.token.clone();
        let m = &mut self.members[i];
        let log = std::fs::File::create(dir.join(format!("{}.log", m.name)))
            .map_err(|e| e.to_string())?;
        let client = format!("http://127.0.0.1:{}", m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let child = Command::new(etcd_bin())
            .args([
                "--name",
                &m.name,
                "--data-dir",
                &dir.join(&m.name).to_string_lossy(),
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
                "--initial-cluster",
                &initial,
                "--initial-cluster-state",
                state,
                "--initial-cluster-token",
                &token,
                "--logger",
                "zap",
                "--log-outputs",
                "stderr",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {} (run scripts/setup.sh): {e}", etcd_bin()))?;
        m.child = Some(child);
        Ok(())
    }

    fn wait_healthy(&self, i: usize, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        let port = self.members[i].client_port;
        while Instant::now() < deadline {
            if http_get(port, "/health").is_some_and(|b| b.contains("\"health\":\"true\"")) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!(
            "etcd member {} did not become healthy; its log: {}",
            self.members[i].name,
            self.dir
                .join(format!("{}.log", self.members[i].name))
                .display()
        ))
    }

    /// Client URLs of every member (`http://127.0.0.1:PORT`).
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client_port))
            .collect()
    }

    /// The client URLs joined by commas, as `-etcd-endpoints` takes them.
    pub fn endpoint_list(&self) -> String {
        self.endpoints().join(",")
    }

    /// Process ids of the running members (for CPU accounting in benchmarks).
    pub fn pids(&self) -> Vec<u32> {
        self.members
            .iter()
            .filter_map(|m| m.child.as_ref().map(Child::id))
            .collect()
    }

    /// SIGKILLs member `i` (its data stays for [`EtcdCluster::restart`]).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts member `i` again on its data and waits for it to be healthy.
    ///
    /// # Errors
    /// It does not rejoin within 30 s.
    pub fn restart(&mut self, i: usize) -> Result<(), String> {
        self.kill(i);
        self.spawn(i, "existing")?;
        self.wait_healthy(i, Duration::from_secs(30))
    }

    /// Kills every member (etcd entirely unavailable); [`EtcdCluster::restart_all`] brings it back.
    pub fn kill_all(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }

    /// Starts every member again.
    ///
    /// # Errors
    /// The cluster does not become healthy within 30 s.
    pub fn restart_all(&mut self) -> Result<(), String> {
        for i in 0..self.members.len() {
            self.kill(i);
            self.spawn(i, "existing")?;
        }
        for i in 0..self.members.len() {
            self.wait_healthy(i, Duration::from_secs(30))?;
        }
        Ok(())
    }

    /// The index of the member that is the Raft leader now, if a running member knows one.
    pub fn leader(&self) -> Option<usize> {
        for (i, m) in self.members.iter().enumerate() {
            if m.child.is_none() {
                continue;
            }
            let out = self
                .etcdctl_at(
                    &format!("http://127.0.0.1:{}", m.client_port),
                    &["endpoint", "status", "-w", "fields"],
                )
                .ok()?;
            let text = String::from_utf8_lossy(&out.stdout);
            let field = |name: &str| {
                text.lines()
                    .find(|l| l.starts_with(&format!("\"{name}\" :")))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|v| v.trim().to_owned())
            };
            if let (Some(me), Some(leader)) = (field("MemberID"), field("Leader"))
                && me == leader
            {
                return Some(i);
            }
        }
        None
    }

    /// Runs `etcdctl` (API v3) against every member.
    ///
    /// # Errors
    /// `etcdctl` cannot be started.
    pub fn etcdctl(&self, args: &[&str]) -> Result<Output, String> {
        self.etcdctl_at(&self.endpoint_list(), args)
    }

    fn etcdctl_at(&self, endpoints: &str, args: &[&str]) -> Result<Output, String> {
        Command::new(etcdctl_bin())
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoints}"))
            .args(args)
            .output()
            .map_err(|e| format!("cannot run {}: {e}", etcdctl_bin()))
    }

    /// The scratch directory (member logs are `<dir>/m<i>.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A plain HTTP/1.0 GET on loopback; the body, or `None` on any failure.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split("\r\n\r\n").nth(1).map(str::to_owned)
}
