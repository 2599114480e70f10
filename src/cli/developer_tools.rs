//! The developer tools of `--debug-mode`, as mod_wsgi-express has them: post-mortem pdb
//! (`--enable-debugger`, `--debugger-startup`), coverage.py (`--enable-coverage`),
//! cProfile (`--enable-profiler`), the request recorder (`--enable-recorder`) and gdb
//! (`--enable-gdb`). Any of the `--enable-*` options turns debug mode on, as in
//! mod_wsgi-express; each output directory defaults to a folder of the server root.
//!
//! This layer only resolves the options; `wsgi/developer_tools.rs` runs the Python side
//! and `supervisor::run_under_gdb` starts gdb.

use std::path::{Path, PathBuf};

use clap::Args;

use super::config::ConfigError;

/// mod_wsgi-express's default gdb program, found on `PATH`.
const DEFAULT_GDB_EXECUTABLE: &str = "gdb";
/// mod_wsgi-express's folders of the server root for each tool's output.
const COVERAGE_FOLDER: &str = "htmlcov";
const PROFILER_FOLDER: &str = "pstats";
const RECORDER_FOLDER: &str = "archive";

#[derive(Debug, Args)]
pub(super) struct DeveloperToolsArgs {
    /// Stop in pdb, on the terminal, when an exception leaves the application (post-mortem
    /// debugging); turns --debug-mode on.
    #[arg(long, help_heading = "Debugging and monitoring")]
    pub(super) enable_debugger: bool,

    /// With --enable-debugger: also stop in pdb when the server starts, so that
    /// breakpoints can be set before the first request.
    #[arg(long, help_heading = "Debugging and monitoring")]
    pub(super) debugger_startup: bool,

    /// Measure which lines of code run, with coverage.py (which must be installed), and
    /// write its HTML report when the server stops; turns --debug-mode on.
    #[arg(long, help_heading = "Debugging and monitoring")]
    pub(super) enable_coverage: bool,

    /// Where --enable-coverage writes its HTML report; the server root's htmlcov folder by default.
    #[arg(
        long,
        value_name = "DIRECTORY-PATH",
        help_heading = "Debugging and monitoring"
    )]
    pub(super) coverage_directory: Option<PathBuf>,

    /// Profile the application with cProfile, written as TIME-PID.pstats when the server
    /// stops; turns --debug-mode on.
    #[arg(long, help_heading = "Debugging and monitoring")]
    pub(super) enable_profiler: bool,

    /// Where --enable-profiler writes its data; the server root's pstats folder by default.
    #[arg(
        long,
        value_name = "DIRECTORY-PATH",
        help_heading = "Debugging and monitoring"
    )]
    pub(super) profiler_directory: Option<PathBuf>,

    /// Write each request (environ, body) and its response (status and headers, body,
    /// exceptions) to files; turns --debug-mode on.
    #[arg(long, help_heading = "Debugging and monitoring")]
    pub(super) enable_recorder: bool,

    /// Where --enable-recorder writes its files; the server root's archive folder by default.
    #[arg(
        long,
        value_name = "DIRECTORY-PATH",
        help_heading = "Debugging and monitoring"
    )]
    pub(super) recorder_directory: Option<PathBuf>,

    /// Run the server under gdb, so that a crash stops at gdb's prompt; turns
    /// --debug-mode on.
    #[arg(long, help_heading = "Debugging and monitoring")]
    pub(super) enable_gdb: bool,

    /// The gdb program for --enable-gdb, a path or a name looked up on PATH.
    #[arg(long, value_name = "FILE-PATH", default_value = DEFAULT_GDB_EXECUTABLE,
          help_heading = "Debugging and monitoring")]
    pub(super) gdb_executable: PathBuf,
}

/// The developer tools asked for; all off outside debug mode.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeveloperTools {
    /// `--enable-debugger`.
    pub post_mortem: bool,
    /// `--debugger-startup` with `--enable-debugger`.
    pub debugger_startup: bool,
    /// `--enable-coverage`: where the report goes, absolute.
    pub coverage_directory: Option<PathBuf>,
    /// `--enable-profiler`: where the data goes, absolute.
    pub profiler_directory: Option<PathBuf>,
    /// `--enable-recorder`: where the files go, absolute.
    pub recorder_directory: Option<PathBuf>,
    /// `--enable-gdb`: the gdb program, found.
    pub gdb: Option<PathBuf>,
}

impl DeveloperTools {
    /// Whether the application needs wrapping or measuring (everything but gdb).
    pub fn in_python(&self) -> bool {
        self.post_mortem
            || self.coverage_directory.is_some()
            || self.profiler_directory.is_some()
            || self.recorder_directory.is_some()
    }
}

/// Resolves the options; the first value returned says whether they turn debug mode on.
pub(super) fn resolve(
    problems: &mut Vec<ConfigError>,
    warnings: &mut Vec<String>,
    args: DeveloperToolsArgs,
    server_root: &Path,
    absolute: &dyn Fn(&Path) -> PathBuf,
) -> (bool, DeveloperTools) {
    let DeveloperToolsArgs {
        enable_debugger,
        debugger_startup,
        enable_coverage,
        coverage_directory,
        enable_profiler,
        profiler_directory,
        enable_recorder,
        recorder_directory,
        enable_gdb,
        gdb_executable,
    } = args;
    if debugger_startup && !enable_debugger {
        warnings.push(
            "--debugger-startup is ignored: it takes effect with --enable-debugger".to_owned(),
        );
    }
    let directory = |enabled: bool, given: Option<PathBuf>, folder: &str| {
        enabled.then(|| given.map_or_else(|| server_root.join(folder), |path| absolute(&path)))
    };
    let gdb = if enable_gdb {
        let found = find_program(&gdb_executable, absolute);
        if found.is_none() {
            problems.push(ConfigError::ProgramMissing {
                option: "gdb-executable",
                program: gdb_executable,
                hint: "install gdb (apt-get install gdb) or name it with --gdb-executable",
            });
        }
        found
    } else {
        None
    };
    let tools = DeveloperTools {
        post_mortem: enable_debugger,
        debugger_startup: enable_debugger && debugger_startup,
        coverage_directory: directory(enable_coverage, coverage_directory, COVERAGE_FOLDER),
        profiler_directory: directory(enable_profiler, profiler_directory, PROFILER_FOLDER),
        recorder_directory: directory(enable_recorder, recorder_directory, RECORDER_FOLDER),
        gdb,
    };
    let turns_debug_on =
        enable_debugger || enable_coverage || enable_profiler || enable_recorder || enable_gdb;
    (turns_debug_on, tools)
}

/// `program` as given when it holds a slash, else the first executable of that name on
/// `PATH`.
fn find_program(program: &Path, absolute: &dyn Fn(&Path) -> PathBuf) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |path: &Path| {
        fs_err::metadata(path)
            .is_ok_and(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
    };
    if program.components().count() > 1 {
        let path = absolute(program);
        return executable(&path).then_some(path);
    }
    let search = std::env::var_os("PATH")?;
    std::env::split_paths(&search)
        .map(|directory| directory.join(program))
        .find(|candidate| executable(candidate))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> DeveloperToolsArgs {
        DeveloperToolsArgs {
            enable_debugger: false,
            debugger_startup: false,
            enable_coverage: false,
            coverage_directory: None,
            enable_profiler: false,
            profiler_directory: None,
            enable_recorder: false,
            recorder_directory: None,
            enable_gdb: false,
            gdb_executable: PathBuf::from(DEFAULT_GDB_EXECUTABLE),
        }
    }

    fn resolve_args(args: DeveloperToolsArgs) -> (bool, DeveloperTools, Vec<String>, usize) {
        let mut problems = Vec::new();
        let mut warnings = Vec::new();
        let (debug, tools) = resolve(
            &mut problems,
            &mut warnings,
            args,
            Path::new("/srv/root"),
            &|path| Path::new("/here").join(path),
        );
        (debug, tools, warnings, problems.len())
    }

    #[test]
    fn nothing_asked_leaves_debug_mode_alone() {
        let (debug, tools, warnings, problems) = resolve_args(args());
        assert!(!debug);
        assert_eq!(tools, DeveloperTools::default());
        assert!(warnings.is_empty());
        assert_eq!(problems, 0);
    }

    #[test]
    fn each_tool_turns_debug_mode_on_with_its_folder_of_the_server_root() {
        let (debug, tools, _, _) = resolve_args(DeveloperToolsArgs {
            enable_coverage: true,
            enable_profiler: true,
            enable_recorder: true,
            recorder_directory: Some(PathBuf::from("records")),
            ..args()
        });
        assert!(debug);
        assert_eq!(
            tools.coverage_directory.as_deref(),
            Some(Path::new("/srv/root/htmlcov"))
        );
        assert_eq!(
            tools.profiler_directory.as_deref(),
            Some(Path::new("/srv/root/pstats"))
        );
        assert_eq!(
            tools.recorder_directory.as_deref(),
            Some(Path::new("/here/records"))
        );
    }

    #[test]
    fn a_directory_without_its_tool_changes_nothing() {
        let (debug, tools, _, _) = resolve_args(DeveloperToolsArgs {
            coverage_directory: Some(PathBuf::from("cov")),
            ..args()
        });
        assert!(!debug);
        assert_eq!(tools.coverage_directory, None);
    }

    #[test]
    fn debugger_startup_alone_is_ignored_with_a_warning() {
        let (debug, tools, warnings, _) = resolve_args(DeveloperToolsArgs {
            debugger_startup: true,
            ..args()
        });
        assert!(!debug);
        assert!(!tools.debugger_startup);
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("--enable-debugger"));
    }

    #[test]
    fn a_missing_gdb_is_refused_by_option() {
        let (_, tools, _, problems) = resolve_args(DeveloperToolsArgs {
            enable_gdb: true,
            gdb_executable: PathBuf::from("/nonexistent/gdb"),
            ..args()
        });
        assert_eq!(problems, 1);
        assert_eq!(tools.gdb, None);
    }
}
