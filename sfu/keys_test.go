package sfu

import (
	"bytes"
	"context"
	"net"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/selfsign"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

// dtlsPair runs a real DTLS handshake on loopback with the server
// watched by k, and returns the client's SRTP context for what it sends.
func dtlsPair(t *testing.T, k *keyWatch, suite dtls.CipherSuiteID, profile dtls.SRTPProtectionProfile, ems dtls.ExtendedMasterSecretType) *srtp.Context {
	t.Helper()
	cert, err := selfsign.GenerateSelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	pcS, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pcC, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	common := []dtls.Option{dtls.WithCertificates(cert), dtls.WithInsecureSkipVerify(true),
		dtls.WithCipherSuites(suite), dtls.WithSRTPProtectionProfiles(profile), dtls.WithExtendedMasterSecret(ems)}
	var sOpts []dtls.ServerOption
	for _, o := range common {
		sOpts = append(sOpts, o)
	}
	sOpts = append(sOpts, dtls.WithKeyLogWriter(k), dtls.WithServerHelloMessageHook(k.serverHello))
	var cOpts []dtls.ClientOption
	for _, o := range common {
		cOpts = append(cOpts, o)
	}
	server, err := dtls.ServerWithOptions(pcS, pcC.LocalAddr(), sOpts...)
	if err != nil {
		t.Fatal(err)
	}
	client, err := dtls.ClientWithOptions(pcC, pcS.LocalAddr(), cOpts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close(); _ = server.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- server.HandshakeContext(ctx) }()
	if err := client.HandshakeContext(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	state, ok := client.ConnectionState()
	if !ok {
		t.Fatal("no client state")
	}
	cfg := srtp.Config{Profile: srtp.ProtectionProfile(profile)}
	if err := cfg.ExtractSessionKeysFromDTLS(&state, true); err != nil {
		t.Fatal(err)
	}
	out, err := srtp.CreateContext(cfg.Keys.LocalMasterKey, cfg.Keys.LocalMasterSalt, cfg.Profile)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestKeyWatchKeysLikeDTLS: what a client encrypts with the keys its own
// DTLS stack exports, the context built from the watched server's secrets
// decrypts, for each cipher suite hash, SRTP profile and master secret kind.
func TestKeyWatchKeysLikeDTLS(t *testing.T) {
	for _, tc := range []struct {
		name    string
		suite   dtls.CipherSuiteID
		profile dtls.SRTPProtectionProfile
		ems     dtls.ExtendedMasterSecretType
	}{
		{"SHA-256 suite, AES-GCM-128, extended master secret", dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, dtls.SRTP_AEAD_AES_128_GCM, dtls.RequireExtendedMasterSecret},
		{"SHA-384 suite, AES-GCM-256", dtls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, dtls.SRTP_AEAD_AES_256_GCM, dtls.RequestExtendedMasterSecret},
		{"CBC suite, AES-CM with HMAC-SHA1, no extended master secret", dtls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, dtls.SRTP_AES128_CM_HMAC_SHA1_80, dtls.DisableExtendedMasterSecret},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var k keyWatch
			sender := dtlsPair(t, &k, tc.suite, tc.profile, tc.ems)
			recv, err := k.remoteContext()
			if err != nil {
				t.Fatal(err)
			}
			pkt := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: 7, SSRC: 42}, Payload: []byte("not a real frame")}
			plain, err := pkt.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			enc, err := sender.EncryptRTP(nil, plain, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err := recv.DecryptRTP(nil, enc, nil)
			if err != nil {
				t.Fatalf("decrypt with the watched keys: %v", err)
			}
			if !bytes.Equal(got, plain) {
				t.Fatalf("decrypted %x, want %x", got, plain)
			}
		})
	}
}

// TestKeyWatchWithoutServerHello: a leg where the node was the DTLS
// client saw no ServerHello of its own, and gets no context.
func TestKeyWatchWithoutServerHello(t *testing.T) {
	var k keyWatch
	if _, err := k.Write([]byte("CLIENT_RANDOM " + string(bytes.Repeat([]byte("ab"), 32)) + " " + string(bytes.Repeat([]byte("cd"), 48)) + "\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := k.remoteContext(); err != errNoKeys {
		t.Fatalf("err %v, want errNoKeys", err)
	}
	// Lines that are not a TLS 1.2 client random are ignored, not fatal.
	for _, line := range []string{"", "CLIENT_RANDOM zz yy\n", "SERVER_HANDSHAKE_TRAFFIC_SECRET ab cd\n"} {
		if n, err := k.Write([]byte(line)); err != nil || n != len(line) {
			t.Fatalf("Write(%q) = %d, %v", line, n, err)
		}
	}
}
