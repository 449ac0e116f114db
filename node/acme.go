package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/duetchat/duet/configs"
)

// acmeRenewCheck is how often the certificates are looked at for
// renewal (certmagic's default; a variable for the tests, read when a
// node is built). A certificate is renewed in the last third of its
// lifetime, or when the CA's renewal info (ARI) says so.
var acmeRenewCheck = 10 * time.Minute

// acmeManager gets and renews the HTTPS certificate over ACME
// (http.acme) and answers its challenges: TLS-ALPN-01 in the HTTPS
// handshake, HTTP-01 on http.acme.http_listen, which redirects every
// other request to https://.
type acmeManager struct {
	cfg     configs.ACME
	magic   *certmagic.Config
	cache   *certmagic.Cache
	httpLn  net.Listener // http_listen; nil when ""
	httpSrv *http.Server
	log     *slog.Logger
	events  *prometheus.CounterVec
	cancel  context.CancelFunc
}

// newACME builds the manager and binds http_listen. Nothing is asked of
// the CA until start. rdb, when set (store.backend: redis), holds the
// account, certificates and locks for every node.
func newACME(c *configs.Config, log *slog.Logger, reg prometheus.Registerer, rdb redis.UniversalClient) (*acmeManager, error) {
	a := c.HTTP.ACME
	m := &acmeManager{cfg: a, log: log}
	var roots *x509.CertPool
	if a.CARootFile != "" {
		pem, err := os.ReadFile(a.CARootFile)
		if err != nil {
			return nil, fmt.Errorf("http.acme.ca_root_file: %w", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("http.acme.ca_root_file %s: no PEM certificate in it", a.CARootFile)
		}
	}
	var storage certmagic.Storage
	if rdb != nil {
		storage = newRedisStorage(rdb, c.Store.Redis.KeyPrefix)
	} else {
		if err := writableDir(a.CacheDir); err != nil {
			return nil, fmt.Errorf("http.acme.cache_dir: %w (the node keeps its ACME account and certificates there; create it for the user duet runs as, or point cache_dir elsewhere)", err)
		}
		storage = &certmagic.FileStorage{Path: a.CacheDir}
	}
	m.events = registerOrReuse(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "duet_acme_events_total",
		Help: "ACME certificate events: obtained, renewed, failed (a failure is retried with backoff).",
	}, []string{"event"}))
	for _, e := range []string{"obtained", "renewed", "failed"} {
		m.events.WithLabelValues(e)
	}
	nop := zap.NewNop()
	var magic *certmagic.Config
	m.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert:   func(certmagic.Certificate) (*certmagic.Config, error) { return magic, nil },
		RenewCheckInterval: acmeRenewCheck,
		Logger:             nop,
	})
	magic = certmagic.New(m.cache, certmagic.Config{
		Storage: storage, Logger: nop, OnEvent: m.event,
		// A client that names no host (an IP in its URL) still gets the
		// certificate, to check against what it expects.
		DefaultServerName: a.Domains[0],
	})
	httpsHost, httpsPort, _ := net.SplitHostPort(c.HTTP.Listen)
	issuer := certmagic.ACMEIssuer{
		CA: a.DirectoryURL, Email: a.Email, Agreed: true, TrustedRoots: roots,
		// The solvers bind these themselves only when nothing else does;
		// the node's own listeners hold them, so they answer.
		ListenHost:           httpsHost,
		AltTLSALPNPort:       atoiOr(httpsPort, 443),
		DisableHTTPChallenge: a.HTTPListen == "",
		Logger:               nop,
	}
	if a.HTTPListen != "" {
		_, p, _ := net.SplitHostPort(a.HTTPListen)
		issuer.AltHTTPPort = atoiOr(p, 80)
	}
	magic.Issuers = []certmagic.Issuer{certmagic.NewACMEIssuer(magic, issuer)}
	m.magic = magic
	if a.HTTPListen != "" {
		ln, err := net.Listen("tcp", a.HTTPListen)
		if err != nil {
			m.cache.Stop()
			if errors.Is(err, syscall.EADDRINUSE) {
				return nil, fmt.Errorf("http.acme.http_listen %s: %w (another web server holds the port: stop it, or set http.acme.http_listen: \"\" to use TLS-ALPN-01 on http.listen alone)", a.HTTPListen, err)
			}
			return nil, fmt.Errorf("http.acme.http_listen %s: %w", a.HTTPListen, err)
		}
		m.httpLn = ln
		m.httpSrv = &http.Server{
			Handler:           magic.Issuers[0].(*certmagic.ACMEIssuer).HTTPChallengeHandler(redirectHTTPS(httpsPort)),
			ReadHeaderTimeout: readHeaderTimeout,
			ReadTimeout:       readTimeout,
			WriteTimeout:      writeTimeout,
			IdleTimeout:       c.HTTP.IdleTimeout,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		}
	}
	return m, nil
}

// writableDir makes dir if needed and proves a file can be written in it.
func writableDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".duet-write-check-*")
	if err != nil {
		return fmt.Errorf("%s is not writable: %w", dir, err)
	}
	name := f.Name()
	_ = f.Close()
	return os.Remove(name)
}

func atoiOr(s string, def int) int {
	if n, err := strconv.Atoi(s); err == nil && n > 0 {
		return n
	}
	return def
}

// redirectHTTPS sends every plain-HTTP request to the same path on
// https://, on the HTTPS port when it is not 443.
func redirectHTTPS(httpsPort string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if host == "" {
			http.Error(w, "use https://", http.StatusBadRequest)
			return
		}
		if httpsPort != "" && httpsPort != "443" {
			host = net.JoinHostPort(host, httpsPort)
		}
		http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), http.StatusPermanentRedirect)
	})
}

// start serves http_listen and has the certificates obtained (or loaded
// from the cache) and kept renewed in the background; handshakes before
// the first one is ready fail.
func (m *acmeManager) start() error {
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	if m.httpSrv != nil {
		go func() {
			if err := m.httpSrv.Serve(m.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				m.log.Error("http.acme.http_listen stopped", "err", err)
			}
		}()
	}
	if err := m.magic.ManageAsync(ctx, m.cfg.Domains); err != nil {
		return fmt.Errorf("http.acme: managing %v: %w", m.cfg.Domains, err)
	}
	m.log.Info("ACME certificate management started", "domains", m.cfg.Domains, "directory", m.cfg.DirectoryURL,
		"http_01", m.cfg.HTTPListen)
	return nil
}

// close stops renewals and the HTTP-01 listener.
func (m *acmeManager) close(ctx context.Context) {
	if m.cancel != nil {
		m.cancel()
	}
	if m.httpSrv != nil {
		_ = m.httpSrv.Shutdown(ctx)
	}
	if m.httpLn != nil {
		// Shutdown closes only a listener it served: a node that never
		// served still holds it.
		_ = m.httpLn.Close()
	}
	m.cache.Stop()
}

// getCertificate serves the managed certificate, and the TLS-ALPN-01
// challenge certificate while one is being answered.
func (m *acmeManager) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return m.magic.GetCertificate(hello)
}

// event logs what certmagic reports and counts it.
func (m *acmeManager) event(_ context.Context, event string, data map[string]any) error {
	switch event {
	case "cert_obtained":
		kind := "obtained"
		if r, _ := data["renewal"].(bool); r {
			kind = "renewed"
		}
		m.events.WithLabelValues(kind).Inc()
		m.log.Info("ACME certificate "+kind, "domain", data["identifier"], "issuer", data["issuer"])
	case "cert_failed":
		m.events.WithLabelValues("failed").Inc()
		m.log.Error("ACME certificate not obtained; retrying later", "domain", data["identifier"],
			"renewal", data["renewal"], "err", data["error"])
	}
	return nil
}
