//! The client's own verbs (`get`, `put`, `del`, `scan`, `info`, …) and what they send.
//!
//! A verb is matched without regard to case. A line that starts with anything else is sent to
//! the server as typed (`mget a b`, `RANGE - + LIMIT 3`, `CONFIG GET *`); `raw` sends the rest
//! of a line as typed even when it starts with a verb (`raw SCAN 0 COUNT 5`).

/// Keys `scan` shows when no limit is given.
pub const SCAN_DEFAULT_LIMIT: usize = 50;

/// The text `help` prints.
pub const HELP: &str = "\
Commands (case does not matter):
  get KEY                    the value stored under KEY, or (nil)
  put KEY VALUE              store VALUE (at most 256 bytes) under KEY
  del KEY [KEY ...]          delete keys; replies how many existed
  scan [FROM] [TO] [LIMIT]   keys and values from FROM to TO (inclusive) in key order;
                             - and + are the open ends; 50 at most unless LIMIT is given
  info [SECTION]             server, clients, stats, commandstats, keyspace, storage
  ping                       PONG when the server answers
  dbsize                     how many keys are stored
  help                       this text
  quit, exit, Ctrl-D         leave (Ctrl-C clears the line; twice in a row leaves)
Anything else is sent to the server as typed: mget a b, RANGE - + LIMIT 3, CONFIG GET *.
raw sends a line as typed even if it starts with a verb: raw SCAN 0 COUNT 5.
Quoting: \"a b\" and 'a b' are one argument; in double quotes \\xHH is any byte
(put k \"\\x00\\xff\"), and \\n \\r \\t \\\\ \\\" work too. Keys are at most 8 bytes (or numbers,
on a server in numeric key mode). Values that are not printable text show in hex.";

/// How a reply is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// As [`show`](super::show()) does.
    Plain,
    /// A `RANGE` reply as `key => value` lines.
    Pairs {
        /// The limit the client chose, if the user gave none (a full page then earns a hint).
        default_limit: Option<usize>,
    },
    /// A text reply (`INFO`) as its lines.
    Text,
}

/// What a line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Print the help text.
    Help,
    /// Leave the client.
    Quit,
    /// A verb used wrongly: the usage line to print.
    Usage(&'static str),
    /// Send a command to the server.
    Send {
        /// The command and its arguments.
        args: Vec<Vec<u8>>,
        /// How to show the reply.
        view: View,
    },
}

fn send(name: &str, rest: &[Vec<u8>], view: View) -> Action {
    let mut args = Vec::with_capacity(rest.len() + 1);
    args.push(name.as_bytes().to_vec());
    args.extend(rest.iter().cloned());
    Action::Send { args, view }
}

fn plain(name: &str, rest: &[Vec<u8>]) -> Action {
    send(name, rest, View::Plain)
}

/// Decides what a split, non-empty line asks for.
pub fn plan(words: Vec<Vec<u8>>) -> Action {
    let Some((first, rest)) = words.split_first() else {
        return Action::Usage("type a command, or help");
    };
    let verb = String::from_utf8_lossy(first).to_ascii_lowercase();
    match (verb.as_str(), rest.len()) {
        ("help" | "?", _) => Action::Help,
        ("quit" | "exit", _) => Action::Quit,
        ("raw", 0) => Action::Usage("raw COMMAND [ARG ...]"),
        ("raw", _) => Action::Send {
            args: rest.to_vec(),
            view: View::Plain,
        },
        ("get", 1) => plain("GET", rest),
        ("get", _) => Action::Usage("get KEY"),
        ("put", 2) => plain("SET", rest),
        ("put", _) => Action::Usage("put KEY VALUE (quote a value with spaces: put k \"a b\")"),
        ("del", 0) => Action::Usage("del KEY [KEY ...]"),
        ("del", _) => plain("DEL", rest),
        ("scan", _) => scan(rest),
        ("info", _) => send("INFO", rest, View::Text),
        ("ping", 0 | 1) => plain("PING", rest),
        ("ping", _) => Action::Usage("ping [MESSAGE]"),
        ("dbsize", 0) => plain("DBSIZE", rest),
        ("dbsize", _) => Action::Usage("dbsize"),
        _ => Action::Send {
            args: words,
            view: View::Plain,
        },
    }
}

const SCAN_USAGE: &str = "scan [FROM] [TO] [LIMIT] (- and + for the open ends: scan - + 10)";

/// `scan [FROM] [TO] [LIMIT]` or `scan FROM TO LIMIT n`, as `RANGE FROM TO LIMIT n`.
fn scan(rest: &[Vec<u8>]) -> Action {
    let limit_word = |w: &[u8]| w.eq_ignore_ascii_case(b"limit");
    let (bounds, limit) = match rest {
        [from, to, word, n] if limit_word(word) => ([Some(from), Some(to)], Some(n)),
        [from, to, n] => ([Some(from), Some(to)], Some(n)),
        [from, to] => ([Some(from), Some(to)], None),
        [from] => ([Some(from), None], None),
        [] => ([None, None], None),
        _ => return Action::Usage(SCAN_USAGE),
    };
    let (limit, default_limit) = match limit {
        None => (SCAN_DEFAULT_LIMIT, Some(SCAN_DEFAULT_LIMIT)),
        Some(n) => match std::str::from_utf8(n)
            .ok()
            .and_then(|n| n.parse::<usize>().ok())
        {
            Some(n) => (n, None),
            None => return Action::Usage(SCAN_USAGE),
        },
    };
    let [from, to] = bounds;
    let args = vec![
        b"RANGE".to_vec(),
        from.cloned().unwrap_or_else(|| b"-".to_vec()),
        to.cloned().unwrap_or_else(|| b"+".to_vec()),
        b"LIMIT".to_vec(),
        limit.to_string().into_bytes(),
    ];
    Action::Send {
        args,
        view: View::Pairs { default_limit },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::split;

    fn plan_of(line: &str) -> Action {
        plan(split(line).unwrap())
    }

    fn sent(line: &str) -> (Vec<String>, View) {
        match plan_of(line) {
            Action::Send { args, view } => (
                args.into_iter()
                    .map(|a| String::from_utf8(a).unwrap())
                    .collect(),
                view,
            ),
            other => panic!("{line}: {other:?}"),
        }
    }

    fn args(line: &str) -> Vec<String> {
        sent(line).0
    }

    #[test]
    fn friendly_verbs() {
        assert_eq!(args("get 42"), ["GET", "42"]);
        assert_eq!(args("GET 42"), ["GET", "42"]);
        assert_eq!(args("put k \"a b\""), ["SET", "k", "a b"]);
        assert_eq!(args("del a b c"), ["DEL", "a", "b", "c"]);
        assert_eq!(args("ping"), ["PING"]);
        assert_eq!(args("dbsize"), ["DBSIZE"]);
        assert_eq!(
            sent("info keyspace"),
            (vec!["INFO".into(), "keyspace".into()], View::Text)
        );
        assert_eq!(args("info"), ["INFO"]);
    }

    #[test]
    fn binary_values_pass_through() {
        let Action::Send { args, .. } = plan_of(r#"put k "\x00\xff""#) else {
            panic!()
        };
        assert_eq!(args, [b"SET".to_vec(), b"k".to_vec(), vec![0, 255]]);
    }

    #[test]
    fn scan_maps_to_range() {
        let default = View::Pairs {
            default_limit: Some(SCAN_DEFAULT_LIMIT),
        };
        let given = View::Pairs {
            default_limit: None,
        };
        assert_eq!(
            sent("scan"),
            (
                vec!["RANGE", "-", "+", "LIMIT", "50"]
                    .into_iter()
                    .map(String::from)
                    .collect(),
                default
            )
        );
        assert_eq!(args("scan a"), ["RANGE", "a", "+", "LIMIT", "50"]);
        assert_eq!(args("scan a z"), ["RANGE", "a", "z", "LIMIT", "50"]);
        assert_eq!(sent("scan - z 7").0, ["RANGE", "-", "z", "LIMIT", "7"]);
        assert_eq!(sent("scan - z 7").1, given);
        assert_eq!(args("scan 1 9 limit 3"), ["RANGE", "1", "9", "LIMIT", "3"]);
    }

    #[test]
    fn scan_usage_errors() {
        assert_eq!(plan_of("scan a b c"), Action::Usage(SCAN_USAGE));
        assert_eq!(plan_of("scan a b -1"), Action::Usage(SCAN_USAGE));
        assert_eq!(plan_of("scan a b c d e"), Action::Usage(SCAN_USAGE));
    }

    #[test]
    fn wrong_argument_counts_are_usage_errors() {
        assert_eq!(plan_of("get"), Action::Usage("get KEY"));
        assert_eq!(plan_of("get a b"), Action::Usage("get KEY"));
        assert!(matches!(plan_of("put k"), Action::Usage(u) if u.starts_with("put KEY VALUE")));
        assert!(matches!(plan_of("put k a b"), Action::Usage(_)));
        assert_eq!(plan_of("del"), Action::Usage("del KEY [KEY ...]"));
        assert_eq!(plan_of("ping a b"), Action::Usage("ping [MESSAGE]"));
        assert_eq!(plan_of("dbsize x"), Action::Usage("dbsize"));
        assert_eq!(plan_of("raw"), Action::Usage("raw COMMAND [ARG ...]"));
    }

    #[test]
    fn anything_else_is_sent_as_typed() {
        assert_eq!(args("mget a b"), ["mget", "a", "b"]);
        assert_eq!(args("RANGE - + LIMIT 3"), ["RANGE", "-", "+", "LIMIT", "3"]);
        assert_eq!(args("raw SCAN 0 COUNT 5"), ["SCAN", "0", "COUNT", "5"]);
        assert_eq!(args("nosuchcommand x"), ["nosuchcommand", "x"]);
    }

    #[test]
    fn help_and_quit() {
        assert_eq!(plan_of("help"), Action::Help);
        assert_eq!(plan_of("HELP get"), Action::Help);
        assert_eq!(plan_of("quit"), Action::Quit);
        assert_eq!(plan_of("Exit"), Action::Quit);
        for verb in [
            "get KEY",
            "put KEY VALUE",
            "del KEY",
            "scan [FROM]",
            "info",
            "ping",
        ] {
            assert!(HELP.contains(verb), "{verb}");
        }
    }
}
