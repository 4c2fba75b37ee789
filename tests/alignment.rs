//! A device whose direct-I/O alignment exceeds one page (4096 bytes) is refused at open with
//! [`Error::Alignment`], naming the file and the alignment, before any put is accepted: the
//! bank write-outs and the journal align direct writes to 4096 bytes, so such a device would
//! otherwise accept a bank's worth of puts and then fail the first write-out with `EINVAL`.

use std::path::Path;
use std::sync::Arc;

use toykv::io::{Align, SimFs, Vfs};
use toykv::{Error, Options, Store};

fn opts(fs: &SimFs) -> Options {
    Options::new()
        .section_slots(16)
        .shards(1)
        .vfs(Arc::new(fs.clone()))
}

fn aligned(n: usize) -> SimFs {
    SimFs::with_align(Align { mem: n, offset: n })
}

#[test]
fn alignment_above_a_page_is_refused_at_open() {
    for (mem, offset) in [(8192, 8192), (512, 8192), (8192, 512), (65536, 65536)] {
        let fs = SimFs::with_align(Align { mem, offset });
        let dir = Path::new("/db");
        let e = Store::open_with(dir, opts(&fs)).err();
        match e {
            Some(Error::Alignment { path, need, max }) => {
                assert_eq!(path, dir.join("LOCK"));
                assert_eq!(need, mem.max(offset));
                assert_eq!(max, 4096);
                let msg = Error::Alignment { path, need, max }.to_string();
                assert!(
                    msg.contains("/db") && msg.contains(&need.to_string()),
                    "{msg}"
                );
            }
            other => panic!("{mem}/{offset}: expected Error::Alignment, got {other:?}"),
        }
        // Refused before anything was created: only the lock file is there.
        assert_eq!(fs.list(dir).unwrap(), vec!["LOCK".to_string()]);
        // The refusal released the lock; buffered I/O works on the same device.
        let s = Store::open_with(dir, opts(&fs).direct_io(false)).unwrap();
        s.put(1u64, b"v").unwrap();
        assert_eq!(s.get(1u64).unwrap().as_deref(), Some(&b"v"[..]));
    }
}

#[test]
fn alignment_up_to_a_page_is_accepted() {
    for n in [512, 4096] {
        let fs = aligned(n);
        let s = Store::open_with("/db", opts(&fs)).unwrap();
        // Past two banks of 16 slots: write-outs happen with this alignment.
        for k in 0..40u64 {
            s.put(k, [k as u8; 100]).unwrap();
        }
        s.sync().unwrap();
        for k in 0..40u64 {
            assert_eq!(
                s.get(k).unwrap().as_deref(),
                Some(&[k as u8; 100][..]),
                "{n}: {k}"
            );
        }
    }
}
