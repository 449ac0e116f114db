package sfu

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"sync"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/prf"
	"github.com/pion/dtls/v3/pkg/protocol/extension"
	"github.com/pion/dtls/v3/pkg/protocol/handshake"
	"github.com/pion/srtp/v3"
)

// The shortcut (shortcut.go) decrypts a leg's media itself, so it needs
// the SRTP keys pion derives from the leg's DTLS handshake. pion/webrtc
// keeps the DTLS connection to itself, but its settings let a leg watch
// the two things the keys come from: the key log (the client's random
// and the master secret, what NSS's SSLKEYLOGFILE carries) and the
// ServerHello the node sends when it is the DTLS server (its own random,
// the cipher suite and the SRTP profile). From those, RFC 5705's
// exporter gives the same keys pion's SRTP session uses. Should the
// derivation ever be wrong, nothing is lost: the shortcut proves the keys
// on the first packets and stays off unless they authenticate.

// srtpReplayWindow is the replay window of pion's SRTP session, kept the
// same on the shortcut's context.
const srtpReplayWindow = 64

// keyWatch collects one leg's DTLS secrets as the handshake runs.
type keyWatch struct {
	mu           sync.Mutex
	serverRandom []byte
	clientRandom []byte
	master       []byte
	suite        uint16
	profile      srtp.ProtectionProfile
}

// serverHello is the leg's SettingEngine ServerHello hook: it sends the
// message unchanged.
func (k *keyWatch) serverHello(m handshake.MessageServerHello) handshake.Message {
	r := m.Random.MarshalFixed()
	k.mu.Lock()
	k.serverRandom = append(k.serverRandom[:0], r[:]...)
	if m.CipherSuiteID != nil {
		k.suite = *m.CipherSuiteID
	}
	for _, e := range m.Extensions {
		if u, ok := e.(*extension.UseSRTP); ok && len(u.ProtectionProfiles) == 1 {
			k.profile = srtp.ProtectionProfile(u.ProtectionProfiles[0])
		}
	}
	k.mu.Unlock()
	return &m
}

// Write takes pion's key log lines: "CLIENT_RANDOM <random> <master secret>".
func (k *keyWatch) Write(p []byte) (int, error) {
	f := bytes.Fields(p)
	if len(f) != 3 || string(f[0]) != "CLIENT_RANDOM" {
		return len(p), nil
	}
	cr, err1 := hex.DecodeString(string(f[1]))
	ms, err2 := hex.DecodeString(string(f[2]))
	if err1 != nil || err2 != nil {
		return len(p), nil
	}
	k.mu.Lock()
	k.clientRandom, k.master = cr, ms
	k.mu.Unlock()
	return len(p), nil
}

var errNoKeys = errors.New("sfu: DTLS secrets not seen (the node was not the DTLS server)")

// remoteContext returns a fresh SRTP context for what the client sends,
// keyed as pion keys its own. It is asked once per leg, and forgets the
// master secret: nothing else of ours needs it.
func (k *keyWatch) remoteContext() (*srtp.Context, error) {
	k.mu.Lock()
	x := exporter{client: k.clientRandom, server: k.serverRandom, master: k.master, suite: k.suite}
	profile := k.profile
	k.master = nil
	k.mu.Unlock()
	defer clear(x.master)
	if len(x.client) != handshake.RandomLength || len(x.server) != handshake.RandomLength || len(x.master) == 0 || profile == 0 {
		return nil, errNoKeys
	}
	cfg := srtp.Config{Profile: profile}
	if err := cfg.ExtractSessionKeysFromDTLS(x, false); err != nil {
		return nil, fmt.Errorf("sfu: SRTP keys: %w", err)
	}
	ctx, err := srtp.CreateContext(cfg.Keys.RemoteMasterKey, cfg.Keys.RemoteMasterSalt, profile,
		srtp.SRTPReplayProtection(srtpReplayWindow))
	if err != nil {
		return nil, fmt.Errorf("sfu: SRTP context: %w", err)
	}
	return ctx, nil
}

// exporter is RFC 5705's keying material exporter for a DTLS 1.2 session
// in which the node is the server.
type exporter struct {
	client, server, master []byte
	suite                  uint16
}

func (x exporter) ExportKeyingMaterial(label string, context []byte, length int) ([]byte, error) {
	if len(context) != 0 {
		return nil, errors.New("sfu: exporter context unsupported")
	}
	seed := make([]byte, 0, len(label)+len(x.client)+len(x.server))
	seed = append(append(append(seed, label...), x.client...), x.server...)
	return prf.PHash(x.master, seed, length, suiteHash(x.suite))
}

// suiteHash is the PRF hash of a DTLS 1.2 cipher suite: SHA-384 for the
// suites named so, SHA-256 for every other.
func suiteHash(id uint16) func() hash.Hash {
	switch dtls.CipherSuiteID(id) {
	case dtls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, dtls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384:
		return sha512.New384
	}
	return sha256.New
}
