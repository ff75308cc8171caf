package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// epoch is the time stamped on every file and on the image: a fixed time is
// what makes two builds of the same binaries the same digest.
var epoch = time.Unix(0, 0).UTC()

// file is one regular file of an image's only layer.
type file struct {
	// path is absolute in the image.
	path string
	// src is the file on this machine to copy; empty with data set.
	src  string
	data []byte
	mode int64
}

// spec is an image: one layer of files, and the config a runtime reads.
type spec struct {
	// ref names the image in the archive and, once imported, in containerd.
	ref        string
	files      []file
	entrypoint []string
	cmd        []string
	// user is uid:gid; a number, so that runAsNonRoot can check it without
	// an /etc/passwd lookup.
	user  string
	ports []int
	env   []string
}

// nonrootFiles are the /etc/passwd and /etc/group of distroless's nonroot
// images: the uid and gid 65532 have a name, for tools that look it up.
func nonrootFiles(uid int) []file {
	id := strconv.Itoa(uid)
	return []file{
		{path: "/etc/passwd", mode: 0o644, data: []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:" + id + ":" + id + ":nonroot:/home/nonroot:/sbin/nologin\n")},
		{path: "/etc/group", mode: 0o644, data: []byte("root:x:0:\nnonroot:x:" + id + ":\n")},
	}
}

// layer writes the tar of the spec's files, with their parent directories,
// in path order, owned by root, stamped with epoch, and /tmp world-writable.
func (s spec) layer() ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{"/tmp": true}
	files := append([]file(nil), s.files...)
	sort.Slice(files, func(i, j int) bool { return files[i].path < files[j].path })
	for _, f := range files {
		for d := path.Dir(f.path); d != "/"; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	names := make([]string, 0, len(dirs))
	for d := range dirs {
		names = append(names, d)
	}
	sort.Strings(names)
	for _, d := range names {
		mode := int64(0o755)
		if d == "/tmp" {
			mode = 0o1777
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d[1:] + "/", Mode: mode, ModTime: epoch, Format: tar.FormatPAX}); err != nil {
			return nil, err
		}
	}
	for _, f := range files {
		data := f.data
		if f.src != "" {
			var err error
			if data, err = os.ReadFile(f.src); err != nil {
				return nil, fmt.Errorf("image %s: file %s: %w", s.ref, f.path, err)
			}
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.path[1:], Mode: f.mode, Size: int64(len(data)), ModTime: epoch, Format: tar.FormatPAX}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// image builds the OCI image of the spec.
func (s spec) image() (v1.Image, error) {
	data, err := s.layer()
	if err != nil {
		return nil, err
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	})
	if err != nil {
		return nil, fmt.Errorf("image %s: layer: %w", s.ref, err)
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		return nil, fmt.Errorf("image %s: layer: %w", s.ref, err)
	}
	cfg := v1.Config{
		Entrypoint: s.entrypoint,
		Cmd:        s.cmd,
		User:       s.user,
		Env:        append([]string{"PATH=/usr/local/bin:/usr/bin:/bin"}, s.env...),
	}
	if len(s.ports) > 0 {
		cfg.ExposedPorts = map[string]struct{}{}
		for _, p := range s.ports {
			cfg.ExposedPorts[strconv.Itoa(p)+"/tcp"] = struct{}{}
		}
	}
	img, err = mutate.Config(img, cfg)
	if err != nil {
		return nil, fmt.Errorf("image %s: config: %w", s.ref, err)
	}
	img, err = mutate.CreatedAt(img, v1.Time{Time: epoch})
	if err != nil {
		return nil, fmt.Errorf("image %s: created: %w", s.ref, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf.OS, cf.Architecture = "linux", goarch()
	return mutate.ConfigFile(img, cf)
}

// writeArchive writes the images as one docker-archive tarball (what
// `ctr images import` and `docker load` read), each under its reference.
func writeArchive(out string, imgs map[string]v1.Image) error {
	refs := map[name.Reference]v1.Image{}
	for r, img := range imgs {
		tag, err := name.NewTag(r)
		if err != nil {
			return fmt.Errorf("image reference %q: %w", r, err)
		}
		refs[tag] = img
	}
	tmp := out + ".tmp"
	if err := tarball.MultiRefWriteToFile(tmp, refs); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", out, err)
	}
	return os.Rename(tmp, out)
}

// sharedLibs returns the shared libraries and the loader that ldd lists for
// binary, each at the path the loader looks for it, with the contents of
// the file that path resolves to on this machine.
func sharedLibs(binary string) ([]file, error) {
	out, err := exec.Command("ldd", binary).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", binary, err)
	}
	var files []file
	for _, line := range strings.Split(string(out), "\n") {
		// "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or the
		// loader, "/lib64/ld-linux-x86-64.so.2 (0x...)"; the vDSO has no file.
		f := strings.Fields(line)
		var p string
		switch {
		case len(f) == 4 && f[1] == "=>":
			p = f[2]
		case len(f) == 2 && strings.HasPrefix(f[0], "/"):
			p = f[0]
		default:
			continue
		}
		files = append(files, file{path: p, src: p, mode: 0o755})
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("ldd %s named no libraries: %q", binary, out)
	}
	return files, nil
}
