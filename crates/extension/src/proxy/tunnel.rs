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
/// taken by the TLS session is left in `early`. Returns how many bytes went out that way.
///
/// # Errors
/// Timeout, the peer closing, an I/O error, or a TLS error (the alert is sent first).
pub fn handshake(
    tls: &mut ClientConnection,
    remote: &mut TcpStream,
    local: &mut TcpStream,
    early: &mut Vec<u8>,
    deadline: Instant,
) -> Result<u64, HandshakeError> {
    let mut sent_early = None;
    loop {
        if !tls.is_handshaking() && sent_early.is_none() {
            if early.is_empty() {
                let mut buf = [0u8; EARLY];
                // EOF or nothing yet: the copy loop finds out.
                if let Ok(n) = local.read(&mut buf) {
                    early.extend_from_slice(&buf[..n]);
                }
            }
            let n = tls.writer().write(early)?;
            early.drain(..n);
            sent_early = Some(n as u64);
        }
        flush_tls(tls, remote)?;
        if !tls.is_handshaking() && !tls.wants_write() {
            return Ok(sent_early.unwrap_or(0));
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
/// directions have ended, starting with `from_local` (read from `local`, not yet sent) and
/// `sent` bytes already sent. Both sockets must be non-blocking.
///
/// # Errors
/// An I/O error on either socket, or a TLS error from the mesh side.
pub fn pump(
    local: &mut TcpStream,
    remote: &mut TcpStream,
    tls: &mut ClientConnection,
    mut from_local: Vec<u8>,
    sent: u64,
) -> io::Result<Totals> {
    tls.set_buffer_limit(Some(MAX_PENDING));
    let mut totals = Totals { sent, received: 0 };
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::{net::TcpListener, sync::Arc, thread, time::Duration};

    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

    use super::*;
    use crate::{material::Material, testing::Mesh, tls, upstream};

    /// A rustls server for `web` on 127.0.0.1 that runs `serve` on its one connection.
    fn server(
        mesh: &Mesh,
        serve: impl FnOnce(rustls::StreamOwned<rustls::ServerConnection, TcpStream>) + Send + 'static,
    ) -> u16 {
        let leaf = mesh.leaf("web");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(mesh.root.cert_pem.as_bytes()).unwrap())
            .unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .unwrap();
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_client_cert_verifier(verifier)
                .with_single_cert(
                    CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes())
                        .collect::<Result<Vec<_>, _>>()
                        .unwrap(),
                    PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap(),
                )
                .unwrap(),
        );
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let conn = rustls::ServerConnection::new(config).unwrap();
            serve(rustls::StreamOwned::new(conn, s));
        });
        port
    }

    /// The function's socket (returned) and a tunnel pumping to the server on `port`.
    fn tunnel(mesh: &Mesh, port: u16) -> (TcpStream, thread::JoinHandle<io::Result<Totals>>) {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let material = Material::from_data(mesh.data(&mesh.leaf("fn")), &provider).unwrap();
        let ups = upstream::parse_list("web:1", "dc1").unwrap();
        let set = tls::build(&material, &[], &ups, &provider, true).unwrap();
        let t = &set.upstreams[0];
        let mut tls = ClientConnection::new(t.config.clone(), t.server_name.clone()).unwrap();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let function = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut local, _) = l.accept().unwrap();
        let mut remote = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let handle = thread::spawn(move || {
            local.set_nonblocking(true)?;
            remote.set_nonblocking(true)?;
            let mut early = Vec::new();
            let sent = handshake(
                &mut tls,
                &mut remote,
                &mut local,
                &mut early,
                Instant::now() + Duration::from_secs(10),
            )
            .map_err(io::Error::other)?;
            pump(&mut local, &mut remote, &mut tls, early, sent)
        });
        function
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        (function, handle)
    }

    #[test]
    fn the_functions_eof_reaches_the_mesh_and_the_answer_still_comes_back() {
        let mesh = Mesh::new();
        let port = server(&mesh, |mut s| {
            let mut got = Vec::new();
            s.read_to_end(&mut got).unwrap(); // ends at the client's close_notify
            assert_eq!(got, b"request");
            s.write_all(b"answer after your EOF").unwrap();
            s.conn.send_close_notify();
            s.flush().unwrap();
        });
        let (mut f, pumping) = tunnel(&mesh, port);
        f.write_all(b"request").unwrap();
        f.shutdown(Shutdown::Write).unwrap();
        let mut answer = Vec::new();
        f.read_to_end(&mut answer).unwrap();
        assert_eq!(answer, b"answer after your EOF");
        let totals = pumping.join().unwrap().unwrap();
        assert_eq!((totals.sent, totals.received), (7, 21));
    }

    #[test]
    fn the_meshs_eof_reaches_the_function_which_may_go_on_sending() {
        let mesh = Mesh::new();
        let port = server(&mesh, |mut s| {
            s.write_all(b"first").unwrap();
            s.conn.send_close_notify();
            s.flush().unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).unwrap();
            assert_eq!(got, b"still sending");
        });
        let (mut f, pumping) = tunnel(&mesh, port);
        let mut first = Vec::new();
        f.read_to_end(&mut first).unwrap(); // EOF: the mesh's side is done
        assert_eq!(first, b"first");
        f.write_all(b"still sending").unwrap();
        f.shutdown(Shutdown::Write).unwrap();
        pumping.join().unwrap().unwrap();
    }

    #[test]
    fn bulk_data_both_ways_at_once_arrives_intact() {
        const SIZE: usize = 4 << 20;
        let mesh = Mesh::new();
        // An echo that writes back each chunk before reading the next: it stalls unless the
        // tunnel keeps reading the answer while it is still sending.
        let port = server(&mesh, |mut s| {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                s.write_all(&buf[..n]).unwrap();
            }
            s.conn.send_close_notify();
            s.flush().unwrap();
        });
        let (f, pumping) = tunnel(&mesh, port);
        let data: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
        let mut writer = f.try_clone().unwrap();
        let sent = data.clone();
        let send = thread::spawn(move || {
            writer.write_all(&sent).unwrap();
            writer.shutdown(Shutdown::Write).unwrap();
        });
        let mut back = Vec::new();
        (&f).read_to_end(&mut back).unwrap();
        send.join().unwrap();
        assert!(back == data, "echo differs ({} bytes back)", back.len());
        let totals = pumping.join().unwrap().unwrap();
        assert_eq!((totals.sent, totals.received), (SIZE as u64, SIZE as u64));
    }
}
