//! `ibl verify`: the store checked against the audit log's evidence (see
//! [`crate::audit_log`]).
//!
//! 1. Every signed checkpoint kept in the evidence file must carry a valid
//!    signature by the log's key, and its root must be the root of the
//!    evidence's leaves at its size: the leaves up to the latest checkpoint
//!    are then what was signed, whoever could write the file since.
//! 2. The log is read from the start, each event's leaf recomputed, and
//!    compared with the recorded leaf at the same index. The first
//!    difference is named by the position, stream and revision of the
//!    event concerned: an event altered (same place, other bytes),
//!    reordered (its place holds another stream's or revision's event),
//!    deleted (the recorded event is gone), inserted (an event the record
//!    never saw), or the log truncated (recorded events missing at its end).
//!
//! Events past the recorded leaves (not yet read by the projector) cannot
//! be checked; the report counts them, and the recorded leaves past the
//! latest checkpoint (not yet signed).

use std::fmt;

use ibl_audit::{CompactTree, Hash, LeafSource, Verifier};
use ibl_events::{EventStore, Position, RecordedEvent, StoreError};

use crate::audit_log::{leaf_of, Evidence, Leaf};

/// What a verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Events read from the store.
    pub events: u64,
    /// Signed checkpoints checked.
    pub checkpoints: usize,
    /// The size of the latest signed checkpoint (0: none).
    pub signed: u64,
    /// Leaves recorded in the evidence.
    pub recorded: u64,
    /// The root of the tree over the whole log as it is now.
    pub root: ibl_audit::Hash,
    /// The first problem, if any.
    pub problem: Option<Problem>,
}

/// The first difference between the log and its evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A checkpoint whose signature or root does not hold.
    Checkpoint { size: u64, why: String },
    /// The event at this place is not the one recorded.
    Altered { leaf_index: u64, event: Coordinates },
    /// This place holds another event than the one recorded.
    Reordered {
        leaf_index: u64,
        found: Coordinates,
        recorded: Coordinates,
    },
    /// The recorded event is gone from the log.
    Deleted {
        leaf_index: u64,
        recorded: Coordinates,
    },
    /// An event the record never saw, before recorded ones.
    Inserted { leaf_index: u64, found: Coordinates },
    /// The log ends before the record does: `missing` recorded events,
    /// from this one.
    Truncated {
        leaf_index: u64,
        recorded: Coordinates,
        missing: u64,
    },
}

/// Where an event is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coordinates {
    pub position: Position,
    pub stream: String,
    pub revision: u64,
}

impl Problem {
    /// What kind of problem it is: `checkpoint`, `altered`, `reordered`,
    /// `deleted`, `inserted` or `truncated`.
    pub fn kind(&self) -> &'static str {
        match self {
            Problem::Checkpoint { .. } => "checkpoint",
            Problem::Altered { .. } => "altered",
            Problem::Reordered { .. } => "reordered",
            Problem::Deleted { .. } => "deleted",
            Problem::Inserted { .. } => "inserted",
            Problem::Truncated { .. } => "truncated",
        }
    }

    /// The leaf it concerns and the position of the event recorded there
    /// (of the event found, for one the record never saw); none for a
    /// checkpoint.
    pub fn place(&self) -> Option<(u64, Position)> {
        match self {
            Problem::Checkpoint { .. } => None,
            Problem::Altered { leaf_index, event } => Some((*leaf_index, event.position)),
            Problem::Reordered {
                leaf_index,
                recorded,
                ..
            }
            | Problem::Deleted {
                leaf_index,
                recorded,
            }
            | Problem::Truncated {
                leaf_index,
                recorded,
                ..
            } => Some((*leaf_index, recorded.position)),
            Problem::Inserted { leaf_index, found } => Some((*leaf_index, found.position)),
        }
    }
}

impl fmt::Display for Coordinates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "position {} (stream {}, revision {})",
            self.position, self.stream, self.revision
        )
    }
}

impl From<&RecordedEvent> for Coordinates {
    fn from(e: &RecordedEvent) -> Self {
        Self {
            position: e.position,
            stream: e.stream.clone(),
            revision: e.revision,
        }
    }
}

impl From<&Leaf> for Coordinates {
    fn from(l: &Leaf) -> Self {
        Self {
            position: l.position,
            stream: l.stream.clone(),
            revision: l.revision,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Checkpoint { size, why } => write!(f, "the checkpoint of size {size}: {why}"),
            Problem::Altered { leaf_index, event } => write!(
                f,
                "altered: the event at {event} (leaf {leaf_index}) is not the one recorded"
            ),
            Problem::Reordered {
                leaf_index,
                found,
                recorded,
            } => write!(
                f,
                "reordered: leaf {leaf_index} holds the event at {found}, where the record has {recorded}"
            ),
            Problem::Deleted {
                leaf_index,
                recorded,
            } => write!(
                f,
                "deleted: the event at {recorded} (leaf {leaf_index}) is missing from the log"
            ),
            Problem::Inserted { leaf_index, found } => write!(
                f,
                "inserted: the event at {found} was never recorded (it comes where leaf {leaf_index} was)"
            ),
            Problem::Truncated {
                leaf_index,
                recorded,
                missing,
            } => write!(
                f,
                "truncated: the log ends before the event at {recorded} (leaf {leaf_index}); {missing} recorded events are missing"
            ),
        }
    }
}

/// The first of `leaves` (recorded, each with its index, by position) that
/// the store's events at their positions (`found`, ascending) do not match:
/// the event gone, another in its place, or other bytes. The check of one
/// platform's events (the audit routes' `verify/`).
pub fn compare_recorded(leaves: &[(u64, Leaf)], found: &[RecordedEvent]) -> Option<Problem> {
    leaves.iter().find_map(|(index, leaf)| {
        let leaf_index = *index;
        let Ok(at) = found.binary_search_by_key(&leaf.position, |e| e.position) else {
            return Some(Problem::Deleted {
                leaf_index,
                recorded: leaf.into(),
            });
        };
        let event = &found[at];
        if event.stream != leaf.stream || event.revision != leaf.revision {
            Some(Problem::Reordered {
                leaf_index,
                found: event.into(),
                recorded: leaf.into(),
            })
        } else if leaf_of(event) != leaf.hash {
            Some(Problem::Altered {
                leaf_index,
                event: event.into(),
            })
        } else {
            None
        }
    })
}

/// Checks the evidence's checkpoints with `verifier`, then the log of
/// `store` against the evidence's leaves. A store that cannot be read is
/// an error, not a finding.
pub async fn verify(
    store: &dyn EventStore,
    evidence: &Evidence,
    verifier: &Verifier,
) -> Result<Report, StoreError> {
    let mut recorded = CompactTree::new();
    for leaf in &evidence.leaves {
        recorded.append(leaf.hash);
    }
    let mut problem = check_checkpoints(evidence, &recorded, verifier);
    let mut rebuilt = CompactTree::new();
    let mut after = 0;
    loop {
        let batch = store.read_all(after, 1024).await?;
        let Some(last) = batch.last() else { break };
        after = last.position;
        for event in &batch {
            let leaf = leaf_of(event);
            let index = rebuilt.append(leaf);
            if problem.is_none() {
                problem = compare(index, event, leaf, &evidence.leaves);
            }
        }
    }
    if problem.is_none() && rebuilt.len() < evidence.leaves.len() as u64 {
        let index = rebuilt.len();
        problem = Some(Problem::Truncated {
            leaf_index: index,
            recorded: (&evidence.leaves[index as usize]).into(),
            missing: evidence.leaves.len() as u64 - index,
        });
    }
    Ok(Report {
        events: rebuilt.len(),
        checkpoints: evidence.checkpoints.len(),
        signed: evidence.checkpoints.last().map_or(0, |c| c.size),
        recorded: evidence.leaves.len() as u64,
        root: rebuilt.root(),
        problem,
    })
}

/// The evidence's leaves, in memory, as the tree of the recorded leaves
/// reads them.
struct Recorded<'a>(&'a [Leaf]);

impl LeafSource for Recorded<'_> {
    fn leaf_hashes(&self, start: u64, end: u64) -> Result<Vec<Hash>, String> {
        let range = usize::try_from(start).ok().zip(usize::try_from(end).ok());
        range
            .and_then(|(from, to)| self.0.get(from..to))
            .map(|leaves| leaves.iter().map(|l| l.hash).collect())
            .ok_or_else(|| format!("no recorded leaves [{start}, {end})"))
    }
}

fn check_checkpoints(
    evidence: &Evidence,
    recorded: &CompactTree,
    verifier: &Verifier,
) -> Option<Problem> {
    for c in &evidence.checkpoints {
        let fail = |why: String| Some(Problem::Checkpoint { size: c.size, why });
        let signed = match verifier.verify(&c.note) {
            Ok(signed) => signed,
            Err(e) => return fail(format!("not signed by {}: {e}", verifier.vkey())),
        };
        if signed.size != c.size || signed.root != c.root {
            return fail("its note signs another size or root than the one kept beside it".into());
        }
        match recorded.root_at(c.size, &Recorded(&evidence.leaves)) {
            Ok(root) if root == c.root => {}
            Ok(_) => return fail(
                "the recorded leaves do not hash to its signed root: the evidence file was altered"
                    .into(),
            ),
            Err(_) => {
                return fail(format!(
                    "it signs more leaves than the {} recorded: the evidence file was truncated",
                    recorded.len()
                ))
            }
        }
    }
    None
}

/// The problem with event `index` of the log (whose leaf is `leaf`), if it
/// is not the recorded one.
fn compare(index: u64, event: &RecordedEvent, leaf: Hash, leaves: &[Leaf]) -> Option<Problem> {
    let recorded = leaves.get(index as usize)?;
    if event.position == recorded.position && leaf == recorded.hash {
        return None;
    }
    Some(if event.position > recorded.position {
        Problem::Deleted {
            leaf_index: index,
            recorded: recorded.into(),
        }
    } else if event.position < recorded.position {
        Problem::Inserted {
            leaf_index: index,
            found: event.into(),
        }
    } else if event.stream != recorded.stream || event.revision != recorded.revision {
        Problem::Reordered {
            leaf_index: index,
            found: event.into(),
            recorded: recorded.into(),
        }
    } else {
        Problem::Altered {
            leaf_index: index,
            event: event.into(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit_log::SignedCheckpoint;
    use ibl_audit::{leaf_hash, Checkpoint, Signer, Tree};

    /// Evidence of `n` leaves with checkpoints signed at `sizes`, whose
    /// roots are those of the full tree.
    fn evidence(n: u64, sizes: &[u64], signer: &Signer) -> Evidence {
        let leaves: Vec<Leaf> = (0..n)
            .map(|i| Leaf {
                position: i + 1,
                stream: format!("s-{i}"),
                revision: 0,
                hash: leaf_hash(&i.to_be_bytes()),
            })
            .collect();
        let full = Tree::from_leaf_hashes(leaves.iter().map(|l| l.hash));
        let checkpoints = sizes
            .iter()
            .map(|&size| {
                let root = full.root_at(size).expect("a root");
                let note = signer
                    .sign(&Checkpoint::new(signer.name(), size, root))
                    .expect("signs");
                SignedCheckpoint { size, root, note }
            })
            .collect();
        Evidence {
            leaves,
            checkpoints,
        }
    }

    fn checked(evidence: &Evidence, verifier: &Verifier) -> Option<Problem> {
        let mut recorded = CompactTree::new();
        for leaf in &evidence.leaves {
            recorded.append(leaf.hash);
        }
        check_checkpoints(evidence, &recorded, verifier)
    }

    #[test]
    fn checkpoints_inside_whole_blocks_are_checked_against_the_recorded_leaves() {
        let signer = Signer::from_seed([3; 32], "test.example/verify").expect("a signer");
        let verifier = signer.verifier();
        let mut kept = evidence(1000, &[1, 255, 256, 300, 700, 1000], &signer);
        assert_eq!(checked(&kept, &verifier), None);
        // A leaf of the block that holds the checkpoint of 300 altered:
        // that checkpoint is the first whose root no longer holds.
        kept.leaves[280].hash[0] ^= 1;
        match checked(&kept, &verifier) {
            Some(Problem::Checkpoint { size, why }) => {
                assert_eq!(size, 300);
                assert!(why.contains("altered"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        // Truncated below a signed size.
        let mut short = evidence(1000, &[700], &signer);
        short.leaves.truncate(600);
        assert!(matches!(
            checked(&short, &verifier),
            Some(Problem::Checkpoint { size: 700, .. })
        ));
    }
}
