//! Where the repository password comes from, in order: `--password-file` or
//! `--password-command` on the command line (not both), CAIRN_PASSWORD, CAIRN_PASSWORD_FILE,
//! CAIRN_PASSWORD_COMMAND, a prompt on the terminal. Flags beat the environment because
//! they were typed for this run, while the environment may be left over from another.
//! Passwords never appear in arguments or messages, and none may be empty.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cairn::{Error, Result};
use zeroize::Zeroizing;

/// The `--password-file` and `--password-command` flags of this run.
pub struct PasswordSource {
    pub file: Option<PathBuf>,
    pub command: Option<String>,
}

/// A password, and whether it was typed at the prompt (which a new repository's needs
/// confirming).
pub struct Password {
    pub bytes: Zeroizing<Vec<u8>>,
    prompted: bool,
}

/// Where one password came from.
enum Origin {
    Literal(OsString),
    File(PathBuf),
    Command(String),
    Prompt,
}

fn strip_newline(mut s: Vec<u8>) -> Vec<u8> {
    if s.last() == Some(&b'\n') {
        s.pop();
        if s.last() == Some(&b'\r') {
            s.pop();
        }
    }
    s
}

/// The one refusal of an empty password, wherever it came from (`from` names the source).
pub fn refuse_empty(password: Zeroizing<Vec<u8>>, from: &str) -> Result<Zeroizing<Vec<u8>>> {
    if password.is_empty() {
        return Err(Error::Invalid(format!(
            "the password from {from} is empty; empty passwords are not allowed"
        )));
    }
    Ok(password)
}

/// Reads a password file, naming it when it cannot be read.
pub fn read_file(path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    let bytes = std::fs::read(path).map_err(|e| {
        Error::Invalid(format!(
            "cannot read the password file {}: {e}",
            path.display()
        ))
    })?;
    Ok(Zeroizing::new(strip_newline(bytes)))
}

fn run_command(cmd: &str) -> Result<Zeroizing<Vec<u8>>> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        // A terminal, for a command that asks (a pinentry, `read`); anything else on
        // standard input is data (`backup --stdin`), never the command's to take.
        .stdin(if std::io::stdin().is_terminal() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| Error::Invalid(format!("cannot run the password command: {e}")))?;
    if !out.status.success() {
        return Err(Error::Invalid(format!(
            "the password command failed ({})",
            out.status
        )));
    }
    Ok(Zeroizing::new(strip_newline(out.stdout)))
}

pub fn prompt(text: &str) -> Result<Zeroizing<Vec<u8>>> {
    let typed = rpassword::prompt_password(text)
        .map_err(|e| Error::Invalid(format!("cannot read the password: {e}")))?;
    Ok(Zeroizing::new(Zeroizing::new(typed).as_bytes().to_vec()))
}

impl PasswordSource {
    fn origin(&self) -> Result<Origin> {
        let env = |name: &str| std::env::var_os(name);
        Ok(match (&self.file, &self.command) {
            (Some(_), Some(_)) => {
                return Err(Error::Invalid(
                    "give --password-file or --password-command, not both".into(),
                ));
            }
            (Some(f), None) => Origin::File(f.clone()),
            (None, Some(c)) => Origin::Command(c.clone()),
            (None, None) => {
                if let Some(p) = env("CAIRN_PASSWORD") {
                    Origin::Literal(p)
                } else if let Some(f) = env("CAIRN_PASSWORD_FILE") {
                    Origin::File(f.into())
                } else if let Some(c) = env("CAIRN_PASSWORD_COMMAND") {
                    Origin::Command(c.into_string().map_err(|_| {
                        Error::Invalid("CAIRN_PASSWORD_COMMAND is not valid UTF-8".into())
                    })?)
                } else if std::io::stdin().is_terminal() {
                    Origin::Prompt
                } else {
                    return Err(Error::NoPassword);
                }
            }
        })
    }

    /// Gets the password, asking once on a terminal.
    pub fn get(&self) -> Result<Password> {
        let (bytes, from, prompted) = match self.origin()? {
            Origin::Literal(p) => (Zeroizing::new(p.into_vec()), "CAIRN_PASSWORD".into(), false),
            Origin::File(f) => (read_file(&f)?, format!("file {}", f.display()), false),
            Origin::Command(c) => (run_command(&c)?, "the password command".into(), false),
            Origin::Prompt => (
                prompt("enter password for repository: ")?,
                "the terminal".into(),
                true,
            ),
        };
        Ok(Password {
            bytes: refuse_empty(bytes, &from)?,
            prompted,
        })
    }
}

impl Password {
    /// The password for a new repository: one typed at the prompt is asked for once more,
    /// so that a typo does not lock the user out.
    pub fn confirmed(self) -> Result<Zeroizing<Vec<u8>>> {
        if self.prompted {
            let again = prompt("enter the password again: ")?;
            if *again != *self.bytes {
                return Err(Error::Invalid("the passwords do not match".into()));
            }
        }
        Ok(self.bytes)
    }
}
