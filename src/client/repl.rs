//! The interactive loop, generic over where lines come from ([`Input`]): a terminal with line
//! editing and history ([`Terminal`], rustyline), or a script of lines ([`Script`], for tests
//! and anything else without a terminal).

use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use rustyline::error::ReadlineError;
use rustyline::{Config, DefaultEditor};

use super::session::{Outcome, Session, Settings};
use super::{EXIT_OK, EXIT_UNREACHABLE};

/// Name of the history file in `$HOME`.
pub const HISTORY_FILE: &str = ".toykv_history";

/// Lines kept in the history.
const HISTORY_SIZE: usize = 1000;

/// One read from an [`Input`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A line (without its line end).
    Text(String),
    /// Ctrl-C: the line being typed is dropped.
    Interrupted,
    /// Ctrl-D or the end of the input.
    Eof,
}

/// Where the loop reads lines from.
pub trait Input {
    /// Reads a line, showing `prompt` if there is someone to see it.
    fn read(&mut self, prompt: &str) -> Line;

    /// Records a line in the history, if there is one.
    fn remember(&mut self, _line: &str) {}

    /// Whether a person is typing (the loop then greets them).
    fn is_terminal(&self) -> bool {
        false
    }
}

/// Lines given in advance, then the end of the input.
#[derive(Debug, Clone, Default)]
pub struct Script {
    lines: VecDeque<Line>,
}

impl Script {
    /// A script of these reads ([`Line::Interrupted`] included), then [`Line::Eof`].
    pub fn new(lines: impl IntoIterator<Item = Line>) -> Script {
        Script {
            lines: lines.into_iter().collect(),
        }
    }

    /// A script of these text lines.
    pub fn lines<S: Into<String>>(lines: impl IntoIterator<Item = S>) -> Script {
        Script::new(lines.into_iter().map(|l| Line::Text(l.into())))
    }
}

impl Input for Script {
    fn read(&mut self, _prompt: &str) -> Line {
        self.lines.pop_front().unwrap_or(Line::Eof)
    }
}

/// The terminal: rustyline's line editing, with the history in `$HOME/.toykv_history` (when
/// `HOME` is set) loaded at start and saved when dropped. A history that cannot be read or
/// written is not an error.
pub struct Terminal {
    editor: DefaultEditor,
    history: Option<PathBuf>,
}

impl std::fmt::Debug for Terminal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Terminal")
            .field("history", &self.history)
            .finish_non_exhaustive()
    }
}

impl Terminal {
    /// Opens the terminal and loads the history.
    pub fn new() -> Result<Terminal, ReadlineError> {
        let config = Config::builder()
            .max_history_size(HISTORY_SIZE)?
            .history_ignore_dups(true)?
            .history_ignore_space(true)
            .auto_add_history(false)
            .build();
        let mut editor = DefaultEditor::with_config(config)?;
        let history = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(|home| PathBuf::from(home).join(HISTORY_FILE));
        if let Some(path) = &history {
            // Missing on first use; unreadable is not worth stopping for.
            let _ = editor.load_history(path);
        }
        Ok(Terminal { editor, history })
    }
}

impl Input for Terminal {
    fn read(&mut self, prompt: &str) -> Line {
        match self.editor.readline(prompt) {
            Ok(line) => Line::Text(line),
            Err(ReadlineError::Interrupted) => Line::Interrupted,
            Err(ReadlineError::Eof) => Line::Eof,
            Err(e) => {
                eprintln!("cannot read the terminal: {e}");
                Line::Eof
            }
        }
    }

    fn remember(&mut self, line: &str) {
        let _ = self.editor.add_history_entry(line);
    }

    fn is_terminal(&self) -> bool {
        std::io::stdin().is_terminal()
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if let Some(path) = &self.history {
            let _ = self.editor.save_history(path);
        }
    }
}

/// Whether a line may go to the history: not when it holds a password.
fn keep_in_history(line: &str) -> bool {
    let first = line.split_whitespace().next().unwrap_or_default();
    !first.eq_ignore_ascii_case("auth") && !first.eq_ignore_ascii_case("hello")
}

/// Runs the interactive client: connects (exit status 2 and a message on `err` if the server
/// cannot be reached), then reads lines from `input` and writes replies to `out` until
/// `quit`, `exit`, the end of the input, or two Ctrl-C in a row. Returns the exit status: 0.
pub fn interactive(
    settings: Settings,
    input: &mut dyn Input,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let mut session = Session::new(settings);
    if let Err(e) = session.connect(out) {
        let _ = writeln!(err, "{e}");
        return EXIT_UNREACHABLE;
    }
    if input.is_terminal() {
        let _ = writeln!(
            out,
            "connected to {} (toykv client; type help for the commands, Ctrl-D to leave)",
            session.settings().addr
        );
    }
    let mut interrupted = false;
    loop {
        let _ = out.flush();
        let line = match input.read(&session.prompt()) {
            Line::Eof => break,
            Line::Interrupted if interrupted => break,
            Line::Interrupted => {
                interrupted = true;
                let _ = writeln!(out, "(Ctrl-C again, quit or Ctrl-D to leave)");
                continue;
            }
            Line::Text(line) => line,
        };
        interrupted = false;
        if line.trim().is_empty() {
            continue;
        }
        if keep_in_history(&line) {
            input.remember(&line);
        }
        match session.run_line(&line, out) {
            Ok(Outcome::Quit) => break,
            Ok(_) => {}
            // The output is gone (a closed pipe): nobody is listening any more.
            Err(_) => break,
        }
    }
    let _ = out.flush();
    EXIT_OK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_end_in_eof() {
        let mut s = Script::new([Line::Text("a".into()), Line::Interrupted]);
        assert_eq!(s.read("> "), Line::Text("a".into()));
        assert_eq!(s.read("> "), Line::Interrupted);
        assert_eq!(s.read("> "), Line::Eof);
        assert_eq!(s.read("> "), Line::Eof);
        assert!(!s.is_terminal());
        let mut l = Script::lines(["get a"]);
        assert_eq!(l.read(""), Line::Text("get a".into()));
    }

    #[test]
    fn passwords_stay_out_of_the_history() {
        assert!(keep_in_history("get a"));
        assert!(!keep_in_history("auth secret"));
        assert!(!keep_in_history("  AUTH default secret"));
        assert!(!keep_in_history("HELLO 3 AUTH default secret"));
    }

    #[test]
    fn unreachable_server_exits_2_before_reading() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut script = Script::lines(["get a"]);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let settings = Settings::new(format!("127.0.0.1:{port}"));
        let code = interactive(settings, &mut script, &mut out, &mut err);
        assert_eq!(code, EXIT_UNREACHABLE);
        assert!(out.is_empty());
        let err = String::from_utf8(err).unwrap();
        assert!(err.starts_with("could not connect to 127.0.0.1:"), "{err}");
        assert_eq!(
            script.read(""),
            Line::Text("get a".into()),
            "nothing was read"
        );
    }
}
