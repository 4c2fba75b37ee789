//! Shared by the integration tests: where their temporary directories go.

use std::path::PathBuf;

/// The directory test stores are made in: `TOYKV_TEST_DIR` when set (CI points it at a
/// device with 4 KiB sectors), else Cargo's per-target temporary directory. Both must be a
/// real file system: tmpfs accepts misaligned O_DIRECT and would hide alignment bugs.
pub fn base() -> PathBuf {
    std::env::var_os("TOYKV_TEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")), PathBuf::from)
}
