//! The deterministic operation sequence shared by child and parent, the values its puts write,
//! and the model the parent checks the store against.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// Keys are drawn from `0..KEYS`, so overwrites and deletes of live keys are common.
pub(crate) const KEYS: u64 = 500;

/// One operation of the child's sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// Put `value(seed, n, key, len)` at `key`, where `n` is the op number.
    Put { key: u64, len: usize },
    /// Delete `key`.
    Delete { key: u64 },
    /// `Store::sync` (changes nothing visible; exercises sync marks).
    Sync,
}

impl Op {
    pub(crate) fn key(self) -> Option<u64> {
        match self {
            Op::Put { key, .. } | Op::Delete { key } => Some(key),
            Op::Sync => None,
        }
    }
}

/// Keys `0..HOT` take nine operations in ten; the others stay live for long, so that old
/// sections keep a few live values and records, which garbage collection must move.
pub(crate) const HOT: u64 = 50;

/// The deterministic, endless operation sequence of `seed`, shared by child and parent: 84%
/// puts of 0 to 256 bytes, 15% deletes, 1% syncs.
pub(crate) fn ops(seed: u64) -> impl Iterator<Item = Op> {
    let mut rng = StdRng::seed_from_u64(seed);
    std::iter::from_fn(move || {
        let roll = rng.random_range(0..100u32);
        let key = if rng.random_bool(0.9) {
            rng.random_range(0..HOT)
        } else {
            rng.random_range(HOT..KEYS)
        };
        Some(match roll {
            0 => Op::Sync,
            1..=15 => Op::Delete { key },
            _ => Op::Put {
                key,
                len: rng.random_range(0..=256usize),
            },
        })
    })
}

/// SplitMix64 finaliser.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The value op `n` of sequence `seed` puts at `key`: checkable, and unique per put.
pub(crate) fn value(seed: u64, n: u64, key: u64, len: usize) -> Vec<u8> {
    let mut x = mix(seed ^ mix(n ^ mix(key)));
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        x = mix(x);
        let take = (len - v.len()).min(8);
        v.extend_from_slice(&x.to_le_bytes()[..take]);
    }
    v
}

pub(crate) type Model = BTreeMap<u64, Vec<u8>>;

pub(crate) fn show(v: Option<&Vec<u8>>) -> String {
    match v {
        None => "absent".to_string(),
        Some(v) => format!(
            "{} bytes {:02x?}{}",
            v.len(),
            &v[..v.len().min(12)],
            if v.len() > 12 { "…" } else { "" }
        ),
    }
}
