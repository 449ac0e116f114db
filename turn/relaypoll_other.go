//go:build !linux

package turn

import (
	"errors"
	"net/netip"

	"github.com/duetchat/duet/internal/udpbatch"
)

// relayPoller is Linux only; elsewhere every allocation stays on pion's
// path (newFastPath finds no poller and add does nothing).
type relayPoller struct{}

const noID = 0

func newRelayPoller(*udpbatch.Conn) (*relayPoller, error) {
	return nil, errors.New("no relay poller on this platform")
}
func (*relayPoller) add(*fastConn) error { return errors.New("no relay poller") }
func (*relayPoller) remove(*fastConn)    {}
func (*relayPoller) close()              {}

type rawSender struct{}

func newRawSender() *rawSender                                  { return nil }
func (*rawSender) write(*fastConn, []byte, netip.AddrPort) bool { return false }
