//go:build unix

package sfu

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/duetchat/duet/internal/testtool"
)

// TestHostileICEPorts attacks the SFU's two ports as anyone on the
// internet can, before any room exists: silent connections by the
// thousand, one address over its cap, garbage, wrapping and trickled
// lengths, bindings naming ufrags no agent has, and UDP floods of
// malformed and unknown STUN. After each the process's goroutines, heap
// and CPU come back to their baseline, and at the end an honest pair of
// pion peers still connects through the SFU and exchanges media.
func TestHostileICEPorts(t *testing.T) {
	reg := prometheus.NewRegistry()
	s, err := New(Options{
		ListenIP: "127.0.0.1", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Registerer: reg, TCPPerIP: 16, MaxTCP: 600, firstBind: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	udpPort, tcpPort := s.Ports()
	tcpAddr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: tcpPort}
	udpAddr := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: udpPort}
	src := func(i int) net.IP { return net.IPv4(127, 0, byte(1+i/200), byte(1+i%200)) }
	dial := func(i int) (net.Conn, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src(i)}, Timeout: 2 * time.Second}
		return d.Dial("tcp4", tcpAddr.String())
	}
	binding := func(ufrag string) []byte {
		m := stun.MustBuild(stun.TransactionID, stun.BindingRequest,
			stun.NewUsername(ufrag+":attacker"), stun.Fingerprint)
		return m.Raw
	}
	framed := func(b []byte) []byte { // RFC 4571: 2-byte length, then the packet
		return append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...) //nolint:gosec // test packets are small
	}
	junk := func(n int) []byte { b := make([]byte, n); _, _ = rand.Read(b); return b }

	tests := []struct {
		name   string
		attack func(t *testing.T)
	}{
		{"five hundred silent connections", func(t *testing.T) {
			var conns []net.Conn
			for i := range 500 {
				c, err := dial(i / 10) // ten from each address
				if err != nil {
					t.Fatalf("connection %d refused by the kernel: %v", i, err)
				}
				conns = append(conns, c)
			}
			// The SFU cuts them at the first-binding deadline, not us.
			cut := 0
			for _, c := range conns {
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := c.Read(make([]byte, 1)); err != nil && !isTimeout(err) {
					cut++
				}
				c.Close()
			}
			if cut != len(conns) {
				t.Fatalf("%d of %d silent connections were cut by the SFU", cut, len(conns))
			}
		}},
		{"one address over its cap", func(t *testing.T) {
			before := counter(t, reg, "duet_sfu_tcp_refused_total", "per_address_cap")
			var conns []net.Conn
			for range 40 {
				c, err := dial(999)
				if err != nil {
					continue // reset while connecting: refused at once
				}
				conns = append(conns, c)
			}
			testtool.Poll(5*time.Second, func() (float64, bool) {
				v := counter(t, reg, "duet_sfu_tcp_refused_total", "per_address_cap")
				return v, v >= before+24
			})
			if got := counter(t, reg, "duet_sfu_tcp_refused_total", "per_address_cap") - before; got != 24 {
				t.Errorf("refused %v connections of one address over its cap of 16, want 24", got)
			}
			for _, c := range conns {
				c.Close()
			}
		}},
		{"garbage, wrapping and trickled lengths", func(t *testing.T) {
			payloads := [][]byte{
				junk(64),
				{0xff, 0xff}, {0xff, 0xff, 0x00, 0x01},
				{0x00, 0x00},
				framed(junk(200)),
				append([]byte{0x02, 0x00}, junk(100)...), // says 512, sends less, then stops
				framed(stun.MustBuild(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest)).Raw),
			}
			var wg sync.WaitGroup
			for i, p := range payloads {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c, err := dial(300 + i)
					if err != nil {
						t.Error(err)
						return
					}
					defer c.Close()
					for _, b := range p { // trickled, a byte at a time
						if _, err := c.Write([]byte{b}); err != nil {
							return
						}
						time.Sleep(time.Millisecond)
					}
					_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
					_, _ = io.Copy(io.Discard, c) // until the SFU closes it
				}()
			}
			wg.Wait()
		}},
		{"bindings naming unknown ufrags", func(t *testing.T) {
			var wg sync.WaitGroup
			for i := range 300 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c, err := dial(400 + i%50)
					if err != nil {
						return // over the per-address cap: refused, fine
					}
					defer c.Close()
					_, _ = c.Write(framed(binding(fmt.Sprintf("u%04d", i))))
					_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
					_, _ = io.Copy(io.Discard, c)
				}()
			}
			wg.Wait()
		}},
		{"UDP floods of malformed and unknown STUN", func(t *testing.T) {
			c, err := net.DialUDP("udp4", nil, udpAddr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			for i := range 20000 {
				var b []byte
				switch i % 4 {
				case 0:
					b = junk(100)
				case 1:
					b = binding(fmt.Sprintf("x%05d", i))
				case 2:
					b = binding("x")[:20] // a header that promises attributes
				default:
					b = append([]byte{0x00, 0x01, 0xff, 0xec, 0x21, 0x12, 0xa4, 0x42}, junk(12)...)
				}
				_, _ = c.Write(b)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := testtool.TakeBaseline()
			tt.attack(t)
			testtool.RequireCalm(t, base, testtool.Slack{Goroutines: 10, Heap: 8 << 20, Within: 15 * time.Second})
		})
	}

	// Honest users still get through, on the same SFU.
	_, peers := connectedRoomOn(t, s, "honest", testtool.NewPionPeer)
	var wg sync.WaitGroup
	for _, p := range peers {
		wg.Add(1)
		go func() { defer wg.Done(); p.Send(100) }()
	}
	wg.Wait()
	for _, p := range peers {
		eventually(t, "video after the attacks", func() bool { return p.Got[1].Load() >= 20 })
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// counter reads a counter sample with the given label value.
func counter(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetValue() == label {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("%s{%s} not registered", name, label)
	return 0
}
