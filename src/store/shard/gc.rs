//! Garbage collection: reclaiming the space of overwritten and deleted values and records.
//!
//! **Value sections.** When a shard's value files hold more than [`SPACE_LIMIT`] times its
//! live values, the section with the fewest live values is collected: it is read whole (one
//! direct read), the records of its latest fill are scanned for those the index still names,
//! and each such value is put again (a normal put: new slot, new record, same value). Then the
//! shard is synced, and only then is the `.v` file removed (and the directory synced), so a
//! crash at any point leaves either the old value or the moved one reachable, never neither.
//! The section number is then free for a new fill.
//!
//! **Key sections.** The first key section is removed once none of its records is live: the
//! shard syncs with a mark that names the next section as first, then removes the file (a
//! crash in between leaves a file that open removes). While the key sections hold more than
//! twice the live records, the first section's live records are moved (their values put
//! again) so it can go: open time follows the live keys, not the history.
//!
//! **Holding writers back.** A writer faster than collection (a sustained stream of
//! overwrites) would let value files grow without bound. When the value files are past
//! [`HOLD_LIMIT`](super::HOLD_LIMIT) times their live values plus a section, and a
//! section is worth collecting, each put waits (up to 100 ms) for collection to free one:
//! puts then go at the speed of collection, and the value files stay within about twice the
//! live values (`cargo bench --bench scale -- gc`). Collection starts at 1.5 times: a looser
//! bound than the 1.15 and 1.2 used before issue 14, which made collection move twice as many
//! values under sustained overwrites (`benches/redis_compare.sh`, BENCHMARKS.md).
//!
//! **Damage.** A section holding a live value that fails its checksum, or that cannot be read
//! (`EIO`), cannot be emptied: its other live values are moved, and the section is set aside
//! (`Inner::gc_skip`, shown in [`Stats::gc_set_aside`](crate::Stats::gc_set_aside) and INFO):
//! never picked again, and not counted as space collection can free, so puts are not held back
//! for it. The file stays as it is: a get of the damaged key reports the corruption, and so
//! does `toykv check`. Key compaction likewise leaves the record of a value it cannot read.
//!
//! Work is done in small steps ([`Shard::gc_step`]), each taking the shard's lock only for
//! memory work, so puts and gets go on meanwhile.

use crate::error::{Damage, Error, Result};
use crate::format::{Op, PAGE, RECORD_SIZE, Record, SLOT_SIZE, record::value_crc};
use crate::key::Key;

use super::{Inner, Shard};
use crate::store::values;

/// Value files may hold this many times the live values before collection starts.
pub(crate) const SPACE_LIMIT: f64 = 1.5;
impl Inner {
    /// The section with the fewest live values among those worth collecting, if the value
    /// files collection can reduce (on disk, not in a bank) hold more than `limit` times
    /// their live values plus `slack` slots.
    pub(super) fn over(&self, limit: f64, slack: u64) -> Option<u32> {
        let on_disk: Vec<(u32, u32)> = self
            .values
            .sections()
            .filter(|&n| self.buffer.holding(n).is_none() && !self.gc_skip.contains_key(&n))
            .map(|n| (n, self.usage.live(n)))
            .collect();
        let live: u64 = on_disk.iter().map(|&(_, c)| u64::from(c)).sum();
        let space = on_disk.len() as u64 * u64::from(self.slots);
        if space as f64 <= live as f64 * limit + slack as f64 {
            return None;
        }
        // Only a section with at least an eighth dead is worth its moves: each collection
        // then frees that much, so collection cannot churn without new writes.
        on_disk
            .into_iter()
            .filter(|&(_, c)| worth(c, self.slots))
            .min_by_key(|&(_, c)| c)
            .map(|(n, _)| n)
    }
}

/// Whether a section with `live` of its `slots` values live is worth collecting.
pub(crate) fn worth(live: u32, slots: u32) -> bool {
    live <= slots - slots / 8
}

/// Records scanned per lock hold.
const CHUNK: u64 = 1024;

/// A live record found by a scan: key, record, slot index, length, value checksum.
type Found = (Key, u64, u32, u16, u32);

impl Shard {
    /// Does one unit of collection, if any is due; returns whether it did.
    pub(crate) fn gc_step(&self) -> Result<bool> {
        let _one = self.collecting.lock().unwrap_or_else(|p| p.into_inner());
        // A snapshot reads the files as they were when it began: none goes meanwhile.
        if self.lock().inner.pinned > 0 {
            return Ok(false);
        }
        if self.drop_first_keys()? {
            return Ok(true);
        }
        if let Some(n) = self.victim() {
            self.collect_section(n)?;
            return Ok(true);
        }
        self.compact_keys()
    }

    /// Runs collection until nothing is due.
    pub(crate) fn gc(&self) -> Result<()> {
        while self.gc_step()? {}
        Ok(())
    }

    /// The value section to collect, if the shard's value files are over the limit.
    fn victim(&self) -> Option<u32> {
        let g = self.lock();
        if g.inner.failed.is_some() {
            return None;
        }
        g.inner.over(SPACE_LIMIT, u64::from(g.inner.slots) / 2)
    }

    /// Moves the live values out of section `n`, syncs, and removes it.
    fn collect_section(&self, n: u32) -> Result<()> {
        let (window, file) = {
            let g = self.lock();
            let window = g.inner.usage.window(n, g.inner.next_seq);
            (window, g.inner.values.file(n))
        };
        let Some((path, file)) = file else {
            self.skip(n);
            return Ok(());
        };
        // Without a fill window (its key sections are gone, so none of its records is live)
        // there is nothing to move: the section goes once the sync below is done.
        let (moved, damage) = match window {
            Some(window) => self.move_live(n, window, &path, &*file)?,
            None => (0, None),
        };
        if let Some(e) = damage {
            // A value that cannot be read (or fails its checksum) cannot be moved, so the
            // section cannot go: set it aside, or collection would pick it again forever
            // and puts would be held back for space it cannot free.
            tracing::error!("garbage collection set aside {}: {e}", path.display());
            let mut g = self.lock();
            g.inner.counters.gc_moved += moved;
            g.inner.gc_skip.insert(n, e.to_string());
            g.inner.weigh();
            return Ok(());
        }
        crate::kill::point("gc-moved");
        self.sync()?;
        crate::kill::point("gc-synced");
        let mut g = self.lock();
        g.inner.counters.gc_moved += moved;
        if g.inner.usage.live(n) > 0 {
            // Some live value was not found in the section's fill: leave the section alone.
            let why = format!(
                "{} live values not found in its records",
                g.inner.usage.live(n)
            );
            tracing::warn!("garbage collection left {}: {why}", path.display());
            g.inner
                .gc_skip
                .insert(n, format!("{}: {why}", path.display()));
            g.inner.weigh();
            return Ok(());
        }
        let vfs = g.inner.vfs.clone();
        let r = g.inner.values.remove(&*vfs, n);
        g.inner.guard(r)?;
        g.inner.usage.forget(n);
        g.inner.counters.gc_sections += 1;
        g.inner.weigh();
        Ok(())
    }

    /// Puts again the live values of section `n` found among the records of `window`;
    /// returns how many it moved and, if the section could not be read or a live value in it
    /// fails its checksum, that damage (the other live values are still moved).
    fn move_live(
        &self,
        n: u32,
        window: std::ops::Range<u64>,
        path: &std::path::Path,
        file: &dyn crate::io::FileIo,
    ) -> Result<(u64, Option<Error>)> {
        let slots = self.lock().inner.slots;
        let data = match values::read_all(path, file, slots) {
            Ok(data) => data,
            Err(e) => return Ok((0, Some(e))),
        };
        let bytes = data.bytes();
        let (mut moved, mut damage) = (0u64, None);
        let mut live = Vec::new();
        let mut at = window.start;
        while at < window.end {
            let to = (at + CHUNK).min(window.end);
            live.extend(self.live_in(at..to, Some(n))?);
            at = to;
        }
        // In key order: keys that were scattered over the section land in neighbouring slots,
        // where a later scan reads them together (see `values::read_slots`).
        live.sort_unstable_by_key(|f| f.0);
        for (key, seq, index, len, want) in live {
            let off = PAGE + index as usize * SLOT_SIZE;
            let value = &bytes[off..off + usize::from(len)];
            let got = value_crc(value);
            if got != want {
                damage.get_or_insert_with(|| {
                    Error::corrupt(
                        path,
                        off as u64, Damage::Value,
                        format!(
                            "value of {key:?} has checksum {got:08x}, its record {seq} says {want:08x}"
                        ),
                    )
                });
                continue;
            }
            moved += u64::from(self.relocate(key, seq, value)?);
        }
        Ok((moved, damage))
    }

    fn skip(&self, n: u32) {
        let mut g = self.lock();
        let why = format!(
            "{}: value section is not open",
            g.inner.values.path(n).display()
        );
        g.inner.gc_skip.insert(n, why);
        g.inner.weigh();
    }

    /// The live put records among records `range` (those into value section `only`, if
    /// given). Records of removed key sections are skipped: none of them was live.
    fn live_in(&self, range: std::ops::Range<u64>, only: Option<u32>) -> Result<Vec<Found>> {
        let g = self.lock();
        let i = &g.inner;
        let mut found = Vec::new();
        for seq in range {
            let Ok((sec, at)) = i.locate(seq) else {
                continue;
            };
            let mut raw = [0u8; RECORD_SIZE];
            i.keys[sec].read_raw(at, &mut raw)?;
            let Ok(rec) = Record::decode(&raw, seq) else {
                continue;
            };
            let Op::Put {
                slot,
                len,
                value_crc,
            } = rec.op
            else {
                continue;
            };
            if only.is_some_and(|n| slot / i.slots != n) || i.index.get(rec.key) != Some(seq) {
                continue;
            }
            found.push((rec.key, seq, slot % i.slots, len, value_crc));
        }
        Ok(found)
    }

    /// Removes the first key section when none of its records is live.
    fn drop_first_keys(&self) -> Result<bool> {
        let held = self.syncing.lock().unwrap_or_else(|p| p.into_inner());
        let next = {
            let g = self.lock();
            let i = &g.inner;
            if i.failed.is_some() || i.keys.len() < 2 || i.usage.first_live() > 0 {
                return Ok(false);
            }
            i.first + 1
        };
        self.sync_locked(&held, Some(next))?;
        crate::kill::point("gc-keys-marked");
        let mut g = self.lock();
        let section = g.inner.keys.remove(0);
        g.inner.first = next;
        g.inner.usage.drop_first();
        g.inner.counters.gc_key_sections += 1;
        let (vfs, dir) = (g.inner.vfs.clone(), g.inner.dir.clone());
        drop(g);
        let r = vfs
            .remove(&section.path)
            .map_err(|e| Error::io("remove", &section.path, e))
            .and_then(|()| vfs.sync_dir(&dir).map_err(|e| Error::io("fsync", &dir, e)));
        self.lock().inner.guard(r)?;
        Ok(true)
    }

    /// Moves the live records out of the first key section while the key sections hold more
    /// than twice the live records (however many of the first one's are live: the sections
    /// behind it are sparse on average, and each move frees one section); returns whether it
    /// moved any.
    fn compact_keys(&self) -> Result<bool> {
        let range = {
            let g = self.lock();
            let i = &g.inner;
            let s = u64::from(i.slots);
            let live = i.usage.first_live();
            let pinned = i.keys.len() > 2 && i.usage.live_records() * 2 < i.keys.len() as u64 * s;
            if i.failed.is_some() || live == 0 || !pinned {
                return Ok(false);
            }
            let start = u64::from(i.first) * s;
            start..start + s
        };
        let mut moved = 0u64;
        let mut at = range.start;
        while at < range.end {
            let to = (at + CHUNK).min(range.end);
            for (key, seq, ..) in self.live_in(at..to, None)? {
                let fetch = {
                    let g = self.lock();
                    if g.inner.index.get(key) != Some(seq) {
                        continue;
                    }
                    g.inner.fetch(key, seq)?
                };
                let value = match fetch.finish() {
                    Ok(value) => value,
                    // A damaged or unreadable value cannot be moved: its record stays (a get
                    // reports the damage, and so does `toykv check`).
                    Err(Error::Corrupt { .. } | Error::Io { .. }) => continue,
                    Err(e) => return Err(e),
                };
                moved += u64::from(self.relocate(key, seq, &value)?);
            }
            at = to;
        }
        crate::kill::point("gc-compacted");
        self.lock().inner.counters.gc_moved += moved;
        Ok(moved > 0)
    }
}
