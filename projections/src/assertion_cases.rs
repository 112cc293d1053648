//! The behaviour every adapter of the assertions read model shares. Each
//! case takes fresh models (empty, at position 0); the tests of each adapter
//! (`assertions::tests`, `redis_assertions::tests`) run every case.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use ibl_events::credentials::{AssertionEvent, CredentialEvent, Recipient};
use ibl_events::{Actor, IdempotencyTag, Metadata};

use crate::assertions::{AssertionFilter, AssertionQueries, AssertionView};
use crate::credentials::Page;
use crate::testing::{at, credential, filter, issued, sample, Log};
use crate::ReadModel;

/// An adapter of the assertions read model.
pub(crate) trait Model: AssertionQueries + ReadModel {}
impl<T: AssertionQueries + ReadModel> Model for T {}

/// The sample, then a bulk issue of `n` (ids `b0`...) under key `bulk`.
pub(crate) fn with_bulk(n: usize) -> Log {
    let mut log = sample();
    for i in 0..n {
        let id = format!("b{i}");
        log.push(
            &format!("assertion-{id}"),
            issued(&id, "c1", "x@example.com", None),
            Some("bulk"),
        );
    }
    log
}

/// An issue in any platform, to a recipient with an email and a username.
pub(crate) fn issue(
    platform: &str,
    id: &str,
    credential: &str,
    (email, username): (&str, &str),
    expires: Option<DateTime<Utc>>,
) -> AssertionEvent {
    AssertionEvent::AssertionIssued {
        platform: platform.into(),
        entity_id: id.into(),
        credential_id: credential.into(),
        issuer_id: None,
        recipient: Recipient {
            email: email.into(),
            username: username.into(),
            ..Recipient::default()
        },
        issued_on: at(0),
        expires,
        narrative: format!("narrative of {id}"),
        metadata: serde_json::json!({"n": id, "list": [], "map": {}}),
        evidence: Vec::new(),
    }
}

fn revoked(reason: &str, secs: i64) -> AssertionEvent {
    AssertionEvent::AssertionRevoked {
        reason: reason.into(),
        revoked_at: at(secs),
    }
}

fn by(platform: &str, key: Option<&str>) -> Metadata {
    Metadata {
        actor: Actor {
            platform: Some(platform.into()),
            ..Actor::default()
        },
        idempotency: key.map(|k| IdempotencyTag {
            key: k.into(),
            request_hash: format!("hash of {k}"),
        }),
        ..Metadata::default()
    }
}

/// `with_bulk(4)`, a revocation, credentials changing course, expiries,
/// usernames and a second platform: every kind of change.
pub(crate) fn rich() -> Log {
    let mut log = with_bulk(4);
    log.push("assertion-b1", revoked("r", 4), None);
    log.push(
        "credential-c4",
        CredentialEvent::CredentialCreated {
            platform: "acme".into(),
            entity_id: "c4".into(),
            fields: credential("C4", "", Some("course-2")),
            created_at: at(1),
        },
        Some("key-c4"),
    );
    log.push(
        "assertion-e1",
        issue("acme", "e1", "c4", ("", "user-1"), Some(at(8))),
        Some("key-e"),
    );
    log.push(
        "assertion-e2",
        issue(
            "acme",
            "e2",
            "c4",
            ("Eve@Example.com", "user-2"),
            Some(at(20)),
        ),
        Some("key-e"),
    );
    log.push(
        "credential-c1",
        CredentialEvent::CredentialUpdated {
            fields: credential("Rust 101", "Ownership", Some("course-2")),
            updated_at: at(2),
        },
        None,
    );
    log.push(
        "assertion-e3",
        issue("acme", "e3", "c1", ("bob@example.com", "bob"), Some(at(3))),
        None,
    );
    log.push(
        "credential-c2",
        CredentialEvent::CredentialUpdated {
            fields: credential("Go basics", "", Some("course-1")),
            updated_at: at(2),
        },
        None,
    );
    log.push("assertion-e2", revoked("again", 5), None);
    log.push_with(
        "credential-d1",
        CredentialEvent::CredentialCreated {
            platform: "beta".into(),
            entity_id: "d1".into(),
            fields: credential("D1", "", Some("course-1")),
            created_at: at(1),
        },
        by("beta", Some("key-c1")),
    );
    log.push_with(
        "assertion-f1",
        issue("beta", "f1", "d1", ("bob@example.com", "bob"), None),
        by("beta", Some("key-f1")),
    );
    log.push_with(
        "assertion-f2",
        issue("beta", "f2", "d1", ("", "amy"), Some(at(6))),
        by("beta", Some("key-f1")),
    );
    log.push("assertion-a2", revoked("late", 6), None);
    log.push("assertion-a3", revoked("twice", 7), None);
    log.push(
        "credential-c4",
        CredentialEvent::CredentialRetired {
            reason: "old".into(),
            retired_at: at(7),
        },
        None,
    );
    log.push(
        "assertion-nobody",
        revoked("never issued", 7),
        Some("key-nobody"),
    );
    log
}

pub(crate) fn entity_ids(page: &Page<AssertionView>) -> Vec<&str> {
    page.items.iter().map(|a| a.entity_id.as_str()).collect()
}

async fn page<M: Model>(
    model: &M,
    platform: &str,
    f: &AssertionFilter,
    offset: usize,
    limit: usize,
) -> Page<AssertionView> {
    model
        .assertions(platform, f, offset, limit)
        .await
        .expect("read")
}

fn emails(list: &[&str]) -> Vec<Recipient> {
    list.iter()
        .map(|e| Recipient {
            email: e.to_string(),
            ..Recipient::default()
        })
        .collect()
}

pub(crate) async fn lists_leave_out_revoked_and_expired_unless_asked_and_filter_by_credential_and_course<
    M: Model,
>(
    model: &M,
) {
    let log = sample();
    model.apply(&log.events);
    let list = |f: AssertionFilter| async move { page(model, "acme", &f, 0, 10).await };
    assert_eq!(entity_ids(&list(filter(false, false)).await), ["a1"]);
    assert_eq!(entity_ids(&list(filter(true, false)).await), ["a1", "a3"]);
    assert_eq!(entity_ids(&list(filter(false, true)).await), ["a1", "a2"]);
    assert_eq!(
        entity_ids(&list(filter(true, true)).await),
        ["a1", "a2", "a3"]
    );
    let paged = page(model, "acme", &filter(true, true), 1, 1).await;
    assert_eq!((paged.count, entity_ids(&paged)), (3, vec!["a2"]), "paged");
    let of_c2 = AssertionFilter {
        credential: Some("c2".into()),
        ..filter(true, true)
    };
    assert_eq!(entity_ids(&list(of_c2).await), ["a3"]);
    let course = AssertionFilter {
        course: Some("course-1".into()),
        ..filter(true, true)
    };
    assert_eq!(
        entity_ids(&list(course).await),
        ["a1", "a2"],
        "c1 is in course-1"
    );
    assert_eq!(
        page(model, "other", &filter(true, true), 0, 10).await.count,
        0
    );

    let revoked = model
        .assertion("a3")
        .await
        .expect("read")
        .expect("kept after revocation");
    assert_eq!(revoked.revoked.map(|r| r.reason), Some("mistake".into()));
    assert!(model.assertion("nope").await.expect("read").is_none());
    // bob holds c1 (a1); eve's a2 has expired; a3 (c2) is revoked.
    let who = |credential: &'static str, platform: &'static str, except: &'static [&str]| async move {
        let recipients = emails(&["BOB@example.com", "eve@example.com", "nobody@x.test"]);
        let except = except.iter().copied().collect();
        model
            .holders_among(credential, platform, at(10), &recipients, &except)
            .await
            .expect("read")
            .0
    };
    assert_eq!(
        who("c1", "acme", &[]).await,
        HashSet::from(["bob@example.com".to_owned()])
    );
    assert!(who("c1", "acme", &["a1"]).await.is_empty(), "a retry's own");
    assert!(who("c2", "acme", &[]).await.is_empty(), "revoked");
    assert!(who("c1", "other", &[]).await.is_empty(), "another platform");
}

pub(crate) async fn a_batch_applied_twice_changes_nothing_the_second_time<M: Model>(
    once: &M,
    twice: &M,
) {
    let log = sample();
    once.apply(&log.events);
    twice.apply(&log.events[..5]);
    twice.apply(&log.events);
    twice.apply(&log.events);
    assert_eq!(twice.checkpoint(), log.events.len() as u64);
    let all = filter(true, true);
    assert_eq!(
        page(twice, "acme", &all, 0, 10).await.items,
        page(once, "acme", &all, 0, 10).await.items
    );
    assert_eq!(
        twice.idempotency("acme", "key-c1").await.expect("read"),
        once.idempotency("acme", "key-c1").await.expect("read")
    );
}

pub(crate) async fn idempotency_records_keep_the_first_stream_of_each_kind_a_request_wrote<
    M: Model,
>(
    model: &M,
) {
    let log = with_bulk(5);
    // Split over two batches: the record is read back and extended.
    let (first, rest) = log.events.split_at(log.events.len() - 2);
    model.apply(first);
    model.apply(rest);
    let record = model
        .idempotency("acme", "key-c2")
        .await
        .expect("read")
        .expect("recorded");
    assert_eq!(record.streams, ["credential-c2"]);
    assert_eq!(record.request_hash, "h");
    assert!(model
        .idempotency("other", "key-c2")
        .await
        .expect("read")
        .is_none());
    let bulk = model
        .idempotency("acme", "bulk")
        .await
        .expect("read")
        .expect("recorded");
    assert_eq!(bulk.streams, ["assertion-b0"]);
    assert_eq!(bulk.created("assertion-"), "b0");
    assert_eq!(bulk.position, log.events.len() as u64, "its last event");

    // A request that wrote streams of several kinds keeps the first of each.
    let mut log = Log::default();
    let retired = || CredentialEvent::CredentialRetired {
        reason: String::new(),
        retired_at: at(1),
    };
    log.push_with("credential-x", retired(), by("acme", Some("mixed")));
    log.push_with(
        "assertion-y",
        revoked("unknown", 1),
        by("acme", Some("mixed")),
    );
    log.push_with("credential-z", retired(), by("acme", Some("mixed")));
    log.push_with(
        "assertion-w",
        revoked("unknown", 1),
        by("acme", Some("mixed")),
    );
    log.push_with("plain", retired(), by("acme", Some("mixed")));
    let more = Log {
        events: log
            .events
            .into_iter()
            .map(|mut e| {
                e.position += 1_000;
                e
            })
            .collect(),
    };
    model.apply(&more.events);
    let mixed = model
        .idempotency("acme", "mixed")
        .await
        .expect("read")
        .expect("recorded");
    assert_eq!(mixed.streams, ["credential-x", "assertion-y", "plain"]);
    assert_eq!(mixed.request_hash, "hash of mixed");
    assert_eq!(mixed.position, 1_005);
}

pub(crate) async fn a_course_change_moves_a_credentials_assertions_between_course_lists<
    M: Model,
>(
    model: &M,
) {
    let log = rich();
    model.apply(&log.events);
    let of = |course: &'static str, include: (bool, bool)| async move {
        let f = AssertionFilter {
            course: Some(course.into()),
            ..filter(include.0, include.1)
        };
        let p = page(model, "acme", &f, 0, 100).await;
        (p.count, entity_ids(&p).join(" "))
    };
    // c1 moved to course-2 (with a1, a2, the bulk and e3); c2 (a3) joined
    // course-1; c3 was deleted; c4 (e1, e2) was in course-2 from the start.
    assert_eq!(of("course-1", (true, true)).await, (1, "a3".into()));
    assert_eq!(
        of("course-2", (true, true)).await,
        (9, "a1 a2 b0 b1 b2 b3 e1 e2 e3".into())
    );
    assert_eq!(
        of("course-2", (false, true)).await,
        (6, "a1 b0 b2 b3 e1 e3".into())
    );
    // At 10: e3 (3) and e1 (8) have expired.
    assert_eq!(
        of("course-2", (false, false)).await,
        (4, "a1 b0 b2 b3".into())
    );
    assert_eq!(of("nope", (true, true)).await, (0, String::new()));
    let both = |credential: &'static str, course: &'static str| async move {
        let f = AssertionFilter {
            credential: Some(credential.into()),
            course: Some(course.into()),
            ..filter(true, true)
        };
        page(model, "acme", &f, 0, 100).await.count
    };
    assert_eq!(both("c1", "course-2").await, 7);
    assert_eq!(both("c1", "course-1").await, 0, "no longer in course-1");
    assert_eq!(both("c4", "course-2").await, 2);
    let beta = AssertionFilter {
        course: Some("course-1".into()),
        ..filter(true, true)
    };
    let p = page(model, "beta", &beta, 0, 100).await;
    assert_eq!(entity_ids(&p), ["f1", "f2"], "another platform's course");
}

pub(crate) async fn holders_are_found_by_email_and_username_unless_revoked_expired_or_excepted<
    M: Model,
>(
    model: &M,
) {
    let log = rich();
    model.apply(&log.events);
    let who = |credential: &'static str, now: i64, except: &'static [&str]| async move {
        let mut recipients = emails(&["x@EXAMPLE.com", "eve@example.com", "bob@example.com"]);
        for username in ["user-1", "user-2", "bob", "amy", ""] {
            recipients.push(Recipient {
                username: username.into(),
                ..Recipient::default()
            });
        }
        let except = except.iter().copied().collect();
        let (emails, usernames) = model
            .holders_among(credential, "acme", at(now), &recipients, &except)
            .await
            .expect("read");
        let mut emails: Vec<String> = emails.into_iter().collect();
        let mut usernames: Vec<String> = usernames.into_iter().collect();
        emails.sort();
        usernames.sort();
        (emails.join(" "), usernames.join(" "))
    };
    // c1: bob (a1, e3 until 3), x (b0, b2, b3; b1 revoked), eve (a2 revoked).
    assert_eq!(
        who("c1", 2, &[]).await,
        ("bob@example.com x@example.com".into(), "bob".into())
    );
    assert_eq!(
        who("c1", 10, &[]).await,
        ("bob@example.com x@example.com".into(), String::new()),
        "e3 (bob's username) has expired"
    );
    assert_eq!(
        who("c1", 10, &["b0", "b2"]).await,
        ("bob@example.com x@example.com".into(), String::new()),
        "x still holds b3"
    );
    assert_eq!(
        who("c1", 10, &["b0", "b2", "b3", "a1"]).await,
        (String::new(), String::new())
    );
    assert_eq!(
        who("c1", 2, &["a1"]).await,
        ("bob@example.com x@example.com".into(), "bob".into()),
        "bob still holds e3"
    );
    // c4: e1 (user-1, until 8), e2 revoked.
    assert_eq!(who("c4", 7, &[]).await, (String::new(), "user-1".into()));
    assert_eq!(who("c4", 8, &[]).await, (String::new(), String::new()));
    let none = model
        .holders_among("c1", "acme", at(2), &[], &HashSet::new())
        .await
        .expect("read");
    assert_eq!(none, Default::default());
}

/// A log of `n` assertions of three credentials, among other events, with
/// expiries around `at(50)`, some revoked, a credential changing course;
/// and what each is (id, credential, expires, revoked), in issue order,
/// with the courses at the end.
#[allow(clippy::type_complexity)]
fn generated(
    n: usize,
) -> (
    Log,
    Vec<(String, String, Option<DateTime<Utc>>, bool)>,
    HashMap<String, String>,
) {
    let mut log = Log::default();
    let mut expected = Vec::new();
    let mut courses = HashMap::new();
    for (id, course) in [
        ("g0", Some("course-g")),
        ("g1", None),
        ("g2", Some("course-h")),
    ] {
        log.push(
            &format!("credential-{id}"),
            CredentialEvent::CredentialCreated {
                platform: "acme".into(),
                entity_id: id.into(),
                fields: credential(id, "", course),
                created_at: at(0),
            },
            None,
        );
        if let Some(course) = course {
            courses.insert(id.to_owned(), course.to_owned());
        }
    }
    // A cheap deterministic sequence.
    let mut x: u64 = 7;
    let mut next = move || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        x >> 33
    };
    for i in 0..n {
        let r = next();
        let of = format!("g{}", r % 3);
        let expires = match (r >> 2) % 4 {
            0 => None,
            k => Some(at(40 + (r >> 4) as i64 % 20 * k as i64)),
        };
        let id = format!("g{i:04}");
        log.push(
            &format!("assertion-{id}"),
            issue(
                "acme",
                &id,
                &of,
                (&format!("{}@x.test", r % 11), ""),
                expires,
            ),
            None,
        );
        expected.push((id.clone(), of, expires, false));
        // Other events between, so that the issues spread over blocks.
        for _ in 0..(r >> 8) % 3 {
            log.push(
                "credential-other",
                CredentialEvent::CredentialRetired {
                    reason: String::new(),
                    retired_at: at(0),
                },
                None,
            );
        }
        if (r >> 10) % 5 == 0 && i > 3 {
            let victim = (r >> 12) as usize % i;
            log.push(
                &format!("assertion-{}", expected[victim].0),
                revoked("r", 1),
                None,
            );
            expected[victim].3 = true;
        }
        if i == n / 2 {
            log.push(
                "credential-g1",
                CredentialEvent::CredentialUpdated {
                    fields: credential("g1", "", Some("course-g")),
                    updated_at: at(0),
                },
                None,
            );
            courses.insert("g1".into(), "course-g".into());
        }
    }
    (log, expected, courses)
}

pub(crate) async fn pages_match_a_plain_filter_of_the_log_whatever_the_offset<M: Model>(model: &M) {
    let (log, expected, courses) = generated(160);
    for batch in log.events.chunks(97) {
        model.apply(batch);
    }
    for now in [at(10), at(55), at(70), at(200)] {
        for include in [(false, false), (true, false), (false, true), (true, true)] {
            for (credential, course) in [
                (None, None),
                (Some("g0"), None),
                (Some("g1"), None),
                (None, Some("course-g")),
                (None, Some("course-h")),
                (Some("g2"), Some("course-h")),
            ] {
                let f = AssertionFilter {
                    credential: credential.map(str::to_owned),
                    course: course.map(str::to_owned),
                    ..filter(include.0, include.1)
                };
                let f = AssertionFilter { now, ..f };
                let want: Vec<&str> = expected
                    .iter()
                    .filter(|(_, c, expires, revoked)| {
                        credential.is_none_or(|x| x == c)
                            && course.is_none_or(|x| courses.get(c).is_some_and(|y| x == y))
                            && (include.0 || !revoked)
                            && (include.1 || expires.is_none_or(|e| e > now))
                    })
                    .map(|(id, ..)| id.as_str())
                    .collect();
                let what = format!("{credential:?} {course:?} {include:?} at {now}");
                for limit in [1, 7, 100] {
                    for offset in (0..want.len() + 3).step_by(if limit == 1 { 3 } else { 5 }) {
                        let got = page(model, "acme", &f, offset, limit).await;
                        assert_eq!(got.count, want.len(), "{what}");
                        let end = (offset + limit).min(want.len());
                        let slice = want.get(offset..end).unwrap_or_default();
                        assert_eq!(entity_ids(&got), slice, "{what}, {offset}+{limit}");
                    }
                }
                assert!(
                    page(model, "acme", &f, 0, 0).await.items.is_empty(),
                    "{what}: an empty page"
                );
            }
        }
    }
}

/// Every answer of the model about [`rich`]'s data (or any prefix of it),
/// as text.
pub(crate) async fn answers<M: Model>(model: &M) -> String {
    let mut out = String::new();
    for platform in ["acme", "beta"] {
        for now in [at(4), at(10)] {
            for include in [(false, false), (true, false), (false, true), (true, true)] {
                let all = AssertionFilter {
                    now,
                    ..filter(include.0, include.1)
                };
                for (offset, limit) in [(0, 100), (0, 2), (1, 2), (3, 2), (5, 100)] {
                    let p = page(model, platform, &all, offset, limit).await;
                    out += &format!("{} {:?}\n", p.count, entity_ids(&p));
                }
                for (credential, course) in [
                    (Some("c1"), None),
                    (Some("c2"), None),
                    (Some("c4"), None),
                    (Some("d1"), None),
                    (None, Some("course-1")),
                    (None, Some("course-2")),
                    (None, Some("nope")),
                    (Some("c1"), Some("course-1")),
                    (Some("c1"), Some("course-2")),
                ] {
                    let f = AssertionFilter {
                        credential: credential.map(str::to_owned),
                        course: course.map(str::to_owned),
                        ..all.clone()
                    };
                    for (offset, limit) in [(0, 100), (1, 1)] {
                        let p = page(model, platform, &f, offset, limit).await;
                        out += &format!("{} {:?}\n", p.count, p.items);
                    }
                }
            }
        }
    }
    for id in [
        "a1", "a2", "a3", "b0", "b1", "b2", "b3", "e1", "e2", "e3", "f1", "f2", "nobody",
    ] {
        out += &format!("{:?}\n", model.assertion(id).await.expect("read"));
    }
    let mut recipients = emails(&["bob@example.com", "x@example.com", "eve@example.com"]);
    for username in ["user-1", "bob", "amy"] {
        recipients.push(Recipient {
            username: username.into(),
            ..Recipient::default()
        });
    }
    for (credential, platform) in [("c1", "acme"), ("c4", "acme"), ("d1", "beta")] {
        for now in [at(2), at(10)] {
            for except in [&[][..], &["a1", "b0"]] {
                let except = except.iter().copied().collect();
                let (emails, usernames) = model
                    .holders_among(credential, platform, now, &recipients, &except)
                    .await
                    .expect("read");
                let mut emails: Vec<String> = emails.into_iter().collect();
                let mut usernames: Vec<String> = usernames.into_iter().collect();
                emails.sort();
                usernames.sort();
                out += &format!("{emails:?} {usernames:?}\n");
            }
        }
    }
    for (platform, key) in [
        ("acme", "bulk"),
        ("acme", "key-c1"),
        ("acme", "key-e"),
        ("acme", "key-nobody"),
        ("beta", "key-c1"),
        ("beta", "key-f1"),
        ("beta", "bulk"),
    ] {
        out += &format!(
            "{:?}\n",
            model.idempotency(platform, key).await.expect("read")
        );
    }
    out
}
