//! `--directory-listing`: the HTML page listing a directory of the document root, as
//! Apache's `Options +Indexes` gives one for mod_wsgi-express. Every name is escaped for
//! HTML and percent-encoded in its link, so a file name can never become markup.
//! A blocking call (it reads the directory): made on tokio's blocking pool.

use std::fmt::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::handoff::{self, ResponseBody};

/// The listing of `directory`, reached at the decoded URL path `url_path` (which ends
/// with `/`).
pub(super) fn page(directory: &Path, url_path: &[u8]) -> handoff::Response {
    let Ok(entries) = fs_err::read_dir(directory) else {
        return handoff::error_response(
            http::StatusCode::FORBIDDEN,
            "The directory exists but the server may not read it.",
        );
    };
    let mut names: Vec<(Vec<u8>, bool)> = entries
        .filter_map(Result::ok)
        .map(|entry| {
            let is_directory =
                entry.file_type().is_ok_and(|kind| kind.is_dir()) || entry.path().is_dir();
            (entry.file_name().as_bytes().to_vec(), is_directory)
        })
        .collect();
    names.sort();
    let title = format!("Index of {}", escape(url_path));
    let mut html = format!(
        "<!DOCTYPE html>\n<html><head><title>{title}</title></head>\n<body>\n<h1>{title}</h1>\n<ul>\n"
    );
    if url_path != b"/" {
        html.push_str("<li><a href=\"../\">Parent Directory</a></li>\n");
    }
    for (name, is_directory) in names {
        let slash = if is_directory { "/" } else { "" };
        let _ = writeln!(
            html,
            "<li><a href=\"{}{slash}\">{}{slash}</a></li>",
            percent_encode(&name),
            escape(&name)
        );
    }
    html.push_str("</ul>\n</body></html>\n");
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        http::header::CONTENT_LENGTH,
        http::HeaderValue::from(html.len()),
    );
    handoff::Response {
        status: http::StatusCode::OK,
        reason: None,
        headers,
        body: ResponseBody::Full(vec![bytes::Bytes::from(html)]),
    }
}

/// Text for HTML: the five characters that could open markup or end an attribute are
/// written as references; a name that is not UTF-8 shows its bytes as U+FFFD.
fn escape(text: &[u8]) -> String {
    let text = String::from_utf8_lossy(text);
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#x27;"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// A path segment for a link: every byte outside RFC 3986's unreserved set is encoded,
/// so the link names exactly this file (`?`, `#`, `%` and `/` included).
fn percent_encode(name: &[u8]) -> String {
    let mut encoded = String::with_capacity(name.len());
    for &byte in name {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            let _ = write!(encoded, "%{byte:02X}");
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_become_markup() {
        assert_eq!(
            escape(b"<a href='x'>&\""),
            "&lt;a href=&#x27;x&#x27;&gt;&amp;&quot;"
        );
        assert_eq!(
            percent_encode(b"a b?#%/\"<.txt"),
            "a%20b%3F%23%25%2F%22%3C.txt"
        );
    }
}
