// Package configfile reads the binaries' YAML configuration strictly (an
// unknown key is an error, so a typo in a BOSH property cannot be silently
// ignored) and provides the value types the configs share.
package configfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Load decodes the YAML file at path into dst, refusing unknown keys.
func Load(path string, dst any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	if err := Decode(data, dst); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

// Decode is Load on bytes. An empty document leaves dst as it is.
func Decode(data []byte, dst any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(dst); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// Duration is a time.Duration written the Go way ("50ms", "15m").
type Duration time.Duration

func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = Duration(v)
	return nil
}

func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// ByteSize is a size in bytes, written as a plain number or with a unit:
// B, KiB, MiB, GiB, TiB (powers of 1024) or KB, MB, GB, TB (powers of 1000).
type ByteSize int64

var byteUnits = []struct {
	suffix string
	factor int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"B", 1},
}

// ParseByteSize parses "8MiB", "2GiB", "1500" and the like.
func ParseByteSize(s string) (ByteSize, error) {
	num, factor := strings.TrimSpace(s), int64(1)
	for _, u := range byteUnits {
		if strings.HasSuffix(num, u.suffix) {
			num, factor = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.factor
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("invalid byte size %q: want a whole number with an optional unit such as KiB, MiB or GiB", s)
	}
	if n > 0 && factor > (1<<62)/n {
		return 0, fmt.Errorf("byte size %q is too large", s)
	}
	return ByteSize(n * factor), nil
}

func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := ParseByteSize(s)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*b = v
	return nil
}

func (b ByteSize) MarshalYAML() (any, error) { return b.String(), nil }

// String writes the size with the largest binary unit that divides it.
func (b ByteSize) String() string {
	for _, u := range []struct {
		suffix string
		factor int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if b != 0 && int64(b)%u.factor == 0 {
			return strconv.FormatInt(int64(b)/u.factor, 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(b), 10) + "B"
}

// Problems collects every validation problem of a config, so that
// -check-config can print them all at once rather than one per run.
type Problems []string

// Addf records a problem.
func (p *Problems) Addf(format string, args ...any) {
	*p = append(*p, fmt.Sprintf(format, args...))
}

// Err returns nil when there is no problem, else one error listing them.
func (p Problems) Err() error {
	if len(p) == 0 {
		return nil
	}
	return errors.New("invalid config:\n  - " + strings.Join(p, "\n  - "))
}

// RequireFile records a problem unless path names a readable regular file.
func (p *Problems) RequireFile(key, path string) {
	if path == "" {
		p.Addf("%s is required", key)
		return
	}
	f, err := os.Open(path)
	if err != nil {
		p.Addf("%s: %v", key, err)
		return
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || st.IsDir() {
		p.Addf("%s: %s is not a regular file", key, path)
	}
}

// RequireFilesTogether records problems unless either every path is empty
// or each names a readable regular file: settings that work only as a set,
// such as a certificate, its key and a CA.
func (p *Problems) RequireFilesTogether(keys, paths []string) {
	var given []string
	for i, path := range paths {
		if path != "" {
			given = append(given, keys[i])
		}
	}
	if len(given) == 0 {
		return
	}
	if len(given) < len(keys) {
		p.Addf("%s go together: set all of them or none (given: %s)", strings.Join(keys, ", "), strings.Join(given, ", "))
		return
	}
	for i, path := range paths {
		p.RequireFile(keys[i], path)
	}
}
