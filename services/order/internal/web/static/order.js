// Order page: follows the order through /orders/{id}/events (server-sent
// events) and updates the status region, which screen readers announce;
// while the order is pending it offers to cancel it (POST
// /v1/orders/{id}/cancel, after a confirmation).
(function () {
  "use strict";
  var section = document.getElementById("order");
  if (!section) return;
  var id = section.dataset.orderId;

  // --- cancel ---
  var box = document.getElementById("cancel-box");
  var ask = document.getElementById("cancel");
  var confirmBox = document.getElementById("cancel-confirm");
  var yes = document.getElementById("cancel-yes");
  var no = document.getElementById("cancel-no");
  var cancelMsg = document.getElementById("cancel-msg");
  // over: the cancel got its definite answer, or the order is no longer
  // pending; the offer does not come back.
  var over = false;

  function showCancel(status) {
    if (status !== "pending") over = true;
    box.hidden = over;
  }
  function confirming(on) {
    confirmBox.hidden = !on; ask.hidden = on;
    ask.setAttribute("aria-expanded", String(on));
    (on ? yes : ask).focus();
  }
  ask.addEventListener("click", function () { cancelMsg.textContent = ""; confirming(true); });
  no.addEventListener("click", function () { confirming(false); });
  yes.addEventListener("click", async function () {
    yes.disabled = true; no.disabled = true;
    cancelMsg.textContent = "Cancelling…";
    var res = null;
    try {
      res = await fetch("/v1/orders/" + encodeURIComponent(id) + "/cancel", { method: "POST", headers: { "Accept": "application/json" } });
    } catch (e) { /* the network: said below */ }
    yes.disabled = false; no.disabled = false;
    if (res && res.ok) {
      over = true; box.hidden = true;
      cancelMsg.textContent = "The order is cancelled. Nothing will be charged.";
      // The stream brings the reason and the steps' compensations.
      var st = document.getElementById("status");
      st.textContent = "Cancelled"; st.dataset.status = "cancelled";
      return;
    }
    if (res && res.status === 409) {
      // No longer pending: the saga confirmed the order first (the API's
      // only 409 here). The status says so too, even while the stream
      // has not brought it yet.
      over = true; box.hidden = true;
      cancelMsg.textContent = "Too late to cancel: the order was already confirmed.";
      var confirmed = document.getElementById("status");
      confirmed.textContent = "Confirmed"; confirmed.dataset.status = "confirmed";
      return;
    }
    confirming(false);
    cancelMsg.textContent = res ? "The order could not be cancelled (the shop answered " + res.status + "). Please try again."
      : "The shop could not be reached, so the order was not cancelled. Please try again.";
  });
  showCancel(document.getElementById("status").dataset.status);

  // --- live status ---
  function apply(s) {
    var st = document.getElementById("status");
    st.textContent = s.status_text; st.dataset.status = s.status;
    showCancel(s.status);
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

  if (section.dataset.settled === "true" || !window.EventSource) return;
  var url = "/orders/" + encodeURIComponent(id) + "/events";
  var terminal = false;
  // The browser reconnects by itself after a stream that broke off, but
  // gives up for good on an answer that is not a stream (a 503 while the
  // database is down): the page reopens it then, waiting longer each time
  // (reopenDelay). The new stream's first event is the order as it is
  // now, so the page catches up on what it missed.
  var reopenDelay = 1000, reopening = null;
  function open() {
    var es = new EventSource(url);
    es.addEventListener("status", function (ev) {
      connection("");
      reopenDelay = 1000;
      var s = JSON.parse(ev.data);
      apply(s);
      terminal = s.terminal;
      // The server ends the stream once nothing more will change; without
      // this the browser would reconnect.
      if (s.settled) es.close();
    });
    // A cancelled order whose compensations did not all arrive: the server
    // stopped following it, and so does the page (Refresh shows the rest).
    // Otherwise say the page is not live until the next update arrives.
    es.addEventListener("error", function () {
      if (terminal) {
        es.close();
        // The hint said the page follows the order: no longer true.
        document.getElementById("live-hint").textContent =
          "This page no longer follows the order: Refresh shows what changed since.";
        return;
      }
      connection("Connection lost, retrying… The status shown may be out of date.");
      if (es.readyState === EventSource.CLOSED && !reopening) {
        reopening = setTimeout(function () { reopening = null; open(); }, reopenDelay);
        reopenDelay = Math.min(reopenDelay * 2, 30000);
      }
    });
  }
  open();
})();
