// The kye catalog's only script: on the runs page, running runs' status and counts follow
// /runs.json every second without a reload. Pages read the same without it.
"use strict";
(function () {
  const table = document.getElementById("runs");
  if (!table) return;
  const live = document.getElementById("live");
  const counts = ["stored", "rejected", "missing", "failed", "skipped"];
  let timer = null;

  function text(v) {
    return v === null || v === undefined ? "—" : String(v);
  }

  function row(run) {
    let tr = document.getElementById("run-" + run.id);
    if (tr) return tr;
    // A run started since the page loaded: a new row at the top, built from text only.
    tr = document.createElement("tr");
    tr.id = "run-" + run.id;
    tr.dataset.run = String(run.id);
    const th = document.createElement("th");
    th.scope = "row";
    th.textContent = String(run.id);
    tr.appendChild(th);
    const request = document.createElement("td");
    const code = document.createElement("code");
    code.textContent = text(run.request);
    request.appendChild(code);
    tr.appendChild(request);
    const cells = [["field", "status"], [null, "started_at"], ["field", "ended_at"]]
      .concat(counts.map((c) => ["count", c]))
      .concat([["field", "error"]]);
    for (const [kind, name] of cells) {
      const td = document.createElement("td");
      if (kind) td.dataset[kind] = name;
      if (!kind) td.textContent = text(run[name]);
      tr.appendChild(td);
    }
    table.tBodies[0].prepend(tr);
    return tr;
  }

  function update(runs) {
    let running = 0;
    for (const run of runs) {
      if (run.status === "running") running += 1;
      const tr = row(run);
      for (const el of tr.querySelectorAll("[data-field]")) {
        el.textContent = text(run[el.dataset.field]);
      }
      for (const el of tr.querySelectorAll("[data-count]")) {
        el.textContent = text((run.counts || {})[el.dataset.count] || 0);
      }
    }
    if (live) {
      live.textContent = running
        ? running + " run(s) running; updated " + new Date().toLocaleTimeString()
        : "no run running";
    }
    return running;
  }

  async function poll() {
    try {
      const resp = await fetch(table.dataset.poll, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (!resp.ok) return;
      const body = await resp.json();
      update(body.runs || []);
    } catch (e) {
      if (live) live.textContent = "updates paused: " + e.message;
    }
  }

  timer = setInterval(poll, 1000);
  window.addEventListener("pagehide", () => clearInterval(timer));
})();
