//! A heap buffer whose start is aligned for direct I/O, built without `unsafe`: it
//! over-allocates and starts at the first aligned address inside.

/// A zeroed buffer of `len` bytes starting at an address aligned to `align`.
#[derive(Debug)]
pub struct AlignedBuf {
    raw: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    /// A zeroed buffer of `len` bytes aligned to `align` (a power of two; 0 counts as 1).
    pub fn new(len: usize, align: usize) -> Self {
        let align = align.max(1);
        let raw = vec![0u8; len + align];
        let start = raw.as_ptr().align_offset(align).min(align);
        AlignedBuf { raw, start, len }
    }

    /// The buffer's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.raw[self.start..self.start + self.len]
    }

    /// The buffer's bytes, writable.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.raw[self.start..self.start + self.len]
    }

    /// The buffer's length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_is_aligned() {
        for align in [1, 512, 4096] {
            for len in [0, 1, 512, 4096, 10_000] {
                let mut b = AlignedBuf::new(len, align);
                assert_eq!(b.bytes().as_ptr() as usize % align, 0);
                assert_eq!(b.bytes().len(), len);
                assert_eq!(b.bytes_mut().len(), len);
                assert!(b.bytes().iter().all(|&x| x == 0));
            }
        }
    }
}
