/* The review desk's keyboard and small enhancements. Everything here is optional: every
   action is a plain form post that works without JavaScript. */
(() => {
  "use strict";
  document.documentElement.classList.add("js");

  const typing = (el) =>
    !!el && (el.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(el.tagName));
  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
  let selectedTask = sessionStorage.getItem("hitl.selected") || null;

  // --- queue: j/k selection that survives the 10 s refresh -------------------------------
  const rows = () => $$("#queue tr[data-task]");
  function mark(row) {
    rows().forEach((r) => r.removeAttribute("aria-selected"));
    if (!row) return;
    row.setAttribute("aria-selected", "true");
    selectedTask = row.dataset.task;
    sessionStorage.setItem("hitl.selected", selectedTask);
  }
  function move(step) {
    const all = rows();
    if (!all.length) return;
    let index = all.findIndex((r) => r.dataset.task === selectedTask);
    index = index < 0 ? 0 : Math.min(all.length - 1, Math.max(0, index + step));
    mark(all[index]);
    all[index].scrollIntoView({ block: "nearest" });
    const link = $("a", all[index]);
    if (link) link.focus({ preventScroll: true });
  }
  function restoreSelection() {
    const row = rows().find((r) => r.dataset.task === selectedTask);
    if (row) mark(row);
  }

  // --- task page: one behaviour for every decision ------------------------------------------
  // The decision buttons declare their keys, labels and needs (data-key, data-label,
  // data-needs-reason, data-edits), from REVIEW_ACTIONS. A key that needs no reason sends its
  // decision at once. A key that needs one chooses it and puts the cursor in the reason
  // field, so whatever is typed next is the reason and can never change the answer; the edit
  // key also opens the edit box, with nothing in it focused: changing the answer takes a
  // deliberate move there (Tab or a click), and every change shows as a diff. Ctrl+Enter (or
  // the button) confirms; anything missing is said at the reason field, which gets the focus.
  // The choice lives on the form (data-chosen), so a new page starts without one.
  const form = () => $("#decide");
  const decisions = (f) => $$("button[name=action]", f);
  const chosenButton = (f) => decisions(f).find((b) => b.value === f.dataset.chosen) || null;
  const named = (b) => `${b.dataset.label} (${b.dataset.key})`;
  function listed(words) {
    return words.length > 1 ? `${words.slice(0, -1).join(", ")} or ${words.at(-1)}` : words.join("");
  }
  function say(f, message) {
    const box = $("#reason-error", f);
    const reason = $("#reason", f);
    if (!box || !reason) return;
    box.textContent = message;
    box.hidden = !message;
    if (message) {
      reason.setAttribute("aria-invalid", "true");
      reason.focus();
    } else {
      reason.removeAttribute("aria-invalid");
    }
  }
  function showChoice(f, button) {
    f.dataset.chosen = button.value;
    const note = $("[data-required-note]", f);
    if (note) note.textContent = `(required to ${button.dataset.label.toLowerCase()}; Ctrl+Enter confirms)`;
    if (button.hasAttribute("data-edits")) $("#edit-box", f).open = true;
  }
  function choose(button) {
    const f = form();
    showChoice(f, button);
    say(f, "");
    $("#reason", f).focus();
  }
  // Why `button` cannot be sent as the form stands, or "".
  function problem(f, button) {
    const changed = editChanges(f).length > 0;
    const editor = decisions(f).find((b) => b.hasAttribute("data-edits"));
    if (button.hasAttribute("data-needs-reason") && !$("#reason", f).value.trim()) {
      return `A reason is required to ${button.dataset.label.toLowerCase()}.`;
    }
    if (button.hasAttribute("data-edits") && !changed) {
      const keep = decisions(f).filter((b) => !b.hasAttribute("data-needs-reason"));
      return `You have not changed the answer: Tab to its fields below to change it, or ${listed(keep.map(named))} to keep it as it is.`;
    }
    if (!button.hasAttribute("data-needs-reason") && changed && editor) {
      return `You changed the answer, and ${button.dataset.label} would send the AI's answer as it was: put the AI's answer back first, or choose ${named(editor)} and confirm with Ctrl+Enter to keep your change.`;
    }
    return "";
  }
  // A decision the reviewer asked to send: true when it may go, or said why not.
  function attempt(button) {
    const f = form();
    const why = problem(f, button);
    if (!why) return true;
    if (button.hasAttribute("data-needs-reason")) showChoice(f, button);
    say(f, why);
    return false;
  }
  function confirmChosen() {
    const f = form();
    const button = chosenButton(f);
    if (!button) {
      say(f, `Choose what to do first: ${listed(decisions(f).map(named))}.`);
      return;
    }
    if (attempt(button)) button.click(); // a real click: htmx and plain forms both send it
  }
  function restoreChoice() {
    const f = form();
    const button = f && chosenButton(f);
    if (button && button.hasAttribute("data-needs-reason")) showChoice(f, button);
  }
  function undoEdit() {
    const f = form();
    if (!f) return;
    for (const el of $$("[data-field]", f)) {
      if (el.type === "checkbox") el.checked = el.dataset.original === "on";
      else el.value = el.dataset.original;
    }
    showDiff();
    say(f, "");
  }
  // Bidirectional controls, as BIDI_CONTROLS in hitl/review/templatetags/desk.py: shown as
  // marked tokens, never as characters that reorder the text around them.
  const BIDI = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
  function revealed(text) {
    const out = document.createDocumentFragment();
    let last = 0;
    for (const m of text.matchAll(BIDI)) {
      out.append(text.slice(last, m.index));
      const token = document.createElement("span");
      token.className = "bidi";
      token.title = "hidden direction control";
      const hex = m[0].codePointAt(0).toString(16).toUpperCase().padStart(4, "0");
      token.textContent = `\u27e8U+${hex}\u27e9`;
      out.append(token);
      last = m.index + m[0].length;
    }
    out.append(text.slice(last));
    return out;
  }
  const fieldValue = (el) =>
    el.type === "checkbox" ? (el.checked ? "on" : "") : el.value;
  const shownValue = (el, value) =>
    el.type === "checkbox" ? (value ? "true" : "false") : value || "(empty)";
  function editChanges(f) {
    return $$("[data-field]", f)
      .map((el) => ({ el, name: el.dataset.field, was: el.dataset.original, now: fieldValue(el) }))
      .filter((c) => c.was !== c.now);
  }
  // The edit box's diff, kept live as fields change: the same markup as the diff component
  // (templates/components/output_diff.html), which renders it on the server.
  function showDiff() {
    const f = form();
    if (!f) return;
    const out = $("#edit-box [data-diff]", f);
    if (!out) return;
    const changes = editChanges(f);
    const undo = $("[data-undo-edit]", f);
    if (undo) undo.hidden = !changes.length;
    out.replaceChildren();
    const summary = document.createElement("p");
    summary.className = "diff-summary";
    if (!changes.length) {
      summary.classList.add("muted");
      summary.textContent = "No change from the AI's answer yet.";
      out.append(summary);
      return;
    }
    const n = changes.length;
    summary.textContent = `${n} field${n === 1 ? "" : "s"} changed from the AI's answer:`;
    const list = document.createElement("ul");
    for (const c of changes) {
      const li = document.createElement("li");
      li.dataset.change = "changed";
      const name = document.createElement("span");
      name.className = "field";
      name.append(revealed(c.name === "__json__" ? "output" : c.name));
      const del = document.createElement("del");
      const ins = document.createElement("ins");
      del.append(revealed(shownValue(c.el, c.was)));
      ins.append(revealed(shownValue(c.el, c.now)));
      li.append(name, ": ", del, " \u2192 ", ins);
      list.append(li);
    }
    out.append(summary, list);
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("#decide button[name=action]");
    if (button && !attempt(button)) event.preventDefault();
    if (event.target.closest("[data-undo-edit]")) undoEdit();
    if (event.target.closest("[data-help]")) $("#help").showModal();
    const row = event.target.closest("#queue tr[data-task]");
    if (row) mark(row);
  });
  function edited(event) {
    const f = form();
    if (!f || !f.contains(event.target)) return;
    if (event.target.closest("#edit-box")) showDiff();
    // A message about what was missing goes once the reviewer starts to fix it.
    const box = $("#reason-error", f);
    if (box && !box.hidden) {
      box.hidden = true;
      $("#reason", f).removeAttribute("aria-invalid");
    }
  }
  document.addEventListener("input", edited);
  document.addEventListener("change", edited);

  document.addEventListener("keydown", (event) => {
    const help = $("#help");
    if ((event.ctrlKey || event.metaKey) && event.key === "Enter" && form()) {
      event.preventDefault();
      confirmChosen();
      return;
    }
    if (event.key === "Escape" && typing(event.target)) {
      event.target.blur();
      return;
    }
    if (typing(event.target) || event.ctrlKey || event.metaKey || event.altKey) return;
    if (help && help.open && event.key !== "?") return;
    const click = (sel) => {
      const el = $(sel);
      if (el) {
        event.preventDefault();
        el.click();
      }
    };
    // The decision buttons declare their own keys (data-key), and whether they need a reason.
    const action = form() && $(`#decide button[data-key="${CSS.escape(event.key)}"]`);
    if (action) {
      event.preventDefault();
      if (action.hasAttribute("data-needs-reason")) choose(action);
      else if (attempt(action)) action.click();
      return;
    }
    switch (event.key) {
      case "?":
        event.preventDefault();
        if (help.open) help.close();
        else help.showModal();
        break;
      case "j":
        event.preventDefault();
        move(1);
        break;
      case "k":
        event.preventDefault();
        move(-1);
        break;
      case "o":
      case "Enter": {
        const row = rows().find((r) => r.dataset.task === selectedTask);
        if (row && !event.target.closest("a, button")) {
          event.preventDefault();
          $("a", row).click();
        }
        break;
      }
      case "n":
        click("#next-task, .conflict button");
        break;
      case "u":
        click(".crumbs a");
        break;
      case "s":
        click("button[aria-keyshortcuts=s]");
        break;
    }
  });

  // The queue polls only while it is seen. (Not an hx-trigger filter: htmx evaluates those
  // with eval, which the Content Security Policy forbids.)
  document.addEventListener("htmx:beforeRequest", (event) => {
    if (event.detail.elt.id === "queue" && document.visibilityState !== "visible") {
      event.preventDefault();
    }
  });

  // htmx swaps new content in: the refreshed queue keeps the selection, a new page its focus.
  // A new page replaces this one, and its override choice with it (the choice lives on the
  // form). Focus starts on the new page, or on a field the server marked (autofocus: the
  // reason it refused); htmx would otherwise put it back into a field with the same id. It
  // happens in the swap itself, so a key pressed as soon as the page shows is not undone.
  document.addEventListener("htmx:afterSwap", (event) => {
    if (event.detail.boosted) {
      const main = $("#main");
      const marked = main && $("[autofocus]", main);
      if (marked) marked.focus({ preventScroll: true });
      else if (main) main.focus({ preventScroll: true });
    }
  });
  document.addEventListener("htmx:afterSettle", () => {
    restoreSelection();
    restoreChoice();
    showDiff();
  });
  document.addEventListener("DOMContentLoaded", () => {
    restoreSelection();
    restoreChoice();
    showDiff();
  });
})();
