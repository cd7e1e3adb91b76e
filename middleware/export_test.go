package middleware

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
