//! The pid file (`httpd.pid` in the server root, or `--pid-file`): written when the
//! supervisor starts, emptied or removed when it ends, whatever the way out.
//!
//! With `--user` it stays root's: the control script, run by root, signals the pid it
//! names, so the user must not be able to change it. The supervisor, no longer root when
//! it stops, may then be unable to remove it; it empties it through the descriptor it
//! opened as root instead, which the control script and the next start read as "not
//! running".

use std::io::Write;
use std::path::{Path, PathBuf};

use fs_err::os::unix::fs::OpenOptionsExt;

/// The written pid file; dropping it takes the pid back.
pub(super) struct PidFile {
    path: PathBuf,
    /// Opened for writing while we could; kept to empty the file if it cannot be removed.
    file: fs_err::File,
}

impl PidFile {
    /// Writes this process's pid to a new file at `path` (the caller checked that the
    /// one there, if any, names no running server). A new file is ours alone, whoever
    /// owned the old one; and it is never written through a symbolic link, which someone
    /// could plant in a shared folder to have root overwrite its target.
    pub(super) fn write(path: &Path) -> std::io::Result<Self> {
        let _ = std::fs::remove_file(path);
        let mut file = fs_err::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)?;
        file.write_all(format!("{}\n", std::process::id()).as_bytes())?;
        Ok(Self {
            path: path.to_owned(),
            file,
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if std::fs::remove_file(&self.path).is_err() {
            let _ = self.file.set_len(0);
        }
    }
}
