//! The write path of a shard: put, delete, and moving on to a new bank when one is full.
//!
//! A put copies its value into the next slot of the active bank, then writes its key record
//! into the key section; both are stores into shared maps, so they survive a process crash as
//! soon as the put returns. When the active bank is full, the put hands it to the background
//! writer and moves on to the other bank — unless that one is still being written out, in
//! which case the put waits ([`Step::Wait`]). The new bank's header page names the section it
//! now holds before any value goes in: the lowest section number not in use, since garbage
//! collection frees numbers.

use super::{Inner, Job, Shard};
use crate::error::{Context, Error, Result};
use crate::format::{MAX_SLOTS, Op, Record};
use crate::key::{Key, VALUE_MAX};

use crate::store::index::SPAN;
use crate::store::keys::Section;

/// What a write step did.
#[derive(Debug)]
pub(super) enum Step<T> {
    /// Done, with the record written.
    Done(T, u64),
    /// Both banks are busy: wait for a write-out to finish, then try again.
    Wait,
}

impl Inner {
    /// Puts `value` at `key`; `crc` is [`value_crc`](crate::format::record::value_crc) of `value`, computed by the caller
    /// before it took the shard's lock.
    pub(super) fn put(&mut self, key: Key, value: &[u8], crc: u32) -> Result<Step<()>> {
        self.writable()?;
        if value.len() > VALUE_MAX {
            return Err(Error::ValueTooLong {
                len: value.len(),
                max: VALUE_MAX,
            });
        }
        let next = match self.buffer.next() {
            Some(next) => next,
            None if self.advance()? => self
                .buffer
                .next()
                .ok_or_else(|| Error::internal(&self.buffer.path, "a new bank has no room"))?,
            None => return Ok(Step::Wait),
        };
        let (section, index) = next;
        let slot = section * self.slots + index;
        let seq = self.next_seq;
        let rec = Record {
            key,
            seq,
            op: Op::Put {
                slot,
                len: value.len() as u16,
                value_crc: crc,
            },
        };
        let (sec, at) = self.section_for(seq)?;
        self.buffer.fill(value)?;
        self.keys[sec].write(at, &rec.encode())?;
        if let Some(old) = self.index.insert(key, seq) {
            self.usage.kill(old);
        }
        self.usage.put(seq, section);
        self.next_seq += 1;
        Ok(Step::Done((), seq))
    }

    /// Deletes `key`: whether it existed, and the record written (if any).
    pub(super) fn delete(&mut self, key: Key) -> Result<(bool, u64)> {
        self.writable()?;
        let Some(old) = self.index.get(key) else {
            return Ok((false, 0));
        };
        let seq = self.next_seq;
        let rec = Record {
            key,
            seq,
            op: Op::Delete,
        };
        let (sec, at) = self.section_for(seq)?;
        self.keys[sec].write(at, &rec.encode())?;
        self.index.remove(key);
        self.usage.kill(old);
        self.usage.delete(seq);
        self.next_seq += 1;
        Ok((true, seq))
    }

    /// Like [`locate`](Self::locate), creating the key section when `seq` starts a new one.
    pub(super) fn section_for(&mut self, seq: u64) -> Result<(usize, u32)> {
        let s = u64::from(self.slots);
        within_span(seq, self.first, self.slots)?;
        let want = seq / s;
        let have = u64::from(self.first) + self.keys.len() as u64;
        if want == have {
            let Ok(n) = u32::try_from(want) else {
                return Err(Error::Full {
                    what: "key records",
                    limit: (u64::from(u32::MAX) + 1) * s,
                });
            };
            let r = Section::create(&*self.vfs, &self.dir, n, self.slots);
            let section = self.guard(r)?;
            crate::kill::point("key-section");
            let r = self.vfs.sync_dir(&self.dir).ctx("fsync", &self.dir);
            self.guard(r)?;
            self.keys.push(section);
        }
        self.locate(seq)
    }

    /// Moves puts on to the other bank (see `Buffer::rotate`), giving it a new section;
    /// the full bank goes to the background writer, or is written out here when none runs.
    /// `false` when the other bank is still being written out.
    fn advance(&mut self) -> Result<bool> {
        if !self.buffer.ready() {
            return Ok(false);
        }
        let n = self.free_section()?;
        let values = &self.values;
        let r = self.buffer.rotate(n, |s| values.has(s));
        let full = self.guard(r)?;
        self.usage.track(n);
        if let Some(bank) = full {
            let job = Job {
                shard: self.id,
                bank,
            };
            let sent = self.jobs.as_ref().is_some_and(|j| j.send(job).is_ok());
            if !sent {
                let r = self.write_out(bank);
                self.buffer.written_out(bank);
                r?;
            }
        }
        self.weigh();
        Ok(true)
    }

    /// Writes bank `bank` out to its value section here and now (recovery, or no background
    /// writer), and registers the file.
    pub(super) fn write_out(&mut self, bank: usize) -> Result<()> {
        let Some(n) = self.buffer.sections()[bank] else {
            return Ok(());
        };
        let out = self.buffer.outbound(bank);
        let r = self.values.write(&*self.vfs, n, &out);
        let (path, file) = self.guard(r)?;
        self.values.insert(n, path, file);
        self.counters.flushes += 1;
        Ok(())
    }

    /// The lowest value section number in use by neither a value file nor a bank.
    fn free_section(&self) -> Result<u32> {
        let limit = MAX_SLOTS / u64::from(self.slots);
        lowest_free(limit, |n| {
            self.values.has(n) || self.buffer.holding(n).is_some()
        })
        .ok_or(Error::Full {
            what: "value slots",
            limit: MAX_SLOTS,
        })
    }
}

impl Shard {
    /// Writes bank `bank` out (a background writer's job), keeps a copy of its slots in
    /// memory when copies are kept (see `values.rs`), then frees the bank.
    pub(crate) fn write_out(&self, bank: usize) {
        let job = {
            let mut g = self.lock();
            let (dir, direct) = g.inner.values.place();
            let n = g.inner.buffer.sections()[bank];
            n.map(|n| {
                let out = g.inner.buffer.outbound(bank);
                let copy = g.inner.values.copy_buffer();
                (n, out, g.inner.vfs.clone(), dir, direct, copy)
            })
        };
        let r = job.map(|(n, out, vfs, dir, direct, copy)| {
            crate::kill::point("write-out");
            let written = crate::store::values::write_file(&*vfs, &dir, direct, n, &out);
            // The bank stays unwritten until `written_out` below: copy its slots now.
            let copy = copy.map(|mut copy| out.copy_slots(&mut copy).map(|()| copy));
            (n, written, copy)
        });
        let mut g = self.lock();
        match r {
            Some((n, Ok((path, file)), copy)) => {
                g.inner.values.insert(n, path, file);
                match copy {
                    Some(Ok(copy)) => g.inner.values.hold_copy(n, copy),
                    Some(Err(e)) => {
                        // Refused by the kernel (a seccomp profile, say): it will be again.
                        tracing::warn!("keeping no copies of value sections in memory: {e}");
                        g.inner.values.keep_copies(0);
                    }
                    None => {}
                }
                g.inner.counters.flushes += 1;
            }
            Some((n, Err(e), _)) => {
                let path = g.inner.values.path(n);
                tracing::error!("writing value section {}: {e}", path.display());
                if g.inner.failed.is_none() {
                    g.inner.failed = Some(("write value section", path, e.to_string()));
                }
            }
            None => {}
        }
        g.inner.buffer.written_out(bank);
        drop(g);
        self.freed.notify_all();
    }
}

/// The lowest number below `limit` that is not `taken`.
fn lowest_free(limit: u64, taken: impl Fn(u32) -> bool) -> Option<u32> {
    (0..limit).map(|n| n as u32).find(|&n| !taken(n))
}

/// Every live record is in a key section from the first on: record `seq` may be written only
/// while it is within the index's [`SPAN`] of the first section's first record (see
/// `index`). Key compaction moves the first section's live records once the sections hold
/// twice the live ones, so a shard meets this only past about 2^31 live keys.
fn within_span(seq: u64, first: u32, slots: u32) -> Result<()> {
    if seq.saturating_sub(u64::from(first) * u64::from(slots)) < SPAN {
        return Ok(());
    }
    Err(Error::Full {
        what: "key records from the first key section's first to the newest",
        limit: SPAN,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn section_numbers_run_out_with_none_not_a_wraparound() {
        assert_eq!(lowest_free(4, |n| n == 0 || n == 2), Some(1));
        assert_eq!(lowest_free(4, |n| n < 3), Some(3));
        assert_eq!(lowest_free(4, |_| true), None);
        assert_eq!(lowest_free(0, |_| false), None);
    }

    #[test]
    fn records_past_the_span_of_the_first_section_are_refused() {
        let first = 7u32;
        let base = u64::from(first) * 16;
        assert!(within_span(base, first, 16).is_ok());
        assert!(within_span(base + SPAN - 1, first, 16).is_ok());
        let e = within_span(base + SPAN, first, 16).unwrap_err();
        assert!(matches!(e, Error::Full { limit: SPAN, .. }), "{e}");
    }
}
