package wire

import (
	"fmt"
	"io"
	"testing"
)

// The agent's hot path: append captured packets to a batch and send it.
func BenchmarkBatchEncode(b *testing.B) {
	for _, size := range []int{64, 1500} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			data := make([]byte, size)
			w := NewWriter(io.Discard)
			var batch Batch
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for i := 0; b.Loop(); i++ {
				if !batch.Fits(size) || batch.Size() >= 128<<10 {
					if err := w.WriteBatch(&batch); err != nil {
						b.Fatal(err)
					}
					batch.Reset()
				}
				batch.Append(int64(i), size, data)
			}
		})
	}
}

// The API's hot path: decode a received Packets payload.
func BenchmarkBatchDecode(b *testing.B) {
	for _, size := range []int{64, 1500} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			var batch Batch
			data := make([]byte, size)
			for batch.Size() < 128<<10 {
				batch.Append(1, size, data)
			}
			payload := batch.Frame()[HeaderSize:]
			n := batch.Count()
			var pkts []Packet
			b.ReportAllocs()
			b.SetBytes(int64(len(payload)))
			for b.Loop() {
				var err error
				if pkts, err = DecodePackets(payload, pkts[:0]); err != nil || len(pkts) != n {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/packet")
		})
	}
}
