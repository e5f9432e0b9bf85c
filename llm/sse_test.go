package llm_test

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/ferryhq/ferry/llm"
)

// pieces is a reader that returns each piece in a read of its own, as a
// network connection hands over what arrived.
type pieces []string

func (p *pieces) Read(b []byte) (int, error) {
	for len(*p) > 0 && (*p)[0] == "" {
		*p = (*p)[1:]
	}
	if len(*p) == 0 {
		return 0, io.EOF
	}
	n := copy(b, (*p)[0])
	(*p)[0] = (*p)[0][n:]
	return n, nil
}

type ev struct{ name, data string }

func readAll(t *testing.T, er *llm.EventReader) ([]ev, error) {
	t.Helper()
	var got []ev
	for {
		name, data, err := er.Next()
		if err != nil {
			return got, err
		}
		got = append(got, ev{string(name), string(data)})
	}
}

var sseCases = []struct {
	name, in string
	want     []ev
}{
	{"anthropic", "event: message_start\ndata: {\"a\":1}\n\nevent: ping\ndata: {}\n\n",
		[]ev{{"message_start", `{"a":1}`}, {"ping", "{}"}}},
	{"unnamed", "data: {\"x\":\"中文 🙂\"}\n\ndata: [DONE]\n\n", []ev{{"", `{"x":"中文 🙂"}`}, {"", "[DONE]"}}},
	{"multi-line data", "data: one\ndata:two\ndata:  three\ndata\n\n", []ev{{"", "one\ntwo\n three\n"}}},
	{"comments", ": keepalive\n\n:\nevent: e\n: between\ndata: d\n\n: trailing\n", []ev{{"e", "d"}}},
	{"CRLF", "event: e\r\ndata: a\r\ndata: b\r\n\r\ndata: c\r\n\r\n", []ev{{"e", "a\nb"}, {"", "c"}}},
	{"CR", "event: e\rdata: a\r\rdata: b\r\r", []ev{{"e", "a"}, {"", "b"}}},
	{"mixed endings", "data: a\r\n\ndata: b\n\r\n", []ev{{"", "a"}, {"", "b"}}},
	{"no data: skipped", "event: lonely\n\ndata: x\n\n", []ev{{"", "x"}}},
	{"empty data", "data:\n\n", []ev{{"", ""}}},
	{"other fields ignored", "id: 7\nretry: 100\nfoo: bar\ndata: x\n\n", []ev{{"", "x"}}},
	{"unfinished last event dropped", "data: a\n\ndata: b\n", []ev{{"", "a"}}},
	{"byte order mark", "\uFEFFdata: a\n\n", []ev{{"", "a"}}},
	{"colon in value", "data: {\"k\": \"a:b\"}\n\n", []ev{{"", `{"k": "a:b"}`}}},
}

func TestEventReader(t *testing.T) {
	for _, tc := range sseCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readAll(t, llm.NewEventReader(strings.NewReader(tc.in)))
			if err != io.EOF {
				t.Fatalf("err = %v, want io.EOF", err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("events = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestEventReaderSplits feeds every case split in two at every byte, and
// one byte at a time: the events must not depend on how reads cut them.
func TestEventReaderSplits(t *testing.T) {
	for _, tc := range sseCases {
		t.Run(tc.name, func(t *testing.T) {
			for i := 0; i <= len(tc.in); i++ {
				in := pieces{tc.in[:i], tc.in[i:]}
				got, err := readAll(t, llm.NewEventReader(&in))
				if err != io.EOF || fmt.Sprint(got) != fmt.Sprint(tc.want) {
					t.Fatalf("split at %d: events = %q (%v), want %q", i, got, err, tc.want)
				}
			}
			got, err := readAll(t, llm.NewEventReader(iotest.OneByteReader(strings.NewReader(tc.in))))
			if err != io.EOF || fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("one byte at a time: events = %q (%v), want %q", got, err, tc.want)
			}
		})
	}
}

// TestEventReaderCRThenLF checks that a CRLF split between reads ends one
// line, not two: the event must come out whole once the CR arrives, and the
// LF that follows must not end the event early.
func TestEventReaderCRThenLF(t *testing.T) {
	in := pieces{"data: a\r", "\ndata: b\r", "\n\r", "\n"}
	got, err := readAll(t, llm.NewEventReader(&in))
	if err != io.EOF || fmt.Sprint(got) != fmt.Sprint([]ev{{"", "a\nb"}}) {
		t.Errorf("events = %q (%v), want one event a\\nb", got, err)
	}
}

func TestEventReaderLongLines(t *testing.T) {
	long := strings.Repeat("长文本 with words ", 5000) // ~100 KB, far past the 4 KiB buffer
	in := "event: e\ndata: " + long + "\r\ndata: " + long + "\n\ndata: short\n\n"
	for i, r := range []io.Reader{strings.NewReader(in), iotest.HalfReader(strings.NewReader(in))} {
		got, err := readAll(t, llm.NewEventReader(r))
		if err != io.EOF || len(got) != 2 || got[0].data != long+"\n"+long || got[0].name != "e" || got[1].data != "short" {
			t.Errorf("reader %d: %d events (%v), want the long one whole and the short one", i, len(got), err)
		}
	}
}

func TestEventReaderTooLong(t *testing.T) {
	for name, in := range map[string]string{
		"one line":       "data: " + strings.Repeat("x", 200) + "\n\n",
		"one long field": "event: " + strings.Repeat("x", 5000) + "\ndata: x\n\n",
		"many lines":     strings.Repeat("data: "+strings.Repeat("x", 50)+"\n", 10) + "\n",
		"no line ending": strings.Repeat("x", 1<<20),
	} {
		t.Run(name, func(t *testing.T) {
			er := llm.NewEventReaderSize(strings.NewReader("data: ok\n\n"+in), 100)
			if _, data, err := er.Next(); err != nil || string(data) != "ok" {
				t.Fatalf("first event: %q, %v", data, err)
			}
			if _, _, err := er.Next(); !errors.Is(err, llm.ErrEventTooLong) {
				t.Errorf("err = %v, want ErrEventTooLong", err)
			}
		})
	}
}

func TestEventReaderReadError(t *testing.T) {
	in := io.MultiReader(strings.NewReader("data: a\n\ndata: b"), iotest.ErrReader(io.ErrUnexpectedEOF))
	er := llm.NewEventReader(in)
	if _, data, err := er.Next(); err != nil || string(data) != "a" {
		t.Fatalf("first event: %q, %v", data, err)
	}
	if _, _, err := er.Next(); err != io.ErrUnexpectedEOF {
		t.Errorf("err = %v, want the reader's io.ErrUnexpectedEOF", err)
	}
}

func TestEventReaderBuffered(t *testing.T) {
	in := pieces{"data: a\n\ndata: b\n\ndata: c", "\n\n"}
	er := llm.NewEventReader(&in)
	for i, want := range []bool{true, false, false} {
		if _, _, err := er.Next(); err != nil {
			t.Fatal(err)
		}
		if got := er.Buffered(); got != want {
			t.Errorf("after event %d: Buffered = %v, want %v", i, got, want)
		}
	}
}
