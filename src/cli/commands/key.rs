//! `cairn key`: list, add and remove the repository's passwords (the rules are
//! `ops::keys`').

use std::path::PathBuf;

use crate::cli::exit::EXIT_OK;
use cairn::ops::keys;
use cairn::{Error, Result};
use zeroize::Zeroizing;

use crate::cli::output::{outln, regardless};
use crate::cli::password::{prompt, read_file, refuse_empty};
use crate::cli::{Global, print_json};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// List the keys (passwords) of the repository
    List,
    /// Add a password
    Add(NewPassword),
    /// Remove a key by id (prefix); the last key and the one in use cannot be removed
    Remove {
        /// Key id or unique prefix (see `cairn key list`)
        id: String,
    },
    /// Change the password in use: add the new one, then remove the current key
    Passwd(NewPassword),
}

#[derive(clap::Args)]
struct NewPassword {
    /// Read the new password from this file (otherwise it is asked for twice on the
    /// terminal)
    #[arg(long, value_name = "FILE")]
    new_password_file: Option<PathBuf>,
}

impl NewPassword {
    fn get(&self) -> Result<Zeroizing<Vec<u8>>> {
        if let Some(f) = &self.new_password_file {
            return refuse_empty(read_file(f)?, &format!("file {}", f.display()));
        }
        if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            return Err(Error::Invalid(
                "no new password: give --new-password-file, or run on a terminal to be asked"
                    .into(),
            ));
        }
        let first = refuse_empty(prompt("enter the new password: ")?, "the terminal")?;
        let again = prompt("enter it again: ")?;
        if *first != *again {
            return Err(Error::Invalid("the passwords do not match".into()));
        }
        Ok(first)
    }
}

pub fn run(g: &Global, args: &Args) -> Result<i32> {
    let repo = g.open()?;
    match &args.action {
        Action::List => {
            let all = keys::list(&repo)?;
            if g.json {
                let items: Vec<_> = all
                    .iter()
                    .map(|k| {
                        serde_json::json!({
                            "id": k.id.to_hex(),
                            "current": k.id == *repo.key_file(),
                            "created": k.file.as_ref().and_then(|f| chrono::DateTime::from_timestamp(f.created, 0)).map(|t| t.to_rfc3339()),
                            "hostname": k.file.as_ref().map(|f| f.hostname.clone()),
                            "username": k.file.as_ref().map(|f| f.username.clone()),
                        })
                    })
                    .collect();
                print_json(&items)?;
            } else {
                outln!(" {:<8}  {:<19}  {:<15}  User", "ID", "Created", "Host")?;
                for k in &all {
                    let mark = if k.id == *repo.key_file() { '*' } else { ' ' };
                    match &k.file {
                        Some(f) => outln!(
                            "{mark}{:<8}  {:<19}  {:<15}  {}",
                            k.id.short(),
                            chrono::DateTime::from_timestamp(f.created, 0)
                                .map(|t| t
                                    .with_timezone(&chrono::Local)
                                    .format("%Y-%m-%d %H:%M:%S")
                                    .to_string())
                                .unwrap_or_default(),
                            f.hostname,
                            f.username
                        )?,
                        None => outln!("{mark}{:<8}  (unreadable key file)", k.id.short())?,
                    }
                }
                g.info("* the key that opened the repository");
            }
        }
        Action::Add(new) => {
            let pw = new.get()?;
            let id = keys::add(&repo, &pw)?;
            g.info(format!("added key {}", id.short()));
            if g.json {
                regardless(print_json(&serde_json::json!({"added": id.to_hex()})))?;
            }
        }
        Action::Remove { id } => {
            let key = keys::remove(&repo, id)?;
            g.info(format!("removed key {}", key.short()));
            if g.json {
                regardless(print_json(&serde_json::json!({"removed": key.to_hex()})))?;
            }
        }
        Action::Passwd(new) => {
            let pw = new.get()?;
            let (added, removed) = keys::change_password(&repo, &pw)?;
            g.info(format!("added key {}", added.short()));
            g.info(format!("removed key {}", removed.short()));
            if g.json {
                regardless(print_json(
                    &serde_json::json!({"added": added.to_hex(), "removed": removed.to_hex()}),
                ))?;
            }
        }
    }
    Ok(EXIT_OK)
}
