package redisstore

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/ciamkit/selfservice/store"
)

// budgetsLua holds the functions of the scripts that charge several
// budgets in one step, reserveAllScript and checkScript. They judge and
// record each budget as reserveScript does its one (see there for why
// so), with two differences: a refusal writes nothing at all, and every
// budget is judged before any is recorded.
//
// readBudgets reads the budgets of KEYS[first], KEYS[first+1], ... from
// ARGV, starting at ARGV[i]: for each,
//
//	id, keep ('0', or the outcome the charge is kept on: '1' a mismatch,
//	'2' a match), the longest Window (ms), the largest N, the number of
//	limits, then N and Window (ms) of each limit.
//
// judge returns how long from now the budget's limits would hold an event
// back, zero if they let it through, and sets the event's time (at).
// record writes the event: ZADD, which Redis refuses while it is over
// maxmemory unless the script has written before, comes first.
const budgetsLua = `
local function readBudgets(first, i)
	local budgets = {}
	for k = first, #KEYS do
		local b = {key = KEYS[k], id = ARGV[i], keep = ARGV[i + 1],
			longest = tonumber(ARGV[i + 2]), most = tonumber(ARGV[i + 3]), limits = {}}
		local n = tonumber(ARGV[i + 4])
		i = i + 5
		for j = 1, n do
			b.limits[j] = {tonumber(ARGV[i]), tonumber(ARGV[i + 1])}
			i = i + 2
		end
		budgets[#budgets + 1] = b
	end
	return budgets
end

local function judge(b, now)
	local newest = redis.call('ZRANGE', b.key, -1, -1, 'WITHSCORES')
	b.at = now
	if newest[2] and tonumber(newest[2]) > b.at then
		b.at = tonumber(newest[2])
	end
	local wait = 0
	for _, lim in ipairs(b.limits) do
		local nth = redis.call('ZRANGE', b.key, -lim[1], -lim[1], 'WITHSCORES')
		if nth[2] then
			local leaves = tonumber(nth[2]) + lim[2]
			if leaves - b.at > wait then
				wait = leaves - b.at
			end
		end
	end
	return wait
end

local function record(b)
	redis.call('ZADD', b.key, string.format('%.0f', b.at), b.id)
	redis.call('ZREMRANGEBYSCORE', b.key, '-inf', string.format('%.0f', b.at - b.longest))
	redis.call('ZREMRANGEBYRANK', b.key, 0, -b.most - 1)
	redis.call('PEXPIRE', b.key, string.format('%.0f', b.longest + 60000))
end
`

// reserveAllScript is ReserveAll in one atomic step.
//
//	KEYS     the limiter keys' sorted sets, in the order of the requests
//	ARGV[1]  now, Unix milliseconds
//	ARGV[2], ...  each budget as readBudgets reads it
//
// It returns {1} when every event is recorded, and {0, k, wait} when the
// budget of KEYS[k] refuses, the first that does, wait being
// milliseconds from ARGV[1]; then it has written nothing. On a full Redis
// (noeviction) the first ZADD fails and so does the script, having written
// nothing either; a later ZADD of the same script is not refused, so a
// batch is never half recorded.
var reserveAllScript = redis.NewScript(budgetsLua + `
local now = tonumber(ARGV[1])
local budgets = readBudgets(1, 2)
for k, b in ipairs(budgets) do
	local wait = judge(b, now)
	if wait > 0 then
		return {0, k, wait + b.at - now}
	end
end
for _, b in ipairs(budgets) do
	record(b)
end
return {1}
`)

// checkScript is CheckCode in one atomic step: the charges as
// reserveAllScript reserves them, the code as verifyScript verifies it,
// and then only the charges kept on the outcome are written.
//
//	KEYS[1]  the code's hash key
//	KEYS[2], ...  the limiter keys' sorted sets, in the order of the charges
//	ARGV[1]  maxTries
//	ARGV[2]  now, Unix milliseconds
//	ARGV[3]  h, the number of hashes
//	ARGV[4], ..., ARGV[3+h]  the hashes: one try for all of them
//	ARGV[4+h], ...  each charge as readBudgets reads it
//
// It returns {0, k, wait} when the budget of KEYS[k+1] refuses, having
// compared no hash and written nothing, and otherwise {1, match, kept_1,
// kept_2, ...}, match 1 for a match and 0 for a mismatch (a wrong code,
// or no live code), kept_i 1 for a charge recorded and 0 for one given
// back.
//
// What Redis refuses while it is over maxmemory is written first, before
// any comparison, as in verifyScript: the try's HINCRBY when the code is
// live, else the first charge's ZADD (and a DEL of a dead code comes
// after). A full Redis (noeviction) then fails the call before any hash is
// compared and with nothing written, unless no charge is kept on a
// mismatch and there is no live code, which writes nothing but a DEL and
// answers a mismatch: no guess is judged.
var checkScript = redis.NewScript(budgetsLua + `
local maxTries, now, h = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local budgets = readBudgets(2, 4 + h)
for k, b in ipairs(budgets) do
	local wait = judge(b, now)
	if wait > 0 then
		return {0, k, wait + b.at - now}
	end
end
local code = redis.call('HMGET', KEYS[1], 'hash', 'expires', 'tries')
local match, dead = 0, false
if code[1] then
	if now >= tonumber(code[2]) or tonumber(code[3]) >= maxTries then
		dead = true
	else
		local tries = redis.call('HINCRBY', KEYS[1], 'tries', 1)
		for i = 4, 3 + h do
			if code[1] == ARGV[i] then
				match = 1
				break
			end
		end
		dead = match == 1 or tries >= maxTries
	end
end
local outcome = tostring(match + 1)
local res = {1, match}
for _, b in ipairs(budgets) do
	if b.keep == outcome then
		record(b)
		res[#res + 1] = 1
	else
		res[#res + 1] = 0
	end
end
if dead then
	redis.call('DEL', KEYS[1])
end
return res
`)

// keepArg is the keep argument of readBudgets for each outcome: a charge
// kept on a mismatch is recorded when the script's match is 0, "1".
var keepArg = map[store.Outcome]string{store.OnMismatch: "1", store.OnMatch: "2"}

// appendBudget appends the arguments of one budget (see budgetsLua) to
// args, or returns an error if its list of limits is empty or a limit is
// not positive.
func appendBudget(args []any, id, keep string, limits []store.Limit) ([]any, error) {
	at := len(args)
	args, err := appendLimits(append(args, id, keep, nil, nil, strconv.Itoa(len(limits))), limits)
	if err != nil {
		return nil, err
	}
	// appendLimits ends with the longest Window and the largest N.
	n := len(args)
	args[at+2], args[at+3] = args[n-2], args[n-1]
	return args[:n-2], nil
}

// budgetArgs returns how many arguments appendBudget appends, at most, for
// a budget with limits.
func budgetArgs(limits []store.Limit) int { return 7 + 2*len(limits) }

// budgetKeys returns the limiter keys of the budgets named, or an error
// if two name one key: a script would judge the second before the first
// is recorded, and admit both where the limits allow one.
func budgetKeys(prefix string, names []string) ([]string, error) {
	keys := make([]string, len(names))
	for i, name := range names {
		keys[i] = hashedKey(prefix, "limit", name)
		for j := range i {
			if names[j] == name {
				return nil, fmt.Errorf("redisstore: budgets %d and %d name one key", j, i)
			}
		}
	}
	return keys, nil
}

// newIDs returns n reservation ids of 32 random hex digits.
func newIDs(n int) []string {
	b := make([]byte, 16*n)
	rand.Read(b)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = hex.EncodeToString(b[16*i : 16*(i+1)])
	}
	return ids
}

// sharded reports whether rdb spreads keys over several servers (a
// cluster or a ring), where one script cannot reach the keys of several
// budgets.
func sharded(rdb redis.UniversalClient) bool {
	_, ok := rdb.(shardedClient)
	return ok
}

// refusal returns the *store.RateLimitError of a script's {0, k, wait},
// whose budget k is named names[k-1].
func refusal(res []int64, names []string) error {
	if len(res) != 3 || res[1] < 1 || res[1] > int64(len(names)) {
		return fmt.Errorf("script returned %v", res)
	}
	k := int(res[1])
	return &store.RateLimitError{RetryAfter: retryAfter(res[2]), Key: names[k-1]}
}
