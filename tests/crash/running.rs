//! The parent's handle on a running child: spawning it, reading its protocol lines, and killing
//! it with SIGKILL according to a [`Plan`].

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::child::{Msg, parse};
use crate::{ENV_DIR, ENV_MAX_OPS, ENV_SEED, ENV_SLOTS};

/// Longest wait for one line from the child, and for it to die after SIGKILL.
pub(crate) const LINE_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a round may take.
pub(crate) const ROUND_TIMEOUT: Duration = Duration::from_secs(90);

/// When the parent kills the child.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Plan {
    /// Once `n` operations have been acknowledged, after a sleep of `delay_us`.
    Acks { n: u64, delay_us: u64 },
    /// After the `nth` marker of `kind` (`'F'` buffer flush, `'K'` new key section), then
    /// `then_acks` more acknowledgements, then a sleep of `delay_us`.
    Marker {
        kind: char,
        nth: u32,
        then_acks: u32,
        delay_us: u64,
    },
    /// `delay_us` after spawning it: during start-up or while it opens (recovers) the store.
    Startup { delay_us: u64 },
}

/// A running child with its stdout lines arriving on a channel and its stderr collected.
pub(crate) struct Running {
    pub(crate) child: Child,
    pub(crate) lines: Receiver<String>,
    pub(crate) stderr: Option<JoinHandle<String>>,
    /// Context for failure messages.
    pub(crate) what: String,
    /// Acknowledged operations: their delete results, in order.
    pub(crate) acks: Vec<Option<bool>>,
    /// Markers seen (kind, op number).
    pub(crate) markers: Vec<(char, u64)>,
}

impl Running {
    pub(crate) fn spawn(dir: &Path, seed: u64, slots: u32, max_ops: u64, what: String) -> Running {
        let exe = std::env::current_exe().expect("current_exe");
        let mut child = Command::new(exe)
            .args(["child_writer", "--exact", "--nocapture", "--test-threads=1"])
            .env(ENV_DIR, dir)
            .env(ENV_SEED, seed.to_string())
            .env(ENV_SLOTS, slots.to_string())
            .env(ENV_MAX_OPS, max_ops.to_string())
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{what}: spawn child: {e}"));
        let mut stdin = child.stdin.take().expect("child stdin");
        let stdout = child.stdout.take().expect("child stdout");
        let mut stderr = child.stderr.take().expect("child stderr");
        let (tx, lines) = channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // Let the child go on at once after a marker: the test thread then kills it
                // right away or after a delay, while the marked operation runs. (The write
                // fails only if the child died, which the test thread finds out.)
                if let Some(Ok(Msg::Marker(..))) = parse(&line) {
                    let _ = stdin.write_all(b"g").and_then(|()| stdin.flush());
                }
                if tx.send(line).is_err() {
                    break;
                }
            }
            // `stdin` closes here, after the child's stdout: the child never waits on a
            // closed stdin while it lives.
        });
        let stderr = thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        Running {
            child,
            lines,
            stderr: Some(stderr),
            what,
            acks: Vec::new(),
            markers: Vec::new(),
        }
    }

    /// Kills the child (if still alive), waits for it, and panics with `why` and its stderr.
    pub(crate) fn fail(&mut self, why: &str) -> ! {
        let _ = self.child.kill();
        let status = self.child.wait();
        let stderr = self
            .stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        panic!(
            "{}: {why}\nchild status: {status:?}; acknowledged ops: {}\n--- child stderr ---\n{stderr}--- end ---",
            self.what,
            self.acks.len()
        );
    }

    /// Records one protocol message; returns it.
    pub(crate) fn take(&mut self, line: &str) -> Option<Msg> {
        let msg = match parse(line)? {
            Ok(m) => m,
            Err(e) => self.fail(&e),
        };
        match msg {
            Msg::Ack(n, del) => {
                if n != self.acks.len() as u64 {
                    self.fail(&format!(
                        "ack for op {n} but {} ops were acknowledged before",
                        self.acks.len()
                    ));
                }
                self.acks.push(del);
            }
            Msg::Marker(k, n) => self.markers.push((k, n)),
            Msg::End => self.fail("the child ran out of operations before the planned kill"),
            Msg::Opened => {}
        }
        Some(msg)
    }

    /// The next protocol message; fails on timeout or if the child's stdout ends (it exited
    /// by itself).
    pub(crate) fn next(&mut self, deadline: Instant) -> Msg {
        loop {
            let wait = deadline
                .saturating_duration_since(Instant::now())
                .min(LINE_TIMEOUT);
            match self.lines.recv_timeout(wait) {
                Ok(line) => {
                    if let Some(msg) = self.take(&line) {
                        return msg;
                    }
                }
                Err(RecvTimeoutError::Timeout) => self.fail("timed out waiting for the child"),
                Err(RecvTimeoutError::Disconnected) => self
                    .fail("the child's stdout closed before it was killed (it exited by itself)"),
            }
        }
    }

    /// Runs `plan`, sends SIGKILL, waits for the child to die and reads the rest of its output.
    pub(crate) fn kill_per(&mut self, plan: Plan) {
        let deadline = Instant::now() + ROUND_TIMEOUT;
        match plan {
            Plan::Startup { delay_us } => thread::sleep(Duration::from_micros(delay_us)),
            Plan::Acks { n, delay_us } => {
                while (self.acks.len() as u64) < n {
                    self.next(deadline);
                }
                thread::sleep(Duration::from_micros(delay_us));
            }
            Plan::Marker {
                kind,
                nth,
                then_acks,
                delay_us,
            } => {
                let mut seen = 0;
                while seen < nth {
                    if let Msg::Marker(k, _) = self.next(deadline)
                        && k == kind
                    {
                        seen += 1;
                    }
                }
                let want = self.acks.len() as u64 + u64::from(then_acks);
                while (self.acks.len() as u64) < want {
                    self.next(deadline);
                }
                thread::sleep(Duration::from_micros(delay_us));
            }
        }
        if let Err(e) = self.child.kill() {
            self.fail(&format!("kill: {e}"));
        }
        let status: ExitStatus = match self.child.wait() {
            Ok(s) => s,
            Err(e) => self.fail(&format!("wait: {e}")),
        };
        // Acknowledgements written before the kill may still be in the pipe.
        loop {
            match self.lines.recv_timeout(LINE_TIMEOUT) {
                Ok(line) => {
                    self.take(&line);
                }
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    self.fail("the child's stdout stayed open after it was killed")
                }
            }
        }
        if status.signal() != Some(libc::SIGKILL) {
            self.fail(&format!(
                "the child was not killed by SIGKILL but ended with {status}"
            ));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
