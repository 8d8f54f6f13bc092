//! Where the repository password comes from, in order: CAIRN_PASSWORD,
//! --password-file / CAIRN_PASSWORD_FILE, --password-command / CAIRN_PASSWORD_COMMAND, a
//! prompt on the terminal. Passwords never appear in arguments or messages.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use cairn::{Error, Result};
use zeroize::Zeroizing;

pub struct PasswordSource {
    pub file: Option<PathBuf>,
    pub command: Option<String>,
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

impl PasswordSource {
    /// Gets the password. `confirm` asks twice on a terminal (for new repositories).
    pub fn get(&self, confirm: bool) -> Result<Zeroizing<Vec<u8>>> {
        if let Some(p) = std::env::var_os("CAIRN_PASSWORD") {
            use std::os::unix::ffi::OsStringExt;
            return Ok(Zeroizing::new(p.into_vec()));
        }
        if let Some(f) = &self.file {
            let bytes = std::fs::read(f).map_err(|e| Error::io(f, e))?;
            return Ok(Zeroizing::new(strip_newline(bytes)));
        }
        if let Some(cmd) = &self.command {
            let out = Command::new("sh")
                .arg("-c")
                .arg(cmd)
                .stdin(Stdio::inherit())
                .stderr(Stdio::inherit())
                .output()
                .map_err(|e| Error::Other(format!("cannot run the password command: {e}")))?;
            if !out.status.success() {
                return Err(Error::Other(format!(
                    "the password command failed ({})",
                    out.status
                )));
            }
            return Ok(Zeroizing::new(strip_newline(out.stdout)));
        }
        if !std::io::stdin().is_terminal() {
            return Err(Error::NoPassword);
        }
        let first = Zeroizing::new(
            rpassword::prompt_password("enter password for repository: ")
                .map_err(|e| Error::Other(format!("cannot read the password: {e}")))?,
        );
        if confirm {
            let again = Zeroizing::new(
                rpassword::prompt_password("enter the password again: ")
                    .map_err(|e| Error::Other(format!("cannot read the password: {e}")))?,
            );
            if *first != *again {
                return Err(Error::Invalid("the passwords do not match".into()));
            }
        }
        if first.is_empty() {
            return Err(Error::Invalid("an empty password is not allowed".into()));
        }
        Ok(Zeroizing::new(first.as_bytes().to_vec()))
    }
}
