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
  let pending = null; // the override waiting for its reason: reject | edit | escalate

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

  // --- task page: reasons, pending overrides and the edit diff -----------------------------
  const form = () => $("#decide");
  function needReason(action) {
    const f = form();
    if (!f) return;
    pending = action;
    f.dataset.chosen = action;
    const reason = $("#reason", f);
    reason.required = true;
    $("[data-required-note]", f).textContent = `(required to ${action}; Ctrl+Enter confirms)`;
    if (action === "edit") {
      const box = $("#edit-box", f);
      box.open = true;
      const first = $("[data-field]", box);
      if (first) first.focus();
    } else {
      reason.focus();
    }
  }
  function submitPending() {
    const f = form();
    if (!f || !pending) return;
    const button = $(`button[name=action][value=${pending}]`, f);
    if (!$("#reason", f).value.trim()) {
      $("#reason", f).focus();
      return;
    }
    button.click(); // a real click: htmx and plain forms both send the button's action
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
    const button = event.target.closest("button[data-needs-reason]");
    if (button) {
      const f = form();
      if (f && !$("#reason", f).value.trim()) {
        event.preventDefault();
        needReason(button.value);
      }
    }
    if (event.target.closest("[data-help]")) $("#help").showModal();
    const row = event.target.closest("#queue tr[data-task]");
    if (row) mark(row);
  });
  document.addEventListener("input", (event) => {
    if (event.target.closest("#edit-box")) showDiff();
  });
  document.addEventListener("change", (event) => {
    if (event.target.closest("#edit-box")) showDiff();
  });

  document.addEventListener("keydown", (event) => {
    const help = $("#help");
    if ((event.ctrlKey || event.metaKey) && event.key === "Enter" && form()) {
      event.preventDefault();
      if (!pending && form().dataset.chosen) pending = form().dataset.chosen;
      submitPending();
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
      if (action.hasAttribute("data-needs-reason")) needReason(action.value);
      else action.click();
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

  // htmx swaps new content in: the refreshed queue keeps the selection, a new page its focus.
  // A new page replaces this one: its override choice goes with it, and focus starts on the
  // new page (htmx would put it back into a field with the same id, such as the reason).
  // Both happen in the swap itself, so a key pressed as soon as the page shows is not undone.
  document.addEventListener("htmx:beforeSwap", () => {
    pending = null;
  });
  document.addEventListener("htmx:afterSwap", (event) => {
    if (event.detail.boosted) {
      const main = $("#main");
      if (main) main.focus({ preventScroll: true });
    }
  });
  document.addEventListener("htmx:afterSettle", () => {
    restoreSelection();
    showDiff();
  });
  document.addEventListener("DOMContentLoaded", () => {
    restoreSelection();
    const f = form();
    if (f && f.dataset.chosen && f.dataset.chosen !== "approve") needReason(f.dataset.chosen);
    showDiff();
  });
})();
