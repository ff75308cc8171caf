package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hangup-dev/hangup/internal/jaegertest"
)

func TestRun(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		args    []string
		want    jaegertest.Ports // for the YAML; zero to take the printed ports
		wantErr string
	}{
		{name: "defaults to stdout", want: jaegertest.DefaultPorts},
		{name: "ports to stdout", args: []string{"-query", "1", "-query-grpc", "2", "-otlp-grpc", "3", "-otlp-http", "4"}, want: jaegertest.Ports{Query: 1, QueryGRPC: 2, OTLPGRPC: 3, OTLPHTTP: 4}},
		{name: "free ports to a file", args: []string{"-free", "-o", filepath.Join(dir, "j.yaml")}},
		{name: "bad port", args: []string{"-otlp-http", "70000"}, wantErr: "-otlp-http 70000: want a TCP port"},
		{name: "stray argument", args: []string{"x"}, wantErr: "unexpected arguments"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(tc.args, &out)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("run(%q) = %v, want an error containing %q", tc.args, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("run(%q): %v", tc.args, err)
			}
			if tc.want != (jaegertest.Ports{}) {
				if got := out.String(); got != string(jaegertest.Config(tc.want)) {
					t.Errorf("YAML:\n%s\nwant jaegertest.Config(%+v)", got, tc.want)
				}
				return
			}
			var p jaegertest.Ports
			if _, err := fmt.Sscanf(out.String(), "JAEGER_QUERY_PORT=%d\nJAEGER_QUERY_GRPC_PORT=%d\nJAEGER_OTLP_GRPC_PORT=%d\nJAEGER_OTLP_HTTP_PORT=%d\n",
				&p.Query, &p.QueryGRPC, &p.OTLPGRPC, &p.OTLPHTTP); err != nil {
				t.Fatalf("parse printed ports %q: %v", out.String(), err)
			}
			seen := map[int]bool{p.Query: true, p.QueryGRPC: true, p.OTLPGRPC: true, p.OTLPHTTP: true}
			if len(seen) != 4 || seen[0] {
				t.Errorf("ports %+v: want four distinct non-zero ports", p)
			}
			yaml, err := os.ReadFile(tc.args[len(tc.args)-1])
			if err != nil {
				t.Fatal(err)
			}
			if string(yaml) != string(jaegertest.Config(p)) {
				t.Errorf("file holds:\n%s\nwant jaegertest.Config(%+v)", yaml, p)
			}
			if !strings.Contains(string(yaml), fmt.Sprintf("endpoint: 127.0.0.1:%d", p.OTLPHTTP)) {
				t.Errorf("YAML does not bind the OTLP/HTTP receiver to 127.0.0.1:%d:\n%s", p.OTLPHTTP, yaml)
			}
		})
	}
}
