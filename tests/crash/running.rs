//! The parent's handle on a running child: spawning it, reading its protocol lines, and killing
//! it with SIGKILL according to a [`Plan`].

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::child::{Msg, parse};
use crate::{ENV_DIR, ENV_DURABILITY, ENV_MAX_OPS, ENV_SEED, ENV_SERVER};

/// Longest wait for one line from the child, and for it to die after SIGKILL.
pub(crate) const LINE_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a round may take.
pub(crate) const ROUND_TIMEOUT: Duration = Duration::from_secs(90);

/// When the child dies.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Plan {
    /// The parent kills it once `n` operations have been acknowledged and `delay_us` more
    /// microseconds have passed.
    Acks { n: u64, delay_us: u64 },
    /// It kills itself the `nth` time it reaches kill point `point` (see `toykv::kill`); if it
    /// runs out of operations first, the parent kills it.
    Point { point: &'static str, nth: u64 },
    /// The parent kills it `delay_us` after spawning it: during start-up or recovery.
    Startup { delay_us: u64 },
}

/// Which child to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// Runs the operations on the library and acknowledges each on stdout.
    Library,
    /// Serves the store over RESP; the parent's client runs the operations.
    Server,
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
    /// The port of a server child, once it listens.
    pub(crate) port: Option<u16>,
    /// Whether the child printed `END` (ran out of operations).
    pub(crate) ended: bool,
}

impl Running {
    pub(crate) fn spawn(
        dir: &Path,
        role: Role,
        seed: u64,
        max_ops: u64,
        plan: Plan,
        durability: toykv::Durability,
        what: String,
    ) -> Running {
        Self::spawn_with(dir, role, seed, max_ops, plan, durability, what, &[])
    }

    /// [`spawn`](Self::spawn) with more environment variables for the child.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn spawn_with(
        dir: &Path,
        role: Role,
        seed: u64,
        max_ops: u64,
        plan: Plan,
        durability: toykv::Durability,
        what: String,
        env: &[(&str, &str)],
    ) -> Running {
        let exe = std::env::current_exe().expect("current_exe");
        let entry = match role {
            Role::Library => "child_writer",
            Role::Server => "child_server",
        };
        let mut cmd = Command::new(exe);
        cmd.args([entry, "--exact", "--nocapture", "--test-threads=1"])
            .env(
                if role == Role::Library {
                    ENV_DIR
                } else {
                    ENV_SERVER
                },
                dir,
            )
            .env(ENV_SEED, seed.to_string())
            .env(ENV_MAX_OPS, max_ops.to_string())
            .env(ENV_DURABILITY, durability.to_string())
            .env("RUST_BACKTRACE", "1")
            .env("RUST_LOG", "error")
            .env_remove(toykv::kill::ENV)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Plan::Point { point, nth } = plan {
            cmd.env(toykv::kill::ENV, format!("{point}@{nth}"));
        }
        cmd.envs(env.iter().copied());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{what}: spawn child: {e}"));
        let stdout = child.stdout.take().expect("child stdout");
        let mut stderr = child.stderr.take().expect("child stderr");
        let (tx, lines) = channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
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
            port: None,
            ended: false,
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
    fn take(&mut self, line: &str) -> Option<Msg> {
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
            Msg::Port(p) => self.port = Some(p),
            Msg::End => self.ended = true,
            Msg::Opened => {}
        }
        Some(msg)
    }

    /// The next protocol message; `None` once the child's stdout closed (it died).
    pub(crate) fn next(&mut self, deadline: Instant) -> Option<Msg> {
        loop {
            let wait = deadline
                .saturating_duration_since(Instant::now())
                .min(LINE_TIMEOUT);
            match self.lines.recv_timeout(wait) {
                Ok(line) => {
                    if let Some(msg) = self.take(&line) {
                        return Some(msg);
                    }
                }
                Err(RecvTimeoutError::Timeout) => self.fail("timed out waiting for the child"),
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Waits until the child reached its kill point and died, or ran out of operations.
    /// Returns whether it died by itself (the point was reached).
    pub(crate) fn await_point(&mut self) -> bool {
        let deadline = Instant::now() + ROUND_TIMEOUT;
        loop {
            match self.next(deadline) {
                None => return true,
                Some(Msg::End) => return false,
                Some(_) => {}
            }
        }
    }

    /// Waits for `n` acknowledgements on the child's stdout.
    pub(crate) fn await_acks(&mut self, n: u64) {
        let deadline = Instant::now() + ROUND_TIMEOUT;
        while (self.acks.len() as u64) < n {
            match self.next(deadline) {
                None => self.fail("the child died before the planned kill"),
                Some(Msg::End) => self.fail("the child ran out of operations before the kill"),
                Some(_) => {}
            }
        }
    }

    /// Sends SIGKILL (the child may be dead already, killed at its kill point), waits for it,
    /// reads the rest of its output, and checks that SIGKILL is what ended it.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
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

    /// Runs a library child's `plan` to its end; returns whether a kill point fired.
    pub(crate) fn kill_per(&mut self, plan: Plan) -> bool {
        let mut fired = false;
        match plan {
            Plan::Startup { delay_us } => thread::sleep(Duration::from_micros(delay_us)),
            Plan::Acks { n, delay_us } => {
                self.await_acks(n);
                thread::sleep(Duration::from_micros(delay_us));
            }
            Plan::Point { .. } => fired = self.await_point(),
        }
        self.kill();
        fired
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
