//! Kill points: named places in the engine where a crash test can have the process die by
//! SIGKILL, the same signal as `kill -9`, so that crashes land exactly inside a bank
//! write-out, a sync or a step of garbage collection rather than wherever a timer falls.
//!
//! A process started with `TOYKV_KILL_AT=<point>` dies the first time it reaches `<point>`;
//! `TOYKV_KILL_AT=<point>@<n>` the `n`-th time. Without the variable a point costs one load
//! of an initialised `OnceLock`. The points, in the order a write meets them:
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
//! `tests/crash` uses every point.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable that arms a kill point.
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

struct Armed {
    point: String,
    nth: u64,
    seen: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let spec = std::env::var(ENV).ok()?;
            let (point, nth) = match spec.split_once('@') {
                Some((p, n)) => (p.to_string(), n.parse().ok()?),
                None => (spec, 1),
            };
            Some(Armed {
                point,
                nth,
                seen: AtomicU64::new(0),
            })
        })
        .as_ref()
}

/// Passes kill point `point`: the process dies here if `TOYKV_KILL_AT` says so.
pub(crate) fn point(point: &str) {
    let Some(a) = armed() else {
        return;
    };
    if a.point == point && a.seen.fetch_add(1, Ordering::Relaxed) + 1 == a.nth {
        crate::io::os::kill_self();
    }
}
