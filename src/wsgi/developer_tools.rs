//! The developer tools of `--debug-mode` around the application: post-mortem pdb, the
//! start-up prompt, coverage.py, cProfile and the request recorder. The wrappers are
//! Python (`ferrule._devtools`), since they are pdb, coverage and cProfile driven from
//! Python; this module starts them, wraps the application and has them write their
//! reports when the executor is dropped.

use std::path::PathBuf;

use pyo3::prelude::*;

use super::app::format_exception;
use super::error::AppLoadError;
use crate::logs::{Level, error_log};

/// The tools asked for (the executor's copy of `cli::DeveloperTools`, without gdb).
#[derive(Clone, Debug, Default)]
pub struct DeveloperTools {
    pub post_mortem: bool,
    pub debugger_startup: bool,
    pub coverage_directory: Option<PathBuf>,
    pub profiler_directory: Option<PathBuf>,
    pub recorder_directory: Option<PathBuf>,
}

/// The option and the package a tool needs that this Python cannot import, if any: a
/// start-up error, before the server binds its port.
pub fn missing_package(
    py: Python<'_>,
    tools: &DeveloperTools,
) -> Option<(&'static str, &'static str)> {
    (tools.coverage_directory.is_some() && py.import("coverage").is_err())
        .then_some(("enable-coverage", "coverage"))
}

/// The running tools; dropping it writes the coverage report and the profile.
pub(crate) struct Session {
    session: Py<PyAny>,
}

impl Session {
    /// Starts coverage and the profiler (they measure the loading of the application).
    pub(crate) fn start(py: Python<'_>, tools: &DeveloperTools) -> Result<Self, AppLoadError> {
        let path = |path: &Option<PathBuf>| {
            path.as_ref()
                .map(|path| path.to_string_lossy().into_owned())
        };
        py.import("ferrule._devtools")
            .and_then(|module| {
                module.call_method1(
                    "Session",
                    (
                        path(&tools.coverage_directory),
                        path(&tools.profiler_directory),
                    ),
                )
            })
            .map(|session| Self {
                session: session.unbind(),
            })
            .map_err(|error| AppLoadError::Interpreter {
                traceback: format_exception(py, &error),
            })
    }

    /// The application with the tools around it; may stop at pdb's start-up prompt.
    pub(crate) fn wrap(
        &self,
        py: Python<'_>,
        application: Py<PyAny>,
        tools: &DeveloperTools,
    ) -> Result<Py<PyAny>, AppLoadError> {
        let recorder = tools
            .recorder_directory
            .as_ref()
            .map(|path| path.to_string_lossy().into_owned());
        self.session
            .call_method1(
                py,
                "wrap",
                (
                    application,
                    tools.post_mortem,
                    tools.debugger_startup,
                    recorder,
                ),
            )
            .map_err(|error| AppLoadError::Interpreter {
                traceback: format_exception(py, &error),
            })
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        Python::attach(|py| {
            if let Err(error) = self.session.call_method0(py, "finish") {
                error_log::log(
                    Level::Error,
                    "ferrule",
                    &format!(
                        "cannot write the coverage report or profile: {}",
                        format_exception(py, &error)
                    ),
                );
            }
        });
    }
}
