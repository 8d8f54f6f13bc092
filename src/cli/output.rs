//! Every write to stdout. A reader that goes away (`cairn ls | head -1`) closes the pipe;
//! SIGPIPE stays ignored (Rust's default), so that a backup is never killed by it, and the
//! write fails with EPIPE instead. That failure becomes `Error::OutputClosed`: listings
//! propagate it to stop early, and `main` turns it into a quiet exit 0, since nothing
//! went wrong and the reader got what it asked for. Commands that change the repository
//! pass their reports through `regardless`, so that their work and exit code never depend
//! on whether anyone still reads.

use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use cairn::{Error, Result};

/// Set once a write found stdout closed; later writes do not try again.
static CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes one line to stdout.
pub fn line(args: fmt::Arguments<'_>) -> Result<()> {
    if CLOSED.load(Ordering::Relaxed) {
        return Err(Error::OutputClosed);
    }
    let mut out = io::stdout().lock();
    writeln!(out, "{args}").map_err(failed)
}

/// The error for a failed write to stdout.
fn failed(e: io::Error) -> Error {
    note_closed(&e);
    if e.kind() == io::ErrorKind::BrokenPipe {
        Error::OutputClosed
    } else {
        Error::Output(format!("cannot write to standard output: {e}"))
    }
}

/// Whether a write found stdout closed.
pub fn closed() -> bool {
    CLOSED.load(Ordering::Relaxed)
}

/// Prints a JSON value on one line of stdout.
pub fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    let s = serde_json::to_string(value).map_err(|e| Error::Internal(format!("JSON: {e}")))?;
    line(format_args!("{s}"))
}

/// A report of work that is done: a closed stdout is no reason to fail it.
pub fn regardless(printed: Result<()>) -> Result<()> {
    match printed {
        Err(Error::OutputClosed) => Ok(()),
        other => other,
    }
}

/// Raw bytes to stdout (`dump`), noting a closed pipe like `line` does.
pub struct Raw<W>(pub W);

impl<W: Write> Write for Raw<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf).inspect_err(note_closed)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush().inspect_err(note_closed)
    }
}

fn note_closed(e: &io::Error) {
    if e.kind() == io::ErrorKind::BrokenPipe {
        CLOSED.store(true, Ordering::Relaxed);
    }
}

/// `println!` that returns `Err(Error::OutputClosed)` when the reader has gone.
macro_rules! outln {
    () => {
        $crate::cli::output::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::cli::output::line(format_args!($($arg)*))
    };
}
pub(crate) use outln;

/// One line to stderr. Unlike `eprintln!` it never panics: with stderr closed
/// (`cairn … 2>&1 | head -1`) the message has nobody to reach, and the command goes on
/// to the exit code its work deserves.
pub fn err_line(args: fmt::Arguments<'_>) {
    let _ = crate::cli::progress::write_stderr(format!("{args}\n").as_bytes());
}

/// `eprintln!` that ignores a closed stderr (see `err_line`).
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::cli::output::err_line(format_args!($($arg)*))
    };
}
pub(crate) use errln;
