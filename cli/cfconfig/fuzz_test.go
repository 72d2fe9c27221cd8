package cfconfig

import (
	"testing"
	"time"
)

// FuzzParse feeds config.json content from outside: Parse must not panic,
// and whatever it accepts must survive the token write-back with only the
// tokens changed.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"ConfigVersion":4,"Target":"https://api.x","AccessToken":"bearer a.b.c","RefreshToken":"r","SpaceFields":{"GUID":"s","Name":"dev"}}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"accesstoken":"x","AccessToken":"y","ACCESSTOKEN":"z"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data)
		if err != nil {
			return
		}
		out, err := withTokens(data, "bearer new-access", "new-refresh")
		if err != nil {
			t.Fatalf("write-back of accepted config: %v", err)
		}
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("written config does not parse: %v\n%s", err, out)
		}
		want := cfg
		want.AccessToken, want.RefreshToken = "bearer new-access", "new-refresh"
		if again != want {
			t.Fatalf("write-back changed more than the tokens:\n got %+v\nwant %+v\n%s", again, want, out)
		}
	})
}

// FuzzTokenExpiry feeds access tokens from outside: no panic, and an
// accepted exp is a real date.
func FuzzTokenExpiry(f *testing.F) {
	f.Add("bearer eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjE3NjcyMjU2MDB9.c2ln")
	f.Add("eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjEuNWU5fQ.c2ln")
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, token string) {
		exp, err := TokenExpiry(token)
		if err != nil {
			return
		}
		if exp.Before(time.Unix(0, 0)) || exp.After(time.Unix(latestExp+1, 0)) {
			t.Fatalf("exp %v out of range", exp)
		}
	})
}
