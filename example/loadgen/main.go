// Command loadgen measures the example server under loopback load on the
// full update-email path. It builds ./example once into a temporary
// directory, serves an RS256 issuer of its own on 127.0.0.1, writes a seed
// file of N users and one client, starts the example as a subprocess on
// 127.0.0.1 (-addr 127.0.0.1:0 -load-test -seed FILE -issuer URL -jwks-url URL, with
// -store and -codes passed through), drives it with internal/loadgen
// (send-code and update-email per user, plus invalid requests) until the
// duration or the request count is reached, samples the server's RSS from
// /proc, checks through the API that every confirmed change is in place,
// and stops the server.
//
//	go run ./example/loadgen -users 200 -c 16 -d 60s -requests 2000000
//	go run ./example/loadgen -store "$SELFSERVICE_TEST_POSTGRES" -codes redis://127.0.0.1:6379/15
//
// With a postgres:// store the users go into a schema of their own, created
// for the run and dropped after it; with a redis:// code store the keys the
// example wrote (its default prefix, "selfservice:") are deleted after the
// run, so give it a database index of its own.
//
// It exits 1 when the server answered anything the flow did not expect or a
// change is missing. Traffic goes only to 127.0.0.1.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/redis/go-redis/v9"

	"github.com/ciamkit/selfservice/internal/devissuer"
	"github.com/ciamkit/selfservice/internal/loadgen"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

type config struct {
	users, concurrency, requests int
	duration, sample             time.Duration
	rate                         float64
	store, codes                 string
	jsonOut                      bool
}

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.IntVar(&c.users, "users", 100, "`N` users seeded and driven")
	fs.IntVar(&c.concurrency, "c", 8, "concurrent workers, one request in flight each")
	fs.DurationVar(&c.duration, "d", 30*time.Second, "run `duration`: no request starts after it")
	fs.IntVar(&c.requests, "requests", 1_000_000, "most requests sent")
	fs.Float64Var(&c.rate, "rate", 0, "requests per second for a steady rate; 0 is as fast as answers come")
	fs.DurationVar(&c.sample, "sample", time.Second, "how often the server's RSS is read")
	fs.StringVar(&c.store, "store", "memory", "the example's -store: memory, sqlite:PATH or postgres://...")
	fs.StringVar(&c.codes, "codes", "memory", "the example's -codes: memory or redis://...")
	fs.BoolVar(&c.jsonOut, "json", false, "print the report as JSON")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if c.users < c.concurrency || c.concurrency < 1 || c.duration <= 0 || c.requests <= 0 || c.sample <= 0 {
		return c, errors.New("want -users >= -c >= 1, and positive -d, -requests and -sample")
	}
	return c, nil
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	cfg, err := parseFlags(args)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "selfservice-loadgen-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	bin := filepath.Join(dir, "example")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/ciamkit/selfservice/example")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("build the example: %w", err)
	}

	iss, err := startIssuer()
	if err != nil {
		return err
	}
	defer iss.close()

	runID := randomHex(4)
	clientID := "loadgen-" + runID
	users := make([]loadgen.User, cfg.users)
	for i := range users {
		id := fmt.Sprintf("lg-%s-%d", runID, i)
		tok, err := iss.IDToken(id, clientID, 24*time.Hour)
		if err != nil {
			return err
		}
		users[i] = loadgen.User{ID: id, Email: id + "@loadgen.test", Token: tok}
	}
	seedPath := filepath.Join(dir, "seed.json")
	if err := writeSeed(seedPath, clientID, users); err != nil {
		return err
	}

	storeArg := cfg.store
	if strings.HasPrefix(storeArg, "postgres://") || strings.HasPrefix(storeArg, "postgresql://") {
		var drop func()
		if storeArg, drop, err = postgresSchema(ctx, storeArg, "selfservice_loadgen_"+runID); err != nil {
			return err
		}
		defer drop()
	}
	if strings.HasPrefix(cfg.codes, "redis://") {
		defer cleanRedis(cfg.codes)
	}

	mails := loadgen.NewMailLog()
	srv, err := startServer(ctx, bin, mails,
		"-addr", "127.0.0.1:0", "-load-test", "-seed", seedPath, "-issuer", iss.URL(), "-jwks-url", iss.URL()+"/jwks",
		"-store", storeArg, "-codes", cfg.codes)
	if err != nil {
		return err
	}
	defer srv.stop()

	sampler := startSampler(srv.cmd.Process.Pid, cfg.sample)
	opts := loadgen.Options{
		BaseURL: srv.base, ClientID: clientID, Users: users, Codes: mails,
		Concurrency: cfg.concurrency, Duration: cfg.duration, Requests: cfg.requests, Rate: cfg.rate,
	}
	rep, err := loadgen.Run(ctx, opts)
	rss := sampler.stop()
	if err != nil {
		return err
	}
	bad, err := loadgen.Check(ctx, opts, rep.Final)
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	if err := srv.stop(); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen: server exit:", err)
	}
	out := report{Config: cfg.describe(), Report: rep, RSS: rss, Missing: bad}
	if cfg.jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return err
		}
	} else {
		out.print(stdout)
	}
	if rep.Unexpected > 0 || len(bad) > 0 {
		return fmt.Errorf("%d unexpected answers, %d changes missing", rep.Unexpected, len(bad))
	}
	return nil
}

// postgresSchema creates schema in the database of url and returns url with
// that schema as its search_path, and a function that drops it.
func postgresSchema(ctx context.Context, url, schema string) (string, func(), error) {
	cc, err := pgx.ParseConfig(url)
	if err != nil {
		return "", nil, fmt.Errorf("-store: %w", err)
	}
	db := stdlib.OpenDB(*cc)
	if _, err := db.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		db.Close()
		return "", nil, fmt.Errorf("create schema: %w", err)
	}
	drop := func() {
		if _, err := db.ExecContext(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			fmt.Fprintln(os.Stderr, "loadgen: drop schema:", err)
		}
		db.Close()
	}
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	return url + sep + "search_path=" + schema, drop, nil
}

// cleanRedis deletes the keys the example wrote under its default prefix.
func cleanRedis(url string) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	iter := rdb.Scan(ctx, 0, "selfservice:*", 1000).Iterator()
	for iter.Next(ctx) {
		rdb.Del(ctx, iter.Val())
	}
	if err := iter.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen: clean Redis:", err)
	}
}

func (c config) describe() string {
	return fmt.Sprintf("users=%d c=%d d=%v requests=%d rate=%v store=%s codes=%s",
		c.users, c.concurrency, c.duration, c.requests, c.rate, redactURL(c.store), redactURL(c.codes))
}

// redactURL hides a password in a store URL.
func redactURL(s string) string {
	if i, j := strings.Index(s, "://"), strings.LastIndex(s, "@"); i >= 0 && j > i {
		if k := strings.Index(s[i+3:j], ":"); k >= 0 {
			return s[:i+3+k] + ":***" + s[j:]
		}
	}
	return s
}

// issuer signs the load's id_tokens and serves their JWKS on 127.0.0.1.
type issuer struct {
	*devissuer.Issuer
	srv *http.Server
}

func startIssuer() (*issuer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	dev, err := devissuer.New("http://" + ln.Addr().String())
	if err != nil {
		ln.Close()
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /jwks", dev)
	iss := &issuer{Issuer: dev, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}}
	go func() { _ = iss.srv.Serve(ln) }()
	return iss, nil
}

func (iss *issuer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = iss.srv.Shutdown(ctx)
}

func writeSeed(path, clientID string, users []loadgen.User) error {
	type user struct {
		ID    string `json:"id"`
		Email string `json:"email"`
	}
	seed := struct {
		Clients []map[string]string `json:"clients"`
		Users   []user              `json:"users"`
	}{Clients: []map[string]string{{"client_id": clientID, "name": "loadgen"}}}
	for _, u := range users {
		seed.Users = append(seed.Users, user{u.ID, u.Email})
	}
	b, err := json.Marshal(seed)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

// server is the example running as a subprocess.
type server struct {
	cmd      *exec.Cmd
	base     string
	done     chan struct{} // closed when the process has exited
	err      error         // its exit, once done is closed
	stopOnce sync.Once
	stderr   *tail
}

var listening = regexp.MustCompile(`msg=listening addr=(127\.0\.0\.1:\d+)`)

// startServer starts bin with args, feeds its stdout to mails, and waits
// until it listens and its JWKS keys are loaded.
func startServer(ctx context.Context, bin string, mails io.Writer, args ...string) (*server, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "SELFSERVICE_CODE_SECRET="+randomHex(32))
	cmd.Stdout = mails
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	s := &server{cmd: cmd, done: make(chan struct{}), stderr: &tail{}}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	addr := make(chan string, 1)
	go func() {
		// Reads the server's log until the pipe closes after it exits.
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			s.stderr.add(line)
			if m := listening.FindStringSubmatch(line); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	go func() {
		s.err = cmd.Wait()
		pw.Close()
		close(s.done)
	}()
	timeout := time.NewTimer(60 * time.Second)
	defer timeout.Stop()
	select {
	case a := <-addr:
		s.base = "http://" + a
	case <-s.done:
		return nil, fmt.Errorf("the example exited: %v\n%s", s.err, s.stderr)
	case <-timeout.C:
		s.stop()
		return nil, fmt.Errorf("the example did not listen within 60s\n%s", s.stderr)
	case <-ctx.Done():
		s.stop()
		return nil, ctx.Err()
	}
	if err := s.waitReady(ctx); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

func (s *server) waitReady(ctx context.Context) error {
	for range 300 {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base+"/readyz", nil)
		if err != nil {
			return err
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		case <-s.done:
			return fmt.Errorf("the example exited: %v\n%s", s.err, s.stderr)
		}
	}
	return fmt.Errorf("the example was not ready within 30s\n%s", s.stderr)
}

// stop asks the server to shut down gracefully, kills it after 15s, and
// returns how it exited.
func (s *server) stop() error {
	s.stopOnce.Do(func() {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(15 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	})
	return s.err
}

// tail keeps the last lines of the server's log for error messages.
type tail struct {
	mu    sync.Mutex
	lines []string
}

func (t *tail) add(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines = append(t.lines, line)
	if len(t.lines) > 20 {
		t.lines = t.lines[1:]
	}
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.lines, "\n")
}

// RSS is the server's resident memory over the run, in KiB: Start before
// the first request, Warm a tenth into the run (after warm-up), then the
// middle and the end of the run.
type RSS struct {
	Start, Warm, Middle, End, Max int64
	Samples                       int
	Series                        []int64 // every sample, in order
}

type sampler struct {
	quit chan struct{}
	done chan RSS
}

// startSampler reads VmRSS of pid every interval until stop.
func startSampler(pid int, interval time.Duration) *sampler {
	s := &sampler{quit: make(chan struct{}), done: make(chan RSS, 1)}
	go func() {
		var all []int64
		t := time.NewTicker(interval)
		defer t.Stop()
		read := func() {
			if kb, err := vmRSS(pid); err == nil {
				all = append(all, kb)
			}
		}
		read()
		for {
			select {
			case <-t.C:
				read()
			case <-s.quit:
				read()
				r := RSS{Samples: len(all), Series: all}
				if len(all) > 0 {
					r.Start, r.Warm, r.Middle, r.End, r.Max = all[0], all[len(all)/10], all[len(all)/2], all[len(all)-1], slices.Max(all)
				}
				s.done <- r
				return
			}
		}
	}()
	return s
}

func (s *sampler) stop() RSS {
	close(s.quit)
	return <-s.done
}

func vmRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		}
	}
	return 0, errors.New("no VmRSS")
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// report is what the command prints.
type report struct {
	Config  string
	Report  loadgen.Report
	RSS     RSS
	Missing []string
}

func (r report) print(w io.Writer) {
	rep := r.Report
	fmt.Fprintf(w, "config      %s\n", r.Config)
	fmt.Fprintf(w, "requests    %d in %.1fs = %.0f req/s\n", rep.Requests, rep.Elapsed.Seconds(), rep.RPS)
	lat := func(name string, l loadgen.Latency) {
		fmt.Fprintf(w, "%-11s n=%d p50=%v p99=%v max=%v\n", name, l.Count, l.P50.Round(time.Microsecond), l.P99.Round(time.Microsecond), l.Max.Round(time.Microsecond))
	}
	lat("latency", rep.Latency)
	lat("send-code", rep.SendCode)
	lat("update", rep.UpdateEmail)
	fmt.Fprintf(w, "status      %v\n", rep.Status)
	fmt.Fprintf(w, "codes       %v\n", rep.Codes)
	fmt.Fprintf(w, "changes     %d confirmed, %d users changed, %d missing\n", rep.Changes, len(rep.Final), len(r.Missing))
	fmt.Fprintf(w, "unexpected  %d %q\n", rep.Unexpected, rep.Samples)
	fmt.Fprintf(w, "server RSS  start=%d KiB warm=%d KiB middle=%d KiB end=%d KiB max=%d KiB (%d samples)\n",
		r.RSS.Start, r.RSS.Warm, r.RSS.Middle, r.RSS.End, r.RSS.Max, r.RSS.Samples)
	fmt.Fprintf(w, "RSS series  %v KiB\n", r.RSS.Series)
	for _, m := range r.Missing {
		fmt.Fprintf(w, "missing     %s\n", m)
	}
}
