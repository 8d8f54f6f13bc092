//! The escaped text form of file names, in which `ls` prints paths: any byte string
//! becomes one line of valid UTF-8 and comes back unchanged through `unescape`, so a path
//! printed by `ls` (or `path_escaped` of `ls --json`) can be given to `ls`, `dump` and
//! `restore --include`.
//!
//! `\\` is a backslash, `\n`, `\t` and `\r` what they are in C, and `\xHH` any other
//! control byte or a byte that is not part of valid UTF-8. Everything else, including
//! non-ASCII UTF-8, stands for itself.

use std::ffi::OsString;
use std::fmt::Write;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// The escaped form of `bytes`.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if c.is_ascii_control() => {
                    let _ = write!(out, "\\x{:02x}", c as u8);
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// The escaped form of a path.
pub fn escape_path(path: &Path) -> String {
    escape(path.as_os_str().as_bytes())
}

/// The bytes an escaped text stands for; `None` if it holds a backslash that starts no
/// escape above, so that it cannot have come from `escape`.
pub fn unescape(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i] != b'\\' {
            out.push(text[i]);
            i += 1;
            continue;
        }
        let (byte, len) = match text.get(i + 1)? {
            b'\\' => (b'\\', 2),
            b'n' => (b'\n', 2),
            b't' => (b'\t', 2),
            b'r' => (b'\r', 2),
            b'x' => {
                let hex = std::str::from_utf8(text.get(i + 2..i + 4)?).ok()?;
                (u8::from_str_radix(hex, 16).ok()?, 4)
            }
            _ => return None,
        };
        out.push(byte);
        i += len;
    }
    Some(out)
}

/// The path an argument names when read as escaped text, if that differs from the
/// argument taken literally.
pub fn unescaped_path(arg: &Path) -> Option<PathBuf> {
    let bytes = unescape(arg.as_os_str().as_bytes())?;
    (bytes != arg.as_os_str().as_bytes()).then(|| PathBuf::from(OsString::from_vec(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_round_trips_any_bytes() {
        let cases: [&[u8]; 6] = [
            b"plain name",
            b"new\nline",
            b"back\\slash\\n",
            b"caf\xe9 \xff\xfe",
            "ünïcødé\t\x01\x7f".as_bytes(),
            b"",
        ];
        for bytes in cases {
            let text = escape(bytes);
            assert!(!text.contains('\n'), "{text}");
            assert_eq!(unescape(text.as_bytes()).as_deref(), Some(bytes), "{text}");
        }
        assert_eq!(escape(b"a\nb\\c\xff"), "a\\nb\\\\c\\xff");
        for bad in [&b"trailing\\"[..], b"\\q", b"\\x4", b"\\xzz"] {
            assert_eq!(unescape(bad), None);
        }
    }
}
