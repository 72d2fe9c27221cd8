package cloudcontroller

import (
	"encoding/json"
	"net/http"
	"testing"
	"unicode"
	"unicode/utf8"
)

// FuzzErrorProblem: any status and body from the Cloud Controller (or a
// router in front of it) maps to one of the statuses the API documents,
// never a 500, never a panic.
func FuzzErrorProblem(f *testing.F) {
	allowed := map[int]bool{
		http.StatusUnauthorized: true, http.StatusForbidden: true, http.StatusNotFound: true,
		http.StatusTooManyRequests: true, http.StatusBadGateway: true, http.StatusServiceUnavailable: true,
	}
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		p := errorProblem(status, body, "app x")
		if !allowed[p.Status] {
			t.Fatalf("status %d for HTTP %d %q", p.Status, status, body)
		}
		if p.Detail == "" || p.Err == nil {
			t.Fatalf("problem without detail or cause: %+v", p)
		}
	})
}

// FuzzDecodePage: list bodies decode or fail, never panic.
func FuzzDecodePage(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		if p, err := decodePage[roleResource](body); err == nil {
			for _, r := range p.Resources {
				_ = r.Relationships.User.guid() + r.Relationships.Space.guid()
			}
		}
		if p, err := decodePage[appResource](body); err == nil {
			var inc includedSpaces
			if json.Unmarshal(p.raw, &inc) == nil {
				for _, r := range p.Resources {
					_ = inc.app(r)
				}
			}
		}
	})
}

// FuzzDecodeStats: stats bodies decode or fail, never panic.
func FuzzDecodeStats(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		stats, err := decodeStats(body)
		if err == nil && stats == nil {
			t.Fatal("nil stats without error")
		}
	})
}

// FuzzDecodeSSHEnabled: ssh_enabled bodies decode or fail, never panic;
// whatever decodes carries a reason short and printable enough for a
// message.
func FuzzDecodeSSHEnabled(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		s, err := decodeSSHEnabled(body)
		if err != nil {
			return
		}
		if len(s.Reason) > maxDescribedErrorTextLength+len("...") {
			t.Fatalf("reason of %d bytes", len(s.Reason))
		}
		for _, r := range s.Reason {
			if r == utf8.RuneError || !unicode.IsPrint(r) {
				t.Fatalf("unprintable %q in reason %q", r, s.Reason)
			}
		}
	})
}
