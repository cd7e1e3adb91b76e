package selfservice_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	metricnoop "go.opentelemetry.io/otel/metric/noop"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/middleware"
	"github.com/ciamkit/selfservice/store"
	"github.com/ciamkit/selfservice/store/memstore"
)

// floodDomain is where the flood's addresses are; floodMailer keeps no
// code mailed there.
const floodDomain = "@flood.example"

// floodMailer keeps the last code mailed to each address outside the
// flood, and counts the others.
type floodMailer struct {
	mu      sync.Mutex
	codes   map[string]string
	flooded int
}

func (m *floodMailer) Send(_ context.Context, msg selfservice.Message) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if msg.Kind != selfservice.MailCode {
		return nil
	}
	if strings.HasSuffix(msg.To, floodDomain) {
		m.flooded++
		return nil
	}
	m.codes[msg.To] = msg.Code
	return nil
}

func (m *floodMailer) code(t *testing.T, to string) string {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.codes[to]
	if !ok {
		t.Fatalf("no code was mailed to %s", to)
	}
	return c
}

// floodIP returns the address of client i: a /64 of its own, all of them
// in the /48 2001:db8:17::/48.
func floodIP(i int) netip.Addr {
	a := netip.MustParseAddr("2001:db8:17::1").As16()
	a[6], a[7] = byte(i>>8), byte(i)
	return netip.AddrFrom16(a)
}

// floodReport is what a flood did: the answers to its sends by status,
// and the heap.
type floodReport struct {
	byStatus map[int]int
	peakHeap uint64 // HeapInuse at its highest, sampled
	liveHeap uint64 // HeapAlloc after a GC, with the flood's stores alive
	elapsed  time.Duration
}

// replayFlood runs the attack of issue 17 against a Service on memory
// stores of maxEntries entries, with the default budgets: alice asks for a
// code; then each of ips clients (one IPv6 /64 each) sends 30 codes to 30
// addresses of its own, within every budget, at once; after pause, an
// honest client sends a code to an address nobody used, alice submits her
// right code (and if it was refused, asks for a new one and submits that),
// and bob asks for a code and submits it. It returns the flood's report
// and what alice's first submission was answered.
func replayFlood(t *testing.T, maxEntries, ips int, pause time.Duration) (r floodReport, alice error) {
	t.Helper()
	ctx := context.Background()
	mail := &floodMailer{codes: map[string]string{}}
	clk := newClock()
	opts := memstore.Options{MaxEntries: maxEntries, Now: clk.Now}
	svc, err := selfservice.New(selfservice.Config{
		Users: memstore.NewUserStore(
			store.User{ID: "alice", Email: "alice@example.com", CanonicalEmail: "alice@example.com"},
			store.User{ID: "bob", Email: "bob@example.com", CanonicalEmail: "bob@example.com"},
		),
		Codes:          memstore.NewCodeStore(opts),
		Limiter:        memstore.NewLimiter(opts),
		Clients:        memstore.NewClientRegistry(store.Client{ID: "app"}),
		Mailer:         mail,
		Captcha:        selfservice.AllowAllCaptcha{},
		CodeSecret:     []byte(strings.Repeat("k", selfservice.MinCodeSecretLen)),
		Logger:         discardLogger(),
		MeterProvider:  metricnoop.NewMeterProvider(),
		TracerProvider: tracenoop.NewTracerProvider(),
		Now:            clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = svc.Shutdown(context.Background()) }()
	caller := func(ip netip.Addr) selfservice.Caller {
		return selfservice.Caller{
			ClientID: "app",
			Device:   middleware.Device{OSVersion: "ios17", Fingerprint: "fp", Agent: "app/1.0"},
			IP:       ip,
		}
	}
	send := func(ip netip.Addr, email string) error {
		return svc.SendCode(ctx, selfservice.SendCodeRequest{
			Caller: caller(ip), Email: email, Type: selfservice.PurposeUpdateEmail, CaptchaToken: "ok",
		})
	}
	update := func(user string, ip netip.Addr, email, code string) error {
		return svc.UpdateEmail(ctx, selfservice.UpdateEmailRequest{
			Caller: caller(ip), Identity: middleware.Identity{Subject: user}, Email: email, VerifyCode: code,
		})
	}
	honest := netip.MustParseAddr("198.51.100.7")

	if err := send(honest, "alice.new@example.com"); err != nil {
		t.Fatalf("alice's send before the flood: %v", err)
	}
	aliceCode := mail.code(t, "alice.new@example.com")

	r.byStatus = map[int]int{}
	var ms runtime.MemStats
	runtime.GC()
	start := time.Now()
	for ip := range ips {
		for j := range 30 {
			err := send(floodIP(ip), fmt.Sprintf("v%d.%d%s", ip, j, floodDomain))
			status := 200
			if err != nil {
				status = i18n.ErrorOf(err).Code.Status()
			}
			r.byStatus[status]++
		}
		if ip%100 == 0 {
			runtime.ReadMemStats(&ms)
			r.peakHeap = max(r.peakHeap, ms.HeapInuse)
		}
	}
	r.elapsed = time.Since(start)
	runtime.ReadMemStats(&ms)
	r.peakHeap = max(r.peakHeap, ms.HeapInuse)
	runtime.GC()
	runtime.ReadMemStats(&ms)
	r.liveHeap = ms.HeapAlloc

	clk.advance(pause)
	if err := send(netip.MustParseAddr("203.0.113.9"), "someone.new@example.com"); err != nil {
		t.Errorf("an honest send from a new client to a new address after the flood: %v, want success", err)
	}
	alice = update("alice", honest, "alice.new@example.com", aliceCode)
	if alice != nil {
		if err := send(honest, "alice.new@example.com"); err != nil {
			t.Fatalf("alice's second send: %v", err)
		}
		if err := update("alice", honest, "alice.new@example.com", mail.code(t, "alice.new@example.com")); err != nil {
			t.Errorf("alice's second right code: %v, want success", err)
		}
	}
	if err := send(honest, "bob.new@example.com"); err != nil {
		t.Fatalf("bob's send after the flood: %v", err)
	}
	if err := update("bob", honest, "bob.new@example.com", mail.code(t, "bob.new@example.com")); err != nil {
		t.Errorf("bob's right code, sent after the flood: %v, want success", err)
	}
	if mail.flooded != r.byStatus[200] {
		t.Errorf("%d flood codes mailed, %d sends answered 200", mail.flooded, r.byStatus[200])
	}
	return r, alice
}

// TestFloodLeavesRoomForHonestUsers replays the attack of issue 17: 3,244
// client IPs (5% of one IPv6 /48) each mail 30 codes to 30 addresses,
// inside every budget. The memory stores used to fill up (100,000 entries)
// and answer everyone SYS.9001 for a day; now they keep their bound and
// honest traffic goes on at once: a send from a new client to a new
// address, and the right code of a user who asked for it before the flood,
// and of one who asked after.
//
// Twice that flood, all within one minute, pushes 95,000 keys into the
// Limiter's sketch within a minute's window: a fresh address is refused
// early by its 1-per-minute budget with probability 0.027 until the minute
// is over, which the flood's own sends show, so the honest traffic comes a
// minute later. The flood also pushes the oldest codes out: the code of the
// user who asked before it is refused as incorrect (never SYS.9001), and a
// new one works.
//
// Under -short the flood and the stores are a quarter of the size, in the
// same ratio: 811 clients against 25,000 entries.
func TestFloodLeavesRoomForHonestUsers(t *testing.T) {
	maxEntries, ips := memstore.DefaultMaxEntries, 3244
	if testing.Short() {
		maxEntries, ips = memstore.DefaultMaxEntries/4, 811
	}
	for _, tt := range []struct {
		name      string
		ips       int
		pause     time.Duration
		wantAlice error
	}{
		{fmt.Sprintf("%d clients, %d entries", ips, maxEntries), ips, 0, nil},
		{fmt.Sprintf("%d clients, %d entries", 2*ips, maxEntries), 2 * ips, time.Minute + time.Second, i18n.CodeVerifyCodeIncorrect},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, alice := replayFlood(t, maxEntries, tt.ips, tt.pause)
			t.Logf("%d sends in %v: answered %v; peak heap in use %.1f MiB, live heap after %.1f MiB",
				30*tt.ips, r.elapsed.Round(time.Millisecond), r.byStatus, float64(r.peakHeap)/(1<<20), float64(r.liveHeap)/(1<<20))
			if n := r.byStatus[500]; n > 0 {
				t.Errorf("%d flood sends answered 500, want none: the stores must not fill", n)
			}
			if ok := r.byStatus[200]; ok < 30*tt.ips*99/100 {
				t.Errorf("%d of %d flood sends, all within their budgets, answered 200; want at least 99%%", ok, 30*tt.ips)
			}
			if (tt.wantAlice == nil) != (alice == nil) || (tt.wantAlice != nil && !errors.Is(alice, tt.wantAlice)) {
				t.Errorf("alice's right code, sent before the flood: %v, want %v", alice, tt.wantAlice)
			}
		})
	}
}
