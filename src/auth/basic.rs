//! The Basic scheme (RFC 7617): `Authorization: Basic base64(user:password)`.

use base64::Engine;

use super::Malformed;

/// The user and password of a Basic token, decoded as latin-1 (as mod_wsgi hands them to
/// `check_password`). The user ends at the first colon (RFC 7617 2: a user-id holds none).
pub(super) fn parse(token: &str) -> Result<(String, String), Malformed> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .map_err(|_| Malformed("the Basic credentials are not base64"))?;
    let colon = decoded
        .iter()
        .position(|&byte| byte == b':')
        .ok_or(Malformed(
            "the Basic credentials have no ':' between user and password",
        ))?;
    let latin1 = |bytes: &[u8]| bytes.iter().map(|&byte| char::from(byte)).collect();
    Ok((latin1(&decoded[..colon]), latin1(&decoded[colon + 1..])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_and_password_split_at_the_first_colon() {
        // "spy:se:cret"
        assert_eq!(
            parse("c3B5OnNlOmNyZXQ=").unwrap(),
            ("spy".to_owned(), "se:cret".to_owned())
        );
    }

    #[test]
    fn bytes_are_latin1() {
        // "\xe9:\xff"
        assert_eq!(parse("6Tr/").unwrap(), ("é".to_owned(), "ÿ".to_owned()));
    }

    #[test]
    fn not_base64_or_no_colon_is_malformed() {
        assert!(parse("!!!").is_err());
        assert!(parse("bm9jb2xvbg==").is_err());
        assert!(parse("").is_err());
    }
}
