//! Ferrule: mod_wsgi-express rebuilt in Rust, built as the extension module `ferrule._ferrule`.
//!
//! Crate map, one line per top-level module:
//! - `cli`: the `start-server` command line, parsed into one validated [`cli::Config`].
//! - `supervisor`: binds the listener, starts and restarts the server processes, turns
//!   signals into graceful stop.
//! - `embedded`: one embedded-mode server process (front end and executor together).
//! - `service`: one managed-service process (`--service-script`): its script, then SIGTERM.
//! - `daemon`: daemon mode: the IPC protocol, the front end's pool of daemon threads, and
//!   the daemon process main.
//! - `frontend`: accepts connections and speaks HTTP/1 (its own, on httparse); never runs Python.
//! - `frontend_setup`: the front end's configuration from the `Config`, for both modes.
//! - `auth`: the HTTP side of the access-control scripts (Authorization, Basic, Digest
//!   nonces, 400/401 answers); the scripts run on the Python side (no PyO3).
//! - `handoff`: the request and response passed between the front end and the executor
//!   (no PyO3).
//! - `wsgi`: the WSGI executor, the only home of PEP 3333 (environ, input, start_response,
//!   file_wrapper, application loading).
//! - `process`: what every process shares at start-up (runtime, logs, executor), so that
//!   no mode borrows from another.
//! - `logs`: the error log and the access log in Apache's formats.
//! - `shutdown`: the signal that tells long-running tasks to stop.
//! - `client_timeouts`: how long a client may take (built by `cli`, applied by `frontend`).
//! - `sync`: std's locks and atomics, or loom's for the `loom` tests (`make loom`).
//!
//! This file only exposes the Python entry point; it holds no logic.

/// Rust's allocations (the request's futures, buffers and headers) go to mimalloc; Python
/// keeps its own allocator. glibc's malloc took 12 % of the instructions of a request,
/// most of it in the bins of chunks over 1 KiB (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod auth;
pub mod cli;
pub mod client_timeouts;
pub mod daemon;
pub mod embedded;
pub mod fastcgi;
pub mod front_door;
pub mod frontend;
pub mod frontend_setup;
pub mod handoff;
pub mod logs;
pub mod process;
pub mod proxy;
pub mod service;
pub mod shutdown;
pub mod supervisor;
mod sync;
pub mod tls;
pub mod wsgi;

#[cfg(test)]
mod layering_tests;

use pyo3::prelude::*;

/// Runs the `ferrule` command line with `argv` (without the program name) and returns the
/// process exit code. Called by `python -m ferrule` and the `ferrule` console script.
#[pyfunction]
#[allow(clippy::needless_pass_by_value)] // PyO3 extracts a list into an owned Vec.
fn main(py: Python<'_>, argv: Vec<String>) -> PyResult<i32> {
    let sys = py.import("sys")?;
    let python = cli::PythonRuntime {
        executable: sys.getattr("executable")?.extract()?,
        version: sys
            .getattr("version")?
            .extract::<String>()?
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_owned(),
        gil_disabled: py
            .import("sysconfig")?
            .call_method1("get_config_var", ("Py_GIL_DISABLED",))?
            .is_truthy()?,
    };
    let role = match cli::read_environment() {
        Ok(role) => role,
        Err(status) => return Ok(status as i32),
    };
    forget_contract_variables(py)?;
    let config = match cli::parse(argv.clone(), &python, &role) {
        Ok(config) => config,
        Err(status) => return Ok(status as i32),
    };
    // Dropped last, when this process's work is done: its log lines are all written.
    let _logs = logs::FlushOnExit;
    let status = if config.action == cli::Action::ConfigTest {
        logs::write_stdout("Syntax OK\n");
        cli::ExitStatus::Success
    } else if config.action == cli::Action::Setup {
        supervisor::setup(&config, &argv)
    } else if config.processes.mode == cli::OperatingMode::Debug {
        run_debug_mode(py, &config, &role, &argv)
    } else {
        match role {
            cli::ProcessRole::EmbeddedServer {
                listener_fd,
                tls_listener_fd,
            } => embedded::run(py, &config, listener_fd, tls_listener_fd),
            cli::ProcessRole::Daemon { socket, slot } => {
                daemon::worker::run(py, &config, socket, slot)
            }
            cli::ProcessRole::Service { name } => service::run(py, &config, &name),
            cli::ProcessRole::Supervisor { .. } => py.detach(|| supervisor::run(&config, &argv)),
        }
    };
    Ok(status as i32)
}

/// `--debug-mode` (and the developer tools, which turn it on): under gdb first with
/// `--enable-gdb`; a tool's missing package is a start-up error before the port is bound.
fn run_debug_mode(
    py: Python<'_>,
    config: &cli::Config,
    role: &cli::ProcessRole,
    argv: &[String],
) -> cli::ExitStatus {
    let under_gdb = matches!(
        role,
        cli::ProcessRole::Supervisor {
            under_gdb: true,
            ..
        }
    );
    if let Some(gdb) = config.developer_tools.gdb.as_ref().filter(|_| !under_gdb) {
        return supervisor::run_under_gdb(config, gdb, argv);
    }
    if let Some(tools) = process::developer_tools(config) {
        if let Some((option, package)) = wsgi::missing_package(py, &tools) {
            logs::write_terminal(&format!(
                "ferrule: error: --{option} needs the Python package '{package}', which {} cannot import\nhint: {} -m pip install {package}\n",
                config.python.executable.display(),
                config.python.executable.display(),
            ));
            return cli::ExitStatus::UsageError;
        }
    }
    match supervisor::prepare_foreground(config) {
        Ok(listeners) => embedded::run_in_foreground(py, config, listeners),
        Err(status) => status,
    }
}

/// Removes the supervisor's `FERRULE_*` variables from `os.environ` (and so from the
/// process environment): the application, and any `ferrule` it starts, must not see
/// them.
fn forget_contract_variables(py: Python<'_>) -> PyResult<()> {
    let environ = py.import("os")?.getattr("environ")?;
    for name in cli::CONTRACT_VARIABLES {
        environ.call_method1("pop", (name, py.None()))?;
    }
    Ok(())
}

/// mimalloc commits its arenas up front on Linux by default, which cost every process
/// about 9 MB more resident memory than glibc's malloc (measured with 10,000 idle
/// connections: docs/benchmarks.md); committed on use, the difference is 1-3 MB and the
/// instructions per request are the same. Set before the module allocates much; an
/// explicit `MIMALLOC_ARENA_EAGER_COMMIT` in the environment still wins.
fn commit_memory_on_use() {
    /// `mi_option_arena_eager_commit` in mimalloc's `mi_option_t` (v2 and v3 alike).
    const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
    if std::env::var_os("MIMALLOC_ARENA_EAGER_COMMIT").is_none() {
        // SAFETY: mi_option_set only stores the value of a known option.
        unsafe { libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0) };
    }
}

#[pymodule]
fn _ferrule(module: &Bound<'_, PyModule>) -> PyResult<()> {
    commit_memory_on_use();
    module.add_function(wrap_pyfunction!(main, module)?)?;
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    wsgi::init_pymodule(module)?;
    Ok(())
}
