// Package node wires duet's roles into one running process: it builds the
// store, the matcher and the signalling hub from a Config, serves the HTTP
// endpoints, and shuts everything down in order on a signal.
package node

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/redis/go-redis/v9"

	"github.com/duetchat/duet/configs"
	"github.com/duetchat/duet/internal/addrkey"
	"github.com/duetchat/duet/matcher"
	"github.com/duetchat/duet/moderation"
	"github.com/duetchat/duet/sfu"
	"github.com/duetchat/duet/signal"
	"github.com/duetchat/duet/turn"
	"github.com/duetchat/duet/web"
)

// Node is one running duet process.
type Node struct {
	cfg     *configs.Config
	log     *slog.Logger
	reg     *prometheus.Registry
	store   matcher.Store
	matcher *matcher.Matcher
	hub     *signal.Hub
	mux     *http.ServeMux
	paths   []MediaPaths // relaying roles, asked for each room's figures
	turn    *turn.Server // nil when roles.turn is false
	redis   *shared      // nil on the memory store
	pathm   *pathMetrics
	sfu     *sfu.SFU // nil when roles.sfu is false
	// moderator keeps reports and bans (shared through Redis on a cluster,
	// where banCache answers checks from a copy kept fresh by redisBans)
	moderator moderator
	redisBans *moderation.RedisStore
	banCache  *moderation.Cache
	// revoker ends the TURN credentials of every room that ends
	revoker *revoker
	// pow is the proof-of-work gate before joins; nil unless bots.pow
	pow *powGate
	// opsMux serves /metrics and /debug/pprof/ on metricsLn, bound at
	// metrics.listen; both nil when that is empty (they are on mux then)
	opsMux    *http.ServeMux
	metricsLn net.Listener
	// httpsTLS serves https:// on the HTTP listener (http.acme, or
	// http's certificate files); nil = plain HTTP. httpsHost names the
	// certificate's host, for the turns: URL on the HTTPS port.
	httpsTLS  *tls.Config
	httpsHost string
	acme      *acmeManager // nil unless http.acme.enabled

	mu      sync.Mutex
	running bool // the matcher loop is up
}

// New builds a node from cfg; nothing listens until Serve.
func New(cfg *configs.Config, log *slog.Logger) (*Node, error) {
	if cfg.Store.Backend == "memory" && (!cfg.Roles.Matcher || !cfg.Roles.Signal) {
		return nil, errors.New("roles: with the memory store one node must run both the matcher and signal roles")
	}
	// configs.Load folds the old switches into the roles; a config built
	// by hand that still holds one would be silently misread.
	if cfg.TURN.Enabled != nil || cfg.SFU.Enabled != nil || cfg.SFU.Mode == "off" {
		return nil, errors.New("turn.enabled, sfu.enabled and sfu.mode: off are deprecated: set roles.turn / roles.sfu (configs.Load maps them)")
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	n := &Node{cfg: cfg, log: log, reg: reg, mux: http.NewServeMux()}
	var bus signal.Bus
	var modStore moderation.Store
	var salt []byte
	switch cfg.Store.Backend {
	case "memory":
		n.store = matcher.NewMemoryStore()
		modStore = moderation.NewMemoryStore(10000)
	case "redis":
		sh, err := openRedis(cfg.Store.Redis, log, reg, func() {
			log.Warn("Redis came back without this node's state; queueing the waiting again")
			if n.hub != nil {
				n.hub.StoreReset()
			}
		}, func(env signal.Envelope) {
			if n.hub != nil {
				n.hub.Undelivered(env)
			}
		})
		if err != nil {
			return nil, err
		}
		n.redis, n.store, bus = sh, sh.store, sh.bus
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		if salt, err = sharedSalt(ctx, sh.rdb, cfg.Store.Redis.KeyPrefix); err != nil {
			// Redis is not answering yet: this node hashes on its own salt.
			log.Warn("no shared IP salt; this node's IP hashes differ from the others'", "err", err)
		}
		cancel()
		n.redisBans = moderation.NewRedisStore(sh.rdb, cfg.Store.Redis.KeyPrefix, 10000)
		modStore = n.redisBans
	default:
		return nil, fmt.Errorf("store.backend %q: want memory or redis", cfg.Store.Backend)
	}
	moderator := moderation.NewModerator(modStore, moderation.Policy{
		ReportsToBan:       cfg.Moderation.ReportsToBan,
		ShieldReportsToBan: cfg.Moderation.ShieldReportsToBan,
		Window:             cfg.Moderation.ReportWindow,
		BanDuration:        cfg.Moderation.BanDuration,
	}, nil, nil)
	n.moderator = moderator
	if n.redisBans != nil {
		// On Redis, checks at connect and queue read a local copy of the bans.
		n.banCache = moderation.NewCache(moderator, log.With("role", "moderation"))
		n.moderator = n.banCache
	}
	static := signal.StaticICE(cfg.Signal.ICEServers)
	var ice signal.ICEProvider = static
	keys, err := addrkey.New(cfg.Limits.IPv6Prefix)
	if err != nil {
		n.Close()
		return nil, fmt.Errorf("limits.ipv6_prefix: %w", err)
	}
	gate := &turnGate{mod: n.moderator, keys: keys}
	if err := n.setupHTTPS(); err != nil {
		n.Close()
		return nil, err
	}
	var revoke func(string) // nil: no relay here
	if cfg.Roles.TURN {
		srv, err := startTURN(cfg, log.With("role", "turn"), reg, gate, n.httpsTLS)
		if err != nil {
			n.Close()
			return nil, err
		}
		n.turn = srv
		revoke = srv.Revoke
		n.paths = append(n.paths, turnPaths{srv})
		ice = relayICE{turn: srv, extra: static, log: log.With("role", "turn")}
	}
	var media signal.MediaServer
	if cfg.Roles.SFU {
		s, err := startSFU(cfg, log.With("role", "sfu"), reg)
		if err != nil {
			n.Close()
			return nil, err
		}
		n.sfu = s
		n.paths = append(n.paths, sfuPaths{s})
		media = sfuServer{s}
	}
	var trusted []netip.Prefix
	for _, p := range cfg.HTTP.TrustedProxies {
		pr, err := configs.ParsePrefix(p) // validated by configs
		if err == nil {
			trusted = append(trusted, pr)
		}
	}
	// The hub is the matcher's notifier and the matcher is the hub's queue;
	// notify through a small forwarder to break the construction cycle.
	var rdb redis.UniversalClient
	if n.redis != nil {
		rdb = n.redis.rdb
	}
	// The memory store lives in this process and is never away: a join
	// it is slow to answer waits on CPU, so it must not be told
	// `unavailable` as a silent Redis's would.
	storeSeen := time.Now
	if n.redis != nil {
		storeSeen = n.redis.metrics.LastReply
	}
	n.revoker = newRevoker(revoke, rdb, cfg.Store.Redis.KeyPrefix, log.With("role", "turn"))
	if n.pow, err = n.newPOW(); err != nil {
		n.Close()
		return nil, err
	}
	fwd := &notifier{}
	n.matcher = matcher.New(n.store, fwd, matcher.Options{
		InterestTimeout: cfg.Matcher.InterestTimeout,
		AvoidRepeat:     cfg.Matcher.AvoidRepeat,
		Logger:          log.With("role", "matcher"),
		Registerer:      reg,
	})
	hub, err := signal.NewHub(signal.Options{
		Signal:         cfg.Signal,
		Limits:         cfg.Limits,
		AllowedOrigins: cfg.HTTP.AllowedOrigins,
		TrustedProxies: trusted,
		Salt:           salt,
		Queue:          n.matcher,
		ICE:            ice,
		RelayOnly:      n.turn != nil && cfg.TURN.Mode == "always",
		TURN:           n.turn != nil,
		Logger:         log.With("role", "signal"),
		Registerer:     reg,
		Bus:            bus,
		Moderation:     n.moderator,
		SFU:            media,
		SFUAlways:      media != nil && cfg.SFU.Mode == "always",
		Rooms:          n.revoker,
		StoreSeen:      storeSeen,
		Shield:         cfg.Moderation.Shield,
		Gate:           n.pow.gatekeeper(),
	})
	if err != nil {
		n.Close()
		return nil, fmt.Errorf("building signal hub: %w", err)
	}
	fwd.hub = hub
	n.hub = hub
	hash := hub.HashIP
	gate.hash.Store(&hash)
	if err := n.registerWaiting(); err != nil {
		n.Close()
		return nil, err
	}
	if err := n.registerReady(); err != nil {
		n.Close()
		return nil, err
	}
	if n.pathm, err = newPathMetrics(n); err != nil {
		n.Close()
		return nil, fmt.Errorf("registering path metrics: %w", err)
	}
	n.profileLocks()
	if err := n.listenMetrics(); err != nil {
		n.Close()
		return nil, err
	}
	logNetwork(log, n.network())
	n.routes()
	return n, nil
}

// Close releases what New bound (the TURN relay's and SFU's sockets, the
// metrics listener). Serve calls it on the way out; call it yourself for
// a node that never served.
func (n *Node) Close() {
	n.closeMetrics()
	if n.acme != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		n.acme.close(ctx)
		cancel()
	}
	if n.sfu != nil {
		if err := n.sfu.Close(); err != nil {
			n.log.Warn("closing the SFU", "err", err)
		}
	}
	if n.redis != nil {
		if err := n.redis.close(); err != nil {
			n.log.Warn("closing Redis", "err", err)
		}
	}
	if n.turn != nil {
		if err := n.turn.Close(); err != nil {
			n.log.Warn("closing TURN relay", "err", err)
		}
	}
}

type notifier struct{ hub *signal.Hub }

func (f *notifier) Matched(m matcher.Match) { f.hub.Matched(m) }

func (f *notifier) MatchedAll(ms []matcher.Match) { f.hub.MatchedAll(ms) }

func (n *Node) registerWaiting() error {
	for _, mode := range []string{matcher.ModeVideo, matcher.ModeText} {
		g := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "duet_waiting", Help: "Sessions waiting for a stranger, by mode.",
			ConstLabels: prometheus.Labels{"mode": mode},
		}, func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			c, err := n.matcher.Counts(ctx)
			if err != nil {
				return 0
			}
			return float64(c[mode])
		})
		if err := n.reg.Register(g); err != nil {
			return fmt.Errorf("registering waiting gauge: %w", err)
		}
	}
	return nil
}

func (n *Node) routes() {
	if n.cfg.Roles.Signal {
		n.mux.Handle("GET /ws", n.hub)
	}
	n.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"ok": true})
	})
	n.mux.HandleFunc("GET /readyz", n.readyz)
	n.mux.HandleFunc("GET /api/stats", n.stats)
	n.mux.HandleFunc("GET /api/site", n.site)
	n.mux.HandleFunc("GET /api/safety", n.adminOnly(n.safety))
	n.mux.HandleFunc("GET /api/rooms", n.adminOnly(n.listRooms))
	n.mux.HandleFunc("GET /api/rooms/{room}", n.adminOnly(n.getRoom))
	n.mux.HandleFunc("GET /api/node", n.adminOnly(n.apiNode))
	n.mux.HandleFunc("GET /api/bans", n.adminOnly(n.listBans))
	if n.pow != nil {
		n.pow.clientKey = n.hub.ClientKey
		n.mux.HandleFunc("GET /api/pow/challenge", n.pow.serveChallenge)
	}
	n.mux.HandleFunc("POST /api/bans", n.adminOnly(n.addBan))
	n.mux.HandleFunc("DELETE /api/bans/{id}", n.adminOnly(n.liftBan))
	// /metrics and the profiles: on their own listener when
	// metrics.listen is set, else here.
	ops := n.mux
	if n.opsMux != nil {
		ops = n.opsMux
	}
	n.opsRoutes(ops)
	// The live rooms page; its data comes from the admin API (token).
	n.mux.HandleFunc("GET /admin", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/admin.html", http.StatusFound)
	})
	n.mux.Handle("GET /", web.Handler())
}

// Handler is the node's whole HTTP surface.
func (n *Node) Handler() http.Handler { return n.mux }

func (n *Node) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	// The public body says what is wrong; the errors behind it name
	// internal addresses (Redis's), so only the admin token reads them.
	problems := n.readiness(ctx, n.isAdmin(r))
	if len(problems) > 0 {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"ready": false, "problems": problems})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ready": true, "problems": problems})
}

// readiness lists what keeps the node from taking users; with detail the
// errors behind each problem are named.
func (n *Node) readiness(ctx context.Context, detail bool) []string {
	n.mu.Lock()
	running := n.running
	n.mu.Unlock()
	problems := []string{}
	problem := func(what string, err error) {
		if detail && err != nil {
			what += ": " + err.Error()
		}
		problems = append(problems, what)
	}
	if !running {
		problem("matcher not running", nil)
	}
	if n.hub.Closing() {
		problem("shutting down", nil)
	}
	if _, err := n.store.Counts(ctx); err != nil {
		problem("store unreachable", err)
	} else if n.redis != nil {
		if err := n.redis.bus.Ready(ctx); err != nil {
			problem("node-to-node bus unreachable", err)
		}
	}
	return problems
}

// registerReady exports what /readyz answers, so that an alert can fire
// on a node no load balancer probes.
func (n *Node) registerReady() error {
	g := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "duet_ready", Help: "1 while the node would answer /readyz with 200, else 0.",
	}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if len(n.readiness(ctx, false)) > 0 {
			return 0
		}
		return 1
	})
	if err := n.reg.Register(g); err != nil {
		return fmt.Errorf("registering ready gauge: %w", err)
	}
	return nil
}

func (n *Node) stats(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	waiting, err := n.matcher.Counts(ctx)
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": "store unavailable"})
		return
	}
	st := n.hub.Stats()
	writeJSON(w, http.StatusOK, map[string]any{"online": st.Online, "rooms": st.Rooms, "waiting": waiting})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// Serve runs the node on ln until ctx ends, then drains: it stops taking
// connections, tells clients to reconnect, and waits up to
// http.shutdown_grace for their queues to flush.
func (n *Node) Serve(ctx context.Context, ln net.Listener) error {
	runCtx, stop := context.WithCancel(context.Background())
	defer stop()
	var wg sync.WaitGroup
	run := func(f func(context.Context) error) {
		wg.Add(1)
		go func() { defer wg.Done(); _ = f(runCtx) }()
	}
	if n.cfg.Roles.Matcher {
		run(n.matcher.Run)
	}
	run(n.hub.Run)
	run(n.pathm.sample)
	if n.redis != nil {
		run(n.redis.store.Run)
		run(func(ctx context.Context) error { return n.banCache.Run(ctx, n.redisBans.Watch, 30*time.Second) })
		run(func(ctx context.Context) error { return n.redis.bus.Run(ctx, n.hub.Deliver) })
		run(n.revoker.run)
	}
	n.mu.Lock()
	n.running = true
	n.mu.Unlock()

	srv, lim := n.httpServer(ln)
	ln = n.httpsListener(lim, srv.ErrorLog)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	n.log.Info("duet listening", "addr", ln.Addr().String(), "https", n.httpsTLS != nil, "store", n.cfg.Store.Backend)
	if n.acme != nil {
		if err := n.acme.start(); err != nil {
			n.log.Error("ACME not started", "err", err)
		}
	}
	metrics := n.serveMetrics()

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	n.log.Info("shutting down", "grace", n.cfg.HTTP.ShutdownGrace)
	drainCtx, cancel := context.WithTimeout(context.Background(), n.cfg.HTTP.ShutdownGrace)
	defer cancel()
	// Stop taking new connections first; hijacked WebSockets are not
	// tracked by http.Server, so the hub drains those itself.
	_ = srv.Shutdown(drainCtx)
	if err := n.hub.Shutdown(drainCtx); err != nil {
		n.log.Warn("drain incomplete", "err", err)
	}
	// /metrics stayed up through the drain, for watching it.
	metrics.shutdown(drainCtx)
	n.mu.Lock()
	n.running = false
	n.mu.Unlock()
	stop()
	wg.Wait()
	n.Close()
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return fmt.Errorf("http server: %w", serveErr)
	}
	return nil
}
