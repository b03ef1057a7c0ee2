// rvs dashboard: draws the snapshots of GET /v1/stream (docs/dashboard.md).
// Plain JavaScript, no framework, nothing loaded from elsewhere. Rows are kept
// per service and per real server and updated in place; sparkline history is
// bounded to HISTORY points. Weight changes go through POST /v1/commands.
"use strict";
(function () {
  const HISTORY = 120;
  const MAX_EVENTS = 200;
  const COLLAPSE_ABOVE = 20;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const TOKEN_KEY = "rvs.token";
  const DRAINED_KEY = "rvs.drained";

  const $ = (id) => document.getElementById(id);
  const table = $("services");
  const rows = new Map(); // service key -> ServiceRow
  let order = [];
  let latest = null;
  let writesNeedToken = true;
  let filterText = "";
  let snapshots = 0;
  let renderMs = 0;

  // Exposed for people poking at the page from the console (and the tests).
  window.rvsDashboard = {
    get snapshots() { return snapshots; },
    get latest() { return latest; },
    get renderMs() { return renderMs; },
  };

  const token = () => sessionStorage.getItem(TOKEN_KEY) || "";
  const canWrite = () => latest !== null && (!writesNeedToken || token() !== "");

  function notice(text, isError) {
    const n = $("notice");
    n.textContent = text;
    n.className = isError ? "error" : "";
  }

  function hostPort(address, port) {
    return address.includes(":") ? "[" + address + "]:" + port : address + ":" + port;
  }

  function serviceLabel(ref) {
    if (ref.protocol === "fwmark") return "FWM " + ref.mark + (ref.ipv6 ? " IPv6" : "");
    return ref.protocol.toUpperCase() + " " + hostPort(ref.address, ref.port);
  }

  function serverKey(service, address, port) {
    return serviceLabel(service) + " -> " + hostPort(address, port);
  }

  function human(n) {
    if (n < 1000) return String(n);
    const units = ["K", "M", "G", "T"];
    let i = -1;
    while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
    return (n < 10 ? n.toFixed(1) : Math.round(n)) + units[i];
  }

  function duration(secs) {
    const d = Math.floor(secs / 86400), h = Math.floor(secs / 3600) % 24;
    const m = Math.floor(secs / 60) % 60, s = secs % 60;
    return (d ? d + "d " : "") + (d || h ? h + "h " : "") + (d || h || m ? m + "m " : "") + s + "s";
  }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  function push(history, value) {
    history.push(value);
    if (history.length > HISTORY) history.shift();
  }

  function sparkline(kind) {
    const svg = document.createElementNS(SVG_NS, "svg");
    svg.setAttribute("class", "spark " + kind);
    svg.setAttribute("viewBox", "0 0 90 18");
    svg.setAttribute("preserveAspectRatio", "none");
    svg.appendChild(document.createElementNS(SVG_NS, "polyline"));
    svg.appendChild(document.createElementNS(SVG_NS, "title"));
    return svg;
  }

  function drawSparkline(svg, history, unit) {
    let max = 1;
    for (const v of history) if (v > max) max = v;
    const step = 90 / (HISTORY - 1);
    const x0 = 90 - (history.length - 1) * step;
    let points = "";
    for (let i = 0; i < history.length; i++) {
      points += (x0 + i * step).toFixed(1) + "," + (17 - (history[i] / max) * 16).toFixed(1) + " ";
    }
    svg.firstChild.setAttribute("points", points);
    const last = history.length ? history[history.length - 1] : 0;
    svg.setAttribute("data-last", String(last));
    svg.lastChild.textContent = human(last) + " " + unit + " now, peak " + human(max) + " (last " + history.length + " s)";
  }

  function loadDrained() {
    try { return JSON.parse(localStorage.getItem(DRAINED_KEY) || "{}") || {}; } catch (e) { return {}; }
  }

  function saveDrained(map) {
    localStorage.setItem(DRAINED_KEY, JSON.stringify(map));
  }

  // POST /v1/commands with the operator's token (if any); throws with the API's message.
  async function postCommands(body) {
    const headers = { "Content-Type": "application/json" };
    if (token()) headers.Authorization = "Bearer " + token();
    const r = await fetch("/v1/commands", { method: "POST", headers, body: JSON.stringify(body) });
    if (!r.ok) {
      let message = r.statusText;
      try { message = (await r.json()).error.message; } catch (e) { /* not JSON */ }
      throw new Error("HTTP " + r.status + ": " + message);
    }
    return r.json();
  }

  // edit_server replaces the whole entry (as ipvsadm -e does): send every field
  // of the server as listed, with the new weight. proxy_protocol is left out,
  // which keeps it as it is.
  function editWeight(service, server, weight) {
    const spec = {
      address: server.address, port: server.port, weight: weight, forward: server.forward,
      u_threshold: server.u_threshold, l_threshold: server.l_threshold,
    };
    if (server.tunnel) spec.tunnel = server.tunnel;
    return postCommands({ commands: [{ op: "edit_server", service: service, server: spec }] });
  }

  class ServerRow {
    constructor(group) {
      this.group = group;
      this.cps = [];
      this.tr = el("tr", "rs");
      this.tr.row = this;
      const c = (cls) => { const td = el("td", cls); this.tr.appendChild(td); return td; };
      c("");
      this.name = c("name");
      this.method = c("method");
      this.weightCell = c("num weight");
      this.active = c("num active");
      this.inactive = c("num inactive");
      this.conns = c("num conns");
      this.cpsCell = c("num cps");
      this.bytes = c("num bytes");
      this.health = c("health");
      this.trend = c("trend");
      this.spark = sparkline("cps");
      this.trend.appendChild(this.spark);
      const actions = c("actions");
      this.weightInput = el("input", "weight");
      this.weightInput.type = "number";
      this.weightInput.min = "0";
      this.weightInput.max = "65535";
      this.weightInput.setAttribute("aria-label", "new weight");
      this.setButton = el("button", "set-weight", "Set");
      this.drainButton = el("button", "drain", "Drain");
      this.restoreButton = el("button", "restore", "Restore");
      for (const b of [this.setButton, this.drainButton, this.restoreButton]) b.type = "button";
      this.setButton.dataset.action = "set";
      this.drainButton.dataset.action = "drain";
      this.restoreButton.dataset.action = "restore";
      actions.append(this.weightInput, this.setButton, this.drainButton, this.restoreButton);
    }

    update(service, server, health, now) {
      this.service = service;
      this.server = server;
      this.key = serverKey(service, server.address, server.port);
      this.tr.dataset.server = hostPort(server.address, server.port);
      setText(this.name, hostPort(server.address, server.port));
      setText(this.method, server.forward);
      if (this.weightCell.dataset.weight !== String(server.weight)) {
        this.weightCell.dataset.weight = String(server.weight);
        this.weightCell.textContent = String(server.weight);
        if (server.weight === 0) this.weightCell.append(" ", el("span", "badge drained", "drained"));
      }
      this.weightInput.placeholder = String(server.weight);
      setText(this.active, String(server.active_conns));
      setText(this.inactive, String(server.inactive_conns));
      setText(this.conns, String(server.stats.conns));
      setText(this.cpsCell, String(server.rates.cps));
      setText(this.bytes, human(server.rates.in_bps + server.rates.out_bps));
      this.drawHealth(health, now);
      push(this.cps, server.rates.cps);
      this.updateControls();
    }

    drawHealth(h, now) {
      const text = h ? (h.up ? "up" : "down") + "|" + JSON.stringify(h.last_check || null) : "";
      if (this.health.dataset.state === text) return;
      this.health.dataset.state = text;
      this.health.textContent = "";
      if (!h) { this.health.textContent = "\u2014"; this.health.title = "not health-checked"; return; }
      this.health.appendChild(el("span", "badge " + (h.up ? "up" : "down"), h.up ? "up" : "down"));
      const c = h.last_check;
      const detail = c ? c.checker + " " + (c.ok ? "ok" : "failed") + (c.reason ? ": " + c.reason : "") : "no check yet";
      this.health.appendChild(el("span", "reason", detail));
      this.health.title = c ? detail + " (" + Math.max(0, Math.round((now - c.at_ms) / 1000)) + " s before this snapshot)" : detail;
    }

    updateControls() {
      if (!this.server) return;
      const allowed = canWrite();
      const saved = loadDrained()[this.key];
      this.setButton.disabled = !allowed;
      this.weightInput.disabled = !allowed;
      this.drainButton.disabled = !allowed || this.server.weight === 0;
      this.restoreButton.disabled = !allowed || this.server.weight !== 0 || saved === undefined;
      this.restoreButton.title = saved === undefined ? "no weight remembered from a drain on this browser" : "back to weight " + saved;
    }

    redraw() {
      drawSparkline(this.spark, this.cps, "conn/s");
    }
  }

  class ServiceRow {
    constructor(key, collapsed) {
      this.key = key;
      this.body = el("tbody", "svc-group" + (collapsed ? " collapsed" : ""));
      this.body.dataset.service = key;
      this.servers = new Map();
      this.cps = [];
      this.bytesHistory = [];
      this.search = "";
      const tr = el("tr", "svc");
      const c = (cls) => { const td = el("td", cls); tr.appendChild(td); return td; };
      this.toggle = el("button", "toggle");
      this.toggle.type = "button";
      this.toggle.dataset.action = "toggle";
      c("").appendChild(this.toggle);
      this.name = c("name");
      this.scheduler = c("scheduler");
      this.weights = c("num");
      this.active = c("num active");
      this.inactive = c("num inactive");
      this.conns = c("num conns");
      this.cpsCell = c("num cps");
      this.bytes = c("num bytes");
      this.health = c("health");
      const trend = c("trend");
      this.cpsSpark = sparkline("cps");
      this.bytesSpark = sparkline("bytes");
      trend.append(this.cpsSpark, " ", this.bytesSpark);
      c("");
      this.body.appendChild(tr);
      this.setToggle();
    }

    get collapsed() { return this.body.classList.contains("collapsed"); }

    setCollapsed(yes) {
      this.body.classList.toggle("collapsed", yes);
      this.setToggle();
      if (!yes) this.redraw();
    }

    setToggle() {
      setText(this.toggle, this.collapsed ? "\u25b8" : "\u25be");
      this.toggle.title = this.collapsed ? "show the real servers" : "hide the real servers";
    }

    update(svc, health, now) {
      setText(this.name, this.key);
      const flags = [];
      if (svc.persistence) flags.push("persistent " + svc.persistence.timeout + "s");
      if (svc.one_packet) flags.push("ops");
      setText(this.scheduler, svc.scheduler + (flags.length ? " (" + flags.join(", ") + ")" : ""));
      let active = 0, inactive = 0, up = 0, checked = 0;
      const seen = new Set();
      let before = null;
      // The core lists real servers newest first; keep that order.
      for (let i = svc.servers.length - 1; i >= 0; i--) {
        const s = svc.servers[i];
        const k = hostPort(s.address, s.port);
        seen.add(k);
        let row = this.servers.get(k);
        if (!row) {
          row = new ServerRow(this);
          this.servers.set(k, row);
        }
        if (row.tr.parentNode !== this.body || row.tr.nextSibling !== before) {
          this.body.insertBefore(row.tr, before);
        }
        before = row.tr;
        const h = health.get(serverKey(svc.service, s.address, s.port));
        row.update(svc.service, s, h, now);
        active += s.active_conns;
        inactive += s.inactive_conns;
        if (h) { checked++; if (h.up) up++; }
      }
      for (const [k, row] of this.servers) {
        if (!seen.has(k)) { row.tr.remove(); this.servers.delete(k); }
      }
      setText(this.weights, svc.servers.length + " rs");
      setText(this.active, String(active));
      setText(this.inactive, String(inactive));
      setText(this.conns, String(svc.stats.conns));
      setText(this.cpsCell, String(svc.rates.cps));
      setText(this.bytes, human(svc.rates.in_bps + svc.rates.out_bps));
      setText(this.health, checked ? up + "/" + checked + " up" : "");
      this.health.className = "health" + (checked && up < checked ? " degraded" : "");
      push(this.cps, svc.rates.cps);
      push(this.bytesHistory, svc.rates.in_bps + svc.rates.out_bps);
      this.search = (this.key + " " + svc.scheduler + " " + [...seen].join(" ")).toLowerCase();
      this.applyFilter();
      if (!this.body.hidden) this.redraw();
    }

    applyFilter() {
      this.body.hidden = filterText !== "" && !this.search.includes(filterText);
    }

    redraw() {
      drawSparkline(this.cpsSpark, this.cps, "conn/s");
      drawSparkline(this.bytesSpark, this.bytesHistory, "bytes/s");
      if (!this.collapsed) for (const row of this.servers.values()) row.redraw();
    }
  }

  function serviceKeyOf(ref) {
    return serviceLabel(ref);
  }

  function renderServices(snap) {
    const health = new Map();
    for (const h of snap.health) {
      for (const ref of h.services) health.set(serverKey(ref, h.address, h.port), h);
    }
    const services = snap.table.services;
    const collapseNew = services.length > COLLAPSE_ABOVE;
    const keys = [];
    for (const svc of services) {
      const key = serviceKeyOf(svc.service);
      keys.push(key);
      let row = rows.get(key);
      if (!row) {
        row = new ServiceRow(key, collapseNew);
        rows.set(key, row);
      }
      row.update(svc, health, snap.at_ms);
    }
    const wanted = new Set(keys);
    for (const [k, row] of rows) {
      if (!wanted.has(k)) { row.body.remove(); rows.delete(k); }
    }
    if (keys.length !== order.length || keys.some((k, i) => k !== order[i])) {
      for (const k of keys) table.appendChild(rows.get(k).body);
      order = keys;
    }
    $("empty").hidden = services.length !== 0;
    updateShown();
  }

  function updateShown() {
    let shown = 0;
    for (const row of rows.values()) if (!row.body.hidden) shown++;
    setText($("shown"), shown === rows.size ? rows.size + " services" : shown + " of " + rows.size + " services");
  }

  function renderSummary(snap) {
    const s = snap.status;
    const r = snap.reloads;
    let text = "rvsd " + s.version + " \u00b7 up " + duration(s.uptime_seconds) + " \u00b7 " +
      s.services + " services \u00b7 " + s.servers + " real servers \u00b7 " + s.connections + " connections";
    if (r.succeeded || r.failed) text += " \u00b7 reloads " + r.succeeded + " ok, " + r.failed + " failed";
    setText($("summary"), text);
  }

  function renderVrrp(snap) {
    const panel = $("vrrp-panel");
    panel.hidden = !snap.vrrp;
    if (!snap.vrrp) return;
    const body = $("vrrp").tBodies[0];
    const instances = snap.vrrp.instances;
    while (body.rows.length > instances.length) body.deleteRow(-1);
    instances.forEach((inst, i) => {
      let tr = body.rows[i];
      if (!tr) {
        tr = body.insertRow();
        for (let j = 0; j < 6; j++) tr.insertCell();
      }
      const cells = tr.cells;
      setText(cells[0], inst.name);
      setText(cells[1], inst.interface);
      setText(cells[2], String(inst.vrid));
      if (cells[3].dataset.state !== inst.state) {
        cells[3].dataset.state = inst.state;
        cells[3].textContent = "";
        cells[3].appendChild(el("span", "badge " + inst.state, inst.state));
      }
      setText(cells[4], inst.effective_priority === inst.base_priority
        ? String(inst.base_priority) : inst.effective_priority + " (base " + inst.base_priority + ")");
      setText(cells[5], inst.master || "");
    });
  }

  function renderEvents(snap) {
    const list = $("events");
    const received = Date.now();
    for (const ev of snap.events) {
      const li = el("li");
      li.dataset.seq = String(ev.seq);
      const when = new Date(received - (snap.at_ms - ev.at_ms));
      li.append(el("time", "", when.toLocaleTimeString()), el("span", "badge kind " + ev.kind, ev.kind), ev.message);
      list.insertBefore(li, list.firstChild);
    }
    while (list.children.length > MAX_EVENTS) list.lastChild.remove();
  }

  function renderAccess() {
    const form = $("token-form");
    const writable = canWrite();
    $("token").hidden = !writesNeedToken;
    $("token-use").hidden = !writesNeedToken;
    $("token-forget").hidden = !writesNeedToken || token() === "";
    setText($("access"), !writesNeedToken ? "local socket: changes need no token"
      : writable ? "token set: changes allowed" : "read-only: enter the API token to change weights");
    form.dataset.writable = String(writable);
    for (const row of rows.values()) for (const s of row.servers.values()) s.updateControls();
  }

  function render(snap) {
    const started = performance.now();
    latest = snap;
    writesNeedToken = snap.writes_need_token;
    snapshots++;
    renderSummary(snap);
    renderServices(snap);
    renderVrrp(snap);
    renderEvents(snap);
    renderAccess();
    renderMs = performance.now() - started;
  }

  function setLive(live, text) {
    const c = $("conn");
    c.className = "badge " + (live ? "live" : "off");
    setText(c, text);
  }

  let source = null;
  function connect() {
    source = new EventSource("/v1/stream");
    source.addEventListener("snapshot", (e) => {
      setLive(true, "live");
      try {
        render(JSON.parse(e.data));
      } catch (err) {
        console.error("rvs dashboard: cannot draw a snapshot", err);
        notice("cannot draw a snapshot: " + err.message, true);
      }
    });
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) {
        // Refused (401 on a listener without --open-reads) or gone: try again later.
        setLive(false, "disconnected");
        notice("the live stream was refused or lost; retrying in 5 s (a --listen address needs --open-reads for the dashboard)", true);
        source.close();
        setTimeout(connect, 5000);
      } else {
        setLive(false, "reconnecting");
      }
    };
  }

  async function act(row, action) {
    const service = row.service, server = row.server;
    const name = serviceLabel(service) + " real server " + hostPort(server.address, server.port);
    try {
      if (action === "drain") {
        const drained = loadDrained();
        drained[row.key] = server.weight;
        saveDrained(drained);
        await editWeight(service, server, 0);
        notice(name + " drained (weight " + server.weight + " -> 0)");
      } else if (action === "restore") {
        const drained = loadDrained();
        const weight = drained[row.key];
        if (weight === undefined) throw new Error("no weight remembered for " + name);
        await editWeight(service, server, weight);
        delete drained[row.key];
        saveDrained(drained);
        notice(name + " restored to weight " + weight);
      } else if (action === "set") {
        const text = row.weightInput.value.trim();
        const weight = Number(text);
        if (text === "" || !Number.isInteger(weight) || weight < 0 || weight > 65535) {
          throw new Error("a weight is a whole number from 0 to 65535");
        }
        if (weight === 0 && server.weight !== 0) {
          const drained = loadDrained();
          drained[row.key] = server.weight;
          saveDrained(drained);
        }
        await editWeight(service, server, weight);
        row.weightInput.value = "";
        notice(name + " weight " + server.weight + " -> " + weight);
      }
    } catch (err) {
      notice(name + ": " + err.message, true);
    }
  }

  table.addEventListener("click", (e) => {
    const button = e.target.closest("button[data-action]");
    if (!button || button.disabled) return;
    const action = button.dataset.action;
    if (action === "toggle") {
      const key = button.closest("tbody").dataset.service;
      const row = rows.get(key);
      if (row) row.setCollapsed(!row.collapsed);
      return;
    }
    const tr = button.closest("tr.rs");
    if (tr && tr.row) act(tr.row, action);
  });

  $("filter").addEventListener("input", (e) => {
    filterText = e.target.value.trim().toLowerCase();
    for (const row of rows.values()) {
      const was = row.body.hidden;
      row.applyFilter();
      if (was && !row.body.hidden) row.redraw();
    }
    updateShown();
  });

  $("expand-all").addEventListener("click", () => { for (const row of rows.values()) row.setCollapsed(false); });
  $("collapse-all").addEventListener("click", () => { for (const row of rows.values()) row.setCollapsed(true); });

  $("token-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const candidate = $("token").value.trim();
    if (!candidate) return;
    // A dry run of no command: 200 with a good token, 401 otherwise; changes nothing.
    const r = await fetch("/v1/commands", {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: "Bearer " + candidate },
      body: JSON.stringify({ commands: [], dry_run: true }),
    }).catch((err) => ({ ok: false, status: 0, statusText: err.message }));
    if (r.ok) {
      sessionStorage.setItem(TOKEN_KEY, candidate);
      $("token").value = "";
      notice("token accepted");
    } else {
      notice("token refused (HTTP " + r.status + ")", true);
    }
    renderAccess();
  });

  $("token-forget").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    notice("token forgotten: read-only");
    renderAccess();
  });

  connect();
})();
