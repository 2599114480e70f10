//! The access-control scripts, called on an application thread before the application:
//! `allow_access(environ, host)` (`--host-access-script`), `check_password(environ,
//! user, password)` or `get_realm_hash(environ, user, realm)` (`--auth-user-script`),
//! `groups_for_user(environ, user)` (`--auth-group-script`), with mod_wsgi's contracts.
//!
//! They run here, on the Python side, because the daemon-mode front end never runs
//! Python: the front end parsed the credentials and checked what needs no password
//! (`auth/`), and they travel with the request, so checking costs no extra hop. Each
//! script is loaded on first use and again when its file's modification time changes
//! (looked at once a second at most).
//! They get the request's environ (its unsafe headers already dropped, as the
//! application's).

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};

use super::Response;
use super::app::execute_script;
use crate::auth::{self, digest};
use crate::handoff::{AccessCheck, Credentials};
use crate::logs::{Level, error_log};

/// The scripts configured for this process (absolute paths).
#[derive(Clone, Debug, Default)]
pub struct AccessScripts {
    pub host_access_script: Option<PathBuf>,
    pub user_script: Option<PathBuf>,
    /// The group script and the group a user must be in.
    pub group_script: Option<(PathBuf, String)>,
}

/// The scripts of one process, loaded when first needed.
pub(crate) struct Scripts {
    host_access: Option<Script>,
    user: Option<Script>,
    group: Option<(Script, String)>,
}

/// What the scripts decided.
pub(crate) enum Decision {
    /// In; `REMOTE_USER` and `AUTH_TYPE` are set in the environ when a user logged in.
    Allow,
    /// The answer to send instead of calling the application (401 or 403).
    Refuse(Response),
}

/// Facts of the request the scripts and their log lines need.
pub(crate) struct Asking<'a> {
    /// The client's address, which `allow_access` gets as its host (Apache without
    /// host name lookups, as mod_wsgi-express runs it).
    pub(crate) host: &'a str,
    pub(crate) target: &'a str,
}

impl Scripts {
    pub(crate) fn new(scripts: AccessScripts) -> Self {
        Self {
            host_access: scripts.host_access_script.map(Script::new),
            user: scripts.user_script.map(Script::new),
            group: scripts
                .group_script
                .map(|(path, group)| (Script::new(path), group)),
        }
    }

    /// Runs the scripts `check` calls for, in Apache's order: host, user, group. An
    /// exception in a script, or a value outside its contract, is an `Err`: the request
    /// gets 500 with the traceback in the error log.
    pub(crate) fn decide(
        &self,
        py: Python<'_>,
        environ: &Bound<'_, PyDict>,
        check: &AccessCheck,
        asking: &Asking<'_>,
    ) -> PyResult<Decision> {
        if let Some(script) = &self.host_access {
            let verdict = script.call(py, "allow_access", (environ, asking.host))?;
            // None is mod_wsgi's "no opinion", which lets the request through.
            if !verdict.is_none() && !truth(&verdict, "allow_access")? {
                log(
                    py,
                    asking,
                    &format!("client denied by server configuration: {}", asking.target),
                );
                return Ok(Decision::Refuse(auth::forbidden()));
            }
        }
        let Some(user_script) = &self.user else {
            return Ok(Decision::Allow);
        };
        let (user, auth_type) = match &check.credentials {
            None => return Ok(Decision::Refuse(auth::unauthorized(&check.challenge))),
            Some(Credentials::Basic { user, password }) => {
                let verdict = user_script.call(py, "check_password", (environ, user, password))?;
                let Some(name) = basic_verdict(&verdict, user)? else {
                    return Ok(login_failed(py, asking, check, user, verdict.is_none()));
                };
                (name, "Basic")
            }
            Some(Credentials::Digest {
                user,
                realm,
                response_tail,
                response,
            }) => {
                let verdict = user_script.call(py, "get_realm_hash", (environ, user, realm))?;
                let matches = if verdict.is_none() {
                    false
                } else {
                    let ha1 = verdict.cast::<PyString>().map_err(|_| {
                        PyTypeError::new_err(
                            "get_realm_hash() must return a string (the hex MD5 of user:realm:password) or None",
                        )
                    })?;
                    let expected = digest::expected_response(ha1.to_str()?, response_tail);
                    digest::constant_time_eq(expected.as_bytes(), response.as_bytes())
                };
                if !matches {
                    return Ok(login_failed(py, asking, check, user, verdict.is_none()));
                }
                (user.clone(), "Digest")
            }
        };
        environ.set_item(pyo3::intern!(py, "REMOTE_USER"), &user)?;
        environ.set_item(pyo3::intern!(py, "AUTH_TYPE"), auth_type)?;
        // The password stays with the server, as in mod_wsgi (WSGIPassAuthorization off).
        if environ.contains(pyo3::intern!(py, "HTTP_AUTHORIZATION"))? {
            environ.del_item(pyo3::intern!(py, "HTTP_AUTHORIZATION"))?;
        }
        if let Some((script, group)) = &self.group {
            let groups = script.call(py, "groups_for_user", (environ, &user))?;
            if !in_group(&groups, group)? {
                log(
                    py,
                    asking,
                    &format!(
                        "user {} is not in the group '{group}' required for \"{}\"",
                        printable(&user),
                        asking.target
                    ),
                );
                return Ok(Decision::Refuse(auth::forbidden()));
            }
        }
        Ok(Decision::Allow)
    }
}

/// `check_password`'s answer: the name the user goes by, or `None` to refuse (False:
/// wrong password, None: no such user). A string is the name to use (mod_wsgi 4.3.0).
fn basic_verdict(verdict: &Bound<'_, PyAny>, user: &str) -> PyResult<Option<String>> {
    if verdict.is_none() {
        return Ok(None);
    }
    if let Ok(name) = verdict.cast::<PyString>() {
        let name = name.to_str()?;
        return Ok((!name.is_empty()).then(|| name.to_owned()));
    }
    Ok(truth(verdict, "check_password")?.then(|| user.to_owned()))
}

/// True or False exactly, as mod_wsgi accepts.
fn truth(verdict: &Bound<'_, PyAny>, function: &str) -> PyResult<bool> {
    if verdict.is_instance_of::<pyo3::types::PyBool>() {
        return verdict.is_truthy();
    }
    Err(PyTypeError::new_err(format!(
        "{function}() returned {}, which is not one of the values it may return",
        verdict.repr()?
    )))
}

/// Whether `group` is among the names `groups_for_user` returned (str or bytes).
fn in_group(groups: &Bound<'_, PyAny>, group: &str) -> PyResult<bool> {
    if groups.is_none() {
        return Ok(false);
    }
    for name in groups.try_iter()? {
        let name = name?;
        let matches = if let Ok(text) = name.cast::<PyString>() {
            text.to_str()? == group
        } else if let Ok(bytes) = name.cast::<PyBytes>() {
            bytes.as_bytes() == group.as_bytes()
        } else {
            return Err(PyTypeError::new_err(
                "groups_for_user() must return an iterable of group names (str or bytes)",
            ));
        };
        if matches {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A name the client chose, safe in a log line: control characters (a newline would
/// forge a line) become `\xNN`, as Apache escapes log items.
/// A login the user script refused: the error-log line Apache writes, and 401 with the
/// challenge again. `unknown`: the script did not know the user (else: wrong password).
fn login_failed(
    py: Python<'_>,
    asking: &Asking<'_>,
    check: &AccessCheck,
    user: &str,
    unknown: bool,
) -> Decision {
    let why = if unknown {
        "not found"
    } else {
        "password mismatch"
    };
    log(
        py,
        asking,
        &format!(
            "user {}: authentication failure for \"{}\": {why}",
            printable(user),
            asking.target
        ),
    );
    Decision::Refuse(auth::unauthorized(&check.challenge))
}

fn printable(name: &str) -> String {
    name.chars()
        .map(|character| {
            if character.is_control() {
                format!("\\x{:02x}", u32::from(character))
            } else {
                character.to_string()
            }
        })
        .collect()
}

fn log(py: Python<'_>, asking: &Asking<'_>, message: &str) {
    py.detach(|| {
        error_log::log_with_context(Level::Error, "auth", Some(asking.host), message);
    });
}

/// One script file, loaded as a module of its own on first use and again when it
/// changes (mod_wsgi's script reloading).
struct Script {
    path: PathBuf,
    loaded: std::sync::Mutex<Option<Loaded>>,
}

struct Loaded {
    modified: Option<SystemTime>,
    /// When the file's modification time was last looked at.
    checked: Instant,
    module: Py<PyAny>,
}

/// How often a script's file is looked at for changes. A `stat` on every request, with
/// the GIL released and taken back around it, added about 0.6 system calls per request
/// to embedded hello behind Basic auth (`bench/ab.sh VENV embedded auth`, on a loaded
/// machine: 3.6-4.3 per request, against 3.1-3.5 when looked at once a second and
/// 2.7-3.3 without auth); a change is still seen within a second.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);

impl Script {
    fn new(path: PathBuf) -> Self {
        Self {
            path,
            loaded: std::sync::Mutex::new(None),
        }
    }

    /// Calls the script's function `name` as the file is now. A failure (loading the
    /// file, no such function, an exception) gets a note naming the script, which the
    /// traceback in the error log shows (Python 3.11 and later).
    fn call<'py>(
        &self,
        py: Python<'py>,
        name: &str,
        arguments: impl pyo3::call::PyCallArgs<'py>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.function(py, name)
            .and_then(|function| function.call1(arguments))
            .inspect_err(|error| {
                let note = format!("in {name}() of '{}'", self.path.display());
                let _ = error.value(py).call_method1("add_note", (note,));
            })
    }

    /// The script's function `name`, from the module as the file is now.
    fn function<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
        let now = Instant::now();
        let recent = self.lock(py).as_ref().and_then(|loaded| {
            (now.duration_since(loaded.checked) < CHECK_INTERVAL)
                .then(|| loaded.module.clone_ref(py))
        });
        if let Some(module) = recent {
            return module.bind(py).getattr(name);
        }
        // The file system is asked with the GIL released (an application thread never
        // waits on I/O while attached).
        let modified = py.detach(|| {
            fs_err::metadata(&self.path)
                .and_then(|metadata| metadata.modified())
                .ok()
        });
        let unchanged = self.lock(py).as_mut().and_then(|loaded| {
            (loaded.modified == modified).then(|| {
                loaded.checked = now;
                loaded.module.clone_ref(py)
            })
        });
        let module = if let Some(module) = unchanged {
            module
        } else {
            let source = py
                .detach(|| fs_err::read(&self.path))
                .map_err(|error| pyo3::exceptions::PyOSError::new_err(error.to_string()))?;
            let module_name = format!("_ferrule_access_{}", module_suffix(&self.path));
            let module = execute_script(py, &self.path, &module_name, &source)?
                .into_any()
                .unbind();
            let previous = self.lock(py).replace(Loaded {
                modified,
                checked: now,
                module: module.clone_ref(py),
            });
            // Dropped with the lock released: a finalizer may run Python code.
            drop(previous);
            module
        };
        module.bind(py).getattr(name)
    }

    /// Held only for a clone or a swap, which never give the GIL up: a thread that
    /// waits for it while attached cannot be waiting for a holder that needs the GIL.
    fn lock(&self, _py: Python<'_>) -> std::sync::MutexGuard<'_, Option<Loaded>> {
        self.loaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn module_suffix(path: &std::path::Path) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    path.hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}
