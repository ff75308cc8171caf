package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
)

// tarEntries lists "path mode" of each entry of a tar stream.
func tarEntries(t *testing.T, r io.Reader) []string {
	t.Helper()
	var out []string
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if !h.ModTime.Equal(epoch) || h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s: mtime %v uid %d gid %d; want %v, root", h.Name, h.ModTime, h.Uid, h.Gid, epoch)
		}
		out = append(out, fmt.Sprintf("%s %o", h.Name, h.Mode))
	}
}

// TestLayer checks the layer of a spec: parent directories first, in path
// order whatever the order of the files, and the files' contents and modes.
func TestLayer(t *testing.T) {
	s := spec{ref: ref("t"), files: []file{
		{path: "/usr/local/bin/b", data: []byte("b"), mode: 0o755},
		{path: "/etc/a", data: []byte("a"), mode: 0o644},
	}}
	data, err := s.layer()
	if err != nil {
		t.Fatal(err)
	}
	got := tarEntries(t, bytes.NewReader(data))
	want := []string{"etc/ 755", "tmp/ 1777", "usr/ 755", "usr/local/ 755", "usr/local/bin/ 755", "etc/a 644", "usr/local/bin/b 755"}
	if !slices.Equal(got, want) {
		t.Errorf("entries = %q; want %q", got, want)
	}
	s.files[0], s.files[1] = s.files[1], s.files[0]
	again, err := s.layer()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data, again) {
		t.Error("the layer depends on the order of the files; want the same bytes")
	}
	s.files = append(s.files, file{path: "/missing", src: "/nonexistent/file", mode: 0o644})
	if _, err := s.layer(); err == nil {
		t.Error("layer of a missing source file: no error; want one naming it")
	}
}

// TestSharedLibsRunAlone: a dynamically linked binary with the libraries
// sharedLibs names runs in a root that holds nothing else, as it must in
// an image without a distribution (the Volo example's).
func TestSharedLibsRunAlone(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test chroots into the layer it built: run it as root, as CI does")
	}
	bin, err := exec.LookPath("true")
	if err != nil {
		t.Fatal(err)
	}
	libs, err := sharedLibs(bin)
	if err != nil {
		t.Fatal(err)
	}
	s := spec{ref: ref("t"), files: append(libs, file{path: "/bin/program", src: bin, mode: 0o755})}
	data, err := s.layer()
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(root, h.Name)
		if h.Typeflag == tar.TypeDir {
			if err := os.MkdirAll(p, os.FileMode(h.Mode)&os.ModePerm); err != nil {
				t.Fatal(err)
			}
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, os.FileMode(h.Mode)&os.ModePerm); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("chroot", root, "/bin/program").CombinedOutput(); err != nil {
		t.Fatalf("the binary in a root with only %d libraries: %v\n%s", len(libs), err, out)
	}
}
