//! Injected I/O faults by call count: the `n`-th I/O call from now fails, so a test can walk a
//! fault across every call a workload makes, one run per call.
//!
//! Counted calls: `open`, `create_dir`, `list`, `rename`, `remove`, `sync_dir`, `lock`;
//! on a file `read_at`, `write_at`, `sync`, `set_len`, `allocate`, `map`, `map`; on a
//! map, region or span `flush` (msync) and `copy_to` (which also counts the write it does).
//! Stores into and loads from a map or region are memory accesses, not calls, and never fail.

use std::io;

use super::{SimFs, lock};

/// What an injected fault does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The call fails with `EIO`.
    Eio,
    /// The call fails with `ENOSPC`.
    Enospc,
    /// A write stores the first half of its bytes, then fails with `ENOSPC` (a short write
    /// whose retry found the disk full); any other call fails with `EIO`.
    Short,
}

/// The kind of a counted call, which decides what a [`Fault::Short`] does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Call {
    Write,
    Other,
}

/// What the called operation must do.
#[derive(Debug)]
pub(super) enum Verdict {
    /// Go ahead.
    Run,
    /// Fail with this error.
    Fail(io::Error),
    /// Write only the first half, then fail with this error.
    Half(io::Error),
}

impl SimFs {
    /// Makes the `n`-th counted I/O call from now (0 = the next one) fail with `fault`; the
    /// calls after it succeed again.
    pub fn fail_call(&self, n: u64, fault: Fault) {
        let mut st = lock(&self.state);
        st.fault = Some((st.calls + n, fault));
    }

    /// Counted I/O calls made so far.
    pub fn calls(&self) -> u64 {
        lock(&self.state).calls
    }

    /// Counts a call and says whether it fails.
    pub(super) fn call(&self, kind: Call) -> Verdict {
        let mut st = lock(&self.state);
        let now = st.calls;
        st.calls += 1;
        let Some((at, fault)) = st.fault else {
            return Verdict::Run;
        };
        if at != now {
            return Verdict::Run;
        }
        st.fault = None;
        let errno = |e| io::Error::from_raw_os_error(e);
        match (fault, kind) {
            (Fault::Eio, _) | (Fault::Short, Call::Other) => Verdict::Fail(errno(libc::EIO)),
            (Fault::Enospc, _) => Verdict::Fail(errno(libc::ENOSPC)),
            (Fault::Short, Call::Write) => Verdict::Half(errno(libc::ENOSPC)),
        }
    }

    /// Counts a call that cannot be short: `Err` when it fails.
    pub(super) fn check(&self) -> io::Result<()> {
        match self.call(Call::Other) {
            Verdict::Run => Ok(()),
            Verdict::Fail(e) | Verdict::Half(e) => Err(e),
        }
    }
}
