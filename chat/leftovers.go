package chat

import (
	"context"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/llm"
	"github.com/ferryhq/ferry/store"
)

// An answer's row is written when its turn starts (status streaming), its
// text is saved as it grows (Turn.saveProgress), and it is finished when
// the call ends. A process that dies (kill -9, a crash, a lost machine)
// leaves its answers streaming for good; MarkInterrupted finds them by
// their age, since several instances may share one PostgreSQL database and
// the answers of those alive must be left alone: every live answer's row
// is written at least every touchEvery intervals (progress saves, else
// Maintain's touches), so one not written for staleAfter intervals has no
// process behind it.
const (
	touchEvery = 10 // SaveIntervals between Maintain's touches of live answers
	staleAfter = 30 // SaveIntervals without a write after which an answer is a leftover
	sweepEvery = 15 // SaveIntervals between Maintain's sweeps for leftovers
)

// MarkInterrupted marks the answers that processes which died left
// streaming as interrupted, keeping the text saved of them, with their
// usage estimated (EstimateTokens; the model never reported it). An answer
// is a leftover when its row was not written for 30 SaveIntervals (a
// minute by default), which no live stream on any instance lets happen.
// It returns how many it found.
func (s *Service) MarkInterrupted(ctx context.Context) (int, error) {
	before := time.Now().Add(-staleAfter * s.opts.SaveInterval)
	const page = 100
	found := 0
	for {
		list, err := s.store.StaleAnswers(ctx, before, page)
		if err != nil {
			return found, err
		}
		ps := make([]*store.Pending, 0, len(list))
		for _, m := range list {
			if m.InputTokens == 0 {
				m.InputTokens = s.estimateInput(ctx, m)
			}
			m.OutputTokens = EstimateTokens(m.Content)
			// The Op leaves an answer written since before alone: a slow
			// sweep cannot take a stream that turned out alive.
			ps = append(ps, s.store.Submit(store.InterruptMessage(m, before)))
		}
		for _, p := range ps {
			if err := p.Wait(ctx); err != nil {
				return found, err
			}
		}
		found += len(list)
		if len(list) < page {
			return found, nil
		}
	}
}

// estimateInput estimates what the turn that produced answer sent: its
// conversation's history before it, as Prepare builds it with the default
// system prompt. A failure to read it estimates nothing.
func (s *Service) estimateInput(ctx context.Context, answer *ferry.Message) int {
	msgs, err := s.store.Messages(ctx, answer.ConversationID)
	if err != nil {
		return 0
	}
	for i, m := range msgs {
		if m.ID != answer.ID {
			continue
		}
		earlier, message := msgs[:i], ""
		if i > 0 && msgs[i-1].Role == ferry.RoleUserMsg {
			earlier, message = msgs[:i-1], msgs[i-1].Content
		}
		system := s.opts.SystemPrompt
		return estimateRequest(llm.Request{System: system,
			Messages: History(earlier, message, s.opts.ContextTokens-EstimateTokens(system))})
	}
	return 0
}

// Maintain keeps the answers of this instance's live turns marked alive,
// and marks leftovers of dead processes interrupted (MarkInterrupted),
// until ctx ends. run starts it once the store is open and ends it only
// after the last call finished, just before the store closes.
func (s *Service) Maintain(ctx context.Context) {
	touch := time.NewTicker(touchEvery * s.opts.SaveInterval)
	defer touch.Stop()
	sweep := time.NewTicker(sweepEvery * s.opts.SaveInterval)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-touch.C:
			// A model that thinks for minutes sends no text to save; its
			// answer must not look abandoned meanwhile.
			if ids := s.active.answerIDs(); len(ids) > 0 {
				if err := s.store.Submit(store.TouchMessages(ids...)).Wait(ctx); err != nil && ctx.Err() == nil {
					s.opts.Log.WarnContext(ctx, "marking live answers alive", "error", err)
				}
			}
		case <-sweep.C:
			if n, err := s.MarkInterrupted(ctx); err != nil && ctx.Err() == nil {
				s.opts.Log.WarnContext(ctx, "marking interrupted answers", "error", err)
			} else if n > 0 {
				s.opts.Log.InfoContext(ctx, "marked answers interrupted", "count", n)
			}
		}
	}
}
