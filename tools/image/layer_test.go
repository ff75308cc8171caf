package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
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
