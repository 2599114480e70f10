//! The options that set up Python in the processes that run the application, as
//! mod_wsgi-express sets up its daemon processes: the locale (`--lang`, `--locale`),
//! warnings filters, the thread switch interval, the egg cache, a shell file of
//! environment variables, and the names of the process and application groups.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use clap::Args;

use super::PythonRuntime;
use super::config::ConfigError;

/// The application group mod_wsgi-express uses: the main interpreter.
const GLOBAL_APPLICATION_GROUP: &str = "%{GLOBAL}";

#[derive(Debug, Args)]
pub(super) struct PythonSettingsArgs {
    /// Name of the daemon process group, shown to the application as
    /// `mod_wsgi.process_group`; HOST:PORT by default, as in mod_wsgi-express. No effect in
    /// --embedded-mode.
    #[arg(long, value_name = "NAME", help_heading = "Processes")]
    pub(super) process_group: Option<String>,

    /// Python interpreter the application runs in: only `%{GLOBAL}` (each process's main
    /// interpreter, the default) is accepted; Ferrule runs one interpreter per process.
    #[arg(long, value_name = "NAME", help_heading = "Application")]
    pub(super) application_group: Option<String>,

    /// Another name for --locale, used when --locale is not given.
    #[arg(long, value_name = "NAME", help_heading = "Python")]
    pub(super) lang: Option<String>,

    /// Locale of the processes that run the application (their `LANG` and `LC_ALL`). By
    /// default the current one; a C or POSIX locale is replaced by en_US.UTF-8 or C.UTF-8
    /// when the machine has one, as mod_wsgi-express does.
    #[arg(long, value_name = "NAME", help_heading = "Python")]
    pub(super) locale: Option<String>,

    /// A warnings filter, as python -W takes it (`ACTION:MESSAGE:CATEGORY:MODULE:LINE`),
    /// in the processes that run the application. May be given more than once.
    #[arg(long = "python-warnings", action = clap::ArgAction::Append, value_name = "SPEC",
          help_heading = "Python")]
    pub(super) python_warnings: Vec<String>,

    /// Python's thread switch interval (`sys.setswitchinterval`), in seconds, in every
    /// process that runs the application; Python's 0.005 when not given.
    #[arg(long, value_name = "SECONDS", value_parser = parse_switch_interval, help_heading = "Python")]
    pub(super) switch_interval: Option<f64>,

    /// Directory where zipped eggs are unpacked (`PYTHON_EGG_CACHE` of the processes that
    /// run the application); SERVER_ROOT/python-eggs by default.
    #[arg(long, value_name = "DIRECTORY-PATH", help_heading = "Python")]
    pub(super) python_eggs: Option<PathBuf>,

    /// Shell file run by /bin/sh before the server starts; the variables it exports reach
    /// the processes that run the application (a failing file stops start-up).
    #[arg(long, value_name = "FILE-PATH", help_heading = "Server")]
    pub(super) envvars_script: Option<PathBuf>,

    /// Run without the GIL: needs a free-threaded `CPython` build (3.13t and later); refused on a build with a GIL.
    #[arg(long, help_heading = "Python")]
    pub(super) free_threading: bool,
}

/// How Python is set up in the processes that run the application.
#[derive(Clone, Debug)]
pub struct PythonSettings {
    /// `LANG` and `LC_ALL` of the processes started for the application.
    pub locale: String,
    /// `--python-warnings`, each passed as `python -W SPEC`.
    pub warnings: Vec<String>,
    /// `--switch-interval`.
    pub switch_interval: Option<f64>,
    /// `PYTHON_EGG_CACHE`, absolute.
    pub egg_cache: PathBuf,
    /// `--envvars-script`, absolute; run by the supervisor at start-up.
    pub envvars_script: Option<PathBuf>,
    /// `--process-group`; `None`: mod_wsgi-express's HOST:PORT.
    pub process_group: Option<String>,
}

pub(super) fn resolve(
    problems: &mut Vec<ConfigError>,
    args: PythonSettingsArgs,
    python: &PythonRuntime,
    server_root: &Path,
    absolute: &dyn Fn(&Path) -> PathBuf,
) -> PythonSettings {
    let PythonSettingsArgs {
        process_group,
        application_group,
        lang,
        locale,
        python_warnings,
        switch_interval,
        python_eggs,
        envvars_script,
        free_threading,
    } = args;
    if let Some(group) = application_group.filter(|group| group != GLOBAL_APPLICATION_GROUP) {
        problems.push(ConfigError::NamedApplicationGroup { group });
    }
    if free_threading && !python.gil_disabled {
        problems.push(ConfigError::FreeThreadingNeedsBuild {
            version: python.version.clone(),
        });
    }
    if process_group.as_deref() == Some("") {
        problems.push(ConfigError::EmptyValue {
            option: "process-group",
        });
    }
    for spec in &python_warnings {
        if let Err(reason) = check_warnings_spec(spec) {
            problems.push(ConfigError::BadWarningsSpec {
                spec: spec.clone(),
                reason,
            });
        }
    }
    let locale = match locale.or(lang) {
        Some(name) => {
            if !locale_exists(&name) {
                problems.push(ConfigError::UnknownLocale { name: name.clone() });
            }
            name
        }
        None => default_locale(&current_locale()),
    };
    let envvars_script = envvars_script.map(|path| absolute(&path));
    if let Some(path) = &envvars_script {
        if !path.is_file() {
            problems.push(ConfigError::NotAFile {
                option: "envvars-script",
                path: path.clone(),
            });
        } else if let Some(reason) = unsafe_for_root(path) {
            problems.push(ConfigError::UnsafeEnvvarsScript {
                path: path.clone(),
                reason,
            });
        }
    }
    PythonSettings {
        locale,
        warnings: python_warnings,
        switch_interval,
        egg_cache: python_eggs
            .map_or_else(|| server_root.join("python-eggs"), |path| absolute(&path)),
        envvars_script,
        process_group,
    }
}

/// Root sources the script: it must not run a file that someone else can change.
fn unsafe_for_root(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let metadata = fs_err::metadata(path).ok()?;
    if metadata.uid() != 0 {
        Some(format!("belongs to uid {}, not to root", metadata.uid()))
    } else if metadata.mode() & 0o022 != 0 {
        Some(format!(
            "can be written by others (mode {:04o})",
            metadata.mode() & 0o7777
        ))
    } else {
        None
    }
}

fn parse_switch_interval(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds > 0.0 => Ok(seconds),
        _ => Err(format!("'{text}' is not a number of seconds above 0")),
    }
}

/// The locale this process was started with, as Python's `locale.getdefaultlocale` finds
/// it: the first of `LC_ALL`, `LC_CTYPE`, `LANG` and `LANGUAGE` that is set.
fn current_locale() -> String {
    ["LC_ALL", "LC_CTYPE", "LANG", "LANGUAGE"]
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .map(|value| value.split(':').next().unwrap_or("").to_owned())
        .find(|value| !value.is_empty())
        .unwrap_or_else(|| "C".to_owned())
}

/// mod_wsgi-express's rule: keep the current locale, unless it is C or POSIX (ASCII),
/// which is replaced by the first UTF-8 locale of en_US.UTF-8 and C.UTF-8 the machine has.
fn default_locale(current: &str) -> String {
    if !current.eq_ignore_ascii_case("C") && !current.eq_ignore_ascii_case("POSIX") {
        return current.to_owned();
    }
    ["en_US.UTF-8", "C.UTF-8"]
        .into_iter()
        .find(|name| locale_exists(name))
        .unwrap_or(current)
        .to_owned()
}

/// Whether the C library can load `name` (without changing this process's locale).
fn locale_exists(name: &str) -> bool {
    let Ok(name) = CString::new(name) else {
        return false;
    };
    // SAFETY: `name` is a valid C string; a locale object returned is freed at once.
    unsafe {
        let locale = libc::newlocale(libc::LC_ALL_MASK, name.as_ptr(), std::ptr::null_mut());
        if locale.is_null() {
            return false;
        }
        libc::freelocale(locale);
    }
    true
}

/// Checks the parts of a `-W` filter that Python would otherwise drop with a warning on a
/// terminal nobody reads: the action and the line number.
fn check_warnings_spec(spec: &str) -> Result<(), &'static str> {
    const ACTIONS: [&str; 6] = ["default", "error", "ignore", "always", "module", "once"];
    let fields: Vec<&str> = spec.split(':').collect();
    if fields.len() > 5 {
        return Err("it has more than 5 fields (`ACTION:MESSAGE:CATEGORY:MODULE:LINE`)");
    }
    let action = fields[0].trim();
    // Python takes any beginning of an action's name, and an empty one for `default`.
    if !ACTIONS.iter().any(|name| name.starts_with(action)) {
        return Err("the action is not one of default, error, ignore, always, module, once");
    }
    if let Some(line) = fields.get(4).map(|line| line.trim()) {
        if !line.is_empty() && line.parse::<u32>().is_err() {
            return Err("the line number is not a number");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_c_locale_is_replaced_by_a_utf8_one_when_the_machine_has_one() {
        let chosen = default_locale("C");
        assert!(chosen == "C" || chosen.ends_with("UTF-8"), "{chosen}");
        assert_eq!(default_locale("de_DE.UTF-8"), "de_DE.UTF-8");
    }

    #[test]
    fn warnings_specs_are_checked_as_python_reads_them() {
        assert!(check_warnings_spec("error::DeprecationWarning").is_ok());
        assert!(check_warnings_spec("ignore").is_ok());
        assert!(check_warnings_spec("e").is_ok());
        assert!(check_warnings_spec("shout").is_err());
        assert!(check_warnings_spec("error::Warning:mod:x").is_err());
        assert!(check_warnings_spec("a:b:c:d:1:f").is_err());
    }
}
