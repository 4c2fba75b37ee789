//! Truncated and extended files: key sections, value sections and the buffer cut at offsets
//! of interest, every kind of file grown past its fixed length, and a torn tail at every
//! unsynced record (dropped for good).

use std::time::Instant;

use toykv::format::{
    BANKS, KEYS_DATA_AT, PAGE, RECORD_SIZE, SLOT_SIZE, VALUES_DATA_AT, bank_at, buffer_len,
    keys_len, values_len,
};

use crate::Tally;
use crate::damage::{HEADER_FEW, case, check_record_offset, flip, header_offsets, truncate};
use crate::reference::{Hit, MODES, Mode, Reference};
use crate::{BUF, OPS, S, SLOTS, STORE};

#[test]
fn truncated_key_sections() {
    let started = Instant::now();
    let mut t = Tally::default();
    for mode in MODES {
        let r = Reference::build(mode);
        // The mid-sync store gets every offset of interest; the others a sample.
        let inside: &[u64] = if mode == Mode::Mid {
            &[0, 1, 8, 16, 22, 24, 28, 31]
        } else {
            &[0, 17]
        };
        for (n, name) in r.keys.iter().enumerate() {
            let mut offs = if n == 0 || n + 1 == r.keys.len() {
                header_offsets(61)
            } else {
                HEADER_FEW.to_vec()
            };
            for rec in 0..S {
                let base = (KEYS_DATA_AT + rec * RECORD_SIZE) as u64;
                offs.extend(inside.iter().map(|o| base + o));
            }
            offs.push(keys_len(SLOTS) - 1);
            offs.push(keys_len(SLOTS)); // unchanged
            for len in offs {
                let what = format!("{name} truncated to {len} bytes");
                let e = case(&r, &mut t, &what, &[name], Hit::Nothing, |d| {
                    truncate(&d.join(name), len)
                });
                if len >= KEYS_DATA_AT as u64 {
                    check_record_offset(e, len, &what);
                }
            }
        }
    }
    t.report("truncated key sections", started);
}

#[test]
fn truncated_value_sections() {
    let started = Instant::now();
    let mut t = Tally::default();
    for mode in MODES {
        let r = Reference::build(mode);
        for (n, name) in r.values.iter().enumerate() {
            let mut offs = if n == 0 {
                header_offsets(97)
            } else {
                HEADER_FEW.to_vec()
            };
            for slot in 0..S {
                let base = (VALUES_DATA_AT + slot * SLOT_SIZE) as u64;
                offs.extend([0, 129].map(|o| base + o));
            }
            offs.push(values_len(SLOTS) - 1);
            for len in offs {
                case(
                    &r,
                    &mut t,
                    &format!("{name} truncated to {len} bytes"),
                    &[name],
                    Hit::Range(name.clone(), len, u64::MAX),
                    |d| truncate(&d.join(name), len),
                );
            }
        }
    }
    t.report("truncated value sections", started);
}

#[test]
fn truncated_buffer() {
    let started = Instant::now();
    let mut t = Tally::default();
    for mode in MODES {
        let r = Reference::build(mode);
        // The buffer's own header page (sync marks), then each bank: its header page and
        // slots (every slot of the bank being filled, a sample of the other's).
        let mut offs = header_offsets(61);
        for bank in 0..BANKS {
            let at = bank_at(SLOTS, bank) as u64;
            offs.extend(header_offsets(127).iter().map(|o| o + at));
            let inside: &[u64] = if bank == r.bank {
                &[0, 1, 64, 200, 255]
            } else {
                &[0, 129]
            };
            for slot in 0..S {
                let base = at + (PAGE + slot * SLOT_SIZE) as u64;
                offs.extend(inside.iter().map(|o| base + o));
            }
        }
        offs.push(buffer_len(SLOTS) - 1);
        offs.push(buffer_len(SLOTS));
        for len in offs {
            // A cut before the end of the filling bank's header page loses it: open must then
            // refuse naming the buffer.
            let names: &[&str] = &[BUF];
            let e = case(
                &r,
                &mut t,
                &format!("{BUF} truncated to {len} bytes"),
                names,
                Hit::Range(BUF.into(), len, u64::MAX),
                |d| truncate(&d.join(BUF), len),
            );
            t.misnamed += e.is_some_and(|e| !e.to_string().contains(BUF)) as usize;
        }
    }
    assert_eq!(t.misnamed, 0, "refusals that do not name {BUF}");
    t.report("truncated buffer", started);
}

/// Files grown past their fixed length are refused, naming the file.
#[test]
fn extended_files() {
    let started = Instant::now();
    let mut t = Tally::default();
    let r = Reference::build(Mode::Mid);
    let mut files: Vec<(String, u64)> = r
        .keys
        .iter()
        .map(|n| (n.clone(), keys_len(SLOTS)))
        .collect();
    files.extend(r.values.iter().map(|n| (n.clone(), values_len(SLOTS))));
    files.push((BUF.into(), buffer_len(SLOTS)));
    for (name, len) in &files {
        for extra in [1, RECORD_SIZE as u64, PAGE as u64] {
            case(
                &r,
                &mut t,
                &format!("{name} extended by {extra} bytes"),
                &[name],
                Hit::Nothing,
                |d| truncate(&d.join(name), len + extra),
            );
        }
    }
    assert_eq!(t.refused.values().sum::<usize>(), t.cases);
    t.report("extended files", started);
}

/// The unsynced tail torn at every record: the store opens at that record, takes new writes,
/// and a reopen never brings back the dropped records.
#[test]
fn torn_tail_at_every_unsynced_record() {
    let started = Instant::now();
    let mut t = Tally {
        always: true,
        ..Tally::default()
    };
    for mode in [Mode::Never, Mode::Mid] {
        let r = Reference::build(mode);
        for seq in r.synced..OPS {
            let (name, off) = Reference::record(seq);
            case(
                &r,
                &mut t,
                &format!("record {seq} torn ({name} byte {})", off + 13),
                &[&name],
                Hit::Nothing,
                |d| flip(&d.join(&name), off + 13),
            );
        }
    }
    assert_eq!(t.dropped, t.cases, "{t:?}");
    t.report("torn tails", started);
}

/// `STORE` cut inside its header is refused naming it; cut after the header, or grown, it
/// still names the shard count, and the store opens intact.
#[test]
fn truncated_and_extended_store_file() {
    let started = Instant::now();
    let mut t = Tally::default();
    for mode in MODES {
        let r = Reference::build(mode);
        let header = [0, 1, 8, 12, 28, 32, 59, 60, 63];
        for len in header.into_iter().chain([64, 65, 512, PAGE as u64 - 1]) {
            case(
                &r,
                &mut t,
                &format!("{STORE} truncated to {len} bytes"),
                &[STORE],
                Hit::Nothing,
                |d| truncate(&d.join(STORE), len),
            );
        }
        for extra in [1, PAGE as u64] {
            case(
                &r,
                &mut t,
                &format!("{STORE} extended by {extra} bytes"),
                &[STORE],
                Hit::Nothing,
                |d| truncate(&d.join(STORE), PAGE as u64 + extra),
            );
        }
    }
    assert_eq!(t.refused.values().sum::<usize>(), 9 * MODES.len(), "{t:?}");
    assert_eq!(t.intact, 6 * MODES.len(), "{t:?}");
    t.report("truncated and extended STORE", started);
}
