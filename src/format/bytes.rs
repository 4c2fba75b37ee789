//! Little-endian fields at byte offsets: the one set of helpers every format file uses.
//!
//! Each panics if the field does not fit in `b`, as slicing does; callers pass buffers of the
//! fixed size their format defines.

/// The `N` bytes at `at`.
fn array<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut w = [0; N];
    w.copy_from_slice(&b[at..at + N]);
    w
}

/// The little-endian `u16` at `at`.
pub(super) fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(array(b, at))
}

/// The little-endian `u32` at `at`.
pub(super) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(array(b, at))
}

/// The little-endian `u64` at `at`.
pub(super) fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(array(b, at))
}

/// Writes `v` little-endian at `at`.
pub(super) fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_little_endian_at_their_offset() {
        let b = [9, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 9];
        assert_eq!(u16_at(&b, 1), 0x0201);
        assert_eq!(u32_at(&b, 1), 0x0403_0201);
        assert_eq!(u64_at(&b, 1), 0x0807_0605_0403_0201);
        let mut w = [0u8; 6];
        put_u32(&mut w, 1, 0x0403_0201);
        assert_eq!(w, [0, 1, 2, 3, 4, 0]);
    }
}
