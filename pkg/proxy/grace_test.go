package proxy_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hangup-dev/hangup/pkg/event"
	"github.com/hangup-dev/hangup/pkg/grace"
)

// TestReconnectGraceThroughTheRelay runs the relay with a real pkg/grace in
// its Sink chain: a stream on a graced method carries its session key, its
// loss is held while the app's handler is cancelled in band at once, and a
// new connection carrying the same key turns the loss into one RESUMED
// event; a method without grace is reported at once, with no session key.
func TestReconnectGraceThroughTheRelay(t *testing.T) {
	tests := []struct {
		name    string
		rules   string
		resumed bool
	}{
		{"graced method", fullDuplex + "=1h", true},
		{"graced service", "/grpc.testing.TestService/*=1h", true},
		{"another method graced", "/grpc.testing.TestService/UnaryCall=1h", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rules, err := grace.ParseRules(tt.rules)
			if err != nil {
				t.Fatal(err)
			}
			app, appAddr := startApp(t)
			var g *grace.Grace
			r := startRelay(t, appAddr, func(c *proxyConfig) {
				g = grace.New(grace.Config{Rules: rules, SessionHeader: "x-session-id"}, c.Sink)
				c.Sink, c.Sessions = g, g
			})
			t.Cleanup(g.Close)

			old := openRawStream(t, r.addr, "x-session-id", "s-1")
			if err := old.Reset(); err != nil {
				t.Fatal(err)
			}
			call := waitCall(t, app, 5*time.Second)
			if !errors.Is(call.Err, context.Canceled) {
				t.Errorf("app handler ended with %v, want its context cancelled in band at once", call.Err)
			}
			if !tt.resumed {
				evs := r.waitEvents(t, 2, 5*time.Second)
				if evs[0].Reason != event.ReasonConnectionReset || evs[0].SessionKey != "" || evs[1].Scope != event.ScopeConnection {
					t.Errorf("events %+v, want CONNECTION_RESET at once without a session key, then the connection's", evs)
				}
				return
			}
			r.noEvents(t)
			c2 := openRawStream(t, r.addr, "x-session-id", "s-1")
			defer c2.Close()
			ev := r.waitEvents(t, 1, 5*time.Second)[0]
			if ev.Reason != event.ReasonResumed || ev.ConnectionID != call.ConnectionID || ev.StreamID != 1 ||
				ev.ResumedConnectionID == "" || ev.ResumedConnectionID == call.ConnectionID || ev.ResumedStreamID != 1 ||
				ev.SessionKey != "s-1" {
				t.Errorf("event %+v, want RESUMED of %s/1 by a new connection's stream 1, session s-1", ev, call.ConnectionID)
			}
			r.noEvents(t)
			if st := g.Stats(); st.Held != 1 || st.Resumed != 1 || st.Holding != 0 {
				t.Errorf("grace stats %+v, want 1 held and resumed", st)
			}
		})
	}
}
