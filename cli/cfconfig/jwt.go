package cfconfig

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// maxTokenLen bounds what TokenExpiry decodes; UAA tokens are a few KiB.
const maxTokenLen = 64 << 10

// latestExp is the end of year 9999, beyond which an exp is not a date.
const latestExp = 253402300799

// TokenExpiry reads the exp claim of a JWT without verifying its signature:
// it only decides when to refresh, and the API verifies the token anyway.
// A "bearer " prefix is ignored.
func TokenExpiry(token string) (time.Time, error) {
	token = stripBearer(token)
	if len(token) > maxTokenLen {
		return time.Time{}, fmt.Errorf("decode access token: longer than %d bytes", maxTokenLen)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return time.Time{}, errors.New("decode access token: not a JWT (want three dot-separated parts)")
	}
	payload, err := decodeSegment(parts[1])
	if err != nil {
		return time.Time{}, fmt.Errorf("decode access token payload: %w", err)
	}
	var claims struct {
		Exp json.RawMessage `json:"exp"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return time.Time{}, fmt.Errorf("decode access token claims: %w", err)
	}
	if len(claims.Exp) == 0 || bytes.Equal(claims.Exp, []byte("null")) {
		return time.Time{}, errors.New("decode access token: no exp claim")
	}
	return expTime(string(claims.Exp))
}

// decodeSegment accepts unpadded base64url as JWTs use, and tolerates
// padding.
func decodeSegment(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}

// expTime converts NumericDate seconds, which RFC 7519 allows to carry a
// fraction.
// Only a JSON number counts; a quoted "123" is not a NumericDate.
func expTime(n string) (time.Time, error) {
	if secs, err := strconv.ParseInt(n, 10, 64); err == nil {
		if secs < 0 || secs > latestExp {
			return time.Time{}, fmt.Errorf("decode access token: exp %d out of range", secs)
		}
		return time.Unix(secs, 0), nil
	}
	f, err := strconv.ParseFloat(n, 64)
	if err != nil || math.IsNaN(f) || f < 0 || f > latestExp {
		return time.Time{}, fmt.Errorf("decode access token: exp %.40q is not a date", n)
	}
	whole, frac := math.Modf(f)
	return time.Unix(int64(whole), int64(frac*1e9)), nil
}

// stripBearer removes the "bearer" scheme (any case) the cf CLI stores in
// front of the token.
func stripBearer(token string) string {
	token = strings.TrimSpace(token)
	const scheme = "bearer"
	if len(token) >= len(scheme) && strings.EqualFold(token[:len(scheme)], scheme) {
		rest := token[len(scheme):]
		if rest == "" || rest[0] == ' ' || rest[0] == '\t' {
			return strings.TrimSpace(rest)
		}
	}
	return token
}
