//! `--reload-on-changes`: a thread that looks, every second, at the files of every module
//! the application imported, and reports the first one that changed (mod_wsgi's monitor
//! thread does the same).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use pyo3::prelude::*;

/// How often imported files are looked at.
const INTERVAL: Duration = Duration::from_secs(1);

/// Starts the watching thread; `on_change` gets "'FILE' changed" once, then it stops.
pub fn watch_imported_files(on_change: Box<dyn Fn(String) + Send>) {
    let spawned = std::thread::Builder::new()
        .name("ferrule-reload".to_owned())
        .spawn(move || {
            let mut known: HashMap<PathBuf, Option<SystemTime>> = HashMap::new();
            loop {
                std::thread::sleep(INTERVAL);
                for file in imported_files() {
                    let modified = fs_err::metadata(&file).and_then(|m| m.modified()).ok();
                    match known.get(&file) {
                        None => {
                            known.insert(file, modified);
                        }
                        Some(before) if *before != modified => {
                            on_change(format!("'{}' changed", file.display()));
                            return;
                        }
                        Some(_) => {}
                    }
                }
            }
        });
    if let Err(error) = spawned {
        crate::logs::error_log::log(
            crate::logs::Level::Error,
            "ferrule",
            &format!("cannot watch imported files for --reload-on-changes: {error}"),
        );
    }
}

/// The source files of the modules imported so far (`__file__` of `sys.modules`).
fn imported_files() -> Vec<PathBuf> {
    Python::attach(|py| {
        let Ok(modules) = py.import("sys").and_then(|sys| sys.getattr("modules")) else {
            return Vec::new();
        };
        // A list first: other threads may import while we look.
        let Ok(values) = modules
            .call_method0("values")
            .and_then(|values| py.import("builtins")?.getattr("list")?.call1((values,)))
            .and_then(|values| values.try_iter().map(Iterator::collect::<Vec<_>>))
        else {
            return Vec::new();
        };
        values
            .into_iter()
            .flatten()
            .filter_map(|module| module.getattr(pyo3::intern!(py, "__file__")).ok())
            .filter_map(|file| file.extract::<String>().ok())
            .map(PathBuf::from)
            .collect()
    })
}
