// Order page: follows the order through /orders/{id}/events (server-sent
// events) and updates the status region, which screen readers announce.
(function () {
  "use strict";
  var section = document.getElementById("order");
  if (!section || section.dataset.settled === "true" || !window.EventSource) return;
  var id = section.dataset.orderId;

  function apply(s) {
    var st = document.getElementById("status");
    st.textContent = s.status_text; st.dataset.status = s.status;
    var reason = document.getElementById("reason");
    document.getElementById("reason-text").textContent = s.reason;
    reason.hidden = !s.reason;
    s.steps.forEach(function (step) {
      var li = document.getElementById("step-" + step.key);
      if (!li) return;
      li.dataset.state = step.state;
      li.querySelector(".step-label").textContent = step.label;
    });
    var tracking = document.getElementById("tracking");
    document.getElementById("tracking-number").textContent = s.tracking_number;
    document.getElementById("label-link").href = s.label_url || "#";
    tracking.hidden = !s.label_url;
    section.dataset.terminal = String(s.terminal);
    section.dataset.settled = String(s.settled);
    if (s.settled) document.getElementById("live-hint").textContent = "";
  }

  // connection shows (or, with "", clears) that the page is not live.
  function connection(msg) {
    var c = document.getElementById("conn");
    c.textContent = msg; c.hidden = !msg;
  }

  var es = new EventSource("/orders/" + encodeURIComponent(id) + "/events");
  var terminal = false;
  es.addEventListener("status", function (ev) {
    connection("");
    var s = JSON.parse(ev.data);
    apply(s);
    terminal = s.terminal;
    // The server ends the stream once nothing more will change; without
    // this the browser would reconnect.
    if (s.settled) es.close();
  });
  // A cancelled order whose compensations did not all arrive: the server
  // stopped following it, and so does the page (Refresh shows the rest).
  // Otherwise the browser reconnects by itself: say the page is not live
  // meanwhile, until the next update arrives.
  es.addEventListener("error", function () {
    if (terminal) { es.close(); return; }
    connection("Connection lost, retrying… The status shown may be out of date.");
  });
})();
