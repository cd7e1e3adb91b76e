package redisstore

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultPrefix is the key prefix used when Options.Prefix is empty.
const DefaultPrefix = "selfservice:"

// Options configures a store. The zero value is ready to use.
type Options struct {
	// Prefix starts the name of every key the store writes, so that one
	// Redis can serve several applications or environments. Default:
	// DefaultPrefix.
	Prefix string
}

// prefix returns the prefix in force.
func (o Options) prefix() string {
	if o.Prefix == "" {
		return DefaultPrefix
	}
	return o.Prefix
}

// hashedKey returns prefix+kind+":"+hex(SHA-256(name)), so that names,
// which hold addresses, never appear in clear in Redis.
func hashedKey(prefix, kind, name string) string {
	sum := sha256.Sum256([]byte(name))
	return prefix + kind + ":" + hex.EncodeToString(sum[:])
}

// millis formats t as Unix milliseconds for a script argument.
func millis(t time.Time) string {
	return strconv.FormatInt(t.UnixMilli(), 10)
}

// mustClient panics if rdb is nil; fn names the constructor for the
// message.
func mustClient(fn string, rdb redis.UniversalClient) {
	if rdb == nil {
		panic("redisstore: " + fn + ": nil Redis client")
	}
}
