//! Loading the WSGI application, by `--application-type`: a script file executed as a
//! module of its own, a module imported normally, or a PasteDeploy pipeline; and the
//! callable taken from it.
//!
//! As mod_wsgi does, the script runs under a private module name derived from its path (so
//! two scripts never collide, and the script is not importable by accident), with
//! `__file__` set, after `--python-path` entries were added with `site.addsitedir`.

use std::hash::{Hash, Hasher};
use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyModule};

use super::error::AppLoadError;

/// What `--application-type` names and where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppSource {
    /// A WSGI script file (absolute path), run as a private module.
    Script(PathBuf),
    /// A module imported with the normal import system.
    Module(String),
    /// A PasteDeploy configuration file (absolute path), built with `loadapp`.
    Paste(PathBuf),
}

impl AppSource {
    /// The file the application comes from, if it is one (for reloading and the environ).
    pub fn file(&self) -> Option<&std::path::Path> {
        match self {
            Self::Script(path) | Self::Paste(path) => Some(path),
            Self::Module(_) => None,
        }
    }
}

/// Where the application lives and how to reach it.
#[derive(Clone, Debug)]
pub struct AppSpec {
    pub source: AppSource,
    /// The name of the WSGI callable: an attribute of the script or module, dotted to
    /// reach into objects (`--callable-object`, or what follows `:` in `pkg.wsgi:app`).
    pub callable_object: String,
    /// The home directory (`--working-directory`/`--home`), real path: first on
    /// `sys.path`, in place of the '' that would follow the current directory.
    pub home: PathBuf,
    /// Where the process started; `python -m` put it on `sys.path`, where it has no
    /// business (the application's modules are found through the home directory).
    pub launch_directory: Option<PathBuf>,
    /// The site-packages of `--python-home`, searched right after the home directory.
    pub python_home_site: Option<PathBuf>,
    /// Directories added to `sys.path` before the script runs (`--python-path`).
    pub python_paths: Vec<PathBuf>,
    /// `--add-handler` scripts, in the order of their extensions.
    pub handler_scripts: Vec<PathBuf>,
    /// The developer tools of debug mode, when any is asked for.
    pub developer_tools: Option<super::developer_tools::DeveloperTools>,
}

/// Loads the application named by `spec.source` and returns its WSGI callable.
pub fn load_application(py: Python<'_>, spec: &AppSpec) -> Result<Py<PyAny>, AppLoadError> {
    set_up_sys_path(py, spec).map_err(|error| AppLoadError::Interpreter {
        traceback: format_exception(py, &error),
    })?;
    match &spec.source {
        AppSource::Script(script) => {
            let module = run_script(py, script)?;
            find_callable(module.as_any(), &spec.callable_object).ok_or_else(|| {
                AppLoadError::NoCallable {
                    place: format!("the WSGI script file '{}'", script.display()),
                    callable: spec.callable_object.clone(),
                }
            })
        }
        AppSource::Module(name) => {
            let module = py
                .import("importlib")
                .and_then(|importlib| importlib.call_method1("import_module", (name.as_str(),)))
                .map_err(|error| AppLoadError::ModuleFailed {
                    module: name.clone(),
                    traceback: format_exception(py, &error),
                })?;
            find_callable(&module, &spec.callable_object).ok_or_else(|| AppLoadError::NoCallable {
                place: format!("the module '{name}'"),
                callable: spec.callable_object.clone(),
            })
        }
        AppSource::Paste(ini) => load_paste(py, ini),
    }
}

/// Runs a managed service's script (`--service-script`), as mod_wsgi runs an import
/// script: a private module like the application's script, after the same `sys.path`
/// set-up, with `print()` output going to the error log.
pub fn run_service_script(
    py: Python<'_>,
    spec: &AppSpec,
    script: &std::path::Path,
) -> Result<(), AppLoadError> {
    let interpreter_error = |error: PyErr| AppLoadError::Interpreter {
        traceback: format_exception(py, &error),
    };
    super::executor::redirect_standard_streams(py).map_err(interpreter_error)?;
    set_up_sys_path(py, spec).map_err(interpreter_error)?;
    run_script(py, script).map(drop)
}

/// Loads the `--add-handler` scripts, each as a private module like the application's
/// script, and takes its `handle_request` callable, else its `application` (what
/// mod_wsgi-express's resource handler calls).
pub(crate) fn load_handlers(
    py: Python<'_>,
    spec: &AppSpec,
) -> Result<Vec<Py<PyAny>>, AppLoadError> {
    spec.handler_scripts
        .iter()
        .map(|script| {
            let module = run_script(py, script)?;
            find_callable(module.as_any(), "handle_request")
                .or_else(|| find_callable(module.as_any(), "application"))
                .ok_or_else(|| AppLoadError::NoCallable {
                    place: format!("the handler script '{}'", script.display()),
                    callable: "handle_request".to_owned(),
                })
        })
        .collect()
}

/// Reads `script` and runs it as a private module (the application's script, a handler's).
fn run_script<'py>(
    py: Python<'py>,
    script: &std::path::Path,
) -> Result<Bound<'py, PyModule>, AppLoadError> {
    let source = fs_err::read(script).map_err(|source| AppLoadError::ScriptUnreadable {
        path: script.to_path_buf(),
        source,
    })?;
    execute_script(py, script, &private_module_name(script), &source).map_err(|error| {
        AppLoadError::ScriptFailed {
            path: script.to_path_buf(),
            traceback: format_exception(py, &error),
        }
    })
}

/// Loads the application again after its entry file changed: the script run afresh, the
/// module reloaded (`importlib.reload`), the PasteDeploy pipeline built again.
pub(crate) fn reload_application(
    py: Python<'_>,
    spec: &AppSpec,
) -> Result<Py<PyAny>, AppLoadError> {
    if let AppSource::Module(name) = &spec.source {
        let module = py
            .import("importlib")
            .and_then(|importlib| {
                let module = importlib.call_method1("import_module", (name.as_str(),))?;
                importlib.call_method1("reload", (module,))
            })
            .map_err(|error| AppLoadError::ModuleFailed {
                module: name.clone(),
                traceback: format_exception(py, &error),
            })?;
        return find_callable(&module, &spec.callable_object).ok_or_else(|| {
            AppLoadError::NoCallable {
                place: format!("the module '{name}'"),
                callable: spec.callable_object.clone(),
            }
        });
    }
    load_application(py, spec)
}

/// The file that holds the application's entry point, once it is loaded.
pub(crate) fn entry_file(py: Python<'_>, spec: &AppSpec) -> Option<PathBuf> {
    match &spec.source {
        AppSource::Script(path) | AppSource::Paste(path) => Some(path.clone()),
        AppSource::Module(name) => {
            let module = py
                .import("sys")
                .ok()?
                .getattr("modules")
                .ok()?
                .get_item(name)
                .ok()?;
            let file: String = module.getattr("__file__").ok()?.extract().ok()?;
            Some(PathBuf::from(file))
        }
    }
}

/// `callable` looked up on `module`, following dots (`app.wsgi_app`).
fn find_callable(module: &Bound<'_, PyAny>, callable: &str) -> Option<Py<PyAny>> {
    let mut target = module.clone();
    for part in callable.split('.') {
        target = target.getattr(part).ok()?;
    }
    target.is_callable().then(|| target.unbind())
}

/// The top-level application of a PasteDeploy configuration: its pipeline, filters and
/// composites built by PasteDeploy's own `loadapp`.
fn load_paste(py: Python<'_>, ini: &std::path::Path) -> Result<Py<PyAny>, AppLoadError> {
    let deploy = py
        .import("paste.deploy")
        .map_err(|_| AppLoadError::PasteDeployMissing)?;
    let uri = format!("config:{}", ini.display());
    deploy
        .call_method1("loadapp", (uri,))
        .map(Bound::unbind)
        .map_err(|error| AppLoadError::PasteFailed {
            path: ini.to_owned(),
            traceback: format_exception(py, &error),
        })
}

/// `sys.path` as mod_wsgi's daemon processes have it since 4.3.0: the home directory's
/// real path first (never '', which would follow later `os.chdir` calls), then
/// `--python-home`'s packages, then the rest, then `--python-path` entries (with their
/// `.pth` files read).
fn set_up_sys_path(py: Python<'_>, spec: &AppSpec) -> PyResult<()> {
    let sys_path = py.import("sys")?.getattr("path")?;
    let home = spec.home.to_string_lossy();
    let mut entries: Vec<String> = sys_path.extract()?;
    let launch = spec
        .launch_directory
        .as_ref()
        .map(|directory| directory.to_string_lossy().into_owned());
    entries.retain(|entry| !entry.is_empty() && *entry != home && Some(entry) != launch.as_ref());
    entries.insert(0, home.clone().into_owned());
    let site = py.import("site")?;
    if let Some(site_packages) = &spec.python_home_site {
        let site_packages = site_packages.to_string_lossy().into_owned();
        entries.retain(|entry| *entry != site_packages);
        entries.insert(1, site_packages.clone());
        sys_path.call_method1("__setitem__", (pyo3::types::PySlice::full(py), entries))?;
        // Reads its .pth files; the directory itself is already in place.
        site.call_method1("addsitedir", (site_packages,))?;
    } else {
        sys_path.call_method1("__setitem__", (pyo3::types::PySlice::full(py), entries))?;
    }
    for directory in &spec.python_paths {
        site.call_method1("addsitedir", (directory.to_string_lossy().as_ref(),))?;
    }
    Ok(())
}

/// Runs a script file as a new module named `module_name` (registered in `sys.modules`
/// while it runs, as an import would).
pub(crate) fn execute_script<'py>(
    py: Python<'py>,
    script: &std::path::Path,
    module_name: &str,
    source: &[u8],
) -> PyResult<Bound<'py, PyModule>> {
    let path = script.to_string_lossy();
    let module = PyModule::new(py, module_name)?;
    module.setattr("__file__", path.as_ref())?;
    let sys_modules = py.import("sys")?.getattr("modules")?;
    sys_modules.set_item(module_name, &module)?;
    let builtins = py.import("builtins")?;
    let code = builtins.call_method1("compile", (source, path.as_ref(), "exec"))?;
    let namespace: Bound<'py, PyDict> = module.dict();
    if let Err(error) = builtins.call_method1("exec", (code, &namespace)) {
        let _ = sys_modules.del_item(module_name);
        return Err(error);
    }
    Ok(module)
}

/// `_ferrule_<hash of the path>`: unique per script, never a valid import of user code.
fn private_module_name(script: &std::path::Path) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    script.hash(&mut hasher);
    format!("_ferrule_{:016x}", hasher.finish())
}

/// The exception with its traceback, as Python would print it.
pub(crate) fn format_exception(py: Python<'_>, error: &PyErr) -> String {
    let formatted = py.import("traceback").and_then(|traceback| {
        traceback.call_method1(
            "format_exception",
            (error.get_type(py), error.value(py), error.traceback(py)),
        )
    });
    match formatted.and_then(|lines| lines.extract::<Vec<String>>()) {
        Ok(lines) => lines.concat(),
        Err(_) => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_differ_per_script_and_are_private() {
        let first = private_module_name(std::path::Path::new("/srv/a/app.wsgi"));
        let second = private_module_name(std::path::Path::new("/srv/b/app.wsgi"));
        assert_ne!(first, second);
        assert!(first.starts_with("_ferrule_"));
    }
}
