package configfile

import (
	"strings"
	"testing"
	"time"
)

func TestParseByteSize(t *testing.T) {
	good := map[string]ByteSize{"0": 0, "1500": 1500, "8MiB": 8 << 20, "2GiB": 2 << 30, "64 KiB": 64 << 10, "1MB": 1e6, "10B": 10}
	for in, want := range good {
		got, err := ParseByteSize(in)
		if err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-1", "1.5GiB", "8 mb", "9999999999TiB"} {
		if _, err := ParseByteSize(in); err == nil {
			t.Errorf("ParseByteSize(%q) accepted", in)
		}
	}
	if s := ByteSize(8 << 20).String(); s != "8MiB" {
		t.Errorf("String() = %s", s)
	}
}

func TestDecodeStrict(t *testing.T) {
	var c struct {
		Timeout Duration `yaml:"timeout"`
		Buffer  ByteSize `yaml:"buffer"`
	}
	if err := Decode([]byte("timeout: 50ms\nbuffer: 8MiB\n"), &c); err != nil {
		t.Fatal(err)
	}
	if c.Timeout.D() != 50*time.Millisecond || c.Buffer != 8<<20 {
		t.Fatalf("%+v", c)
	}
	err := Decode([]byte("timeout: 1s\nbufer: 1\n"), &c)
	if err == nil || !strings.Contains(err.Error(), "bufer") {
		t.Fatalf("unknown key: %v", err)
	}
	err = Decode([]byte("timeout: soon\n"), &c)
	if err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("bad duration: %v", err)
	}
}

func TestProblems(t *testing.T) {
	var p Problems
	if p.Err() != nil {
		t.Fatal("no problems but an error")
	}
	p.RequireFile("tls.certificate", "")
	p.RequireFile("tls.ca", "/nonexistent/ca.pem")
	err := p.Err()
	if err == nil || !strings.Contains(err.Error(), "tls.certificate is required") || !strings.Contains(err.Error(), "tls.ca: open /nonexistent/ca.pem") {
		t.Fatalf("%v", err)
	}
}
