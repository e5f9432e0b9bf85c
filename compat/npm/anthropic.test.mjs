// Anthropic's official JavaScript client (npm "@anthropic-ai/sdk") against
// Ferry's Messages API, as its users would set it up: the base URL is
// Ferry's root and the key a Ferry API key.
//
// compat/anthropic_npm_test.go runs this file with `node --test` against
// the real ferry binary and a fake upstream, and sets:
//   FERRY_URL           ferry's root, http://127.0.0.1:port
//   FERRY_API_KEY       a Ferry API key (fk_…)
//   FERRY_MODEL         the model to ask, routed as Ferry routes names
//   FERRY_EXPECTED_TEXT the fake's answer, JSON-encoded
import { test } from "node:test";
import assert from "node:assert/strict";
import Anthropic from "@anthropic-ai/sdk";

const url = process.env.FERRY_URL;
const key = process.env.FERRY_API_KEY;
const model = process.env.FERRY_MODEL;
const expectedText = JSON.parse(process.env.FERRY_EXPECTED_TEXT ?? '""');
const messages = [{ role: "user", content: "say 你好" }];

// This SDK sends apiKey as a bearer token; the other client sends the key
// in x-api-key, as Anthropic's other SDKs and tools do.
const client = new Anthropic({ baseURL: url, apiKey: key, maxRetries: 0 });
const xAPIKey = new Anthropic({ baseURL: url, apiKey: null, defaultHeaders: { "x-api-key": key }, maxRetries: 0 });

test("the environment names ferry, a key and a model", () => {
  assert.ok(url && key?.startsWith("fk_") && model, "FERRY_URL, FERRY_API_KEY and FERRY_MODEL must be set");
});

test("stream: text events, then the final message", async () => {
  const stream = client.messages.stream({ model, max_tokens: 321, system: "be brief", messages });
  let text = "";
  stream.on("text", (delta) => { text += delta; });
  const msg = await stream.finalMessage();
  assert.equal(text, expectedText);
  assert.equal(msg.content.length, 1);
  assert.equal(msg.content[0].type, "text");
  assert.equal(msg.content[0].text, expectedText);
  assert.equal(msg.model, model);
  assert.equal(msg.role, "assistant");
  assert.equal(msg.stop_reason, "end_turn");
  assert.equal(msg.usage.input_tokens, 7);
  assert.equal(msg.usage.output_tokens, 9);
  assert.match(msg.id, /^msg_/);
});

test("create in one piece, the key in x-api-key", async () => {
  const msg = await xAPIKey.messages.create({ model, max_tokens: 50, messages: [
    { role: "user", content: [{ type: "text", text: "hi" }] },
    { role: "assistant", content: "hello" },
    { role: "user", content: "more" },
  ] });
  assert.equal(msg.type, "message");
  assert.equal(msg.content[0].text, expectedText);
  assert.equal(msg.stop_reason, "end_turn");
  assert.equal(msg.stop_sequence, null);
});

test("countTokens: Ferry's estimate", async () => {
  const { input_tokens } = await client.messages.countTokens({ model, messages: [{ role: "user", content: "word ".repeat(100) }] });
  assert.ok(input_tokens >= 100 && input_tokens < 200, `input_tokens ${input_tokens}`);
});

test("errors: the SDK's classes, with Anthropic's types", async () => {
  const bad = new Anthropic({ baseURL: url, apiKey: "fk_not-a-key", maxRetries: 0 });
  await assert.rejects(bad.messages.create({ model, max_tokens: 10, messages }), (err) => {
    assert.ok(err instanceof Anthropic.AuthenticationError, `${err}`);
    assert.equal(err.status, 401);
    assert.equal(err.type, "authentication_error");
    return true;
  });
  await assert.rejects(client.messages.create({ model, messages }), (err) => {
    assert.ok(err instanceof Anthropic.BadRequestError, `${err}`);
    assert.equal(err.type, "invalid_request_error");
    assert.match(err.apiMessage, /^max_tokens: required/);
    return true;
  });
});
