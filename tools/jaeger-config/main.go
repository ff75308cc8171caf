// Command jaeger-config writes the Jaeger v2 configuration that
// internal/jaegertest runs in tests: in-memory storage, the query API and
// UI, OTLP gRPC and HTTP receivers, every listener on 127.0.0.1.
//
//	go run ./tools/jaeger-config -o jaeger.yaml          # Jaeger's usual ports 16686, 16685, 4317, 4318
//	eval "$(go run ./tools/jaeger-config -free -o jaeger.yaml)"
//	~/.cache/hangup/bin/jaeger --config file:jaeger.yaml
//
// With -o it prints the chosen ports as shell assignments
// (JAEGER_QUERY_PORT, JAEGER_QUERY_GRPC_PORT, JAEGER_OTLP_GRPC_PORT,
// JAEGER_OTLP_HTTP_PORT), so that a script can eval them; without -o it
// prints the YAML.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/hangup-dev/hangup/internal/jaegertest"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "jaeger-config:", err)
		os.Exit(2)
	}
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("jaeger-config", flag.ContinueOnError)
	p := jaegertest.DefaultPorts
	fs.IntVar(&p.Query, "query", p.Query, "port of the query HTTP API and UI")
	fs.IntVar(&p.QueryGRPC, "query-grpc", p.QueryGRPC, "port of the query gRPC API")
	fs.IntVar(&p.OTLPGRPC, "otlp-grpc", p.OTLPGRPC, "port of the OTLP/gRPC receiver")
	fs.IntVar(&p.OTLPHTTP, "otlp-http", p.OTLPHTTP, "port of the OTLP/HTTP receiver")
	free := fs.Bool("free", false, "use four free 127.0.0.1 ports instead of the port flags")
	out := fs.String("o", "", "file to write the YAML to; default stdout")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q: want only flags", fs.Args())
	}
	if *free {
		fp, err := jaegertest.FreePorts(4)
		if err != nil {
			return err
		}
		p = jaegertest.Ports{Query: fp[0], QueryGRPC: fp[1], OTLPGRPC: fp[2], OTLPHTTP: fp[3]}
	}
	for _, f := range []struct {
		name string
		port int
	}{{"-query", p.Query}, {"-query-grpc", p.QueryGRPC}, {"-otlp-grpc", p.OTLPGRPC}, {"-otlp-http", p.OTLPHTTP}} {
		if f.port < 1 || f.port > 65535 {
			return fmt.Errorf("%s %d: want a TCP port, 1 to 65535", f.name, f.port)
		}
	}
	yaml := jaegertest.Config(p)
	if *out == "" {
		_, err := stdout.Write(yaml)
		return err
	}
	if err := os.WriteFile(*out, yaml, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", *out, err)
	}
	_, err := fmt.Fprintf(stdout, "JAEGER_QUERY_PORT=%d\nJAEGER_QUERY_GRPC_PORT=%d\nJAEGER_OTLP_GRPC_PORT=%d\nJAEGER_OTLP_HTTP_PORT=%d\n",
		p.Query, p.QueryGRPC, p.OTLPGRPC, p.OTLPHTTP)
	return err
}
