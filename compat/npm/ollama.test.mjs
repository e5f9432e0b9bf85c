// Ollama's official JavaScript client (npm "ollama") against Ferry's Ollama
// proxy, as its users would set it up: the host is Ferry's /ollama and the
// Ferry key travels in the headers the client lets you set.
//
// compat/ollama_npm_test.go runs this file with `node --test` against the
// real ferry binary and a fake Ollama, and sets:
//   FERRY_URL             ferry's root, http://127.0.0.1:port
//   FERRY_API_KEY         a Ferry API key (fk_…)
//   FERRY_EXPECTED_TEXT   the fake's answer, JSON-encoded
//   FERRY_EXPECTED_MODELS the fake's model names, JSON-encoded
//   FERRY_OLLAMA_DOWN     "1" when the fake Ollama has been stopped: only
//                         the last test runs then.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Ollama } from "ollama";

const url = process.env.FERRY_URL;
const key = process.env.FERRY_API_KEY;
const down = process.env.FERRY_OLLAMA_DOWN === "1";
const up = down ? "the fake Ollama is stopped" : false;
const expectedText = JSON.parse(process.env.FERRY_EXPECTED_TEXT ?? '""');
const expectedModels = JSON.parse(process.env.FERRY_EXPECTED_MODELS ?? "[]");
const messages = [{ role: "user", content: "say 你好" }];

const ollama = new Ollama({ host: `${url}/ollama`, headers: { Authorization: `Bearer ${key}` } });

// refusal checks that fn fails with the client's ResponseError, carrying
// status and a message that matches: the {"error": …} body Ferry sent.
async function refusal(fn, status, message) {
  await assert.rejects(fn, (err) => {
    assert.equal(err.name, "ResponseError", `${err}`);
    assert.equal(err.status_code, status, err.message);
    assert.match(err.message, message);
    return true;
  });
}

test("the environment names ferry and a key", () => {
  assert.ok(url && key?.startsWith("fk_"), "FERRY_URL and FERRY_API_KEY must be set");
});

test("version: Ollama's, through Ferry", { skip: up }, async () => {
  const { version } = await ollama.version();
  assert.match(version, /^\d+\.\d+\.\d+/);
});

test("list: the models Ollama has", { skip: up }, async () => {
  const { models } = await ollama.list();
  assert.deepEqual(models.map((m) => m.name), expectedModels);
  assert.equal(models[0].details.format, "gguf");
});

test("generate in one piece (the client's default)", { skip: up }, async () => {
  const res = await ollama.generate({ model: "llama3.2", prompt: "why is the sky blue?" });
  assert.equal(res.response, expectedText);
  assert.equal(res.done, true);
  assert.equal(res.eval_count, 9);
  assert.equal(res.prompt_eval_count, 7);
});

test("generate streamed", { skip: up }, async () => {
  let text = "";
  let last;
  let parts = 0;
  for await (const part of await ollama.generate({ model: "llama3.2", prompt: "hi", stream: true, options: { temperature: 0.2 } })) {
    text += part.response;
    last = part;
    parts++;
  }
  assert.equal(text, expectedText);
  assert.ok(parts > 1, `${parts} parts: the answer came in one piece`);
  assert.equal(last.done, true);
  assert.equal(last.eval_count, 9);
});

test("chat streamed", { skip: up }, async () => {
  let text = "";
  let last;
  for await (const part of await ollama.chat({ model: "qwen2.5:7b", messages, stream: true })) {
    assert.equal(part.model, "qwen2.5:7b");
    text += part.message.content;
    last = part;
  }
  assert.equal(text, expectedText);
  assert.equal(last.done, true);
  assert.equal(last.done_reason, "stop");
});

test("chat in one piece", { skip: up }, async () => {
  const res = await ollama.chat({ model: "llama3.2", messages });
  assert.equal(res.message.role, "assistant");
  assert.equal(res.message.content, expectedText);
});

test("embed", { skip: up }, async () => {
  const res = await ollama.embed({ model: "all-minilm", input: ["第一", "second"] });
  assert.equal(res.embeddings.length, 2);
  assert.ok(res.embeddings[0].length > 0);
  assert.notDeepEqual(res.embeddings[0], res.embeddings[1]);
});

test("show and ps: read what Ollama has", { skip: up }, async () => {
  const shown = await ollama.show({ model: "llama3.2" });
  assert.equal(shown.details.family, "llama");
  const { models } = await ollama.ps();
  assert.ok(models.length > 0);
});

test("errors arrive as the client's ResponseError with Ferry's message", { skip: up }, async () => {
  await refusal(() => ollama.show({ model: "nope" }), 404, /model 'nope' not found/);
  await refusal(() => ollama.pull({ model: "llama3.2" }), 403, /ollama pull/);
  await refusal(() => ollama.delete({ model: "llama3.2" }), 403, /manage models on the Ollama host/);
  const anonymous = new Ollama({ host: `${url}/ollama` });
  await refusal(() => anonymous.list(), 401, /Authorization: Bearer/);
  await refusal(() => anonymous.generate({ model: "llama3.2", prompt: "hi" }), 401, /Authorization: Bearer/);
  const wrong = new Ollama({ host: `${url}/ollama`, headers: { Authorization: "Bearer fk_wrong" } });
  await refusal(() => wrong.chat({ model: "llama3.2", messages, stream: true }), 401, /invalid or expired API key/);
});

test("Ollama down: the error names the setting to check", { skip: !down && "the fake Ollama is running" }, async () => {
  await refusal(() => ollama.chat({ model: "llama3.2", messages, stream: true }), 503, /OLLAMA_BASE_URL/);
  await refusal(() => ollama.list(), 503, /OLLAMA_BASE_URL/);
});
