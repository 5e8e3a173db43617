// The dashboard: a login, then Nodes, Experiments and one experiment's page.
// Pages are addressed by the URL's fragment (#/nodes, #/experiments,
// #/experiments/NAME) so every page can be bookmarked and reloaded.
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { login, logout, session } from "./api.js";
import { html, Message } from "./lib.js";
import { NodesPage } from "./pages/nodes.js";
import { ExperimentsPage } from "./pages/experiments.js";
import { ExperimentPage } from "./pages/experiment.js";

function useHash() {
  const [hash, setHash] = useState(location.hash);
  useEffect(() => {
    const changed = () => setHash(location.hash);
    addEventListener("hashchange", changed);
    return () => removeEventListener("hashchange", changed);
  }, []);
  return hash;
}

function useSession() {
  const [token, setToken] = useState(session.token);
  useEffect(() => session.onChange(() => setToken(session.token)), []);
  return token;
}

function route(hash) {
  const path = hash.replace(/^#\/?/, "");
  const [page, ...rest] = path.split("/");
  if (page === "experiments" && rest.length) {
    return { page: "experiment", name: decodeURIComponent(rest.join("/")) };
  }
  return { page: page === "experiments" ? "experiments" : "nodes" };
}

function LoginPage() {
  const [name, setName] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  async function submit(event) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await login(name, password);
    } catch (e) {
      setError(e.status === 401 ? new Error("Wrong login or password.") : e);
      setBusy(false);
    }
  }
  return html`<main class="login">
    <form onSubmit=${submit} aria-label="log in">
      <h1>shoal</h1>
      <p class="muted">Log in with your shoal user (the same as for the CLI and the API).</p>
      <label>Login <input name="login" autocomplete="username" value=${name} required
        onInput=${(e) => setName(e.target.value)} /></label>
      <label>Password <input name="password" type="password" autocomplete="current-password"
        value=${password} onInput=${(e) => setPassword(e.target.value)} /></label>
      <${Message} error=${error} />
      <button type="submit" disabled=${busy}>Log in</button>
    </form>
  </main>`;
}

function Nav({ current }) {
  const link = (href, label, page) =>
    html`<a href=${href} class=${current === page ? "current" : ""}>${label}</a>`;
  return html`<header>
    <span class="brand">shoal</span>
    <nav>
      ${link("#/nodes", "Nodes", "nodes")}
      ${link("#/experiments", "Experiments", "experiments")}
      <a href="/docs" target="_blank" rel="noopener">API</a>
    </nav>
    <span class="user">
      <span data-testid="user">${session.login}</span>
      <button class="link" onClick=${() => logout()}>Log out</button>
    </span>
  </header>`;
}

function App() {
  const hash = useHash();
  const token = useSession();
  if (!token) return html`<${LoginPage} />`;
  const r = route(hash);
  const current = r.page === "experiment" ? "experiments" : r.page;
  let page;
  if (r.page === "experiment") page = html`<${ExperimentPage} name=${r.name} />`;
  else if (r.page === "experiments") page = html`<${ExperimentsPage} />`;
  else page = html`<${NodesPage} />`;
  return html`<${Nav} current=${current} /><main>${page}</main>`;
}

const root = document.getElementById("app");
root.textContent = ""; // the "loading" line
render(html`<${App} />`, root);
