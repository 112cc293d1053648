//! Allocating integer ids (stream `ids-{kind}`): each allocation takes the
//! next `count` ids after the highest taken, below 2^53.

use chrono::{DateTime, Utc};
use ibl_events::ids::IdEvent;
use ibl_events::rbac::MAX_ID;

use super::{Aggregate, Rejection, RejectionKind};

pub struct IdsAggregate;

/// The highest id taken so far (0: none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IdsState {
    pub highest: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocate {
    pub count: u64,
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdsError {
    #[error("no ids left below 2^53")]
    Exhausted,
}

impl Rejection for IdsError {
    fn kind(&self) -> RejectionKind {
        RejectionKind::Conflict
    }
}

impl Aggregate for IdsAggregate {
    type State = IdsState;
    type Command = Allocate;
    type Event = IdEvent;
    type Error = IdsError;

    fn decide(state: &IdsState, cmd: Allocate) -> Result<Vec<IdEvent>, IdsError> {
        if cmd.count == 0 {
            return Ok(Vec::new());
        }
        let first = state.highest + 1;
        let last = state
            .highest
            .checked_add(cmd.count)
            .ok_or(IdsError::Exhausted)?;
        if last > MAX_ID {
            return Err(IdsError::Exhausted);
        }
        Ok(vec![IdEvent::IdsAllocated {
            first,
            count: cmd.count,
            allocated_at: cmd.now,
        }])
    }

    fn evolve(state: IdsState, event: &IdEvent) -> IdsState {
        match event {
            IdEvent::IdsAllocated { first, count, .. } => IdsState {
                highest: state.highest.max(first + count - 1),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::testing::{given, t};

    #[test]
    fn ids_follow_the_highest_taken() {
        given::<IdsAggregate>(&[IdEvent::IdsAllocated {
            first: 1,
            count: 5,
            allocated_at: t(0),
        }])
        .when(Allocate {
            count: 2,
            now: t(1),
        })
        .then(&[IdEvent::IdsAllocated {
            first: 6,
            count: 2,
            allocated_at: t(1),
        }]);
    }

    #[test]
    fn ids_stop_below_two_to_the_53() {
        given::<IdsAggregate>(&[IdEvent::IdsAllocated {
            first: 1,
            count: MAX_ID - 1,
            allocated_at: t(0),
        }])
        .when(Allocate {
            count: 2,
            now: t(1),
        })
        .then_err(RejectionKind::Conflict);
    }
}
