package testtool

import (
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
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// pebbleVersion is the Let's Encrypt test CA the ACME tests run. It is
// built from the Go module proxy into the test's temp dir (the build
// cache makes later builds a link step), so CI needs nothing but Go.
const pebbleVersion = "v2.10.3"

// PebbleOptions configure a Pebble.
type PebbleOptions struct {
	// HTTPPort and TLSPort are where pebble's validation authority
	// checks HTTP-01 and TLS-ALPN-01 challenges: the node's ports.
	HTTPPort, TLSPort int
	// Validity is the lifetime of the certificates it issues; 0 = 90 days.
	Validity time.Duration
	// Address is what the test DNS answers for every name; "" = 127.0.0.1.
	Address string
	// Wrap prefixes both commands (e.g. ip netns exec NS).
	Wrap []string
	// Get fetches a URL from where pebble runs, trusting caFile; nil =
	// an in-process client (pebble on this host's loopback).
	Get func(url, caFile string) ([]byte, error)
}

// Pebble is a running pebble ACME server whose validation authority asks
// pebble-challtestsrv's DNS for every name. Both stop at cleanup.
type Pebble struct {
	// Directory is the ACME directory URL.
	Directory string
	// CAFile is the PEM root pebble's own HTTPS (the directory) is
	// served under: http.acme.ca_root_file.
	CAFile string
	mgmt   string
	get    func(url, caFile string) ([]byte, error)
}

// BuildPebble builds pebble and pebble-challtestsrv into dir.
func BuildPebble(t testing.TB, dir string) (pebble, challtestsrv string) {
	t.Helper()
	Require(t, "go")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "install",
		"github.com/letsencrypt/pebble/v2/cmd/pebble@"+pebbleVersion,
		"github.com/letsencrypt/pebble/v2/cmd/pebble-challtestsrv@"+pebbleVersion)
	cmd.Dir = dir // outside this module: pkg@version builds on its own
	cmd.Env = append(os.Environ(), "GOBIN="+dir, "GOFLAGS=", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building pebble %s from the Go module proxy: %v\n%s", pebbleVersion, err, out)
	}
	return filepath.Join(dir, "pebble"), filepath.Join(dir, "pebble-challtestsrv")
}

// StartPebble builds and runs pebble with its DNS, and waits until the
// directory answers.
func StartPebble(t testing.TB, opt PebbleOptions) *Pebble {
	t.Helper()
	dir := t.TempDir()
	pebbleBin, challBin := BuildPebble(t, dir)
	if opt.Address == "" {
		opt.Address = "127.0.0.1"
	}
	caFile, certFile, keyFile := writeLoopbackCA(t, dir)
	acmePort, mgmtPort, dnsPort, challMgmt := FreePort(t), FreePort(t), FreePort(t), FreePort(t)
	profile := map[string]any{"description": "duet tests"}
	if opt.Validity > 0 {
		profile["validityPeriod"] = int(opt.Validity / time.Second)
	}
	conf, _ := json.Marshal(map[string]any{"pebble": map[string]any{
		"listenAddress":                  "127.0.0.1:" + strconv.Itoa(acmePort),
		"managementListenAddress":        "127.0.0.1:" + strconv.Itoa(mgmtPort),
		"certificate":                    certFile,
		"privateKey":                     keyFile,
		"httpPort":                       opt.HTTPPort,
		"tlsPort":                        opt.TLSPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
		"retryAfter":                     map[string]int{"authz": 1, "order": 1},
		"keyAlgorithm":                   "ecdsa",
		"profiles":                       map[string]any{"default": profile},
	}})
	confFile := filepath.Join(dir, "pebble.json")
	if err := os.WriteFile(confFile, conf, 0o600); err != nil {
		t.Fatal(err)
	}
	dns := "127.0.0.1:" + strconv.Itoa(dnsPort)
	run(t, opt.Wrap, dir, nil, challBin, "-dnsserver", dns, "-management", "127.0.0.1:"+strconv.Itoa(challMgmt),
		"-http01", "", "-https01", "", "-doh", "", "-tlsalpn01", "",
		"-defaultIPv4", opt.Address, "-defaultIPv6", "")
	// The validation authority checks every challenge for real; it only
	// skips its random pause and the nonce rejections (tests stay quick
	// and deterministic). A renewal solves a challenge again.
	run(t, opt.Wrap, dir, []string{"PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0"},
		pebbleBin, "-config", confFile, "-dnsserver", dns)
	p := &Pebble{
		Directory: fmt.Sprintf("https://127.0.0.1:%d/dir", acmePort),
		CAFile:    caFile,
		mgmt:      fmt.Sprintf("https://127.0.0.1:%d", mgmtPort),
		get:       opt.Get,
	}
	if p.get == nil {
		p.get = getTrusting
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := p.get(p.Directory, caFile)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pebble's directory never answered: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return p
}

// RootPEM is the root every certificate pebble issues chains to (it
// makes a new one each run).
func (p *Pebble) RootPEM(t testing.TB) []byte {
	t.Helper()
	b, err := p.get(p.mgmt+"/roots/0", p.CAFile)
	if err != nil {
		t.Fatalf("pebble's root: %v", err)
	}
	return b
}

// run starts a background process for the test's lifetime; its output
// goes to the test log on failure.
func run(t testing.TB, wrap []string, dir string, env []string, bin string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	full := append(append(append([]string{}, wrap...), bin), args...)
	cmd := exec.CommandContext(ctx, full[0], full[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("starting %s: %v", filepath.Base(bin), err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(bin), out.String())
		}
	})
}

type lockedBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b = append(l.b, p...)
	return len(p), nil
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b)
}

func getTrusting(url, caFile string) ([]byte, error) {
	pemBytes, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemBytes)
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return b, nil
}

// writeLoopbackCA makes a CA and a certificate for 127.0.0.1 and
// localhost signed by it, for pebble's own HTTPS.
func writeLoopbackCA(t testing.TB, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "duet test ACME directory CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	write := func(name, typ string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("cert.pem", "CERTIFICATE", der), write("key.pem", "EC PRIVATE KEY", keyDER)
}
