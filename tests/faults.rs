//! I/O errors injected at every I/O call a workload makes, in turn: `EIO`, `ENOSPC`, and short
//! writes (half written, then `ENOSPC`), through the simulated file system's call counter
//! (`SimFs::fail_call`). For each call and each fault, a fresh store runs the same workload
//! (puts across bank write-outs and new key sections, deletes, syncs, batched reads with
//! `get_many`, garbage collection, close) until the first error. The read cache is off, so a
//! `get_many` reads its values from the value sections in one batch, each read one counted
//! call: faults land inside batches. The properties:
//!
//! - no panic, in the test or in a background thread; every error names the file;
//! - after an error from a sync (msync, fdatasync, fsync) the store refuses writes until it is
//!   reopened;
//! - a `get_many` never answers a wrong value, and a fault fails only keys whose slots its read
//!   covered (neighbouring slots of one section share a read): keys of one file;
//! - reopened with the fault gone, the store opens and holds every acknowledged operation,
//!   plus the failed one all or nothing: never a wrong value.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use toykv::io::{Fault, SimFs};
use toykv::{Durability, Error, Options, Store};

type Model = BTreeMap<u64, Vec<u8>>;

/// Panics anywhere in the process (background threads included).
static PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            default(info);
        }));
    });
}

thread_local! {
    /// The durability of this thread's runs.
    static MODE: std::cell::Cell<Durability> = const { std::cell::Cell::new(Durability::None) };
}

fn opts(fs: &SimFs) -> Options {
    Options::new()
        .section_slots(16)
        .shards(1)
        .gc(false)
        .durability(MODE.get())
        .journal_bytes(64 << 10)
        .cache_bytes(0)
        .vfs(Arc::new(fs.clone()))
}

#[derive(Clone, Debug)]
enum Op {
    Put(u64, Vec<u8>),
    Delete(u64),
    Sync,
    Gc,
    /// A batched read of these keys (repeats and absent keys included).
    GetMany(Vec<u64>),
}

/// The workload: 32 keys written once, then overwrites of 24 keys (so collection has dead
/// values to reclaim), a delete every seventh operation, a sync every 25th, a `get_many` of
/// all keys (and two absent ones, and repeats) every 50th, the 32 keys deleted, a
/// collection at the end.
fn workload() -> Vec<Op> {
    // 32 keys written once, first: their values go out to value sections, where each
    // `get_many` reads them (the overwritten keys' latest values are mostly in the banks).
    let mut ops: Vec<Op> = (100..132u64)
        .map(|k| Op::Put(k, vec![k as u8; (k as usize * 5) % 257]))
        .collect();
    for i in 0..150u64 {
        let k = (i * 7) % 24;
        if i % 7 == 6 {
            ops.push(Op::Delete(k));
        } else {
            let len = ((i * 37) % 257) as usize;
            ops.push(Op::Put(
                k,
                (0..len).map(|j| (i as usize + j) as u8).collect(),
            ));
        }
        if i % 25 == 24 {
            ops.push(Op::Sync);
        }
        if i % 50 == 49 {
            ops.push(Op::GetMany(
                (0..26).chain(100..134).chain([3, 3, 101]).collect(),
            ));
        }
    }
    // Deleted again before collection: otherwise collection of the old key sections reads
    // them to move them, skipping (by design) a value it cannot read, which no call reports.
    ops.extend((100..132u64).map(Op::Delete));
    ops.push(Op::Gc);
    ops
}

fn apply(model: &mut Model, op: &Op) {
    match op {
        Op::Put(k, v) => {
            model.insert(*k, v.clone());
        }
        Op::Delete(k) => {
            model.remove(k);
        }
        Op::Sync | Op::Gc | Op::GetMany(_) => {}
    }
}

fn run(store: &Store, model: &Model, op: &Op) -> toykv::Result<()> {
    match op {
        Op::Put(k, v) => store.put(*k, v),
        Op::Delete(k) => store.delete(*k).map(|_| ()),
        Op::Sync => store.sync(),
        Op::Gc => store.gc(),
        Op::GetMany(keys) => {
            let mut failed = Vec::new();
            for (k, r) in keys.iter().zip(store.get_many(keys)) {
                match r {
                    Ok(v) => assert_eq!(
                        v.as_deref(),
                        model.get(k).map(|v| &v[..]),
                        "get_many answered a wrong value for {k}"
                    ),
                    Err(e) => failed.push(e),
                }
            }
            // One fault hits one read, and one read covers neighbouring slots of one
            // section: every key it failed failed with the same error on the same file.
            let files: std::collections::BTreeSet<String> = failed
                .iter()
                .map(|e| match e {
                    Error::Io { path, .. } | Error::Corrupt { file: path, .. } => {
                        path.display().to_string()
                    }
                    other => format!("{other}"),
                })
                .collect();
            assert!(
                files.len() <= 1,
                "one fault failed keys of a get_many in several files: {files:?}"
            );
            failed.pop().map_or(Ok(()), Err)
        }
    }
}

fn contents(store: &Store) -> Result<Model, Error> {
    store
        .iter()
        .map(|r| r.map(|(k, v)| (k.as_u64(), v.to_vec())))
        .collect()
}

fn is_sync_error(e: &Error) -> bool {
    let s = e.to_string();
    s.contains("msync") || s.contains("fdatasync") || s.contains("fsync")
}

/// One run with `fault` at call `n`, then a reopen — after a simulated power loss when `power`
/// is set; returns whether the fault was met.
fn one(n: u64, fault: Fault, ops: &[Op], power: bool) -> bool {
    let fs = SimFs::new();
    let dir = Path::new("/db");
    let what = format!("fault {fault:?} at call {n}");
    fs.fail_call(n, fault);
    let mut model = Model::new();
    let mut in_flight = None;
    let mut failed = false;
    // The states a power loss may leave: the one at the last successful sync, then one per
    // later operation (the failed one included).
    let mut allowed = vec![Model::new()];
    match Store::open_with(dir, opts(&fs)) {
        Err(e) => {
            assert!(
                e.to_string().contains("/db"),
                "{what}: open error names no file: {e}"
            );
            failed = true;
        }
        Ok(store) => {
            for op in ops {
                if let Err(e) = run(&store, &model, op) {
                    assert!(
                        e.to_string().contains("/db"),
                        "{what}: {op:?}: error names no file: {e}"
                    );
                    failed = true;
                    in_flight = Some(op.clone());
                    let mut with = model.clone();
                    apply(&mut with, op);
                    allowed.push(with);
                    if is_sync_error(&e) {
                        let again = store.put(999u64, b"after a failed sync");
                        assert!(
                            again.is_err(),
                            "{what}: a put after a failed sync ({e}) was accepted"
                        );
                    }
                    break;
                }
                apply(&mut model, op);
                if matches!(op, Op::Sync) {
                    allowed = vec![model.clone()];
                } else {
                    allowed.push(model.clone());
                }
            }
            if !failed && !store.stats().gc_set_aside.is_empty() {
                // Collection met the fault reading a section and set the section aside, as
                // designed (its values stay where they are).
                failed = true;
            }
            if !failed {
                // A background write-out may have met the fault: the close's sync says so.
                if let Err(e) = store.close() {
                    assert!(e.to_string().contains("/db"), "{what}: close: {e}");
                    failed = true;
                }
            } else {
                drop(store);
            }
        }
    }
    // Reopen with no fault pending: everything acknowledged is there, the failed operation
    // all or nothing.
    fs.fail_call(u64::MAX / 2, Fault::Eio);
    if power {
        fs.power_loss(n);
    }
    let store = Store::open_with(dir, opts(&fs)).unwrap_or_else(|e| panic!("{what}: reopen: {e}"));
    let got = contents(&store).unwrap_or_else(|e| panic!("{what}: scan after reopen: {e}"));
    if power && MODE.get() == Durability::Always {
        // Every acknowledged operation was durable: only the failed one may be missing.
        allowed = vec![model.clone()];
        if let Some(op) = &in_flight {
            let mut with = model.clone();
            apply(&mut with, op);
            allowed.push(with);
        }
    }
    if power {
        assert!(
            allowed.contains(&got),
            "{what}: after the power loss the store holds {} keys, none of the {} allowed states",
            got.len(),
            allowed.len()
        );
        return failed;
    }
    let mut with = model.clone();
    if let Some(op) = &in_flight {
        apply(&mut with, op);
    }
    assert!(
        got == model || got == with,
        "{what}: after reopen the store holds {} keys; acknowledged {} (in flight {in_flight:?})",
        got.len(),
        model.len()
    );
    failed
}

/// Counted calls of the workload without faults.
fn calls(ops: &[Op]) -> u64 {
    let fs = SimFs::new();
    let store = Store::open_with(Path::new("/db"), opts(&fs)).unwrap();
    let mut model = Model::new();
    for op in ops {
        run(&store, &model, op).unwrap();
        apply(&mut model, op);
    }
    store.close().unwrap();
    fs.calls()
}

fn walk(fault: Fault, power: bool) {
    count_panics();
    let ops = workload();
    let total = calls(&ops);
    assert!(total > 100, "the workload makes only {total} I/O calls");
    let mut met = 0;
    for n in 0..total + 5 {
        met += usize::from(one(n, fault, &ops, power));
    }
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "a thread panicked");
    // Background write-outs make the call order vary a little, but nearly every call index
    // must have hit the workload.
    assert!(
        met as u64 >= total * 9 / 10,
        "{fault:?}: only {met} of {total} faults were met"
    );
    println!(
        "{fault:?}{}: {total} calls, {met} faults met, 0 panics, 0 wrong values",
        if power { " then power loss" } else { "" }
    );
}

#[test]
fn eio_at_every_call() {
    walk(Fault::Eio, false);
}

#[test]
fn enospc_at_every_call() {
    walk(Fault::Enospc, false);
}

#[test]
fn short_write_at_every_call() {
    walk(Fault::Short, false);
}

/// At durability `always` every put and delete goes through a group commit.
#[test]
fn eio_at_every_call_always() {
    MODE.set(Durability::Always);
    walk(Fault::Eio, false);
}

#[test]
fn short_write_then_power_loss_at_every_call_always() {
    MODE.set(Durability::Always);
    walk(Fault::Short, true);
}

/// The fault, then the power goes: the store keeps its last successful sync and a prefix of
/// what followed.
#[test]
fn eio_then_power_loss_at_every_call() {
    walk(Fault::Eio, true);
}

#[test]
fn short_write_then_power_loss_at_every_call() {
    walk(Fault::Short, true);
}
