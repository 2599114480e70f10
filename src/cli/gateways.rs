//! `--with-php5` (also `--with-php`), `--php-executable` and `--with-cgi`: the programs
//! the front end hands some files of the document root to, checked at start-up.

use std::path::{Path, PathBuf};

use super::ConfigError;

/// PHP through php-fpm, and CGI scripts, beside the application.
#[derive(Clone, Debug, Default)]
pub struct GatewayConfig {
    /// `--with-php5`: the php-fpm program; `None` without the option.
    pub php: Option<PathBuf>,
    /// `--with-cgi`.
    pub cgi: bool,
}

impl GatewayConfig {
    pub fn is_enabled(&self) -> bool {
        self.php.is_some() || self.cgi
    }

    /// The php-fpm pool's socket: in the server root's `run/` folder, the daemon
    /// socket's (only the server's user may enter it).
    pub fn php_socket(server_root: &Path) -> PathBuf {
        server_root.join("run").join("php-fpm.sock")
    }
}

/// The options checked: both need a document root; php-fpm must be found (or be the
/// file `--php-executable` names).
pub(super) fn gateways_of(
    problems: &mut Vec<ConfigError>,
    with_php: bool,
    php_executable: Option<PathBuf>,
    with_cgi: bool,
    document_root: Option<&Path>,
) -> GatewayConfig {
    for (given, option) in [(with_php, "--with-php5"), (with_cgi, "--with-cgi")] {
        if given && document_root.is_none() {
            problems.push(ConfigError::Needs {
                option,
                needs: "--document-root: the files it serves are looked for there",
            });
        }
    }
    let php = if with_php {
        match php_executable {
            Some(path) if is_executable_file(&path) => Some(path),
            Some(path) => {
                problems.push(ConfigError::NotAProgram {
                    option: "php-executable",
                    path,
                });
                None
            }
            None => {
                let found = find_php_fpm(std::env::var_os("PATH").as_deref());
                if found.is_none() {
                    problems.push(ConfigError::PhpFpmMissing);
                }
                found
            }
        }
    } else {
        if let Some(path) = php_executable {
            problems.push(ConfigError::BadValue {
                option: "--php-executable",
                value: path.display().to_string(),
                reason: "it is the php-fpm of --with-php5, which is not given".to_owned(),
            });
        }
        None
    };
    GatewayConfig { php, cgi: with_cgi }
}

/// `php-fpm` on `PATH`; else a versioned `php-fpmX.Y` there or in `/usr/sbin` (Debian's
/// place, off a user's `PATH`), the highest version first.
fn find_php_fpm(path: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    let mut directories: Vec<PathBuf> = path
        .map(|path| std::env::split_paths(path).collect())
        .unwrap_or_default();
    if let Some(found) = directories
        .iter()
        .map(|directory| directory.join("php-fpm"))
        .find(|candidate| is_executable_file(candidate))
    {
        return Some(found);
    }
    directories.push(PathBuf::from("/usr/sbin"));
    let mut versioned: Vec<(Vec<u32>, PathBuf)> = directories
        .iter()
        .filter_map(|directory| fs_err::read_dir(directory).ok())
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let version = php_fpm_version(&name)?;
            let path = entry.path();
            is_executable_file(&path).then_some((version, path))
        })
        .collect();
    versioned.sort_by(|a, b| b.0.cmp(&a.0));
    versioned.into_iter().next().map(|(_, path)| path)
}

/// `[8, 2]` for `php-fpm8.2`; `None` for other names.
fn php_fpm_version(name: &str) -> Option<Vec<u32>> {
    let version = name.strip_prefix("php-fpm")?;
    let numbers: Option<Vec<u32>> = version.split('.').map(|part| part.parse().ok()).collect();
    numbers.filter(|numbers| !numbers.is_empty())
}

fn is_executable_file(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs_err::metadata(path)
        .is_ok_and(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_debian_names() {
        assert_eq!(php_fpm_version("php-fpm8.2"), Some(vec![8, 2]));
        assert_eq!(php_fpm_version("php-fpm"), None);
        assert_eq!(php_fpm_version("php-fpm.conf"), None);
        assert_eq!(php_fpm_version("php-fpm8.x"), None);
    }

    #[test]
    fn the_options_need_a_document_root() {
        let mut problems = Vec::new();
        let config = gateways_of(&mut problems, false, None, true, None);
        assert!(config.cgi);
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0]
                .to_string()
                .contains("--with-cgi needs --document-root")
        );
    }

    #[test]
    fn a_php_executable_must_be_a_program() {
        let mut problems = Vec::new();
        let root = Path::new("/");
        gateways_of(
            &mut problems,
            true,
            Some(PathBuf::from("/nonexistent/php-fpm")),
            false,
            Some(root),
        );
        assert!(problems[0].to_string().contains("--php-executable"));
    }

    #[test]
    fn without_a_path_there_is_no_plain_php_fpm() {
        let found = find_php_fpm(Some(std::ffi::OsStr::new("/nonexistent")));
        // Only /usr/sbin is left to look in: a versioned name, or nothing.
        assert!(found.is_none_or(|path| path.starts_with("/usr/sbin")));
    }
}
