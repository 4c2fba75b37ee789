//! Redis-style glob patterns, for `SCAN … MATCH` and `CONFIG GET`.
//!
//! `*` any run of bytes, `?` any one byte, `[abc]` / `[^abc]` / `[a-z]` a class, `\x` the byte
//! `x` itself. Matching is on bytes and iterative (backtracking only to the last `*`), so a
//! hostile pattern cannot make it exponential.

/// Whether `text` matches `pattern`.
pub fn matches(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where to resume after the last `*`: (pattern index after it, text index it matched to).
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if let Some(step) = one(pattern, p, text[t]) {
            p += step;
            t += 1;
            continue;
        }
        if pattern.get(p) == Some(&b'*') {
            star = Some((p + 1, t));
            p += 1;
            continue;
        }
        let Some((sp, st)) = star else {
            return false;
        };
        p = sp;
        t = st + 1;
        star = Some((sp, st + 1));
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

/// If the pattern element at `p` matches byte `c`, the element's length in the pattern.
fn one(pattern: &[u8], p: usize, c: u8) -> Option<usize> {
    match *pattern.get(p)? {
        b'*' => None,
        b'?' => Some(1),
        b'\\' => match pattern.get(p + 1) {
            Some(&e) => (e == c).then_some(2),
            None => (c == b'\\').then_some(1),
        },
        b'[' => match class(pattern, p, c) {
            Class::Hit(n) => Some(n),
            Class::Miss => None,
            Class::Open => (c == b'[').then_some(1),
        },
        x => (x == c).then_some(1),
    }
}

/// How a `[...]` class met a byte.
enum Class {
    /// Matched; the class is this long in the pattern.
    Hit(usize),
    /// Did not match.
    Miss,
    /// No closing `]`: the `[` is an ordinary byte.
    Open,
}

/// Matches a `[...]` class at `p` against byte `c`.
fn class(pattern: &[u8], p: usize, c: u8) -> Class {
    let mut i = p + 1;
    let negate = pattern.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    loop {
        let Some(&x) = pattern.get(i) else {
            return Class::Open;
        };
        if x == b']' && !first {
            break;
        }
        first = false;
        if x == b'\\' {
            let Some(&e) = pattern.get(i + 1) else {
                return Class::Open;
            };
            hit |= e == c;
            i += 2;
        } else if let (Some(b'-'), Some(&b)) = (pattern.get(i + 1), pattern.get(i + 2))
            && b != b']'
        {
            let a = x;
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            hit |= (lo..=hi).contains(&c);
            i += 3;
        } else {
            hit |= x == c;
            i += 1;
        }
    }
    if hit != negate {
        Class::Hit(i + 1 - p)
    } else {
        Class::Miss
    }
}

#[cfg(test)]
mod tests {
    use super::matches;
    use proptest::prelude::*;

    #[test]
    fn redis_examples() {
        let m = |p: &str, t: &str| matches(p.as_bytes(), t.as_bytes());
        assert!(m("*", ""));
        assert!(m("*", "anything"));
        assert!(m("h?llo", "hello"));
        assert!(m("h*llo", "heeeello"));
        assert!(m("h[ae]llo", "hallo"));
        assert!(!m("h[ae]llo", "hillo"));
        assert!(m("h[^e]llo", "hallo"));
        assert!(!m("h[^e]llo", "hello"));
        assert!(m("h[a-b]llo", "hbllo"));
        assert!(m("key:*", "key:000000012345"));
        assert!(!m("key:*", "kex:1"));
        assert!(m("a\\*b", "a*b"));
        assert!(!m("a\\*b", "axb"));
        assert!(m("*1", "121"));
        assert!(!m("?", ""));
        assert!(m("[", "["));
    }

    #[test]
    fn pathological_pattern_is_fast() {
        let text = vec![b'a'; 10_000];
        let mut pat = b"*a".repeat(50);
        pat.push(b'b');
        let t = std::time::Instant::now();
        assert!(!matches(&pat, &text));
        assert!(t.elapsed().as_secs() < 2);
    }

    proptest! {
        #[test]
        fn never_panics(p in proptest::collection::vec(any::<u8>(), 0..20), t in proptest::collection::vec(any::<u8>(), 0..20)) {
            let _ = matches(&p, &t);
        }

        #[test]
        fn literal_matches_itself(t in "[a-z0-9:]{0,12}") {
            prop_assert!(matches(t.as_bytes(), t.as_bytes()));
        }
    }
}
