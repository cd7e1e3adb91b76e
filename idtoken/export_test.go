package idtoken

import "context"

// CacheSize returns how many entries v's token cache holds and the bytes
// they are counted for, or zeros when the cache is off. It counts the
// shards' maps and fails when they disagree with the cache's totals.
func CacheSize(v *Verifier) (entries, bytes int) {
	c := v.cache
	if c == nil {
		return 0, 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for i := range c.shards {
		n += len(c.shards[i].entries)
	}
	if n != c.entries {
		panic("middleware: cache totals disagree with its shards")
	}
	return c.entries, c.bytes
}

// Verify is VerifyToken returning the claims, for the tests written against
// them.
func (v *Verifier) Verify(ctx context.Context, raw, clientID string) (*Claims, error) {
	id, err := v.VerifyToken(ctx, raw, clientID)
	if err != nil {
		return nil, err
	}
	return id.Claims.(*Claims), nil
}
