package admin

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestDrain checks who may drain the sidecar over GET /drain, and that the
// answer is the drain's outcome.
func TestDrain(t *testing.T) {
	const token = "s3cret"
	tests := []struct {
		name     string
		remote   string
		header   string
		token    string
		drainErr error
		// wantCode and wantBody are the answer; wantDrained whether Drain ran.
		wantCode    int
		wantBody    string
		wantDrained bool
	}{
		{"loopback needs no token", "127.0.0.1:40000", "", token, nil, http.StatusOK, "ok", true},
		{"IPv6 loopback", "[::1]:40000", "", "", nil, http.StatusOK, "ok", true},
		{"IPv4-mapped loopback", "[::ffff:127.0.0.1]:40000", "", "", nil, http.StatusOK, "ok", true},
		{"pod network with the token", "198.51.100.1:40000", token, token, nil, http.StatusOK, "ok", true},
		{"pod network without the header", "198.51.100.1:40000", "", token, nil, http.StatusForbidden, "without the X-Hangup-Drain-Token header", false},
		{"pod network with a wrong token", "198.51.100.1:40000", "guess", token, nil, http.StatusForbidden, "wrong X-Hangup-Drain-Token", false},
		{"pod network and no token configured", "198.51.100.1:40000", "", "", nil, http.StatusForbidden, "has no drain token", false},
		{"a token header when none is configured", "198.51.100.1:40000", "anything", "", nil, http.StatusForbidden, "has no drain token", false},
		{"the drain's own failure", "127.0.0.1:40000", "", "", errors.New("2 events undelivered"), http.StatusServiceUnavailable, "not ok: 2 events undelivered", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			drained := false
			h := Handler(Checks{DrainToken: tt.token, Drain: func(context.Context) error {
				drained = true
				return tt.drainErr
			}})
			req := httptest.NewRequest(http.MethodGet, "/drain", nil)
			req.RemoteAddr = tt.remote
			if tt.header != "" {
				req.Header.Set(DrainTokenHeader, tt.header)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.wantCode || !strings.Contains(rec.Body.String(), tt.wantBody) {
				t.Errorf("GET /drain from %s: %d %q; want %d containing %q", tt.remote, rec.Code, rec.Body, tt.wantCode, tt.wantBody)
			}
			if drained != tt.wantDrained {
				t.Errorf("drain ran: %v; want %v", drained, tt.wantDrained)
			}
		})
	}
}

// TestNoDrainEndpoint checks that /drain exists only when the command
// gives a drain, and answers GET only (the kubelet's httpGet hook).
func TestNoDrainEndpoint(t *testing.T) {
	tests := []struct {
		name   string
		drain  func(context.Context) error
		method string
		want   int
	}{
		{"no drain", nil, http.MethodGet, http.StatusNotFound},
		{"POST", func(context.Context) error { return nil }, http.MethodPost, http.StatusMethodNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, "/drain", nil)
			req.RemoteAddr = "127.0.0.1:40000"
			rec := httptest.NewRecorder()
			Handler(Checks{Drain: tt.drain}).ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Errorf("%s /drain: %d; want %d", tt.method, rec.Code, tt.want)
			}
		})
	}
}
