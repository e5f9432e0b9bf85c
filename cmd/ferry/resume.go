package main

import (
	"context"
	"log/slog"

	"github.com/redis/go-redis/v9"

	"github.com/ferryhq/ferry/chat"
)

// stopChannel is the Redis channel on which instances announce answers
// their users stopped, by id, so that the instance generating one ends it.
const stopChannel = "ferry:answers:stopped"

// shareAnswerStops stops, on this instance, the answers that other
// instances announce on stopChannel, and returns the function that
// announces one (httpapi's Options.AnswerStopped) and the one that stops
// listening.
func shareAnswerStops(ctx context.Context, rdb *redis.Client, chatSvc *chat.Service, log *slog.Logger) (announce func(answerID string), stop func()) {
	sub := rdb.Subscribe(ctx, stopChannel)
	go func() {
		for msg := range sub.Channel() {
			chatSvc.StopAnswer(msg.Payload)
		}
	}()
	announce = func(answerID string) {
		if err := rdb.Publish(context.Background(), stopChannel, answerID).Err(); err != nil {
			log.Warn("telling other instances of a stopped answer", "error", err)
		}
	}
	return announce, func() { sub.Close() }
}
