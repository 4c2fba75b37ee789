//! How much memory this process may use: the machine's (`/proc/meminfo`) or its memory
//! cgroup's limit (v1 `memory.limit_in_bytes`, v2 `memory.max`), whichever is smaller. It
//! sizes the default read cache ([`default_cache_bytes`](crate::options::default_cache_bytes)),
//! so a store in a container or a memory-limited service is not killed for its cache.
//!
//! The parsing is pure (the files' contents in, bytes out) so that it is tested on sample
//! contents; [`limit`] reads the files through a function, the operating system's by
//! [`process_limit`].

/// A cgroup limit at or above this means none: v1 reports "unlimited" as a page-rounded
/// `i64::MAX` (9223372036854771712).
const UNLIMITED: u64 = 1 << 60;

/// `MemTotal` from the contents of `/proc/meminfo`, in bytes.
pub(crate) fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut words = line.split_whitespace().skip(1);
    let n: u64 = words.next()?.parse().ok()?;
    let unit = match words.next() {
        None => 1,
        Some(u) if u.eq_ignore_ascii_case("kb") => 1024,
        Some(_) => return None,
    };
    n.checked_mul(unit)
}

/// A cgroup memory limit from the contents of v2 `memory.max` or v1
/// `memory.limit_in_bytes`: `None` for no limit (`max`, or v1's huge "unlimited") or
/// contents that do not parse.
pub(crate) fn cgroup_limit(contents: &str) -> Option<u64> {
    let n: u64 = contents.trim().parse().ok()?;
    (n < UNLIMITED).then_some(n)
}

/// The process's cgroup paths from the contents of `/proc/self/cgroup`: (v2's unified
/// hierarchy, v1's memory controller), each if listed.
pub(crate) fn cgroup_paths(self_cgroup: &str) -> (Option<&str>, Option<&str>) {
    let (mut v2, mut v1) = (None, None);
    for line in self_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            v2 = Some(path);
        } else if controllers.split(',').any(|c| c == "memory") {
            v1 = Some(path);
        }
    }
    (v2, v1)
}

/// The memory the process may use, reading files with `read` (`None` for a file that
/// cannot be read): the smallest of `MemTotal` and the limits of the process's memory cgroup
/// (looked up under its own path, and at the hierarchy's root, which is the process's own in
/// a container's cgroup namespace). `None` if none of them could be read.
pub(crate) fn limit(read: impl Fn(&str) -> Option<String>) -> Option<u64> {
    let mut found: Vec<u64> = Vec::new();
    found.extend(read("/proc/meminfo").as_deref().and_then(mem_total));
    let own = read("/proc/self/cgroup").unwrap_or_default();
    let (v2, v1) = cgroup_paths(&own);
    let mut files = vec![
        "/sys/fs/cgroup/memory.max".to_string(),
        "/sys/fs/cgroup/memory/memory.limit_in_bytes".to_string(),
    ];
    if let Some(p) = v2.filter(|p| *p != "/") {
        files.push(format!("/sys/fs/cgroup{p}/memory.max"));
    }
    if let Some(p) = v1.filter(|p| *p != "/") {
        files.push(format!("/sys/fs/cgroup/memory{p}/memory.limit_in_bytes"));
    }
    for f in files {
        found.extend(read(&f).as_deref().and_then(cgroup_limit));
    }
    found.into_iter().min()
}

/// [`limit`] for this process, from the operating system's files.
pub(crate) fn process_limit() -> Option<u64> {
    limit(|path| std::fs::read_to_string(path).ok())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const MEMINFO: &str = "MemTotal:        8048576 kB\nMemFree:          123456 kB\n";
    const GIB: u64 = 1 << 30;

    fn files(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |p| map.get(p).cloned()
    }

    #[test]
    fn meminfo_total_is_read_in_bytes() {
        assert_eq!(mem_total(MEMINFO), Some(8048576 * 1024));
        assert_eq!(mem_total("MemFree: 1 kB\n"), None);
        assert_eq!(mem_total("MemTotal: lots kB\n"), None);
        assert_eq!(mem_total(""), None);
    }

    #[test]
    fn cgroup_limits_parse_and_unlimited_is_none() {
        // v2
        assert_eq!(cgroup_limit("max\n"), None);
        assert_eq!(cgroup_limit("1073741824\n"), Some(GIB));
        // v1: a limit, and "unlimited" as the kernel writes it.
        assert_eq!(cgroup_limit("805306368\n"), Some(768 << 20));
        assert_eq!(cgroup_limit("9223372036854771712\n"), None);
        assert_eq!(cgroup_limit(""), None);
        assert_eq!(cgroup_limit("-1"), None);
    }

    #[test]
    fn own_cgroup_paths_are_found() {
        let v1 = "4:memory:/process_api/abc\n3:cpuset:/\n0::/\n";
        assert_eq!(cgroup_paths(v1), (Some("/"), Some("/process_api/abc")));
        let v2 = "0::/system.slice/toykv.service\n";
        assert_eq!(
            cgroup_paths(v2),
            (Some("/system.slice/toykv.service"), None)
        );
        let v1_joint = "7:cpu,memory,cpuacct:/x\n";
        assert_eq!(cgroup_paths(v1_joint), (None, Some("/x")));
        assert_eq!(cgroup_paths("garbage"), (None, None));
    }

    #[test]
    fn the_smallest_of_machine_and_cgroup_wins() {
        let machine = 8048576 * 1024;
        // No cgroup files: the machine's memory.
        assert_eq!(limit(files(&[("/proc/meminfo", MEMINFO)])), Some(machine));
        // v1, unlimited: still the machine's.
        let v1_free = files(&[
            ("/proc/meminfo", MEMINFO),
            (
                "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                "9223372036854771712\n",
            ),
        ]);
        assert_eq!(limit(v1_free), Some(machine));
        // v1, limited under the process's own path.
        let v1 = files(&[
            ("/proc/meminfo", MEMINFO),
            ("/proc/self/cgroup", "4:memory:/svc\n0::/\n"),
            (
                "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                "9223372036854771712\n",
            ),
            (
                "/sys/fs/cgroup/memory/svc/memory.limit_in_bytes",
                "805306368\n",
            ),
        ]);
        assert_eq!(limit(v1), Some(768 << 20));
        // v2: "max" at the process's cgroup, a number at the namespace root.
        let v2 = files(&[
            ("/proc/meminfo", MEMINFO),
            ("/proc/self/cgroup", "0::/app\n"),
            ("/sys/fs/cgroup/app/memory.max", "max\n"),
            ("/sys/fs/cgroup/memory.max", "2147483648\n"),
        ]);
        assert_eq!(limit(v2), Some(2 * GIB));
        let v2_own = files(&[
            ("/proc/meminfo", MEMINFO),
            ("/proc/self/cgroup", "0::/app\n"),
            ("/sys/fs/cgroup/app/memory.max", "1073741824\n"),
        ]);
        assert_eq!(limit(v2_own), Some(GIB));
        // A limit above the machine's memory does not raise it.
        let big = files(&[
            ("/proc/meminfo", MEMINFO),
            ("/sys/fs/cgroup/memory.max", "1099511627776\n"),
        ]);
        assert_eq!(limit(big), Some(machine));
        // Nothing readable.
        assert_eq!(limit(files(&[])), None);
        assert_eq!(limit(files(&[("/proc/meminfo", "junk")])), None);
    }
}
