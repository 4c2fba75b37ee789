//! The stores under comparison, each behind `toykv::ycsb::Db`: toykv (the library), redb,
//! heed (LMDB), fjall (key/value separation on), sled and, with the `rocksdb` feature,
//! RocksDB (blob files on).
//!
//! Durability is the same for all: no fsync per operation. Each store is opened in the mode
//! where a write is not synced (toykv's default, redb `Durability::None`, LMDB `MDB_NOSYNC`,
//! fjall's default journal (flushed to the OS, not synced), sled's default (background flush
//! every 500 ms), RocksDB's default `WriteOptions` (WAL written, not synced)), and
//! `Db::flush` syncs once at the end of each phase, inside the timed part. Caches: 256 MiB
//! wherever the store has a knob (toykv's default read cache, redb, fjall, sled, RocksDB's
//! block cache), or the same `--cache-bytes` for all of them (toykv's read cache too);
//! LMDB reads through the OS page cache.

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use toykv::ycsb::{Db, DbResult, LibDb};

/// Cache size given to every store that has a knob for it.
pub const CACHE_BYTES: usize = 256 << 20;

/// The durability setting, as the reports state it.
pub const DURABILITY: &str = "no fsync per operation; one sync at the end of each phase \
                              (toykv default, redb Durability::None, LMDB MDB_NOSYNC, fjall \
                              default journal, sled default, RocksDB sync=false)";

/// Every store this binary knows (rocksdb only with the feature).
pub const ALL: &[&str] = &["toykv", "redb", "heed", "fjall", "sled", "rocksdb"];

/// A function that gives each benchmark thread its handle.
pub type Connector = Box<dyn Fn() -> DbResult<Box<dyn Db>> + Sync>;

/// Opens store `name` in `dir` (created empty by the caller). `cache`: the cache size for
/// every store with a knob; `None` leaves toykv's read cache at its default and gives the
/// others [`CACHE_BYTES`].
pub fn open(name: &str, dir: &Path, cache: Option<usize>) -> DbResult<Connector> {
    let cache_bytes = cache.unwrap_or(CACHE_BYTES);
    Ok(match name {
        "toykv" => match cache {
            None => {
                let db = LibDb::open(dir)?;
                Box::new(move || Ok(Box::new(db.clone()) as Box<dyn Db>))
            }
            Some(n) => {
                let db = Toykv::open(dir, n)?;
                Box::new(move || Ok(Box::new(db.clone()) as Box<dyn Db>))
            }
        },
        "redb" => {
            let db = Redb::open(dir, cache_bytes)?;
            Box::new(move || Ok(Box::new(db.clone()) as Box<dyn Db>))
        }
        "heed" => {
            let db = Heed::open(dir)?;
            Box::new(move || Ok(Box::new(db.clone()) as Box<dyn Db>))
        }
        "fjall" => {
            let db = Fjall::open(dir, cache_bytes)?;
            Box::new(move || Ok(Box::new(db.clone()) as Box<dyn Db>))
        }
        "sled" => {
            let db = Sled::open(dir, cache_bytes)?;
            Box::new(move || Ok(Box::new(db.clone()) as Box<dyn Db>))
        }
        #[cfg(feature = "rocksdb")]
        "rocksdb" => {
            let db = Rocks::open(dir, cache_bytes)?;
            Box::new(move || Ok(Box::new(db.clone()) as Box<dyn Db>))
        }
        #[cfg(not(feature = "rocksdb"))]
        "rocksdb" => return Err("rocksdb needs `--features rocksdb`".into()),
        other => return Err(format!("unknown store '{other}' (one of {ALL:?})").into()),
    })
}

// ---- toykv with a read cache size ----

/// toykv as [`LibDb`] opens it (the public API, default options) but with the read cache
/// set to `cache` bytes.
#[derive(Clone)]
struct Toykv(Arc<toykv::Store>);

impl Toykv {
    fn open(dir: &Path, cache: usize) -> DbResult<Toykv> {
        let options = toykv::Options::new().cache_bytes(cache);
        Ok(Toykv(Arc::new(toykv::Store::open_with(dir, options)?)))
    }
}

impl Db for Toykv {
    fn read(&mut self, key: u64) -> DbResult<bool> {
        Ok(self.0.get(key)?.is_some())
    }

    fn update(&mut self, key: u64, value: &[u8]) -> DbResult<()> {
        Ok(self.0.put(key, value)?)
    }

    fn scan(&mut self, start: u64, count: usize) -> DbResult<usize> {
        let mut n = 0;
        for item in self.0.scan(start..=u64::MAX).take(count) {
            item?;
            n += 1;
        }
        Ok(n)
    }

    fn flush(&mut self) -> DbResult<()> {
        Ok(self.0.sync()?)
    }
}

// ---- redb ----

const REDB_TABLE: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("ycsb");

/// redb: one write transaction per write, committed with `Durability::None`.
#[derive(Clone)]
struct Redb(Arc<redb::Database>);

impl Redb {
    fn open(dir: &Path, cache: usize) -> DbResult<Redb> {
        let db = redb::Builder::new()
            .set_cache_size(cache)
            .create(dir.join("redb"))?;
        let tx = db.begin_write()?;
        tx.open_table(REDB_TABLE)?;
        tx.commit()?;
        Ok(Redb(Arc::new(db)))
    }
}

impl Db for Redb {
    fn read(&mut self, key: u64) -> DbResult<bool> {
        use redb::ReadableDatabase;
        let tx = self.0.begin_read()?;
        let table = tx.open_table(REDB_TABLE)?;
        Ok(table.get(key)?.is_some())
    }

    fn update(&mut self, key: u64, value: &[u8]) -> DbResult<()> {
        let mut tx = self.0.begin_write()?;
        tx.set_durability(redb::Durability::None)?;
        {
            let mut table = tx.open_table(REDB_TABLE)?;
            table.insert(key, value)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn scan(&mut self, start: u64, count: usize) -> DbResult<usize> {
        use redb::ReadableDatabase;
        let tx = self.0.begin_read()?;
        let table = tx.open_table(REDB_TABLE)?;
        let mut n = 0;
        for item in table.range(start..)?.take(count) {
            item?;
            n += 1;
        }
        Ok(n)
    }

    fn flush(&mut self) -> DbResult<()> {
        // An empty commit with Immediate durability makes the earlier ones durable.
        let mut tx = self.0.begin_write()?;
        tx.set_durability(redb::Durability::Immediate)?;
        tx.commit()?;
        Ok(())
    }
}

// ---- heed (LMDB) ----

type HeedDb = heed::Database<'static, heed::types::Bytes, heed::types::Bytes>;

/// LMDB through heed: one write transaction per write, the environment opened `MDB_NOSYNC`.
#[derive(Clone)]
struct Heed {
    env: heed::Env,
    db: HeedDb,
}

impl Heed {
    fn open(dir: &Path) -> DbResult<Heed> {
        let mut options = heed::EnvOpenOptions::new();
        options.map_size(64 << 30).max_readers(256);
        // SAFETY: NO_SYNC only defers fsync (the equal-durability rule of this comparison);
        // the directory is fresh and used by this process alone, so the map is not modified
        // behind LMDB's back.
        #[allow(unsafe_code)]
        let env = unsafe {
            options.flags(heed::EnvFlags::NO_SYNC);
            options.open(dir)?
        };
        let wtxn = env.write_txn()?;
        let db = env
            .create_databases_and_commit(wtxn, |opener, wtxn| {
                opener
                    .create_database::<heed::types::Bytes, heed::types::Bytes>(wtxn, None)
                    .map(heed::CommitOrAbort::<_, ()>::Commit)
            })?
            .unwrap_commit();
        Ok(Heed { env, db })
    }
}

impl Db for Heed {
    fn read(&mut self, key: u64) -> DbResult<bool> {
        let rtxn = self.env.read_txn()?;
        Ok(self.db.get(&rtxn, &key.to_be_bytes())?.is_some())
    }

    fn update(&mut self, key: u64, value: &[u8]) -> DbResult<()> {
        let mut wtxn = self.env.write_txn()?;
        self.db.put(&mut wtxn, &key.to_be_bytes(), value)?;
        wtxn.commit()?;
        Ok(())
    }

    fn scan(&mut self, start: u64, count: usize) -> DbResult<usize> {
        let rtxn = self.env.read_txn()?;
        let k = start.to_be_bytes();
        let range: (Bound<&[u8]>, Bound<&[u8]>) = (Bound::Included(&k[..]), Bound::Unbounded);
        let mut n = 0;
        for item in self.db.range(&rtxn, &range)?.take(count) {
            item?;
            n += 1;
        }
        Ok(n)
    }

    fn flush(&mut self) -> DbResult<()> {
        Ok(self.env.force_sync()?)
    }
}

// ---- fjall ----

/// fjall with key/value separation for values of 128 bytes and more (so every 256-byte
/// value goes to blob files), the journal flushed to the OS on each write but not synced.
#[derive(Clone)]
struct Fjall {
    db: fjall::Database,
    ks: fjall::Keyspace,
}

impl Fjall {
    fn open(dir: &Path, cache: usize) -> DbResult<Fjall> {
        let db = fjall::Database::builder(dir)
            .cache_size(cache as u64)
            .open()?;
        let ks = db.keyspace("ycsb", || {
            fjall::KeyspaceCreateOptions::default().with_kv_separation(Some(
                fjall::KvSeparationOptions::default().separation_threshold(128),
            ))
        })?;
        Ok(Fjall { db, ks })
    }
}

impl Db for Fjall {
    fn read(&mut self, key: u64) -> DbResult<bool> {
        Ok(self.ks.get(key.to_be_bytes())?.is_some())
    }

    fn update(&mut self, key: u64, value: &[u8]) -> DbResult<()> {
        Ok(self.ks.insert(key.to_be_bytes(), value)?)
    }

    fn scan(&mut self, start: u64, count: usize) -> DbResult<usize> {
        let mut n = 0;
        for item in self.ks.range(start.to_be_bytes()..).take(count) {
            item.into_inner()?;
            n += 1;
        }
        Ok(n)
    }

    fn flush(&mut self) -> DbResult<()> {
        Ok(self.db.persist(fjall::PersistMode::SyncAll)?)
    }
}

// ---- sled ----

/// sled with its defaults (writes buffered, flushed in the background every 500 ms).
#[derive(Clone)]
struct Sled(sled::Db);

impl Sled {
    fn open(dir: &Path, cache: usize) -> DbResult<Sled> {
        Ok(Sled(
            sled::Config::new()
                .path(dir)
                .cache_capacity(cache as u64)
                .open()?,
        ))
    }
}

impl Db for Sled {
    fn read(&mut self, key: u64) -> DbResult<bool> {
        Ok(self.0.get(key.to_be_bytes())?.is_some())
    }

    fn update(&mut self, key: u64, value: &[u8]) -> DbResult<()> {
        self.0.insert(key.to_be_bytes(), value)?;
        Ok(())
    }

    fn scan(&mut self, start: u64, count: usize) -> DbResult<usize> {
        let mut n = 0;
        for item in self.0.range(start.to_be_bytes()..).take(count) {
            item?;
            n += 1;
        }
        Ok(n)
    }

    fn flush(&mut self) -> DbResult<()> {
        self.0.flush()?;
        Ok(())
    }
}

// ---- RocksDB ----

/// RocksDB with blob files on (values of 128 bytes and more), WAL on, no sync per write.
#[cfg(feature = "rocksdb")]
#[derive(Clone)]
struct Rocks(Arc<rocksdb::DB>);

#[cfg(feature = "rocksdb")]
impl Rocks {
    fn open(dir: &Path, cache: usize) -> DbResult<Rocks> {
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(true);
        opts.increase_parallelism(2);
        opts.set_enable_blob_files(true);
        opts.set_min_blob_size(128);
        let mut table = rocksdb::BlockBasedOptions::default();
        table.set_block_cache(&rocksdb::Cache::new_lru_cache(cache));
        opts.set_block_based_table_factory(&table);
        Ok(Rocks(Arc::new(rocksdb::DB::open(&opts, dir)?)))
    }
}

#[cfg(feature = "rocksdb")]
impl Db for Rocks {
    fn read(&mut self, key: u64) -> DbResult<bool> {
        Ok(self.0.get_pinned(key.to_be_bytes())?.is_some())
    }

    fn update(&mut self, key: u64, value: &[u8]) -> DbResult<()> {
        Ok(self.0.put(key.to_be_bytes(), value)?)
    }

    fn scan(&mut self, start: u64, count: usize) -> DbResult<usize> {
        let k = start.to_be_bytes();
        let mode = rocksdb::IteratorMode::From(&k, rocksdb::Direction::Forward);
        let mut n = 0;
        for item in self.0.iterator(mode).take(count) {
            item?;
            n += 1;
        }
        Ok(n)
    }

    fn flush(&mut self) -> DbResult<()> {
        Ok(self.0.flush_wal(true)?)
    }
}
