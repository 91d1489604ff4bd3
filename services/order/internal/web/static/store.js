// Storefront: the cart (kept in localStorage) and the checkout, which
// places the order through POST /v1/orders like any API client.
(function () {
  "use strict";
  var CART_KEY = "shopflow.cart";
  var MAX_QTY = 1000;
  var products = {};
  document.querySelectorAll("tr[data-sku]").forEach(function (tr) {
    products[tr.dataset.sku] = {
      sku: tr.dataset.sku, name: tr.dataset.name, currency: tr.dataset.currency,
      priceCents: parseInt(tr.dataset.priceCents, 10)
    };
  });

  // What the page keeps in localStorage, shared by its tabs: the cart,
  // the checkout attempt whose outcome is not known yet (ATTEMPT_KEY:
  // its Idempotency-Key and exactly the body sent with it), and the last
  // order placed (PLACED_KEY), which tells the other tabs.
  var ATTEMPT_KEY = "shopflow.checkout", PLACED_KEY = "shopflow.placed";
  var memory = {}; // private mode: what the page keeps lives for the page
  function load(name) {
    try {
      var v = JSON.parse(localStorage.getItem(name) || "null");
      return v && typeof v === "object" ? v : null;
    } catch (e) { return memory[name] || null; }
  }
  function save(name, v) {
    memory[name] = v;
    try {
      if (v === null) localStorage.removeItem(name); else localStorage.setItem(name, JSON.stringify(v));
    } catch (e) { /* private mode: kept in memory */ }
  }
  function loadCart() { return load(CART_KEY) || {}; }
  function saveCart(c) { save(CART_KEY, c); }
  // noteRemoved tells the customer which lines left the cart, and why.
  function noteRemoved(lines) {
    var note = document.getElementById("cart-note");
    note.textContent = lines.length ? "Removed from your cart: " + lines.join("; ") + "." : "";
    note.hidden = lines.length === 0;
  }

  // checkCart reads a stored cart, not trusting it (an old page's, or
  // edited by hand): only products sold here, in whole quantities
  // 1..MAX_QTY, stay; the rest is dropped, and said (removed).
  function checkCart(stored) {
    var c = {}, removed = [];
    Object.keys(stored).forEach(function (sku) {
      var q = stored[sku], p = products[sku];
      if (!p) {
        removed.push(sku.slice(0, 64) + " (no longer sold)");
      } else if (!Number.isInteger(q) || q < 1 || q > MAX_QTY) {
        removed.push(p.name + " (the quantity was not a whole number from 1 to " + MAX_QTY + ")");
      } else {
        c[sku] = q;
      }
    });
    return { cart: c, removed: removed };
  }
  var checked = checkCart(loadCart());
  var cart = checked.cart, removed = checked.removed;
  if (removed.length) saveCart(cart);
  // fresh re-reads the cart before a change: another tab may have changed
  // it since, and writing this page's copy back would undo that.
  function fresh() { cart = checkCart(loadCart()).cart; }

  // money formats minor units in the currency's own way.
  function money(minor, currency) {
    var f = new Intl.NumberFormat(undefined, { style: "currency", currency: currency });
    var digits = f.resolvedOptions().maximumFractionDigits;
    return f.format(minor / Math.pow(10, digits));
  }

  function announce(msg) { document.getElementById("cart-status").textContent = msg; }

  function renderCart() {
    var body = document.getElementById("cart-lines");
    body.replaceChildren();
    var skus = Object.keys(cart).sort();
    var totals = {};
    skus.forEach(function (sku, i) {
      var p = products[sku], qty = cart[sku];
      var tr = document.createElement("tr");
      tr.dataset.sku = sku;
      var th = document.createElement("th"); th.scope = "row"; th.textContent = p.name;
      var err = document.createElement("p");
      err.className = "field-error"; err.id = "err-items." + i + ".sku"; err.dataset.field = "items." + i + ".sku"; err.hidden = true;
      th.appendChild(err);
      var q = document.createElement("td"); q.className = "num"; q.textContent = qty;
      var qerr = document.createElement("p");
      qerr.className = "field-error"; qerr.dataset.field = "items." + i + ".quantity"; qerr.hidden = true;
      q.appendChild(qerr);
      var amt = document.createElement("td"); amt.className = "num"; amt.textContent = money(p.priceCents * qty, p.currency);
      var rm = document.createElement("td");
      var b = document.createElement("button"); b.type = "button"; b.className = "link";
      b.textContent = "Remove"; b.setAttribute("aria-label", "Remove " + p.name);
      b.addEventListener("click", function () { fresh(); delete cart[sku]; saveCart(cart); renderCart(); announce(p.name + " removed from the cart."); });
      rm.appendChild(b);
      tr.append(th, q, amt, rm);
      body.appendChild(tr);
      totals[p.currency] = (totals[p.currency] || 0) + p.priceCents * qty;
    });
    document.getElementById("cart-total").textContent =
      Object.keys(totals).map(function (c) { return money(totals[c], c); }).join(" + ");
    document.getElementById("cart-table").hidden = skus.length === 0;
    document.getElementById("cart-empty").hidden = skus.length > 0;
  }

  // readQuantity is the whole number 1..MAX_QTY in a quantity box, or
  // null: the box's number as the browser parsed it, never a guess
  // ("2.7", "0", "-1" and "99999999" are refused, not turned into another
  // number).
  function readQuantity(input) {
    var n = input.valueAsNumber;
    return Number.isInteger(n) && n >= 1 && n <= MAX_QTY ? n : null;
  }

  function add(sku) {
    var input = document.getElementById("qty-" + sku);
    var msg = document.getElementById("qty-msg-" + sku);
    var name = products[sku].name;
    msg.hidden = true; msg.textContent = ""; input.removeAttribute("aria-invalid");
    var n = readQuantity(input);
    if (n === null) {
      msg.textContent = "Enter a whole number from 1 to " + MAX_QTY + ".";
      msg.hidden = false; input.setAttribute("aria-invalid", "true"); input.focus();
      return;
    }
    fresh();
    var had = cart[sku] || 0, now = Math.min(had + n, MAX_QTY);
    if (now === had) {
      msg.textContent = "The cart already holds " + MAX_QTY + " × " + name + ", the most one order can take.";
      msg.hidden = false;
      return;
    }
    cart[sku] = now;
    saveCart(cart); renderCart();
    if (now - had < n) {
      msg.textContent = "Added " + (now - had) + ", not " + n + ": one order takes at most " + MAX_QTY + " × " + name + ".";
      msg.hidden = false;
      announce(msg.textContent);
    } else {
      announce(n + " × " + name + " added to the cart.");
    }
  }

  document.querySelectorAll("button[data-add]").forEach(function (b) {
    b.addEventListener("click", function () { add(b.dataset.add); });
    document.getElementById("qty-" + b.dataset.add).addEventListener("keydown", function (ev) {
      if (ev.key === "Enter") { ev.preventDefault(); add(b.dataset.add); }
    });
  });
  renderCart();
  noteRemoved(removed);

  // --- checkout ---
  var form = document.getElementById("checkout");
  var status = document.getElementById("checkout-status");
  var button = document.getElementById("place");
  // One Idempotency-Key per checkout attempt, kept with exactly the body
  // sent under it in localStorage (ATTEMPT_KEY) until the attempt's
  // outcome is known: an order placed, or a definite refusal. A retry, a
  // reload or another tab sends the same body under the same key, which
  // places the order at most once. A changed cart or form gets a new key
  // only once the shop has said the old one placed nothing (settle):
  // otherwise the order it may have placed and the changed one would
  // both be placed.
  function loadAttempt() {
    var a = load(ATTEMPT_KEY);
    return a && typeof a.key === "string" && typeof a.body === "string" ? a : null;
  }

  function newKey() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    // Plain-http hosts other than localhost have no randomUUID: build a v4.
    var b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40; b[8] = (b[8] & 0x3f) | 0x80;
    var h = Array.prototype.map.call(b, function (x) { return (x + 0x100).toString(16).slice(1); }).join("");
    return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
  }

  function clearErrors() {
    document.querySelectorAll(".field-error").forEach(function (p) { p.hidden = true; p.textContent = ""; });
    document.querySelectorAll("[aria-invalid]").forEach(function (el) { el.removeAttribute("aria-invalid"); });
    var box = document.getElementById("form-errors");
    box.hidden = true; box.replaceChildren();
  }

  var inputFor = {
    "customer_id": "customer_id", "shipping_address.name": "name", "shipping_address.line1": "line1",
    "shipping_address.line2": "line2", "shipping_address.city": "city",
    "shipping_address.postal_code": "postal_code", "shipping_address.country": "country"
  };

  var fieldNames = { "items": "Cart", "currency": "Currency", "payment.card_token": "Card", "expected_total_cents": "Total" };

  // fieldLabel is what the form calls an API field: its input's label,
  // the product of a cart line, or a name for the rest.
  function fieldLabel(field) {
    var id = inputFor[field];
    var label = id && document.querySelector('label[for="' + id + '"]');
    if (label) return label.firstChild.textContent.trim(); // without "(optional)"
    var line = /^items\.(\d+)\./.exec(field);
    var sku = line && Object.keys(cart).sort()[+line[1]];
    if (sku) return products[sku].name + " (cart)";
    return fieldNames[field] || field;
  }

  // fieldTarget is the control to go to for an API field, or null.
  function fieldTarget(field) {
    if (inputFor[field]) return document.getElementById(inputFor[field]);
    if (field === "payment.card_token") return form.querySelector('input[name="card_token"]');
    var line = /^items\.(\d+)\./.exec(field);
    if (line) return document.querySelectorAll("#cart-lines button")[+line[1]] || null;
    return null;
  }

  // showErrors puts each problem+json error next to its field and lists
  // them all at the top of the form, each (label: message) a link to its
  // field; a problem without field errors shows its detail there. The
  // page's own word on the checkout (lead) comes first, the fields'
  // count after it.
  function showErrors(problem) {
    var box = document.getElementById("form-errors");
    var errors = problem.errors || [];
    if (problem.lead) {
      var lead = document.createElement("p");
      lead.textContent = problem.lead;
      box.appendChild(lead);
    }
    var h = document.createElement("p");
    var fields = errors.length === 1 ? "1 field needs" : errors.length + " fields need";
    if (errors.length && problem.lead) {
      h.textContent = fields + " correcting too.";
    } else if (errors.length) {
      h.textContent = "The order was not placed: " + fields + " correcting.";
    } else if (!problem.lead) {
      h.textContent = problem.title && problem.detail ? problem.title + ": " + problem.detail : (problem.detail || problem.title || "The order was not placed.");
    }
    if (h.textContent) box.appendChild(h);
    var list = document.createElement("ul");
    errors.forEach(function (e) {
      var slot = document.querySelector('.field-error[data-field="' + CSS.escape(e.field) + '"]');
      if (slot) { slot.textContent = e.message; slot.hidden = false; }
      var target = fieldTarget(e.field);
      if (inputFor[e.field]) target.setAttribute("aria-invalid", "true");
      var li = document.createElement("li");
      var text = fieldLabel(e.field) + ": " + e.message;
      if (target) {
        if (!target.id) target.id = "go-" + e.field.replace(/[^a-z0-9]/gi, "-");
        var a = document.createElement("a");
        a.href = "#" + target.id; a.textContent = text;
        a.addEventListener("click", function (ev) {
          ev.preventDefault();
          target.focus();
          target.scrollIntoView({ block: "center" });
        });
        li.appendChild(a);
      } else {
        li.textContent = text;
      }
      list.appendChild(li);
    });
    if (errors.length) box.appendChild(list);
    box.hidden = false;
    box.focus();
  }

  function request() {
    var skus = Object.keys(cart).sort();
    var v = function (id) { return document.getElementById(id).value.trim(); };
    var card = form.querySelector('input[name="card_token"]:checked');
    var body = {
      customer_id: v("customer_id"),
      currency: skus.length ? products[skus[0]].currency : "",
      items: skus.map(function (s) { return { sku: s, quantity: cart[s] }; }),
      payment: { card_token: card ? card.value : "" },
      shipping_address: { name: v("name"), line1: v("line1"), city: v("city"),
        postal_code: v("postal_code"), country: v("country").toUpperCase() }
    };
    if (v("line2")) body.shipping_address.line2 = v("line2");
    // The total the cart shows: the order is placed only at that total,
    // so a price changed since the page was loaded is never charged unseen.
    body.expected_total_cents = skus.reduce(function (sum, s) {
      return products[s].currency === body.currency ? sum + products[s].priceCents * cart[s] : sum;
    }, 0);
    return body;
  }

  function sleep(ms) { return new Promise(function (r) { setTimeout(r, ms); }); }

  // uncertain reports whether an answer leaves open whether the order
  // was placed: a gateway's 502/503/504 may come after the order service
  // stored it, a 409 is the same key still in flight, a 408 or 429 was
  // never read. Those are retried with the same key, which can only ever
  // place the order once; any other answer is definite.
  function uncertain(status, data) {
    if (status === 409) return !totalChanged(data);
    return status >= 500 || status === 408 || status === 429;
  }

  // totalChanged reports whether a problem is the API's refusal of an
  // order whose total is no longer the cart's (expected_total_cents): a
  // definite answer, unlike the 409 of a key still in flight.
  function totalChanged(data) {
    return !!data && data.type === "urn:shopflow:problem:total-changed";
  }

  // refreshPrices reads the catalog again and updates the products, the
  // product table and the cart; products no longer sold leave the cart.
  async function refreshPrices() {
    var res = await fetch("/v1/products", { headers: { "Accept": "application/json" }, cache: "no-store" });
    if (!res.ok) throw new Error("GET /v1/products: " + res.status);
    var sold = {};
    ((await res.json()).products || []).forEach(function (p) {
      if (!p.active) return;
      sold[p.sku] = p;
      var known = products[p.sku];
      if (!known) return;
      known.priceCents = p.price_cents; known.currency = p.currency;
      var tr = document.querySelector('tr[data-sku="' + CSS.escape(p.sku) + '"]');
      if (tr) {
        tr.dataset.priceCents = p.price_cents; tr.dataset.currency = p.currency;
        tr.querySelector("td.num").textContent = money(p.price_cents, p.currency);
      }
    });
    var gone = [];
    fresh();
    Object.keys(cart).forEach(function (sku) {
      if (!sold[sku]) { gone.push(products[sku].name + " (no longer sold)"); delete cart[sku]; }
    });
    saveCart(cart); renderCart();
    if (gone.length) noteRemoved(gone);
  }

  // place posts the order for checkout attempt a, retrying network
  // failures and uncertain answers (a bounded number of times) with the
  // same key. Each POST's time is kept with the attempt (sentAt), for
  // settle. It returns the last answer and its JSON body (null when it
  // has none), or throws the last network error.
  async function place(body, a) {
    var delay = 500;
    for (var attempt = 1; ; attempt++) {
      var res;
      a.sentAt = Date.now();
      save(ATTEMPT_KEY, a);
      try {
        res = await fetch("/v1/orders", {
          method: "POST", headers: { "Content-Type": "application/json", "Accept": "application/json", "Idempotency-Key": a.key },
          body: JSON.stringify(body)
        });
      } catch (e) {
        if (attempt >= 5) throw e;
        status.textContent = "Connection problem, trying again…";
        await sleep(delay); delay *= 2;
        continue;
      }
      var data = null;
      try { data = await res.json(); } catch (e) { /* not JSON: a gateway's page */ }
      if (!uncertain(res.status, data) || attempt >= 5) return { res: res, data: data };
      if (res.status !== 409) status.textContent = "The shop did not answer clearly (" + res.status + "), trying again…";
      var after = parseInt(res.headers.get("Retry-After") || "", 10);
      await sleep(after >= 1 && after <= 30 ? after * 1000 : delay); delay *= 2;
    }
  }

  // placedOrder ends a checkout whose order was placed (id): the cart is
  // emptied and the attempt forgotten in every tab (PLACED_KEY tells the
  // others which order it was; its time makes each telling a change, which
  // the storage event needs).
  //
  // Only what the order holds leaves the cart (encoded: the body placed):
  // a product added since, here or in another tab, while the attempt was
  // open stays, and placedOrder returns true when anything did.
  function placedOrder(id, encoded) {
    save(ATTEMPT_KEY, null);
    fresh(); // another tab's changes
    var ordered = null;
    try {
      ordered = {};
      (JSON.parse(encoded).items || []).forEach(function (it) { ordered[it.sku] = (ordered[it.sku] || 0) + it.quantity; });
    } catch (e) { ordered = null; }
    var kept = false;
    Object.keys(cart).forEach(function (sku) {
      var left = ordered ? cart[sku] - (ordered[sku] || 0) : 0;
      if (left > 0) { cart[sku] = left; kept = true; } else { delete cart[sku]; }
    });
    saveCart(cart); renderCart();
    save(PLACED_KEY, { id: id, at: Date.now(), kept: kept });
    return kept;
  }

  // KEPT is what notePlaced adds when products added since stayed in the
  // cart.
  var KEPT = " What you added since is still in your cart: place it as a new order to order it too.";

  // notePlaced says, in the cart, that an order was placed, with a link
  // to its page.
  function notePlaced(text, id) {
    var note = document.getElementById("cart-note");
    note.replaceChildren(text + " ");
    var a = document.createElement("a");
    a.href = "/orders/" + encodeURIComponent(id); a.textContent = "See the order";
    note.append(a, ".");
    note.hidden = false;
  }

  // settle asks the shop what became of attempt a (GET
  // /v1/idempotency-keys/{key}), which places nothing: { id } for the
  // order it placed, { none: true } when it placed none, or {} when that
  // is still open (the key in flight, no answer, another 404). "None" is
  // trusted only for a POST sent longer ago than the shop says a
  // placement may wait for its turn (may_still_place_for_seconds, 26 s by
  // default): until then one may still be stored, holding nothing the
  // lookup sees (another tab's, still open; one a proxy gave up on), and
  // the order it places and a changed cart's would both be placed. So
  // settle waits that out first, and asks again.
  async function settle(a) {
    var delay = 500, waited = false;
    for (var i = 1; ; i++) {
      var res = null, data = null;
      try {
        res = await fetch("/v1/idempotency-keys/" + encodeURIComponent(a.key), { headers: { "Accept": "application/json" }, cache: "no-store" });
        data = await res.json();
      } catch (e) { /* no answer, or not JSON: still open */ }
      if (res && res.status === 200 && data && data.order_id) return { id: data.order_id };
      if (res && res.status === 404 && data && data.type === "urn:shopflow:problem:key-unused") {
        var bound = data.may_still_place_for_seconds;
        bound = (typeof bound === "number" && bound > 0 && bound <= 600 ? bound : 30) * 1000;
        // An attempt whose last POST is older than the shop remembers keys
        // (24 h) may have placed an order it has forgotten: "none" is no
        // answer then, and only the customer can decide to place it again.
        var remembers = data.remembers_keys_for_seconds;
        if (stale(a, typeof remembers === "number" && remembers > 0 ? remembers * 1000 : undefined)) return { forgotten: true };
        var age = Date.now() - a.sentAt;
        if (age >= bound) return { none: true };
        if (waited) return {};
        status.textContent = "Checking your earlier order: the shop may still be placing it (up to " + Math.ceil((bound - age) / 1000) + " s)…";
        await sleep(bound - age + 500);
        waited = true; i--;
        continue;
      }
      if (i >= 3 || (res && !uncertain(res.status, data))) return {};
      await sleep(delay); delay *= 2;
    }
  }

  // stale says whether attempt a's last POST is older than the shop
  // remembers keys (remembersMs, as the lookup's 404 says, else 24 h;
  // less a minute): sent again under its key, it would be taken for a new
  // order even if it placed one then.
  function stale(a, remembersMs) {
    return typeof a.sentAt !== "number" || Date.now() - a.sentAt >= (remembersMs || 86400000) - 60000;
  }

  // FORGOTTEN is what the page says of such an attempt.
  var FORGOTTEN = "Your last checkout, more than a day ago, may have placed an order, and the shop no longer remembers it: " +
    "look for it in your email or on its order page before placing this cart again.";

  // offerStartOver offers the customer's explicit choice to give up on
  // an attempt whose outcome the shop could not tell, and place the form
  // as a new order: offered, with a warning, only then.
  function offerStartOver() {
    var b = document.createElement("button");
    b.type = "button"; b.id = "start-over"; b.className = "secondary";
    b.textContent = "Place this cart as a new order anyway";
    b.title = "The earlier order may be placed as well: both would be charged.";
    b.addEventListener("click", function () { save(ATTEMPT_KEY, null); form.requestSubmit(); });
    document.getElementById("form-errors").appendChild(b);
  }

  // One checkout at a time in the whole browser (the Web Locks API,
  // where there is one): two tabs submitting within milliseconds each
  // found no open attempt, since their localStorage agree only after a
  // moment, and each placed the order under a key of its own. Under the
  // lock the second reads what the first left: its attempt, or the cart
  // its order emptied.
  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    clearErrors(); // at once: the last submission's word no longer holds
    if (navigator.locks) navigator.locks.request("shopflow.checkout", checkout);
    else checkout();
  });

  async function checkout() {
    clearErrors();
    fresh(); renderCart(); // what another tab did before the lock came
    var body = request();
    if (body.items.length === 0) {
      await emptyCart(body);
      return;
    }
    var encoded = JSON.stringify(body);
    button.disabled = true;
    var attempt = loadAttempt(); // another tab's included
    if (attempt && stale(attempt)) {
      showErrors({ detail: FORGOTTEN });
      offerStartOver();
      button.disabled = false;
      return;
    }
    if (attempt && attempt.body !== encoded) {
      // The cart or the form changed since an attempt with no known
      // outcome: what became of it decides what this submission is.
      status.textContent = "Checking your earlier order…";
      var was = await settle(attempt);
      status.textContent = "";
      if (was.id) {
        var kept = placedOrder(was.id, attempt.body);
        notePlaced("Your earlier order was placed, before the cart was changed; the changes were not ordered." +
          (kept ? KEPT : " Add them again to order them too."), was.id);
        button.disabled = false;
        return;
      }
      if (!was.none) {
        showErrors({ detail: "Your earlier order may have been placed, and the shop cannot tell. Submit again to retry: " +
          "the earlier order will not be placed twice, nor with your changes. Placing this cart as a new order anyway " +
          "would place the earlier one as well if it went through: both would be charged." });
        offerStartOver();
        button.disabled = false;
        return;
      }
      attempt = null; // it placed nothing: this is a new attempt
    }
    if (!attempt) {
      attempt = { key: newKey(), body: encoded };
      save(ATTEMPT_KEY, attempt);
    }
    status.textContent = "Placing your order…";
    try {
      var got = await place(body, attempt), res = got.res, data = got.data;
      if (res.status === 201 && data && data.id) {
        placedOrder(data.id, attempt.body);
        status.textContent = "Order placed.";
        window.location.assign("/orders/" + encodeURIComponent(data.id));
        return;
      }
      status.textContent = "";
      if (uncertain(res.status, data)) {
        // Still no definite answer: the order may have been placed. The
        // attempt stays, so submitting again cannot place it twice.
        showErrors({ detail: "The shop did not confirm the order (it answered " + res.status +
          "). Submit again to retry; the order will not be placed twice." });
        return;
      }
      // A definite answer about the request: the next attempt (with
      // corrections) is new. A refusal for changed prices was not stored
      // under the key either way, and the next body has the new total.
      save(ATTEMPT_KEY, null);
      if (totalChanged(data)) {
        var before = money(data.expected_total_cents, data.currency), now = money(data.total_cents, data.currency);
        try { await refreshPrices(); } catch (e) { /* the message below still holds */ }
        showErrors({ title: "The prices changed", detail: "Your cart came to " + before + "; at today's prices the order costs " + now +
          ". The cart now shows the new prices: check it and place the order again to accept them. Nothing was charged." });
        return;
      }
      if (res.status === 400 && data && (data.errors || []).some(function (e) { return /^items\.\d+\.sku$/.test(e.field); })) {
        // A product refused (withdrawn since the page was loaded): read the
        // catalog again, which drops what is no longer sold from the cart
        // and says so; otherwise every submission met the same refusal.
        var lines = Object.keys(cart).length;
        try { await refreshPrices(); } catch (e) { /* the refusal below still holds */ }
        if (Object.keys(cart).length < lines) {
          // The cart's lines moved: its other errors no longer match them.
          var rest = data.errors.filter(function (e) { return !/^items\./.test(e.field); });
          showErrors(rest.length ? { errors: rest } : { detail: "The order was not placed: a product in your cart is no longer sold, " +
            "and was removed from it. Check your cart and place the order again." });
          return;
        }
      }
      showErrors(data || { detail: "The shop answered " + res.status + "." });
    } catch (e) {
      // The attempt stays: submitting again retries it.
      status.textContent = "";
      showErrors({ detail: "The shop could not be reached. Submit again to retry; the order will not be placed twice." });
    } finally {
      button.disabled = false;
    }
  }

  // emptyCart answers the checkout of an empty cart: nothing can be
  // placed, and the page says so, listing with it the fields the shop
  // refuses, so that adding a product is the last thing left to do (it
  // said only that the cart was empty, and the fields came one
  // submission later). The rules are the shop's: the page sends it the
  // form with the empty cart, under no Idempotency-Key, and the shop
  // refuses it (400, every field it finds wrong) before it takes a key
  // or stores anything; the cart's own errors (items, currency, total)
  // are the empty cart, said once. No answer, or any other: only the
  // cart is mentioned.
  async function emptyCart(body) {
    var errors = [];
    button.disabled = true;
    try {
      var res = await fetch("/v1/orders", {
        method: "POST", headers: { "Content-Type": "application/json", "Accept": "application/json" }, body: JSON.stringify(body)
      });
      var data = await res.json();
      if (res.status === 400 && data && Array.isArray(data.errors)) {
        errors = data.errors.filter(function (e) { return !/^(items|currency|expected_total_cents)(\.|$)/.test(e.field); });
      }
    } catch (e) { /* no answer, or not JSON: the cart alone */ }
    button.disabled = false;
    showErrors({ lead: "Your cart is empty: add a product first.", errors: errors });
  }

  // restoreForm puts an attempt's details back in the form, so that
  // submitting it unchanged sends the same attempt again.
  function restoreForm(encoded) {
    var b;
    try { b = JSON.parse(encoded); } catch (e) { return; }
    var a = b.shipping_address || {};
    var values = { customer_id: b.customer_id, name: a.name, line1: a.line1, line2: a.line2, city: a.city,
      postal_code: a.postal_code, country: a.country };
    Object.keys(values).forEach(function (id) { document.getElementById(id).value = values[id] || ""; });
    var card = b.payment && form.querySelector('input[name="card_token"][value="' + CSS.escape(b.payment.card_token || "") + '"]');
    if (card) card.checked = true;
  }

  // A checkout left before its answer came (a reload, a closed tab):
  // find out what became of it before anything else is submitted.
  async function resume(attempt) {
    restoreForm(attempt.body);
    button.disabled = true;
    status.textContent = "Checking your last order…";
    var was = await settle(attempt);
    status.textContent = "";
    button.disabled = false;
    if (was.id) {
      notePlaced("Your order was placed." + (placedOrder(was.id, attempt.body) ? KEPT : ""), was.id);
    } else if (was.forgotten || stale(attempt)) {
      showErrors({ detail: FORGOTTEN });
      offerStartOver();
    } else if (was.none) {
      status.textContent = "Your last checkout placed no order: your cart and details are as you left them.";
    } else {
      showErrors({ detail: "Your last order may have been placed: the page was left before the shop answered. " +
        "Submit again to finish it; it will not be placed twice." });
    }
  }
  var left = loadAttempt();
  if (left) resume(left);

  // Another tab changed the cart, or placed the order: show it here too,
  // so this tab neither undoes that change nor places the order again.
  window.addEventListener("storage", function (ev) {
    if (ev.key === CART_KEY || ev.key === null) {
      fresh(); renderCart();
    }
    if (ev.key === PLACED_KEY && ev.newValue) {
      var placed = load(PLACED_KEY);
      if (placed && typeof placed.id === "string") {
        clearErrors(); // this tab's word on the attempt, now settled
        notePlaced("Your order was placed in another window." + (placed.kept ? KEPT : ""), placed.id);
      }
    }
  });
})();
