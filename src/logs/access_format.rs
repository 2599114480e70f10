//! Apache's `LogFormat` strings for the access log (`--access-log-format`): parsed once at
//! start-up into pieces, then filled in for each request by `access_log.rs`.
//!
//! Only the directives whose meaning carries over to a server without Apache are taken
//! (see `docs/logs.md`); any other is refused at start-up by name, never written as
//! something else. Status conditions (`%400,501{..}i`) are not taken either.

/// `common`, as mod_wsgi-express defines it (Apache's own).
pub const COMMON: &str = "%h %l %u %t \"%r\" %>s %b";
/// `combined`: common, then the referring page and the client's name for itself.
pub const COMBINED: &str = "%h %l %u %t \"%r\" %>s %b \"%{Referer}i\" \"%{User-agent}i\"";

/// One directive of a format, or the text between two.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Piece {
    Text(String),
    /// `%h`, `%a`: the client's address (no host name lookups, as Apache by default).
    RemoteHost,
    /// `%l`: identd's answer, always `-` (Apache without `IdentityCheck`).
    RemoteLogname,
    /// `%u`: the user the credentials named, when access control is configured.
    RemoteUser,
    /// `%t`: when the request was received.
    Time,
    /// `%r`: the request line.
    RequestLine,
    /// `%s`, `%>s`, `%<s`: the status sent (no internal redirects here: all one).
    Status,
    /// `%b`: body bytes sent, `-` for none.
    BytesClf,
    /// `%B`: body bytes sent.
    Bytes,
    /// `%D`: microseconds from the request's arrival to its last byte.
    Micros,
    /// `%T`: the same in whole seconds.
    Seconds,
    /// `%{Name}i`: a request header, by its place in [`AccessFormat::request_headers`].
    RequestHeader(usize),
    /// `%{Name}o`: a response header, by its place in [`AccessFormat::response_headers`].
    ResponseHeader(usize),
    /// `%{NAME}e`: a CGI variable of the request, by its place in [`AccessFormat::env`].
    Env(usize),
    /// `%P`: the process that wrote the line.
    Pid,
    /// `%L`: the request's id, `mod_wsgi.request_id` in its environ.
    RequestId,
    /// `%m`
    Method,
    /// `%U`: the path, without the query.
    Path,
    /// `%q`: `?` and the query, or nothing.
    Query,
    /// `%H`
    Protocol,
}

/// A parsed access log format, with the names its `%{..}` directives read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessFormat {
    pub(super) pieces: Vec<Piece>,
    /// Names of the request headers read (lowercase).
    pub(super) request_headers: Vec<String>,
    /// Names of the response headers read (lowercase).
    pub(super) response_headers: Vec<String>,
    /// Names of the variables `%{..}e` reads, as written.
    pub(super) env: Vec<String>,
}

/// A format string that cannot be used, naming the directive at fault.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("the directive {directive} is not one ferrule writes")]
    Unknown { directive: String },
    #[error("the format ends inside the directive {directive}")]
    Unfinished { directive: String },
}

impl AccessFormat {
    /// `common`, `combined`, or an Apache format string.
    pub fn parse(format: &str) -> Result<Self, FormatError> {
        let format = match format {
            "common" => COMMON,
            "combined" => COMBINED,
            other => other,
        };
        let mut parsed = Self {
            pieces: Vec::new(),
            request_headers: Vec::new(),
            response_headers: Vec::new(),
            env: Vec::new(),
        };
        let mut text = String::new();
        let mut chars = format.char_indices().peekable();
        while let Some((start, ch)) = chars.next() {
            if ch != '%' {
                text.push(ch);
                continue;
            }
            let mut argument = None;
            let directive = loop {
                let Some((at, next)) = chars.next() else {
                    return Err(FormatError::Unfinished {
                        directive: format[start..].to_owned(),
                    });
                };
                match next {
                    // Apache's "original" and "final" request: one and the same here.
                    '<' | '>' if argument.is_none() => {}
                    '{' if argument.is_none() => {
                        let rest = &format[at + 1..];
                        let Some(end) = rest.find('}') else {
                            return Err(FormatError::Unfinished {
                                directive: format[start..].to_owned(),
                            });
                        };
                        argument = Some(rest[..end].to_owned());
                        for _ in 0..=rest[..end].chars().count() {
                            chars.next();
                        }
                    }
                    letter => break (letter, &format[start..at + letter.len_utf8()]),
                }
            };
            let (letter, written) = directive;
            if letter == '%' && argument.is_none() {
                text.push('%');
                continue;
            }
            let piece = parsed
                .piece(letter, argument)
                .ok_or_else(|| FormatError::Unknown {
                    directive: written.to_owned(),
                })?;
            if !text.is_empty() {
                parsed.pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            parsed.pieces.push(piece);
        }
        if !text.is_empty() {
            parsed.pieces.push(Piece::Text(text));
        }
        Ok(parsed)
    }

    fn piece(&mut self, letter: char, argument: Option<String>) -> Option<Piece> {
        let piece = match (letter, argument) {
            ('h' | 'a', None) => Piece::RemoteHost,
            ('l', None) => Piece::RemoteLogname,
            ('u', None) => Piece::RemoteUser,
            ('t', None) => Piece::Time,
            ('r', None) => Piece::RequestLine,
            ('s', None) => Piece::Status,
            ('b', None) => Piece::BytesClf,
            ('B', None) => Piece::Bytes,
            ('D', None) => Piece::Micros,
            ('T', None) => Piece::Seconds,
            ('P', None) => Piece::Pid,
            ('L', None) => Piece::RequestId,
            ('m', None) => Piece::Method,
            ('U', None) => Piece::Path,
            ('q', None) => Piece::Query,
            ('H', None) => Piece::Protocol,
            ('i', Some(name)) => Piece::RequestHeader(place(&mut self.request_headers, &name)),
            ('o', Some(name)) => Piece::ResponseHeader(place(&mut self.response_headers, &name)),
            ('e', Some(name)) => Piece::Env(place_as_written(&mut self.env, name)),
            _ => return None,
        };
        Some(piece)
    }

    /// True when a line needs the request id (made into text only then).
    pub fn uses_request_id(&self) -> bool {
        self.pieces.contains(&Piece::RequestId)
    }
}

/// The place of header `name` (case-insensitive) in `names`, added when new.
fn place(names: &mut Vec<String>, name: &str) -> usize {
    place_as_written(names, name.to_ascii_lowercase())
}

fn place_as_written(names: &mut Vec<String>, name: String) -> usize {
    names
        .iter()
        .position(|known| *known == name)
        .unwrap_or_else(|| {
            names.push(name);
            names.len() - 1
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_and_combined_are_apaches() {
        let common = AccessFormat::parse("common").unwrap();
        assert_eq!(common, AccessFormat::parse(COMMON).unwrap());
        assert_eq!(common.pieces[0], Piece::RemoteHost);
        assert_eq!(common.pieces[common.pieces.len() - 1], Piece::BytesClf);
        let combined = AccessFormat::parse("combined").unwrap();
        assert_eq!(combined.request_headers, ["referer", "user-agent"]);
    }

    #[test]
    fn directives_with_names_and_modifiers() {
        let format = AccessFormat::parse("%>s %<s %{X-A}i %{x-a}i %{X-B}o %{PATH}e 100%%").unwrap();
        assert_eq!(
            format.pieces,
            [
                Piece::Status,
                Piece::Text(" ".into()),
                Piece::Status,
                Piece::Text(" ".into()),
                Piece::RequestHeader(0),
                Piece::Text(" ".into()),
                Piece::RequestHeader(0),
                Piece::Text(" ".into()),
                Piece::ResponseHeader(0),
                Piece::Text(" ".into()),
                Piece::Env(0),
                Piece::Text(" 100%".into()),
            ]
        );
        assert_eq!(format.env, ["PATH"]);
    }

    #[test]
    fn unknown_and_unfinished_directives_are_named() {
        assert_eq!(
            AccessFormat::parse("%h %Z"),
            Err(FormatError::Unknown {
                directive: "%Z".into()
            })
        );
        assert_eq!(
            AccessFormat::parse("%{Referer}x"),
            Err(FormatError::Unknown {
                directive: "%{Referer}x".into()
            })
        );
        assert!(matches!(
            AccessFormat::parse("%{Referer"),
            Err(FormatError::Unfinished { .. })
        ));
        assert!(matches!(
            AccessFormat::parse("%h %"),
            Err(FormatError::Unfinished { .. })
        ));
        assert!(AccessFormat::parse("%{Referer}").is_err());
    }
}
