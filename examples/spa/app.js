// The example app: every call goes to the API in cookie mode. The page never sees a token:
// the API sets them as HttpOnly cookies and the browser sends them back (credentials: "include").
// Serve this folder from an origin listed in ALLOWED_ORIGINS (make dev: http://localhost:3000)
// and call the API on the same site (http://localhost:9000, not 127.0.0.1): the cookies are
// SameSite=Strict. Another API address: ?api=http://localhost:9001
"use strict";

const API = new URLSearchParams(location.search).get("api") || "http://localhost:9000";
const $ = (id) => document.getElementById(id);

async function call(operation, method, path, body) {
  const options = {
    method,
    credentials: "include",
    headers: { "x-token-delivery": "cookie" },
  };
  if (body !== undefined) {
    options.headers["content-type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  let status = 0;
  let data = null;
  try {
    const response = await fetch(API + path, options);
    status = response.status;
    const text = await response.text();
    data = text ? JSON.parse(text) : null;
  } catch (err) {
    data = { error: String(err) };
  }
  log(operation, method, path, status, data);
  return { status, data };
}

function log(operation, method, path, status, data) {
  const item = document.createElement("li");
  item.dataset.op = operation;
  item.dataset.status = String(status);
  item.className = status >= 200 && status < 300 ? "ok" : "failed";
  const detail = data && data.code ? ` ${data.code}` : "";
  item.textContent = `${method} ${path} → ${status || "network error"}${detail}`;
  $("log").append(item);
}

// The signed-in user as last shown, and a sign-in waiting for its second step (kept in
// memory only, like everything else this page knows).
let shown = null;
let mfaToken = null;

function show(user) {
  shown = user;
  if (user) askForCode(null);
  $("signed-out").hidden = Boolean(user);
  $("signed-in").hidden = !user;
  $("who").textContent = user ? user.username : "";
  $("user").textContent = user ? JSON.stringify(user, null, 2) : "";
  $("verify").hidden = !user || user.email_verified;
  $("verify-email").textContent = user ? user.email : "";
  const mfa = Boolean(user && user.mfa_enabled);
  $("mfa-status").textContent = mfa ? "On: sign-in asks for a code after the password." : "Off.";
  $("mfa-setup").hidden = mfa;
  $("mfa-disable").hidden = !mfa;
  if (mfa || !user) $("mfa-pending").hidden = true;
  if (!user) showRecoveryCodes(null);
}

// The second step of a sign-in: the code field, for this mfa_token (null: none pending).
function askForCode(token) {
  mfaToken = token;
  $("mfa-verify").hidden = !token;
  $("mfa-verify").reset();
  if (token) $("mfa-code").focus();
}

function showRecoveryCodes(codes) {
  const list = $("mfa-recovery-codes");
  list.replaceChildren(...(codes || []).map((code) => {
    const item = document.createElement("li");
    item.textContent = code;
    return item;
  }));
  $("mfa-recovery").hidden = !codes;
}

function fields(form) {
  return Object.fromEntries(new FormData(form).entries());
}

async function loadMe() {
  const { status, data } = await call("me", "GET", "/auth/me");
  show(status === 200 ? data : null);
}

$("register").addEventListener("submit", async (event) => {
  event.preventDefault();
  const { status, data } = await call("register", "POST", "/auth/register", fields(event.target));
  if (status === 201) show(data.user);
});

$("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const { status, data } = await call("login", "POST", "/auth/login", fields(event.target));
  if (status === 200 && data.mfa_required) askForCode(data.mfa_token);
  else if (status === 200) show(data.user);
});

// The second step: in cookie mode like every call, so the tokens arrive as cookies here too.
$("mfa-verify").addEventListener("submit", async (event) => {
  event.preventDefault();
  const body = { mfa_token: mfaToken, code: fields(event.target).code.trim() };
  const { status, data } = await call("mfa-verify", "POST", "/auth/mfa/verify", body);
  if (status === 200) show(data.user);
  else if (status === 401) askForCode(null); // the sign-in expired or ran out of tries: start again
  else $("mfa-verify").reset();
});

$("verify").addEventListener("submit", async (event) => {
  event.preventDefault();
  const body = { email: $("verify-email").textContent, code: fields(event.target).code };
  const { status, data } = await call("verify", "POST", "/auth/email/verify", body);
  if (status === 200) show(data);
});

$("resend").addEventListener("click", async () => {
  await call("resend", "POST", "/auth/email/verify/resend", { email: $("verify-email").textContent });
});

$("me").addEventListener("click", loadMe);

$("refresh").addEventListener("click", async () => {
  const { status, data } = await call("refresh", "POST", "/auth/refresh");
  show(status === 200 ? data.user : null);
});

$("rename").addEventListener("submit", async (event) => {
  event.preventDefault();
  const { status, data } = await call("rename", "PATCH", "/auth/me", fields(event.target));
  if (status === 200) show(data);
});

// Two-step sign-in: a pending secret (shown as the key and the otpauth link an authenticator
// app reads), turned on by a first code, which answers the recovery codes this once.
$("mfa-setup").addEventListener("submit", async (event) => {
  event.preventDefault();
  const { status, data } = await call("mfa-setup", "POST", "/auth/mfa/totp/setup", fields(event.target));
  event.target.reset();
  if (status !== 200) return;
  $("mfa-secret").textContent = data.secret;
  $("mfa-uri").textContent = data.otpauth_uri;
  $("mfa-uri").href = data.otpauth_uri;
  $("mfa-pending").hidden = false;
  showRecoveryCodes(null);
});

$("mfa-confirm").addEventListener("submit", async (event) => {
  event.preventDefault();
  const { status, data } = await call("mfa-confirm", "POST", "/auth/mfa/totp/confirm", fields(event.target));
  event.target.reset();
  if (status !== 200) return;
  show(Object.assign({}, shown, { mfa_enabled: true }));
  showRecoveryCodes(data.recovery_codes);
});

$("mfa-disable").addEventListener("submit", async (event) => {
  event.preventDefault();
  const { status } = await call("mfa-disable", "DELETE", "/auth/mfa/totp", fields(event.target));
  event.target.reset();
  if (status === 204) {
    show(Object.assign({}, shown, { mfa_enabled: false }));
    showRecoveryCodes(null);
  }
});

// The session list: each sign-in, newest first; this browser's is marked, the others can be
// ended one by one (their refresh tokens stop working at once).
async function loadSessions() {
  const { status, data } = await call("sessions", "GET", "/auth/sessions");
  const list = $("session-list");
  list.replaceChildren();
  if (status !== 200) return;
  for (const session of data.sessions) {
    const item = document.createElement("li");
    item.dataset.id = session.id;
    item.dataset.current = String(session.current);
    const label = session.current ? "this browser" : session.user_agent || "unknown device";
    item.append(`${label}, since ${session.created_at}, last used ${session.last_used_at} `);
    if (!session.current) {
      const end = document.createElement("button");
      end.textContent = "End";
      end.className = "end-session";
      end.addEventListener("click", async () => {
        await call("end-session", "DELETE", `/auth/sessions/${encodeURIComponent(session.id)}`);
        await loadSessions();
      });
      item.append(end);
    }
    list.append(item);
  }
}

$("sessions").addEventListener("click", loadSessions);

$("logout-others").addEventListener("click", async () => {
  await call("logout-others", "POST", "/auth/logout", { scope: "others" });
  await loadSessions();
});

$("logout").addEventListener("click", async () => {
  await call("logout", "POST", "/auth/logout", {});
  show(null);
});

$("api").textContent = API;
loadMe();
