package signal

import (
	"time"

	"golang.org/x/time/rate"

	"github.com/duetchat/duet/configs"
	"github.com/duetchat/duet/transport"
	"github.com/duetchat/duet/wire"
)

// class groups message types that share a budget.
type class int

const (
	classOther  class = iota
	classSignal       // offer/answer/candidate: trickle ICE comes in bursts
	classChat         // chat
	classQueue        // queue/next/report: what skip bots hammer
)

func classOf(msgType string) class {
	switch msgType {
	case wire.TypeOffer, wire.TypeAnswer, wire.TypeCandidate:
		return classSignal
	case wire.TypeChat:
		return classChat
	case wire.TypeQueue, wire.TypeNext, wire.TypeReport:
		return classQueue
	}
	return classOther
}

// sessionLimits are one session's token buckets; they live as long as the
// session, so reconnecting does not refill them.
type sessionLimits struct {
	all     *rate.Limiter
	byClass [4]*rate.Limiter
	// joins: queue and next per minute, what a skip bot spends.
	joins *rate.Limiter
	// notice limits how often rate_limited errors are sent back, so a
	// flood does not turn into a flood of errors.
	notice *rate.Limiter
}

func newSessionLimits(l configs.Limits) *sessionLimits {
	return &sessionLimits{
		all: rate.NewLimiter(rate.Limit(l.MessageRate), l.MessageBurst),
		byClass: [4]*rate.Limiter{
			classOther:  rate.NewLimiter(rate.Limit(l.MessageRate), l.MessageBurst),
			classSignal: rate.NewLimiter(rate.Limit(l.SignalRate), l.SignalBurst),
			classChat:   rate.NewLimiter(rate.Limit(l.ChatRate), l.ChatBurst),
			classQueue:  rate.NewLimiter(rate.Limit(l.QueueRate), l.QueueBurst),
		},
		joins:  transport.PerMinute(l.JoinsPerMinute),
		notice: rate.NewLimiter(1, 3),
	}
}

// allow spends one token of the message's class and of the overall budget.
func (s *sessionLimits) allow(now time.Time, c class) bool {
	return s.byClass[c].AllowN(now, 1) && s.all.AllowN(now, 1)
}
