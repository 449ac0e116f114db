package matcher

// The Lua scripts of the RedisStore, in one place: each is one atomic
// step on the shared queue, and together they define its keys and the
// announcements other nodes read, so they are read and changed together.

import "github.com/redis/go-redis/v9"

// The queue's keys: "wait:<mode>" hashes, "seq" (the change counter),
// "changes" (the announcement channel), "pairer" (the pairing lease),
// "node:<n>" and "beat:<n>" (heartbeats), "pm:<pair>" (who met whom).
// A ticket's value is its node, a newline and its JSON: the scripts read
// the node without decoding JSON.
//
// Every script that changes the queue takes the next number of "seq" and,
// unless its node pairs (and so applies its own changes from the reply),
// announces the change: "<seq> <op> <sent ns> <node>\n<body>", the body
// the ticket's JSON for an add, the session for a remove.

// KEYS: seq, channel, node key, the mode's queue, the other queues.
// ARGV: session, value, announce (0/1), write the node key (0/1), ttl ms, sent ns.
var addScript = redis.NewScript(`
for i = 5, #KEYS do
  if redis.call('HEXISTS', KEYS[i], ARGV[1]) == 1 then return 0 end
end
if redis.call('HSETNX', KEYS[4], ARGV[1], ARGV[2]) == 0 then return 0 end
local s = redis.call('INCR', KEYS[1])
if ARGV[4] == '1' then redis.call('SET', KEYS[3], 1, 'PX', ARGV[5]) end
if ARGV[3] == '1' then redis.call('PUBLISH', KEYS[2], s .. ' a ' .. ARGV[6] .. ' ' .. ARGV[2]) end
return s`)

// KEYS: seq, channel, the queues. ARGV: session, announce (0/1), sent ns, node.
var removeScript = redis.NewScript(`
for i = 3, #KEYS do
  if redis.call('HDEL', KEYS[i], ARGV[1]) == 1 then
    local s = redis.call('INCR', KEYS[1])
    if ARGV[2] == '1' then
      redis.call('PUBLISH', KEYS[2], s .. ' r ' .. ARGV[3] .. ' ' .. ARGV[4] .. '\n' .. ARGV[1])
    end
    return s
  end
end
return 0`)

// claimScript: both tickets, if both wait, go in one step, and the pair's
// window starts; a pair inside its window is refused unless the caller
// chose it knowingly (a repeat the rules allow). Tickets of nodes the
// caller names are checked first: a ghost is dropped, not matched.
// Replies: {1} claimed; {0, has a, has b, seq} one missing; {2, until}
// they met; {3, seq, ghosts} ghosts dropped; {4} a == b.
//
// KEYS: seq, pair key, the queues (a's first as far as the caller knows).
// ARGV: a, b, until ms, window ms, now ms, repeat allowed (0/1),
// node-key prefix, nodes to check...
var claimScript = redis.NewScript(`
if ARGV[1] == ARGV[2] then return {4} end
local v = redis.call('HMGET', KEYS[3], ARGV[1], ARGV[2])
local va, vb = v[1], v[2]
local ka, kb = KEYS[3], KEYS[3]
for i = 4, #KEYS do
  if not va then va = redis.call('HGET', KEYS[i], ARGV[1]); ka = KEYS[i] end
  if not vb then vb = redis.call('HGET', KEYS[i], ARGV[2]); kb = KEYS[i] end
end
if not va or not vb then
  return {0, va and 1 or 0, vb and 1 or 0, tonumber(redis.call('GET', KEYS[1]) or '0')}
end
if #ARGV > 7 then
  local dead, ghosts = {}, {}
  for _, p in ipairs({{ARGV[1], va, ka}, {ARGV[2], vb, kb}}) do
    local owner = string.match(p[2], '^([^\n]*)\n') or ''
    for i = 8, #ARGV do
      if ARGV[i] == owner then
        if dead[owner] == nil then dead[owner] = redis.call('EXISTS', ARGV[7] .. owner) == 0 end
        if dead[owner] then
          redis.call('HDEL', p[3], p[1])
          ghosts[#ghosts + 1] = p[1]
        end
        break
      end
    end
  end
  if #ghosts > 0 then return {3, redis.call('INCR', KEYS[1]), ghosts} end
end
if tonumber(ARGV[4]) > 0 then
  local old = redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4], 'NX', 'GET')
  if old then
    if ARGV[6] ~= '1' and tonumber(ARGV[5]) < tonumber(old) then return {2, old} end
    redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
  end
end
if ka == kb then
  redis.call('HDEL', ka, ARGV[1], ARGV[2])
else
  redis.call('HDEL', ka, ARGV[1])
  redis.call('HDEL', kb, ARGV[2])
end
return {1}`)

// KEYS: pair key. ARGV: now ms. Replies the window's end if it is still
// open, else 0 (and forgets it).
var metScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
if tonumber(ARGV[1]) < tonumber(v) then return tonumber(v) end
redis.call('DEL', KEYS[1])
return 0`)

// readScript takes or keeps the pairing lease and reads whole queues with
// the change number they stand at: the view's starting point, or a pass's
// queue when the node has no view. Tickets of nodes whose heartbeat
// lapsed (ghosts) are dropped, counted, and numbered as one change.
// Replies {-1} when another node holds the lease, else {seq, dropped,
// {node, pttl, ...} of the nodes seen alive, {queue index, value, ...}}.
//
// KEYS: lease, seq, the queues to read. ARGV: node, lease ms, node-key prefix.
var readScript = redis.NewScript(`
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return {-1} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local alive, ttls, out, dropped = {}, {}, {}, 0
for i = 3, #KEYS do
  local all = redis.call('HGETALL', KEYS[i])
  for j = 1, #all, 2 do
    local owner = string.match(all[j + 1], '^([^\n]*)\n') or ''
    if alive[owner] == nil then
      local t = redis.call('PTTL', ARGV[3] .. owner)
      alive[owner] = t ~= -2
      if alive[owner] then
        ttls[#ttls + 1] = owner
        ttls[#ttls + 1] = t
      end
    end
    if alive[owner] then
      out[#out + 1] = i - 2
      out[#out + 1] = all[j + 1]
    else
      redis.call('HDEL', KEYS[i], all[j])
      dropped = dropped + 1
    end
  end
end
local seq = tonumber(redis.call('GET', KEYS[2]) or '0')
if dropped > 0 then seq = redis.call('INCR', KEYS[2]) end
return {seq, dropped, ttls, out}`)

// renewScript keeps the lease and reports the change counter and the
// heartbeats of the nodes named. Replies {-1} when another node holds
// the lease, else {1 if this node held it still (0: it had lapsed),
// seq, {pttl per node}}.
//
// KEYS: lease, seq. ARGV: node, lease ms, node-key prefix, nodes...
var renewScript = redis.NewScript(`
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return {-1} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local ttls = {}
for i = 4, #ARGV do ttls[#ttls + 1] = redis.call('PTTL', ARGV[3] .. ARGV[i]) end
return {holder and 1 or 0, tonumber(redis.call('GET', KEYS[2]) or '0'), ttls}`)

// sweepScript drops the tickets named, each if it still belongs to its
// node and that node's heartbeat has lapsed; one change for them all.
// Replies {seq, {sessions dropped}} ({0, {}} when none).
//
// KEYS: seq, the queues. ARGV: node-key prefix, then node, session pairs.
var sweepScript = redis.NewScript(`
local dead, gone = {}, {}
for i = 2, #ARGV, 2 do
  local owner, id = ARGV[i], ARGV[i + 1]
  if dead[owner] == nil then dead[owner] = redis.call('EXISTS', ARGV[1] .. owner) == 0 end
  if dead[owner] then
    for k = 2, #KEYS do
      local v = redis.call('HGET', KEYS[k], id)
      if v and string.sub(v, 1, #owner + 1) == owner .. '\n' then
        redis.call('HDEL', KEYS[k], id)
        gone[#gone + 1] = id
      end
    end
  end
end
if #gone == 0 then return {0, {}} end
return {redis.call('INCR', KEYS[1]), gone}`)
