//! Flipped bytes: in the headers, sync marks and records of key sections, in the headers and
//! values of value sections, and in the buffer.

use std::collections::BTreeSet;
use std::time::Instant;

use toykv::Error;
use toykv::format::{
    BANKS, HEADER_LEN, KEYS_DATA_AT, MARK_A, MARK_B, MARK_LEN, PAGE, RECORD_SIZE, SLOT_SIZE,
    bank_at,
};

use crate::Tally;
use crate::damage::{case, check_record_offset, flip};
use crate::reference::{Hit, MODES, Mode, Reference};
use crate::{BUF, S, SLOTS, STORE};

/// Value bytes of interest in `file`: the first, middle and last byte of every value stored
/// there and the first padding byte after it.
fn value_offsets(r: &Reference, file: &str) -> BTreeSet<u64> {
    let mut offs = BTreeSet::new();
    for (_, l) in r.puts.iter().flatten().filter(|(_, l)| l.file == file) {
        if l.len > 0 {
            offs.extend([l.off, l.off + l.len / 2, l.off + l.len - 1]);
        }
        if l.len < SLOT_SIZE as u64 {
            offs.insert(l.off + l.len);
        }
    }
    offs
}

#[test]
fn flipped_key_section_bytes() {
    let started = Instant::now();
    let mut t = Tally::default();
    for mode in MODES {
        let r = Reference::build(mode);
        let last = r.keys.len() - 1;
        for (n, name) in r.keys.iter().enumerate() {
            let dense = mode == Mode::Mid;
            let mut offs: BTreeSet<u64> = if n == 0 || n == last {
                (0..HEADER_LEN as u64).collect()
            } else {
                (n as u64 % 4..HEADER_LEN as u64).step_by(4).collect()
            };
            // Where the buffer keeps its sync marks: unused in a key section's header page.
            for m in [MARK_A, MARK_B] {
                let step = if dense || n == last { 1 } else { 5 };
                offs.extend((m..m + MARK_LEN).step_by(step).map(|o| o as u64));
            }
            offs.extend([64, 100, 511, 528, 1040, 2048, 4095]);
            // Every byte of the records of the last section of the mid-sync store, which lie
            // on both sides of its mark; a sample elsewhere.
            let step = match (dense, last - n) {
                (true, 0) => 1,
                (true, 1) => 3,
                (true, _) => 11,
                (false, _) => 13,
            };
            offs.extend(
                (KEYS_DATA_AT + n % step..KEYS_DATA_AT + S * RECORD_SIZE)
                    .step_by(step)
                    .map(|o| o as u64),
            );
            for off in offs {
                let what = format!("{name} byte {off} flipped");
                let e = case(&r, &mut t, &what, &[name], Hit::Nothing, |d| {
                    flip(&d.join(name), off)
                });
                check_record_offset(e, off, &what);
            }
        }
    }
    t.report("flipped key section bytes", started);
}

#[test]
fn flipped_value_section_bytes() {
    let started = Instant::now();
    let mut t = Tally::default();
    for mode in MODES {
        let r = Reference::build(mode);
        for (n, name) in r.values.iter().enumerate() {
            // The value files do not depend on syncs: the mid-sync store gets them all, the
            // others the last one.
            if mode != Mode::Mid && n + 1 != r.values.len() {
                continue;
            }
            let mut offs: BTreeSet<u64> = if n == 0 {
                (0..HEADER_LEN as u64).collect()
            } else {
                (n as u64 % 4..HEADER_LEN as u64).step_by(4).collect()
            };
            offs.extend([64, 511, 4095]);
            offs.extend(value_offsets(&r, name));
            for off in offs {
                case(
                    &r,
                    &mut t,
                    &format!("{name} byte {off} flipped"),
                    &[name],
                    Hit::Range(name.clone(), off, off + 1),
                    |d| flip(&d.join(name), off),
                );
            }
        }
    }
    assert!(t.corrupt_reads > 0);
    t.report("flipped value section bytes", started);
}

#[test]
fn flipped_buffer_bytes() {
    let started = Instant::now();
    let mut t = Tally::default();
    for mode in MODES {
        let r = Reference::build(mode);
        // The buffer's own header and every byte of both sync marks, the header of each bank,
        // padding, and the values.
        let mut offs: BTreeSet<u64> = (0..HEADER_LEN as u64).collect();
        for m in [MARK_A, MARK_B] {
            offs.extend((m - 1..m + MARK_LEN + 1).map(|o| o as u64));
        }
        for bank in 0..BANKS {
            let at = bank_at(SLOTS, bank);
            offs.extend((at..at + HEADER_LEN).map(|o| o as u64));
            offs.extend([at + HEADER_LEN, at + 511, at + PAGE - 1].map(|o| o as u64));
        }
        offs.extend([64, 511, 4095]);
        offs.extend(value_offsets(&r, BUF));
        // Slots no record uses in the bank being filled, and the other bank's copy of the
        // section written out last (reads go to its `.v` file).
        let used = r
            .puts
            .iter()
            .flatten()
            .filter(|(_, l)| l.file == BUF)
            .count();
        let slot = |bank: usize, i: usize| (bank_at(SLOTS, bank) + PAGE + i * SLOT_SIZE) as u64;
        offs.extend((used..S).map(|i| slot(r.bank, i) + 5));
        offs.extend((0..S).map(|i| slot(1 - r.bank, i) + (i as u64 * 37) % 256));
        for off in offs {
            let lost = r.in_filling_header(off);
            let names: &[&str] = &[BUF];
            let e = case(
                &r,
                &mut t,
                &format!("{BUF} byte {off} flipped"),
                names,
                Hit::Range(BUF.into(), off, off + 1),
                |d| flip(&d.join(BUF), off),
            );
            // Only the buffer's own header makes it unreadable (a sync mark falls back to
            // the other copy); a lost bank header leaves values nowhere.
            if let Some(e @ Error::Corrupt { offset, .. }) = &e {
                let own = off < HEADER_LEN as u64 && *offset == 0;
                assert!(own || lost, "byte {off}: {e:?}");
                t.misnamed += !e.to_string().contains(BUF) as usize;
            }
        }
    }
    assert_eq!(t.misnamed, 0, "refusals that do not name {BUF}");
    t.report("flipped buffer bytes", started);
}

/// Every byte of the `STORE` header is covered by its magic or checksum: a flip is refused,
/// naming `STORE`. The rest of its page is unused.
#[test]
fn flipped_store_bytes() {
    let started = Instant::now();
    let mut t = Tally::default();
    for mode in MODES {
        let r = Reference::build(mode);
        let mut offs: Vec<u64> = (0..HEADER_LEN as u64).collect();
        offs.extend([64, 100, 511, 512, 1024, 2048, PAGE as u64 - 1]);
        for off in offs {
            let e = case(
                &r,
                &mut t,
                &format!("{STORE} byte {off} flipped"),
                &[STORE],
                Hit::Nothing,
                |d| flip(&d.join(STORE), off),
            );
            assert_eq!(
                e.is_some(),
                off < HEADER_LEN as u64,
                "{STORE} byte {off}: {e:?}"
            );
            if let Some(Error::Corrupt { offset, .. }) = &e {
                assert_eq!(*offset, 0, "{STORE} byte {off}: {e:?}");
            }
        }
    }
    t.report("flipped STORE bytes", started);
}
