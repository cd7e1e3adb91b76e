// The demo page's script: no framework, no other origin. The page's texts
// and the API's settings come from data- attributes of <main>, written by
// the server in the page's language.
"use strict";

(function () {
  const main = document.getElementById("demo");
  const cfg = main.dataset;
  const status = document.getElementById("status");
  const sendForm = document.getElementById("send-form");
  const changeForm = document.getElementById("change-form");
  const emailInput = document.getElementById("email");
  const codeInput = document.getElementById("code");
  const revertForm = document.getElementById("revert-form");
  const revertInput = document.getElementById("revert-token");
  const userID = document.getElementById("user-id");
  const userEmail = document.getElementById("user-email");

  // The device headers a real app would fill from its platform. A browser
  // does not know its own address: the server tells what it sees.
  const osVersion = ("web " + (navigator.platform || "")).trim().slice(0, 128);
  const agent = (navigator.userAgent || "browser").slice(0, 512);
  const fingerprint = (function () {
    const b = new Uint8Array(16);
    crypto.getRandomValues(b);
    return "demo-" + Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  })();
  let clientIP = "";

  function headers(withToken) {
    const h = {
      "Content-Type": "application/json",
      "X-operating-sys-version": osVersion,
      "X-device-fingerprint": fingerprint,
      "X-agent": agent,
      "X-L": cfg.xl,
      "X-client-id": cfg.client,
    };
    if (clientIP) {
      h["X-device-ip"] = clientIP;
    }
    if (withToken) {
      h["Authorization"] = "Bearer " + cfg.token;
    }
    return h;
  }

  // say shows text in the live region; state is busy, sent, changed or
  // error (for the styles and for tests).
  function say(text, state) {
    status.textContent = text;
    status.dataset.state = state;
  }

  function busy(form, on) {
    form.setAttribute("aria-busy", on ? "true" : "false");
    form.querySelector("button").disabled = on;
  }

  // post sends one API request and returns {ok} or {ok: false, msg, code},
  // msg being the API's own error_msg in the page's language.
  async function post(path, body, withToken) {
    let resp;
    try {
      resp = await fetch(path, {
        method: "POST",
        headers: headers(withToken),
        body: JSON.stringify(body),
        cache: "no-store",
      });
    } catch (e) {
      return { ok: false, msg: cfg.msgNetwork };
    }
    if (resp.ok) {
      return { ok: true };
    }
    let e = null;
    try {
      e = await resp.json();
    } catch (err) {
      e = null;
    }
    if (e && typeof e.error_msg === "string") {
      return { ok: false, msg: e.error_msg, code: e.error_code };
    }
    return { ok: false, msg: fill(cfg.msgUnexpected, "status", "HTTP " + resp.status) };
  }

  // fill puts value in place of {key} in one of the page's texts. The
  // replacement is a function: a string one would read $&, $` and $' in
  // value as patterns, and they are valid in an address (a$&b@example.com).
  function fill(text, key, value) {
    return text.replace("{" + key + "}", () => value);
  }

  function sayError(r) {
    say(r.code ? r.msg + " (" + r.code + ")" : r.msg, "error");
  }

  async function loadUser() {
    const resp = await fetch("/demo/user", { cache: "no-store" });
    if (!resp.ok) {
      throw new Error("HTTP " + resp.status);
    }
    const u = await resp.json();
    userID.textContent = u.id;
    userEmail.textContent = u.email || "—";
    clientIP = u.client_ip || "";
    return u;
  }

  sendForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const email = emailInput.value.trim();
    busy(sendForm, true);
    say(cfg.msgSending, "busy");
    const r = await post(cfg.sendPath, { email: email, type: "UPDATE_EMAIL_EMS", captcha_token: "dev" }, false);
    busy(sendForm, false);
    if (!r.ok) {
      sayError(r);
      return;
    }
    say(fill(cfg.msgSent, "email", email), "sent");
    codeInput.focus();
  });

  changeForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    busy(changeForm, true);
    say(cfg.msgChanging, "busy");
    const r = await post(cfg.updatePath, { email: emailInput.value.trim(), verify_code: codeInput.value.trim() }, true);
    if (!r.ok) {
      busy(changeForm, false);
      sayError(r);
      return;
    }
    try {
      const u = await loadUser();
      codeInput.value = "";
      say(fill(cfg.msgChanged, "email", u.email), "changed");
    } catch (e) {
      say(fill(cfg.msgUnexpected, "status", e.message), "error");
    }
    busy(changeForm, false);
  });

  revertForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    busy(revertForm, true);
    say(cfg.msgUndoing, "busy");
    const r = await post(cfg.revertPath, { revert_token: revertInput.value.trim() }, false);
    if (!r.ok) {
      busy(revertForm, false);
      sayError(r);
      return;
    }
    try {
      const u = await loadUser();
      revertInput.value = "";
      say(fill(cfg.msgUndone, "email", u.email), "reverted");
    } catch (e) {
      say(fill(cfg.msgUnexpected, "status", e.message), "error");
    }
    busy(revertForm, false);
  });

  // The undo link of a notice carries its token in the fragment, which no
  // server sees: take it, and drop it from the address bar and history.
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.has("revert_token")) {
    revertInput.value = fragment.get("revert_token");
    history.replaceState(null, "", location.pathname + location.search);
    revertInput.focus();
  }

  loadUser().catch((e) => say(fill(cfg.msgUnexpected, "status", e.message), "error"));
})();
