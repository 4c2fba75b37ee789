//! The survey of a data directory before the shards' logs are walked: the `STORE` file, the
//! shard directories, and in each shard its file names, lengths, headers, the buffer's sync
//! marks and banks. It mirrors, read-only, the checks of `Store::open_with` (`store/mod.rs`),
//! `store/open.rs`, `store/buffer.rs`, `store/keys.rs` and `store/values.rs`, but reports every
//! failure instead of stopping at the first.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::format::{
    BANKS, BUFFER_NAME, Entry, HEADER_LEN, Header, Kind, MARK_A, MARK_B, MARK_LEN, MAX_SHARDS,
    MAX_SLOTS, Mark, PAGE, RECORD_SIZE, STORE_NAME, buffer_len, keys_len, keys_name, parse_name,
    values_len, values_name,
};

use super::ProblemKind as K;
use super::show::{Problems, header_message};

/// Files counted: how many, their apparent and allocated bytes.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Tally {
    pub(crate) files: u64,
    pub(crate) bytes: u64,
    pub(crate) allocated: u64,
}

impl Tally {
    /// Counts `path` if it can be stat'ed; returns its length.
    pub(crate) fn add(&mut self, path: &Path, p: &mut Problems) -> Option<u64> {
        match std::fs::metadata(path) {
            Ok(m) => {
                self.files += 1;
                self.bytes += m.len();
                self.allocated += m.blocks() * 512;
                Some(m.len())
            }
            Err(e) => {
                p.error(K::Io, path, 0, format!("cannot stat: {e}"));
                None
            }
        }
    }
}

/// Reads up to `len` bytes at `off` of `path`; fewer when the file ends first.
pub(crate) fn read_at_most(path: &Path, off: u64, len: usize) -> io::Result<Vec<u8>> {
    let file = File::open(path)?;
    read_file_at_most(&file, off, len)
}

/// Reads up to `len` bytes at `off` of `file`; fewer when the file ends first.
pub(crate) fn read_file_at_most(file: &File, off: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let mut got = 0;
    while got < len {
        match file.read_at(&mut buf[got..], off + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(got);
    Ok(buf)
}

/// Reads and decodes the header of `path`; reports and returns `None` when it fails.
pub(crate) fn header(path: &Path, kind: Kind, p: &mut Problems) -> Option<Header> {
    match read_at_most(path, 0, HEADER_LEN) {
        Err(e) => {
            p.error(K::Io, path, 0, format!("cannot read the header: {e}"));
            None
        }
        Ok(head) => match Header::decode(&head, kind) {
            Ok(h) => Some(h),
            Err(e) => {
                p.error(K::Header, path, 0, header_message(kind, e));
                None
            }
        },
    }
}

/// The banks' headers of a buffer, as `Buffer::open` reads them: the section each names.
pub(crate) fn read_banks(path: &Path, slots: u32, p: &mut Problems) -> [Option<u32>; BANKS] {
    let mut banks = [None; BANKS];
    for (bank, named) in banks.iter_mut().enumerate() {
        let at = crate::format::bank_at(slots, bank) as u64;
        let Ok(head) = read_at_most(path, at, HEADER_LEN) else {
            continue;
        };
        let mut h = [0u8; HEADER_LEN];
        h[..head.len()].copy_from_slice(&head);
        *named = Header::decode(&h, Kind::Values)
            .ok()
            .filter(|h| h.section_slots == slots)
            .map(|h| h.section);
        if named.is_none() && h.iter().any(|&b| b != 0) {
            let what = format!(
                "the header page of bank {bank} does not decode (a torn rewrite?): the bank \
                 holds no section"
            );
            p.warn(K::Header, path, at, what);
        }
    }
    banks
}

/// Zero pad, so a page-sized read is always a page.
pub(crate) fn page_of(bytes: &[u8]) -> [u8; PAGE] {
    let mut page = [0u8; PAGE];
    let n = bytes.len().min(PAGE);
    page[..n].copy_from_slice(&bytes[..n]);
    page
}

/// A key section of a shard's log.
#[derive(Debug)]
pub(crate) struct KeyFile {
    /// Its path.
    pub(crate) path: PathBuf,
    /// Its length (0 for a missing first section, which open would create).
    pub(crate) len: u64,
}

/// What the survey of one shard directory found.
#[derive(Debug, Default)]
pub(crate) struct ShardSurvey {
    /// The shard directory.
    pub(crate) dir: PathBuf,
    /// Its name, `shard-xx`.
    pub(crate) name: String,
    /// Records per key section: the store's, else the buffer's, else any header's.
    pub(crate) slots: Option<u32>,
    /// The buffer, when its header decodes and agrees with the store: the log can be walked.
    pub(crate) buffer: Option<PathBuf>,
    /// The newest valid sync mark.
    pub(crate) mark: Mark,
    /// The section each bank's header page names.
    pub(crate) banks: [Option<u32>; BANKS],
    /// The value sections present, and whether their length and header are right.
    pub(crate) values: BTreeMap<u32, bool>,
    /// The key sections that form the log: from the mark's first, up to the first gap.
    pub(crate) log: Vec<KeyFile>,
    /// The shard's files.
    pub(crate) tally: Tally,
    /// Key section files, all of them.
    pub(crate) key_files: u64,
}

/// Checks that a key or value header names section `n` of `slots` slots.
fn header_names(path: &Path, h: &Header, n: u32, slots: u32, p: &mut Problems) -> bool {
    let ok = h.section == n && h.section_slots == slots;
    if !ok {
        let what = format!(
            "header says section {} of {} slots; expected section {n} of {slots}",
            h.section, h.section_slots
        );
        p.error(K::Header, path, 0, what);
    }
    ok
}

/// Surveys shard directory `dir` (named `name`), whose sections should have `want` slots when
/// the store file says. Reports into `p`.
pub(crate) fn survey_shard(
    dir: &Path,
    name: String,
    want: Option<u32>,
    p: &mut Problems,
) -> ShardSurvey {
    let mut s = ShardSurvey {
        dir: dir.to_path_buf(),
        name,
        ..ShardSurvey::default()
    };
    let mut names = match crate::io::Vfs::list(&crate::io::Os, dir) {
        Ok(names) => names,
        Err(e) => {
            p.error(K::Io, dir, 0, format!("cannot list: {e}"));
            return s;
        }
    };
    names.sort();
    let (mut keys, mut values, mut lens) = (Vec::new(), Vec::new(), BTreeMap::new());
    let mut has_buffer = false;
    for name in &names {
        let path = dir.join(name);
        if let Some(len) = s.tally.add(&path, p) {
            lens.insert(name.clone(), len);
        }
        match parse_name(name) {
            Entry::Keys(n) => keys.push(n),
            Entry::Values(n) => values.push(n),
            Entry::Buffer => has_buffer = true,
            Entry::Lock => {}
            Entry::Tmp => p.warn(
                K::Name,
                &path,
                0,
                "left over by an interrupted write-out or file creation; open removes it",
            ),
            Entry::Other => p.warn(K::Name, &path, 0, "not a toykv file name; open ignores it"),
        }
    }
    keys.sort_unstable();
    values.sort_unstable();
    s.key_files = keys.len() as u64;
    let len_of = |name: &str| lens.get(name).copied().unwrap_or(0);

    let (mut own, mut buffer_ok) = (None, false);
    if has_buffer {
        (own, buffer_ok) = survey_buffer(&mut s, len_of(BUFFER_NAME), p);
    }
    if let (Some(w), Some(b), true) = (want, own, buffer_ok)
        && w != b
    {
        let what = format!("write buffer has section_slots {b}, the store file says {w}");
        p.error(K::Header, &dir.join(BUFFER_NAME), 0, what);
        buffer_ok = false;
    }
    s.slots = want.or(own).or_else(|| {
        // No usable header yet: take the section size from the shard's sections, to go on.
        let k = keys.iter().map(|&n| (dir.join(keys_name(n)), Kind::Keys));
        let v = values
            .iter()
            .map(|&n| (dir.join(values_name(n)), Kind::Values));
        k.chain(v).find_map(|(path, kind)| {
            let head = read_at_most(&path, 0, HEADER_LEN).ok()?;
            Header::decode(&head, kind).ok().map(|h| h.section_slots)
        })
    });
    let Some(slots) = s.slots else {
        if !keys.is_empty() || !values.is_empty() {
            let what = "no header decodes: the section size is unknown, the log cannot be read";
            p.error(K::Header, dir, 0, what);
        }
        return s;
    };

    let sections_max = MAX_SLOTS / u64::from(slots);
    for &n in &values {
        let path = dir.join(values_name(n));
        let mut ok = true;
        if u64::from(n) >= sections_max {
            let what = format!(
                "value section {n} is past the last addressable section {}",
                sections_max - 1
            );
            p.error(K::Name, &path, 0, what);
            ok = false;
        }
        let (len, want) = (len_of(&values_name(n)), values_len(slots));
        if len != want {
            let what = format!("value section is {len} bytes, expected {want}");
            p.error(K::Length, &path, len.min(want), what);
            ok = false;
        }
        ok &= header(&path, Kind::Values, p).is_some_and(|h| header_names(&path, &h, n, slots, p));
        s.values.insert(n, ok);
    }

    if !has_buffer {
        survey_no_buffer(&s, &keys, slots, &len_of, p);
        return s;
    }
    survey_keys(&mut s, &keys, slots, &len_of, p);
    if buffer_ok {
        s.buffer = Some(dir.join(BUFFER_NAME));
    }
    s
}

/// The buffer (`Buffer::open`): length, header, sync marks, banks. Returns its section size
/// and whether open accepts it.
fn survey_buffer(s: &mut ShardSurvey, len: u64, p: &mut Problems) -> (Option<u32>, bool) {
    let path = s.dir.join(BUFFER_NAME);
    let head = match read_at_most(&path, 0, PAGE) {
        Ok(head) => head,
        Err(e) => {
            p.error(K::Io, &path, 0, format!("cannot read the header page: {e}"));
            return (None, false);
        }
    };
    if len < PAGE as u64 || head.len() < PAGE {
        let what = format!("write buffer is {len} bytes, shorter than its {PAGE}-byte header page");
        p.error(K::Length, &path, len, what);
        return (None, false);
    }
    let page = page_of(&head);
    for at in [MARK_A, MARK_B] {
        let mut copy = [0u8; MARK_LEN];
        copy.copy_from_slice(&page[at..at + MARK_LEN]);
        if copy.iter().any(|&b| b != 0) && Mark::decode(&copy).is_none() {
            let what = "this copy of the sync mark fails its checksum (a torn mark write?); \
                        recovery uses the other copy";
            p.warn(K::SyncMark, &path, at as u64, what);
        }
    }
    s.mark = Mark::newest(&page).0;
    let own = match Header::decode(&page[..HEADER_LEN], Kind::Buffer) {
        Ok(h) => h,
        Err(e) => {
            p.error(K::Header, &path, 0, header_message(Kind::Buffer, e));
            return (None, false);
        }
    };
    let slots = own.section_slots;
    let want = buffer_len(slots);
    let mut ok = true;
    if len > want {
        let what = format!("write buffer is {len} bytes, longer than {want}");
        p.error(K::Length, &path, want, what);
        ok = false;
    } else if len < want {
        let what =
            format!("write buffer is {len} bytes, shorter than {want}: open extends it with zeros");
        p.warn(K::Length, &path, len, what);
    }
    s.banks = read_banks(&path, slots, p);
    (Some(slots), ok)
}

/// A key section's length and header (`Section::open`); whether open accepts it.
fn check_key_file(path: &Path, n: u32, slots: u32, len: u64, p: &mut Problems) -> bool {
    let full = keys_len(slots);
    if len < PAGE as u64 {
        let what = format!("key section is {len} bytes, shorter than its header page");
        p.error(K::Length, path, len, what);
        return false;
    }
    let mut ok = true;
    if len > full {
        let what = format!("key section is {len} bytes, longer than {full}");
        p.error(K::Length, path, full, what);
        ok = false;
    } else if len < full {
        let what = format!(
            "key section is {len} bytes, shorter than {full}: open extends it with zeros, so its \
             missing records read as never written"
        );
        p.warn(K::Length, path, len, what);
    }
    ok & header(path, Kind::Keys, p).is_some_and(|h| header_names(path, &h, n, slots, p))
}

/// No buffer: open creates a fresh shard if nothing was written (`open::create`).
fn survey_no_buffer(
    s: &ShardSurvey,
    keys: &[u32],
    slots: u32,
    len_of: &dyn Fn(&str) -> u64,
    p: &mut Problems,
) {
    let path = s.dir.join(BUFFER_NAME);
    if !s.values.is_empty() {
        let what = "the write buffer is missing but value sections exist";
        p.error(K::Missing, &path, 0, what);
        return;
    }
    let (mut ok, mut written) = (true, false);
    for &n in keys {
        let file = s.dir.join(keys_name(n));
        if check_key_file(&file, n, slots, len_of(&keys_name(n)), p) {
            written |= read_at_most(&file, PAGE as u64, RECORD_SIZE)
                .is_ok_and(|r| r.iter().any(|&b| b != 0));
        } else {
            ok = false;
        }
    }
    if written {
        let what = "the write buffer is missing but key sections hold records";
        p.error(K::Missing, &path, 0, what);
    } else if ok {
        let what = "no write buffer: open creates a fresh shard (removing empty key sections)";
        p.warn(K::Missing, &path, 0, what);
    }
}

/// The key sections (`open_keys`, `Section::open`): older than the mark's first, then
/// numbered without gaps from it.
fn survey_keys(
    s: &mut ShardSurvey,
    keys: &[u32],
    slots: u32,
    len_of: &dyn Fn(&str) -> u64,
    p: &mut Problems,
) {
    let (first, synced) = (s.mark.first, s.mark.synced);
    for &n in keys.iter().filter(|&&n| n < first) {
        let what = format!(
            "below the first key section the sync mark keeps ({}): left by an interrupted \
             garbage collection; open removes it",
            keys_name(first)
        );
        p.warn(K::Name, &s.dir.join(keys_name(n)), 0, what);
    }
    let kept: Vec<u32> = keys.iter().copied().filter(|&n| n >= first).collect();
    let first_path = s.dir.join(keys_name(first));
    if kept.is_empty() {
        if synced > u64::from(first) * u64::from(slots) {
            let what = format!("key records up to {synced} were synced but no key section is left");
            p.error(K::Missing, &first_path, 0, what);
        } else {
            p.warn(
                K::Missing,
                &first_path,
                0,
                "key section is missing; open creates it",
            );
        }
        s.log.push(KeyFile {
            path: first_path,
            len: 0,
        });
        return;
    }
    let mut gap = false;
    for (i, &n) in kept.iter().enumerate() {
        let path = s.dir.join(keys_name(n));
        let want = u64::from(first) + i as u64;
        if !gap && want != u64::from(n) {
            gap = true;
            let missing = s.dir.join(keys_name(want as u32));
            let what = format!("key section is missing (next is {})", keys_name(n));
            p.error(K::Missing, &missing, 0, what);
        }
        let len = len_of(&keys_name(n));
        check_key_file(&path, n, slots, len, p);
        if !gap {
            s.log.push(KeyFile { path, len });
        }
    }
}

/// The shard number of a directory name `shard-xx`.
pub(crate) fn parse_shard(name: &str) -> Option<u32> {
    let hex = name.strip_prefix("shard-")?;
    let ok = hex.len() == 2
        && hex
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c));
    ok.then(|| u32::from_str_radix(hex, 16).ok()).flatten()
}

/// The `STORE` file's header, when it decodes and names a possible shard count; reports why
/// not otherwise (as `describe` in `store/mod.rs` refuses it).
pub(crate) fn store_header(path: &Path, p: &mut Problems) -> Option<Header> {
    let head = match read_at_most(path, 0, HEADER_LEN) {
        Ok(head) => head,
        Err(e) => {
            p.error(K::Io, path, 0, format!("cannot read the header: {e}"));
            return None;
        }
    };
    if head.len() < HEADER_LEN {
        let what = format!(
            "store file is {} bytes, shorter than its header",
            head.len()
        );
        p.error(K::Length, path, head.len() as u64, what);
        return None;
    }
    let h = match Header::decode(&head, Kind::Store) {
        Ok(h) => h,
        Err(e) => {
            p.error(K::Header, path, 0, header_message(Kind::Store, e));
            return None;
        }
    };
    if !(1..=MAX_SHARDS).contains(&h.section) {
        let what = format!(
            "store file names {} shards (1 to {MAX_SHARDS} allowed)",
            h.section
        );
        p.error(K::Header, path, 0, what);
        return None;
    }
    Some(h)
}

/// Whether `dir` looks like a toykv data directory (of any version): it holds `STORE`, `LOCK`,
/// a shard directory or a version 1 file.
pub(crate) fn is_ours(names: &[String]) -> bool {
    names.iter().any(|n| {
        n == STORE_NAME
            || parse_shard(n).is_some()
            || matches!(
                parse_name(n),
                Entry::Keys(_) | Entry::Values(_) | Entry::Buffer | Entry::Lock
            )
    })
}
