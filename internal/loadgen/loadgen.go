// Package loadgen drives the self-service API on a loopback address with the
// full change-my-email flow and a mix of invalid requests, bounded in time
// and in count, and reports throughput, latency percentiles and answers.
//
// Each worker owns a slice of the users and repeats one flow per user:
//
//  1. send-code to a new address of the user's              -> 200
//  2. send-code without the device headers                   -> 400 PARAM.0001
//  3. update-email with a token whose signature is broken   -> 400 PARAM.0016
//  4. update-email with a wrong code                         -> 400 CAPTCHA.0007
//  5. update-email with the mailed code                      -> 200, the change
//  6. update-email replaying the previous flow's used code   -> 400 CAPTCHA.0007
//
// Codes come from a CodeSource: a MailLog fed by the development mailer's
// JSON lines, or Mailpit's API for a server that mails over SMTP. Against Floor, the bare handler that only verifies
// the token (Options.Floor), the same requests are sent and all are
// answered 200 but the broken signature's, 401. Run stops starting requests when Duration has passed
// or Requests have been sent, waits for those in flight, and returns with no
// goroutine of its own left running. Check then asks the API whether every
// change Run saw confirmed is in place.
//
// Quick start:
//
//	mails := loadgen.NewMailLog()           // the server's mailer writes JSON lines to it
//	rep, err := loadgen.Run(ctx, loadgen.Options{
//		BaseURL: "http://127.0.0.1:8080", ClientID: "app", Users: users,
//		Codes: mails, Concurrency: 8, Duration: 30 * time.Second, Requests: 100_000,
//	})
//	bad, err := loadgen.Check(ctx, opts, rep.Final)
package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The API's paths, as the root package serves them.
const (
	SendCodePath    = "/api/v2/sdk/email/send"
	UpdateEmailPath = "/api/v2/sdk/profile/update-email"
)

// ErrOptions reports unusable Options.
var ErrOptions = errors.New("loadgen: invalid options")

// User is an account the load runs as: its id (the token's sub), its
// current address, and an id_token for Options.ClientID.
type User struct {
	ID    string
	Email string
	Token string
}

// CodeSource returns the verification code last mailed to an address,
// waiting for it until ctx is done.
type CodeSource interface {
	Code(ctx context.Context, email string) (string, error)
}

// CodeFunc adapts a function to CodeSource.
type CodeFunc func(ctx context.Context, email string) (string, error)

// Code calls f.
func (f CodeFunc) Code(ctx context.Context, email string) (string, error) { return f(ctx, email) }

// Options configures Run. BaseURL, ClientID, Users, Codes, Duration and
// Requests are required.
type Options struct {
	// BaseURL is the server, http://HOST:PORT with a loopback HOST
	// (127.0.0.0/8, ::1 or localhost); any other host is refused.
	BaseURL string
	// ClientID is sent as X-client-id; the tokens must be issued to it.
	ClientID string
	// Users are the accounts; each worker takes every Concurrency-th one.
	// There must be at least Concurrency of them.
	Users []User
	// Codes returns mailed codes.
	Codes CodeSource
	// Concurrency is the number of workers, each with one request in
	// flight at a time. Default: 8.
	Concurrency int
	// Duration bounds the run in time: no request starts after it.
	Duration time.Duration
	// Requests bounds the run in count: no more are sent.
	Requests int
	// Rate, when positive, paces the workers together to about this many
	// requests per second; zero sends as fast as answers come.
	Rate float64
	// RequestTimeout bounds one request, code wait included. Default: 10s.
	RequestTimeout time.Duration
	// HTTPClient sends the requests. Default: a client of Run's own whose
	// idle connections are closed before Run returns.
	HTTPClient *http.Client
	// FirstRound numbers the first flow of each user, whose address is
	// derived from it: a later Run against the same server gives a
	// FirstRound past the rounds of the earlier ones (Report.Rounds), so
	// that its codes go to new addresses. Default: 0.
	FirstRound int
	// Floor tells that BaseURL serves Floor, not the API: the same
	// requests are sent, but Codes is not asked (a fixed code is sent) and
	// every answer must be 200 but the broken signature's, 401. Check does
	// not apply.
	Floor bool
}

// Latency sums up the latencies of one kind of request.
type Latency struct {
	Count         int
	P50, P99, Max time.Duration
}

// Report is what Run saw.
type Report struct {
	// Requests is how many requests were sent, Elapsed how long the run
	// took, RPS their ratio.
	Requests int
	Elapsed  time.Duration
	RPS      float64
	// Status counts answers by HTTP status; Codes counts error answers by
	// error_code.
	Status map[int]int
	Codes  map[string]int
	// Latency is over every request; SendCode and UpdateEmail over the
	// valid requests of each endpoint.
	Latency, SendCode, UpdateEmail Latency
	// Changes is the number of email changes confirmed by a 200.
	Changes int
	// Rounds is one past the last round any user started, counted from
	// FirstRound: the FirstRound of a next Run.
	Rounds int
	// Final maps each user whose address Run changed to the last address
	// a 200 confirmed.
	Final map[string]string
	// Unexpected counts answers other than the flow expects, and
	// transport failures; Samples describes the first few.
	Unexpected int
	Samples    []string
}

const maxSamples = 10

// Run drives opts.BaseURL until Duration has passed or Requests were sent,
// whichever comes first, then waits for the requests in flight (each is
// bounded by RequestTimeout). Cancelling ctx stops it early; requests then
// in flight are abandoned and may count as unexpected. The error is about
// opts; what the server answered is in the Report.
func Run(ctx context.Context, opts Options) (Report, error) {
	if err := opts.validate(); err != nil {
		return Report{}, err
	}
	client := opts.HTTPClient
	if client == nil {
		tr := &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxIdleConns:        opts.Concurrency * 2,
			MaxIdleConnsPerHost: opts.Concurrency * 2,
			IdleConnTimeout:     30 * time.Second,
		}
		defer tr.CloseIdleConnections()
		client = &http.Client{Transport: tr}
	}
	r := &runner{
		opts:     opts,
		client:   client,
		deadline: time.Now().Add(opts.Duration),
		rep:      Report{Status: map[int]int{}, Codes: map[string]int{}, Final: map[string]string{}, Rounds: opts.FirstRound},
	}
	if opts.Rate > 0 {
		r.interval = time.Duration(float64(time.Second) * float64(opts.Concurrency) / opts.Rate)
	}
	start := time.Now()
	var wg sync.WaitGroup
	for w := range opts.Concurrency {
		wg.Go(func() { r.work(ctx, w) })
	}
	wg.Wait()
	r.rep.Elapsed = time.Since(start)
	// Workers that found the count reached still added to it.
	r.rep.Requests = int(min(r.sent.Load(), int64(opts.Requests)))
	if s := r.rep.Elapsed.Seconds(); s > 0 {
		r.rep.RPS = float64(r.rep.Requests) / s
	}
	r.rep.Latency = summarize(r.all)
	r.rep.SendCode = summarize(r.send)
	r.rep.UpdateEmail = summarize(r.update)
	return r.rep, nil
}

func (o *Options) validate() error {
	if o.Concurrency == 0 {
		o.Concurrency = 8
	}
	if o.RequestTimeout == 0 {
		o.RequestTimeout = 10 * time.Second
	}
	switch {
	case o.ClientID == "" || (o.Codes == nil && !o.Floor):
		return fmt.Errorf("%w: ClientID and Codes are required", ErrOptions)
	case o.Duration <= 0 || o.Requests <= 0:
		return fmt.Errorf("%w: Duration and Requests must both bound the run", ErrOptions)
	case o.Concurrency < 0 || o.RequestTimeout < 0 || o.Rate < 0 || o.FirstRound < 0:
		return fmt.Errorf("%w: negative Concurrency, RequestTimeout, Rate or FirstRound", ErrOptions)
	case len(o.Users) < o.Concurrency:
		return fmt.Errorf("%w: %d users for %d workers", ErrOptions, len(o.Users), o.Concurrency)
	}
	return checkLoopback("BaseURL", o.BaseURL)
}

// checkLoopback refuses any base URL whose host is not on this machine's
// loopback: load goes nowhere else.
func checkLoopback(name, base string) error {
	u, err := url.Parse(base)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("%w: %s %q is not http://HOST:PORT", ErrOptions, name, base)
	}
	host := u.Hostname()
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("%w: %s host %q is not a loopback address", ErrOptions, name, host)
}

type runner struct {
	opts     Options
	client   *http.Client
	deadline time.Time
	interval time.Duration // between two requests of one worker; 0 for none
	sent     atomic.Int64

	mu                sync.Mutex
	rep               Report
	all, send, update []time.Duration
}

// expect is what a request of the flow must be answered with.
type expect struct {
	status int
	code   string // error_code, "" for a success
}

var (
	expectOK            = expect{http.StatusOK, ""}
	expectDevice        = expect{http.StatusBadRequest, "IDAAS.SDK.PARAM.0001"}
	expectTokenInvalid  = expect{http.StatusBadRequest, "IDAAS.SDK.PARAM.0016"}
	expectCodeIncorrect = expect{http.StatusBadRequest, "IDAAS.SDK.CAPTCHA.0007"}
)

// expectations are the answers of one flow's steps, in order: send-code,
// send-code without device headers, broken signature, wrong code, the
// mailed code, replay.
type expectations [6]expect

var (
	apiAnswers   = expectations{expectOK, expectDevice, expectTokenInvalid, expectCodeIncorrect, expectOK, expectCodeIncorrect}
	floorAnswers = expectations{expectOK, expectOK, {http.StatusUnauthorized, ""}, expectOK, expectOK, expectOK}
)

// floorCode is the code the flow sends to a floor, which mails none.
const floorCode = "123456"

// work runs flows for the users of worker w until the run is over.
func (r *runner) work(ctx context.Context, w int) {
	var users []*userState
	for i := w; i < len(r.opts.Users); i += r.opts.Concurrency {
		users = append(users, &userState{User: r.opts.Users[i]})
	}
	next := time.Now()
	for n := 0; ; n++ {
		u := users[n%len(users)]
		round := r.opts.FirstRound + n/len(users)
		r.mu.Lock()
		r.rep.Rounds = max(r.rep.Rounds, round+1)
		r.mu.Unlock()
		if !r.flow(ctx, u, round, &next) {
			return
		}
	}
}

// userState is what a worker remembers of one of its users.
type userState struct {
	User
	prevEmail, prevCode string // the last change, for the replay
}

// flow runs one flow for u; false means the run is over.
func (r *runner) flow(ctx context.Context, u *userState, round int, next *time.Time) bool {
	email := fmt.Sprintf("%s.r%d@%s", localPart(u.ID), round, domainOf(u.Email))
	sendBody := `{"email":` + quote(email) + `,"type":"UPDATE_EMAIL_EMS","captcha_token":"loadgen"}`
	update := func(addr, code string) string {
		return `{"email":` + quote(addr) + `,"verify_code":` + quote(code) + `}`
	}
	want := apiAnswers
	if r.opts.Floor {
		want = floorAnswers
	}
	more, ok := r.do(ctx, next, SendCodePath, "", sendBody, true, want[0], &r.send)
	if !more || !ok {
		return more
	}
	code := floorCode
	if !r.opts.Floor {
		var err error
		if code, err = r.code(ctx, email); err != nil {
			r.unexpected(fmt.Sprintf("code for %s: %v", email, err))
			return ctx.Err() == nil
		}
	}
	steps := []struct {
		path, token, body string
		device            bool
		want              expect
	}{
		{SendCodePath, "", sendBody, false, want[1]},
		{UpdateEmailPath, brokenSignature(u.Token), update(email, code), true, want[2]},
		{UpdateEmailPath, u.Token, update(email, wrongCode(code)), true, want[3]},
	}
	for _, s := range steps {
		if more, _ := r.do(ctx, next, s.path, s.token, s.body, s.device, s.want, nil); !more {
			return false
		}
	}
	more, ok = r.do(ctx, next, UpdateEmailPath, u.Token, update(email, code), true, want[4], &r.update)
	if ok {
		r.mu.Lock()
		r.rep.Changes++
		r.rep.Final[u.ID] = email
		r.mu.Unlock()
	}
	if !more {
		return false
	}
	if u.prevEmail != "" {
		if more, _ := r.do(ctx, next, UpdateEmailPath, u.Token, update(u.prevEmail, u.prevCode), true, want[5], nil); !more {
			return false
		}
	}
	// Only a confirmed change is replayed: an unconfirmed one may have
	// left its code alive.
	u.prevEmail, u.prevCode = "", ""
	if ok {
		u.prevEmail, u.prevCode = email, code
	}
	return true
}

func (r *runner) code(ctx context.Context, email string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, r.opts.RequestTimeout)
	defer cancel()
	return r.opts.Codes.Code(ctx, email)
}

// do sends one request unless the run is over, and records its answer.
// more is false when the run is over and nothing was sent; ok tells whether
// the answer was the one wanted.
func (r *runner) do(ctx context.Context, next *time.Time, path, token, body string, device bool, want expect, lat *[]time.Duration) (more, ok bool) {
	if r.interval > 0 {
		if d := time.Until(*next); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return false, false
			}
		}
		*next = next.Add(r.interval)
		if now := time.Now(); next.Before(now.Add(-time.Second)) {
			// Far behind: do not burst to catch up.
			*next = now
		}
	}
	if ctx.Err() != nil || !time.Now().Before(r.deadline) || r.sent.Add(1) > int64(r.opts.Requests) {
		return false, false
	}
	// A request in flight when the run ends is waited for, not cut, so
	// that each change it may make is known to have been made or not.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.opts.RequestTimeout)
	defer cancel()
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, r.opts.BaseURL+path, strings.NewReader(body))
	if err != nil {
		r.unexpected(err.Error())
		return true, false
	}
	setHeaders(req.Header, r.opts.ClientID, token, device)
	start := time.Now()
	status, errCode, err := send(r.client, req)
	elapsed := time.Since(start)

	r.mu.Lock()
	defer r.mu.Unlock()
	r.all = append(r.all, elapsed)
	if err != nil {
		r.unexpectedLocked(fmt.Sprintf("%s: %v", path, err))
		return true, false
	}
	r.rep.Status[status]++
	if errCode != "" {
		r.rep.Codes[errCode]++
	}
	if status != want.status || errCode != want.code {
		r.unexpectedLocked(fmt.Sprintf("%s: %d %q, want %d %q", path, status, errCode, want.status, want.code))
		return true, false
	}
	if lat != nil {
		*lat = append(*lat, elapsed)
	}
	return true, true
}

func (r *runner) unexpected(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.unexpectedLocked(s)
}

func (r *runner) unexpectedLocked(s string) {
	r.rep.Unexpected++
	if len(r.rep.Samples) < maxSamples {
		r.rep.Samples = append(r.rep.Samples, s)
	}
}

// send does req and returns the status and, for an error answer, its code.
func send(c *http.Client, req *http.Request) (int, string, error) {
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return 0, "", err
	}
	var e struct {
		Code string `json:"error_code"`
	}
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &e); err != nil {
			return resp.StatusCode, "", fmt.Errorf("answer %d is not JSON: %q", resp.StatusCode, raw)
		}
	}
	return resp.StatusCode, e.Code, nil
}

func setHeaders(h http.Header, clientID, token string, device bool) {
	h.Set("Content-Type", "application/json")
	h.Set("X-Client-Id", clientID)
	h.Set("X-L", "en")
	if device {
		h.Set("X-Operating-Sys-Version", "linux6.1")
		h.Set("X-Device-Fingerprint", "loadgen-device")
		h.Set("X-Agent", "selfservice-loadgen")
		h.Set("X-Device-Ip", "127.0.0.1")
	}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
}

// brokenSignature returns raw with the last characters of its signature
// changed, so that it parses but does not verify.
func brokenSignature(raw string) string {
	if len(raw) < 8 {
		return raw + "x"
	}
	tail := "AAAA"
	if strings.HasSuffix(raw, tail) {
		tail = "BBBB"
	}
	return raw[:len(raw)-4] + tail
}

// wrongCode returns a well-formed code other than code.
func wrongCode(code string) string {
	if code == "000000" {
		return "000001"
	}
	return "000000"
}

func localPart(id string) string {
	var b strings.Builder
	for _, c := range id {
		if c < 0x80 && (c == '-' || c == '.' || c == '_' || ('0' <= c && c <= '9') || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')) {
			b.WriteRune(c)
		}
	}
	if b.Len() == 0 {
		return "user"
	}
	return strings.Trim(b.String(), ".")
}

func domainOf(email string) string {
	if i := strings.LastIndexByte(email, '@'); i >= 0 && i+1 < len(email) {
		return email[i+1:]
	}
	return "loadgen.test"
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func summarize(d []time.Duration) Latency {
	if len(d) == 0 {
		return Latency{}
	}
	s := slices.Clone(d)
	slices.Sort(s)
	at := func(q float64) time.Duration { return s[min(len(s)-1, int(q*float64(len(s))))] }
	return Latency{Count: len(s), P50: at(0.50), P99: at(0.99), Max: s[len(s)-1]}
}

// Check asks the API, for each user in final, whether final[user] is that
// user's address now: an update-email to it with a wrong code answers 200
// only when the address already is the user's own. It returns the users
// whose address is not the one expected, described, in opts.Users order.
// The requests count towards nothing; opts is validated as for Run, and
// must not be a Floor's.
func Check(ctx context.Context, opts Options, final map[string]string) ([]string, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if opts.Floor {
		return nil, fmt.Errorf("%w: Check does not apply to a floor", ErrOptions)
	}
	client := opts.HTTPClient
	if client == nil {
		tr := &http.Transport{Proxy: nil}
		defer tr.CloseIdleConnections()
		client = &http.Client{Transport: tr}
	}
	var bad []string
	for _, u := range opts.Users {
		want, ok := final[u.ID]
		if !ok {
			continue
		}
		body := `{"email":` + quote(want) + `,"verify_code":"000000"}`
		rctx, cancel := context.WithTimeout(ctx, opts.RequestTimeout)
		req, err := http.NewRequestWithContext(rctx, http.MethodPost, opts.BaseURL+UpdateEmailPath, strings.NewReader(body))
		if err != nil {
			cancel()
			return bad, err
		}
		setHeaders(req.Header, opts.ClientID, u.Token, true)
		status, code, err := send(client, req)
		cancel()
		if err != nil {
			return bad, err
		}
		if status != http.StatusOK {
			bad = append(bad, u.ID+": "+want+" is not the address ("+strconv.Itoa(status)+" "+code+")")
		}
	}
	return bad, nil
}
