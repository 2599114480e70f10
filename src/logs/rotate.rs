//! Log files that can be replaced under a running server: rotated when they reach
//! `--max-log-size` (`--rotate-logs`), and reopened when asked (SIGHUP/SIGUSR1, after
//! logrotate moved them).
//!
//! Several processes append to the same file, each through its own descriptor, and none
//! of them is in charge. So each one checks, before it writes, whether the file it holds
//! is full; the first to find it so takes a lock on the log directory (`flock`, held only
//! for the rename), renames the file to `NAME.YYYY-mm-dd-HH_MM_SS` (local time, the
//! names mod_wsgi-express's `rotatelogs` line gives) and opens a new one; the others,
//! finding under the lock that the path is no longer the file they hold, open the new one.
//! A line written to the old file in between stays whole there: no line is lost or split,
//! they only land in the file that was current for their process.
//!
//! The new file takes the old one's descriptor number (`dup2`), so that a descriptor
//! handed out earlier (to a forked child) stays valid, and writers never hold a lock
//! while writing.

use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use super::time::LocalTime;

/// Bumped by [`reopen_all`]; a file that saw an older value reopens before its next write.
static REOPEN_GENERATION: AtomicU64 = AtomicU64::new(0);

/// Asks every log file of this process to be opened again by its name before its next
/// line (the signal logrotate sends after moving the files).
pub fn reopen_all() {
    REOPEN_GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// A log file opened by name for appending.
pub struct LogFile {
    file: std::fs::File,
    path: PathBuf,
    /// Size in bytes at which the file is rotated; `None`: never.
    rotate_at: Option<u64>,
    /// The [`REOPEN_GENERATION`] this file was opened at.
    generation: AtomicU64,
    /// One thread of the process replaces the file at a time.
    replacing: Mutex<()>,
}

impl LogFile {
    /// Opens (or creates) the file at `path` for appending.
    pub fn open(path: &Path, rotate_at: Option<u64>) -> std::io::Result<Self> {
        Ok(Self {
            file: open_append(path)?,
            path: path.to_owned(),
            rotate_at,
            generation: AtomicU64::new(REOPEN_GENERATION.load(Ordering::Relaxed)),
            replacing: Mutex::new(()),
        })
    }

    pub(super) fn raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// Before a write: reopens the file when asked to, rotates it when full. Failures
    /// leave the current file in place (a full disk must not stop the logging).
    pub(super) fn before_write(&self) {
        let generation = REOPEN_GENERATION.load(Ordering::Relaxed);
        let reopen = self.generation.load(Ordering::Relaxed) != generation;
        let full = self.rotate_at.is_some_and(|limit| self.size() >= limit);
        if !reopen && !full {
            return;
        }
        let _replacing = self
            .replacing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.generation.store(generation, Ordering::Relaxed);
        if full {
            let _ = self.rotate();
        } else {
            let _ = self.reopen();
        }
    }

    fn size(&self) -> u64 {
        self.file.metadata().map_or(0, |metadata| metadata.len())
    }

    /// Renames the file aside if it is still the one at the path and still full (another
    /// process may have done it already), then opens the path again.
    fn rotate(&self) -> std::io::Result<()> {
        let directory = self.path.parent().unwrap_or_else(|| Path::new("."));
        let lock = DirectoryLock::take(directory)?;
        let held = self.file.metadata()?;
        let limit = self.rotate_at.unwrap_or(u64::MAX);
        if let Ok(current) = fs_err::metadata(&self.path) {
            let same_file = current.ino() == held.ino() && current.dev() == held.dev();
            if same_file && current.len() >= limit {
                fs_err::rename(&self.path, rotated_name(&self.path))?;
            }
        }
        let reopened = self.reopen();
        drop(lock);
        reopened
    }

    /// Opens the path again and puts the new file in place of the old descriptor.
    fn reopen(&self) -> std::io::Result<()> {
        let new = open_append(&self.path)?;
        // SAFETY: both descriptors are open and owned by this process; dup2 swaps what
        // the old number refers to in one step, so a concurrent write goes whole to one
        // file or the other.
        if unsafe { libc::dup2(new.as_raw_fd(), self.file.as_raw_fd()) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    Ok(fs_err::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?
        .into_parts()
        .0)
}

/// `NAME.YYYY-mm-dd-HH_MM_SS`, with `.1`, `.2`, ... when that name is taken (several
/// rotations in one second).
fn rotated_name(path: &Path) -> PathBuf {
    let stamp = LocalTime::now().rotation_stamp();
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{stamp}"));
    let base = PathBuf::from(name);
    let mut candidate = base.clone();
    let mut count = 0;
    while candidate.exists() {
        count += 1;
        let mut name = base.as_os_str().to_owned();
        name.push(format!(".{count}"));
        candidate = PathBuf::from(name);
    }
    candidate
}

/// An exclusive `flock` on a directory, between the processes rotating its files.
struct DirectoryLock(std::fs::File);

impl DirectoryLock {
    fn take(directory: &Path) -> std::io::Result<Self> {
        let file = fs_err::File::open(directory)?.into_parts().0;
        // SAFETY: flock on a descriptor this process owns; it blocks only for the time
        // another process renames a file.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self(file))
    }
}

impl Drop for DirectoryLock {
    fn drop(&mut self) {
        // Closing the descriptor releases the lock too; saying so keeps it explicit.
        // SAFETY: unlocking a descriptor this value owns.
        unsafe {
            libc::flock(self.0.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("ferrule-rotate-{name}-{}", std::process::id()));
        let _ = fs_err::remove_dir_all(&dir);
        fs_err::create_dir_all(&dir).unwrap();
        dir
    }

    fn write(log: &LogFile, text: &str) {
        log.before_write();
        (&log.file).write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn a_full_file_is_renamed_and_a_second_holder_follows() {
        let dir = temp_dir("full");
        let path = dir.join("access_log");
        let first = LogFile::open(&path, Some(10)).unwrap();
        let second = LogFile::open(&path, Some(10)).unwrap();
        write(&first, "0123456789\n");
        write(&second, "second\n");
        write(&first, "third\n");
        let mut names: Vec<_> = fs_err::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names.len(), 2, "{names:?}");
        assert_eq!(fs_err::read_to_string(&path).unwrap(), "second\nthird\n");
        let rotated = fs_err::read_to_string(dir.join(&names[1])).unwrap();
        assert_eq!(rotated, "0123456789\n");
        assert!(names[1].starts_with("access_log.20"), "{names:?}");
        fs_err::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reopen_follows_a_moved_file() {
        let dir = temp_dir("reopen");
        let path = dir.join("error_log");
        let log = LogFile::open(&path, None).unwrap();
        write(&log, "before\n");
        fs_err::rename(&path, dir.join("error_log.1")).unwrap();
        reopen_all();
        write(&log, "after\n");
        assert_eq!(fs_err::read_to_string(&path).unwrap(), "after\n");
        assert_eq!(
            fs_err::read_to_string(dir.join("error_log.1")).unwrap(),
            "before\n"
        );
        fs_err::remove_dir_all(&dir).unwrap();
    }
}
