//! Tool-name globs: `*` matches any run of characters (also none), `?`
//! exactly one character; everything else matches itself, case-sensitively.

/// Whether `text` matches `pattern` as a whole.
///
/// Linear backtracking over characters: on a mismatch, the last `*` takes
/// one more character. Never worse than O(len(pattern) × len(text)).
pub fn matches(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    // Where the last `*` was, and where in `text` its match currently ends.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    star = Some((sp, st + 1));
                    p = sp + 1;
                    t = st + 1;
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

/// Whether any of `patterns` matches `text`.
pub fn any_matches(patterns: &[String], text: &str) -> bool {
    patterns.iter().any(|p| matches(p, text))
}

#[cfg(test)]
mod tests {
    use super::matches;

    fn check(pattern: &str, text: &str, expect: bool) {
        assert_eq!(matches(pattern, text), expect, "{pattern:?} vs {text:?}");
    }

    #[test]
    fn literals() {
        check("echo", "echo", true);
        check("echo", "echo2", false);
        check("echo", "Echo", false);
        check("", "", true);
        check("", "x", false);
    }

    #[test]
    fn stars() {
        check("*", "", true);
        check("*", "anything", true);
        check("delete_*", "delete_file", true);
        check("delete_*", "delete_", true);
        check("delete_*", "undelete_x", false);
        check("*_admin", "db_admin", true);
        check("*_admin", "db_admin2", false);
        check("a*b*c", "aXXbYYc", true);
        check("a*b*c", "abcabc", true);
        check("a*b*c", "acb", false);
        check("**", "x", true);
        check("*a*a*a*a*b", &"a".repeat(200), false);
    }

    #[test]
    fn question_marks() {
        check("v?", "v1", true);
        check("v?", "v", false);
        check("v?", "v12", false);
        check("?*", "", false);
        check("t?st_*", "tést_x", true);
    }
}
