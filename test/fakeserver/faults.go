package fakeserver

import (
	"encoding/json"
	"net/http"
	"sync"
	"time"
)

// FaultLookup counts r under its route pattern and returns the fault
// injected for that pattern, or for any, if there is one. mu guards
// requests and faults.
func FaultLookup[F any](mu *sync.Mutex, mux *http.ServeMux, r *http.Request, requests map[string]int, faults map[string]F, any string) (F, bool) {
	_, pattern := mux.Handler(r)
	if pattern == "/" {
		pattern = r.Method + " " + r.URL.Path
	}
	mu.Lock()
	defer mu.Unlock()
	requests[pattern]++
	f, ok := faults[pattern]
	if !ok {
		f, ok = faults[any]
	}
	return f, ok
}

// DelayOrDrop applies the transport part of a fault: it waits delay (the
// request is aborted if it or the fake ends first) and drops the
// connection when asked. It reports whether the handler should still
// answer.
func DelayOrDrop(w http.ResponseWriter, r *http.Request, delay time.Duration, drop bool, closing <-chan struct{}) bool {
	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			// Abort rather than return: a handler that returns without
			// writing answers an empty 200, which a client still
			// listening (a retried HTTP/2 request) would take as the
			// answer.
			panic(http.ErrAbortHandler)
		case <-closing:
			panic(http.ErrAbortHandler)
		}
	}
	if drop {
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				_ = conn.Close()
				return false
			}
		}
		panic(http.ErrAbortHandler)
	}
	return true
}

// WriteJSON answers with v as JSON, as the real components do.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json;charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// Endpoints counts a fake's requests per endpoint (its route pattern) and
// holds the faults injected for them. A fake embeds it, which gives it
// Inject, Clear, Requests and TotalRequests.
type Endpoints[F any] struct {
	mu       sync.Mutex
	requests map[string]int
	faults   map[string]F
}

// Inject makes endpoint (or the fake's any-endpoint key) answer with f
// until Clear.
func (e *Endpoints[F]) Inject(endpoint string, f F) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.faults == nil {
		e.faults = map[string]F{}
	}
	e.faults[endpoint] = f
}

// Clear removes all injected faults.
func (e *Endpoints[F]) Clear() {
	e.mu.Lock()
	defer e.mu.Unlock()
	clear(e.faults)
}

// Requests is how many requests an endpoint received, refused ones
// included.
func (e *Endpoints[F]) Requests(endpoint string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.requests[endpoint]
}

// TotalRequests is how many requests the fake received on any path.
func (e *Endpoints[F]) TotalRequests() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, c := range e.requests {
		n += c
	}
	return n
}

// Lookup counts r and returns the fault injected for its endpoint, or
// for any.
func (e *Endpoints[F]) Lookup(mux *http.ServeMux, r *http.Request, any string) (F, bool) {
	e.mu.Lock()
	if e.requests == nil {
		e.requests = map[string]int{}
	}
	if e.faults == nil {
		e.faults = map[string]F{}
	}
	e.mu.Unlock()
	return FaultLookup(&e.mu, mux, r, e.requests, e.faults, any)
}
