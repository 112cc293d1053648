//! The Redis adapter of RBAC ([`RedisRbac`]): the same answers as the
//! in-memory model ([`RbacModel`]), kept in a Redis server that every query
//! service reads.
//!
//! # How it is written
//!
//! The projector keeps the in-memory model (its snapshot too), and after
//! each batch copies what the batch changed to Redis as it now is: each
//! touched user, role, group and policy whole, with the names of the
//! indexes it belongs to, and the grants of each user whose grants were
//! recomputed. The rules of RBAC (the check index above all) are thus
//! written once, in [`RbacModel`], and Redis holds their results.
//!
//! An operation writes state, not a change, so applying it again changes
//! nothing: the apply script (one per platform and run of operations, see
//! [`crate::redis_model`]) skips a run behind its platform's checkpoint,
//! applies one at or past it, and moves the checkpoint. An entity's
//! indexes are diffed by the script against those it recorded for the
//! entity (`ix:K`), so a rename or a removed member leaves nothing behind.
//!
//! When Redis lost the model (it came back empty, or older than the
//! projector's snapshot), the projector clears it and writes its whole
//! in-memory model, at the model's position: no replay of the log.
//!
//! # Keys
//!
//! `P` is a platform key (percent-encoded as in [`crate::redis_catalog`];
//! `%` for the global roles, which no platform key can be), `U` a user id,
//! `R` a role id, `G` a group id, `X` a policy id, `N` a name, `Q` a gram
//! (1 to 3 characters) of a lower-case name, `H` a resource path. In
//! platform P's slot, prefix `ibl:rbac:{P}:`:
//!
//! | key | type | holds |
//! |-----|------|-------|
//! | `checkpoint:rbac` | string | the position of the last event applied to P's keys |
//! | `platform` | string | `{id, n}` (JSON) |
//! | `u:U` | string | user U of P: `{n: username, e: email, a: active}` |
//! | `g:U` | hash | the check index: user U's grants, one field per policy (its id; the grant as JSON), absent when none |
//! | `r:R` | string | role R of P, deleted ones too (`x`) |
//! | `gr:G` | string | live group G of P, with its members |
//! | `p:X` | string | live policy X of P, with its users and groups |
//! | `ix:K` | set | the indexes entity key K is in (what the apply script diffs) |
//! | `un:N`, `ue:N` | sorted set | users whose username (email) in lower case is N |
//! | `roles`, `groups`, `policies` | sorted set | the live entities a list shows (not internal), scored by id |
//! | `rq:Q`, `gq:Q`, `pq:Q` | sorted set | those whose lower-case name holds Q |
//! | `gn:N`, `go:U`, `gm:U` | sorted set | live groups by lower-case name, owner, member |
//! | `pr:R`, `pu:U`, `pg:G`, `pp:H` | sorted set | live policies by role, user named, group named, resource path |
//!
//! # Reads
//!
//! A check reads `u:U` and the values of `g:U` (one script, [`GRANTS`]).
//! A policy's change rewrites its own field of each member's `g:U`, not
//! the member's other grants. A list is one script: each
//! filter is a sorted set (or a union the script resolves, as "the policies
//! of the users of this username, directly or through their groups"); the
//! smallest drives and the others are probed, so a list costs its smallest
//! filter, not the platform. A name of up to 3 characters is one gram's
//! set (exact); a longer one intersects its trigrams, and the candidates'
//! lower-case names are checked (`l`). The script answers the page's
//! records and those they name (role, users, groups), composed into views
//! here.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use ibl_events::rbac::{
    operations_for, ActionKind, ActionPattern, Because, Grant, ResourcePath, Via,
};
use ibl_events::{Position, RecordedEvent};
use redis::{RedisResult, Script};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{
    ancestors, lower, parse_paths, AccessEntry, GroupFilter, GroupRef, GroupView, Page,
    PolicyFilter, PolicyView, RbacModel, RbacQueries, RbacUser, RoleRef, RoleView, State, Touched,
    UserRef, GLOBAL_PLATFORM, MENTOR_ROLES,
};
use crate::assertions::ReadError;
use crate::redis_model::{
    encode_error, esc, list_count, needle_grams, text_grams, Op, Plan, RedisModel, Written,
    MAX_RANGE,
};
use crate::{Applied, ReadModel};

const NAME: &str = "rbac";

/// The version of the key layout: bump it when the keys change shape.
const LAYOUT_VERSION: u32 = 2;

const KEYS: &[&str] = &["ibl:rbac:*"];

/// About how many operations one script applies.
const CHUNK: usize = 256;

/// Applies one platform's operations (state, not changes) unless the
/// platform's checkpoint is past them, and moves the checkpoint.
///
/// KEYS[1]: the platform's checkpoint. ARGV[1]: the prefix, ARGV[3]: the
/// position to move to; then each operation, its name, its position and:
/// - `set K V`: K holds V;
/// - `unset K`: K is deleted;
/// - `hput K n F1 V1 .. Fn Vn`: hash K holds exactly fields F1..Fn (one
///   operation, so that no script boundary shows it half written);
/// - `hset K F V`: field F of hash K holds V;
/// - `hdel K F`: field F of hash K is deleted;
/// - `put K V ID n I1..In`: K holds V, and entity ID is in exactly the
///   indexes I1..In (sorted sets, scored by ID);
/// - `del K ID`: K is deleted and ID left out of every index it was in.
static APPLY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local pfx = ARGV[1]
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if cur > tonumber(ARGV[3]) then return 0 end
local i = 4
while i <= #ARGV do
  local op = ARGV[i]
  if op == 'set' then
    redis.call('SET', pfx .. ARGV[i + 2], ARGV[i + 3])
    i = i + 4
  elseif op == 'unset' then
    redis.call('DEL', pfx .. ARGV[i + 2])
    i = i + 3
  elseif op == 'hput' then
    local key = pfx .. ARGV[i + 2]
    local n = tonumber(ARGV[i + 3])
    redis.call('DEL', key)
    for j = 1, n do
      redis.call('HSET', key, ARGV[i + 2 + 2 * j], ARGV[i + 3 + 2 * j])
    end
    i = i + 4 + 2 * n
  elseif op == 'hset' then
    redis.call('HSET', pfx .. ARGV[i + 2], ARGV[i + 3], ARGV[i + 4])
    i = i + 5
  elseif op == 'hdel' then
    redis.call('HDEL', pfx .. ARGV[i + 2], ARGV[i + 3])
    i = i + 4
  elseif op == 'put' or op == 'del' then
    local key = ARGV[i + 2]
    local ix = pfx .. 'ix:' .. key
    local want = {}
    local id
    if op == 'put' then
      redis.call('SET', pfx .. key, ARGV[i + 3])
      id = ARGV[i + 4]
      local n = tonumber(ARGV[i + 5])
      for j = 1, n do want[ARGV[i + 5 + j]] = true end
      i = i + 6 + n
    else
      redis.call('DEL', pfx .. key)
      id = ARGV[i + 3]
      i = i + 4
    end
    local had = {}
    for _, index in ipairs(redis.call('SMEMBERS', ix)) do
      had[index] = true
      if not want[index] then
        redis.call('ZREM', pfx .. index, id)
        redis.call('SREM', ix, index)
      end
    end
    for index in pairs(want) do
      if not had[index] then
        redis.call('ZADD', pfx .. index, id, id)
        redis.call('SADD', ix, index)
      end
    end
  else
    return redis.error_reply('unknown operation ' .. tostring(op))
  end
end
redis.call('SET', KEYS[1], ARGV[3])
return 1
"#,
    )
});

/// The records and grants of users: KEYS[1] the platform's record, then
/// `u:U` and `g:U` of each user. Answers the platform's record, then each
/// user's record and the values of its grants (`false` for a missing
/// record).
static GRANTS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local out = {redis.call('GET', KEYS[1])}
for i = 2, #KEYS, 2 do
  out[#out + 1] = redis.call('GET', KEYS[i])
  out[#out + 1] = redis.call('HVALS', KEYS[i + 1])
end
return out
"#,
    )
});

/// A page of records and the records they name.
///
/// KEYS[1]: the platform's record (routing). ARGV: the prefix, the kind's
/// key prefix (`r:`, `gr:`, `p:`), the base set (`""`: none), the offset,
/// the limit, the needle to recheck (`""`: none), the number of filters,
/// then each filter: `z K` (the members of K), `within K` (the same, K
/// holding only members of the base set: a gram's), `users K` (for each user of
/// K, the groups holding it: `gm:U`), `reach K` (for each user of K, the
/// policies naming it, directly or through a group: `pu:U`, `pg:G`),
/// `owner O` (`go:O`, and `go:U` for each user whose lower-case username
/// is O), `named K` (for each group of K, the policies naming it),
/// `any n K1..Kn` (the union), `ids n I1..In`.
///
/// Answers the count, the platform's record, the number of records of the
/// page, each id and record, then pairs of a named record's key and value.
static LIST: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local pfx, kind, base = ARGV[1], ARGV[2], ARGV[3]
local offset, limit, needle = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local nf = tonumber(ARGV[7])
local function members(key) return redis.call('ZRANGE', pfx .. key, 0, -1) end
local function add_all(set, key)
  for _, m in ipairs(members(key)) do set[m] = true end
end
local sets, zkeys, within = {}, {}, {}
local i = 8
for _ = 1, nf do
  local t = ARGV[i]
  if t == 'z' or t == 'within' then
    table.insert(zkeys, ARGV[i + 1])
    if t == 'within' then within[ARGV[i + 1]] = true end
    i = i + 2
  elseif t == 'any' or t == 'ids' then
    local n = tonumber(ARGV[i + 1])
    local set = {}
    for j = 1, n do
      if t == 'any' then add_all(set, ARGV[i + 1 + j]) else set[ARGV[i + 1 + j]] = true end
    end
    table.insert(sets, set); i = i + 2 + n
  else
    local set = {}
    local key = ARGV[i + 1]
    if t == 'users' then
      for _, u in ipairs(members(key)) do add_all(set, 'gm:' .. u) end
    elseif t == 'reach' then
      for _, u in ipairs(members(key)) do
        add_all(set, 'pu:' .. u)
        for _, g in ipairs(members('gm:' .. u)) do add_all(set, 'pg:' .. g) end
      end
    elseif t == 'owner' then
      add_all(set, 'go:' .. key)
      for _, u in ipairs(members('un:' .. key)) do add_all(set, 'go:' .. u) end
    elseif t == 'named' then
      for _, g in ipairs(members(key)) do add_all(set, 'pg:' .. g) end
    else
      return redis.error_reply('unknown filter ' .. tostring(t))
    end
    table.insert(sets, set); i = i + 2
  end
end
local ids = {}
local count
-- One sorted set holds the answer: a range of it.
local whole
if #sets == 0 and #zkeys == 0 then
  whole = base
elseif #sets == 0 and #zkeys == 1 and needle == '' and (base == '' or within[zkeys[1]]) then
  whole = zkeys[1]
end
if whole then
  count = redis.call('ZCARD', pfx .. whole)
  if limit > 0 then
    ids = redis.call('ZRANGE', pfx .. whole, offset, offset + limit - 1)
  end
else
  -- The smallest filter drives; the others are probed.
  local driver, dsize, dz = nil, math.huge, nil
  for k, set in ipairs(sets) do
    local n = 0
    for _ in pairs(set) do n = n + 1 end
    if n < dsize then driver, dsize, dz = k, n, nil end
  end
  for k, key in ipairs(zkeys) do
    local n = redis.call('ZCARD', pfx .. key)
    if n < dsize then driver, dsize, dz = k, n, key end
  end
  local candidates = {}
  if dz then
    candidates = members(dz)
  else
    for m in pairs(sets[driver]) do table.insert(candidates, m) end
  end
  local matches = {}
  for _, m in ipairs(candidates) do
    local keep = true
    for k, set in ipairs(sets) do
      if (dz or k ~= driver) and not set[m] then keep = false; break end
    end
    if keep then
      for _, key in ipairs(zkeys) do
        if key ~= dz and not redis.call('ZSCORE', pfx .. key, m) then keep = false; break end
      end
    end
    if keep and base ~= '' and not redis.call('ZSCORE', pfx .. base, m) then keep = false end
    if keep and needle ~= '' then
      local rec = redis.call('GET', pfx .. kind .. m)
      keep = rec and string.find(cjson.decode(rec).l, needle, 1, true) ~= nil
    end
    if keep then table.insert(matches, tonumber(m)) end
  end
  table.sort(matches)
  count = #matches
  for k = offset + 1, math.min(count, offset + limit) do
    table.insert(ids, tostring(matches[k]))
  end
end
local out = {tostring(count), redis.call('GET', pfx .. 'platform') or ''}
local records = {}
for _, id in ipairs(ids) do
  local rec = redis.call('GET', pfx .. kind .. id)
  if rec then table.insert(records, {id, rec}) end
end
table.insert(out, tostring(#records))
local named, seen = {}, {}
local function name(key)
  if not seen[key] then seen[key] = true; table.insert(named, key) end
end
for _, pair in ipairs(records) do
  table.insert(out, pair[1]); table.insert(out, pair[2])
  if kind ~= 'r:' then
    local rec = cjson.decode(pair[2])
    if kind == 'p:' then
      name('r:' .. string.format('%d', rec.r))
      for _, u in ipairs(rec.u) do name('u:' .. string.format('%d', u)) end
      for _, g in ipairs(rec.g) do name('gr:' .. string.format('%d', g)) end
    else
      name('u:' .. string.format('%d', rec.o))
      for _, u in ipairs(rec.m) do name('u:' .. string.format('%d', u)) end
    end
  end
end
for _, key in ipairs(named) do
  local v = redis.call('GET', pfx .. key)
  if v then table.insert(out, key); table.insert(out, v) end
end
return out
"#,
    )
});

/// The users of one lower-case username (email) index and their records:
/// KEYS[1] the index; ARGV[1] the prefix. Answers id, record pairs.
static NAMED_USERS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local out = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local rec = redis.call('GET', ARGV[1] .. 'u:' .. id)
  if rec then table.insert(out, id); table.insert(out, rec) end
end
return out
"#,
    )
});

// ---------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------

#[derive(Serialize, Deserialize)]
struct PlatformDoc {
    id: u64,
    n: String,
}

#[derive(Serialize, Deserialize)]
struct UserDoc {
    n: String,
    e: String,
    a: bool,
}

#[derive(Clone, Serialize, Deserialize)]
struct RoleDoc {
    p: String,
    n: String,
    a: Vec<String>,
    d: Vec<String>,
    i: bool,
    b: bool,
    x: bool,
    l: String,
}

#[derive(Serialize, Deserialize)]
struct GroupDoc {
    u: String,
    n: String,
    s: String,
    o: u64,
    m: Vec<u64>,
    i: bool,
    b: bool,
    l: String,
}

#[derive(Serialize, Deserialize)]
struct PolicyDoc {
    n: String,
    r: u64,
    res: Vec<String>,
    u: Vec<u64>,
    g: Vec<u64>,
    i: bool,
    l: String,
}

/// One grant: policy, role, group (0: direct), paths, actions, data actions.
type GrantDoc = (u64, u64, u64, Vec<String>, Vec<String>, Vec<String>);

fn prefix(platform: &str) -> String {
    if platform == GLOBAL_PLATFORM {
        "ibl:rbac:{%}:".to_owned()
    } else {
        format!("ibl:rbac:{{{}}}:", esc(platform))
    }
}

fn json<T: Serialize>(value: &T) -> RedisResult<String> {
    serde_json::to_string(value).map_err(|e| encode_error("an RBAC record", e))
}

fn decode<T: for<'a> Deserialize<'a>>(raw: &str) -> Result<T, ReadError> {
    serde_json::from_str(raw).map_err(|e| ReadError::new(format!("an RBAC record: {e}")))
}

fn grant_doc(g: &Grant) -> GrantDoc {
    let strings = |p: &[ActionPattern]| p.iter().map(|a| a.as_str().to_owned()).collect();
    (
        g.policy_id,
        g.role_id,
        match g.via {
            Via::Direct => 0,
            Via::Group(id) => id,
        },
        g.resources.iter().map(|r| r.as_str().to_owned()).collect(),
        strings(&g.actions),
        strings(&g.data_actions),
    )
}

fn grant(doc: GrantDoc) -> Grant {
    let (policy_id, role_id, group, paths, actions, data_actions) = doc;
    let patterns = |list: Vec<String>| -> Arc<[ActionPattern]> {
        list.iter()
            .filter_map(|a| ActionPattern::parse(a).ok())
            .collect()
    };
    Grant {
        policy_id,
        role_id,
        via: if group == 0 {
            Via::Direct
        } else {
            Via::Group(group)
        },
        resources: paths
            .iter()
            .filter_map(|p| ResourcePath::parse_lenient(p).ok())
            .collect(),
        actions: patterns(actions),
        data_actions: patterns(data_actions),
    }
}

/// The operations that copy `touched` from the model's state, by platform.
fn plan(s: &State, touched: &Touched, at: Position) -> RedisResult<Plan> {
    let mut plan = Plan::new();
    let mut push = |platform: &str, args: Vec<String>| {
        plan.entry(prefix(platform))
            .or_default()
            .push(Op { position: at, args });
    };
    let put = |key: String, value: String, id: u64, indexes: Vec<String>| {
        let mut args = vec!["put".to_owned(), key, value, id.to_string()];
        args.push(indexes.len().to_string());
        args.extend(indexes);
        args
    };
    let grams = |tag: &'static str, lname: &str| {
        text_grams(lname)
            .into_iter()
            .map(move |q| format!("{tag}:{q}"))
    };
    for key in &touched.platforms {
        if let Some(p) = s.platforms.get(key) {
            let doc = PlatformDoc {
                id: p.id,
                n: p.name.clone(),
            };
            push(key, vec!["set".into(), "platform".into(), json(&doc)?]);
        }
    }
    for id in &touched.users {
        if let Some(u) = s.users.get(id) {
            let doc = UserDoc {
                n: u.username.clone(),
                e: u.email.clone(),
                a: u.active,
            };
            let indexes = vec![
                format!("un:{}", esc(&lower(&u.username))),
                format!("ue:{}", esc(&lower(&u.email))),
            ];
            push(
                &u.platform,
                put(format!("u:{id}"), json(&doc)?, *id, indexes),
            );
        }
    }
    for id in &touched.roles {
        if let Some(r) = s.roles.get(id) {
            let l = lower(&r.name);
            let mut indexes = Vec::new();
            if !r.deleted && !r.is_internal {
                indexes.push("roles".to_owned());
                indexes.extend(grams("rq", &l));
            }
            let doc = RoleDoc {
                p: r.platform.clone(),
                n: r.name.clone(),
                a: r.actions.clone(),
                d: r.data_actions.clone(),
                i: r.is_internal,
                b: r.is_builtin,
                x: r.deleted,
                l,
            };
            push(
                &r.platform,
                put(format!("r:{id}"), json(&doc)?, *id, indexes),
            );
        }
    }
    for id in &touched.groups {
        let Some(g) = s.groups.get(id) else {
            continue;
        };
        if g.deleted {
            push(
                &g.platform,
                vec!["del".into(), format!("gr:{id}"), id.to_string()],
            );
            continue;
        }
        let l = lower(&g.name);
        let mut indexes = vec![format!("gn:{}", esc(&l)), format!("go:{}", g.owner_id)];
        indexes.extend(g.members.iter().map(|u| format!("gm:{u}")));
        if !g.is_internal {
            indexes.push("groups".to_owned());
            indexes.extend(grams("gq", &l));
        }
        let doc = GroupDoc {
            u: g.unique_id.clone(),
            n: g.name.clone(),
            s: g.description.clone(),
            o: g.owner_id,
            m: g.members.iter().copied().collect(),
            i: g.is_internal,
            b: g.is_builtin,
            l,
        };
        push(
            &g.platform,
            put(format!("gr:{id}"), json(&doc)?, *id, indexes),
        );
    }
    for (id, platform) in &touched.policies {
        let Some(p) = s.policies.get(id) else {
            push(
                platform,
                vec!["del".into(), format!("p:{id}"), id.to_string()],
            );
            continue;
        };
        let l = lower(&p.name);
        let mut indexes = vec![format!("pr:{}", p.role_id)];
        indexes.extend(p.users.iter().map(|u| format!("pu:{u}")));
        indexes.extend(p.groups.iter().map(|g| format!("pg:{g}")));
        indexes.extend(p.paths.iter().map(|h| format!("pp:{}", esc(h.as_str()))));
        if !p.is_internal {
            indexes.push("policies".to_owned());
            indexes.extend(grams("pq", &l));
        }
        let doc = PolicyDoc {
            n: p.name.clone(),
            r: p.role_id,
            res: p.resources.clone(),
            u: p.users.iter().copied().collect(),
            g: p.groups.iter().copied().collect(),
            i: p.is_internal,
            l,
        };
        push(
            &p.platform,
            put(format!("p:{id}"), json(&doc)?, *id, indexes),
        );
    }
    // A user's grants written whole: the hash replaced, in one operation.
    for id in &touched.grants {
        let Some(u) = s.users.get(id) else {
            continue;
        };
        let grants = s.grants.get(id).map_or(&[][..], |g| g.as_slice());
        let mut args = vec!["hput".into(), format!("g:{id}"), grants.len().to_string()];
        for g in grants {
            args.push(g.policy_id.to_string());
            args.push(json(&grant_doc(g))?);
        }
        push(&u.platform, args);
    }
    // Single grants: each set as it now is, or deleted.
    for (id, policies) in &touched.grant_changes {
        if touched.grants.contains(id) {
            continue;
        }
        let Some(u) = s.users.get(id) else {
            continue;
        };
        let grants = s.grants.get(id).map_or(&[][..], |g| g.as_slice());
        for pid in policies {
            let key = format!("g:{id}");
            match grants.binary_search_by_key(pid, |g| g.policy_id) {
                Ok(i) => {
                    let doc = json(&grant_doc(&grants[i]))?;
                    push(&u.platform, vec!["hset".into(), key, pid.to_string(), doc]);
                }
                Err(_) => push(&u.platform, vec!["hdel".into(), key, pid.to_string()]),
            }
        }
    }
    Ok(plan)
}

/// Everything the model holds, as touched.
fn everything(s: &State) -> Touched {
    Touched {
        platforms: s.platforms.keys().cloned().collect(),
        users: s.users.keys().copied().collect(),
        roles: s.roles.keys().copied().collect(),
        groups: s.groups.keys().copied().collect(),
        policies: s
            .policies
            .iter()
            .map(|(id, p)| (*id, p.platform.clone()))
            .collect(),
        grants: s.grants.keys().copied().collect(),
        grant_changes: BTreeMap::new(),
    }
}

// ---------------------------------------------------------------------------
// The adapter
// ---------------------------------------------------------------------------

/// RBAC in Redis: written by the projector from its in-memory model
/// (`source`), read by the query services (which have none).
pub struct RedisRbac {
    core: Arc<RedisModel>,
    source: Option<Arc<RbacModel>>,
}

/// What a list script is asked: the kind's key prefix, the base set
/// (`""`: none), a name to look for and the filters (see [`LIST`]).
struct ListOf<'a> {
    kind: &'static str,
    base: &'static str,
    needle: Option<&'a str>,
    filters: Vec<Vec<String>>,
}

/// What a list script answered.
struct Fetched {
    count: usize,
    platform: (u64, String),
    records: Vec<(u64, String)>,
    named: HashMap<String, String>,
}

impl RedisRbac {
    /// The reading side: the query service's.
    pub async fn open(url: &str) -> Result<Self, ReadError> {
        Self::open_with(url, None, CHUNK).await
    }

    /// The writing side: the projector's, copying `source` (a tracking
    /// model, see [`RbacModel::tracking`]).
    pub async fn open_writer(url: &str, source: Arc<RbacModel>) -> Result<Self, ReadError> {
        Self::open_with(url, Some(source), CHUNK).await
    }

    async fn open_with(
        url: &str,
        source: Option<Arc<RbacModel>>,
        chunk: usize,
    ) -> Result<Self, ReadError> {
        let layout = format!("{LAYOUT_VERSION}");
        let core = RedisModel::open(NAME, url, layout, KEYS, chunk).await?;
        Ok(Self {
            core: Arc::new(core.idempotent()),
            source,
        })
    }

    /// A model for the projector: tracking what each batch changes.
    pub fn source() -> Arc<RbacModel> {
        Arc::new(RbacModel::tracking())
    }

    pub fn follow(&self, every: Duration) -> watch::Receiver<Position> {
        self.core.follow(every)
    }

    fn write(&self, touched: &Touched, from: Position, last: Position) -> RedisResult<Written> {
        let source = self.source.as_ref().expect("only a writer writes");
        let s = source.read();
        self.core
            .write(&APPLY, "", |_| plan(&s, touched, last), from, last, None)
    }

    /// Clears the model in Redis and writes the source whole, at the
    /// source's position; retries until Redis takes it.
    fn replace(&self) {
        let source = self.source.as_ref().expect("only a writer writes");
        self.core.replace(|| {
            let at = source.checkpoint();
            tracing::warn!(
                model = NAME,
                position = at,
                "writing the RBAC read model to Redis whole"
            );
            let s = source.read();
            self.core
                .write(&APPLY, "", |_| plan(&s, &everything(&s), at), 0, at, None)
                .map(|written| (at, written))
        });
    }

    async fn list(
        &self,
        platform: &str,
        of: ListOf<'_>,
        offset: usize,
        limit: usize,
    ) -> Result<Fetched, ReadError> {
        let ListOf {
            kind,
            base,
            needle,
            filters,
        } = of;
        let pfx = prefix(platform);
        let mut zs: Vec<Vec<String>> = Vec::new();
        let mut recheck = String::new();
        if let Some(needle) = needle.map(lower).filter(|n| !n.is_empty()) {
            let (grams, exact) = needle_grams(&needle);
            for q in grams {
                zs.push(vec!["within".into(), format!("{}q:{q}", &kind[..1])]);
            }
            if !exact {
                recheck = needle;
            }
        }
        let mut call = LIST.prepare_invoke();
        call.key(format!("{pfx}platform"))
            .arg(&pfx)
            .arg(kind)
            .arg(base)
            .arg(offset.min(MAX_RANGE))
            .arg(limit.min(MAX_RANGE))
            .arg(&recheck)
            .arg(filters.len() + zs.len());
        for f in filters.iter().chain(&zs) {
            call.arg(f);
        }
        let reply: Vec<String> = self.core.invoke(&call).await?;
        let mut reply = reply.into_iter();
        let count = list_count(&mut reply)?;
        let platform = match reply.next().filter(|p| !p.is_empty()) {
            Some(raw) => {
                let p: PlatformDoc = decode(&raw)?;
                (p.id, p.n)
            }
            None => (0, String::new()),
        };
        let n = list_count(&mut reply)?;
        let mut records = Vec::with_capacity(n);
        for _ in 0..n {
            let (Some(id), Some(rec)) = (reply.next(), reply.next()) else {
                return Err(ReadError::new("a list's records are cut short"));
            };
            let id = id
                .parse()
                .map_err(|_| ReadError::new("a record's id is not a number"))?;
            records.push((id, rec));
        }
        let mut named = HashMap::new();
        while let (Some(k), Some(v)) = (reply.next(), reply.next()) {
            named.insert(k, v);
        }
        Ok(Fetched {
            count,
            platform,
            records,
            named,
        })
    }

    /// Records of the global roles among `ids` (no platform's slot holds
    /// them).
    async fn global_roles(&self, ids: &[u64]) -> Result<HashMap<u64, RoleDoc>, ReadError> {
        let mut out = HashMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let pfx = prefix(GLOBAL_PLATFORM);
        let keys: Vec<String> = ids.iter().map(|id| format!("{pfx}r:{id}")).collect();
        let found: Vec<Option<String>> = self.core.query(redis::cmd("MGET").arg(&keys)).await?;
        for (id, raw) in ids.iter().zip(found) {
            if let Some(raw) = raw {
                out.insert(*id, decode::<RoleDoc>(&raw)?);
            }
        }
        Ok(out)
    }

    /// The roles the records name, from the platform's slot, else global.
    async fn roles_named(
        &self,
        fetched: &Fetched,
        ids: impl Iterator<Item = u64>,
    ) -> Result<HashMap<u64, RoleDoc>, ReadError> {
        let mut out = HashMap::new();
        let mut missing = Vec::new();
        for id in ids {
            match fetched.named.get(&format!("r:{id}")) {
                Some(raw) => {
                    out.insert(id, decode::<RoleDoc>(raw)?);
                }
                None => missing.push(id),
            }
        }
        out.extend(self.global_roles(&missing).await?);
        Ok(out)
    }

    fn user_ref(fetched: &Fetched, id: u64) -> Result<Option<UserRef>, ReadError> {
        fetched
            .named
            .get(&format!("u:{id}"))
            .map(|raw| {
                decode::<UserDoc>(raw).map(|u| UserRef {
                    id,
                    username: u.n,
                    email: u.e,
                })
            })
            .transpose()
    }

    fn role_view(platform: &str, fetched: &Fetched, id: u64, r: RoleDoc) -> RoleView {
        let (platform_id, platform_name) = if r.p == platform {
            fetched.platform.clone()
        } else {
            (0, String::new())
        };
        RoleView {
            id,
            platform_key: r.p,
            platform_id,
            platform_name,
            name: r.n,
            actions: r.a,
            data_actions: r.d,
            is_internal: r.i,
            is_builtin: r.b,
        }
    }

    fn group_views(platform: &str, fetched: &Fetched) -> Result<Vec<GroupView>, ReadError> {
        let mut out = Vec::with_capacity(fetched.records.len());
        for (id, raw) in &fetched.records {
            let g: GroupDoc = decode(raw)?;
            let mut users = Vec::with_capacity(g.m.len());
            for u in &g.m {
                users.extend(Self::user_ref(fetched, *u)?);
            }
            out.push(GroupView {
                id: *id,
                unique_id: g.u,
                platform_key: platform.to_owned(),
                platform_id: fetched.platform.0,
                platform_name: fetched.platform.1.clone(),
                name: g.n,
                description: g.s,
                owner: Self::user_ref(fetched, g.o)?.unwrap_or(UserRef {
                    id: g.o,
                    username: String::new(),
                    email: String::new(),
                }),
                users,
                is_internal: g.i,
                is_builtin: g.b,
            });
        }
        Ok(out)
    }

    async fn policy_views(
        &self,
        platform: &str,
        fetched: &Fetched,
    ) -> Result<Vec<(PolicyView, Option<RoleDoc>)>, ReadError> {
        let docs: Vec<(u64, PolicyDoc)> = fetched
            .records
            .iter()
            .map(|(id, raw)| decode(raw).map(|d| (*id, d)))
            .collect::<Result<_, _>>()?;
        let roles = self
            .roles_named(fetched, docs.iter().map(|(_, p)| p.r))
            .await?;
        let mut out = Vec::with_capacity(docs.len());
        for (id, p) in docs {
            let role_doc = roles.get(&p.r).cloned();
            let role = match &role_doc {
                Some(r) => RoleRef {
                    id: p.r,
                    name: r.n.clone(),
                    actions: r.a.clone(),
                    data_actions: r.d.clone(),
                },
                None => RoleRef {
                    id: p.r,
                    name: String::new(),
                    actions: Vec::new(),
                    data_actions: Vec::new(),
                },
            };
            let mut users = Vec::with_capacity(p.u.len());
            for u in &p.u {
                users.extend(Self::user_ref(fetched, *u)?);
            }
            let mut groups = Vec::with_capacity(p.g.len());
            for g in &p.g {
                if let Some(raw) = fetched.named.get(&format!("gr:{g}")) {
                    let doc: GroupDoc = decode(raw)?;
                    groups.push(GroupRef {
                        id: *g,
                        name: doc.n,
                        unique_id: doc.u,
                        description: doc.s,
                    });
                }
            }
            let view = PolicyView {
                id,
                name: p.n,
                role,
                platform_key: platform.to_owned(),
                platform_id: fetched.platform.0,
                platform_name: fetched.platform.1.clone(),
                resources: p.res,
                users,
                groups,
                is_internal: p.i,
            };
            out.push((view, role_doc));
        }
        Ok(out)
    }

    /// Users' records of `platform`, by id (those not found left out).
    async fn users(&self, platform: &str, ids: &[u64]) -> Result<HashMap<u64, UserDoc>, ReadError> {
        let pfx = prefix(platform);
        let mut out = HashMap::new();
        for some in ids.chunks(1_000) {
            let keys: Vec<String> = some.iter().map(|id| format!("{pfx}u:{id}")).collect();
            let found: Vec<Option<String>> = self.core.query(redis::cmd("MGET").arg(&keys)).await?;
            for (id, raw) in some.iter().zip(found) {
                if let Some(raw) = raw {
                    out.insert(*id, decode::<UserDoc>(&raw)?);
                }
            }
        }
        Ok(out)
    }

    async fn named_user(
        &self,
        platform: &str,
        value: &str,
        by_email: bool,
    ) -> Result<Option<RbacUser>, ReadError> {
        let pfx = prefix(platform);
        let index = format!(
            "{pfx}{}:{}",
            if by_email { "ue" } else { "un" },
            esc(&lower(value))
        );
        let mut call = NAMED_USERS.prepare_invoke();
        call.key(index).arg(&pfx);
        let reply: Vec<String> = self.core.invoke(&call).await?;
        let mut first = None;
        for pair in reply.chunks(2) {
            let [id, raw] = pair else {
                break;
            };
            let id: u64 = id
                .parse()
                .map_err(|_| ReadError::new("a user's id is not a number"))?;
            let u: UserDoc = decode(raw)?;
            let exact = if by_email { u.e == value } else { u.n == value };
            let user = RbacUser {
                id,
                platform_key: platform.to_owned(),
                username: u.n,
                email: u.e,
                active: u.a,
            };
            if exact {
                return Ok(Some(user));
            }
            first.get_or_insert(user);
        }
        Ok(first)
    }

    /// The grants of users (their record and grants, in one script):
    /// `None` for a user not registered on `platform`, empty grants for
    /// one deactivated; an error (a 503) while the platform is missing.
    async fn grants_of(
        &self,
        platform: &str,
        users: &[u64],
    ) -> Result<Vec<Option<(bool, Arc<Vec<Grant>>)>>, ReadError> {
        let pfx = prefix(platform);
        let mut call = GRANTS.key(format!("{pfx}platform"));
        for u in users {
            call.key(format!("{pfx}u:{u}")).key(format!("{pfx}g:{u}"));
        }
        let found: Vec<redis::Value> = self.core.invoke(&call).await?;
        fn parse<T: redis::FromRedisValue>(v: redis::Value) -> Result<T, ReadError> {
            redis::from_redis_value(v).map_err(|e| ReadError::new(e.to_string()))
        }
        let mut found = found.into_iter();
        if found
            .next()
            .map(parse::<Option<String>>)
            .transpose()?
            .flatten()
            .is_none()
        {
            // A platform's record is written before anything of it: without
            // it, Redis lost the model (or has not got the platform yet),
            // and a user missing from it is no proof of anything.
            return Err(ReadError::new(format!(
                "the RBAC read model has no platform {platform:?} (being rebuilt?)"
            )));
        }
        let mut out = Vec::with_capacity(users.len());
        while let (Some(user), Some(grants)) = (found.next(), found.next()) {
            let Some(user) = parse::<Option<String>>(user)? else {
                out.push(None);
                continue;
            };
            let active = decode::<UserDoc>(&user)?.a;
            let mut grants: Vec<Grant> = if active {
                parse::<Vec<String>>(grants)?
                    .iter()
                    .map(|raw| decode::<GrantDoc>(raw).map(grant))
                    .collect::<Result<_, _>>()?
            } else {
                Vec::new()
            };
            // In policy order, as the model keeps them (a hash has none).
            grants.sort_unstable_by_key(|g| g.policy_id);
            out.push(Some((active, Arc::new(grants))));
        }
        Ok(out)
    }
}

/// The role of a policy of `platform` grants something (see the rules of
/// [`RbacModel`]).
fn effective(platform: &str, r: &RoleDoc) -> bool {
    !r.x && (r.p == platform || r.p == GLOBAL_PLATFORM)
}

#[async_trait::async_trait]
impl RbacQueries for RedisRbac {
    async fn users_grants(
        &self,
        platform: &str,
        user_ids: &[u64],
    ) -> Result<Vec<Option<(bool, Arc<Vec<Grant>>)>>, ReadError> {
        self.grants_of(platform, user_ids).await
    }

    async fn user_by_username(
        &self,
        platform: &str,
        username: &str,
    ) -> Result<Option<RbacUser>, ReadError> {
        self.named_user(platform, username, false).await
    }

    async fn user_by_email(
        &self,
        platform: &str,
        email: &str,
    ) -> Result<Option<RbacUser>, ReadError> {
        self.named_user(platform, email, true).await
    }

    async fn because_names(
        &self,
        platform: &str,
        because: &Because,
    ) -> Result<(String, String, String), ReadError> {
        let pfx = prefix(platform);
        let mut keys = vec![
            format!("{pfx}p:{}", because.policy_id),
            format!("{pfx}r:{}", because.role_id),
        ];
        if let Via::Group(id) = because.via {
            keys.push(format!("{pfx}gr:{id}"));
        }
        let found: Vec<Option<String>> = self.core.query(redis::cmd("MGET").arg(&keys)).await?;
        let policy = match &found[0] {
            Some(raw) => decode::<PolicyDoc>(raw)?.n,
            None => String::new(),
        };
        let role = match &found[1] {
            Some(raw) => decode::<RoleDoc>(raw)?.n,
            None => self
                .global_roles(&[because.role_id])
                .await?
                .remove(&because.role_id)
                .map(|r| r.n)
                .unwrap_or_default(),
        };
        let group = match found.get(2) {
            Some(Some(raw)) => decode::<GroupDoc>(raw)?.n,
            _ => String::new(),
        };
        Ok((policy, role, group))
    }

    async fn roles(
        &self,
        platform: &str,
        name_contains: Option<&str>,
        include_global_roles: bool,
        offset: usize,
        limit: usize,
    ) -> Result<Page<RoleView>, ReadError> {
        let views = |platform: &str, fetched: Fetched| -> Result<Vec<RoleView>, ReadError> {
            let mut out = Vec::with_capacity(fetched.records.len());
            for (id, raw) in &fetched.records {
                out.push(Self::role_view(platform, &fetched, *id, decode(raw)?));
            }
            Ok(out)
        };
        let global = if include_global_roles && platform != GLOBAL_PLATFORM {
            let fetched = self
                .list(
                    GLOBAL_PLATFORM,
                    ListOf {
                        kind: "r:",
                        base: "roles",
                        needle: name_contains,
                        filters: Vec::new(),
                    },
                    0,
                    MAX_RANGE,
                )
                .await?;
            views(platform, fetched)?
        } else {
            Vec::new()
        };
        if global.is_empty() {
            let fetched = self
                .list(
                    platform,
                    ListOf {
                        kind: "r:",
                        base: "roles",
                        needle: name_contains,
                        filters: Vec::new(),
                    },
                    offset,
                    limit,
                )
                .await?;
            let count = fetched.count;
            return Ok(Page {
                count,
                items: views(platform, fetched)?,
            });
        }
        // Merged by id with the platform's (global roles are few).
        let fetched = self
            .list(
                platform,
                ListOf {
                    kind: "r:",
                    base: "roles",
                    needle: name_contains,
                    filters: Vec::new(),
                },
                0,
                MAX_RANGE,
            )
            .await?;
        let mut all = views(platform, fetched)?;
        all.extend(global);
        all.sort_by_key(|r| r.id);
        let count = all.len();
        Ok(Page {
            count,
            items: all.into_iter().skip(offset).take(limit).collect(),
        })
    }

    async fn role(&self, platform: &str, id: u64) -> Result<Option<RoleView>, ReadError> {
        let ids = vec!["ids".into(), "1".into(), id.to_string()];
        let fetched = self
            .list(
                platform,
                ListOf {
                    kind: "r:",
                    base: "",
                    needle: None,
                    filters: vec![ids],
                },
                0,
                1,
            )
            .await?;
        let doc = match fetched.records.first() {
            Some((_, raw)) => Some(decode::<RoleDoc>(raw)?),
            None => self.global_roles(&[id]).await?.remove(&id),
        };
        Ok(doc
            .filter(|r| !r.x && (r.p == platform || r.p == GLOBAL_PLATFORM))
            .map(|r| Self::role_view(platform, &fetched, id, r)))
    }

    async fn groups(
        &self,
        platform: &str,
        filter: &GroupFilter,
        offset: usize,
        limit: usize,
    ) -> Result<Page<GroupView>, ReadError> {
        let mut filters: Vec<Vec<String>> = Vec::new();
        if let Some(o) = &filter.owner {
            filters.push(vec!["owner".into(), esc(&lower(o)).into_owned()]);
        }
        if let Some(u) = &filter.username {
            filters.push(vec!["users".into(), format!("un:{}", esc(&lower(u)))]);
        }
        if let Some(e) = &filter.email {
            filters.push(vec!["users".into(), format!("ue:{}", esc(&lower(e)))]);
        }
        let fetched = self
            .list(
                platform,
                ListOf {
                    kind: "gr:",
                    base: "groups",
                    needle: filter.name.as_deref(),
                    filters,
                },
                offset,
                limit,
            )
            .await?;
        Ok(Page {
            count: fetched.count,
            items: Self::group_views(platform, &fetched)?,
        })
    }

    async fn group(&self, platform: &str, id: u64) -> Result<Option<GroupView>, ReadError> {
        let ids = vec!["ids".into(), "1".into(), id.to_string()];
        let fetched = self
            .list(
                platform,
                ListOf {
                    kind: "gr:",
                    base: "",
                    needle: None,
                    filters: vec![ids],
                },
                0,
                1,
            )
            .await?;
        Ok(Self::group_views(platform, &fetched)?.into_iter().next())
    }

    async fn policies(
        &self,
        filter: &PolicyFilter,
        offset: usize,
        limit: usize,
    ) -> Result<Page<PolicyView>, ReadError> {
        let platform = filter.platform_key.as_str();
        let mut filters: Vec<Vec<String>> = Vec::new();
        if let Some(r) = filter.role_id {
            filters.push(vec!["z".into(), format!("pr:{r}")]);
        }
        if let Some(u) = &filter.username {
            filters.push(vec!["reach".into(), format!("un:{}", esc(&lower(u)))]);
        }
        if let Some(e) = &filter.email {
            filters.push(vec!["reach".into(), format!("ue:{}", esc(&lower(e)))]);
        }
        if let Some(g) = &filter.group {
            filters.push(vec!["named".into(), format!("gn:{}", esc(&lower(g)))]);
        }
        let fetched = self
            .list(
                platform,
                ListOf {
                    kind: "p:",
                    base: "policies",
                    needle: filter.name.as_deref(),
                    filters,
                },
                offset,
                limit,
            )
            .await?;
        let items = self.policy_views(platform, &fetched).await?;
        Ok(Page {
            count: fetched.count,
            items: items.into_iter().map(|(v, _)| v).collect(),
        })
    }

    async fn policy(&self, platform: &str, id: u64) -> Result<Option<PolicyView>, ReadError> {
        let ids = vec!["ids".into(), "1".into(), id.to_string()];
        let fetched = self
            .list(
                platform,
                ListOf {
                    kind: "p:",
                    base: "",
                    needle: None,
                    filters: vec![ids],
                },
                0,
                1,
            )
            .await?;
        let views = self.policy_views(platform, &fetched).await?;
        Ok(views.into_iter().next().map(|(v, _)| v))
    }

    async fn mentor_policies(
        &self,
        platform: &str,
        mentor_id: u64,
    ) -> Result<Vec<PolicyView>, ReadError> {
        let stored: Option<String> = self
            .core
            .query(redis::cmd("GET").arg(format!("{}platform", prefix(platform))))
            .await?;
        let Some(pk) = stored.map(|raw| decode::<PlatformDoc>(&raw)).transpose()? else {
            return Ok(Vec::new());
        };
        let pk = pk.id;
        let path = format!("/platforms/{pk}/mentors/{mentor_id}/");
        let on = vec!["z".into(), format!("pp:{}", esc(&path))];
        let fetched = self
            .list(
                platform,
                ListOf {
                    kind: "p:",
                    base: "policies",
                    needle: None,
                    filters: vec![on],
                },
                0,
                MAX_RANGE,
            )
            .await?;
        let views = self.policy_views(platform, &fetched).await?;
        Ok(views
            .into_iter()
            .filter(|(p, role)| {
                parse_paths(&p.resources).len() == 1
                    && role.as_ref().is_some_and(|r| {
                        r.b && r.p == platform && MENTOR_ROLES.iter().any(|(_, n)| *n == r.n)
                    })
            })
            .map(|(p, _)| p)
            .collect())
    }

    async fn who_has_access(
        &self,
        platform: &str,
        resource: &ResourcePath,
        action: &str,
        offset: usize,
        limit: usize,
    ) -> Result<Page<AccessEntry>, ReadError> {
        let kind = {
            let id = resource.last_segment();
            operations_for(resource)
                .iter()
                .find(|op| op.action_for(id).eq_ignore_ascii_case(action))
                .map_or(ActionKind::Action, |op| op.kind)
        };
        let mut any = vec!["any".to_owned(), String::new()];
        any.extend(ancestors(resource).map(|h| format!("pp:{}", esc(h))));
        any[1] = (any.len() - 2).to_string();
        let fetched = self
            .list(
                platform,
                ListOf {
                    kind: "p:",
                    base: "",
                    needle: None,
                    filters: vec![any],
                },
                0,
                MAX_RANGE,
            )
            .await?;
        let policies = self.policy_views(platform, &fetched).await?;
        // The policies that permit the action, in id order, and whom they
        // reach: (user, group) in order.
        let mut reached: Vec<(u64, u64, Via)> = Vec::new();
        let mut groups: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for (p, role) in &policies {
            let Some(role) = role.as_ref().filter(|r| effective(platform, r)) else {
                continue;
            };
            let patterns = match kind {
                ActionKind::Action => &role.a,
                ActionKind::DataAction => &role.d,
            };
            let permits = patterns
                .iter()
                .filter_map(|a| ActionPattern::parse(a).ok())
                .any(|pat| pat.matches(action));
            if !permits {
                continue;
            }
            for u in &p.users {
                reached.push((u.id, p.id, Via::Direct));
            }
            for g in &p.groups {
                if let Some(raw) = fetched.named.get(&format!("gr:{}", g.id)) {
                    if let std::collections::btree_map::Entry::Vacant(e) = groups.entry(g.id) {
                        e.insert(decode::<GroupDoc>(raw)?.m);
                    }
                    for u in &groups[&g.id] {
                        reached.push((*u, p.id, Via::Group(g.id)));
                    }
                }
            }
        }
        let ids: Vec<u64> = reached
            .iter()
            .map(|(u, _, _)| *u)
            .collect::<BTreeSet<u64>>()
            .into_iter()
            .collect();
        let users = self.users(platform, &ids).await?;
        let roles: HashMap<u64, u64> = policies.iter().map(|(p, _)| (p.id, p.role.id)).collect();
        let mut found: BTreeMap<u64, (u64, Via)> = BTreeMap::new();
        for (u, pid, via) in reached {
            if users.get(&u).is_some_and(|d| d.a) {
                found.entry(u).or_insert((pid, via));
            }
        }
        let count = found.len();
        let items = found
            .into_iter()
            .skip(offset)
            .take(limit)
            .map(|(uid, (pid, via))| {
                let user = users.get(&uid);
                AccessEntry {
                    user: UserRef {
                        id: uid,
                        username: user.map(|u| u.n.clone()).unwrap_or_default(),
                        email: user.map(|u| u.e.clone()).unwrap_or_default(),
                    },
                    policy_id: pid,
                    role_id: roles.get(&pid).copied().unwrap_or_default(),
                    via,
                }
            })
            .collect();
        Ok(Page { count, items })
    }
}

/// The whole model only: its keys of one platform are not told apart.
impl crate::replay::Digest for RedisRbac {
    fn digest(&self, platform: Option<&str>) -> Result<String, String> {
        match platform {
            None => self.core.digest(),
            Some(_) => Err("a model in Redis is digested whole, not by platform".into()),
        }
    }
}

impl ReadModel for RedisRbac {
    fn name(&self) -> &'static str {
        NAME
    }

    /// Where the projector resumes: the lower of the source's position and
    /// Redis's.
    fn checkpoint(&self) -> Position {
        let redis = self.core.checkpoint();
        self.source
            .as_ref()
            .map_or(redis, |s| s.checkpoint().min(redis))
    }

    /// Also writes the source whole when it is ahead of Redis (restored
    /// from a snapshot over an empty or older Redis) while no event comes.
    fn verify(&self) -> Applied {
        let ahead = self
            .source
            .as_ref()
            .is_some_and(|s| s.checkpoint() > self.core.checkpoint());
        if self.core.verify() == Applied::Rewound || ahead {
            self.replace();
        }
        Applied::Done
    }

    fn apply(&self, batch: &[RecordedEvent]) -> Applied {
        let Some(source) = &self.source else {
            return Applied::Done;
        };
        if source.checkpoint() > self.core.checkpoint() {
            // The source (its snapshot) is ahead of Redis: what lies between
            // is known only as state.
            self.replace();
        }
        source.apply(batch);
        let touched = source.take_touched();
        match self
            .core
            .apply(batch, |_, from, last| self.write(&touched, from, last))
        {
            Applied::Done => Applied::Done,
            Applied::Rewound => {
                self.replace();
                Applied::Done
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rbac::tests::{random_history, Rng};
    use crate::testing::{RedisCluster, RedisServer};

    const PLATFORMS: [&str; 2] = ["acme", "other"];

    /// Every answer of the queries port, from both adapters, as text.
    async fn answers(q: &dyn RbacQueries) -> Vec<String> {
        let mut out = Vec::new();
        let mut say = |what: String| out.push(what);
        for platform in PLATFORMS {
            for name in [None, Some("R1"), Some("renamed"), Some("r1")] {
                for global in [false, true] {
                    for (offset, limit) in [(0, 100), (2, 3)] {
                        let page = q.roles(platform, name, global, offset, limit).await;
                        say(format!(
                            "roles {platform} {name:?} {global} {offset}: {page:?}"
                        ));
                    }
                }
            }
            for id in 0..=40 {
                say(format!("role {id}: {:?}", q.role(platform, id).await));
                say(format!(
                    "group {id}: {:?}",
                    q.group(platform, 100 + id).await
                ));
                say(format!(
                    "policy {id}: {:?}",
                    q.policy(platform, 200 + id).await
                ));
            }
            let group_filters = [
                GroupFilter::default(),
                GroupFilter {
                    name: Some("G1".into()),
                    ..GroupFilter::default()
                },
                GroupFilter {
                    owner: Some("1".into()),
                    ..GroupFilter::default()
                },
                GroupFilter {
                    owner: Some("USER1".into()),
                    ..GroupFilter::default()
                },
                GroupFilter {
                    username: Some("user3".into()),
                    email: Some("User3@acme.io".into()),
                    ..GroupFilter::default()
                },
                GroupFilter {
                    name: Some("g10".into()),
                    username: Some("user2".into()),
                    ..GroupFilter::default()
                },
            ];
            for f in &group_filters {
                for (offset, limit) in [(0, 100), (1, 2)] {
                    let page = q.groups(platform, f, offset, limit).await;
                    say(format!("groups {platform} {f:?} {offset}: {page:?}"));
                }
            }
            let policy_filters = [
                PolicyFilter::default(),
                PolicyFilter {
                    role_id: Some(2),
                    ..PolicyFilter::default()
                },
                PolicyFilter {
                    name: Some("P2".into()),
                    ..PolicyFilter::default()
                },
                PolicyFilter {
                    name: Some("chan".into()),
                    ..PolicyFilter::default()
                },
                PolicyFilter {
                    username: Some("USER2".into()),
                    ..PolicyFilter::default()
                },
                PolicyFilter {
                    email: Some("user5@acme.io".into()),
                    group: Some("g103".into()),
                    ..PolicyFilter::default()
                },
                PolicyFilter {
                    group: Some("G102".into()),
                    role_id: Some(1),
                    ..PolicyFilter::default()
                },
            ];
            for f in policy_filters {
                let f = PolicyFilter {
                    platform_key: platform.into(),
                    ..f
                };
                for (offset, limit) in [(0, 100), (3, 2)] {
                    let page = q.policies(&f, offset, limit).await;
                    say(format!("policies {f:?} {offset}: {page:?}"));
                }
            }
            for mentor in [5, 6] {
                let found = q.mentor_policies(platform, mentor).await;
                say(format!("mentor {platform} {mentor}: {found:?}"));
            }
            for (resource, action) in [
                ("/platforms/1/", "Ibl.Core/Roles/list"),
                ("/platforms/1/mentors/5/", "Ibl.Mentor/Mentors/read"),
                (
                    "/platforms/1/mentors/6/settings/x/",
                    "Ibl.Mentor/Settings/x/read",
                ),
                ("/platforms/2/mentors/5/", "Ibl.Mentor/Mentors/read"),
            ] {
                let resource = ResourcePath::parse(resource).expect("a path");
                for (offset, limit) in [(0, 100), (1, 2)] {
                    let page = q
                        .who_has_access(platform, &resource, action, offset, limit)
                        .await;
                    say(format!(
                        "access {platform} {resource:?} {action} {offset}: {page:?}"
                    ));
                }
            }
            for user in 0..=9u64 {
                let found = q.users_grants(platform, &[user, 1]).await;
                say(format!("grants {platform} {user}: {found:?}"));
                if let Ok(Some((_, grants))) = found.map(|mut f| f.swap_remove(0)) {
                    for g in grants.iter() {
                        let because = Because {
                            policy_id: g.policy_id,
                            role_id: g.role_id,
                            via: g.via,
                        };
                        let names = q.because_names(platform, &because).await;
                        say(format!("because {because:?}: {names:?}"));
                    }
                }
                let name = format!("USER{user}");
                say(format!(
                    "named {name}: {:?}",
                    q.user_by_username(platform, &name).await
                ));
                let email = format!("user{user}@{platform}.io");
                say(format!(
                    "email {email}: {:?}",
                    q.user_by_email(platform, &email).await
                ));
            }
        }
        out
    }

    async fn assert_same(memory: &RbacModel, redis: &RedisRbac, context: &str) {
        let (want, got) = (answers(memory).await, answers(redis).await);
        assert_eq!(want.len(), got.len());
        assert!(
            want.iter().all(|a| !a.contains("Err(")),
            "{context}: the in-memory model never fails"
        );
        for (w, g) in want.iter().zip(&got) {
            assert_eq!(w, g, "{context}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn random_histories_answer_as_the_in_memory_model_after_every_batch() {
        let server = RedisServer::start();
        for seed in 1..=4u64 {
            let url = server.url(seed as u8);
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let log = random_history(&mut rng, 200);
            let memory = RbacModel::new();
            let writer = RedisRbac::open_with(&url, Some(RedisRbac::source()), 7)
                .await
                .expect("open");
            let reader = RedisRbac::open(&url).await.expect("open");
            let mut done = 0;
            let mut checked = 0;
            while done < log.events.len() {
                let batch = (1 + rng.below(12) as usize).min(log.events.len() - done);
                let events = &log.events[done..done + batch];
                memory.apply(events);
                assert_eq!(writer.apply(events), Applied::Done);
                done += batch;
                if rng.below(4) == 0 || done == log.events.len() {
                    assert_same(&memory, &reader, &format!("seed {seed}, event {done}")).await;
                    checked += 1;
                }
            }
            assert!(checked > 5);
            assert_eq!(writer.checkpoint(), log.events.len() as Position);
        }
    }

    /// The model after every event of `log`, in memory.
    fn memory_of(events: &[RecordedEvent]) -> RbacModel {
        let memory = RbacModel::new();
        memory.apply(events);
        memory
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restart_a_loss_and_a_snapshot_ahead_of_redis_end_in_the_same_answers() {
        let server = RedisServer::start();
        let url = server.url(0);
        let log = random_history(&mut Rng(77), 250);
        let (first, _) = log.events.split_at(log.events.len() / 2);
        let memory = memory_of(&log.events);
        let before = RedisRbac::open_writer(&url, RedisRbac::source())
            .await
            .expect("open");
        assert_eq!(before.apply(first), Applied::Done);
        assert_same(&memory_of(first), &before, "half").await;
        // A projector restarted with no snapshot: it replays from 0, and
        // Redis skips what it has.
        let restarted = RedisRbac::open_writer(&url, RedisRbac::source())
            .await
            .expect("open");
        assert_eq!(restarted.checkpoint(), 0);
        for batch in log.events.chunks(9) {
            assert_eq!(restarted.apply(batch), Applied::Done);
        }
        assert_same(&memory, &restarted, "replayed").await;
        // Every key carries its platform's hash tag.
        for key in server.keys() {
            let tagged =
                key.starts_with("ibl:rbac:{acme}:") || key.starts_with("ibl:rbac:{other}:");
            let global = key == "ibl:checkpoint:rbac" || key == "ibl:layout:rbac";
            assert!(tagged || global, "{key}");
        }
        // Redis comes back empty: the projector writes its model whole,
        // with no replay of the log.
        redis::cmd("FLUSHDB")
            .query::<()>(&mut server.connection())
            .expect("flush");
        assert_eq!(restarted.verify(), Applied::Done);
        assert_eq!(restarted.checkpoint(), log.events.len() as Position);
        assert_same(&memory, &restarted, "after a loss").await;
        // A source restored ahead of Redis (its snapshot was written after
        // Redis's dump): written whole at the next batch.
        let other = server.url(1);
        let behind = RedisRbac::open_writer(&other, RedisRbac::source())
            .await
            .expect("open");
        assert_eq!(behind.apply(first), Applied::Done);
        let source = RedisRbac::source();
        let (at, bytes) = crate::Snapshot::snapshot(&memory);
        crate::Snapshot::restore(source.as_ref(), at, &bytes).expect("restore");
        let ahead = RedisRbac::open_writer(&other, source).await.expect("open");
        assert_eq!(ahead.checkpoint(), first.last().expect("events").position);
        assert_eq!(ahead.apply(&log.events), Applied::Done);
        assert_same(&memory, &ahead, "snapshot ahead").await;
        // The same over an empty Redis while no event comes: the idle
        // check writes it.
        let empty = server.url(2);
        let source = RedisRbac::source();
        crate::Snapshot::restore(source.as_ref(), at, &bytes).expect("restore");
        let idle = RedisRbac::open_writer(&empty, source).await.expect("open");
        assert_eq!(idle.verify(), Applied::Done);
        assert_eq!(idle.checkpoint(), log.events.len() as Position);
        assert_same(&memory, &idle, "snapshot ahead, idle").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_a_redis_cluster_the_answers_are_the_same() {
        let cluster = RedisCluster::start();
        let log = random_history(&mut Rng(5), 200);
        let redis = RedisRbac::open_writer(&cluster.url(), RedisRbac::source())
            .await
            .expect("open a cluster");
        for batch in log.events.chunks(25) {
            assert_eq!(redis.apply(batch), Applied::Done);
        }
        let reader = RedisRbac::open(&cluster.url()).await.expect("open");
        assert_same(&memory_of(&log.events), &reader, "cluster").await;
        assert!(
            cluster.keys_per_node().iter().filter(|n| **n > 0).count() >= 2,
            "the platforms' keys spread over the nodes"
        );
    }
}
