"""The Python side of the developer tools of --debug-mode (src/wsgi/developer_tools.rs
calls it): post-mortem pdb, coverage.py, cProfile and the request recorder, each a
wrapper around the WSGI application, as mod_wsgi-express arranges them.

Debug mode has one application thread, which Ferrule starts itself: Python's per-thread
hooks (`sys.settrace`, `sys.setprofile`) set on the thread that loads the application do
not reach it. So coverage and the profiler measure the loading on the loading thread,
then each request on the application thread, from the call to `close()`.
"""

from __future__ import annotations

import io
import os
import pprint
import sys
import threading
import time
import traceback

_PACKAGE_DIRECTORY = os.path.dirname(os.path.abspath(__file__))


class Session:
    """What lives as long as the server: the coverage and profiler measurements."""

    def __init__(self, coverage_directory: str | None, profiler_directory: str | None):
        self.coverage_directory = coverage_directory
        self.profiler_directory = profiler_directory
        self.coverage = None
        self.profiler = None
        if coverage_directory:
            import coverage

            os.makedirs(coverage_directory, exist_ok=True)
            self.coverage = coverage.Coverage(
                data_file=os.path.join(coverage_directory, ".coverage"),
                omit=[os.path.join(_PACKAGE_DIRECTORY, "*")],
            )
        if profiler_directory:
            import cProfile

            os.makedirs(profiler_directory, exist_ok=True)
            self.profiler = cProfile.Profile()
        self.measuring(True)

    def measuring(self, on: bool) -> None:
        """Starts or stops both measurements on the calling thread."""
        if self.coverage is not None:
            if on:
                self.coverage.start()
            else:
                self.coverage.stop()
        if self.profiler is not None:
            if on:
                self.profiler.enable()
            else:
                self.profiler.disable()

    def wrap(self, application, post_mortem, debugger_startup, recorder_directory):
        """The application with the tools asked for around it; measuring on the loading
        thread stops here."""
        self.measuring(False)
        if self.coverage is not None or self.profiler is not None:
            application = _Measured(application, self)
        if post_mortem:
            application = _PostMortem(application, debugger_startup)
        if recorder_directory:
            os.makedirs(recorder_directory, exist_ok=True)
            application = _Recorder(application, recorder_directory)
        return application

    def finish(self) -> None:
        """Writes the coverage report and the profile (the server is stopping)."""
        if self.coverage is not None:
            self.coverage.save()
            self.coverage.html_report(directory=self.coverage_directory)
        if self.profiler is not None:
            name = f"{int(time.time() * 1_000_000)}-{os.getpid()}.pstats"
            self.profiler.dump_stats(os.path.join(self.profiler_directory, name))


def _is_sized(result) -> bool:
    """A list or tuple: the server sends it in one piece, so it must reach it unwrapped."""
    return isinstance(result, (list, tuple))


class _Closing:
    """An iterable result passed through, with a hook run on each failure and at close."""

    def __init__(self, result, on_error, on_close):
        self.result = result
        self.on_error = on_error
        self.on_close = on_close

    def __iter__(self):
        try:
            yield from self.result
        except Exception:
            self.on_error()
            raise

    def close(self):
        try:
            close = getattr(self.result, "close", None)
            if close is not None:
                close()
        except Exception:
            self.on_error()
            raise
        finally:
            self.on_close()


class _Measured:
    """Coverage and the profiler on while the application runs a request."""

    def __init__(self, application, session: Session):
        self.application = application
        self.session = session

    def __call__(self, environ, start_response):
        self.session.measuring(True)
        try:
            result = self.application(environ, start_response)
        except BaseException:
            self.session.measuring(False)
            raise
        if _is_sized(result) or isinstance(result, environ["wsgi.file_wrapper"]):
            self.session.measuring(False)
            return result
        return _Closing(result, lambda: None, lambda: self.session.measuring(False))


class _PostMortem:
    """pdb's post-mortem prompt on the terminal when an exception leaves the application;
    with `startup`, a prompt when the server starts too."""

    def __init__(self, application, startup: bool):
        import pdb  # noqa: T100 (the debugger is what --enable-debugger asks for)

        self.application = application
        # Ctrl-C stops the server, as in debug mode without the debugger; pdb would
        # otherwise take it over on its first `continue`.
        self.debugger = pdb.Pdb(nosigint=True)
        if startup:
            print(
                "ferrule: --debugger-startup: set breakpoints (b FILE:LINE), then c",
                file=sys.stderr,
            )
            self.debugger.set_trace(sys._getframe())

    def post_mortem(self) -> None:
        self.debugger.reset()
        self.debugger.interaction(None, sys.exc_info()[2])

    def __call__(self, environ, start_response):
        # Breakpoints set at the start-up prompt belong to the thread that set them; the
        # application runs on another one.
        if self.debugger.breaks:
            sys.settrace(self.debugger.trace_dispatch)
        try:
            result = self.application(environ, start_response)
        except Exception:
            self.post_mortem()
            raise
        if _is_sized(result):
            return result
        return _Closing(result, self.post_mortem, lambda: None)


class _Recorder:
    """Each request and its response written to files named TIME-PID-COUNT.SUFFIX, with
    mod_wsgi-express's suffixes: .iheaders (the environ), .icontent (the request body),
    .oheaders (status and headers), .ocontent (the response body), and .oaexcept,
    .orexcept, .ofexcept (a traceback from the call, the iteration, `close()`)."""

    def __init__(self, application, directory: str):
        self.application = application
        self.directory = directory
        self.lock = threading.Lock()
        self.count = 0

    def __call__(self, environ, start_response):
        with self.lock:
            self.count += 1
            count = self.count
        key = f"{int(time.time() * 1_000_000)}-{os.getpid()}-{count}"
        prefix = os.path.join(self.directory, key)
        with open(prefix + ".iheaders", "w") as file:
            pprint.pprint(environ, stream=file)
        body = environ["wsgi.input"].read()
        with open(prefix + ".icontent", "wb") as file:
            file.write(body)
        environ["wsgi.input"] = io.BytesIO(body)
        # Closed when the response is done, which may be after this call returns.
        content = open(prefix + ".ocontent", "wb")  # noqa: SIM115

        def recording_start_response(status, headers, *exc_info):
            with open(prefix + ".oheaders", "w") as file:
                pprint.pprint((status, headers, *exc_info), stream=file)
            write = start_response(status, headers, *exc_info)

            def recording_write(data):
                content.write(data)
                return write(data)

            return recording_write

        def traceback_to(suffix):
            with open(prefix + suffix, "w") as file:
                traceback.print_exc(file=file)

        try:
            result = self.application(environ, recording_start_response)
        except BaseException:
            traceback_to(".oaexcept")
            content.close()
            raise
        if _is_sized(result):
            content.writelines(result)
            content.close()
            return result
        return _Recording(result, content, traceback_to)


class _Recording:
    """A streamed response, copied to the .ocontent file as it goes."""

    def __init__(self, result, content, traceback_to):
        self.result = result
        self.content = content
        self.traceback_to = traceback_to

    def __iter__(self):
        try:
            for data in self.result:
                self.content.write(data)
                yield data
        except BaseException:
            self.traceback_to(".orexcept")
            raise

    def close(self):
        try:
            close = getattr(self.result, "close", None)
            if close is not None:
                close()
        except BaseException:
            self.traceback_to(".ofexcept")
            raise
        finally:
            self.content.close()
