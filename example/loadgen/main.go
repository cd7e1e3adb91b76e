// Command loadgen measures the example server under loopback load on the
// full update-email path. It builds ./example once into a temporary
// directory, serves an RS256 issuer of its own on 127.0.0.1, writes a seed
// file of N users and one client, starts the example as a subprocess on
// 127.0.0.1 (-addr 127.0.0.1:0 -load-test -seed FILE -issuer URL -jwks-url URL, with
// -store and -codes passed through), drives it with internal/loadgen
// (send-code and update-email per user, plus invalid requests) until the
// duration or the request count is reached, samples the server's RSS and
// reads its CPU time from /proc (the server's log goes to a file, not to
// the load generator, which shares the machine), checks through the API
// that every confirmed change is in place, and stops the server.
//
//	go run ./example/loadgen -users 200 -c 16 -d 60s -requests 2000000
//	go run ./example/loadgen -store "$SELFSERVICE_TEST_POSTGRES" -codes redis://127.0.0.1:6379/15
//
// -floor drives the floor instead: this command run again as a subprocess
// that serves loadgen.Floor, a bare net/http handler that only verifies
// the same tokens with golang-jwt (the key fetched once from the same
// JWKS), with the same server settings, driver, requests and client.
//
// -vs compares two servers the way the paired benchmarks compare two
// functions: both are started and stay up, each is driven for -warmup
// first, then the load goes to one for -d, then to the other for -d,
// -pairs times, the base first in even pairs
// and second in odd ones, so that whatever else the machine does weighs on
// both alike. Each pair gives the ratio of the measured server's
// throughput to the base's and of its CPU time per request; the report
// gives their medians with a 95 % confidence interval:
//
//	go run ./example/loadgen -users 200 -c 16 -d 3s -vs floor -pairs 10
//	go run ./example/loadgen -users 200 -c 16 -d 5s -vs memory -pairs 6 -store "$PG" -codes redis://127.0.0.1:6379/15
//
// -vs floor compares the example with the floor; -vs memory the example on
// -store and -codes with the example on memory stores; -vs log the example
// with -mail with the example with the development mailer, on the same
// stores.
//
// -mail smtp://HOST:PORT?from=... starts the example with that -mail, so
// that its mails go over SMTP, and reads the codes from the API of the
// Mailpit that receives them (-mailpit, http://127.0.0.1:8025 by default)
// instead of from the example's stdout (-mail log, the default):
//
//	go run ./example/loadgen -rate 200 -d 15s -warmup 5s -vs log -pairs 3 \
//		-mail 'smtp://127.0.0.1:1025?from=no-reply@example.com'
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
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/redis/go-redis/v9"

	"github.com/ciamkit/selfservice/internal/devissuer"
	"github.com/ciamkit/selfservice/internal/loadgen"
)

func main() {
	err := run(context.Background(), os.Args[1:], os.Stdout)
	switch {
	case errors.Is(err, flag.ErrHelp):
		// -h printed the usage, as asked: not a failure.
	case err != nil:
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

type config struct {
	users, concurrency, requests, pairs int
	duration, sample, warmup            time.Duration
	rate                                float64
	store, codes, vs, mail, mailpit     string
	jsonOut, floor                      bool

	// -serve-floor: this process is the floor server of another loadgen.
	serveFloor    bool
	addr, jwksURL string
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
	fs.StringVar(&c.mail, "mail", "log", "the example's -mail: log (codes read from its stdout) or smtp://HOST:PORT?from=... (codes read from -mailpit)")
	fs.StringVar(&c.mailpit, "mailpit", "http://127.0.0.1:8025", "`URL` of the API of the Mailpit that receives the example's mail with -mail smtp://...")
	fs.BoolVar(&c.jsonOut, "json", false, "print the report as JSON")
	fs.BoolVar(&c.floor, "floor", false, "drive the floor (a bare handler that only verifies the token) instead of the example")
	fs.StringVar(&c.vs, "vs", "", "run interleaved pairs against `floor` (the bare handler), memory (the example on memory stores) or log (the example with the development mailer)")
	fs.IntVar(&c.pairs, "pairs", 10, "pairs of runs with -vs")
	fs.DurationVar(&c.warmup, "warmup", 10*time.Second, "with -vs, how long each server is driven before the pairs, not counted")
	fs.BoolVar(&c.serveFloor, "serve-floor", false, "serve the floor on -addr with the key of -jwks-url (run by -floor and -vs floor)")
	fs.StringVar(&c.addr, "addr", "127.0.0.1:0", "listen address with -serve-floor")
	fs.StringVar(&c.jwksURL, "jwks-url", "", "JWKS `URL` with -serve-floor")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if c.serveFloor {
		if c.jwksURL == "" {
			return c, errors.New("-serve-floor needs -jwks-url")
		}
		return c, nil
	}
	if c.users < c.concurrency || c.concurrency < 1 || c.duration <= 0 || c.requests <= 0 || c.sample <= 0 {
		return c, errors.New("want -users >= -c >= 1, and positive -d, -requests and -sample")
	}
	switch {
	case c.vs != "" && c.vs != "floor" && c.vs != "memory" && c.vs != "log":
		return c, errors.New("-vs is floor, memory or log")
	case c.mail != "log" && !strings.HasPrefix(c.mail, "smtp://") && !strings.HasPrefix(c.mail, "smtps://"):
		return c, errors.New("-mail is log or smtp://... (smtps://...)")
	case c.mail != "log" && c.mailpit == "":
		return c, errors.New("-mail smtp://... needs -mailpit, the API its codes are read from")
	case c.vs == "log" && c.mail == "log":
		return c, errors.New("-vs log compares -mail smtp://... with the log mailer: set -mail")
	case c.vs != "" && c.floor:
		return c, errors.New("-floor and -vs exclude each other")
	case c.vs != "" && (c.pairs < 1 || c.warmup <= 0):
		return c, errors.New("-pairs must be at least 1 and -warmup positive")
	}
	return c, nil
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	cfg, err := parseFlags(args)
	if err != nil {
		return err
	}
	if cfg.serveFloor {
		return serveFloor(ctx, cfg.addr, cfg.jwksURL)
	}
	dir, err := os.MkdirTemp("", "selfservice-loadgen-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	bin := filepath.Join(dir, "example")
	build := exec.CommandContext(ctx, "go", "build", "-tags", "sqlite,redis,metrics", "-o", bin, "github.com/ciamkit/selfservice/example")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("build the example: %w", err)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}

	iss, err := startIssuer()
	if err != nil {
		return err
	}
	defer iss.close()

	runID := randomHex(4)
	l := &lab{cfg: cfg, dir: dir, bin: bin, self: self, iss: iss, clientID: "loadgen-" + runID}
	l.users = make([]loadgen.User, cfg.users)
	for i := range l.users {
		id := fmt.Sprintf("lg-%s-%d", runID, i)
		tok, err := iss.IDToken(id, l.clientID, 24*time.Hour)
		if err != nil {
			return err
		}
		l.users[i] = loadgen.User{ID: id, Email: id + "@loadgen.test", Token: tok}
	}
	l.seedPath = filepath.Join(dir, "seed.json")
	if err := writeSeed(l.seedPath, l.clientID, l.users); err != nil {
		return err
	}

	measured := target{name: "example", store: cfg.store, codes: cfg.codes, mail: cfg.mail}
	if cfg.floor {
		measured = target{name: "floor", floor: true}
	}
	if cfg.vs == "" {
		res, err := l.runOnce(ctx, measured)
		if err != nil {
			return err
		}
		if cfg.jsonOut {
			return writeJSON(stdout, res)
		}
		res.print(stdout)
		return res.failure()
	}
	base := target{name: "floor", floor: true}
	switch cfg.vs {
	case "memory":
		base = target{name: "example-memory", store: "memory", codes: "memory", mail: cfg.mail}
	case "log":
		base = target{name: "example-log", store: cfg.store, codes: cfg.codes, mail: "log"}
	}
	cmp, err := l.compare(ctx, base, measured)
	if err != nil {
		return err
	}
	if cfg.jsonOut {
		if err := writeJSON(stdout, cmp); err != nil {
			return err
		}
	} else {
		cmp.print(stdout)
	}
	return cmp.failure()
}

// lab is what every run of one invocation shares: the example's binary,
// this command's own (for the floor), the issuer, the users and their seed.
type lab struct {
	cfg                config
	dir, bin, self     string
	iss                *issuer
	clientID, seedPath string
	users              []loadgen.User
}

// target is a server to drive: the example on its stores with its mailer,
// or the floor.
type target struct {
	name               string
	floor              bool
	store, codes, mail string
}

func (t target) describe() string {
	if t.floor {
		return "floor (golang-jwt verification only)"
	}
	return fmt.Sprintf("example store=%s codes=%s mail=%s", redactURL(t.store), redactURL(t.codes), redactURL(t.mail))
}

// smtp tells that the example mails over SMTP, to Mailpit.
func (t target) smtp() bool { return !t.floor && t.mail != "log" }

// running is a target's server, started, with what the runs against it
// share: the mail log its stdout feeds, where the codes are read (that
// log, or Mailpit), a client whose connections stay open from one run to
// the next, and the round the next run starts at.
type running struct {
	target
	srv     *server
	mails   *loadgen.MailLog
	codes   loadgen.CodeSource
	client  *http.Client
	round   int
	final   map[string]string // every user's last confirmed address
	cleanup []func()
}

// start starts a fresh server for t: the floor, or the example on t's
// stores (a PostgreSQL schema of its own, created here).
func (l *lab) start(ctx context.Context, t target) (*running, error) {
	r := &running{target: t, mails: loadgen.NewMailLog(), final: map[string]string{}}
	r.codes = r.mails
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        l.cfg.concurrency * 2,
		MaxIdleConnsPerHost: l.cfg.concurrency * 2,
		IdleConnTimeout:     30 * time.Second,
	}
	r.client = &http.Client{Transport: tr}
	r.cleanup = append(r.cleanup, tr.CloseIdleConnections)
	var err error
	if t.smtp() {
		// Connected before the server starts, so that Mailpit's event
		// stream brings every code. Its searches, if any, get a client
		// of their own: their connections are no part of the server's.
		mtr := &http.Transport{Proxy: nil}
		r.cleanup = append(r.cleanup, mtr.CloseIdleConnections)
		mp, err := loadgen.NewMailpit(ctx, l.cfg.mailpit, &http.Client{Transport: mtr})
		if err != nil {
			r.stop()
			return nil, fmt.Errorf("-mailpit: %w", err)
		}
		r.cleanup = append(r.cleanup, func() { _ = mp.Close() })
		r.codes = mp
	}
	if t.floor {
		r.srv, err = startServer(ctx, l.self, r.mails, l.dir, "-serve-floor", "-addr", "127.0.0.1:0", "-jwks-url", l.iss.URL()+"/jwks")
	} else {
		storeArg := t.store
		if strings.HasPrefix(storeArg, "postgres://") || strings.HasPrefix(storeArg, "postgresql://") {
			var drop func()
			if storeArg, drop, err = postgresSchema(ctx, storeArg, "selfservice_loadgen_"+randomHex(4)); err != nil {
				r.stop()
				return nil, err
			}
			r.cleanup = append(r.cleanup, drop)
		}
		if strings.HasPrefix(t.codes, "redis://") {
			codes := t.codes
			r.cleanup = append(r.cleanup, func() { cleanRedis(codes) })
		}
		r.srv, err = startServer(ctx, l.bin, r.mails, l.dir,
			"-addr", "127.0.0.1:0", "-load-test", "-seed", l.seedPath, "-issuer", l.iss.URL(), "-jwks-url", l.iss.URL()+"/jwks",
			"-store", storeArg, "-codes", t.codes, "-mail", t.mail)
	}
	if err != nil {
		r.stop()
		return nil, err
	}
	return r, nil
}

// stop stops the server and undoes what start set up, in reverse.
func (r *running) stop() {
	if r.srv != nil {
		if err := r.srv.stop(); err != nil {
			fmt.Fprintln(os.Stderr, "loadgen: server exit:", err)
		}
	}
	for i := len(r.cleanup) - 1; i >= 0; i-- {
		r.cleanup[i]()
	}
	r.cleanup = nil
}

// drive runs the load against r for the configured duration, from the
// round the last run reached.
func (l *lab) drive(ctx context.Context, r *running) (result, error) {
	return l.driveFor(ctx, r, l.cfg.duration)
}

// driveFor is drive for d.
func (l *lab) driveFor(ctx context.Context, r *running, d time.Duration) (result, error) {
	cfg := l.cfg
	cfg.duration = d
	pid := r.srv.cmd.Process.Pid
	sampler := startSampler(pid, cfg.sample)
	serverCPU0, _ := processCPU(pid)
	driverCPU0 := ownCPU()
	opts := l.options(r)
	opts.Duration = d
	rep, err := loadgen.Run(ctx, opts)
	serverCPU1, cpuErr := processCPU(pid)
	driverCPU1 := ownCPU()
	rss := sampler.stop()
	if err != nil {
		return result{}, err
	}
	if cpuErr != nil {
		return result{}, fmt.Errorf("server CPU time: %w", cpuErr)
	}
	r.round = rep.Rounds
	maps.Copy(r.final, rep.Final)
	res := result{Config: cfg.describe(), Target: r.describe(), Report: rep, RSS: rss}
	res.CPU = CPU{Server: serverCPU1 - serverCPU0, Driver: driverCPU1 - driverCPU0}
	if rep.Requests > 0 {
		res.CPU.ServerPerRequest = res.CPU.Server / time.Duration(rep.Requests)
		res.CPU.DriverPerRequest = res.CPU.Driver / time.Duration(rep.Requests)
	}
	return res, nil
}

func (l *lab) options(r *running) loadgen.Options {
	return loadgen.Options{
		BaseURL: r.srv.base, ClientID: l.clientID, Users: l.users, Codes: r.codes, Floor: r.floor,
		Concurrency: l.cfg.concurrency, Duration: l.cfg.duration, Requests: l.cfg.requests, Rate: l.cfg.rate,
		FirstRound: r.round, HTTPClient: r.client,
	}
}

// check asks the example whether every change the runs against r saw
// confirmed is in place; the floor has nothing to check.
func (l *lab) check(ctx context.Context, r *running) ([]string, error) {
	if r.floor {
		return nil, nil
	}
	missing, err := loadgen.Check(ctx, l.options(r), r.final)
	if err != nil {
		return nil, fmt.Errorf("check: %w", err)
	}
	return missing, nil
}

// result is one run.
type result struct {
	Config  string
	Target  string
	Report  loadgen.Report
	RSS     RSS
	CPU     CPU
	Missing []string
}

// CPU is the CPU time, user plus system, that the server and the load
// generator used during the run, in total and per request.
type CPU struct {
	Server, Driver                     time.Duration
	ServerPerRequest, DriverPerRequest time.Duration
}

func (r result) failure() error {
	if r.Report.Unexpected > 0 || len(r.Missing) > 0 {
		return fmt.Errorf("%s: %d unexpected answers, %d changes missing", r.Target, r.Report.Unexpected, len(r.Missing))
	}
	return nil
}

// runOnce starts a fresh server for t, drives it for the configured
// duration, checks the changes (the example only) and stops it.
func (l *lab) runOnce(ctx context.Context, t target) (result, error) {
	r, err := l.start(ctx, t)
	if err != nil {
		return result{}, err
	}
	defer r.stop()
	res, err := l.drive(ctx, r)
	if err != nil {
		return result{}, err
	}
	if res.Missing, err = l.check(ctx, r); err != nil {
		return result{}, err
	}
	return res, nil
}

// compare starts a server for each of base and measured, both running
// throughout, drives each once to warm it up, then drives them in turn for
// the configured duration each, pairs times: base first in even pairs, measured first in odd ones, so
// that whatever else the machine does weighs on both alike and neither
// always runs first. Each pair gives the ratios of the measured run to
// the base one.
func (l *lab) compare(ctx context.Context, base, measured target) (comparison, error) {
	cmp := comparison{Config: l.cfg.describe(), Base: base.describe(), Measured: measured.describe()}
	b, err := l.start(ctx, base)
	if err != nil {
		return cmp, err
	}
	defer b.stop()
	m, err := l.start(ctx, measured)
	if err != nil {
		return cmp, err
	}
	defer m.stop()
	// A warm-up run of each, not counted: connections, the runtime's
	// heap and the stores' tables grow in the first seconds.
	for _, r := range []*running{b, m} {
		res, err := l.driveFor(ctx, r, l.cfg.warmup)
		if err != nil {
			return cmp, err
		}
		cmp.Unexpected += res.Report.Unexpected
		cmp.Samples = append(cmp.Samples, res.Report.Samples...)
	}
	for i := range l.cfg.pairs {
		order := []*running{b, m}
		if i%2 == 1 {
			order = []*running{m, b}
		}
		var got [2]result
		for _, r := range order {
			res, err := l.drive(ctx, r)
			if err != nil {
				return cmp, err
			}
			if r == b {
				got[0] = res
			} else {
				got[1] = res
			}
		}
		cmp.add(got[0], got[1])
	}
	for _, r := range []*running{b, m} {
		missing, err := l.check(ctx, r)
		if err != nil {
			return cmp, err
		}
		cmp.Missing = append(cmp.Missing, missing...)
	}
	cmp.summarize()
	return cmp, nil
}

// comparison is the pairs of one -vs invocation and the spread of their
// ratios.
type comparison struct {
	Config, Base, Measured string
	Pairs                  []pair
	// Throughput is the measured runs' requests per second over the base
	// runs', pair by pair; CPU their server CPU time per request;
	// SendCodeP50 and SendCodeP99 their send-code latencies.
	Throughput, CPU          spread
	SendCodeP50, SendCodeP99 spread
	Unexpected               int
	Samples                  []string
	Missing                  []string
}

// pair is what a comparison keeps of two runs, the base's and the
// measured one's, and their ratios.
type pair struct {
	Base, Measured   pairRun
	Throughput, CPU  float64
	SendP50, SendP99 float64 // send-code latency ratios
}

// pairRun is what a comparison keeps of one run.
type pairRun struct {
	RPS                 float64
	P50, P99            time.Duration
	SendP50, SendP99    time.Duration // of the valid send-code requests
	ServerCPUPerRequest time.Duration
	DriverCPUPerRequest time.Duration
	Requests            int
}

func (c *comparison) add(base, measured result) {
	keep := func(r result) pairRun {
		c.Unexpected += r.Report.Unexpected
		c.Samples = append(c.Samples, r.Report.Samples...)
		return pairRun{
			RPS: r.Report.RPS, P50: r.Report.Latency.P50, P99: r.Report.Latency.P99,
			SendP50: r.Report.SendCode.P50, SendP99: r.Report.SendCode.P99,
			ServerCPUPerRequest: r.CPU.ServerPerRequest, DriverCPUPerRequest: r.CPU.DriverPerRequest,
			Requests: r.Report.Requests,
		}
	}
	p := pair{Base: keep(base), Measured: keep(measured)}
	if p.Base.RPS > 0 {
		p.Throughput = p.Measured.RPS / p.Base.RPS
	}
	if p.Base.ServerCPUPerRequest > 0 {
		p.CPU = float64(p.Measured.ServerCPUPerRequest) / float64(p.Base.ServerCPUPerRequest)
	}
	if p.Base.SendP50 > 0 && p.Base.SendP99 > 0 {
		p.SendP50 = float64(p.Measured.SendP50) / float64(p.Base.SendP50)
		p.SendP99 = float64(p.Measured.SendP99) / float64(p.Base.SendP99)
	}
	c.Pairs = append(c.Pairs, p)
}

func (c comparison) failure() error {
	if c.Unexpected > 0 || len(c.Missing) > 0 {
		return fmt.Errorf("%d unexpected answers, %d changes missing", c.Unexpected, len(c.Missing))
	}
	return nil
}

// spread is the median of some ratios, the least and the greatest, and
// the interval between the order statistics that holds the median with
// 95 % confidence (as benchstat computes it; the extremes with fewer than
// six pairs).
type spread struct{ Median, Min, Max, Low, High float64 }

func spreadOf(xs []float64) spread {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	m := s[n/2]
	if n%2 == 0 {
		m = (s[n/2-1] + s[n/2]) / 2
	}
	lo, hi := medianCI(n)
	return spread{Median: m, Min: s[0], Max: s[n-1], Low: s[lo], High: s[hi]}
}

// medianCI returns the indexes, in n sorted values, of the widest interval
// around the median that the binomial distribution gives at least 95 %
// confidence of holding it: the order statistics k and n-1-k for the
// largest k with P(Binomial(n, 1/2) < k+1) <= 2.5 %.
func medianCI(n int) (int, int) {
	k := -1
	cdf := 0.0
	p := math.Pow(0.5, float64(n)) // P(X = 0)
	for j := 0; j < n; j++ {
		cdf += p
		if cdf > 0.025 {
			break
		}
		k = j
		p = p * float64(n-j) / float64(j+1)
	}
	if k < 0 {
		return 0, n - 1
	}
	return k + 1, n - 2 - k
}

func (c *comparison) summarize() {
	var tp, cpu, p50, p99 []float64
	for _, p := range c.Pairs {
		tp, cpu = append(tp, p.Throughput), append(cpu, p.CPU)
		p50, p99 = append(p50, p.SendP50), append(p99, p.SendP99)
	}
	c.Throughput, c.CPU = spreadOf(tp), spreadOf(cpu)
	c.SendCodeP50, c.SendCodeP99 = spreadOf(p50), spreadOf(p99)
}

func (c comparison) print(w io.Writer) {
	fmt.Fprintf(w, "config      %s\n", c.Config)
	fmt.Fprintf(w, "base        %s\nmeasured    %s\n", c.Base, c.Measured)
	fmt.Fprintf(w, "%-5s %10s %10s %7s   %14s %14s %6s   %18s\n", "pair", "base rps", "meas. rps", "ratio", "base cpu/req", "meas. cpu/req", "ratio", "p99 base / meas.")
	for i, p := range c.Pairs {
		fmt.Fprintf(w, "%-5d %10.0f %10.0f %7.3f   %14v %14v %6.3f   %8v / %v\n", i+1, p.Base.RPS, p.Measured.RPS, p.Throughput,
			p.Base.ServerCPUPerRequest.Round(100*time.Nanosecond), p.Measured.ServerCPUPerRequest.Round(100*time.Nanosecond), p.CPU,
			p.Base.P99.Round(10*time.Microsecond), p.Measured.P99.Round(10*time.Microsecond))
	}
	sp := func(name string, s spread) {
		fmt.Fprintf(w, "%-11s median %.3f, 95%% CI [%.3f, %.3f], min %.3f, max %.3f over %d pairs\n", name, s.Median, s.Low, s.High, s.Min, s.Max, len(c.Pairs))
	}
	fmt.Fprintf(w, "%-5s %24s %24s\n", "pair", "send-code p50 base/meas.", "send-code p99 base/meas.")
	for i, p := range c.Pairs {
		fmt.Fprintf(w, "%-5d %11v / %-10v %11v / %-10v\n", i+1,
			p.Base.SendP50.Round(10*time.Microsecond), p.Measured.SendP50.Round(10*time.Microsecond),
			p.Base.SendP99.Round(10*time.Microsecond), p.Measured.SendP99.Round(10*time.Microsecond))
	}
	sp("throughput", c.Throughput)
	sp("server CPU", c.CPU)
	sp("send p50", c.SendCodeP50)
	sp("send p99", c.SendCodeP99)
	fmt.Fprintf(w, "unexpected  %d %q\n", c.Unexpected, c.Samples)
	fmt.Fprintf(w, "changes     %d missing %q\n", len(c.Missing), c.Missing)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// serveFloor serves loadgen.Floor on addr with the key of the JWKS at
// jwksURL, fetched once, until SIGINT or SIGTERM; its log lines are the
// example's, which startServer reads.
func serveFloor(ctx context.Context, addr, jwksURL string) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	key, err := fetchKey(ctx, jwksURL)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/", loadgen.Floor(func(*jwt.Token) (any, error) { return key, nil }))
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	// The example's server settings, so that connections are handled alike.
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	logger.Info("listening", "addr", ln.Addr().String())
	select {
	case err := <-serveErr:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

// fetchKey returns the one public key of the JWKS at url.
func fetchKey(ctx context.Context, url string) (any, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var set jwkset.JWKSMarshal
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&set); err != nil {
		return nil, fmt.Errorf("JWKS: %w", err)
	}
	storage, err := set.ToStorage()
	if err != nil {
		return nil, fmt.Errorf("JWKS: %w", err)
	}
	keys, err := storage.KeyReadAll(ctx)
	if err != nil || len(keys) != 1 {
		return nil, fmt.Errorf("JWKS: want one key, got %d (%v)", len(keys), err)
	}
	return keys[0].Key(), nil
}

// processCPU returns the CPU time, user plus system, of every thread of
// process pid so far, from /proc/PID/stat (in ticks of 10 ms, the USER_HZ
// of Linux's /proc).
func processCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may hold spaces: fields are
	// counted after its closing one, from field 3 (state).
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, errors.New("unexpected /proc/PID/stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("unexpected /proc/PID/stat")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	const tick = 10 * time.Millisecond
	return time.Duration(utime+stime) * tick, nil
}

// ownCPU returns the CPU time, user plus system, this process has used.
func ownCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
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
	return fmt.Sprintf("users=%d c=%d d=%v requests=%d rate=%v store=%s codes=%s mail=%s",
		c.users, c.concurrency, c.duration, c.requests, c.rate, redactURL(c.store), redactURL(c.codes), redactURL(c.mail))
}

// redactURL hides a password in a store or mail URL.
func redactURL(s string) string {
	if u, err := url.Parse(s); err == nil {
		return u.Redacted()
	}
	// A URL that does not parse may still hold a password before its
	// last @.
	if i, j := strings.Index(s, "://"), strings.LastIndex(s, "@"); i >= 0 && j > i {
		return s[:i+3] + "***" + s[j:]
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

// server is the example, or the floor, running as a subprocess.
type server struct {
	cmd      *exec.Cmd
	base     string
	log      string        // the file its stderr goes to
	done     chan struct{} // closed when the process has exited
	err      error         // its exit, once done is closed
	stopOnce sync.Once
}

var listening = regexp.MustCompile(`msg=listening addr=(127\.0\.0\.1:\d+)`)

// startServer starts bin with args, feeds its stdout to mails, and waits
// until it listens and its JWKS keys are loaded. Its log goes to a file in
// dir, read only to find the address it listens on and to quote it when
// it fails: the load generator shares the machine and must not spend it on
// the server's log while it measures.
func startServer(ctx context.Context, bin string, mails io.Writer, dir string, args ...string) (*server, error) {
	logFile, err := os.CreateTemp(dir, "server-*.log")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "SELFSERVICE_CODE_SECRET="+randomHex(32))
	cmd.Stdout = mails
	cmd.Stderr = logFile
	s := &server{cmd: cmd, log: logFile.Name(), done: make(chan struct{})}
	err = cmd.Start()
	logFile.Close() // the server has its own descriptor
	if err != nil {
		return nil, err
	}
	go func() {
		s.err = cmd.Wait()
		close(s.done)
	}()
	timeout := time.NewTimer(60 * time.Second)
	defer timeout.Stop()
	for s.base == "" {
		if m := listening.FindSubmatch(s.tail(64 << 10)); m != nil {
			s.base = "http://" + string(m[1])
			break
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-s.done:
			return nil, fmt.Errorf("%s exited: %v\n%s", filepath.Base(bin), s.err, s.tail(4<<10))
		case <-timeout.C:
			s.stop()
			return nil, fmt.Errorf("%s did not listen within 60s\n%s", filepath.Base(bin), s.tail(4<<10))
		case <-ctx.Done():
			s.stop()
			return nil, ctx.Err()
		}
	}
	if err := s.waitReady(ctx); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

// tail returns at most the last n bytes of the server's log.
func (s *server) tail(n int64) []byte {
	f, err := os.Open(s.log)
	if err != nil {
		return nil
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > n {
		_, _ = f.Seek(-n, io.SeekEnd)
	}
	b, _ := io.ReadAll(io.LimitReader(f, n))
	return b
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
			return fmt.Errorf("the server exited: %v\n%s", s.err, s.tail(4<<10))
		}
	}
	return fmt.Errorf("the server was not ready within 30s\n%s", s.tail(4<<10))
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

// RSS is the server's resident memory over the run, in KiB: Start before
// the first request, Warm a tenth into the run (after warm-up), then the
// middle and the end of the run.
type RSS struct {
	Start, Warm, Middle, End, Max int64
	Samples                       int
	Series                        []int64 // every sample, in order
	// TrendPerMinute is the slope of the least-squares line through the
	// samples from Warm on, in KiB per minute: about 0 when RSS is flat.
	TrendPerMinute float64
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
					r.TrendPerMinute = slope(all[len(all)/10:]) * float64(time.Minute/interval)
				}
				s.done <- r
				return
			}
		}
	}()
	return s
}

// slope is the least-squares slope of ys against their indexes.
func slope(ys []int64) float64 {
	n := float64(len(ys))
	if n < 2 {
		return 0
	}
	var sx, sy, sxx, sxy float64
	for i, y := range ys {
		x := float64(i)
		sx, sy, sxx, sxy = sx+x, sy+float64(y), sxx+x*x, sxy+x*float64(y)
	}
	return (n*sxy - sx*sy) / (n*sxx - sx*sx)
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

func (r result) print(w io.Writer) {
	rep := r.Report
	fmt.Fprintf(w, "config      %s\n", r.Config)
	fmt.Fprintf(w, "server      %s\n", r.Target)
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
	fmt.Fprintf(w, "server CPU  %v in all, %v per request (%.2f cores); load generator %v per request\n",
		r.CPU.Server.Round(time.Millisecond), r.CPU.ServerPerRequest.Round(100*time.Nanosecond),
		r.CPU.Server.Seconds()/max(rep.Elapsed.Seconds(), 1e-9), r.CPU.DriverPerRequest.Round(100*time.Nanosecond))
	fmt.Fprintf(w, "server RSS  start=%d KiB warm=%d KiB middle=%d KiB end=%d KiB max=%d KiB (%d samples), trend after warm-up %+.0f KiB/min\n",
		r.RSS.Start, r.RSS.Warm, r.RSS.Middle, r.RSS.End, r.RSS.Max, r.RSS.Samples, r.RSS.TrendPerMinute)
	fmt.Fprintf(w, "RSS series  %v KiB\n", r.RSS.Series)
	for _, m := range r.Missing {
		fmt.Fprintf(w, "missing     %s\n", m)
	}
}
