//! How client keys (any bytes) become the store's 8-byte keys.
//!
//! - `bytes` (default): a key of at most 8 bytes is right-padded with zero bytes; a longer key
//!   is refused. Trailing zero bytes are therefore not significant: `a` and `a\0` are the same
//!   key, and keys are listed without their padding.
//! - `numeric`: the key's trailing decimal digits are read as a `u64` and stored big-endian, so
//!   keys sort by number. `key:000000012345` (what redis-benchmark sends) is key 12,345. The
//!   part before the digits and leading zeros are not stored: `user:7`, `item:7` and `007` are
//!   the same key. Keys are listed as their decimal number.
//!
//! The mode is chosen when a data directory is first served and recorded in its `KEYMODE`
//! file; serving it with another mode is refused.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use crate::key::{KEY_LEN, Key};

/// Name of the file in the data directory that records the mode.
pub const KEYMODE_FILE: &str = "KEYMODE";

/// The key mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum KeyMode {
    /// At most 8 bytes, right-padded with zeros.
    #[default]
    Bytes,
    /// Trailing decimal digits as a big-endian `u64`.
    Numeric,
}

impl KeyMode {
    /// Maps a client key to a store key, or says why it cannot be one.
    pub fn key(self, raw: &[u8]) -> Result<Key, String> {
        match self {
            KeyMode::Bytes => {
                let mut k = [0u8; KEY_LEN];
                let Some(dst) = k.get_mut(..raw.len()) else {
                    return Err(format!(
                        "key is {} bytes; toykv keys are at most {KEY_LEN} bytes \
                         (or serve with --key-mode numeric)",
                        raw.len()
                    ));
                };
                dst.copy_from_slice(raw);
                Ok(Key(k))
            }
            KeyMode::Numeric => {
                let digits = raw.iter().rev().take_while(|c| c.is_ascii_digit()).count();
                let tail = &raw[raw.len() - digits..];
                if tail.is_empty() {
                    return Err(format!(
                        "key '{}' has no trailing decimal digits (numeric key mode)",
                        String::from_utf8_lossy(raw)
                    ));
                }
                let mut n: u64 = 0;
                for &c in tail {
                    n = n
                        .checked_mul(10)
                        .and_then(|n| n.checked_add(u64::from(c - b'0')))
                        .ok_or_else(|| {
                            format!(
                                "key '{}' has a number larger than {} (numeric key mode)",
                                String::from_utf8_lossy(raw),
                                u64::MAX
                            )
                        })?;
                }
                Ok(Key::from(n))
            }
        }
    }

    /// How a store key is shown to clients (and accepted back by [`key`](Self::key)).
    pub fn show(self, key: Key) -> Vec<u8> {
        match self {
            KeyMode::Bytes => {
                let b = key.bytes();
                let len = b.iter().rposition(|&c| c != 0).map_or(0, |i| i + 1);
                b[..len].to_vec()
            }
            KeyMode::Numeric => key.as_u64().to_string().into_bytes(),
        }
    }

    /// The mode recorded in `dir`, if any.
    pub fn recorded(dir: &Path) -> std::io::Result<Option<KeyMode>> {
        match std::fs::read_to_string(dir.join(KEYMODE_FILE)) {
            Ok(s) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|e: String| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Settles the mode of `dir`: the recorded one, which `wanted` (if given) must match, or
    /// `wanted` (default `bytes`) recorded now.
    pub fn settle(dir: &Path, wanted: Option<KeyMode>) -> Result<KeyMode, String> {
        let path = dir.join(KEYMODE_FILE);
        let recorded =
            Self::recorded(dir).map_err(|e| format!("reading {}: {e}", path.display()))?;
        match (recorded, wanted) {
            (Some(r), Some(w)) if r != w => Err(format!(
                "{} was created with --key-mode {r}; it cannot be served with --key-mode {w}",
                dir.display()
            )),
            (Some(r), _) => Ok(r),
            (None, w) => {
                let mode = w.unwrap_or_default();
                std::fs::create_dir_all(dir)
                    .and_then(|()| std::fs::write(&path, format!("{mode}\n")))
                    .and_then(|()| std::fs::File::open(dir)?.sync_all())
                    .map_err(|e| format!("writing {}: {e}", path.display()))?;
                Ok(mode)
            }
        }
    }
}

impl fmt::Display for KeyMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyMode::Bytes => "bytes",
            KeyMode::Numeric => "numeric",
        })
    }
}

impl FromStr for KeyMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "bytes" => Ok(KeyMode::Bytes),
            "numeric" => Ok(KeyMode::Numeric),
            other => Err(format!("unknown key mode '{other}' (bytes or numeric)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_mode_pads_and_refuses_long_keys() {
        let m = KeyMode::Bytes;
        assert_eq!(m.key(b"foo").unwrap().bytes(), *b"foo\0\0\0\0\0");
        assert_eq!(m.key(b"").unwrap().bytes(), [0; 8]);
        assert_eq!(m.key(b"12345678").unwrap().bytes(), *b"12345678");
        assert!(m.key(b"123456789").unwrap_err().contains("at most 8 bytes"));
        assert_eq!(m.show(m.key(b"foo").unwrap()), b"foo");
        assert_eq!(m.show(m.key(b"a\0b").unwrap()), b"a\0b");
    }

    #[test]
    fn numeric_mode_reads_trailing_digits_in_order() {
        let m = KeyMode::Numeric;
        let a = m.key(b"key:000000012345").unwrap();
        assert_eq!(a.as_u64(), 12345);
        assert!(m.key(b"key:000000000999").unwrap() < a);
        assert_eq!(m.key(b"18446744073709551615").unwrap().as_u64(), u64::MAX);
        assert!(
            m.key(b"18446744073709551616")
                .unwrap_err()
                .contains("larger")
        );
        assert!(m.key(b"nodigits").unwrap_err().contains("no trailing"));
        assert!(m.key(b"").is_err());
        assert_eq!(m.show(a), b"12345");
        assert_eq!(m.key(&m.show(a)).unwrap(), a);
    }

    #[test]
    fn mode_is_recorded_and_enforced() {
        let d = crate::testing::tempdir();
        assert_eq!(KeyMode::recorded(d.path()).unwrap(), None);
        assert_eq!(
            KeyMode::settle(d.path(), Some(KeyMode::Numeric)),
            Ok(KeyMode::Numeric)
        );
        assert_eq!(KeyMode::settle(d.path(), None), Ok(KeyMode::Numeric));
        let e = KeyMode::settle(d.path(), Some(KeyMode::Bytes)).unwrap_err();
        assert!(e.contains("--key-mode numeric"), "{e}");
        std::fs::write(d.path().join(KEYMODE_FILE), "weird\n").unwrap();
        assert!(KeyMode::settle(d.path(), None).is_err());
    }
}
