//! Key generators of YCSB's core workload: FNV-1a record keys, the Gray et al. zipfian
//! generator (θ = 0.99), its scrambled form, "latest" and uniform, over a small seeded PRNG.
//!
//! Written from the description of YCSB's `ZipfianGenerator` ("Quickly Generating
//! Billion-Record Synthetic Databases", Gray et al., SIGMOD 1994):
//!
//! - ζ(n, θ) = Σ_{i=1..n} 1/i^θ, α = 1/(1−θ), η = (1 − (2/n)^(1−θ)) / (1 − ζ(2, θ)/ζ(n, θ)).
//! - A draw takes u uniform in [0, 1): if u·ζ(n) < 1 it is item 0; if u·ζ(n) < 1 + 0.5^θ it is
//!   item 1; else it is ⌊n · (η·u − η + 1)^α⌋.
//! - When the item count grows (workload D's inserts), ζ is extended by the new terms instead
//!   of being recomputed.
//!
//! The scrambled generator draws over 10¹⁰ items (with YCSB's precomputed ζ for that count)
//! and maps a draw d to `fnv64(d) mod items`, so the popular items are spread over the key
//! space instead of being the first ones.

/// YCSB's zipfian constant θ.
pub const ZIPFIAN_CONSTANT: f64 = 0.99;

/// Item space of the scrambled zipfian generator (YCSB's `ITEM_COUNT`).
pub const SCRAMBLED_ITEMS: u64 = 10_000_000_000;

/// ζ(10¹⁰, 0.99), which YCSB precomputes because summing 10¹⁰ terms takes minutes.
pub const SCRAMBLED_ZETAN: f64 = 26.469_028_201_783_02;

const FNV_OFFSET: u64 = 0xCBF2_9CE4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01B3;

/// YCSB's record key hash: FNV-1a 64 over the 8 bytes of `n`, lowest byte first, with the sign
/// bit cleared (YCSB takes the absolute value of the signed result).
pub fn fnv64(n: u64) -> u64 {
    let mut hash = FNV_OFFSET;
    for byte in n.to_le_bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    (hash as i64).unsigned_abs() & i64::MAX as u64
}

/// A small, fast, seedable generator (SplitMix64). Each benchmark thread owns one.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator whose sequence is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `0..n` (`n` > 0), without modulo bias worth measuring.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
}

/// ζ(n, θ) continued from ζ(`from`, θ) = `partial`: adds the terms for items `from+1..=n`.
fn zeta_from(from: u64, n: u64, theta: f64, partial: f64) -> f64 {
    (from + 1..=n).fold(partial, |sum, i| sum + 1.0 / (i as f64).powf(theta))
}

/// YCSB's zipfian generator over `base..base + items`: item `base` is the most popular, then
/// `base + 1`, and so on.
#[derive(Clone, Debug)]
pub struct Zipfian {
    base: u64,
    items: u64,
    theta: f64,
    alpha: f64,
    zeta2: f64,
    zetan: f64,
    eta: f64,
}

impl Zipfian {
    /// A generator over `base..base + items` (`items` ≥ 1) with θ = 0.99; computes ζ(items).
    pub fn new(base: u64, items: u64) -> Self {
        let theta = ZIPFIAN_CONSTANT;
        let zetan = zeta_from(0, items, theta, 0.0);
        Self::with_zetan(base, items, zetan)
    }

    /// A generator whose ζ(items) is already known (the scrambled generator's 10¹⁰ items).
    pub fn with_zetan(base: u64, items: u64, zetan: f64) -> Self {
        let theta = ZIPFIAN_CONSTANT;
        let mut z = Zipfian {
            base,
            items: items.max(1),
            theta,
            alpha: 1.0 / (1.0 - theta),
            zeta2: zeta_from(0, 2, theta, 0.0),
            zetan,
            eta: 0.0,
        };
        z.eta = z.eta_for();
        z
    }

    fn eta_for(&self) -> f64 {
        (1.0 - (2.0 / self.items as f64).powf(1.0 - self.theta)) / (1.0 - self.zeta2 / self.zetan)
    }

    /// The number of items drawn over.
    pub fn items(&self) -> u64 {
        self.items
    }

    /// A draw over the current items.
    pub fn next(&mut self, rng: &mut Rng) -> u64 {
        let u = rng.next_f64();
        let uz = u * self.zetan;
        if uz < 1.0 {
            return self.base;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return self.base + 1;
        }
        let spread = self.items as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha);
        self.base + (spread as u64).min(self.items - 1)
    }

    /// A draw over `items` items, first growing (or recomputing) ζ if the count changed.
    pub fn next_over(&mut self, rng: &mut Rng, items: u64) -> u64 {
        let items = items.max(1);
        if items != self.items {
            self.zetan = if items > self.items {
                zeta_from(self.items, items, self.theta, self.zetan)
            } else {
                zeta_from(0, items, self.theta, 0.0)
            };
            self.items = items;
            self.eta = self.eta_for();
        }
        self.next(rng)
    }
}

/// Zipfian popularity spread over `0..items` by hashing: YCSB's `ScrambledZipfianGenerator`.
#[derive(Clone, Debug)]
pub struct ScrambledZipfian {
    inner: Zipfian,
    items: u64,
}

impl ScrambledZipfian {
    /// A generator over `0..items`.
    pub fn new(items: u64) -> Self {
        ScrambledZipfian {
            inner: Zipfian::with_zetan(0, SCRAMBLED_ITEMS, SCRAMBLED_ZETAN),
            items: items.max(1),
        }
    }

    /// A key number in `0..items`.
    pub fn next(&mut self, rng: &mut Rng) -> u64 {
        fnv64(self.inner.next(rng)) % self.items
    }
}

/// YCSB's `SkewedLatestGenerator`: the most recently inserted record is the most popular,
/// then the one before it, and so on (zipfian over the distance back from the latest).
#[derive(Clone, Debug)]
pub struct Latest {
    zipf: Zipfian,
}

impl Latest {
    /// A generator for a table whose latest record number is `last`.
    pub fn new(last: u64) -> Self {
        Latest {
            zipf: Zipfian::new(0, last + 1),
        }
    }

    /// A record number in `0..=last`, skewed to `last`.
    pub fn next(&mut self, rng: &mut Rng, last: u64) -> u64 {
        last - self.zipf.next_over(rng, last + 1).min(last)
    }
}
