//! The Redis adapter of the catalog: a platform's credentials, issuers and
//! SCIM users ([`RedisCatalog`]), the same answers as the in-memory model
//! ([`crate::credentials::CredentialsModel`]), kept in a Redis server shared
//! by every process that reads them. The writing (one script per platform
//! and batch, checkpoints, retries, the rebuild after a loss) is
//! [`crate::redis_model`]'s.
//!
//! # Keys
//!
//! `P` is the platform key, `K` a kind (`credential` or `issuer`), `I` an
//! entity id, `X` a course or a program, `G` a gram, `U` a user id, each
//! percent-encoded as in
//! [`crate::redis_assertions`]. Each entity of a kind gets, at its
//! creation, the platform's next sequence number `S` of that kind: lists
//! are in creation order, and an entity is the bit `S` of the bitmaps
//! below.
//!
//! Outside any platform: `ibl:catalog:platform-of:K:I` (string), the
//! platform of entity I, written (`SET NX`) before its creation's script,
//! so that a later event of its stream finds its platform.
//!
//! In platform P's slot, prefix `ibl:catalog:{P}:`:
//!
//! | key | type | holds |
//! |-----|------|-------|
//! | `checkpoint:catalog` | string | the position of the last event applied to P's keys |
//! | `K:entity:I` | hash | `seq` (S), `fields` (JSON), `created_at` (JSON), `retired` (`0`/`1`), `revision`, `created_by`, `course`, `program` (`=X`, or `""`: none) |
//! | `K:seq` | string | the last S handed out |
//! | `K:ids` | hash | S → I |
//! | `K:names`, `K:descriptions` | hash | S → the name, the description, in lower case (the grams' source and the search's recheck) |
//! | `K:alive` | bitmap | bit S set while the entity exists |
//! | `K:gs:G` | set | the S of the entities whose name or description (in lower case) holds the gram G (1 to 3 characters), while they are at most [`SMALL`] (an intset, 4 bytes each) |
//! | `K:gb:G` | bitmap | the same once they were more: bit S set (it stays a bitmap) |
//! | `K:course:X`, `K:program:X` | bitmap | bit S set when the credential's course (program) is X |
//! | `K:scratch` | bitmap | a list's intersection, deleted by the script that wrote it |
//! | `K:found:C:Q` | bitmap | the matches of search Q (needle, course, program) with at least [`KEEP_FROM`] candidates, at P's checkpoint C; expires after a minute |
//! | `user:entity:U` | hash | user U's `username`, `email`, `given_name`, `family_name`, `active`, `created`, `updated`, and its `lusername`, `lemail` (lower case, percent-encoded) |
//! | `user:order` | sorted set | the users' ids, scored by id |
//! | `user:username:N`, `user:email:E` | sorted set | the ids of the users whose user name (email) in lower case is N (E) |
//! | `user:usernames` | hash | exact user name → id (a name taken is not registered again) |
//!
//! The projector computes the grams of a new text ([`text_grams`]) and
//! sends them with it: the apply script only posts them, so a credential's
//! creation costs Redis no text processing. An update or a deletion
//! removes the grams of the stored texts, which the script computes the
//! same way (`GRAMS_OF`; a test holds the two equal on Unicode, escapes
//! and control characters), so it removes exactly what was added.
//!
//! # Lists
//!
//! A list is one read script. The filters are bitmaps: `alive`, the
//! course's, the program's. A search's needle, in lower case, is one gram
//! up to 3 characters, whose posting is exact: an entity holds the needle
//! in its name or description if and only if it is in the posting. A
//! longer needle's trigrams (up to 16) give candidates, each of which is
//! checked for the needle (a recheck, as PostgreSQL's `pg_trgm` index
//! does), so the answer is exact.
//!
//! * When a posting of the needle is a set, its members (at most
//!   [`SMALL`]) are the candidates, kept when every filter and other
//!   posting holds them.
//! * Otherwise the filters and postings are intersected (`BITOP AND`);
//!   without a recheck the count is `BITCOUNT` and the page is found by
//!   counting set bits in 4 KiB ranges (a page at any offset costs O(S/8)
//!   bytes of bit counts, never a read of the entities); with a recheck
//!   every candidate's texts are read. When they are many (at least
//!   [`KEEP_FROM`]), the matches are kept for a minute as a bitmap named
//!   by the platform's checkpoint (any later write of the platform moves
//!   it, so a kept answer is never stale), and the next pages of the same
//!   search are read from it like a plain list.
//!
//! So a list costs the bytes of its bitmaps and at most [`SMALL`] members,
//! plus the recheck of a long needle's candidates: proportional to the
//! entities that hold all its trigrams, never to the platform's size. The
//! memory: a gram's posting is at most 4 × [`SMALL`] bytes as a set, else
//! S/8 bytes as a bitmap; the grams of real names and descriptions are a
//! few thousand per platform.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use ibl_events::credentials::{CredentialEvent, IssuerEvent};
use ibl_events::platform::{user_of_stream, UserEvent, USERS_STREAM};
use ibl_events::{DomainEvent, Position, RecordedEvent};
use redis::{RedisResult, Script};
use tokio::sync::watch;

use crate::assertions::ReadError;
use crate::credentials::{
    CatalogQueries, CredentialFilter, CredentialView, IssuerView, Page, UserFilter, UserView,
};
use crate::redis_link::{self, Writer};
use crate::redis_model::{
    esc, list_count, needle_grams, text_grams, Op, Plan, RedisModel, Written, MAX_RANGE,
};
use crate::{Applied, ReadModel};

/// A gram's posting is a set of sequence numbers while it has at most this
/// many members (an intset: 4 bytes each), then a bitmap.
pub const SMALL: usize = 512;

/// A search with at least this many candidates to recheck keeps its
/// matches for a minute (`found` keys), for its next pages.
pub const KEEP_FROM: usize = 1024;

/// About how many operations one script applies.
const CHUNK: usize = 256;

const NAME: &str = "catalog";

/// The version of the key layout: bump it when the keys change shape.
const LAYOUT_VERSION: u32 = 2;

/// The patterns of the model's keys (deleted after a loss).
const KEYS: &[&str] = &["ibl:catalog:*"];

/// The grams of stored texts, in the apply script: those of an entity's
/// texts before an update or a deletion, removed from their postings.
/// Each text's grams are its runs of 1 to 3 UTF-8 characters,
/// percent-encoded as [`esc`] does: the same set as [`text_grams`], which
/// the projector sends for new texts (a test holds the two equal).
const GRAMS_OF: &str = r#"
local ESC = {['%'] = '%25', [':'] = '%3A', ['{'] = '%7B', ['}'] = '%7D'}
local function grams_of(texts)
  local set, out = {}, {}
  for _, text in ipairs(texts) do
    local chars = {}
    for c in string.gmatch(text, '[%z\1-\127\192-\255][\128-\191]*') do
      chars[#chars + 1] = c
    end
    for n = 1, 3 do
      for s = 1, #chars - n + 1 do
        local gram = (string.gsub(table.concat(chars, '', s, s + n - 1), '[%%:{}]', ESC))
        if not set[gram] then
          set[gram] = true
          out[#out + 1] = gram
        end
      end
    end
  end
  return out
end
"#;

/// Applies one platform's operations after its checkpoint and moves it.
///
/// KEYS[1]: the platform's checkpoint. ARGV[1]: the platform's prefix,
/// ARGV[2]: unused, ARGV[3]: the checkpoint to move to; then the
/// operations: a name, a position, the kind, the entity id and the
/// operation's fields (`create`: fields, created_at, created_by, name,
/// description, grams, course, program, revision; `update`: fields, name,
/// description, grams, course, program, revision; `retire`: revision;
/// `delete`: none). The grams of a new name and description are computed
/// by the projector ([`text_grams`]), each followed by `:`.
static APPLY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{GRAMS_OF}{}",
        r#"
local prefix = ARGV[1]
local upto = ARGV[3]
local done = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(upto) <= done then
  return 0
end

local fields = {create = 11, update = 9, retire = 3, delete = 2, register = 9, reuser = 9,
  activate = 4}
local i = 4
while i <= #ARGV do
  local n = fields[ARGV[i]]
  if not n or i + 1 + n > #ARGV then
    return redis.error_reply('malformed change at argument ' .. i)
  end
  i = i + 2 + n
end

local small = tonumber(ARGV[2])

-- The postings' changes of this script, applied at its end (nothing
-- before reads a posting): per kind and gram (percent-encoded), the last
-- value of each seq. Seqs and values are strings ('1' added, '0'
-- removed): a Lua number passed to Redis is printed with a float format,
-- which cost this script a sixth of its time.
local postings, posted = {}, {}
local function post(k, gram, seq, value)
  local of_kind = postings[k]
  if not of_kind then
    of_kind = {}
    postings[k] = of_kind
  end
  local changes = of_kind[gram]
  if not changes then
    changes = {}
    of_kind[gram] = changes
    posted[#posted + 1] = {k, gram}
  end
  changes[seq] = value
end

-- Each gram's posting: a set while it has at most `small` members, then a
-- bitmap for good. One call per gram and kind for the whole script.
local function apply_postings()
  for _, kg in ipairs(posted) do
    local k, gram = kg[1], kg[2]
    local bits = prefix .. k .. ':gb:' .. gram
    local set = prefix .. k .. ':gs:' .. gram
    local changes = postings[k][gram]
    if redis.call('EXISTS', bits) == 1 then
      local fields = {}
      for seq, value in pairs(changes) do
        fields[#fields + 1] = 'SET'
        fields[#fields + 1] = 'u1'
        fields[#fields + 1] = seq
        fields[#fields + 1] = value
      end
      for j = 1, #fields, 1000 do
        redis.call('BITFIELD', bits, unpack(fields, j, math.min(j + 999, #fields)))
      end
    else
      local adds, removes = {}, {}
      for seq, value in pairs(changes) do
        if value == '1' then
          adds[#adds + 1] = seq
        else
          removes[#removes + 1] = seq
        end
      end
      for j = 1, #removes, 1000 do
        redis.call('SREM', set, unpack(removes, j, math.min(j + 999, #removes)))
      end
      for j = 1, #adds, 1000 do
        redis.call('SADD', set, unpack(adds, j, math.min(j + 999, #adds)))
      end
      if #adds > 0 and redis.call('SCARD', set) > small then
        local members = redis.call('SMEMBERS', set)
        local sets = {}
        for _, member in ipairs(members) do
          sets[#sets + 1] = 'SET'
          sets[#sets + 1] = 'u1'
          sets[#sets + 1] = member
          sets[#sets + 1] = '1'
        end
        for j = 1, #sets, 1000 do
          redis.call('BITFIELD', bits, unpack(sets, j, math.min(j + 999, #sets)))
        end
        redis.call('DEL', set)
      end
    end
  end
end

-- Adds (value 1) or removes (0) seq to the postings of `grams` (of its
-- texts, percent-encoded), and to the bitmaps of its course and program.
local function index(k, seq, grams, course, program, value)
  for _, gram in ipairs(grams) do
    post(k, gram, seq, value)
  end
  if course ~= '' then
    redis.call('SETBIT', prefix .. k .. ':course:' .. string.sub(course, 2), seq, value)
  end
  if program ~= '' then
    redis.call('SETBIT', prefix .. k .. ':program:' .. string.sub(program, 2), seq, value)
  end
end

local function texts(k, seq, name, description)
  redis.call('HSET', prefix .. k .. ':names', seq, name)
  redis.call('HSET', prefix .. k .. ':descriptions', seq, description)
end

-- The entity's seq, course and program and its texts (nil: none).
local function stored(k, key)
  local old = redis.call('HMGET', key, 'seq', 'course', 'program')
  if not old[1] then
    return nil
  end
  local name = redis.call('HGET', prefix .. k .. ':names', old[1]) or ''
  local description = redis.call('HGET', prefix .. k .. ':descriptions', old[1]) or ''
  return old[1], name, description, old[2], old[3]
end

-- The grams of a new text, as the projector sends them: percent-encoded,
-- each followed by ':' (which the encoding leaves in none).
local function sent(grams)
  local out = {}
  for gram in string.gmatch(grams, '([^:]*):') do
    out[#out + 1] = gram
  end
  return out
end

local function create(k, id, f, created_at, created_by, name, description, grams, course,
                      program, revision)
  local key = prefix .. k .. ':entity:' .. id
  if redis.call('EXISTS', key) == 1 then
    return
  end
  local seq = tostring(redis.call('INCR', prefix .. k .. ':seq'))
  redis.call('HSET', key, 'seq', seq, 'fields', f, 'created_at', created_at,
    'created_by', created_by, 'retired', '0', 'revision', revision, 'course', course,
    'program', program)
  redis.call('HSET', prefix .. k .. ':ids', seq, id)
  texts(k, seq, name, description)
  redis.call('SETBIT', prefix .. k .. ':alive', seq, 1)
  index(k, seq, sent(grams), course, program, '1')
end

local function update(k, id, f, name, description, grams, course, program, revision)
  local key = prefix .. k .. ':entity:' .. id
  local seq, old_name, old_description, old_course, old_program = stored(k, key)
  if not seq then
    return
  end
  index(k, seq, grams_of({old_name, old_description}), old_course, old_program, '0')
  index(k, seq, sent(grams), course, program, '1')
  redis.call('HSET', key, 'fields', f, 'revision', revision, 'course', course,
    'program', program)
  texts(k, seq, name, description)
end

local function retire(k, id, revision)
  local key = prefix .. k .. ':entity:' .. id
  if redis.call('EXISTS', key) == 1 then
    redis.call('HSET', key, 'retired', '1', 'revision', revision)
  end
end

local function delete(k, id)
  local key = prefix .. k .. ':entity:' .. id
  local seq, name, description, course, program = stored(k, key)
  if not seq then
    return
  end
  index(k, seq, grams_of({name, description}), course, program, '0')
  redis.call('SETBIT', prefix .. k .. ':alive', seq, 0)
  for _, h in ipairs({'ids', 'names', 'descriptions'}) do
    redis.call('HDEL', prefix .. k .. ':' .. h, seq)
  end
  redis.call('DEL', key)
end

-- Users: ordered by id, found by their user name and email in lower case
-- (lu, le: percent-encoded), and by their exact user name.
local function register(k, id, username, email, given, family, created, lu, le)
  local key = prefix .. k .. ':entity:' .. id
  local names = prefix .. k .. ':usernames'
  if redis.call('EXISTS', key) == 1 or redis.call('HEXISTS', names, username) == 1 then
    return
  end
  redis.call('HSET', key, 'username', username, 'email', email, 'given_name', given,
    'family_name', family, 'active', '1', 'created', created, 'updated', created,
    'lusername', lu, 'lemail', le)
  redis.call('HSET', names, username, id)
  redis.call('ZADD', prefix .. k .. ':order', id, id)
  redis.call('ZADD', prefix .. k .. ':username:' .. lu, id, id)
  redis.call('ZADD', prefix .. k .. ':email:' .. le, id, id)
end

local function reuser(k, id, username, email, given, family, updated, lu, le)
  local key = prefix .. k .. ':entity:' .. id
  local old = redis.call('HMGET', key, 'username', 'lusername', 'lemail')
  if not old[1] then
    return
  end
  local names = prefix .. k .. ':usernames'
  if redis.call('HGET', names, old[1]) == id then
    redis.call('HDEL', names, old[1])
  end
  redis.call('HSET', names, username, id)
  redis.call('ZREM', prefix .. k .. ':username:' .. old[2], id)
  redis.call('ZREM', prefix .. k .. ':email:' .. old[3], id)
  redis.call('ZADD', prefix .. k .. ':username:' .. lu, id, id)
  redis.call('ZADD', prefix .. k .. ':email:' .. le, id, id)
  redis.call('HSET', key, 'username', username, 'email', email, 'given_name', given,
    'family_name', family, 'updated', updated, 'lusername', lu, 'lemail', le)
end

local function activate(k, id, active, at)
  local key = prefix .. k .. ':entity:' .. id
  if redis.call('EXISTS', key) == 1 then
    redis.call('HSET', key, 'active', active, 'updated', at)
  end
end

i = 4
while i <= #ARGV do
  local op, position = ARGV[i], ARGV[i + 1]
  local a = i + 2
  if tonumber(position) > done then
    local k, id = ARGV[a], ARGV[a + 1]
    if op == 'register' then
      register(k, id, unpack(ARGV, a + 2, a + 8))
    elseif op == 'reuser' then
      reuser(k, id, unpack(ARGV, a + 2, a + 8))
    elseif op == 'activate' then
      activate(k, id, ARGV[a + 2], ARGV[a + 3])
    elseif op == 'create' then
      create(k, id, unpack(ARGV, a + 2, a + 10))
    elseif op == 'update' then
      update(k, id, unpack(ARGV, a + 2, a + 8))
    elseif op == 'retire' then
      retire(k, id, ARGV[a + 2])
    else
      delete(k, id)
    end
  end
  i = a + fields[op]
end
apply_postings()
redis.call('SET', KEYS[1], upto)
return 1
"#
    ))
});

/// A page of a list and its count.
///
/// KEYS[1]: the kind's `alive` bitmap, KEYS[2]: the platform's checkpoint.
/// ARGV: the kind's prefix (`ibl:catalog:{P}:K:`), offset, limit, the
/// needle in lower case ("" none), "1" when the needle is one gram (up to
/// 3 characters: its posting is exact) else "0", the course and the
/// program (`=X`, or "": no filter), the search's name in the keys of
/// found matches, the fewest candidates whose matches are kept, then the
/// needle's grams (percent-encoded). Answers the count,
/// then each entity's id and its `fields`, `created_at`, `retired`,
/// `revision` and `created_by`.
static LIST: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local kp = ARGV[1]
local offset, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
local needle, exact = ARGV[4], ARGV[5] == '1'
local filters = {KEYS[1]}
if ARGV[6] ~= '' then
  filters[#filters + 1] = kp .. 'course:' .. string.sub(ARGV[6], 2)
end
if ARGV[7] ~= '' then
  filters[#filters + 1] = kp .. 'program:' .. string.sub(ARGV[7], 2)
end
-- Each gram's posting: a bitmap, or a small set; a gram without one is in
-- no text, and nothing matches.
local bitmaps, sets, missing = {}, {}, false
for j = 10, #ARGV do
  local bits, set = kp .. 'gb:' .. ARGV[j], kp .. 'gs:' .. ARGV[j]
  if redis.call('EXISTS', bits) == 1 then
    bitmaps[#bitmaps + 1] = bits
  elseif redis.call('EXISTS', set) == 1 then
    sets[#sets + 1] = set
  else
    missing = true
  end
end

-- The seqs among `seqs` (in order) whose name or description holds the
-- needle: the names first, the descriptions of the others only.
local function recheck(seqs)
  local out = {}
  for j = 1, #seqs, 1024 do
    local part = {unpack(seqs, j, math.min(j + 1023, #seqs))}
    local names = redis.call('HMGET', kp .. 'names', unpack(part))
    local held, others = {}, {}
    for x, seq in ipairs(part) do
      if names[x] and string.find(names[x], needle, 1, true) then
        held[x] = true
      else
        others[#others + 1] = x
      end
    end
    if #others > 0 then
      local fields = {}
      for y, x in ipairs(others) do
        fields[y] = part[x]
      end
      local descriptions = redis.call('HMGET', kp .. 'descriptions', unpack(fields))
      for y, x in ipairs(others) do
        local d = descriptions[y]
        if d and string.find(d, needle, 1, true) then
          held[x] = true
        end
      end
    end
    for x, seq in ipairs(part) do
      if held[x] then
        out[#out + 1] = seq
      end
    end
  end
  return out
end

-- The positions of the set bits of each byte value, most significant
-- first (bit 0 of a bitmap is the first byte's most significant bit).
local ones = {[0] = {}}
local top, first = 1, 7
for b = 1, 255 do
  if b >= top * 2 then
    top, first = top * 2, first - 1
  end
  local at = {first}
  for _, y in ipairs(ones[b - top]) do
    at[#at + 1] = y
  end
  ones[b] = at
end

-- The set bits of `set`, the first `skip` left out, at most `want`
-- (math.huge: all): ranges of 4 KiB, then of 128 bytes, are skipped by
-- their bit counts (BITCOUNT), then bytes by theirs.
local function bits_of(set, skip, want)
  local out = {}
  local len = redis.call('STRLEN', set)
  local function walk(start, stop)
    local bytes = redis.call('GETRANGE', set, start, stop)
    local chunk = {string.byte(bytes, 1, #bytes)}
    for z, b in ipairs(chunk) do
      if b ~= 0 then
        local at = ones[b]
        if skip >= #at then
          skip = skip - #at
        else
          local base = (start + z - 1) * 8
          for _, y in ipairs(at) do
            if skip > 0 then
              skip = skip - 1
            else
              out[#out + 1] = base + y
              if #out >= want then
                return
              end
            end
          end
        end
      end
    end
  end
  local function ranges(from, to, width, inner)
    local start = from
    while start <= to and #out < want do
      local stop = math.min(start + width, to + 1) - 1
      local n = redis.call('BITCOUNT', set, start, stop)
      if skip >= n then
        skip = skip - n
      else
        inner(start, stop)
      end
      start = stop + 1
    end
  end
  ranges(0, len - 1, 4096, function(start, stop)
    ranges(start, stop, 128, walk)
  end)
  return out
end

local function window(seqs)
  local page = {}
  for j = offset + 1, math.min(offset + limit, #seqs) do
    page[#page + 1] = seqs[j]
  end
  return #seqs, page
end

local count, seqs = 0, {}
if missing then
  count = 0
elseif #sets > 0 then
  -- The smallest set's members, kept when every other posting and
  -- filter holds them.
  local smallest, size = 1, redis.call('SCARD', sets[1])
  for j = 2, #sets do
    local n = redis.call('SCARD', sets[j])
    if n < size then
      smallest, size = j, n
    end
  end
  local candidates = {}
  for _, m in ipairs(redis.call('SMEMBERS', sets[smallest])) do
    candidates[#candidates + 1] = tonumber(m)
  end
  table.sort(candidates)
  local kept = {}
  for _, seq in ipairs(candidates) do
    local ok = true
    for _, key in ipairs(filters) do
      ok = ok and redis.call('GETBIT', key, seq) == 1
    end
    for _, key in ipairs(bitmaps) do
      ok = ok and redis.call('GETBIT', key, seq) == 1
    end
    for j, key in ipairs(sets) do
      ok = ok and (j == smallest or redis.call('SISMEMBER', key, seq) == 1)
    end
    if ok then
      kept[#kept + 1] = seq
    end
  end
  if not exact then
    kept = recheck(kept)
  end
  count, seqs = window(kept)
else
  local sources = {}
  for _, key in ipairs(filters) do
    sources[#sources + 1] = key
  end
  for _, key in ipairs(bitmaps) do
    sources[#sources + 1] = key
  end
  local set = KEYS[1]
  local scratch = kp .. 'scratch'
  if #sources > 1 then
    redis.call('BITOP', 'AND', scratch, unpack(sources))
    set = scratch
  end
  local page_of = set
  if needle ~= '' and not exact then
    local candidates = bits_of(set, 0, math.huge)
    if #candidates < tonumber(ARGV[9]) then
      count, seqs = window(recheck(candidates))
      page_of = nil
    else
      -- Many candidates: the matches are kept for a minute as a bitmap,
      -- named by the platform's checkpoint (a later write of the platform
      -- names another), and the next pages of this search read it.
      local found = kp .. 'found:' .. (redis.call('GET', KEYS[2]) or '0') .. ':' .. ARGV[8]
      if redis.call('EXISTS', found) == 0 then
        local bytes, size = {}, 0
        for _, seq in ipairs(recheck(candidates)) do
          local at = math.floor(seq / 8) + 1
          while size < at do
            size = size + 1
            bytes[size] = 0
          end
          bytes[at] = bit.bor(bytes[at], bit.rshift(128, seq % 8))
        end
        local parts = {}
        for j = 1, size, 4096 do
          parts[#parts + 1] = string.char(unpack(bytes, j, math.min(j + 4095, size)))
        end
        redis.call('SET', found, table.concat(parts), 'PX', 60000)
      end
      page_of = found
    end
  end
  if page_of then
    count = redis.call('BITCOUNT', page_of)
    if limit > 0 and offset < count then
      seqs = bits_of(page_of, offset, limit)
    end
  end
  if set == scratch then
    redis.call('DEL', scratch)
  end
end

local out = {tostring(count)}
if #seqs > 0 then
  local ids = redis.call('HMGET', kp .. 'ids', unpack(seqs))
  for _, id in ipairs(ids) do
    if id then
      local e = redis.call('HMGET', kp .. 'entity:' .. id, 'fields', 'created_at', 'retired',
        'revision', 'created_by')
      out[#out + 1] = id
      for f = 1, 5 do
        out[#out + 1] = e[f] or ''
      end
    end
  end
end
return out
"#,
    )
});

/// The entities of ARGV[2..] (ids) of the kind whose prefix is ARGV[1]:
/// for each, the five fields of a view, as [`LIST`] answers them ("" when
/// it does not exist).
/// KEYS[1]: the kind's `ids` (for the slot).
static ENTITIES: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local out = {}
for j = 2, #ARGV do
  local e = redis.call('HMGET', ARGV[1] .. 'entity:' .. ARGV[j], 'fields', 'created_at',
    'retired', 'revision', 'created_by')
  for f = 1, 5 do
    out[#out + 1] = e[f] or ''
  end
end
return out
"#,
    )
});

/// A page of a platform's users, by id.
///
/// KEYS[1]: the users' `order`. ARGV: the users' prefix
/// (`ibl:catalog:{P}:user:`), offset, limit, the user name and the email
/// filters in lower case (`=X`, or "": none), then the ids of single users
/// to read instead of a list (offset, limit and filters then unused).
/// Answers the count, then each user's id, user name, email, given and
/// family names, `active` (`1`/`0`), creation and update times.
static USERS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local kp = ARGV[1]
local offset, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
local ids = {}
local count = 0
if #ARGV > 5 then
  for j = 6, #ARGV do
    ids[#ids + 1] = ARGV[j]
  end
else
  local sets = {}
  if ARGV[4] ~= '' then
    sets[#sets + 1] = kp .. 'username:' .. string.sub(ARGV[4], 2)
  end
  if ARGV[5] ~= '' then
    sets[#sets + 1] = kp .. 'email:' .. string.sub(ARGV[5], 2)
  end
  if #sets == 0 then
    count = redis.call('ZCARD', KEYS[1])
    if limit > 0 and offset < count then
      ids = redis.call('ZRANGE', KEYS[1], offset, offset + limit - 1)
    end
  else
    local all
    if #sets == 1 then
      all = redis.call('ZRANGE', sets[1], 0, -1)
    else
      all = redis.call('ZINTER', 2, sets[1], sets[2])
    end
    count = #all
    for j = offset + 1, math.min(offset + limit, count) do
      ids[#ids + 1] = all[j]
    end
  end
end
local out = {tostring(count)}
for _, id in ipairs(ids) do
  local u = redis.call('HMGET', kp .. 'entity:' .. id, 'username', 'email', 'given_name',
    'family_name', 'active', 'created', 'updated')
  if u[1] then
    out[#out + 1] = id
    for f = 1, 7 do
      out[#out + 1] = u[f]
    end
  end
end
return out
"#,
    )
});

/// The prefix of platform `p`'s keys, its hash tag included.
fn prefix(platform: &str) -> String {
    format!("ibl:catalog:{{{}}}:", esc(platform))
}

fn lookup(kind: Kind, id: &str) -> String {
    format!("ibl:catalog:platform-of:{}:{}", kind.name(), esc(id))
}

/// The layout of this code's keys with set postings of at most `small`.
fn layout(small: usize) -> String {
    format!("{LAYOUT_VERSION} grams=1..3 small={small}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Credential,
    Issuer,
    User,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Credential => "credential",
            Kind::Issuer => "issuer",
            Kind::User => "user",
        }
    }
}

/// A filter's value as the scripts take it.
fn filter_arg(value: Option<&str>) -> String {
    value.map(|v| format!("={}", esc(v))).unwrap_or_default()
}

/// What an event changes.
struct Change {
    position: Position,
    kind: Kind,
    id: String,
    /// The platform of a creation.
    created_in: Option<String>,
    /// The actor's platform: used when the creation is unknown.
    actor: Option<String>,
    /// The operation's name and fields.
    args: Vec<String>,
}

/// The operation's fields of new fields: the fields' JSON, the name and
/// the description in lower case, their grams (for the script's
/// postings: each percent-encoded and followed by `:`), the course and
/// program.
fn field_args(
    fields: &impl serde::Serialize,
    name: &str,
    description: &str,
    course: Option<&str>,
    program: Option<&str>,
) -> Result<Vec<String>, serde_json::Error> {
    let (name, description) = (name.to_lowercase(), description.to_lowercase());
    let mut grams = text_grams(&name);
    grams.extend(text_grams(&description));
    let grams = grams.iter().fold(String::new(), |mut out, g| {
        out.push_str(g);
        out.push(':');
        out
    });
    Ok(vec![
        serde_json::to_string(fields)?,
        name,
        description,
        grams,
        filter_arg(course),
        filter_arg(program),
    ])
}

/// The operations of a user event (an import: those of the events it
/// stands for).
fn user_changes(event: &RecordedEvent, user: UserEvent) -> Result<Vec<Change>, serde_json::Error> {
    let lower = |s: &str| esc(&s.to_lowercase()).into_owned();
    let mut out = Vec::new();
    for user in user.expanded() {
        let (id, created_in, args) = match user {
            UserEvent::UserRegistered {
                id,
                platform,
                username,
                email,
                given_name,
                family_name,
                registered_at,
            } => {
                let (lu, le) = (lower(&username), lower(&email));
                let args = vec![
                    "register".to_owned(),
                    username,
                    email,
                    given_name,
                    family_name,
                    serde_json::to_string(&registered_at)?,
                    lu,
                    le,
                ];
                (id, Some(platform), args)
            }
            UserEvent::UserUpdated {
                id,
                username,
                email,
                given_name,
                family_name,
                updated_at,
            } => {
                let (lu, le) = (lower(&username), lower(&email));
                let args = vec![
                    "reuser".to_owned(),
                    username,
                    email,
                    given_name,
                    family_name,
                    serde_json::to_string(&updated_at)?,
                    lu,
                    le,
                ];
                (id, None, args)
            }
            UserEvent::UserDeactivated { id, deactivated_at } => (
                id,
                None,
                vec![
                    "activate".into(),
                    "0".into(),
                    serde_json::to_string(&deactivated_at)?,
                ],
            ),
            UserEvent::UserReactivated { id, reactivated_at } => (
                id,
                None,
                vec![
                    "activate".into(),
                    "1".into(),
                    serde_json::to_string(&reactivated_at)?,
                ],
            ),
            // (An import expands into the events above.)
            UserEvent::UserImported { .. } => continue,
        };
        out.push(Change {
            position: event.position,
            kind: Kind::User,
            id: id.to_string(),
            created_in,
            actor: event.metadata.actor.platform.clone(),
            args,
        });
    }
    Ok(out)
}

fn decode(event: &RecordedEvent) -> Result<Vec<Change>, serde_json::Error> {
    let stream = event.stream.as_str();
    if stream == USERS_STREAM || user_of_stream(stream).is_some() {
        return user_changes(event, UserEvent::from_recorded(event)?);
    }
    Ok(decode_entity(event)?.into_iter().collect())
}

fn decode_entity(event: &RecordedEvent) -> Result<Option<Change>, serde_json::Error> {
    let stream = event.stream.as_str();
    let change = |kind, id: &str, created_in, args| Change {
        position: event.position,
        kind,
        id: id.to_owned(),
        created_in,
        actor: event.metadata.actor.platform.clone(),
        args,
    };
    let revision = event.revision.to_string();
    if let Some(id) = stream.strip_prefix("credential-") {
        let kind = Kind::Credential;
        return Ok(Some(match CredentialEvent::from_recorded(event)? {
            CredentialEvent::CredentialCreated {
                platform,
                fields,
                created_at,
                ..
            } => {
                let mut f = field_args(
                    &fields,
                    &fields.name,
                    &fields.description,
                    fields.course.as_deref(),
                    fields.program.as_deref(),
                )?;
                let (json, texts) = (f.remove(0), f);
                let mut args = vec![
                    "create".to_owned(),
                    json,
                    serde_json::to_string(&created_at)?,
                    event.metadata.actor.user.clone().unwrap_or_default(),
                ];
                args.extend(texts);
                args.push(revision);
                change(kind, id, Some(platform), args)
            }
            CredentialEvent::CredentialUpdated { fields, .. } => {
                let mut args = vec!["update".to_owned()];
                args.extend(field_args(
                    &fields,
                    &fields.name,
                    &fields.description,
                    fields.course.as_deref(),
                    fields.program.as_deref(),
                )?);
                args.push(revision);
                change(kind, id, None, args)
            }
            CredentialEvent::CredentialRetired { .. } => {
                change(kind, id, None, vec!["retire".into(), revision])
            }
            CredentialEvent::CredentialDeleted { .. } => {
                change(kind, id, None, vec!["delete".into()])
            }
        }));
    }
    if let Some(id) = stream.strip_prefix("issuer-") {
        let kind = Kind::Issuer;
        return Ok(Some(match IssuerEvent::from_recorded(event)? {
            IssuerEvent::IssuerCreated {
                platform,
                fields,
                created_at,
                ..
            } => {
                let mut f = field_args(&fields, &fields.name, &fields.description, None, None)?;
                let (json, texts) = (f.remove(0), f);
                let mut args = vec![
                    "create".to_owned(),
                    json,
                    serde_json::to_string(&created_at)?,
                    String::new(),
                ];
                args.extend(texts);
                args.push("0".into());
                change(kind, id, Some(platform), args)
            }
            IssuerEvent::IssuerUpdated { fields, .. } => {
                let mut args = vec!["update".to_owned()];
                args.extend(field_args(
                    &fields,
                    &fields.name,
                    &fields.description,
                    None,
                    None,
                )?);
                args.push("0".into());
                change(kind, id, None, args)
            }
            IssuerEvent::IssuerDeleted { .. } => change(kind, id, None, vec!["delete".into()]),
        }));
    }
    Ok(None)
}

fn decode_all(events: &[&RecordedEvent]) -> Vec<Change> {
    events
        .iter()
        .flat_map(|event| match decode(event) {
            Ok(changes) => changes,
            Err(error) => {
                tracing::error!(
                    stream = %event.stream, revision = event.revision, %error,
                    "event skipped by the catalog read model"
                );
                Vec::new()
            }
        })
        .collect()
}

/// The Redis adapter of the catalog: see the module.
pub struct RedisCatalog {
    core: Arc<RedisModel>,
    /// The largest set posting ([`SMALL`]; the tests make it small).
    small: String,
    /// The fewest candidates of a search whose matches are kept
    /// ([`KEEP_FROM`]; the tests keep every search's).
    keep_from: usize,
}

impl RedisCatalog {
    /// Connects to the Redis server at `url` and reads where the model is.
    /// Refuses a database whose keys have another layout.
    pub async fn open(url: &str) -> Result<Self, ReadError> {
        Self::open_with(url, CHUNK, SMALL, KEEP_FROM).await
    }

    async fn open_with(
        url: &str,
        chunk: usize,
        small: usize,
        keep_from: usize,
    ) -> Result<Self, ReadError> {
        let core = RedisModel::open(NAME, url, layout(small), KEYS, chunk).await?;
        Ok(Self {
            core: Arc::new(core),
            small: small.to_string(),
            keep_from,
        })
    }

    /// Follows the model as another process writes it (see
    /// [`RedisModel::follow`]).
    pub fn follow(&self, every: Duration) -> watch::Receiver<Position> {
        self.core.follow(every)
    }

    fn write(
        &self,
        changes: &[Change],
        from: Position,
        last: Position,
        scripts: Option<usize>,
    ) -> RedisResult<Written> {
        self.core.write(
            &APPLY,
            &self.small,
            |con| plan(con, changes),
            from,
            last,
            scripts,
        )
    }

    /// Entity views of `kind` in `platform`, by id (the missing left out).
    async fn entities(
        &self,
        platform: &str,
        kind: Kind,
        ids: &[&str],
    ) -> Result<Vec<(String, [String; 5])>, ReadError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let kp = format!("{}{}:", prefix(platform), kind.name());
        let mut call = ENTITIES.prepare_invoke();
        call.key(format!("{kp}ids")).arg(&kp);
        for id in ids {
            call.arg(esc(id).as_ref());
        }
        let reply: Vec<String> = self.core.invoke(&call).await?;
        let mut reply = reply.into_iter();
        let mut out = Vec::new();
        for id in ids {
            let parts: [String; 5] = std::array::from_fn(|_| reply.next().unwrap_or_default());
            if !parts[0].is_empty() {
                out.push(((*id).to_owned(), parts));
            }
        }
        Ok(out)
    }

    /// A page of a kind's list (an issuer has no course nor program).
    async fn list(
        &self,
        platform: &str,
        kind: Kind,
        filter: &CredentialFilter,
        offset: usize,
        limit: usize,
    ) -> Result<(usize, Vec<(String, [String; 5])>), ReadError> {
        let kp = format!("{}{}:", prefix(platform), kind.name());
        let needle = filter
            .search
            .as_deref()
            .map(str::to_lowercase)
            .unwrap_or_default();
        let (grams, exact) = if needle.is_empty() {
            (Vec::new(), false)
        } else {
            needle_grams(&needle)
        };
        let (course, program) = (
            filter_arg(filter.course.as_deref()),
            filter_arg(filter.program.as_deref()),
        );
        let search = format!("{}|{course}|{program}", esc(&needle));
        let mut call = LIST.prepare_invoke();
        call.key(format!("{kp}alive"))
            .key(format!("{}checkpoint:{NAME}", prefix(platform)))
            .arg(&kp)
            .arg(offset.min(MAX_RANGE))
            .arg(limit.min(MAX_RANGE))
            .arg(&needle)
            .arg(if exact { "1" } else { "0" })
            .arg(course)
            .arg(program)
            .arg(search)
            .arg(self.keep_from)
            .arg(grams);
        let reply: Vec<String> = self.core.invoke(&call).await?;
        let mut reply = reply.into_iter();
        let count = list_count(&mut reply)?;
        let mut items = Vec::new();
        while let Some(id) = reply.next() {
            let parts: [String; 5] = std::array::from_fn(|_| reply.next().unwrap_or_default());
            items.push((unescape(&id), parts));
        }
        Ok((count, items))
    }
}

impl RedisCatalog {
    /// Users of `platform`: the page of a filtered list, or the users of
    /// `ids` (then the count is 0).
    async fn read_users(
        &self,
        platform: &str,
        filter: &UserFilter,
        offset: usize,
        limit: usize,
        ids: &[u64],
    ) -> Result<Page<UserView>, ReadError> {
        let kp = format!("{}user:", prefix(platform));
        let lower = |v: &Option<String>| v.as_deref().map(str::to_lowercase);
        let mut call = USERS.prepare_invoke();
        call.key(format!("{kp}order"))
            .arg(&kp)
            .arg(offset.min(MAX_RANGE))
            .arg(limit.min(MAX_RANGE))
            .arg(filter_arg(lower(&filter.username).as_deref()))
            .arg(filter_arg(lower(&filter.email).as_deref()));
        for id in ids {
            call.arg(*id);
        }
        let reply: Vec<String> = self.core.invoke(&call).await?;
        let mut reply = reply.into_iter();
        let count = list_count(&mut reply)?;
        let mut items = Vec::new();
        while let Some(id) = reply.next() {
            let [username, email, given_name, family_name, active, created, updated] =
                std::array::from_fn(|_| reply.next().unwrap_or_default());
            items.push(UserView {
                id: id
                    .parse()
                    .map_err(|_| ReadError::new("a stored user id is not a number"))?,
                platform: platform.to_owned(),
                username,
                email,
                given_name,
                family_name,
                active: active == "1",
                created: stored("registration time", &created)?,
                updated: stored("update time", &updated)?,
            });
        }
        Ok(Page { count, items })
    }
}

/// An id as written in a key (see [`esc`]) back to itself.
fn unescape(s: &str) -> String {
    if !s.contains('%') {
        return s.to_owned();
    }
    s.replace("%3A", ":")
        .replace("%7B", "{")
        .replace("%7D", "}")
        .replace("%25", "%")
}

fn stored<T: serde::de::DeserializeOwned>(what: &str, json: &str) -> Result<T, ReadError> {
    serde_json::from_str(json).map_err(|e| ReadError::new(format!("a stored {what}: {e}")))
}

fn credential_view(
    platform: &str,
    id: String,
    parts: [String; 5],
) -> Result<CredentialView, ReadError> {
    let [fields, created_at, retired, revision, created_by] = parts;
    Ok(CredentialView {
        platform: platform.to_owned(),
        entity_id: id,
        fields: stored("credential", &fields)?,
        created_at: stored::<DateTime<Utc>>("creation time", &created_at)?,
        retired: retired == "1",
        revision: revision
            .parse()
            .map_err(|_| ReadError::new("a stored revision is not a number"))?,
        created_by,
    })
}

fn issuer_view(platform: &str, id: String, parts: [String; 5]) -> Result<IssuerView, ReadError> {
    let [fields, created_at, ..] = parts;
    Ok(IssuerView {
        platform: platform.to_owned(),
        entity_id: id,
        fields: stored("issuer", &fields)?,
        created_at: stored::<DateTime<Utc>>("creation time", &created_at)?,
    })
}

/// Finds the platform of every change (writing the lookups of new
/// entities) and answers each platform's operations, in log order.
fn plan(con: &mut Writer, changes: &[Change]) -> RedisResult<Plan> {
    let mut wanted: Vec<String> = Vec::new();
    let mut seen = HashSet::new();
    for change in changes {
        let key = lookup(change.kind, &change.id);
        if seen.insert(key.clone()) {
            wanted.push(key);
        }
    }
    let mut platform_of: HashMap<String, String> = HashMap::new();
    if !wanted.is_empty() {
        let known = redis_link::get_many(con, &wanted)?;
        platform_of.extend(
            wanted
                .into_iter()
                .zip(known)
                .filter_map(|(k, p)| p.map(|p| (k, p))),
        );
    }
    let mut lookups: Vec<(String, String)> = Vec::new();
    let mut ops = Plan::new();
    for change in changes {
        let key = lookup(change.kind, &change.id);
        let platform = match (platform_of.get(&key), &change.created_in) {
            (Some(p), Some(created)) if p != created => {
                tracing::warn!(
                    entity = %change.id, platform = %p,
                    "an entity created again in another platform is ignored"
                );
                continue;
            }
            (Some(p), _) => p.clone(),
            (None, Some(p)) => {
                platform_of.insert(key.clone(), p.clone());
                lookups.push((key, p.clone()));
                p.clone()
            }
            (None, None) => match &change.actor {
                Some(p) => p.clone(),
                None => continue,
            },
        };
        let mut args = Vec::with_capacity(change.args.len() + 2);
        args.push(change.args[0].clone());
        args.push(change.kind.name().to_owned());
        args.push(esc(&change.id).into_owned());
        args.extend(change.args[1..].iter().cloned());
        ops.entry(prefix(&platform)).or_default().push(Op {
            position: change.position,
            args,
        });
    }
    redis_link::set_nx_many(con, &lookups)?;
    Ok(ops)
}

#[async_trait::async_trait]
impl CatalogQueries for RedisCatalog {
    async fn credential(
        &self,
        platform: &str,
        entity_id: &str,
    ) -> Result<Option<CredentialView>, ReadError> {
        let found = self
            .entities(platform, Kind::Credential, &[entity_id])
            .await?;
        found
            .into_iter()
            .next()
            .map(|(id, parts)| credential_view(platform, id, parts))
            .transpose()
    }

    async fn credentials_among(
        &self,
        platform: &str,
        ids: &[&str],
    ) -> Result<HashMap<String, CredentialView>, ReadError> {
        let mut unique: Vec<&str> = Vec::with_capacity(ids.len());
        for id in ids {
            if !unique.contains(id) {
                unique.push(id);
            }
        }
        self.entities(platform, Kind::Credential, &unique)
            .await?
            .into_iter()
            .map(|(id, parts)| Ok((id.clone(), credential_view(platform, id, parts)?)))
            .collect()
    }

    async fn credentials(
        &self,
        platform: &str,
        filter: &CredentialFilter,
        offset: usize,
        limit: usize,
    ) -> Result<Page<CredentialView>, ReadError> {
        let (count, items) = self
            .list(platform, Kind::Credential, filter, offset, limit)
            .await?;
        let items = items
            .into_iter()
            .map(|(id, parts)| credential_view(platform, id, parts))
            .collect::<Result<_, _>>()?;
        Ok(Page { count, items })
    }

    async fn issuer(
        &self,
        platform: &str,
        entity_id: &str,
    ) -> Result<Option<IssuerView>, ReadError> {
        let found = self.entities(platform, Kind::Issuer, &[entity_id]).await?;
        found
            .into_iter()
            .next()
            .map(|(id, parts)| issuer_view(platform, id, parts))
            .transpose()
    }

    async fn issuers(
        &self,
        platform: &str,
        search: Option<&str>,
        offset: usize,
        limit: usize,
    ) -> Result<Page<IssuerView>, ReadError> {
        let (count, items) = self
            .list(
                platform,
                Kind::Issuer,
                &CredentialFilter {
                    search: search.map(str::to_owned),
                    ..CredentialFilter::default()
                },
                offset,
                limit,
            )
            .await?;
        let items = items
            .into_iter()
            .map(|(id, parts)| issuer_view(platform, id, parts))
            .collect::<Result<_, _>>()?;
        Ok(Page { count, items })
    }

    async fn user(&self, platform: &str, id: u64) -> Result<Option<UserView>, ReadError> {
        let page = self
            .read_users(platform, &UserFilter::default(), 0, 0, &[id])
            .await?;
        Ok(page.items.into_iter().next())
    }

    async fn users(
        &self,
        platform: &str,
        filter: &UserFilter,
        offset: usize,
        limit: usize,
    ) -> Result<Page<UserView>, ReadError> {
        self.read_users(platform, filter, offset, limit, &[]).await
    }
}

/// The whole model only: its keys of one platform are not told apart.
impl crate::replay::Digest for RedisCatalog {
    fn digest(&self, platform: Option<&str>) -> Result<String, String> {
        match platform {
            None => self.core.digest(),
            Some(_) => Err("a model in Redis is digested whole, not by platform".into()),
        }
    }
}

impl ReadModel for RedisCatalog {
    fn name(&self) -> &'static str {
        NAME
    }

    fn checkpoint(&self) -> Position {
        self.core.checkpoint()
    }

    fn verify(&self) -> Applied {
        self.core.verify()
    }

    fn apply(&self, batch: &[RecordedEvent]) -> Applied {
        self.core.apply(batch, |events, from, last| {
            self.write(&decode_all(events), from, last, None)
        })
    }

    fn apply_behind(&self, batch: &[RecordedEvent]) -> Applied {
        self.core
            .apply_behind(batch, &APPLY, &self.small, |con, events| {
                plan(con, &decode_all(events))
            })
    }

    fn settle(&self) -> Applied {
        self.core.settle()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::CredentialsModel;
    use crate::redis_model::NEEDLE_GRAMS;
    use crate::testing::{at, credential, Log, RedisCluster, RedisServer};
    use ibl_events::credentials::IssuerFields;
    use ibl_events::{Actor, Metadata};

    /// A small deterministic generator (xorshift).
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }

        fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
            from[self.below(from.len())]
        }
    }

    const WORDS: &[&str] = &[
        "Rust",
        "rustacean",
        "GO",
        "Python",
        "snake",
        "Ünïcode",
        "straße",
        "naïve",
        "a",
        "ab",
        "data:science",
        "{tag}",
        "100%",
        "ownership",
        "borrow",
        "",
    ];

    fn text(rng: &mut Rng, words: usize) -> String {
        (0..words)
            .map(|_| rng.pick(WORDS))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn metadata(platform: &str, user: &str) -> Metadata {
        Metadata {
            actor: Actor {
                platform: Some(platform.into()),
                user: Some(user.into()),
                ..Actor::default()
            },
            ..Metadata::default()
        }
    }

    /// A random history of credentials and issuers in two platforms:
    /// creations, updates, retirements and deletions.
    fn history(seed: u64, n: usize) -> Log {
        let mut rng = Rng(seed);
        let mut log = Log::default();
        let mut credentials: Vec<(String, String)> = Vec::new();
        let mut issuers: Vec<(String, String)> = Vec::new();
        let mut users: Vec<(u64, String)> = Vec::new();
        let courses = [None, Some("course-1"), Some("c:2{x}"), Some("")];
        let programs = [None, Some("p1"), Some("p%2")];
        for i in 0..n {
            let platform = ["acme", "beta:{b}"][rng.below(2)].to_owned();
            match rng.below(10) {
                0..=3 => {
                    let id = format!("c{i}:{}", rng.below(3));
                    let mut f = credential(
                        &text(&mut rng, 2),
                        &text(&mut rng, 3),
                        courses[rng.below(courses.len())],
                    );
                    f.program = programs[rng.below(programs.len())].map(str::to_owned);
                    log.push_with(
                        &format!("credential-{id}"),
                        CredentialEvent::CredentialCreated {
                            platform: platform.clone(),
                            entity_id: id.clone(),
                            fields: f,
                            created_at: at(i as i64),
                        },
                        metadata(&platform, &format!("user{}", rng.below(3))),
                    );
                    credentials.push((id, platform.clone()));
                }
                4 | 5 if !credentials.is_empty() => {
                    let (id, platform) = credentials[rng.below(credentials.len())].clone();
                    let mut f = credential(
                        &text(&mut rng, 2),
                        &text(&mut rng, 2),
                        courses[rng.below(courses.len())],
                    );
                    f.program = programs[rng.below(programs.len())].map(str::to_owned);
                    log.push_with(
                        &format!("credential-{id}"),
                        CredentialEvent::CredentialUpdated {
                            fields: f,
                            updated_at: at(i as i64),
                        },
                        metadata(&platform, "editor"),
                    );
                }
                6 if !credentials.is_empty() => {
                    let (id, platform) = credentials[rng.below(credentials.len())].clone();
                    let event = if rng.below(2) == 0 {
                        CredentialEvent::CredentialRetired {
                            reason: "old".into(),
                            retired_at: at(i as i64),
                        }
                    } else {
                        CredentialEvent::CredentialDeleted {
                            deleted_at: at(i as i64),
                        }
                    };
                    log.push_with(
                        &format!("credential-{id}"),
                        event,
                        metadata(&platform, "editor"),
                    );
                }
                7 | 8 => {
                    let id = format!("i{i}");
                    log.push_with(
                        &format!("issuer-{id}"),
                        IssuerEvent::IssuerCreated {
                            platform: platform.clone(),
                            entity_id: id.clone(),
                            fields: IssuerFields {
                                name: text(&mut rng, 2),
                                description: text(&mut rng, 2),
                                ..IssuerFields::default()
                            },
                            created_at: at(i as i64),
                        },
                        metadata(&platform, "admin"),
                    );
                    issuers.push((id, platform.clone()));
                }
                _ if !issuers.is_empty() => {
                    let (id, platform) = issuers[rng.below(issuers.len())].clone();
                    let event = if rng.below(2) == 0 {
                        IssuerEvent::IssuerUpdated {
                            fields: IssuerFields {
                                name: text(&mut rng, 1),
                                description: text(&mut rng, 3),
                                ..IssuerFields::default()
                            },
                            updated_at: at(i as i64),
                        }
                    } else {
                        IssuerEvent::IssuerDeleted {
                            deleted_at: at(i as i64),
                        }
                    };
                    log.push_with(&format!("issuer-{id}"), event, metadata(&platform, "admin"));
                }
                _ => {}
            }
            if rng.below(3) == 0 {
                user_event(&mut rng, &mut log, &mut users, i, &platform);
            }
        }
        log
    }

    const NAMES: &[&str] = &["Ann", "ann", "BOB", "bob:{x}", "Zoë", "zoë", "eve%"];

    /// A user registered (sometimes under a name taken, or imported),
    /// updated, deactivated or reactivated.
    fn user_event(
        rng: &mut Rng,
        log: &mut Log,
        users: &mut Vec<(u64, String)>,
        i: usize,
        platform: &str,
    ) {
        let name = match rng.below(2) {
            0 => rng.pick(NAMES).to_owned(),
            _ => format!("{}{i}", rng.pick(NAMES)),
        };
        let name = name.as_str();
        let email = format!("{}@{}.test", rng.pick(NAMES), rng.pick(&["a", "B"]));
        let choice = rng.below(6);
        if users.is_empty() || choice < 2 {
            let id = 1000 + i as u64;
            let event = if choice == 1 {
                UserEvent::UserImported {
                    id,
                    platform: platform.to_owned(),
                    username: name.to_owned(),
                    email,
                    given_name: "Imported".into(),
                    family_name: String::new(),
                    active: rng.below(2) == 0,
                    registered_at: at(1),
                    updated_at: at(i as i64),
                }
            } else {
                UserEvent::UserRegistered {
                    id,
                    platform: platform.to_owned(),
                    username: name.to_owned(),
                    email,
                    given_name: "Given".into(),
                    family_name: "Family".into(),
                    registered_at: at(i as i64),
                }
            };
            log.push_with(&format!("user-{id}"), event, metadata(platform, "scim"));
            users.push((id, platform.to_owned()));
            return;
        }
        let (id, platform) = users[rng.below(users.len())].clone();
        let event = match choice {
            2 | 3 => UserEvent::UserUpdated {
                id,
                username: name.to_owned(),
                email,
                given_name: "New".into(),
                family_name: String::new(),
                updated_at: at(i as i64),
            },
            4 => UserEvent::UserDeactivated {
                id,
                deactivated_at: at(i as i64),
            },
            _ => UserEvent::UserReactivated {
                id,
                reactivated_at: at(i as i64),
            },
        };
        log.push_with(&format!("user-{id}"), event, metadata(&platform, "scim"));
    }

    /// Needles of every length: none, one to three characters (one
    /// gram), longer (trigrams), across words, in another case, absent.
    const NEEDLES: &[Option<&str>] = &[
        None,
        Some("r"),
        Some("Ü"),
        Some("st"),
        Some("%"),
        Some("rus"),
        Some("RUST"),
        Some("ust r"),
        Some("straße go"),
        Some("data:sc"),
        Some("{tag}"),
        Some("naïve naïve"),
        Some("haskell"),
        Some("ownershipownership"),
    ];

    /// Every answer of `redis` equals `memory`'s: lists under each filter
    /// and window, and each entity.
    async fn same_answers(memory: &CredentialsModel, redis: &RedisCatalog, log: &Log) {
        for platform in ["acme", "beta:{b}", "nobody"] {
            for search in NEEDLES {
                for course in [None, Some("course-1"), Some("c:2{x}"), Some("")] {
                    for program in [None, Some("p%2")] {
                        let filter = CredentialFilter {
                            search: search.map(str::to_owned),
                            course: course.map(str::to_owned),
                            program: program.map(str::to_owned),
                        };
                        for (offset, limit) in [(0, 100), (1, 2), (3, 5), (1000, 10)] {
                            let want = memory.credentials(platform, &filter, offset, limit);
                            let got = CatalogQueries::credentials(
                                redis, platform, &filter, offset, limit,
                            )
                            .await
                            .expect("list");
                            assert_eq!(got.count, want.count, "{platform} {filter:?} count");
                            assert_eq!(got.items, want.items, "{platform} {filter:?} {offset}");
                        }
                    }
                }
                let want = memory.issuers(platform, *search, 1, 50);
                let got = CatalogQueries::issuers(redis, platform, *search, 1, 50)
                    .await
                    .expect("issuers");
                assert_eq!(got.count, want.count, "{platform} {search:?} issuers");
                assert_eq!(got.items, want.items, "{platform} {search:?} issuers");
            }
        }
        for platform in ["acme", "beta:{b}", "nobody"] {
            for username in [
                None,
                Some("ann"),
                Some("BOB:{X}"),
                Some("zoË"),
                Some("eve%"),
            ] {
                for email in [None, Some("ann@a.test"), Some("ZOË@b.TEST")] {
                    let filter = UserFilter {
                        username: username.map(str::to_owned),
                        email: email.map(str::to_owned),
                    };
                    for (offset, limit) in [(0, 200), (1, 2), (5, 3), (500, 1)] {
                        let want = memory.users(platform, &filter, offset, limit);
                        let got = CatalogQueries::users(redis, platform, &filter, offset, limit)
                            .await
                            .expect("users");
                        assert_eq!(got.count, want.count, "{platform} {filter:?} users");
                        assert_eq!(got.items, want.items, "{platform} {filter:?} {offset}");
                    }
                }
            }
        }
        for event in &log.events {
            if let Some(id) = user_of_stream(&event.stream) {
                for platform in ["acme", "beta:{b}"] {
                    assert_eq!(
                        CatalogQueries::user(redis, platform, id)
                            .await
                            .expect("user"),
                        CatalogQueries::user(memory, platform, id)
                            .await
                            .expect("user"),
                        "{platform} user {id}"
                    );
                }
            }
        }
        let mut ids: Vec<&str> = Vec::new();
        for event in &log.events {
            if let Some(id) = event.stream.strip_prefix("credential-") {
                ids.push(id);
                for platform in ["acme", "beta:{b}"] {
                    assert_eq!(
                        CatalogQueries::credential(redis, platform, id)
                            .await
                            .expect("credential"),
                        memory.credential(platform, id),
                        "{platform} {id}"
                    );
                }
            }
            if let Some(id) = event.stream.strip_prefix("issuer-") {
                assert_eq!(
                    CatalogQueries::issuer(redis, "acme", id)
                        .await
                        .expect("issuer"),
                    memory.issuer("acme", id),
                );
            }
        }
        ids.push("missing");
        let among = redis.credentials_among("acme", &ids).await.expect("among");
        let want: HashMap<String, CredentialView> = ids
            .iter()
            .filter_map(|id| memory.credential("acme", id))
            .map(|c| (c.entity_id.clone(), c))
            .collect();
        assert_eq!(among, want);
    }

    /// Scripts of about 3 operations, postings that become bitmaps past 2
    /// members, and every search's matches kept.
    /// The grams the apply script removes for a stored text are the ones
    /// the projector sent for it: the same runs of UTF-8 characters and
    /// the same percent-encoding, or a posting would keep an entity whose
    /// text no longer holds the gram.
    #[test]
    fn the_script_s_grams_of_a_text_are_the_projector_s() {
        let server = RedisServer::start();
        let mut con = redis::Client::open(server.url(0))
            .unwrap()
            .get_connection()
            .unwrap();
        let script = Script::new(&format!(
            "{GRAMS_OF}\nreturn grams_of({{ARGV[1], ARGV[2]}})"
        ));
        let mut texts: Vec<String> = WORDS.iter().map(|w| w.to_lowercase()).collect();
        texts.extend(
            [
                "😀 🎉 emoji",
                "e\u{301}te\u{301}",
                "日本語のテキスト",
                "%3a %7b literal",
                ":::{{}}}%%",
                "a%b:c{d}e",
                "tab\tnew\nline",
                "nul\0byte",
                "x",
                "",
            ]
            .map(str::to_owned),
        );
        let mut rng = Rng(7);
        for _ in 0..50 {
            texts.push(text(&mut rng, 6).to_lowercase());
        }
        for pair in texts.windows(2) {
            let lua: Vec<String> = script.arg(&pair[0]).arg(&pair[1]).invoke(&mut con).unwrap();
            let lua: std::collections::BTreeSet<String> = lua.into_iter().collect();
            let mut rust = text_grams(&pair[0]);
            rust.extend(text_grams(&pair[1]));
            assert_eq!(lua, rust, "{pair:?}");
        }
    }

    async fn model(server: &RedisServer, db: u8) -> RedisCatalog {
        RedisCatalog::open_with(&server.url(db), 3, 2, 0)
            .await
            .expect("open")
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_answers_are_the_in_memory_models_after_every_batch() {
        let server = RedisServer::start();
        for (db, seed, small, keep_from) in
            [(1, 7, 2, 0), (2, 1234567, 2, KEEP_FROM), (3, 42, SMALL, 0)]
        {
            let log = history(seed, 120);
            let memory = CredentialsModel::new();
            let redis = RedisCatalog::open_with(&server.url(db), 3, small, keep_from)
                .await
                .expect("open");
            for batch in log.events.chunks(17) {
                memory.apply(batch);
                assert_eq!(redis.apply(batch), Applied::Done);
                assert_eq!(redis.checkpoint(), batch.last().expect("a batch").position);
                same_answers(&memory, &redis, &log).await;
            }
            let all = UserFilter::default();
            let users: Vec<UserView> = ["acme", "beta:{b}"]
                .iter()
                .flat_map(|p| memory.users(p, &all, 0, 500).items)
                .collect();
            assert!(users.len() > 5, "users were made: {}", users.len());
            assert!(users.iter().any(|u| !u.active), "and some deactivated");
            assert!(
                users.iter().any(|u| u.given_name == "New"),
                "and some updated"
            );
        }
    }

    /// On a Redis Cluster each platform's scripts run on its slot's node
    /// (every key they touch carries its hash tag), the lookups go to
    /// theirs, and a loss is swept from every primary.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_a_three_node_cluster_the_answers_are_the_in_memory_models() {
        let cluster = RedisCluster::start();
        let redis = RedisCatalog::open_with(&cluster.url(), 3, 2, 0)
            .await
            .expect("open a cluster");
        let log = history(11, 120);
        let memory = CredentialsModel::new();
        for batch in log.events.chunks(40) {
            memory.apply(batch);
            assert_eq!(redis.apply(batch), Applied::Done);
        }
        same_answers(&memory, &redis, &log).await;
        assert!(
            cluster.keys_per_node().iter().filter(|n| **n > 0).count() >= 2,
            "the keys are spread over the nodes: {:?}",
            cluster.keys_per_node()
        );
        // The cluster comes back from an older dump: its checkpoint is
        // behind, every key of the model is swept and it is rebuilt.
        cluster.delete("ibl:checkpoint:catalog");
        assert_eq!(redis.verify(), Applied::Rewound);
        let left: u64 = cluster.keys_per_node().iter().sum();
        assert_eq!(left, 1, "only the layout is left after the sweep");
        assert_eq!(redis.apply(&log.events), Applied::Done);
        same_answers(&memory, &redis, &log).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_crash_between_scripts_or_a_replay_doubles_and_skips_nothing() {
        let server = RedisServer::start();
        let log = history(99, 80);
        let memory = CredentialsModel::new();
        memory.apply(&log.events);
        let redis = model(&server, 0).await;
        let (first, rest) = log.events.split_at(40);
        assert_eq!(redis.apply(first), Applied::Done);
        // A crash after two scripts of the next batch: its platform
        // checkpoints moved, the global one did not.
        let events: Vec<&RecordedEvent> = rest.iter().collect();
        let last = rest.last().expect("events").position;
        let written = redis
            .write(&decode_all(&events), redis.checkpoint(), last, Some(2))
            .expect("write");
        assert_eq!(written, Written::Partly);
        let restarted = model(&server, 0).await;
        assert_eq!(
            restarted.checkpoint(),
            first.last().expect("events").position
        );
        // The whole log again: what was applied is skipped.
        assert_eq!(restarted.apply(&log.events), Applied::Done);
        assert_eq!(restarted.apply(&log.events), Applied::Done);
        same_answers(&memory, &restarted, &log).await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn every_key_of_a_platform_carries_its_hash_tag_and_a_loss_is_rebuilt() {
        let server = RedisServer::start();
        let log = history(5, 60);
        let redis = model(&server, 0).await;
        assert_eq!(redis.apply(&log.events), Applied::Done);
        let keys = server.keys();
        assert!(keys.iter().any(|k| k.contains(":gb:")), "bitmap postings");
        assert!(keys.iter().any(|k| k.contains(":gs:")), "set postings");
        for key in keys {
            let in_slot = key.starts_with("ibl:catalog:{acme}:")
                || key.starts_with("ibl:catalog:{beta%3A%7Bb%7D}:");
            let outside = key.starts_with("ibl:catalog:platform-of:")
                || key == "ibl:checkpoint:catalog"
                || key == "ibl:layout:catalog";
            assert!(in_slot || outside, "{key}");
            assert!(
                !key.ends_with(":scratch"),
                "a list's scratch key was left: {key}"
            );
        }
        // The server comes back empty: the next check rewinds and the
        // model is rebuilt from the log.
        redis::cmd("FLUSHDB")
            .query::<()>(&mut server.connection())
            .expect("flush");
        assert_eq!(redis.verify(), Applied::Rewound);
        assert_eq!(redis.checkpoint(), 0);
        assert_eq!(redis.apply(&log.events), Applied::Done);
        let memory = CredentialsModel::new();
        memory.apply(&log.events);
        same_answers(&memory, &redis, &log).await;
    }

    /// Thousands of credentials, a few deleted: bitmaps of several 128-byte
    /// ranges, so that pages at any offset skip ranges, bytes and bits.
    #[tokio::test(flavor = "multi_thread")]
    async fn pages_deep_in_large_bitmaps_are_the_in_memory_models() {
        let server = RedisServer::start();
        let mut log = Log::default();
        for i in 0..3000 {
            let id = format!("c{i}");
            let name = format!("{} {i}", ["Alpha", "Beta", "Gamma"][i % 3]);
            log.push(
                &format!("credential-{id}"),
                CredentialEvent::CredentialCreated {
                    platform: "acme".into(),
                    entity_id: id.clone(),
                    fields: credential(&name, "", Some(["x", "y"][i % 2])),
                    created_at: at(i as i64),
                },
                None,
            );
            if i % 7 == 3 {
                log.push(
                    &format!("credential-{id}"),
                    CredentialEvent::CredentialDeleted { deleted_at: at(0) },
                    None,
                );
            }
        }
        let memory = CredentialsModel::new();
        memory.apply(&log.events);
        let redis = model(&server, 0).await;
        assert_eq!(redis.apply(&log.events), Applied::Done);
        for search in [None, Some("alpha"), Some("a 1"), Some("gamma 2"), Some("9")] {
            for course in [None, Some("y")] {
                let filter = CredentialFilter {
                    search: search.map(str::to_owned),
                    course: course.map(str::to_owned),
                    program: None,
                };
                for offset in [0, 1, 7, 900, 1023, 1024, 1025, 2047, 2500, 2570, 2571, 3000] {
                    let want = memory.credentials("acme", &filter, offset, 13);
                    let got = CatalogQueries::credentials(&redis, "acme", &filter, offset, 13)
                        .await
                        .expect("list");
                    assert_eq!(got.count, want.count, "{filter:?}");
                    assert_eq!(got.items, want.items, "{filter:?} at {offset}");
                }
            }
        }
    }

    #[test]
    fn a_needle_is_one_exact_gram_up_to_three_characters_else_its_trigrams() {
        assert_eq!(needle_grams("ü:"), (vec!["ü%3A".to_owned()], true));
        assert_eq!(needle_grams("abc"), (vec!["abc".to_owned()], true));
        let (grams, exact) = needle_grams("abcabcabc");
        assert_eq!(grams, ["abc", "bca", "cab"]);
        assert!(!exact);
        let long = "x".repeat(5) + &('a'..='z').collect::<String>();
        assert_eq!(needle_grams(&long).0.len(), NEEDLE_GRAMS);
    }
}
