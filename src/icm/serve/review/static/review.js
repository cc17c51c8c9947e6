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

  // -- deciding: the labels are the reviewer's; the action follows from them unless they chose one
  const decision = document.getElementById("decision");
  const action = decision ? decision.querySelector("#action") : null;
  const reason = decision ? decision.querySelector("#reason_rule") : null;
  const prompt = document.getElementById("block-prompt");
  let actionChosen = false;  // the reviewer picked an action in the list: it no longer follows the labels
  let blocking = false;  // `b` was pressed with no rule labelled violates: waiting for the rule it rests on
  const RANK = {allow: 0, review: 1, blur: 2, age_gate: 3, block: 4};

  function rules() { return decision ? Array.from(decision.querySelectorAll("fieldset.rule")) : []; }
  function chosen(fieldset) {
    const checked = fieldset.querySelector("input[type=radio]:checked");
    return checked ? checked.value : "";
  }
  function choose(fieldset, value) {
    const input = fieldset.querySelector(`input[type=radio][value=${value}]`);
    if (input) input.checked = true;
  }
  function violated() { return rules().filter((f) => chosen(f) === "violates"); }
  function show(fieldset) {
    const folded = fieldset.closest("details");
    if (folded) folded.open = true;
  }
  // the action the labels call for (decision.py's labelled_action): "" while not settled
  function follows() {
    const broken = violated();
    if (broken.length) {
      const strictest = broken.map((f) => f.dataset.action).reduce((a, b) => (RANK[b] > RANK[a] ? b : a));
      return strictest === "review" ? "" : strictest;
    }
    return rules().every((f) => chosen(f) === "complies") ? "allow" : "";
  }
  // the banks a decision may add the item to: a deny bank once its rule is labelled violates
  // (checked when it is the rule's only one), an allow bank once the model's violation is overturned
  function syncBanks() {
    if (!decision) return;
    decision.querySelectorAll(".bank-offer").forEach((offer) => {
      const fieldset = rules().find((f) => f.dataset.ruleId === offer.dataset.ruleId);
      const box = offer.querySelector("input");
      const applies = fieldset && chosen(fieldset) === offer.dataset.when;
      offer.hidden = !applies;
      if (!applies) { box.checked = false; delete box.dataset.touched; }
      else if (offer.dataset.only === "true" && !box.dataset.touched) box.checked = true;
    });
    const banks = document.getElementById("banks");
    if (banks) banks.hidden = !decision.querySelector(".bank-offer:not([hidden])");
  }
  function sync() {
    if (!decision) return;
    syncBanks();
    if (!actionChosen) action.value = follows();
    const broken = violated();
    const reasonRule = rules().find((f) => f.dataset.ruleId === reason.value);
    if (action.value !== "allow" && broken.length && (!reasonRule || chosen(reasonRule) !== "violates")) {
      reason.value = broken[0].dataset.ruleId;
    } else if (reasonRule && action.value !== "allow" && chosen(reasonRule) !== "violates") {
      reason.value = "";
    }
  }
  function ask(on) {
    blocking = on;
    if (prompt) prompt.hidden = !on;
    const message = document.getElementById("key-message");
    if (message) message.hidden = true;
    rules().forEach((f) => f.classList.toggle("asked", on && chosen(f) !== "complies"));
    if (on) say(prompt ? prompt.textContent : "Which rule does the block rest on?");
  }
  function block(named) {
    if (named) { choose(named, "violates"); show(named); }
    const broken = violated();
    if (!broken.length) { ask(true); return; }
    ask(false);
    action.value = "block";
    actionChosen = true;
    const reasonRule = rules().find((f) => f.dataset.ruleId === reason.value);
    if (named) reason.value = named.dataset.ruleId;
    else if (!reasonRule || chosen(reasonRule) !== "violates") reason.value = broken[0].dataset.ruleId;
    decision.requestSubmit();
  }
  function allow() {
    const broken = violated();
    if (broken.length) {
      const message = document.getElementById("key-message");
      if (message) {
        message.textContent = `Not allowed yet: ${broken.map((f) => f.dataset.ruleId).join(", ")} is labelled ` +
          "violates. Toggle it with its number, or choose the action and a reason in the list.";
        message.hidden = false;
      }
      return;
    }
    rules().forEach((f) => { if (!chosen(f)) choose(f, "complies"); });
    action.value = "allow";
    actionChosen = true;
    decision.requestSubmit();
  }
  // `m`: the rules not yet chosen take the model's confident verdict (uncertain ones stay open)
  function agree() {
    let taken = 0;
    rules().forEach((f) => {
      const model = f.dataset.model;
      if (!chosen(f) && (model === "violates" || model === "complies")) { choose(f, model); taken += 1; }
    });
    ask(false);
    sync();
    const open = rules().filter((f) => !chosen(f)).length;
    say(`Took the model's verdict on ${taken} rule${taken === 1 ? "" : "s"}` +
      (open ? `; ${open} still to choose` : ""));
  }
  function toggleRule(number) {
    const fieldset = rules().find((f) => f.dataset.rule === String(number));
    if (!fieldset) return;
    if (blocking) { block(fieldset); return; }
    choose(fieldset, chosen(fieldset) === "violates" ? "complies" : "violates");
    show(fieldset);
    sync();
    say(`Rule ${fieldset.dataset.ruleId}: ${chosen(fieldset)}`);
  }
  if (decision) {
    action.addEventListener("change", () => { actionChosen = action.value !== ""; sync(); });
    decision.addEventListener("change", (event) => {
      const input = event.target;
      if (!(input instanceof HTMLInputElement) || input.type !== "radio") return;
      const fieldset = input.closest("fieldset.rule");
      if (blocking && input.value === "violates") { block(fieldset); return; }
      sync();
    });
    decision.querySelectorAll("[data-action-key]").forEach((b) =>
      b.addEventListener("click", () => {
        const key = b.dataset.actionKey;
        if (key === "block") block(null); else if (key === "model") agree(); else allow();
      }));
    decision.querySelectorAll(".bank-offer input").forEach((box) =>
      box.addEventListener("change", () => { box.dataset.touched = "1"; }));
    decision.addEventListener("submit", syncBanks);
    syncBanks();
    decision.querySelectorAll(".explanation").forEach((p) =>
      p.addEventListener("click", () => p.classList.toggle("open")));
  }

  // -- undo: the decision that led here, for a few seconds -------------------------------------
  const undoForm = document.getElementById("undo-form");
  if (undoForm) {
    setTimeout(() => { undoForm.remove(); }, Number(undoForm.dataset.seconds) * 1000);
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
    if (key === "u" && undoForm && document.body.contains(undoForm)) {
      undoForm.requestSubmit();
      event.preventDefault();
      return;
    }
    if (decision) {
      if (key === "Escape" && blocking) { ask(false); say("Block cancelled"); }
      else if (key === "j") { document.getElementById("next-form").requestSubmit(); }
      else if (key === "k") { const prev = document.querySelector("[data-key-prev]"); if (prev) prev.click(); }
      else if (key === "a") { allow(); }
      else if (key === "m") { agree(); }
      else if (key === "b") { block(null); }
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
