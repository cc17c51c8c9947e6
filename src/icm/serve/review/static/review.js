// The console's keyboard and the image's reveal; every page works without it (plain forms).
(function () {
  "use strict";

  function typing(target) {
    return target instanceof HTMLElement &&
      (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName) &&
        !(target.tagName === "INPUT" && ["radio", "checkbox", "button", "submit"].includes(target.type)));
  }

  function say(text) {
    const live = document.getElementById("live");
    if (live) live.textContent = text;
  }

  const keys = document.getElementById("keys");
  function toggleKeys() {
    if (!keys) return;
    if (keys.open) keys.close(); else keys.showModal();
  }
  document.querySelectorAll("[data-keys-open]").forEach((b) => b.addEventListener("click", toggleKeys));

  // -- the image: blurred and greyscale until revealed; the first reveal is audited ------------
  const frame = document.getElementById("frame");
  const revealButton = document.getElementById("reveal");
  let auditedReveal = false;
  function toggleReveal() {
    if (!frame || !revealButton) return;
    const hidden = frame.classList.toggle("hidden-image");
    revealButton.setAttribute("aria-pressed", hidden ? "false" : "true");
    revealButton.textContent = hidden ? "Reveal image (r)" : "Hide image (r)";
    document.getElementById("image").alt = hidden ? "The image under review, blurred and greyscale until revealed"
      : "The image under review";
    say(hidden ? "Image hidden" : "Image revealed");
    if (!hidden && !auditedReveal) {
      auditedReveal = true;
      fetch(frame.dataset.revealUrl, {method: "POST", headers: {"X-CSRF-Token": frame.dataset.csrf},
        credentials: "same-origin"});
    }
  }
  if (revealButton) revealButton.addEventListener("click", toggleReveal);
  if (frame) frame.addEventListener("click", toggleReveal);

  // -- deciding --------------------------------------------------------------------------------
  const decision = document.getElementById("decision");
  function rules() { return decision ? Array.from(decision.querySelectorAll("fieldset.rule")) : []; }
  function chosen(fieldset) {
    const checked = fieldset.querySelector("input[type=radio]:checked");
    return checked ? checked.value : "";
  }
  function choose(fieldset, value) {
    const input = fieldset.querySelector(`input[type=radio][value=${value}]`);
    if (input) input.checked = true;
  }
  function toggleRule(number) {
    const fieldset = rules().find((f) => f.dataset.rule === String(number));
    if (!fieldset) return;
    choose(fieldset, chosen(fieldset) === "violates" ? "complies" : "violates");
    say(`Rule ${fieldset.dataset.ruleId}: ${chosen(fieldset)}`);
  }
  function decide(action) {
    if (!decision) return;
    const select = decision.querySelector("#action");
    const reason = decision.querySelector("#reason_rule");
    select.value = action;
    if (action === "allow") {
      rules().forEach((f) => { if (!chosen(f)) choose(f, "complies"); });
    } else if (action === "block" && !rules().some((f) => chosen(f) === "violates")) {
      const target = rules().find((f) => f.dataset.ruleId === reason.value) || rules()[0];
      if (target) choose(target, "violates");
      if (target && !reason.value) reason.value = target.dataset.ruleId;
    }
    if (action !== select.dataset.model && !reason.value) {
      const violated = rules().find((f) => chosen(f) === "violates") || rules()[0];
      if (violated) reason.value = violated.dataset.ruleId;
    }
    decision.requestSubmit();
  }
  if (decision) {
    decision.querySelectorAll("[data-action-key]").forEach((b) =>
      b.addEventListener("click", () => decide(b.dataset.actionKey)));
  }

  // -- the queue: j/k move the selection, Enter opens ------------------------------------------
  const rows = Array.from(document.querySelectorAll("tr[data-row]"));
  let selected = -1;
  function select(index) {
    if (!rows.length) return;
    selected = Math.max(0, Math.min(rows.length - 1, index));
    rows.forEach((r, i) => r.classList.toggle("selected", i === selected));
    const button = rows[selected].querySelector("button");
    if (button) button.focus();
  }

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
    if (keys && keys.open && event.key !== "?") return;
    const key = event.key;
    if (key === "?") { toggleKeys(); event.preventDefault(); return; }
    if (decision) {
      if (key === "j") { document.getElementById("next-form").requestSubmit(); }
      else if (key === "k") { const prev = document.querySelector("[data-key-prev]"); if (prev) prev.click(); }
      else if (key === "a") { decide("allow"); }
      else if (key === "b") { decide("block"); }
      else if (key === "r") { toggleReveal(); }
      else if (/^[1-9]$/.test(key)) { toggleRule(Number(key)); }
      else return;
      event.preventDefault();
    } else if (rows.length) {
      if (key === "j") select(selected + 1);
      else if (key === "k") select(selected - 1);
      else return;
      event.preventDefault();
    }
  });
})();
