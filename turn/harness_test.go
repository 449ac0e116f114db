package turn

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/duetchat/duet/configs"
	"github.com/duetchat/duet/internal/testtool"
)

const testSecret = "turnutils-secret"

// relay is a Server on loopback for the turnutils tests.
type relay struct {
	*Server
	reg  *prometheus.Registry
	logs *logBuffer
}

func startRelay(t *testing.T, edit func(*Options)) *relay {
	t.Helper()
	def, err := configs.Default()
	if err != nil {
		t.Fatal(err)
	}
	cfg := def.TURN
	cfg.ListenUDP, cfg.ListenTCP = "127.0.0.1:0", "127.0.0.1:0"
	cfg.RelayPortMin, cfg.RelayPortMax = 40000, 49999
	reg := prometheus.NewRegistry()
	logs := &logBuffer{}
	opt := Options{
		TURN: cfg, RelayIP: net.IPv4(127, 0, 0, 1), Secrets: []string{testSecret},
		Logger: slog.New(slog.NewTextHandler(logs, nil)), Registerer: reg, Sockets: 2,
	}
	if edit != nil {
		edit(&opt)
	}
	s, err := New(opt)
	if err != nil {
		t.Fatalf("starting relay: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("closing relay: %v", err)
		}
	})
	return &relay{Server: s, reg: reg, logs: logs}
}

// uclientResult is what turnutils_uclient printed about one run.
type uclientResult struct {
	testtool.Uclient
	out string
	err error
}

// uclient runs turnutils_uclient against the relay with args before the
// server address, bounded in time.
func (r *relay) uclient(t *testing.T, args ...string) uclientResult {
	t.Helper()
	bin := testtool.Require(t, "turnutils_uclient")
	udp, tcp, tlsPort := r.Ports()
	port := udp
	for _, a := range args {
		switch a {
		case "-t":
			if port == udp {
				port = tcp
			}
		case "-S":
			port = tlsPort
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	full := append(append([]string{}, args...), "-p", strconv.Itoa(port), "127.0.0.1")
	cmd := exec.CommandContext(ctx, bin, full...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	res := uclientResult{Uclient: testtool.ParseUclient(out.String()), out: out.String(), err: err}
	t.Logf("turnutils_uclient %v: exit %v\n%s", full, err, tailString(res.out, 1500))
	return res
}

func tailString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// logBuffer collects the relay's log lines from many goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// runTool runs a short command to completion, bounded in time.
func runTool(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", bin, args, err, out)
	}
	return string(out)
}

// gauge reads one sample of a metric family from the relay's registry;
// labels are matched by value, in any order.
func (r *relay) gauge(t *testing.T, name string, labelValues ...string) float64 {
	t.Helper()
	families, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			have := map[string]bool{}
			for _, l := range m.GetLabel() {
				have[l.GetValue()] = true
			}
			for _, v := range labelValues {
				if !have[v] {
					continue metrics
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("metric %s%v not found", name, labelValues)
	return 0
}

// counterValue reads a counter directly.
func counterValue(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
