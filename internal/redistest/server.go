package redistest

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ciamkit/selfservice/internal/testenv"
)

// Server is a redis-server process of a test's own (StartServer), for
// what a shared Redis must not be put through: a small maxmemory, an
// evicting policy, a crash, a replica promoted.
type Server struct {
	// Addr is host:port on the loopback interface.
	Addr string
	// Dir is the server's working directory (--dir): an append-only file
	// written there survives Kill and is read again by Restart.
	Dir string

	args []string
	cmd  *exec.Cmd
	// exited is closed when the process has ended.
	exited chan struct{}
}

// startTimeout bounds how long a server may take to answer PING.
const startTimeout = 10 * time.Second

// StartServer starts redis-server on a free loopback port, without
// persistence (--save "" --appendonly no) unless args say otherwise (later
// arguments win), and kills it when t ends. It skips t when redis-server is
// not on PATH, and fails it instead when SELFSERVICE_REQUIRE_SERVICES=1.
func StartServer(t testing.TB, args ...string) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv(testenv.Require) == "1" {
			t.Fatalf("redis-server is not on PATH and %s=1: this test must run", testenv.Require)
		}
		t.Skip("redis-server is not on PATH; skipping this test, which starts Redis servers of its own")
	}
	s := &Server{Dir: t.TempDir(), args: args}
	// A free port can be taken by someone else between our probe and the
	// server's bind: try a few.
	for attempt := 0; ; attempt++ {
		s.Addr = freeAddr(t)
		err := s.start(t, bin)
		if err == nil {
			break
		}
		if attempt == 4 || !strings.Contains(err.Error(), "in use") {
			t.Fatalf("start redis-server: %v", err)
		}
	}
	t.Cleanup(func() { s.stop() })
	return s
}

// Client returns a client of the server, closed when t ends.
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// Kill ends the server with SIGKILL, as a crash would: nothing is saved
// that was not already written.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	s.stop()
}

// Restart starts the server again, after Kill, on the same port and
// directory with the same arguments.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.start(t, bin); err != nil {
		t.Fatalf("restart redis-server: %v", err)
	}
}

func (s *Server) start(t testing.TB, bin string) error {
	_, port, _ := net.SplitHostPort(s.Addr)
	logFile := filepath.Join(s.Dir, "redis.log")
	args := append([]string{
		"--port", port, "--bind", "127.0.0.1", "--dir", s.Dir, "--logfile", logFile,
		"--daemonize", "no", "--save", "", "--appendonly", "no",
	}, s.args...)
	cmd := exec.Command(bin, args...)
	setParentDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		return err
	}
	s.cmd, s.exited = cmd, make(chan struct{})
	exited := s.exited
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()

	rdb := redis.NewClient(&redis.Options{Addr: s.Addr, MaxRetries: -1, DialTimeout: time.Second})
	defer rdb.Close()
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-exited:
			return errors.New("redis-server exited: " + tail(logFile))
		default:
		}
		// Answered by our process, not by another that took the port:
		// INFO may be disabled (rename-command), so the log tells, in
		// the part our process wrote.
		if rdb.Ping(context.Background()).Err() == nil {
			log := tail(logFile)
			if i := strings.LastIndex(log, "pid="+strconv.Itoa(cmd.Process.Pid)+","); i >= 0 && strings.Contains(log[i:], "Ready to accept connections") {
				return nil
			}
		}
		if time.Now().After(deadline) {
			s.stop()
			return errors.New("redis-server did not answer within " + startTimeout.String() + ": " + tail(logFile))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stop kills the process, if it runs, and waits for its end.
func (s *Server) stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// freeAddr returns a loopback address whose port was free a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return "127.0.0.1:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// tail returns the end of a log file, for error messages.
func tail(path string) string {
	b, _ := os.ReadFile(path)
	const max = 2000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}
