//! Keys and values: the data model.
//!
//! A [`Key`] is 8 bytes, ordered as bytes. A `u64` converts big-endian, so numeric order and
//! key order agree. Every 8-byte pattern is a valid key, all zeros included.
//!
//! A [`Value`] is 0 to [`VALUE_MAX`] bytes, kept inline (no allocation) and returned byte-exact.
//! Every byte pattern is valid: there are no sentinel values.

use std::fmt;
use std::ops::Deref;

use crate::error::{Error, Result};

/// Bytes in a key.
pub const KEY_LEN: usize = size_of::<u64>();

/// Largest value, in bytes; it is also the size of a value slot on disk.
pub const VALUE_MAX: usize = 256;

/// An 8-byte key, ordered as bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Key(pub [u8; KEY_LEN]);

impl Key {
    /// The key as a big-endian `u64` (the inverse of `Key::from(u64)`).
    pub fn as_u64(self) -> u64 {
        u64::from_be_bytes(self.0)
    }

    /// The key's bytes.
    pub fn bytes(self) -> [u8; KEY_LEN] {
        self.0
    }
}

impl From<u64> for Key {
    fn from(n: u64) -> Self {
        Key(n.to_be_bytes())
    }
}

impl From<[u8; KEY_LEN]> for Key {
    fn from(b: [u8; KEY_LEN]) -> Self {
        Key(b)
    }
}

impl From<&[u8; KEY_LEN]> for Key {
    fn from(b: &[u8; KEY_LEN]) -> Self {
        Key(*b)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({:016x})", self.as_u64())
    }
}

/// A value of 0 to [`VALUE_MAX`] bytes, held inline.
#[derive(Clone)]
pub struct Value {
    len: u16,
    buf: [u8; VALUE_MAX],
}

impl Value {
    /// Copies `bytes` into a value; fails if it is longer than [`VALUE_MAX`].
    pub fn new(bytes: &[u8]) -> Result<Self> {
        let mut v = Value::empty();
        let Some(dst) = v.buf.get_mut(..bytes.len()) else {
            return Err(Error::ValueTooLong {
                len: bytes.len(),
                max: VALUE_MAX,
            });
        };
        dst.copy_from_slice(bytes);
        v.len = bytes.len() as u16;
        Ok(v)
    }

    /// The empty value.
    pub(crate) fn empty() -> Self {
        Value {
            len: 0,
            buf: [0; VALUE_MAX],
        }
    }

    /// The whole slot and the length to set, for filling from disk.
    pub(crate) fn slot_mut(&mut self) -> &mut [u8; VALUE_MAX] {
        &mut self.buf
    }

    /// Sets the length after [`slot_mut`](Self::slot_mut); clamps to the slot.
    pub(crate) fn set_len(&mut self, len: usize) {
        self.len = len.min(VALUE_MAX) as u16;
    }

    /// The value's bytes as a new `Vec`.
    pub fn to_vec(&self) -> Vec<u8> {
        self.deref().to_vec()
    }
}

impl Deref for Value {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }
}

impl AsRef<[u8]> for Value {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        self[..] == other[..]
    }
}

impl Eq for Value {}

impl PartialEq<[u8]> for Value {
    fn eq(&self, other: &[u8]) -> bool {
        &self[..] == other
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::str::from_utf8(self) {
            Ok(s) if s.chars().all(|c| !c.is_control()) => write!(f, "Value({s:?})"),
            _ => write!(f, "Value({:02x?})", &self[..]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u64_keys_sort_numerically() {
        let mut keys: Vec<Key> = [300u64, 2, 1 << 40, 0, u64::MAX, 255, 256]
            .into_iter()
            .map(Key::from)
            .collect();
        keys.sort();
        let back: Vec<u64> = keys.iter().map(|k| k.as_u64()).collect();
        assert_eq!(back, vec![0, 2, 255, 256, 300, 1 << 40, u64::MAX]);
    }

    #[test]
    fn byte_keys_round_trip() {
        let k = Key::from(*b"abcdefgh");
        assert_eq!(k.bytes(), *b"abcdefgh");
        assert_eq!(Key::from(k.as_u64()), k);
    }

    #[test]
    fn value_bounds() {
        assert_eq!(Value::new(&[]).unwrap().len(), 0);
        let full = Value::new(&[0xff; VALUE_MAX]).unwrap();
        assert_eq!(&full[..], &[0xff; VALUE_MAX][..]);
        let err = Value::new(&[0; VALUE_MAX + 1]).unwrap_err();
        assert!(matches!(err, Error::ValueTooLong { len: 257, max: 256 }));
    }

    #[test]
    fn debug_shows_text_or_hex() {
        assert_eq!(format!("{:?}", Value::new(b"hi").unwrap()), "Value(\"hi\")");
        assert_eq!(
            format!("{:?}", Value::new(&[0, 1]).unwrap()),
            "Value([00, 01])"
        );
    }
}
