//! The environment of the processes that run the application, beyond the supervisor's
//! own: mod_wsgi-express's locale and egg cache, and what `--envvars-script` exports.
//!
//! The script is run by `/bin/sh` in a process of its own (never read or evaluated here),
//! once, at start-up; what it exports is compared with the supervisor's environment, and
//! the difference (set or unset) is applied to every process started after.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::cli::{CONTRACT_VARIABLES, Config};

/// Variables a shell sets for itself; their values say nothing about the script.
const SHELL_OWN: [&str; 4] = ["PWD", "OLDPWD", "SHLVL", "_"];

/// Variables to set and to remove in each process started for the application.
#[derive(Clone, Debug, Default)]
pub(super) struct ChildEnvironment {
    pub(super) set: Vec<(OsString, OsString)>,
    pub(super) remove: Vec<OsString>,
}

impl ChildEnvironment {
    /// The locale and egg cache of `config`, then what its `--envvars-script` exports
    /// (which wins, as the `envvars` file sourced after them does in mod_wsgi-express's
    /// `apachectl`). An error names the script and says what went wrong.
    pub(super) fn for_config(config: &Config) -> Result<Self, String> {
        let settings = &config.python_settings;
        let mut environment = Self {
            set: vec![
                ("LANG".into(), settings.locale.clone().into()),
                ("LC_ALL".into(), settings.locale.clone().into()),
                (
                    "PYTHON_EGG_CACHE".into(),
                    settings.egg_cache.clone().into_os_string(),
                ),
            ],
            remove: Vec::new(),
        };
        if let Some(script) = &settings.envvars_script {
            let exported = exported_by(script)?;
            let ours: HashMap<OsString, OsString> = std::env::vars_os().collect();
            let ignored = |name: &OsStr| {
                SHELL_OWN.iter().any(|own| name == *own)
                    || CONTRACT_VARIABLES.iter().any(|contract| name == *contract)
            };
            for (name, value) in &exported {
                if !ignored(name) && ours.get(name) != Some(value) {
                    environment.set.push((name.clone(), value.clone()));
                }
            }
            // A shell drops names it cannot hold (`a.b`), which the script did not unset.
            let shell_name = |name: &OsStr| {
                let bytes = name.as_bytes();
                !bytes.is_empty()
                    && !bytes[0].is_ascii_digit()
                    && bytes
                        .iter()
                        .all(|byte| byte.is_ascii_alphanumeric() || *byte == b'_')
            };
            for name in ours.keys() {
                if !ignored(name) && shell_name(name) && !exported.contains_key(name) {
                    environment.remove.push(name.clone());
                }
            }
        }
        Ok(environment)
    }

    pub(super) fn apply(&self, command: &mut tokio::process::Command) {
        for name in &self.remove {
            command.env_remove(name);
        }
        command.envs(self.set.iter().map(|(name, value)| (name, value)));
    }
}

/// Runs `/bin/sh`, which sources `script` and prints its environment; returns that
/// environment.
fn exported_by(script: &Path) -> Result<HashMap<OsString, OsString>, String> {
    let output = Command::new("/bin/sh")
        .arg("-c")
        // What the script prints goes to stderr: stdout carries the environment alone.
        .arg(r#". "$1" >&2 && exec env -0"#)
        .arg("ferrule-envvars")
        .arg(script)
        .stdin(Stdio::null())
        .output()
        .map_err(|error| {
            format!(
                "--envvars-script '{}': cannot run /bin/sh: {error}",
                script.display()
            )
        })?;
    if !output.status.success() {
        let said = String::from_utf8_lossy(&output.stderr);
        let said = said.trim();
        return Err(format!(
            "--envvars-script '{}' failed ({}){}{}",
            script.display(),
            output.status,
            if said.is_empty() { "" } else { ":\n" },
            said
        ));
    }
    Ok(output
        .stdout
        .split(|byte| *byte == 0)
        .filter_map(|entry| {
            let at = entry.iter().position(|byte| *byte == b'=')?;
            Some((
                OsString::from_vec(entry[..at].to_vec()),
                OsStr::from_bytes(&entry[at + 1..]).to_owned(),
            ))
        })
        .collect())
}
