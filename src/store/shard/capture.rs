//! What a snapshot takes of one shard (see [`crate::store`]'s `snapshot`): under the
//! shard's lock, the shape of its files at that moment; outside it, a pause of garbage
//! collection so that those files stay as they were while they are read.
//!
//! Why the files stay: records below the captured log length are never rewritten; `.v` files
//! never change once renamed into place and are removed only by garbage collection, which a
//! pin stops ([`Shard::pin`]); a bank being written out becomes its `.v` file
//! ([`Shard::written`] waits for it). The one part that can change is the bank puts fill — it
//! is handed to the next section once full and its slots are used again — so its filled slots
//! are copied while the lock is held.

use std::path::PathBuf;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::io::FileIo;

use super::{Held, Shard};

/// One shard's state at the moment of a snapshot.
#[derive(Debug)]
pub(crate) struct Capture {
    /// The shard's directory.
    pub(crate) dir: PathBuf,
    /// Slots per section.
    pub(crate) slots: u32,
    /// Records in the log.
    pub(crate) records: u64,
    /// The first key section, and how many there are.
    pub(crate) first: u32,
    pub(crate) key_sections: u32,
    /// The value sections in `.v` files, with their files.
    pub(crate) values: Vec<(u32, PathBuf, Arc<dyn FileIo>)>,
    /// Value sections being written out: their `.v` files are awaited.
    pub(crate) outgoing: Vec<u32>,
    /// The bank puts fill: its number, and its header page and filled slots.
    pub(crate) bank: Option<(usize, Vec<u8>)>,
}

impl Held<'_> {
    /// The shard's state now (see [`Capture`]).
    pub(crate) fn capture(&self) -> Result<Capture> {
        let i = &self.0.inner;
        let (outgoing, bank) = i.buffer.capture()?;
        let values = i
            .values
            .sections()
            .filter_map(|n| i.values.file(n).map(|(p, f)| (n, p, f)))
            .collect();
        Ok(Capture {
            dir: i.dir.clone(),
            slots: i.slots,
            records: i.next_seq,
            first: i.first,
            key_sections: i.keys.len() as u32,
            values,
            outgoing,
            bank,
        })
    }
}

impl Shard {
    /// Stops garbage collection from removing files until [`unpin`](Self::unpin): waits for
    /// a step under way to end. Puts are not held back meanwhile (collection cannot free
    /// space), so value files may grow past their usual bound while a snapshot runs.
    pub(crate) fn pin(&self) {
        let _one = self.collecting.lock().unwrap_or_else(|p| p.into_inner());
        let mut g = self.lock();
        g.inner.pinned += 1;
        g.inner.weigh();
    }

    /// Ends a [`pin`](Self::pin).
    pub(crate) fn unpin(&self) {
        let mut g = self.lock();
        g.inner.pinned = g.inner.pinned.saturating_sub(1);
        g.inner.weigh();
    }

    /// The file of value section `n`, once the write-out under way when a snapshot began has
    /// put it in place.
    pub(crate) fn written(&self, n: u32) -> Result<(PathBuf, Arc<dyn FileIo>)> {
        let mut g = self.lock();
        loop {
            if let Some(f) = g.inner.values.file(n) {
                return Ok(f);
            }
            g.inner.writable()?;
            if !g.inner.buffer.outgoing().contains(&n) {
                let what = format!("value section {n:08x} left the buffer without a file");
                return Err(Error::internal(&g.inner.dir, what));
            }
            self.freed.wait(&mut g);
        }
    }
}
