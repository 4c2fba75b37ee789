//! Snapshots: a consistent copy of a live store, as the files of a data directory, made while
//! writes go on — for a replica's full sync, `BGSAVE` and `toykv backup`. The stream's format
//! is [`crate::format::snapshot`].
//!
//! [`Store::snapshot`] takes every shard's lock at once (in shard order, as an atomic batch
//! does), so that the moment it copies is one at which every write and batch is either
//! applied or not begun. Under the locks it notes each shard's log length, its files and the
//! bank being filled (whose filled slots it copies: the only bytes that may change later),
//! and runs the caller's `at` (the server reads its replication offset there). Garbage
//! collection is paused ([`Shard::pin`]) until the snapshot is dropped, so the sealed files
//! it names are still there, unchanged, when [`Snapshot::write_to`] reads them.
//!
//! What the copy holds, per shard:
//! - every `.v` file that existed (read whole, with direct reads), and those being written
//!   out (awaited);
//! - the key sections, with the records below the captured log length and zeros after;
//! - a `buffer.b` whose sync mark says every record is durable (the copy is synced before it
//!   is used) and whose bank holds the copied slots.
//!
//! Plus `STORE` and `KEYMODE`. Opening the copy is an ordinary open: recovery checks it like
//! any store. [`restore`] writes a stream into a new directory; [`Store::backup`] does both.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Context, Error, Result};
use crate::format::snapshot::{
    self as fmt, CHUNK, CHUNK_HEADER_LEN, DATA, HEAD_LEN, MAX_PATH, ZEROS,
};
use crate::format::{
    BANKS, BUFFER_NAME, HEADER_LEN, Header, KEYS_DATA_AT, Kind, MARK_A, MARK_B, Mark, PAGE,
    RECORD_SIZE, STORE_NAME, bank_at, buffer_len, keys_len, keys_name, shard_name, values_len,
    values_name,
};
use crate::io::{FileIo, Mode, Vfs};
use crate::keymode::KEYMODE_FILE;

use super::Store;
use super::shard::Capture;
use super::values;

/// A consistent copy of a store, ready to be written as a stream; garbage collection stays
/// paused until it is dropped.
#[derive(Debug)]
pub struct Snapshot<'a> {
    store: &'a Store,
    files: Vec<Planned>,
    len: u64,
}

/// A file of the copy and where its bytes come from.
#[derive(Debug)]
struct Planned {
    path: String,
    parts: Vec<Part>,
}

#[derive(Debug)]
enum Part {
    /// Bytes in memory.
    Bytes(Vec<u8>),
    /// Zeros.
    Zeros(u64),
    /// The first `len` bytes of records of a key section.
    Records {
        path: PathBuf,
        file: Arc<dyn FileIo>,
        len: u64,
    },
    /// A whole value section of a shard; its file is awaited when `None` (a write-out was
    /// under way).
    Section {
        shard: usize,
        n: u32,
        slots: u32,
        file: Option<(PathBuf, Arc<dyn FileIo>)>,
    },
}

impl Part {
    fn len(&self) -> u64 {
        match self {
            Part::Bytes(b) => b.len() as u64,
            Part::Zeros(n) => *n,
            Part::Records { len, .. } => *len,
            Part::Section { slots, .. } => values_len(*slots),
        }
    }

    /// Bytes the part takes in the stream.
    fn encoded(&self) -> u64 {
        match self {
            Part::Zeros(n) => n.div_ceil(u64::from(u32::MAX)) * CHUNK_HEADER_LEN as u64,
            p => p.len() + p.len().div_ceil(CHUNK as u64) * CHUNK_HEADER_LEN as u64,
        }
    }
}

impl Store {
    /// A consistent copy of the store now (see `docs/FORMAT.md`, "The snapshot stream"), and what `at`
    /// returned: `at` runs while every shard is held, so it sees no write in flight. Garbage
    /// collection pauses until the snapshot is dropped (puts are not held back meanwhile, so
    /// value files may grow past their usual bound while it lives). Memory: a copy of each
    /// shard's filled bank slots, at most a section (16 MiB by default) per shard.
    pub fn snapshot<T>(&self, at: impl FnOnce() -> T) -> Result<(Snapshot<'_>, T)> {
        for shard in self.shards.iter() {
            shard.pin();
        }
        let mut snap = Snapshot {
            store: self,
            files: Vec::new(),
            len: 0,
        };
        let held: Vec<_> = self.shards.iter().map(|s| s.hold()).collect();
        let captured: Result<Vec<Capture>> = held.iter().map(|h| h.capture()).collect();
        let t = at();
        drop(held);
        let captured = captured?;
        let file = |name: &str| -> Result<Option<Vec<u8>>> {
            let path = self.dir.join(name);
            let mode = Mode::default();
            let f = match self.vfs.open(&path, mode) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(Error::io("open", &path, e)),
            };
            let len = f.len().ctx("stat", &path)?;
            let mut b = vec![0u8; len.min(PAGE as u64) as usize];
            f.read_at(&mut b, 0).ctx("read", &path)?;
            Ok(Some(b))
        };
        for name in [STORE_NAME, KEYMODE_FILE] {
            if let Some(b) = file(name)? {
                snap.add(name.to_string(), vec![Part::Bytes(b)]);
            }
        }
        for (i, c) in captured.into_iter().enumerate() {
            snap.plan_shard(i, c)?;
        }
        Ok((snap, t))
    }

    /// Writes a consistent copy of the store now into the new directory `dest` (which must
    /// not exist): made under `dest` with the suffix `.partial`, synced, then renamed, so
    /// `dest` is either absent or a whole store. Returns the bytes copied.
    pub fn backup(&self, dest: &Path) -> Result<u64> {
        let (snap, ()) = self.snapshot(|| ())?;
        snap.save(&*self.vfs, dest)
    }
}

impl Snapshot<'_> {
    fn add(&mut self, path: String, parts: Vec<Part>) {
        self.len += fmt::file_header_len(&path) as u64;
        self.len += parts.iter().map(Part::encoded).sum::<u64>();
        self.files.push(Planned { path, parts });
    }

    /// Plans the files of shard `i`.
    fn plan_shard(&mut self, i: usize, c: Capture) -> Result<()> {
        let dir = shard_name(i as u32);
        let slots = u64::from(c.slots);
        for (n, path, f) in c.values {
            let file = Some((path, f));
            let part = Part::Section {
                shard: i,
                n,
                slots: c.slots,
                file,
            };
            self.add(format!("{dir}/{}", values_name(n)), vec![part]);
        }
        for n in c.outgoing {
            let part = Part::Section {
                shard: i,
                n,
                slots: c.slots,
                file: None,
            };
            self.add(format!("{dir}/{}", values_name(n)), vec![part]);
        }
        for n in c.first..c.first + c.key_sections {
            let start = u64::from(n) * slots;
            let records = c.records.saturating_sub(start).min(slots);
            let len = records * RECORD_SIZE as u64;
            let mut page = vec![0u8; KEYS_DATA_AT];
            let header = Header {
                kind: Kind::Keys,
                section_slots: c.slots,
                section: n,
            };
            page[..HEADER_LEN].copy_from_slice(&header.encode());
            let rest = keys_len(c.slots) - KEYS_DATA_AT as u64 - len;
            let path = c.dir.join(keys_name(n));
            // Opened now: what the snapshot reads never depends on a path later.
            let file = self
                .store
                .vfs
                .open(&path, Mode::default())
                .ctx("open", &path)?;
            let parts = vec![
                Part::Bytes(page),
                Part::Records { path, file, len },
                Part::Zeros(rest),
            ];
            self.add(format!("{dir}/{}", keys_name(n)), parts);
        }
        // The buffer: its header page with a mark saying every record is durable, then the
        // banks, zeros but for the one being filled.
        let mut head = vec![0u8; PAGE];
        let own = Header {
            kind: Kind::Buffer,
            section_slots: c.slots,
            section: 0,
        };
        head[..HEADER_LEN].copy_from_slice(&own.encode());
        let mark = Mark {
            generation: 1,
            synced: c.records,
            first: c.first,
        }
        .encode();
        for at in [MARK_A, MARK_B] {
            head[at..at + mark.len()].copy_from_slice(&mark);
        }
        let mut parts = vec![Part::Bytes(head)];
        let bank_len = values_len(c.slots);
        let mut bank = c.bank;
        for b in 0..BANKS {
            debug_assert_eq!(
                bank_at(c.slots, b) as u64,
                PAGE as u64 + b as u64 * bank_len
            );
            match bank.take_if(|(n, _)| *n == b) {
                Some((_, copy)) => {
                    let rest = bank_len - copy.len() as u64;
                    parts.push(Part::Bytes(copy));
                    parts.push(Part::Zeros(rest));
                }
                None => parts.push(Part::Zeros(bank_len)),
            }
        }
        debug_assert_eq!(
            parts.iter().map(Part::len).sum::<u64>(),
            buffer_len(c.slots)
        );
        self.add(format!("{dir}/{BUFFER_NAME}"), parts);
        Ok(())
    }

    /// Bytes the stream takes.
    pub fn len(&self) -> u64 {
        self.len + 2 * HEAD_LEN as u64
    }

    /// Whether the stream is empty (never: it has a head and a tail).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Writes the stream to `out`: exactly [`len`](Self::len) bytes. Value sections are read
    /// with direct reads, a whole section at a time, by a second thread that stays up to
    /// a few sections ahead of the writes to `out`: the disk and the receiver work at once.
    pub fn write_to(&self, out: &mut (dyn Write + Send)) -> Result<u64> {
        let dir = &self.store.dir;
        let (tx, rx) = crossbeam_channel::bounded::<Out>(AHEAD);
        std::thread::scope(|s| {
            let reading = s.spawn(move || self.produce(&tx));
            let mut wrote = Ok(());
            for piece in rx.iter() {
                let r = match &piece {
                    Out::Own(b) => out.write_all(b),
                    Out::Shared(b, at, end) => out.write_all(&b.bytes()[*at..*end]),
                };
                if let Err(e) = r {
                    wrote = Err(Error::io("write the snapshot of", dir.as_path(), e));
                    break;
                }
            }
            // Unblocks the reader if the writes stopped early.
            drop(rx);
            let read = Error::joined(reading.join(), "reading a snapshot");
            read.and(wrote)
        })?;
        out.flush().ctx("write the snapshot of", dir.as_path())?;
        Ok(self.len())
    }

    /// Reads the files and sends the stream's pieces, in order, to `tx`; stops early (with
    /// no error) when the writer hung up.
    fn produce(&self, tx: &crossbeam_channel::Sender<Out>) -> Result<()> {
        let send = |o: Out| tx.send(o).is_ok();
        let files = self.files.len() as u32;
        if !send(Out::Own(fmt::head(files).to_vec())) {
            return Ok(());
        }
        let mut buf = Vec::new();
        for f in &self.files {
            let len = f.parts.iter().map(Part::len).sum();
            if !send(Out::Own(fmt::file_header(&f.path, len))) {
                return Ok(());
            }
            for part in &f.parts {
                let going = match part {
                    Part::Bytes(b) => data(b, &send),
                    Part::Zeros(n) => {
                        let mut left = *n;
                        let mut going = true;
                        while left > 0 && going {
                            let now = left.min(u64::from(u32::MAX)) as u32;
                            going = send(Out::Own(fmt::chunk_header(ZEROS, now, 0).to_vec()));
                            left -= u64::from(now);
                        }
                        going
                    }
                    Part::Records { path, file, len } => {
                        let mut at = 0;
                        let mut going = true;
                        while at < *len && going {
                            let now = (*len - at).min(CHUNK as u64) as usize;
                            buf.resize(now, 0);
                            let off = KEYS_DATA_AT as u64 + at;
                            file.read_at(&mut buf, off).ctx("read key records", path)?;
                            going = data(&buf, &send);
                            at += now as u64;
                        }
                        going
                    }
                    Part::Section {
                        shard,
                        n,
                        slots,
                        file,
                    } => {
                        let (path, file) = match file {
                            Some(f) => f.clone(),
                            None => self.store.shards[*shard].written(*n)?,
                        };
                        let section = Arc::new(read_section(&path, &*file, *n, *slots)?);
                        let mut going = true;
                        let mut at = 0;
                        while at < section.len() && going {
                            let end = (at + CHUNK).min(section.len());
                            let c = &section.bytes()[at..end];
                            going = send(Out::Own(fmt::data_header(c).to_vec()))
                                && send(Out::Shared(section.clone(), at, end));
                            at = end;
                        }
                        going
                    }
                };
                if !going {
                    return Ok(());
                }
            }
        }
        send(Out::Own(fmt::tail(files).to_vec()));
        Ok(())
    }

    /// Writes the copy into the new directory `dest` (see [`Store::backup`]).
    fn save(self, vfs: &dyn Vfs, dest: &Path) -> Result<u64> {
        if dest.exists() {
            return Err(Error::io(
                "back up into",
                dest,
                std::io::Error::new(std::io::ErrorKind::AlreadyExists, "it exists"),
            ));
        }
        let mut partial = dest.as_os_str().to_owned();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        if partial.exists() {
            std::fs::remove_dir_all(&partial).ctx("remove", &partial)?;
        }
        let (mut reader, mut writer) = std::io::pipe().ctx("make a pipe for", dest)?;
        let from = format!("a backup of {}", self.store.dir.display());
        let (wrote, read) = std::thread::scope(|s| {
            let writing = s.spawn(move || {
                let r = self.write_to(&mut writer);
                drop(writer);
                r
            });
            let read = restore(vfs, &mut reader, &partial, &from);
            // Unblock the writer if the restore stopped early.
            drop(reader);
            (Error::joined(writing.join(), "writing a snapshot"), read)
        });
        wrote?;
        let n = read?;
        vfs.rename(&partial, dest).ctx("rename into place", dest)?;
        if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            vfs.sync_dir(parent).ctx("fsync", parent)?;
        }
        Ok(n)
    }
}

impl Drop for Snapshot<'_> {
    fn drop(&mut self) {
        for shard in self.store.shards.iter() {
            shard.unpin();
        }
    }
}

/// Value section `n` read whole; if that read fails (a bad sector, `EIO`), page by page,
/// with zeros for the pages that cannot be read and a new header page if that one cannot:
/// the copy then holds the same damage as the store (those values fail their checksums
/// there too) instead of no copy at all. Fails only when no page can be read.
fn read_section(
    path: &Path,
    file: &dyn FileIo,
    n: u32,
    slots: u32,
) -> Result<crate::io::AlignedBuf> {
    let whole = match values::read_all(path, file, slots) {
        Ok(b) => return Ok(b),
        Err(e) => e,
    };
    let len = values_len(slots) as usize;
    let mut buf = crate::io::AlignedBuf::new(len, file.align().mem);
    let mut lost = 0;
    for at in (0..len).step_by(PAGE) {
        let page = &mut buf.bytes_mut()[at..at + PAGE];
        if file.read_at(page, at as u64).is_err() {
            page.fill(0);
            lost += 1;
        }
    }
    if lost == len / PAGE {
        return Err(whole);
    }
    if buf.bytes()[..HEADER_LEN].iter().all(|&b| b == 0) {
        let header = Header {
            kind: Kind::Values,
            section_slots: slots,
            section: n,
        };
        buf.bytes_mut()[..HEADER_LEN].copy_from_slice(&header.encode());
    }
    tracing::error!(
        "{}: {lost} page(s) cannot be read ({whole}); the snapshot holds zeros there, so the \
         values in them fail their checksums in the copy as they do here",
        path.display()
    );
    Ok(buf)
}

/// Pieces of the stream the reading thread may hold ready ahead of the writes: with whole
/// value sections (16 MiB by default, in 4 MiB chunks, two pieces each) about three sections.
const AHEAD: usize = 24;

/// A piece of the stream on its way from the reading thread to the writer.
enum Out {
    /// Bytes of its own (headers, key records, small files).
    Own(Vec<u8>),
    /// A range of a value section read whole.
    Shared(Arc<crate::io::AlignedBuf>, usize, usize),
}

/// Sends `b` as data chunks; whether the writer still takes them.
fn data(b: &[u8], send: &impl Fn(Out) -> bool) -> bool {
    b.chunks(CHUNK)
        .all(|c| send(Out::Own(fmt::data_header(c).to_vec())) && send(Out::Own(c.to_vec())))
}

/// Reads a snapshot stream from `input` (which came from `from`, for errors) and writes its
/// files into the directory `dest`, made here (it must not exist, or be empty); every file
/// and directory is synced before it returns. Returns the bytes read. The caller opens
/// `dest` as a store (recovery checks it) or renames it into place; a stream that fails part
/// way leaves a directory to remove.
pub fn restore(vfs: &dyn Vfs, input: &mut dyn Read, dest: &Path, from: &str) -> Result<u64> {
    // A second thread writes and syncs while the next chunks arrive: the reader takes a free
    // buffer, fills and checks it, and hands it over; the writer gives it back once written.
    let (jobs, todo) = crossbeam_channel::bounded::<Job>(BUFFERS);
    let (free, take) = crossbeam_channel::bounded::<crate::io::AlignedBuf>(BUFFERS);
    for _ in 0..BUFFERS {
        // Aligned, so that chunks at aligned offsets (whole pages: all of a value section's)
        // are written with direct writes, bypassing the page cache.
        let _ = free.send(crate::io::AlignedBuf::new(CHUNK, PAGE));
    }
    std::thread::scope(|s| {
        let writing = s.spawn(move || -> Result<()> {
            for job in todo.iter() {
                match job {
                    Job::Write {
                        file,
                        path,
                        at,
                        buf,
                        len,
                    } => {
                        file.write_at(&buf.bytes()[..len], at).ctx("write", &path)?;
                        let _ = free.send(buf);
                    }
                    Job::Sync { file, path } => file.sync().ctx("fdatasync", &path)?,
                }
            }
            Ok(())
        });
        let read = write_files(vfs, input, dest, from, &jobs, &take);
        drop(jobs);
        let wrote = Error::joined(writing.join(), "writing a restored snapshot");
        let (n, dirs) = read?;
        wrote?;
        // Every file is synced before the directories that name them.
        for d in dirs.iter().rev() {
            vfs.sync_dir(d).ctx("fsync", d)?;
        }
        Ok(n)
    })
}

/// Chunk buffers of a restore: one being filled from the stream while the others are
/// written.
const BUFFERS: usize = 4;

/// What [`restore`]'s writing thread does.
enum Job {
    /// Writes the first `len` bytes of `buf` at `at`, then frees `buf`.
    Write {
        file: Arc<dyn FileIo>,
        path: PathBuf,
        at: u64,
        buf: crate::io::AlignedBuf,
        len: usize,
    },
    /// Syncs a file whose chunks were all written.
    Sync {
        file: Arc<dyn FileIo>,
        path: PathBuf,
    },
}

/// [`restore`]'s reading: checks the stream, makes the files and directories, and hands
/// each chunk (then each file, to sync) to the writing thread through `jobs`, taking buffers
/// from `free`. Returns the bytes read and the directories made (to sync). Stops early (with
/// no error) when the writing thread stopped: `restore` returns its error.
fn write_files(
    vfs: &dyn Vfs,
    input: &mut dyn Read,
    dest: &Path,
    from: &str,
    jobs: &crossbeam_channel::Sender<Job>,
    free: &crossbeam_channel::Receiver<crate::io::AlignedBuf>,
) -> Result<(u64, Vec<PathBuf>)> {
    let mut r = Counted {
        input,
        at: 0,
        from: from.to_string(),
    };
    vfs.create_dir(dest).ctx("create directory", dest)?;
    if !vfs.list(dest).ctx("list", dest)?.is_empty() {
        return Err(Error::io(
            "restore a snapshot into",
            dest,
            std::io::Error::new(std::io::ErrorKind::AlreadyExists, "it is not empty"),
        ));
    }
    let mut head = [0u8; HEAD_LEN];
    r.read(&mut head)?;
    let files = fmt::decode_head(&head).map_err(|w| r.bad(w))?;
    let mut dirs = vec![dest.to_path_buf()];
    let mut seen = std::collections::HashSet::new();
    for _ in 0..files {
        let mut n = [0u8; 2];
        r.read(&mut n)?;
        let n = u16::from_le_bytes(n) as usize;
        if n > MAX_PATH {
            return Err(r.bad(format!("a path of {n} bytes, more than {MAX_PATH}")));
        }
        let mut name = vec![0u8; n];
        r.read(&mut name)?;
        let name = String::from_utf8(name).map_err(|_| r.bad("a path that is not UTF-8"))?;
        fmt::check_path(&name).map_err(|w| r.bad(w))?;
        if !seen.insert(name.clone()) {
            return Err(r.bad(format!("{name} comes twice")));
        }
        let mut len = [0u8; 8];
        r.read(&mut len)?;
        let len = fmt::decode_len(&len).map_err(|w| r.bad(w))?;
        let path = dest.join(&name);
        if let Some(parent) = path.parent().filter(|p| !dirs.iter().any(|d| d == p)) {
            vfs.create_dir(parent).ctx("create directory", parent)?;
            dirs.push(parent.to_path_buf());
        }
        let mode = Mode {
            create: true,
            write: true,
            direct: false,
        };
        let file = vfs.open(&path, mode).ctx("create", &path)?;
        // Blocks reserved (and zero) up front: the engine maps key sections and the buffer,
        // and a store into a map of a sparse file could fail for lack of space.
        if len > 0 {
            file.allocate(len).ctx("allocate", &path)?;
        }
        // A second handle for direct writes, where the file system takes them.
        let direct = vfs
            .open(
                &path,
                Mode {
                    create: false,
                    write: true,
                    direct: true,
                },
            )
            .ok();
        let mut at = 0u64;
        while at < len {
            let mut h = [0u8; CHUNK_HEADER_LEN];
            r.read(&mut h)?;
            let c = fmt::decode_chunk(&h).map_err(|w| r.bad(w))?;
            if at + u64::from(c.len) > len {
                let what = format!("a chunk runs past the end of {name} ({len} bytes)");
                return Err(r.bad(what));
            }
            if c.kind == DATA {
                let Ok(mut buf) = free.recv() else {
                    return Ok((r.at, dirs));
                };
                let len = c.len as usize;
                let data = &mut buf.bytes_mut()[..len];
                r.read(data)?;
                if crc32c::crc32c(data) != c.crc {
                    return Err(r.bad(format!("a chunk of {name} fails its checksum")));
                }
                let through = match &direct {
                    Some(d) if aligned(d.align(), at, len) => d.clone(),
                    _ => file.clone(),
                };
                let job = Job::Write {
                    file: through,
                    path: path.clone(),
                    at,
                    buf,
                    len,
                };
                if jobs.send(job).is_err() {
                    return Ok((r.at, dirs));
                }
            }
            at += u64::from(c.len);
        }
        if jobs.send(Job::Sync { file, path }).is_err() {
            return Ok((r.at, dirs));
        }
    }
    let mut tail = [0u8; HEAD_LEN];
    r.read(&mut tail)?;
    fmt::check_tail(&tail, files).map_err(|w| r.bad(w))?;
    Ok((r.at, dirs))
}

/// Whether a write of `len` bytes at `at` from an [`crate::io::AlignedBuf`] of page alignment
/// meets `a`.
fn aligned(a: crate::io::Align, at: u64, len: usize) -> bool {
    let o = a.offset.max(1);
    a.mem <= PAGE && at.is_multiple_of(o as u64) && len.is_multiple_of(o)
}

/// A reader that counts what it read, for errors that say where.
struct Counted<'a> {
    input: &'a mut dyn Read,
    at: u64,
    from: String,
}

impl Counted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> Result<()> {
        match self.input.read_exact(buf) {
            Ok(()) => {
                self.at += buf.len() as u64;
                Ok(())
            }
            Err(e) => Err(Error::Snapshot {
                from: self.from.clone(),
                at: self.at,
                what: match e.kind() {
                    std::io::ErrorKind::UnexpectedEof => "the stream ends early".into(),
                    _ => "reading the stream failed".into(),
                },
                source: Some(e),
            }),
        }
    }

    fn bad(&self, what: impl Into<String>) -> Error {
        Error::Snapshot {
            from: self.from.clone(),
            at: self.at,
            what: what.into(),
            source: None,
        }
    }
}
