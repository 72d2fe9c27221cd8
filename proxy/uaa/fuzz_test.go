package uaa

import (
	"errors"
	"net/http"
	"testing"

	"github.com/cloudfoundry/pcap-server-release/proxy/problem"
)

// FuzzParseHeader feeds arbitrary Authorization headers to the parsing
// done before any signature check: it must refuse with a 401 problem or
// accept, never panic.
func FuzzParseHeader(f *testing.F) {
	f.Fuzz(func(t *testing.T, header string) {
		raw, err := bearerToken(header)
		if err != nil {
			mustBe401(t, err)
			return
		}
		tok, err := parseUnverified(raw)
		if err != nil {
			mustBe401(t, err)
			return
		}
		if tok == nil {
			t.Fatal("nil token without error")
		}
	})
}

func mustBe401(t *testing.T, err error) {
	t.Helper()
	var p *problem.Error
	if !errors.As(err, &p) || p.Status != http.StatusUnauthorized {
		t.Fatalf("err = %v, want a 401 problem", err)
	}
}
