//! Managed services, as mod_wsgi-express has them: `--service-script NAME SCRIPT` runs
//! SCRIPT in a Python process of its own (a task queue worker, a scheduler), started with
//! the server, started again when it dies and stopped with the server. mod_wsgi-express
//! gives each service a daemon process group of one thread with the script as its import
//! script; here it is a process the supervisor starts (`src/service.rs`).
//!
//! `--service-log-file NAME FILE` gives it a log of its own in the log directory.
//! `--service-user` and `--service-group` are accepted when they name the user and group
//! the server runs as: the supervisor gives up root before it starts any process, so it
//! cannot start one as someone else.

use std::path::{Path, PathBuf};

use clap::Args;

use super::config::ConfigError;

// The field names are the options' (mod_wsgi-express's), prefix and all.
#[allow(clippy::struct_field_names)]
#[derive(Debug, Args)]
pub(super) struct ServicesArgs {
    /// Run a Python script as a managed service: a process of its own, started with the
    /// server (after loading the script it keeps running until the server stops),
    /// started again when it dies, stopped with the server. May be given more than once.
    #[arg(long, action = clap::ArgAction::Append, num_args = 2,
          value_names = ["SERVICE", "SCRIPT-PATH"], help_heading = "Processes")]
    pub(super) service_script: Vec<String>,

    /// User a service runs as: only the user the server runs as (--user, or yourself) is
    /// accepted, since the server gives up root before starting any process.
    #[arg(long, action = clap::ArgAction::Append, num_args = 2,
          value_names = ["SERVICE", "USERNAME"], help_heading = "Processes")]
    pub(super) service_user: Vec<String>,

    /// Group a service runs as: only the group the server runs as, as for --service-user.
    #[arg(long, action = clap::ArgAction::Append, num_args = 2,
          value_names = ["SERVICE", "GROUP"], help_heading = "Processes")]
    pub(super) service_group: Vec<String>,

    /// A log file of the service's own, in the log directory, for what it prints and logs
    /// (the server's error log by default).
    #[arg(long, action = clap::ArgAction::Append, num_args = 2,
          value_names = ["SERVICE", "FILE-NAME"], help_heading = "Processes")]
    pub(super) service_log_file: Vec<String>,
}

/// One managed service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    /// The script, absolute.
    pub script: PathBuf,
    /// Its own log file (`--service-log-file`, in the log directory), if any.
    pub log_file: Option<PathBuf>,
}

/// Who the server's processes run as, to check `--service-user` and `--service-group`.
pub(super) struct ServerIdentity {
    pub(super) user: String,
    pub(super) group: String,
}

pub(super) fn resolve(
    problems: &mut Vec<ConfigError>,
    args: ServicesArgs,
    identity: &ServerIdentity,
    log_directory: &Path,
    absolute: &dyn Fn(&Path) -> PathBuf,
) -> Vec<Service> {
    let ServicesArgs {
        service_script,
        service_user,
        service_group,
        service_log_file,
    } = args;
    let mut services: Vec<Service> = Vec::new();
    for pair in service_script.chunks(2) {
        let [name, script] = pair else { continue };
        let script = absolute(Path::new(script));
        if services.iter().any(|service| &service.name == name) {
            problems.push(ConfigError::Service {
                option: "service-script",
                name: name.clone(),
                reason: "is given twice".to_owned(),
            });
        } else if !script.is_file() {
            problems.push(ConfigError::Service {
                option: "service-script",
                name: name.clone(),
                reason: format!("names '{}', which is not a file", script.display()),
            });
        }
        services.push(Service {
            name: name.clone(),
            script,
            log_file: None,
        });
    }
    let names: Vec<String> = services
        .iter()
        .map(|service| service.name.clone())
        .collect();
    let known = |problems: &mut Vec<ConfigError>, option: &'static str, name: &str| {
        let found = names.iter().any(|known| known == name);
        if !found {
            problems.push(ConfigError::Service {
                option,
                name: name.to_owned(),
                reason: "is not a service of --service-script".to_owned(),
            });
        }
        found
    };
    for (option, pairs, server_value, what) in [
        ("service-user", &service_user, &identity.user, "user"),
        ("service-group", &service_group, &identity.group, "group"),
    ] {
        for pair in pairs.chunks(2) {
            let [name, value] = pair else { continue };
            if known(problems, option, name) && value != server_value {
                problems.push(ConfigError::Service {
                    option,
                    name: name.clone(),
                    reason: format!(
                        "cannot run as {what} '{value}': the server gives up root before it starts any process, so every process runs as the server's {what}, '{server_value}'\nhint: leave it out, or start a server of its own as that {what}"
                    ),
                });
            }
        }
    }
    for pair in service_log_file.chunks(2) {
        let [name, file] = pair else { continue };
        if !known(problems, "service-log-file", name) {
            continue;
        }
        if file.is_empty() || file.contains('/') {
            problems.push(ConfigError::Service {
                option: "service-log-file",
                name: name.clone(),
                reason: format!("'{file}' is not a file name (it goes in the log directory)"),
            });
        }
        if let Some(service) = services.iter_mut().find(|service| &service.name == name) {
            service.log_file = Some(log_directory.join(file));
        }
    }
    services
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|value| (*value).to_owned()).collect()
    }

    fn resolved(args: ServicesArgs) -> (Vec<Service>, Vec<String>) {
        let mut problems = Vec::new();
        let identity = ServerIdentity {
            user: "web".to_owned(),
            group: "web".to_owned(),
        };
        // Scripts are looked for relative to this crate, where Cargo.toml exists.
        let services = resolve(
            &mut problems,
            args,
            &identity,
            Path::new("/logs"),
            &|path| Path::new(env!("CARGO_MANIFEST_DIR")).join(path),
        );
        (services, problems.iter().map(ToString::to_string).collect())
    }

    fn args(script: &[&str]) -> ServicesArgs {
        ServicesArgs {
            service_script: strings(script),
            service_user: Vec::new(),
            service_group: Vec::new(),
            service_log_file: Vec::new(),
        }
    }

    #[test]
    fn a_service_gets_its_log_file_in_the_log_directory() {
        let (services, problems) = resolved(ServicesArgs {
            service_log_file: strings(&["worker", "worker.log"]),
            ..args(&["worker", "Cargo.toml"])
        });
        assert_eq!(problems, Vec::<String>::new());
        assert_eq!(services[0].name, "worker");
        assert_eq!(
            services[0].log_file.as_deref(),
            Some(Path::new("/logs/worker.log"))
        );
    }

    #[test]
    fn bad_services_are_named() {
        let (_, problems) = resolved(ServicesArgs {
            service_user: strings(&["worker", "root"]),
            service_group: strings(&["nobody-here", "web"]),
            ..args(&["worker", "missing.py", "worker", "Cargo.toml"])
        });
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].contains("--service-script worker names"));
        assert!(problems[1].contains("--service-script worker is given twice"));
        assert!(problems[2].contains("--service-user worker cannot run as user 'root'"));
        assert!(problems[3].contains("--service-group nobody-here is not a service"));
    }

    #[test]
    fn the_servers_own_user_is_accepted() {
        let (_, problems) = resolved(ServicesArgs {
            service_user: strings(&["worker", "web"]),
            service_group: strings(&["worker", "web"]),
            ..args(&["worker", "Cargo.toml"])
        });
        assert_eq!(problems, Vec::<String>::new());
    }
}
