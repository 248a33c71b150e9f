/*! cardvault Hosted Fields v1: one card field, on the vault's origin. The frame holding the
 * number collects the other fields' values over a BroadcastChannel of the vault's origin (never
 * through the merchant's window), posts the card to /payments and hands the merchant page only
 * the result. Messages are accepted only from the parent window on the origin this frame was
 * created for (checked by the vault against the session, and enforced by frame-ancestors). */
(function () {
  "use strict";
  var q = new URLSearchParams(window.location.search);
  var kind = q.get("field");
  var session = q.get("session") || "";
  var parentOrigin = q.get("origin") || "";
  var channelId = q.get("channel") || "";
  var kinds = (q.get("fields") || "").split(",");
  var input = document.getElementById("field");
  var label = document.getElementById("label");
  var hint = document.getElementById("hint");

  var SPECS = {
    number: { label: "Card number", autocomplete: "cc-number", mode: "numeric", placeholder: "1234 1234 1234 1234", max: 23 },
    expiry: { label: "Expiry date, month and year (MM/YY)", autocomplete: "cc-exp", mode: "numeric", placeholder: "MM/YY", max: 5 },
    cvv: { label: "Security code (CVC)", autocomplete: "cc-csc", mode: "numeric", placeholder: "CVC", max: 4 },
    name: { label: "Name on card", autocomplete: "cc-name", mode: "text", placeholder: "Name on card", max: 100 }
  };
  var spec = SPECS[kind];
  var ancestors = window.location.ancestorOrigins;
  if (!spec || window.parent === window || !/^https?:\/\/[^/?#@]+$/.test(parentOrigin) ||
      !/^[0-9a-f]{32}$/.test(channelId) || kinds.indexOf(kind) < 0 ||
      (ancestors && ancestors.length > 0 && ancestors[0] !== parentOrigin)) {
    return; // not inside the page this frame was made for: stay disabled
  }

  /* ---- card rules ---- */
  function range(p, n, lo, hi) {
    if (p.length < n) return false;
    var v = +p.slice(0, n);
    return v >= lo && v <= hi;
  }
  function span(a, b) { var out = []; for (var i = a; i <= b; i++) out.push(i); return out; }
  var BRANDS = [
    { name: "visa", test: function (p) { return p[0] === "4"; }, lengths: [13, 16, 19], cvv: 3, gaps: [4, 8, 12] },
    { name: "amex", test: function (p) { return /^3[47]/.test(p); }, lengths: [15], cvv: 4, gaps: [4, 10] },
    { name: "mastercard", test: function (p) { return range(p, 2, 51, 55) || range(p, 4, 2221, 2720); }, lengths: [16], cvv: 3, gaps: [4, 8, 12] },
    { name: "jcb", test: function (p) { return range(p, 4, 3528, 3589); }, lengths: span(16, 19), cvv: 3, gaps: [4, 8, 12] },
    { name: "diners", test: function (p) { return range(p, 3, 300, 305) || /^3095|^3[689]/.test(p); }, lengths: span(14, 19), cvv: 3, gaps: [4, 10] },
    { name: "discover", test: function (p) { return /^6011|^65/.test(p) || range(p, 3, 644, 649) || range(p, 6, 622126, 622925); }, lengths: span(16, 19), cvv: 3, gaps: [4, 8, 12] },
    { name: "unionpay", test: function (p) { return /^62|^81/.test(p); }, lengths: span(16, 19), cvv: 3, gaps: [4, 8, 12] },
    { name: "maestro", test: function (p) { return /^5[0678]|^6304|^6759|^676770|^676774|^639/.test(p); }, lengths: span(12, 19), cvv: 3, gaps: [4, 8, 12] }
  ];
  var UNKNOWN = { name: "unknown", lengths: span(12, 19), cvv: 3, gaps: [4, 8, 12] };
  function brandOf(d) {
    if (!d) return UNKNOWN;
    for (var i = 0; i < BRANDS.length; i++) if (BRANDS[i].test(d)) return BRANDS[i];
    return UNKNOWN;
  }
  function luhn(d) {
    var sum = 0;
    for (var i = 0; i < d.length; i++) {
      var n = d.charCodeAt(d.length - 1 - i) - 48;
      if (i % 2 === 1) { n *= 2; if (n > 9) n -= 9; }
      sum += n;
    }
    return sum % 10 === 0;
  }
  function digits(s, max) { return s.replace(/\D/g, "").slice(0, max); }
  function group(d, gaps) {
    var out = "";
    for (var i = 0; i < d.length; i++) {
      if (gaps.indexOf(i) >= 0) out += " ";
      out += d[i];
    }
    return out;
  }

  /* ---- this field's state ---- */
  var peerBrand = "unknown"; // the number frame's brand, for the CVV length
  function raw() {
    if (kind === "name") return input.value.trim();
    return digits(input.value, 19);
  }
  function check() {
    var v = raw();
    var s = { empty: v === "", valid: false, code: "field.required", brand: null };
    if (kind === "number") {
      var b = brandOf(v);
      s.brand = v.length >= 1 ? b.name : null;
      s.valid = b.lengths.indexOf(v.length) >= 0 && luhn(v);
      s.code = s.empty ? "field.required" : "card.invalid";
    } else if (kind === "expiry") {
      var mm = +v.slice(0, 2), yy = +v.slice(2, 4);
      var ok = v.length === 4 && mm >= 1 && mm <= 12;
      var now = new Date();
      var future = ok && (2000 + yy > now.getFullYear() || (2000 + yy === now.getFullYear() && mm >= now.getMonth() + 1));
      s.valid = ok && future;
      s.code = s.empty ? "field.required" : ok ? "card.expired" : "field.invalid";
    } else if (kind === "cvv") {
      var want = peerBrand === "amex" ? 4 : 3;
      s.valid = v.length === want;
      s.code = s.empty ? "field.required" : "field.invalid";
    } else {
      s.valid = v.length <= 100; // optional
      s.code = "field.invalid";
    }
    return s;
  }
  var MESSAGES = {
    "number:field.required": "Enter the card number.",
    "number:card.invalid": "The card number is not valid.",
    "number:field.invalid": "The card number is not valid.",
    "expiry:field.required": "Enter the expiry date.",
    "expiry:field.invalid": "The expiry date is not a valid MM/YY.",
    "expiry:card.expired": "The card has expired.",
    "cvv:field.required": "Enter the security code.",
    "cvv:field.invalid": "The security code has the wrong length for this card.",
    "name:field.invalid": "The name on the card is not valid.",
    "session:session.invalid": "The session is unknown, expired or already used: reload the page to start again.",
    "session:origin.mismatch": "This page's origin is not the session's allowOriginUrl.",
    "session:request.failed": "The vault could not be reached: try again."
  };
  function error(field, code) {
    return { field: field, code: code, message: MESSAGES[field + ":" + code] || "The request was refused (" + code + ")." };
  }

  /* ---- styles from the merchant (an allow-list of properties) ---- */
  var STYLE_KEYS = ["color", "fontSize", "fontFamily", "fontWeight", "fontStyle", "letterSpacing",
    "lineHeight", "textAlign", "backgroundColor", "borderColor", "borderRadius", "borderWidth", "padding", "height"];
  var styles = {};
  var focused = false;
  var shownInvalid = false;
  function applyStyles() {
    var s = check();
    var invalid = shownInvalid || (!s.valid && !s.empty && !focused);
    input.setAttribute("aria-invalid", invalid ? "true" : "false");
    input.removeAttribute("style");
    [styles.base, focused && styles.focus, invalid && styles.invalid, s.valid && !s.empty && styles.valid]
      .forEach(function (set) {
        if (!set || typeof set !== "object") return;
        STYLE_KEYS.forEach(function (k) {
          if (typeof set[k] === "string" && set[k].length < 80 && !/url\(|expression|[;{}]/i.test(set[k])) {
            input.style[k] = set[k];
          }
        });
      });
    hint.textContent = invalid ? error(kind, s.code).message : "";
  }

  /* ---- talking to the merchant page (its origin only) and to the sibling frames ---- */
  function toParent(msg) {
    msg.channel = channelId;
    window.parent.postMessage(msg, parentOrigin);
  }
  var bc = new BroadcastChannel("cardvault-hosted-fields-" + channelId);
  // The state last reported: the empty field's at load, so that a change event means the field's
  // state changed (not that the number frame announced a brand).
  var lastChange = (function () { var s = check(); return [s.empty, s.valid, s.brand].join(); })();
  function changed() {
    var s = check();
    var key = [s.empty, s.valid, s.brand].join();
    if (key !== lastChange) {
      lastChange = key;
      toParent({ type: "change", empty: s.empty, valid: s.valid, brand: s.brand });
      if (kind === "number") bc.postMessage({ type: "brand", brand: s.brand || "unknown" });
    }
    applyStyles();
  }

  function format() {
    var before = input.value;
    var caret = input.selectionStart === null ? before.length : input.selectionStart;
    var digitsBefore = kind === "name" ? 0 : digits(before.slice(0, caret), 19).length;
    var v = before;
    if (kind === "number") {
      var d = digits(before, 19);
      v = group(d, brandOf(d).gaps);
    } else if (kind === "expiry") {
      var e = digits(before, 4);
      if (e.length === 1 && e > "1") e = "0" + e;
      v = e.length > 2 ? e.slice(0, 2) + "/" + e.slice(2) : e;
    } else if (kind === "cvv") {
      v = digits(before, 4);
    } else {
      v = before.slice(0, 100);
    }
    if (v !== before) {
      input.value = v;
      if (kind !== "name") {
        var pos = 0, seen = 0;
        while (pos < v.length && seen < digitsBefore) {
          if (/\d/.test(v[pos])) seen++;
          pos++;
        }
        if (kind === "expiry" && seen === 2 && v[pos] === "/") pos++;
        input.setSelectionRange(pos, pos);
      }
    }
  }

  label.textContent = spec.label;
  input.setAttribute("autocomplete", spec.autocomplete);
  input.setAttribute("inputmode", spec.mode);
  input.setAttribute("maxlength", String(spec.max));
  input.setAttribute("placeholder", spec.placeholder);
  input.setAttribute("name", spec.autocomplete);
  input.setAttribute("aria-required", kind === "name" ? "false" : "true");
  input.disabled = false;

  input.addEventListener("input", function () { shownInvalid = false; format(); changed(); });
  input.addEventListener("focus", function () { focused = true; applyStyles(); toParent({ type: "focus" }); });
  input.addEventListener("blur", function () { focused = false; applyStyles(); toParent({ type: "blur" }); });
  input.addEventListener("keydown", function (e) {
    if (e.key === "Enter") { e.preventDefault(); toParent({ type: "enter" }); }
  });
  document.getElementById("form").addEventListener("submit", function (e) { e.preventDefault(); });

  var collecting = null;
  bc.onmessage = function (e) {
    var m = e.data || {};
    if (m.type === "brand" && kind === "cvv") {
      // The number's brand decides the CVV's length: a change event only if that changes this
      // field's state, as for the shopper's own typing.
      peerBrand = typeof m.brand === "string" ? m.brand : "unknown";
      changed();
    } else if (m.type === "collect" && kind !== "number") {
      var s = check();
      bc.postMessage({ type: "value", id: m.id, field: kind, value: raw(), valid: s.valid, code: s.code });
    } else if (m.type === "value" && kind === "number" && collecting && m.id === collecting.id) {
      collecting.values[m.field] = m;
      if (kinds.every(function (k) { return k === "number" || collecting.values[k]; })) collecting.done();
    } else if (m.type === "invalid" && kind !== "number") {
      shownInvalid = Array.isArray(m.fields) && m.fields.indexOf(kind) >= 0;
      applyStyles();
    }
  };

  function collect() {
    return new Promise(function (resolve, reject) {
      var id = String(Math.random()).slice(2);
      var timer = setTimeout(function () { collecting = null; reject(); }, 3000);
      collecting = {
        id: id,
        values: {},
        done: function () { clearTimeout(timer); var v = collecting.values; collecting = null; resolve(v); }
      };
      if (kinds.length === 1) collecting.done();
      bc.postMessage({ type: "collect", id: id });
    });
  }

  var FIELD_OF = { number: "number", expiryMonth: "expiry", expiryYear: "expiry", cvv: "cvv", nameOnCard: "name" };
  function submit() {
    collect().then(function (values) {
      var own = check();
      values.number = { field: "number", value: raw(), valid: own.valid, code: own.code };
      var errors = [];
      kinds.forEach(function (k) { if (!values[k].valid) errors.push(error(k, values[k].code)); });
      var cvv = values.cvv ? values.cvv.value : "";
      // The CVV frame checks its length against the brand it was told; checked again here against
      // the number sent, once: an error the CVV frame reported already is not repeated.
      if (cvv && values.cvv.valid && cvv.length !== (brandOf(values.number.value).name === "amex" ? 4 : 3)) {
        errors.push(error("cvv", "field.invalid"));
      }
      var bad = errors.map(function (e) { return e.field; });
      shownInvalid = bad.indexOf("number") >= 0;
      applyStyles();
      bc.postMessage({ type: "invalid", fields: bad });
      if (errors.length) return toParent({ type: "errors", errors: errors });
      var exp = values.expiry.value;
      var body = new URLSearchParams();
      body.set("token", session);
      body.set("number", values.number.value);
      body.set("expiryMonth", exp.slice(0, 2));
      body.set("expiryYear", "20" + exp.slice(2, 4));
      if (cvv) body.set("cvv", cvv);
      if (values.name && values.name.value) body.set("nameOnCard", values.name.value);
      body.set("hostedFieldsOrigin", parentOrigin);
      return window.fetch("/payments", {
        method: "POST",
        body: body,
        credentials: "omit",
        cache: "no-store",
        referrerPolicy: "no-referrer"
      }).then(function (resp) { return resp.json(); }).then(function (r) {
        if (r && r.result === "success") {
          toParent({
            type: "result",
            result: {
              cardToken: r.cardToken, maskedPan: r.maskedPan, brand: r.brand,
              expiry: exp.slice(0, 2) + "/" + exp.slice(2, 4), customerId: r.customerId,
              txId: r.txId, status: r.status, action: r.action, replaced: !!r.replaced
            }
          });
        } else {
          var list = (r && Array.isArray(r.errors) ? r.errors : []).map(function (e) {
            var code = String(e.messageCode || "request.failed");
            if (code.indexOf("This field is required") === 0) code = "field.required";
            var field = FIELD_OF[e.fieldName] || "session";
            if (field === "number" && code === "field.invalid") code = "card.invalid";
            return error(field, code);
          });
          toParent({ type: "errors", errors: list.length ? list : [error("session", "request.failed")] });
        }
      });
    }).catch(function () {
      toParent({ type: "errors", errors: [error("session", "request.failed")] });
    });
  }

  window.addEventListener("message", function (e) {
    if (e.source !== window.parent || e.origin !== parentOrigin) return;
    var m = e.data;
    if (!m || m.channel !== channelId) return;
    if (m.type === "config") {
      styles = m.styles && typeof m.styles === "object" ? m.styles : {};
      if (typeof m.placeholder === "string") input.setAttribute("placeholder", m.placeholder);
      applyStyles();
    } else if (m.type === "submit" && kind === "number") {
      submit();
    } else if (m.type === "focus") {
      input.focus();
    } else if (m.type === "clear") {
      input.value = "";
      shownInvalid = false;
      changed();
    }
  });

  toParent({ type: "ready" });
})();
