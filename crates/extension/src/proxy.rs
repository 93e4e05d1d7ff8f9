//! The listeners and their connections. One listener per upstream on `127.0.0.1:<port>` (the
//! reference bound every interface, so anything that reached the sandbox could use the
//! function's identity). A small pool of worker threads waits on all listeners with poll(2);
//! the worker that accepts a connection carries it to the end: it dials the gateway, runs the
//! mTLS handshake with the upstream's SNI and copies bytes ([`tunnel`]). One idle worker, the
//! leader, polls; the others wait to lead, so a new connection wakes one thread. The leader
//! hands over as soon as it has accepted, and a worker that takes the last idle place starts
//! another: no thread is created, and no hand-off between threads happens, on a new
//! connection's path (a thread per accepted connection cost ~0.1 ms there; see
//! `docs/benchmarks.md`). Workers idle for a minute beyond two exit.
//!
//! A failure is contained to its connection: a gateway that refuses or times out, a peer that
//! fails verification, a TLS error: the function's socket is closed and the reason logged. A
//! port already taken is logged and retried every second; the other upstreams serve meanwhile.
//! Concurrency is bounded ([`MAX_CONNECTIONS`]); at the bound no worker waits on the listeners
//! and the kernel's backlog holds new connections.

pub mod tunnel;

use std::{
    io::{self, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs},
    os::unix::net::UnixStream,
    sync::Arc,
    time::{Duration, Instant},
};

use parking_lot::{Condvar, Mutex};
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustls::ClientConnection;
use tracing::{debug, info, warn};

use crate::{state::Shared, upstream::Upstream, verify};

/// Most connections open at once (two descriptors each; Lambda allows 1,024).
pub const MAX_CONNECTIONS: usize = 400;
/// Stack of a worker thread: the handshake and the copy loop need little.
const WORKER_STACK: usize = 256 * 1024;
/// Idle workers kept; beyond them, a worker idle for [`IDLE_EXIT`] exits.
const KEEP_IDLE: usize = 2;
const IDLE_EXIT: Duration = Duration::from_secs(60);
/// How often a port that could not be bound is tried again.
const REBIND_EVERY: Duration = Duration::from_secs(1);
/// Longest a new connection waits for a due refresh of the material.
const REFRESH_WAIT: Duration = Duration::from_secs(1);

/// What every connection needs.
pub struct Context {
    pub shared: Arc<Shared>,
    pub upstreams: Vec<Upstream>,
    /// `host:port` of the mesh gateway.
    pub gateway: String,
    /// Bound on dialling the gateway plus the handshake (and retries) of one connection.
    pub connect_timeout: Duration,
}

/// The running listeners and their workers.
pub struct Proxy {
    pool: Arc<Pool>,
    wake: UnixStream,
}

struct Pool {
    ctx: Context,
    slots: Mutex<Vec<Slot>>,
    /// Readable once the proxy stops accepting (never read, so every worker sees it).
    stopped: UnixStream,
    counts: Mutex<Counts>,
    /// Signalled when a connection ends (for the drain).
    changed: Condvar,
    /// Signalled when the leader hands over.
    lead: Condvar,
}

struct Slot {
    upstream: usize,
    listener: Option<Arc<TcpListener>>,
    next_try: Instant,
}

#[derive(Default)]
struct Counts {
    workers: usize,
    idle: usize,
    busy: usize,
    /// An idle worker is polling the listeners.
    leader: bool,
    stopping: bool,
}

impl Proxy {
    /// Binds every upstream's listener (a port that cannot be bound is logged and retried) and
    /// starts the workers. Returns once every bindable listener is bound.
    ///
    /// # Errors
    /// The first worker or the stop socket cannot be made.
    pub fn start(ctx: Context) -> io::Result<Proxy> {
        let now = Instant::now();
        let slots: Vec<Slot> = (0..ctx.upstreams.len())
            .map(|i| Slot {
                upstream: i,
                listener: bind(&ctx.upstreams[i]).map(Arc::new),
                next_try: now + REBIND_EVERY,
            })
            .collect();
        let (wake, stopped) = UnixStream::pair()?;
        let pool = Arc::new(Pool {
            ctx,
            slots: Mutex::new(slots),
            stopped,
            counts: Mutex::new(Counts::default()),
            changed: Condvar::new(),
            lead: Condvar::new(),
        });
        for _ in 0..KEEP_IDLE {
            spawn_worker(&pool)?;
        }
        Ok(Proxy { pool, wake })
    }

    /// Stops accepting: the listeners are closed (once each worker is between connections);
    /// open connections go on.
    pub fn stop_accepting(&mut self) {
        let _ = self.wake.write_all(&[1]);
        self.pool.counts.lock().stopping = true;
        self.pool.lead.notify_all();
        self.pool.slots.lock().clear();
    }

    /// Waits until no connection is open or `deadline`; returns how many are still open.
    pub fn drain(&self, deadline: Instant) -> usize {
        let mut c = self.pool.counts.lock();
        while c.busy > 0 {
            if self.pool.changed.wait_until(&mut c, deadline).timed_out() {
                break;
            }
        }
        c.busy
    }
}

fn bind(u: &Upstream) -> Option<TcpListener> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, u.port));
    match TcpListener::bind(addr).and_then(|l| l.set_nonblocking(true).map(|()| l)) {
        Ok(l) => {
            info!(upstream = %u.raw, listen = %addr, "listening");
            Some(l)
        }
        Err(e) => {
            warn!(upstream = %u.raw, listen = %addr, error = %e, "cannot listen; retrying every second");
            None
        }
    }
}

fn spawn_worker(pool: &Arc<Pool>) -> io::Result<()> {
    {
        let mut c = pool.counts.lock();
        c.workers += 1;
        c.idle += 1;
    }
    let p = pool.clone();
    std::thread::Builder::new()
        .name("worker".into())
        .stack_size(WORKER_STACK)
        .spawn(move || worker(&p))
        .map(drop)
        .inspect_err(|_| {
            let mut c = pool.counts.lock();
            c.workers -= 1;
            c.idle -= 1;
        })
}

/// Leads (waits on the listeners) in turn with the other idle workers; carries each
/// connection it accepts to its end.
fn worker(pool: &Arc<Pool>) {
    let mut idle_since = Instant::now();
    loop {
        if !pool.take_lead() {
            pool.leave();
            return;
        }
        let (listeners, rebind_at) = pool.listeners();
        let now = Instant::now();
        let wake_at = rebind_at.map_or(idle_since + IDLE_EXIT, |t| t.min(idle_since + IDLE_EXIT));
        let timeout = Timespec::try_from(wake_at.saturating_duration_since(now)).ok();
        let mut fds: Vec<PollFd<'_>> = std::iter::once(PollFd::new(&pool.stopped, PollFlags::IN))
            .chain(
                listeners
                    .iter()
                    .map(|(_, l)| PollFd::new(&**l, PollFlags::IN)),
            )
            .collect();
        match poll(&mut fds, timeout.as_ref()) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => {
                warn!(error = %e, "poll failed");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        if !fds[0].revents().is_empty() {
            pool.hand_over();
            pool.leave();
            return;
        }
        let ready = fds[1..].iter().position(|f| !f.revents().is_empty());
        drop(fds);
        let accepted = ready.and_then(|i| {
            let (upstream, listener) = &listeners[i];
            match listener.accept() {
                Ok((stream, _)) => Some((*upstream, stream)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
                Err(e) => {
                    // Out of descriptors or memory: back off instead of spinning.
                    warn!(upstream = %pool.ctx.upstreams[*upstream].raw, error = %e, "accept failed");
                    std::thread::sleep(Duration::from_millis(50));
                    None
                }
            }
        });
        // Closing the listeners on stop must not wait for this worker's connection.
        drop(listeners);
        pool.hand_over();
        match accepted {
            Some((upstream, stream)) => {
                pool.busy();
                serve(&pool.ctx, upstream, stream);
                pool.done();
                idle_since = Instant::now();
            }
            None if Instant::now() >= idle_since + IDLE_EXIT && pool.may_retire() => return,
            None => {}
        }
    }
}

impl Pool {
    /// Waits until no other worker leads, then leads; false once stopping.
    fn take_lead(&self) -> bool {
        let mut c = self.counts.lock();
        while c.leader && !c.stopping {
            self.lead.wait(&mut c);
        }
        if c.stopping {
            return false;
        }
        c.leader = true;
        true
    }

    fn hand_over(&self) {
        self.counts.lock().leader = false;
        self.lead.notify_one();
    }

    /// The bound listeners, after trying again the ports whose turn it is; when to try next.
    fn listeners(&self) -> (Vec<(usize, Arc<TcpListener>)>, Option<Instant>) {
        let mut slots = self.slots.lock();
        let now = Instant::now();
        for s in slots.iter_mut().filter(|s| s.listener.is_none()) {
            if now >= s.next_try {
                s.listener = bind(&self.ctx.upstreams[s.upstream]).map(Arc::new);
                s.next_try = now + REBIND_EVERY;
            }
        }
        let retry = slots
            .iter()
            .filter(|s| s.listener.is_none())
            .map(|s| s.next_try)
            .min();
        let bound = slots
            .iter()
            .filter_map(|s| s.listener.clone().map(|l| (s.upstream, l)))
            .collect();
        (bound, retry)
    }

    /// A connection taken: one idle worker fewer; start another when none is left waiting.
    fn busy(self: &Arc<Self>) {
        let start = {
            let mut c = self.counts.lock();
            c.idle -= 1;
            c.busy += 1;
            c.idle == 0 && c.workers < MAX_CONNECTIONS
        };
        if start && let Err(e) = spawn_worker(self) {
            warn!(error = %e, "cannot start a worker thread");
        }
    }

    fn done(&self) {
        let mut c = self.counts.lock();
        c.busy -= 1;
        c.idle += 1;
        self.changed.notify_all();
    }

    /// Whether an idle worker may exit (more than [`KEEP_IDLE`] are idle); counts it out if so.
    fn may_retire(&self) -> bool {
        let mut c = self.counts.lock();
        if c.idle > KEEP_IDLE {
            c.idle -= 1;
            c.workers -= 1;
            true
        } else {
            false
        }
    }

    fn leave(&self) {
        let mut c = self.counts.lock();
        c.idle -= 1;
        c.workers -= 1;
    }
}

/// One connection, start to end.
fn serve(ctx: &Context, upstream: usize, mut local: TcpStream) {
    let u = &ctx.upstreams[upstream];
    let started = Instant::now();
    let deadline = started + ctx.connect_timeout;
    if let Err(e) = local
        .set_nonblocking(true)
        .and_then(|()| local.set_nodelay(true))
    {
        debug!(upstream = %u.raw, error = %e, "connection lost before it was served");
        return;
    }
    let mut current = ctx.shared.current_for_connection(REFRESH_WAIT);
    // The function's first bytes, read during the handshake and not yet sent.
    let mut early = Vec::new();
    let (mut remote, mut tls, sent) = loop {
        let t = &current.tls.upstreams[upstream];
        match connect(ctx, t, &mut local, &mut early, deadline) {
            Ok(connected) => break connected,
            Err(ConnectError::Handshake(tunnel::HandshakeError::Tls(e))) => {
                // Perhaps the mesh has moved on (a root rotation): try newer material.
                if verify::may_be_stale_material(&e)
                    && let Some(newer) = ctx.shared.newer_than(current.generation, deadline)
                {
                    info!(upstream = %u.raw, error = %verify::describe(&e), "peer failed verification; retrying with refreshed mTLS material");
                    current = newer;
                    continue;
                }
                let what = if matches!(e, rustls::Error::InvalidCertificate(_)) {
                    "connection refused: the mesh peer failed verification"
                } else {
                    "connection closed: the TLS handshake with the mesh failed"
                };
                warn!(upstream = %u.raw, sni = %t.server_name.to_str(), error = %verify::describe(&e), "{what}");
                return;
            }
            Err(e) => {
                warn!(upstream = %u.raw, sni = %t.server_name.to_str(), gateway = %ctx.gateway, error = %e, "connection closed: cannot reach the upstream");
                return;
            }
        }
    };
    let setup = started.elapsed();
    let resumed = matches!(tls.handshake_kind(), Some(rustls::HandshakeKind::Resumed));
    match tunnel::pump(&mut local, &mut remote, &mut tls, early, sent) {
        Ok(t) => {
            debug!(upstream = %u.raw, sent = t.sent, received = t.received, setup_us = setup.as_micros() as u64, resumed, "connection ended")
        }
        Err(e) => debug!(upstream = %u.raw, error = %e, "connection ended with an error"),
    }
}

#[derive(Debug, thiserror::Error)]
enum ConnectError {
    #[error("cannot resolve the gateway {gateway}: {reason}")]
    Resolve { gateway: String, reason: String },
    #[error("cannot connect to the gateway {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("connecting to the gateway timed out")]
    Timeout,
    #[error(transparent)]
    Handshake(tunnel::HandshakeError),
}

/// Dials the gateway and runs the handshake, before `deadline`; also returns how many of the
/// function's bytes went out with the handshake.
fn connect(
    ctx: &Context,
    t: &crate::tls::UpstreamTls,
    local: &mut TcpStream,
    early: &mut Vec<u8>,
    deadline: Instant,
) -> Result<(TcpStream, ClientConnection, u64), ConnectError> {
    let addrs: Vec<SocketAddr> = ctx
        .gateway
        .to_socket_addrs()
        .map_err(|e| ConnectError::Resolve {
            gateway: ctx.gateway.clone(),
            reason: e.to_string(),
        })?
        .collect();
    let mut last = None;
    let mut stream = None;
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ConnectError::Timeout);
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Some(ConnectError::Connect { addr, source: e }),
        }
    }
    let mut remote = stream.ok_or_else(|| {
        last.unwrap_or_else(|| ConnectError::Resolve {
            gateway: ctx.gateway.clone(),
            reason: "no address".into(),
        })
    })?;
    let io = |e: io::Error| ConnectError::Handshake(tunnel::HandshakeError::Io(e));
    remote.set_nodelay(true).map_err(io)?;
    remote.set_nonblocking(true).map_err(io)?;
    let mut tls = ClientConnection::new(t.config.clone(), t.server_name.clone())
        .map_err(|e| ConnectError::Handshake(tunnel::HandshakeError::Tls(e)))?;
    let sent = tunnel::handshake(&mut tls, &mut remote, local, early, deadline)
        .map_err(ConnectError::Handshake)?;
    Ok((remote, tls, sent))
}
