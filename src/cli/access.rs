//! [`AccessConfig`]: the access-control options (`--host-access-script`,
//! `--auth-user-script`, `--auth-type`, `--auth-group-script`, `--auth-group`,
//! `--auth-nonce-lifetime`), checked and resolved.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::ConfigError;

/// Who may make requests, decided by Python scripts before the application runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccessConfig {
    /// `--host-access-script`, absolute: `allow_access(environ, host)`.
    pub host_access_script: Option<PathBuf>,
    /// `--auth-user-script`, absolute, with its scheme.
    pub user_script: Option<UserAuthentication>,
    /// `--auth-group-script`, absolute, and the group required (`--auth-group`).
    pub group_script: Option<(PathBuf, String)>,
}

/// `--auth-user-script` with what goes with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserAuthentication {
    pub script: PathBuf,
    pub scheme: AuthScheme,
    /// The realm of the challenge: mod_wsgi-express's `AuthName '%(host)s:%(port)s'`.
    pub realm: String,
    /// How long a Digest nonce is good for.
    pub nonce_lifetime: Duration,
}

/// `--auth-type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthScheme {
    Basic,
    Digest,
}

impl AccessConfig {
    /// True when some script decides who gets in.
    pub fn is_enabled(&self) -> bool {
        self.host_access_script.is_some() || self.user_script.is_some()
    }
}

/// The options as given, before checking.
pub(super) struct AccessArgs {
    pub(super) host_access_script: Option<PathBuf>,
    pub(super) auth_user_script: Option<PathBuf>,
    pub(super) auth_type: String,
    pub(super) auth_group_script: Option<PathBuf>,
    pub(super) auth_group: String,
    pub(super) auth_nonce_lifetime: u64,
}

/// Checks the options (scripts exist, the scheme is known, a group script has a user
/// script to follow) and resolves their paths; each problem goes to `problems`.
pub(super) fn resolve(
    problems: &mut Vec<ConfigError>,
    args: AccessArgs,
    host: Option<&str>,
    port: u16,
    absolute: &dyn Fn(&Path) -> PathBuf,
) -> AccessConfig {
    let AccessArgs {
        host_access_script,
        auth_user_script,
        auth_type,
        auth_group_script,
        auth_group,
        auth_nonce_lifetime,
    } = args;
    let mut script = |option: &'static str, path: Option<PathBuf>| {
        let path = absolute(&path?);
        if !path.is_file() {
            problems.push(ConfigError::NotAFile { option, path });
            return None;
        }
        Some(path)
    };
    let host_access_script = script("host-access-script", host_access_script);
    let user_script = script("auth-user-script", auth_user_script);
    let group_script = script("auth-group-script", auth_group_script);
    // Apache reads `AuthType` without regard to case.
    let scheme = if auth_type.eq_ignore_ascii_case("basic") {
        Some(AuthScheme::Basic)
    } else if auth_type.eq_ignore_ascii_case("digest") {
        Some(AuthScheme::Digest)
    } else {
        problems.push(ConfigError::BadAuthType { value: auth_type });
        None
    };
    if group_script.is_some() && user_script.is_none() {
        // mod_wsgi-express writes the group rule inside the user script's block, so a
        // group script alone protects nothing there; refusing it says so.
        problems.push(ConfigError::GroupWithoutUser);
    }
    let user_script = user_script
        .zip(scheme)
        .map(|(script, scheme)| UserAuthentication {
            script,
            scheme,
            realm: format!("{}:{port}", host.unwrap_or("localhost")),
            nonce_lifetime: Duration::from_secs(auth_nonce_lifetime),
        });
    AccessConfig {
        host_access_script,
        group_script: group_script
            .filter(|_| user_script.is_some())
            .map(|script| (script, auth_group)),
        user_script,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> AccessArgs {
        AccessArgs {
            host_access_script: None,
            auth_user_script: None,
            auth_type: "Basic".to_owned(),
            auth_group_script: None,
            auth_group: "wsgi".to_owned(),
            auth_nonce_lifetime: 300,
        }
    }

    #[test]
    fn nothing_given_means_nothing_checked() {
        let mut problems = Vec::new();
        let access = resolve(&mut problems, args(), None, 8000, &|path| path.to_owned());
        assert!(problems.is_empty());
        assert!(!access.is_enabled());
    }

    #[test]
    fn the_realm_is_host_and_port_and_the_scheme_ignores_case() {
        let script = PathBuf::from(file!()).canonicalize().unwrap();
        let mut problems = Vec::new();
        let access = resolve(
            &mut problems,
            AccessArgs {
                auth_user_script: Some(script),
                auth_type: "DIGEST".to_owned(),
                ..args()
            },
            None,
            8000,
            &|path| path.to_owned(),
        );
        assert!(problems.is_empty(), "{problems:?}");
        let user = access.user_script.unwrap();
        assert_eq!(user.realm, "localhost:8000");
        assert_eq!(user.scheme, AuthScheme::Digest);
    }

    #[test]
    fn unknown_schemes_missing_scripts_and_lone_group_scripts_are_refused() {
        let mut problems = Vec::new();
        resolve(
            &mut problems,
            AccessArgs {
                auth_type: "Kerberos".to_owned(),
                auth_group_script: Some(PathBuf::from(file!()).canonicalize().unwrap()),
                host_access_script: Some(PathBuf::from("/nonexistent/hosts.py")),
                ..args()
            },
            None,
            8000,
            &|path| path.to_owned(),
        );
        let messages: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(messages.len(), 3, "{messages:?}");
        assert!(
            messages
                .iter()
                .any(|m| m.contains("--auth-type 'Kerberos'"))
        );
        assert!(messages.iter().any(|m| m.contains("--host-access-script")));
        assert!(messages.iter().any(|m| m.contains("--auth-group-script")));
    }
}
