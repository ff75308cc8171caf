package event

import (
	"crypto/rand"
	"encoding/base32"
	"strings"
)

// incarnation is this process's id, chosen once at start.
var incarnation = newIncarnation()

// newIncarnation returns 8 characters of base32hex (0-9, A-V): 40 random
// bits, so two sidecar processes of one pod share one with odds of about
// one in a trillion, and no "-", so that it ends where a connection id's
// first "-" is.
func newIncarnation() string {
	var b [5]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return base32.HexEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:])
}

// Incarnation returns this sidecar process's incarnation: a random id chosen
// when the process started. Every connection id the relay hands out starts
// with it and a "-", every event carries it, and at start-up the Notifier
// tells the app that it is the one live, so that the app can free what
// any earlier process (killed before it could report its streams) held.
func Incarnation() string { return incarnation }

// IncarnationOf returns the incarnation a connection id belongs to: the part
// before its first "-", or "" when it has none.
func IncarnationOf(connectionID string) string {
	inc, _, ok := strings.Cut(connectionID, "-")
	if !ok {
		return ""
	}
	return inc
}
