//! Email addresses of accounts (app users, grantees, panel users): the one rule that decides what
//! may be stored and later written into a notification mail.
//!
//! [`normalize_email`] trims surrounding whitespace, then accepts only a practical subset of
//! RFC 5322 / RFC 5321 addresses and lowercases it:
//! - ASCII only. Internationalized addresses are refused; a domain with non-ASCII letters is given
//!   in its `xn--` form. (This is checked before lowercasing: Unicode lowercasing maps some
//!   non-ASCII letters to ASCII ones — the Kelvin sign `K` becomes `k` — which would let two
//!   spellings name one account.)
//! - No control character (CR, LF, NUL, TAB, DEL, …) and no space anywhere inside: what is stored
//!   can never add a line to a mail header.
//! - Exactly one `@`.
//! - The local part (1–64 bytes) is a dot-atom: letters, digits and ``!#$%&'*+-/=?^_`{|}~``,
//!   in runs separated by single dots (no leading, trailing or doubled dot). Quoted local parts
//!   and comments are refused.
//! - The domain (1–253 bytes) is labels of letters, digits and hyphens (1–63 bytes each, no
//!   leading or trailing hyphen) separated by single dots. A dotless domain (`admin@localhost`)
//!   is accepted, as self-hosted installations use them; address literals (`[192.0.2.1]`) and a
//!   trailing dot are refused.
//! - At most 254 bytes in all.

use crate::{Error, Result};

/// Longest address, bytes (RFC 5321's path limit minus the angle brackets).
pub const MAX_EMAIL_BYTES: usize = 254;
/// Longest local part, bytes.
pub const MAX_LOCAL_BYTES: usize = 64;
/// Longest domain label, bytes.
pub const MAX_LABEL_BYTES: usize = 63;

/// The characters of a dot-atom besides letters and digits (RFC 5322 `atext`).
const ATEXT_SPECIALS: &str = "!#$%&'*+-/=?^_`{|}~";

fn invalid(reason: &str) -> Error {
    Error::bad_request(format!("email is not a valid address: {reason}"))
}

/// The address an account is stored and looked up under: trimmed, checked (see the module
/// documentation), ASCII-lowercased. A 400 that says what is wrong otherwise; the message never
/// repeats the input.
pub fn normalize_email(raw: &str) -> Result<String> {
    let e = raw.trim();
    if e.is_empty() {
        return Err(invalid("it is empty"));
    }
    if e.chars().any(char::is_control) {
        return Err(invalid("it contains a control character"));
    }
    if e.chars().any(char::is_whitespace) {
        return Err(invalid("it contains a space"));
    }
    if !e.is_ascii() {
        return Err(invalid("it must be ASCII (give an internationalized domain in its xn-- form)"));
    }
    if e.len() > MAX_EMAIL_BYTES {
        return Err(invalid("it is longer than 254 characters"));
    }
    let mut parts = e.split('@');
    let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(invalid("it must contain exactly one @"));
    };
    check_local(local)?;
    check_domain(domain)?;
    Ok(e.to_ascii_lowercase())
}

/// True when [`normalize_email`] accepts the address.
pub fn is_valid_email(raw: &str) -> bool {
    normalize_email(raw).is_ok()
}

fn check_local(local: &str) -> Result<()> {
    if local.is_empty() {
        return Err(invalid("the part before @ is empty"));
    }
    if local.len() > MAX_LOCAL_BYTES {
        return Err(invalid("the part before @ is longer than 64 characters"));
    }
    for atom in local.split('.') {
        if atom.is_empty() {
            return Err(invalid("the part before @ has a leading, trailing or doubled dot"));
        }
        if !atom.chars().all(|c| c.is_ascii_alphanumeric() || ATEXT_SPECIALS.contains(c)) {
            return Err(invalid("the part before @ may hold only letters, digits, dots and !#$%&'*+-/=?^_`{|}~"));
        }
    }
    Ok(())
}

fn check_domain(domain: &str) -> Result<()> {
    if domain.is_empty() {
        return Err(invalid("the domain is empty"));
    }
    for label in domain.split('.') {
        if label.is_empty() {
            return Err(invalid("the domain has a leading, trailing or doubled dot"));
        }
        if label.len() > MAX_LABEL_BYTES {
            return Err(invalid("a domain label is longer than 63 characters"));
        }
        if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(invalid("the domain may hold only letters, digits, hyphens and dots"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(invalid("a domain label starts or ends with a hyphen"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(raw: &str) -> String {
        match normalize_email(raw) {
            Ok(ok) => panic!("{raw:?} accepted as {ok:?}"),
            Err(e) => {
                assert_eq!(e.status(), 400, "{raw:?}");
                e.public_message()
            }
        }
    }

    #[test]
    fn accepts_and_normalizes_ordinary_addresses() {
        for (raw, norm) in [
            ("ops@example.com", "ops@example.com"),
            ("  Ops@Example.COM\t", "ops@example.com"),
            ("first.last+tag@sub.example.co.uk", "first.last+tag@sub.example.co.uk"),
            ("a@b", "a@b"),
            ("admin@localhost", "admin@localhost"),
            ("!#$%&'*+-/=?^_`{|}~@example.com", "!#$%&'*+-/=?^_`{|}~@example.com"),
            ("x@xn--bcher-kva.example", "x@xn--bcher-kva.example"),
            ("u@a-b.c-d.e", "u@a-b.c-d.e"),
            ("123@456.789", "123@456.789"),
        ] {
            assert_eq!(normalize_email(raw).expect(raw), norm, "{raw:?}");
            assert!(is_valid_email(raw));
        }
    }

    #[test]
    fn refuses_every_control_character_anywhere_inside() {
        let controls = (0u32..0x20).chain(0x7f..0xa0).filter_map(char::from_u32);
        for c in controls {
            for raw in [format!("a{c}b@example.com"), format!("ab@exa{c}mple.com"), format!("ab{c}@example.com")] {
                let msg = refused(&raw);
                assert!(!msg.contains(c), "the message does not repeat the input: {msg:?}");
            }
        }
        // Control characters that are not whitespace are refused at the ends too.
        for c in ['\0', '\u{1}', '\u{1b}', '\u{7f}'] {
            refused(&format!("{c}ab@example.com"));
            refused(&format!("ab@example.com{c}"));
        }
    }

    #[test]
    fn refuses_header_injection() {
        let msg = refused("a\r\nBcc: x@evil.com");
        assert!(msg.contains("control character"), "{msg}");
        refused("victim@example.com\r\nBcc: x@evil.com");
        refused("victim@example.com\nSubject: hi");
        refused("victim@example.com\0");
    }

    #[test]
    fn refuses_spaces_and_unicode_tricks() {
        assert!(refused("x y@z.com").contains("space"));
        for raw in [
            "a b@example.com",
            "ab@exam ple.com",
            "a\u{a0}b@example.com",   // no-break space
            "a\u{2028}b@example.com", // line separator
            "a\u{2029}b@example.com", // paragraph separator
            "a\u{85}b@example.com",   // next line
            "a\u{200b}b@example.com", // zero-width space
            "a\u{202e}b@example.com", // right-to-left override
            "a\u{feff}b@example.com", // byte order mark
            "\u{212a}@example.com",   // Kelvin sign: lowercases to ASCII `k`
            "\u{130}@example.com",    // capital I with dot
            "jos\u{e9}@example.com",  // internationalized local part
            "x@b\u{fc}cher.example",  // internationalized domain, not in xn-- form
            "x@example\u{ff0e}com",   // fullwidth full stop
            "x\u{ff20}example.com",   // fullwidth commercial at
        ] {
            refused(raw);
        }
    }

    #[test]
    fn refuses_malformed_structure() {
        for raw in [
            "",
            "   ",
            "plainaddress",
            "@example.com",
            "a@",
            "@",
            "a@b@c",
            "a@b@c.com",
            "a.@example.com",
            ".a@example.com",
            "a..b@example.com",
            "a@.example.com",
            "a@example.com.",
            "a@example..com",
            "a@-example.com",
            "a@example-.com",
            "a@exa_mple.com",
            "a@[192.0.2.1]",
            "\"quoted\"@example.com",
            "a(comment)@example.com",
            "a,b@example.com",
            "a<b>@example.com",
            "a:b@example.com",
            "a;b@example.com",
            "a\\b@example.com",
            "Name <a@example.com>",
        ] {
            refused(raw);
        }
    }

    #[test]
    fn length_limits() {
        let local64 = "l".repeat(64);
        assert!(is_valid_email(&format!("{local64}@example.com")));
        refused(&format!("{local64}l@example.com"));
        let label63 = "d".repeat(63);
        assert!(is_valid_email(&format!("a@{label63}.com")));
        refused(&format!("a@{label63}d.com"));
        // 254 bytes in all is the most.
        let domain = format!("{label63}.{label63}.{label63}.{}", "d".repeat(61)); // 253 bytes
        assert_eq!(domain.len(), 253);
        let at_limit = format!("ab@{}", &domain[..251]);
        assert_eq!(at_limit.len(), 254);
        assert!(is_valid_email(&at_limit));
        let over = format!("a@{domain}");
        assert_eq!(over.len(), 255);
        assert!(refused(&over).contains("254"));
        let long_input = format!("{}@example.com", "a".repeat(100_000));
        refused(&long_input);
    }
}
