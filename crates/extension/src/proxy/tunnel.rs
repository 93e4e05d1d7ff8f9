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

/// Bytes read from a socket at a time.
const CHUNK: usize = 16 * 1024;
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

/// Runs the client handshake on the non-blocking `remote` until done or `deadline`.
///
/// # Errors
/// Timeout, the peer closing, an I/O error, or a TLS error (the alert is sent first).
pub fn handshake(
    tls: &mut ClientConnection,
    remote: &mut TcpStream,
    deadline: Instant,
) -> Result<(), HandshakeError> {
    loop {
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
/// directions have ended. Both sockets must be non-blocking.
///
/// # Errors
/// An I/O error on either socket, or a TLS error from the mesh side.
pub fn pump(
    local: &mut TcpStream,
    remote: &mut TcpStream,
    tls: &mut ClientConnection,
) -> io::Result<Totals> {
    tls.set_buffer_limit(Some(MAX_PENDING));
    let mut totals = Totals::default();
    let mut buf = vec![0u8; CHUNK];
    let mut from_local: Vec<u8> = Vec::new();
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
            to_local.clear();
            to_local_at = 0;
        }
        if remote_eof && to_local.is_empty() && !local_shut {
            let _ = local.shutdown(Shutdown::Write);
            local_shut = true;
        }
        if remote_shut && local_shut {
            return Ok(totals);
        }

        // Plaintext rustls already decrypted would not wake poll(2).
        if !remote_eof && to_local.len() < MAX_PENDING {
            remote_eof = drain_plaintext(tls, &mut buf, &mut to_local)?;
            if remote_eof {
                continue;
            }
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
        if !remote_eof && to_local.len() < MAX_PENDING {
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
            remote_eof = read_remote(tls, remote, &mut buf, &mut to_local)?;
        }
        if local_ready.intersects(readable()) && !local_eof && from_local.is_empty() {
            match local.read(&mut buf) {
                Ok(0) => local_eof = true,
                Ok(n) => from_local.extend_from_slice(&buf[..n]),
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

/// Reads TLS from the mesh and appends its plaintext to `to_local`; true once the mesh has
/// ended its direction (`close_notify`, or a FIN without it).
fn read_remote(
    tls: &mut ClientConnection,
    remote: &mut TcpStream,
    buf: &mut [u8],
    to_local: &mut Vec<u8>,
) -> io::Result<bool> {
    loop {
        let tcp_eof = match tls.read_tls(remote) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        tls.process_new_packets().map_err(io::Error::other)?;
        if drain_plaintext(tls, buf, to_local)? || tcp_eof {
            return Ok(true);
        }
        if to_local.len() >= MAX_PENDING {
            return Ok(false);
        }
    }
}

/// Moves the plaintext rustls holds to `to_local`; true once the mesh has ended its direction.
fn drain_plaintext(
    tls: &mut ClientConnection,
    buf: &mut [u8],
    to_local: &mut Vec<u8>,
) -> io::Result<bool> {
    loop {
        match tls.reader().read(buf) {
            Ok(0) => return Ok(true),
            Ok(n) => to_local.extend_from_slice(&buf[..n]),
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
