//! The listeners and their connections. One listener per upstream on `127.0.0.1:<port>` (the
//! reference bound every interface, so anything that reached the sandbox could use the
//! function's identity); one acceptor thread polls them all; each accepted connection gets a
//! thread that dials the gateway, runs the mTLS handshake with the upstream's SNI and copies
//! bytes ([`tunnel`]).
//!
//! A failure is contained to its connection: a gateway that refuses or times out, a peer that
//! fails verification, a TLS error: the function's socket is closed and the reason logged. A
//! port already taken is logged and retried every second; the other upstreams serve meanwhile.
//! Concurrency is bounded ([`MAX_CONNECTIONS`]); at the bound the acceptor waits for a
//! connection to end, and the kernel's backlog holds new ones.

pub mod tunnel;

use std::{
    io::{self, Read as _, Write as _},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs},
    os::unix::net::UnixStream,
    sync::Arc,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use parking_lot::{Condvar, Mutex};
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustls::ClientConnection;
use tracing::{debug, info, warn};

use crate::{state::Shared, upstream::Upstream, verify};

/// Most connections open at once (two descriptors each; Lambda allows 1,024).
pub const MAX_CONNECTIONS: usize = 400;
/// Stack of a connection thread: the handshake and the copy loop need little.
const CONNECTION_STACK: usize = 256 * 1024;
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

/// The running listeners.
pub struct Proxy {
    wake: UnixStream,
    acceptor: Option<JoinHandle<()>>,
    active: Arc<Active>,
}

struct Slot {
    upstream: usize,
    listener: Option<TcpListener>,
    next_try: Instant,
}

impl Proxy {
    /// Binds every upstream's listener (a port that cannot be bound is logged and retried) and
    /// starts accepting. Returns once every bindable listener is bound.
    ///
    /// # Errors
    /// The acceptor thread or its wake-up socket cannot be made.
    pub fn start(ctx: Context) -> io::Result<Proxy> {
        let ctx = Arc::new(ctx);
        let now = Instant::now();
        let slots: Vec<Slot> = (0..ctx.upstreams.len())
            .map(|i| Slot {
                upstream: i,
                listener: bind(&ctx.upstreams[i]),
                next_try: now + REBIND_EVERY,
            })
            .collect();
        let (wake, wake_rx) = UnixStream::pair()?;
        wake_rx.set_nonblocking(true)?;
        let active = Arc::new(Active::default());
        let active2 = active.clone();
        let acceptor = std::thread::Builder::new()
            .name("acceptor".into())
            .spawn(move || accept_loop(&ctx, slots, &wake_rx, &active2))?;
        Ok(Proxy {
            wake,
            acceptor: Some(acceptor),
            active,
        })
    }

    /// Stops accepting: the listeners are closed; open connections go on.
    pub fn stop_accepting(&mut self) {
        let _ = self.wake.write_all(&[1]);
        self.active.wake();
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }

    /// Waits until no connection is open or `deadline`; returns how many are still open.
    pub fn drain(&self, deadline: Instant) -> usize {
        self.active.wait_idle(deadline)
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

fn accept_loop(ctx: &Arc<Context>, mut slots: Vec<Slot>, wake: &UnixStream, active: &Arc<Active>) {
    loop {
        if !active.wait_below(MAX_CONNECTIONS) {
            return;
        }
        let now = Instant::now();
        for s in slots.iter_mut().filter(|s| s.listener.is_none()) {
            if now >= s.next_try {
                s.listener = bind(&ctx.upstreams[s.upstream]).or_else(|| {
                    s.next_try = now + REBIND_EVERY;
                    None
                });
            }
        }
        let retry_at = slots
            .iter()
            .filter(|s| s.listener.is_none())
            .map(|s| s.next_try)
            .min();
        let timeout =
            retry_at.and_then(|t| Timespec::try_from(t.saturating_duration_since(now)).ok());
        let bound: Vec<(usize, &TcpListener)> = slots
            .iter()
            .filter_map(|s| s.listener.as_ref().map(|l| (s.upstream, l)))
            .collect();
        let mut fds: Vec<PollFd<'_>> = std::iter::once(PollFd::new(wake, PollFlags::IN))
            .chain(bound.iter().map(|(_, l)| PollFd::new(*l, PollFlags::IN)))
            .collect();
        match poll(&mut fds, timeout.as_ref()) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => {
                warn!(error = %e, "poll failed");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        }
        if !fds[0].revents().is_empty() {
            let mut b = [0u8; 8];
            let _ = (&*wake).read(&mut b);
            return;
        }
        let ready: Vec<usize> = fds[1..]
            .iter()
            .enumerate()
            .filter(|(_, f)| !f.revents().is_empty())
            .map(|(i, _)| i)
            .collect();
        for i in ready {
            let (upstream, listener) = bound[i];
            match listener.accept() {
                Ok((stream, _)) => spawn_connection(ctx, upstream, stream, active),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    // Out of descriptors or memory: back off instead of spinning.
                    warn!(upstream = %ctx.upstreams[upstream].raw, error = %e, "accept failed");
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }
}

fn spawn_connection(ctx: &Arc<Context>, upstream: usize, local: TcpStream, active: &Arc<Active>) {
    let guard = active.enter();
    let ctx = ctx.clone();
    let spawned = std::thread::Builder::new()
        .stack_size(CONNECTION_STACK)
        .spawn(move || {
            let _guard = guard;
            serve(&ctx, upstream, local);
        });
    if let Err(e) = spawned {
        warn!(error = %e, "cannot start a connection thread; connection closed");
    }
}

/// One connection, start to end.
fn serve(ctx: &Context, upstream: usize, mut local: TcpStream) {
    let u = &ctx.upstreams[upstream];
    let started = Instant::now();
    let deadline = started + ctx.connect_timeout;
    let mut current = ctx.shared.current_for_connection(REFRESH_WAIT);
    let (mut remote, mut tls) = loop {
        let t = &current.tls.upstreams[upstream];
        match connect(ctx, t, deadline) {
            Ok(pair) => break pair,
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
    let _ = local.set_nodelay(true);
    let result = local
        .set_nonblocking(true)
        .and_then(|()| tunnel::pump(&mut local, &mut remote, &mut tls));
    match result {
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

/// Dials the gateway and runs the handshake, before `deadline`.
fn connect(
    ctx: &Context,
    t: &crate::tls::UpstreamTls,
    deadline: Instant,
) -> Result<(TcpStream, ClientConnection), ConnectError> {
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
    tunnel::handshake(&mut tls, &mut remote, deadline).map_err(ConnectError::Handshake)?;
    Ok((remote, tls))
}

/// Open connections, for the bound and the drain.
#[derive(Default)]
struct Active {
    count: Mutex<ActiveCount>,
    changed: Condvar,
}

#[derive(Default)]
struct ActiveCount {
    open: usize,
    stopping: bool,
}

struct ActiveGuard(Arc<Active>);

impl Active {
    fn enter(self: &Arc<Self>) -> ActiveGuard {
        self.count.lock().open += 1;
        ActiveGuard(self.clone())
    }

    /// Waits until fewer than `max` are open; false once stopping.
    fn wait_below(&self, max: usize) -> bool {
        let mut c = self.count.lock();
        while c.open >= max && !c.stopping {
            self.changed.wait(&mut c);
        }
        !c.stopping
    }

    fn wake(&self) {
        self.count.lock().stopping = true;
        self.changed.notify_all();
    }

    fn wait_idle(&self, deadline: Instant) -> usize {
        let mut c = self.count.lock();
        while c.open > 0 {
            if self.changed.wait_until(&mut c, deadline).timed_out() {
                break;
            }
        }
        c.open
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.count.lock().open -= 1;
        self.0.changed.notify_all();
    }
}
