//! Errors of the WSGI executor layer.

use std::path::PathBuf;

/// Why the WSGI application could not be loaded at start-up.
#[derive(Debug, thiserror::Error)]
pub enum AppLoadError {
    #[error("cannot read the WSGI script file '{path}': {source}")]
    ScriptUnreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to load the WSGI script file '{path}':\n{traceback}")]
    ScriptFailed { path: PathBuf, traceback: String },
    #[error(
        "{place} defines no callable named '{callable}'\nhint: name the callable with --callable-object, or as module:callable"
    )]
    NoCallable { place: String, callable: String },
    #[error("failed to import the module '{module}':\n{traceback}")]
    ModuleFailed { module: String, traceback: String },
    #[error(
        "--application-type paste needs PasteDeploy, which is not installed\nhint: pip install PasteDeploy"
    )]
    PasteDeployMissing,
    #[error("failed to load the PasteDeploy configuration '{path}':\n{traceback}")]
    PasteFailed { path: PathBuf, traceback: String },
    #[error("failed to prepare the Python interpreter: {traceback}")]
    Interpreter { traceback: String },
}
