// api.js: Ferry's API as the page calls it. The token pair lives in
// localStorage, so a reload or a new tab stays signed in; the access token
// is refreshed with /auth/refresh a minute before it expires, before any
// call that finds it expired, and once on a 401. Errors are APIError with
// the problem's detail as message.

const KEY = "ferry.tokens";

let tokens = load();
let refreshing = null; // the refresh in flight, shared by every caller
let timer = 0;
let onSignedOut = () => {};

// APIError is a refused request: status and the RFC 9457 problem's detail.
export class APIError extends Error {
  constructor(status, message, problem) {
    super(message);
    this.status = status;
    this.problem = problem;
  }
}

function load() {
  try {
    return JSON.parse(localStorage.getItem(KEY));
  } catch {
    return null;
  }
}

// Another tab refreshed or signed out: take its tokens.
window.addEventListener("storage", (e) => {
  if (e.key !== KEY) return;
  tokens = load();
  schedule();
  if (!tokens) onSignedOut();
});

function save(pair) {
  tokens = pair && {
    access: pair.access_token,
    refresh: pair.refresh_token,
    expires: Date.now() + pair.expires_in * 1000,
  };
  if (tokens) localStorage.setItem(KEY, JSON.stringify(tokens));
  else localStorage.removeItem(KEY);
  schedule();
}

function schedule() {
  clearTimeout(timer);
  if (!tokens) return;
  const lifetime = tokens.expires - Date.now();
  // A minute early, or at 80% of a short lifetime.
  const wait = Math.max(0, Math.min(lifetime - 60_000, lifetime * 0.8));
  timer = setTimeout(() => refresh().catch(() => {}), wait);
}

// signedIn reports whether the page holds a token pair.
export function signedIn() {
  return tokens !== null;
}

// whenSignedOut sets what happens when the session ends (a refresh refused,
// or another tab signed out).
export function whenSignedOut(fn) {
  onSignedOut = fn;
  schedule();
}

// problem reads a refused response into an APIError.
export async function problem(res) {
  let body = null;
  try {
    body = await res.json();
  } catch {}
  let msg = (body && (body.detail || body.title)) || res.statusText || "request failed";
  if (body && Array.isArray(body.errors) && body.errors.length) {
    msg += ": " + body.errors.map((e) => [e.location, e.message].filter(Boolean).join(" ")).join("; ");
  }
  return new APIError(res.status, msg, body);
}

// refresh exchanges the refresh token for a new pair; concurrent callers
// share one request. A refused refresh signs out.
export function refresh() {
  if (!tokens) return Promise.reject(new APIError(401, "not signed in"));
  refreshing ??= (async () => {
    const res = await fetch("/auth/refresh", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ refresh_token: tokens.refresh }),
    });
    if (!res.ok) {
      const err = await problem(res);
      if (res.status === 401 || res.status === 400) {
        save(null);
        onSignedOut();
      }
      throw err;
    }
    save(await res.json());
  })().finally(() => (refreshing = null));
  return refreshing;
}

// bearer returns the Authorization header's value, refreshing first when
// the access token has expired or is about to.
async function bearer() {
  if (tokens && tokens.expires - Date.now() < 10_000) await refresh();
  return tokens ? "Bearer " + tokens.access : "";
}

// request fetches path with the access token and returns the response when
// it is 2xx, else throws APIError. A 401 refreshes and retries once.
// opts is fetch's, plus json (a body to send as JSON) and raw (return any
// status, unread).
export async function request(path, opts = {}, retried = false) {
  const init = { ...opts, headers: { ...(opts.headers || {}) } };
  if (opts.json !== undefined) {
    init.body = JSON.stringify(opts.json);
    init.headers["Content-Type"] = "application/json";
  }
  const auth = await bearer();
  if (auth) init.headers.Authorization = auth;
  const res = await fetch(path, init);
  if (res.status === 401 && tokens && !retried) {
    await refresh();
    return request(path, opts, true);
  }
  if (res.ok || opts.raw) return res;
  throw await problem(res);
}

// json is request whose answer is JSON (null for 204).
export async function json(path, opts = {}) {
  const res = await request(path, opts);
  return res.status === 204 ? null : res.json();
}

// register creates an account; login signs in.
export function register(email, password) {
  return json("/auth/register", { method: "POST", json: { email, password } });
}

export async function login(email, password) {
  const res = await fetch("/auth/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ email, password }),
  });
  if (!res.ok) throw await problem(res);
  save(await res.json());
}

// logout ends the session on the server (when it can) and here.
export async function logout() {
  try {
    if (tokens) await request("/auth/logout", { method: "POST" });
  } catch {}
  save(null);
}

// upload posts a form with XMLHttpRequest, whose upload progress fetch
// cannot report: onProgress gets the fraction sent. It resolves to the
// JSON answer; a 401 refreshes and retries once.
export async function upload(path, form, onProgress, retried = false) {
  const auth = await bearer();
  const xhr = new XMLHttpRequest();
  const done = new Promise((resolve, reject) => {
    xhr.onload = () => resolve();
    xhr.onerror = () => reject(new APIError(0, "the upload failed: network error"));
    xhr.onabort = () => reject(new APIError(0, "the upload was cancelled"));
  });
  xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
  xhr.open("POST", path);
  if (auth) xhr.setRequestHeader("Authorization", auth);
  xhr.responseType = "text";
  xhr.send(form);
  await done;
  if (xhr.status === 401 && tokens && !retried) {
    await refresh();
    return upload(path, form, onProgress, true);
  }
  const res = new Response(xhr.status === 204 ? null : xhr.responseText, {
    status: xhr.status,
    headers: { "Content-Type": xhr.getResponseHeader("Content-Type") || "" },
  });
  if (!res.ok) throw await problem(res);
  onProgress(1);
  return res.status === 204 ? null : res.json();
}
