//! Which streams of `$all` are this store's.

use ibl_events::StoreError;
use kurrentdb::SubscriptionFilter;

/// The streams of the server's `$all` that make this store's global log:
/// [`read_all`](ibl_events::EventStore::read_all) and the head see only
/// their events, filtered by the server.
///
/// The same filter decides, on this side, whether an append of this process
/// moves the head: the head must never name a position that `read_all`
/// would not hand out, or a [`Subscription`](ibl_events::Subscription)
/// would wait for an event it can never read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StreamFilter {
    /// Every stream whose name does not start with `$` (the server's own
    /// streams: `$all`'s system events, projections' `$ce-…` and `$et-…`,
    /// stream metadata `$$…`, persistent subscription checkpoints, …).
    #[default]
    NonSystem,
    /// The streams whose name starts with one of these prefixes (for a
    /// server shared with other applications), e.g. `credential-`,
    /// `assertion-`, `platform-`.
    Prefixes(Vec<String>),
}

impl StreamFilter {
    /// A filter on these stream name prefixes.
    pub fn prefixes<I, S>(prefixes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        StreamFilter::Prefixes(prefixes.into_iter().map(Into::into).collect())
    }

    /// Refuses a filter that would keep nothing (or everything by mistake).
    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        match self {
            StreamFilter::NonSystem => Ok(()),
            StreamFilter::Prefixes(prefixes) if prefixes.is_empty() => Err(StoreError::Invalid(
                "a stream filter needs at least one prefix".into(),
            )),
            StreamFilter::Prefixes(prefixes) if prefixes.iter().any(String::is_empty) => Err(
                StoreError::Invalid("an empty stream prefix would keep every stream".into()),
            ),
            StreamFilter::Prefixes(_) => Ok(()),
        }
    }

    /// True when the events of `stream` are in this store's global log.
    pub fn matches(&self, stream: &str) -> bool {
        match self {
            StreamFilter::NonSystem => !stream.starts_with('$'),
            StreamFilter::Prefixes(prefixes) => prefixes.iter().any(|p| stream.starts_with(p)),
        }
    }

    /// The same filter, for the server.
    pub(crate) fn to_server(&self) -> SubscriptionFilter {
        let filter = SubscriptionFilter::on_stream_name();
        match self {
            // A regular expression (.NET syntax) on the stream name: the
            // first character is anything but `$`.
            StreamFilter::NonSystem => filter.regex(NON_SYSTEM_REGEX),
            StreamFilter::Prefixes(prefixes) => prefixes
                .iter()
                .fold(filter, |filter, prefix| filter.add_prefix(prefix)),
        }
    }
}

/// The server-side form of [`StreamFilter::NonSystem`].
pub(crate) const NON_SYSTEM_REGEX: &str = r"^[^\$]";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_keeps_every_stream_but_the_servers_own() {
        let filter = StreamFilter::default();
        assert!(filter.matches("credential-1"));
        assert!(filter.matches("a$b"));
        assert!(!filter.matches("$ce-credential"));
        assert!(!filter.matches("$$credential-1"));
        assert!(filter.validate().is_ok());
    }

    #[test]
    fn prefixes_keep_only_their_streams() {
        let filter = StreamFilter::prefixes(["credential-", "assertion-"]);
        assert!(filter.matches("credential-1"));
        assert!(filter.matches("assertion-2"));
        assert!(!filter.matches("platform-3"));
        assert!(!filter.matches("$ce-credential"));
        assert!(filter.validate().is_ok());
    }

    #[test]
    fn a_filter_that_keeps_nothing_or_everything_is_refused() {
        assert!(matches!(
            StreamFilter::Prefixes(Vec::new()).validate(),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            StreamFilter::prefixes(["credential-", ""]).validate(),
            Err(StoreError::Invalid(_))
        ));
    }

    #[test]
    fn the_server_gets_the_same_filter() {
        // The client keeps the filter's fields to itself: its debug form
        // shows them.
        let regex = format!("{:?}", StreamFilter::NonSystem.to_server());
        assert!(regex.contains("based_on_stream: true"), "{regex}");
        assert!(regex.contains(r#"regex: Some("^[^\\$]")"#), "{regex}");
        let prefixes = format!("{:?}", StreamFilter::prefixes(["a-", "b-"]).to_server());
        assert!(prefixes.contains("based_on_stream: true"), "{prefixes}");
        assert!(prefixes.contains(r#"prefixes: ["a-", "b-"]"#), "{prefixes}");
        assert!(prefixes.contains("regex: None"), "{prefixes}");
    }
}
