//! Who may write into a run folder: advisory locks (`flock`), held for as long as the
//! [`RunLock`] lives.
//!
//! - A whole run (`validate run`, `tune`) takes `DIR/.lock` **exclusively**: a second one into
//!   the same folder fails at once naming the holder's pid.
//! - A cell run (`validate run --cell N`, one task of a Slurm array) takes `DIR/.lock`
//!   **shared** (many cells of one sweep run at once, but never beside a whole run) and its own
//!   cell lock exclusively ([`cell_lock_path`]): the same cell cannot run twice at once.
//!
//! The operating system drops a lock when its holder exits, however it exits (`kill -9`,
//! `scancel` and a preempted Slurm job included), so a stale file never blocks a resume; and
//! [`is_held`] tells a running cell from an interrupted one without any scheduler's accounting.
//! On a cluster the locks rely on the shared filesystem's `flock` (Linux NFSv4 and Lustre
//! honour it across nodes).

use crate::error::{Error, Result};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The lock file inside a run folder.
pub const LOCK_FILE: &str = ".lock";

/// What a holder writes into a shared folder lock (there may be many: no pid).
const SHARED_HOLDER: &str = "cells";

/// The lock file of one cell whose main output is `record` (`DIR/<dataset>/<strategy>/seed<k>.jsonl`
/// → `.seed<k>.lock` beside it; the upstream checkpoint's folder → `upstream/.lock`).
pub fn cell_lock_path(record: &Path) -> PathBuf {
    let stem = record.file_stem().and_then(|s| s.to_str()).unwrap_or("cell");
    record.with_file_name(format!(".{stem}.lock"))
}

/// Held lock on a run folder or a cell; released on drop.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    path: PathBuf,
}

impl RunLock {
    /// Creates `dir` if needed and takes its lock exclusively, or fails with [`Error::Locked`]
    /// naming the holder (a pid, or the cell runs holding it shared).
    pub fn acquire(dir: &Path) -> Result<Self> {
        Self::take(dir, &dir.join(LOCK_FILE), false)
    }

    /// Takes `dir`'s lock shared (beside other cell runs, never beside a whole run).
    pub fn acquire_shared(dir: &Path) -> Result<Self> {
        Self::take(dir, &dir.join(LOCK_FILE), true)
    }

    /// Takes the exclusive lock of the cell whose main output is `record` (see
    /// [`cell_lock_path`]); its folder is created if needed.
    pub fn acquire_cell(record: &Path) -> Result<Self> {
        Self::take(record, &cell_lock_path(record), false)
    }

    fn take(what: &Path, path: &Path, shared: bool) -> Result<Self> {
        let dir = path.parent().expect("a lock file has a folder");
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        let got = if shared {
            file.try_lock_shared()
        } else {
            file.try_lock()
        };
        match got {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let text = text.trim();
                return Err(Error::Locked {
                    path: what.to_path_buf(),
                    lock: path.to_path_buf(),
                    holder: match text.parse::<u32>() {
                        Ok(pid) => Some(format!("process {pid}")),
                        Err(_) if text == SHARED_HOLDER => Some("cell runs (validate run --cell)".into()),
                        Err(_) => None,
                    },
                });
            }
            Err(TryLockError::Error(e)) => return Err(Error::io(path, e)),
        }
        let holder = if shared {
            SHARED_HOLDER.to_string()
        } else {
            std::process::id().to_string()
        };
        file.set_len(0).map_err(|e| Error::io(path, e))?;
        file.rewind().map_err(|e| Error::io(path, e))?;
        write!(file, "{holder}").map_err(|e| Error::io(path, e))?;
        file.flush().map_err(|e| Error::io(path, e))?;
        Ok(Self {
            _file: file,
            path: path.to_path_buf(),
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Whether a live process holds the lock file `path` (exclusively or shared); false when the
/// file does not exist. Creates nothing.
pub fn is_held(path: &Path) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    match file.try_lock() {
        Ok(()) => false,
        Err(TryLockError::WouldBlock) => true,
        Err(TryLockError::Error(_)) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("robustft-lock-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn second_holder_is_refused_naming_the_first_and_admitted_after_release() {
        let dir = fresh("x");
        let first = RunLock::acquire(&dir).unwrap();
        assert_eq!(
            std::fs::read_to_string(first.path()).unwrap(),
            std::process::id().to_string()
        );
        assert!(is_held(first.path()));
        // flock locks belong to the open file description: a second open in this process
        // conflicts just as another process's would.
        match RunLock::acquire(&dir) {
            Err(Error::Locked { path, lock, holder }) => {
                assert_eq!(path, dir);
                assert_eq!(lock, dir.join(LOCK_FILE));
                assert_eq!(holder, Some(format!("process {}", std::process::id())));
            }
            other => panic!("expected Locked, got {other:?}"),
        }
        // A cell run is refused beside a whole run.
        assert!(matches!(RunLock::acquire_shared(&dir), Err(Error::Locked { .. })));
        drop(first);
        assert!(!is_held(&dir.join(LOCK_FILE)));
        let again = RunLock::acquire(&dir).unwrap();
        drop(again);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn cells_share_the_folder_but_each_cell_runs_once() {
        let dir = fresh("cells");
        let a = RunLock::acquire_shared(&dir).unwrap();
        let b = RunLock::acquire_shared(&dir).unwrap();
        // A whole run is refused while cells run, and says so.
        match RunLock::acquire(&dir) {
            Err(Error::Locked { holder, .. }) => assert_eq!(holder.as_deref(), Some("cell runs (validate run --cell)")),
            other => panic!("expected Locked, got {other:?}"),
        }
        let rec = dir.join("simple").join("lora").join("seed0.jsonl");
        assert_eq!(cell_lock_path(&rec), dir.join("simple/lora/.seed0.lock"));
        assert!(
            !is_held(&cell_lock_path(&rec)),
            "no file yet: not held, and nothing created"
        );
        assert!(!cell_lock_path(&rec).exists());
        let c = RunLock::acquire_cell(&rec).unwrap();
        assert!(is_held(&cell_lock_path(&rec)));
        match RunLock::acquire_cell(&rec) {
            Err(Error::Locked { path, .. }) => assert_eq!(path, rec),
            other => panic!("expected Locked, got {other:?}"),
        }
        // Another cell is free.
        let other = RunLock::acquire_cell(&dir.join("simple").join("lora").join("seed1.jsonl")).unwrap();
        drop((a, b, c, other));
        assert!(!is_held(&cell_lock_path(&rec)));
        RunLock::acquire(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
