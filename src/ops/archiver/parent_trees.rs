//! Loads the parent snapshot's trees ahead of the walker.
//!
//! On a rerun the walker spends about a third of its time reading, decrypting and decoding
//! the parent's tree of each directory it enters, while the file workers sit idle. When the
//! walker enters a directory it asks for the trees of that directory's subdirectories in the
//! parent; loader threads fetch them, deepest request first, since the walk is depth-first
//! and the newest requests are the next ones it needs. The walker takes a tree that is ready,
//! waits for one being loaded, and loads one itself that no loader has started, so it never
//! waits behind a queue. Decoded trees held ahead are bounded by their node count.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard};

use crate::error::Result;
use crate::format::id::Id;
use crate::format::tree::Tree;
use crate::repo::Repository;

/// Requests held at once (queued, loading or loaded and not yet taken).
const MAX_REQUESTS: usize = 256;
/// Nodes of loaded, untaken trees above which loaders pause (~200 bytes each).
const MAX_READY_NODES: usize = 100_000;

enum Slot {
    Queued,
    Loading,
    Ready(Result<Tree>),
}

#[derive(Default)]
struct State {
    /// Requested ids, newest last; ids whose slot is gone are skipped.
    stack: Vec<Id>,
    slots: HashMap<Id, Slot>,
    ready_nodes: usize,
    closed: bool,
}

impl State {
    fn remove(&mut self, id: &Id) -> Option<Slot> {
        let slot = self.slots.remove(id)?;
        if let Slot::Ready(Ok(t)) = &slot {
            self.ready_nodes -= t.nodes.len();
        }
        Some(slot)
    }
}

#[derive(Default)]
pub struct ParentTrees {
    state: Mutex<State>,
    /// Signalled when a request arrives, a tree is ready or taken, or on close.
    changed: Condvar,
}

impl ParentTrees {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait<'g>(&self, guard: MutexGuard<'g, State>) -> MutexGuard<'g, State> {
        self.changed.wait(guard).unwrap_or_else(|p| p.into_inner())
    }

    /// Asks for these trees to be loaded, the first one first. Ids already asked for, and
    /// those beyond the request limit, are left to the walker.
    pub fn request(&self, ids: &[Id]) {
        let mut st = self.lock();
        let mut fresh = Vec::new();
        for id in ids {
            if st.slots.len() >= MAX_REQUESTS {
                break;
            }
            if !st.slots.contains_key(id) {
                st.slots.insert(*id, Slot::Queued);
                fresh.push(*id);
            }
        }
        // Reversed onto the stack, so the first id is loaded first.
        st.stack.extend(fresh.into_iter().rev());
        drop(st);
        self.changed.notify_all();
    }

    /// The tree `id`: loaded ahead when it was requested, otherwise loaded here.
    pub fn take(&self, repo: &Repository, id: &Id) -> Result<Tree> {
        let mut st = self.lock();
        loop {
            match st.remove(id) {
                Some(Slot::Ready(r)) => {
                    drop(st);
                    self.changed.notify_all();
                    return r;
                }
                Some(Slot::Loading) => {
                    st.slots.insert(*id, Slot::Loading);
                    st = self.wait(st);
                }
                // Not started (its stack entry is skipped now) or never requested.
                Some(Slot::Queued) | None => {
                    drop(st);
                    return repo.load_tree(id);
                }
            }
        }
    }

    /// Drops requests the walker will not take (directories gone since the parent).
    pub fn forget(&self, ids: &[Id]) {
        let mut st = self.lock();
        for id in ids {
            st.remove(id);
        }
        drop(st);
        self.changed.notify_all();
    }

    /// Stops the loaders once they finish what they are loading.
    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    /// A loader thread: runs until `close`.
    pub fn run_loader(&self, repo: &Repository) {
        let mut st = self.lock();
        loop {
            if st.closed {
                return;
            }
            if st.ready_nodes >= MAX_READY_NODES {
                st = self.wait(st);
                continue;
            }
            let Some(id) = st.stack.pop() else {
                st = self.wait(st);
                continue;
            };
            match st.slots.get_mut(&id) {
                Some(slot @ Slot::Queued) => *slot = Slot::Loading,
                _ => continue,
            }
            drop(st);
            let loaded = repo.load_tree(&id);
            st = self.lock();
            // Forgotten while loading: the result is not wanted.
            if let Some(slot @ Slot::Loading) = st.slots.get_mut(&id) {
                let nodes = loaded.as_ref().map_or(0, |t| t.nodes.len());
                *slot = Slot::Ready(loaded);
                st.ready_nodes += nodes;
                self.changed.notify_all();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> Id {
        Id([n; 32])
    }

    #[test]
    fn requests_are_served_newest_first_and_bounded() {
        let trees = ParentTrees::default();
        trees.request(&[id(1), id(2)]);
        trees.request(&[id(3), id(4), id(3)]);
        let st = trees.lock();
        // The first id of the newest request is on top.
        assert_eq!(st.stack, vec![id(2), id(1), id(4), id(3)]);
        drop(st);
        let many: Vec<Id> = (0..=255u8).map(id).collect();
        trees.request(&many);
        assert_eq!(trees.lock().slots.len(), MAX_REQUESTS);
        trees.forget(&many);
        assert!(trees.lock().slots.is_empty());
    }
}
