package main

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// TestBuild builds the hangup image twice from the same sources and expects
// the same digest (no time, path or VCS stamp leaks in), then reads the
// archive back the way a runtime would and checks what it runs.
func TestBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the sidecar twice")
	}
	var digests []string
	var archive string
	for range 2 {
		out := t.TempDir()
		d, err := build(targets[slices.IndexFunc(targets, func(t target) bool { return t.name == "hangup" })], out, "test")
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, d.String())
		archive = filepath.Join(out, "hangup.tar")
	}
	if digests[0] != digests[1] {
		t.Fatalf("two builds of the same sources: digests %s and %s; want one", digests[0], digests[1])
	}

	tag, err := name.NewTag(ref("hangup"))
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(archive, &tag)
	if err != nil {
		t.Fatalf("read back %s as %s: %v", archive, tag, err)
	}
	if d, err := img.Digest(); err != nil || d.String() != digests[1] {
		t.Errorf("digest read back = %v (%v); want %s", d, err, digests[1])
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if got := cf.Config.Entrypoint; !slices.Equal(got, []string{sidecarPath}) {
		t.Errorf("entrypoint = %q; want [%s]", got, sidecarPath)
	}
	if cf.Config.User != "65532:65532" {
		t.Errorf("user = %q; want 65532:65532", cf.Config.User)
	}
	if !cf.Created.Time.Equal(epoch) {
		t.Errorf("created = %v; want %v (a fixed time keeps the digest reproducible)", cf.Created.Time, epoch)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers = %d (%v); want 1", len(layers), err)
	}
	entries := layerEntries(t, archive)
	for _, want := range []string{"usr/local/bin/sidecar 755", "tmp/ 1777", "etc/passwd 644"} {
		if !slices.Contains(entries, want) {
			t.Errorf("layer lacks %q; it has %q", want, entries)
		}
	}
}

// layerEntries lists "path mode" of the only layer of the archive's image.
func layerEntries(t *testing.T, archive string) []string {
	t.Helper()
	img, err := tarball.ImageFromPath(archive, nil)
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	return tarEntries(t, rc)
}

// TestDockerfileAgrees checks that each Dockerfile stage, for users with
// Docker, and the image of the same name built here run the same binary
// (the same package with the same build tags) at the same path, as the
// same user, with the same ports.
func TestDockerfileAgrees(t *testing.T) {
	stages := parseDockerfile(t, filepath.Join("..", "..", "Dockerfile"))
	for _, tc := range []struct {
		name string
		spec spec
		tags string
	}{
		{"hangup", hangupSpec(""), podTags},
		{"hangup-tools", toolsSpec(""), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			df, ok := stages[tc.name]
			if !ok {
				t.Fatalf("Dockerfile has no stage %q", tc.name)
			}
			if i := slices.IndexFunc(targets, func(tg target) bool { return tg.name == tc.name }); i < 0 || targets[i].tags != tc.tags {
				t.Fatalf("no image %q built with tags %q", tc.name, tc.tags)
			}
			s := tc.spec
			var entrypoint []string
			if err := json.Unmarshal([]byte(df["ENTRYPOINT"][0]), &entrypoint); err != nil {
				t.Fatalf("Dockerfile ENTRYPOINT %q: want the exec (JSON) form: %v", df["ENTRYPOINT"][0], err)
			}
			if !slices.Equal(entrypoint, s.entrypoint) {
				t.Errorf("ENTRYPOINT: Dockerfile %q, image %q", entrypoint, s.entrypoint)
			}
			if got := df["USER"]; len(got) != 1 || got[0] != s.user {
				t.Errorf("USER: Dockerfile %q, image %q", got, s.user)
			}
			var exposed []int
			for _, line := range df["EXPOSE"] {
				for _, f := range strings.Fields(line) {
					p, err := strconv.Atoi(strings.TrimSuffix(f, "/tcp"))
					if err != nil {
						t.Fatalf("Dockerfile EXPOSE %q: %v", line, err)
					}
					exposed = append(exposed, p)
				}
			}
			want := slices.Clone(s.ports)
			sort.Ints(exposed)
			sort.Ints(want)
			if !slices.Equal(exposed, want) {
				t.Errorf("EXPOSE: Dockerfile %v, image %v", exposed, want)
			}
			var from string
			for _, line := range df["COPY"] {
				f := strings.Fields(line)
				if strings.HasPrefix(f[0], "--from=") && f[len(f)-1] == sidecarPath {
					from = f[len(f)-2]
				}
			}
			if from == "" {
				t.Fatalf("Dockerfile has no COPY --from=... %s; its COPY lines: %q", sidecarPath, df["COPY"])
			}
			var built bool
			for _, run := range stages["build"]["RUN"] {
				hasTags := strings.Contains(run, "-tags")
				if strings.Contains(run, "go build") && strings.Contains(run, "-o "+from+" ./cmd/sidecar") &&
					(tc.tags == "" && !hasTags || tc.tags != "" && strings.Contains(run, "-tags="+tc.tags)) {
					built = true
				}
			}
			if !built {
				t.Errorf("Dockerfile's build stage has no go build of ./cmd/sidecar into %s with tags %q: %q", from, tc.tags, stages["build"]["RUN"])
			}
		})
	}
}

// parseDockerfile returns the arguments of each instruction of every
// stage, by stage name (FROM ... AS name) and instruction.
func parseDockerfile(t *testing.T, path string) map[string]map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	stages := map[string]map[string][]string{}
	var inst map[string][]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		word, rest, _ := strings.Cut(line, " ")
		word = strings.ToUpper(word)
		if word == "FROM" {
			inst = map[string][]string{}
			if f := strings.Fields(rest); len(f) == 3 && strings.EqualFold(f[1], "AS") {
				stages[f[2]] = inst
			}
			continue
		}
		if inst != nil {
			inst[word] = append(inst[word], strings.TrimSpace(rest))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	for name, inst := range stages {
		if name == "build" {
			continue
		}
		for _, w := range []string{"ENTRYPOINT", "USER", "EXPOSE"} {
			if len(inst[w]) == 0 {
				t.Fatalf("%s: stage %s has no %s", path, name, w)
			}
		}
	}
	return stages
}

func TestRunRejectsBadInput(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no out", []string{"hangup"}, "missing -out"},
		{"unknown image", []string{"-out", t.TempDir(), "hangup", "nginx"}, `unknown image "nginx"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out strings.Builder
			err := run(tc.args, &out)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("run(%q) = %v; want an error containing %q", tc.args, err, tc.want)
			}
			if out.Len() != 0 {
				t.Errorf("run(%q) printed %q before failing; want nothing built", tc.args, out.String())
			}
		})
	}
}
