// app.js: the page. Views are sections of index.html shown by the URL's
// hash (#chat/ID, #pdf, #collections, #keys); everything shown from the
// API or a model is set as text or built by markdown.js, never as HTML.

import * as api from "./api.js";
import { jsonEvents } from "./stream.js";
import { render } from "./markdown.js";

const $ = (id) => document.getElementById(id);
const VIEWS = ["chat", "pdf", "collections", "keys"];
// The answer being streamed, kept in sessionStorage so a reload resumes it:
// {conversation_id, message_id, last_id, text}.
const STREAM_KEY = "ferry.stream";

let active = null; // the chat answer streaming now
let conversationID = "";

function h(tag, text, className) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = text;
  if (className) e.className = className;
  return e;
}

function notify(msg) {
  const n = $("notice");
  n.textContent = msg;
  n.hidden = !msg;
  clearTimeout(notify.timer);
  if (msg) notify.timer = setTimeout(() => (n.hidden = true), 8000);
}

function fail(err) {
  if (err && err.name === "AbortError") return;
  console.error(err);
  notify(err && err.message ? err.message : String(err));
}

// guard runs an async handler, reporting its failure.
const guard = (fn) => (...args) => Promise.resolve(fn(...args)).catch(fail);

// ---- Views and sign-in ----

function show(view) {
  const signed = api.signedIn();
  $("auth").hidden = signed;
  for (const id of ["nav", "model-box", "signout"]) $(id).hidden = !signed;
  for (const v of VIEWS) $(v).hidden = !signed || v !== view;
  for (const a of $("nav").querySelectorAll("a")) a.classList.toggle("active", a.hash === "#" + view);
}

async function route() {
  if (!api.signedIn()) return show("");
  const [view, id] = location.hash.slice(1).split("/");
  const v = VIEWS.includes(view) ? view : "chat";
  show(v);
  if (v === "chat") {
    if ((id || "") !== conversationID || !$("messages").hasChildNodes()) await openConversation(id || "");
    await loadConversations();
  } else if (v === "collections") await loadCollections();
  else if (v === "keys") await loadKeys();
}

async function start() {
  show("chat");
  const me = await api.json("/users/me");
  $("who").textContent = me.email;
  await loadModels();
  const saved = savedStream();
  if (saved) {
    history.replaceState(null, "", "#chat/" + saved.conversation_id);
    conversationID = "";
  }
  await route();
}

function signedOut() {
  abortActive();
  sessionStorage.removeItem(STREAM_KEY);
  conversationID = "";
  $("messages").replaceChildren();
  $("conversations").replaceChildren();
  $("who").textContent = "";
  show("");
}

$("auth-form").addEventListener("submit", guard(async (e) => {
  e.preventDefault();
  await api.login($("email").value, $("password").value);
  await start();
}));

$("signup").addEventListener("click", guard(async () => {
  const form = $("auth-form");
  if (!form.reportValidity()) return;
  await api.register($("email").value, $("password").value);
  await api.login($("email").value, $("password").value);
  await start();
}));

$("signout").addEventListener("click", guard(async () => {
  await api.logout();
  signedOut();
}));

window.addEventListener("hashchange", guard(route));
api.whenSignedOut(signedOut);

// ---- Models ----

async function loadModels() {
  const { default: def, items } = await api.json("/ai/models");
  const sel = $("model");
  sel.replaceChildren(...items.map((m) => {
    const o = h("option", m.id);
    o.value = m.id;
    return o;
  }));
  const saved = localStorage.getItem("ferry.model");
  sel.value = items.some((m) => m.id === saved) ? saved : def;
}

$("model").addEventListener("change", () => localStorage.setItem("ferry.model", $("model").value));

const model = () => $("model").value || undefined;

// ---- Answers ----

// Answer is one streamed answer shown in el: its text so far, rendered at
// most once a frame.
class Answer {
  constructor(el) {
    this.el = el;
    this.body = el.querySelector(".body");
    if (!this.body) el.append((this.body = h("div", null, "body")));
    this.text = "";
    this.lastID = "";
    this.conversation = "";
    this.message = "";
    this.done = false;
    this.pending = false;
    this.onFrame = null;
  }

  set(text) {
    this.text = text;
    this.paint();
  }

  paint() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.body.replaceChildren(render(this.text));
      if (this.onFrame) this.onFrame(this);
    });
  }

  note(text, className) {
    this.el.append(h("div", text, className));
  }

  // read consumes an event stream of the seed's shape ({conversation_id},
  // {sources}, {text}, {error}, {done}), calling on for each event.
  async read(res, on) {
    this.el.classList.add("streaming");
    try {
      for await (const ev of jsonEvents(res.body)) {
        if (ev.$id) this.lastID = ev.$id;
        if (ev.conversation_id) this.conversation = ev.conversation_id;
        if (ev.message_id) this.message = ev.message_id;
        if (typeof ev.text === "string") {
          this.text += ev.text;
          this.paint();
        }
        if (ev.error) this.note(ev.error.message || "the answer failed", "error");
        if (ev.done) this.done = true;
        if (on) on(ev);
      }
    } finally {
      this.el.classList.remove("streaming");
      this.paint();
    }
  }
}

// ---- Chat ----

async function loadConversations() {
  const { items } = await api.json("/conversations?limit=50");
  $("conversations").replaceChildren(...items.map((c) => {
    const a = h("a", c.title || "Untitled");
    a.href = "#chat/" + c.id;
    const li = h("li");
    li.append(a);
    li.classList.toggle("active", c.id === conversationID);
    return li;
  }));
}

function bubble(role, text) {
  const m = h("div", null, "msg " + role);
  const body = h("div", null, "body");
  if (role === "assistant") body.append(render(text));
  else body.textContent = text;
  m.append(body);
  $("messages").append(m);
  m.scrollIntoView({ block: "end" });
  return m;
}

async function openConversation(id) {
  abortActive();
  conversationID = id;
  const box = $("messages");
  box.replaceChildren();
  controls();
  if (!id) return;
  const saved = savedStream();
  const conv = await api.json("/conversations/" + encodeURIComponent(id));
  if (conversationID !== id) return; // another was opened meanwhile
  let streaming = null;
  for (const m of conv.messages) {
    if (m.role === "system") continue;
    if (m.role === "assistant" && m.status === "streaming") {
      streaming = m;
      continue;
    }
    const b = bubble(m.role, m.content);
    if (m.role === "assistant" && m.status !== "complete") b.append(h("div", m.error || m.status, "status"));
  }
  if (saved && saved.conversation_id === id) await resume(id, saved);
  else if (streaming) await resume(id, { text: "", last_id: "" });
  else controls();
}

function savedStream() {
  try {
    return JSON.parse(sessionStorage.getItem(STREAM_KEY));
  } catch {
    return null;
  }
}

// remember keeps where the answer got to; called once a frame, so the text
// and the last event id always go together.
function remember(a) {
  if (!a.conversation || a.done) return;
  sessionStorage.setItem(STREAM_KEY, JSON.stringify({
    conversation_id: a.conversation, message_id: a.message, last_id: a.lastID, text: a.text,
  }));
}

function controls() {
  const streaming = active !== null;
  $("send").disabled = streaming;
  $("stop").hidden = !streaming;
  $("regenerate").hidden = streaming || !$("messages").querySelector(".msg.user");
}

// chat streams one answer into the conversation: the start event names
// the conversation, which becomes the page's.
async function chat(message) {
  if (active) return;
  const a = new Answer(bubble("assistant", ""));
  a.conversation = conversationID;
  await follow(a, (signal) => api.request("/ai/chat/stream", {
    method: "POST", signal,
    json: { message, model: model(), conversation_id: conversationID || undefined },
  }));
}

// follow runs the stream that open starts as the active answer, until it
// is done, stopped or broken.
async function follow(a, open) {
  const me = { answer: a, ctl: new AbortController(), stopping: false };
  active = me;
  controls();
  a.onFrame = (x) => {
    remember(x);
    x.el.scrollIntoView({ block: "end" });
  };
  try {
    const res = await open(me.ctl.signal);
    if (res.status === 204) return; // nothing is being generated
    await a.read(res, (ev) => {
      if (ev.conversation_id && ev.conversation_id !== conversationID) {
        conversationID = ev.conversation_id;
        history.replaceState(null, "", "#chat/" + conversationID);
        loadConversations().catch(fail); // a new one: list it at once
      }
    });
    if (!a.done) a.note("The connection was lost before the answer ended; reload to resume.", "status");
  } catch (err) {
    if (err.name !== "AbortError") {
      a.note(err.message, "error");
      throw err;
    }
  } finally {
    if (me.stopping) a.note("Stopped.", "status");
    if (a.done || me.stopping) sessionStorage.removeItem(STREAM_KEY);
    a.onFrame = null;
    if (active === me) active = null;
    controls();
    loadConversations().catch(fail);
  }
}

// resume follows the answer being generated in conversation id from the
// event after saved.last_id, showing saved.text first.
async function resume(id, saved) {
  const a = new Answer(bubble("assistant", saved.text || ""));
  a.text = saved.text || "";
  a.lastID = saved.last_id || "";
  a.conversation = id;
  a.message = saved.message_id || "";
  let gone = false;
  await follow(a, async (signal) => {
    const headers = a.lastID ? { "Last-Event-ID": a.lastID } : {};
    const res = await api.request("/conversations/" + encodeURIComponent(id) + "/stream", { signal, headers, raw: true });
    if (res.status === 204 || res.status === 404 || res.status === 405) {
      gone = true;
      return new Response(null, { status: 204 });
    }
    if (!res.ok) throw await api.problem(res);
    return res;
  });
  if (gone) {
    // Nothing is being generated: what was stored is the answer.
    sessionStorage.removeItem(STREAM_KEY);
    if (conversationID === id) {
      conversationID = "";
      await openConversation(id);
    }
  }
}

function abortActive() {
  if (!active) return;
  // The page leaves the answer; the server may go on with it, and the
  // conversation resumes it when opened again.
  active.answer.onFrame = null;
  active.ctl.abort();
  active = null;
  sessionStorage.removeItem(STREAM_KEY);
}

// stop asks the server to stop the generation, which ends the stream; if
// the server cannot (or says nothing within 3 s) the page stops reading.
async function stop() {
  if (!active) return;
  const s = active;
  s.stopping = true;
  const id = s.answer.conversation;
  if (id) {
    const res = await api.request("/conversations/" + encodeURIComponent(id) + "/stop", { method: "POST", raw: true }).catch(() => null);
    if (res && res.ok) {
      setTimeout(() => s.ctl.abort(), 3000);
      return;
    }
  }
  s.ctl.abort();
}

$("chat-form").addEventListener("submit", guard(async (e) => {
  e.preventDefault();
  const text = $("prompt").value;
  if (!text.trim() || active) return;
  $("prompt").value = "";
  bubble("user", text);
  await chat(text);
}));

$("prompt").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    $("chat-form").requestSubmit();
  }
});

$("stop").addEventListener("click", guard(stop));

// Regenerate asks the last question again in the same conversation; the
// new answer takes the old one's place on the page.
$("regenerate").addEventListener("click", guard(async () => {
  const users = $("messages").querySelectorAll(".msg.user");
  if (!users.length || active) return;
  const last = users[users.length - 1];
  while (last.nextSibling) last.nextSibling.remove();
  await chat(last.querySelector(".body").textContent);
}));

$("new-chat").addEventListener("click", () => {
  abortActive();
  conversationID = "";
  $("messages").replaceChildren();
  controls();
  if (location.hash !== "#chat") location.hash = "#chat";
  $("prompt").focus();
});

// ---- PDF ----

$("pdf-form").addEventListener("submit", guard(async (e) => {
  e.preventDefault();
  const file = $("pdf-file").files[0];
  if (!file) return;
  const form = new FormData();
  form.append("file", file);
  const q = $("pdf-question").value.trim();
  if (q) form.append("question", q);
  if (model()) form.append("model", model());
  const out = $("pdf-answer");
  out.replaceChildren();
  const a = new Answer(out);
  const wait = h("div", "Reading the PDF…", "status");
  out.append(wait);
  $("pdf-ask").disabled = true;
  try {
    await a.read(await api.request("/analyze/pdf", { method: "POST", body: form }), () => wait.remove());
    if (a.conversation) {
      const link = h("a", "Continue this conversation");
      link.href = "#chat/" + a.conversation;
      out.append(h("p", null, "more"));
      out.lastChild.append(link);
    }
  } finally {
    wait.remove();
    $("pdf-ask").disabled = false;
  }
}));

// ---- Collections ----

const collection = () => $("collection").value || "default";
let docsTimer = 0;

async function loadCollections() {
  const { items } = await api.json("/collections");
  const sel = $("collection");
  const want = localStorage.getItem("ferry.collection") || sel.value || "default";
  sel.replaceChildren(...items.map((c) => {
    const o = h("option", c.name);
    o.value = c.name;
    return o;
  }));
  sel.value = items.some((c) => c.name === want) ? want : "default";
  await loadDocuments();
}

const pages = (s) => (s.last_page > s.page ? `pages ${s.page}–${s.last_page}` : `page ${s.page}`);

async function loadDocuments() {
  clearTimeout(docsTimer);
  const name = collection();
  const { items } = await api.json("/collections/" + encodeURIComponent(name) + "/documents");
  if (name !== collection()) return;
  $("documents").replaceChildren(...items.map((d) => {
    const tr = h("tr");
    tr.dataset.status = d.status;
    const status = h("td", d.status, "status-" + d.status);
    if (d.error) status.title = d.error;
    tr.append(h("td", d.title || d.external_id), status, h("td", String(d.pages)), h("td", String(d.chunks)));
    return tr;
  }));
  // Poll while a document is on its way, and this view is shown.
  if (items.some((d) => d.status !== "indexed" && d.status !== "failed") && !$("collections").hidden) {
    docsTimer = setTimeout(() => loadDocuments().catch(fail), 700);
  }
}

$("collection").addEventListener("change", guard(async () => {
  localStorage.setItem("ferry.collection", collection());
  $("rag-answer").replaceChildren();
  $("sources").replaceChildren();
  await loadDocuments();
}));

$("collection-form").addEventListener("submit", guard(async (e) => {
  e.preventDefault();
  const name = $("collection-name").value.trim();
  if (!name) return;
  await api.json("/collections", { method: "POST", json: { name } });
  $("collection-name").value = "";
  localStorage.setItem("ferry.collection", name);
  await loadCollections();
}));

$("upload-form").addEventListener("submit", guard(async (e) => {
  e.preventDefault();
  const files = $("upload-file").files;
  if (!files.length) return;
  const form = new FormData();
  for (const f of files) form.append("file", f);
  const bar = $("upload-progress");
  bar.value = 0;
  bar.hidden = false;
  $("upload").disabled = true;
  try {
    await api.upload("/collections/" + encodeURIComponent(collection()) + "/documents", form, (f) => (bar.value = f));
    $("upload-file").value = "";
  } finally {
    $("upload").disabled = false;
  }
  await loadDocuments();
}));

function showSources(list) {
  $("sources").replaceChildren(...list.map((s) => {
    const li = h("li");
    li.value = s.n;
    li.dataset.n = s.n;
    li.append(h("strong", s.title || s.external_id || "untitled"), " ", h("span", pages(s), "page"), h("p", s.snippet, "snippet"));
    return li;
  }));
}

$("rag-form").addEventListener("submit", guard(async (e) => {
  e.preventDefault();
  const out = $("rag-answer");
  out.replaceChildren();
  $("sources").replaceChildren();
  const a = new Answer(out);
  $("rag-ask").disabled = true;
  try {
    const res = await api.request("/rag/query", {
      method: "POST", json: { question: $("rag-question").value, collection: collection(), model: model() },
    });
    await a.read(res, (ev) => {
      if (ev.sources) showSources(ev.sources);
      if (ev.done && ev.cited) {
        const cited = new Set(ev.cited.map((s) => s.n));
        for (const li of $("sources").children) li.classList.toggle("cited", cited.has(Number(li.dataset.n)));
      }
    });
  } finally {
    $("rag-ask").disabled = false;
  }
}));

// ---- API keys ----

const when = (t) => (t ? new Date(t).toLocaleString() : "never");

async function loadKeys() {
  const { items } = await api.json("/auth/api-keys");
  $("key-list").replaceChildren(...items.map((k) => {
    const tr = h("tr");
    const revoke = h("button", "Revoke", "secondary");
    revoke.type = "button";
    revoke.addEventListener("click", guard(async () => {
      await api.json("/auth/api-keys/" + encodeURIComponent(k.id), { method: "DELETE" });
      await loadKeys();
    }));
    const cell = h("td");
    cell.append(revoke);
    tr.append(h("td", k.name), h("td", k.prefix + "…"), h("td", when(k.created_at)), h("td", when(k.last_used_at)), cell);
    return tr;
  }));
}

$("key-form").addEventListener("submit", guard(async (e) => {
  e.preventDefault();
  const k = await api.json("/auth/api-keys", { method: "POST", json: { name: $("key-name").value } });
  $("key-name").value = "";
  $("new-key-value").textContent = k.key;
  $("new-key").hidden = false;
  await loadKeys();
}));

// ---- Start ----

if (api.signedIn()) start().catch(fail);
else show("");
