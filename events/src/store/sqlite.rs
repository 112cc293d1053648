//! SQLite adapter (embedded, durable, group commit).
