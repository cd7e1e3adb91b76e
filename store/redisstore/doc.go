// Package redisstore implements store.CodeStore and store.Limiter on
// Redis, for deployments with several processes that must share codes and
// budgets.
//
// The stores take a client the application opened (a *redis.Client, a
// cluster or ring client: any redis.UniversalClient) and never read the
// environment. Every Verify and every Reserve is one Lua script, which Redis
// runs atomically, so concurrent callers in any number of processes see the
// contract of package store: one winner per code, no more wrong tries than
// allowed, no more events than the limits. Each script touches a single key,
// so the stores also work on Redis Cluster.
//
// Entries expire through Redis TTLs: nothing needs sweeping, and how much
// Redis may hold is Redis's maxmemory to set. Codes are kept only as the
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
package redisstore
