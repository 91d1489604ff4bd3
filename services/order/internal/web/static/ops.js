// Ops dashboard: reloads /ops/data every 2 seconds and redraws the
// figures (text only, never markup from the data).
(function () {
  "use strict";
  function na(v) { return v === null || v === undefined ? "n/a" : String(v); }
  function cell(tag, text, cls) {
    var c = document.createElement(tag); c.textContent = text;
    if (cls) c.className = cls;
    if (tag === "th") c.scope = "row";
    return c;
  }
  function fill(id, rows) {
    var body = document.querySelector("#" + id + " tbody");
    body.replaceChildren.apply(body, rows);
  }
  function when(iso) { return new Date(iso).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC"); }

  function draw(s) {
    var at = document.getElementById("ops-at");
    at.dateTime = s.at; at.textContent = when(s.at);
    document.getElementById("ops-rate").textContent = s.orders_per_second == null ? "n/a" : s.orders_per_second.toFixed(2);
    document.getElementById("ops-last-minute").textContent = na(s.placed_last_minute);
    fill("ops-mix", s.status_mix.map(function (m) {
      var tr = document.createElement("tr"); tr.dataset.status = m.status;
      tr.append(cell("th", m.status), cell("td", m.count, "num"), cell("td", m.percent.toFixed(1) + "%", "num"));
      return tr;
    }));
    fill("ops-groups", (s.groups || []).map(function (g) {
      // The roles, as the page's own rows have them (a phone stacks them).
      var tr = document.createElement("tr"); tr.dataset.group = g.group; tr.setAttribute("role", "row");
      var cells = [cell("th", g.group), cell("td", na(g.lag), "num lag"), cell("td", na(g.dead_letters), "num dead-letters"),
        cell("td", g.topics.join(", "), "topics")];
      cells.forEach(function (c) { c.setAttribute("role", c.tagName === "TH" ? "rowheader" : "cell"); });
      tr.append.apply(tr, cells);
      return tr;
    }));
    fill("ops-outbox", s.outbox.map(function (o) {
      var tr = document.createElement("tr"); tr.dataset.service = o.service;
      tr.append(cell("th", o.service), cell("td", na(o.backlog), "num"));
      return tr;
    }));
    fill("ops-recent", s.recent.map(function (o) {
      // The classes and roles the page's own rows have (a phone stacks them).
      var tr = document.createElement("tr"); tr.setAttribute("role", "row");
      var a = document.createElement("a"); a.href = "/orders/" + encodeURIComponent(o.id);
      var code = document.createElement("code"); code.textContent = o.id; a.appendChild(code);
      var first = cell("td", "", "order"); first.appendChild(a);
      var st = cell("td", o.status, "status"); st.dataset.status = o.status;
      var placed = document.createElement("time"); placed.dateTime = o.placed_at; placed.textContent = when(o.placed_at);
      var pt = cell("td", "", "placed"); pt.appendChild(placed);
      var cells = [first, cell("td", o.customer_id, "customer"), st, cell("td", o.total, "num total"), pt];
      cells.forEach(function (c) { c.setAttribute("role", "cell"); });
      tr.append.apply(tr, cells);
      return tr;
    }));
    var probs = s.problems || [];
    document.getElementById("ops-problems").hidden = probs.length === 0;
    document.getElementById("ops-problem-list").replaceChildren.apply(
      document.getElementById("ops-problem-list"), probs.map(function (p) { return cell("li", p); }));
  }

  // connection shows (or, with "", clears) that the figures are not live.
  function connection(msg) {
    var c = document.getElementById("conn");
    c.textContent = msg; c.hidden = !msg;
  }

  async function tick() {
    try {
      var res = await fetch("/ops/data", { headers: { "Accept": "application/json" }, cache: "no-store" });
      if (!res.ok) throw new Error("GET /ops/data: " + res.status);
      draw(await res.json());
      connection("");
    } catch (e) {
      // The service restarts or the network blips: say so, try again next tick.
      connection("Connection lost, retrying… The figures shown are from the time above.");
    }
    setTimeout(tick, 2000);
  }
  setTimeout(tick, 2000);
})();
