//! `cairn key`: several passwords for one repository. Each key file wraps the same master
//! key under its own password; adding or removing one never touches the data.

use std::path::PathBuf;

use cairn::error::EXIT_OK;
use cairn::format::id::Id;
use cairn::format::keyfile::KeyFile;
use cairn::repo::Repository;
use cairn::store::{Kind, ObjectName};
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

struct KeyEntry {
    id: Id,
    file: Option<KeyFile>,
}

fn keys(repo: &Repository) -> Result<Vec<KeyEntry>> {
    let mut out = Vec::new();
    for l in repo.backend().list(Kind::Key)? {
        let Ok(id) = Id::from_hex(&l.name) else {
            continue;
        };
        let name = ObjectName::new(Kind::Key, &id);
        let file = repo
            .backend()
            .read(&name)
            .and_then(|b| KeyFile::decode(&b, &name.path()))
            .ok();
        out.push(KeyEntry { id, file });
    }
    out.sort_by_key(|k| k.file.as_ref().map(|f| f.created));
    Ok(out)
}

fn add_key(g: &Global, repo: &Repository, password: &[u8]) -> Result<Id> {
    let (id, bytes) = KeyFile::create(repo.key(), password)?.encode();
    repo.backend()
        .write(&ObjectName::new(Kind::Key, &id), &bytes)?;
    g.info(format!("added key {}", id.short()));
    Ok(id)
}

fn remove_key(g: &Global, repo: &Repository, all: &[KeyEntry], id: &Id) -> Result<()> {
    if all.len() <= 1 {
        return Err(Error::Invalid(
            "this is the repository's only key; without it nobody could open the repository".into(),
        ));
    }
    repo.backend().remove(&ObjectName::new(Kind::Key, id))?;
    g.info(format!("removed key {}", id.short()));
    Ok(())
}

pub fn run(g: &Global, args: &Args) -> Result<i32> {
    let repo = g.open()?;
    match &args.action {
        Action::List => {
            let all = keys(&repo)?;
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
            let id = add_key(g, &repo, &pw)?;
            if g.json {
                regardless(print_json(&serde_json::json!({"added": id.to_hex()})))?;
            }
        }
        Action::Remove { id } => {
            let all = keys(&repo)?;
            let wanted = id.to_ascii_lowercase();
            let matches: Vec<&KeyEntry> = all
                .iter()
                .filter(|k| !wanted.is_empty() && k.id.to_hex().starts_with(&wanted))
                .collect();
            let key = match matches.as_slice() {
                [one] => one.id,
                [] => {
                    return Err(Error::Invalid(format!(
                        "no key with id {id} (see `cairn key list`)"
                    )));
                }
                _ => {
                    return Err(Error::Invalid(format!(
                        "key id prefix {id} is ambiguous; give more digits"
                    )));
                }
            };
            if key == *repo.key_file() {
                return Err(Error::Invalid(
                    "that is the key in use; open the repository with another password to remove it, or use `cairn key passwd`".into(),
                ));
            }
            remove_key(g, &repo, &all, &key)?;
            if g.json {
                regardless(print_json(&serde_json::json!({"removed": key.to_hex()})))?;
            }
        }
        Action::Passwd(new) => {
            let pw = new.get()?;
            let added = add_key(g, &repo, &pw)?;
            let all = keys(&repo)?;
            remove_key(g, &repo, &all, repo.key_file())?;
            if g.json {
                regardless(print_json(
                    &serde_json::json!({"added": added.to_hex(), "removed": repo.key_file().to_hex()}),
                ))?;
            }
        }
    }
    Ok(EXIT_OK)
}
