/*! cardvault Hosted Fields v1: the merchant-side library. Plain JavaScript, no dependencies, no
 * requests to anyone but the vault that served it. The card never enters this window: each field
 * is a frame on the vault's origin; this script only places the frames, passes styles, relays
 * change events ({field, empty, valid, brand}) and receives the result of a submit. */
(function () {
  "use strict";
  var current = document.currentScript;
  var SCRIPT_ORIGIN = current && current.src ? new URL(current.src).origin : null;
  var KINDS = ["number", "expiry", "cvv", "name"];
  var TITLES = {
    number: "Card number",
    expiry: "Card expiry date",
    cvv: "Card security code",
    name: "Name on card"
  };
  var EVENTS = ["change", "focus", "blur", "enter"];

  function problem(field, code, message) {
    return { errors: [{ field: field, code: code, message: message }] };
  }

  function randomId() {
    var a = new Uint8Array(16);
    window.crypto.getRandomValues(a);
    return Array.prototype.map.call(a, function (b) {
      return (b < 16 ? "0" : "") + b.toString(16);
    }).join("");
  }

  function text(v, max) {
    return typeof v === "string" ? v.slice(0, max) : null;
  }

  /* Copies only the documented keys of a frame's answer: nothing else can reach the page. */
  function cleanResult(r) {
    var out = {};
    ["cardToken", "maskedPan", "brand", "expiry", "customerId", "txId", "status", "action"]
      .forEach(function (k) {
        var v = text(r && r[k], 100);
        if (v !== null) out[k] = v;
      });
    out.replaced = !!(r && r.replaced);
    return out;
  }

  function cleanErrors(list) {
    var errors = (Array.isArray(list) ? list : []).slice(0, 10).map(function (e) {
      return {
        field: text(e && e.field, 40) || "session",
        code: text(e && e.code, 80) || "request.failed",
        message: text(e && e.message, 300) || ""
      };
    });
    return { errors: errors.length ? errors : problem("session", "request.failed", "the vault did not answer").errors };
  }

  function create(options) {
    return new Promise(function (resolve, reject) {
      options = options || {};
      var vault = SCRIPT_ORIGIN;
      if (options.vaultUrl) {
        try {
          vault = new URL(options.vaultUrl).origin;
        } catch (e) {
          return reject(problem("vaultUrl", "config.invalid", "vaultUrl is not a URL"));
        }
      }
      if (!vault) {
        return reject(problem("vaultUrl", "config.invalid", "load hosted-fields.js from the vault or give vaultUrl"));
      }
      if (typeof options.session !== "string" || options.session === "") {
        return reject(problem("session", "config.invalid", "session is required"));
      }
      var wanted = options.fields || {};
      var kinds = KINDS.filter(function (k) { return wanted[k]; });
      if (kinds.indexOf("number") < 0 || kinds.indexOf("expiry") < 0) {
        return reject(problem("fields", "config.invalid", "fields.number and fields.expiry are required"));
      }
      var containers = {};
      for (var i = 0; i < kinds.length; i++) {
        var sel = wanted[kinds[i]];
        var el = typeof sel === "string" ? document.querySelector(sel) : sel;
        if (!el || !el.appendChild) {
          return reject(problem(kinds[i], "config.invalid", "no element for fields." + kinds[i]));
        }
        containers[kinds[i]] = el;
      }

      var channel = randomId();
      var frames = {};
      var ready = {};
      var handlers = {};
      var pending = null;
      var settled = false;
      var config = {
        styles: options.styles || {},
        placeholders: options.placeholders || {}
      };

      function send(kind, msg) {
        msg.channel = channel;
        frames[kind].contentWindow.postMessage(msg, vault);
      }

      function emit(name, event) {
        (handlers[name] || []).forEach(function (fn) {
          try { fn(event); } catch (e) { setTimeout(function () { throw e; }); }
        });
      }

      function fail(err) {
        if (settled) return;
        settled = true;
        window.removeEventListener("message", onMessage);
        kinds.forEach(function (k) { if (frames[k].parentNode) frames[k].parentNode.removeChild(frames[k]); });
        reject(err);
      }

      function kindOf(source) {
        for (var k in frames) {
          if (frames[k].contentWindow === source) return k;
        }
        return null;
      }

      var api = {
        /** Registers a handler: "change" ({field, empty, valid, brand}), "focus", "blur",
         * "enter" ({field}). Returns this. */
        on: function (name, fn) {
          if (EVENTS.indexOf(name) >= 0 && typeof fn === "function") {
            (handlers[name] = handlers[name] || []).push(fn);
          }
          return api;
        },
        /** Sends the card from the frames to the vault. Resolves with the card token's
         * details, rejects with {errors: [{field, code, message}]}. */
        submit: function () {
          if (pending) {
            return Promise.reject(problem("session", "submit.in_progress", "a submit is already in progress"));
          }
          return new Promise(function (res, rej) {
            pending = { resolve: res, reject: rej };
            send("number", { type: "submit" });
          });
        },
        focus: function (kind) {
          if (frames[kind]) send(kind, { type: "focus" });
        },
        clear: function () {
          kinds.forEach(function (k) { send(k, { type: "clear" }); });
        },
        destroy: function () {
          window.removeEventListener("message", onMessage);
          kinds.forEach(function (k) { if (frames[k].parentNode) frames[k].parentNode.removeChild(frames[k]); });
        }
      };

      function onMessage(e) {
        if (e.origin !== vault) return;
        var kind = kindOf(e.source);
        var m = e.data;
        if (!kind || !m || m.channel !== channel) return;
        switch (m.type) {
          case "ready":
            if (ready[kind]) return;
            ready[kind] = true;
            send(kind, { type: "config", styles: config.styles, placeholder: text(config.placeholders[kind], 60) });
            if (kinds.every(function (k) { return ready[k]; }) && !settled) {
              settled = true;
              resolve(api);
            }
            break;
          case "change":
            emit("change", { field: kind, empty: !!m.empty, valid: !!m.valid, brand: text(m.brand, 20) });
            break;
          case "focus":
          case "blur":
          case "enter":
            emit(m.type, { field: kind });
            break;
          case "result":
            if (kind === "number" && pending) {
              var p = pending;
              pending = null;
              p.resolve(cleanResult(m.result));
            }
            break;
          case "errors":
            if (kind === "number" && pending) {
              var q = pending;
              pending = null;
              q.reject(cleanErrors(m.errors));
            }
            break;
        }
      }
      window.addEventListener("message", onMessage);

      var grace = typeof options.loadTimeoutMs === "number" ? options.loadTimeoutMs : 2000;
      kinds.forEach(function (kind) {
        var f = document.createElement("iframe");
        var q = new URLSearchParams({
          field: kind,
          session: options.session,
          origin: window.location.origin,
          channel: channel,
          fields: kinds.join(",")
        });
        f.src = vault + "/hosted-fields/v1/frame.html?" + q.toString();
        f.title = TITLES[kind];
        f.name = "cardvault-" + kind;
        f.setAttribute("referrerpolicy", "no-referrer");
        f.setAttribute("scrolling", "no");
        f.style.border = "0";
        f.style.width = "100%";
        f.style.height = options.frameHeight || "2.75em";
        f.style.display = "block";
        f.addEventListener("load", function () {
          // A frame refused by its Content-Security-Policy (this page's origin is not the
          // session's allowOriginUrl) still fires "load", on an error page that never says ready.
          setTimeout(function () {
            if (!ready[kind]) {
              fail(problem("session", "origin.mismatch",
                "the card fields did not load: this page's origin is not the session's allowOriginUrl, or the vault is unreachable"));
            }
          }, grace);
        });
        frames[kind] = f;
        containers[kind].appendChild(f);
      });
    });
  }

  window.CardvaultHostedFields = Object.freeze({ version: "1.0.0", create: create });
})();
