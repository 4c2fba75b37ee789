//! The survey of a data directory before its log is walked: file names, lengths, headers, the
//! buffer's sync marks and template. It mirrors, read-only, the checks of `store/open.rs`,
//! `store/buffer.rs`, `store/keys.rs` and `store/values.rs`, but reports every failure instead
//! of stopping at the first.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::format::{
    BUFFER_DATA_AT, BUFFER_NAME, BUFFER_VALUES_AT, Entry, HEADER_LEN, Header, HeaderError, Kind,
    MARK_A, MARK_B, MARK_LEN, MAX_SLOTS, Mark, PAGE, RECORD_SIZE, buffer_len, keys_len, keys_name,
    parse_name, values_len, values_name,
};
use crate::server::keymode::{KEYMODE_FILE, KeyMode};

use super::{Counts, ProblemKind as K, Problems};

/// A key section of the log.
#[derive(Debug)]
pub(crate) struct KeyFile {
    /// Its path.
    pub(crate) path: PathBuf,
    /// Its length (0 for a missing section 0, which open would create).
    pub(crate) len: u64,
}

/// What the survey found.
#[derive(Debug, Default)]
pub(crate) struct Survey {
    /// Records per key section, from the buffer's header, else the first key or value header.
    pub(crate) slots: Option<u32>,
    /// The newest valid sync mark.
    pub(crate) mark: Mark,
    /// The buffer's path and length, when it exists.
    pub(crate) buffer: Option<(PathBuf, u64)>,
    /// The value section the buffer fills: one past the last `.v` file.
    pub(crate) filling: u64,
    /// The value sections present, and whether their length and header are right.
    pub(crate) values: BTreeMap<u32, bool>,
    /// The key sections that form the log: 0, 1, … up to the first gap.
    pub(crate) log: Vec<KeyFile>,
    /// The data directory.
    pub(crate) dir: PathBuf,
    /// The section the buffer's template header names, when it decodes.
    template: Option<u32>,
    /// Whether the buffer's own header decodes.
    buffer_ok: bool,
    files: u64,
    bytes: u64,
    allocated: u64,
    key_files: u64,
}

impl Survey {
    /// The counts the survey knows; the walk adds the rest.
    pub(crate) fn counts(&self) -> Counts {
        Counts {
            section_slots: self.slots.unwrap_or(0),
            files: self.files,
            bytes: self.bytes,
            allocated: self.allocated,
            key_sections: self.key_files,
            value_sections: self.values.len() as u64,
            filling: self.filling,
            mark: self.mark,
            ..Counts::default()
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

/// The message `Store::open` gives for a refused header, without the file name.
fn header_message(kind: Kind, e: HeaderError) -> String {
    match e {
        HeaderError::Magic(got) => format!("not a toykv {} file (magic {got:02x?})", kind.name()),
        HeaderError::Version(got) => format!(
            "format version {got}; this build reads version {}",
            crate::format::header::VERSION
        ),
        HeaderError::Bad(why) => format!("{} header: {why}", kind.name()),
    }
}

/// Reads and decodes the header of `path`; reports and returns `None` when it fails.
fn header(path: &Path, kind: Kind, p: &mut Problems) -> Option<Header> {
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

/// Checks that a key or value header names section `n` of `slots` slots.
fn header_names(path: &Path, h: &Header, n: u32, slots: u32, p: &mut Problems) -> bool {
    let ok = h.section == n && h.section_slots == slots;
    if !ok {
        p.error(
            K::Header,
            path,
            0,
            format!(
                "header says section {} of {} slots; expected section {n} of {slots}",
                h.section, h.section_slots
            ),
        );
    }
    ok
}

/// Surveys `dir`, reporting into `p`. Fails only when the directory cannot be listed.
pub(crate) fn survey(dir: &Path, p: &mut Problems) -> Result<Survey> {
    use crate::error::Context;
    let mut names = crate::io::Vfs::list(&crate::io::Os, dir).ctx("list", dir)?;
    names.sort();
    let mut s = Survey {
        dir: dir.to_path_buf(),
        ..Survey::default()
    };
    let (mut keys, mut values, mut lens) = (Vec::new(), Vec::new(), BTreeMap::new());
    let mut has_buffer = false;
    for name in &names {
        let path = dir.join(name);
        match std::fs::metadata(&path) {
            Ok(m) => {
                s.files += 1;
                s.bytes += m.len();
                s.allocated += m.blocks() * 512;
                lens.insert(name.clone(), m.len());
            }
            Err(e) => p.error(K::Io, &path, 0, format!("cannot stat: {e}")),
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
                "left over by an interrupted flush or file creation; open removes it",
            ),
            Entry::Other if name == KEYMODE_FILE => {
                if let Err(e) = KeyMode::recorded(dir) {
                    p.warn(
                        K::Name,
                        &path,
                        0,
                        format!("the recorded key mode is unreadable: {e}"),
                    );
                }
            }
            Entry::Other => p.warn(K::Name, &path, 0, "not a toykv file name; open ignores it"),
        }
    }
    keys.sort_unstable();
    values.sort_unstable();
    s.key_files = keys.len() as u64;
    let len_of = |name: &str| lens.get(name).copied().unwrap_or(0);

    if has_buffer {
        survey_buffer(&mut s, dir, len_of(BUFFER_NAME), p);
    }
    if s.slots.is_none() {
        // No usable buffer header: take the section size from the other files, to go on.
        s.slots = keys
            .iter()
            .map(|&n| dir.join(keys_name(n)))
            .chain(values.iter().map(|&n| dir.join(values_name(n))))
            .find_map(|path| {
                let kind = if path.extension().is_some_and(|e| e == "k") {
                    Kind::Keys
                } else {
                    Kind::Values
                };
                let head = read_at_most(&path, 0, HEADER_LEN).ok()?;
                Header::decode(&head, kind).ok().map(|h| h.section_slots)
            });
    }
    let Some(slots) = s.slots else {
        if !keys.is_empty() || !values.is_empty() {
            p.error(
                K::Header,
                dir,
                0,
                "no header decodes: the section size is unknown, the log cannot be read",
            );
        }
        return Ok(s);
    };

    let sections_max = MAX_SLOTS / u64::from(slots);
    for &n in &values {
        let path = dir.join(values_name(n));
        let mut ok = true;
        if u64::from(n) >= sections_max {
            p.error(
                K::Name,
                &path,
                0,
                format!(
                    "value section {n} is past the last addressable section {}",
                    sections_max - 1
                ),
            );
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
    s.filling = values.last().map_or(0, |&n| u64::from(n) + 1);

    if has_buffer {
        check_template(&s, dir, p);
    } else {
        survey_no_buffer(&s, dir, &keys, p);
    }
    survey_keys(&mut s, dir, &keys, slots, &len_of, p);
    Ok(s)
}

/// The buffer: length, header, sync marks, template (`Buffer::open` and `open`'s use of it).
fn survey_buffer(s: &mut Survey, dir: &Path, len: u64, p: &mut Problems) {
    let path = dir.join(BUFFER_NAME);
    s.buffer = Some((path.clone(), len));
    let pages = match read_at_most(&path, 0, BUFFER_DATA_AT) {
        Ok(pages) => pages,
        Err(e) => {
            p.error(K::Io, &path, 0, format!("cannot read the headers: {e}"));
            return;
        }
    };
    if let Some(page) = pages.get(..PAGE) {
        for at in [MARK_A, MARK_B] {
            let mut copy = [0u8; MARK_LEN];
            copy.copy_from_slice(&page[at..at + MARK_LEN]);
            if copy.iter().any(|&b| b != 0) && Mark::decode(&copy).is_none() {
                let what = "this copy of the sync mark fails its checksum (a torn mark write?); \
                            recovery uses the other copy";
                p.warn(K::SyncMark, &path, at as u64, what);
            }
        }
        let mut whole = [0u8; PAGE];
        whole.copy_from_slice(page);
        s.mark = Mark::newest(&whole).0;
    }
    if pages.len() < BUFFER_DATA_AT {
        let what = format!(
            "write buffer is {len} bytes, shorter than its {BUFFER_DATA_AT} bytes of headers"
        );
        p.error(K::Length, &path, len, what);
        return;
    }
    let own = match Header::decode(&pages[..HEADER_LEN], Kind::Buffer) {
        Ok(h) => h,
        Err(e) => {
            p.error(K::Header, &path, 0, header_message(Kind::Buffer, e));
            return;
        }
    };
    s.slots = Some(own.section_slots);
    let want = buffer_len(own.section_slots);
    if len > want {
        let what = format!("write buffer is {len} bytes, longer than {want}");
        p.error(K::Length, &path, want, what);
    } else if len < want {
        let what =
            format!("write buffer is {len} bytes, shorter than {want}: open extends it with zeros");
        p.warn(K::Length, &path, len, what);
    }
    let template = &pages[BUFFER_VALUES_AT..BUFFER_VALUES_AT + HEADER_LEN];
    let template = Header::decode(template, Kind::Values)
        .ok()
        .filter(|h| h.section_slots == own.section_slots)
        .map(|h| h.section);
    s.template = template;
    s.buffer_ok = true;
}

/// The buffer's template against the value sections: `open` rewrites a torn or stale one and
/// refuses one that has moved past a missing value section.
fn check_template(s: &Survey, dir: &Path, p: &mut Problems) {
    let Some((path, _)) = s.buffer.as_ref().filter(|_| s.buffer_ok) else {
        return;
    };
    let at = BUFFER_VALUES_AT as u64;
    match s.template.map(u64::from) {
        None => {
            let what = "the template header of the value section being filled does not decode; \
                        open rewrites it";
            p.warn(K::Header, path, at, what);
        }
        Some(t) if t > s.filling => {
            let missing = dir.join(values_name(u32::try_from(s.filling).unwrap_or(u32::MAX)));
            let what = format!("value section is missing: the buffer has moved on to section {t}");
            p.error(K::Missing, &missing, 0, what);
        }
        Some(t) if t < s.filling => {
            let what = format!(
                "the template names section {t} but value sections up to {} exist (a flush \
                 interrupted after its rename); open rewrites it",
                s.filling - 1
            );
            p.warn(K::Header, path, at, what);
        }
        Some(_) => {}
    }
}

/// No buffer: open creates a fresh store if nothing was written (`open::create`).
fn survey_no_buffer(s: &Survey, dir: &Path, keys: &[u32], p: &mut Problems) {
    let path = dir.join(BUFFER_NAME);
    if !s.values.is_empty() {
        p.error(
            K::Missing,
            &path,
            0,
            "the write buffer is missing but value sections exist",
        );
        return;
    }
    let written = keys.iter().any(|&n| {
        read_at_most(&dir.join(keys_name(n)), PAGE as u64, RECORD_SIZE)
            .is_ok_and(|r| r.iter().any(|&b| b != 0))
    });
    if written {
        p.error(
            K::Missing,
            &path,
            0,
            "the write buffer is missing but key sections hold records",
        );
    } else {
        let what = "no write buffer: open creates a fresh store (removing empty key sections)";
        p.warn(K::Missing, &path, 0, what);
    }
}

/// The key sections (`Section::open`, and their numbering in `open`).
fn survey_keys(
    s: &mut Survey,
    dir: &Path,
    keys: &[u32],
    slots: u32,
    len_of: &dyn Fn(&str) -> u64,
    p: &mut Problems,
) {
    let zero = dir.join(keys_name(0));
    if keys.is_empty() {
        if !s.values.is_empty() {
            p.error(
                K::Missing,
                &zero,
                0,
                "key sections are missing but value sections exist",
            );
        } else if s.buffer.is_some() {
            p.warn(
                K::Missing,
                &zero,
                0,
                "key section 0 is missing; open creates it",
            );
        }
        s.log.push(KeyFile { path: zero, len: 0 });
        return;
    }
    let mut gap = false;
    for (want, &n) in keys.iter().enumerate() {
        let path = dir.join(keys_name(n));
        if !gap && want as u64 != u64::from(n) {
            gap = true;
            let missing = dir.join(keys_name(want as u32));
            let what = format!("key section is missing (next is {})", keys_name(n));
            p.error(K::Missing, &missing, 0, what);
        }
        let (len, full) = (len_of(&keys_name(n)), keys_len(slots));
        if len < PAGE as u64 {
            let what = format!("key section is {len} bytes, shorter than its header page");
            p.error(K::Length, &path, len, what);
        } else {
            if len > full {
                let what = format!("key section is {len} bytes, longer than {full}");
                p.error(K::Length, &path, full, what);
            } else if len < full {
                let what = format!(
                    "key section is {len} bytes, shorter than {full}: open extends it with \
                     zeros, so its missing records read as never written"
                );
                p.warn(K::Length, &path, len, what);
            }
            if let Some(h) = header(&path, Kind::Keys, p) {
                header_names(&path, &h, n, slots, p);
            }
        }
        if !gap {
            s.log.push(KeyFile { path, len });
        }
    }
}
