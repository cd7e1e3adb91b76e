package redistest_test

import (
	"testing"

	"github.com/ciamkit/selfservice/internal/redistest"
)

// TestStartServer: a server answers with the arguments given, without
// persistence by default, stops answering when killed and answers again
// on the same address after Restart.
func TestStartServer(t *testing.T) {
	t.Parallel()
	srv := redistest.StartServer(t, "--maxmemory-policy", "volatile-lru")
	rdb := srv.Client(t)
	ctx := t.Context()
	got, err := rdb.ConfigGet(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"maxmemory-policy": "volatile-lru", "appendonly": "no", "save": "", "bind": "127.0.0.1"} {
		if got[name] != want {
			t.Errorf("%s = %q, want %q", name, got[name], want)
		}
	}
	srv.Kill(t)
	if err := rdb.Ping(ctx).Err(); err == nil {
		t.Error("PING answered after Kill")
	}
	srv.Restart(t)
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Errorf("PING after Restart: %v", err)
	}
}
