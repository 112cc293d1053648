//! Checks every adapter applies the same way (public for the adapters that
//! live in crates of their own, such as `ibl-events-kurrentdb`).

use super::{EventData, ExpectedRevision, StoreError};

/// Checks an append request for problems that do not depend on the store.
pub fn validate_append(stream: &str, events: &[EventData]) -> Result<(), StoreError> {
    if stream.is_empty() {
        return Err(StoreError::Invalid("empty stream name".into()));
    }
    if events.is_empty() {
        return Err(StoreError::Invalid(format!(
            "append to {stream} without events"
        )));
    }
    for (i, event) in events.iter().enumerate() {
        if events[..i].iter().any(|e| e.event_id == event.event_id) {
            return Err(StoreError::Invalid(format!(
                "event id {} appears twice in one append to {stream}",
                event.event_id
            )));
        }
    }
    Ok(())
}

/// Checks the stream's last revision against the expectation.
pub fn check_expected(
    stream: &str,
    expected: ExpectedRevision,
    actual: Option<u64>,
) -> Result<(), StoreError> {
    let ok = match expected {
        ExpectedRevision::Any => true,
        ExpectedRevision::NoStream => actual.is_none(),
        ExpectedRevision::Exact(revision) => actual == Some(revision),
    };
    if ok {
        Ok(())
    } else {
        Err(StoreError::Conflict {
            stream: stream.to_owned(),
            expected,
            actual,
        })
    }
}
