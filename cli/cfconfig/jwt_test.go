package cfconfig_test

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/cloudfoundry/pcap-server-release/cli/cfconfig"
)

func tokenWithPayload(payload string) string {
	return "eyJhbGciOiJSUzI1NiJ9." + base64.RawURLEncoding.EncodeToString([]byte(payload)) + ".c2ln"
}

func TestTokenExpiry(t *testing.T) {
	exp := time.Unix(1767225600, 0)
	real := jwt(t, exp, "jti-1")
	for _, tc := range []struct {
		name  string
		token string
		want  time.Time
	}{
		{"uaa token", real, exp},
		{"with bearer", "bearer " + real, exp},
		{"with Bearer", "Bearer " + real, exp},
		{"fraction", tokenWithPayload(`{"exp":1767225600.5}`), exp.Add(500 * time.Millisecond)},
		{"exponent", tokenWithPayload(`{"exp":1.7672256e9}`), exp},
		{"padded", strings.Replace(tokenWithPayload(`{"exp":1767225600}`), ".c2ln", "=.c2ln", 1), exp},
		{"zero", tokenWithPayload(`{"exp":0}`), time.Unix(0, 0)},
	} {
		got, err := cfconfig.TokenExpiry(tc.token)
		if err != nil || !got.Equal(tc.want) {
			t.Errorf("%s: TokenExpiry = %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}

	for name, token := range map[string]string{
		"empty":        "",
		"opaque":       "0f3c1b2a9d",
		"two parts":    "a.b",
		"four parts":   "a.b.c.d",
		"bad base64":   "a.!!!.c",
		"not json":     "a." + base64.RawURLEncoding.EncodeToString([]byte("exp=1")) + ".c",
		"array":        tokenWithPayload(`[1]`),
		"no exp":       tokenWithPayload(`{"iat":1}`),
		"null exp":     tokenWithPayload(`{"exp":null}`),
		"string exp":   tokenWithPayload(`{"exp":"1767225600"}`),
		"negative exp": tokenWithPayload(`{"exp":-1}`),
		"huge exp":     tokenWithPayload(`{"exp":1e300}`),
		"too long":     tokenWithPayload(`{"exp":1,"x":"` + strings.Repeat("a", 70000) + `"}`),
	} {
		if got, err := cfconfig.TokenExpiry(token); err == nil {
			t.Errorf("%s: TokenExpiry = %v, want an error", name, got)
		}
	}
}
