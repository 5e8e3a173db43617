// Talking to the controller: the login, the JSON API, and the live event stream.
// The token lives in sessionStorage: it is gone when the tab closes, and every
// call sends it as a bearer token, exactly like the Python client.

const TOKEN = "shoal.token";
const LOGIN = "shoal.login";
const RETRY_MS = 2000; // before reconnecting a dropped event stream

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

const listeners = new Set();

export const session = {
  get token() {
    return sessionStorage.getItem(TOKEN);
  },
  get login() {
    return sessionStorage.getItem(LOGIN);
  },
  set(token, login) {
    sessionStorage.setItem(TOKEN, token);
    sessionStorage.setItem(LOGIN, login);
    listeners.forEach((f) => f());
  },
  clear() {
    sessionStorage.removeItem(TOKEN);
    sessionStorage.removeItem(LOGIN);
    listeners.forEach((f) => f());
  },
  // Called whenever the user logs in or out (or the controller says the token is no good).
  onChange(f) {
    listeners.add(f);
    return () => listeners.delete(f);
  },
};

async function detail(response) {
  try {
    const body = await response.json();
    if (typeof body.detail === "string") return body.detail;
    if (Array.isArray(body.detail)) return body.detail.map((d) => d.msg).join("; ");
    return JSON.stringify(body);
  } catch {
    return `${response.status} ${response.statusText}`;
  }
}

export async function login(name, password) {
  const response = await fetch("/api/token", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ login: name, password }),
  });
  if (!response.ok) throw new ApiError(response.status, await detail(response));
  const { access_token: token } = await response.json();
  session.set(token, name);
}

export async function logout() {
  try {
    await api("POST", "/api/logout");
  } finally {
    session.clear();
  }
}

export async function api(method, path, body) {
  const headers = { authorization: `Bearer ${session.token}` };
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) session.clear();
  if (!response.ok) throw new ApiError(response.status, await detail(response));
  return response.json();
}

export const experimentPath = (name) => `/api/experiments/${encodeURIComponent(name)}`;

// Follow GET /api/events: handlers.<event>(data) for each event, handlers.status(s)
// with "live", "reconnecting" or an ApiError that ends it (401, 404, 400).
// Returns a function that stops it.
export function subscribe(params, handlers) {
  const query = new URLSearchParams();
  (params.topics || []).forEach((t) => query.append("topic", t));
  if (params.experiment !== undefined) query.set("experiment", params.experiment);
  const control = new AbortController();
  const status = handlers.status || (() => {});

  async function follow() {
    const response = await fetch(`/api/events?${query}`, {
      headers: { authorization: `Bearer ${session.token}`, accept: "text/event-stream" },
      signal: control.signal,
      cache: "no-store",
    });
    if (!response.ok) {
      const error = new ApiError(response.status, await detail(response));
      if (response.status === 401) session.clear();
      throw error;
    }
    status("live");
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        dispatch(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
      }
    }
  }

  function dispatch(block) {
    let event = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith("event: ")) event = line.slice(7);
      else if (line.startsWith("data: ")) data.push(line.slice(6));
    }
    if (!data.length) return; // a comment (keep-alive)
    if (event === "logout") session.clear();
    const handler = handlers[event];
    if (handler) handler(JSON.parse(data.join("\n")));
  }

  (async () => {
    while (!control.signal.aborted) {
      try {
        await follow();
      } catch (error) {
        if (control.signal.aborted) return;
        if (error instanceof ApiError && error.status < 500) {
          status(error); // refused: retrying would be refused again
          return;
        }
      }
      if (control.signal.aborted || !session.token) return;
      status("reconnecting");
      await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
    }
  })();
  return () => control.abort();
}
