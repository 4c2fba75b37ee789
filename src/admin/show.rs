//! Showing keys, values and records to people: in [`dump`](super::dump) and by the `toykv`
//! command-line tool.

use std::fmt::{self, Write as _};
use std::io::{self, Write};
use std::path::Path;

use crate::format::{Op, Record, shard_name};
use crate::key::Key;
use crate::keymode::KeyMode;
use crate::store::check::Seen;

use super::{Counts, JournalReport, Problem, ProblemKind, Report, Severity, Summary};

/// Longest value preview in a dump, in bytes.
const PREVIEW: usize = 48;

/// Whether `bytes` are UTF-8 text without control characters.
fn printable(bytes: &[u8]) -> Option<&str> {
    std::str::from_utf8(bytes)
        .ok()
        .filter(|s| !s.chars().any(char::is_control))
}

/// Lowercase hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A value as people read it: the text itself when it is printable UTF-8 (no control
/// characters), else `0x` followed by its bytes in hex.
///
/// ```
/// use toykv::admin::readable;
/// assert_eq!(readable(b"hello"), "hello");
/// assert_eq!(readable(&[0, 255]), "0x00ff");
/// ```
pub fn readable(value: &[u8]) -> String {
    match printable(value) {
        Some(text) => text.to_string(),
        None => format!("0x{}", hex(value)),
    }
}

/// A key in hex, then as `mode` shows it to clients: quoted (escaped) bytes without their zero
/// padding in [`KeyMode::Bytes`], the number in [`KeyMode::Numeric`].
///
/// ```
/// use toykv::admin::show_key;
/// use toykv::keymode::KeyMode;
/// assert_eq!(show_key(KeyMode::Bytes, (*b"k1\0\0\0\0\0\0").into()), r#"6b31000000000000 "k1""#);
/// assert_eq!(show_key(KeyMode::Numeric, 42u64.into()), "000000000000002a 42");
/// ```
pub fn show_key(mode: KeyMode, key: Key) -> String {
    let shown = mode.show(key);
    match mode {
        KeyMode::Bytes => format!("{} \"{}\"", hex(&key.bytes()), shown.escape_ascii()),
        KeyMode::Numeric => format!("{} {}", hex(&key.bytes()), String::from_utf8_lossy(&shown)),
    }
}

/// A value for a dump: quoted escaped text or `0x` hex, cut at [`PREVIEW`] bytes with `…`.
fn preview(value: &[u8]) -> String {
    let cut = value.len() > PREVIEW;
    let head = &value[..value.len().min(PREVIEW)];
    // Cutting may split a UTF-8 character: then fall back to the valid prefix's length.
    let text = printable(value).map(|_| match std::str::from_utf8(head) {
        Ok(s) => s,
        Err(e) => std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or_default(),
    });
    let more = if cut { "…" } else { "" };
    match text {
        Some(t) => format!("\"{}\"{more}", t.escape_debug()),
        None => format!("0x{}{more}", hex(head)),
    }
}

/// One line of a dump for `seen`.
pub(crate) fn dump_line(out: &mut impl Write, mode: KeyMode, seen: &Seen<'_>) -> io::Result<()> {
    let Record { key, op, .. } = seen.record;
    let mut line = format!("{} {} ", shard_name(seen.shard), seen.seq);
    match op {
        Op::Put { slot, len, .. } => {
            let value = match seen.value {
                Some(Ok(v)) => preview(v),
                _ => "(gone)".to_string(),
            };
            let _ = write!(
                line,
                "put key={} slot={slot} len={len} value={value}",
                show_key(mode, key)
            );
        }
        Op::Delete => {
            let _ = write!(line, "del key={}", show_key(mode, key));
        }
    }
    if seen.live && matches!(seen.value, Some(Err(_))) {
        line.push_str(" [value checksum mismatch]");
    }
    if seen.replayed {
        line.push_str(" [replayed]");
    } else if !seen.synced {
        line.push_str(" [unsynced]");
    }
    writeln!(out, "{line}")
}

impl Report {
    /// Problems of severity [`Severity::Error`].
    pub fn errors(&self) -> usize {
        self.problems.len() - self.warnings()
    }

    /// Problems of severity [`Severity::Warning`].
    pub fn warnings(&self) -> usize {
        let warning = |p: &&Problem| p.severity == Severity::Warning;
        self.problems.iter().filter(warning).count()
    }

    /// Whether no corruption was found (warnings allowed).
    pub fn is_ok(&self) -> bool {
        self.errors() == 0
    }

    /// Whether [`Store::open`](crate::Store::open) would accept the store: no errors other than
    /// damaged values (which only make gets of their keys fail).
    pub fn opens(&self) -> bool {
        let refusal = |p: &Problem| p.severity == Severity::Error && p.kind != ProblemKind::Value;
        !self.problems.iter().any(refusal)
    }
}

/// Whether `name` is a shard directory's, `shard-xx` (two lowercase hex digits).
pub(crate) fn is_shard(name: &str) -> bool {
    let n = name
        .strip_prefix("shard-")
        .map(|x| u32::from_str_radix(x, 16));
    n.is_some_and(|n| n.is_ok_and(|n| shard_name(n) == name))
}

/// A file as reports name it: `shard-xx/name` inside a shard directory, else its name.
pub(crate) fn short(path: &Path) -> String {
    let name = |p: &Path| {
        p.file_name()
            .map_or(String::new(), |n| n.to_string_lossy().into())
    };
    match path.parent().map(name) {
        Some(shard) if is_shard(&shard) => format!("{shard}/{}", name(path)),
        _ if path.file_name().is_none() => path.display().to_string(),
        _ => name(path),
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let name = short(&self.file);
        write!(f, "{sev}: {name} at offset {}: {}", self.offset, self.what)
    }
}

/// The log part of a report line: records, live keys, sync state.
fn log_line(c: &Counts) -> String {
    let some = |n: u64, what: &str| {
        if n > 0 {
            format!(", {n} {what}")
        } else {
            String::new()
        }
    };
    let (records, puts, deletes, live) = (c.records, c.puts, c.deletes, c.live_keys);
    let corrupt = some(c.bad_records, "corrupt");
    let unsynced = some(c.unsynced, "unsynced records kept");
    let dropped = some(c.dropped, "dropped at open");
    format!(
        "{records} records ({puts} puts, {deletes} deletes{corrupt}), {live} live keys{unsynced}{dropped}"
    )
}

/// The journal's line of a report: what open would replay, or `none`.
fn journal_line(j: Option<&JournalReport>) -> String {
    j.map_or_else(|| "none".to_string(), JournalReport::to_string)
}

/// A bank's section, or `-`.
fn bank(b: Option<u32>) -> String {
    b.map_or_else(|| "-".to_string(), |n| n.to_string())
}

/// A length as people read it: whole MiB or KiB when it is one, else bytes.
fn size(n: u64) -> String {
    const KIB: u64 = 1 << 10;
    const MIB: u64 = 1 << 20;
    match n {
        0 => "0 bytes".into(),
        n if n.is_multiple_of(MIB) => format!("{} MiB", n / MIB),
        n if n.is_multiple_of(KIB) => format!("{} KiB", n / KIB),
        n => format!("{n} bytes"),
    }
}

impl fmt::Display for JournalReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (len, epoch) = (size(self.len), self.epoch);
        let (n, e, p, d) = (self.frames, self.entries, self.puts, self.deletes);
        let (s, ies) = (
            if n == 1 { "" } else { "s" },
            if e == 1 { "y" } else { "ies" },
        );
        let replay = format!("{n} frame{s} / {e} entr{ies} to replay at open");
        write!(f, "{len}, epoch {epoch}, {replay} ({p} puts, {d} deletes)")?;
        if self.torn {
            f.write_str("; a torn last frame is dropped")?;
        }
        Ok(())
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (c, dir) = (&self.counts, self.dir.display());
        writeln!(
            f,
            "checked {dir}\n  {} shards, section_slots {}",
            self.shards.len(),
            c.section_slots
        )?;
        for s in &self.shards {
            let (n, m, banks) = (&s.counts, &s.mark, (bank(s.banks[0]), bank(s.banks[1])));
            let files = format!(
                "{} key sections, {} value sections",
                n.key_sections, n.value_sections
            );
            let (log, at, g) = (log_line(n), m.synced, m.generation);
            let banks = format!("banks hold {} and {}", banks.0, banks.1);
            writeln!(
                f,
                "  {}: {files}, {banks}; {log}; sync mark at {at} (generation {g})",
                s.name
            )?;
        }
        writeln!(
            f,
            "  total: {}; {} values checked",
            log_line(c),
            c.values_checked
        )?;
        writeln!(f, "  journal: {}", journal_line(self.journal.as_ref()))?;
        for p in &self.problems {
            writeln!(f, "{p}")?;
        }
        let (e, w) = (self.errors(), self.warnings());
        let verdict = if e > 0 && self.opens() {
            "CORRUPT: open succeeds but keys are lost or gets of damaged values fail"
        } else if e > 0 {
            "CORRUPT: open would refuse this store"
        } else if c.dropped > 0 || w > 0 {
            "ok: open repairs the warnings"
        } else {
            "ok"
        };
        write!(
            f,
            "{e} error{}, {w} warning{}: {verdict}",
            plural(e),
            plural(w)
        )
    }
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rows: [(&str, u64); 16] = [
            ("shards", self.shards),
            ("files", self.files),
            ("bytes", self.bytes),
            ("allocated bytes", self.allocated),
            ("section_slots", u64::from(self.section_slots)),
            ("key sections", self.key_sections),
            ("value sections", self.value_sections),
            ("records", self.records),
            ("puts", self.puts),
            ("deletes", self.deletes),
            ("live keys", self.live_keys),
            ("dead records", self.dead_records),
            ("synced records", self.synced),
            ("unsynced records", self.unsynced),
            ("corrupt records", self.bad_records),
            ("dropped at open", self.dropped),
        ];
        for (i, (name, value)) in rows.into_iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{name:<21} {value}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let journal = journal_line(self.journal.as_ref());
        writeln!(f, "{}\n{:<21} {journal}\n", self.counts, "journal")?;
        let head = [
            "shard", "records", "live", "dead", "unsynced", ".k", ".v", "banks",
        ];
        let [a, b, c, d, e, g, h, i] = head;
        write!(
            f,
            "{a:<9} {b:>9} {c:>9} {d:>9} {e:>9} {g:>6} {h:>6}  {i:<12} sync mark"
        )?;
        for s in &self.shards {
            let (n, m) = (&s.counts, &s.mark);
            let banks = format!("{}, {}", bank(s.banks[0]), bank(s.banks[1]));
            let (r, l, d, u) = (n.records, n.live_keys, n.dead_records, n.unsynced);
            let (k, v, at, g) = (n.key_sections, n.value_sections, m.synced, m.generation);
            let name = &s.name;
            write!(
                f,
                "\n{name:<9} {r:>9} {l:>9} {d:>9} {u:>9} {k:>6} {v:>6}  {banks:<12} "
            )?;
            write!(f, "{at} (generation {g})")?;
        }
        Ok(())
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_text_or_hex() {
        assert_eq!(readable(b""), "");
        assert_eq!(readable("héllo wörld".as_bytes()), "héllo wörld");
        assert_eq!(readable(b"tab\there"), "0x7461620968657265");
        assert_eq!(readable(&[0xff, 0x00]), "0xff00");
    }

    #[test]
    fn previews_are_quoted_and_cut() {
        assert_eq!(preview(b"hi \"x\""), r#""hi \"x\"""#);
        assert_eq!(preview(&[1, 2]), "0x0102");
        let long = [b'a'; 100];
        assert_eq!(preview(&long), format!("\"{}\"…", "a".repeat(PREVIEW)));
        let bin = [7u8; 100];
        assert_eq!(preview(&bin), format!("0x{}…", "07".repeat(PREVIEW)));
        // A cut through a multi-byte character keeps the whole characters before it.
        let mut text = "a".repeat(PREVIEW - 1);
        text.push_str("éé");
        assert_eq!(
            preview(text.as_bytes()),
            format!("\"{}\"…", "a".repeat(PREVIEW - 1))
        );
    }

    #[test]
    fn keys_show_hex_and_mode() {
        let k = Key::from(*b"a\0b\0\0\0\0\0");
        assert_eq!(show_key(KeyMode::Bytes, k), r#"6100620000000000 "a\x00b""#);
        assert_eq!(
            show_key(KeyMode::Bytes, Key::from(0u64)),
            r#"0000000000000000 """#
        );
        assert_eq!(
            show_key(KeyMode::Numeric, Key::from(12345u64)),
            "0000000000003039 12345"
        );
    }
}
