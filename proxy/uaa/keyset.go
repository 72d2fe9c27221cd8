package uaa

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// DefaultKeyRefetchInterval is the least time between two fetches of
// UAA's keys after one succeeded.
const DefaultKeyRefetchInterval = 5 * time.Second

// After a failed fetch of UAA's keys the next waits
// DefaultKeyRetryFirst, doubling with each further failure up to
// DefaultKeyRetryMost.
const (
	DefaultKeyRetryFirst = time.Second
	DefaultKeyRetryMost  = 5 * time.Second
)

// maxKeysBody bounds UAA's /token_keys answer (a few KiB in practice).
const maxKeysBody = 1 << 20

// keySet holds UAA's signing keys. A token whose signature no key held
// verifies (usually: it names a key the set does not hold) makes it fetch
// the keys again, as UAA may have rotated them, but at most once per
// interval after a successful fetch: a forged token is then refused at
// once and costs UAA nothing, however many arrive. A real rotation is picked up by the first token signed
// with the new key, at once unless a fetch succeeded within the interval,
// else by the first such token after it; tokens in between are refused
// with a message that says so. Concurrent fetches are one fetch. After a
// failed fetch (UAA unavailable or answering errors) the next waits at
// least a second, doubling with each further failure up to five: tokens
// meanwhile get the failure again (503), so that forged tokens cannot make
// the API hammer a UAA that is down, or has never answered yet.
//
// go-oidc's RemoteKeySet fetches again for every token with an unknown
// kid, which is what this replaces.
type keySet struct {
	url      string
	client   *http.Client
	ctx      context.Context // fetches outlive the request that started them
	interval time.Duration
	// retryFirst and retryMost bound the wait after a failed fetch.
	retryFirst, retryMost time.Duration

	mu       sync.Mutex
	keys     []jose.JSONWebKey
	fetched  time.Time // last successful fetch
	inflight *keyFetch
	// failures counts the failed fetches since the last success; failed
	// is the last one's error and when it ended, retryAt when the next
	// may start.
	failures int
	failed   error
	failedAt time.Time
	retryAt  time.Time
}

type keyFetch struct {
	done chan struct{}
	err  error
}

// coolingDown is an unknown kid met within the interval.
type coolingDown struct {
	kid           string
	ago, interval time.Duration
}

func (e *coolingDown) Error() string {
	return fmt.Sprintf("no key %q among UAA's keys, fetched %s ago (fetched again at most every %s)", e.kid, e.ago.Round(time.Millisecond), e.interval)
}

// fetchError is a failed fetch of UAA's keys.
type fetchError struct{ err error }

func (e *fetchError) Error() string { return "fetch UAA's keys: " + e.err.Error() }
func (e *fetchError) Unwrap() error { return e.err }

// VerifySignature implements oidc.KeySet.
func (k *keySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	jws, err := jose.ParseSigned(jwt, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		return nil, fmt.Errorf("malformed JWT: %w", err)
	}
	var kid string
	if len(jws.Signatures) > 0 {
		kid = jws.Signatures[0].Header.KeyID
	}
	payload, ok, gen := k.verify(jws, kid)
	if ok {
		return payload, nil
	}
	if err := k.refresh(ctx, gen, kid); err != nil {
		var cd *coolingDown
		if errors.As(err, &cd) && (kid == "" || k.holds(kid)) {
			// Not an unknown key, a signature UAA did not make.
			return nil, errors.New("signature matches none of UAA's keys")
		}
		return nil, err
	}
	if payload, ok, _ = k.verify(jws, kid); ok {
		return payload, nil
	}
	return nil, errors.New("signature matches none of UAA's keys")
}

// verify tries the keys held; gen identifies them for refresh.
func (k *keySet) verify(jws *jose.JSONWebSignature, kid string) ([]byte, bool, time.Time) {
	k.mu.Lock()
	keys, gen := k.keys, k.fetched
	k.mu.Unlock()
	for _, key := range keys {
		if kid == "" || key.KeyID == kid {
			if payload, err := jws.Verify(&key); err == nil {
				return payload, true, gen
			}
		}
	}
	return nil, false, gen
}

// holds reports whether a key with this id is held.
func (k *keySet) holds(kid string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, key := range k.keys {
		if key.KeyID == kid {
			return true
		}
	}
	return false
}

// refresh makes sure keys newer than gen are held, fetching them unless
// that would be within the interval of the last successful fetch.
func (k *keySet) refresh(ctx context.Context, gen time.Time, kid string) error {
	k.mu.Lock()
	if !k.fetched.Equal(gen) {
		k.mu.Unlock()
		return nil // fetched meanwhile: try those
	}
	f := k.inflight
	if f == nil {
		if now := time.Now(); now.Before(k.retryAt) {
			k.mu.Unlock()
			return &fetchError{err: fmt.Errorf("%w (failed %s ago; not fetched again for %s)",
				k.failed, now.Sub(k.failedAt).Round(time.Millisecond), k.retryAt.Sub(now).Round(time.Millisecond))}
		}
		if ago := time.Since(k.fetched); !k.fetched.IsZero() && ago < k.interval {
			k.mu.Unlock()
			return &coolingDown{kid: kid, ago: ago, interval: k.interval}
		}
		f = &keyFetch{done: make(chan struct{})}
		k.inflight = f
		go k.fetch(f)
	}
	k.mu.Unlock()
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return &fetchError{err: ctx.Err()}
	}
}

func (k *keySet) fetch(f *keyFetch) {
	keys, err := k.get()
	k.mu.Lock()
	defer k.mu.Unlock()
	if err != nil {
		f.err = &fetchError{err: err}
		k.failures++
		k.failed, k.failedAt = err, time.Now()
		k.retryAt = k.failedAt.Add(retryWait(k.retryFirst, k.retryMost, k.failures))
	} else {
		k.keys, k.fetched = keys, time.Now()
		k.failures, k.retryAt = 0, time.Time{}
	}
	k.inflight = nil
	close(f.done)
}

// retryWait is the wait after the nth failed fetch in a row: first,
// doubling up to most.
func retryWait(first, most time.Duration, n int) time.Duration {
	d := first
	for i := 1; i < n && d > 0 && d < most; i++ {
		d *= 2
	}
	return min(d, most)
}

func (k *keySet) get() ([]jose.JSONWebKey, error) {
	req, err := http.NewRequestWithContext(k.ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxKeysBody))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", resp.Status, body[:min(len(body), 200)])
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("%s: %w", k.url, err)
	}
	return set.Keys, nil
}
