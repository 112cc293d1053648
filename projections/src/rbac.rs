//! The read model of RBAC — platforms, users, roles, groups and policies —
//! with its in-memory adapter, and the check index the permission check
//! reads.
//!
//! Fed by the streams `platforms`, `users`, `role-{id}`, `group-{id}` and
//! `policy-{id}`; every other stream is ignored.
//!
//! **The check index.** For each active user it keeps the [`Grant`]s of
//! every live policy that names the user directly or through a live group,
//! with the role's current patterns, so a check is one hash lookup and a walk
//! over that user's grants, whatever the number of policies. It is kept
//! incrementally: each event marks the users it may affect (reverse indexes
//! policy → users and groups, group → members and policies, role →
//! policies), and at the end of the batch, under the same write lock that
//! moves the checkpoint, only those users are recomputed, each once.
//!
//! Rules of the index (a policy grants nothing unless all hold):
//! - the policy is live; its role exists, is not deleted and belongs to the
//!   policy's platform (or is global, see [`GLOBAL_PLATFORM`]);
//! - the user is registered on the policy's platform and active
//!   (deactivated users have no grants at all);
//! - through a group: the group is live, of the policy's platform, and has
//!   the user as a member.
//!
//! Each user's grants are sorted by policy id, one grant per policy: `Direct`
//! when the policy names the user, else `Group(g)` for the lowest such group.
//! (Further paths to the same policy carry the same resources and patterns,
//! so [`check`](ibl_events::rbac::check) would never report them.)

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use ibl_events::platform::{
    is_platform_stream, user_of_stream, PlatformEvent, UserEvent, USERS_STREAM,
};
use ibl_events::rbac::{
    operations_for, ActionKind, ActionPattern, Because, Grant, GroupEvent, PolicyEvent,
    ResourcePath, RoleEvent, Via,
};
use ibl_events::{DomainEvent, Position, RecordedEvent};
use serde::{Deserialize, Serialize};

use crate::assertions::ReadError;
pub use crate::credentials::Page;
use crate::{Applied, ReadModel};

mod redis_rbac;
pub use redis_rbac::RedisRbac;

/// The platform key of global roles: roles created with no platform (`""`)
/// are listed on every platform that asks for `include_global_roles`, and a
/// policy of any platform may use them. Nothing creates them yet.
pub const GLOBAL_PLATFORM: &str = "";

/// The built-in roles a mentor-access policy may bind, with the short name a
/// mentor-access request uses for each.
pub const MENTOR_ROLES: [(&str, &str); 3] = [
    ("viewer", "Mentor Viewer"),
    ("editor", "Mentor Editor"),
    ("chat", "Mentor Chat"),
];

// ---------------------------------------------------------------------------
// Views
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformRef {
    pub id: u64,
    pub key: String,
    pub name: String,
}

/// A user as RBAC answers name them (`{id, username, email}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRef {
    pub id: u64,
    pub username: String,
    pub email: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RbacUser {
    pub id: u64,
    pub platform_key: String,
    pub username: String,
    pub email: String,
    pub active: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleView {
    pub id: u64,
    /// `""` for a global role.
    pub platform_key: String,
    /// 0 and `""` when the platform is unknown (global roles).
    pub platform_id: u64,
    pub platform_name: String,
    pub name: String,
    pub actions: Vec<String>,
    pub data_actions: Vec<String>,
    pub is_internal: bool,
    pub is_builtin: bool,
}

/// The role of a policy as the policy answer shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRef {
    pub id: u64,
    pub name: String,
    pub actions: Vec<String>,
    pub data_actions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRef {
    pub id: u64,
    pub name: String,
    pub unique_id: String,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    pub id: u64,
    pub unique_id: String,
    pub platform_key: String,
    pub platform_id: u64,
    pub platform_name: String,
    pub name: String,
    pub description: String,
    /// Never missing: an unknown owner is `{id, "", ""}`.
    pub owner: UserRef,
    /// Members, by id (unknown user ids left out).
    pub users: Vec<UserRef>,
    pub is_internal: bool,
    pub is_builtin: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyView {
    pub id: u64,
    pub name: String,
    /// The role as it is now (also when deleted: the policy then grants
    /// nothing but still names it); `{role_id, "", [], []}` if unknown.
    pub role: RoleRef,
    pub platform_key: String,
    pub platform_id: u64,
    pub platform_name: String,
    /// As written in the events.
    pub resources: Vec<String>,
    /// Users named directly, by id (unknown user ids left out).
    pub users: Vec<UserRef>,
    /// Live groups named, by id.
    pub groups: Vec<GroupRef>,
    pub is_internal: bool,
}

/// One user who may do an action on a resource, and the first grant (in the
/// check index's order) that allows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessEntry {
    pub user: UserRef,
    pub policy_id: u64,
    pub role_id: u64,
    pub via: Via,
}

impl AccessEntry {
    /// Why the user holds the action, as a check explains it.
    pub fn because(&self) -> Because {
        Because {
            policy_id: self.policy_id,
            role_id: self.role_id,
            via: self.via,
        }
    }
}

/// Filters of the groups list; each `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct GroupFilter {
    /// Case-insensitive, contained in the name.
    pub name: Option<String>,
    /// The owner's username (exact, case-insensitive) or id.
    pub owner: Option<String>,
    /// Groups with a member of this username (exact, case-insensitive).
    pub username: Option<String>,
    /// Groups with a member of this email (exact, case-insensitive).
    pub email: Option<String>,
}

/// Filters of the policies list (seed 003). Internal policies are never
/// listed.
#[derive(Debug, Clone, Default)]
pub struct PolicyFilter {
    /// Required: lists are always of one platform.
    pub platform_key: String,
    pub role_id: Option<u64>,
    /// Case-insensitive, contained in the name.
    pub name: Option<String>,
    /// Policies naming a user of this username (exact, case-insensitive),
    /// directly or through one of the policy's groups.
    pub username: Option<String>,
    /// The same, by email.
    pub email: Option<String>,
    /// Policies naming a group of this name (exact, case-insensitive).
    pub group: Option<String>,
}

// ---------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------

// The records (`*Rec`) are the source state, written out whole by a
// snapshot; their fields marked `serde(skip)` and every index of `State` are
// derived from them (see `State::rebuild_indexes`).

#[derive(Clone, Serialize, Deserialize)]
struct PlatformRec {
    id: u64,
    name: String,
}

#[derive(Clone, Serialize, Deserialize)]
struct UserRec {
    platform: String,
    username: String,
    email: String,
    active: bool,
}

#[derive(Clone, Serialize, Deserialize)]
struct RoleRec {
    platform: String,
    name: String,
    actions: Vec<String>,
    data_actions: Vec<String>,
    /// `actions` and `data_actions` parsed (entries that do not parse grant
    /// nothing and are left out).
    #[serde(skip)]
    patterns: Arc<[ActionPattern]>,
    #[serde(skip)]
    data_patterns: Arc<[ActionPattern]>,
    is_internal: bool,
    is_builtin: bool,
    deleted: bool,
}

#[derive(Clone, Serialize, Deserialize)]
struct GroupRec {
    platform: String,
    unique_id: String,
    name: String,
    description: String,
    owner_id: u64,
    /// Emptied when the group is deleted.
    members: BTreeSet<u64>,
    is_internal: bool,
    is_builtin: bool,
    deleted: bool,
}

#[derive(Clone, Serialize, Deserialize)]
struct PolicyRec {
    platform: String,
    name: String,
    role_id: u64,
    resources: Vec<String>,
    /// `resources` parsed (entries that do not parse are left out).
    #[serde(skip)]
    paths: Arc<[ResourcePath]>,
    users: BTreeSet<u64>,
    groups: BTreeSet<u64>,
    is_internal: bool,
}

#[derive(Default, Clone)]
struct State {
    checkpoint: Position,
    platforms: HashMap<String, PlatformRec>,
    users: HashMap<u64, UserRec>,
    /// (platform, lowercased username) → users.
    by_username: HashMap<(String, String), BTreeSet<u64>>,
    /// (platform, lowercased email) → users.
    by_email: HashMap<(String, String), BTreeSet<u64>>,
    /// Every role ever created (deleted ones stay, flagged).
    roles: HashMap<u64, RoleRec>,
    /// Per platform, the live roles.
    role_order: HashMap<String, BTreeSet<u64>>,
    /// Every group ever created (deleted ones stay, flagged and emptied).
    groups: HashMap<u64, GroupRec>,
    group_order: HashMap<String, BTreeSet<u64>>,
    /// Live policies only.
    policies: HashMap<u64, PolicyRec>,
    policy_order: HashMap<String, BTreeSet<u64>>,
    /// user → live groups it is a member of.
    user_groups: HashMap<u64, BTreeSet<u64>>,
    /// user → live policies naming it directly.
    user_policies: HashMap<u64, BTreeSet<u64>>,
    /// group → live policies naming it.
    group_policies: HashMap<u64, BTreeSet<u64>>,
    /// role → live policies binding it.
    role_policies: HashMap<u64, BTreeSet<u64>>,
    /// resource path → live policies naming exactly that path.
    resource_policies: HashMap<String, BTreeSet<u64>>,
    /// The check index: active users with at least one grant.
    grants: HashMap<u64, Arc<Vec<Grant>>>,
    /// Users whose grants are recomputed whole at the end of the batch (a
    /// change of the user or of its groups).
    dirty: HashSet<u64>,
    /// Single grants to recompute at the end of the batch, by user: a policy
    /// changed, so only its grant of each member is, whatever else the member
    /// holds (a new policy costs its members, not their other policies).
    dirty_grants: HashMap<u64, BTreeSet<u64>>,
    empty: Arc<Vec<Grant>>,
    /// Whether `touched` is kept (the model a Redis adapter copies from).
    track: bool,
    touched: Touched,
    /// Whether the check index is left out: a user's grants are computed
    /// when asked (a past model folded for a few checks, where keeping the
    /// index of every user it touches costs most of the fold).
    lazy: bool,
}

/// What the events applied since it was last taken changed: the entities
/// to copy as they now are, by id. A policy or group names its platform
/// (a deleted policy has no record left to read it from).
#[derive(Default, Clone)]
pub(crate) struct Touched {
    pub platforms: BTreeSet<String>,
    pub users: BTreeSet<u64>,
    pub roles: BTreeSet<u64>,
    pub groups: BTreeSet<u64>,
    pub policies: BTreeMap<u64, String>,
    /// Users whose grants were recomputed whole.
    pub grants: BTreeSet<u64>,
    /// Single grants recomputed, by user: the policies whose grant of the
    /// user may have changed.
    pub grant_changes: BTreeMap<u64, BTreeSet<u64>>,
}

/// The shape of [`Records`], the snapshot of the RBAC model: bump it whenever
/// `State`'s source fields or the records change shape, so that snapshots
/// written before are ignored and the model is rebuilt from the log.
const SNAPSHOT_VERSION: u32 = 1;

/// What a snapshot holds: the records, borrowed when written, owned when
/// read. Everything else in `State` is derived from them on restore; the
/// checkpoint travels beside them.
#[derive(Serialize, Deserialize)]
struct Records<'a> {
    platforms: Cow<'a, HashMap<String, PlatformRec>>,
    users: Cow<'a, HashMap<u64, UserRec>>,
    /// Deleted roles too, flagged.
    roles: Cow<'a, HashMap<u64, RoleRec>>,
    /// Deleted groups too, flagged and emptied.
    groups: Cow<'a, HashMap<u64, GroupRec>>,
    /// Live policies only.
    policies: Cow<'a, HashMap<u64, PolicyRec>>,
}

/// The in-memory adapter of the RBAC read model.
#[derive(Default)]
pub struct RbacModel {
    state: RwLock<State>,
}

fn lower(s: &str) -> String {
    s.to_lowercase()
}

fn lower_contains(haystack: &str, needle_lower: &str) -> bool {
    haystack.to_lowercase().contains(needle_lower)
}

/// Counts every item and builds views of the page only.
fn page<I: Iterator, T>(
    items: I,
    offset: usize,
    limit: usize,
    mut view: impl FnMut(I::Item) -> T,
) -> Page<T> {
    let mut count = 0;
    let mut out = Vec::new();
    for item in items {
        if count >= offset && out.len() < limit {
            out.push(view(item));
        }
        count += 1;
    }
    Page { count, items: out }
}

fn parse_patterns(list: &[String]) -> Arc<[ActionPattern]> {
    list.iter()
        .filter_map(|a| ActionPattern::parse(a).ok())
        .collect()
}

fn parse_paths(list: &[String]) -> Arc<[ResourcePath]> {
    let mut paths: Vec<ResourcePath> = Vec::with_capacity(list.len());
    for r in list {
        if let Ok(p) = ResourcePath::parse_lenient(r) {
            if !paths.contains(&p) {
                paths.push(p);
            }
        }
    }
    paths.into()
}

/// Every ancestor of a path and the path itself, shortest first:
/// `/platforms/1/mentors/` gives `/platforms/`, `/platforms/1/`,
/// `/platforms/1/mentors/`.
fn ancestors(path: &ResourcePath) -> impl Iterator<Item = &str> {
    let s = path.as_str();
    s.char_indices()
        .skip(1)
        .filter(|(_, c)| *c == '/')
        .map(move |(i, _)| &s[..=i])
}

/// The kind of `action` on `resource`: a data action if the operation table
/// says so for that resource, else a control action.
fn action_kind(resource: &ResourcePath, action: &str) -> ActionKind {
    let id = resource.last_segment();
    operations_for(resource)
        .iter()
        .find(|op| op.action_for(id).eq_ignore_ascii_case(action))
        .map_or(ActionKind::Action, |op| op.kind)
}

/// Marks the grant of policy `pid` of each of `users` for recomputing.
fn mark_grants<'a>(
    dirty: &mut HashMap<u64, BTreeSet<u64>>,
    pid: u64,
    users: impl IntoIterator<Item = &'a u64>,
) {
    for uid in users {
        dirty.entry(*uid).or_default().insert(pid);
    }
}

fn remove_from(index: &mut HashMap<u64, BTreeSet<u64>>, key: u64, value: u64) {
    if let Some(set) = index.get_mut(&key) {
        set.remove(&value);
        if set.is_empty() {
            index.remove(&key);
        }
    }
}

impl State {
    // --- reads

    fn platform_fields(&self, key: &str) -> (u64, String) {
        self.platforms
            .get(key)
            .map_or((0, String::new()), |p| (p.id, p.name.clone()))
    }

    /// A user of `platform` as a view names it (no view names a user of
    /// another tenant).
    fn user_ref_on(&self, platform: &str, id: u64) -> Option<UserRef> {
        self.users
            .get(&id)
            .filter(|u| u.platform == platform)
            .map(|u| UserRef {
                id,
                username: u.username.clone(),
                email: u.email.clone(),
            })
    }

    /// A role a view of `platform` names: the platform's or a global one.
    fn role_on(&self, platform: &str, id: u64) -> Option<&RoleRec> {
        self.roles
            .get(&id)
            .filter(|r| r.platform == platform || r.platform == GLOBAL_PLATFORM)
    }

    fn rbac_user(&self, id: u64) -> Option<RbacUser> {
        self.users.get(&id).map(|u| RbacUser {
            id,
            platform_key: u.platform.clone(),
            username: u.username.clone(),
            email: u.email.clone(),
            active: u.active,
        })
    }

    /// The grants of an active user of `platform`; empty otherwise.
    fn grants_of(&self, platform: &str, user_id: u64) -> Arc<Vec<Grant>> {
        let on_platform = self
            .users
            .get(&user_id)
            .is_some_and(|u| u.active && u.platform == platform);
        match self.grants.get(&user_id) {
            _ if on_platform && self.lazy => Arc::new(self.compute_grants(user_id)),
            Some(grants) if on_platform => grants.clone(),
            _ => self.empty.clone(),
        }
    }

    /// Users of `platform` whose username (or email) is `value`, any case.
    fn users_named(&self, platform: &str, value: &str, by_email: bool) -> Option<&BTreeSet<u64>> {
        let index = if by_email {
            &self.by_email
        } else {
            &self.by_username
        };
        index.get(&(platform.to_owned(), lower(value)))
    }

    /// The one user of that name: the exact spelling if there is one, else
    /// the lowest id of those equal ignoring case.
    fn user_named(&self, platform: &str, value: &str, by_email: bool) -> Option<RbacUser> {
        let ids = self.users_named(platform, value, by_email)?;
        let exact = ids.iter().find(|id| {
            self.users.get(id).is_some_and(|u| {
                if by_email {
                    u.email == value
                } else {
                    u.username == value
                }
            })
        });
        exact
            .or_else(|| ids.iter().next())
            .and_then(|id| self.rbac_user(*id))
    }

    fn role_view(&self, id: u64, r: &RoleRec) -> RoleView {
        let (platform_id, platform_name) = self.platform_fields(&r.platform);
        RoleView {
            id,
            platform_key: r.platform.clone(),
            platform_id,
            platform_name,
            name: r.name.clone(),
            actions: r.actions.clone(),
            data_actions: r.data_actions.clone(),
            is_internal: r.is_internal,
            is_builtin: r.is_builtin,
        }
    }

    fn live_group(&self, id: u64, platform: &str) -> Option<&GroupRec> {
        self.groups
            .get(&id)
            .filter(|g| !g.deleted && g.platform == platform)
    }

    fn group_view(&self, id: u64, g: &GroupRec) -> GroupView {
        let (platform_id, platform_name) = self.platform_fields(&g.platform);
        GroupView {
            id,
            unique_id: g.unique_id.clone(),
            platform_key: g.platform.clone(),
            platform_id,
            platform_name,
            name: g.name.clone(),
            description: g.description.clone(),
            owner: self
                .user_ref_on(&g.platform, g.owner_id)
                .unwrap_or(UserRef {
                    id: g.owner_id,
                    username: String::new(),
                    email: String::new(),
                }),
            users: g
                .members
                .iter()
                .filter_map(|u| self.user_ref_on(&g.platform, *u))
                .collect(),
            is_internal: g.is_internal,
            is_builtin: g.is_builtin,
        }
    }

    fn policy_view(&self, id: u64, p: &PolicyRec) -> PolicyView {
        let (platform_id, platform_name) = self.platform_fields(&p.platform);
        let role = self.role_on(&p.platform, p.role_id).map_or(
            RoleRef {
                id: p.role_id,
                name: String::new(),
                actions: Vec::new(),
                data_actions: Vec::new(),
            },
            |r| RoleRef {
                id: p.role_id,
                name: r.name.clone(),
                actions: r.actions.clone(),
                data_actions: r.data_actions.clone(),
            },
        );
        PolicyView {
            id,
            name: p.name.clone(),
            role,
            platform_key: p.platform.clone(),
            platform_id,
            platform_name,
            resources: p.resources.clone(),
            users: p
                .users
                .iter()
                .filter_map(|u| self.user_ref_on(&p.platform, *u))
                .collect(),
            groups: p
                .groups
                .iter()
                .filter_map(|g| {
                    self.live_group(*g, &p.platform).map(|rec| GroupRef {
                        id: *g,
                        name: rec.name.clone(),
                        unique_id: rec.unique_id.clone(),
                        description: rec.description.clone(),
                    })
                })
                .collect(),
            is_internal: p.is_internal,
        }
    }

    /// The role a policy grants, if it grants any (see the module rules).
    fn effective_role(&self, p: &PolicyRec) -> Option<&RoleRec> {
        self.roles
            .get(&p.role_id)
            .filter(|r| !r.deleted && (r.platform == p.platform || r.platform == GLOBAL_PLATFORM))
    }

    /// Live policies of `platform` naming one of `users` directly or through
    /// a live group.
    fn policies_reaching(&self, platform: &str, users: &BTreeSet<u64>) -> BTreeSet<u64> {
        let mut out: BTreeSet<u64> = BTreeSet::new();
        for uid in users {
            out.extend(self.user_policies.get(uid).into_iter().flatten());
            for gid in self.user_groups.get(uid).into_iter().flatten() {
                if self.live_group(*gid, platform).is_some() {
                    out.extend(self.group_policies.get(gid).into_iter().flatten());
                }
            }
        }
        out
    }

    /// Live, non-internal policies of `platform` whose only resource is
    /// `/platforms/{pk}/mentors/{mentor_id}/` and whose role is one of the
    /// platform's built-in mentor roles.
    fn mentor_policy_ids(&self, platform: &str, mentor_id: u64) -> Vec<u64> {
        let Some(pk) = self.platforms.get(platform).map(|p| p.id) else {
            return Vec::new();
        };
        let path = format!("/platforms/{pk}/mentors/{mentor_id}/");
        self.resource_policies
            .get(&path)
            .into_iter()
            .flatten()
            .copied()
            .filter(|id| {
                self.policies.get(id).is_some_and(|p| {
                    p.platform == platform
                        && !p.is_internal
                        && p.paths.len() == 1
                        && self.roles.get(&p.role_id).is_some_and(|r| {
                            r.is_builtin
                                && r.platform == platform
                                && MENTOR_ROLES.iter().any(|(_, name)| *name == r.name)
                        })
                })
            })
            .collect()
    }

    // --- the check index

    /// Marks the grant of policy `pid` of each user it names, directly or
    /// through a group, for recomputing.
    fn mark_policy_users(&mut self, pid: u64) {
        let Some(p) = self.policies.get(&pid) else {
            return;
        };
        let groups = p.groups.iter().filter_map(|gid| self.groups.get(gid));
        let members = groups.flat_map(|g| g.members.iter());
        mark_grants(&mut self.dirty_grants, pid, p.users.iter().chain(members));
    }

    fn mark_role_users(&mut self, rid: u64) {
        let pids: Vec<u64> = self
            .role_policies
            .get(&rid)
            .into_iter()
            .flatten()
            .copied()
            .collect();
        for pid in pids {
            self.mark_policy_users(pid);
        }
    }

    /// The grants of one user, from scratch.
    fn compute_grants(&self, uid: u64) -> Vec<Grant> {
        let Some(user) = self.users.get(&uid).filter(|u| u.active) else {
            return Vec::new();
        };
        let mut reach: BTreeMap<u64, Via> = BTreeMap::new();
        for pid in self.user_policies.get(&uid).into_iter().flatten() {
            reach.insert(*pid, Via::Direct);
        }
        for gid in self.user_groups.get(&uid).into_iter().flatten() {
            if self.live_group(*gid, &user.platform).is_none() {
                continue;
            }
            for pid in self.group_policies.get(gid).into_iter().flatten() {
                reach.entry(*pid).or_insert(Via::Group(*gid));
            }
        }
        reach
            .into_iter()
            .filter_map(|(pid, via)| self.grant(user, pid, via))
            .collect()
    }

    /// The grant of policy `pid` to user `uid`, if it has one: as
    /// [`Self::compute_grants`] finds it, without the user's other policies
    /// (the first live group in id order when not named directly).
    fn compute_grant(&self, uid: u64, pid: u64) -> Option<Grant> {
        let user = self.users.get(&uid).filter(|u| u.active)?;
        let direct = self
            .user_policies
            .get(&uid)
            .is_some_and(|set| set.contains(&pid));
        let via = if direct {
            Via::Direct
        } else {
            let gid = self.user_groups.get(&uid)?.iter().find(|gid| {
                self.live_group(**gid, &user.platform).is_some()
                    && self
                        .group_policies
                        .get(gid)
                        .is_some_and(|set| set.contains(&pid))
            })?;
            Via::Group(*gid)
        };
        self.grant(user, pid, via)
    }

    /// What policy `pid`, reaching `user` by `via`, grants it, if anything.
    fn grant(&self, user: &UserRec, pid: u64, via: Via) -> Option<Grant> {
        let p = self.policies.get(&pid)?;
        if p.platform != user.platform || p.paths.is_empty() {
            return None;
        }
        let role = self.effective_role(p)?;
        if role.patterns.is_empty() && role.data_patterns.is_empty() {
            return None;
        }
        Some(Grant {
            policy_id: pid,
            role_id: p.role_id,
            via,
            resources: p.paths.clone(),
            actions: role.patterns.clone(),
            data_actions: role.data_patterns.clone(),
        })
    }

    fn flush(&mut self) {
        if self.lazy {
            self.dirty.clear();
            self.dirty_grants.clear();
            return;
        }
        if self.track {
            self.touched.grants.extend(self.dirty.iter().copied());
            for (uid, pids) in &self.dirty_grants {
                let changes = self.touched.grant_changes.entry(*uid).or_default();
                changes.extend(pids.iter().copied());
            }
        }
        for uid in std::mem::take(&mut self.dirty) {
            self.dirty_grants.remove(&uid);
            let grants = self.compute_grants(uid);
            self.set_grants(uid, grants);
        }
        for (uid, pids) in std::mem::take(&mut self.dirty_grants) {
            let changed: Vec<(u64, Option<Grant>)> = pids
                .into_iter()
                .map(|pid| (pid, self.compute_grant(uid, pid)))
                .collect();
            // The user's grants are sorted by policy id.
            let mut grants = self
                .grants
                .remove(&uid)
                .map(Arc::unwrap_or_clone)
                .unwrap_or_default();
            for (pid, grant) in changed {
                match (grants.binary_search_by_key(&pid, |g| g.policy_id), grant) {
                    (Ok(i), Some(g)) => grants[i] = g,
                    (Ok(i), None) => {
                        grants.remove(i);
                    }
                    (Err(i), Some(g)) => grants.insert(i, g),
                    (Err(_), None) => {}
                }
            }
            self.set_grants(uid, grants);
        }
    }

    fn set_grants(&mut self, uid: u64, grants: Vec<Grant>) {
        if grants.is_empty() {
            self.grants.remove(&uid);
        } else {
            self.grants.insert(uid, Arc::new(grants));
        }
    }

    // --- snapshots

    /// The source state, borrowed, for a snapshot.
    fn records(&self) -> Records<'_> {
        Records {
            platforms: Cow::Borrowed(&self.platforms),
            users: Cow::Borrowed(&self.users),
            roles: Cow::Borrowed(&self.roles),
            groups: Cow::Borrowed(&self.groups),
            policies: Cow::Borrowed(&self.policies),
        }
    }

    /// The state of a snapshot: its records at `checkpoint`, every index
    /// rebuilt from them.
    fn from_records(checkpoint: Position, records: Records<'_>) -> Self {
        let mut s = State {
            checkpoint,
            platforms: records.platforms.into_owned(),
            users: records.users.into_owned(),
            roles: records.roles.into_owned(),
            groups: records.groups.into_owned(),
            policies: records.policies.into_owned(),
            ..State::default()
        };
        s.rebuild_indexes();
        s
    }

    /// Derives everything that is not a record, as the event handlers do,
    /// into a state holding records only (its indexes empty).
    fn rebuild_indexes(&mut self) {
        let user_ids: Vec<u64> = self.users.keys().copied().collect();
        for id in &user_ids {
            self.index_user_names(*id, true);
        }
        for (id, r) in &mut self.roles {
            r.patterns = parse_patterns(&r.actions);
            r.data_patterns = parse_patterns(&r.data_actions);
            if !r.deleted {
                self.role_order
                    .entry(r.platform.clone())
                    .or_default()
                    .insert(*id);
            }
        }
        // A deleted group has no members and is in no order.
        for (id, g) in self.groups.iter().filter(|(_, g)| !g.deleted) {
            self.group_order
                .entry(g.platform.clone())
                .or_default()
                .insert(*id);
            for uid in &g.members {
                self.user_groups.entry(*uid).or_default().insert(*id);
            }
        }
        let policy_ids: Vec<u64> = self.policies.keys().copied().collect();
        for id in policy_ids {
            if let Some(p) = self.policies.get_mut(&id) {
                p.paths = parse_paths(&p.resources);
            }
            self.index_policy(id);
        }
        // The check index: every user recomputed (inactive ones get none).
        self.dirty.extend(user_ids);
        self.flush();
    }

    // --- events

    /// Applies one event; events of streams [`is_rbac_stream`] rejects
    /// change nothing.
    fn apply(&mut self, event: &RecordedEvent) -> Result<(), serde_json::Error> {
        let stream = event.stream.as_str();
        let id_of = |prefix: &str| {
            stream
                .strip_prefix(prefix)
                .and_then(|id| id.parse::<u64>().ok())
        };
        if is_platform_stream(stream) {
            match PlatformEvent::from_recorded(event)? {
                PlatformEvent::PlatformCreated { id, key, name, .. } => {
                    if self.track {
                        self.touched.platforms.insert(key.clone());
                    }
                    self.platforms.insert(key, PlatformRec { id, name });
                }
            }
        } else if stream == USERS_STREAM || user_of_stream(stream).is_some() {
            self.apply_user(UserEvent::from_recorded(event)?);
        } else if let Some(id) = id_of("role-") {
            self.apply_role(id, RoleEvent::from_recorded(event)?);
            if self.track {
                self.touched.roles.insert(id);
            }
        } else if let Some(id) = id_of("group-") {
            self.apply_group(id, GroupEvent::from_recorded(event)?);
            if self.track {
                self.touched.groups.insert(id);
            }
        } else if let Some(id) = id_of("policy-") {
            let before = self.policies.get(&id).map(|p| p.platform.clone());
            self.apply_policy(id, PolicyEvent::from_recorded(event)?);
            if self.track {
                let platform = self.policies.get(&id).map(|p| p.platform.clone());
                if let Some(platform) = platform.or(before) {
                    self.touched.policies.insert(id, platform);
                }
            }
        }
        Ok(())
    }

    fn index_user_names(&mut self, id: u64, add: bool) {
        let Some(u) = self.users.get(&id) else {
            return;
        };
        let keys = [
            (false, (u.platform.clone(), lower(&u.username))),
            (true, (u.platform.clone(), lower(&u.email))),
        ];
        for (is_email, key) in keys {
            let index = if is_email {
                &mut self.by_email
            } else {
                &mut self.by_username
            };
            if add {
                index.entry(key).or_default().insert(id);
            } else if let Some(set) = index.get_mut(&key) {
                set.remove(&id);
                if set.is_empty() {
                    index.remove(&key);
                }
            }
        }
    }

    fn apply_user(&mut self, event: UserEvent) {
        if self.track {
            match &event {
                UserEvent::UserRegistered { id, .. }
                | UserEvent::UserUpdated { id, .. }
                | UserEvent::UserDeactivated { id, .. }
                | UserEvent::UserReactivated { id, .. } => {
                    self.touched.users.insert(*id);
                }
                UserEvent::UserImported { .. } => {}
            }
        }
        match event {
            UserEvent::UserRegistered {
                id,
                platform,
                username,
                email,
                ..
            } => {
                if self.users.contains_key(&id) {
                    return;
                }
                self.users.insert(
                    id,
                    UserRec {
                        platform,
                        username,
                        email,
                        active: true,
                    },
                );
                self.index_user_names(id, true);
                self.dirty.insert(id);
            }
            UserEvent::UserUpdated {
                id,
                username,
                email,
                ..
            } => {
                if !self.users.contains_key(&id) {
                    return;
                }
                self.index_user_names(id, false);
                if let Some(u) = self.users.get_mut(&id) {
                    u.username = username;
                    u.email = email;
                }
                self.index_user_names(id, true);
            }
            UserEvent::UserDeactivated { id, .. } | UserEvent::UserReactivated { id, .. } => {
                let active = matches!(event, UserEvent::UserReactivated { .. });
                if let Some(u) = self.users.get_mut(&id) {
                    if u.active != active {
                        u.active = active;
                        self.dirty.insert(id);
                    }
                }
            }
            imported @ UserEvent::UserImported { .. } => {
                for event in imported.expanded() {
                    self.apply_user(event);
                }
            }
        }
    }

    fn apply_role(&mut self, id: u64, event: RoleEvent) {
        match event {
            RoleEvent::RoleCreated {
                platform,
                name,
                actions,
                data_actions,
                is_internal,
                is_builtin,
                ..
            } => {
                if self.roles.contains_key(&id) {
                    return;
                }
                self.role_order
                    .entry(platform.clone())
                    .or_default()
                    .insert(id);
                self.roles.insert(
                    id,
                    RoleRec {
                        platform,
                        name,
                        patterns: parse_patterns(&actions),
                        data_patterns: parse_patterns(&data_actions),
                        actions,
                        data_actions,
                        is_internal,
                        is_builtin,
                        deleted: false,
                    },
                );
                // Policies may have named the id before the role existed.
                self.mark_role_users(id);
            }
            RoleEvent::RoleUpdated {
                name,
                actions,
                data_actions,
                ..
            } => {
                let Some(r) = self.roles.get_mut(&id).filter(|r| !r.deleted) else {
                    return;
                };
                r.name = name;
                let changed = r.actions != actions || r.data_actions != data_actions;
                if changed {
                    r.patterns = parse_patterns(&actions);
                    r.data_patterns = parse_patterns(&data_actions);
                    r.actions = actions;
                    r.data_actions = data_actions;
                    self.mark_role_users(id);
                }
            }
            RoleEvent::RoleDeleted { .. } => {
                let Some(r) = self.roles.get_mut(&id).filter(|r| !r.deleted) else {
                    return;
                };
                r.deleted = true;
                if let Some(order) = self.role_order.get_mut(&r.platform) {
                    order.remove(&id);
                }
                self.mark_role_users(id);
            }
        }
    }

    fn apply_group(&mut self, id: u64, event: GroupEvent) {
        match event {
            GroupEvent::GroupCreated {
                platform,
                unique_id,
                name,
                description,
                owner_id,
                is_internal,
                is_builtin,
                ..
            } => {
                if self.groups.contains_key(&id) {
                    return;
                }
                self.group_order
                    .entry(platform.clone())
                    .or_default()
                    .insert(id);
                self.groups.insert(
                    id,
                    GroupRec {
                        platform,
                        unique_id,
                        name,
                        description,
                        owner_id,
                        members: BTreeSet::new(),
                        is_internal,
                        is_builtin,
                        deleted: false,
                    },
                );
            }
            GroupEvent::GroupUpdated {
                unique_id,
                name,
                description,
                ..
            } => {
                if let Some(g) = self.groups.get_mut(&id).filter(|g| !g.deleted) {
                    g.unique_id = unique_id;
                    g.name = name;
                    g.description = description;
                }
            }
            GroupEvent::GroupMembersAdded { user_ids, .. } => {
                let Some(g) = self.groups.get_mut(&id).filter(|g| !g.deleted) else {
                    return;
                };
                let has_policies = self.group_policies.contains_key(&id);
                for uid in user_ids {
                    if g.members.insert(uid) {
                        self.user_groups.entry(uid).or_default().insert(id);
                        if has_policies {
                            self.dirty.insert(uid);
                        }
                    }
                }
            }
            GroupEvent::GroupMembersRemoved { user_ids, .. } => {
                let Some(g) = self.groups.get_mut(&id).filter(|g| !g.deleted) else {
                    return;
                };
                let has_policies = self.group_policies.contains_key(&id);
                for uid in user_ids {
                    if g.members.remove(&uid) {
                        remove_from(&mut self.user_groups, uid, id);
                        if has_policies {
                            self.dirty.insert(uid);
                        }
                    }
                }
            }
            GroupEvent::GroupDeleted { .. } => {
                let Some(g) = self.groups.get_mut(&id).filter(|g| !g.deleted) else {
                    return;
                };
                g.deleted = true;
                let members = std::mem::take(&mut g.members);
                if let Some(order) = self.group_order.get_mut(&g.platform) {
                    order.remove(&id);
                }
                let has_policies = self.group_policies.contains_key(&id);
                for uid in members {
                    remove_from(&mut self.user_groups, uid, id);
                    if has_policies {
                        self.dirty.insert(uid);
                    }
                }
            }
        }
    }

    fn index_policy_paths(&mut self, pid: u64, paths: &[ResourcePath], add: bool) {
        for path in paths {
            if add {
                self.resource_policies
                    .entry(path.as_str().to_owned())
                    .or_default()
                    .insert(pid);
            } else if let Some(set) = self.resource_policies.get_mut(path.as_str()) {
                set.remove(&pid);
                if set.is_empty() {
                    self.resource_policies.remove(path.as_str());
                }
            }
        }
    }

    /// Adds live policy `id`, already in `policies`, to the indexes that
    /// name it: its platform's order, its role's, its users', its groups' and
    /// its paths'.
    fn index_policy(&mut self, id: u64) {
        let Some(p) = self.policies.get(&id) else {
            return;
        };
        let paths = p.paths.clone();
        self.policy_order
            .entry(p.platform.clone())
            .or_default()
            .insert(id);
        self.role_policies.entry(p.role_id).or_default().insert(id);
        for uid in &p.users {
            self.user_policies.entry(*uid).or_default().insert(id);
        }
        for gid in &p.groups {
            self.group_policies.entry(*gid).or_default().insert(id);
        }
        self.index_policy_paths(id, &paths, true);
    }

    fn change_policy_groups(&mut self, id: u64, group_ids: Vec<u64>, add: bool) {
        let Some(p) = self.policies.get_mut(&id) else {
            return;
        };
        for gid in group_ids {
            let changed = if add {
                p.groups.insert(gid)
            } else {
                p.groups.remove(&gid)
            };
            if !changed {
                continue;
            }
            if add {
                self.group_policies.entry(gid).or_default().insert(id);
            } else {
                remove_from(&mut self.group_policies, gid, id);
            }
            if let Some(g) = self.groups.get(&gid) {
                mark_grants(&mut self.dirty_grants, id, &g.members);
            }
        }
    }

    fn apply_policy(&mut self, id: u64, event: PolicyEvent) {
        match event {
            PolicyEvent::PolicyCreated {
                platform,
                name,
                role_id,
                resources,
                user_ids,
                group_ids,
                is_internal,
                ..
            } => {
                if self.policies.contains_key(&id) {
                    return;
                }
                self.policies.insert(
                    id,
                    PolicyRec {
                        platform,
                        name,
                        role_id,
                        paths: parse_paths(&resources),
                        resources,
                        users: user_ids.into_iter().collect(),
                        groups: group_ids.into_iter().collect(),
                        is_internal,
                    },
                );
                self.index_policy(id);
                self.mark_policy_users(id);
            }
            PolicyEvent::PolicyUpdated {
                name,
                role_id,
                resources,
                ..
            } => {
                let Some(p) = self.policies.get_mut(&id) else {
                    return;
                };
                p.name = name;
                let old_role = p.role_id;
                let mut grants_changed = false;
                if old_role != role_id {
                    p.role_id = role_id;
                    grants_changed = true;
                }
                let mut moved_paths = None;
                if p.resources != resources {
                    let paths = parse_paths(&resources);
                    p.resources = resources;
                    if p.paths != paths {
                        moved_paths = Some(std::mem::replace(&mut p.paths, paths.clone()));
                        grants_changed = true;
                    }
                }
                if old_role != role_id {
                    remove_from(&mut self.role_policies, old_role, id);
                    self.role_policies.entry(role_id).or_default().insert(id);
                }
                if let Some(old) = moved_paths {
                    self.index_policy_paths(id, &old, false);
                    let new = self.policies[&id].paths.clone();
                    self.index_policy_paths(id, &new, true);
                }
                if grants_changed {
                    self.mark_policy_users(id);
                }
            }
            PolicyEvent::PolicyUsersAdded { user_ids, .. } => {
                let Some(p) = self.policies.get_mut(&id) else {
                    return;
                };
                let added: Vec<u64> = user_ids
                    .into_iter()
                    .filter(|u| p.users.insert(*u))
                    .collect();
                for uid in &added {
                    self.user_policies.entry(*uid).or_default().insert(id);
                }
                mark_grants(&mut self.dirty_grants, id, &added);
            }
            PolicyEvent::PolicyUsersRemoved { user_ids, .. } => {
                let Some(p) = self.policies.get_mut(&id) else {
                    return;
                };
                let removed: Vec<u64> =
                    user_ids.into_iter().filter(|u| p.users.remove(u)).collect();
                for uid in &removed {
                    remove_from(&mut self.user_policies, *uid, id);
                }
                mark_grants(&mut self.dirty_grants, id, &removed);
            }
            PolicyEvent::PolicyGroupsAdded { group_ids, .. } => {
                self.change_policy_groups(id, group_ids, true)
            }
            PolicyEvent::PolicyGroupsRemoved { group_ids, .. } => {
                self.change_policy_groups(id, group_ids, false)
            }
            PolicyEvent::PolicyDeleted { .. } => {
                self.mark_policy_users(id);
                let Some(p) = self.policies.remove(&id) else {
                    return;
                };
                self.index_policy_paths(id, &p.paths, false);
                if let Some(order) = self.policy_order.get_mut(&p.platform) {
                    order.remove(&id);
                }
                remove_from(&mut self.role_policies, p.role_id, id);
                for uid in &p.users {
                    remove_from(&mut self.user_policies, *uid, id);
                }
                for gid in &p.groups {
                    remove_from(&mut self.group_policies, *gid, id);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Queries
// ---------------------------------------------------------------------------

impl RbacModel {
    pub fn new() -> Self {
        Self::default()
    }

    /// A model without the check index, a user's grants computed when a
    /// check asks for them: for a past state, folded for a few checks.
    pub fn past() -> Self {
        let model = Self::default();
        model.write().lazy = true;
        model
    }

    /// A copy of the model as it is now, to be moved on without changing
    /// this one (a past state folded further).
    pub fn duplicate(&self) -> Self {
        Self {
            state: RwLock::new(self.read().clone()),
        }
    }

    /// A model that keeps what each batch changed, for an adapter that
    /// copies it ([`crate::rbac::RedisRbac`]).
    pub(crate) fn tracking() -> Self {
        let model = Self::default();
        model.write().track = true;
        model
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    /// What changed since the last call.
    pub(crate) fn take_touched(&self) -> Touched {
        std::mem::take(&mut self.write().touched)
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn platform(&self, key: &str) -> Option<PlatformRef> {
        self.read().platforms.get(key).map(|p| PlatformRef {
            id: p.id,
            key: key.to_owned(),
            name: p.name.clone(),
        })
    }

    /// A user registered on `platform`.
    pub fn user(&self, platform: &str, id: u64) -> Option<RbacUser> {
        self.read()
            .rbac_user(id)
            .filter(|u| u.platform_key == platform)
    }

    /// The user of `platform` with this username: the exact spelling if
    /// there is one, else one equal ignoring case (the lowest id).
    pub fn user_by_username(&self, platform: &str, username: &str) -> Option<RbacUser> {
        self.read().user_named(platform, username, false)
    }

    /// The user of `platform` with this email, as for usernames.
    pub fn user_by_email(&self, platform: &str, email: &str) -> Option<RbacUser> {
        self.read().user_named(platform, email, true)
    }

    /// The platform's live roles, by id, internal ones left out; with the
    /// global roles when asked.
    pub fn roles(
        &self,
        platform: &str,
        name_contains: Option<&str>,
        include_global_roles: bool,
        offset: usize,
        limit: usize,
    ) -> Page<RoleView> {
        let s = self.read();
        let name = name_contains.map(lower);
        let mut ids: BTreeSet<u64> = s.role_order.get(platform).cloned().unwrap_or_default();
        if include_global_roles {
            ids.extend(s.role_order.get(GLOBAL_PLATFORM).into_iter().flatten());
        }
        let matches = ids
            .into_iter()
            .filter_map(|id| s.roles.get(&id).map(|r| (id, r)))
            .filter(|(_, r)| {
                !r.is_internal && name.as_deref().is_none_or(|n| lower_contains(&r.name, n))
            });
        page(matches, offset, limit, |(id, r)| s.role_view(id, r))
    }

    /// A live role of `platform` (or a global role). Internal roles are
    /// returned too, flagged: callers serving tenants must refuse them.
    pub fn role(&self, platform: &str, id: u64) -> Option<RoleView> {
        let s = self.read();
        let r = s
            .roles
            .get(&id)
            .filter(|r| !r.deleted && (r.platform == platform || r.platform == GLOBAL_PLATFORM))?;
        Some(s.role_view(id, r))
    }

    /// Whether role `id` of `platform` existed and was deleted.
    pub fn role_deleted(&self, platform: &str, id: u64) -> bool {
        self.read()
            .roles
            .get(&id)
            .is_some_and(|r| r.deleted && r.platform == platform)
    }

    /// The platform's live groups, by id, internal ones left out.
    pub fn groups(
        &self,
        platform: &str,
        filter: &GroupFilter,
        offset: usize,
        limit: usize,
    ) -> Page<GroupView> {
        let s = self.read();
        let name = filter.name.as_deref().map(lower);
        let owner = filter.owner.as_deref().map(lower);
        // Groups holding a user of that username / email.
        let holding = |value: &Option<String>, by_email: bool| {
            value.as_deref().map(|v| {
                let mut out: BTreeSet<u64> = BTreeSet::new();
                for uid in s.users_named(platform, v, by_email).into_iter().flatten() {
                    out.extend(s.user_groups.get(uid).into_iter().flatten());
                }
                out
            })
        };
        let by_username = holding(&filter.username, false);
        let by_email = holding(&filter.email, true);
        let empty = BTreeSet::new();
        let ids = s.group_order.get(platform).unwrap_or(&empty);
        let matches = ids
            .iter()
            .filter_map(|id| s.groups.get(id).map(|g| (*id, g)))
            .filter(|(id, g)| {
                !g.is_internal
                    && name.as_deref().is_none_or(|n| lower_contains(&g.name, n))
                    && owner.as_deref().is_none_or(|o| {
                        g.owner_id.to_string() == o
                            || s.users
                                .get(&g.owner_id)
                                .is_some_and(|u| u.platform == platform && lower(&u.username) == o)
                    })
                    && by_username.as_ref().is_none_or(|set| set.contains(id))
                    && by_email.as_ref().is_none_or(|set| set.contains(id))
            });
        page(matches, offset, limit, |(id, g)| s.group_view(id, g))
    }

    /// A live group of `platform`. Internal groups are returned too, flagged.
    pub fn group(&self, platform: &str, id: u64) -> Option<GroupView> {
        let s = self.read();
        let g = s.live_group(id, platform)?;
        Some(s.group_view(id, g))
    }

    /// The names an explained check shows for one reason: its policy's, its
    /// role's and, through a group, the group's; read without building their
    /// views (a policy may name thousands of users). `""` for what is gone.
    pub fn because_names(&self, platform: &str, because: &Because) -> (String, String, String) {
        let s = self.read();
        let policy = s
            .policies
            .get(&because.policy_id)
            .filter(|p| p.platform == platform)
            .map(|p| p.name.clone());
        let role = s.role_on(platform, because.role_id).map(|r| r.name.clone());
        let group = match because.via {
            Via::Direct => None,
            Via::Group(id) => s.live_group(id, platform).map(|g| g.name.clone()),
        };
        (
            policy.unwrap_or_default(),
            role.unwrap_or_default(),
            group.unwrap_or_default(),
        )
    }

    /// The live group of `platform` with this `unique_id` (exact), for the
    /// uniqueness check of creates and updates.
    pub fn group_by_unique_id(&self, platform: &str, unique_id: &str) -> Option<GroupView> {
        let s = self.read();
        let ids = s.group_order.get(platform)?;
        ids.iter()
            .filter_map(|id| s.groups.get(id).map(|g| (*id, g)))
            .find(|(_, g)| g.unique_id == unique_id)
            .map(|(id, g)| s.group_view(id, g))
    }

    /// The platform's live policies, by id, filtered; internal ones never.
    pub fn policies(&self, filter: &PolicyFilter, offset: usize, limit: usize) -> Page<PolicyView> {
        let s = self.read();
        let platform = filter.platform_key.as_str();
        let name = filter.name.as_deref().map(lower);
        let reaching = |value: &Option<String>, by_email: bool| {
            value.as_deref().map(|v| {
                let users = s
                    .users_named(platform, v, by_email)
                    .cloned()
                    .unwrap_or_default();
                s.policies_reaching(platform, &users)
            })
        };
        let by_username = reaching(&filter.username, false);
        let by_email = reaching(&filter.email, true);
        let by_group = filter.group.as_deref().map(|group| {
            let group = lower(group);
            let mut out: BTreeSet<u64> = BTreeSet::new();
            for gid in s.group_order.get(platform).into_iter().flatten() {
                if s.groups.get(gid).is_some_and(|g| lower(&g.name) == group) {
                    out.extend(s.group_policies.get(gid).into_iter().flatten());
                }
            }
            out
        });
        let empty = BTreeSet::new();
        let ids = s.policy_order.get(platform).unwrap_or(&empty);
        let matches = ids
            .iter()
            .filter_map(|id| s.policies.get(id).map(|p| (*id, p)))
            .filter(|(id, p)| {
                !p.is_internal
                    && filter.role_id.is_none_or(|r| p.role_id == r)
                    && name.as_deref().is_none_or(|n| lower_contains(&p.name, n))
                    && by_username.as_ref().is_none_or(|set| set.contains(id))
                    && by_email.as_ref().is_none_or(|set| set.contains(id))
                    && by_group.as_ref().is_none_or(|set| set.contains(id))
            });
        page(matches, offset, limit, |(id, p)| s.policy_view(id, p))
    }

    /// A live policy of `platform`. Internal policies are returned too,
    /// flagged: callers serving tenants must refuse them.
    pub fn policy(&self, platform: &str, id: u64) -> Option<PolicyView> {
        let s = self.read();
        let p = s.policies.get(&id).filter(|p| p.platform == platform)?;
        Some(s.policy_view(id, p))
    }

    /// The mentor-access policies of one mentor: live, not internal, whose
    /// resources are exactly `/platforms/{pk}/mentors/{mentor_id}/` and whose
    /// role is one of the platform's built-in mentor roles; by policy id.
    pub fn mentor_policies(&self, platform: &str, mentor_id: u64) -> Vec<PolicyView> {
        let s = self.read();
        s.mentor_policy_ids(platform, mentor_id)
            .into_iter()
            .filter_map(|id| s.policies.get(&id).map(|p| s.policy_view(id, p)))
            .collect()
    }

    /// The one mentor-access policy of that mentor and role; `role` is the
    /// role's name (`Mentor Viewer`) or its short name (`viewer`).
    pub fn mentor_policy(&self, platform: &str, mentor_id: u64, role: &str) -> Option<PolicyView> {
        let s = self.read();
        let role_name = MENTOR_ROLES
            .iter()
            .find(|(short, _)| *short == role)
            .map_or(role, |(_, name)| *name);
        s.mentor_policy_ids(platform, mentor_id)
            .into_iter()
            .filter_map(|id| s.policies.get(&id).map(|p| (id, p)))
            .find(|(_, p)| s.roles.get(&p.role_id).is_some_and(|r| r.name == role_name))
            .map(|(id, p)| s.policy_view(id, p))
    }

    /// The check index of one user: the grants to pass to
    /// [`check`](ibl_events::rbac::check), outside any lock. Empty for an
    /// unknown user, a user of another platform or a deactivated user.
    pub fn grants(&self, platform: &str, user_id: u64) -> Arc<Vec<Grant>> {
        self.read().grants_of(platform, user_id)
    }

    /// The live policies of `platform` that name group `group_id`, each as
    /// the grant it gives the group's members (policies whose role grants
    /// nothing are left out): what adding a member to the group gives them.
    pub fn group_bindings(&self, platform: &str, group_id: u64) -> Vec<Grant> {
        let s = self.read();
        if s.live_group(group_id, platform).is_none() {
            return Vec::new();
        }
        s.group_policies
            .get(&group_id)
            .into_iter()
            .flatten()
            .filter_map(|pid| {
                let p = s.policies.get(pid).filter(|p| p.platform == platform)?;
                let role = s.effective_role(p)?;
                Some(Grant {
                    policy_id: *pid,
                    role_id: p.role_id,
                    via: Via::Group(group_id),
                    resources: p.paths.clone(),
                    actions: role.patterns.clone(),
                    data_actions: role.data_patterns.clone(),
                })
            })
            .collect()
    }

    /// The active users of `platform` holding some grant through a policy on
    /// `resource` or one of its ancestors, with all their grants, by user
    /// id: the candidates for "who holds this on the whole of `resource`"
    /// (tenant admins, with the platform's root).
    pub fn holders_at(
        &self,
        platform: &str,
        resource: &ResourcePath,
    ) -> Vec<(u64, Arc<Vec<Grant>>)> {
        let s = self.read();
        let mut users = BTreeSet::new();
        for prefix in ancestors(resource) {
            for pid in s.resource_policies.get(prefix).into_iter().flatten() {
                let Some(p) = s.policies.get(pid).filter(|p| p.platform == platform) else {
                    continue;
                };
                users.extend(p.users.iter().copied());
                for gid in &p.groups {
                    if let Some(g) = s.live_group(*gid, platform) {
                        users.extend(g.members.iter().copied());
                    }
                }
            }
        }
        users
            .into_iter()
            .map(|uid| (uid, s.grants_of(platform, uid)))
            .filter(|(_, grants)| !grants.is_empty())
            .collect()
    }

    /// Whether the user is registered on `platform` and active.
    pub fn is_active(&self, platform: &str, user_id: u64) -> bool {
        self.read()
            .users
            .get(&user_id)
            .is_some_and(|u| u.active && u.platform == platform)
    }

    /// Who may do `action` on `resource`: the active users of `platform`
    /// holding a grant that covers the resource and permits the action, one
    /// entry per user (the first such grant in the check index's order), by
    /// user id. Whether `action` is a data action is read from the operation
    /// table for that resource.
    ///
    /// Cost: one lookup per ancestor of the path in the resource index, then
    /// the users and group members of the matching policies only.
    pub fn who_has_access(
        &self,
        platform: &str,
        resource: &ResourcePath,
        action: &str,
        offset: usize,
        limit: usize,
    ) -> Page<AccessEntry> {
        let kind = action_kind(resource, action);
        self.who_has_access_of_kind(platform, resource, action, kind, offset, limit)
    }

    /// [`who_has_access`](Self::who_has_access) with the kind of action given.
    pub fn who_has_access_of_kind(
        &self,
        platform: &str,
        resource: &ResourcePath,
        action: &str,
        kind: ActionKind,
        offset: usize,
        limit: usize,
    ) -> Page<AccessEntry> {
        let s = self.read();
        let mut candidates = BTreeSet::new();
        for prefix in ancestors(resource) {
            candidates.extend(s.resource_policies.get(prefix).into_iter().flatten());
        }
        let mut found: BTreeMap<u64, (u64, u64, Via)> = BTreeMap::new();
        let mut reach = |uid: u64, pid: u64, role_id: u64, via: Via| {
            if found.contains_key(&uid) {
                return;
            }
            if s.users
                .get(&uid)
                .is_some_and(|u| u.active && u.platform == platform)
            {
                found.insert(uid, (pid, role_id, via));
            }
        };
        for pid in candidates {
            let Some(p) = s.policies.get(&pid).filter(|p| p.platform == platform) else {
                continue;
            };
            let Some(role) = s.effective_role(p) else {
                continue;
            };
            let patterns = match kind {
                ActionKind::Action => &role.patterns,
                ActionKind::DataAction => &role.data_patterns,
            };
            if !patterns.iter().any(|pat| pat.matches(action)) {
                continue;
            }
            for uid in &p.users {
                reach(*uid, pid, p.role_id, Via::Direct);
            }
            for gid in &p.groups {
                if let Some(g) = s.live_group(*gid, platform) {
                    for uid in &g.members {
                        reach(*uid, pid, p.role_id, Via::Group(*gid));
                    }
                }
            }
        }
        page(
            found.into_iter(),
            offset,
            limit,
            |(uid, (pid, rid, via))| AccessEntry {
                user: s.user_ref_on(platform, uid).unwrap_or(UserRef {
                    id: uid,
                    username: String::new(),
                    email: String::new(),
                }),
                policy_id: pid,
                role_id: rid,
                via,
            },
        )
    }

    /// How many grants the check index holds.
    pub fn grant_count(&self) -> usize {
        self.read().grants.values().map(|g| g.len()).sum()
    }

    /// The heap size of the check index, in bytes, counted from the
    /// capacities of its maps, vectors and strings (allocator overhead not
    /// included).
    pub fn memory_bytes_estimate(&self) -> usize {
        use std::mem::size_of;
        let s = self.read();
        // A hashbrown entry: key, value and one control byte.
        let mut bytes = s.grants.capacity() * (size_of::<u64>() + size_of::<Arc<Vec<Grant>>>() + 1);
        // Slices shared by many grants (a policy's resources, a role's
        // patterns) are counted once, by address.
        let mut shared: HashSet<usize> = HashSet::new();
        let counters = 2 * size_of::<usize>();
        for grants in s.grants.values() {
            // The Arc's two counters and the Vec header, then the elements.
            bytes += counters + size_of::<Vec<Grant>>();
            bytes += grants.capacity() * size_of::<Grant>();
            for g in grants.iter() {
                if shared.insert(g.resources.as_ptr() as usize) {
                    bytes += counters + std::mem::size_of_val(&*g.resources);
                    bytes += g.resources.iter().map(|r| r.as_str().len()).sum::<usize>();
                }
                for patterns in [&g.actions, &g.data_actions] {
                    if !patterns.is_empty() && shared.insert(patterns.as_ptr() as usize) {
                        bytes += counters + std::mem::size_of_val(&**patterns);
                        bytes += patterns.iter().map(|a| a.as_str().len()).sum::<usize>();
                    }
                }
            }
        }
        bytes
    }
}

/// The queries of RBAC the query routes and the guards ask, answered by
/// every adapter: in memory ([`RbacModel`]) or in Redis
/// ([`crate::redis_rbac::RedisRbac`]). The command service decides on its
/// own in-memory model and uses the inherent methods of [`RbacModel`].
#[async_trait::async_trait]
pub trait RbacQueries: Send + Sync + 'static {
    /// Users of `platform` for a check, in one read: for each, `None` when
    /// not registered on it, else whether it is active and its grants
    /// (empty unless active).
    async fn users_grants(
        &self,
        platform: &str,
        user_ids: &[u64],
    ) -> Result<Vec<Option<(bool, Arc<Vec<Grant>>)>>, ReadError>;

    async fn user_by_username(
        &self,
        platform: &str,
        username: &str,
    ) -> Result<Option<RbacUser>, ReadError>;

    async fn user_by_email(
        &self,
        platform: &str,
        email: &str,
    ) -> Result<Option<RbacUser>, ReadError>;

    /// See [`RbacModel::because_names`].
    async fn because_names(
        &self,
        platform: &str,
        because: &Because,
    ) -> Result<(String, String, String), ReadError>;

    async fn roles(
        &self,
        platform: &str,
        name_contains: Option<&str>,
        include_global_roles: bool,
        offset: usize,
        limit: usize,
    ) -> Result<Page<RoleView>, ReadError>;

    async fn role(&self, platform: &str, id: u64) -> Result<Option<RoleView>, ReadError>;

    async fn groups(
        &self,
        platform: &str,
        filter: &GroupFilter,
        offset: usize,
        limit: usize,
    ) -> Result<Page<GroupView>, ReadError>;

    async fn group(&self, platform: &str, id: u64) -> Result<Option<GroupView>, ReadError>;

    async fn policies(
        &self,
        filter: &PolicyFilter,
        offset: usize,
        limit: usize,
    ) -> Result<Page<PolicyView>, ReadError>;

    async fn policy(&self, platform: &str, id: u64) -> Result<Option<PolicyView>, ReadError>;

    async fn mentor_policies(
        &self,
        platform: &str,
        mentor_id: u64,
    ) -> Result<Vec<PolicyView>, ReadError>;

    async fn who_has_access(
        &self,
        platform: &str,
        resource: &ResourcePath,
        action: &str,
        offset: usize,
        limit: usize,
    ) -> Result<Page<AccessEntry>, ReadError>;
}

#[async_trait::async_trait]
impl RbacQueries for RbacModel {
    async fn users_grants(
        &self,
        platform: &str,
        user_ids: &[u64],
    ) -> Result<Vec<Option<(bool, Arc<Vec<Grant>>)>>, ReadError> {
        let s = self.read();
        Ok(user_ids
            .iter()
            .map(|id| {
                let u = s.users.get(id).filter(|u| u.platform == platform)?;
                Some((u.active, s.grants_of(platform, *id)))
            })
            .collect())
    }

    async fn user_by_username(
        &self,
        platform: &str,
        username: &str,
    ) -> Result<Option<RbacUser>, ReadError> {
        Ok(RbacModel::user_by_username(self, platform, username))
    }

    async fn user_by_email(
        &self,
        platform: &str,
        email: &str,
    ) -> Result<Option<RbacUser>, ReadError> {
        Ok(RbacModel::user_by_email(self, platform, email))
    }

    async fn because_names(
        &self,
        platform: &str,
        because: &Because,
    ) -> Result<(String, String, String), ReadError> {
        Ok(RbacModel::because_names(self, platform, because))
    }

    async fn roles(
        &self,
        platform: &str,
        name_contains: Option<&str>,
        include_global_roles: bool,
        offset: usize,
        limit: usize,
    ) -> Result<Page<RoleView>, ReadError> {
        Ok(RbacModel::roles(
            self,
            platform,
            name_contains,
            include_global_roles,
            offset,
            limit,
        ))
    }

    async fn role(&self, platform: &str, id: u64) -> Result<Option<RoleView>, ReadError> {
        Ok(RbacModel::role(self, platform, id))
    }

    async fn groups(
        &self,
        platform: &str,
        filter: &GroupFilter,
        offset: usize,
        limit: usize,
    ) -> Result<Page<GroupView>, ReadError> {
        Ok(RbacModel::groups(self, platform, filter, offset, limit))
    }

    async fn group(&self, platform: &str, id: u64) -> Result<Option<GroupView>, ReadError> {
        Ok(RbacModel::group(self, platform, id))
    }

    async fn policies(
        &self,
        filter: &PolicyFilter,
        offset: usize,
        limit: usize,
    ) -> Result<Page<PolicyView>, ReadError> {
        Ok(RbacModel::policies(self, filter, offset, limit))
    }

    async fn policy(&self, platform: &str, id: u64) -> Result<Option<PolicyView>, ReadError> {
        Ok(RbacModel::policy(self, platform, id))
    }

    async fn mentor_policies(
        &self,
        platform: &str,
        mentor_id: u64,
    ) -> Result<Vec<PolicyView>, ReadError> {
        Ok(RbacModel::mentor_policies(self, platform, mentor_id))
    }

    async fn who_has_access(
        &self,
        platform: &str,
        resource: &ResourcePath,
        action: &str,
        offset: usize,
        limit: usize,
    ) -> Result<Page<AccessEntry>, ReadError> {
        Ok(RbacModel::who_has_access(
            self, platform, resource, action, offset, limit,
        ))
    }
}

/// The records (their maps serialize with sorted keys) and the check index
/// (each user's grants as policy, role and path, sorted): the index is
/// derived from the records, but kept up to date a batch at a time, so a
/// replay checks that too.
impl crate::replay::Digest for RbacModel {
    fn digest(&self, platform: Option<&str>) -> Result<String, String> {
        let s = self.read();
        let mut records = s.records();
        if let Some(p) = platform {
            fn of<K: Clone + Eq + std::hash::Hash, V: Clone>(
                map: &HashMap<K, V>,
                keep: impl Fn(&K, &V) -> bool,
            ) -> Cow<'static, HashMap<K, V>> {
                Cow::Owned(
                    map.iter()
                        .filter(|(k, v)| keep(k, v))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                )
            }
            records = Records {
                platforms: of(&s.platforms, |k, _| k == p),
                users: of(&s.users, |_, u| u.platform == p),
                roles: of(&s.roles, |_, r| r.platform == p),
                groups: of(&s.groups, |_, g| g.platform == p),
                policies: of(&s.policies, |_, x| x.platform == p),
            };
        }
        let grants: BTreeMap<u64, BTreeSet<(u64, u64, Option<u64>)>> = s
            .grants
            .iter()
            .filter(|(user, _)| {
                platform.is_none_or(|p| s.users.get(user).is_some_and(|u| u.platform == p))
            })
            .map(|(user, grants)| {
                let grants = grants.iter().map(|g| {
                    let group = match g.via {
                        Via::Direct => None,
                        Via::Group(group) => Some(group),
                    };
                    (g.policy_id, g.role_id, group)
                });
                (*user, grants.collect())
            })
            .collect();
        crate::replay::of_json(&(records, grants))
    }
}

impl crate::Snapshot for RbacModel {
    fn version(&self) -> u32 {
        SNAPSHOT_VERSION
    }

    fn snapshot(&self) -> (Position, Vec<u8>) {
        let s = self.read();
        let bytes = serde_json::to_vec(&s.records())
            .expect("the records serialize: string and integer keys only");
        (s.checkpoint, bytes)
    }

    fn restore(&self, checkpoint: Position, bytes: &[u8]) -> Result<(), String> {
        // Decoded and indexed outside the lock; swapped in under it.
        let restored = serde_json::from_slice::<Records>(bytes)
            .map(|records| State::from_records(checkpoint, records));
        let mut s = self.write();
        let track = s.track;
        match restored {
            Ok(state) => {
                *s = State { track, ..state };
                Ok(())
            }
            Err(e) => {
                *s = State {
                    track,
                    ..State::default()
                };
                Err(format!("rbac snapshot: {e}"))
            }
        }
    }
}

/// Whether events of `stream` change the RBAC model: platforms, users,
/// roles, groups and policies (what a check at a past time folds).
pub fn is_rbac_stream(stream: &str) -> bool {
    let numbered = |prefix: &str| {
        stream
            .strip_prefix(prefix)
            .is_some_and(|id| id.parse::<u64>().is_ok())
    };
    is_platform_stream(stream)
        || stream == USERS_STREAM
        || user_of_stream(stream).is_some()
        || ["role-", "group-", "policy-"].into_iter().any(numbered)
}

impl ReadModel for RbacModel {
    fn name(&self) -> &'static str {
        "rbac"
    }

    fn checkpoint(&self) -> Position {
        self.read().checkpoint
    }

    fn apply(&self, batch: &[RecordedEvent]) -> Applied {
        let mut s = self.write();
        for event in batch {
            if event.position <= s.checkpoint {
                continue;
            }
            if let Err(error) = s.apply(event) {
                tracing::error!(
                    stream = %event.stream, revision = event.revision, %error,
                    "event skipped by the rbac read model"
                );
            }
            s.checkpoint = event.position;
        }
        s.flush();
        Applied::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use ibl_events::platform::PLATFORMS_STREAM;
    use ibl_events::rbac::{authorize, check};
    use ibl_events::Metadata;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).expect("valid instant")
    }

    fn path(s: &str) -> ResourcePath {
        ResourcePath::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    /// A log of recorded events, positions and revisions assigned in order.
    #[derive(Default, Clone)]
    pub(super) struct Log {
        pub(super) events: Vec<RecordedEvent>,
    }

    impl Log {
        fn push<E: DomainEvent>(&mut self, stream: &str, event: E) -> &mut Self {
            let mut log = crate::testing::Log {
                events: std::mem::take(&mut self.events),
            };
            log.push_with(stream, event, Metadata::default());
            self.events = log.events;
            self
        }

        fn platform(&mut self, id: u64, key: &str) -> &mut Self {
            self.push(
                PLATFORMS_STREAM,
                PlatformEvent::PlatformCreated {
                    id,
                    key: key.into(),
                    name: format!("{key} inc"),
                    created_at: at(0),
                },
            )
        }

        fn user(&mut self, id: u64, platform: &str, username: &str) -> &mut Self {
            self.push(
                USERS_STREAM,
                UserEvent::UserRegistered {
                    id,
                    platform: platform.into(),
                    username: username.into(),
                    email: format!("{username}@{platform}.io"),
                    given_name: String::new(),
                    family_name: String::new(),
                    registered_at: at(0),
                },
            )
        }

        fn user_event(&mut self, event: UserEvent) -> &mut Self {
            self.push(USERS_STREAM, event)
        }

        #[allow(clippy::too_many_arguments)]
        fn role_full(
            &mut self,
            id: u64,
            platform: &str,
            name: &str,
            actions: &[&str],
            data_actions: &[&str],
            is_internal: bool,
            is_builtin: bool,
        ) -> &mut Self {
            self.push(
                &format!("role-{id}"),
                RoleEvent::RoleCreated {
                    id,
                    platform: platform.into(),
                    name: name.into(),
                    actions: strings(actions),
                    data_actions: strings(data_actions),
                    is_internal,
                    is_builtin,
                    created_at: at(0),
                },
            )
        }

        fn role(&mut self, id: u64, platform: &str, name: &str, actions: &[&str]) -> &mut Self {
            self.role_full(id, platform, name, actions, &[], false, false)
        }

        fn role_event(&mut self, id: u64, event: RoleEvent) -> &mut Self {
            self.push(&format!("role-{id}"), event)
        }

        fn group_full(
            &mut self,
            id: u64,
            platform: &str,
            name: &str,
            owner_id: u64,
            members: &[u64],
            is_internal: bool,
        ) -> &mut Self {
            self.push(
                &format!("group-{id}"),
                GroupEvent::GroupCreated {
                    id,
                    platform: platform.into(),
                    unique_id: format!("{platform}-g{id}"),
                    name: name.into(),
                    description: format!("about {name}"),
                    owner_id,
                    is_internal,
                    is_builtin: false,
                    created_at: at(0),
                },
            );
            if !members.is_empty() {
                self.members(id, members, true);
            }
            self
        }

        fn group(
            &mut self,
            id: u64,
            platform: &str,
            name: &str,
            owner: u64,
            m: &[u64],
        ) -> &mut Self {
            self.group_full(id, platform, name, owner, m, false)
        }

        fn members(&mut self, group: u64, user_ids: &[u64], add: bool) -> &mut Self {
            let event = if add {
                GroupEvent::GroupMembersAdded {
                    user_ids: user_ids.to_vec(),
                    added_at: at(1),
                }
            } else {
                GroupEvent::GroupMembersRemoved {
                    user_ids: user_ids.to_vec(),
                    removed_at: at(1),
                }
            };
            self.push(&format!("group-{group}"), event)
        }

        fn group_event(&mut self, id: u64, event: GroupEvent) -> &mut Self {
            self.push(&format!("group-{id}"), event)
        }

        #[allow(clippy::too_many_arguments)]
        fn policy_full(
            &mut self,
            id: u64,
            platform: &str,
            name: &str,
            role_id: u64,
            resources: &[&str],
            users: &[u64],
            groups: &[u64],
            is_internal: bool,
        ) -> &mut Self {
            let platform_pk = if platform == "acme" { 1 } else { 2 };
            self.push(
                &format!("policy-{id}"),
                PolicyEvent::PolicyCreated {
                    id,
                    platform: platform.into(),
                    platform_pk,
                    name: name.into(),
                    role_id,
                    resources: strings(resources),
                    user_ids: users.to_vec(),
                    group_ids: groups.to_vec(),
                    is_internal,
                    created_at: at(0),
                },
            )
        }

        #[allow(clippy::too_many_arguments)]
        fn policy(
            &mut self,
            id: u64,
            platform: &str,
            name: &str,
            role_id: u64,
            resources: &[&str],
            users: &[u64],
            groups: &[u64],
        ) -> &mut Self {
            self.policy_full(id, platform, name, role_id, resources, users, groups, false)
        }

        fn policy_event(&mut self, id: u64, event: PolicyEvent) -> &mut Self {
            self.push(&format!("policy-{id}"), event)
        }
    }

    const ALICE: u64 = 1;
    const BOB: u64 = 2;
    const CAROL: u64 = 3;
    const DAVE: u64 = 4;
    const EVE: u64 = 5;
    const FRANK: u64 = 6;

    /// Two platforms: acme (pk 1) and other (pk 2).
    ///
    /// - alice: tenant admin of acme (internal policy 30, directly and
    ///   through group 21);
    /// - bob and carol: in group Teachers (20), which policy 31 makes Mentor
    ///   Viewers of mentor 5; bob is also named by policy 32 (Editors);
    /// - dave: named by policy 31 directly;
    /// - eve: a user of the other platform, in its own Teachers group (22).
    fn sample() -> Log {
        let mut log = Log::default();
        log.platform(1, "acme").platform(2, "other");
        for (id, platform, name) in [
            (ALICE, "acme", "alice"),
            (BOB, "acme", "bob"),
            (CAROL, "acme", "carol"),
            (DAVE, "acme", "dave"),
            (EVE, "other", "eve"),
        ] {
            log.user(id, platform, name);
        }
        log.role_full(
            10,
            "acme",
            "Mentor Viewer",
            &["Ibl.Mentor/Mentors/read", "Ibl.Mentor/Chat/action"],
            &["Ibl.Mentor/Settings/*/read"],
            false,
            true,
        )
        .role_full(
            11,
            "acme",
            "Tenant Admin",
            &["Ibl.*"],
            &["Ibl.*"],
            false,
            true,
        )
        .role(12, "acme", "Editors", &["Ibl.Mentor/Mentors/write"])
        .role_full(13, "acme", "Secret", &["*"], &[], true, false)
        .role(14, "other", "Other viewer", &["Ibl.Mentor/*"])
        .role(15, GLOBAL_PLATFORM, "Auditor", &["Ibl.*/Mentors/read"])
        .group(20, "acme", "Teachers", ALICE, &[BOB, CAROL])
        .group(21, "acme", "Tenant Admins", ALICE, &[ALICE])
        .group(22, "other", "Teachers", EVE, &[EVE])
        .group_full(23, "acme", "Hidden", ALICE, &[BOB], true)
        .policy_full(
            30,
            "acme",
            "Tenant Admins",
            11,
            &["/platforms/1/"],
            &[ALICE],
            &[21],
            true,
        )
        .policy(
            31,
            "acme",
            "Mentor 5 viewers",
            10,
            &["/platforms/1/mentors/5/"],
            &[DAVE],
            &[20],
        )
        .policy(
            32,
            "acme",
            "Editors of 5",
            12,
            &["/platforms/1/mentors/5/"],
            &[BOB],
            &[],
        )
        .policy(33, "other", "Other", 14, &["/platforms/2/"], &[EVE], &[22]);
        log
    }

    fn model_of(log: &Log) -> RbacModel {
        let model = RbacModel::new();
        model.apply(&log.events);
        model
    }

    fn ids<T>(page: &Page<T>, id: impl Fn(&T) -> u64) -> Vec<u64> {
        page.items.iter().map(id).collect()
    }

    fn policy_ids(model: &RbacModel, filter: PolicyFilter) -> Vec<u64> {
        let page = model.policies(&filter, 0, 100);
        assert_eq!(page.count, page.items.len());
        ids(&page, |p| p.id)
    }

    fn acme_policies() -> PolicyFilter {
        PolicyFilter {
            platform_key: "acme".into(),
            ..PolicyFilter::default()
        }
    }

    /// The operations `user` may do on `resource` (of acme).
    fn allowed(model: &RbacModel, user: u64, resource: &str) -> Vec<&'static str> {
        let grants = model.grants("acme", user);
        check(&grants, &path(resource))
            .into_iter()
            .filter(|(_, d)| d.allowed)
            .map(|(op, _)| op)
            .collect()
    }

    fn can(model: &RbacModel, user: u64, resource: &str, op: &str) -> bool {
        allowed(model, user, resource).contains(&op)
    }

    const M5: &str = "/platforms/1/mentors/5/";

    // --- lists and lookups

    #[test]
    fn policy_lists_hide_internal_policies_and_filter_by_name_role_and_group() {
        let model = model_of(&sample());
        assert_eq!(
            policy_ids(&model, acme_policies()),
            [31, 32],
            "the internal tenant-admin policy is never listed"
        );
        let by = |f: fn(&mut PolicyFilter)| {
            let mut filter = acme_policies();
            f(&mut filter);
            policy_ids(&model, filter)
        };
        assert_eq!(by(|f| f.role_id = Some(12)), [32]);
        assert_eq!(by(|f| f.role_id = Some(11)), Vec::<u64>::new());
        assert_eq!(by(|f| f.name = Some("VIEWERS".into())), [31]);
        assert_eq!(by(|f| f.name = Some("of 5".into())), [32]);
        assert_eq!(by(|f| f.group = Some("teachers".into())), [31]);
        assert_eq!(
            by(|f| f.group = Some("Teach".into())),
            Vec::<u64>::new(),
            "group names match exactly"
        );
        assert_eq!(
            by(|f| {
                f.group = Some("Teachers".into());
                f.role_id = Some(12);
            }),
            Vec::<u64>::new(),
            "filters combine"
        );
        let page = model.policies(&acme_policies(), 1, 1);
        assert_eq!((page.count, ids(&page, |p| p.id)), (2, vec![32]));
    }

    #[test]
    fn policy_lists_match_users_directly_or_through_a_group_ignoring_case() {
        let model = model_of(&sample());
        let by = |username: Option<&str>, email: Option<&str>| {
            policy_ids(
                &model,
                PolicyFilter {
                    username: username.map(str::to_owned),
                    email: email.map(str::to_owned),
                    ..acme_policies()
                },
            )
        };
        assert_eq!(by(Some("BOB"), None), [31, 32], "group 20, and directly");
        assert_eq!(by(Some("carol"), None), [31], "through group 20");
        assert_eq!(by(Some("dave"), None), [31], "directly");
        assert_eq!(by(None, Some("Carol@ACME.io")), [31]);
        assert_eq!(by(Some("bob"), Some("bob@acme.io")), [31, 32]);
        assert_eq!(by(Some("bob"), Some("dave@acme.io")), [31]);
        assert_eq!(by(Some("alice"), None), Vec::<u64>::new(), "internal only");
        assert_eq!(by(Some("bo"), None), Vec::<u64>::new(), "exact match");
        assert_eq!(by(Some("eve"), None), Vec::<u64>::new(), "another platform");
        let other = policy_ids(
            &model,
            PolicyFilter {
                platform_key: "other".into(),
                username: Some("eve".into()),
                ..PolicyFilter::default()
            },
        );
        assert_eq!(other, [33]);
    }

    #[test]
    fn policy_views_carry_the_role_users_groups_and_platform() {
        let model = model_of(&sample());
        let p = model.policy("acme", 31).expect("policy 31");
        assert_eq!(p.name, "Mentor 5 viewers");
        assert_eq!(
            p.role,
            RoleRef {
                id: 10,
                name: "Mentor Viewer".into(),
                actions: strings(&["Ibl.Mentor/Mentors/read", "Ibl.Mentor/Chat/action"]),
                data_actions: strings(&["Ibl.Mentor/Settings/*/read"]),
            }
        );
        assert_eq!(
            (
                p.platform_key.as_str(),
                p.platform_id,
                p.platform_name.as_str()
            ),
            ("acme", 1, "acme inc")
        );
        assert_eq!(p.resources, [M5]);
        assert_eq!(
            p.users,
            [UserRef {
                id: DAVE,
                username: "dave".into(),
                email: "dave@acme.io".into()
            }]
        );
        assert_eq!(
            p.groups,
            [GroupRef {
                id: 20,
                name: "Teachers".into(),
                unique_id: "acme-g20".into(),
                description: "about Teachers".into(),
            }]
        );
        assert!(!p.is_internal);
        assert!(
            model.policy("other", 31).is_none(),
            "scoped to its platform"
        );
        assert!(model.policy("acme", 33).is_none());
        assert!(
            model.policy("acme", 30).is_some_and(|p| p.is_internal),
            "one internal policy is returned flagged, for the caller to refuse"
        );
    }

    #[test]
    fn role_lists_hide_internal_roles_and_add_global_ones_when_asked() {
        let model = model_of(&sample());
        let roles = |platform, name: Option<&str>, global| {
            let page = model.roles(platform, name, global, 0, 100);
            ids(&page, |r| r.id)
        };
        assert_eq!(roles("acme", None, false), [10, 11, 12]);
        assert_eq!(roles("acme", None, true), [10, 11, 12, 15]);
        assert_eq!(roles("acme", Some("MENTOR"), false), [10]);
        assert_eq!(roles("other", None, false), [14]);
        assert_eq!(roles("nowhere", None, false), Vec::<u64>::new());
        let page = model.roles("acme", None, false, 2, 5);
        assert_eq!((page.count, ids(&page, |r| r.id)), (3, vec![12]));

        let viewer = model.role("acme", 10).expect("role 10");
        assert_eq!(viewer.name, "Mentor Viewer");
        assert!(viewer.is_builtin && !viewer.is_internal);
        assert_eq!(
            (viewer.platform_id, viewer.platform_name.as_str()),
            (1, "acme inc")
        );
        assert!(model.role("acme", 14).is_none(), "another platform's role");
        assert!(model.role("other", 10).is_none());
        let global = model.role("other", 15).expect("a global role");
        assert_eq!((global.platform_key.as_str(), global.platform_id), ("", 0));
    }

    #[test]
    fn group_lists_filter_by_name_owner_and_member() {
        let model = model_of(&sample());
        let groups =
            |platform: &str, f: GroupFilter| ids(&model.groups(platform, &f, 0, 100), |g| g.id);
        let all = GroupFilter::default;
        assert_eq!(
            groups("acme", all()),
            [20, 21],
            "the internal group is hidden"
        );
        assert_eq!(groups("other", all()), [22]);
        let f = |name: Option<&str>,
                 owner: Option<&str>,
                 username: Option<&str>,
                 email: Option<&str>| {
            GroupFilter {
                name: name.map(str::to_owned),
                owner: owner.map(str::to_owned),
                username: username.map(str::to_owned),
                email: email.map(str::to_owned),
            }
        };
        assert_eq!(groups("acme", f(Some("teach"), None, None, None)), [20]);
        assert_eq!(groups("acme", f(None, Some("ALICE"), None, None)), [20, 21]);
        assert_eq!(groups("acme", f(None, Some("1"), None, None)), [20, 21]);
        assert_eq!(
            groups("acme", f(None, Some("bob"), None, None)),
            Vec::<u64>::new()
        );
        assert_eq!(groups("acme", f(None, None, Some("Carol"), None)), [20]);
        assert_eq!(
            groups("acme", f(None, None, Some("bob"), None)),
            [20],
            "23 is internal"
        );
        assert_eq!(
            groups("acme", f(None, None, None, Some("ALICE@acme.io"))),
            [21]
        );
        assert_eq!(
            groups("acme", f(None, None, Some("car"), None)),
            Vec::<u64>::new()
        );
        assert_eq!(
            groups("other", f(None, None, Some("bob"), None)),
            Vec::<u64>::new()
        );
        assert_eq!(
            groups("acme", f(Some("teachers"), None, Some("dave"), None)),
            Vec::<u64>::new()
        );

        let teachers = model.group("acme", 20).expect("group 20");
        assert_eq!(teachers.owner.username, "alice");
        let members: Vec<_> = teachers.users.iter().map(|u| u.username.as_str()).collect();
        assert_eq!(members, ["bob", "carol"]);
        assert_eq!(teachers.unique_id, "acme-g20");
        assert!(model.group("other", 20).is_none());
        assert_eq!(
            model.group_by_unique_id("acme", "acme-g21").map(|g| g.id),
            Some(21)
        );
        assert!(model.group_by_unique_id("other", "acme-g21").is_none());
    }

    #[test]
    fn users_are_found_by_id_username_or_email_on_their_platform() {
        let mut log = sample();
        log.user(7, "acme", "Bob");
        let model = model_of(&log);
        assert_eq!(
            model.user("acme", BOB).map(|u| u.username),
            Some("bob".into())
        );
        assert!(model.user("other", BOB).is_none());
        assert!(model.user("acme", EVE).is_none());
        assert_eq!(
            model.user_by_username("acme", "bob").map(|u| u.id),
            Some(BOB)
        );
        assert_eq!(
            model.user_by_username("acme", "Bob").map(|u| u.id),
            Some(7),
            "exact first"
        );
        assert_eq!(
            model.user_by_username("acme", "BOB").map(|u| u.id),
            Some(BOB)
        );
        assert_eq!(
            model.user_by_email("acme", "Dave@Acme.io").map(|u| u.id),
            Some(DAVE)
        );
        assert!(model.user_by_username("other", "bob").is_none());
        assert_eq!(
            model.platform("acme"),
            Some(PlatformRef {
                id: 1,
                key: "acme".into(),
                name: "acme inc".into()
            })
        );

        log.user_event(UserEvent::UserUpdated {
            id: DAVE,
            username: "david".into(),
            email: "david@acme.io".into(),
            given_name: String::new(),
            family_name: String::new(),
            updated_at: at(2),
        });
        model.apply(&log.events);
        assert!(model.user_by_username("acme", "dave").is_none());
        assert_eq!(
            model.user_by_username("acme", "DAVID").map(|u| u.id),
            Some(DAVE)
        );
        assert_eq!(
            policy_ids(
                &model,
                PolicyFilter {
                    email: Some("david@acme.io".into()),
                    ..acme_policies()
                }
            ),
            [31]
        );
    }

    #[test]
    fn mentor_policies_are_those_of_a_built_in_mentor_role_on_exactly_that_mentor() {
        let mut log = sample();
        log.role_full(
            16,
            "acme",
            "Mentor Chat",
            &["Ibl.Mentor/Chat/action"],
            &[],
            false,
            true,
        )
        .policy(
            34,
            "acme",
            "m7 viewers",
            10,
            &["/platforms/1/mentors/7/"],
            &[CAROL],
            &[],
        )
        .policy(
            35,
            "acme",
            "m7 editors",
            12,
            &["/platforms/1/mentors/7/"],
            &[DAVE],
            &[],
        )
        .policy(
            36,
            "acme",
            "m7 and m8",
            10,
            &["/platforms/1/mentors/7/", "/platforms/1/mentors/8/"],
            &[DAVE],
            &[],
        )
        .policy(
            37,
            "acme",
            "m7 chat",
            16,
            &["/platforms/1/mentors/7/"],
            &[],
            &[20],
        );
        let model = model_of(&log);
        let mentor = |id| {
            model
                .mentor_policies("acme", id)
                .iter()
                .map(|p| p.id)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            mentor(7),
            [34, 37],
            "35 is not a mentor role, 36 names two mentors"
        );
        assert_eq!(mentor(5), [31], "32's role is a tenant role");
        assert_eq!(mentor(8), Vec::<u64>::new());
        assert!(model.mentor_policies("other", 7).is_empty());
        assert_eq!(
            model.mentor_policy("acme", 7, "viewer").map(|p| p.id),
            Some(34)
        );
        assert_eq!(
            model.mentor_policy("acme", 7, "Mentor Chat").map(|p| p.id),
            Some(37)
        );
        assert!(model.mentor_policy("acme", 7, "editor").is_none());
        assert!(model.mentor_policy("acme", 9, "viewer").is_none());
    }

    // --- the check index

    #[test]
    fn grants_reach_users_directly_and_through_groups_on_their_platform_only() {
        let model = model_of(&sample());
        assert_eq!(allowed(&model, DAVE, M5), ["chat", "read"]);
        assert_eq!(allowed(&model, BOB, M5), ["chat", "read", "write"]);
        assert_eq!(allowed(&model, CAROL, M5), ["chat", "read"]);
        assert_eq!(
            allowed(&model, ALICE, M5),
            ["chat", "delete", "read", "write"]
        );
        assert!(allowed(&model, CAROL, "/platforms/1/mentors/6/").is_empty());
        assert!(allowed(&model, EVE, M5).is_empty());
        assert!(
            model.grants("acme", EVE).is_empty(),
            "eve is not a user of acme"
        );
        assert!(model.grants("other", BOB).is_empty());
        assert_eq!(model.grants("other", EVE).len(), 1);

        let bob = model.grants("acme", BOB);
        let order: Vec<_> = bob.iter().map(|g| (g.policy_id, g.via)).collect();
        assert_eq!(
            order,
            [(31, Via::Group(20)), (32, Via::Direct)],
            "by policy id"
        );
        let alice = model.grants("acme", ALICE);
        let order: Vec<_> = alice.iter().map(|g| (g.policy_id, g.via)).collect();
        assert_eq!(
            order,
            [(30, Via::Direct)],
            "one grant per policy, direct first"
        );
        let read = check(&model.grants("acme", CAROL), &path(M5))["read"];
        assert_eq!(
            read.because.map(|b| (b.policy_id, b.role_id, b.via)),
            Some((31, 10, Via::Group(20)))
        );
        let field = path("/platforms/1/mentors/5/settings/display_name/");
        assert!(check(&model.grants("acme", CAROL), &field)["read"].allowed);
        assert!(!check(&model.grants("acme", CAROL), &field)["write"].allowed);
    }

    #[test]
    fn group_membership_changes_update_the_grants_of_the_members() {
        let mut log = sample();
        log.user(FRANK, "acme", "frank");
        let model = model_of(&log);
        assert!(!can(&model, FRANK, M5, "read"));
        log.members(20, &[FRANK], true);
        model.apply(&log.events);
        assert!(can(&model, FRANK, M5, "read"), "added to Teachers");
        log.members(20, &[FRANK, CAROL], false);
        model.apply(&log.events);
        assert!(!can(&model, FRANK, M5, "read"), "removed");
        assert!(!can(&model, CAROL, M5, "read"));
        assert!(can(&model, BOB, M5, "read"), "bob stays");
        log.group_event(20, GroupEvent::GroupDeleted { deleted_at: at(3) });
        model.apply(&log.events);
        assert_eq!(
            allowed(&model, BOB, M5),
            ["write"],
            "only the direct policy is left"
        );
        assert!(model.group("acme", 20).is_none());
        assert!(model.policy("acme", 31).unwrap().groups.is_empty());
        assert!(
            model.user_by_username("acme", "bob").is_some(),
            "users stay when their group goes"
        );
    }

    #[test]
    fn policy_changes_update_the_grants_of_the_users_they_name() {
        let log = &mut sample();
        let model = model_of(log);
        let mut step = |event: PolicyEvent, id: u64| {
            log.policy_event(id, event);
            model.apply(&log.events);
        };

        step(
            PolicyEvent::PolicyUsersAdded {
                user_ids: vec![CAROL],
                added_at: at(1),
            },
            32,
        );
        assert!(can(&model, CAROL, M5, "write"), "carol named by 32");
        step(
            PolicyEvent::PolicyUsersRemoved {
                user_ids: vec![CAROL],
                removed_at: at(1),
            },
            32,
        );
        assert!(!can(&model, CAROL, M5, "write"));

        step(
            PolicyEvent::PolicyGroupsAdded {
                group_ids: vec![20],
                added_at: at(1),
            },
            32,
        );
        assert!(can(&model, CAROL, M5, "write"), "carol through Teachers");
        step(
            PolicyEvent::PolicyGroupsRemoved {
                group_ids: vec![20],
                removed_at: at(1),
            },
            32,
        );
        assert!(!can(&model, CAROL, M5, "write"));
        assert!(can(&model, BOB, M5, "write"), "bob is still named directly");

        let m6 = "/platforms/1/mentors/6/";
        step(
            PolicyEvent::PolicyUpdated {
                name: "Mentor 6 viewers".into(),
                role_id: 10,
                resources: strings(&[m6]),
                updated_at: at(2),
            },
            31,
        );
        assert!(can(&model, DAVE, m6, "read") && can(&model, CAROL, m6, "read"));
        assert!(!can(&model, DAVE, M5, "read") && !can(&model, CAROL, M5, "read"));
        assert_eq!(
            model
                .who_has_access("acme", &path(M5), "Ibl.Mentor/Mentors/read", 0, 10)
                .count,
            1,
            "alice only"
        );

        step(
            PolicyEvent::PolicyUpdated {
                name: "Mentor 6 editors".into(),
                role_id: 12,
                resources: strings(&[m6]),
                updated_at: at(3),
            },
            31,
        );
        assert_eq!(
            allowed(&model, DAVE, m6),
            ["write"],
            "the new role's actions"
        );
        assert_eq!(
            policy_ids(
                &model,
                PolicyFilter {
                    role_id: Some(12),
                    ..acme_policies()
                }
            ),
            [31, 32]
        );

        step(PolicyEvent::PolicyDeleted { deleted_at: at(4) }, 31);
        assert!(allowed(&model, DAVE, m6).is_empty());
        assert!(allowed(&model, CAROL, m6).is_empty());
        assert!(model.grants("acme", DAVE).is_empty());
        assert!(model.policy("acme", 31).is_none());
        assert_eq!(
            policy_ids(
                &model,
                PolicyFilter {
                    username: Some("carol".into()),
                    ..acme_policies()
                }
            ),
            Vec::<u64>::new()
        );
    }

    #[test]
    fn role_edits_and_deletes_reach_every_user_of_its_policies() {
        let log = &mut sample();
        let model = model_of(log);
        assert!(!can(&model, BOB, M5, "delete"));
        log.role_event(
            12,
            RoleEvent::RoleUpdated {
                name: "Editors".into(),
                actions: strings(&["Ibl.Mentor/Mentors/write", "Ibl.Mentor/Mentors/delete"]),
                data_actions: vec![],
                updated_at: at(1),
            },
        );
        model.apply(&log.events);
        assert_eq!(
            allowed(&model, BOB, M5),
            ["chat", "delete", "read", "write"]
        );
        assert_eq!(model.policy("acme", 32).unwrap().role.actions.len(), 2);

        log.role_event(10, RoleEvent::RoleDeleted { deleted_at: at(2) });
        model.apply(&log.events);
        assert_eq!(
            allowed(&model, BOB, M5),
            ["delete", "write"],
            "the viewer role grants nothing"
        );
        assert!(allowed(&model, CAROL, M5).is_empty());
        assert!(model.grants("acme", DAVE).is_empty());
        assert!(model.role("acme", 10).is_none());
        assert_eq!(
            model.policy("acme", 31).unwrap().role.name,
            "Mentor Viewer",
            "the policy still names its deleted role"
        );
    }

    #[test]
    fn deactivated_users_are_granted_nothing_until_reactivated() {
        let log = &mut sample();
        let model = model_of(log);
        assert!(model.is_active("acme", ALICE));
        assert!(!model.is_active("other", ALICE));
        log.user_event(UserEvent::UserDeactivated {
            id: ALICE,
            deactivated_at: at(1),
        });
        model.apply(&log.events);
        assert!(!model.is_active("acme", ALICE));
        assert!(model.grants("acme", ALICE).is_empty());
        assert!(
            !model.read().grants.contains_key(&ALICE),
            "the index itself drops them"
        );
        let answer = check(&model.grants("acme", ALICE), &path("/platforms/1/"));
        assert!(!answer.is_empty() && answer.values().all(|d| !d.allowed));
        assert!(
            model
                .group("acme", 21)
                .unwrap()
                .users
                .iter()
                .any(|u| u.id == ALICE),
            "memberships stay"
        );
        log.user_event(UserEvent::UserReactivated {
            id: ALICE,
            reactivated_at: at(2),
        });
        model.apply(&log.events);
        assert!(model.is_active("acme", ALICE));
        assert_eq!(
            allowed(&model, ALICE, "/platforms/1/"),
            ["delete", "read", "write"]
        );
    }

    #[test]
    fn a_policy_grants_nothing_through_another_platforms_role_group_or_user() {
        let mut log = sample();
        // Written by no command (the caller checks), but the index stays safe.
        log.policy(38, "acme", "crossed", 14, &["/platforms/1/"], &[BOB], &[])
            .policy(
                39,
                "acme",
                "crossed group",
                12,
                &["/platforms/1/"],
                &[EVE],
                &[22],
            )
            .policy(
                40,
                "acme",
                "global role",
                15,
                &["/platforms/1/"],
                &[CAROL],
                &[],
            );
        let model = model_of(&log);
        assert!(
            !can(&model, BOB, "/platforms/1/mentors/9/", "read"),
            "another platform's role"
        );
        assert!(model.grants("other", EVE).iter().all(|g| g.policy_id == 33));
        assert!(
            can(&model, CAROL, "/platforms/1/mentors/9/", "read"),
            "a global role is usable"
        );
        assert!(!can(&model, CAROL, "/platforms/1/mentors/9/", "write"));
    }

    // --- who has access

    #[test]
    fn who_has_access_lists_active_users_once_with_their_first_grant() {
        let log = &mut sample();
        let model = model_of(log);
        let who = |resource: &str, action: &str| {
            model
                .who_has_access("acme", &path(resource), action, 0, 100)
                .items
                .into_iter()
                .map(|e| (e.user.id, e.policy_id, e.via))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            who(M5, "Ibl.Mentor/Mentors/read"),
            [
                (ALICE, 30, Via::Direct),
                (BOB, 31, Via::Group(20)),
                (CAROL, 31, Via::Group(20)),
                (DAVE, 31, Via::Direct),
            ]
        );
        assert_eq!(
            who(
                "/platforms/1/mentors/5/documents/",
                "Ibl.Mentor/Mentors/write"
            ),
            [(ALICE, 30, Via::Direct), (BOB, 32, Via::Direct)],
            "a grant on an ancestor covers the resource"
        );
        assert_eq!(
            who("/platforms/1/mentors/6/", "Ibl.Mentor/Mentors/read"),
            [(ALICE, 30, Via::Direct)]
        );
        assert_eq!(
            who("/platforms/1/", "Ibl.Core/Users/list"),
            [(ALICE, 30, Via::Direct)]
        );
        assert_eq!(
            who(
                "/platforms/1/mentors/5/settings/name/",
                "Ibl.Mentor/Settings/name/read"
            )
            .len(),
            4,
            "a data action, through the data patterns"
        );
        assert_eq!(
            who(
                "/platforms/1/mentors/5/settings/name/",
                "Ibl.Mentor/Settings/name/write"
            ),
            [(ALICE, 30, Via::Direct)]
        );
        let page = model.who_has_access("acme", &path(M5), "Ibl.Mentor/Mentors/read", 1, 2);
        assert_eq!(page.count, 4);
        assert_eq!(
            page.items.iter().map(|e| e.user.id).collect::<Vec<_>>(),
            [BOB, CAROL]
        );
        assert_eq!(page.items[0].user.username, "bob");
        assert_eq!(page.items[0].role_id, 10);
        assert!(model
            .who_has_access("other", &path(M5), "Ibl.Mentor/Mentors/read", 0, 10)
            .items
            .is_empty());

        log.user_event(UserEvent::UserDeactivated {
            id: CAROL,
            deactivated_at: at(1),
        });
        model.apply(&log.events);
        assert_eq!(
            who(M5, "Ibl.Mentor/Mentors/read")
                .iter()
                .map(|e| e.0)
                .collect::<Vec<_>>(),
            [ALICE, BOB, DAVE]
        );
        assert_agrees_with_the_check_index(&model, &[ALICE, BOB, CAROL, DAVE, EVE]);
    }

    /// Every answer of who-has-access is what the users' own grants say.
    fn assert_agrees_with_the_check_index(model: &RbacModel, users: &[u64]) {
        let cases = [
            (M5, "Ibl.Mentor/Mentors/read", ActionKind::Action),
            (M5, "Ibl.Mentor/Mentors/write", ActionKind::Action),
            (M5, "Ibl.Mentor/Chat/action", ActionKind::Action),
            (
                "/platforms/1/",
                "Ibl.Core/Platforms/read",
                ActionKind::Action,
            ),
            (
                "/platforms/1/mentors/7/",
                "Ibl.Mentor/Mentors/read",
                ActionKind::Action,
            ),
            (
                "/platforms/1/mentors/5/settings/x/",
                "Ibl.Mentor/Settings/x/read",
                ActionKind::DataAction,
            ),
        ];
        for (resource, action, kind) in cases {
            let resource = path(resource);
            let expected: Vec<_> = users
                .iter()
                .filter_map(|u| {
                    let d = authorize(&model.grants("acme", *u), &resource, action, kind);
                    d.because.map(|b| (*u, b.policy_id, b.role_id, b.via))
                })
                .collect();
            let got: Vec<_> = model
                .who_has_access("acme", &resource, action, 0, usize::MAX)
                .items
                .into_iter()
                .map(|e| (e.user.id, e.policy_id, e.role_id, e.via))
                .collect();
            assert_eq!(got, expected, "{resource} {action}");
        }
    }

    // --- replay

    /// Everything the model answers, for comparing two models.
    fn render(model: &RbacModel) -> String {
        let s = model.read();
        let mut users: Vec<_> = s.users.keys().copied().collect();
        users.sort_unstable();
        let grants: Vec<_> = users
            .iter()
            .map(|u| (u, s.grants.get(u).map(|g| g.as_ref().clone())))
            .collect();
        drop(s);
        let mut out = format!("{grants:?}\n");
        for platform in ["acme", "other"] {
            let policies = model.policies(
                &PolicyFilter {
                    platform_key: platform.into(),
                    ..PolicyFilter::default()
                },
                0,
                1000,
            );
            let roles = model.roles(platform, None, true, 0, 1000);
            let groups = model.groups(platform, &GroupFilter::default(), 0, 1000);
            let who = model.who_has_access(platform, &path(M5), "Ibl.Mentor/Chat/action", 0, 1000);
            out += &format!(
                "{:?}\n{:?}\n{:?}\n{:?}\n",
                policies.items, roles.items, groups.items, who.items
            );
        }
        out
    }

    /// The sample, then one change of every kind.
    fn busy() -> Log {
        let mut log = sample();
        log.user(FRANK, "acme", "frank")
            .members(20, &[FRANK, DAVE], true)
            .policy_event(
                32,
                PolicyEvent::PolicyGroupsAdded {
                    group_ids: vec![21],
                    added_at: at(1),
                },
            )
            .role_event(
                12,
                RoleEvent::RoleUpdated {
                    name: "Editors".into(),
                    actions: strings(&["Ibl.Mentor/*"]),
                    data_actions: vec![],
                    updated_at: at(1),
                },
            )
            .members(20, &[BOB], false)
            .user_event(UserEvent::UserDeactivated {
                id: CAROL,
                deactivated_at: at(2),
            })
            .policy_event(
                31,
                PolicyEvent::PolicyUpdated {
                    name: "wider".into(),
                    role_id: 10,
                    resources: strings(&["/platforms/1/mentors/"]),
                    updated_at: at(2),
                },
            )
            .group(24, "acme", "Late", BOB, &[BOB, FRANK])
            .policy_event(
                31,
                PolicyEvent::PolicyGroupsAdded {
                    group_ids: vec![24],
                    added_at: at(3),
                },
            )
            .group_event(21, GroupEvent::GroupDeleted { deleted_at: at(3) })
            .policy_event(32, PolicyEvent::PolicyDeleted { deleted_at: at(4) })
            .role_event(12, RoleEvent::RoleDeleted { deleted_at: at(4) });
        log
    }

    #[test]
    fn replaying_a_batch_twice_changes_nothing_the_second_time() {
        let log = busy();
        let once = model_of(&log);
        let twice = RbacModel::new();
        twice.apply(&log.events[..17]);
        twice.apply(&log.events);
        twice.apply(&log.events);
        assert_eq!(twice.checkpoint(), log.events.len() as u64);
        assert_eq!(render(&twice), render(&once));
        assert_eq!(twice.name(), "rbac");
    }

    #[test]
    fn a_rebuild_in_one_batch_equals_the_model_followed_event_by_event() {
        let log = busy();
        let rebuilt = model_of(&log);
        let live = RbacModel::new();
        for event in &log.events {
            live.apply(std::slice::from_ref(event));
        }
        assert_eq!(render(&live), render(&rebuilt));
        assert_agrees_with_the_check_index(&rebuilt, &[ALICE, BOB, CAROL, DAVE, EVE, FRANK]);
        // Spot checks of the end state.
        assert!(!rebuilt.is_active("acme", CAROL));
        assert!(
            can(&rebuilt, FRANK, "/platforms/1/mentors/9/", "read"),
            "through group 24 on the wider policy"
        );
        assert!(
            can(&rebuilt, ALICE, "/platforms/1/", "delete"),
            "still named directly by 30"
        );
        assert!(
            !can(&rebuilt, BOB, M5, "write"),
            "policy 32 and role 12 are gone"
        );
    }

    #[test]
    fn undecodable_events_are_skipped_and_other_streams_ignored() {
        let mut log = sample();
        let mut bad = log.events[log.events.len() - 1].clone();
        bad.position = log.events.len() as u64 + 1;
        bad.stream = "policy-99".into();
        bad.payload = serde_json::json!({"type": "PolicyCreated", "oops": true}).into();
        log.events.push(bad);
        let mut unrelated = log.events[0].clone();
        unrelated.position = log.events.len() as u64 + 1;
        unrelated.stream = "credential-c1".into();
        log.events.push(unrelated);
        let mut odd = log.events[0].clone();
        odd.position = log.events.len() as u64 + 1;
        odd.stream = "role-x".into();
        log.events.push(odd);
        let model = model_of(&log);
        assert_eq!(model.checkpoint(), log.events.len() as u64);
        assert_eq!(policy_ids(&model, acme_policies()), [31, 32]);
        assert_eq!(render(&model), render(&model_of(&sample())));
    }

    // --- model-based: random histories against a naive reference

    /// The rules of the check index, written the slow and obvious way: a
    /// fold of the same events into plain records, and a scan of every
    /// policy for each question.
    #[derive(Default)]
    struct Naive {
        users: HashMap<u64, (String, bool)>,
        roles: HashMap<u64, (String, Vec<String>, Vec<String>, bool)>,
        groups: HashMap<u64, (String, BTreeSet<u64>, bool)>,
        policies: HashMap<u64, NaivePolicy>,
    }

    struct NaivePolicy {
        platform: String,
        role_id: u64,
        resources: Vec<String>,
        users: BTreeSet<u64>,
        groups: BTreeSet<u64>,
        deleted: bool,
    }

    impl Naive {
        fn apply(&mut self, e: &RecordedEvent) {
            let id = |prefix: &str| e.stream.strip_prefix(prefix)?.parse::<u64>().ok();
            if e.stream == USERS_STREAM {
                match UserEvent::from_recorded(e).unwrap() {
                    UserEvent::UserRegistered { id, platform, .. } => {
                        self.users.insert(id, (platform, true));
                    }
                    UserEvent::UserDeactivated { id, .. } => {
                        if let Some(u) = self.users.get_mut(&id) {
                            u.1 = false;
                        }
                    }
                    UserEvent::UserReactivated { id, .. } => {
                        if let Some(u) = self.users.get_mut(&id) {
                            u.1 = true;
                        }
                    }
                    UserEvent::UserImported {
                        id,
                        platform,
                        active,
                        ..
                    } => {
                        self.users.insert(id, (platform, active));
                    }
                    UserEvent::UserUpdated { .. } => {}
                }
            } else if let Some(rid) = id("role-") {
                let live = self.roles.get_mut(&rid).filter(|r| !r.3);
                match (RoleEvent::from_recorded(e).unwrap(), live) {
                    (
                        RoleEvent::RoleCreated {
                            platform,
                            actions,
                            data_actions,
                            ..
                        },
                        _,
                    ) => {
                        self.roles
                            .entry(rid)
                            .or_insert((platform, actions, data_actions, false));
                    }
                    (
                        RoleEvent::RoleUpdated {
                            actions,
                            data_actions,
                            ..
                        },
                        Some(r),
                    ) => {
                        r.1 = actions;
                        r.2 = data_actions;
                    }
                    (RoleEvent::RoleDeleted { .. }, Some(r)) => r.3 = true,
                    _ => {}
                }
            } else if let Some(gid) = id("group-") {
                let live = self.groups.get_mut(&gid).filter(|g| !g.2);
                match (GroupEvent::from_recorded(e).unwrap(), live) {
                    (GroupEvent::GroupCreated { platform, .. }, _) => {
                        self.groups
                            .entry(gid)
                            .or_insert((platform, BTreeSet::new(), false));
                    }
                    (GroupEvent::GroupMembersAdded { user_ids, .. }, Some(g)) => {
                        g.1.extend(user_ids);
                    }
                    (GroupEvent::GroupMembersRemoved { user_ids, .. }, Some(g)) => {
                        g.1.retain(|u| !user_ids.contains(u));
                    }
                    (GroupEvent::GroupDeleted { .. }, Some(g)) => {
                        g.1.clear();
                        g.2 = true;
                    }
                    _ => {}
                }
            } else if let Some(pid) = id("policy-") {
                let live = self.policies.get_mut(&pid).filter(|p| !p.deleted);
                match (PolicyEvent::from_recorded(e).unwrap(), live) {
                    (
                        PolicyEvent::PolicyCreated {
                            platform,
                            role_id,
                            resources,
                            user_ids,
                            group_ids,
                            ..
                        },
                        _,
                    ) => {
                        self.policies.entry(pid).or_insert(NaivePolicy {
                            platform,
                            role_id,
                            resources,
                            users: user_ids.into_iter().collect(),
                            groups: group_ids.into_iter().collect(),
                            deleted: false,
                        });
                    }
                    (
                        PolicyEvent::PolicyUpdated {
                            role_id, resources, ..
                        },
                        Some(p),
                    ) => {
                        p.role_id = role_id;
                        p.resources = resources;
                    }
                    (PolicyEvent::PolicyUsersAdded { user_ids, .. }, Some(p)) => {
                        p.users.extend(user_ids)
                    }
                    (PolicyEvent::PolicyUsersRemoved { user_ids, .. }, Some(p)) => {
                        p.users.retain(|u| !user_ids.contains(u));
                    }
                    (PolicyEvent::PolicyGroupsAdded { group_ids, .. }, Some(p)) => {
                        p.groups.extend(group_ids)
                    }
                    (PolicyEvent::PolicyGroupsRemoved { group_ids, .. }, Some(p)) => {
                        p.groups.retain(|g| !group_ids.contains(g));
                    }
                    (PolicyEvent::PolicyDeleted { .. }, Some(p)) => p.deleted = true,
                    _ => {}
                }
            }
        }

        fn allows(
            &self,
            user: u64,
            resource: &ResourcePath,
            action: &str,
            kind: ActionKind,
        ) -> bool {
            let Some((platform, true)) = self.users.get(&user) else {
                return false;
            };
            self.policies.values().any(|p| {
                let named = p.users.contains(&user)
                    || p.groups.iter().any(|g| {
                        self.groups.get(g).is_some_and(|(gp, members, deleted)| {
                            !deleted && *gp == p.platform && members.contains(&user)
                        })
                    });
                let role_allows =
                    self.roles
                        .get(&p.role_id)
                        .is_some_and(|(rp, actions, data, deleted)| {
                            let patterns = if kind == ActionKind::Action {
                                actions
                            } else {
                                data
                            };
                            !deleted
                                && *rp == p.platform
                                && patterns
                                    .iter()
                                    .filter_map(|a| ActionPattern::parse(a).ok())
                                    .any(|pat| pat.matches(action))
                        });
                let covers = p
                    .resources
                    .iter()
                    .filter_map(|r| ResourcePath::parse_lenient(r).ok())
                    .any(|r| resource.is_within(&r));
                !p.deleted && p.platform == *platform && named && role_allows && covers
            })
        }
    }

    /// A random history of RBAC writes: roles, groups and policies created,
    /// changed and deleted, members and subjects added and removed, users
    /// deactivated and reactivated, on two platforms, ids sometimes naming
    /// what does not exist (yet), is deleted or is of the other platform.
    pub(super) fn random_history(rng: &mut Rng, steps: usize) -> Log {
        const PATTERNS: [&str; 7] = [
            "Ibl.*",
            "Ibl.Mentor/*",
            "Ibl.Mentor/Mentors/read",
            "Ibl.Core/*",
            "*",
            "Ibl.Mentor/Settings/*/read",
            "not a pattern!",
        ];
        const RESOURCES: [&str; 7] = [
            "/platforms/1/",
            "/platforms/1/mentors/",
            "/platforms/1/mentors/5/",
            "/platforms/1/mentors/6/",
            "/platforms/2/",
            "/platforms/1/mentors",
            "not a path",
        ];
        let pick = |rng: &mut Rng, pool: &[&str]| -> Vec<String> {
            pool.iter()
                .filter(|_| rng.below(3) == 0)
                .map(|s| (*s).to_owned())
                .collect()
        };
        let some_ids = |rng: &mut Rng, upto: u64| -> Vec<u64> {
            (1..=upto).filter(|_| rng.below(3) == 0).collect()
        };
        let platform = |rng: &mut Rng| if rng.below(5) == 0 { "other" } else { "acme" };
        let mut log = Log::default();
        log.platform(1, "acme").platform(2, "other");
        for u in 1..=8 {
            log.user(
                u,
                if u <= 6 { "acme" } else { "other" },
                &format!("user{u}"),
            );
        }
        let (mut roles, mut groups, mut policies) = (0u64, 100u64, 200u64);
        for _ in 0..steps {
            match rng.below(14) {
                0 | 1 => {
                    roles += 1;
                    let (actions, data) = (pick(rng, &PATTERNS), pick(rng, &PATTERNS));
                    log.role_event(
                        roles,
                        RoleEvent::RoleCreated {
                            id: roles,
                            platform: platform(rng).into(),
                            name: format!("r{roles}"),
                            actions,
                            data_actions: data,
                            is_internal: false,
                            is_builtin: false,
                            created_at: at(0),
                        },
                    );
                }
                2 => {
                    let (actions, data) = (pick(rng, &PATTERNS), pick(rng, &PATTERNS));
                    log.role_event(
                        1 + rng.below(roles + 1),
                        RoleEvent::RoleUpdated {
                            name: "renamed".into(),
                            actions,
                            data_actions: data,
                            updated_at: at(1),
                        },
                    );
                }
                3 if rng.below(3) == 0 => {
                    log.role_event(
                        1 + rng.below(roles + 1),
                        RoleEvent::RoleDeleted { deleted_at: at(2) },
                    );
                }
                4 => {
                    groups += 1;
                    let members = some_ids(rng, 8);
                    let p = platform(rng);
                    log.group(groups, p, &format!("g{groups}"), 1, &members);
                }
                5 | 6 => {
                    let members = some_ids(rng, 8);
                    let add = rng.below(2) == 0;
                    log.members(101 + rng.below(groups - 99), &members, add);
                }
                7 if rng.below(3) == 0 => {
                    log.group_event(
                        101 + rng.below(groups - 99),
                        GroupEvent::GroupDeleted { deleted_at: at(2) },
                    );
                }
                8 | 9 => {
                    policies += 1;
                    let users = some_ids(rng, 8);
                    let gs: Vec<u64> = (101..=groups + 1).filter(|_| rng.below(4) == 0).collect();
                    let resources = pick(rng, &RESOURCES);
                    log.policy_event(
                        policies,
                        PolicyEvent::PolicyCreated {
                            id: policies,
                            platform: platform(rng).into(),
                            platform_pk: 1,
                            name: format!("p{policies}"),
                            role_id: 1 + rng.below(roles + 1),
                            resources,
                            user_ids: users,
                            group_ids: gs,
                            is_internal: false,
                            created_at: at(0),
                        },
                    );
                }
                10 => {
                    let resources = pick(rng, &RESOURCES);
                    log.policy_event(
                        201 + rng.below(policies - 199),
                        PolicyEvent::PolicyUpdated {
                            name: "changed".into(),
                            role_id: 1 + rng.below(roles + 1),
                            resources,
                            updated_at: at(1),
                        },
                    );
                }
                11 => {
                    let pid = 201 + rng.below(policies - 199);
                    let (user_ids, group_ids) = (
                        some_ids(rng, 8),
                        (101..=groups).filter(|_| rng.below(4) == 0).collect(),
                    );
                    let event = match rng.below(5) {
                        0 => PolicyEvent::PolicyUsersAdded {
                            user_ids,
                            added_at: at(1),
                        },
                        1 => PolicyEvent::PolicyUsersRemoved {
                            user_ids,
                            removed_at: at(1),
                        },
                        2 => PolicyEvent::PolicyGroupsAdded {
                            group_ids,
                            added_at: at(1),
                        },
                        3 => PolicyEvent::PolicyGroupsRemoved {
                            group_ids,
                            removed_at: at(1),
                        },
                        _ => PolicyEvent::PolicyDeleted { deleted_at: at(2) },
                    };
                    log.policy_event(pid, event);
                }
                12 => {
                    let id = 1 + rng.below(8);
                    log.user_event(if rng.below(2) == 0 {
                        UserEvent::UserDeactivated {
                            id,
                            deactivated_at: at(1),
                        }
                    } else {
                        UserEvent::UserReactivated {
                            id,
                            reactivated_at: at(1),
                        }
                    });
                }
                _ => {}
            }
        }
        log
    }

    #[test]
    fn random_histories_give_the_naive_answer_after_every_batch() {
        const QUESTIONS: [(&str, &str, ActionKind); 7] = [
            ("/platforms/1/", "Ibl.Core/Roles/list", ActionKind::Action),
            (
                "/platforms/1/mentors/",
                "Ibl.Mentor/Mentors/list",
                ActionKind::Action,
            ),
            (
                "/platforms/1/mentors/5/",
                "Ibl.Mentor/Mentors/read",
                ActionKind::Action,
            ),
            (
                "/platforms/1/mentors/5/",
                "Ibl.Mentor/Mentors/write",
                ActionKind::Action,
            ),
            (
                "/platforms/1/mentors/6/settings/x/",
                "Ibl.Mentor/Settings/x/read",
                ActionKind::DataAction,
            ),
            (
                "/platforms/1/mentors/7/",
                "Ibl.Mentor/Mentors/read",
                ActionKind::Action,
            ),
            (
                "/platforms/2/mentors/5/",
                "Ibl.Mentor/Mentors/read",
                ActionKind::Action,
            ),
        ];
        let (mut granted, mut denied) = (0, 0);
        for seed in 1..=12u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let log = random_history(&mut rng, 300);
            let model = RbacModel::new();
            let mut naive = Naive::default();
            let mut done = 0;
            while done < log.events.len() {
                let batch = (1 + rng.below(8) as usize).min(log.events.len() - done);
                model.apply(&log.events[done..done + batch]);
                for e in &log.events[done..done + batch] {
                    naive.apply(e);
                }
                done += batch;
                // The check index, kept grant by grant, equals every user's
                // grants computed from scratch.
                {
                    let s = model.read();
                    for user in 1..=8u64 {
                        let kept = s.grants.get(&user).map(|g| g.to_vec()).unwrap_or_default();
                        assert_eq!(
                            kept,
                            s.compute_grants(user),
                            "seed {seed}, after event {done}: user {user}'s check index"
                        );
                    }
                }
                for user in 1..=8u64 {
                    let platform = if user <= 6 { "acme" } else { "other" };
                    let grants = model.grants(platform, user);
                    for (resource, action, kind) in QUESTIONS {
                        let resource = path(resource);
                        let expected = naive.allows(user, &resource, action, kind);
                        let got = authorize(&grants, &resource, action, kind).allowed;
                        assert_eq!(
                            got, expected,
                            "seed {seed}, after event {done}: user {user}, {action} on {resource}"
                        );
                        granted += usize::from(got);
                        denied += usize::from(!got);
                    }
                }
            }
            // The same history in one batch: the same model.
            assert_eq!(render(&model_of(&log)), render(&model), "seed {seed}");
            assert_agrees_with_the_check_index(&model, &[1, 2, 3, 4, 5, 6, 7, 8]);
        }
        assert!(
            granted > 1000 && denied > 1000,
            "the histories must both grant and deny: {granted} granted, {denied} denied"
        );
    }

    // --- snapshots

    /// What `render` leaves out: the lookups by id, name and email, the
    /// filters by member, the check index of every user, on both platforms;
    /// for the users, roles and groups of either model.
    fn lookups(model: &RbacModel, other: &RbacModel) -> String {
        let (mut users, mut roles, mut groups) =
            (BTreeSet::new(), BTreeSet::new(), BTreeMap::new());
        for m in [model, other] {
            let s = m.read();
            users.extend(
                s.users
                    .iter()
                    .map(|(id, u)| (*id, u.username.clone(), u.email.clone())),
            );
            roles.extend(s.roles.keys().copied());
            groups.extend(
                s.groups
                    .iter()
                    .map(|(id, g)| (*id, (g.unique_id.clone(), g.name.clone()))),
            );
        }
        let mut out = String::new();
        for platform in ["acme", "other"] {
            for (id, username, email) in &users {
                let by_username = PolicyFilter {
                    platform_key: platform.into(),
                    username: Some(username.to_uppercase()),
                    ..PolicyFilter::default()
                };
                let member = GroupFilter {
                    email: Some(email.clone()),
                    ..GroupFilter::default()
                };
                out += &format!(
                    "{:?} {:?} {:?} {} {:?}\n{:?}\n{:?}\n",
                    model.user(platform, *id),
                    model.user_by_username(platform, &username.to_uppercase()),
                    model.user_by_email(platform, email),
                    model.is_active(platform, *id),
                    model.grants(platform, *id),
                    ids(&model.policies(&by_username, 0, 1000), |p| p.id),
                    ids(&model.groups(platform, &member, 0, 1000), |g| g.id),
                );
            }
            for id in &roles {
                out += &format!(
                    "{:?} {}\n",
                    model.role(platform, *id),
                    model.role_deleted(platform, *id)
                );
            }
            for (id, (unique_id, name)) in &groups {
                let named = PolicyFilter {
                    platform_key: platform.into(),
                    group: Some(name.clone()),
                    ..PolicyFilter::default()
                };
                out += &format!(
                    "{:?} {:?} {:?} {:?}\n",
                    model.group(platform, *id),
                    model.group_by_unique_id(platform, unique_id),
                    model.group_bindings(platform, *id),
                    ids(&model.policies(&named, 0, 1000), |p| p.id),
                );
            }
            for resource in ["/platforms/1/", M5, "/platforms/2/mentors/5/"] {
                out += &format!("{:?}\n", model.holders_at(platform, &path(resource)));
            }
            out += &format!("{:?}\n", model.mentor_policies(platform, 5));
        }
        out
    }

    /// `restored` answers everything as `model` does.
    fn assert_same_model(restored: &RbacModel, model: &RbacModel, context: &str) {
        assert_eq!(restored.checkpoint(), model.checkpoint(), "{context}");
        assert_eq!(render(restored), render(model), "{context}");
        assert_eq!(
            lookups(restored, model),
            lookups(model, restored),
            "{context}"
        );
        assert_eq!(restored.grant_count(), model.grant_count(), "{context}");
        let mut users: Vec<u64> = model.read().users.keys().copied().collect();
        users.sort_unstable();
        assert_agrees_with_the_check_index(restored, &users);
    }

    /// A model restored from `model`'s snapshot.
    fn restored_from(model: &RbacModel, into: RbacModel) -> RbacModel {
        let (checkpoint, bytes) = crate::Snapshot::snapshot(model);
        assert_eq!(checkpoint, model.checkpoint());
        crate::Snapshot::restore(&into, checkpoint, &bytes).expect("a snapshot restores");
        into
    }

    #[test]
    fn a_model_restored_at_any_point_of_a_history_answers_as_the_model_and_follows_the_log_alike() {
        let log = busy();
        for cut in 0..=log.events.len() {
            let model = model_of(&Log {
                events: log.events[..cut].to_vec(),
            });
            let restored = restored_from(&model, RbacModel::new());
            assert_same_model(&restored, &model, &format!("restored at {cut}"));
            model.apply(&log.events[cut..]);
            restored.apply(&log.events[cut..]);
            assert_same_model(
                &restored,
                &model,
                &format!("restored at {cut}, then the rest"),
            );
        }
    }

    #[test]
    fn random_histories_restored_midway_follow_the_rest_as_the_model_does() {
        for seed in 1..=8u64 {
            let mut rng = Rng(seed.wrapping_mul(0xD1B5_4A32_D192_ED03));
            let log = random_history(&mut rng, 300);
            let cut = 1 + rng.below(log.events.len() as u64) as usize;
            let model = RbacModel::new();
            let mut done = 0;
            while done < cut {
                let batch = (1 + rng.below(8) as usize).min(cut - done);
                model.apply(&log.events[done..done + batch]);
                done += batch;
            }
            // Restored over a model holding other things: all of it goes.
            let restored = restored_from(&model, model_of(&busy()));
            assert_eq!(restored.checkpoint(), cut as u64, "seed {seed}");
            assert_same_model(
                &restored,
                &model,
                &format!("seed {seed}, restored at {cut}"),
            );
            while done < log.events.len() {
                let batch = (1 + rng.below(8) as usize).min(log.events.len() - done);
                model.apply(&log.events[done..done + batch]);
                restored.apply(&log.events[done..done + batch]);
                done += batch;
                assert_same_model(
                    &restored,
                    &model,
                    &format!("seed {seed}, restored at {cut}, after event {done}"),
                );
            }
            assert_same_model(&restored, &model_of(&log), &format!("seed {seed}, rebuilt"));
        }
    }

    /// A past model keeps no check index: each user's grants, computed when
    /// asked, are those the model with the index holds, after every batch
    /// and on a copy folded further.
    #[test]
    fn a_past_model_computes_the_grants_the_index_holds() {
        for seed in 1..=8u64 {
            let mut rng = Rng(seed.wrapping_mul(0xA076_1D64_78BD_642F));
            let log = random_history(&mut rng, 300);
            let (model, past) = (RbacModel::new(), RbacModel::past());
            let mut done = 0;
            let same = |past: &RbacModel, context: &str| {
                for uid in 1..=8 {
                    for platform in ["acme", "other"] {
                        assert_eq!(
                            past.grants(platform, uid),
                            model.grants(platform, uid),
                            "{context}: user {uid} of {platform}"
                        );
                    }
                }
            };
            while done < log.events.len() {
                let batch = (1 + rng.below(40) as usize).min(log.events.len() - done);
                model.apply(&log.events[done..done + batch]);
                past.apply(&log.events[done..done + batch]);
                done += batch;
                same(&past, &format!("seed {seed}, after event {done}"));
            }
            assert!(past.read().grants.is_empty(), "no index kept");
            same(&past.duplicate(), &format!("seed {seed}, a copy"));
        }
    }

    /// A past state folded further on a copy (the audit routes' way) is
    /// the model folded from 0, by digest too, and the copy leaves the
    /// original as it was.
    #[test]
    fn a_duplicate_folded_further_is_the_model_folded_from_the_start() {
        use crate::replay::Digest;
        for seed in 1..=8u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let log = random_history(&mut rng, 300);
            let cut = 1 + rng.below(log.events.len() as u64) as usize;
            let past = RbacModel::new();
            past.apply(&log.events[..cut]);
            let before = past.digest(None).expect("a digest");
            let further = past.duplicate();
            further.apply(&log.events[cut..]);
            let whole = model_of(&log);
            assert_same_model(&further, &whole, &format!("seed {seed}, copied at {cut}"));
            assert_eq!(further.digest(None), whole.digest(None), "seed {seed}");
            assert_eq!(past.digest(None).expect("a digest"), before, "seed {seed}");
            if cut < log.events.len() {
                assert_ne!(before, whole.digest(None).expect("a digest"));
            }
        }
    }

    #[test]
    fn restoring_what_is_not_a_snapshot_answers_an_error_and_leaves_the_model_empty() {
        let log = busy();
        let (_, bytes) = crate::Snapshot::snapshot(&model_of(&log));
        let garbage: [&[u8]; 4] = [
            b"not a snapshot",
            &bytes[..bytes.len() / 2],
            br#"{"platforms": 1}"#,
            b"",
        ];
        for bytes in garbage {
            let model = model_of(&log);
            let error = crate::Snapshot::restore(&model, 9, bytes);
            assert!(error.is_err(), "{:?}", String::from_utf8_lossy(bytes));
            assert_eq!(model.checkpoint(), 0);
            assert_eq!(model.platform("acme"), None);
            assert_eq!(model.grant_count(), 0);
            assert_eq!(render(&model), render(&RbacModel::new()));
            // Empty, so a rebuild from the log starts over.
            model.apply(&log.events);
            assert_same_model(&model, &model_of(&log), "rebuilt after the error");
        }
    }

    #[test]
    fn the_checkpoint_restored_is_the_one_given() {
        let log = busy();
        let model = model_of(&Log {
            events: log.events[..20].to_vec(),
        });
        let (checkpoint, bytes) = crate::Snapshot::snapshot(&model);
        assert_eq!(checkpoint, 20);
        let restored = RbacModel::new();
        crate::Snapshot::restore(&restored, 33, &bytes).expect("a snapshot restores");
        assert_eq!(restored.checkpoint(), 33);
        assert_eq!(crate::Snapshot::snapshot(&restored).0, 33);
        // Events up to the checkpoint given are skipped, the others applied.
        restored.apply(&log.events);
        model.apply(&log.events[33..]);
        assert_eq!(restored.checkpoint(), log.events.len() as u64);
        assert_same_model(&restored, &model, "skipping events 21 to 33");
        assert_eq!(crate::Snapshot::version(&restored), SNAPSHOT_VERSION);
    }

    // --- scale

    /// A small deterministic generator (xorshift64*).
    pub(super) struct Rng(pub(super) u64);
    impl Rng {
        pub(super) fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
        }
    }

    /// 10,000 users, 1,000 groups of about 20, 2,000 policies (3 users and 2
    /// groups each) on one platform. Run with
    /// `cargo test -p ibl-projections --release -- --ignored --nocapture scale`.
    #[test]
    #[ignore = "timing; run on demand"]
    fn scale_10k_users_1k_groups_2k_policies() {
        use std::time::Instant;
        const USERS: u64 = 10_000;
        const GROUPS: u64 = 1_000;
        const POLICIES: u64 = 2_000;
        const MENTORS: u64 = 500;
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut log = Log::default();
        log.platform(1, "acme");
        for u in 1..=USERS {
            log.user(u, "acme", &format!("user{u}"));
        }
        log.role_full(
            100_001,
            "acme",
            "Mentor Viewer",
            &[
                "Ibl.Mentor/Mentors/read",
                "Ibl.Mentor/Chat/action",
                "Ibl.Mentor/Settings/read",
            ],
            &["Ibl.Mentor/Settings/*/read"],
            false,
            true,
        )
        .role_full(
            100_002,
            "acme",
            "Mentor Editor",
            &[
                "Ibl.Mentor/Mentors/read",
                "Ibl.Mentor/Mentors/write",
                "Ibl.Mentor/Documents/*",
            ],
            &["Ibl.Mentor/Settings/*/read", "Ibl.Mentor/Settings/*/write"],
            false,
            true,
        )
        .role(100_003, "acme", "Mentor Chat", &["Ibl.Mentor/Chat/action"])
        .role(
            100_004,
            "acme",
            "Students",
            &["Ibl.Mentor/Mentors/list", "Ibl.Mentor/Mentors/read"],
        )
        .role(100_005, "acme", "Tenant Admin", &["Ibl.*"]);
        for g in 1..=GROUPS {
            let members: BTreeSet<u64> = (0..20).map(|_| 1 + rng.below(USERS)).collect();
            let members: Vec<u64> = members.into_iter().collect();
            log.group(200_000 + g, "acme", &format!("group {g}"), 1, &members);
        }
        for p in 1..=POLICIES {
            let role = 100_001 + rng.below(if p % 100 == 0 { 5 } else { 4 });
            let resource = if p % 50 == 0 {
                "/platforms/1/".to_owned()
            } else {
                format!("/platforms/1/mentors/{}/", 1 + rng.below(MENTORS))
            };
            let users: Vec<u64> = (0..3).map(|_| 1 + rng.below(USERS)).collect();
            let groups: Vec<u64> = (0..2).map(|_| 200_001 + rng.below(GROUPS)).collect();
            log.policy(
                300_000 + p,
                "acme",
                &format!("policy {p}"),
                role,
                &[&resource],
                &users,
                &groups,
            );
        }
        let events = log.events.len();

        let model = RbacModel::new();
        let start = Instant::now();
        for batch in log.events.chunks(2048) {
            model.apply(batch);
        }
        let build = start.elapsed();

        let resources: Vec<ResourcePath> = (0..100)
            .map(|i| path(&format!("/platforms/1/mentors/{}/", 1 + i * 5)))
            .collect();
        let start = Instant::now();
        let mut allowed_ops = 0;
        for i in 0..1_000u64 {
            let user = 1 + rng.below(USERS);
            let grants = model.grants("acme", user);
            let answer = check(&grants, &resources[(i % 100) as usize]);
            allowed_ops += answer.values().filter(|d| d.allowed).count();
        }
        let checks = start.elapsed();

        let start = Instant::now();
        let mut entries = 0;
        for resource in resources.iter().take(100) {
            entries += model
                .who_has_access("acme", resource, "Ibl.Mentor/Mentors/read", 0, 50)
                .count;
        }
        let who = start.elapsed();

        // One incremental change: a role used by about a quarter of the policies.
        let mut more = log.clone();
        more.role_event(
            100_003,
            RoleEvent::RoleUpdated {
                name: "Mentor Chat".into(),
                actions: strings(&["Ibl.Mentor/Chat/action", "Ibl.Mentor/Mentors/read"]),
                data_actions: vec![],
                updated_at: at(9),
            },
        );
        more.members(200_001, &[USERS], true);
        let start = Instant::now();
        model.apply(&more.events[events..events + 1]);
        let role_edit = start.elapsed();
        let start = Instant::now();
        model.apply(&more.events[events + 1..]);
        let membership = start.elapsed();

        let grants = model.grant_count();
        let bytes = model.memory_bytes_estimate();

        let start = Instant::now();
        let (checkpoint, snapshot) = crate::Snapshot::snapshot(&model);
        let written = start.elapsed();
        let restored = RbacModel::new();
        let start = Instant::now();
        crate::Snapshot::restore(&restored, checkpoint, &snapshot).expect("a snapshot restores");
        let read = start.elapsed();
        for user in 1..=USERS {
            assert_eq!(restored.grants("acme", user), model.grants("acme", user));
        }

        println!(
            "rbac scale: {events} events built in {build:?}; 1,000 checks in {checks:?} \
             ({allowed_ops} operations allowed); 100 who-has-access in {who:?} ({entries} entries); \
             role edit {role_edit:?}; membership change {membership:?}; {grants} grants, \
             check index ~{:.1} MiB ({} bytes per grant); snapshot of {:.1} MiB written in \
             {written:?}, restored in {read:?}",
            bytes as f64 / (1024.0 * 1024.0),
            bytes / grants.max(1),
            snapshot.len() as f64 / (1024.0 * 1024.0),
        );
        assert!(grants > USERS as usize);
        assert_agrees_with_the_check_index(&model, &(1..=USERS).collect::<Vec<_>>());
    }

    #[test]
    fn a_user_named_by_a_policy_keeps_it_when_leaving_a_group_it_binds() {
        let mut log = Log::default();
        log.platform(1, "acme")
            .user(DAVE, "acme", "dave")
            .role(12, "acme", "Editor", &["Ibl.Mentor/Mentors/read"])
            .group(5, "acme", "Teachers", DAVE, &[DAVE])
            .policy(
                7,
                "acme",
                "Both ways",
                12,
                &["/platforms/1/mentors/5/"],
                &[DAVE],
                &[5],
            )
            .members(5, &[DAVE], false);
        let read = |model: &RbacModel| {
            authorize(
                &model.grants("acme", DAVE),
                &path("/platforms/1/mentors/5/"),
                "Ibl.Mentor/Mentors/read",
                ActionKind::Action,
            )
            .allowed
        };
        assert!(read(&model_of(&log)), "in one batch");
        let model = RbacModel::new();
        for e in &log.events {
            model.apply(std::slice::from_ref(e));
        }
        assert!(read(&model), "event by event");
    }
}
