//! Helpers for unit tests.

use std::path::PathBuf;

/// A temporary directory on a real file system (not tmpfs, which ignores `O_DIRECT`
/// alignment): under `TOYKV_TEST_DIR` if set, else under the crate's `target/`.
pub(crate) fn tempdir() -> tempfile::TempDir {
    let base = std::env::var_os("TOYKV_TEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-tmp"));
    std::fs::create_dir_all(&base).unwrap();
    tempfile::tempdir_in(base).unwrap()
}
