//! Reservations (stream `reservation-{kind}-{uuid}`): a name that at most
//! one entity of a platform holds at a time, such as a group's `unique_id`
//! or the access policy of one mentor and role. Appending to one stream at
//! an expected revision is the only atomic step an event store offers, so
//! uniqueness across entities (and across processes) is a stream of its own.
//!
//! Whether the holder still holds the name (the group still has that
//! `unique_id`, the policy is not deleted) is a fact of another stream: the
//! caller reads it and names the holder it found gone in `vacated`. If the
//! holder changed meanwhile, the command is rejected and judged again.

use chrono::{DateTime, Utc};
use ibl_events::ids::ReservationEvent;

use super::{Aggregate, Rejection, RejectionKind};

pub struct ReservationAggregate;

/// Who holds the name, and since when; `None` if nobody ever did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReservationState {
    pub holder: Option<(u64, DateTime<Utc>)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reserve {
    pub platform: String,
    pub name: String,
    pub claimant: u64,
    /// The holder the caller found no longer holding the name.
    pub vacated: Option<u64>,
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReservationError {
    #[error("{name:?} is held by {holder}")]
    Held { name: String, holder: u64 },
}

impl Rejection for ReservationError {
    fn kind(&self) -> RejectionKind {
        RejectionKind::Conflict
    }
}

impl Aggregate for ReservationAggregate {
    type State = ReservationState;
    type Command = Reserve;
    type Event = ReservationEvent;
    type Error = ReservationError;

    fn decide(
        state: &ReservationState,
        cmd: Reserve,
    ) -> Result<Vec<ReservationEvent>, ReservationError> {
        match state.holder {
            Some((holder, _)) if holder == cmd.claimant => Ok(Vec::new()),
            Some((holder, _)) if Some(holder) != cmd.vacated => Err(ReservationError::Held {
                name: cmd.name,
                holder,
            }),
            _ => Ok(vec![ReservationEvent::Reserved {
                platform: cmd.platform,
                name: cmd.name,
                holder: cmd.claimant,
                reserved_at: cmd.now,
            }]),
        }
    }

    fn evolve(_: ReservationState, event: &ReservationEvent) -> ReservationState {
        match event {
            ReservationEvent::Reserved {
                holder,
                reserved_at,
                ..
            } => ReservationState {
                holder: Some((*holder, *reserved_at)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testing::{given, t};

    fn reserved(holder: u64, at: i64) -> ReservationEvent {
        ReservationEvent::Reserved {
            platform: "acme".into(),
            name: "ops".into(),
            holder,
            reserved_at: t(at),
        }
    }

    fn reserve(claimant: u64, vacated: Option<u64>, at: i64) -> Reserve {
        Reserve {
            platform: "acme".into(),
            name: "ops".into(),
            claimant,
            vacated,
            now: t(at),
        }
    }

    #[test]
    fn a_free_name_is_reserved() {
        let state = given::<ReservationAggregate>(&[])
            .when(reserve(7, None, 1))
            .then(&[reserved(7, 1)]);
        assert_eq!(state.holder, Some((7, t(1))));
    }

    #[test]
    fn a_held_name_is_refused_to_others() {
        given::<ReservationAggregate>(&[reserved(7, 1)])
            .when(reserve(8, None, 2))
            .then_err(RejectionKind::Conflict);
    }

    #[test]
    fn the_holder_reserving_again_changes_nothing() {
        given::<ReservationAggregate>(&[reserved(7, 1)])
            .when(reserve(7, None, 2))
            .then(&[]);
    }

    #[test]
    fn a_name_whose_holder_is_gone_passes_on() {
        given::<ReservationAggregate>(&[reserved(7, 1)])
            .when(reserve(8, Some(7), 2))
            .then(&[reserved(8, 2)]);
    }

    #[test]
    fn vacating_someone_else_than_the_holder_is_refused() {
        // The caller judged holder 7, but 9 took the name meanwhile.
        given::<ReservationAggregate>(&[reserved(7, 1), reserved(9, 2)])
            .when(reserve(8, Some(7), 3))
            .then_err(RejectionKind::Conflict);
    }
}
