//! Memory cgroups for the larger-than-memory mode: one group per store's child process, with
//! a limit that includes the page cache the child brings in, so that stores that read through
//! the page cache (LMDB, redb, sled, fjall, RocksDB) and toykv (direct I/O) get the same
//! memory.
//!
//! cgroup v2 when `/sys/fs/cgroup/cgroup.controllers` exists (a child group with
//! `memory.max`, the memory controller enabled in the parent's `cgroup.subtree_control` if
//! it is not), else v1 when `/sys/fs/cgroup/memory/memory.limit_in_bytes` exists (a group
//! with `memory.limit_in_bytes`). Groups are made under this process's own group when it can
//! hold them, else under the hierarchy's root. The child is moved in by the shell that
//! starts it (`echo $$ > cgroup.procs; exec ...`), before the store runs.

use std::path::{Path, PathBuf};

use toykv::ycsb::DbResult;

const V2_ROOT: &str = "/sys/fs/cgroup";
const V1_ROOT: &str = "/sys/fs/cgroup/memory";

/// Which cgroup interface the machine has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

impl Version {
    pub fn number(self) -> u8 {
        match self {
            Version::V1 => 1,
            Version::V2 => 2,
        }
    }

    fn limit_file(self) -> &'static str {
        match self {
            Version::V1 => "memory.limit_in_bytes",
            Version::V2 => "memory.max",
        }
    }
}

/// Where the groups are made.
#[derive(Debug)]
pub struct Limiter {
    pub version: Version,
    parent: PathBuf,
}

/// One store's group.
#[derive(Debug)]
pub struct Group {
    version: Version,
    dir: PathBuf,
}

/// What a group reports once its process has exited.
#[derive(Clone, Debug, Default)]
pub struct Usage {
    /// The limit as the kernel holds it (v1 rounds it to pages).
    pub limit: u64,
    /// Peak charge, page cache included (v1 `memory.max_usage_in_bytes`, v2 `memory.peak`
    /// where the kernel has it).
    pub peak: Option<u64>,
    /// Times the limit was hit (v1 `memory.failcnt`, v2 `max` in `memory.events`).
    pub limit_hits: Option<u64>,
    /// Processes the OOM killer killed in the group (v1 `oom_kill` in `memory.oom_control`,
    /// v2 `oom_kill` in `memory.events`), where the kernel reports it.
    pub oom_kills: Option<u64>,
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn read_u64(path: &Path) -> Option<u64> {
    read(path)?.trim().parse().ok()
}

/// The value of `key` in a flat keyed file (`key value` lines: `memory.events`,
/// `memory.oom_control`).
fn keyed(contents: &str, key: &str) -> Option<u64> {
    contents.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// This process's group path in the hierarchy: v2's `0::PATH` line or v1's memory line of
/// `/proc/self/cgroup`.
fn own_path(version: Version) -> Option<String> {
    let contents = read(Path::new("/proc/self/cgroup"))?;
    contents.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let ours = match version {
            Version::V2 => id == "0" && controllers.is_empty(),
            Version::V1 => controllers.split(',').any(|c| c == "memory"),
        };
        ours.then(|| path.to_string())
    })
}

/// `root` joined with a group path (`/a/b`); `root` itself for `/`.
fn under(root: &str, path: &str) -> PathBuf {
    Path::new(root).join(path.trim_start_matches('/'))
}

/// The machine's cgroup version, if it has a memory controller this process can see.
pub fn detect_version() -> Option<Version> {
    if Path::new(V2_ROOT).join("cgroup.controllers").exists() {
        Some(Version::V2)
    } else if Path::new(V1_ROOT).join("memory.limit_in_bytes").exists() {
        Some(Version::V1)
    } else {
        None
    }
}

/// The memory limit of this process's own group, as the process itself sees it (`None` if
/// there is no memory cgroup or no limit): what a child records to show that the limit it
/// was meant to run under was applied.
pub fn own_limit() -> Option<u64> {
    let version = detect_version()?;
    let root = match version {
        Version::V1 => V1_ROOT,
        Version::V2 => V2_ROOT,
    };
    let dir = under(root, &own_path(version)?);
    let text = read(&dir.join(version.limit_file()))?;
    let n: u64 = text.trim().parse().ok()?;
    // v1 says "no limit" with a page-rounded i64::MAX, v2 with "max" (which does not parse).
    (n < 1 << 60).then_some(n)
}

/// The peak charge of this process's own group so far (v1 `memory.max_usage_in_bytes`, v2
/// `memory.peak`), if the kernel reports it.
pub fn own_peak() -> Option<u64> {
    let version = detect_version()?;
    let (root, file) = match version {
        Version::V1 => (V1_ROOT, "memory.max_usage_in_bytes"),
        Version::V2 => (V2_ROOT, "memory.peak"),
    };
    read_u64(&under(root, &own_path(version)?).join(file))
}

impl Limiter {
    /// Finds where groups can be made, or says why they cannot.
    pub fn new() -> DbResult<Limiter> {
        let why = "a memory limit per store needs a memory cgroup this process can create \
                   groups in (root, and cgroup v2 with the memory controller or v1 with \
                   /sys/fs/cgroup/memory)";
        let version = detect_version().ok_or_else(|| {
            format!(
                "{why}: found neither {V2_ROOT}/cgroup.controllers (v2) nor \
                 {V1_ROOT}/memory.limit_in_bytes (v1)"
            )
        })?;
        let root = match version {
            Version::V1 => V1_ROOT,
            Version::V2 => V2_ROOT,
        };
        let mut candidates = Vec::new();
        if let Some(own) = own_path(version) {
            let dir = under(root, &own);
            if dir != Path::new(root) && dir.is_dir() {
                candidates.push(dir);
            }
        }
        candidates.push(PathBuf::from(root));
        let mut errors = Vec::new();
        for parent in candidates {
            match usable(version, &parent) {
                Ok(()) => return Ok(Limiter { version, parent }),
                Err(e) => errors.push(format!("{}: {e}", parent.display())),
            }
        }
        Err(format!(
            "{why} (cgroup v{}): {}",
            version.number(),
            errors.join("; ")
        )
        .into())
    }

    /// Makes group `name` with a memory limit of `limit` bytes and checks that the kernel
    /// holds it.
    pub fn create(&self, name: &str, limit: u64) -> DbResult<Group> {
        let dir = self.parent.join(name);
        if dir.exists() {
            let _ = std::fs::remove_dir(&dir);
        }
        std::fs::create_dir(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let group = Group {
            version: self.version,
            dir,
        };
        let file = group.dir.join(self.version.limit_file());
        std::fs::write(&file, limit.to_string())
            .map_err(|e| format!("writing {limit} to {}: {e}", file.display()))?;
        // v2: no swap to escape to (best effort: the file exists only with swap
        // accounting). v1's memory.memsw.limit_in_bytes is left alone: with it set, the
        // kernel (6.18 here) charged memory+swap first and counted no limit hits in either
        // failcnt; the machines this runs on have no swap.
        if self.version == Version::V2 {
            let _ = std::fs::write(group.dir.join("memory.swap.max"), "0");
        }
        let held = read_u64(&file).unwrap_or(u64::MAX);
        // v1 rounds down to whole pages.
        if held > limit || held + 65536 < limit {
            return Err(format!("{} holds {held} after writing {limit}", file.display()).into());
        }
        Ok(group)
    }
}

/// Whether groups with a memory limit can be made under `parent`: v2 needs the memory
/// controller in `parent`'s `cgroup.subtree_control` (enabled here if it is not); both need
/// a group to be creatable (a test group is made and removed).
fn usable(version: Version, parent: &Path) -> DbResult<()> {
    if version == Version::V2 {
        let has = |file: &str| {
            read(&parent.join(file)).is_some_and(|s| s.split_whitespace().any(|c| c == "memory"))
        };
        if !has("cgroup.controllers") {
            return Err("no memory controller in cgroup.controllers".into());
        }
        if !has("cgroup.subtree_control") {
            std::fs::write(parent.join("cgroup.subtree_control"), "+memory")
                .map_err(|e| format!("enabling +memory in cgroup.subtree_control: {e}"))?;
        }
    }
    let probe = parent.join(format!("peers-probe-{}", std::process::id()));
    std::fs::create_dir(&probe).map_err(|e| format!("mkdir {}: {e}", probe.display()))?;
    let limit_file = probe.join(version.limit_file());
    let exists = limit_file.exists();
    let _ = std::fs::remove_dir(&probe);
    if exists {
        Ok(())
    } else {
        Err(format!("a new group has no {}", version.limit_file()).into())
    }
}

impl Group {
    /// The file a process writes its pid to, to move into the group.
    pub fn procs(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Limit, peak, limit hits and OOM kills, read after the process has exited.
    pub fn usage(&self) -> Usage {
        let file = |f: &str| self.dir.join(f);
        let limit = read_u64(&file(self.version.limit_file())).unwrap_or(0);
        match self.version {
            Version::V1 => Usage {
                limit,
                peak: read_u64(&file("memory.max_usage_in_bytes")),
                limit_hits: read_u64(&file("memory.failcnt")),
                oom_kills: read(&file("memory.oom_control")).and_then(|s| keyed(&s, "oom_kill")),
            },
            Version::V2 => {
                let events = read(&file("memory.events")).unwrap_or_default();
                Usage {
                    limit,
                    peak: read_u64(&file("memory.peak")),
                    limit_hits: keyed(&events, "max"),
                    oom_kills: keyed(&events, "oom_kill"),
                }
            }
        }
    }

    /// Removes the group (its process must have exited; retried briefly while the kernel
    /// finishes tearing the process down). Returns the error of the last try.
    pub fn remove(self) -> std::io::Result<()> {
        let mut last = Ok(());
        for _ in 0..50 {
            last = std::fs::remove_dir(&self.dir);
            if last.is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        last
    }
}

/// Bytes from a size such as `1073741824`, `1G`, `1GiB`, `64M`, `512k` (binary units).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(digits);
    let n: u64 = n.parse().map_err(|_| format!("bad size '{s}'"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(format!("bad size '{s}' (units: K, M, G, T)")),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("size '{s}' too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert!(parse_size("1X").is_err());
        assert!(parse_size("G").is_err());
    }

    #[test]
    fn keyed_files() {
        let events = "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\n";
        assert_eq!(keyed(events, "max"), Some(12));
        assert_eq!(keyed(events, "oom_kill"), Some(1));
        assert_eq!(keyed(events, "oom"), Some(1));
        let oom_control = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(keyed(oom_control, "oom_kill"), Some(3));
        assert_eq!(keyed(oom_control, "missing"), None);
    }

    #[test]
    fn paths() {
        assert_eq!(
            under("/sys/fs/cgroup", "/"),
            PathBuf::from("/sys/fs/cgroup")
        );
        assert_eq!(
            under("/sys/fs/cgroup/memory", "/a/b"),
            PathBuf::from("/sys/fs/cgroup/memory/a/b")
        );
    }
}
