package eventlog

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis keys: answerKey is an answer's stream, whose entries have the id
// 0-seq, the event in field e, and on the last one end=1; convKey names
// the answer a conversation is generating, as "userID answerID".

func (l *Logs) answerKey(answerID string) string { return l.o.Prefix + "answer:" + answerID }
func (l *Logs) convKey(convID string) string     { return l.o.Prefix + "conversation-answer:" + convID }

// remoteBlock is how long one XREAD waits for events before the reader
// checks that the answer's keys are still there.
const remoteBlock = 2 * time.Second

// expireIfMine sets the expiry of a conversation's key only while it still
// names this answer: a newer answer of the conversation keeps its own.
var expireIfMine = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0`)

// mirror copies a's events to Redis as they come, in one pipeline per
// batch, renewing the keys' expiry with each and after every LiveTTL/3
// without one, until the end; then it lets the keys expire Linger later.
func (a *Answer) mirror() {
	defer close(a.mirrored)
	l := a.logs
	rdb, key, convKey := l.o.Redis, l.answerKey(a.id), l.convKey(a.conv)
	cur := a.Cursor(0)
	for {
		wait, stopWaiting := context.WithTimeout(context.Background(), l.o.LiveTTL/3)
		b, err := cur.Next(wait) // only wait's error: nothing came
		stopWaiting()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		pipe := rdb.Pipeline()
		if err != nil {
			// The answer is alive but silent: it is still there.
			pipe.PExpire(ctx, key, l.o.LiveTTL)
			pipe.PExpire(ctx, convKey, l.o.LiveTTL)
			if _, err := pipe.Exec(ctx); err != nil {
				l.o.Log.Warn("renewing a live answer's keys in Redis", "message_id", a.id, "error", err)
			}
			cancel()
			continue
		}
		n := int64(bytes.Count(b.Events, eventEnd))
		seq := cur.after - n
		for events := b.Events; len(events) > 0; {
			i := bytes.Index(events, eventEnd)
			if i < 0 {
				i = len(events)
			} else {
				i += len(eventEnd)
			}
			seq++
			values := []any{"e", events[:i]}
			if events = events[i:]; b.Done && len(events) == 0 {
				values = append(values, "end", "1")
			}
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: key, MaxLen: l.o.MaxEvents, Approx: true,
				ID: "0-" + strconv.FormatInt(seq, 10), Values: values})
		}
		if b.Done {
			pipe.PExpire(ctx, key, l.o.Linger)
			expireIfMine.Eval(ctx, pipe, []string{convKey}, a.userID+" "+a.id, l.o.Linger.Milliseconds())
		} else {
			pipe.PExpire(ctx, key, l.o.LiveTTL)
			pipe.PExpire(ctx, convKey, l.o.LiveTTL)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			l.o.Log.Warn("mirroring an answer's events to Redis", "message_id", a.id, "error", err)
		}
		cancel()
		if b.Done {
			return
		}
	}
}

// remoteAnswer returns the answer Redis names for conversation convID,
// and its owner.
func (l *Logs) remoteAnswer(ctx context.Context, convID string) (answerID, owner string, err error) {
	v, err := l.o.Redis.Get(ctx, l.convKey(convID)).Result()
	if err == redis.Nil {
		return "", "", nil
	}
	if err != nil {
		return "", "", err
	}
	owner, answerID, _ = strings.Cut(v, " ")
	return answerID, owner, nil
}

// followRemote is Follow for an answer another instance generates.
func (l *Logs) followRemote(ctx context.Context, convID string, after int64) (*Cursor, string, error) {
	id, owner, err := l.remoteAnswer(ctx, convID)
	if err != nil || id == "" {
		return nil, "", err
	}
	key := l.answerKey(id)
	last, err := l.o.Redis.XRevRangeN(ctx, key, "+", "-", 1).Result()
	if err != nil {
		return nil, "", err
	}
	if len(last) == 1 && last[0].Values["end"] != nil && (after < 0 || seqOf(last[0].ID) <= after) {
		return nil, owner, nil
	}
	return &Cursor{remote: &remote{rdb: l.o.Redis, key: key, convKey: l.convKey(convID)}, after: max(after, 0)}, owner, nil
}

// remote reads an answer's events from its Redis stream.
type remote struct {
	rdb          *redis.Client
	key, convKey string
}

func (r *remote) next(ctx context.Context, after *int64) (Batch, error) {
	for {
		res, err := r.rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{r.key, "0-" + strconv.FormatInt(*after, 10)},
			Count: 1024, Block: remoteBlock}).Result()
		if err == redis.Nil {
			// Nothing new for a while: the answer is slow, or its instance
			// died and its keys expired.
			n, err := r.rdb.Exists(ctx, r.key, r.convKey).Result()
			if err != nil {
				return Batch{}, err
			}
			if n == 0 {
				return Batch{}, ErrGone
			}
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return Batch{}, ctx.Err()
			}
			return Batch{}, err
		}
		var b Batch
		for _, m := range res[0].Messages {
			seq := seqOf(m.ID)
			if seq <= *after {
				continue
			}
			e, _ := m.Values["e"].(string)
			b.Events = append(b.Events, e...)
			*after = seq
			if m.Values["end"] != nil {
				b.Done = true
			}
		}
		if len(b.Events) > 0 || b.Done {
			return b, nil
		}
	}
}

// seqOf is the sequence number of stream id 0-seq.
func seqOf(id string) int64 {
	_, s, _ := strings.Cut(id, "-")
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}
