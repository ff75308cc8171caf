package inject

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"sort"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	admregv1 "k8s.io/client-go/kubernetes/typed/admissionregistration/v1"
)

// SelfSigned is a CA made at start and the serving certificate it signed,
// for the mode without cert-manager: nothing to install, and the CA goes
// into the webhook configuration's caBundle.
type SelfSigned struct {
	// CAPEM is the CA certificate, PEM encoded, for caBundle.
	CAPEM []byte
	// Cert is the serving certificate with its key and the CA in the chain.
	Cert tls.Certificate
	// NotAfter is when both expire.
	NotAfter time.Time
}

// NewSelfSigned makes a CA and a serving certificate for hosts (DNS names or
// IP addresses), valid from now-1h (clock skew) for validity.
func NewSelfSigned(hosts []string, now time.Time, validity time.Duration) (*SelfSigned, error) {
	if len(hosts) == 0 {
		return nil, fmt.Errorf("self-signed certificate: no host names")
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	notBefore, notAfter := now.Add(-time.Hour), now.Add(validity)
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "hangup-inject-ca " + now.UTC().Format(time.RFC3339)},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate serving key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: hosts[0]},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("create serving certificate: %w", err)
	}
	return &SelfSigned{
		CAPEM:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		Cert:     tls.Certificate{Certificate: [][]byte{der, caDER}, PrivateKey: key},
		NotAfter: notAfter,
	}, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

// maxBundleCAs bounds a caBundle. Every replica (and every restart) of the
// webhook has its own CA, and the API server must trust whichever replica
// the Service picks, so a bundle holds several; expired ones and the oldest
// beyond this count are dropped.
const maxBundleCAs = 8

// MergeBundle returns bundle with ca added first, expired and duplicate
// certificates removed, the rest newest first, at most maxBundleCAs.
// Unparseable PEM blocks in bundle are dropped.
func MergeBundle(bundle, ca []byte, now time.Time) []byte {
	type entry struct {
		der       []byte
		notBefore time.Time
	}
	var others []entry
	own, _ := pem.Decode(ca)
	rest := bundle
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil || b.Type != "CERTIFICATE" || now.After(c.NotAfter) {
			continue
		}
		if own != nil && bytes.Equal(b.Bytes, own.Bytes) {
			continue
		}
		dup := false
		for _, o := range others {
			dup = dup || bytes.Equal(o.der, b.Bytes)
		}
		if !dup {
			others = append(others, entry{b.Bytes, c.NotBefore})
		}
	}
	sort.SliceStable(others, func(i, j int) bool { return others[i].notBefore.After(others[j].notBefore) })
	var out bytes.Buffer
	n := 0
	if own != nil {
		pem.Encode(&out, own)
		n++
	}
	for _, o := range others {
		if n == maxBundleCAs {
			break
		}
		pem.Encode(&out, &pem.Block{Type: "CERTIFICATE", Bytes: o.der})
		n++
	}
	return out.Bytes()
}

// EnsureCABundle adds ca to the caBundle of every webhook in the
// MutatingWebhookConfiguration name, when it is not there yet. The patch
// carries a test of resourceVersion, so two replicas patching at once cannot
// drop each other's CA: the loser retries on the fresh object.
func EnsureCABundle(ctx context.Context, client admregv1.MutatingWebhookConfigurationsGetter, name string, ca []byte, now time.Time) error {
	const attempts = 5
	var err error
	for i := range attempts {
		if err = ensureCABundleOnce(ctx, client, name, ca, now); err == nil {
			return nil
		}
		if ctx.Err() != nil {
			break
		}
		// A short pause before reading the object again; a conflict with
		// the other replica resolves on the next read.
		t := time.NewTimer(time.Duration(i+1) * 100 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
	return fmt.Errorf("patch caBundle of mutatingwebhookconfiguration %s: %w", name, err)
}

func ensureCABundleOnce(ctx context.Context, client admregv1.MutatingWebhookConfigurationsGetter, name string, ca []byte, now time.Time) error {
	mwc, err := client.MutatingWebhookConfigurations().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if len(mwc.Webhooks) == 0 {
		return fmt.Errorf("it has no webhooks")
	}
	ops := []Operation{{Op: "test", Path: "/metadata/resourceVersion", Value: mwc.ResourceVersion}}
	for i, wh := range mwc.Webhooks {
		merged := MergeBundle(wh.ClientConfig.CABundle, ca, now)
		if !bytes.Equal(merged, wh.ClientConfig.CABundle) {
			// "add" replaces an existing member (RFC 6902 section 4.1).
			ops = append(ops, Operation{Op: "add", Path: fmt.Sprintf("/webhooks/%d/clientConfig/caBundle", i), Value: merged})
		}
	}
	if len(ops) == 1 {
		return nil
	}
	body, err := json.Marshal(ops)
	if err != nil {
		return err
	}
	_, err = client.MutatingWebhookConfigurations().Patch(ctx, name, types.JSONPatchType, body, metav1.PatchOptions{})
	return err
}
