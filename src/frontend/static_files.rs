//! Files the front end serves itself, without Python: `--url-alias URL-PATH PATH` (a file,
//! or a directory under a URL prefix) and `--application-type static` (a whole site).
//!
//! A URL is mapped to a file only after the path was decoded and normalized as Apache
//! does (`handoff::request_path`), so `..` can never leave the directory. Files go out with
//! their type, length and modification time, through sendfile on plain connections.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::handoff::{self, ResponseBody};

/// One `--url-alias`: requests under `url_path` are answered from `path`.
#[derive(Clone, Debug)]
pub struct UrlAlias {
    /// Without a trailing slash, except for the root alias "/".
    pub url_path: String,
    pub path: PathBuf,
}

/// Every alias of the server, longest URL prefix first.
#[derive(Clone, Debug, Default)]
pub struct StaticFiles {
    aliases: Vec<UrlAlias>,
}

impl StaticFiles {
    /// The static files of `--url-alias URL-PATH PATH` pairs (and the whole site, `/`,
    /// for a static one).
    pub fn from_aliases(aliases: &[(String, std::path::PathBuf)]) -> Self {
        Self::new(
            aliases
                .iter()
                .map(|(url_path, path)| UrlAlias {
                    url_path: url_path.clone(),
                    path: path.clone(),
                })
                .collect(),
        )
    }

    pub fn new(mut aliases: Vec<UrlAlias>) -> Self {
        for alias in &mut aliases {
            let trimmed = alias.url_path.trim_end_matches('/');
            alias.url_path = if trimmed.is_empty() {
                "/".to_owned()
            } else {
                trimmed.to_owned()
            };
        }
        aliases.sort_by_key(|alias| std::cmp::Reverse(alias.url_path.len()));
        Self { aliases }
    }

    pub fn is_empty(&self) -> bool {
        self.aliases.is_empty()
    }

    /// The answer to a request for the raw path `raw_path`, if an alias covers it.
    ///
    /// The file is looked up and opened on tokio's blocking pool: a `stat` or an `open`
    /// that waits on a slow disk or a hung network mount (or on a FIFO's writer) holds up
    /// this request only, never the reactor and every other connection with it.
    pub async fn serve(
        &self,
        method: &http::Method,
        raw_path: &str,
        headers: &http::HeaderMap,
    ) -> Option<handoff::Response> {
        let path = match self.resolve(method, raw_path)? {
            Resolved::File(path) => path,
            Resolved::Answer(response) => return Some(response),
        };
        let if_modified_since = headers.get(http::header::IF_MODIFIED_SINCE).cloned();
        let looked_up =
            tokio::task::spawn_blocking(move || file_response(&path, if_modified_since.as_ref()))
                .await;
        Some(looked_up.unwrap_or_else(|_| {
            handoff::error_response(
                http::StatusCode::INTERNAL_SERVER_ERROR,
                "The file could not be looked up.",
            )
        }))
    }

    /// Maps the request to a file without touching the disk.
    fn resolve(&self, method: &http::Method, raw_path: &str) -> Option<Resolved> {
        if self.aliases.is_empty() {
            return None;
        }
        let decoded = crate::handoff::request_path::decode(raw_path.as_bytes());
        let decoded = String::from_utf8_lossy(&decoded);
        let (alias, rest) = self.aliases.iter().find_map(|alias| {
            let rest = if alias.url_path == "/" {
                Some(decoded.as_ref())
            } else {
                decoded
                    .strip_prefix(alias.url_path.as_str())
                    .filter(|rest| rest.is_empty() || rest.starts_with('/'))
            }?;
            Some((alias, rest))
        })?;
        if *method != http::Method::GET && *method != http::Method::HEAD {
            let mut response = handoff::error_response(
                http::StatusCode::METHOD_NOT_ALLOWED,
                "Static files can only be fetched with GET or HEAD.",
            );
            response.headers.insert(
                http::header::ALLOW,
                http::HeaderValue::from_static("GET, HEAD"),
            );
            return Some(Resolved::Answer(response));
        }
        let relative = rest.trim_start_matches('/');
        Some(Resolved::File(if relative.is_empty() {
            alias.path.clone()
        } else {
            alias.path.join(relative)
        }))
    }
}

/// Where an alias leads a request, before the disk is asked.
enum Resolved {
    /// The file (or directory) to look up.
    File(PathBuf),
    /// An answer that needs no file.
    Answer(handoff::Response),
}

/// Looks up and opens the file: blocking calls, made on the blocking pool.
fn file_response(path: &Path, if_modified_since: Option<&http::HeaderValue>) -> handoff::Response {
    let not_found = || {
        handoff::error_response(
            http::StatusCode::NOT_FOUND,
            "The requested URL was not found on this server.",
        )
    };
    let Ok(metadata) = fs_err::metadata(path) else {
        return not_found();
    };
    if metadata.is_dir() {
        let index = path.join("index.html");
        if index.is_file() {
            return file_response(&index, if_modified_since);
        }
        return handoff::error_response(
            http::StatusCode::FORBIDDEN,
            "Directory listings are not served.",
        );
    }
    let Ok(file) = std::fs::File::open(path) else {
        return handoff::error_response(
            http::StatusCode::FORBIDDEN,
            "The file exists but the server may not read it.",
        );
    };
    let modified = metadata.modified().ok();
    let mut response_headers = http::HeaderMap::new();
    let content_type = mime_guess::from_path(path).first_or_octet_stream();
    if let Ok(value) = http::HeaderValue::from_str(content_type.essence_str()) {
        response_headers.insert(http::header::CONTENT_TYPE, value);
    }
    if let Some(modified) = modified {
        if let Ok(value) = http::HeaderValue::from_str(&httpdate::fmt_http_date(modified)) {
            response_headers.insert(http::header::LAST_MODIFIED, value);
        }
        if not_modified_since(if_modified_since, modified) {
            return handoff::Response {
                status: http::StatusCode::NOT_MODIFIED,
                reason: None,
                headers: response_headers,
                body: ResponseBody::Full(Vec::new()),
            };
        }
    }
    response_headers.insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from(metadata.len()),
    );
    handoff::Response {
        status: http::StatusCode::OK,
        reason: None,
        headers: response_headers,
        body: ResponseBody::File {
            file,
            offset: 0,
            length: metadata.len(),
        },
    }
}

/// `If-Modified-Since` at or after the file's time (to the second, as HTTP dates are).
fn not_modified_since(if_modified_since: Option<&http::HeaderValue>, modified: SystemTime) -> bool {
    let Some(since) = if_modified_since
        .and_then(|value| value.to_str().ok())
        .and_then(|text| httpdate::parse_http_date(text).ok())
    else {
        return false;
    };
    let seconds = |time: SystemTime| {
        time.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |duration| duration.as_secs())
    };
    seconds(modified) <= seconds(since)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `serve` on a runtime of its own, as the reactor would call it.
    fn serve(
        files: &StaticFiles,
        method: &http::Method,
        raw_path: &str,
        headers: &http::HeaderMap,
    ) -> Option<handoff::Response> {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(files.serve(method, raw_path, headers))
    }

    fn site() -> (tempdir::Dir, StaticFiles) {
        let dir = tempdir::Dir::new();
        fs_err::create_dir_all(dir.path().join("css")).expect("dir");
        fs_err::write(dir.path().join("css/site.css"), "body {}").expect("file");
        let files = StaticFiles::new(vec![UrlAlias {
            url_path: "/static/".to_owned(),
            path: dir.path().to_owned(),
        }]);
        (dir, files)
    }

    mod tempdir {
        pub(super) struct Dir(std::path::PathBuf);
        impl Dir {
            pub(super) fn new() -> Self {
                let path = std::env::temp_dir().join(format!(
                    "ferrule-static-test-{}-{:?}",
                    std::process::id(),
                    std::thread::current().id()
                ));
                fs_err::create_dir_all(&path).expect("temp dir");
                Self(path)
            }
            pub(super) fn path(&self) -> &std::path::Path {
                &self.0
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = fs_err::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn files_under_the_alias_are_served_with_their_type() {
        let (_dir, files) = site();
        let response = serve(
            &files,
            &http::Method::GET,
            "/static/css/site.css",
            &http::HeaderMap::new(),
        )
        .expect("covered by the alias");
        assert_eq!(response.status, 200);
        assert_eq!(response.headers[http::header::CONTENT_TYPE], "text/css");
        assert_eq!(response.headers[http::header::CONTENT_LENGTH], "7");
    }

    #[test]
    fn other_paths_and_lookalike_prefixes_are_not_covered() {
        let (_dir, files) = site();
        let headers = http::HeaderMap::new();
        assert!(serve(&files, &http::Method::GET, "/app", &headers).is_none());
        assert!(serve(&files, &http::Method::GET, "/staticfoo/x", &headers).is_none());
    }

    #[test]
    fn dot_segments_never_leave_the_directory() {
        let (_dir, files) = site();
        let response = serve(
            &files,
            &http::Method::GET,
            "/static/../../../etc/passwd",
            &http::HeaderMap::new(),
        );
        // Normalized to /etc/passwd, which the alias does not cover.
        assert!(response.is_none());
        let response = serve(
            &files,
            &http::Method::GET,
            "/static/css/%2e%2e/css/site.css",
            &http::HeaderMap::new(),
        )
        .expect("still under /static after normalizing");
        assert_eq!(response.status, 200);
        let response = serve(
            &files,
            &http::Method::GET,
            "/static/css/../site.css",
            &http::HeaderMap::new(),
        )
        .expect("still under /static after normalizing");
        assert_eq!(response.status, 404);
    }
}
