//! The snapshot stream: a consistent copy of a store as the files of a data directory, sent
//! by a master to a replica in a full sync, and written by `BGSAVE` and `toykv backup`.
//!
//! # Layout
//!
//! All integers little-endian; no alignment (it is a byte stream, read sequentially).
//!
//! ```text
//! stream   := head file* tail
//! head     := "toykvsnp" (8) | version u32 (= 1) | files u32        (16 bytes)
//! file     := path_len u16 | path (path_len bytes, UTF-8) | len u64 | chunk*
//! chunk    := kind u8 | 0 0 0 | len u32 | crc u32 | data            (12 bytes + data)
//!               kind 1 = data: `len` bytes follow, crc = CRC-32C of them
//!               kind 2 = zeros: `len` zero bytes, none sent, crc = 0
//! tail     := "toykvend" (8) | files u32 | 0 u32                     (16 bytes)
//! ```
//!
//! A file's chunks cover exactly its `len` bytes, in order. A data chunk holds at most
//! [`CHUNK`] bytes. `path` is relative to the data directory, `/`-separated: `STORE`,
//! `KEYMODE`, or `shard-xx/NAME` where `NAME` is a key section (`%08x.k`), a value section
//! (`%08x.v`) or `buffer.b` — nothing else is accepted ([`check_path`]).
//!
//! # Invariants
//!
//! - The files are those of a store at one moment: what reading them as a data directory
//!   gives is every write applied before that moment and none after (the engine's
//!   `Store::snapshot` makes them so).
//! - A reader refuses the stream at the first impossible field (magic, version, a path that
//!   is not one of the above, a chunk past its file's end, a data chunk over [`CHUNK`], a file
//!   over [`MAX_FILE`], a checksum that fails, a tail whose count differs) and says at which
//!   byte of the stream.
//!
//! # A torn stream
//!
//! A stream cut short (the connection dropped, the process killed) has no tail: the reader
//! fails, and what it wrote is a directory that is not used (the caller writes into a
//! temporary directory and renames it only after the tail checked out and everything was
//! synced).

use super::bytes::{put_u32, u32_at, u64_at};

/// Magic at the start of a stream.
pub const MAGIC: [u8; 8] = *b"toykvsnp";
/// Magic of the tail.
pub const TAIL_MAGIC: [u8; 8] = *b"toykvend";
/// The stream format version.
pub const SNAPSHOT_VERSION: u32 = 1;
/// Bytes of the head and of the tail.
pub const HEAD_LEN: usize = MAGIC.len() + 2 * size_of::<u32>();
/// Bytes of a chunk's header.
pub const CHUNK_HEADER_LEN: usize = 4 + 2 * size_of::<u32>();
/// Most bytes of one data chunk.
pub const CHUNK: usize = 4 << 20;
/// Longest path.
pub const MAX_PATH: usize = 64;
/// Longest file a stream may carry (a buffer of the largest sections is about 8 GiB).
pub const MAX_FILE: u64 = 1 << 36;
/// Most files a stream may carry.
pub const MAX_FILES: u32 = 1 << 24;
/// Chunk kind: data follows.
pub const DATA: u8 = 1;
/// Chunk kind: zeros, not sent.
pub const ZEROS: u8 = 2;

/// Encodes the head of a stream of `files` files.
pub fn head(files: u32) -> [u8; HEAD_LEN] {
    let mut b = [0u8; HEAD_LEN];
    b[..8].copy_from_slice(&MAGIC);
    put_u32(&mut b, 8, SNAPSHOT_VERSION);
    put_u32(&mut b, 12, files);
    b
}

/// Encodes the tail of a stream of `files` files.
pub fn tail(files: u32) -> [u8; HEAD_LEN] {
    let mut b = [0u8; HEAD_LEN];
    b[..8].copy_from_slice(&TAIL_MAGIC);
    put_u32(&mut b, 8, files);
    b
}

/// Decodes a head: the number of files, or why it is refused.
pub fn decode_head(b: &[u8; HEAD_LEN]) -> Result<u32, String> {
    if b[..8] != MAGIC {
        return Err(format!("not a toykv snapshot (magic {:02x?})", &b[..8]));
    }
    let version = u32_at(b, 8);
    if version != SNAPSHOT_VERSION {
        return Err(format!(
            "snapshot version {version}; this build reads version {SNAPSHOT_VERSION}"
        ));
    }
    let files = u32_at(b, 12);
    if files > MAX_FILES {
        return Err(format!("{files} files, more than {MAX_FILES}"));
    }
    Ok(files)
}

/// Checks a tail against the number of files read.
pub fn check_tail(b: &[u8; HEAD_LEN], files: u32) -> Result<(), String> {
    if b[..8] != TAIL_MAGIC {
        return Err(format!(
            "no tail where one was due (found {:02x?})",
            &b[..8]
        ));
    }
    let said = u32_at(b, 8);
    if said != files {
        return Err(format!("the tail counts {said} files; {files} came"));
    }
    Ok(())
}

/// Encodes a file's header.
pub fn file_header(path: &str, len: u64) -> Vec<u8> {
    let mut b = Vec::with_capacity(2 + path.len() + 8);
    b.extend_from_slice(&(path.len() as u16).to_le_bytes());
    b.extend_from_slice(path.as_bytes());
    b.extend_from_slice(&len.to_le_bytes());
    b
}

/// Bytes a file's header takes.
pub fn file_header_len(path: &str) -> usize {
    2 + path.len() + 8
}

/// Decodes a file's length from the 8 bytes after its path, checking it.
pub fn decode_len(b: &[u8; 8]) -> Result<u64, String> {
    let len = u64_at(b, 0);
    if len > MAX_FILE {
        return Err(format!("a file of {len} bytes, more than {MAX_FILE}"));
    }
    Ok(len)
}

/// Whether `path` is one a snapshot may carry (see the module doc), so that a stream cannot
/// write anywhere else.
pub fn check_path(path: &str) -> Result<(), String> {
    let ok = match path.split('/').collect::<Vec<_>>()[..] {
        [top] => top == super::STORE_NAME || top == crate::keymode::KEYMODE_FILE,
        [shard, name] => shard_dir(shard) && shard_file(name),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("a path a snapshot cannot hold: {path:?}"))
    }
}

fn shard_dir(s: &str) -> bool {
    s.len() == 8 && s.starts_with("shard-") && s[6..].bytes().all(|c| c.is_ascii_hexdigit())
}

fn shard_file(name: &str) -> bool {
    if name == super::BUFFER_NAME {
        return true;
    }
    match name.split_once('.') {
        Some((n, "k" | "v")) => n.len() == 8 && n.bytes().all(|c| c.is_ascii_hexdigit()),
        _ => false,
    }
}

/// Encodes a chunk's header: `kind`, `len`, and for data the CRC-32C of its bytes.
pub fn chunk_header(kind: u8, len: u32, crc: u32) -> [u8; CHUNK_HEADER_LEN] {
    let mut b = [0u8; CHUNK_HEADER_LEN];
    b[0] = kind;
    put_u32(&mut b, 4, len);
    put_u32(&mut b, 8, crc);
    b
}

/// The header of a data chunk of `data`.
pub fn data_header(data: &[u8]) -> [u8; CHUNK_HEADER_LEN] {
    chunk_header(DATA, data.len() as u32, crc32c::crc32c(data))
}

/// A decoded chunk header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// [`DATA`] or [`ZEROS`].
    pub kind: u8,
    /// Bytes of the file it covers.
    pub len: u32,
    /// CRC-32C of the data (0 for zeros).
    pub crc: u32,
}

/// Decodes and checks a chunk header.
pub fn decode_chunk(b: &[u8; CHUNK_HEADER_LEN]) -> Result<Chunk, String> {
    let c = Chunk {
        kind: b[0],
        len: u32_at(b, 4),
        crc: u32_at(b, 8),
    };
    match c.kind {
        DATA if c.len as usize > CHUNK => Err(format!(
            "a data chunk of {} bytes, more than {CHUNK}",
            c.len
        )),
        DATA | ZEROS => Ok(c),
        k => Err(format!("unknown chunk kind {k}")),
    }
}

/// Bytes a file of `data` bytes sent as data and `zeros` bytes of zeros (in one run)
/// takes in a stream, header and chunk headers included.
pub fn encoded_len(path: &str, data: u64, zeros: u64) -> u64 {
    let data_chunks = data.div_ceil(CHUNK as u64);
    let zero_chunks = zeros.div_ceil(u64::from(u32::MAX));
    file_header_len(path) as u64 + data + (data_chunks + zero_chunks) * CHUNK_HEADER_LEN as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        for ok in [
            "STORE",
            "KEYMODE",
            "shard-00/buffer.b",
            "shard-ff/0000000a.k",
            "shard-01/00000000.v",
        ] {
            assert!(check_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "LOCK",
            "journal",
            "../x",
            "/etc/passwd",
            "shard-00/../../x",
            "shard-0/buffer.b",
            "shard-00/x.k",
            "shard-00/0000000g.v",
            "shard-00/00000000.v.tmp",
            "shard-00/a/b",
        ] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn head_tail_chunk_round_trip() {
        assert_eq!(decode_head(&head(7)), Ok(7));
        assert!(check_tail(&tail(7), 7).is_ok());
        assert!(check_tail(&tail(7), 6).is_err());
        assert!(decode_head(&tail(7)).is_err());
        let mut h = head(1);
        h[8] = 9;
        assert!(decode_head(&h).unwrap_err().contains("version 9"));
        let c = chunk_header(DATA, 10, 0xdead_beef);
        assert_eq!(
            decode_chunk(&c),
            Ok(Chunk {
                kind: DATA,
                len: 10,
                crc: 0xdead_beef
            })
        );
        assert!(decode_chunk(&chunk_header(DATA, CHUNK as u32 + 1, 0)).is_err());
        assert!(decode_chunk(&chunk_header(3, 1, 0)).is_err());
        assert!(decode_len(&(MAX_FILE + 1).to_le_bytes()).is_err());
    }
}
