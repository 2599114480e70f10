//! Files the front end serves itself, without Python: `--url-alias URL-PATH PATH` (a file,
//! or a directory under a URL prefix), `--application-type static` (a whole site) and
//! `--document-root` (files beside the application, which gets every other request).
//!
//! A URL is mapped to a file only after the path was decoded and normalized as Apache
//! does (`handoff::request_path`), so `..` can never leave the directory; a symbolic link
//! under the document root is followed only when it leads to a place inside it. Files go
//! out with their type, length, modification time and `ETag`, answer conditional requests
//! (304) and single byte ranges (206, 416), through sendfile on plain connections.
//!
//! The document root and the mount point follow what mod_wsgi-express writes into
//! Apache's configuration: below the mount point, a request that names no file (and with
//! `--directory-index`, no directory) goes to the application; elsewhere the front end
//! answers alone (404 for what does not exist).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use crate::handoff::{self, ResponseBody};

/// One `--url-alias`: requests under `url_path` are answered from `path`.
#[derive(Clone, Debug)]
pub struct UrlAlias {
    /// Without a trailing slash, except for the root alias "/".
    pub url_path: String,
    pub path: PathBuf,
    /// The file served for a directory: Apache's default `index.html`, or for a static
    /// site `--directory-index`.
    pub index: String,
    /// A directory without its index is listed (a static site's `--directory-listing`)
    /// rather than refused.
    pub listing: bool,
}

/// The file Apache's `mod_dir` serves for a directory when nothing else is configured.
const DEFAULT_INDEX: &str = "index.html";

/// The site around the application: `--document-root`, `--directory-index`,
/// `--mount-point`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Site {
    /// `--document-root`, absolute with symbolic links resolved (so that a link's target
    /// can be checked against it); `None` without the option.
    pub document_root: Option<PathBuf>,
    /// `--directory-index`: a file name looked for in a directory of the document root.
    pub directory_index: Option<String>,
    /// `--mount-point` as `SCRIPT_NAME`: with a leading slash and no trailing one, empty
    /// for `/`.
    pub mount_point: String,
    /// `--directory-listing`: a directory the front end answers for, without an index,
    /// is listed rather than refused.
    pub directory_listing: bool,
    /// `--mime-types`: (extension in lower case, content type), ahead of the built-in
    /// types; for every static file, aliases too, as Apache's `TypesConfig` is.
    pub mime_types: Vec<(String, String)>,
    /// `--add-handler` extensions, lower case with their dot, in the order given (the
    /// index of one is the executor's index of its script).
    pub handlers: Vec<String>,
    /// `--with-php5`: `.php` files (and `index.php` for a directory) go to php-fpm.
    pub php: bool,
    /// `--with-cgi`: executable `.cgi` files are run.
    pub cgi: bool,
}

/// What the front end makes of a request for a static file.
pub enum Served {
    /// Its answer.
    Response(handoff::Response),
    /// A file of the document root that an `--add-handler` script answers for.
    Handler(handoff::HandlerTarget),
    /// A file of the document root that PHP or a CGI script answers for (boxed: the
    /// request's future holds this enum, and the common answers are smaller).
    Gateway(Box<super::GatewayTarget>),
}

/// The content types of `--mime-types`, shared with the blocking pool's look-ups.
#[derive(Clone, Debug, Default)]
struct ContentTypes(Arc<HashMap<String, String>>);

impl ContentTypes {
    /// The file's type: `--mime-types` first, then the built-in table, then
    /// `application/octet-stream`.
    fn of(&self, path: &Path) -> String {
        let extension = path
            .extension()
            .map(|extension| extension.to_string_lossy().to_ascii_lowercase());
        if let Some(content_type) = extension.and_then(|extension| self.0.get(&extension)) {
            return content_type.clone();
        }
        mime_guess::from_path(path)
            .first_or_octet_stream()
            .essence_str()
            .to_owned()
    }
}

impl Site {
    /// Whether the decoded path is the mount point or below it.
    fn mounts(&self, decoded: &[u8]) -> bool {
        let mount = self.mount_point.as_bytes();
        decoded
            .strip_prefix(mount)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(b"/"))
    }
}

/// Every alias of the server, longest URL prefix first, and the site.
#[derive(Clone, Debug, Default)]
pub struct StaticFiles {
    aliases: Vec<UrlAlias>,
    site: Site,
    content_types: ContentTypes,
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
                    index: DEFAULT_INDEX.to_owned(),
                    listing: false,
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
        Self {
            aliases,
            site: Site::default(),
            content_types: ContentTypes::default(),
        }
    }

    /// The same aliases, around `site`.
    #[must_use]
    pub fn with_site(mut self, site: Site) -> Self {
        self.content_types = ContentTypes(Arc::new(site.mime_types.iter().cloned().collect()));
        self.site = site;
        self
    }

    /// `--application-type static`: the whole site is `directory`, as mod_wsgi-express
    /// makes it the document root: a directory serves `--directory-index` (Apache's
    /// `index.html` without it), or with `--directory-listing` is listed. Call after
    /// [`Self::with_site`].
    #[must_use]
    pub fn with_static_site(mut self, directory: Option<PathBuf>) -> Self {
        if let Some(path) = directory {
            self.aliases.push(UrlAlias {
                url_path: "/".to_owned(),
                path,
                index: self
                    .site
                    .directory_index
                    .clone()
                    .unwrap_or_else(|| DEFAULT_INDEX.to_owned()),
                listing: self.site.directory_listing,
            });
        }
        self
    }

    pub fn is_empty(&self) -> bool {
        self.aliases.is_empty() && self.site == Site::default()
    }

    /// The answer to a request for `target`, if the front end gives it; `None` hands the
    /// request to the application.
    ///
    /// The file is looked up and opened on tokio's blocking pool: a `stat` or an `open`
    /// that waits on a slow disk or a hung network mount (or on a FIFO's writer) holds up
    /// this request only, never the reactor and every other connection with it.
    pub async fn serve(
        &self,
        method: &http::Method,
        target: &http::Uri,
        headers: &http::HeaderMap,
    ) -> Option<Served> {
        let raw_path = target.path();
        if let Some(resolved) = self.resolve(method, raw_path) {
            let lookup = match resolved {
                Resolved::File(lookup) => lookup,
                Resolved::Answer(response) => return Some(Served::Response(response)),
            };
            let conditions = Conditions::of(headers);
            let types = self.content_types.clone();
            let looked_up =
                tokio::task::spawn_blocking(move || alias_response(&lookup, &conditions, &types))
                    .await;
            return Some(Served::Response(
                looked_up.unwrap_or_else(|_| lookup_failed()),
            ));
        }
        if self.site.document_root.is_none() && self.site.mount_point.is_empty() {
            // Nothing to look up: no path is decoded for it on the common path.
            return None;
        }
        let decoded = handoff::request_path::decode(raw_path.as_bytes());
        if !self.site.mount_point.is_empty() && *decoded == *self.site.mount_point.as_bytes() {
            // mod_wsgi-express makes the mount point a directory of the document root, so
            // Apache's DirectorySlash answers it, for any method, before the application.
            return Some(Served::Response(add_slash(&decoded, target.query())));
        }
        let mounted = self.site.mounts(&decoded);
        let Some(document_root) = self.site.document_root.clone() else {
            return (!mounted).then(|| Served::Response(not_found()));
        };
        let lookup = SiteLookup {
            document_root,
            directory_index: self.site.directory_index.clone(),
            directory_listing: self.site.directory_listing,
            types: self.content_types.clone(),
            decoded: decoded.into_owned(),
            query: target.query().map(str::to_owned),
            mounted,
            method: method.clone(),
            conditions: Conditions::of(headers),
            handlers: self.site.handlers.clone(),
            php: self.site.php,
            cgi: self.site.cgi,
        };
        tokio::task::spawn_blocking(move || lookup.run())
            .await
            .unwrap_or_else(|_| Some(Served::Response(lookup_failed())))
    }

    /// Maps the request to a file of an alias without touching the disk.
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
        if let Some(refusal) = refuse_method(method) {
            return Some(Resolved::Answer(refusal));
        }
        let relative = rest.trim_start_matches('/');
        Some(Resolved::File(AliasLookup {
            path: if relative.is_empty() {
                alias.path.clone()
            } else {
                alias.path.join(relative)
            },
            index: alias.index.clone(),
            listing: alias.listing.then(|| decoded.as_bytes().to_vec()),
        }))
    }
}

/// What an alias's look-up needs on the blocking pool.
struct AliasLookup {
    /// The file or directory the request names.
    path: PathBuf,
    /// The file served for a directory.
    index: String,
    /// With listing on, the decoded URL path (the page's links are made from it).
    listing: Option<Vec<u8>>,
}

/// Where an alias leads a request, before the disk is asked.
enum Resolved {
    /// The file (or directory) to look up.
    File(AliasLookup),
    /// An answer that needs no file.
    Answer(handoff::Response),
}

/// 405 for a method other than GET and HEAD on a static file, as Apache's default handler.
fn refuse_method(method: &http::Method) -> Option<handoff::Response> {
    if *method == http::Method::GET || *method == http::Method::HEAD {
        return None;
    }
    let mut response = handoff::error_response(
        http::StatusCode::METHOD_NOT_ALLOWED,
        "Static files can only be fetched with GET or HEAD.",
    );
    response.headers.insert(
        http::header::ALLOW,
        http::HeaderValue::from_static("GET, HEAD"),
    );
    Some(response)
}

fn not_found() -> handoff::Response {
    handoff::error_response(
        http::StatusCode::NOT_FOUND,
        "The requested URL was not found on this server.",
    )
}

fn lookup_failed() -> handoff::Response {
    handoff::error_response(
        http::StatusCode::INTERNAL_SERVER_ERROR,
        "The file could not be looked up.",
    )
}

/// One request's look-up in the document root, moved to the blocking pool whole.
struct SiteLookup {
    document_root: PathBuf,
    directory_index: Option<String>,
    directory_listing: bool,
    types: ContentTypes,
    /// The decoded, normalized request path: no `..` is left in it.
    decoded: Vec<u8>,
    query: Option<String>,
    /// Below the mount point: what is not a file goes to the application.
    mounted: bool,
    method: http::Method,
    conditions: Conditions,
    /// `--add-handler` extensions.
    handlers: Vec<String>,
    php: bool,
    cgi: bool,
}

impl SiteLookup {
    /// `None`: the application's request.
    fn run(self) -> Option<Served> {
        if self.php || self.cgi {
            if let Some(served) = self.gateway_target() {
                return Some(served);
            }
        }
        if let Some(handler) = self.handler_target() {
            return Some(Served::Handler(handler));
        }
        self.answer().map(Served::Response)
    }

    /// The gateway that answers for the request: the first segment of the path that
    /// names a `.php` file (or, with `--with-cgi`, a `.cgi` file) of the document root,
    /// the rest of the path being `PATH_INFO`; or a directory's index (`--directory-index`,
    /// else `index.php` with PHP) when the path ends with a slash. A `.cgi` file that is
    /// not executable is refused (403), as Apache's `mod_cgi` does.
    fn gateway_target(&self) -> Option<Served> {
        use super::{GatewayKind, GatewayTarget};
        if self.decoded.contains(&0) {
            return None;
        }
        let kind_of = |segment: &[u8]| {
            let lower = segment.to_ascii_lowercase();
            if self.php && lower.ends_with(b".php") {
                Some(GatewayKind::Php)
            } else if self.cgi && lower.ends_with(b".cgi") {
                Some(GatewayKind::Cgi)
            } else {
                None
            }
        };
        let target = |kind, file: PathBuf, script_name: &[u8], path_info: &[u8]| {
            if kind == GatewayKind::Cgi && !is_executable(&file) {
                return Served::Response(handoff::error_response(
                    http::StatusCode::FORBIDDEN,
                    "The file's permissions do not let the server run it.",
                ));
            }
            Served::Gateway(Box::new(GatewayTarget {
                kind,
                file,
                script_name: script_name.to_vec(),
                path_info: path_info.to_vec(),
            }))
        };
        // Each prefix that ends a segment, shortest first.
        let path = &self.decoded;
        let mut end = 0;
        while end < path.len() {
            let next = path[end + 1..]
                .iter()
                .position(|&byte| byte == b'/')
                .map_or(path.len(), |offset| end + 1 + offset);
            let prefix = &path[..next];
            let segment = &path[end..next];
            end = next;
            let Some(kind) = kind_of(segment) else {
                continue;
            };
            let relative = OsStr::from_bytes(prefix.strip_prefix(b"/").unwrap_or(prefix));
            let Some(file) = self.inside_root(&self.document_root.join(relative)) else {
                continue;
            };
            if fs_err::metadata(&file).is_ok_and(|metadata| metadata.is_file()) {
                return Some(target(kind, file, prefix, &path[next..]));
            }
        }
        if !path.ends_with(b"/") {
            return None;
        }
        let index = match &self.directory_index {
            Some(index) => index.as_str(),
            None if self.php => "index.php",
            None => return None,
        };
        let kind = kind_of(index.as_bytes())?;
        let relative = OsStr::from_bytes(path.strip_prefix(b"/").unwrap_or(path));
        let directory = self.inside_root(&self.document_root.join(relative))?;
        let file = directory.join(index);
        if !fs_err::metadata(&file).is_ok_and(|metadata| metadata.is_file()) {
            return None;
        }
        let mut script_name = path.clone();
        script_name.extend_from_slice(index.as_bytes());
        Some(target(kind, file, &script_name, b""))
    }

    /// `path` with links resolved, if it exists and stays inside the document root.
    fn inside_root(&self, path: &Path) -> Option<PathBuf> {
        let real = fs_err::canonicalize(path).ok()?;
        real.starts_with(&self.document_root).then_some(real)
    }

    /// The `--add-handler` script that answers for the file the request names, or for
    /// the directory's `--directory-index` file (as Apache runs the handler of an index).
    fn handler_target(&self) -> Option<handoff::HandlerTarget> {
        if self.handlers.is_empty() || self.decoded.contains(&0) {
            return None;
        }
        let relative = OsStr::from_bytes(self.decoded.strip_prefix(b"/").unwrap_or(&self.decoded));
        let real = fs_err::canonicalize(self.document_root.join(relative)).ok()?;
        if !real.starts_with(&self.document_root) {
            return None;
        }
        let metadata = fs_err::metadata(&real).ok()?;
        let (file, script_name) = if metadata.is_file() {
            (real, self.decoded.clone())
        } else if metadata.is_dir() && self.decoded.ends_with(b"/") {
            let index = self.directory_index.as_ref()?;
            let file = real.join(index);
            if !fs_err::metadata(&file).is_ok_and(|metadata| metadata.is_file()) {
                return None;
            }
            let mut script_name = self.decoded.clone();
            script_name.extend_from_slice(index.as_bytes());
            (file, script_name)
        } else {
            return None;
        };
        let extension = file
            .extension()
            .map(|extension| format!(".{}", extension.to_string_lossy().to_lowercase()))?;
        let index = self
            .handlers
            .iter()
            .position(|handled| *handled == extension)?;
        Some(handoff::HandlerTarget {
            index: u16::try_from(index).ok()?,
            file,
            script_name,
        })
    }

    /// The front end's own answer; `None`: the application's request.
    fn answer(self) -> Option<handoff::Response> {
        let otherwise = |lookup: &Self| (!lookup.mounted).then(not_found);
        // The request checks refuse an encoded NUL; a path cannot hold one anyway.
        if self.decoded.contains(&0) {
            return Some(not_found());
        }
        let relative = OsStr::from_bytes(self.decoded.strip_prefix(b"/").unwrap_or(&self.decoded));
        let candidate = self.document_root.join(relative);
        let Ok(real) = fs_err::canonicalize(&candidate) else {
            return otherwise(&self);
        };
        if !real.starts_with(&self.document_root) {
            // A symbolic link out of the document root: it exists, but is not served, and
            // the answer does not say where it leads.
            return Some(not_found());
        }
        let Ok(metadata) = fs_err::metadata(&real) else {
            return otherwise(&self);
        };
        if metadata.is_file() {
            return Some(
                refuse_method(&self.method)
                    .unwrap_or_else(|| file_response(&real, &self.conditions, &self.types)),
            );
        }
        if !metadata.is_dir() {
            return otherwise(&self);
        }
        // Without an index, mod_wsgi-express's rewrite rules hand a directory below the
        // mount point to the application.
        if self.mounted && self.directory_index.is_none() {
            return None;
        }
        if let Some(refusal) = refuse_method(&self.method) {
            return Some(refusal);
        }
        if !self.decoded.ends_with(b"/") {
            return Some(add_slash(&self.decoded, self.query.as_deref()));
        }
        if let Some(index) = &self.directory_index {
            let index = real.join(index);
            if fs_err::metadata(&index).is_ok_and(|metadata| metadata.is_file()) {
                return Some(file_response(&index, &self.conditions, &self.types));
            }
        }
        if self.directory_listing {
            return Some(super::directory_listing::page(&real, &self.decoded));
        }
        Some(forbidden_directory())
    }
}

/// Whether anyone may execute the file.
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs_err::metadata(path).is_ok_and(|metadata| metadata.permissions().mode() & 0o111 != 0)
}

fn forbidden_directory() -> handoff::Response {
    handoff::error_response(
        http::StatusCode::FORBIDDEN,
        "Directory listings are not served.",
    )
}

/// 301 to the directory's URL with its slash, as Apache's `DirectorySlash` (so that the
/// index's relative links resolve inside the directory).
fn add_slash(decoded: &[u8], query: Option<&str>) -> handoff::Response {
    let mut location = String::with_capacity(decoded.len() + 1);
    for &byte in decoded {
        if byte.is_ascii_alphanumeric() || b"/-._~!$&'()*+,;=:@".contains(&byte) {
            location.push(char::from(byte));
        } else {
            location.push_str(&format!("%{byte:02X}"));
        }
    }
    location.push('/');
    if let Some(query) = query {
        location.push('?');
        location.push_str(query);
    }
    let mut response = handoff::error_response(
        http::StatusCode::MOVED_PERMANENTLY,
        "The directory is at its URL with a final slash.",
    );
    if let Ok(value) = http::HeaderValue::from_str(&location) {
        response.headers.insert(http::header::LOCATION, value);
    }
    response
}

/// The request headers a file's answer depends on.
struct Conditions {
    if_modified_since: Option<http::HeaderValue>,
    if_none_match: Option<http::HeaderValue>,
    range: Option<http::HeaderValue>,
    if_range: Option<http::HeaderValue>,
}

impl Conditions {
    fn of(headers: &http::HeaderMap) -> Self {
        Self {
            if_modified_since: headers.get(http::header::IF_MODIFIED_SINCE).cloned(),
            if_none_match: headers.get(http::header::IF_NONE_MATCH).cloned(),
            range: headers.get(http::header::RANGE).cloned(),
            if_range: headers.get(http::header::IF_RANGE).cloned(),
        }
    }
}

/// An alias's file or directory (whose index is served, or which is listed): blocking
/// calls, made on the blocking pool.
fn alias_response(
    lookup: &AliasLookup,
    conditions: &Conditions,
    types: &ContentTypes,
) -> handoff::Response {
    let path = &lookup.path;
    let Ok(metadata) = fs_err::metadata(path) else {
        return not_found();
    };
    if metadata.is_dir() {
        let index = path.join(&lookup.index);
        if index.is_file() {
            return file_response(&index, conditions, types);
        }
        if let Some(url_path) = &lookup.listing {
            let mut url_path = url_path.clone();
            if !url_path.ends_with(b"/") {
                url_path.push(b'/');
            }
            return super::directory_listing::page(path, &url_path);
        }
        return forbidden_directory();
    }
    file_response(path, conditions, types)
}

/// Opens the file and answers with it, a part of it, or 304: blocking calls.
fn file_response(path: &Path, conditions: &Conditions, types: &ContentTypes) -> handoff::Response {
    let Ok(metadata) = fs_err::metadata(path) else {
        return not_found();
    };
    let Ok(file) = std::fs::File::open(path) else {
        return handoff::error_response(
            http::StatusCode::FORBIDDEN,
            "The file exists but the server may not read it.",
        );
    };
    let length = metadata.len();
    let modified = metadata.modified().ok();
    let mut response_headers = http::HeaderMap::new();
    if let Ok(value) = http::HeaderValue::from_str(&types.of(path)) {
        response_headers.insert(http::header::CONTENT_TYPE, value);
    }
    let last_modified = modified.map(httpdate::fmt_http_date);
    if let Some(value) = last_modified
        .as_deref()
        .and_then(|text| http::HeaderValue::from_str(text).ok())
    {
        response_headers.insert(http::header::LAST_MODIFIED, value);
    }
    let etag = entity_tag(length, modified);
    if let Ok(value) = http::HeaderValue::from_str(&etag) {
        response_headers.insert(http::header::ETAG, value);
    }
    response_headers.insert(
        http::header::ACCEPT_RANGES,
        http::HeaderValue::from_static("bytes"),
    );
    // RFC 9110 13.2.2: If-None-Match, when present, decides alone.
    let unchanged = match &conditions.if_none_match {
        Some(if_none_match) => none_match_fails(if_none_match, &etag),
        None => modified.is_some_and(|modified| {
            not_modified_since(conditions.if_modified_since.as_ref(), modified)
        }),
    };
    if unchanged {
        return handoff::Response {
            status: http::StatusCode::NOT_MODIFIED,
            reason: None,
            headers: response_headers,
            body: ResponseBody::Full(Vec::new()),
        };
    }
    let range = if if_range_holds(
        conditions.if_range.as_ref(),
        &etag,
        last_modified.as_deref(),
    ) {
        conditions
            .range
            .as_ref()
            .and_then(|value| value.to_str().ok())
            .map_or(RangeAsk::Whole, |text| parse_range(text, length))
    } else {
        RangeAsk::Whole
    };
    let (status, offset, part_length) = match range {
        RangeAsk::Whole => (http::StatusCode::OK, 0, length),
        RangeAsk::Part { first, last } => {
            if let Ok(value) =
                http::HeaderValue::from_str(&format!("bytes {first}-{last}/{length}"))
            {
                response_headers.insert(http::header::CONTENT_RANGE, value);
            }
            (http::StatusCode::PARTIAL_CONTENT, first, last - first + 1)
        }
        RangeAsk::Unsatisfiable => {
            let mut response = handoff::error_response(
                http::StatusCode::RANGE_NOT_SATISFIABLE,
                "The requested range is not inside the file.",
            );
            if let Ok(value) = http::HeaderValue::from_str(&format!("bytes */{length}")) {
                response.headers.insert(http::header::CONTENT_RANGE, value);
            }
            return response;
        }
    };
    response_headers.insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from(part_length),
    );
    handoff::Response {
        status,
        reason: None,
        headers: response_headers,
        body: ResponseBody::File {
            file,
            offset,
            length: part_length,
        },
    }
}

/// A strong `ETag` from the size and the modification time to the microsecond (Apache's
/// default `FileETag MTime Size`): it changes whenever the file is rewritten.
fn entity_tag(length: u64, modified: Option<SystemTime>) -> String {
    let micros = modified
        .and_then(|time| time.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |duration| duration.as_micros());
    format!("\"{length:x}-{micros:x}\"")
}

/// Whether `If-None-Match` names the file's current tag (weak comparison, RFC 9110 13.1.2),
/// so that the answer is 304.
fn none_match_fails(if_none_match: &http::HeaderValue, etag: &str) -> bool {
    let Ok(text) = if_none_match.to_str() else {
        return false;
    };
    text.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == etag
    })
}

/// Whether a Range may be honoured: no `If-Range`, or one naming the current file (strong
/// comparison of tags, or the exact Last-Modified date; RFC 9110 13.1.5).
fn if_range_holds(
    if_range: Option<&http::HeaderValue>,
    etag: &str,
    last_modified: Option<&str>,
) -> bool {
    let Some(if_range) = if_range else {
        return true;
    };
    let Ok(text) = if_range.to_str() else {
        return false;
    };
    let text = text.trim();
    if text.starts_with('"') || text.starts_with("W/") {
        text == etag
    } else {
        Some(text) == last_modified
    }
}

/// What a `Range` header asks of a file of `length` bytes.
#[derive(Debug, PartialEq, Eq)]
enum RangeAsk {
    /// No range we serve: the whole file (several ranges, or a header we do not read,
    /// are answered whole, which RFC 9110 14.2 allows).
    Whole,
    /// Bytes `first..=last`.
    Part { first: u64, last: u64 },
    /// A well-formed range that starts past the end: 416.
    Unsatisfiable,
}

fn parse_range(text: &str, length: u64) -> RangeAsk {
    let Some(spec) = text.trim().strip_prefix("bytes=") else {
        return RangeAsk::Whole;
    };
    if spec.contains(',') {
        return RangeAsk::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAsk::Whole;
    };
    let number = |text: &str| {
        (!text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit()))
            .then(|| text.parse::<u64>().ok())
            .flatten()
    };
    match (first.trim(), last.trim()) {
        ("", suffix) => match number(suffix) {
            Some(0) => RangeAsk::Unsatisfiable,
            Some(_) if length == 0 => RangeAsk::Unsatisfiable,
            Some(suffix) => RangeAsk::Part {
                first: length.saturating_sub(suffix),
                last: length - 1,
            },
            None => RangeAsk::Whole,
        },
        (first, "") => match number(first) {
            Some(first) if first >= length => RangeAsk::Unsatisfiable,
            Some(first) => RangeAsk::Part {
                first,
                last: length - 1,
            },
            None => RangeAsk::Whole,
        },
        (first, last) => match (number(first), number(last)) {
            (Some(first), Some(last)) if first > last => RangeAsk::Whole,
            (Some(first), Some(_)) if first >= length => RangeAsk::Unsatisfiable,
            (Some(first), Some(last)) => RangeAsk::Part {
                first,
                last: last.min(length - 1),
            },
            _ => RangeAsk::Whole,
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
        let target: http::Uri = raw_path.parse().expect("a request target");
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(files.serve(method, &target, headers))
            .and_then(|served| match served {
                Served::Response(response) => Some(response),
                Served::Handler(_) | Served::Gateway(_) => None,
            })
    }

    /// A document root with PHP and CGI files, looked up as the blocking pool would.
    fn gateway_lookup(root: &Path, path: &str) -> Option<Served> {
        SiteLookup {
            document_root: fs_err::canonicalize(root).expect("root"),
            directory_index: None,
            directory_listing: false,
            types: ContentTypes::default(),
            decoded: path.as_bytes().to_vec(),
            query: None,
            mounted: true,
            method: http::Method::GET,
            conditions: Conditions::of(&http::HeaderMap::new()),
            handlers: Vec::new(),
            php: true,
            cgi: true,
        }
        .run()
    }

    fn gateway_site() -> tempdir::Dir {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempdir::Dir::new();
        fs_err::create_dir_all(dir.path().join("app")).expect("dir");
        fs_err::write(dir.path().join("page.php"), "<?php").expect("file");
        fs_err::write(dir.path().join("app/index.php"), "<?php").expect("file");
        fs_err::write(dir.path().join("run.cgi"), "#!/bin/sh").expect("file");
        fs_err::set_permissions(
            dir.path().join("run.cgi"),
            std::fs::Permissions::from_mode(0o755),
        )
        .expect("chmod");
        fs_err::write(dir.path().join("plain.cgi"), "#!/bin/sh").expect("file");
        dir
    }

    #[test]
    fn a_php_file_goes_to_php_with_the_rest_as_path_info() {
        let dir = gateway_site();
        let Some(Served::Gateway(target)) = gateway_lookup(dir.path(), "/page.php/a/b") else {
            panic!("not a gateway");
        };
        assert_eq!(target.kind, super::super::GatewayKind::Php);
        assert_eq!(target.script_name, b"/page.php");
        assert_eq!(target.path_info, b"/a/b");
        assert!(target.file.ends_with("page.php"));
    }

    #[test]
    fn index_php_answers_for_its_directory() {
        let dir = gateway_site();
        let Some(Served::Gateway(target)) = gateway_lookup(dir.path(), "/app/") else {
            panic!("not a gateway");
        };
        assert_eq!(target.script_name, b"/app/index.php");
        assert!(target.path_info.is_empty());
    }

    #[test]
    fn only_an_executable_cgi_file_runs() {
        let dir = gateway_site();
        assert!(matches!(
            gateway_lookup(dir.path(), "/run.cgi"),
            Some(Served::Gateway(target)) if target.kind == super::super::GatewayKind::Cgi
        ));
        let Some(Served::Response(response)) = gateway_lookup(dir.path(), "/plain.cgi") else {
            panic!("not refused");
        };
        assert_eq!(response.status, http::StatusCode::FORBIDDEN);
    }

    #[test]
    fn a_missing_php_file_is_not_a_gateway() {
        let dir = gateway_site();
        assert!(gateway_lookup(dir.path(), "/missing.php").is_none());
    }

    fn site() -> (tempdir::Dir, StaticFiles) {
        let dir = tempdir::Dir::new();
        fs_err::create_dir_all(dir.path().join("css")).expect("dir");
        fs_err::write(dir.path().join("css/site.css"), "body {}").expect("file");
        let files = StaticFiles::new(vec![UrlAlias {
            url_path: "/static/".to_owned(),
            path: dir.path().to_owned(),
            index: DEFAULT_INDEX.to_owned(),
            listing: false,
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

    #[test]
    fn ranges_are_read_as_rfc_9110_says() {
        assert_eq!(
            parse_range("bytes=0-4", 10),
            RangeAsk::Part { first: 0, last: 4 }
        );
        assert_eq!(
            parse_range("bytes=5-", 10),
            RangeAsk::Part { first: 5, last: 9 }
        );
        assert_eq!(
            parse_range("bytes=-3", 10),
            RangeAsk::Part { first: 7, last: 9 }
        );
        assert_eq!(
            parse_range("bytes=-30", 10),
            RangeAsk::Part { first: 0, last: 9 }
        );
        assert_eq!(
            parse_range("bytes=8-30", 10),
            RangeAsk::Part { first: 8, last: 9 }
        );
        assert_eq!(parse_range("bytes=10-", 10), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 10), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-0", 0), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,4-5", 10), RangeAsk::Whole);
        assert_eq!(parse_range("bytes=5-1", 10), RangeAsk::Whole);
        assert_eq!(parse_range("items=0-1", 10), RangeAsk::Whole);
        assert_eq!(parse_range("bytes=+1-2", 10), RangeAsk::Whole);
    }
}
