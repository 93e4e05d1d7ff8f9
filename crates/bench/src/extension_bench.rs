//! `extension-bench`: the Lambda extension measured from outside, next to Envoy configured as
//! the same mutual-TLS client proxy (same listener address family, same SNI, same client
//! certificate, same roots and SPIFFE ID check), in one run. Run by `bench/extension.sh`.
//!
//! - start: exec → registered, material read, listeners bound (the first `event/next` reaches
//!   the Extensions API stub only after that), p50/p90 over N starts;
//! - RSS idle and with 100 open connections (each has carried one request);
//! - latency of 1 KB requests (p50/p99), a new connection per request and kept alive;
//! - throughput with 1 MB bodies (echoed) over 4 kept-alive connections;
//! - what TLS session resumption saves: new-connection latency with it turned off.
//!
//! The mesh side is a rustls server in this process standing for the upstream's sidecar (it
//! requires the client certificate of the test CA and presents the upstream's SPIFFE leaf), so
//! the figures are the proxies' own and not two more Envoys'. Parameter Store is the local
//! platform, embedded.
//!
//! Usage: `extension-bench <lambdamesh-extension> <envoy> [starts=50] [requests=2000]`
//! With `EXTENSION_BENCH_LOG=<file>`, the long-lived extensions log at debug level to that file
//! (each connection's setup time and whether its session was resumed).

#![allow(clippy::print_stdout)] // a benchmark's job is to print its figures

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use bench::{Child, clean_up_on_signal, free_port, percentile, rss_kib, scratch_dir, wait_for};
use lambdamesh_extension::testing::{Leaf, Mesh};
use parking_lot::Mutex;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use serde_json::json;

const FUNCTION: &str = "bench-fn";
const ROUNDS: usize = 3;

fn main() -> anyhow::Result<()> {
    clean_up_on_signal()?;
    let args: Vec<String> = std::env::args().collect();
    let [_, extension, envoy, rest @ ..] = args.as_slice() else {
        bail!("usage: extension-bench <lambdamesh-extension> <envoy> [starts=50] [requests=2000]");
    };
    let starts: usize = rest.first().map_or(Ok(50), |s| s.parse())?;
    let requests: usize = rest.get(1).map_or(Ok(2000), |s| s.parse())?;
    let scratch = scratch_dir("lambdamesh-extension-bench-")?;

    let mesh = Mesh::new();
    let me = mesh.leaf(FUNCTION);
    let web = mesh.leaf("web");
    let platform = lambda_platform::Background::start(
        TcpListener::bind("127.0.0.1:0")?,
        lambda_platform::PlatformConfig::new(scratch.path().join("platform")),
    )?;
    put_material(platform.endpoint(), &mesh.our_json(&me))?;
    let upstream = Upstream::start(&mesh, &web)?;
    let stub = Stub::start()?;

    let size = std::fs::metadata(extension)?.len();
    println!("binary: {extension}: {:.2} MB", size as f64 / 1e6);

    // 1. Start time.
    let port = free_port()?;
    let mut samples = Vec::new();
    for _ in 0..starts {
        let started = Instant::now();
        let mut child = spawn_extension(
            extension,
            &stub,
            platform.endpoint(),
            upstream.port,
            port,
            &[],
        )?;
        let ready = stub.next_rx.recv_timeout(Duration::from_secs(20))?;
        samples.push(ready - started);
        TcpStream::connect(("127.0.0.1", port))
            .context("the listener is bound when next is called")?;
        stub.release(&shutdown_event());
        wait_exit(&mut child)?;
    }
    samples.sort();
    println!(
        "start (exec → registered, material read, listeners bound): p50 {:.2} ms, p90 {:.2} ms, min {:.2} ms ({starts} starts)",
        ms(percentile(&samples, 0.5)),
        ms(percentile(&samples, 0.9)),
        ms(samples.first().copied())
    );

    // 2. The long-lived proxies.
    let ext = spawn_extension(
        extension,
        &stub,
        platform.endpoint(),
        upstream.port,
        port,
        &[],
    )?;
    stub.next_rx.recv_timeout(Duration::from_secs(20))?;
    let ext_pid = ext.id();
    let no_resumption_port = free_port()?;
    let ext_nr = spawn_extension(
        extension,
        &stub,
        platform.endpoint(),
        upstream.port,
        no_resumption_port,
        &[("LAMBDAMESH_TLS_RESUMPTION", "false")],
    )?;
    stub.next_rx.recv_timeout(Duration::from_secs(20))?;
    let envoy_port = free_port()?;
    let envoy_child = start_envoy(
        envoy,
        scratch.path(),
        &mesh,
        &me,
        &web,
        upstream.port,
        envoy_port,
    )?;
    let envoy_pid = envoy_child.id();
    wait_for("Envoy proxies", 30, || {
        request(&mut None, envoy_port, 16).is_ok()
    })?;
    let body_1k = vec![b'x'; 1024];
    for p in [port, envoy_port, no_resumption_port] {
        let mut c = None;
        for _ in 0..200 {
            request_with(&mut c, p, &body_1k)?;
        }
    }

    // 3. Memory.
    println!(
        "RSS idle: extension {:.1} MB, Envoy {:.1} MB",
        rss_kib(ext_pid)? as f64 / 1024.0,
        rss_kib(envoy_pid)? as f64 / 1024.0
    );
    for (name, p, pid) in [
        ("extension", port, ext_pid),
        ("Envoy", envoy_port, envoy_pid),
    ] {
        let mut held = Vec::new();
        for _ in 0..100 {
            let mut c = None;
            request_with(&mut c, p, &body_1k)?;
            held.push(c);
        }
        std::thread::sleep(Duration::from_millis(300));
        println!(
            "RSS with 100 open connections: {name} {:.1} MB (peak {:.1} MB)",
            rss_kib(pid)? as f64 / 1024.0,
            hwm_kib(pid)? as f64 / 1024.0
        );
        drop(held);
        std::thread::sleep(Duration::from_millis(300));
    }

    // 4. Latency, interleaved rounds.
    let mut lat: Vec<(&str, bool, Vec<Duration>)> = vec![
        ("extension", true, Vec::new()),
        ("Envoy", true, Vec::new()),
        ("extension, no resumption", true, Vec::new()),
        ("extension", false, Vec::new()),
        ("Envoy", false, Vec::new()),
    ];
    let ports = [port, envoy_port, no_resumption_port, port, envoy_port];
    let pids = [ext_pid, envoy_pid, ext_nr.id(), ext_pid, envoy_pid];
    let mut cpu = [0f64; 5];
    for _ in 0..ROUNDS {
        for (i, (_, new_conn, out)) in lat.iter_mut().enumerate() {
            let cpu0 = cpu_seconds(pids[i])?;
            let mut c = None;
            for _ in 0..requests / ROUNDS {
                if *new_conn {
                    c = None;
                }
                let t = Instant::now();
                request_with(&mut c, ports[i], &body_1k)?;
                out.push(t.elapsed());
            }
            cpu[i] += cpu_seconds(pids[i])? - cpu0;
        }
    }
    for (i, (name, new_conn, out)) in lat.iter_mut().enumerate() {
        out.sort();
        println!(
            "1 KB requests, {}: {name}: p50 {:.3} ms, p99 {:.3} ms ({} requests; proxy CPU {:.0} µs per request)",
            if *new_conn {
                "new connection each"
            } else {
                "kept alive"
            },
            ms(percentile(out, 0.5)),
            ms(percentile(out, 0.99)),
            out.len(),
            cpu[i] * 1e6 / out.len() as f64
        );
    }
    let (full, resumed) = upstream.handshakes();
    println!("handshakes at the upstream: {full} full, {resumed} resumed");

    // 5. Throughput.
    // The machine may be shared: MB moved per CPU-second of the proxy is the steadier figure.
    let mut tput: Vec<(&str, u32, Vec<f64>, Vec<f64>)> = vec![
        ("extension", ext_pid, Vec::new(), Vec::new()),
        ("Envoy", envoy_pid, Vec::new(), Vec::new()),
    ];
    for _ in 0..2 {
        for (i, (_, pid, rate, per_cpu)) in tput.iter_mut().enumerate() {
            let cpu0 = cpu_seconds(*pid)?;
            let started = Instant::now();
            let mbps = throughput([port, envoy_port][i], 4, Duration::from_secs(4))?;
            let mb = mbps * started.elapsed().as_secs_f64();
            rate.push(mbps);
            per_cpu.push(mb / (cpu_seconds(*pid)? - cpu0).max(1e-3));
        }
    }
    for (name, _, rate, per_cpu) in &tput {
        let best = rate.iter().copied().fold(0.0, f64::max);
        println!(
            "1 MB bodies, 4 connections: {name}: {best:.0} MB/s each way (runs: {rate:.0?}); {:.0} MB per CPU-second of the proxy (runs: {per_cpu:.0?})",
            per_cpu.iter().copied().fold(0.0, f64::max)
        );
    }

    drop(ext);
    drop(ext_nr);
    drop(envoy_child);
    stub.release_all(&shutdown_event());
    Ok(())
}

fn ms(d: Option<Duration>) -> f64 {
    d.map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
}

fn shutdown_event() -> String {
    let deadline = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
        + 2000;
    json!({"eventType": "SHUTDOWN", "shutdownReason": "spindown", "deadlineMs": deadline})
        .to_string()
}

/// User + system CPU time of process `pid` so far (all its threads, exited ones included).
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = stat.rsplit_once(')').context("bad stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 0, utime 11, stime 12 (clock ticks of 1/100 s).
    let ticks: u64 = fields.get(11).context("utime")?.parse::<u64>()?
        + fields.get(12).context("stime")?.parse::<u64>()?;
    Ok(ticks as f64 / 100.0)
}

fn hwm_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmHWM")
}

fn put_material(endpoint: &str, value: &str) -> anyhow::Result<()> {
    let signer = aws_wire::Signer::new(
        aws_wire::Credentials {
            access_key: "test".into(),
            secret_key: "test".into(),
        },
        None,
        "us-east-1",
    );
    let req = signer.json_request(
        &aws_wire::Endpoint::parse(endpoint)?,
        "ssm",
        aws_wire::JsonProtocol::V1_1,
        "AmazonSSM.PutParameter",
        json!({"Name": format!("/bench/default/default/{FUNCTION}"), "Value": value,
            "Type": "SecureString", "Overwrite": true})
        .to_string()
        .into_bytes(),
        time::OffsetDateTime::now_utc(),
    )?;
    let r = bench::http_agent(Duration::from_secs(10)).run(req)?;
    if r.status() != 200 {
        bail!("PutParameter: {}", r.status());
    }
    Ok(())
}

fn spawn_extension(
    bin: &str,
    stub: &Stub,
    endpoint: &str,
    gateway: u16,
    port: u16,
    extra: &[(&str, &str)],
) -> anyhow::Result<Child> {
    let log = std::env::var_os("EXTENSION_BENCH_LOG");
    let stderr = match &log {
        Some(path) => Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?,
        ),
        None => Stdio::null(),
    };
    Child::spawn(
        Command::new(bin)
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{}", stub.port))
            .env("AWS_LAMBDA_FUNCTION_NAME", FUNCTION)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("CONSUL_MESH_GATEWAY_URI", format!("127.0.0.1:{gateway}"))
            .env("CONSUL_EXTENSION_DATA_PREFIX", "/bench")
            .env("CONSUL_SERVICE_UPSTREAMS", format!("web:{port}"))
            .env("LOG_LEVEL", if log.is_some() { "debug" } else { "info" })
            .envs(extra.iter().copied())
            .stdout(Stdio::null())
            .stderr(stderr),
    )
}

fn wait_exit(child: &mut Child) -> anyhow::Result<()> {
    let pid = child.id();
    wait_for("the extension exits after SHUTDOWN", 10, || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
            s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        })
    })
}

/// Envoy as a client proxy: a TCP listener whose cluster dials the upstream over mTLS with the
/// function's certificate, the upstream's SNI, the mesh root and the upstream's SPIFFE ID.
fn start_envoy(
    envoy: &str,
    dir: &std::path::Path,
    mesh: &Mesh,
    me: &Leaf,
    web: &Leaf,
    upstream: u16,
    port: u16,
) -> anyhow::Result<Child> {
    let sni = format!("web.default.dc1.internal.{}", mesh.trust_domain);
    let admin = free_port()?;
    let bootstrap = json!({
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": [{
                "name": "upstream",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.tcp_proxy",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                        "stat_prefix": "upstream", "cluster": "mesh"}}]}]
            }],
            "clusters": [{
                "name": "mesh", "type": "STATIC", "connect_timeout": "3s",
                "load_assignment": {"cluster_name": "mesh", "endpoints": [{"lb_endpoints": [{"endpoint":
                    {"address": {"socket_address": {"address": "127.0.0.1", "port_value": upstream}}}}]}]},
                "transport_socket": {"name": "envoy.transport_sockets.tls", "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                    "sni": sni,
                    "common_tls_context": {
                        "tls_certificates": [{"certificate_chain": {"inline_string": me.cert_pem},
                            "private_key": {"inline_string": me.key_pem}}],
                        "validation_context": {
                            "trusted_ca": {"inline_string": mesh.root.cert_pem},
                            "match_typed_subject_alt_names": [{"san_type": "URI",
                                "matcher": {"exact": web.spiffe_id}}]}}}}
            }]
        }
    });
    let path = dir.join("envoy.json");
    std::fs::write(&path, bootstrap.to_string())?;
    Child::spawn(
        Command::new(envoy)
            .arg("-c")
            .arg(&path)
            .args(["--disable-hot-restart", "-l", "error", "--concurrency", "2"])
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
}

/// One request of `size` bytes.
fn request(conn: &mut Option<BufReader<TcpStream>>, port: u16, size: usize) -> anyhow::Result<()> {
    request_with(conn, port, &vec![b'x'; size])
}

/// POSTs `body` on `conn` (opened to `port` when `None`) and reads the echoed answer.
fn request_with(
    conn: &mut Option<BufReader<TcpStream>>,
    port: u16,
    body: &[u8],
) -> anyhow::Result<()> {
    if conn.is_none() {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        *conn = Some(BufReader::with_capacity(64 * 1024, s));
    }
    let Some(c) = conn.as_mut() else {
        bail!("no connection");
    };
    let head = format!(
        "POST /echo HTTP/1.1\r\nhost: web\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let s = c.get_mut();
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let len = read_head(c)?;
    let mut left = len;
    let mut sink = [0u8; 64 * 1024];
    while left > 0 {
        let want = left.min(sink.len());
        let n = c.read(&mut sink[..want])?;
        if n == 0 {
            bail!("connection closed mid-answer");
        }
        left -= n;
    }
    if len != body.len() {
        bail!("echo of {} bytes answered {len}", body.len());
    }
    Ok(())
}

/// Reads an HTTP head; its `content-length`.
fn read_head(r: &mut BufReader<TcpStream>) -> anyhow::Result<usize> {
    let mut len = 0;
    let mut first = true;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            bail!("connection closed");
        }
        if first && !line.starts_with("HTTP/1.1 200") && !line.starts_with("POST") {
            bail!("unexpected: {line}");
        }
        first = false;
        let l = line.trim_end();
        if l.is_empty() {
            return Ok(len);
        }
        if let Some((k, v)) = l.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse()?;
        }
    }
}

/// MB/s each way: `conns` kept-alive connections echoing 1 MB bodies for `span`.
fn throughput(port: u16, conns: usize, span: Duration) -> anyhow::Result<f64> {
    let stop = Arc::new(AtomicBool::new(false));
    let bytes = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..conns)
        .map(|_| {
            let (stop, bytes) = (stop.clone(), bytes.clone());
            std::thread::spawn(move || -> anyhow::Result<()> {
                let body = vec![b'y'; 1 << 20];
                let mut c = None;
                while !stop.load(Ordering::Relaxed) {
                    request_with(&mut c, port, &body)?;
                    bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();
    let started = Instant::now();
    std::thread::sleep(span);
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().map_err(|_| anyhow::anyhow!("worker panicked"))??;
    }
    Ok(bytes.load(Ordering::Relaxed) as f64 / 1e6 / started.elapsed().as_secs_f64())
}

/// The upstream's sidecar stand-in: mutual TLS with the mesh CA, HTTP echo.
struct Upstream {
    port: u16,
    full: Arc<AtomicU64>,
    resumed: Arc<AtomicU64>,
}

impl Upstream {
    fn start(mesh: &Mesh, leaf: &Leaf) -> anyhow::Result<Upstream> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(
            mesh.root.cert_pem.as_bytes(),
        )?)?;
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()?;
        let chain = CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()?;
        let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes())?;
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()?
                .with_client_cert_verifier(verifier)
                .with_single_cert(chain, key)?,
        );
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let full = Arc::new(AtomicU64::new(0));
        let resumed = Arc::new(AtomicU64::new(0));
        let (f2, r2) = (full.clone(), resumed.clone());
        std::thread::spawn(move || {
            for s in listener.incoming().map_while(Result::ok) {
                let (config, full, resumed) = (config.clone(), f2.clone(), r2.clone());
                std::thread::spawn(move || {
                    let _ = serve_echo(s, config, &full, &resumed);
                });
            }
        });
        Ok(Upstream {
            port,
            full,
            resumed,
        })
    }

    fn handshakes(&self) -> (u64, u64) {
        (
            self.full.load(Ordering::Relaxed),
            self.resumed.load(Ordering::Relaxed),
        )
    }
}

fn serve_echo(
    s: TcpStream,
    config: Arc<rustls::ServerConfig>,
    full: &AtomicU64,
    resumed: &AtomicU64,
) -> anyhow::Result<()> {
    s.set_nodelay(true)?;
    let conn = rustls::ServerConnection::new(config)?;
    let mut tls = rustls::StreamOwned::new(conn, s);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    if matches!(
        tls.conn.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed)
    ) {
        resumed.fetch_add(1, Ordering::Relaxed);
    } else {
        full.fetch_add(1, Ordering::Relaxed);
    }
    let mut r = BufReader::with_capacity(64 * 1024, tls);
    let mut body = Vec::new();
    loop {
        let len = match read_head_tls(&mut r) {
            Ok(Some(len)) => len,
            _ => return Ok(()),
        };
        body.resize(len, 0);
        r.read_exact(&mut body)?;
        let w = r.get_mut();
        w.write_all(format!("HTTP/1.1 200 OK\r\ncontent-length: {len}\r\n\r\n").as_bytes())?;
        w.write_all(&body)?;
        w.flush()?;
    }
}

fn read_head_tls<R: BufRead>(r: &mut R) -> anyhow::Result<Option<usize>> {
    let mut len = 0;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let l = line.trim_end();
        if l.is_empty() {
            return Ok(Some(len));
        }
        if let Some((k, v)) = l.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse()?;
        }
    }
}

/// The Extensions API, as much as the extension uses: `register` answers at once; each
/// `event/next` is reported on `next_rx` and answered when the driver releases it.
struct Stub {
    port: u16,
    next_rx: mpsc::Receiver<Instant>,
    waiting: Arc<Mutex<Vec<mpsc::Sender<String>>>>,
}

impl Stub {
    fn start() -> anyhow::Result<Stub> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let (next_tx, next_rx) = mpsc::channel();
        let waiting: Arc<Mutex<Vec<mpsc::Sender<String>>>> = Arc::new(Mutex::new(Vec::new()));
        let w2 = waiting.clone();
        std::thread::spawn(move || {
            for s in listener.incoming().map_while(Result::ok) {
                let (next_tx, waiting) = (next_tx.clone(), w2.clone());
                std::thread::spawn(move || {
                    let _ = serve_stub(s, &next_tx, &waiting);
                });
            }
        });
        Ok(Stub {
            port,
            next_rx,
            waiting,
        })
    }

    /// Answers the oldest pending `event/next` with `event`.
    fn release(&self, event: &str) {
        let sender = {
            let mut w = self.waiting.lock();
            (!w.is_empty()).then(|| w.remove(0))
        };
        if let Some(tx) = sender {
            let _ = tx.send(event.to_owned());
        }
    }

    fn release_all(&self, event: &str) {
        for tx in self.waiting.lock().drain(..) {
            let _ = tx.send(event.to_owned());
        }
    }
}

fn serve_stub(
    s: TcpStream,
    next_tx: &mpsc::Sender<Instant>,
    waiting: &Mutex<Vec<mpsc::Sender<String>>>,
) -> anyhow::Result<()> {
    let mut r = BufReader::new(s);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let at = Instant::now();
        let path = line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        let mut len = 0;
        loop {
            let mut h = String::new();
            r.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse()?;
            }
        }
        let mut body = vec![0u8; len];
        r.read_exact(&mut body)?;
        let (status, extra, answer) = if path.ends_with("/register") {
            (
                "200 OK",
                "lambda-extension-identifier: bench\r\n",
                "{}".to_owned(),
            )
        } else if path.ends_with("/event/next") {
            let (tx, rx) = mpsc::channel();
            waiting.lock().push(tx);
            let _ = next_tx.send(at);
            ("200 OK", "", rx.recv()?)
        } else {
            ("202 Accepted", "", "{}".to_owned())
        };
        let resp = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n{extra}content-length: {}\r\n\r\n{answer}",
            answer.len()
        );
        r.get_mut().write_all(resp.as_bytes())?;
    }
}
