package pcapstream

import (
	"bytes"
	"testing"
)

// FuzzCopy: whatever the server sends, the copier never panics, never
// allocates beyond MaxRecord, and writes a prefix of its input made of
// whole records.
func FuzzCopy(f *testing.F) {
	f.Add(pcapStream(f, 3))
	f.Add(pcapngStream(f, 3))
	f.Add([]byte{0x0a, 0x0d, 0x0d, 0x0a, 0x1c, 0, 0, 0, 0x4d, 0x3c, 0x2b, 0x1a})
	f.Fuzz(func(t *testing.T, in []byte) {
		var out bytes.Buffer
		c := NewCopier(&out, bytes.NewReader(in))
		_ = c.Copy()
		if !bytes.HasPrefix(in, out.Bytes()) {
			t.Fatal("output is not a prefix of the input")
		}
		if cap(c.buf) > MaxRecord+1 {
			t.Fatalf("buffer grew to %d", cap(c.buf))
		}
		if c.Progress().Bytes != int64(out.Len()) {
			t.Fatalf("progress says %d bytes, wrote %d", c.Progress().Bytes, out.Len())
		}
		var dropped uint64
		for _, d := range c.InterfaceDrops() {
			if len(d.Name) > maxInterfaceName || d.Dropped == 0 {
				t.Fatalf("interface drops %+v", d)
			}
			dropped += d.Dropped
		}
		if len(c.ifNames) > maxNamedInterfaces {
			t.Fatalf("%d interface names kept", len(c.ifNames))
		}
		if dropped != c.Progress().Dropped {
			t.Fatalf("interfaces dropped %d, progress says %d", dropped, c.Progress().Dropped)
		}

	})
}
