package tunnel

import (
	"math/rand/v2"
	"time"
)

// backoff is jittered exponential backoff: attempt n waits between half and
// all of base·2ⁿ, capped. The jitter spreads a fleet of cells that lost the
// same API replica, so they do not all knock at once when it returns.
type backoff struct {
	base, max time.Duration
	attempt   int
}

func (b *backoff) next() time.Duration {
	d := b.max
	if b.attempt < 30 {
		d = min(b.base<<b.attempt, b.max)
	}
	b.attempt++
	return d/2 + rand.N(d/2+1)
}

func (b *backoff) reset() { b.attempt = 0 }
