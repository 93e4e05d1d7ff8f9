//! An append-only journal with group commit: what the platform has accepted (asynchronous
//! invocations, SQS messages) is written here and fsynced before the caller is answered, so a
//! crash (`kill -9`, power loss) loses nothing that was acknowledged. The same design as the
//! control plane's write-ahead log (`crates/store`, `docs/store.md`), scaled down: records are
//! framed `[len u32 LE][crc32 u32 LE][bytes]`, one writer thread takes every record waiting at
//! the moment and covers them with one `fdatasync`, and a torn tail (a record that is short or
//! fails its CRC: never acknowledged) is cut at open.
//!
//! The journal knows nothing of what the records mean: its owner encodes them, replays them at
//! open, and from time to time replaces the whole file with the records still live
//! (`Journal::rewrite`). Must not depend on the platform's services.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Read, Write},
    path::{Path, PathBuf},
    sync::mpsc,
};

use tokio::sync::oneshot;
use tracing::error;

/// Most records covered by one fsync.
const MAX_BATCH: usize = 512;
/// Largest record read back (an async payload is at most 256 KB, a message 256 KB; with
/// base64 and the envelope a record stays far below this).
const MAX_RECORD: usize = 16 << 20;

/// The answer of a journal write: resolves once the record is on disk.
pub(crate) struct Durable(Option<oneshot::Receiver<io::Result<()>>>);

impl Durable {
    /// Already durable (nothing was written, or the write was not needed).
    pub(crate) fn done() -> Self {
        Self(None)
    }

    /// Waits until the record is fsynced.
    ///
    /// # Errors
    /// The write or the fsync failed, or the journal's thread is gone.
    pub(crate) async fn wait(self) -> io::Result<()> {
        match self.0 {
            None => Ok(()),
            Some(rx) => rx
                .await
                .unwrap_or_else(|_| Err(io::Error::other("the journal's writer stopped"))),
        }
    }

    /// [`Durable::wait`] for callers on a blocking thread (never on the async runtime).
    ///
    /// # Errors
    /// As [`Durable::wait`].
    pub(crate) fn wait_blocking(self) -> io::Result<()> {
        match self.0 {
            None => Ok(()),
            Some(rx) => rx
                .blocking_recv()
                .unwrap_or_else(|_| Err(io::Error::other("the journal's writer stopped"))),
        }
    }
}

enum Cmd {
    Append(Vec<u8>, Option<oneshot::Sender<io::Result<()>>>),
    /// Answered once everything sent before it is on disk.
    Sync(oneshot::Sender<io::Result<()>>),
    Rewrite(Vec<Vec<u8>>, oneshot::Sender<io::Result<()>>),
}

/// An open journal; its writer thread ends when the journal is dropped.
pub(crate) struct Journal {
    tx: mpsc::Sender<Cmd>,
}

impl Journal {
    /// Opens (or creates) the journal at `path`, returning the whole records it holds, in order.
    /// The directory is created with mode 0700 (records hold payloads).
    ///
    /// # Errors
    /// The file cannot be created, read, cut or synced.
    pub(crate) fn open(path: &Path) -> io::Result<(Journal, Vec<Vec<u8>>)> {
        let dir = path
            .parent()
            .ok_or_else(|| io::Error::other("journal path has no parent"))?;
        create_private_dir(dir)?;
        let mut file = open_private(path, false)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let (records, good) = parse(&bytes);
        if good < bytes.len() {
            tracing::warn!(path = %path.display(), cut = bytes.len() - good, "cutting a torn journal tail");
            file.set_len(good as u64)?;
            file.sync_all()?;
        }
        let (tx, rx) = mpsc::channel();
        let path = path.to_owned();
        std::thread::Builder::new()
            .name("journal".into())
            .spawn(move || writer(path, file, rx))?;
        Ok((Journal { tx }, records))
    }

    /// Appends `record`; the answer resolves once it is fsynced.
    pub(crate) fn append(&self, record: Vec<u8>) -> Durable {
        let (tx, rx) = oneshot::channel();
        if let Err(mpsc::SendError(Cmd::Append(_, Some(tx)))) =
            self.tx.send(Cmd::Append(record, Some(tx)))
        {
            let _ = tx.send(Err(io::Error::other("the journal's writer stopped")));
        }
        Durable(Some(rx))
    }

    /// Appends `record` without waiting (it is fsynced with the next batch): for records whose
    /// loss only repeats work (at least once), such as "this one is done".
    pub(crate) fn append_lazy(&self, record: Vec<u8>) {
        let _ = self.tx.send(Cmd::Append(record, None));
    }

    /// Resolves once every record sent before (lazy ones included) is on disk.
    pub(crate) fn sync(&self) -> Durable {
        let (tx, rx) = oneshot::channel();
        if let Err(mpsc::SendError(Cmd::Sync(tx))) = self.tx.send(Cmd::Sync(tx)) {
            let _ = tx.send(Err(io::Error::other("the journal's writer stopped")));
        }
        Durable(Some(rx))
    }

    /// Replaces the journal's contents with `records` (temp file, fsync, rename, fsync of the
    /// directory). Records appended before this call are covered by `records` or obsolete; the
    /// owner must not append between taking the snapshot and calling this (hold its lock).
    pub(crate) fn rewrite(&self, records: Vec<Vec<u8>>) -> Durable {
        let (tx, rx) = oneshot::channel();
        if let Err(mpsc::SendError(Cmd::Rewrite(_, tx))) = self.tx.send(Cmd::Rewrite(records, tx)) {
            let _ = tx.send(Err(io::Error::other("the journal's writer stopped")));
        }
        Durable(Some(rx))
    }
}

/// Creates `dir` (and parents) readable by the owner only.
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

fn open_private(path: &Path, truncate: bool) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.read(true).append(!truncate).create(true);
    if truncate {
        o.write(true).truncate(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)
}

/// Frames one record (`[len u32 LE][crc32 u32 LE][bytes]`), appending it to `out`.
pub fn frame(out: &mut Vec<u8>, record: &[u8]) {
    out.extend_from_slice(&(record.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(record).to_le_bytes());
    out.extend_from_slice(record);
}

/// The whole records of a journal's `bytes`, in order, and the length they cover (what follows
/// is a torn tail, cut at open). Never fails: a file is read as far as it is whole.
pub fn parse(bytes: &[u8]) -> (Vec<Vec<u8>>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    while bytes.len() - at >= 8 {
        let len =
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize;
        let crc = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]);
        if len > MAX_RECORD || bytes.len() - at - 8 < len {
            break;
        }
        let record = &bytes[at + 8..at + 8 + len];
        if crc32fast::hash(record) != crc {
            break;
        }
        out.push(record.to_vec());
        at += 8 + len;
    }
    (out, at)
}

fn writer(path: PathBuf, mut file: File, rx: mpsc::Receiver<Cmd>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        let mut buf = Vec::new();
        let mut waiting = Vec::new();
        for cmd in batch {
            match cmd {
                Cmd::Append(record, reply) => {
                    frame(&mut buf, &record);
                    waiting.extend(reply);
                }
                Cmd::Sync(reply) => waiting.push(reply),
                Cmd::Rewrite(records, reply) => {
                    // What came before is written first, so its waiters are answered truly.
                    flush(&mut file, &mut buf, &mut waiting);
                    let result = rewrite(&path, &records);
                    match result {
                        Ok(f) => {
                            file = f;
                            let _ = reply.send(Ok(()));
                        }
                        Err(e) => {
                            error!(path = %path.display(), error = %e, "cannot rewrite the journal");
                            let _ = reply.send(Err(e));
                        }
                    }
                }
            }
        }
        flush(&mut file, &mut buf, &mut waiting);
    }
}

fn flush(file: &mut File, buf: &mut Vec<u8>, waiting: &mut Vec<oneshot::Sender<io::Result<()>>>) {
    if buf.is_empty() {
        for w in waiting.drain(..) {
            let _ = w.send(Ok(()));
        }
        return;
    }
    let result = file.write_all(buf).and_then(|()| file.sync_data());
    buf.clear();
    if let Err(e) = &result {
        error!(error = %e, "cannot write the journal");
    }
    for w in waiting.drain(..) {
        let _ = w.send(match &result {
            Ok(()) => Ok(()),
            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
        });
    }
}

fn rewrite(path: &Path, records: &[Vec<u8>]) -> io::Result<File> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("journal path has no parent"))?;
    let tmp = path.with_extension("rewrite");
    let mut buf = Vec::new();
    for r in records {
        frame(&mut buf, r);
    }
    {
        let mut f = open_private(&tmp, true)?;
        f.write_all(&buf)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()?;
    open_private(path, false)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn appends_survive_reopen_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q").join("journal.log");
        {
            let (j, records) = Journal::open(&path).unwrap();
            assert!(records.is_empty());
            j.append(b"one".to_vec()).wait().await.unwrap();
            j.append_lazy(b"two".to_vec());
            j.append(b"three".to_vec()).wait().await.unwrap();
        }
        // A record cut short, as a crash mid-write leaves it.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[9, 0, 0, 0, 1, 2]).unwrap();
        drop(f);
        let (j, records) = Journal::open(&path).unwrap();
        assert_eq!(
            records,
            vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
        );
        j.rewrite(vec![b"three".to_vec()]).wait().await.unwrap();
        j.append(b"four".to_vec()).wait().await.unwrap();
        drop(j);
        let (_j, records) = Journal::open(&path).unwrap();
        assert_eq!(records, vec![b"three".to_vec(), b"four".to_vec()]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[test]
    fn a_flipped_byte_ends_the_replay_there() {
        let mut bytes = Vec::new();
        frame(&mut bytes, b"good");
        let good = bytes.len();
        frame(&mut bytes, b"flipped");
        let n = bytes.len();
        bytes[n - 1] ^= 1;
        frame(&mut bytes, b"after");
        let (records, len) = parse(&bytes);
        assert_eq!(records, vec![b"good".to_vec()]);
        assert_eq!(len, good);
    }
}
