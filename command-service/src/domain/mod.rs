//! Pure aggregates: `decide(state, command) -> events`, `evolve(state, event) -> state`.
