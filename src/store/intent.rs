//! The `intent` file of atomic batches (the format, and why it suffices, are in
//! [`crate::format::intent`]): writing a batch's intent before it changes a shard, and
//! reading it at open.
//!
//! A failed write of an intent refuses that batch (nothing was changed); a batch that fails
//! after its intent was written may be partly applied, so the intent then refuses every later
//! batch until the store is reopened (which applies it whole): a later intent would overwrite
//! the only record of what to finish.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Context, Error, Result};
use crate::format::intent::{
    INTENT_HEADER_LEN, INTENT_NAME, Intent, MAX_INTENT_LEN, Span, decode_intent, encode_intent,
};
use crate::io::{FileIo, Mode, Vfs};

/// The store's intent file, behind the store's batch lock.
#[derive(Debug)]
pub(crate) struct IntentFile {
    path: PathBuf,
    dir: PathBuf,
    vfs: Arc<dyn Vfs>,
    /// Opened (or made) by the first batch.
    file: Option<Arc<dyn FileIo>>,
    /// Sync each intent before the batch changes a shard (durability `always`).
    sync: bool,
    /// The next batch's number.
    next: u64,
    /// Why batches are refused, once one failed after its intent was written.
    failed: Option<String>,
    /// The journal ticket of the last batch applied since open (0: none): with a journal, the
    /// next batch waits until it is durable before writing its intent.
    ticket: u64,
    buf: Vec<u8>,
}

/// The intent found at open, owned.
#[derive(Debug)]
pub(crate) struct Found {
    pub(crate) id: u64,
    pub(crate) spans: Vec<Span>,
    pub(crate) payload: Vec<u8>,
}

impl IntentFile {
    /// Reads the intent of `dir`, if there is one that decodes; ready for the next batch.
    pub(crate) fn open(
        vfs: Arc<dyn Vfs>,
        dir: &Path,
        sync: bool,
    ) -> Result<(IntentFile, Option<Found>)> {
        let path = dir.join(INTENT_NAME);
        let names = vfs.list(dir).ctx("list", dir)?;
        let mut found = None;
        let mut file = None;
        if names.iter().any(|n| n == INTENT_NAME) {
            let f = vfs.open(&path, mode(false)).ctx("open", &path)?;
            let len = f.len().ctx("stat", &path)?;
            // No more than the longest intent: a longer file (foreign, or damaged) is read that
            // far, and what it declares past it does not decode.
            let len = usize::try_from(len).map_or(MAX_INTENT_LEN, |l| l.min(MAX_INTENT_LEN));
            let mut b = vec![0u8; len];
            f.read_at(&mut b, 0).ctx("read", &path)?;
            // An intent that does not decode was cut short before any shard changed.
            if let Ok(Intent {
                id, spans, payload, ..
            }) = decode_intent(&b)
            {
                found = Some(Found {
                    id,
                    spans,
                    payload: payload.to_vec(),
                });
            }
            file = Some(f);
        }
        let next = found.as_ref().map_or(1, |f| f.id + 1);
        let intent = IntentFile {
            path,
            dir: dir.to_path_buf(),
            vfs,
            file,
            sync,
            next,
            failed: None,
            ticket: 0,
            buf: Vec::new(),
        };
        Ok((intent, found))
    }

    /// The journal ticket of the last batch applied since open (0: none).
    pub(crate) fn ticket(&self) -> u64 {
        self.ticket
    }

    /// Notes the journal ticket of the batch just applied.
    pub(crate) fn applied(&mut self, ticket: u64) {
        self.ticket = ticket;
    }

    /// The number of the last batch whose intent was written (0: none known).
    pub(crate) fn last(&self) -> u64 {
        self.next - 1
    }

    /// Refuses batches once one failed after its intent was written.
    pub(crate) fn writable(&self) -> Result<()> {
        match &self.failed {
            None => Ok(()),
            Some(why) => Err(Error::Failed {
                op: "atomic batch",
                path: self.path.clone(),
                why: why.clone(),
            }),
        }
    }

    /// Writes (and with `always`, syncs) the intent of the next batch; its number.
    pub(crate) fn write(&mut self, count: u32, spans: &[Span], payload: &[u8]) -> Result<u64> {
        let id = self.next;
        encode_intent(id, count, spans, payload, &mut self.buf);
        let file = match &self.file {
            Some(f) => f.clone(),
            None => {
                let f = self
                    .vfs
                    .open(&self.path, mode(true))
                    .ctx("create", &self.path)?;
                self.vfs.sync_dir(&self.dir).ctx("fsync", &self.dir)?;
                self.file = Some(f.clone());
                f
            }
        };
        file.write_at(&self.buf, 0).ctx("write", &self.path)?;
        if self.sync {
            file.sync().ctx("fdatasync", &self.path)?;
        }
        self.next += 1;
        Ok(id)
    }

    /// Records that a batch failed after its intent was written (see the module's doc).
    pub(crate) fn fail(&mut self, e: &Error) {
        if self.failed.is_none() {
            self.failed = Some(format!(
                "an earlier batch failed part way ({e}); reopen the store to finish it"
            ));
        }
    }

    /// Clears the intent and syncs it, after open finished its batch: the shards' logs may
    /// end before the batch's record numbers (a power loss took their tail), and it must not
    /// be finished again over writes made after this open.
    pub(crate) fn clear(&mut self) -> Result<()> {
        let Some(f) = &self.file else {
            return Ok(());
        };
        let zeros = [0u8; INTENT_HEADER_LEN];
        f.write_at(&zeros, 0).ctx("write", &self.path)?;
        f.sync().ctx("fdatasync", &self.path)
    }
}

fn mode(create: bool) -> Mode {
    Mode {
        create,
        write: true,
        direct: false,
    }
}
