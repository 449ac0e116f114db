package node

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/duetchat/duet/configs"
	"github.com/duetchat/duet/signal"
	"github.com/duetchat/duet/turn"
	"github.com/duetchat/duet/wire"
)

// startTURN starts the integrated relay from the turn section.
// https is the HTTPS listener's TLS (nil: plain HTTP): turns: falls back
// to its certificate, and TURN is also answered on that port
// (turn.on_https_port).
func startTURN(cfg *configs.Config, log *slog.Logger, reg prometheus.Registerer, gate *turnGate, https *tls.Config) (*turn.Server, error) {
	secrets := append([]string{cfg.TURN.Secret}, cfg.TURN.PreviousSecrets...)
	if cfg.TURN.Secret == "" {
		// A relay must never run without credentials; a random secret
		// keeps one node working, but credentials do not survive a restart
		// and other nodes cannot check them.
		b := make([]byte, 24)
		if _, err := rand.Read(b); err != nil {
			return nil, fmt.Errorf("generating a TURN secret: %w", err)
		}
		secrets[0] = base64.RawURLEncoding.EncodeToString(b)
		log.Warn("turn.secret is empty: using a random secret for this run; set turn.secret (DUET_TURN_SECRET) to use turnutils or run several nodes")
	}
	ip, source, err := turn.RelayIP(cfg.PublicIP)
	if err != nil {
		return nil, err
	}
	log.Info("TURN relay address", "ip", ip.String(), "from", source)
	var tlsCfg *tls.Config
	switch {
	case cfg.TURN.ListenTLS == "":
	case cfg.TURN.TLSCertFile != "":
		cert, err := tls.LoadX509KeyPair(cfg.TURN.TLSCertFile, cfg.TURN.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("turn.listen_tls: loading certificate: %w", err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	case https != nil:
		// http's certificate, or the ACME one (renewals included).
		tlsCfg = &tls.Config{GetCertificate: https.GetCertificate, MinVersion: tls.VersionTLS12}
	default:
		return nil, fmt.Errorf("turn.listen_tls: no certificate (set turn.tls_cert_file, http's, or http.acme)")
	}
	srv, err := turn.New(turn.Options{
		TURN: cfg.TURN, RelayIP: ip, Secrets: secrets, TLS: tlsCfg,
		Logger: log, Registerer: reg, Keys: gate.keys, Gate: gate,
		OnHTTPSPort: https != nil && cfg.TURN.OnHTTPSPort,
	})
	if err != nil {
		return nil, fmt.Errorf("starting the TURN relay: %w", err)
	}
	return srv, nil
}

// relayICE hands each stranger the node's STUN/TURN URLs with a fresh
// credential, plus any extra URLs from signal.ice_servers.
type relayICE struct {
	turn  *turn.Server
	extra signal.StaticICE
	log   *slog.Logger
}

func (r relayICE) ICEServers(room, session string) []wire.ICEServer {
	out := r.extra.ICEServers(room, session)
	servers, err := r.turn.ICEServers(room, session)
	if err != nil {
		// Only a bug gets here (ids are colon-free); the extra URLs still
		// let ICE try.
		r.log.Error("minting TURN credentials", "room", room, "err", err)
		return out
	}
	for _, s := range servers {
		out = append(out, wire.ICEServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential})
	}
	return out
}

// turnPaths reports rooms whose media goes through the relay.
type turnPaths struct{ turn *turn.Server }

func (p turnPaths) RoomMedia(info signal.RoomInfo) (string, Direction, Direction, bool) {
	f, ok := p.turn.Room(info.Code, info.A, info.B)
	if !ok || !f.Relaying {
		return "", Direction{}, Direction{}, false
	}
	conv := func(fl turn.Flow) Direction {
		return Direction{Bytes: fl.Bytes, Packets: fl.Packets, BitrateBPS: fl.BitrateBPS}
	}
	return "turn", conv(f.AToB), conv(f.BToA), true
}
