//! The configuration file (`--config FILE`): what the server reads at start and what
//! `CONFIG REWRITE` writes, so that a role Redis Sentinel gives a server survives its
//! restart.
//!
//! The file holds lines of `name value…` in the manner of `redis.conf`; `#` starts a comment.
//! Read at start (flags given on the command line win): `replicaof HOST PORT` (or `slaveof`),
//! `masterauth PASSWORD`, `replica-priority N` (or `slave-priority`). `CONFIG REWRITE` keeps
//! every other line as it was and writes the role: `replicaof HOST PORT` on a replica, no such
//! line on a master. The new file is written beside the old one, synced and renamed over it.

use std::path::Path;

use crate::error::{Error, Result};

/// What the file says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileConf {
    /// `replicaof HOST PORT`.
    pub replicaof: Option<(String, u16)>,
    /// `masterauth PASSWORD`.
    pub masterauth: Option<String>,
    /// `replica-priority N`.
    pub replica_priority: Option<u32>,
}

fn refused(path: &Path, line: usize, why: impl std::fmt::Display) -> Error {
    Error::Refused {
        why: format!("{}, line {line}: {why}", path.display()),
    }
}

/// Reads `path`; a missing file says nothing.
pub fn read(path: &Path) -> Result<FileConf> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileConf::default()),
        Err(e) => return Err(Error::io("read", path, e)),
    };
    let mut conf = FileConf::default();
    for (i, line) in text.lines().enumerate() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(name) = words.first().map(|w| w.to_ascii_lowercase()) else {
            continue;
        };
        match (name.as_str(), &words[1..]) {
            (n, _) if n.starts_with('#') => {}
            ("replicaof" | "slaveof", [host, port]) => {
                let port = port
                    .parse()
                    .map_err(|_| refused(path, i + 1, format!("port {port:?} is not a port")))?;
                conf.replicaof = Some((host.to_string(), port));
            }
            ("masterauth", [pass]) => conf.masterauth = Some(pass.to_string()),
            ("replica-priority" | "slave-priority", [n]) => {
                let n = n
                    .parse()
                    .map_err(|_| refused(path, i + 1, format!("{n:?} is not a priority")))?;
                conf.replica_priority = Some(n);
            }
            _ => {}
        }
    }
    Ok(conf)
}

/// Rewrites `path` with the role: `replicaof` set to `master`, or removed.
pub fn rewrite(path: &Path, master: Option<(&str, u16)>) -> Result<()> {
    let old = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::io("read", path, e)),
    };
    let mut out: String = old
        .lines()
        .filter(|l| {
            let w = l
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_lowercase();
            w != "replicaof" && w != "slaveof"
        })
        .map(|l| format!("{l}\n"))
        .collect();
    if let Some((host, port)) = master {
        out.push_str(&format!("replicaof {host} {port}\n"));
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(out.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        let parent = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        std::fs::File::open(parent)?.sync_all()
    };
    write().map_err(|e| Error::io("rewrite", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_rewrites_the_role_keeping_other_lines() {
        let dir = crate::testing::tempdir();
        let p = dir.path().join("toykv.conf");
        assert_eq!(read(&p).unwrap(), FileConf::default());
        std::fs::write(
            &p,
            "# mine\nport 7000\nslaveof 10.0.0.1 6379\nreplica-priority 5\n",
        )
        .unwrap();
        let c = read(&p).unwrap();
        assert_eq!(c.replicaof, Some(("10.0.0.1".into(), 6379)));
        assert_eq!(c.replica_priority, Some(5));
        rewrite(&p, None).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text, "# mine\nport 7000\nreplica-priority 5\n");
        rewrite(&p, Some(("127.0.0.1", 7001))).unwrap();
        assert_eq!(
            read(&p).unwrap().replicaof,
            Some(("127.0.0.1".into(), 7001))
        );
        std::fs::write(&p, "replicaof host notaport\n").unwrap();
        assert!(read(&p).unwrap_err().to_string().contains("line 1"));
    }
}
