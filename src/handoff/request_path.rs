//! The request path as Apache hands it on: percent-decoded, then normalized (`.` and `..`
//! resolved without climbing above the root, repeated slashes merged). Used for the
//! environ's `PATH_INFO` and by the front end to map URLs to files. Plain bytes: a path
//! may hold any octet, which the environ passes on as latin-1.

/// The request target as the client sent it (`REQUEST_URI`): the path and query of an
/// origin-form target, the whole URI of an absolute-form one, `*` for `OPTIONS *`.
pub fn request_target(target: &http::Uri) -> std::borrow::Cow<'_, str> {
    if target.scheme().is_some() {
        return std::borrow::Cow::Owned(target.to_string());
    }
    std::borrow::Cow::Borrowed(
        target
            .path_and_query()
            .map_or_else(|| target.path(), http::uri::PathAndQuery::as_str),
    )
}

/// The decoded, normalized form of the raw request path; borrowed when decoding and
/// normalizing would change nothing (no `%`, no `.`, `..` or empty segment), as for
/// nearly every request.
pub fn decode(raw: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if !raw.contains(&b'%') && is_normal(raw) {
        return std::borrow::Cow::Borrowed(raw);
    }
    std::borrow::Cow::Owned(normalize_path(&percent_decode(raw)))
}

/// [`normalize_path`] would return the path unchanged.
fn is_normal(path: &[u8]) -> bool {
    let Some(rest) = path.strip_prefix(b"/") else {
        return true;
    };
    let mut segments = rest.split(|&b| b == b'/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        match segment {
            b"." | b".." => return false,
            b"" if !last => return false,
            _ => {}
        }
    }
    true
}

fn percent_decode(raw: &[u8]) -> Vec<u8> {
    let mut decoded = Vec::with_capacity(raw.len());
    let mut index = 0;
    while index < raw.len() {
        if raw[index] == b'%' && index + 2 < raw.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(high), Some(low)) = (hex(raw[index + 1]), hex(raw[index + 2])) {
                decoded.push(u8::try_from(high * 16 + low).unwrap_or(b'?'));
                index += 3;
                continue;
            }
        }
        decoded.push(raw[index]);
        index += 1;
    }
    decoded
}

/// Apache's treatment of the decoded path: `.` and `..` segments resolved (never above
/// the root) and repeated slashes merged, so `PATH_INFO` never climbs out of the site.
fn normalize_path(path: &[u8]) -> Vec<u8> {
    if !path.starts_with(b"/") {
        return path.to_vec();
    }
    let mut segments: Vec<&[u8]> = Vec::new();
    for segment in path.split(|&b| b == b'/') {
        match segment {
            b"" | b"." => {}
            b".." => {
                segments.pop();
            }
            segment => segments.push(segment),
        }
    }
    let ends_as_directory = path.ends_with(b"/") || path.ends_with(b"/.") || path.ends_with(b"/..");
    let mut normalized = Vec::with_capacity(path.len());
    for segment in &segments {
        normalized.push(b'/');
        normalized.extend_from_slice(segment);
    }
    if normalized.is_empty() || ends_as_directory {
        normalized.push(b'/');
    }
    normalized
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalized_like_apache() {
        assert_eq!(normalize_path(b"/a//b/./c/../d"), b"/a/b/d");
        assert_eq!(normalize_path(b"/../../etc/passwd"), b"/etc/passwd");
        assert_eq!(normalize_path(b"/a/b/"), b"/a/b/");
        assert_eq!(normalize_path(b"/a/b/.."), b"/a/");
        assert_eq!(normalize_path(b"/"), b"/");
        assert_eq!(normalize_path(b"//"), b"/");
        assert_eq!(normalize_path(b"*"), b"*");
    }

    #[test]
    fn a_path_is_borrowed_only_when_decoding_would_not_change_it() {
        let slow = |raw: &[u8]| normalize_path(&percent_decode(raw));
        let pieces: [&[u8]; 8] = [b"/", b"a", b".", b"..", b"%41", b"", b"b.c", b"%"];
        // Every path of up to four pieces: the fast answer equals the slow one.
        let mut paths: Vec<Vec<u8>> = vec![Vec::new()];
        for _ in 0..4 {
            let longer: Vec<Vec<u8>> = paths
                .iter()
                .flat_map(|path| {
                    pieces
                        .iter()
                        .map(move |piece| [path.as_slice(), piece].concat())
                })
                .collect();
            paths.extend(longer);
        }
        for path in &paths {
            assert_eq!(decode(path).as_ref(), slow(path).as_slice(), "{path:?}");
        }
        assert!(matches!(decode(b"/a/b.c/"), std::borrow::Cow::Borrowed(_)));
        assert!(matches!(decode(b"/a//b"), std::borrow::Cow::Owned(_)));
    }

    #[test]
    fn percent_decoding_keeps_bad_escapes() {
        assert_eq!(percent_decode(b"/a%20b"), b"/a b");
        assert_eq!(percent_decode(b"/%zz%2"), b"/%zz%2");
        assert_eq!(percent_decode(b"/%C3%A9"), b"/\xc3\xa9");
        assert_eq!(percent_decode(b"%41"), b"A");
    }
}
