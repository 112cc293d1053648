//! Integer ids handed out without a stream that every create appends to:
//! the process takes a block of [`BLOCK`] ids from the kind's id stream
//! (`ids-{kind}`) with one append and hands them out locally. Ids stay
//! unique across processes (each block is taken at an expected revision)
//! and below 2^53, and are never reused; they need not be dense (a block a
//! process did not use up is left unused when it stops), nor in creation
//! order across processes.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use ibl_edge::ApiError;
use ibl_events::EventStore;

use crate::handler::CommandContext;
use crate::platforms::allocate_ids;

/// Ids taken from the id stream at once.
pub const BLOCK: u64 = 256;

/// The blocks of ids this process holds, per kind.
#[derive(Default)]
pub struct IdBlocks {
    free: Mutex<HashMap<String, Vec<Range<u64>>>>,
    /// One refill at a time per kind: tasks that find no id wait for it
    /// instead of each taking a block (and conflicting on the id stream).
    refills: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl IdBlocks {
    fn pop(&self, kind: &str) -> Option<u64> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        let ranges = free.get_mut(kind)?;
        while let Some(range) = ranges.last_mut() {
            if let Some(id) = range.next() {
                return Some(id);
            }
            ranges.pop();
        }
        None
    }

    fn refill_lock(&self, kind: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut refills = self.refills.lock().unwrap_or_else(|p| p.into_inner());
        refills.entry(kind.to_owned()).or_default().clone()
    }

    /// The next id of `kind` (`role`, `group`, `policy`, `user`): from a
    /// block this process holds, or from a new block taken with one append.
    pub async fn next(
        &self,
        store: &Arc<dyn EventStore>,
        ctx: &CommandContext,
        kind: &str,
    ) -> Result<u64, ApiError> {
        if let Some(id) = self.pop(kind) {
            return Ok(id);
        }
        let lock = self.refill_lock(kind);
        let _refilling = lock.lock().await;
        if let Some(id) = self.pop(kind) {
            return Ok(id);
        }
        // Event ids of the block's append are random: the block belongs to
        // the process, not to the request (a retried request takes an id
        // again, from the block).
        let ctx = CommandContext {
            idempotency: None,
            ..ctx.clone()
        };
        let first = allocate_ids(store, &ctx, kind, BLOCK).await?;
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        free.entry(kind.to_owned())
            .or_default()
            .push(first + 1..first + BLOCK);
        Ok(first)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use ibl_events::memory::MemoryStore;

    use super::*;

    #[tokio::test]
    async fn two_processes_hand_out_distinct_ids_with_one_append_per_block() {
        let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
        let (a, b) = (IdBlocks::default(), IdBlocks::default());
        let ctx = CommandContext::default();
        let mut seen = HashSet::new();
        for _ in 0..(BLOCK + 10) {
            for blocks in [&a, &b] {
                let id = blocks.next(&store, &ctx, "role").await.expect("an id");
                assert!(seen.insert(id), "{id} handed out twice");
            }
        }
        // Each process took two blocks: four appends for 2 * (BLOCK + 10) ids.
        assert_eq!(*store.head().borrow(), 4);
        // Another kind has ids of its own.
        assert_eq!(a.next(&store, &ctx, "group").await.expect("an id"), 1);
    }

    #[tokio::test]
    async fn racing_tasks_never_share_an_id() {
        let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
        let blocks = Arc::new(IdBlocks::default());
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let (store, blocks) = (store.clone(), blocks.clone());
                tokio::spawn(async move {
                    let ctx = CommandContext::default();
                    let mut ids = Vec::new();
                    for _ in 0..100 {
                        ids.push(blocks.next(&store, &ctx, "policy").await.expect("an id"));
                    }
                    ids
                })
            })
            .collect();
        let mut all = HashSet::new();
        for task in tasks {
            for id in task.await.expect("the task ends") {
                assert!(all.insert(id), "{id} handed out twice");
            }
        }
        assert_eq!(all.len(), 1600);
        // 1,600 ids are 7 blocks: racing tasks waited for one refill each
        // time instead of each taking a block.
        assert_eq!(*store.head().borrow(), 7);
    }
}
