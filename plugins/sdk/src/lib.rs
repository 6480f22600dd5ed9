//! Helpers shared by berth's plugins.
//!
//! - [`url`]: splits an `http(s)://` URL into the parts wasi:http wants
//!   (pure Rust, tested natively).
//! - `http` (wasm32 only): a small blocking client over
//!   `wasi:http/outgoing-handler`.
//! - [`percent_encode_path`]: escapes a path for a URL.
//!
//! The WIT bindings themselves are generated in each plugin crate, because
//! each one exports a different world.

#![deny(missing_docs)]

pub mod url;

#[cfg(target_arch = "wasm32")]
pub mod http;

/// Percent-encodes `path` for use in a URL path, keeping `/` separators and
/// RFC 3986 unreserved characters as they are.
pub fn percent_encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(
                char::from_digit(u32::from(b >> 4), 16)
                    .unwrap()
                    .to_ascii_uppercase(),
            );
            out.push(
                char::from_digit(u32::from(b & 0xf), 16)
                    .unwrap()
                    .to_ascii_uppercase(),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::percent_encode_path;

    #[test]
    fn percent_encoding() {
        let check = |input: &str, expect: &str| assert_eq!(percent_encode_path(input), expect);
        check("team/db-password", "team/db-password");
        check("a b", "a%20b");
        check("x?y#z", "x%3Fy%23z");
        check("é", "%C3%A9");
        check("100%", "100%25");
    }
}
