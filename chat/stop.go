package chat

import "github.com/ferryhq/ferry"

// ErrStopped is the error of a turn whose user stopped it (StopAnswer).
var ErrStopped = ferry.Errorf(ferry.Invalid, "the answer was stopped")

// StopAnswer ends the conversation turn whose answer is answerID, if it
// runs on this instance (or has started and not yet run), and reports
// whether it did. The upstream request is cancelled at once, and the
// answer is saved (status cancelled) with what the model wrote; the
// turn's Stream returns ErrStopped. The caller tells other instances.
func (s *Service) StopAnswer(answerID string) bool {
	if answerID == "" {
		return false
	}
	for _, c := range s.active.calls("", true) {
		c.mu.Lock()
		mine := c.answerID == answerID
		c.mu.Unlock()
		if mine {
			c.end(ErrStopped)
			return true
		}
	}
	return false
}
