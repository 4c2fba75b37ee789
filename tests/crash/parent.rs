//! The parent's kill loop: spawn a child, kill it per plan, reopen the store and check it
//! against the model (records, slots, torn tail, contents), round after round.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rand::SeedableRng;
use rand::rngs::StdRng;
use toykv::Store;
use toykv::format::{KEYS_DATA_AT, RECORD_SIZE, TMP_SUFFIX, keys_name};

use crate::ops::{KEYS, Model, Op, mix, ops, show, value};
use crate::running::{Plan, Running};
use crate::{ENV_BASE_SEED, options};

/// One test's parameters.
pub(crate) struct Variant {
    pub(crate) name: &'static str,
    pub(crate) slots: u32,
    /// Operations per child at most (it then waits to be killed).
    pub(crate) max_ops: u64,
    pub(crate) plans: fn(round: usize, rng: &mut StdRng) -> Plan,
    pub(crate) rounds: usize,
}

/// What the whole run saw, for the summary and the final assertions.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) kills: usize,
    pub(crate) acked_ops: u64,
    pub(crate) in_flight_applied: usize,
    pub(crate) in_flight_dropped: usize,
    /// Kills that left a `.tmp` value section behind: they landed inside a flush.
    pub(crate) inside_flush: usize,
    /// Reopens whose recovery found a half-written record (the in-flight one).
    pub(crate) torn: usize,
    /// Value sections in the store at the end.
    pub(crate) value_sections: u64,
}

/// `TOYKV_CRASH_VERBOSE=1` prints every round.
pub(crate) fn verbose() -> bool {
    std::env::var_os("TOYKV_CRASH_VERBOSE").is_some()
}

pub(crate) fn base_seed() -> u64 {
    match std::env::var(ENV_BASE_SEED) {
        Ok(s) => s
            .parse()
            .unwrap_or_else(|e| panic!("{ENV_BASE_SEED}={s:?}: {e}")),
        Err(_) => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    }
}

pub(crate) fn run(v: &Variant) -> Tally {
    let started = Instant::now();
    let base = base_seed();
    println!(
        "[{}] base seed {base} (replay the operations with {ENV_BASE_SEED}={base})",
        v.name
    );
    let mut tmp = tempfile::Builder::new()
        .prefix("toykv-crash-")
        .tempdir_in(crate::common::base())
        .expect("temp dir");
    // `TOYKV_CRASH_KEEP=1` keeps the data directory (named in failure messages) for a
    // post-mortem.
    tmp.disable_cleanup(std::env::var_os("TOYKV_CRASH_KEEP").is_some());
    let dir = tmp.path().join("data");
    let s = u64::from(v.slots);
    let mut rng = StdRng::seed_from_u64(base);
    let mut model = Model::new();
    // What the store held after the last reopen.
    let (mut records, mut slots_used) = (0u64, 0u64);
    let mut tally = Tally::default();

    for round in 0..v.rounds {
        let seed = mix(base ^ mix(round as u64));
        let plan = (v.plans)(round, &mut rng);
        let what = format!(
            "[{}] base seed {base}, round {round}, child seed {seed}, plan {plan:?}",
            v.name
        );
        let mut child = Running::spawn(&dir, seed, v.slots, v.max_ops, what.clone());
        child.kill_per(plan);
        let acks = std::mem::take(&mut child.acks);
        let markers = std::mem::take(&mut child.markers);
        drop(child);
        tally.kills += 1;
        tally.acked_ops += acks.len() as u64;

        let left_tmp = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .any(|e| e.file_name().to_string_lossy().ends_with(TMP_SUFFIX))
            })
            .unwrap_or(false);
        if left_tmp {
            tally.inside_flush += 1;
        }

        // Replay the acknowledged operations on the model.
        let mut seq = ops(seed);
        for (n, del) in acks.iter().enumerate() {
            let op = seq.next().expect("endless sequence");
            match op {
                Op::Put { key, len } => {
                    model.insert(key, value(seed, n as u64, key, len));
                    records += 1;
                    slots_used += 1;
                }
                Op::Delete { key } => {
                    let existed = model.remove(&key).is_some();
                    assert_eq!(
                        *del,
                        Some(existed),
                        "{what}: op {n} {op:?} returned {del:?}, the model says the key existed: {existed}"
                    );
                    records += u64::from(existed);
                }
                Op::Sync => {}
            }
        }
        let n = acks.len() as u64;
        let in_flight = seq.next().expect("endless sequence");
        let (before, after) = match in_flight {
            Op::Put { key, len } => (model.get(&key).cloned(), Some(value(seed, n, key, len))),
            Op::Delete { key } => (model.get(&key).cloned(), None),
            Op::Sync => (None, None),
        };
        // Whether the in-flight op writes a key record (and, for a put, takes a slot).
        let writes = match in_flight {
            Op::Put { .. } => true,
            Op::Delete { key } => model.contains_key(&key),
            Op::Sync => false,
        };
        let what = format!(
            "{what}: {n} ops acknowledged, in flight op {n} {in_flight:?}, markers {:?}",
            &markers[markers.len().saturating_sub(4)..]
        );

        let store = Store::open_with(&dir, options(v.slots))
            .unwrap_or_else(|e| panic!("{what}: reopen after the kill failed: {e}"));
        let st = store.stats();

        // The log holds exactly the acknowledged records, plus perhaps the in-flight one.
        let applied = match st.records.checked_sub(records) {
            Some(0) => false,
            Some(1) if writes => true,
            _ => panic!(
                "{what}: the store holds {} key records; {records} were acknowledged{}",
                st.records,
                if writes { " (+1 in flight)" } else { "" }
            ),
        };
        let want_slots = slots_used + u64::from(applied && matches!(in_flight, Op::Put { .. }));
        assert_eq!(
            st.slots_used, want_slots,
            "{what}: slots used after reopen (in-flight op applied: {applied})"
        );
        // Every full section is a value file, except that the last one's flush may have been
        // cut short (then its put was not applied).
        let full = st.slots_used / s;
        assert!(
            st.value_sections == full
                || (st.value_sections + 1 == full && st.slots_used.is_multiple_of(s)),
            "{what}: {} value sections for {} used slots",
            st.value_sections,
            st.slots_used
        );

        // A torn tail can only be the in-flight record, cut mid-copy by the signal.
        if let Some(torn) = &st.torn_tail {
            let file = keys_name((st.records / s) as u32);
            let off = KEYS_DATA_AT + (st.records % s) as usize * RECORD_SIZE;
            assert!(
                writes
                    && !applied
                    && torn.contains(&file)
                    && torn.contains(&format!("offset {off} ")),
                "{what}: recovery dropped a damaged record that is not the in-flight one ({file} offset {off}): {torn}"
            );
            tally.torn += 1;
        }

        // Contents: scan and point reads.
        let scanned: Model = store
            .iter()
            .map(|r| {
                r.map(|(k, v)| (k.as_u64(), v.to_vec()))
                    .unwrap_or_else(|e| panic!("{what}: scan after reopen: {e}"))
            })
            .collect();
        for key in 0..KEYS {
            let got = store
                .get(key)
                .unwrap_or_else(|e| panic!("{what}: get {key} after reopen: {e}"))
                .map(|v| v.to_vec());
            assert_eq!(
                got.as_ref(),
                scanned.get(&key),
                "{what}: get and scan disagree on key {key}"
            );
        }
        assert_eq!(
            st.keys as usize,
            scanned.len(),
            "{what}: stats().keys against the scan"
        );
        let flight_key = in_flight.key();
        for key in model.keys().chain(scanned.keys()) {
            if Some(*key) == flight_key {
                continue;
            }
            let (want, got) = (model.get(key), scanned.get(key));
            assert!(
                want == got,
                "{what}: key {key} should be {} but is {}",
                show(want),
                show(got)
            );
        }
        if let Some(key) = flight_key {
            let got = scanned.get(&key).cloned();
            let want = if applied { &after } else { &before };
            assert!(
                got == *want,
                "{what}: in-flight key {key} is {} but should be {} (in-flight op {}; before {}, after {})",
                show(got.as_ref()),
                show(want.as_ref()),
                if applied { "applied" } else { "not applied" },
                show(before.as_ref()),
                show(after.as_ref()),
            );
        }
        if verbose() {
            println!(
                "[{}] round {round}: {plan:?}: {n} acked, in flight {in_flight:?} {}, .tmp left: {left_tmp}, last markers {:?}",
                v.name,
                if !writes {
                    "(writes nothing)"
                } else if applied {
                    "applied"
                } else {
                    "not applied"
                },
                &markers[markers.len().saturating_sub(2)..]
            );
        }
        if writes {
            if applied {
                tally.in_flight_applied += 1;
            } else {
                tally.in_flight_dropped += 1;
            }
        }

        // Resolve the in-flight op from the store's actual state.
        if applied {
            records += 1;
            if let Op::Put { .. } = in_flight {
                slots_used += 1;
            }
        }
        if let Some(key) = flight_key {
            match scanned.get(&key) {
                Some(v) => model.insert(key, v.clone()),
                None => model.remove(&key),
            };
        }
        assert_eq!(model, scanned, "{what}: model after resolving");
        assert_eq!((records, slots_used), (st.records, st.slots_used));

        let is_last = round + 1 == v.rounds;
        drop(store);
        if is_last {
            // Recovery zeroed any dropped tail: a second open finds a clean log and the same
            // contents.
            let store = Store::open_with(&dir, options(v.slots))
                .unwrap_or_else(|e| panic!("{what}: second reopen failed: {e}"));
            let st = store.stats();
            assert_eq!(st.torn_tail, None, "{what}: torn tail on the second reopen");
            assert_eq!((st.records, st.slots_used), (records, slots_used), "{what}");
            let again: Model = store
                .iter()
                .map(|r| r.map(|(k, v)| (k.as_u64(), v.to_vec())).expect("scan"))
                .collect();
            assert_eq!(again, model, "{what}: contents on the second reopen");
            tally.value_sections = st.value_sections;
            println!(
                "[{}] final store: {} keys, {} records, {} slots used, {} value sections, {} key sections",
                v.name, st.keys, st.records, st.slots_used, st.value_sections, st.key_sections
            );
        }
    }
    println!(
        "[{}] {} kills in {:.1?}: {} acknowledged ops, in-flight writes applied {} / dropped {}, \
         {} kills inside a flush (.tmp left), {} torn in-flight records",
        v.name,
        tally.kills,
        started.elapsed(),
        tally.acked_ops,
        tally.in_flight_applied,
        tally.in_flight_dropped,
        tally.inside_flush,
        tally.torn
    );
    tally
}
