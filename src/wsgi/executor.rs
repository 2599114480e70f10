//! The pool of application threads of one process and the queue that feeds them.
//!
//! Each thread attaches to Python once for its whole life and detaches only while it waits
//! for the next request; requests arrive through an unbounded queue whose length is
//! bounded by the connections the front end holds.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pyo3::prelude::*;

use super::app::{AppSpec, entry_file, format_exception, load_application, load_handlers};
use super::context::{Job, ThreadContext};
use super::developer_tools::Session;
use super::environ::{self, ProcessFacts};
use super::error::AppLoadError;
use super::file_wrapper::FileWrapper;
use super::host_module;
use super::interrupt::{InterruptSettings, InterruptWatch};
use super::log_stream::LogStream;
use super::queue::JobQueue;
use super::slow_requests::SlowRequestWatch;
use super::{Request, run};
use crate::handoff::activity::ThreadActivity;
use crate::handoff::reply::{self, Mailbox, ReplyReceiver};
use crate::logs::Level;

/// Where the application's `sys.stdout` and `sys.stderr` go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StandardStreams {
    /// Into the error log, line by line (mod_wsgi's behaviour).
    ErrorLog,
    /// Left alone: the terminal, for pdb in `--debug-mode`.
    Terminal,
}

/// The WSGI executor of one process: the loaded application and its threads.
pub struct Executor {
    /// Closed by [`Executor::stop`]; the threads end when it is closed and empty.
    queue: Arc<JobQueue<Job>>,
    threads: Vec<JoinHandle<()>>,
    context: Arc<ThreadContext>,
    entry_file: Option<std::path::PathBuf>,
    /// Where application threads leave responses for the reactor that submitted them.
    mailbox: Arc<Mailbox>,
    /// What the threads are doing, for the front end's metrics and status page.
    activity: Arc<ThreadActivity>,
    /// The developer tools of debug mode; dropped after the threads stopped, when it
    /// writes the coverage report and the profile.
    developer_session: Option<Session>,
    /// `--slow-requests`: the watcher, stopped when dropped.
    slow_requests: Option<SlowRequestWatch>,
    /// `--interrupt-timeout`'s watch over the threads' requests (daemon mode).
    interrupt_watch: Option<InterruptWatch>,
}

impl Executor {
    /// Loads the application and starts `facts.n_threads` application threads; with
    /// `interrupt`, a request past its timeout gets `RequestTimeout` raised in its thread.
    pub fn start(
        py: Python<'_>,
        spec: &AppSpec,
        facts: ProcessFacts,
        streams: StandardStreams,
        access: super::AccessScripts,
        interrupt: Option<InterruptSettings>,
    ) -> Result<Self, AppLoadError> {
        let interpreter_error = |error: PyErr| AppLoadError::Interpreter {
            traceback: format_exception(py, &error),
        };
        if streams == StandardStreams::ErrorLog {
            redirect_standard_streams(py).map_err(interpreter_error)?;
        }
        let developer_session = spec
            .developer_tools
            .as_ref()
            .map(|tools| Session::start(py, tools))
            .transpose()?;
        let n_threads = facts.n_threads.max(1);
        let activity = Arc::new(ThreadActivity::new(n_threads));
        if facts.server_metrics || facts.slow_requests.is_some() {
            activity.record_requests();
        }
        // Before the application, which may import it at once.
        host_module::install(py, &facts, Arc::clone(&activity)).map_err(interpreter_error)?;
        let app = load_application(py, spec)?;
        let app = match (&developer_session, &spec.developer_tools) {
            (Some(session), Some(tools)) => session.wrap(py, app, tools)?,
            _ => app,
        };
        let handlers = load_handlers(py, spec)?;
        let errors = Bound::new(py, LogStream::new("wsgi.errors", Level::Error))
            .map_err(interpreter_error)?;
        let file_wrapper = py.get_type::<FileWrapper>();
        let environ_template =
            environ::template(py, &facts, errors.as_any(), file_wrapper.as_any())
                .map_err(interpreter_error)?
                .unbind();
        let entry_file = entry_file(py, spec);
        let slow_requests = facts
            .slow_requests
            .map(|threshold| SlowRequestWatch::start(threshold, Arc::clone(&activity)))
            .transpose()
            .map_err(|error| AppLoadError::Interpreter {
                traceback: format!("cannot start the --slow-requests watcher: {error}"),
            })?;
        let (running, interrupt_watch) = match interrupt {
            Some(settings) => {
                let (running, watch) =
                    InterruptWatch::start(settings, n_threads).map_err(|error| {
                        AppLoadError::Interpreter {
                            traceback: format!(
                                "cannot start the --interrupt-timeout watch: {error}"
                            ),
                        }
                    })?;
                (Some(running), Some(watch))
            }
            None => (None, None),
        };
        let context = Arc::new(ThreadContext::new(
            app,
            handlers,
            environ_template,
            facts,
            spec.clone(),
            super::access::Scripts::new(access),
            running,
        ));
        let queue = Arc::new(JobQueue::new());
        let threads = (0..n_threads)
            .map(|index| {
                let context = Arc::clone(&context);
                let queue = Arc::clone(&queue);
                let activity = Arc::clone(&activity);
                std::thread::Builder::new()
                    .name(format!("ferrule-wsgi-{index}"))
                    .spawn(move || application_thread(&context, &queue, &activity, index))
                    .map_err(|error| AppLoadError::Interpreter {
                        traceback: format!("cannot start an application thread: {error}"),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            queue,
            mailbox: Arc::default(),
            threads,
            context,
            entry_file,
            activity,
            developer_session,
            slow_requests,
            interrupt_watch,
        })
    }

    /// The file whose change means the application must be reloaded: the script, the
    /// .ini, or the module's source file.
    pub fn entry_file(&self) -> Option<&std::path::Path> {
        self.entry_file.as_deref()
    }

    /// What the application threads are doing (the front end's metrics and status page).
    pub fn activity(&self) -> &ThreadActivity {
        &self.activity
    }

    /// Makes the next request load the application again first (embedded mode's answer
    /// to a changed entry file: the requests after the change see the new code).
    pub fn reload_before_next_request(&self) {
        self.context.request_reload();
    }

    /// Queues `request`; the receiver yields the response once the application produced
    /// its head (or failed).
    pub fn submit(&self, request: Request) -> ReplyReceiver {
        let (reply_tx, reply_rx) = reply::channel(&self.mailbox);
        // The queue only closes in `stop`, which consumes the executor.
        self.activity.queued();
        let _ = self.queue.push(Job {
            request,
            reply_tx,
            queued_at: Instant::now(),
        });
        reply_rx
    }

    /// Closes the queue and waits up to `timeout` for the threads to finish their
    /// requests, then tells the application's `process_stopping` subscribers why the
    /// process stops (`reason`, one of mod_wsgi's `shutdown_reason` values). Returns
    /// false if some thread was still busy (the subscribers are not called then: a thread
    /// stuck holding the GIL would stop them too). Call it detached from Python.
    pub fn stop(mut self, timeout: Duration, reason: &str) -> bool {
        self.slow_requests = None;
        if let Some(watch) = self.interrupt_watch.take() {
            watch.stop();
        }
        self.queue.close();
        let deadline = Instant::now() + timeout;
        while self.threads.iter().any(|thread| !thread.is_finished()) {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        for thread in self.threads {
            let _ = thread.join();
        }
        if let Some(host) = host_module::host() {
            Python::attach(|py| host.publish_stopping(py, reason));
        }
        // The coverage report and the profile, once no request runs.
        drop(self.developer_session);
        true
    }
}

fn application_thread(
    context: &ThreadContext,
    queue: &JobQueue<Job>,
    activity: &ThreadActivity,
    thread_index: usize,
) {
    // SAFETY: pthread_self has no preconditions. Python's threading.get_ident() is this
    // value on Linux: the slow-request watcher finds the thread's frames by it.
    let ident = unsafe { libc::pthread_self() };
    activity.set_python_thread(thread_index, ident as u64);
    Python::attach(|py| {
        loop {
            // Release the GIL between requests, even with more waiting: a thread that took
            // the next request while attached kept threads holding a request waiting for
            // the 5 ms switch interval (embedded flask_json p99 60-85 ms against 11-14 ms).
            let Some(job) = py.detach(|| queue.pop_blocking()) else {
                break;
            };
            let _busy = activity.begin(
                thread_index,
                job.queued_at,
                job.request.request_id,
                &job.request.method,
                &job.request.target,
            );
            run::handle(py, context, job, thread_index);
        }
    });
}

/// Sends `print()` and `sys.stderr` output of the application to the error log.
pub(super) fn redirect_standard_streams(py: Python<'_>) -> PyResult<()> {
    let sys = py.import("sys")?;
    sys.setattr(
        "stdout",
        Bound::new(py, LogStream::new("<stdout>", Level::Error))?,
    )?;
    sys.setattr(
        "stderr",
        Bound::new(py, LogStream::new("<stderr>", Level::Error))?,
    )?;
    Ok(())
}

impl crate::handoff::InProcessExecutor for Executor {
    fn submit(&self, request: Request) -> ReplyReceiver {
        Executor::submit(self, request)
    }

    fn reload_before_next_request(&self) {
        Executor::reload_before_next_request(self);
    }

    fn activity(&self) -> &ThreadActivity {
        &self.activity
    }
}
