//! Given/when/then tests for aggregates: no I/O, microseconds each.
//!
//! ```ignore
//! given::<CredentialAggregate>(&[created()])
//!     .when(CredentialCommand::Delete { now })
//!     .then(&[CredentialEvent::CredentialDeleted { deleted_at: now }]);
//! ```

use std::fmt::Debug;

use super::{Aggregate, RejectionKind};

/// The events already in the stream.
pub fn given<A: Aggregate>(events: &[A::Event]) -> Given<A> {
    Given {
        state: A::fold(events),
    }
}

pub struct Given<A: Aggregate> {
    state: A::State,
}

impl<A: Aggregate> Given<A> {
    /// The command under test.
    pub fn when(self, cmd: A::Command) -> Then<A> {
        let result = A::decide(&self.state, cmd);
        Then {
            state: self.state,
            result,
        }
    }
}

pub struct Then<A: Aggregate> {
    state: A::State,
    result: Result<Vec<A::Event>, A::Error>,
}

impl<A: Aggregate> Then<A>
where
    A::Event: Debug + PartialEq,
    A::Error: Debug,
{
    /// Expects exactly these events; returns the state after them.
    #[track_caller]
    pub fn then(self, expected: &[A::Event]) -> A::State {
        let (state, events) = self.accepted();
        assert_eq!(events, expected, "events decided");
        state
    }

    /// Expects the command to be accepted; returns the state and the events.
    #[track_caller]
    pub fn accepted(self) -> (A::State, Vec<A::Event>) {
        match self.result {
            Ok(events) => {
                for event in &events {
                    let json = serde_json::to_value(event).expect("event serializes");
                    let back: A::Event =
                        serde_json::from_value(json.clone()).expect("event deserializes");
                    assert_eq!(&back, event, "event survives a serde round trip: {json}");
                }
                let state = events.iter().fold(self.state, A::evolve);
                (state, events)
            }
            Err(e) => panic!("expected events, command was rejected: {e:?}"),
        }
    }

    /// Expects a rejection of this kind; returns it for further checks.
    #[track_caller]
    pub fn then_err(self, kind: RejectionKind) -> A::Error {
        match self.result {
            Ok(events) => panic!("expected a {kind:?} rejection, got events {events:?}"),
            Err(e) => {
                assert_eq!(super::Rejection::kind(&e), kind, "rejection kind of {e:?}");
                e
            }
        }
    }

    /// Expects an `Invalid` rejection naming this field.
    #[track_caller]
    pub fn then_invalid(self, field: &str) -> A::Error {
        let e = self.then_err(RejectionKind::Invalid);
        assert_eq!(super::Rejection::field(&e), Some(field), "field of {e:?}");
        e
    }
}

/// A fixed instant for tests: `2024-01-01T00:00:00Z` plus `secs`.
pub fn t(secs: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(1_704_067_200 + secs, 0).expect("valid timestamp")
}
