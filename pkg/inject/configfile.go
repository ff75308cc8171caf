package inject

import (
	"fmt"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/hangup-dev/hangup/pkg/keepalive"
)

// FileConfig is the YAML file of sidecar defaults that the chart renders
// into a ConfigMap (key sidecar.yaml) and `sidecar inject --sidecar-config` reads.
// Every field is optional and falls back to DefaultConfig; the field names
// match the chart's values under `sidecar:` plus image and uid.
type FileConfig struct {
	Image            string                       `json:"image"`
	InitImage        string                       `json:"initImage"`
	ImagePullPolicy  corev1.PullPolicy            `json:"imagePullPolicy"`
	BinaryPath       string                       `json:"binaryPath"`
	UID              *int64                       `json:"uid"`
	ProxyPort        int32                        `json:"proxyPort"`
	AdminPort        int32                        `json:"adminPort"`
	NotifyAddr       string                       `json:"notifyAddr"`
	NotifyHeaders    []string                     `json:"notifyHeaders"`
	WatchAddr        string                       `json:"watchAddr"`
	KeepaliveTime    string                       `json:"keepaliveTime"`
	KeepaliveTimeout string                       `json:"keepaliveTimeout"`
	RTTInterval      string                       `json:"rttInterval"`
	RTTHeader        *bool                        `json:"rttHeader"`
	Mode             Mode                         `json:"mode"`
	RedirectBackend  string                       `json:"redirectBackend"`
	Resources        *corev1.ResourceRequirements `json:"resources"`
	OTLPEndpoint     string                       `json:"otlpEndpoint"`
}

// LoadConfig reads a FileConfig from path over DefaultConfig and validates
// the result. Unknown keys are errors, so a misspelt value is not ignored.
func LoadConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read sidecar config: %w", err)
	}
	var f FileConfig
	if err := yaml.UnmarshalStrict(b, &f); err != nil {
		return Config{}, fmt.Errorf("parse sidecar config %s: %w", path, err)
	}
	c := DefaultConfig(f.Image)
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&c.InitImage, f.InitImage)
	set(&c.BinaryPath, f.BinaryPath)
	set(&c.NotifyAddr, f.NotifyAddr)
	set(&c.RedirectBackend, f.RedirectBackend)
	set(&c.OTLPEndpoint, f.OTLPEndpoint)
	if f.ImagePullPolicy != "" {
		c.ImagePullPolicy = f.ImagePullPolicy
	}
	if f.UID != nil {
		c.UID = *f.UID
	}
	if f.ProxyPort != 0 {
		c.ProxyPort = f.ProxyPort
	}
	if f.AdminPort != 0 {
		c.AdminPort = f.AdminPort
	}
	for _, h := range f.NotifyHeaders {
		if !isLowerToken(h) {
			return Config{}, fmt.Errorf("sidecar config %s: notifyHeaders entry %q: want a lower-case header name", path, h)
		}
	}
	if !checkWatchAddr(f.WatchAddr) {
		return Config{}, fmt.Errorf("sidecar config %s: watchAddr %q: want %s", path, f.WatchAddr, watchAddrWant)
	}
	c.WatchAddr = f.WatchAddr
	if len(f.NotifyHeaders) > 0 {
		c.NotifyHeaders = f.NotifyHeaders
	}
	for _, d := range []struct {
		name string
		v    string
		dst  *time.Duration
	}{{"keepaliveTime", f.KeepaliveTime, &c.KeepaliveTime}, {"keepaliveTimeout", f.KeepaliveTimeout, &c.KeepaliveTimeout}} {
		if d.v == "" {
			continue
		}
		v, err := time.ParseDuration(d.v)
		if err != nil || v < keepalive.MinDuration {
			return Config{}, fmt.Errorf("sidecar config %s: %s %q: want a Go duration of at least %s such as 30s", path, d.name, d.v, keepalive.MinDuration)
		}
		*d.dst = v
	}
	if err := loadRTT(f, &c); err != nil {
		return Config{}, fmt.Errorf("sidecar config %s: %w", path, err)
	}
	if f.Mode != "" {
		c.Mode = f.Mode
	}
	if f.Resources != nil {
		c.Resources = *f.Resources
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("sidecar config %s: %w", path, err)
	}
	return c, nil
}
