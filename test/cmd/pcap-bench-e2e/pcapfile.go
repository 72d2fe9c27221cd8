package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/gopacket/gopacket/pcapgo"
)

// pcapCount is what a pcap stream holds.
type pcapCount struct {
	packets uint64
	bytes   uint64 // captured bytes of the packets, without pcap headers
}

// countPcap counts the packets of a pcap stream. A last record cut short
// (a capture that was killed) ends the count without an error.
func countPcap(r io.Reader) (pcapCount, error) {
	var c pcapCount
	pr, err := pcapgo.NewReader(bufio.NewReaderSize(r, 1<<20))
	if errors.Is(err, io.EOF) {
		return c, nil // nothing was written, not even the header
	}
	if err != nil {
		return c, fmt.Errorf("pcap header: %w", err)
	}
	pr.SetSnaplen(1 << 20) // tolerate a writer that does not truncate to its own snaplen
	for {
		_, ci, err := pr.ZeroCopyReadPacketData()
		switch {
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			return c, nil
		case err != nil:
			return c, fmt.Errorf("after %d packets: %w", c.packets, err)
		}
		c.packets++
		c.bytes += uint64(ci.CaptureLength)
	}
}

// countPcapFile counts a capture file and removes it: tmpfs is memory.
func countPcapFile(path string) (pcapCount, error) {
	f, err := os.Open(path)
	if err != nil {
		return pcapCount{}, err
	}
	defer os.Remove(path)
	defer f.Close()
	c, err := countPcap(f)
	if err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// arrivals is when each packet of a live pcap stream was read, against
// its capture timestamp (the kernel's, on the same clock).
type arrivals struct {
	first     time.Time // when the first record was read
	latencies []time.Duration
}

// readArrivals reads a pcap stream record by record, unbuffered, so that
// each is timed as soon as it can be read.
func readArrivals(r io.Reader) (arrivals, error) {
	var a arrivals
	pr, err := pcapgo.NewReader(r)
	if errors.Is(err, io.EOF) {
		return a, nil
	}
	if err != nil {
		return a, fmt.Errorf("pcap header: %w", err)
	}
	pr.SetSnaplen(1 << 20)
	for {
		_, ci, err := pr.ReadPacketData()
		now := time.Now()
		switch {
		case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			return a, nil
		case err != nil:
			return a, err
		}
		if a.first.IsZero() {
			a.first = now
		}
		a.latencies = append(a.latencies, now.Sub(ci.Timestamp))
	}
}
