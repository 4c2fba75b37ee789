//! A model, checked by randomized schedules ([shuttle]), of how one shard hands a full bank of
//! the write buffer to the background writer and moves puts on to the other bank.
//!
//! # What is modelled, and what each step mirrors
//!
//! One shard, [`BANKS`] banks of [`SLOTS`] slots each, [`WRITERS`] threads doing [`PUTS`] puts
//! each, and one background writer thread:
//!
//! | model | real code |
//! | --- | --- |
//! | [`Shard::state`] (a `Mutex<Inner>`), [`Shard::freed`] | `Shard::state` / `Shard::freed` (src/store/shard.rs, parking_lot there) |
//! | [`Map`]: each bank's header page and slots, as atomics *outside* the lock | the memory map of `buffer.b` (src/store/buffer.rs), written by puts under the lock and read by the write-out without it |
//! | [`Shard::put`]: lock, step, on `Wait` wait on `freed` and step again | `Shard::write` + `Shard::put` (src/store/shard.rs) |
//! | [`Inner::put`] | `Inner::put` (src/store/write.rs): advance when full, else `Step::Wait`; `Buffer::write` of the slot; the key record with `slot = section * slots + index` |
//! | [`Inner::advance`] | `Inner::advance` (src/store/write.rs): refuse while `flushing[next]`, `free_section`, `Buffer::reset(next)`, mark the full bank `flushing` and send a `Job`, or write it out inline when no writer takes jobs |
//! | [`Inner::free_section`] | `Inner::free_section` / `lowest_free` (src/store/write.rs) |
//! | [`Inner::reset`] | `Buffer::reset` (src/store/buffer.rs): header page first, then `banks[bank]` |
//! | [`Inner::write_out`] | `Inner::write_out` (src/store/write.rs): the inline write-out, under the lock |
//! | [`Shard::write_out`] | `Shard::write_out` (src/store/flush.rs): capture the bank's section under the lock, copy the bank out without it, then under it register the file, clear `flushing[bank]`, and after it notify `freed` |
//! | [`writer_loop`] over a channel | the `toykv-write-N` threads of `Background::start` (src/store/flush.rs) over crossbeam-channel |
//! | clearing `jobs`, then joining the background writer | `Store::stop` (src/store/mod.rs): queued write-outs still finish |
//! | [`Inner::fetch`] | where `Inner::fetch` (src/store/read.rs) looks for a value: the section's file if registered, else the bank naming the section |
//!
//! A fresh shard starts as `open.rs` leaves it: no bank holds a section, `active` 0 and `fill`
//! full, so the first put advances into section 0.
//!
//! # What is checked
//!
//! - No slot of a bank is written, and no bank is reset, while the background writer is
//!   copying that bank out: a ghost flag ([`Shard::copying`]), set while a copy runs and
//!   independent of the protocol's own `flushing` flags, is asserted clear by every bank write.
//! - The copy's header page names the section the writer registers it as, and no section is
//!   written out twice.
//! - At the end, every put's key record points at `seq` (no collection runs, so slot numbers
//!   follow record numbers), its value is where a read would look for it, and every value is
//!   found exactly once among the written-out sections and the filled part of the active bank
//!   (no lost or duplicated puts); sections `0..last` are written out and `last` is active.
//! - Every thread finishes: shuttle fails the run on a deadlock (every thread blocked).
//! - The model reaches the interesting states: across the run some puts wait for a write-out
//!   and some go into the other bank while a write-out is in flight.
//!
//! # What is left out
//!
//! Files, I/O errors and poisoning (`failed`, `guard`, `writable`), syncs and dirty ranges,
//! deletes, garbage collection (which frees section numbers and relocates values through the
//! same `put`), the journal, the cache, the collection hold (`pressure`), recovery
//! (`settle_banks`), several shards, several background writer threads (harmless to leave out:
//! `advance` marks a bank `flushing` only once the other is not, so a shard never has two
//! write-outs in flight), and the real byte layout: a slot holds a value id, a header page a
//! section number.
//!
//! # The injected bugs
//!
//! [`Bug`] lists protocol mistakes the model can be run with; the `*_is_caught` tests run each
//! under a fixed seed (so they fail the same way every time, unless `SHUTTLE_RANDOM_SEED`
//! overrides it) and expect the checks to fail, so that a passing `handoff_is_safe` means
//! something. Each of these bugs fails most single random schedules, and the end-state checks
//! catch the first two even with the ghost flag's assertions taken out.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool as GhostFlag, AtomicUsize as Tally, Ordering::Relaxed};

use shuttle::scheduler::{PctScheduler, RandomScheduler};
use shuttle::sync::atomic::{AtomicU64, Ordering::SeqCst};
use shuttle::sync::mpsc::{Receiver, Sender, channel};
use shuttle::sync::{Arc, Condvar, Mutex};
use shuttle::{Runner, thread};
use toykv::format::BANKS;

/// Slots per bank: tiny, so that banks fill and change hands often.
const SLOTS: usize = 2;
/// Threads putting at once.
const WRITERS: usize = 3;
/// Puts per writer thread.
const PUTS: usize = 3;
/// Puts done after the background writer stopped (one bank's worth, so at least one inline
/// write-out).
const LATE_PUTS: usize = SLOTS;
/// All puts.
const TOTAL: usize = WRITERS * PUTS + LATE_PUTS;

/// A mistake to put into the protocol, to show the checks catch it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bug {
    /// The real protocol.
    None,
    /// `advance` does not look at `flushing[next]`.
    NoFlushingCheck,
    /// The background writer frees the bank (clears `flushing`, notifies) before its copy.
    EarlyFree,
    /// The background writer never notifies `freed`.
    NoNotify,
}

/// A write-out for the background writer.
#[derive(Clone, Copy, Debug)]
struct Job {
    bank: usize,
}

/// A key record: its number, the value slot it names, and the value put (to check against).
#[derive(Clone, Copy, Debug)]
struct Record {
    seq: u64,
    slot: u64,
    value: u64,
}

/// A written-out value section: the bank's header page and slots as copied.
#[derive(Clone, Copy, Debug)]
struct Section {
    header: u64,
    slots: [u64; SLOTS],
}

/// The mapped banks of `buffer.b`: `header[b]` is the section bank `b` names plus one (0: none),
/// `slots[b][i]` a value id (0: empty). Not behind the shard's lock, like the real map.
struct Map {
    header: [AtomicU64; BANKS],
    slots: [[AtomicU64; SLOTS]; BANKS],
}

impl Map {
    fn new() -> Map {
        Map {
            header: std::array::from_fn(|_| AtomicU64::new(0)),
            slots: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU64::new(0))),
        }
    }

    /// Reads bank `bank` whole, one word at a time (each read a point where others may run).
    fn copy(&self, bank: usize) -> Section {
        let header = self.header[bank].load(SeqCst);
        let slots = std::array::from_fn(|i| self.slots[bank][i].load(SeqCst));
        Section { header, slots }
    }
}

/// What the shard's lock guards (the part of `shard::Inner` the hand-off uses).
struct Inner {
    /// The section each bank names (`Buffer::banks`).
    banks: [Option<u32>; BANKS],
    active: usize,
    fill: usize,
    flushing: [bool; BANKS],
    /// Registered value files (`Values`).
    values: BTreeMap<u32, Section>,
    next_seq: u64,
    /// The key sections' records, in order.
    records: Vec<Record>,
    jobs: Option<Sender<Job>>,
    /// Puts that waited (`Counters::stalls`).
    stalls: usize,
    /// Puts that went into a bank while the other was being written out.
    overlapped: usize,
}

/// What a write step did (`write::Step`).
enum Step {
    Done,
    Wait,
}

/// One shard.
struct Shard {
    state: Mutex<Inner>,
    freed: Condvar,
    map: Map,
    /// Ghost state, not part of the protocol: set while a write-out copies the bank.
    copying: [GhostFlag; BANKS],
    bug: Bug,
}

impl Inner {
    /// `Inner::put`.
    fn put(&mut self, shard: &Shard, value: u64) -> Step {
        if self.fill >= SLOTS && !self.advance(shard) {
            return Step::Wait;
        }
        let section = self.banks[self.active].expect("the active bank holds no section");
        let index = self.fill;
        let slot = u64::from(section) * SLOTS as u64 + index as u64;
        let seq = self.next_seq;
        if self.flushing.iter().any(|&f| f) {
            self.overlapped += 1;
        }
        // `Buffer::write`.
        assert!(
            !shard.copying[self.active].load(Relaxed),
            "invariant: a put wrote slot {index} of bank {} while it was being written out",
            self.active
        );
        shard.map.slots[self.active][index].store(value, SeqCst);
        self.records.push(Record { seq, slot, value });
        self.next_seq += 1;
        self.fill += 1;
        Step::Done
    }

    /// `Inner::advance`.
    fn advance(&mut self, shard: &Shard) -> bool {
        let full = self.active;
        let next = (full + 1) % BANKS;
        if self.flushing[next] && shard.bug != Bug::NoFlushingCheck {
            return false;
        }
        let n = self.free_section();
        self.reset(shard, next, n);
        if let Some(s) = self.banks[full]
            && !self.values.contains_key(&s)
            && self.fill > 0
        {
            self.flushing[full] = true;
            let job = Job { bank: full };
            let sent = self.jobs.as_ref().is_some_and(|j| j.send(job).is_ok());
            if !sent {
                self.write_out(shard, full);
                self.flushing[full] = false;
            }
        }
        self.active = next;
        self.fill = 0;
        true
    }

    /// `Inner::free_section`: the lowest number neither a value file nor a bank holds.
    fn free_section(&self) -> u32 {
        (0..)
            .find(|n| !self.values.contains_key(n) && !self.banks.contains(&Some(*n)))
            .expect("section numbers")
    }

    /// `Buffer::reset`: the header page first, then the bank's section.
    fn reset(&mut self, shard: &Shard, bank: usize, section: u32) {
        assert!(
            !shard.copying[bank].load(Relaxed),
            "invariant: bank {bank} was reset while it was being written out"
        );
        shard.map.header[bank].store(u64::from(section) + 1, SeqCst);
        self.banks[bank] = Some(section);
    }

    /// `Inner::write_out`: the inline write-out, under the lock.
    fn write_out(&mut self, shard: &Shard, bank: usize) {
        let Some(n) = self.banks[bank] else {
            return;
        };
        shard.copying[bank].store(true, Relaxed);
        let out = shard.map.copy(bank);
        shard.copying[bank].store(false, Relaxed);
        self.register(n, out);
    }

    /// `Values::insert` of a section just written out.
    fn register(&mut self, n: u32, out: Section) {
        assert_eq!(
            out.header,
            u64::from(n) + 1,
            "invariant: section {n} was written out from a bank naming another section"
        );
        let old = self.values.insert(n, out);
        assert!(
            old.is_none(),
            "invariant: section {n} was written out twice"
        );
    }

    /// Where a read looks for record `slot` (`Inner::fetch`): the section's file if
    /// registered, else the bank naming the section.
    fn fetch(&self, map: &Map, slot: u64) -> Option<u64> {
        let (section, index) = ((slot / SLOTS as u64) as u32, (slot % SLOTS as u64) as usize);
        if let Some(file) = self.values.get(&section) {
            return Some(file.slots[index]);
        }
        let bank = self.banks.iter().position(|&b| b == Some(section))?;
        Some(map.slots[bank][index].load(SeqCst))
    }
}

impl Shard {
    fn new(bug: Bug, jobs: Sender<Job>) -> Shard {
        Shard {
            state: Mutex::new(Inner {
                banks: [None; BANKS],
                active: 0,
                fill: SLOTS,
                flushing: [false; BANKS],
                values: BTreeMap::new(),
                next_seq: 0,
                records: Vec::new(),
                jobs: Some(jobs),
                stalls: 0,
                overlapped: 0,
            }),
            freed: Condvar::new(),
            map: Map::new(),
            copying: std::array::from_fn(|_| GhostFlag::new(false)),
            bug,
        }
    }

    /// `Shard::write` running `Inner::put`: waits on `freed` while both banks are busy.
    fn put(&self, value: u64) {
        let mut g = self.state.lock().unwrap();
        loop {
            match g.put(self, value) {
                Step::Done => return,
                Step::Wait => {
                    g.stalls += 1;
                    g = self.freed.wait(g).unwrap();
                }
            }
        }
    }

    /// `Shard::write_out` (flush.rs): the background writer's job.
    fn write_out(&self, bank: usize) {
        let job = {
            let mut g = self.state.lock().unwrap();
            let n = g.banks[bank];
            if n.is_some() {
                self.copying[bank].store(true, Relaxed);
            }
            if self.bug == Bug::EarlyFree {
                g.flushing[bank] = false;
                drop(g);
                self.freed.notify_all();
            }
            n
        };
        // The copy, without the lock.
        let out = job.map(|n| (n, self.map.copy(bank)));
        self.copying[bank].store(false, Relaxed);
        let mut g = self.state.lock().unwrap();
        if let Some((n, out)) = out {
            g.register(n, out);
        }
        g.flushing[bank] = false;
        drop(g);
        if self.bug != Bug::NoNotify {
            self.freed.notify_all();
        }
    }
}

/// A background writer thread (`Background::start`): write-outs until the channel closes.
fn writer_loop(shard: &Shard, jobs: &Receiver<Job>) {
    for job in jobs.iter() {
        shard.write_out(job.bank);
    }
}

/// The value id writer `w` puts in its put `i`: distinct and never 0 (an empty slot).
fn value_of(w: usize, i: usize) -> u64 {
    (w * 100 + i + 1) as u64
}

/// What one run of the model saw, summed over a test's runs.
#[derive(Default)]
struct Seen {
    stalls: Tally,
    overlapped: Tally,
}

/// One execution: writers and the background writer racing, then the checks.
fn run(bug: Bug, seen: &Seen) {
    let (tx, rx) = channel::<Job>();
    let shard = Arc::new(Shard::new(bug, tx));
    let background = {
        let shard = shard.clone();
        thread::spawn(move || writer_loop(&shard, &rx))
    };
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let shard = shard.clone();
            thread::spawn(move || {
                for i in 0..PUTS {
                    shard.put(value_of(w, i));
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    // `Store::stop`: no more jobs; queued write-outs finish.
    shard.state.lock().unwrap().jobs = None;
    background.join().unwrap();
    // Puts with no background writer write out inline.
    for i in 0..LATE_PUTS {
        shard.put(value_of(WRITERS, i));
    }
    check(&shard);
    let g = shard.state.lock().unwrap();
    seen.stalls.fetch_add(g.stalls, Relaxed);
    seen.overlapped.fetch_add(g.overlapped, Relaxed);
}

/// The end state: every put exactly once, where a read would look, in the right section.
fn check(shard: &Shard) {
    let g = shard.state.lock().unwrap();
    assert_eq!(
        g.flushing, [false; BANKS],
        "invariant: a bank is still flushing"
    );
    assert_eq!(g.records.len(), TOTAL, "invariant: records written");
    for (i, r) in g.records.iter().enumerate() {
        assert_eq!(r.seq, i as u64, "invariant: record numbers in order");
        assert_eq!(
            r.slot, r.seq,
            "invariant: record {} names slot {}",
            r.seq, r.slot
        );
        assert_eq!(
            g.fetch(&shard.map, r.slot),
            Some(r.value),
            "invariant: record {} does not find its value",
            r.seq
        );
    }
    // Sections 0..last are written out; `last` is the active bank's, filled so far.
    let last = ((TOTAL - 1) / SLOTS) as u32;
    let files: Vec<u32> = g.values.keys().copied().collect();
    assert_eq!(
        files,
        (0..last).collect::<Vec<_>>(),
        "invariant: sections written out"
    );
    assert_eq!(g.banks[g.active], Some(last), "invariant: active section");
    assert_eq!(
        g.fill,
        TOTAL - last as usize * SLOTS,
        "invariant: active fill"
    );
    // Each value exactly once among the files and the filled part of the active bank.
    let mut found: Vec<u64> = g.values.values().flat_map(|s| s.slots).collect();
    for (bank, section) in g.banks.iter().enumerate() {
        let Some(s) = section else { continue };
        if g.values.contains_key(s) {
            continue;
        }
        assert_eq!(
            bank, g.active,
            "invariant: bank {bank} holds unwritten section {s}"
        );
        found.extend((0..g.fill).map(|i| shard.map.slots[bank][i].load(SeqCst)));
    }
    found.sort_unstable();
    let mut want: Vec<u64> = g.records.iter().map(|r| r.value).collect();
    want.sort_unstable();
    assert_eq!(found, want, "invariant: values lost or duplicated");
}

/// Runs the model under random schedules, then under PCT (which favours few preemptions at
/// chosen points); a fixed seed when given, else a fresh one each test run.
fn explore(bug: Bug, seed: Option<u64>, random: usize, pct: usize) -> Seen {
    let seen = std::sync::Arc::new(Seen::default());
    let body = {
        let seen = seen.clone();
        move || run(bug, &seen)
    };
    let scheduler = match seed {
        Some(s) => RandomScheduler::new_from_seed(s, random),
        None => RandomScheduler::new(random),
    };
    Runner::new(scheduler, Default::default()).run(body.clone());
    let scheduler = match seed {
        Some(s) => PctScheduler::new_from_seed(s, 3, pct),
        None => PctScheduler::new(3, pct),
    };
    Runner::new(scheduler, Default::default()).run(body);
    std::sync::Arc::into_inner(seen).expect("runs are over")
}

#[test]
fn handoff_is_safe() {
    let seen = explore(Bug::None, None, 8000, 4000);
    // The interesting paths were taken: puts waited for a write-out, and puts went on into
    // the other bank while one was in flight.
    assert!(seen.stalls.load(Relaxed) > 0, "no put ever waited");
    assert!(
        seen.overlapped.load(Relaxed) > 0,
        "no put overlapped a write-out"
    );
}

/// The seed for the injected-bug runs, fixed so that they fail the same way every time.
const SEED: u64 = 0x5eed_4a4d;

#[test]
#[should_panic(expected = "invariant")]
fn missing_flushing_check_is_caught() {
    explore(Bug::NoFlushingCheck, Some(SEED), 200, 200);
}

#[test]
#[should_panic(expected = "invariant")]
fn early_free_is_caught() {
    explore(Bug::EarlyFree, Some(SEED), 200, 200);
}

#[test]
#[should_panic(expected = "deadlock")]
fn missing_notify_is_caught() {
    explore(Bug::NoNotify, Some(SEED), 200, 200);
}
