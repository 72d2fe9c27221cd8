// Package tokenkeeper keeps an access token valid for as long as a capture
// runs, so that the request which stops the capture is authorized whenever
// it comes.
//
// Under the cf CLI the plugin gets tokens only from the cf CLI process,
// which dies at once on Ctrl-C (and on kill). UAA's tokens live 20 minutes
// and a capture up to 15, so a token taken at the start may have expired
// by the time the stop is sent, with nobody left to refresh it. A Keeper
// asks its source for a new token shortly before the held one expires,
// while the source still answers, and keeps it.
package tokenkeeper

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/cloudfoundry/pcap-server-release/cli/cfconfig"
)

// Lead is how long before the held token's expiry the Keeper asks for a
// new one. It is shorter than the refresh margin of the cf CLI (and of
// cfconfig.Store), 60 s, so the source refreshes rather than handing back
// the token it holds; it is long enough for a stop request to use the
// token after its last renewal.
const Lead = 45 * time.Second

const (
	// retryInterval spaces asks after the source failed or had nothing
	// newer.
	retryInterval = 5 * time.Second
	// minInterval bounds how often the source is asked, whatever the
	// token's lifetime.
	minInterval = time.Second
	// askTimeout bounds one ask of the source in the background.
	askTimeout = 15 * time.Second
)

// Source returns a current access token without "bearer ".
type Source func(ctx context.Context) (string, error)

// Keeper holds an access token and renews it from its source ahead of its
// expiry. Its methods are safe for concurrent use.
type Keeper struct {
	source Source
	now    func() time.Time

	mu     sync.Mutex
	token  string
	got    time.Time // when token was had
	expiry time.Time // zero: not a JWT, expiry unknown
	retry  time.Time // after a failed or fruitless ask: not before this
}

// New keeps token, which was just had from source. now is the clock (nil
// means time.Now).
func New(source Source, token string, now func() time.Time) *Keeper {
	if now == nil {
		now = time.Now
	}
	k := &Keeper{source: source, now: now}
	k.set(token)
	return k
}

func (k *Keeper) set(token string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.setLocked(token)
}

func (k *Keeper) setLocked(token string) {
	now := k.now()
	if token == k.token && !k.got.IsZero() {
		// The source had nothing newer: ask again later, not in a loop.
		k.retry = now.Add(retryInterval)
		return
	}
	k.token, k.got, k.retry = token, now, time.Time{}
	k.expiry = time.Time{}
	if exp, err := cfconfig.TokenExpiry(token); err == nil {
		k.expiry = exp
	}
}

// nextAsk is when the source should next be asked; false when the token's
// expiry is unknown, so there is nothing to plan for.
func (k *Keeper) nextAsk() (time.Time, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.expiry.IsZero() {
		return time.Time{}, false
	}
	// Lead before expiry, but for tokens shorter-lived than twice the
	// lead, halfway through their life.
	at := k.expiry.Add(-Lead)
	if half := k.got.Add(k.expiry.Sub(k.got) / 2); half.After(at) {
		at = half
	}
	if k.retry.After(at) {
		at = k.retry
	}
	if earliest := k.now().Add(minInterval); at.Before(earliest) {
		at = earliest
	}
	return at, true
}

// Run renews the token until ctx ends.
func (k *Keeper) Run(ctx context.Context) {
	for {
		at, ok := k.nextAsk()
		if !ok {
			return
		}
		t := time.NewTimer(at.Sub(k.now()))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		actx, cancel := context.WithTimeout(ctx, askTimeout)
		token, err := k.source(actx)
		cancel()
		k.mu.Lock()
		if err != nil || token == "" {
			k.retry = k.now().Add(retryInterval)
		} else {
			k.setLocked(token)
		}
		k.mu.Unlock()
	}
}

// Token returns a token for a request to be sent now: a new one from the
// source if it answers within timeout, else the held one while it has not
// expired.
func (k *Keeper) Token(ctx context.Context, timeout time.Duration) (string, error) {
	actx, cancel := context.WithTimeout(ctx, timeout)
	token, err := k.source(actx)
	cancel()
	if err == nil && token != "" {
		k.set(token)
		return token, nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.expiry.IsZero() || k.now().Before(k.expiry) {
		return k.token, nil
	}
	if err == nil {
		err = fmt.Errorf("empty token")
	}
	return "", fmt.Errorf("the access token expired at %s and no new one could be had: %w",
		k.expiry.Format(time.TimeOnly), err)
}
