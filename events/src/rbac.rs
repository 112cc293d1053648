//! Role-based access control: the events of roles, groups and policies, and
//! the language they speak — resource paths, action patterns, the table that
//! maps each operation on a resource to its action, and the evaluation of a
//! subject's grants against a resource.
//!
//! The model is Azure RBAC's, which ibl.ai's action strings follow:
//! - A **role** is a named set of action patterns (`actions`) and data action
//!   patterns (`data_actions`). The two sets are separate: no pattern in
//!   `actions` grants a data action, and no pattern in `data_actions` grants a
//!   control action.
//! - A **policy** binds one role to resource paths for users and groups. A
//!   subject's permissions are the union of every policy naming it directly
//!   or through a group. There is no deny.
//! - A policy on a resource covers it and everything below it, segment by
//!   segment: `/platforms/1/mentors/5/` covers `/platforms/1/mentors/5/documents/`
//!   but not `/platforms/1/mentors/50/`.
//!
//! Everything here is pure: no I/O, no clock, no id generation.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------
// Streams and ids
// ---------------------------------------------------------------------------

/// The largest id of a role, group, policy or user: ids stay below 2^53 so
/// JavaScript clients read them exactly.
pub const MAX_ID: u64 = (1 << 53) - 1;

/// The id after `highest` (the highest id taken so far, 0 if none), or `None`
/// once ids would reach 2^53. Callers allocate ids; aggregates never do.
pub fn next_id(highest: u64) -> Option<u64> {
    highest.checked_add(1).filter(|id| *id <= MAX_ID)
}

/// Stream of one role.
pub fn role_stream(id: u64) -> String {
    format!("role-{id}")
}
/// Stream of one group.
pub fn group_stream(id: u64) -> String {
    format!("group-{id}")
}
/// Stream of one policy.
pub fn policy_stream(id: u64) -> String {
    format!("policy-{id}")
}

// ---------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------

/// `is_internal`: hidden from tenants and never changed by them (API.md: "Internal
/// policies are never shown to or changed by tenants"). `is_builtin`: created
/// with the platform; visible to tenants but its own fields cannot be changed
/// nor the entity deleted by them. Both are fixed at creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum RoleEvent {
    RoleCreated {
        id: u64,
        /// The platform key.
        platform: String,
        name: String,
        actions: Vec<String>,
        data_actions: Vec<String>,
        is_internal: bool,
        #[serde(default)]
        is_builtin: bool,
        created_at: DateTime<Utc>,
    },
    /// The new values of every writable field.
    RoleUpdated {
        name: String,
        actions: Vec<String>,
        data_actions: Vec<String>,
        updated_at: DateTime<Utc>,
    },
    RoleDeleted {
        deleted_at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum GroupEvent {
    GroupCreated {
        id: u64,
        /// The platform key.
        platform: String,
        unique_id: String,
        /// `""` when the group has no name.
        #[serde(default)]
        name: String,
        #[serde(default)]
        description: String,
        /// The user who created the group.
        owner_id: u64,
        is_internal: bool,
        #[serde(default)]
        is_builtin: bool,
        created_at: DateTime<Utc>,
    },
    /// The new values of every writable field.
    GroupUpdated {
        unique_id: String,
        name: String,
        description: String,
        updated_at: DateTime<Utc>,
    },
    /// Users who were not members, in the order given.
    GroupMembersAdded {
        user_ids: Vec<u64>,
        added_at: DateTime<Utc>,
    },
    /// Users who were members, in the order given.
    GroupMembersRemoved {
        user_ids: Vec<u64>,
        removed_at: DateTime<Utc>,
    },
    GroupDeleted {
        deleted_at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum PolicyEvent {
    PolicyCreated {
        id: u64,
        /// The platform key.
        platform: String,
        /// The platform's integer id: every resource is under
        /// `/platforms/{platform_pk}/`.
        platform_pk: u64,
        name: String,
        role_id: u64,
        /// Resource paths, each ending with `/`.
        resources: Vec<String>,
        user_ids: Vec<u64>,
        group_ids: Vec<u64>,
        is_internal: bool,
        created_at: DateTime<Utc>,
    },
    /// The new values of every writable field.
    PolicyUpdated {
        name: String,
        role_id: u64,
        resources: Vec<String>,
        updated_at: DateTime<Utc>,
    },
    PolicyUsersAdded {
        user_ids: Vec<u64>,
        added_at: DateTime<Utc>,
    },
    PolicyUsersRemoved {
        user_ids: Vec<u64>,
        removed_at: DateTime<Utc>,
    },
    PolicyGroupsAdded {
        group_ids: Vec<u64>,
        added_at: DateTime<Utc>,
    },
    PolicyGroupsRemoved {
        group_ids: Vec<u64>,
        removed_at: DateTime<Utc>,
    },
    PolicyDeleted {
        deleted_at: DateTime<Utc>,
    },
}

// ---------------------------------------------------------------------------
// Resource paths
// ---------------------------------------------------------------------------

/// Longest resource path, in characters.
pub const MAX_RESOURCE_CHARS: usize = 1024;
/// Most resources one permission check may name.
pub const MAX_CHECK_RESOURCES: usize = 100;

/// A hierarchical resource path such as `/platforms/1/mentors/5/`: starts and
/// ends with `/`, at least one segment, no empty segment (`//`), no `.` or
/// `..` segment, no control or whitespace character, at most
/// [`MAX_RESOURCE_CHARS`] characters. Compared exactly (case-sensitive).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourcePath(String);

/// Why a string is not a [`ResourcePath`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourcePathError {
    #[error("Resource paths must start with '/'.")]
    NoLeadingSlash,
    #[error("Resource paths must end with '/'.")]
    NoTrailingSlash,
    #[error("Resource paths must name at least one segment.")]
    Root,
    #[error("Resource paths may not contain empty segments ('//').")]
    EmptySegment,
    #[error("Resource paths may not contain '.' or '..' segments.")]
    DotSegment,
    #[error("Resource paths may not contain control or whitespace characters.")]
    ControlCharacter,
    #[error("Resource paths have at most {MAX_RESOURCE_CHARS} characters.")]
    TooLong,
}

impl ResourcePath {
    /// Parses a path exactly as given.
    pub fn parse(s: &str) -> Result<Self, ResourcePathError> {
        Self::validate(s)?;
        Ok(Self(s.to_owned()))
    }

    /// [`parse`](Self::parse), keeping the string it is given.
    pub fn parse_owned(s: String) -> Result<Self, (String, ResourcePathError)> {
        match Self::validate(&s) {
            Ok(()) => Ok(Self(s)),
            Err(e) => Err((s, e)),
        }
    }

    fn validate(s: &str) -> Result<(), ResourcePathError> {
        let ascii = s.is_ascii();
        if s.len() > MAX_RESOURCE_CHARS && (ascii || s.chars().count() > MAX_RESOURCE_CHARS) {
            return Err(ResourcePathError::TooLong);
        }
        let bad = if ascii {
            // The ASCII control and whitespace characters, byte by byte.
            s.bytes().any(|b| b <= b' ' || b == 0x7f)
        } else {
            s.chars().any(|c| c.is_control() || c.is_whitespace())
        };
        if bad {
            return Err(ResourcePathError::ControlCharacter);
        }
        if !s.starts_with('/') {
            return Err(ResourcePathError::NoLeadingSlash);
        }
        if !s.ends_with('/') {
            return Err(ResourcePathError::NoTrailingSlash);
        }
        if s == "/" {
            return Err(ResourcePathError::Root);
        }
        // Each segment sits between two '/' (the path starts and ends with one).
        let bytes = s.as_bytes();
        let mut start = 1;
        for end in (1..bytes.len()).filter(|&i| bytes[i] == b'/') {
            match &bytes[start..end] {
                b"" => return Err(ResourcePathError::EmptySegment),
                b"." | b".." => return Err(ResourcePathError::DotSegment),
                _ => start = end + 1,
            }
        }
        Ok(())
    }

    /// Parses a path, adding a missing trailing `/` first (policies written
    /// as in the seed's example, `/platforms/1/mentors`, are accepted). The
    /// leading `/` is still required.
    pub fn parse_lenient(s: &str) -> Result<Self, ResourcePathError> {
        if s.starts_with('/') && !s.ends_with('/') {
            Self::parse(&format!("{s}/"))
        } else {
            Self::parse(s)
        }
    }

    /// `/platforms/{pk}/`, the root of one platform's resources.
    pub fn platform_root(platform_pk: u64) -> Self {
        Self(format!("/platforms/{platform_pk}/"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The segments, from the root: `/platforms/1/` gives `platforms`, `1`.
    pub fn segments(&self) -> std::str::Split<'_, char> {
        self.0[1..self.0.len() - 1].split('/')
    }

    /// The last segment.
    pub fn last_segment(&self) -> &str {
        let inner = &self.0[..self.0.len() - 1];
        &inner[inner.rfind('/').map_or(0, |i| i + 1)..]
    }

    /// Whether this path is `ancestor` or below it, segment by segment:
    /// `/platforms/1/mentors/5/` is within `/platforms/1/` and itself, not
    /// within `/platforms/1/mentors/50/`. (Both paths end with `/` and have
    /// no empty segment, so a string prefix is a segment prefix.)
    pub fn is_within(&self, ancestor: &ResourcePath) -> bool {
        self.0.starts_with(&ancestor.0)
    }

    /// The platform id of a path under `/platforms/{pk}/`.
    pub fn platform_pk(&self) -> Option<u64> {
        let mut segments = self.segments();
        if segments.next() != Some("platforms") {
            return None;
        }
        let pk = segments.next()?;
        if pk.starts_with('+') {
            return None;
        }
        pk.parse().ok()
    }
}

impl fmt::Display for ResourcePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ResourcePath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for ResourcePath {
    type Err = ResourcePathError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for ResourcePath {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ResourcePath {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = Cow::<str>::deserialize(deserializer)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Why the resources of a permission check were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourcesError {
    #[error("Ensure this field has no more than {MAX_CHECK_RESOURCES} elements.")]
    TooMany,
    #[error("{value:?}: {error}")]
    Invalid {
        /// Position in the list.
        index: usize,
        value: String,
        error: ResourcePathError,
    },
}

/// Parses the resources of one permission check: at most
/// [`MAX_CHECK_RESOURCES`], each exactly as a [`ResourcePath`] (no lenient
/// trailing slash: a check of `/platforms/1` is a 400).
pub fn parse_check_resources<S: Into<String>>(
    resources: Vec<S>,
) -> Result<Vec<ResourcePath>, ResourcesError> {
    if resources.len() > MAX_CHECK_RESOURCES {
        return Err(ResourcesError::TooMany);
    }
    resources
        .into_iter()
        .enumerate()
        .map(|(index, value)| {
            ResourcePath::parse_owned(value.into()).map_err(|(value, error)| {
                ResourcesError::Invalid {
                    index,
                    value,
                    error,
                }
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Action patterns
// ---------------------------------------------------------------------------

/// Longest action pattern, in characters.
pub const MAX_ACTION_CHARS: usize = 255;

/// An action or a pattern of actions, `{Provider}.{Namespace}/{Resource}/{Operation}`
/// (data actions add a field: `Ibl.Mentor/Settings/display_name/read`).
///
/// Grammar: tokens of `A-Za-z0-9_-` separated by `.` or `/`; no empty token
/// (no leading, trailing or doubled separator); at most [`MAX_ACTION_CHARS`]
/// characters. A token may be `*`, and `*` only ever stands as a whole token:
/// - a final `*` matches any non-empty rest of the action (`*` alone matches
///   every action, `Ibl.*` every `Ibl.` action, `Ibl.Mentor/*` every mentor
///   action);
/// - a `*` elsewhere matches exactly one token (`Ibl.Mentor/Settings/*/read`
///   matches `Ibl.Mentor/Settings/display_name/read`, not
///   `Ibl.Mentor/Settings/a/b/read`).
///
/// `Ibl.Men*` (a `*` inside a token) is not a pattern: parsing rejects it
/// with [`ActionPatternError::PartialWildcard`]. Matching ignores ASCII case,
/// as Azure's does. Nothing else is checked: a tenant may name actions this
/// service does not know; they grant nothing until some operation uses them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ActionPattern(String);

/// Why a string is not an [`ActionPattern`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionPatternError {
    #[error("Actions may not be blank.")]
    Empty,
    #[error("Actions have at most {MAX_ACTION_CHARS} characters.")]
    TooLong,
    #[error("Actions may only contain letters, digits, '_', '-', '.', '/' and '*' (found {0:?}).")]
    InvalidCharacter(char),
    #[error("Actions may not contain empty segments.")]
    EmptySegment,
    #[error("'*' must stand for a whole segment, as in 'Ibl.*' or 'Ibl.Mentor/*'.")]
    PartialWildcard,
}

fn is_separator(b: u8) -> bool {
    b == b'.' || b == b'/'
}

impl ActionPattern {
    pub fn parse(s: &str) -> Result<Self, ActionPatternError> {
        if s.is_empty() {
            return Err(ActionPatternError::Empty);
        }
        if s.len() > MAX_ACTION_CHARS {
            // Every valid character is one byte, so this is the character count
            // unless an invalid character is present.
            if let Some(c) = s.chars().find(|c| !c.is_ascii()) {
                return Err(ActionPatternError::InvalidCharacter(c));
            }
            return Err(ActionPatternError::TooLong);
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "_-./*".contains(*c)))
        {
            return Err(ActionPatternError::InvalidCharacter(c));
        }
        for token in s.split(['.', '/']) {
            if token.is_empty() {
                return Err(ActionPatternError::EmptySegment);
            }
            if token.contains('*') && token != "*" {
                return Err(ActionPatternError::PartialWildcard);
            }
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the pattern has a `*`.
    pub fn is_wildcard(&self) -> bool {
        self.0.contains('*')
    }

    /// Whether `action` is one of the actions this pattern names. Allocates
    /// nothing.
    pub fn matches(&self, action: &str) -> bool {
        let p = self.0.as_bytes();
        let a = action.as_bytes();
        let (mut i, mut j) = (0, 0);
        loop {
            if i == p.len() {
                return j == a.len();
            }
            if p[i] == b'*' {
                if i + 1 == p.len() {
                    return j < a.len();
                }
                let start = j;
                while j < a.len() && !is_separator(a[j]) {
                    j += 1;
                }
                if j == start {
                    return false;
                }
            } else {
                if j == a.len() || !p[i].eq_ignore_ascii_case(&a[j]) {
                    return false;
                }
                j += 1;
            }
            i += 1;
        }
    }
}

impl ActionPattern {
    /// Whether every action `other` names is also named by this pattern
    /// (`Ibl.*` covers `Ibl.Mentor/*`; `Ibl.Mentor/*` does not cover
    /// `Ibl.*`). Sound, not complete across patterns: a union of several
    /// patterns that together cover `other` is not seen here (the escalation
    /// rule then asks for one pattern that does).
    pub fn covers(&self, other: &ActionPattern) -> bool {
        let mine = tokens(&self.0);
        let theirs = tokens(&other.0);
        for (i, (token, separator)) in mine.iter().enumerate() {
            let last = i + 1 == mine.len();
            if *token == "*" && last {
                // Any non-empty rest: `other` has at least one more token.
                return i < theirs.len();
            }
            let Some((their_token, their_separator)) = theirs.get(i) else {
                return false;
            };
            if *token == "*" {
                // Exactly one token: a final `*` of `other` may span several.
                if *their_token == "*" && i + 1 == theirs.len() {
                    return false;
                }
            } else if *their_token == "*" || !token.eq_ignore_ascii_case(their_token) {
                return false;
            }
            if separator != their_separator {
                return false;
            }
        }
        mine.len() == theirs.len()
    }
}

/// The tokens of a pattern, each with the separator after it (`None` for
/// the last).
fn tokens(s: &str) -> Vec<(&str, Option<u8>)> {
    let mut out = Vec::with_capacity(4);
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        if is_separator(b) {
            out.push((&s[start..i], Some(b)));
            start = i + 1;
        }
    }
    out.push((&s[start..], None));
    out
}

impl fmt::Display for ActionPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ActionPattern {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for ActionPattern {
    type Err = ActionPatternError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for ActionPattern {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ActionPattern {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = Cow::<str>::deserialize(deserializer)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

// ---------------------------------------------------------------------------
// The operation table
// ---------------------------------------------------------------------------

/// Which set of a role an operation's action is looked up in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActionKind {
    /// Matched against a role's `actions`.
    Action,
    /// Matched against a role's `data_actions`.
    DataAction,
}

/// One operation on a resource and the action it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operation {
    /// The key in a permission check's answer (`list`, `read`, `chat`, ...).
    pub name: &'static str,
    /// The action; `{id}` stands for the instance's last path segment (data
    /// actions on one field: `Ibl.Mentor/Settings/{id}/read`).
    pub action: &'static str,
    pub kind: ActionKind,
}

impl Operation {
    /// The concrete action for a resource whose last segment is `id`.
    /// Borrows unless the action has an `{id}` placeholder.
    pub fn action_for(&self, id: &str) -> Cow<'static, str> {
        if self.action.contains("{id}") {
            Cow::Owned(self.action.replace("{id}", id))
        } else {
            Cow::Borrowed(self.action)
        }
    }
}

/// Whether a path names a collection of a type or one instance of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    Collection,
    Instance,
}

/// One row of the operation table: a resource type, named by its path
/// segment, with the operations on its collection and on one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceType {
    /// The path segment that names the type (`mentors`).
    pub segment: &'static str,
    pub collection: &'static [Operation],
    pub instance: &'static [Operation],
}

impl ResourceType {
    pub fn operations(&self, kind: ResourceKind) -> &'static [Operation] {
        match kind {
            ResourceKind::Collection => self.collection,
            ResourceKind::Instance => self.instance,
        }
    }

    /// The operation of this name on a collection or an instance.
    pub fn operation(&self, kind: ResourceKind, name: &str) -> Option<&'static Operation> {
        self.operations(kind).iter().find(|op| op.name == name)
    }
}

const fn op(name: &'static str, action: &'static str) -> Operation {
    Operation {
        name,
        action,
        kind: ActionKind::Action,
    }
}

const fn data_op(name: &'static str, action: &'static str) -> Operation {
    Operation {
        name,
        action,
        kind: ActionKind::DataAction,
    }
}

/// A type with `list`/`create` on its collection and `read`/`write`/`delete`
/// on an instance, under one action prefix.
macro_rules! crud {
    ($segment:literal, $prefix:literal) => {
        ResourceType {
            segment: $segment,
            collection: &[
                op("list", concat!($prefix, "/list")),
                op("create", concat!($prefix, "/action")),
            ],
            instance: &[
                op("read", concat!($prefix, "/read")),
                op("write", concat!($prefix, "/write")),
                op("delete", concat!($prefix, "/delete")),
            ],
        }
    };
}

/// The chat action, on the mentors collection and on each mentor.
pub const CHAT_ACTION: &str = "Ibl.Mentor/Chat/action";

/// Every resource type and the action each operation needs. The permission
/// check and the API's own guards both read this table.
///
/// | segment | collection | instance |
/// |---|---|---|
/// | `platforms` | list, create: `Ibl.Core/Platforms/{list,action}` | read, write, delete: `Ibl.Core/Platforms/{read,write,delete}` |
/// | `users` | `Ibl.Core/Users/…` | same pattern |
/// | `groups`, `roles`, `policies` | `Ibl.Core/{Groups,Roles,Policies}/…` | same pattern |
/// | `api-keys`, `api-tokens` | `Ibl.Core/ApiKeys/…` | same pattern |
/// | `mentors` | list, create, chat (`Ibl.Mentor/Chat/action`) | read, write, delete, chat |
/// | `documents` | `Ibl.Mentor/Documents/…` | same pattern |
/// | `settings` | read, write: `Ibl.Mentor/Settings/{read,write}` | read, write as data actions `Ibl.Mentor/Settings/{field}/{read,write}` |
/// | `credentials`, `assertions`, `issuers` | `Ibl.Credentials/{Credentials,Assertions,Issuers}/…` | same pattern |
/// | `audit` | read: `Ibl.Core/Audit/read` | read: `Ibl.Core/Audit/read` |
pub static RESOURCE_TYPES: &[ResourceType] = &[
    crud!("platforms", "Ibl.Core/Platforms"),
    crud!("users", "Ibl.Core/Users"),
    crud!("groups", "Ibl.Core/Groups"),
    crud!("roles", "Ibl.Core/Roles"),
    crud!("policies", "Ibl.Core/Policies"),
    crud!("api-keys", "Ibl.Core/ApiKeys"),
    crud!("api-tokens", "Ibl.Core/ApiKeys"),
    ResourceType {
        segment: "mentors",
        collection: &[
            op("list", "Ibl.Mentor/Mentors/list"),
            op("create", "Ibl.Mentor/Mentors/action"),
            op("chat", CHAT_ACTION),
        ],
        instance: &[
            op("read", "Ibl.Mentor/Mentors/read"),
            op("write", "Ibl.Mentor/Mentors/write"),
            op("delete", "Ibl.Mentor/Mentors/delete"),
            op("chat", CHAT_ACTION),
        ],
    },
    crud!("documents", "Ibl.Mentor/Documents"),
    ResourceType {
        segment: "settings",
        collection: &[
            op("read", "Ibl.Mentor/Settings/read"),
            op("write", "Ibl.Mentor/Settings/write"),
        ],
        instance: &[
            data_op("read", "Ibl.Mentor/Settings/{id}/read"),
            data_op("write", "Ibl.Mentor/Settings/{id}/write"),
        ],
    },
    crud!("credentials", "Ibl.Credentials/Credentials"),
    crud!("assertions", "Ibl.Credentials/Assertions"),
    crud!("issuers", "Ibl.Credentials/Issuers"),
    // The history of a platform (`/platforms/{pk}/audit/`): read only.
    ResourceType {
        segment: "audit",
        collection: &[op("read", "Ibl.Core/Audit/read")],
        instance: &[op("read", "Ibl.Core/Audit/read")],
    },
];

/// The row of the type named by this path segment.
pub fn resource_type(segment: &str) -> Option<&'static ResourceType> {
    RESOURCE_TYPES.iter().find(|t| t.segment == segment)
}

/// What a path names: a path whose last segment is a type name is that
/// type's collection (`/platforms/1/mentors/`); a path whose last segment
/// follows a type name is an instance of it (`/platforms/1/mentors/5/`,
/// `/platforms/1/`). Anything else is unknown: `None`.
pub fn classify(path: &ResourcePath) -> Option<(&'static ResourceType, ResourceKind)> {
    let last = path.last_segment();
    if let Some(t) = resource_type(last) {
        return Some((t, ResourceKind::Collection));
    }
    let parent = path.segments().rev().nth(1)?;
    resource_type(parent).map(|t| (t, ResourceKind::Instance))
}

/// The operations a permission check answers for this path. A path of an
/// unknown type has none (its answer is `{}`): nothing is granted on a
/// resource the table does not know.
pub fn operations_for(path: &ResourcePath) -> &'static [Operation] {
    classify(path).map_or(&[], |(t, kind)| t.operations(kind))
}

// ---------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------

/// How a policy reaches the subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Via {
    /// The policy names the user.
    Direct,
    /// The policy names this group, of which the user is a member.
    Group(u64),
}

/// One policy as it applies to one subject: its resources and its role's
/// patterns, parsed. The query side builds these from its read models (one
/// per policy and path to the subject) and may keep them cached; the
/// resources are shared by every grant of the policy and the patterns by
/// every grant of the role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub policy_id: u64,
    pub role_id: u64,
    pub via: Via,
    pub resources: Arc<[ResourcePath]>,
    pub actions: Arc<[ActionPattern]>,
    pub data_actions: Arc<[ActionPattern]>,
}

impl Grant {
    /// Whether the grant's scope includes `resource` (one of its resources is
    /// `resource` or an ancestor of it).
    pub fn covers(&self, resource: &ResourcePath) -> bool {
        self.resources.iter().any(|r| resource.is_within(r))
    }

    /// Whether the role grants `action` of this kind (scope not considered).
    pub fn permits(&self, action: &str, kind: ActionKind) -> bool {
        let patterns = match kind {
            ActionKind::Action => &self.actions,
            ActionKind::DataAction => &self.data_actions,
        };
        patterns.iter().any(|p| p.matches(action))
    }

    fn because(&self) -> Because {
        Because {
            policy_id: self.policy_id,
            role_id: self.role_id,
            via: self.via,
        }
    }
}

/// The grant that allowed an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Because {
    pub policy_id: u64,
    pub role_id: u64,
    pub via: Via,
}

/// The answer for one operation. `because` is the first grant, in the order
/// given, that allows it; `None` when denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decision {
    pub allowed: bool,
    pub because: Option<Because>,
}

impl Decision {
    pub const DENIED: Decision = Decision {
        allowed: false,
        because: None,
    };

    fn allowed_by(grant: &Grant) -> Self {
        Decision {
            allowed: true,
            because: Some(grant.because()),
        }
    }
}

/// Whether the grants allow `action` (of `kind`) on `resource`: the union of
/// every grant that covers the resource. For guards that know their action.
pub fn authorize(
    grants: &[Grant],
    resource: &ResourcePath,
    action: &str,
    kind: ActionKind,
) -> Decision {
    grants
        .iter()
        .find(|g| g.covers(resource) && g.permits(action, kind))
        .map_or(Decision::DENIED, Decision::allowed_by)
}

/// Whether the grants allow one operation of the table on `resource`.
pub fn evaluate(grants: &[Grant], resource: &ResourcePath, operation: &Operation) -> Decision {
    let action = operation.action_for(resource.last_segment());
    authorize(grants, resource, &action, operation.kind)
}

/// The answer of a permission check for one resource: each operation of its
/// type (see [`operations_for`]) and its decision, by operation name. Index
/// it by name: `answer["read"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer(Vec<(&'static str, Decision)>);

impl Answer {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The decision for one operation, by name.
    pub fn get(&self, operation: &str) -> Option<&Decision> {
        self.0.iter().find(|(n, _)| *n == operation).map(|(_, d)| d)
    }

    /// `(operation, decision)`, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &Decision)> {
        self.0.iter().map(|(n, d)| (*n, d))
    }

    pub fn values(&self) -> impl Iterator<Item = &Decision> {
        self.0.iter().map(|(_, d)| d)
    }
}

impl IntoIterator for Answer {
    type Item = (&'static str, Decision);
    type IntoIter = std::vec::IntoIter<(&'static str, Decision)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl std::ops::Index<&str> for Answer {
    type Output = Decision;

    fn index(&self, operation: &str) -> &Decision {
        self.get(operation)
            .unwrap_or_else(|| panic!("no operation {operation:?} in this answer"))
    }
}

/// The permission check: every operation of `resource`'s type and whether
/// the grants allow it. One pass over the grants that cover the resource;
/// it allocates the answer, and the actions only when a grant covers the
/// resource (a data operation on one field names the field in its action).
pub fn check(grants: &[Grant], resource: &ResourcePath) -> Answer {
    let operations = operations_for(resource);
    let mut answer: Vec<(&'static str, Decision)> = operations
        .iter()
        .map(|op| (op.name, Decision::DENIED))
        .collect();
    let mut covering = grants.iter().filter(|g| g.covers(resource)).peekable();
    if covering.peek().is_some() {
        let id = resource.last_segment();
        let actions: Vec<Cow<'static, str>> =
            operations.iter().map(|op| op.action_for(id)).collect();
        let mut undecided = operations.len();
        for grant in covering {
            if undecided == 0 {
                break;
            }
            let pending = operations.iter().zip(&actions).zip(&mut answer);
            for ((operation, action), (_, decision)) in pending {
                if !decision.allowed && grant.permits(action, operation.kind) {
                    *decision = Decision::allowed_by(grant);
                    undecided -= 1;
                }
            }
        }
    }
    answer.sort_unstable_by_key(|(name, _)| *name);
    Answer(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(s: &str) -> ResourcePath {
        ResourcePath::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    fn pattern(s: &str) -> ActionPattern {
        ActionPattern::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    fn patterns(list: &[&str]) -> Vec<ActionPattern> {
        list.iter().map(|s| pattern(s)).collect()
    }

    fn grant(policy_id: u64, via: Via, resources: &[&str], actions: &[&str]) -> Grant {
        Grant {
            policy_id,
            role_id: policy_id * 10,
            via,
            resources: resources.iter().map(|s| path(s)).collect(),
            actions: patterns(actions).into(),
            data_actions: Arc::new([]),
        }
    }

    // --- pattern coverage

    #[test]
    fn a_pattern_covers_what_it_matches_and_nothing_more() {
        let covers = |a: &str, b: &str| pattern(a).covers(&pattern(b));
        assert!(covers("Ibl.*", "Ibl.Mentor/*"));
        assert!(covers("Ibl.*", "Ibl.Mentor/Mentors/read"));
        assert!(covers("*", "Ibl.*"));
        assert!(covers("Ibl.*", "ibl.core/roles/*"), "case is ignored");
        assert!(covers("Ibl.Mentor/*", "Ibl.Mentor/Settings/*/read"));
        assert!(covers(
            "Ibl.Mentor/Settings/*/read",
            "Ibl.Mentor/Settings/name/read"
        ));
        assert!(covers(
            "Ibl.Mentor/Settings/*/read",
            "Ibl.Mentor/Settings/*/read"
        ));
        assert!(!covers("Ibl.Mentor/*", "Ibl.*"));
        assert!(!covers("Ibl.Core/Roles/*", "Ibl.*"));
        assert!(!covers("Ibl.*", "*"));
        assert!(!covers(
            "Ibl.Mentor/Settings/*/read",
            "Ibl.Mentor/Settings/*"
        ));
        assert!(!covers("Ibl.Mentor/*/read", "Ibl.Mentor/*"));
        assert!(!covers("Ibl.Mentor/Mentors/read", "Ibl.Mentor/Mentors/*"));
        assert!(!covers("Ibl.Mentor/Mentors", "Ibl.Mentor/Mentors/read"));
        assert!(!covers("Ibl.Mentor/Mentors/read", "Ibl.Mentor/Mentors"));
        assert!(!covers("Ibl.*", "Ibl"), "a final * needs a rest");
        assert!(!covers("Ibl/*", "Ibl.x"), "separators must agree");
    }

    /// Every pair of patterns over a small alphabet: `p.covers(q)` holds
    /// exactly when every action of a sample that `q` matches, `p` matches
    /// too (the sample holds every action of up to four tokens over the
    /// same alphabet, so a wrong "covers" shows up as a counterexample).
    #[test]
    fn coverage_agrees_with_matching_on_every_small_pattern() {
        let words = ["a", "b"];
        let seps = [".", "/"];
        let mut actions: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        let mut frontier = actions.clone();
        for _ in 0..3 {
            let mut next = Vec::new();
            for a in &frontier {
                for s in seps {
                    for w in words {
                        next.push(format!("{a}{s}{w}"));
                    }
                }
            }
            actions.extend(next.iter().cloned());
            frontier = next;
        }
        let mut pats: Vec<String> = Vec::new();
        let mut frontier: Vec<String> = vec!["a".into(), "*".into()];
        pats.extend(frontier.iter().cloned());
        for _ in 0..2 {
            let mut next = Vec::new();
            for p in &frontier {
                for s in seps {
                    for w in ["a", "*"] {
                        next.push(format!("{p}{s}{w}"));
                    }
                }
            }
            pats.extend(next.iter().cloned());
            frontier = next;
        }
        for p in &pats {
            for q in &pats {
                let (pp, qq) = (pattern(p), pattern(q));
                let counterexample = actions.iter().find(|a| qq.matches(a) && !pp.matches(a));
                if pp.covers(&qq) {
                    assert_eq!(counterexample, None, "{p} covers {q}");
                } else if !q.ends_with('*') {
                    // Without a final `*`, q's actions are all in the sample.
                    assert!(counterexample.is_some(), "{p} should cover {q}");
                }
            }
        }
    }

    // --- ids and streams

    #[test]
    fn ids_stop_below_2_pow_53() {
        assert_eq!(next_id(0), Some(1));
        assert_eq!(next_id(41), Some(42));
        assert_eq!(next_id(MAX_ID - 1), Some(MAX_ID));
        assert_eq!(next_id(MAX_ID), None);
        assert_eq!(next_id(u64::MAX), None);
    }

    #[test]
    fn one_stream_per_entity() {
        assert_eq!(role_stream(7), "role-7");
        assert_eq!(group_stream(7), "group-7");
        assert_eq!(policy_stream(7), "policy-7");
    }

    // --- resource paths

    #[test]
    fn good_resource_paths_parse() {
        for good in [
            "/platforms/",
            "/platforms/1/",
            "/platforms/1/mentors/5/documents/",
            "/mentors/",
            "/platforms/1/mentors/5/settings/display_name/",
            "/a.b/..c/.../",
            "/ünï/cødé/",
        ] {
            assert_eq!(path(good).as_str(), good);
        }
        let longest = format!("/{}/", "a".repeat(MAX_RESOURCE_CHARS - 2));
        assert!(ResourcePath::parse(&longest).is_ok());
    }

    #[test]
    fn bad_resource_paths_are_refused() {
        use ResourcePathError as E;
        let too_long = format!("/{}/", "a".repeat(MAX_RESOURCE_CHARS - 1));
        let too_long_multibyte = format!("/{}/", "é".repeat(MAX_RESOURCE_CHARS - 1));
        let cases: &[(&str, E)] = &[
            ("", E::NoLeadingSlash),
            ("platforms/1/", E::NoLeadingSlash),
            ("/platforms/1", E::NoTrailingSlash),
            ("/", E::Root),
            ("//", E::EmptySegment),
            ("/platforms//1/", E::EmptySegment),
            ("/platforms/1//", E::EmptySegment),
            ("/platforms/../2/", E::DotSegment),
            ("/platforms/1/../", E::DotSegment),
            ("/./", E::DotSegment),
            ("/platforms/1\0/", E::ControlCharacter),
            ("/platforms/\n1/", E::ControlCharacter),
            ("/plat forms/", E::ControlCharacter),
            ("/platforms/1/\u{7f}/", E::ControlCharacter),
            (&too_long, E::TooLong),
            (&too_long_multibyte, E::TooLong),
        ];
        for (bad, error) in cases {
            assert_eq!(ResourcePath::parse(bad).as_ref(), Err(error), "{bad:?}");
        }
    }

    #[test]
    fn lenient_parsing_adds_only_a_trailing_slash() {
        assert_eq!(
            ResourcePath::parse_lenient("/platforms/1/mentors").unwrap(),
            path("/platforms/1/mentors/")
        );
        assert_eq!(
            ResourcePath::parse_lenient("/platforms/1/").unwrap(),
            path("/platforms/1/")
        );
        assert!(ResourcePath::parse_lenient("platforms/1").is_err());
        assert!(ResourcePath::parse_lenient("/platforms/..").is_err());
        assert!(ResourcePath::parse_lenient("").is_err());
    }

    #[test]
    fn segments_and_last_segment() {
        let p = path("/platforms/1/mentors/5/");
        assert_eq!(
            p.segments().collect::<Vec<_>>(),
            ["platforms", "1", "mentors", "5"]
        );
        assert_eq!(p.last_segment(), "5");
        assert_eq!(path("/platforms/").last_segment(), "platforms");
        assert_eq!(ResourcePath::platform_root(42), path("/platforms/42/"));
    }

    #[test]
    fn platform_pk_of_a_path() {
        assert_eq!(path("/platforms/1/mentors/").platform_pk(), Some(1));
        assert_eq!(path("/platforms/12/").platform_pk(), Some(12));
        assert_eq!(path("/platforms/").platform_pk(), None);
        assert_eq!(path("/platforms/x/").platform_pk(), None);
        assert_eq!(path("/platforms/+1/").platform_pk(), None);
        assert_eq!(path("/mentors/1/").platform_pk(), None);
    }

    #[test]
    fn is_within_is_a_segment_prefix() {
        let mentor5 = path("/platforms/1/mentors/5/");
        assert!(mentor5.is_within(&path("/platforms/1/")));
        assert!(mentor5.is_within(&path("/platforms/")));
        assert!(mentor5.is_within(&mentor5));
        assert!(path("/platforms/1/mentors/5/documents/").is_within(&mentor5));
        assert!(!path("/platforms/1/mentors/50/").is_within(&mentor5));
        assert!(!path("/platforms/1/mentors/").is_within(&mentor5));
        assert!(!path("/platforms/10/").is_within(&path("/platforms/1/")));
        assert!(!path("/platforms/1/").is_within(&path("/platforms/1/mentors/")));
    }

    #[test]
    fn resource_paths_serialize_as_strings_and_parse_on_read() {
        let p = path("/platforms/1/");
        assert_eq!(serde_json::to_value(&p).unwrap(), "/platforms/1/");
        let back: ResourcePath = serde_json::from_str("\"/platforms/1/\"").unwrap();
        assert_eq!(back, p);
        assert!(serde_json::from_str::<ResourcePath>("\"/platforms/1\"").is_err());
    }

    #[test]
    fn check_resources_are_bounded_and_strict() {
        let ok: Vec<String> = (0..MAX_CHECK_RESOURCES)
            .map(|i| format!("/platforms/1/mentors/{i}/"))
            .collect();
        assert_eq!(parse_check_resources(ok.clone()).unwrap().len(), 100);
        let mut too_many = ok.clone();
        too_many.push("/platforms/1/".into());
        assert_eq!(
            parse_check_resources(too_many),
            Err(ResourcesError::TooMany)
        );
        assert_eq!(
            parse_check_resources(vec!["/platforms/1/", "/platforms/1"]),
            Err(ResourcesError::Invalid {
                index: 1,
                value: "/platforms/1".into(),
                error: ResourcePathError::NoTrailingSlash,
            })
        );
        assert!(parse_check_resources(Vec::<&str>::new())
            .unwrap()
            .is_empty());
    }

    // --- action patterns

    #[test]
    fn good_action_patterns_parse() {
        for good in [
            "*",
            "Ibl.*",
            "Ibl.Mentor/*",
            "Ibl.Mentor/Mentors/read",
            "Ibl.Mentor/Settings/*/read",
            "Ibl.Mentor/Settings/display_name/read",
            "Ibl.*/Mentors/read",
            "Ibl.Core/ApiKeys/list",
            "Ibl.Mentor/Settings/some-field/write",
        ] {
            assert_eq!(pattern(good).as_str(), good);
        }
    }

    #[test]
    fn bad_action_patterns_are_refused() {
        use ActionPatternError as E;
        let long = format!("Ibl.{}", "a".repeat(MAX_ACTION_CHARS));
        let cases: &[(&str, E)] = &[
            ("", E::Empty),
            ("Ibl.Men*", E::PartialWildcard),
            ("Ibl.*Mentor", E::PartialWildcard),
            ("**", E::PartialWildcard),
            ("Ibl.Mentor/Mentors/re*d", E::PartialWildcard),
            ("Ibl..Mentor", E::EmptySegment),
            ("Ibl.Mentor//read", E::EmptySegment),
            ("/Ibl.Mentor", E::EmptySegment),
            ("Ibl.Mentor/", E::EmptySegment),
            (".*", E::EmptySegment),
            ("Ibl.Mentor/Mentors/read ", E::InvalidCharacter(' ')),
            ("Ibl.Mentor/Mentörs/read", E::InvalidCharacter('ö')),
            ("Ibl.Mentor/Mentors/read\0", E::InvalidCharacter('\0')),
            ("Ibl.Mentor/?", E::InvalidCharacter('?')),
            (&long, E::TooLong),
        ];
        for (bad, error) in cases {
            assert_eq!(ActionPattern::parse(bad).as_ref(), Err(error), "{bad:?}");
        }
        assert!(ActionPattern::parse(&format!("Ibl.{}", "a".repeat(MAX_ACTION_CHARS - 4))).is_ok());
    }

    #[test]
    fn exact_patterns_match_only_their_action_ignoring_ascii_case() {
        let p = pattern("Ibl.Mentor/Mentors/read");
        assert!(p.matches("Ibl.Mentor/Mentors/read"));
        assert!(p.matches("ibl.mentor/mentors/READ"));
        assert!(!p.matches("Ibl.Mentor/Mentors/write"));
        assert!(!p.matches("Ibl.Mentor/Mentors/read/x"));
        assert!(!p.matches("Ibl.Mentor/Mentors/rea"));
        assert!(!p.matches(""));
    }

    #[test]
    fn a_final_star_matches_any_rest_at_a_segment_boundary() {
        let everything = pattern("*");
        assert!(everything.matches("Ibl.Mentor/Mentors/read"));
        assert!(everything.matches("Other.Thing/x/y"));
        let ibl = pattern("Ibl.*");
        assert!(ibl.matches("Ibl.Mentor/Mentors/read"));
        assert!(ibl.matches("Ibl.Core/Users/list"));
        assert!(!ibl.matches("Iblx.Mentor/Mentors/read"));
        assert!(!ibl.matches("Ibl"));
        assert!(!ibl.matches("Ibl."));
        let mentor = pattern("Ibl.Mentor/*");
        assert!(mentor.matches("Ibl.Mentor/Mentors/read"));
        assert!(mentor.matches("Ibl.Mentor/Chat/action"));
        assert!(mentor.matches("Ibl.Mentor/Settings/display_name/read"));
        assert!(!mentor.matches("Ibl.Mentors/Mentors/read"));
        assert!(!mentor.matches("Ibl.MentorX/Mentors/read"));
        assert!(!mentor.matches("Ibl.Core/Users/list"));
        let mentors = pattern("Ibl.Mentor/Mentors/*");
        assert!(mentors.matches("Ibl.Mentor/Mentors/delete"));
        assert!(!mentors.matches("Ibl.Mentor/Chat/action"));
    }

    #[test]
    fn a_middle_star_matches_exactly_one_segment() {
        let p = pattern("Ibl.Mentor/Settings/*/read");
        assert!(p.matches("Ibl.Mentor/Settings/display_name/read"));
        assert!(p.matches("Ibl.Mentor/Settings/email/read"));
        assert!(!p.matches("Ibl.Mentor/Settings/display_name/write"));
        assert!(!p.matches("Ibl.Mentor/Settings/read"));
        assert!(!p.matches("Ibl.Mentor/Settings//read"));
        assert!(!p.matches("Ibl.Mentor/Settings/a/b/read"));
        let provider = pattern("Ibl.*/Mentors/read");
        assert!(provider.matches("Ibl.Mentor/Mentors/read"));
        assert!(!provider.matches("Ibl.Mentor/Chat/read"));
        assert!(!provider.matches("Ibl.Mentor.X/Mentors/read"));
    }

    // --- the operation table

    fn names(path_str: &str) -> Vec<&'static str> {
        operations_for(&path(path_str))
            .iter()
            .map(|op| op.name)
            .collect()
    }

    #[test]
    fn a_type_name_is_a_collection_and_the_segment_after_it_an_instance() {
        assert_eq!(names("/platforms/1/mentors/"), ["list", "create", "chat"]);
        assert_eq!(
            names("/platforms/1/mentors/42/"),
            ["read", "write", "delete", "chat"]
        );
        assert_eq!(names("/platforms/1/"), ["read", "write", "delete"]);
        assert_eq!(names("/platforms/"), ["list", "create"]);
        assert_eq!(
            names("/platforms/1/mentors/5/documents/"),
            ["list", "create"]
        );
        assert_eq!(
            names("/platforms/1/mentors/5/documents/9/"),
            ["read", "write", "delete"]
        );
        assert_eq!(names("/mentors/"), ["list", "create", "chat"]);
        let (t, kind) = classify(&path("/platforms/1/policies/3/")).unwrap();
        assert_eq!((t.segment, kind), ("policies", ResourceKind::Instance));
    }

    #[test]
    fn unknown_types_have_no_operations() {
        assert!(names("/platforms/1/widgets/").is_empty());
        assert!(names("/platforms/1/widgets/3/").is_empty());
        assert!(names("/foo/").is_empty());
        assert!(names("/platforms/1/mentors/5/chat/").is_empty());
        assert!(classify(&path("/x/")).is_none());
    }

    #[test]
    fn every_required_type_has_its_actions() {
        let expect = |p: &str, op: &str, action: &str| {
            let path = path(p);
            let (t, kind) = classify(&path).unwrap();
            let o = t.operation(kind, op).unwrap_or_else(|| panic!("{p} {op}"));
            assert_eq!(o.action_for(path.last_segment()), action, "{p} {op}");
        };
        expect("/platforms/1/mentors/", "list", "Ibl.Mentor/Mentors/list");
        expect(
            "/platforms/1/mentors/",
            "create",
            "Ibl.Mentor/Mentors/action",
        );
        expect("/platforms/1/mentors/", "chat", "Ibl.Mentor/Chat/action");
        expect("/platforms/1/mentors/5/", "read", "Ibl.Mentor/Mentors/read");
        expect(
            "/platforms/1/mentors/5/",
            "write",
            "Ibl.Mentor/Mentors/write",
        );
        expect(
            "/platforms/1/mentors/5/",
            "delete",
            "Ibl.Mentor/Mentors/delete",
        );
        expect("/platforms/1/mentors/5/", "chat", "Ibl.Mentor/Chat/action");
        for (segment, prefix) in [
            ("credentials", "Ibl.Credentials/Credentials"),
            ("assertions", "Ibl.Credentials/Assertions"),
            ("issuers", "Ibl.Credentials/Issuers"),
            ("users", "Ibl.Core/Users"),
            ("groups", "Ibl.Core/Groups"),
            ("policies", "Ibl.Core/Policies"),
            ("roles", "Ibl.Core/Roles"),
            ("api-keys", "Ibl.Core/ApiKeys"),
            ("api-tokens", "Ibl.Core/ApiKeys"),
            ("documents", "Ibl.Mentor/Documents"),
        ] {
            let collection = format!("/platforms/1/{segment}/");
            let instance = format!("/platforms/1/{segment}/x1/");
            expect(&collection, "list", &format!("{prefix}/list"));
            expect(&collection, "create", &format!("{prefix}/action"));
            expect(&instance, "read", &format!("{prefix}/read"));
            expect(&instance, "write", &format!("{prefix}/write"));
            expect(&instance, "delete", &format!("{prefix}/delete"));
        }
        expect("/platforms/1/", "read", "Ibl.Core/Platforms/read");
        expect("/platforms/", "create", "Ibl.Core/Platforms/action");
        expect(
            "/platforms/1/mentors/5/settings/",
            "read",
            "Ibl.Mentor/Settings/read",
        );
        expect(
            "/platforms/1/mentors/5/settings/display_name/",
            "write",
            "Ibl.Mentor/Settings/display_name/write",
        );
    }

    #[test]
    fn every_action_in_the_table_is_a_valid_pattern_and_names_are_unique() {
        let mut segments = std::collections::HashSet::new();
        for t in RESOURCE_TYPES {
            assert!(segments.insert(t.segment), "duplicate type {}", t.segment);
            for kind in [ResourceKind::Collection, ResourceKind::Instance] {
                let ops = t.operations(kind);
                assert!(!ops.is_empty(), "{} {kind:?}", t.segment);
                let mut seen = std::collections::HashSet::new();
                for o in ops {
                    assert!(seen.insert(o.name), "{} {kind:?} {}", t.segment, o.name);
                    let action = o.action_for("field");
                    let parsed = ActionPattern::parse(&action).unwrap();
                    assert!(!parsed.is_wildcard(), "{action}");
                    assert!(parsed.matches(&action));
                }
            }
        }
    }

    // --- evaluation

    #[test]
    fn a_grant_on_an_ancestor_covers_the_resource() {
        let grants = [grant(
            1,
            Via::Direct,
            &["/platforms/1/"],
            &["Ibl.Mentor/Mentors/read"],
        )];
        let answer = check(&grants, &path("/platforms/1/mentors/5/"));
        assert_eq!(
            answer["read"],
            Decision {
                allowed: true,
                because: Some(Because {
                    policy_id: 1,
                    role_id: 10,
                    via: Via::Direct
                })
            }
        );
        assert_eq!(answer["write"], Decision::DENIED);
        assert_eq!(answer["delete"], Decision::DENIED);
        assert_eq!(answer["chat"], Decision::DENIED);
        assert_eq!(answer.len(), 4);
    }

    #[test]
    fn a_grant_on_a_descendant_or_a_sibling_does_not_cover() {
        let grants = [grant(1, Via::Direct, &["/platforms/1/mentors/5/"], &["*"])];
        let on = |p: &str| check(&grants, &path(p));
        assert!(on("/platforms/1/mentors/5/")["read"].allowed);
        assert!(on("/platforms/1/mentors/5/documents/")["list"].allowed);
        assert!(!on("/platforms/1/mentors/50/")["read"].allowed);
        assert!(!on("/platforms/1/mentors/")["list"].allowed);
        assert!(!on("/platforms/1/")["read"].allowed);
        assert!(!on("/platforms/2/mentors/5/")["read"].allowed);
    }

    #[test]
    fn permissions_are_the_union_of_every_grant() {
        let grants = [
            grant(
                1,
                Via::Direct,
                &["/platforms/1/mentors/5/"],
                &["Ibl.Mentor/Mentors/read"],
            ),
            grant(
                2,
                Via::Group(7),
                &["/platforms/1/"],
                &["Ibl.Mentor/Chat/action"],
            ),
            grant(3, Via::Direct, &["/platforms/2/"], &["Ibl.*"]),
        ];
        let answer = check(&grants, &path("/platforms/1/mentors/5/"));
        assert_eq!(answer["read"].because.unwrap().policy_id, 1);
        assert_eq!(answer["read"].because.unwrap().via, Via::Direct);
        assert_eq!(answer["chat"].because.unwrap().policy_id, 2);
        assert_eq!(answer["chat"].because.unwrap().via, Via::Group(7));
        assert!(!answer["write"].allowed);
        assert!(!answer["delete"].allowed);
    }

    #[test]
    fn the_first_allowing_grant_is_the_reason() {
        let grants = [
            grant(4, Via::Group(9), &["/platforms/1/"], &["Ibl.*"]),
            grant(5, Via::Direct, &["/platforms/1/"], &["Ibl.*"]),
        ];
        let answer = check(&grants, &path("/platforms/1/"));
        for decision in answer.values() {
            assert_eq!(decision.because.unwrap().policy_id, 4);
            assert_eq!(decision.because.unwrap().via, Via::Group(9));
        }
    }

    #[test]
    fn a_grant_with_several_resources_covers_each() {
        let grants = [grant(
            1,
            Via::Direct,
            &["/platforms/1/mentors/5/", "/platforms/1/mentors/6/"],
            &["Ibl.Mentor/Mentors/read"],
        )];
        assert!(check(&grants, &path("/platforms/1/mentors/6/"))["read"].allowed);
        assert!(!check(&grants, &path("/platforms/1/mentors/7/"))["read"].allowed);
    }

    #[test]
    fn actions_never_grant_data_actions_and_vice_versa() {
        let control_only = [grant(1, Via::Direct, &["/platforms/1/"], &["*"])];
        let field = path("/platforms/1/mentors/5/settings/display_name/");
        let answer = check(&control_only, &field);
        assert_eq!(answer.len(), 2);
        assert!(!answer["read"].allowed);
        assert!(!answer["write"].allowed);
        assert!(check(&control_only, &path("/platforms/1/mentors/5/settings/"))["read"].allowed);

        let data_only = [Grant {
            actions: Arc::new([]),
            data_actions: patterns(&["Ibl.Mentor/Settings/*/read"]).into(),
            ..grant(2, Via::Direct, &["/platforms/1/"], &[])
        }];
        let answer = check(&data_only, &field);
        assert!(answer["read"].allowed);
        assert!(!answer["write"].allowed);
        assert!(!check(&data_only, &path("/platforms/1/mentors/5/settings/"))["read"].allowed);
        assert!(
            authorize(
                &data_only,
                &field,
                "Ibl.Mentor/Settings/email/read",
                ActionKind::DataAction
            )
            .allowed
        );
        assert!(
            !authorize(
                &data_only,
                &field,
                "Ibl.Mentor/Settings/email/read",
                ActionKind::Action
            )
            .allowed
        );
    }

    #[test]
    fn nothing_is_granted_without_grants_or_on_unknown_types() {
        let answer = check(&[], &path("/platforms/1/mentors/"));
        assert_eq!(answer.len(), 3);
        assert!(answer.values().all(|d| *d == Decision::DENIED));
        let all = [grant(1, Via::Direct, &["/platforms/1/"], &["*"])];
        assert!(check(&all, &path("/platforms/1/widgets/")).is_empty());
    }

    #[test]
    fn evaluate_answers_one_operation_for_guards() {
        let grants = [grant(
            1,
            Via::Direct,
            &["/platforms/1/"],
            &["Ibl.Credentials/*"],
        )];
        let allowed = |p: &str, name: &str| {
            let resource = path(p);
            let (t, kind) = classify(&resource).unwrap();
            evaluate(&grants, &resource, t.operation(kind, name).unwrap()).allowed
        };
        assert!(allowed("/platforms/1/credentials/", "create"));
        assert!(allowed("/platforms/1/credentials/c-1/", "delete"));
        assert!(!allowed("/platforms/1/mentors/", "create"));
    }
}
