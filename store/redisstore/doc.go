// Package redisstore implements store.CodeStore and store.Limiter on
// Redis, for deployments with several processes that must share codes and
// budgets.
//
// The stores take a client the application opened (a *redis.Client, a
// cluster or ring client: any redis.UniversalClient) and never read the
// environment. Every Verify and every Reserve is one Lua script, which Redis
// runs atomically, so concurrent callers in any number of processes see the
// contract of package store: one winner per code, no more wrong tries than
// allowed, no more events than the limits. Each of those scripts touches a
// single key, so the stores also work on Redis Cluster.
//
// # Round trips
//
// The Limiter is a store.BatchLimiter and the CodeStore a
// store.CodeChecker, which the Service uses to charge a request's budgets
// together: ReserveAll is one script over every budget's key, and
// CheckCode one script over the code and the budgets charged around its
// verification, so that a send-code costs two round trips (its budgets,
// then the code's Put) and an update-email one, where a call for each
// budget, each slot given back and the verification cost six. Those scripts touch several keys, which Redis Cluster allows
// only within one hash slot and a ring only on one server: there
// ReserveAll reserves key by key (see Limiter.ReserveAll for what that
// gives up) and CodeStore.SharesBudgets reports false, so that the
// Service verifies and charges in separate calls.
//
// Entries expire through Redis TTLs: nothing needs sweeping, and how much
// Redis may hold is Redis's maxmemory to set, with maxmemory-policy
// noeviction (see Eviction). Codes are kept only as the
// keyed hashes the caller passes, and addresses only as SHA-256 hashes
// inside key names, so neither a code nor an address appears in clear in
// Redis. Those key hashes are unkeyed: they keep addresses out of key
// listings and logs, but whoever can read the keys and guess an address
// can confirm it.
//
// # Quick start
//
//	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379"})
//	codes := redisstore.NewCodeStore(rdb, redisstore.Options{Prefix: "myapp:"})
//	limiter := redisstore.NewLimiter(rdb, redisstore.Options{Prefix: "myapp:"})
//	if err := limiter.Check(ctx); err != nil {
//		log.Fatal(err) // unreachable, or a Redis that may evict budgets
//	}
//
// # Keys
//
// With the default prefix, a code lives in the hash
// selfservice:code:<hex SHA-256 of purpose NUL email> (fields hash, expires,
// tries) and a budget in the sorted set selfservice:limit:<hex SHA-256 of
// the limiter key> (one member per event in its longest window: the
// reservation id, scored with the event's time in Unix milliseconds).
//
// # Clocks
//
// The scripts decide with the now the caller passes, as the interfaces
// require, and the keys also carry Redis TTLs: a code's key expires at its
// expiresAt by the Redis server's clock (PEXPIREAT), a budget's a minute
// after its longest window has passed since its newest event (PEXPIRE,
// relative, so clock skew between the application and Redis does not
// shorten or lengthen it). With the clocks in step, as NTP keeps them, both agree.
// The limiter counts in whole milliseconds (see Limiter).
//
// # Eviction
//
// Every key the stores write carries a TTL, so every maxmemory-policy but
// noeviction lets a full Redis drop them, the volatile-* policies (the
// default of common managed services) as much as the allkeys-* ones. What
// that does depends on the key:
//
//   - A budget evicted is a budget reset: the events it counted are gone,
//     and the next Reserve admits as if none had happened. Budgets then
//     fail open, under memory pressure that whoever can make the
//     application write (send codes to many addresses, from many IPs) can
//     cause.
//   - A code evicted fails closed: Verify answers ErrCodeInvalid and the
//     user asks for another code, which costs a send from the budgets.
//     Its tries counter lives in the same hash and goes with it, so
//     eviction never resets the tries of a code that stays live; a new
//     Put starts a new code with new tries, as without eviction. A code's
//     eviction is therefore a denial of service, not a bypass, as long as
//     the budgets that bound sends and wrong codes hold.
//
// A missing key cannot tell an eviction from an expiry or a first use, so
// no script can treat it as suspect without refusing every newcomer. The
// stores therefore serve only from a Redis whose policy is noeviction: at
// the first call they read it (CONFIG GET maxmemory-policy, or INFO
// memory's maxmemory_policy where CONFIG is disabled; with a cluster or a
// ring, of every server) and fail with ErrEvictionPolicy on any other
// policy, and on a server that will not tell it. The reading is trusted
// for Options.PolicyCheckInterval (a minute by default), after which the
// next call reads again, so that a CONFIG SET at run time is noticed; a
// refusing reading is not trusted at all, so the stores serve again from
// the first call after a fix. Options.AllowEviction and
// Options.AllowUnknownPolicy serve anyway, with a warning logged at every
// reading. Check reads the policy on demand, for start-up and readiness
// probes.
//
// Under noeviction a full Redis refuses writes instead: every Reserve or
// ReserveAll that would admit, every Verify or CheckCode of a live code (or
// that would keep a charge) and every Put fail with Redis's OOM error,
// which the Service answers as an internal failure (it fails closed), while
// a limit still refuses what it refuses. The scripts write first what
// Redis would refuse, so that none is answered from a comparison whose
// write Redis then refused, and none records half of a batch.
//
// # Restarts and failovers
//
// What a restart keeps is Redis's persistence: without it a restarted
// Redis has reset every budget. With the append-only file, appendfsync
// always keeps every write the stores reported; everysec may lose the
// last second or two. Replication is asynchronous: a replica promoted
// after a failover lacks what the old primary acknowledged last, a
// consumed code comes back and a budget's last events are forgotten.
// Options.Replicas has each Verify, Reserve, ReserveAll and CheckCode wait
// for replicas (WAIT) and fail with ErrReplication, rather than report a
// write that a failover could undo.
package redisstore
