//! The write-ahead log and snapshot files.
//!
//! `wal.log` holds records `[len u32 LE][crc32 u32 LE][payload]`, payload = JSON `{"index", "op"}`.
//! A crash can leave a torn last record: at open the log is read up to the first record that is
//! short or fails its CRC, and the file is cut there. Every acknowledged record was fsynced, so the
//! cut only ever drops writes that were never acknowledged. `snapshot.json` holds the whole state
//! at an index; records at or below it are skipped at replay, so a crash between writing the
//! snapshot and truncating the log is harmless. A whole record (its CRC matches) whose op no
//! longer reads is skipped like an op that no longer applies, never cut. How an op is written
//! inside a record is `record`'s.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::state::{ApplyError, Op, State, StateSnapshot};
use crate::{StoreError, StoreOptions};

mod record;

const LOG_FILE: &str = "wal.log";
const SNAPSHOT_FILE: &str = "snapshot.json";
const HEADER: usize = 8;
/// The mode of the log and the snapshot: they hold the CA's private keys.
const PRIVATE: u32 = 0o600;
/// A record larger than this is corruption, not data (bodies are capped far below at the API).
const MAX_RECORD: u32 = 64 * 1024 * 1024;

/// A record's payload, as read.
#[derive(Deserialize)]
pub(crate) struct Record {
    pub index: u64,
    pub op: Op,
}

/// A record's payload, as written (the op borrowed: appending copies nothing).
#[derive(Serialize)]
pub(crate) struct RecordRef<'a> {
    pub index: u64,
    pub op: &'a Op,
}

/// The index of a record whose op no longer reads (see [`replay`]).
#[derive(Deserialize)]
struct IndexOnly {
    index: u64,
}

#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    version: u32,
    state: StateSnapshot,
}

pub(crate) struct Wal {
    dir: PathBuf,
    file: File,
    size: u64,
    pending: Vec<u8>,
    fsync: bool,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

impl Wal {
    /// Opens the store directory, returning the recovered state and the log ready for appends.
    pub(crate) fn open(dir: &Path, opts: &StoreOptions) -> Result<(State, Wal), StoreError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let snap_path = dir.join(SNAPSHOT_FILE);
        let mut state = match fs::read(&snap_path) {
            Ok(bytes) => {
                let snap: SnapshotFile =
                    serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                        path: snap_path.clone(),
                        reason: e.to_string(),
                    })?;
                State::from_snapshot(snap.state)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => {
                return Err(StoreError::Io {
                    path: snap_path,
                    source: e,
                });
            }
        };

        let log_path = dir.join(LOG_FILE);
        // The log and the snapshot hold the CA's private keys: readable by the owner only.
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .mode(PRIVATE)
            .open(&log_path)
            .map_err(io_err(&log_path))?;
        // Data dirs written before files were created private keep their mode otherwise.
        file.set_permissions(fs::Permissions::from_mode(PRIVATE))
            .map_err(io_err(&log_path))?;
        if let Err(e) = fs::set_permissions(&snap_path, fs::Permissions::from_mode(PRIVATE))
            && e.kind() != std::io::ErrorKind::NotFound
        {
            return Err(StoreError::Io {
                path: snap_path,
                source: e,
            });
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io_err(&log_path))?;
        let (valid_len, replayed, skipped) = replay(&bytes, &mut state);
        if (valid_len as u64) < bytes.len() as u64 {
            tracing::warn!(
                path = %log_path.display(),
                kept_bytes = valid_len,
                dropped_bytes = bytes.len() - valid_len,
                "cutting a torn or corrupt tail off the log (writes that were never acknowledged)"
            );
            file.set_len(valid_len as u64).map_err(io_err(&log_path))?;
            file.sync_all().map_err(io_err(&log_path))?;
        }
        sync_dir(dir)?;
        tracing::info!(index = state.index(), replayed, skipped, dir = %dir.display(), "store opened");
        state.set_floor();
        let wal = Wal {
            dir: dir.to_owned(),
            file,
            size: valid_len as u64,
            pending: Vec::new(),
            fsync: !opts.unsafe_no_fsync,
        };
        Ok((state, wal))
    }

    /// Buffers one record; nothing is durable until [`Wal::commit`].
    pub(crate) fn append(&mut self, index: u64, op: &Op) -> Result<(), StoreError> {
        let payload =
            serde_json::to_vec(&RecordRef { index, op }).map_err(|e| StoreError::Corrupt {
                path: self.dir.join(LOG_FILE),
                reason: format!("cannot encode op: {e}"),
            })?;
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|l| *l <= MAX_RECORD)
            .ok_or_else(|| StoreError::Corrupt {
                path: self.dir.join(LOG_FILE),
                reason: format!("record of {} bytes is too large", payload.len()),
            })?;
        self.pending.extend_from_slice(&len.to_le_bytes());
        self.pending
            .extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        self.pending.extend_from_slice(&payload);
        Ok(())
    }

    pub(crate) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Writes the buffered records and makes them durable with one fsync.
    pub(crate) fn commit(&mut self) -> Result<(), StoreError> {
        let path = self.dir.join(LOG_FILE);
        self.file.write_all(&self.pending).map_err(io_err(&path))?;
        if self.fsync {
            self.file.sync_data().map_err(io_err(&path))?;
        }
        self.size += self.pending.len() as u64;
        self.pending.clear();
        Ok(())
    }

    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Writes a snapshot of `state` atomically, then empties the log.
    pub(crate) fn snapshot(&mut self, state: &State) -> Result<(), StoreError> {
        let tmp = self.dir.join(format!("{SNAPSHOT_FILE}.tmp"));
        let dst = self.dir.join(SNAPSHOT_FILE);
        let bytes = serde_json::to_vec(&SnapshotFile {
            version: 1,
            state: state.to_snapshot(),
        })
        .map_err(|e| StoreError::Corrupt {
            path: dst.clone(),
            reason: e.to_string(),
        })?;
        {
            let mut f = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .mode(PRIVATE)
                .open(&tmp)
                .map_err(io_err(&tmp))?;
            f.write_all(&bytes).map_err(io_err(&tmp))?;
            f.sync_all().map_err(io_err(&tmp))?;
        }
        fs::rename(&tmp, &dst).map_err(io_err(&dst))?;
        sync_dir(&self.dir)?;
        let log = self.dir.join(LOG_FILE);
        self.file.set_len(0).map_err(io_err(&log))?;
        self.file.sync_all().map_err(io_err(&log))?;
        self.size = 0;
        tracing::info!(
            index = state.index(),
            snapshot_bytes = bytes.len(),
            "store compacted into a snapshot"
        );
        Ok(())
    }
}

/// Replays every intact record above the state's index. Returns (intact byte length, replayed, skipped).
fn replay(bytes: &[u8], state: &mut State) -> (usize, usize, usize) {
    let mut off = 0usize;
    let (mut replayed, mut skipped) = (0, 0);
    while bytes.len() - off >= HEADER {
        let len = u32::from_le_bytes([bytes[off], bytes[off + 1], bytes[off + 2], bytes[off + 3]]);
        let crc = u32::from_le_bytes([
            bytes[off + 4],
            bytes[off + 5],
            bytes[off + 6],
            bytes[off + 7],
        ]);
        if len > MAX_RECORD || bytes.len() - off - HEADER < len as usize {
            break;
        }
        let payload = &bytes[off + HEADER..off + HEADER + len as usize];
        if crc32fast::hash(payload) != crc {
            break;
        }
        let (index, applied) = match serde_json::from_slice::<Record>(payload) {
            Ok(rec) => (
                rec.index,
                (rec.index > state.index()).then(|| state.apply(&rec.op, rec.index)),
            ),
            // The record is whole (its CRC matched) but its op does not read as one this code
            // knows, e.g. a config entry that no longer decodes: skip it like an op that no
            // longer applies, rather than cut the log (and every later write) here.
            Err(e) => match serde_json::from_slice::<IndexOnly>(payload) {
                Ok(rec) => (
                    rec.index,
                    (rec.index > state.index())
                        .then(|| Err(ApplyError::Invalid(format!("the op does not read: {e}")))),
                ),
                Err(_) => break,
            },
        };
        match applied {
            Some(result) => {
                if let Err(e) = result {
                    // Cannot happen for a log this code wrote (ops are validated before
                    // logging); keep going so one bad record does not hide the rest.
                    tracing::error!(index, error = %e, "log record no longer applies; skipped");
                }
                state.force_index(index);
                replayed += 1;
            }
            None => skipped += 1,
        }
        off += HEADER + len as usize;
    }
    (off, replayed, skipped)
}

#[cfg(test)]
mod tests;
