/* Passkeys on the hosted pages (WebAuthn). A form marked data-passkey="get" or "create"
   holds the page's sealed fields; its button asks the server for options (JSON), runs the
   browser's ceremony, and posts the answer with the form, so the server's answer is an
   ordinary page. The login page also starts the browser's autofill of passkeys
   (conditional UI) and tells the server the browser can make passkeys. */
(function () {
  "use strict";

  function toBytes(value) {
    var text = value.replace(/-/g, "+").replace(/_/g, "/");
    while (text.length % 4) text += "=";
    var raw = atob(text);
    var bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    return bytes.buffer;
  }

  function toText(buffer) {
    var bytes = new Uint8Array(buffer);
    var raw = "";
    for (var i = 0; i < bytes.length; i++) raw += String.fromCharCode(bytes[i]);
    return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function descriptors(list) {
    return (list || []).map(function (item) {
      return { type: item.type, id: toBytes(item.id), transports: item.transports };
    });
  }

  function requestOptions(json) {
    var options = Object.assign({}, json, { challenge: toBytes(json.challenge) });
    options.allowCredentials = descriptors(json.allowCredentials);
    return options;
  }

  function creationOptions(json) {
    var options = Object.assign({}, json, { challenge: toBytes(json.challenge) });
    options.user = Object.assign({}, json.user, { id: toBytes(json.user.id) });
    options.excludeCredentials = descriptors(json.excludeCredentials);
    return options;
  }

  function credentialJSON(credential) {
    var response = credential.response;
    var out = {
      id: credential.id,
      rawId: toText(credential.rawId),
      type: credential.type,
      clientExtensionResults: credential.getClientExtensionResults(),
      authenticatorAttachment: credential.authenticatorAttachment || undefined,
      response: { clientDataJSON: toText(response.clientDataJSON) }
    };
    if (response.attestationObject) {
      out.response.attestationObject = toText(response.attestationObject);
      out.response.transports = response.getTransports ? response.getTransports() : [];
    } else {
      out.response.authenticatorData = toText(response.authenticatorData);
      out.response.signature = toText(response.signature);
      if (response.userHandle) out.response.userHandle = toText(response.userHandle);
    }
    return JSON.stringify(out);
  }

  function showError(form, text) {
    var box = document.getElementById("passkey-error");
    if (!box) {
      box = document.createElement("div");
      box.id = "passkey-error";
      box.className = "error";
      box.setAttribute("role", "alert");
      form.parentNode.insertBefore(box, form);
    }
    box.textContent = text;
    box.hidden = false;
  }

  function fetchOptions(form) {
    var body = new FormData(form);
    body.delete("ceremony");
    body.delete("credential");
    return fetch(form.dataset.optionsUrl, {
      method: "POST",
      body: new URLSearchParams(body),
      credentials: "same-origin",
      headers: { Accept: "application/json" }
    }).then(function (response) {
      if (!response.ok) throw new Error("options " + response.status);
      return response.json();
    });
  }

  function submit(form, answer, credential) {
    form.elements.ceremony.value = answer.ceremony;
    form.elements.credential.value = credentialJSON(credential);
    form.submit();
  }

  var conditional = null;
  // Settles once the autofill request ended (a new request must wait for it).
  var conditionalDone = Promise.resolve();

  function run(form, answer, mediation) {
    var kind = form.dataset.passkey;
    if (kind === "create") {
      return navigator.credentials.create({ publicKey: creationOptions(answer.publicKey) });
    }
    var request = { publicKey: requestOptions(answer.publicKey) };
    if (mediation) {
      conditional = new AbortController();
      request.mediation = mediation;
      request.signal = conditional.signal;
      var pending = navigator.credentials.get(request);
      conditionalDone = pending.then(function () {}, function () {});
      return pending;
    }
    return navigator.credentials.get(request);
  }

  // Options fetched when the page loaded serve the first click (their ceremony is still
  // unused), so a click costs no extra request; later clicks ask afresh.
  var cached = null;

  function options(form) {
    var answer = cached;
    cached = null;
    return answer ? Promise.resolve(answer) : fetchOptions(form);
  }

  function start(form, button) {
    if (conditional) conditional.abort();
    conditional = null;
    button.disabled = true;
    conditionalDone
      .then(function () { return options(form); })
      .then(function (answer) {
        if (!answer.available) throw new Error("unavailable");
        cached = null;
        return run(form, answer).then(function (credential) {
          if (credential) submit(form, answer, credential);
        });
      })
      .catch(function () {
        button.disabled = false;
        showError(form, form.dataset.failed);
      });
  }

  function startConditional(form) {
    if (!window.PublicKeyCredential || !PublicKeyCredential.isConditionalMediationAvailable) return;
    PublicKeyCredential.isConditionalMediationAvailable().then(function (available) {
      if (!available) return;
      fetchOptions(form).then(function (answer) {
        if (!answer.available) return;
        cached = answer;
        run(form, answer, "conditional")
          .then(function (credential) {
            if (credential) submit(form, answer, credential);
          })
          .catch(function () { /* aborted for the button, or dismissed */ });
      }).catch(function () {});
    });
  }

  function reveal(form) {
    if (form.dataset.passkey === "get" && form.querySelector("[name=pending]")) {
      // The second factor: offered only when the user has a passkey.
      fetchOptions(form).then(function (answer) {
        if (!answer.available) return;
        cached = answer;
        form.hidden = false;
      }).catch(function () {});
      return;
    }
    form.hidden = false;
    if (form.dataset.conditional) startConditional(form);
  }

  // Passkeys work only at the relying party's origins (WEBAUTHN_ORIGINS), which the page
  // lists: the browser knows its own origin, which a proxy may hide from the server.
  function usableHere() {
    if (!window.PublicKeyCredential || !navigator.credentials) return false;
    var listed = document.querySelector("form[data-origins]");
    var origins = listed ? listed.dataset.origins.split(" ") : [];
    return origins.indexOf(window.location.origin) >= 0;
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (!usableHere()) return;
    document.querySelectorAll("[data-passkey-capable]").forEach(function (field) {
      field.value = "1";
    });
    document.querySelectorAll("[data-passkey-unavailable]").forEach(function (note) {
      note.hidden = true;
    });
    document.querySelectorAll("form[data-passkey]").forEach(function (form) {
      var button = form.querySelector("[data-passkey-start]");
      button.addEventListener("click", function () { start(form, button); });
      reveal(form);
    });
  });
})();
