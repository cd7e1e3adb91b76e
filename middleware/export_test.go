package middleware

// CacheSize returns how many entries v's token cache holds and the bytes
// they are counted for, or zeros when the cache is off.
func CacheSize(v *Verifier) (entries, bytes int) {
	if v.cache == nil {
		return 0, 0
	}
	for i := range v.cache.shards {
		s := &v.cache.shards[i]
		s.mu.RLock()
		entries += len(s.entries)
		bytes += s.bytes
		s.mu.RUnlock()
	}
	return entries, bytes
}
