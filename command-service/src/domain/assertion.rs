//! An assertion: one credential issued to one recipient (stream
//! `assertion-{entity_id}`), and the plan of a bulk issue.
//!
//! Rules:
//! - `Issue` fails if the stream exists (`Conflict`). It takes an
//!   [`IssuableCredential`], which only [`CredentialState::issuable`] makes,
//!   so the caller checks the credential first; a credential of another
//!   platform is `NotFound`.
//! - The recipient needs an email or a username (both trimmed); an email
//!   must look like one; a username has no whitespace and at most 150
//!   characters; the name at most 255.
//! - `issued_on` defaults to `now`; `expires`, when given, must be after
//!   `issued_on` (it may already be past: back-filled records). `metadata` is
//!   a JSON object (`null` becomes `{}`). No string takes a NUL character.
//! - `Revoke` needs an existing assertion (`NotFound`), a non-blank reason
//!   (`Invalid`) and an assertion not yet revoked (`Conflict`). A revoked
//!   assertion keeps all its data.
//! - [`Assertion::status`]: revoked wins over expired; expired from the
//!   instant `expires` is reached.
//!
//! [`CredentialState::issuable`]: super::credential::CredentialState::issuable

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use ibl_events::credentials::{AssertionEvent, Evidence, Recipient};
use serde_json::Value;

use super::credential::IssuableCredential;
use super::validate::{self, FieldError, MAX_NAME_CHARS};
use super::{rejection, Aggregate, RejectionKind};

/// Most recipients in one bulk issue.
pub const MAX_BULK_RECIPIENTS: usize = 5_000;
/// Longest recipient username, in characters (Django's limit).
pub const MAX_USERNAME_CHARS: usize = 150;
/// Skip reason of a recipient who already holds a valid assertion of the
/// credential, or who appears earlier in the same request.
pub const DUPLICATE: &str = "duplicate";

/// The aggregate, for the generic command handler.
pub struct AssertionAggregate;

/// The fold of an assertion stream; `Default` is a stream that does not exist.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AssertionState {
    assertion: Option<Assertion>,
}

/// An assertion as its events left it (revoked ones included).
#[derive(Debug, Clone, PartialEq)]
pub struct Assertion {
    pub platform: String,
    pub entity_id: String,
    pub credential_id: String,
    pub recipient: Recipient,
    pub issued_on: DateTime<Utc>,
    pub expires: Option<DateTime<Utc>>,
    pub narrative: String,
    pub metadata: Value,
    pub evidence: Vec<Evidence>,
    pub revocation: Option<Revocation>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub reason: String,
    pub revoked_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AssertionStatus {
    Valid,
    Revoked,
    Expired,
}

impl Assertion {
    /// Revoked wins over expired; expired from the instant `expires` is reached.
    pub fn status(&self, now: DateTime<Utc>) -> AssertionStatus {
        if self.revocation.is_some() {
            AssertionStatus::Revoked
        } else if self.expires.is_some_and(|e| e <= now) {
            AssertionStatus::Expired
        } else {
            AssertionStatus::Valid
        }
    }

    pub fn is_valid(&self, now: DateTime<Utc>) -> bool {
        self.status(now) == AssertionStatus::Valid
    }
}

impl AssertionState {
    /// The assertion; `None` if the stream does not exist.
    pub fn get(&self) -> Option<&Assertion> {
        self.assertion.as_ref()
    }

    pub fn exists(&self) -> bool {
        self.assertion.is_some()
    }

    /// The status at `now`; `None` if the stream does not exist.
    pub fn status(&self, now: DateTime<Utc>) -> Option<AssertionStatus> {
        self.assertion.as_ref().map(|a| a.status(now))
    }
}

/// What every assertion of one issue request shares.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AssertionTerms {
    /// `None` means `now`.
    pub issued_on: Option<DateTime<Utc>>,
    pub expires: Option<DateTime<Utc>>,
    pub narrative: String,
    /// A JSON object; `Null` means `{}`.
    pub metadata: Value,
    pub evidence: Vec<Evidence>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IssueAssertion {
    pub platform: String,
    /// The id of the new assertion.
    pub entity_id: String,
    pub credential: IssuableCredential,
    pub recipient: Recipient,
    pub terms: AssertionTerms,
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // commands live for one request
pub enum AssertionCommand {
    Issue(IssueAssertion),
    Revoke { reason: String, now: DateTime<Utc> },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssertionError {
    #[error(transparent)]
    Invalid(#[from] FieldError),
    #[error("assertion not found")]
    NotFound,
    #[error("credential not found")]
    CredentialNotFound,
    #[error("an assertion with this id already exists")]
    AlreadyExists,
    #[error("assertion is already revoked")]
    AlreadyRevoked,
}

rejection!(AssertionError, |e| match e {
    AssertionError::Invalid(_) => RejectionKind::Invalid,
    AssertionError::NotFound | AssertionError::CredentialNotFound => RejectionKind::NotFound,
    AssertionError::AlreadyExists | AssertionError::AlreadyRevoked => RejectionKind::Conflict,
});

/// Validates and normalizes (trims) a recipient.
pub fn validate_recipient(recipient: Recipient) -> Result<Recipient, FieldError> {
    let email = validate::optional_email("recipient.email", &recipient.email)?;
    validate::no_nul("recipient.username", &recipient.username)?;
    let username = recipient.username.trim().to_owned();
    if username
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(FieldError::new(
            "recipient.username",
            "Enter a valid username.",
        ));
    }
    validate::max_chars("recipient.username", &username, MAX_USERNAME_CHARS)?;
    validate::no_nul("recipient.name", &recipient.name)?;
    let name = recipient.name.trim().to_owned();
    validate::max_chars("recipient.name", &name, MAX_NAME_CHARS)?;
    if email.is_empty() && username.is_empty() {
        return Err(FieldError::new(
            "recipient",
            "An email or a username is required.",
        ));
    }
    Ok(Recipient {
        email,
        username,
        name,
    })
}

/// Whether two (validated) recipients are the same person: the same email
/// (ignoring case) or the same username (exactly).
pub fn same_recipient(a: &Recipient, b: &Recipient) -> bool {
    (!a.email.is_empty() && a.email.to_lowercase() == b.email.to_lowercase())
        || (!a.username.is_empty() && a.username == b.username)
}

/// Terms after validation.
#[derive(Debug, Clone, PartialEq)]
struct ValidTerms {
    issued_on: DateTime<Utc>,
    expires: Option<DateTime<Utc>>,
    narrative: String,
    metadata: Value,
    evidence: Vec<Evidence>,
}

fn validate_terms(terms: AssertionTerms, now: DateTime<Utc>) -> Result<ValidTerms, FieldError> {
    let issued_on = terms.issued_on.unwrap_or(now);
    if let Some(expires) = terms.expires {
        if expires <= issued_on {
            return Err(FieldError::new("expires", "Must be after issued_on."));
        }
    }
    validate::no_nul("narrative", &terms.narrative)?;
    let metadata = match terms.metadata {
        Value::Null => Value::Object(Default::default()),
        m @ Value::Object(_) => m,
        _ => return Err(FieldError::new("metadata", "Expected a JSON object.")),
    };
    validate::json_no_nul("metadata", &metadata)?;
    for e in &terms.evidence {
        validate::no_nul("evidence", &e.url)?;
        validate::no_nul("evidence", &e.narrative)?;
    }
    Ok(ValidTerms {
        issued_on,
        expires: terms.expires,
        narrative: terms.narrative,
        metadata,
        evidence: terms.evidence,
    })
}

fn issued(
    credential: &IssuableCredential,
    entity_id: String,
    recipient: Recipient,
    terms: &ValidTerms,
) -> AssertionEvent {
    AssertionEvent::AssertionIssued {
        platform: credential.platform().to_owned(),
        entity_id,
        credential_id: credential.entity_id().to_owned(),
        issuer_id: credential.issuer().map(str::to_owned),
        recipient,
        issued_on: terms.issued_on,
        expires: terms.expires,
        narrative: terms.narrative.clone(),
        metadata: terms.metadata.clone(),
        evidence: terms.evidence.clone(),
    }
}

pub fn decide(
    state: &AssertionState,
    cmd: AssertionCommand,
) -> Result<Vec<AssertionEvent>, AssertionError> {
    match cmd {
        AssertionCommand::Issue(cmd) => {
            if state.exists() {
                return Err(AssertionError::AlreadyExists);
            }
            if cmd.credential.platform() != cmd.platform {
                return Err(AssertionError::CredentialNotFound);
            }
            let recipient = validate_recipient(cmd.recipient)?;
            let terms = validate_terms(cmd.terms, cmd.now)?;
            Ok(vec![issued(
                &cmd.credential,
                cmd.entity_id,
                recipient,
                &terms,
            )])
        }
        AssertionCommand::Revoke { reason, now } => {
            let assertion = state.get().ok_or(AssertionError::NotFound)?;
            let reason = validate::name("reason", &reason, usize::MAX)?;
            if assertion.revocation.is_some() {
                return Err(AssertionError::AlreadyRevoked);
            }
            Ok(vec![AssertionEvent::AssertionRevoked {
                reason,
                revoked_at: now,
            }])
        }
    }
}

pub fn evolve(state: AssertionState, event: &AssertionEvent) -> AssertionState {
    let assertion = match (state.assertion, event) {
        (
            None,
            AssertionEvent::AssertionIssued {
                platform,
                entity_id,
                credential_id,
                issuer_id: _,
                recipient,
                issued_on,
                expires,
                narrative,
                metadata,
                evidence,
            },
        ) => Some(Assertion {
            platform: platform.clone(),
            entity_id: entity_id.clone(),
            credential_id: credential_id.clone(),
            recipient: recipient.clone(),
            issued_on: *issued_on,
            expires: *expires,
            narrative: narrative.clone(),
            metadata: metadata.clone(),
            evidence: evidence.clone(),
            revocation: None,
        }),
        (Some(a), AssertionEvent::AssertionRevoked { reason, revoked_at }) => Some(Assertion {
            revocation: Some(Revocation {
                reason: reason.clone(),
                revoked_at: *revoked_at,
            }),
            ..a
        }),
        (assertion, _) => assertion,
    };
    AssertionState { assertion }
}

pub fn fold<'a>(events: impl IntoIterator<Item = &'a AssertionEvent>) -> AssertionState {
    AssertionAggregate::fold(events)
}

impl Aggregate for AssertionAggregate {
    type State = AssertionState;
    type Command = AssertionCommand;
    type Event = AssertionEvent;
    type Error = AssertionError;

    fn decide(
        state: &AssertionState,
        cmd: AssertionCommand,
    ) -> Result<Vec<AssertionEvent>, AssertionError> {
        decide(state, cmd)
    }

    fn evolve(state: AssertionState, event: &AssertionEvent) -> AssertionState {
        evolve(state, event)
    }
}

/// One issue request to many recipients.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkIssue {
    pub platform: String,
    pub credential: IssuableCredential,
    pub recipients: Vec<Recipient>,
    /// Issue even to recipients who already hold a valid assertion of the
    /// credential, or who appear more than once in `recipients`.
    pub allow_duplicates: bool,
    pub terms: AssertionTerms,
    pub now: DateTime<Utc>,
}

/// What a bulk issue does: each `(entity_id, AssertionIssued)` goes to a new
/// stream `assertion-{entity_id}`; the others are reported as skipped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BulkPlan {
    pub issue: Vec<(String, AssertionEvent)>,
    pub skipped: Vec<Skipped>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The recipient as the request sent it.
    pub recipient: Recipient,
    /// [`DUPLICATE`] or `invalid recipient: ...`.
    pub reason: String,
}

/// Plans a bulk issue, in request order.
///
/// The whole request is rejected (`Invalid`) for no recipients or more than
/// [`MAX_BULK_RECIPIENTS`], for invalid shared terms, and (`NotFound`) for a
/// credential of another platform. Otherwise each recipient is either issued
/// or skipped: `invalid recipient: <field>: <message>`, or [`DUPLICATE`] when
/// (unless `allow_duplicates`) an earlier recipient of the request is the same
/// person ([`same_recipient`]) or `holds_valid` says they already hold a valid
/// assertion of the credential. `holds_valid` gets the trimmed recipient;
/// `next_id` is called once per issued assertion.
pub fn plan_bulk_issue(
    cmd: BulkIssue,
    holds_valid: impl Fn(&Recipient) -> bool,
    mut next_id: impl FnMut() -> String,
) -> Result<BulkPlan, AssertionError> {
    if cmd.recipients.is_empty() {
        return Err(FieldError::new("recipients", "This list may not be empty.").into());
    }
    if cmd.recipients.len() > MAX_BULK_RECIPIENTS {
        return Err(FieldError::new(
            "recipients",
            format!("Ensure this field has no more than {MAX_BULK_RECIPIENTS} elements."),
        )
        .into());
    }
    if cmd.credential.platform() != cmd.platform {
        return Err(AssertionError::CredentialNotFound);
    }
    let terms = validate_terms(cmd.terms, cmd.now)?;

    let mut plan = BulkPlan::default();
    let mut seen_emails = HashSet::new();
    let mut seen_usernames = HashSet::new();
    for sent in cmd.recipients {
        let recipient = match validate_recipient(sent.clone()) {
            Ok(r) => r,
            Err(e) => {
                let field = e.field.strip_prefix("recipient.").unwrap_or(e.field);
                plan.skipped.push(Skipped {
                    recipient: sent,
                    reason: format!("invalid recipient: {field}: {}", e.message),
                });
                continue;
            }
        };
        let email = recipient.email.to_lowercase();
        let seen = (!email.is_empty() && seen_emails.contains(&email))
            || (!recipient.username.is_empty() && seen_usernames.contains(&recipient.username));
        if !cmd.allow_duplicates && (seen || holds_valid(&recipient)) {
            plan.skipped.push(Skipped {
                recipient: sent,
                reason: DUPLICATE.to_owned(),
            });
            continue;
        }
        if !email.is_empty() {
            seen_emails.insert(email);
        }
        if !recipient.username.is_empty() {
            seen_usernames.insert(recipient.username.clone());
        }
        let entity_id = next_id();
        let event = issued(&cmd.credential, entity_id.clone(), recipient, &terms);
        plan.issue.push((entity_id, event));
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::credential;
    use crate::domain::testing::{given, t};
    use serde_json::json;
    use AssertionCommand as C;
    use AssertionEvent as E;

    fn issuable() -> IssuableCredential {
        credential::fold(&[credential::tests::created()])
            .issuable(t(0))
            .unwrap()
    }

    fn jane() -> Recipient {
        Recipient {
            email: "jane@example.com".into(),
            username: "jane".into(),
            name: "Jane Roe".into(),
        }
    }

    fn by_email(email: &str) -> Recipient {
        Recipient {
            email: email.into(),
            ..Default::default()
        }
    }

    fn issue(recipient: Recipient, terms: AssertionTerms) -> AssertionCommand {
        C::Issue(IssueAssertion {
            platform: "acme".into(),
            entity_id: "as-1".into(),
            credential: issuable(),
            recipient,
            terms,
            now: t(100),
        })
    }

    fn issued_to(recipient: Recipient) -> AssertionEvent {
        E::AssertionIssued {
            platform: "acme".into(),
            entity_id: "as-1".into(),
            credential_id: "cred-1".into(),
            issuer_id: None,
            recipient,
            issued_on: t(100),
            expires: None,
            narrative: String::new(),
            metadata: json!({}),
            evidence: vec![],
        }
    }

    fn issued_event() -> AssertionEvent {
        issued_to(jane())
    }

    fn revoked() -> AssertionEvent {
        E::AssertionRevoked {
            reason: "fraud".into(),
            revoked_at: t(200),
        }
    }

    fn revoke(reason: &str) -> AssertionCommand {
        C::Revoke {
            reason: reason.into(),
            now: t(300),
        }
    }

    #[test]
    fn issues_an_assertion_dated_now_by_default() {
        let state = given::<AssertionAggregate>(&[])
            .when(issue(jane(), AssertionTerms::default()))
            .then(&[issued_event()]);
        let a = state.get().unwrap();
        assert_eq!(a.credential_id, "cred-1");
        assert_eq!(a.issued_on, t(100));
        assert_eq!(state.status(t(1_000_000)), Some(AssertionStatus::Valid));
    }

    #[test]
    fn issue_keeps_every_term() {
        let terms = AssertionTerms {
            issued_on: Some(t(50)),
            expires: Some(t(51)),
            narrative: "Passed the exam".into(),
            metadata: json!({"grade": "A", "score": 97}),
            evidence: vec![Evidence {
                url: "https://acme.test/e/1".into(),
                narrative: "exam".into(),
            }],
        };
        given::<AssertionAggregate>(&[])
            .when(issue(jane(), terms.clone()))
            .then(&[E::AssertionIssued {
                platform: "acme".into(),
                entity_id: "as-1".into(),
                credential_id: "cred-1".into(),
                issuer_id: None,
                recipient: jane(),
                issued_on: t(50),
                expires: Some(t(51)),
                narrative: terms.narrative,
                metadata: terms.metadata,
                evidence: terms.evidence,
            }]);
    }

    #[test]
    fn recipient_is_trimmed_and_needs_an_email_or_a_username() {
        given::<AssertionAggregate>(&[])
            .when(issue(by_email(" jane@example.com "), Default::default()))
            .then(&[issued_to(by_email("jane@example.com"))]);
        let by_username = Recipient {
            username: "jane".into(),
            ..Default::default()
        };
        given::<AssertionAggregate>(&[])
            .when(issue(by_username.clone(), Default::default()))
            .then(&[issued_to(by_username)]);
        let e = given::<AssertionAggregate>(&[])
            .when(issue(
                Recipient {
                    email: " ".into(),
                    username: "".into(),
                    name: "Jane".into(),
                },
                Default::default(),
            ))
            .then_invalid("recipient");
        assert_eq!(
            e.to_string(),
            "recipient: An email or a username is required."
        );
    }

    #[test]
    fn recipient_email_must_look_like_one() {
        for bad in [
            "jane",
            "@example.com",
            "jane@",
            "a@b@c",
            "jane doe@example.com",
        ] {
            given::<AssertionAggregate>(&[])
                .when(issue(
                    Recipient {
                        email: bad.into(),
                        ..jane()
                    },
                    Default::default(),
                ))
                .then_invalid("recipient.email");
        }
    }

    #[test]
    fn recipient_username_and_name_are_checked() {
        for (recipient, field) in [
            (
                Recipient {
                    username: "ja ne".into(),
                    ..jane()
                },
                "recipient.username",
            ),
            (
                Recipient {
                    username: "j".repeat(151),
                    ..jane()
                },
                "recipient.username",
            ),
            (
                Recipient {
                    name: "n".repeat(256),
                    ..jane()
                },
                "recipient.name",
            ),
            (
                Recipient {
                    name: "\0".into(),
                    ..jane()
                },
                "recipient.name",
            ),
        ] {
            given::<AssertionAggregate>(&[])
                .when(issue(recipient, Default::default()))
                .then_invalid(field);
        }
    }

    #[test]
    fn expires_must_be_after_issued_on() {
        for (issued_on, expires) in [(Some(t(50)), t(50)), (Some(t(50)), t(49)), (None, t(100))] {
            given::<AssertionAggregate>(&[])
                .when(issue(
                    jane(),
                    AssertionTerms {
                        issued_on,
                        expires: Some(expires),
                        ..Default::default()
                    },
                ))
                .then_invalid("expires");
        }
    }

    #[test]
    fn an_assertion_may_be_issued_already_expired() {
        let state = given::<AssertionAggregate>(&[])
            .when(issue(
                jane(),
                AssertionTerms {
                    issued_on: Some(t(10)),
                    expires: Some(t(20)),
                    ..Default::default()
                },
            ))
            .accepted()
            .0;
        assert_eq!(state.status(t(100)), Some(AssertionStatus::Expired));
    }

    #[test]
    fn metadata_must_be_an_object_without_nul() {
        for (metadata, field) in [
            (json!([1, 2]), "metadata"),
            (json!("x"), "metadata"),
            (json!({"k": "\u{0}"}), "metadata"),
        ] {
            given::<AssertionAggregate>(&[])
                .when(issue(
                    jane(),
                    AssertionTerms {
                        metadata,
                        ..Default::default()
                    },
                ))
                .then_invalid(field);
        }
    }

    #[test]
    fn narrative_and_evidence_reject_nul() {
        given::<AssertionAggregate>(&[])
            .when(issue(
                jane(),
                AssertionTerms {
                    narrative: "a\0".into(),
                    ..Default::default()
                },
            ))
            .then_invalid("narrative");
        given::<AssertionAggregate>(&[])
            .when(issue(
                jane(),
                AssertionTerms {
                    evidence: vec![Evidence {
                        url: "\0".into(),
                        narrative: String::new(),
                    }],
                    ..Default::default()
                },
            ))
            .then_invalid("evidence");
    }

    #[test]
    fn cannot_issue_into_an_existing_stream() {
        given::<AssertionAggregate>(&[issued_event()])
            .when(issue(jane(), Default::default()))
            .then_err(RejectionKind::Conflict);
    }

    #[test]
    fn cannot_issue_a_credential_of_another_platform() {
        let C::Issue(mut cmd) = issue(jane(), Default::default()) else {
            unreachable!()
        };
        cmd.platform = "other".into();
        let e = given::<AssertionAggregate>(&[])
            .when(C::Issue(cmd))
            .then_err(RejectionKind::NotFound);
        assert_eq!(e, AssertionError::CredentialNotFound);
    }

    #[test]
    fn revoke_keeps_the_data_readable() {
        let state = given::<AssertionAggregate>(&[issued_event()])
            .when(revoke("  fraud "))
            .then(&[E::AssertionRevoked {
                reason: "fraud".into(),
                revoked_at: t(300),
            }]);
        let a = state.get().unwrap();
        assert_eq!(a.recipient, jane());
        assert_eq!(
            a.revocation,
            Some(Revocation {
                reason: "fraud".into(),
                revoked_at: t(300)
            })
        );
        assert_eq!(state.status(t(300)), Some(AssertionStatus::Revoked));
    }

    #[test]
    fn revoke_needs_a_reason() {
        for reason in ["", "   ", "a\0"] {
            given::<AssertionAggregate>(&[issued_event()])
                .when(revoke(reason))
                .then_invalid("reason");
        }
    }

    #[test]
    fn revoke_twice_conflicts() {
        given::<AssertionAggregate>(&[issued_event(), revoked()])
            .when(revoke("again"))
            .then_err(RejectionKind::Conflict);
    }

    #[test]
    fn revoke_needs_an_assertion() {
        given::<AssertionAggregate>(&[])
            .when(revoke("fraud"))
            .then_err(RejectionKind::NotFound);
    }

    #[test]
    fn status_revoked_wins_over_expired() {
        let mut expiring = issued_event();
        if let E::AssertionIssued { expires, .. } = &mut expiring {
            *expires = Some(t(150));
        }
        let state = fold(&[expiring.clone()]);
        assert_eq!(state.status(t(149)), Some(AssertionStatus::Valid));
        assert_eq!(state.status(t(150)), Some(AssertionStatus::Expired));
        let state = fold(&[expiring, revoked()]);
        assert_eq!(state.status(t(149)), Some(AssertionStatus::Revoked));
        assert_eq!(state.status(t(500)), Some(AssertionStatus::Revoked));
        assert_eq!(AssertionState::default().status(t(0)), None);
    }

    // Bulk issue.

    fn bulk(recipients: Vec<Recipient>, allow_duplicates: bool) -> BulkIssue {
        BulkIssue {
            platform: "acme".into(),
            credential: issuable(),
            recipients,
            allow_duplicates,
            terms: AssertionTerms {
                narrative: "cohort 1".into(),
                ..Default::default()
            },
            now: t(100),
        }
    }

    fn ids() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("as-{n}")
        }
    }

    fn nobody(_: &Recipient) -> bool {
        false
    }

    fn issued_recipients(plan: &BulkPlan) -> Vec<(String, String)> {
        plan.issue
            .iter()
            .map(|(id, e)| match e {
                E::AssertionIssued {
                    entity_id,
                    recipient,
                    ..
                } => {
                    assert_eq!(id, entity_id);
                    let who = if recipient.email.is_empty() {
                        &recipient.username
                    } else {
                        &recipient.email
                    };
                    (id.clone(), who.clone())
                }
                other => panic!("{other:?}"),
            })
            .collect()
    }

    fn reasons(plan: &BulkPlan) -> Vec<(&str, &str)> {
        plan.skipped
            .iter()
            .map(|s| (s.recipient.email.as_str(), s.reason.as_str()))
            .collect()
    }

    #[test]
    fn bulk_issues_one_assertion_per_recipient_in_order() {
        let plan = plan_bulk_issue(
            bulk(vec![by_email("a@x.io"), by_email(" b@x.io")], false),
            nobody,
            ids(),
        )
        .unwrap();
        assert_eq!(
            issued_recipients(&plan),
            [
                ("as-1".into(), "a@x.io".into()),
                ("as-2".into(), "b@x.io".into())
            ]
        );
        assert!(plan.skipped.is_empty());
        let (
            _,
            E::AssertionIssued {
                narrative,
                credential_id,
                issued_on,
                metadata,
                ..
            },
        ) = &plan.issue[0]
        else {
            unreachable!()
        };
        assert_eq!(narrative, "cohort 1");
        assert_eq!(credential_id, "cred-1");
        assert_eq!(*issued_on, t(100));
        assert_eq!(metadata, &json!({}));
    }

    #[test]
    fn bulk_events_match_a_single_issue() {
        let plan = plan_bulk_issue(bulk(vec![jane()], false), nobody, || "as-1".into()).unwrap();
        let single = decide(
            &AssertionState::default(),
            issue(
                jane(),
                AssertionTerms {
                    narrative: "cohort 1".into(),
                    ..Default::default()
                },
            ),
        )
        .unwrap();
        assert_eq!(vec![plan.issue[0].1.clone()], single);
    }

    #[test]
    fn bulk_skips_invalid_recipients_with_the_reason() {
        let plan = plan_bulk_issue(
            bulk(
                vec![by_email("nope"), by_email("ok@x.io"), Recipient::default()],
                false,
            ),
            nobody,
            ids(),
        )
        .unwrap();
        assert_eq!(
            issued_recipients(&plan),
            [("as-1".into(), "ok@x.io".into())]
        );
        assert_eq!(
            reasons(&plan),
            [
                (
                    "nope",
                    "invalid recipient: email: Enter a valid email address."
                ),
                (
                    "",
                    "invalid recipient: recipient: An email or a username is required."
                ),
            ]
        );
    }

    #[test]
    fn bulk_skips_recipients_who_already_hold_a_valid_assertion() {
        let plan = plan_bulk_issue(
            bulk(vec![by_email("a@x.io"), by_email("b@x.io")], false),
            |r: &Recipient| r.email == "b@x.io",
            ids(),
        )
        .unwrap();
        assert_eq!(issued_recipients(&plan), [("as-1".into(), "a@x.io".into())]);
        assert_eq!(reasons(&plan), [("b@x.io", DUPLICATE)]);
    }

    #[test]
    fn bulk_skips_later_repeats_within_the_request() {
        let plan = plan_bulk_issue(
            bulk(
                vec![
                    jane(),
                    by_email("JANE@example.com"),
                    Recipient {
                        username: "jane".into(),
                        ..Default::default()
                    },
                    by_email("other@x.io"),
                    by_email("other@x.io"),
                ],
                false,
            ),
            nobody,
            ids(),
        )
        .unwrap();
        assert_eq!(
            issued_recipients(&plan),
            [
                ("as-1".into(), "jane@example.com".into()),
                ("as-2".into(), "other@x.io".into())
            ]
        );
        assert_eq!(
            reasons(&plan),
            [
                ("JANE@example.com", DUPLICATE),
                ("", DUPLICATE),
                ("other@x.io", DUPLICATE)
            ]
        );
    }

    #[test]
    fn bulk_with_duplicates_allowed_issues_to_everyone_valid() {
        let plan = plan_bulk_issue(
            bulk(
                vec![by_email("a@x.io"), by_email("a@x.io"), by_email("bad")],
                true,
            ),
            |_: &Recipient| true,
            ids(),
        )
        .unwrap();
        assert_eq!(plan.issue.len(), 2);
        assert_eq!(plan.skipped.len(), 1);
    }

    #[test]
    fn bulk_takes_at_most_5000_recipients() {
        let many = |n: usize| (0..n).map(|i| by_email(&format!("u{i}@x.io"))).collect();
        let plan = plan_bulk_issue(bulk(many(5_000), false), nobody, ids()).unwrap();
        assert_eq!(plan.issue.len(), 5_000);
        let e = plan_bulk_issue(bulk(many(5_001), false), nobody, ids()).unwrap_err();
        assert_eq!(
            (e.kind(), e.field()),
            (RejectionKind::Invalid, Some("recipients"))
        );
    }

    #[test]
    fn bulk_needs_recipients() {
        let e = plan_bulk_issue(bulk(vec![], false), nobody, ids()).unwrap_err();
        assert_eq!(
            (e.kind(), e.field()),
            (RejectionKind::Invalid, Some("recipients"))
        );
    }

    #[test]
    fn bulk_rejects_invalid_shared_terms_as_a_whole() {
        let mut cmd = bulk(vec![jane()], false);
        cmd.terms.expires = Some(t(100));
        let e = plan_bulk_issue(cmd, nobody, ids()).unwrap_err();
        assert_eq!(e.field(), Some("expires"));
        let mut cmd = bulk(vec![jane()], false);
        cmd.platform = "other".into();
        let e = plan_bulk_issue(cmd, nobody, ids()).unwrap_err();
        assert_eq!(e.kind(), RejectionKind::NotFound);
    }

    #[test]
    fn same_recipient_matches_email_ignoring_case_or_username() {
        assert!(same_recipient(&jane(), &by_email("JANE@EXAMPLE.COM")));
        assert!(same_recipient(
            &jane(),
            &Recipient {
                username: "jane".into(),
                ..Default::default()
            }
        ));
        assert!(!same_recipient(&by_email("a@x.io"), &by_email("b@x.io")));
        assert!(!same_recipient(
            &Recipient {
                username: "a".into(),
                ..Default::default()
            },
            &Recipient {
                username: "b".into(),
                ..Default::default()
            }
        ));
    }
}
