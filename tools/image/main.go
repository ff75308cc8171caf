// Command image builds the container images of scripts/cluster.sh's node
// from Go, without a Docker engine: each is one reproducible layer (files
// owned by root, stamped 1970-01-01) written as a docker-archive tarball
// that `ctr -n k8s.io images import` loads into the node's containerd.
//
//	go run ./tools/image -out DIR [NAME...]    # NAME: hangup, hangup-tools, example-go, example-go-client, pause, example-volo, jaeger (default: all)
//
// It prints one line an image: name, reference, digest. The hangup image
// (the pod's binary: proxy, init-redirect, wait) and the hangup-tools image
// (every subcommand: the webhook's inject among them) agree with the
// Dockerfile's stages of the same names (entrypoint, user, ports, build
// tags; TestDockerfileAgrees) for users who do have Docker.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hangup-dev/hangup/pkg/ports"
)

// Tag is the tag of every image this command builds; the cluster's pods
// name it with imagePullPolicy Never.
const Tag = "cluster"

// The uids the images run as: the Dockerfile's distroless "nonroot" for
// hangup and the example, the pause image's usual 65535, Jaeger's 10001.
const (
	nonrootUID = 65532
	pauseUID   = 65535
	jaegerUID  = 10001
)

// sidecarPath is the sidecar binary in the hangup image: its ENTRYPOINT, and
// the chart's binaryPath.
const sidecarPath = "/usr/local/bin/sidecar"

// target is one image this command can build.
type target struct {
	name string
	// pkg is the Go package of its binary, built static from this module;
	// empty when bin gives a prebuilt binary.
	pkg string
	// tags are the build tags of pkg (go build -tags).
	tags string
	// bin returns the path of a prebuilt binary.
	bin  func() (string, error)
	spec func(binary string) spec
	// dynamic: the binary is dynamically linked, and the image carries
	// the shared libraries (and the loader) that ldd names for it.
	dynamic bool
}

// module is this module's path: packages are named in full, so that the
// command builds the same from any directory of the checkout.
const module = "github.com/hangup-dev/hangup"

// ref is the reference of the image called name.
func ref(name string) string { return "localhost/" + name + ":" + Tag }

var targets = []target{
	{name: "hangup", pkg: module + "/cmd/sidecar", tags: podTags, spec: hangupSpec},
	{name: "hangup-tools", pkg: module + "/cmd/sidecar", spec: toolsSpec},
	{name: "example-go", pkg: module + "/examples/go", spec: nonrootSpec("hangup-example-go", "/usr/local/bin/example")},
	{name: "example-go-client", pkg: module + "/examples/go/client", spec: nonrootSpec("hangup-example-go-client", "/usr/local/bin/client")},
	{name: "pause", pkg: module + "/tools/image/pause", spec: func(b string) spec {
		return spec{
			ref:        ref("pause"),
			files:      []file{{path: "/pause", src: b, mode: 0o755}},
			entrypoint: []string{"/pause"},
			user:       fmt.Sprintf("%d:%d", pauseUID, pauseUID),
		}
	}},
	{name: "example-volo", bin: cachedBinary("rust/target/release/hangup-example-volo", "scripts/install-polyglot.sh rust-volo"),
		dynamic: true, spec: nonrootSpec("hangup-example-volo", "/usr/local/bin/example")},
	{name: "jaeger", bin: cachedBinary("bin/jaeger", "scripts/install-tools.sh jaeger"), spec: func(b string) spec {
		return spec{
			ref:        ref("jaeger"),
			files:      []file{{path: "/usr/local/bin/jaeger", src: b, mode: 0o755}},
			entrypoint: []string{"/usr/local/bin/jaeger"},
			user:       fmt.Sprintf("%d:%d", jaegerUID, jaegerUID),
			ports:      []int{4317, 4318, 16686},
			// Jaeger's built-in configuration listens on localhost unless
			// told otherwise; its own image says 0.0.0.0 the same way.
			env: []string{"JAEGER_LISTEN_HOST=0.0.0.0"},
		}
	}},
}

// nonrootSpec is an example's image: its binary at path, its entrypoint,
// run as the Dockerfile's nonroot user.
func nonrootSpec(name, path string) func(b string) spec {
	return func(b string) spec {
		return spec{
			ref:        ref(name),
			files:      append(nonrootFiles(nonrootUID), file{path: path, src: b, mode: 0o755}),
			entrypoint: []string{path},
			user:       fmt.Sprintf("%d:%d", nonrootUID, nonrootUID),
		}
	}
}

// podTags build cmd/sidecar with only the subcommands that run in the
// app's pod (cmd/sidecar/main.go says why).
const podTags = "hangup_pod"

// hangupSpec is the image every injected pod runs (the sidecar and
// init-redirect): the Dockerfile's hangup stage, built without Docker.
func hangupSpec(b string) spec {
	return sidecarSpec("hangup", b, ports.Proxy, ports.Admin)
}

// toolsSpec is the webhook's image, with every subcommand: the
// Dockerfile's hangup-tools stage.
func toolsSpec(b string) spec {
	return sidecarSpec("hangup-tools", b, ports.Webhook)
}

func sidecarSpec(name, b string, exposed ...int) spec {
	return spec{
		ref:        ref(name),
		files:      append(nonrootFiles(nonrootUID), file{path: sidecarPath, src: b, mode: 0o755}),
		entrypoint: []string{sidecarPath},
		user:       fmt.Sprintf("%d:%d", nonrootUID, nonrootUID),
		ports:      exposed,
	}
}

// cachedBinary returns where a binary that the install scripts build into
// $HANGUP_CACHE is, or an error naming the command that builds it.
func cachedBinary(rel, install string) func() (string, error) {
	return func() (string, error) {
		cache := os.Getenv("HANGUP_CACHE")
		if cache == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return "", err
			}
			cache = filepath.Join(home, ".cache", "hangup")
		}
		p := filepath.Join(cache, rel)
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%w; run %s", err, install)
		}
		return p, nil
	}
}

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(2)
	}
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	out := fs.String("out", "", "directory to write NAME.tar into (required)")
	version := fs.String("version", "dev", "version stamped into the hangup binaries (main.version)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return fmt.Errorf("missing -out: want the directory to write the image tarballs into")
	}
	want := fs.Args()
	var known []string
	for _, t := range targets {
		known = append(known, t.name)
	}
	if len(want) == 0 {
		want = known
	}
	for _, n := range want {
		if !slices.Contains(known, n) {
			return fmt.Errorf("unknown image %q: want one of %v", n, known)
		}
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	for _, t := range targets {
		if !slices.Contains(want, t.name) {
			continue
		}
		d, err := build(t, *out, *version)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s %s %s\n", t.name, t.spec("").ref, d)
	}
	return nil
}

// build writes out/NAME.tar and returns the image's digest.
func build(t target, out, version string) (v1.Hash, error) {
	var binary string
	if t.pkg != "" {
		binary = filepath.Join(out, t.name+".bin")
		defer os.Remove(binary)
		if err := goBuild(t.pkg, t.tags, binary, version); err != nil {
			return v1.Hash{}, fmt.Errorf("image %s: %w", t.name, err)
		}
	} else {
		var err error
		if binary, err = t.bin(); err != nil {
			return v1.Hash{}, fmt.Errorf("image %s: %w", t.name, err)
		}
	}
	s := t.spec(binary)
	if t.dynamic {
		libs, err := sharedLibs(binary)
		if err != nil {
			return v1.Hash{}, fmt.Errorf("image %s: %w", t.name, err)
		}
		s.files = append(s.files, libs...)
	}
	img, err := s.image()
	if err != nil {
		return v1.Hash{}, err
	}
	if err := writeArchive(filepath.Join(out, t.name+".tar"), map[string]v1.Image{s.ref: img}); err != nil {
		return v1.Hash{}, err
	}
	return img.Digest()
}

// goBuild builds a static binary of this module's package pkg, the way the
// Dockerfile does, and without anything that changes from build to build
// (paths, VCS stamps), so that the image's digest is reproducible.
func goBuild(pkg, tags, out, version string) error {
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-tags="+tags,
		"-ldflags=-s -w -X main.version="+version, "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch())
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s: %w", pkg, err)
	}
	return nil
}

// goarch is the architecture of the images: this machine's, where the node runs.
func goarch() string { return runtime.GOARCH }
