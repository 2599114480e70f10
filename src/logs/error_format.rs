//! Apache's `ErrorLogFormat` for the error log (`--error-log-format`), parsed once at
//! start-up. Only the directives whose meaning carries over are taken (`docs/logs.md`);
//! any other is refused at start-up by name.

/// One directive of an error log format, or the text between two.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Piece {
    Text(String),
    /// `%t`: `Wed Nov 25 05:43:55 2026`; `%{u}t`: with microseconds.
    Time {
        micros: bool,
    },
    /// `%l`: the level's name.
    Level,
    /// `%m`: the module (`wsgi`, `ferrule`, `auth`).
    Module,
    /// `%P`
    Pid,
    /// `%T`
    Tid,
    /// `%a`: the client's address and port, `-` for a message about no request.
    Client,
    /// `%M`: the message (one line of it).
    Message,
}

/// A parsed error log format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorFormat {
    pub(super) pieces: Vec<Piece>,
}

/// A format string that cannot be used, naming the directive at fault.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the directive {directive} is not one ferrule writes")]
pub struct ErrorFormatError {
    directive: String,
}

impl ErrorFormat {
    pub fn parse(format: &str) -> Result<Self, ErrorFormatError> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut rest = format;
        while let Some(at) = rest.find('%') {
            text.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            let (piece, used) = if let Some(argument) = after.strip_prefix('{') {
                let end = argument.find('}').ok_or_else(|| unknown(&rest[at..]))?;
                let letter = argument[end + 1..].chars().next();
                let used = 1 + end + 1 + letter.map_or(0, char::len_utf8);
                match (&argument[..end], letter) {
                    ("u", Some('t')) => (Some(Piece::Time { micros: true }), used),
                    _ => return Err(unknown(&rest[at..=at + used])),
                }
            } else {
                let letter = after.chars().next().ok_or_else(|| unknown("%"))?;
                let piece = match letter {
                    '%' => None,
                    't' => Some(Piece::Time { micros: false }),
                    'l' => Some(Piece::Level),
                    'm' => Some(Piece::Module),
                    'P' => Some(Piece::Pid),
                    'T' => Some(Piece::Tid),
                    'a' => Some(Piece::Client),
                    'M' => Some(Piece::Message),
                    _ => return Err(unknown(&rest[at..at + 1 + letter.len_utf8()])),
                };
                (piece, letter.len_utf8())
            };
            match piece {
                None => text.push('%'),
                Some(piece) => {
                    if !text.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut text)));
                    }
                    pieces.push(piece);
                }
            }
            rest = &after[used..];
        }
        text.push_str(rest);
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(Self { pieces })
    }
}

fn unknown(directive: &str) -> ErrorFormatError {
    ErrorFormatError {
        directive: directive.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_and_text() {
        let format = ErrorFormat::parse("[%{u}t] %l|%m %P:%T %a 100%% %M").unwrap();
        assert_eq!(format.pieces[0], Piece::Text("[".into()));
        assert_eq!(format.pieces[1], Piece::Time { micros: true });
        assert!(format.pieces.contains(&Piece::Text(" 100% ".into())));
        assert_eq!(format.pieces.last(), Some(&Piece::Message));
    }

    #[test]
    fn others_are_refused_by_name() {
        assert_eq!(
            ErrorFormat::parse("%M %F").unwrap_err().to_string(),
            "the directive %F is not one ferrule writes"
        );
        assert!(ErrorFormat::parse("%{cu}t").is_err());
        assert!(ErrorFormat::parse("%M %").is_err());
        assert!(ErrorFormat::parse("%{u").is_err());
    }
}
