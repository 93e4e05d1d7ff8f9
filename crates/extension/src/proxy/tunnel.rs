//! One connection's bytes: the client TLS handshake with the gateway, then plaintext copied both
//! ways between the function's socket and the TLS session, with half-close: the function's EOF
//! becomes `close_notify` and a TCP FIN towards the mesh, the mesh's becomes a FIN towards the
//! function, and the other direction keeps flowing until it ends too.
//!
//! Both sockets are non-blocking and one thread waits on both with poll(2). Two blocking
//! threads (one per direction) would share one TLS session: whichever thread writes records
//! must hold it in order, and a thread blocked in a write to a peer that is itself waiting for
//! us to read would stall the other direction (a deadlock under back-pressure). Buffers are
//! bounded: nothing is read from a side whose data cannot be passed on yet.

use std::{
    io::{self, Read, Write},
    net::{Shutdown, TcpStream},
    time::Instant,
};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustls::ClientConnection;

/// Bytes read from a socket at a time, at first ...
const CHUNK: usize = 4 * 1024;
/// ... and at most, once reads keep filling the buffer.
const MAX_CHUNK: usize = 64 * 1024;
/// Most of the function's first bytes sent with our `Finished`.
const EARLY: usize = 16 * 1024;
/// Most bytes held for one direction before reading from its source stops.
const MAX_PENDING: usize = 64 * 1024;

/// Why the handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("TLS handshake timed out")]
    Timeout,
    #[error("the gateway closed the connection during the TLS handshake")]
    Closed,
    #[error("TLS handshake: {0}")]
    Io(#[from] io::Error),
    #[error("TLS handshake: {}", crate::verify::describe(.0))]
    Tls(rustls::Error),
}

/// What crossed a finished tunnel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// From the function to the mesh.
    pub sent: u64,
    /// From the mesh to the function.
    pub received: u64,
}

/// Runs the client handshake on the non-blocking `remote` until done or `deadline`. When our
/// side is done, the function's first bytes already waiting on the non-blocking `local` go out
/// with our `Finished` (one write, one wake-up of the peer fewer); what is read and not yet
/// taken by the TLS session is left in `early`.
///
/// # Errors
/// Timeout, the peer closing, an I/O error, or a TLS error (the alert is sent first).
pub fn handshake(
    tls: &mut ClientConnection,
    remote: &mut TcpStream,
    local: &mut TcpStream,
    early: &mut Vec<u8>,
    deadline: Instant,
) -> Result<(), HandshakeError> {
    let mut sent_early = false;
    loop {
        if !tls.is_handshaking() && !sent_early {
            sent_early = true;
            if early.is_empty() {
                let mut buf = [0u8; EARLY];
                // EOF or nothing yet: the copy loop finds out.
                if let Ok(n) = local.read(&mut buf) {
                    early.extend_from_slice(&buf[..n]);
                }
            }
            let n = tls.writer().write(early)?;
            early.drain(..n);
        }
        flush_tls(tls, remote)?;
        if !tls.is_handshaking() && !tls.wants_write() {
            return Ok(());
        }
        let mut flags = PollFlags::empty();
        if tls.wants_read() {
            flags |= PollFlags::IN;
        }
        if tls.wants_write() {
            flags |= PollFlags::OUT;
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(HandshakeError::Timeout);
        }
        let timeout = Timespec::try_from(deadline - now).map_err(io::Error::other)?;
        let mut fds = [PollFd::new(&*remote, flags)];
        if retry_intr(|| poll(&mut fds, Some(&timeout)))? == 0 {
            return Err(HandshakeError::Timeout);
        }
        if fds[0].revents().intersects(readable()) {
            match tls.read_tls(remote) {
                Ok(0) => return Err(HandshakeError::Closed),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e.into()),
            }
            if let Err(e) = tls.process_new_packets() {
                // Tell the peer why (the alert rustls queued), best effort.
                let _ = flush_tls(tls, remote);
                return Err(HandshakeError::Tls(e));
            }
        }
    }
}

/// Copies between `local` (plaintext, the function) and `remote` (TLS, the mesh) until both
/// directions have ended, starting with `from_local` (read from `local`, not yet sent). Both
/// sockets must be non-blocking.
///
/// # Errors
/// An I/O error on either socket, or a TLS error from the mesh side.
pub fn pump(
    local: &mut TcpStream,
    remote: &mut TcpStream,
    tls: &mut ClientConnection,
    mut from_local: Vec<u8>,
) -> io::Result<Totals> {
    tls.set_buffer_limit(Some(MAX_PENDING));
    let mut totals = Totals::default();
    let mut local_buf = Growing::new();
    let mut raw = RawIn::default();
    let mut to_local: Vec<u8> = Vec::new();
    let mut to_local_at = 0;
    // Direction function → mesh: source ended, close_notify queued, FIN sent.
    let (mut local_eof, mut close_sent, mut remote_shut) = (false, false, false);
    // Direction mesh → function: source ended, FIN sent.
    let (mut remote_eof, mut local_shut) = (false, false);
    loop {
        // Pass on what can go without waiting.
        if !from_local.is_empty() {
            let n = tls.writer().write(&from_local)?;
            from_local.drain(..n);
            totals.sent += n as u64;
        }
        if local_eof && from_local.is_empty() && !close_sent {
            tls.send_close_notify();
            close_sent = true;
        }
        if let Err(e) = flush_tls(tls, remote) {
            // The mesh side is gone; with nothing more coming from it, that is the end.
            if remote_eof {
                return Ok(totals);
            }
            return Err(e);
        }
        if close_sent && !tls.wants_write() && !remote_shut {
            let _ = remote.shutdown(Shutdown::Write);
            remote_shut = true;
        }
        while to_local_at < to_local.len() {
            match local.write(&to_local[to_local_at..]) {
                Ok(n) => {
                    to_local_at += n;
                    totals.received += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if to_local_at == to_local.len() {
            to_local_at = 0;
            // A bulk transfer is over: give its memory back (many idle keep-alive connections
            // must stay small).
            if to_local.capacity() > MAX_CHUNK {
                to_local = Vec::new();
            } else {
                to_local.clear();
            }
        }
        if remote_eof && to_local.is_empty() && !local_shut {
            let _ = local.shutdown(Shutdown::Write);
            local_shut = true;
        }
        if remote_shut && local_shut {
            return Ok(totals);
        }
        // Bytes already read from the mesh would not wake poll(2).
        if !remote_eof && feed(tls, &mut raw, &mut to_local)? == Some(true) {
            remote_eof = true;
            continue;
        }

        // Wait for what can move next.
        let mut local_flags = PollFlags::empty();
        if !local_eof && from_local.is_empty() {
            local_flags |= PollFlags::IN;
        }
        if !to_local.is_empty() {
            local_flags |= PollFlags::OUT;
        }
        let mut remote_flags = PollFlags::empty();
        if !remote_eof && to_local.len() < MAX_PENDING && raw.is_empty() {
            remote_flags |= PollFlags::IN;
        }
        if tls.wants_write() {
            remote_flags |= PollFlags::OUT;
        }
        let mut fds = [
            PollFd::new(&*local, local_flags),
            PollFd::new(&*remote, remote_flags),
        ];
        retry_intr(|| poll(&mut fds, None))?;
        let (local_ready, remote_ready) = (fds[0].revents(), fds[1].revents());

        if remote_ready.intersects(readable()) && !remote_eof {
            remote_eof = read_remote(tls, remote, &mut raw, &mut to_local)?;
        }
        if local_ready.intersects(readable()) && !local_eof && from_local.is_empty() {
            match local.read(local_buf.space()) {
                Ok(0) => local_eof = true,
                Ok(n) => {
                    // Straight into the TLS session; only what it cannot take yet is kept.
                    let data = &local_buf.space()[..n];
                    let taken = tls.writer().write(data)?;
                    totals.sent += taken as u64;
                    from_local.extend_from_slice(&data[taken..]);
                    local_buf.filled(n);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// A read buffer that starts small and grows once a read fills it: bulk transfers take fewer
/// system calls, while many quiet connections keep little memory.
struct Growing(Vec<u8>);

impl Growing {
    fn new() -> Self {
        Growing(vec![0u8; CHUNK])
    }

    fn space(&mut self) -> &mut [u8] {
        &mut self.0
    }

    /// A read of `n` bytes happened.
    fn filled(&mut self, n: usize) {
        if n == self.0.len() && self.0.len() < MAX_CHUNK {
            self.0.resize(self.0.len() * 2, 0);
        }
    }
}

/// TLS bytes read from the mesh and not yet taken by rustls, which takes at most 4 KB per
/// `read_tls`: reading the socket through it would cost a system call per 4 KB.
struct RawIn {
    buf: Growing,
    at: usize,
    len: usize,
    eof: bool,
}

impl Default for RawIn {
    fn default() -> Self {
        RawIn {
            buf: Growing::new(),
            at: 0,
            len: 0,
            eof: false,
        }
    }
}

impl RawIn {
    fn is_empty(&self) -> bool {
        self.at == self.len && !self.eof
    }
}

/// Reads TLS from the mesh and appends its plaintext to `to_local`; true once the mesh has
/// ended its direction (`close_notify`, or a FIN without it).
fn read_remote(
    tls: &mut ClientConnection,
    remote: &mut TcpStream,
    raw: &mut RawIn,
    to_local: &mut Vec<u8>,
) -> io::Result<bool> {
    loop {
        if let Some(ended) = feed(tls, raw, to_local)? {
            return Ok(ended);
        }
        match remote.read(raw.buf.space()) {
            Ok(0) => raw.eof = true,
            Ok(n) => {
                raw.buf.filled(n);
                raw.at = 0;
                raw.len = n;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Gives rustls the bytes read so far and moves the plaintext out: `None` when all were taken,
/// `Some(false)` when `to_local` is full first, `Some(true)` once the mesh has ended its
/// direction.
fn feed(
    tls: &mut ClientConnection,
    raw: &mut RawIn,
    to_local: &mut Vec<u8>,
) -> io::Result<Option<bool>> {
    while raw.at < raw.len {
        if to_local.len() >= MAX_PENDING {
            return Ok(Some(false));
        }
        let n = tls.read_tls(&mut &raw.buf.0[raw.at..raw.len])?;
        raw.at += n;
        tls.process_new_packets().map_err(io::Error::other)?;
        // Nothing taken: the session has ended (close_notify).
        if drain_plaintext(tls, to_local)? || n == 0 {
            return Ok(Some(true));
        }
    }
    if raw.eof {
        let _ = tls.read_tls(&mut &[][..]);
        tls.process_new_packets().map_err(io::Error::other)?;
        drain_plaintext(tls, to_local)?;
        return Ok(Some(true));
    }
    Ok(None)
}

/// Moves the plaintext rustls holds to `to_local`; true once the mesh has ended its direction.
fn drain_plaintext(tls: &mut ClientConnection, to_local: &mut Vec<u8>) -> io::Result<bool> {
    loop {
        // Read straight into `to_local`'s tail (one copy out of rustls, not two).
        let at = to_local.len();
        to_local.resize(at + CHUNK, 0);
        let result = tls.reader().read(&mut to_local[at..]);
        to_local.truncate(at + *result.as_ref().unwrap_or(&0));
        match result {
            Ok(0) => return Ok(true),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(true),
            Err(e) => return Err(e),
        }
    }
}

/// Writes queued TLS records until done or the socket would block.
fn flush_tls(tls: &mut ClientConnection, remote: &mut TcpStream) -> io::Result<()> {
    while tls.wants_write() {
        match tls.write_tls(remote) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn readable() -> PollFlags {
    PollFlags::IN | PollFlags::HUP | PollFlags::ERR
}

fn retry_intr(mut f: impl FnMut() -> rustix::io::Result<usize>) -> io::Result<usize> {
    loop {
        match f() {
            Err(rustix::io::Errno::INTR) => {}
            other => return other.map_err(io::Error::from),
        }
    }
}
