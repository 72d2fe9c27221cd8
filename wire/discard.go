package wire

import (
	"errors"
	"fmt"
	"io"
)

// MinDiscardBuffer is the smallest buffer Discard and DiscardPackets
// take: one record header.
const MinDiscardBuffer = RecordHeaderSize

// Discard reads and drops the n-byte payload of the frame whose header
// NextHeader returned, through buf: however large the frame, it holds
// nothing but buf.
func (r *Reader) Discard(typ Type, n int, buf []byte) error {
	d := chunks{r: r.r, buf: checkedBuffer(buf), left: n}
	if err := d.skip(n); err != nil {
		return readError(typ, n, err)
	}
	return nil
}

// DiscardPackets reads the n-byte payload of a Packets or DevicePackets
// frame through buf without keeping it, and checks it as DeviceRecords
// and CountPackets check a whole payload, with the same errors. It
// returns the frame's device index (0 for a Packets frame) and the number
// of its records. On a malformed payload it stops reading at the fault:
// the stream is unusable then.
func (r *Reader) DiscardPackets(typ Type, n int, buf []byte) (device, count int, err error) {
	d := chunks{r: r.r, buf: checkedBuffer(buf), left: n}
	records := n
	if typ == TypeDevicePackets {
		if n < DeviceHeaderSize {
			return 0, 0, fmt.Errorf("%w: device packets frame without a device index", ErrMalformedPackets)
		}
		if err := d.fill(DeviceHeaderSize); err != nil {
			return 0, 0, readError(typ, n, err)
		}
		device = int(d.buf[d.lo])
		d.lo += DeviceHeaderSize
		if device >= MaxDevices {
			return 0, 0, fmt.Errorf("%w: device index %d, at most %d devices", ErrMalformedPackets, device, MaxDevices)
		}
		records -= DeviceHeaderSize
	}
	count, err = scanRecords(&d, records)
	var re *chunkReadError
	if errors.As(err, &re) {
		return 0, 0, readError(typ, n, re.err)
	}
	if err != nil {
		return 0, 0, err
	}
	return device, count, nil
}

// scanRecords checks the records of a Packets payload of total bytes as
// they arrive, as RecordAt does on a whole payload, and counts them.
func scanRecords(d *chunks, total int) (int, error) {
	count := 0
	for off := 0; off < total; count++ {
		rest := total - off
		if rest < RecordHeaderSize {
			return 0, strayBytes(rest, off)
		}
		if err := d.fill(RecordHeaderSize); err != nil {
			return 0, &chunkReadError{err}
		}
		// RecordAt on the header alone, with what is left of the payload
		// standing in for the bytes that follow it.
		rec, err := recordHeader(d.buf[d.lo:d.lo+RecordHeaderSize], off, rest)
		if err != nil {
			return 0, err
		}
		d.lo += RecordHeaderSize
		if err := d.skip(rec.CapLen); err != nil {
			return 0, &chunkReadError{err}
		}
		off += rec.Size()
	}
	return count, nil
}

// chunkReadError is a read that failed while scanning records, as
// opposed to a malformed record.
type chunkReadError struct{ err error }

func (e *chunkReadError) Error() string { return e.err.Error() }

// chunks reads a frame's payload through a small buffer: buf[lo:hi] holds
// what was read and not consumed yet, left what the payload still has
// unread in the stream. It never reads past the payload.
type chunks struct {
	r      io.Reader
	buf    []byte
	lo, hi int
	left   int
}

// fill makes at least n bytes (at most len(buf)) available in buf[lo:hi].
func (c *chunks) fill(n int) error {
	if c.hi-c.lo >= n {
		return nil
	}
	if c.lo > 0 {
		c.hi = copy(c.buf, c.buf[c.lo:c.hi])
		c.lo = 0
	}
	for c.hi < n {
		if c.left == 0 {
			return io.ErrUnexpectedEOF
		}
		m, err := c.r.Read(c.buf[c.hi:min(len(c.buf), c.hi+c.left)])
		c.hi += m
		c.left -= m
		if err != nil && c.hi < n {
			return err
		}
	}
	return nil
}

// skip consumes n bytes: those in the buffer first, then reads and drops.
func (c *chunks) skip(n int) error {
	take := min(n, c.hi-c.lo)
	c.lo += take
	n -= take
	if c.lo == c.hi {
		c.lo, c.hi = 0, 0
	}
	for n > 0 {
		if c.left == 0 {
			return io.ErrUnexpectedEOF
		}
		m, err := c.r.Read(c.buf[:min(len(c.buf), n, c.left)])
		n -= m
		c.left -= m
		if err != nil && n > 0 {
			return err
		}
	}
	return nil
}

func checkedBuffer(buf []byte) []byte {
	if len(buf) < MinDiscardBuffer {
		return make([]byte, MinDiscardBuffer)
	}
	return buf
}

func readError(typ Type, n int, err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("read %s frame payload of %d bytes: %w", typ, n, err)
}
