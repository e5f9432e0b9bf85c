// stream.js: server-sent events read from a fetch response, since
// EventSource cannot send an Authorization header. The parser follows the
// HTML standard's event-stream rules and keeps whatever a read ended in the
// middle of (a line, a multi-byte character, the \r of a \r\n) until the
// next read completes it.

// events yields the events of a text/event-stream body (a ReadableStream of
// bytes) as {id, event, data}; id is the last id the stream set, as
// EventSource's lastEventId. It ends when the body ends; an abort of the
// fetch rejects it with the AbortError.
export async function* events(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const parser = new Parser();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      const text = done ? decoder.decode() : decoder.decode(value, { stream: true });
      yield* parser.push(text, done);
      if (done) return;
    }
  } finally {
    reader.releaseLock();
  }
}

// Parser turns text, pushed in pieces cut anywhere, into events.
export class Parser {
  constructor() {
    this.buf = "";
    this.data = [];
    this.event = "";
    this.lastId = "";
    this.sawData = false;
  }

  // push adds text and returns the events it completed; end says no more
  // text follows, so a final \r is a line end.
  push(text, end = false) {
    this.buf += text;
    const out = [];
    let start = 0;
    for (;;) {
      let i = start;
      while (i < this.buf.length && this.buf[i] !== "\n" && this.buf[i] !== "\r") i++;
      if (i === this.buf.length) break; // no line end yet
      let next = i + 1;
      if (this.buf[i] === "\r") {
        if (i + 1 === this.buf.length && !end) break; // maybe the \r of a \r\n cut in two
        if (this.buf[i + 1] === "\n") next++;
      }
      const ev = this.line(this.buf.slice(start, i));
      if (ev) out.push(ev);
      start = next;
    }
    this.buf = this.buf.slice(start);
    if (end) this.buf = ""; // an unfinished event is dropped, as the standard says
    return out;
  }

  line(line) {
    if (line === "") {
      if (!this.sawData) {
        this.event = "";
        return null;
      }
      const ev = { id: this.lastId, event: this.event || "message", data: this.data.join("\n") };
      this.data = [];
      this.event = "";
      this.sawData = false;
      return ev;
    }
    if (line[0] === ":") return null; // a comment: keepalive
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value[0] === " ") value = value.slice(1);
    switch (field) {
      case "data":
        this.data.push(value);
        this.sawData = true;
        break;
      case "event":
        this.event = value;
        break;
      case "id":
        if (!value.includes("\0")) this.lastId = value;
        break;
    }
    return null;
  }
}

// jsonEvents yields the data of each event of body parsed as JSON, with the
// event's id as $id.
export async function* jsonEvents(body) {
  for await (const ev of events(body)) {
    let data;
    try {
      data = JSON.parse(ev.data);
    } catch {
      continue;
    }
    if (data && typeof data === "object") data.$id = ev.id;
    yield data;
  }
}
