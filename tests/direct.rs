//! The value sections of a real store are open with the real `O_DIRECT` flag (read back from
//! `/proc/self/fdinfo`), and direct reads through them return the right bytes.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use toykv::{Options, Store};

/// The open flags of every descriptor of this process whose path ends with `suffix`.
fn flags_of(dir: &Path, suffix: &str) -> Vec<(PathBuf, u32)> {
    let mut found = Vec::new();
    for e in fs::read_dir("/proc/self/fd").unwrap() {
        let e = e.unwrap();
        let Ok(target) = fs::read_link(e.path()) else {
            continue;
        };
        if !target.starts_with(dir) || !target.to_string_lossy().ends_with(suffix) {
            continue;
        }
        let info = fs::read_to_string(format!(
            "/proc/self/fdinfo/{}",
            e.file_name().to_string_lossy()
        ))
        .unwrap();
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .map(|f| u32::from_str_radix(f.trim(), 8).unwrap())
            .unwrap();
        found.push((target, flags));
    }
    found
}

#[test]
fn value_sections_have_o_direct_set() {
    assert_eq!(
        libc::O_DIRECT,
        0o40000,
        "x86-64 O_DIRECT; 0x40000 is O_NOATIME"
    );
    let d = tempfile::Builder::new()
        .tempdir_in(crate::common::base())
        .unwrap();
    let dir = d.path().canonicalize().unwrap();
    let check = |store: &Store, sections: usize| {
        let v = flags_of(&dir, ".v");
        assert_eq!(v.len(), sections, "{v:?}");
        for (path, flags) in v {
            assert_ne!(
                flags & libc::O_DIRECT as u32,
                0,
                "{} lacks O_DIRECT",
                path.display()
            );
            assert_eq!(flags & libc::O_NOATIME as u32, 0);
        }
        for k in 0..100u64 {
            let v = store.get(k).unwrap().unwrap();
            assert_eq!(&v[..], &[k as u8; 200][..]);
        }
    };
    // One shard, so that 100 puts fill six 16-slot sections; no GC, so none goes away.
    let opts = || Options::new().section_slots(16).shards(1).gc(false);
    {
        let store = Store::open_with(&dir, opts()).unwrap();
        for k in 0..100u64 {
            store.put(k, [k as u8; 200]).unwrap();
        }
        // Full banks are written out in the background: wait for the sixth.
        let t = std::time::Instant::now();
        while flags_of(&dir, ".v").len() < 6 && t.elapsed().as_secs() < 10 {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        check(&store, 6);
    }
    // Reopened sections are direct too.
    let store = Store::open_with(&dir, opts()).unwrap();
    check(&store, 6);
    drop(store);
    // With direct I/O off, they are not.
    let store = Store::open_with(&dir, opts().direct_io(false)).unwrap();
    for (path, flags) in flags_of(&dir, ".v") {
        assert_eq!(flags & libc::O_DIRECT as u32, 0, "{}", path.display());
    }
    assert_eq!(store.get(7u64).unwrap().unwrap().len(), 200);
}
