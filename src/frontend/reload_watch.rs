//! The application's entry file (script, module source, .ini), looked at on every request
//! while reloading is on, as mod_wsgi looks at its script file: one `stat`, compared with
//! what it was when the application was loaded.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

/// What identifies a version of a file: replaced, rewritten or touched, one of these moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl Stamp {
    fn of(path: &Path) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        let metadata = fs_err::metadata(path).ok()?;
        Some(Self {
            modified: metadata.modified().ok(),
            len: metadata.len(),
            inode: metadata.ino(),
        })
    }
}

/// The watched file and the version of it the running application came from.
#[derive(Debug, Default)]
pub struct ReloadWatch {
    watched: Mutex<Option<(PathBuf, Option<Stamp>)>>,
}

impl ReloadWatch {
    /// Watches `path` from now on; nothing happens if it is already the watched file.
    pub fn watch(&self, path: PathBuf) {
        let mut watched = self.lock();
        if watched.as_ref().is_none_or(|(current, _)| *current != path) {
            let stamp = Stamp::of(&path);
            *watched = Some((path, stamp));
        }
    }

    /// The watched file, if it changed since it was loaded (or since the last call that
    /// said so).
    pub fn changed(&self) -> Option<PathBuf> {
        let mut watched = self.lock();
        let (path, stamp) = watched.as_mut()?;
        let now = Stamp::of(path);
        if now == *stamp || now.is_none() {
            // A file caught in the middle of being replaced is looked at again next time.
            return None;
        }
        *stamp = now;
        Some(path.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(PathBuf, Option<Stamp>)>> {
        self.watched
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewrite_is_seen_once() {
        let path = std::env::temp_dir().join(format!("ferrule-watch-{}", std::process::id()));
        fs_err::write(&path, "one").expect("write");
        let watch = ReloadWatch::default();
        watch.watch(path.clone());
        assert_eq!(watch.changed(), None);
        fs_err::write(&path, "two, longer").expect("rewrite");
        assert_eq!(watch.changed(), Some(path.clone()));
        assert_eq!(watch.changed(), None);
        let _ = fs_err::remove_file(&path);
    }
}
