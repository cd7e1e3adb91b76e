package browser

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ciamkit/selfservice/internal/testenv"
)

// chromiumEnv names the Chromium binary when it is not chromium on PATH.
const chromiumEnv = "SELFSERVICE_TEST_CHROMIUM"

// chromiumPath returns the Chromium to drive, or skips t (fails it when
// services are required) when there is none.
func chromiumPath(t *testing.T) string {
	t.Helper()
	if p := os.Getenv(chromiumEnv); p != "" {
		return p
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	if os.Getenv(testenv.Require) == "1" {
		t.Fatalf("no Chromium: chromium is not on PATH, %s is not set, and %s=1", chromiumEnv, testenv.Require)
	}
	t.Skipf("no Chromium: chromium is not on PATH and %s is not set; skipping this browser test (apt-get install chromium)", chromiumEnv)
	return ""
}

// newBrowser starts a headless Chromium with a new empty profile, for at
// most timeout, and returns the context of its first tab. The browser ends
// with t.
func newBrowser(t *testing.T, timeout time.Duration, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	path := chromiumPath(t)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	opts := append([]chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		// This machine has no network but loopback: without these,
		// Chromium keeps trying to reach Google's services and misbehaves.
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-features", "Translate,MediaRouter,OptimizationHints"),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("use-mock-keychain", true),
		chromedp.WindowSize(1024, 768),
		// No user-data-dir: chromedp makes a new empty one and removes it.
	}, extra...)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(cancelAlloc)
	tab, cancelTab := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelTab)
	if err := chromedp.Do(tab); err != nil {
		t.Fatalf("starting Chromium %s: %v", path, err)
	}
	return tab
}
