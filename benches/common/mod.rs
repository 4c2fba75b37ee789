//! Shared set-up of the benchmarks.
#![allow(dead_code)] // each benchmark uses a different part

pub mod counting;

use std::path::PathBuf;

use toykv::Store;

/// The value every benchmark writes.
pub const VALUE: [u8; 256] = [0x5a; 256];
/// Records per section (the default).
pub const SLOTS: u64 = 65_536;

/// A directory under `target/bench-data` (a real file system; tmpfs would hide O_DIRECT).
pub fn data_dir(name: &str) -> PathBuf {
    let base = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&base).unwrap();
    base.join(name)
}

/// The `i`-th key of a fixed permutation of `0..n`: multiply by an odd constant modulo the
/// next power of two and skip what falls outside.
pub fn order(n: u64) -> impl Iterator<Item = u64> {
    let m = n.next_power_of_two();
    (0u64..)
        .map(move |i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15) & (m - 1))
        .filter(move |&k| k < n)
        .take(n as usize)
}

/// A store holding keys `0..n` with 256-byte values, written in [`order`]; made once and kept
/// for later runs.
pub fn filled(name: &str, n: u64) -> PathBuf {
    let dir = data_dir(name);
    let done = dir.join("FILLED");
    if done.exists() {
        return dir;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let store = Store::open(&dir).unwrap();
    for k in order(n) {
        store.put(k, VALUE).unwrap();
    }
    store.close().unwrap();
    std::fs::write(&done, b"").unwrap();
    dir
}
