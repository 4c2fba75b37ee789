//! The replication backlog: the latest bytes of the replication stream, in memory, so that a
//! replica that lost its link for a moment continues where it stopped (`+CONTINUE`) instead
//! of copying the whole store again.
//!
//! Offsets count bytes of the stream since this server's replication id began (Redis's
//! `master_repl_offset`): the backlog holds the bytes `[start, end)`, and `end` is the
//! offset of the stream. It keeps at least the last `size` bytes, and more while a replica
//! still needs them (its position is pinned, see [`Backlog::trim`]), up to `hard` bytes: past
//! that, the oldest go anyway and a replica that needed them is dropped (it syncs again).

use std::collections::VecDeque;

/// The latest bytes of the stream.
#[derive(Debug)]
pub(crate) struct Backlog {
    bytes: VecDeque<u8>,
    /// Offset of the first byte held.
    start: u64,
    /// Bytes kept whatever the replicas need.
    size: usize,
    /// Most bytes kept for replicas that are behind.
    hard: usize,
}

impl Backlog {
    /// An empty backlog whose stream is at `offset`.
    pub(crate) fn new(offset: u64, size: usize) -> Backlog {
        Backlog {
            bytes: VecDeque::new(),
            start: offset,
            size: size.max(1),
            hard: size.max(1).saturating_mul(4).max(256 << 20),
        }
    }

    /// The offset of the first byte held.
    pub(crate) fn start(&self) -> u64 {
        self.start
    }

    /// The offset after the last byte: the stream's offset.
    pub(crate) fn end(&self) -> u64 {
        self.start + self.bytes.len() as u64
    }

    /// Bytes held.
    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }

    /// The size it keeps at least.
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// Appends `b` to the stream.
    pub(crate) fn push(&mut self, b: &[u8]) {
        self.bytes.extend(b);
    }

    /// Drops the oldest bytes beyond `size`, but not those at or after `pinned` (the oldest
    /// position a replica still needs) unless the backlog is past its hard limit.
    pub(crate) fn trim(&mut self, pinned: Option<u64>) {
        let over = self.bytes.len().saturating_sub(self.size);
        if over == 0 {
            return;
        }
        let keep_from = match pinned {
            Some(p) if self.bytes.len() <= self.hard => p.max(self.start),
            Some(_) => self.end() - self.hard as u64,
            None => self.end(),
        };
        let drop = over.min((keep_from - self.start) as usize);
        self.bytes.drain(..drop);
        self.start += drop as u64;
    }

    /// Up to `max` bytes from offset `from`: `None` when `from` is no longer (or not yet)
    /// held.
    pub(crate) fn read(&self, from: u64, max: usize) -> Option<Vec<u8>> {
        if from < self.start || from > self.end() {
            return None;
        }
        let at = (from - self.start) as usize;
        let n = max.min(self.bytes.len() - at);
        let (a, b) = self.bytes.as_slices();
        let mut out = Vec::with_capacity(n);
        if at < a.len() {
            let end = (at + n).min(a.len());
            out.extend_from_slice(&a[at..end]);
            out.extend_from_slice(&b[..n - (end - at)]);
        } else {
            out.extend_from_slice(&b[at - a.len()..at - a.len() + n]);
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_bytes_and_what_replicas_need() {
        let mut b = Backlog::new(100, 4);
        b.push(b"abcdef");
        assert_eq!((b.start(), b.end()), (100, 106));
        b.trim(None);
        assert_eq!((b.start(), b.end()), (102, 106));
        assert_eq!(b.read(102, 10).as_deref(), Some(&b"cdef"[..]));
        assert_eq!(b.read(101, 10), None);
        assert_eq!(b.read(106, 10).as_deref(), Some(&b""[..]));
        assert_eq!(b.read(107, 10), None);
        // A replica at 102 keeps bytes from there.
        b.push(b"gh");
        b.trim(Some(102));
        assert_eq!(b.start(), 102);
        b.trim(Some(105));
        assert_eq!(b.start(), 104);
        assert_eq!(b.read(104, 2).as_deref(), Some(&b"ef"[..]));
    }

    #[test]
    fn reads_match_a_model_across_the_ring_wrapping() {
        let mut b = Backlog::new(0, 100);
        let mut model: Vec<u8> = Vec::new();
        let mut next = 0u8;
        for round in 0..200usize {
            let chunk: Vec<u8> = (0..(round * 7) % 61)
                .map(|_| {
                    next = next.wrapping_add(1);
                    next
                })
                .collect();
            b.push(&chunk);
            model.extend_from_slice(&chunk);
            b.trim(None);
            let start = b.start() as usize;
            assert_eq!(b.end() as usize, model.len());
            for from in [start, start + 1, (start + model.len()) / 2, model.len()] {
                let from = from.min(model.len());
                let got = b.read(from as u64, 37).unwrap();
                let end = (from + 37).min(model.len());
                assert_eq!(got, model[from..end], "round {round} from {from}");
            }
        }
    }

    #[test]
    fn a_replica_too_far_behind_gives_way_past_the_hard_limit() {
        let mut b = Backlog::new(0, 1);
        let big = vec![7u8; b.hard + 10];
        b.push(&big);
        b.trim(Some(0));
        assert_eq!(b.len(), b.hard);
        assert_eq!(b.read(0, 1), None);
    }
}
