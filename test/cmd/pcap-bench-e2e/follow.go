package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// followFile reads a capture file on tmpfs while its writer still
// appends to it, and (unless told to keep it) gives back the memory of
// what it has read by punching holes behind itself: an unpaced TCP run
// writes gigabytes, more than the machine may have to spare, yet the
// writer must pay for a file, as tcpdump -w FILE and pcap-server-cli -o
// FILE do. The follower looks for new data by polling, where an inotify
// watch would add work to every one of the writer's writes.
//
// The holes change what the writer pays: on this VM, pages that a hole
// gave back are cheap to take again, while a file that grows into fresh
// memory pays for touching it first (dd of 6 GB in 64 KiB writes: 0.3 ns
// of system time per byte with holes behind it, 0.55-1.0 growing). Both
// captures of a step meet the same conditions.
type followFile struct {
	f       *os.File
	off     int64 // read so far
	punched int64 // holes up to here
	// punchEvery is how much is read between two holes; 0: none.
	punchEvery int64
	// written is closed once the writer has exited: the file ends where
	// it ends then.
	written <-chan struct{}
	ended   bool
}

const (
	// followPoll is how long the follower waits at the end of the file
	// before it looks again: at 2 GB/s it lags 20 MB behind.
	followPoll = 10 * time.Millisecond
	// punchEvery is how much is read between two holes, by default.
	punchEvery = 32 << 20
	// followLimit bounds a run: no writer of the benchmark takes longer.
	followLimit = 10 * time.Minute
)

// openFollow opens path for reading and punching, once its writer has
// created it (at most 10 s after the capture said it runs).
func openFollow(path string, written <-chan struct{}, keep bool) (*followFile, error) {
	every := int64(punchEvery)
	if keep {
		every = 0
	}
	deadline := time.Now().Add(10 * time.Second)
	for ended := false; ; {
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err == nil {
			return &followFile{f: f, written: written, punchEvery: every}, nil
		}
		if !errors.Is(err, os.ErrNotExist) || ended || time.Now().After(deadline) {
			return nil, fmt.Errorf("follow the capture file: %w", err)
		}
		select {
		case <-written:
			ended = true
		case <-time.After(followPoll):
		}
	}
}

// Read reads what the writer has written, waiting at the end of the file
// until the writer has exited.
func (ff *followFile) Read(p []byte) (int, error) {
	deadline := time.Now().Add(followLimit)
	for {
		// Whether the writer had exited before the read decides whether
		// the end of the file is the end of the capture.
		if !ff.ended {
			select {
			case <-ff.written:
				ff.ended = true
			default:
			}
		}
		n, err := ff.f.ReadAt(p, ff.off)
		ff.off += int64(n)
		if ff.punchEvery > 0 && ff.off-ff.punched >= ff.punchEvery {
			if perr := ff.punch(); perr != nil {
				return n, perr
			}
		}
		switch {
		case n > 0:
			return n, nil
		case err != nil && !errors.Is(err, io.EOF):
			return 0, err
		case ff.ended:
			return 0, io.EOF
		case time.Now().After(deadline):
			return 0, fmt.Errorf("the capture file did not grow for %s and its writer did not exit", followLimit)
		}
		select {
		case <-ff.written:
		case <-time.After(followPoll):
		}
	}
}

// punch frees the pages read so far (whole pages: the file keeps its
// size and reads as zeros there).
func (ff *followFile) punch() error {
	end := ff.off &^ (1<<16 - 1)
	if end <= ff.punched {
		return nil
	}
	if err := unix.Fallocate(int(ff.f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, ff.punched, end-ff.punched); err != nil {
		return fmt.Errorf("free what was read of the capture file: %w", err)
	}
	ff.punched = end
	return nil
}

// countFollowed counts the pcap file at path while its writer writes it,
// until written is closed and the file is read to its end; then it
// removes the file. keep keeps what was read until then.
func countFollowed(path string, written <-chan struct{}, keep bool) (pcapCount, error) {
	defer os.Remove(path)
	ff, err := openFollow(path, written, keep)
	if err != nil {
		return pcapCount{}, err
	}
	defer ff.f.Close()
	c, err := countPcap(ff)
	if err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}
