//! The Redis adapter of the assertions read model ([`RedisAssertions`]): the
//! same answers as the SQLite one ([`crate::assertions::AssertionsModel`]),
//! kept in a Redis server shared by every process that reads them.
//!
//! # Writing: one script per platform, then the global checkpoint
//!
//! Each [`ReadModel::apply`] turns its batch into changes grouped by platform
//! and sends each platform's changes, in log order, to one Lua script
//! (`EVALSHA`, [`redis::Script`]) that reads the platform's checkpoint,
//! applies only the changes of events past it, and moves it: one atomic step
//! (a script runs alone, and never stops half way: it checks its input
//! before its first write, and Redis refuses a script for lack of memory
//! only before its first write). A platform's changes of a large batch are
//! sent in several scripts of about [`CHUNK`] changes, cut between two
//! events, each moving the platform's checkpoint to its last event: no
//! script blocks the server for long. When every platform's scripts of the
//! batch have succeeded, the global checkpoint moves to the batch's last
//! event: it is where the projector resumes after a restart
//! ([`ReadModel::checkpoint`]); events between it and a platform's own
//! checkpoint are replayed as no-ops. So a projector killed at any point
//! resumes without skipping or doubling an event.
//!
//! Every key of a platform carries the platform's hash tag (`{acme}`): each
//! script touches one slot, so it stays atomic on a Redis Cluster too (the
//! scripts build the key names they touch from the platform's prefix, all
//! in the slot of the declared key). What must be found without knowing the
//! platform (an assertion by its id alone, for public verification; the
//! platform of a credential or an assertion named by a later event of its
//! stream) has a lookup key outside the platforms' slots, written (`SET
//! NX`, never changed) before the platform's script: a crash between them
//! leaves a lookup to an assertion not yet written, which reads as missing,
//! and the replay finds it the same.
//!
//! One server or a Redis Cluster ([`crate::redis_link`]: `REDIS_URL` lists
//! the cluster's seed nodes, comma-separated); the lookups are read and
//! written in bulk on each key's node, and the sweep after a loss scans
//! every primary. Tested against a local cluster of three primaries.
//!
//! A server found behind the projector's checkpoint (it came back empty,
//! or from an older dump) is noticed at the next batch, or within a second
//! while the log is idle ([`ReadModel::verify`]): the model's keys are
//! deleted and the projector rebuilds it from position 0
//! ([`Applied::Rewound`]).
//!
//! `apply` cannot fail: when Redis cannot be reached or answers an error,
//! it logs a warning and retries the whole batch (every step is idempotent)
//! with a backoff from 50 ms to 5 s, until it succeeds. It never skips a
//! batch, and the projector waits meanwhile. On a multi-threaded tokio
//! runtime the wait is in [`tokio::task::block_in_place`], so the worker's
//! other tasks move to another thread. Queries never retry: a Redis failure
//! is a [`ReadError`] (the API answers 503), and the next query reconnects.
//!
//! # Keys
//!
//! `P` is the platform key, `C` a credential id, `X` a course, `A` an
//! assertion id, `E` a recipient's email in lower case, `U` a username, `K`
//! an `Idempotency-Key`, each with `%`, `:`, `{` and `}` percent-encoded
//! (`%25`, `%3A`, `%7B`, `%7D`), so that every name splits one way and the
//! only braces are the hash tag's. Positions are those of the log.
//!
//! Outside any platform:
//!
//! | key | type | holds |
//! |-----|------|-------|
//! | `ibl:checkpoint:assertions` | string | the position of the last event every platform has applied: where the projector resumes |
//! | `ibl:layout:assertions` | string | the layout of these keys (version, block widths); another layout is refused at open |
//! | `ibl:assertion-platform:A` | string | the platform of assertion A (written before its issue's script) |
//! | `ibl:credential-platform:C` | string | the platform of credential C (written before its creation's script) |
//!
//! In platform P's slot, prefix `ibl:{P}:`:
//!
//! | key | type | holds |
//! |-----|------|-------|
//! | `checkpoint:assertions` | string | the position of the last event applied to P's keys |
//! | `assertion:A` | string | the record of A's issue: its position, C, E and U, each followed by `:` (the escaped names hold none), then the [`AssertionView`] as issued (JSON, `revoked: null`) |
//! | `revocation:A` | string | the [`Revocation`] of A (JSON), once revoked |
//! | `list:S` | sorted set | the assertions of scope S, revoked or not, scored by the position of their issue (issue order) |
//! | `expiry:S:V` | sorted set | the exclusions of variant V: those of `list:S` that expire, scored by their expiry (µs), and for V `unrevoked` the revoked, scored `-inf`: counts the excluded |
//! | `expiry:S:V:W:B` | sorted set | those of `expiry:S:V` issued in block B of width W (positions `B * W` to `B * W + W - 1`; W one of [`WIDTHS`]), scored as there |
//! | `blocks:S:V:W` | sorted set | the blocks B of width W with a non-empty `expiry:S:V:W:B`, scored by B |
//! | `course-of` | hash | C → X, the course of each credential of P that has one |
//! | `holders:C` | hash | field `e:E` (an email) or `u:U` (a username) → the unrevoked assertions of credential C issued to that recipient: each assertion's id and its expiry (µs, or `inf`: never), each followed by the byte 0xFF (never in UTF-8 text) |
//! | `idempotency:K` | hash | `request_hash`, `streams` (JSON array: the first stream of each kind the request wrote), `position` (its last event) |
//!
//! The scopes S: `platform` (all of P's assertions), `credential:C` (those
//! of credential C), `course:X` (those of the credentials whose course is
//! X); the variants V: `issued` (all) and `unrevoked`. An assertion issued
//! is added to the lists of its platform's, its credential's and its
//! credential's course's scopes (and, when it expires, to both variants'
//! exclusions); a revocation enters it in the `unrevoked` exclusions with
//! the score `-inf`, which every `now` has passed (and removes it from the
//! holders). One list per scope, not one per variant: an issue writes half
//! the sorted-set entries, and a revocation adds entries instead of
//! removing them.
//!
//! # Lists
//!
//! A list is one scope's list less the exclusions of a variant
//! (`include_revoked` picks the variant; a filter on both a credential and
//! a course is the credential's list when its course is that one, else
//! empty) scored up to a threshold: `now` when the expired are left out
//! (the API's default), else `-inf` (the revoked only; nothing for the
//! `issued` variant). It is answered by one read-only script: one round
//! trip, one consistent state.
//!
//! * Nothing excluded: the count is `ZCARD list`, the page one `ZRANGE` at
//!   the offset: O(log n + page).
//! * Exclusions (below, "expired" stands for excluded, `now` for the
//!   threshold): the count is `ZCARD list` minus `ZCOUNT expiry -inf
//!   now`, exact, O(log n). When nothing in the scope is excluded, the
//!   page is the plain `ZRANGE`. Otherwise
//!   the page is found by counts over blocks of the log's positions, on
//!   two levels ([`WIDTHS`]: 65,536 positions, each split in 64 blocks of
//!   1,024), walked in order: a stretch between two blocks that hold
//!   expiring assertions holds only unexpired ones (`ZCOUNT list`); a
//!   block holds `ZCOUNT list` over its positions minus `ZCOUNT
//!   expiry:…:W:B -inf now` unexpired ones, and is skipped whole when the
//!   page starts after it. The large block where the page starts is walked
//!   the same way by its small blocks; in the small block where it starts,
//!   the start is found by a binary search over its positions (the
//!   unexpired up to p are `ZCOUNT list` up to p minus the block's expired
//!   ones up to p, whose positions are read once, `ZMSCORE`), and the page
//!   is read from there, each candidate's expiry checked (`ZMSCORE`).
//!   Cost, whatever the offset and however many have expired: two `ZCOUNT`
//!   (O(log n)) per large block with expiring assertions before the page
//!   (a scope spread over a log of 10 million events has at most 153) and
//!   per small block of the large one where it starts (at most 64), the
//!   expired of one small block (at most 1,024 of the scope's assertions),
//!   plus the page and the expired among its span. Redis 7.0 or later
//!   (`ZMSCORE`, and `SET NX GET` for the lookups).
//! * Course: the `course:X` scope is kept up to date when an assertion is
//!   issued (the credential's course is read in `course-of`) and when a
//!   credential's course changes (created, updated, deleted): its
//!   assertions move from the old course's sets to the new one's, in the
//!   same script, O(m log n) for the credential's m assertions: such a
//!   change is rare, and blocks the server meanwhile (see the benchmark,
//!   `examples/redis_assertions_bench.rs`, for a figure). The write side
//!   keeps 3 sorted-set entries per assertion (one per scope) and, for one
//!   that expires or is revoked, 3 more per scope and variant (the count's
//!   set and a block of each level).
//!
//! Expiries and `now` are compared in µs as Redis scores (doubles): exact
//! for instants before the year 2255.
//!
//! # Holders
//!
//! [`AssertionQueries::holders_among`] reads the fields of the request's
//! recipients in the credential's `holders` hash (one `HMGET`): a
//! recipient holds the credential when one of its assertions there is
//! unexpired and not in `except`. One hash per credential, not a key per
//! recipient: a rebuild writes one field per recipient into a hash it
//! already has (one `HSET` per run of issues), not a new key.
//!
//! # Credential and assertion platforms
//!
//! An assertion's platform is its issue's `platform`; a revocation finds it
//! through `ibl:assertion-platform:A` (and is ignored when the assertion is
//! unknown, as in SQLite). A credential's platform is its creation's, found
//! later through `ibl:credential-platform:C` (or, when the creation was
//! never seen, the actor's platform of the event). The course filter
//! therefore assumes an assertion and its credential share a platform, as
//! the command side makes them.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use ibl_events::credentials::{AssertionEvent, CredentialEvent, Recipient};
use ibl_events::{DomainEvent, Position, RecordedEvent};
use redis::{RedisResult, Script};
use tokio::sync::watch;

use crate::assertions::{
    AssertionFilter, AssertionQueries, AssertionView, IdempotencyRecord, ReadError, Revocation,
};
use crate::credentials::Page;
use crate::redis_link::{self, Writer};
use crate::redis_model::{esc, list_count, Op, Plan, RedisModel, Written, MAX_RANGE};
use crate::{Applied, ReadModel};

/// The widths of the expiry blocks, in log positions: blocks of 65,536
/// positions, each split in blocks of 1,024 (each width divides the one
/// before it).
pub const WIDTHS: [u64; 2] = [65_536, 1_024];

/// About how many changes one script applies (it is cut between events).
pub const CHUNK: usize = 512;

/// The version of the key layout: bump it when the keys change shape.
const LAYOUT_VERSION: u32 = 5;

const NAME: &str = "assertions";

/// Applies one platform's changes after its checkpoint and moves it.
///
/// KEYS[1]: the platform's checkpoint. ARGV[1]: the platform's prefix,
/// ARGV[2]: the block widths, ARGV[3]: the checkpoint to move to (the last
/// change's position); then the changes: an operation, its position and its
/// fields (`issue`: id, credential, email, username, expires, record
/// (its header and view, see the keys), fresh;
/// `revoke`: id, revocation; `course`: credential, course or "";
/// `record`: key, request hash, stream).
static APPLY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local prefix = ARGV[1]
local widths = {}
for w in string.gmatch(ARGV[2], '%d+') do
  widths[#widths + 1] = w
end
local upto = ARGV[3]
local done = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(upto) <= done then
  return 0
end

local fields = {issue = 7, revoke = 2, course = 2, record = 3}
local i = 4
while i <= #ARGV do
  local n = fields[ARGV[i]]
  if not n or i + 1 + n > #ARGV then
    return redis.error_reply('malformed change at argument ' .. i)
  end
  i = i + 2 + n
end

local function block_of(position, width)
  return string.format('%d', math.floor(tonumber(position) / tonumber(width)))
end

-- The sorted-set entries added by issues, sent at the end of the run or
-- before the next operation that reads or removes any (one variadic ZADD
-- per key: most of a run's issues share their lists).
local adds, added = {}, {}
local function zadd(key, score, member)
  local a = adds[key]
  if not a then
    a = {}
    adds[key] = a
    added[#added + 1] = key
  end
  a[#a + 1] = score
  a[#a + 1] = member
end

-- cmd key args..., in calls of at most 1,000 arguments (pairs kept whole).
local function bulk(cmd, key, args)
  for j = 1, #args, 1000 do
    redis.call(cmd, key, unpack(args, j, math.min(j + 999, #args)))
  end
end

-- The records written by issues, sent by one MSET per 500 at the next
-- flush (before anything reads a record); `written` answers for them
-- until then.
local sets, written = {}, {}
local function flush_records()
  for j = 1, #sets, 1000 do
    redis.call('MSET', unpack(sets, j, math.min(j + 999, #sets)))
  end
  sets, written = {}, {}
end

local flush_holders
local function flush()
  flush_records()
  for _, key in ipairs(added) do
    bulk('ZADD', key, adds[key])
  end
  adds, added = {}, {}
  flush_holders()
end

-- Enters an assertion in a scope's exclusions of one variant, scored by
-- `score`: its expiry, or -inf when revoked (for the unrevoked variant).
local function exclude(scope, variant, id, position, score)
  local s = scope .. ':' .. variant
  zadd(prefix .. 'expiry:' .. s, score, id)
  for _, w in ipairs(widths) do
    local block = block_of(position, w)
    zadd(prefix .. 'expiry:' .. s .. ':' .. w .. ':' .. block, score, id)
    zadd(prefix .. 'blocks:' .. s .. ':' .. w, block, block)
  end
end

-- Each credential's scopes, read once a run (a course change forgets them).
local scopes = {}
local function scopes_of(credential)
  local found = scopes[credential]
  if not found then
    found = {'platform', 'credential:' .. credential}
    local course = redis.call('HGET', prefix .. 'course-of', credential)
    if course then
      found[3] = 'course:' .. course
    end
    scopes[credential] = found
  end
  return found
end

-- The lists of each credential's scopes (an issue is added to each, by
-- position).
local lists = {}
local function lists_of(credential)
  local found = lists[credential]
  if not found then
    found = {}
    for _, scope in ipairs(scopes_of(credential)) do
      found[#found + 1] = prefix .. 'list:' .. scope
    end
    lists[credential] = found
  end
  return found
end

-- The holders written by issues, appended to their fields at the next
-- flush: credential -> {fields = {field, ...}, text = {field -> text}}.
local SEP = '\255'
local held, holding = {}, {}
local function hold(credential, field, id, score)
  local h = held[credential]
  if not h then
    h = {fields = {}, text = {}}
    held[credential] = h
    holding[#holding + 1] = credential
  end
  local t = h.text[field]
  if not t then
    h.fields[#h.fields + 1] = field
    t = ''
  end
  h.text[field] = t .. id .. SEP .. score .. SEP
end

function flush_holders()
  for _, credential in ipairs(holding) do
    local h = held[credential]
    local key = prefix .. 'holders:' .. credential
    for j = 1, #h.fields, 500 do
      local fields = {unpack(h.fields, j, math.min(j + 499, #h.fields))}
      local old = redis.call('HMGET', key, unpack(fields))
      local args = {}
      for k, field in ipairs(fields) do
        args[#args + 1] = field
        args[#args + 1] = (old[k] or '') .. h.text[field]
      end
      redis.call('HSET', key, unpack(args))
    end
  end
  held, holding = {}, {}
end

local function unhold(credential, field, id)
  local key = prefix .. 'holders:' .. credential
  local text = redis.call('HGET', key, field)
  if not text then
    return
  end
  local kept = {}
  for a, e in string.gmatch(text, '([^\255]*)\255([^\255]*)\255') do
    if a ~= id then
      kept[#kept + 1] = a .. SEP .. e .. SEP
    end
  end
  if #kept == 0 then
    redis.call('HDEL', key, field)
  else
    redis.call('HSET', key, field, table.concat(kept))
  end
end

-- fresh: "1" when the assertion's lookup was written by this batch (it
-- cannot be here yet), else it may be and is checked.
local function issue(position, id, credential, email, username, expires, record, fresh)
  local key = prefix .. 'assertion:' .. id
  if fresh ~= '1' and (written[key] or redis.call('EXISTS', key) == 1) then
    return
  end
  written[key] = true
  sets[#sets + 1] = key
  sets[#sets + 1] = record
  for _, list in ipairs(lists_of(credential)) do
    zadd(list, position, id)
  end
  if expires ~= '' then
    for _, scope in ipairs(scopes_of(credential)) do
      exclude(scope, 'issued', id, position, expires)
      exclude(scope, 'unrevoked', id, position, expires)
    end
  end
  local score = expires
  if score == '' then
    score = 'inf'
  end
  if email ~= '' then
    hold(credential, 'e:' .. email, id, score)
  end
  if username ~= '' then
    hold(credential, 'u:' .. username, id, score)
  end
end

local function revoke(id, revocation)
  local record = redis.call('GET', prefix .. 'assertion:' .. id)
  if not record then
    return
  end
  -- position, credential, email, username (the header of the record)
  local a = {string.match(record, '^([^:]*):([^:]*):([^:]*):([^:]*):')}
  local key = prefix .. 'revocation:' .. id
  if redis.call('SET', key, revocation, 'GET') then -- revoked before
    return
  end
  for _, scope in ipairs(scopes_of(a[2])) do
    exclude(scope, 'unrevoked', id, a[1], '-inf')
  end
  if a[3] ~= '' then
    unhold(a[2], 'e:' .. a[3], id)
  end
  if a[4] ~= '' then
    unhold(a[2], 'u:' .. a[4], id)
  end
end

-- Moves a credential's assertions from its course's lists to another's:
-- one variadic command per key.
local function set_course(credential, course)
  local of = prefix .. 'course-of'
  local old = redis.call('HGET', of, credential)
  if course == '' then
    course = false
  end
  if old == course then
    return
  end
  -- The credential's list, then each variant's exclusions.
  local members = redis.call('ZRANGE', prefix .. 'list:credential:' .. credential, 0, -1,
    'WITHSCORES')
  local position = {}
  local ids, pairs_ = {}, {}
  for j = 1, #members, 2 do
    position[members[j]] = members[j + 1]
    ids[#ids + 1] = members[j]
    pairs_[#pairs_ + 1] = members[j + 1]
    pairs_[#pairs_ + 1] = members[j]
  end
  for _, target in ipairs({old, course}) do
    if target then
      local key = prefix .. 'list:course:' .. target
      if target == course then
        bulk('ZADD', key, pairs_)
      else
        bulk('ZREM', key, ids)
      end
    end
  end
  for _, variant in ipairs({'issued', 'unrevoked'}) do
    local s = 'credential:' .. credential .. ':' .. variant
    local expiring = redis.call('ZRANGE', prefix .. 'expiry:' .. s, 0, -1, 'WITHSCORES')
    -- The excluded ones: all of them, and by block of each width.
    local gone, expiry_pairs = {}, {}
    local blocks = {}
    for _, w in ipairs(widths) do
      blocks[w] = {}
    end
    for j = 1, #expiring, 2 do
      local id, e = expiring[j], expiring[j + 1]
      gone[#gone + 1] = id
      expiry_pairs[#expiry_pairs + 1] = e
      expiry_pairs[#expiry_pairs + 1] = id
      for _, w in ipairs(widths) do
        local b = block_of(position[id], w)
        local in_block = blocks[w][b]
        if not in_block then
          in_block = {ids = {}, pairs = {}}
          blocks[w][b] = in_block
        end
        in_block.ids[#in_block.ids + 1] = id
        in_block.pairs[#in_block.pairs + 1] = e
        in_block.pairs[#in_block.pairs + 1] = id
      end
    end
    for _, target in ipairs({old, course}) do
      if target then
        local t = 'course:' .. target .. ':' .. variant
        local adding = target == course
        if adding then
          bulk('ZADD', prefix .. 'expiry:' .. t, expiry_pairs)
        else
          bulk('ZREM', prefix .. 'expiry:' .. t, gone)
        end
        for _, w in ipairs(widths) do
          local registry = prefix .. 'blocks:' .. t .. ':' .. w
          for b, in_block in pairs(blocks[w]) do
            local key = prefix .. 'expiry:' .. t .. ':' .. w .. ':' .. b
            if adding then
              bulk('ZADD', key, in_block.pairs)
              redis.call('ZADD', registry, b, b)
            else
              bulk('ZREM', key, in_block.ids)
              if redis.call('EXISTS', key) == 0 then
                redis.call('ZREM', registry, b)
              end
            end
          end
        end
      end
    end
  end
  if course then
    redis.call('HSET', of, credential, course)
  else
    redis.call('HDEL', of, credential)
  end
  scopes[credential] = nil
  lists[credential] = nil
end

local function kind(stream)
  local dash = string.find(stream, '-', 1, true)
  if dash then
    return string.sub(stream, 1, dash - 1)
  end
  return stream
end

local records, order = {}, {}
local function record(position, key, request_hash, stream)
  local r = records[key]
  if not r then
    local stored = redis.call('HMGET', prefix .. 'idempotency:' .. key, 'request_hash', 'streams')
    if stored[1] then
      r = {request_hash = stored[1], streams = cjson.decode(stored[2])}
    else
      r = {request_hash = request_hash, streams = {}}
    end
    records[key] = r
    order[#order + 1] = key
  end
  local k = kind(stream)
  for _, s in ipairs(r.streams) do
    if kind(s) == k then
      r.position = position
      return
    end
  end
  r.streams[#r.streams + 1] = stream
  r.position = position
end

i = 4
while i <= #ARGV do
  local op, position = ARGV[i], ARGV[i + 1]
  local a = i + 2
  if tonumber(position) > done then
    if op == 'issue' then
      issue(position, ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5],
        ARGV[a + 6])
    elseif op == 'revoke' then
      flush()
      revoke(ARGV[a], ARGV[a + 1])
    elseif op == 'course' then
      flush()
      set_course(ARGV[a], ARGV[a + 1])
    else
      record(position, ARGV[a], ARGV[a + 1], ARGV[a + 2])
    end
  end
  i = a + fields[op]
end
flush()
for _, key in ipairs(order) do
  local r = records[key]
  redis.call('HSET', prefix .. 'idempotency:' .. key, 'request_hash', r.request_hash,
    'streams', cjson.encode(r.streams), 'position', r.position)
end
redis.call('SET', KEYS[1], upto)
return 1
"#,
    )
});

/// A page of a list and its count.
///
/// KEYS: the list, its variant's exclusions, the platform's `course-of`.
/// ARGV: the threshold (µs, or `-inf`: see the module), offset, limit, the block widths (largest first), the prefix of
/// the assertions' keys, the prefix of the exclusions' blocks' keys, "1"
/// to leave out the exclusions up to the threshold, a credential and a course ("" and "": no
/// check) that must match in `course-of`, the prefix of the list's blocks
/// keys, the prefix of the revocations' keys. Answers the count, then each
/// assertion's record and revocation (""
/// when none).
static LIST: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local list, expiry = KEYS[1], KEYS[2]
local now = ARGV[1]
local offset, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
local widths = {}
for w in string.gmatch(ARGV[4], '%d+') do
  widths[#widths + 1] = w
end
if ARGV[8] ~= '' and redis.call('HGET', KEYS[3], ARGV[8]) ~= ARGV[9] then
  return {'0'}
end
local total = redis.call('ZCARD', list)
local count = total
if ARGV[7] == '1' then
  count = total - redis.call('ZCOUNT', expiry, '-inf', now)
end

local function int(n)
  if n == math.huge then
    return '+inf'
  end
  return string.format('%d', n)
end

-- The members `skip` to `skip + want - 1` of the list that have not
-- expired, by counts over the blocks holding expiring members.
local function unexpired(skip, want)
  local out = {}
  local current = tonumber(now)
  -- Every member of the list from position lo to hi is unexpired.
  local function stretch(lo, hi)
    if lo > hi then
      return
    end
    local n = redis.call('ZCOUNT', list, int(lo), int(hi))
    if skip >= n then
      skip = skip - n
      return
    end
    local got = redis.call('ZRANGEBYSCORE', list, int(lo), int(hi), 'LIMIT', skip, want - #out)
    skip = 0
    for _, id in ipairs(got) do
      out[#out + 1] = id
    end
  end
  -- The members of a block (expiry key `key`) from position `from` to
  -- `hi`, the expired left out, until the page is full.
  local function scan(key, from, hi)
    local size = math.min(2 * want + 32, 1024)
    from = int(from)
    while true do
      local got = redis.call('ZRANGEBYSCORE', list, from, int(hi), 'WITHSCORES', 'LIMIT', 0, size)
      if #got == 0 then
        return
      end
      local ids = {}
      for j = 1, #got, 2 do
        ids[#ids + 1] = got[j]
      end
      local expiries = redis.call('ZMSCORE', key, unpack(ids))
      for j, id in ipairs(ids) do
        local e = expiries[j]
        if not e or tonumber(e) > current then
          out[#out + 1] = id
          if #out >= want then
            return
          end
        end
      end
      if #ids < size then
        return
      end
      from = '(' .. got[#got]
    end
  end
  -- The position of the block's unexpired member after `skip` others,
  -- by a binary search over the block's positions: the unexpired up to p
  -- are ZCOUNT(list, lo, p) minus the expired up to p.
  local function start_of(key, lo, hi)
    local gone = redis.call('ZRANGEBYSCORE', key, '-inf', now)
    local positions = {}
    for j = 1, #gone, 512 do
      local part = redis.call('ZMSCORE', list, unpack(gone, j, math.min(j + 511, #gone)))
      for k = 1, #part do
        if part[k] then
          positions[#positions + 1] = tonumber(part[k])
        end
      end
    end
    table.sort(positions)
    local function gone_upto(p)
      local a, z = 0, #positions
      while a < z do
        local m = math.floor((a + z + 1) / 2)
        if positions[m] <= p then
          a = m
        else
          z = m - 1
        end
      end
      return a
    end
    local a, z = lo, hi
    while a < z do
      local mid = math.floor((a + z) / 2)
      if redis.call('ZCOUNT', list, lo, int(mid)) - gone_upto(mid) > skip then
        z = mid
      else
        a = mid + 1
      end
    end
    return a
  end
  -- Positions lo to hi, by the blocks of `widths[level]` that hold
  -- expiring members; a block where the page starts is walked at the next
  -- level, or member by member at the last.
  local function walk(level, lo, hi)
    local ws = widths[level]
    local w = tonumber(ws)
    local registry = ARGV[10] .. ws
    local blocks
    if hi == math.huge then
      blocks = redis.call('ZRANGE', registry, 0, -1)
    else
      blocks = redis.call('ZRANGEBYSCORE', registry, int(math.floor(lo / w)),
        int(math.floor(hi / w)))
    end
    local previous = lo
    for _, b in ipairs(blocks) do
      local first = tonumber(b) * w
      local last = first + w - 1
      stretch(previous, first - 1)
      if #out >= want then
        return
      end
      local key = ARGV[6] .. ws .. ':' .. b
      local expired = redis.call('ZCOUNT', key, '-inf', now)
      if expired == 0 then
        stretch(first, last)
      else
        local n = redis.call('ZCOUNT', list, int(first), int(last)) - expired
        if skip >= n then
          skip = skip - n
        elseif level < #widths then
          walk(level + 1, first, last)
        else
          local from = first
          if skip > 0 then
            from = start_of(key, first, last)
            skip = 0
          end
          scan(key, from, last)
        end
      end
      if #out >= want then
        return
      end
      previous = last + 1
    end
    stretch(previous, hi)
  end
  walk(1, 0, math.huge)
  return out
end

local ids = {}
if limit > 0 and offset < count then
  if count == total then
    ids = redis.call('ZRANGE', list, offset, offset + limit - 1)
  else
    ids = unexpired(offset, limit)
  end
end
local out = {tostring(count)}
for _, id in ipairs(ids) do
  out[#out + 1] = redis.call('GET', ARGV[5] .. id) or ''
  out[#out + 1] = redis.call('GET', ARGV[11] .. id) or ''
end
return out
"#,
    )
});

/// Whether a `holders` field's text (see the keys) names an assertion
/// unexpired at `now` (µs) and not in `except` (escaped ids).
fn holds(text: &[u8], now: i64, except: &HashSet<String>) -> bool {
    let mut parts = text.split(|b| *b == 0xFF);
    while let (Some(id), Some(expires)) = (parts.next(), parts.next()) {
        let unexpired = match std::str::from_utf8(expires) {
            Ok("inf") => true,
            Ok(e) => e.parse::<i64>().is_ok_and(|e| e > now),
            Err(_) => false,
        };
        if unexpired && std::str::from_utf8(id).is_ok_and(|id| !except.contains(id)) {
            return true;
        }
    }
    false
}

/// The prefix of platform `p`'s keys, its hash tag included.
fn prefix(platform: &str) -> String {
    format!("ibl:{{{}}}:", esc(platform))
}

fn assertion_lookup(id: &str) -> String {
    format!("ibl:assertion-platform:{}", esc(id))
}

fn credential_lookup(id: &str) -> String {
    format!("ibl:credential-platform:{}", esc(id))
}

/// The layout of a model with these block widths.
fn layout(widths: &str) -> String {
    format!("{LAYOUT_VERSION} widths={widths}")
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// What an event changes, decoded once per batch.
struct Change {
    position: Position,
    what: Option<What>,
    /// The request's record: its platform, key, hash and this stream.
    record: Option<(String, String, String, String)>,
}

enum What {
    Issue(Box<Issue>),
    Revoke {
        id: String,
        /// The [`Revocation`], JSON.
        revocation: String,
    },
    Course {
        credential: String,
        /// The platform of a creation.
        created_in: Option<String>,
        /// The actor's platform: used when the creation is unknown.
        actor: Option<String>,
        course: Option<String>,
    },
}

/// An issue, its script arguments encoded when the batch is decoded: the
/// plan that follows, which waits for the lookups, only arranges them.
struct Issue {
    platform: String,
    entity_id: String,
    /// The escaped id, credential, email (lower case) and username, the
    /// expiry (µs, `""`: never) and the record (see the keys: the
    /// position and those three names, then the view, JSON).
    args: [String; 6],
}

impl Issue {
    fn new(position: Position, view: &AssertionView) -> Result<Self, serde_json::Error> {
        let credential = esc(&view.credential_id).into_owned();
        let email = esc(&view.recipient.email.to_lowercase()).into_owned();
        let username = esc(&view.recipient.username).into_owned();
        let record = format!(
            "{position}:{credential}:{email}:{username}:{}",
            serde_json::to_string(view)?
        );
        Ok(Issue {
            platform: view.platform.clone(),
            entity_id: view.entity_id.clone(),
            args: [
                esc(&view.entity_id).into_owned(),
                credential,
                email,
                username,
                view.expires
                    .map(|t| micros(t).to_string())
                    .unwrap_or_default(),
                record,
            ],
        })
    }
}

fn decode(events: &[&RecordedEvent]) -> Vec<Change> {
    let mut changes = Vec::with_capacity(events.len());
    for event in events {
        let record = match (&event.metadata.idempotency, &event.metadata.actor.platform) {
            (Some(tag), Some(platform)) => Some((
                platform.clone(),
                tag.key.clone(),
                tag.request_hash.clone(),
                event.stream.clone(),
            )),
            _ => None,
        };
        let what = match decode_one(event) {
            Ok(what) => what,
            Err(error) => {
                tracing::error!(
                    stream = %event.stream, revision = event.revision, %error,
                    "event skipped by the assertions read model"
                );
                None
            }
        };
        if what.is_some() || record.is_some() {
            changes.push(Change {
                position: event.position,
                what,
                record,
            });
        }
    }
    changes
}

fn decode_one(event: &RecordedEvent) -> Result<Option<What>, serde_json::Error> {
    let stream = event.stream.as_str();
    if let Some(id) = stream.strip_prefix("credential-") {
        let course = |created_in, course| What::Course {
            credential: id.to_owned(),
            created_in,
            actor: event.metadata.actor.platform.clone(),
            course,
        };
        return Ok(match CredentialEvent::from_recorded(event)? {
            CredentialEvent::CredentialCreated {
                platform, fields, ..
            } => Some(course(Some(platform), fields.course)),
            CredentialEvent::CredentialUpdated { fields, .. } => Some(course(None, fields.course)),
            CredentialEvent::CredentialDeleted { .. } => Some(course(None, None)),
            CredentialEvent::CredentialRetired { .. } => None,
        });
    }
    if let Some(id) = stream.strip_prefix("assertion-") {
        return Ok(match AssertionEvent::from_recorded(event)? {
            issued @ AssertionEvent::AssertionIssued { .. } => {
                match AssertionView::issued(issued) {
                    Some(view) => Some(What::Issue(Box::new(Issue::new(event.position, &view)?))),
                    None => None,
                }
            }
            AssertionEvent::AssertionRevoked { reason, revoked_at } => Some(What::Revoke {
                id: id.to_owned(),
                revocation: serde_json::to_string(&Revocation {
                    reason,
                    at: revoked_at,
                })?,
            }),
        });
    }
    Ok(None)
}

/// The Redis adapter of the assertions read model: see the module.
pub struct RedisAssertions {
    core: Arc<RedisModel>,
    /// The block widths, as the scripts take them ("65536,1024").
    widths: String,
}

/// The patterns of the model's keys (deleted after a loss).
const KEYS: &[&str] = &[
    "ibl:{*",
    "ibl:assertion-platform:*",
    "ibl:credential-platform:*",
];

impl RedisAssertions {
    /// Connects to the Redis server at `url` (`redis://host:port/db`) and
    /// reads where the model is. Refuses a database whose keys have another
    /// layout.
    pub async fn open(url: &str) -> Result<Self, ReadError> {
        Self::open_with(url, &WIDTHS, CHUNK).await
    }

    /// Follows the model as another process writes it (see
    /// [`RedisModel::follow`]).
    pub fn follow(&self, every: Duration) -> watch::Receiver<Position> {
        self.core.follow(every)
    }

    async fn open_with(url: &str, widths: &[u64], chunk: usize) -> Result<Self, ReadError> {
        let nested = widths.windows(2).all(|w| w[1] > 0 && w[0] % w[1] == 0);
        if widths.is_empty() || widths[0] == 0 || !nested {
            return Err(ReadError::new(format!(
                "block widths {widths:?}: each must divide the one before"
            )));
        }
        let widths = widths
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let core = RedisModel::open(NAME, url, layout(&widths), KEYS, chunk).await?;
        Ok(Self {
            core: Arc::new(core),
            widths,
        })
    }

    /// Writes the changes of a batch ending at `last` onto the model at
    /// `from` (see [`RedisModel::write`]).
    fn write(
        &self,
        changes: &[Change],
        from: Position,
        last: Position,
        scripts: Option<usize>,
    ) -> RedisResult<Written> {
        self.core.write(
            &APPLY,
            &self.widths,
            |con| self.plan(con, changes),
            from,
            last,
            scripts,
        )
    }

    /// Finds the platform of every change (writing the lookups of new
    /// assertions and credentials) and answers each platform's operations,
    /// in log order.
    fn plan(&self, con: &mut Writer, changes: &[Change]) -> RedisResult<Plan> {
        // Each lookup once: an issue or a creation claims it for its
        // platform (set unless another had it), others read it.
        let mut wanted: Vec<(String, Option<String>)> = Vec::new();
        let mut seen = HashSet::new();
        for change in changes {
            let (key, claim) = match &change.what {
                Some(What::Issue(issue)) => (
                    assertion_lookup(&issue.entity_id),
                    Some(issue.platform.clone()),
                ),
                Some(What::Revoke { id, .. }) => (assertion_lookup(id), None),
                Some(What::Course {
                    credential,
                    created_in,
                    ..
                }) => (credential_lookup(credential), created_in.clone()),
                None => continue,
            };
            if seen.insert(key.clone()) {
                wanted.push((key, claim));
            }
        }
        let found = redis_link::lookup_many(con, &wanted)?;
        let mut platform_of: HashMap<String, String> = HashMap::new();
        // The lookups this batch claimed: their assertions are new.
        let mut claimed: HashSet<String> = HashSet::new();
        for ((key, claim), found) in wanted.into_iter().zip(found) {
            match (found, claim) {
                (Some(p), _) => {
                    platform_of.insert(key, p);
                }
                (None, Some(p)) => {
                    platform_of.insert(key.clone(), p);
                    claimed.insert(key);
                }
                (None, None) => {}
            }
        }
        let mut lookups: Vec<(String, String)> = Vec::new();
        let mut ops = Plan::new();
        let mut push = |platform: &str, position: Position, args: Vec<String>| {
            ops.entry(prefix(platform))
                .or_default()
                .push(Op { position, args });
        };
        for change in changes {
            let position = change.position;
            if let Some((platform, key, hash, stream)) = &change.record {
                push(
                    platform,
                    position,
                    vec![
                        "record".into(),
                        esc(key).into_owned(),
                        hash.clone(),
                        stream.clone(),
                    ],
                );
            }
            match &change.what {
                None => {}
                Some(What::Issue(issue)) => {
                    let key = assertion_lookup(&issue.entity_id);
                    // Fresh: its lookup is new, so it cannot have been
                    // written (the lookup is written before the script).
                    let fresh = match platform_of.get(&key) {
                        Some(p) if *p != issue.platform => {
                            tracing::warn!(
                                assertion = %issue.entity_id, platform = %p,
                                "an assertion issued again in another platform is ignored"
                            );
                            continue;
                        }
                        Some(_) => claimed.remove(&key),
                        None => {
                            platform_of.insert(key.clone(), issue.platform.clone());
                            lookups.push((key, issue.platform.clone()));
                            true
                        }
                    };
                    let mut args = Vec::with_capacity(8);
                    args.push("issue".into());
                    args.extend(issue.args.iter().cloned());
                    args.push(if fresh { "1" } else { "0" }.into());
                    push(&issue.platform, position, args);
                }
                Some(What::Revoke { id, revocation }) => {
                    let Some(platform) = platform_of.get(&assertion_lookup(id)) else {
                        continue; // never issued: nothing to revoke
                    };
                    push(
                        platform,
                        position,
                        vec!["revoke".into(), esc(id).into_owned(), revocation.clone()],
                    );
                }
                Some(What::Course {
                    credential,
                    created_in,
                    actor,
                    course,
                }) => {
                    let key = credential_lookup(credential);
                    let platform = match (platform_of.get(&key), created_in) {
                        (Some(p), _) => p.clone(),
                        (None, Some(p)) => {
                            platform_of.insert(key.clone(), p.clone());
                            lookups.push((key, p.clone()));
                            p.clone()
                        }
                        (None, None) => match actor {
                            Some(p) => p.clone(),
                            None => continue,
                        },
                    };
                    push(
                        &platform,
                        position,
                        vec![
                            "course".into(),
                            esc(credential).into_owned(),
                            course.as_deref().map(esc).unwrap_or_default().into_owned(),
                        ],
                    );
                }
            }
        }
        redis_link::set_nx_many(con, &lookups)?;
        Ok(ops)
    }

    /// An assertion from its record (the view after a header of four
    /// fields, see the keys) and its revocation (`""`: none).
    fn decode_record(record: &str, revocation: &str) -> Result<AssertionView, ReadError> {
        let view = record
            .splitn(5, ':')
            .nth(4)
            .ok_or_else(|| ReadError::new("a stored record without its header"))?;
        let mut view: AssertionView = serde_json::from_str(view)
            .map_err(|e| ReadError::new(format!("a stored view: {e}")))?;
        if !revocation.is_empty() {
            view.revoked = Some(
                serde_json::from_str(revocation)
                    .map_err(|e| ReadError::new(format!("a stored revocation: {e}")))?,
            );
        }
        Ok(view)
    }
}

#[async_trait::async_trait]
impl AssertionQueries for RedisAssertions {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn assertion(&self, entity_id: &str) -> Result<Option<AssertionView>, ReadError> {
        let platform: Option<String> = self
            .core
            .query(redis::cmd("GET").arg(assertion_lookup(entity_id)))
            .await?;
        let Some(platform) = platform else {
            return Ok(None);
        };
        let (pfx, id) = (prefix(&platform), esc(entity_id));
        let stored: (Option<String>, Option<String>) = self
            .core
            .query(
                redis::cmd("MGET")
                    .arg(format!("{pfx}assertion:{id}"))
                    .arg(format!("{pfx}revocation:{id}")),
            )
            .await?;
        match stored {
            (Some(record), revocation) => Ok(Some(Self::decode_record(
                &record,
                revocation.as_deref().unwrap_or_default(),
            )?)),
            // A lookup written before a crash, its script not yet.
            (None, _) => Ok(None),
        }
    }

    async fn assertions(
        &self,
        platform: &str,
        filter: &AssertionFilter,
        offset: usize,
        limit: usize,
    ) -> Result<Page<AssertionView>, ReadError> {
        let pfx = prefix(platform);
        let scope = match (&filter.credential, &filter.course) {
            (Some(c), _) => format!("credential:{}", esc(c)),
            (None, Some(x)) => format!("course:{}", esc(x)),
            (None, None) => "platform".to_owned(),
        };
        let (credential, course) = match (&filter.credential, &filter.course) {
            (Some(c), Some(x)) => (esc(c), esc(x)),
            _ => (Cow::Borrowed(""), Cow::Borrowed("")),
        };
        let variant = if filter.include_revoked {
            "issued"
        } else {
            "unrevoked"
        };
        let s = format!("{scope}:{variant}");
        // What is left out: those of the variant's exclusions scored up to
        // now (the expired, and the revoked at -inf), or only the revoked.
        let (exclude, upto) = match (filter.include_expired, filter.include_revoked) {
            (false, _) => (true, micros(filter.now).to_string()),
            (true, false) => (true, "-inf".to_owned()),
            (true, true) => (false, "-inf".to_owned()),
        };
        let reply: Vec<String> = self
            .core
            .invoke(
                LIST.key(format!("{pfx}list:{scope}"))
                    .key(format!("{pfx}expiry:{s}"))
                    .key(format!("{pfx}course-of"))
                    .arg(upto)
                    .arg(offset.min(MAX_RANGE))
                    .arg(limit.min(MAX_RANGE))
                    .arg(&self.widths)
                    .arg(format!("{pfx}assertion:"))
                    .arg(format!("{pfx}expiry:{s}:"))
                    .arg(if exclude { "1" } else { "0" })
                    .arg(credential.as_ref())
                    .arg(course.as_ref())
                    .arg(format!("{pfx}blocks:{s}:"))
                    .arg(format!("{pfx}revocation:")),
            )
            .await?;
        let mut reply = reply.into_iter();
        let count = list_count(&mut reply)?;
        let mut items = Vec::new();
        while let (Some(record), Some(revocation)) = (reply.next(), reply.next()) {
            // A member without a record cannot be: the script writes both.
            if !record.is_empty() {
                items.push(Self::decode_record(&record, &revocation)?);
            }
        }
        Ok(Page { count, items })
    }

    async fn holders_among(
        &self,
        credential_id: &str,
        platform: &str,
        now: DateTime<Utc>,
        recipients: &[Recipient],
        except: &HashSet<&str>,
    ) -> Result<(HashSet<String>, HashSet<String>), ReadError> {
        let pfx = prefix(platform);
        let credential = esc(credential_id);
        let mut emails: Vec<String> = Vec::new();
        let mut usernames: Vec<String> = Vec::new();
        for r in recipients {
            let email = r.email.to_lowercase();
            if !email.is_empty() && !emails.contains(&email) {
                emails.push(email);
            }
            if !r.username.is_empty() && !usernames.contains(&r.username) {
                usernames.push(r.username.clone());
            }
        }
        if emails.is_empty() && usernames.is_empty() {
            return Ok(Default::default());
        }
        let mut fields = Vec::with_capacity(emails.len() + usernames.len());
        fields.extend(emails.iter().map(|e| format!("e:{}", esc(e))));
        fields.extend(usernames.iter().map(|u| format!("u:{}", esc(u))));
        let texts: Vec<Option<Vec<u8>>> = self
            .core
            .query(
                redis::cmd("HMGET")
                    .arg(format!("{pfx}holders:{credential}"))
                    .arg(&fields),
            )
            .await?;
        let now = micros(now);
        let except: HashSet<String> = except.iter().map(|id| esc(id).into_owned()).collect();
        let found: Vec<bool> = texts
            .iter()
            .map(|text| text.as_deref().is_some_and(|t| holds(t, now, &except)))
            .collect();
        let (found_emails, found_usernames) = found.split_at(emails.len().min(found.len()));
        let pick = |values: Vec<String>, found: &[bool]| -> HashSet<String> {
            values
                .into_iter()
                .zip(found)
                .filter(|(_, f)| **f)
                .map(|(v, _)| v)
                .collect()
        };
        Ok((pick(emails, found_emails), pick(usernames, found_usernames)))
    }

    async fn idempotency(
        &self,
        platform: &str,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, ReadError> {
        let stored: (Option<String>, Option<String>, Option<Position>) = self
            .core
            .query(
                redis::cmd("HMGET")
                    .arg(format!("{}idempotency:{}", prefix(platform), esc(key)))
                    .arg("request_hash")
                    .arg("streams")
                    .arg("position"),
            )
            .await?;
        match stored {
            (Some(request_hash), Some(streams), Some(position)) => Ok(Some(IdempotencyRecord {
                request_hash,
                streams: serde_json::from_str(&streams)
                    .map_err(|e| ReadError::new(format!("a stored record: {e}")))?,
                position,
            })),
            _ => Ok(None),
        }
    }
}

/// The whole model only: its keys of one platform are not told apart.
impl crate::replay::Digest for RedisAssertions {
    fn digest(&self, platform: Option<&str>) -> Result<String, String> {
        match platform {
            None => self.core.digest(),
            Some(_) => Err("a model in Redis is digested whole, not by platform".into()),
        }
    }
}

impl ReadModel for RedisAssertions {
    fn name(&self) -> &'static str {
        NAME
    }

    fn checkpoint(&self) -> Position {
        self.core.checkpoint()
    }

    fn verify(&self) -> Applied {
        self.core.verify()
    }

    /// Applies the batch's events past the checkpoint; retries until Redis
    /// takes them (see the module).
    fn apply(&self, batch: &[RecordedEvent]) -> Applied {
        self.core.apply(batch, |events, from, last| {
            self.write(&decode(events), from, last, None)
        })
    }

    fn apply_behind(&self, batch: &[RecordedEvent]) -> Applied {
        self.core
            .apply_behind(batch, &APPLY, &self.widths, |con, events| {
                self.plan(con, &decode(events))
            })
    }

    fn settle(&self) -> Applied {
        self.core.settle()
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::assertion_cases::{self as cases, answers, issue, rich};
    use crate::assertions::AssertionsModel;
    use crate::testing::{credential, sample, RedisCluster as Cluster, RedisServer as Server};
    use ibl_events::{Actor, Metadata};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_a_three_node_cluster_the_answers_are_the_sqlite_models_and_a_loss_is_rebuilt() {
        let cluster = Cluster::start();
        let redis = RedisAssertions::open_with(&cluster.url(), &[16, 4], 3)
            .await
            .expect("open a cluster");
        let (sqlite, _dir) = sqlite().await;
        let log = rich();
        let (most, last) = log.events.split_at(log.events.len() - 1);
        for batch in most.chunks(4) {
            assert_eq!(redis.apply(batch), Applied::Done);
            sqlite.apply(batch);
            assert_eq!(answers(&redis).await, answers(&sqlite).await);
        }
        let spread = cluster.keys_per_node();
        assert!(
            spread.iter().filter(|n| **n > 0).count() >= 2,
            "the keys live on several nodes: {spread:?}"
        );
        // The cluster comes back from an older dump (its checkpoint behind
        // the projector's): the next batch finds it, the model's keys are
        // deleted on each node (only the layout is left) and it is rebuilt
        // from 0.
        cluster.delete("ibl:checkpoint:assertions");
        assert_eq!(redis.apply(last), Applied::Rewound);
        assert_eq!(redis.checkpoint(), 0);
        assert_eq!(cluster.keys_per_node().iter().sum::<u64>(), 1, "the layout");
        assert_eq!(redis.apply(&log.events), Applied::Done);
        sqlite.apply(last);
        assert_eq!(answers(&redis).await, answers(&sqlite).await);
    }

    /// Blocks of 16 positions split in 4, and scripts of about 3 changes:
    /// every list crosses blocks and every batch takes several scripts.
    /// The SQLite model the answers are compared with (and its folder).
    async fn sqlite() -> (AssertionsModel, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (sqlite, _) = AssertionsModel::open(
            &dir.path().join("a.db"),
            &ibl_events::memory::MemoryStore::new(),
        )
        .await
        .expect("open");
        (sqlite, dir)
    }

    async fn model(server: &Server, db: u8) -> RedisAssertions {
        RedisAssertions::open_with(&server.url(db), &[16, 4], 3)
            .await
            .expect("open")
    }

    impl RedisAssertions {
        /// Forgets that events after `to` were applied (as a process that
        /// read an older checkpoint would).
        fn rewind(&self, to: Position) {
            self.core.set_checkpoint(to);
        }

        /// Writes `batch` as far as `scripts` scripts (a crash then).
        fn apply_partly(&self, batch: &[RecordedEvent], scripts: usize) -> bool {
            let events: Vec<&RecordedEvent> = batch.iter().collect();
            let last = batch.last().map_or(0, |e| e.position);
            let written = self
                .write(&decode(&events), self.checkpoint(), last, Some(scripts))
                .expect("write");
            written == Written::Done
        }
    }

    use redis::Commands;

    #[tokio::test]
    async fn lists_leave_out_revoked_and_expired_unless_asked_and_filter_by_credential_and_course()
    {
        let server = Server::start();
        cases::lists_leave_out_revoked_and_expired_unless_asked_and_filter_by_credential_and_course(
            &model(&server, 0).await,
        )
        .await;
    }

    #[tokio::test]
    async fn a_batch_applied_twice_changes_nothing_the_second_time() {
        let server = Server::start();
        let (once, twice) = (model(&server, 0).await, model(&server, 1).await);
        cases::a_batch_applied_twice_changes_nothing_the_second_time(&once, &twice).await;
    }

    #[tokio::test]
    async fn idempotency_records_keep_the_first_stream_of_each_kind_a_request_wrote() {
        let server = Server::start();
        cases::idempotency_records_keep_the_first_stream_of_each_kind_a_request_wrote(
            &model(&server, 0).await,
        )
        .await;
    }

    #[tokio::test]
    async fn a_course_change_moves_a_credentials_assertions_between_course_lists() {
        let server = Server::start();
        cases::a_course_change_moves_a_credentials_assertions_between_course_lists(
            &model(&server, 0).await,
        )
        .await;
    }

    #[tokio::test]
    async fn holders_are_found_by_email_and_username_unless_revoked_expired_or_excepted() {
        let server = Server::start();
        cases::holders_are_found_by_email_and_username_unless_revoked_expired_or_excepted(
            &model(&server, 0).await,
        )
        .await;
    }

    #[tokio::test]
    async fn pages_match_a_plain_filter_of_the_log_whatever_the_offset() {
        let server = Server::start();
        cases::pages_match_a_plain_filter_of_the_log_whatever_the_offset(&model(&server, 0).await)
            .await;
    }

    #[tokio::test]
    async fn pages_match_with_other_block_widths_and_script_sizes() {
        let server = Server::start();
        let default = RedisAssertions::open(&server.url(0)).await.expect("open");
        cases::pages_match_a_plain_filter_of_the_log_whatever_the_offset(&default).await;
        for (db, widths, chunk) in [(1, &[5][..], 1), (2, &[64, 8, 2], 50)] {
            let model = RedisAssertions::open_with(&server.url(db), widths, chunk)
                .await
                .expect("open");
            cases::pages_match_a_plain_filter_of_the_log_whatever_the_offset(&model).await;
        }
        let error = RedisAssertions::open_with(&server.url(3), &[16, 5], 10)
            .await
            .err()
            .expect("5 does not divide 16");
        assert!(error.to_string().contains("divide"), "{error}");
    }

    #[tokio::test]
    async fn the_answers_are_the_sqlite_models_after_every_batch() {
        let server = Server::start();
        let redis = model(&server, 0).await;
        let (sqlite, _dir) = sqlite().await;
        let log = rich();
        for batch in log.events.chunks(4) {
            redis.apply(batch);
            sqlite.apply(batch);
            assert_eq!(
                answers(&redis).await,
                answers(&sqlite).await,
                "after position {}",
                redis.checkpoint()
            );
        }
        assert!(answers(&redis).await.contains("narrative of e2"));
    }

    /// The apply script holds an issue's record until the next flush: a
    /// second issue of the same assertion in the same script still finds
    /// it, and changes nothing (as in SQLite).
    #[tokio::test]
    async fn an_assertion_issued_twice_in_one_script_keeps_its_first_issue() {
        let server = Server::start();
        let redis = model(&server, 0).await;
        let (sqlite, _dir) = sqlite().await;
        let mut log = sample();
        for recipient in [
            ("first@example.com", "first"),
            ("second@example.com", "second"),
        ] {
            log.push(
                "assertion-d1",
                issue("acme", "d1", "c1", recipient, None),
                None,
            );
        }
        redis.apply(&log.events);
        sqlite.apply(&log.events);
        let redis_answers = answers(&redis).await;
        assert_eq!(redis_answers, answers(&sqlite).await);
        assert!(
            redis_answers.contains("first@example.com"),
            "{redis_answers}"
        );
        assert!(
            !redis_answers.contains("second@example.com"),
            "{redis_answers}"
        );
    }

    #[tokio::test]
    async fn batches_left_in_flight_give_the_same_answers_once_settled() {
        let server = Server::start();
        let redis = model(&server, 0).await;
        let (sqlite, _dir) = sqlite().await;
        let log = rich();
        let batches: Vec<&[RecordedEvent]> = log.events.chunks(3).collect();
        assert_eq!(redis.apply_behind(batches[0]), Applied::Done);
        assert_eq!(redis.checkpoint(), 0, "in flight: the checkpoint waits");
        assert_eq!(redis.settle(), Applied::Done);
        assert_eq!(redis.checkpoint(), batches[0].len() as u64);
        for (i, batch) in batches.iter().enumerate() {
            // Each batch twice (a projector that read it again), and one
            // batch in three applied in step: it settles the one in flight.
            for _ in 0..2 {
                let applied = if i % 3 == 2 {
                    redis.apply(batch)
                } else {
                    redis.apply_behind(batch)
                };
                assert_eq!(applied, Applied::Done);
            }
            sqlite.apply(batch);
        }
        assert_eq!(redis.settle(), Applied::Done);
        assert_eq!(redis.checkpoint(), log.events.len() as u64);
        assert_eq!(answers(&redis).await, answers(&sqlite).await);
        let reopened = model(&server, 0).await;
        assert_eq!(reopened.checkpoint(), log.events.len() as u64);
    }

    #[tokio::test]
    async fn a_server_that_lost_the_model_under_a_batch_in_flight_is_rebuilt() {
        let server = Server::start();
        let log = sample();
        let model = model(&server, 0).await;
        model.apply(&log.events[..5]);
        redis::cmd("FLUSHALL")
            .query::<()>(&mut server.connection())
            .expect("FLUSHALL");
        assert_eq!(model.apply_behind(&log.events[5..]), Applied::Done);
        assert_eq!(model.settle(), Applied::Rewound);
        assert_eq!(model.checkpoint(), 0);
        assert_eq!(model.apply_behind(&log.events), Applied::Done);
        assert_eq!(model.verify(), Applied::Done, "settled, nothing lost");
        assert_eq!(model.checkpoint(), log.events.len() as u64);
        assert!(model.assertion("a1").await.expect("read").is_some());
    }

    #[tokio::test]
    async fn a_replayed_or_overlapping_batch_doubles_nothing() {
        let server = Server::start();
        let log = rich();
        let reference = model(&server, 0).await;
        reference.apply(&log.events);
        let expected = answers(&reference).await;

        // The whole log again, the scripts skipping every event.
        reference.rewind(0);
        reference.apply(&log.events);
        assert_eq!(answers(&reference).await, expected, "replayed");

        // Overlapping batches, each from before the last one's end.
        let overlapping = model(&server, 1).await;
        let n = log.events.len();
        for (from, to) in [(0, 7), (3, 12), (12, 13), (5, 20), (0, n)] {
            overlapping.rewind(from as u64);
            overlapping.apply(&log.events[from..to]);
            assert_eq!(overlapping.checkpoint(), to as u64);
        }
        assert_eq!(answers(&overlapping).await, expected, "overlapping");

        // A process started on the same database resumes at its end.
        let again = model(&server, 1).await;
        assert_eq!(again.checkpoint(), n as u64);
        again.apply(&log.events);
        assert_eq!(answers(&again).await, expected);
    }

    #[tokio::test]
    async fn a_crash_between_scripts_is_completed_by_the_next_apply() {
        let server = Server::start();
        let log = rich();
        let reference = model(&server, 1).await;
        reference.apply(&log.events);
        let expected = answers(&reference).await;
        let mut crashes = 0;
        for scripts in 0.. {
            let _: () = redis::cmd("FLUSHDB")
                .query(&mut server.connection())
                .expect("flush");
            let crashed = model(&server, 0).await;
            // The first events in a batch of their own, then the rest.
            crashed.apply(&log.events[..6]);
            if crashed.apply_partly(&log.events[6..], scripts) {
                break;
            }
            crashes += 1;
            if scripts == 0 {
                // The lookups are written, not the assertions.
                assert!(crashed.assertion("e1").await.expect("read").is_none());
            }
            // The process restarts: it reads the global checkpoint.
            let restarted = model(&server, 0).await;
            assert_eq!(restarted.checkpoint(), 6, "the last complete batch");
            restarted.apply(&log.events);
            assert_eq!(
                answers(&restarted).await,
                expected,
                "after a crash after {scripts} scripts"
            );
        }
        assert!(crashes > 5, "a batch of several scripts: {crashes}");
    }

    #[tokio::test]
    async fn every_key_of_a_platform_carries_its_hash_tag() {
        let server = Server::start();
        let model = model(&server, 0).await;
        let mut log = rich();
        let weird = "we{ir}d:p%";
        let metadata = Metadata {
            actor: Actor {
                platform: Some(weird.into()),
                ..Actor::default()
            },
            idempotency: Some(ibl_events::IdempotencyTag {
                key: "k:{1}".into(),
                request_hash: "h".into(),
            }),
            ..Metadata::default()
        };
        log.push_with(
            "credential-w:1",
            CredentialEvent::CredentialCreated {
                platform: weird.into(),
                entity_id: "w:1".into(),
                fields: credential("W", "", Some("a {course}: with colons")),
                created_at: crate::testing::at(0),
            },
            metadata.clone(),
        );
        log.push_with(
            "assertion-w{2}",
            issue(
                weird,
                "w{2}",
                "w:1",
                ("x:y@z", "u{s}r"),
                Some(crate::testing::at(30)),
            ),
            metadata,
        );
        model.apply(&log.events);
        let lookups = [
            "ibl:checkpoint:assertions",
            "ibl:layout:assertions",
            "ibl:assertion-platform:",
            "ibl:credential-platform:",
        ];
        let kinds = [
            "checkpoint:assertions",
            "assertion:",
            "revocation:",
            "list:",
            "expiry:",
            "blocks:",
            "course-of",
            "holders:",
            "idempotency:",
        ];
        let mut tags = HashSet::new();
        let keys = server.keys();
        for key in &keys {
            if lookups.iter().any(|l| key.starts_with(l)) {
                continue;
            }
            let tag = key
                .strip_prefix("ibl:{")
                .and_then(|rest| rest.split_once('}'))
                .map(|(tag, rest)| {
                    assert!(
                        kinds
                            .iter()
                            .any(|k| rest.strip_prefix(':').unwrap_or("").starts_with(k)),
                        "{key}: a documented kind of key"
                    );
                    assert!(!rest.contains(['{', '}']), "{key}: one hash tag");
                    tag
                });
            match tag {
                Some(tag) => tags.insert(tag.to_owned()),
                None => panic!("{key}: neither a platform's key nor a documented lookup"),
            };
        }
        assert_eq!(
            tags,
            HashSet::from(["acme".into(), "beta".into(), "we%7Bir%7Dd%3Ap%25".into()])
        );
        for (key, platform) in [
            ("ibl:assertion-platform:w%7B2%7D", weird),
            ("ibl:credential-platform:w%3A1", weird),
            ("ibl:assertion-platform:f1", "beta"),
        ] {
            assert!(keys.contains(&key.to_owned()), "{key}");
            let stored: String = server.connection().get(key).expect("get");
            assert_eq!(stored, platform);
        }
        // And the weird names answer as any other.
        let course = AssertionFilter {
            course: Some("a {course}: with colons".into()),
            ..crate::testing::filter(false, false)
        };
        let page = model.assertions(weird, &course, 0, 10).await.expect("read");
        assert_eq!(cases::entity_ids(&page), ["w{2}"]);
        let record = model.idempotency(weird, "k:{1}").await.expect("read");
        assert_eq!(
            record.expect("recorded").streams,
            ["credential-w:1", "assertion-w{2}"]
        );
        assert!(model.assertion("w{2}").await.expect("read").is_some());
    }

    #[tokio::test]
    async fn a_database_is_kept_across_opens_and_another_layout_is_refused() {
        let server = Server::start();
        let log = sample();
        let model = model(&server, 0).await;
        model.apply(&log.events);
        drop(model);
        let reopened = RedisAssertions::open_with(&server.url(0), &[16, 4], 100)
            .await
            .expect("open");
        assert_eq!(reopened.checkpoint(), log.events.len() as u64);
        assert!(reopened.assertion("a1").await.expect("read").is_some());
        let error = RedisAssertions::open(&server.url(0))
            .await
            .err()
            .expect("another block width");
        assert!(error.to_string().contains("layout"), "{error}");
        let fresh = RedisAssertions::open(&server.url(2)).await.expect("open");
        assert_eq!(fresh.checkpoint(), 0);
    }

    #[tokio::test]
    async fn verify_finds_a_server_that_lost_the_model_while_the_log_is_idle() {
        let server = Server::start();
        let log = sample();
        let model = model(&server, 0).await;
        model.apply(&log.events);
        assert_eq!(model.verify(), Applied::Done, "nothing lost");
        redis::cmd("FLUSHALL")
            .query::<()>(&mut server.connection())
            .expect("FLUSHALL");
        assert_eq!(model.verify(), Applied::Rewound);
        assert_eq!(model.checkpoint(), 0);
        assert_eq!(
            model.verify(),
            Applied::Done,
            "a model at 0 has lost nothing"
        );
        model.apply(&log.events);
        assert!(model.assertion("a1").await.expect("read").is_some());
    }

    #[tokio::test]
    async fn a_query_fails_while_redis_is_down_apply_waits_and_a_server_back_empty_is_rebuilt() {
        let server = Server::start();
        let port = server.port;
        let log = sample();
        let model = model(&server, 0).await;
        model.apply(&log.events[..5]);
        assert!(model.assertion("a1").await.expect("read").is_some());
        drop(server);
        assert!(model.assertion("a1").await.is_err(), "a ReadError: 503");
        assert!(model
            .assertions("acme", &crate::testing::filter(false, false), 0, 10)
            .await
            .is_err());
        let (restarted, applied) = std::thread::scope(|s| {
            let applying = s.spawn(|| model.apply(&log.events[5..]));
            std::thread::sleep(Duration::from_millis(400));
            assert!(!applying.is_finished(), "apply waits for Redis");
            // The server comes back, empty: the model sees it lost what it
            // held, clears it and goes back to 0.
            let restarted = Server::start_on(port).expect("restart on the same port");
            (restarted, applying.join().expect("apply"))
        });
        assert_eq!(applied, Applied::Rewound);
        assert_eq!(model.checkpoint(), 0);
        // The projector reads the log again from 0.
        assert_eq!(model.apply(&log.events), Applied::Done);
        assert_eq!(model.checkpoint(), log.events.len() as u64);
        let mut read = model.assertion("a3").await;
        for _ in 0..3 {
            if read.is_ok() {
                break;
            }
            read = model.assertion("a3").await; // the reader reconnects
        }
        let a3 = read
            .expect("read again")
            .expect("written after the restart");
        assert!(
            model.assertion("a1").await.expect("read").is_some(),
            "what the server lost is written again"
        );
        assert!(a3.revoked.is_some());
        drop(restarted);
    }
}
