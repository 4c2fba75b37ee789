//! The parent's kill loop for the library child: spawn a child, let it die per plan, reopen the
//! store and check it against the model, round after round; and the check itself, which the
//! server loop shares.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rand::SeedableRng;
use rand::rngs::StdRng;
use toykv::{Options, Store};

use crate::ENV_BASE_SEED;
use crate::ops::{KEYS, Model, Op, mix, ops, show, value};
use crate::running::{Plan, Role, Running};

/// One test's parameters.
pub(crate) struct Variant {
    pub(crate) name: &'static str,
    pub(crate) slots: u32,
    pub(crate) shards: u32,
    /// Operations per child at most (it then waits to be killed).
    pub(crate) max_ops: u64,
    pub(crate) plans: fn(round: usize, rng: &mut StdRng) -> Plan,
    pub(crate) rounds: usize,
    /// The children's durability (the parent's checks open with `none`: replay does not
    /// depend on it).
    pub(crate) durability: toykv::Durability,
}

/// What a whole run saw, for the summary and the final assertions.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) kills: usize,
    pub(crate) acked_ops: u64,
    pub(crate) in_flight_applied: usize,
    pub(crate) in_flight_dropped: usize,
    /// Kill points reached, by name.
    pub(crate) fired: BTreeMap<&'static str, usize>,
    /// Rounds whose kill point was not reached before the child ran out of operations.
    pub(crate) missed: usize,
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

/// A temporary directory for a run; `TOYKV_CRASH_KEEP=1` keeps it for a post-mortem.
pub(crate) fn workdir() -> tempfile::TempDir {
    let mut tmp = tempfile::Builder::new()
        .prefix("toykv-crash-")
        .tempdir_in(crate::common::base())
        .expect("temp dir");
    tmp.disable_cleanup(std::env::var_os("TOYKV_CRASH_KEEP").is_some());
    tmp
}

/// Creates the store the children open: its section size and shard count are recorded, so
/// the children need not know them.
pub(crate) fn create(dir: &Path, slots: u32, shards: u32) {
    Store::open_with(dir, Options::new().section_slots(slots).shards(shards))
        .and_then(Store::close)
        .unwrap_or_else(|e| panic!("create the store in {}: {e}", dir.display()));
}

/// Applies the acknowledged operations of sequence `seed` to the model, checking what deletes
/// said; returns the operation that was in flight.
pub(crate) fn replay(model: &mut Model, seed: u64, acks: &[Option<bool>], what: &str) -> Op {
    let mut seq = ops(seed);
    for (n, del) in acks.iter().enumerate() {
        let op = seq.next().expect("endless sequence");
        match op {
            Op::Put { key, len } => {
                model.insert(key, value(seed, n as u64, key, len));
            }
            Op::Delete { key } => {
                let existed = model.remove(&key).is_some();
                if let Some(said) = del {
                    assert_eq!(
                        *said, existed,
                        "{what}: op {n} {op:?} said the key existed: {said}; the model: {existed}"
                    );
                }
            }
            Op::Sync => {}
        }
    }
    seq.next().expect("endless sequence")
}

/// Checks the reopened store against the model: every key as acknowledged, except that the
/// in-flight operation (number `n`) may or may not have taken effect, all or nothing. Gets and
/// the scan must agree. Resolves the model to what the store holds; returns whether the
/// in-flight operation took effect (`None` when it changes nothing either way).
pub(crate) fn verify(
    store: &Store,
    model: &mut Model,
    seed: u64,
    n: u64,
    in_flight: Op,
    what: &str,
) -> Option<bool> {
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
    let applied = flight_key.and_then(|key| {
        let before = model.get(&key).cloned();
        let after = match in_flight {
            Op::Put { key, len } => Some(value(seed, n, key, len)),
            _ => None,
        };
        let got = scanned.get(&key).cloned();
        assert!(
            got == before || got == after,
            "{what}: in-flight key {key} is {}, neither its value before ({}) nor after ({})",
            show(got.as_ref()),
            show(before.as_ref()),
            show(after.as_ref()),
        );
        let applied = got == after;
        match got {
            Some(v) => model.insert(key, v),
            None => model.remove(&key),
        };
        (before != after).then_some(applied)
    });
    assert_eq!(*model, scanned, "{what}: model after resolving");
    applied
}

/// After a kill: counts it, replays the acknowledged operations on the model, reopens the
/// store in `dir` and checks it ([`verify`]); returns whether the in-flight operation took
/// effect.
#[allow(clippy::too_many_arguments)]
pub(crate) fn settle(
    tally: &mut Tally,
    model: &mut Model,
    dir: &Path,
    seed: u64,
    plan: Plan,
    fired: bool,
    acks: &[Option<bool>],
    what: &str,
) -> Option<bool> {
    tally.kills += 1;
    tally.acked_ops += acks.len() as u64;
    if let Plan::Point { point, .. } = plan {
        if fired {
            *tally.fired.entry(point).or_default() += 1;
        } else {
            tally.missed += 1;
        }
    }
    let in_flight = replay(model, seed, acks, what);
    let n = acks.len() as u64;
    let what = format!("{what}: {n} operations acknowledged, in flight op {n} {in_flight:?}");
    let store =
        crate::open(dir).unwrap_or_else(|e| panic!("{what}: reopen after the kill failed: {e}"));
    let applied = verify(&store, model, seed, n, in_flight, &what);
    match applied {
        Some(true) => tally.in_flight_applied += 1,
        Some(false) => tally.in_flight_dropped += 1,
        None => {}
    }
    applied
}

pub(crate) fn run(v: &Variant) -> Tally {
    let started = Instant::now();
    let base = base_seed();
    println!(
        "[{}] base seed {base} (replay the operations with {ENV_BASE_SEED}={base})",
        v.name
    );
    let tmp = workdir();
    let dir = tmp.path().join("data");
    create(&dir, v.slots, v.shards);
    let mut rng = StdRng::seed_from_u64(base);
    let mut model = Model::new();
    let mut tally = Tally::default();

    for round in 0..v.rounds {
        let seed = mix(base ^ mix(round as u64));
        let plan = (v.plans)(round, &mut rng);
        let what = format!(
            "[{}] base seed {base}, round {round}, child seed {seed}, plan {plan:?}, dir {}",
            v.name,
            dir.display()
        );
        let mut child = Running::spawn(
            &dir,
            Role::Library,
            seed,
            v.max_ops,
            plan,
            v.durability,
            what.clone(),
        );
        let fired = child.kill_per(plan);
        let acks = std::mem::take(&mut child.acks);
        drop(child);
        let applied = settle(
            &mut tally, &mut model, &dir, seed, plan, fired, &acks, &what,
        );
        let n = acks.len();
        if verbose() {
            println!(
                "[{}] round {round}: {plan:?}: {n} acked, in flight applied: {applied:?}, point fired: {fired}",
                v.name
            );
        }
    }
    println!(
        "[{}] {} kills in {:.1?}: {} acknowledged ops, in-flight writes applied {} / dropped {}, \
         kill points fired {:?}, not reached {}",
        v.name,
        tally.kills,
        started.elapsed(),
        tally.acked_ops,
        tally.in_flight_applied,
        tally.in_flight_dropped,
        tally.fired,
        tally.missed,
    );
    tally
}
