package procmem

import (
	"os"
	"testing"
)

// This process holds more than nothing, and its peak is at least what it
// holds.
func TestReadsThisProcess(t *testing.T) {
	u, err := Read(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if u.RSS <= 0 || u.Peak < u.RSS {
		t.Fatalf("%+v", u)
	}
}
