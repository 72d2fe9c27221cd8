package tokenkeeper

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// jwt is an unsigned JWT expiring at exp: the Keeper reads only exp.
func jwt(exp time.Time, n int) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"none"}`)) + "." + enc(fmt.Appendf(nil, `{"exp":%d,"n":%d}`, exp.Unix(), n)) + ".sig"
}

func TestWhenTheSourceIsAsked(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	now := t0
	clock := func() time.Time { return now }
	fail := func(context.Context) (string, error) { return "", errors.New("no") }

	// UAA's 20-minute tokens: Lead before expiry, inside the cf CLI's
	// 60 s refresh margin.
	k := New(fail, jwt(t0.Add(20*time.Minute), 1), clock)
	if at, ok := k.nextAsk(); !ok || !at.Equal(t0.Add(20*time.Minute-Lead)) {
		t.Errorf("20-minute token: ask at %v (%v), want %v", at.Sub(t0), ok, 20*time.Minute-Lead)
	}
	// Tokens shorter-lived than twice the lead: halfway through.
	k = New(fail, jwt(t0.Add(30*time.Second), 2), clock)
	if at, _ := k.nextAsk(); !at.Equal(t0.Add(15 * time.Second)) {
		t.Errorf("30-second token: ask at %v, want 15s", at.Sub(t0))
	}
	// A token taken late in its life: not sooner than minInterval.
	k = New(fail, jwt(t0.Add(time.Second), 3), clock)
	if at, _ := k.nextAsk(); !at.Equal(t0.Add(minInterval)) {
		t.Errorf("nearly expired token: ask at %v, want %v", at.Sub(t0), minInterval)
	}
	// The same token again (the source had nothing newer): retry later,
	// not in a loop.
	k = New(fail, jwt(t0.Add(20*time.Second), 4), clock)
	now = t0.Add(10 * time.Second)
	k.set(jwt(t0.Add(20*time.Second), 4))
	if at, _ := k.nextAsk(); !at.Equal(now.Add(retryInterval)) {
		t.Errorf("same token: ask at %v, want %v", at.Sub(now), retryInterval)
	}
	// Not a JWT: nothing to plan.
	if _, ok := New(fail, "opaque", clock).nextAsk(); ok {
		t.Error("an opaque token planned an ask")
	}
}

// source hands out tokens that expire lifetime after its clock's now,
// until it is gone, and says on asked each time it is asked (also once
// gone): -1 for a failed ask.
type source struct {
	lifetime time.Duration
	now      func() time.Time
	mu       sync.Mutex
	n        int
	gone     bool
	asked    chan int
}

func (s *source) token(context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gone {
		s.asked <- -1
		return "", errors.New("dial cf CLI: connection refused")
	}
	s.n++
	s.asked <- s.n
	return jwt(s.now().Add(s.lifetime), s.n), nil
}

func (s *source) die() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gone = true
}

// While the source lives, Run renews the token before it expires; once
// the source is gone, Token gives the renewed one.
func TestRunRenewsWhileTheSourceLives(t *testing.T) {
	// The clock stands still (on a whole second, as exp counts), so
	// that no token expires however long a busy machine takes: Run's
	// timers still run in real time, the minimum interval apart.
	t0 := time.Unix(time.Now().Unix(), 0)
	clock := func() time.Time { return t0 }
	src := &source{lifetime: 2 * time.Second, now: clock, asked: make(chan int, 8)}
	first, _ := src.token(context.Background())
	<-src.asked
	k := New(src.token, first, clock)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); k.Run(ctx) }()
	defer func() { cancel(); <-done }()

	asked := func(want int) {
		t.Helper()
		select {
		case n := <-src.asked:
			if n != want {
				t.Fatalf("asked for token %d, want %d", n, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the token was not renewed within 10s")
		}
	}
	asked(2)
	src.die()
	// Run asks again only after it has taken token 2 in.
	asked(-1)
	got, err := k.Token(context.Background(), time.Second)
	if want := jwt(t0.Add(2*time.Second), 2); err != nil || got != want {
		t.Fatalf("Token after the source died: %q, %v, want the renewed token (the first: %q)", got, err, first)
	}
}

// A held token that expired while the source could not be asked is an
// error that says so, not a request bound to fail.
func TestExpiredTokenAndNoSource(t *testing.T) {
	src := &source{asked: make(chan int, 2)}
	src.die()
	k := New(src.token, jwt(time.Now().Add(-time.Second), 1), nil)
	_, err := k.Token(context.Background(), time.Second)
	if err == nil || !strings.Contains(err.Error(), "expired at") || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("%v", err)
	}
	// An opaque token's expiry is unknown: it is given as it is.
	k = New(src.token, "opaque", nil)
	if got, err := k.Token(context.Background(), time.Second); got != "opaque" || err != nil {
		t.Fatalf("%q, %v", got, err)
	}
}
