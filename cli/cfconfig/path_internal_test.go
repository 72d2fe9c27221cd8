package cfconfig

import (
	"path/filepath"
	"testing"
)

// The cf CLI on Windows never reads HOME (Git Bash and Cygwin set it).
func TestPathWindows(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"CF_HOME": "/cfhome", "HOME": "/home/u"}, "/cfhome/.cf/config.json"},
		{map[string]string{"HOME": "/home/u", "HOMEDRIVE": "C:", "HOMEPATH": "/Users/u", "USERPROFILE": "/profile"}, "C:/Users/u/.cf/config.json"},
		{map[string]string{"HOME": "/home/u", "HOMEPATH": "/Users/u"}, "/Users/u/.cf/config.json"},
		{map[string]string{"HOME": "/home/u", "USERPROFILE": "/profile"}, "/profile/.cf/config.json"},
	} {
		got, err := pathFor("windows", func(k string) string { return tc.env[k] })
		if err != nil || got != filepath.FromSlash(tc.want) {
			t.Errorf("pathFor(windows, %v) = %q, %v; want %q", tc.env, got, err, tc.want)
		}
	}
	if _, err := pathFor("windows", func(k string) string { return map[string]string{"HOME": "/home/u"}[k] }); err == nil {
		t.Error("pathFor(windows) took HOME")
	}
}
