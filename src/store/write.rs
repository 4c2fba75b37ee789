//! The write path: put, delete, the buffer flush, sync, and poisoning after a failed sync.

use super::{Inner, Section};
use crate::error::{Context, Error, Result};
use crate::format::{MAX_SLOTS, Op, Record, record::value_crc};
use crate::key::{Key, VALUE_MAX};

impl Inner {
    fn writable(&self) -> Result<()> {
        match &self.failed {
            None => Ok(()),
            Some((op, path, why)) => Err(Error::Failed {
                op,
                path: path.clone(),
                why: why.clone(),
            }),
        }
    }

    /// Runs a step that syncs: if a sync fails, the kernel may have dropped the data it held,
    /// so the store is poisoned.
    fn guard<T>(&mut self, step: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        let r = step(self);
        if let Err(Error::Io { op, path, source }) = &r
            && matches!(*op, "fdatasync" | "msync" | "fsync")
        {
            self.failed = Some((op, path.clone(), source.to_string()));
        }
        r
    }

    pub(super) fn put(&mut self, key: Key, value: &[u8]) -> Result<()> {
        self.writable()?;
        if value.len() > VALUE_MAX {
            return Err(Error::ValueTooLong {
                len: value.len(),
                max: VALUE_MAX,
            });
        }
        if self.next_slot >= MAX_SLOTS {
            return Err(Error::Full {
                what: "value slots",
                limit: MAX_SLOTS,
            });
        }
        let slot = self.next_slot as u32;
        let (section, index) = (slot / self.slots, slot % self.slots);
        if section != self.buffer.section {
            self.guard(|s| s.flush(section))?;
        }
        let seq = self.next_seq;
        let rec = Record {
            key,
            seq,
            op: Op::Put {
                slot,
                len: value.len() as u16,
                value_crc: value_crc(value),
            },
        };
        let (sec, at) = self.section_for(seq)?;
        self.buffer.write(index, value)?;
        self.keys[sec].write(at, &rec.encode())?;
        self.index.insert(key, seq);
        self.next_seq += 1;
        self.next_slot += 1;
        Ok(())
    }

    pub(super) fn delete(&mut self, key: Key) -> Result<bool> {
        self.writable()?;
        if self.index.get(key).is_none() {
            return Ok(false);
        }
        let seq = self.next_seq;
        let rec = Record {
            key,
            seq,
            op: Op::Delete,
        };
        let (sec, at) = self.section_for(seq)?;
        self.keys[sec].write(at, &rec.encode())?;
        self.index.remove(key);
        self.next_seq += 1;
        Ok(true)
    }

    /// Like [`locate`](Self::locate), creating the section when `seq` starts a new one.
    pub(super) fn section_for(&mut self, seq: u64) -> Result<(usize, u32)> {
        let s = u64::from(self.slots);
        let want = seq / s;
        let have = u64::from(self.first) + self.keys.len() as u64;
        if want == have {
            let Ok(n) = u32::try_from(want) else {
                return Err(Error::Full {
                    what: "key records",
                    limit: (u64::from(u32::MAX) + 1) * s,
                });
            };
            let section = Section::create(&*self.vfs, &self.dir, n, self.slots)?;
            self.vfs.sync_dir(&self.dir).ctx("fsync", &self.dir)?;
            self.keys.push(section);
        }
        self.locate(seq)
    }

    /// Writes the full buffer out as a value section and moves the buffer on to `next`.
    pub(super) fn flush(&mut self, next: u32) -> Result<()> {
        self.values.flush(&*self.vfs, &self.buffer)?;
        self.buffer.reset(next)
    }

    pub(super) fn sync(&mut self) -> Result<()> {
        self.writable()?;
        self.guard(Self::sync_steps)
    }

    fn sync_steps(&mut self) -> Result<()> {
        let s = u64::from(self.slots);
        let base = u64::from(self.buffer.section) * s;
        let used = self.next_slot.saturating_sub(base).min(s) as u32;
        self.buffer.sync(used)?;
        if self.next_seq == self.synced_seq {
            return Ok(());
        }
        let (from, to) = (self.synced_seq, self.next_seq);
        for n in (from / s)..=((to - 1) / s) {
            let (sec, _) = self.locate(n * s)?;
            let a = from.saturating_sub(n * s).min(s) as u32;
            let b = (to - n * s).min(s) as u32;
            self.keys[sec].flush(a, b)?;
        }
        self.generation += 1;
        self.buffer.set_mark(self.generation, to)?;
        self.synced_seq = to;
        Ok(())
    }
}
