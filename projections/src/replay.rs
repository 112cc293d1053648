//! Replays: every read model rebuilt from position 0 beside the live one,
//! and the two compared by digest (`ibl replay`).
//!
//! A digest is the SHA-256 of a canonical rendering of what a model answers:
//! its views in list order, its indexes' entries sorted, and never the
//! positions it was built at. Positions belong to one store: a move to
//! another (a platform's export imported into an empty store, or
//! EventStoreDB, whose positions are byte offsets) changes every one of
//! them while the answers stay the same, and their digests with them.

use std::sync::Arc;

use ibl_events::{EventStore, Position};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::{Applied, ReadModel};

/// A read model whose content can be digested.
pub trait Digest: ReadModel {
    /// The digest of what the model holds now, of every platform or of
    /// one (its writes in flight are completed first). May block.
    fn digest(&self, platform: Option<&str>) -> Result<String, String>;
}

/// The hex SHA-256 of `value`'s RFC 8785 (JCS) serialization.
pub fn of_json(value: &impl Serialize) -> Result<String, String> {
    let value = serde_json::to_value(value).map_err(|e| e.to_string())?;
    let bytes = ibl_audit::to_jcs(&value).map_err(|e| e.to_string())?;
    Ok(hex::encode(Sha256::digest(bytes)))
}

/// A digest built a row at a time: each row's JSON on a line of its own,
/// each section named (rows of two sections never run together).
pub(crate) struct Rows(Sha256);

impl Rows {
    pub(crate) fn new() -> Self {
        Self(Sha256::new())
    }

    pub(crate) fn section(&mut self, name: &str) {
        self.0.update(b"#");
        self.0.update(name.as_bytes());
        self.0.update(b"\n");
    }

    pub(crate) fn row(&mut self, row: &impl Serialize) -> Result<(), String> {
        let bytes = serde_json::to_vec(row).map_err(|e| e.to_string())?;
        self.0.update(&bytes);
        self.0.update(b"\n");
        Ok(())
    }

    pub(crate) fn finish(self) -> String {
        hex::encode(self.0.finalize())
    }
}

/// A live model's digest at the position it covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Live {
    pub model: &'static str,
    pub position: Position,
    pub digest: String,
}

/// A live model against its replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Compared {
    pub model: &'static str,
    pub position: Position,
    pub live: String,
    pub replayed: String,
}

impl Compared {
    pub fn same(&self) -> bool {
        self.live == self.replayed
    }
}

/// Feeds each of `fresh` (empty models) the log from position 0 up to the
/// position of the live model of its name, and compares their digests (of
/// `platform`'s part alone, when one is named: `live` is of that part too). A
/// live model without a fresh one of its name is not compared. The models
/// block as they apply: this runs in a command line of its own.
pub async fn replay(
    store: &dyn EventStore,
    live: &[Live],
    fresh: &[Arc<dyn Digest>],
    platform: Option<&str>,
) -> Result<Vec<Compared>, String> {
    const BATCH: usize = 2048;
    let pairs: Vec<(&Live, &Arc<dyn Digest>)> = live
        .iter()
        .filter_map(|l| fresh.iter().find(|f| f.name() == l.model).map(|f| (l, f)))
        .collect();
    let end = pairs.iter().map(|(l, _)| l.position).max().unwrap_or(0);
    let mut after = 0;
    while after < end {
        let batch = store
            .read_all(after, BATCH)
            .await
            .map_err(|e| format!("reading the log after {after}: {e}"))?;
        let Some(last) = batch.last() else {
            return Err(format!(
                "the log ends at position {after}, before {end}, a position a live model covers"
            ));
        };
        after = last.position;
        for (live, model) in &pairs {
            let upto = batch.partition_point(|e| e.position <= live.position);
            if upto == 0 {
                continue;
            }
            let applied = model.apply(&batch[..upto]);
            if applied == Applied::Rewound {
                return Err(format!("the replay's {} lost what it held", model.name()));
            }
        }
    }
    let mut out = Vec::with_capacity(pairs.len());
    for (live, model) in pairs {
        if model.settle() == Applied::Rewound {
            return Err(format!("the replay's {} lost what it held", model.name()));
        }
        let replayed = model.digest(platform)?;
        out.push(Compared {
            model: live.model,
            position: live.position,
            live: live.digest.clone(),
            replayed,
        });
    }
    Ok(out)
}
