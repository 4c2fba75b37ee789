//! Kill points: named places in the engine where a crash test can have the process die by
//! SIGKILL, the same signal as `kill -9`, so that crashes land exactly inside a bank
//! write-out, a sync or a step of garbage collection rather than wherever a timer falls.
//!
//! Only with the `kill-points` feature (off by default; the crate's own tests turn it on):
//! without it a point is an empty function and nothing reads `TOYKV_KILL_AT`. With it, a
//! point is armed only by a program that calls [`arm`] (or [`arm_from_env`]): the crash tests'
//! children do, the server and the `toykv` binary never do, so no environment variable can
//! kill them. `arm("<point>")` makes the process die the first time it reaches `<point>`;
//! `arm("<point>@<n>")` the `n`-th time. Unarmed, a point costs one load of a `OnceLock`. The
//! points, in the order a write meets them:
//!
//! | point | where |
//! |---|---|
//! | `bank-reset` | a bank's header page names its new section, before any value goes in |
//! | `key-section` | a new key section file exists, before the directory is synced |
//! | `write-out` | a full bank is about to be written to its `.v` file |
//! | `write-out-synced` | the `.v` file is written and synced under its temporary name |
//! | `write-out-done` | the `.v` file is in place, before the shard registers it |
//! | `sync-data` | a sync has flushed values and records, before it writes the mark |
//! | `gc-moved` | collection has put a section's live values again, before its sync |
//! | `gc-synced` | collection has synced, before the value section is removed |
//! | `gc-keys-marked` | the mark names a new first key section, before the old one is removed |
//! | `gc-compacted` | the first key section's live records were moved |
//!
//! With durability `always`, the journal adds [`JOURNAL_POINTS`]:
//!
//! | point | where |
//! |---|---|
//! | `journal-written` | a commit's frames are written, before the journal's flush |
//! | `journal-synced` | a commit is durable, before its writers are told |
//! | `checkpoint` | every shard is synced, before the next epoch's header |
//! | `replayed` | open has replayed the journal into the shards, before syncing them |
//!
//! Atomic batches add [`BATCH_POINTS`]:
//!
//! | point | where |
//! |---|---|
//! | `batch-half` | a batch's intent is written and half its entries applied |
//! | `batch-applied` | a batch is applied whole and its entries are pending in the journal, before any commit |
//!
//! `tests/crash` uses every point.

#[cfg(feature = "kill-points")]
pub use armed::*;

/// Passes kill point `point`: a no-op, as this build has no kill points (the `kill-points`
/// feature is off).
#[cfg(not(feature = "kill-points"))]
#[inline(always)]
pub(crate) fn point(_point: &str) {}

#[cfg(feature = "kill-points")]
mod armed {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// The environment variable [`arm_from_env`] reads: how the crash tests tell a child
    /// process where to die.
    pub const ENV: &str = "TOYKV_KILL_AT";

    /// Every kill point, for tests that want to aim at each.
    pub const POINTS: [&str; 10] = [
        "bank-reset",
        "key-section",
        "write-out",
        "write-out-synced",
        "write-out-done",
        "sync-data",
        "gc-moved",
        "gc-synced",
        "gc-keys-marked",
        "gc-compacted",
    ];

    /// The kill points of the journal (durability `always`).
    pub const JOURNAL_POINTS: [&str; 4] = [
        "journal-written",
        "journal-synced",
        "checkpoint",
        "replayed",
    ];

    /// The kill points of atomic batches.
    pub const BATCH_POINTS: [&str; 2] = ["batch-half", "batch-applied"];

    struct Armed {
        point: String,
        nth: u64,
        seen: AtomicU64,
    }

    static ARMED: OnceLock<Armed> = OnceLock::new();

    /// Arms the kill point `spec` names (`<point>` or `<point>@<n>`) for the rest of the
    /// process. Fails on a spec that does not parse, or when a point is already armed.
    pub fn arm(spec: &str) -> Result<(), String> {
        let (point, nth) = match spec.split_once('@') {
            Some((p, n)) => match n.parse::<u64>() {
                Ok(n) if n > 0 => (p, n),
                _ => return Err(format!("kill point '{spec}': '{n}' is not a count from 1")),
            },
            None => (spec, 1),
        };
        let armed = Armed {
            point: point.to_string(),
            nth,
            seen: AtomicU64::new(0),
        };
        ARMED
            .set(armed)
            .map_err(|_| format!("kill point '{spec}': a kill point is already armed"))
    }

    /// Arms the kill point [`ENV`] names, if it is set; `Ok(false)` when it is not.
    pub fn arm_from_env() -> Result<bool, String> {
        match std::env::var(ENV) {
            Ok(spec) => arm(&spec).map(|()| true),
            Err(_) => Ok(false),
        }
    }

    /// Passes kill point `point`: the process dies here, by SIGKILL, if [`arm`] said so.
    pub(crate) fn point(point: &str) {
        let Some(a) = ARMED.get() else {
            return;
        };
        if a.point == point && a.seen.fetch_add(1, Ordering::Relaxed) + 1 == a.nth {
            // SIGKILL cannot be caught: when the call succeeds it does not return. Should it
            // fail, a crash test sees a child that lives on and fails.
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        }
    }
}

#[cfg(all(test, feature = "kill-points"))]
mod tests {
    use super::*;

    #[test]
    fn arm_parses_its_spec_and_arms_once() {
        assert!(arm("write-out@0").is_err());
        assert!(arm("write-out@x").is_err());
        // No kill point has this name: arming it cannot end the test process.
        assert_eq!(arm("no-such-point@3"), Ok(()));
        assert!(arm("no-such-point").is_err(), "armed twice");
        for p in POINTS.iter().chain(&JOURNAL_POINTS) {
            point(p);
        }
    }
}
