package node

import (
	"testing"

	"github.com/duetchat/duet/internal/testtool"
)

// TestSFUFallbackAcrossNodes: the strangers of a room sit on two nodes of
// one Redis. One asks for fallback; both get `media` `sfu` and an SFU
// offer, answer it with pion peers and stream audio and video both ways
// through the SFU of whichever node hosts the room: the SFU signals for
// the stranger on the other node cross the bus (held there until its
// `ready`, as every signal is) like those for the local one.
func TestSFUFallbackAcrossNodes(t *testing.T) {
	nodes := startNodes(t, testtool.StartRedis(t), "n1", "n2")
	a, b := dial(t, nodes[0].ws, "a", nil), dial(t, nodes[1].ws, "b", nil)
	off, ans, room := pair(t, a, b, "video")
	peers, _ := fallbackAndStream(t, off, ans, room)
	for c, p := range peers {
		if p.Got[0].Load() == 0 || p.Got[1].Load() == 0 {
			t.Fatalf("%s received audio %d, video %d through the SFU", c.name, p.Got[0].Load(), p.Got[1].Load())
		}
	}
}
