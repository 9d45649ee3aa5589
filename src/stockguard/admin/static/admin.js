// stockguard admin page: live figures, stock dialogs, new-product helpers. No build step.
//
// Live figures come from short polling of /admin/api/stock (see docs/admin.md for why
// not server-sent events). The edit dialog keeps the on_hand it showed when it opened
// and sends it as expected_on_hand: if stock moved meanwhile the server refuses and the
// page shows the "stock changed while you were editing" dialog with the new figures.
// The stock policy (SKU page) is a plain server-rendered form: it needs no script here.
"use strict";

(() => {
  const body = document.body;
  const csrfToken = body.dataset.csrfToken || "";
  const pollIntervalMs = Number(body.dataset.pollIntervalMs) || 1500;
  const lowStockMax = Number(body.dataset.lowStockMax) || 5;
  const SKUS_PER_POLL = 50;
  const AXES_MAX = 8;
  const STATE_LABELS = { "sold-out": "Sold out", low: "Low stock", "in-stock": "In stock" };
  let signedOut = false;

  const $ = (selector, root = document) => root.querySelector(selector);
  const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));

  // ------------------------------------------------------------------ stock rows

  const stockRows = () => $$("tr[data-sku]");

  function stateOf(available) {
    if (available <= 0) return "sold-out";
    if (available <= lowStockMax) return "low";
    return "in-stock";
  }

  // A stock row (data-sku) or a location row of the SKU page (data-location-sku and
  // data-location: that location's level, docs/locations.md).
  function figuresOf(row) {
    return {
      sku: row.dataset.sku || row.dataset.locationSku,
      location: row.dataset.location || "",
      on_hand: Number(row.dataset.onHand),
      reserved: Number(row.dataset.reserved),
      available: Number(row.dataset.available),
    };
  }

  // One location's level, into its row of the SKU page (never stepping back a version).
  function applyLocation(level) {
    for (const row of $$("tr[data-location-sku]")) {
      if (row.dataset.locationSku !== level.sku || row.dataset.location !== level.location) continue;
      if (Number(level.version) < Number(row.dataset.version || 0)) continue;
      const changed = ["on_hand", "reserved", "available"].some(
        (field) => Number(row.dataset[field === "on_hand" ? "onHand" : field]) !== level[field],
      );
      row.dataset.version = level.version;
      row.dataset.onHand = level.on_hand;
      row.dataset.reserved = level.reserved;
      row.dataset.available = level.available;
      for (const field of ["on_hand", "reserved", "available", "safety_stock", "backorder_max"]) {
        const cell = $(`[data-field="${field}"]`, row);
        if (cell) cell.textContent = String(level[field]);
      }
      if (changed) {
        row.classList.remove("changed");
        void row.offsetWidth;
        row.classList.add("changed");
      }
    }
  }

  function applyStock(stock) {
    if (stock.locations) stock.locations.forEach(applyLocation);
    for (const row of stockRows()) {
      if (row.dataset.sku !== stock.sku) continue;
      const before = figuresOf(row);
      // A poll answered after a save may carry older figures: never step back.
      if (Number(stock.version) < Number(row.dataset.version || 0)) continue;
      row.dataset.version = stock.version;
      const backorderNote = $('[data-field="backorder"]', row);
      if (
        before.on_hand === stock.on_hand &&
        before.reserved === stock.reserved &&
        before.available === stock.available &&
        (!backorderNote || Number(backorderNote.dataset.allowance) === Number(stock.allowance))
      ) continue;
      row.dataset.onHand = stock.on_hand;
      row.dataset.reserved = stock.reserved;
      row.dataset.available = stock.available;
      for (const field of ["on_hand", "reserved", "available"]) {
        const cell = $(`[data-field="${field}"]`, row);
        if (cell) cell.textContent = String(stock[field]);
      }
      showBackorder(row, stock);
      const state = stateOf(stock.available);
      row.classList.remove("state-sold-out", "state-low", "state-in-stock");
      row.classList.add(`state-${state}`);
      const badge = $('[data-field="state"]', row);
      if (badge) {
        badge.className = `badge badge-${state}`;
        badge.textContent = STATE_LABELS[state];
      }
      row.classList.remove("changed");
      void row.offsetWidth; // restart the highlight animation
      row.classList.add("changed");
    }
    recount();
  }

  // The backorder notes of a row (docs/design.md#backorders): units owed to buyers when
  // on hand is below 0, and how much of the allowance holds may still take. The server
  // computes both (views.backorder_of) for the first drawing and for every poll alike.
  function showBackorder(row, stock) {
    if (stock.owed === undefined) return;
    const owed = $('[data-field="owed"]', row);
    if (owed) {
      owed.dataset.owed = String(stock.owed);
      owed.textContent = `${stock.owed} owed to buyers`;
      owed.hidden = !(stock.owed > 0);
    }
    const note = $('[data-field="backorder"]', row);
    if (note) {
      note.dataset.allowance = String(stock.allowance);
      note.dataset.left = String(stock.left);
      note.textContent = `backorder ${stock.left} of ${stock.allowance} left`;
      note.hidden = !(stock.allowance > 0);
    }
  }

  function recount() {
    const states = new Map();
    for (const row of stockRows()) states.set(row.dataset.sku, stateOf(Number(row.dataset.available)));
    const count = (wanted) => Array.from(states.values()).filter((s) => s === wanted).length;
    const soldOut = $("#count-sold-out");
    const low = $("#count-low");
    if (soldOut) soldOut.textContent = String(count("sold-out"));
    if (low) low.textContent = String(count("low"));
  }

  // ------------------------------------------------------------------ live polling

  function setLive(state, text) {
    const live = $("#live-status");
    if (!live) return;
    live.dataset.state = state;
    $(".live-text", live).textContent = text;
  }

  function showSignedOut() {
    signedOut = true;
    setLive("error", "Signed out");
    const banner = $("#session-banner");
    if (banner) banner.hidden = false;
  }

  async function pollOnce() {
    const skus = Array.from(new Set(stockRows().map((row) => row.dataset.sku)));
    for (let start = 0; start < skus.length; start += SKUS_PER_POLL) {
      const query = new URLSearchParams(skus.slice(start, start + SKUS_PER_POLL).map((s) => ["sku", s]));
      const response = await fetch(`/admin/api/stock?${query}`, {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
        cache: "no-store",
      });
      if (response.status === 401) {
        showSignedOut();
        return;
      }
      if (!response.ok) throw new Error(`live figures answered ${response.status}`);
      const data = await response.json();
      data.stock.forEach(applyStock);
    }
    setLive("ok", `Live · ${new Date().toLocaleTimeString()}`);
  }

  let pollTimer = null;
  async function poll() {
    pollTimer = null;
    if (signedOut) return;
    if (!document.hidden) {
      try {
        await pollOnce();
      } catch (error) {
        setLive("error", "Reconnecting…");
      }
    }
    if (!signedOut) pollTimer = setTimeout(poll, pollIntervalMs);
  }

  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && pollTimer !== null) {
      clearTimeout(pollTimer);
      poll();
    }
  });

  // ------------------------------------------------------------------ posting

  async function post(form) {
    const response = await fetch(form.dataset.endpoint, {
      method: "POST",
      body: new URLSearchParams(new FormData(form)),
      headers: { Accept: "application/json", "X-CSRF-Token": csrfToken },
      credentials: "same-origin",
    });
    if (response.status === 401) showSignedOut();
    try {
      return await response.json();
    } catch (error) {
      return { ok: false, kind: "http", message: `The server answered ${response.status}; nothing was changed.` };
    }
  }

  function fill(root, values) {
    for (const [slot, value] of Object.entries(values)) {
      for (const element of $$(`[data-slot="${slot}"]`, root)) element.textContent = String(value);
    }
  }

  function showError(dialog, message) {
    const box = $('[data-slot="error"]', dialog);
    box.textContent = message || "";
    box.hidden = !message;
  }

  let toastTimer = null;
  function toast(message) {
    const box = $("#toast");
    if (!box) return;
    box.textContent = message;
    box.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { box.hidden = true; }, 5000);
  }

  async function submitting(form, work) {
    const buttons = $$("button", form);
    buttons.forEach((b) => { b.disabled = true; });
    try {
      await work();
    } catch (error) {
      showError(form.closest("dialog"), "The service could not be reached; nothing was changed.");
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  }

  // ------------------------------------------------------------------ dialogs

  const editDialog = $("#edit-dialog");
  const conflictDialog = $("#conflict-dialog");
  const adjustDialog = $("#adjust-dialog");
  let openedWith = null; // the figures the edit form showed when it opened

  function openEdit(row) {
    openedWith = figuresOf(row);
    const form = $("form", editDialog);
    form.reset();
    fill(editDialog, openedWith);
    fill(editDialog, { where: openedWith.location ? ` at ${openedWith.location}` : "" });
    form.elements.sku.value = openedWith.sku;
    form.elements.location.value = openedWith.location;
    form.elements.expected_on_hand.value = String(openedWith.on_hand);
    form.elements.on_hand.value = String(openedWith.on_hand);
    showError(editDialog, "");
    editDialog.showModal();
    form.elements.on_hand.select();
  }

  // Stock a SKU at a location it has no level at yet: a level of 0 (docs/locations.md).
  function openNewLocation(form) {
    const sku = $("tr[data-location-sku]").dataset.locationSku;
    const location = form.elements.location.value;
    if (!location) return;
    const row = document.createElement("tr");
    Object.assign(row.dataset, { locationSku: sku, location, onHand: "0", reserved: "0", available: "0" });
    openEdit(row);
  }

  function openConflict(current, intended) {
    const form = $("form", conflictDialog);
    fill(conflictDialog, {
      sku: current.location ? `${current.sku} at ${current.location}` : current.sku,
      was_on_hand: openedWith.on_hand,
      was_reserved: openedWith.reserved,
      was_available: openedWith.available,
      now_on_hand: current.on_hand,
      now_reserved: current.reserved,
      now_available: current.available,
      keep: current.on_hand,
      intended,
    });
    form.elements.sku.value = current.sku;
    form.elements.location.value = current.location || "";
    form.elements.expected_on_hand.value = String(current.on_hand);
    form.elements.on_hand.value = intended;
    showError(conflictDialog, "");
    if (current.location) applyLocation(current);
    else applyStock(current);
    if (!conflictDialog.open) conflictDialog.showModal();
  }

  async function saveOnHand(dialog) {
    const form = $("form", dialog);
    const intended = form.elements.on_hand.value.trim();
    const answer = await post(form);
    if (answer.ok) {
      dialog.close();
      applyStock(answer.stock);
      if (answer.level && !$(`tr[data-location-sku][data-location="${CSS.escape(answer.level.location)}"]`)) {
        window.location.reload(); // a location newly stocked: its row is drawn by the server
        return;
      }
      toast(answer.message);
    } else if (answer.kind === "stock-changed" && answer.current) {
      if (dialog !== conflictDialog) dialog.close();
      if (answer.stock) applyStock(answer.stock);
      openConflict(answer.current, intended);
    } else {
      if (answer.stock) applyStock(answer.stock);
      else if (answer.current) applyStock(answer.current);
      showError(dialog, answer.message);
    }
  }

  function openAdjust(row) {
    const figures = figuresOf(row);
    const form = $("form", adjustDialog);
    form.reset();
    fill(adjustDialog, figures);
    form.elements.sku.value = figures.sku;
    showError(adjustDialog, "");
    adjustDialog.showModal();
    form.elements.delta.focus();
  }

  async function saveAdjustment() {
    const form = $("form", adjustDialog);
    const answer = await post(form);
    if (answer.ok) {
      adjustDialog.close();
      applyStock(answer.stock);
      toast(answer.message);
    } else {
      if (answer.current) applyStock(answer.current);
      showError(adjustDialog, answer.message);
    }
  }

  if (editDialog) {
    document.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-action]");
      if (button) {
        const row = button.closest("tr[data-sku]");
        if (button.dataset.action === "edit") openEdit(row);
        if (button.dataset.action === "adjust") openAdjust(row);
        if (button.dataset.action === "edit-location") openEdit(button.closest("tr[data-location-sku]"));
        if (button.dataset.action === "add-location") openNewLocation(button.closest("form"));
      }
      const closer = event.target.closest("[data-close]");
      if (closer) closer.closest("dialog").close();
    });
    $("form", editDialog).addEventListener("submit", (event) => {
      event.preventDefault();
      submitting(event.target, () => saveOnHand(editDialog));
    });
    $("form", conflictDialog).addEventListener("submit", (event) => {
      event.preventDefault();
      submitting(event.target, () => saveOnHand(conflictDialog));
    });
    $("form", conflictDialog).elements.on_hand.addEventListener("input", (event) => {
      fill(conflictDialog, { intended: event.target.value.trim() });
    });
    $("form", adjustDialog).addEventListener("submit", (event) => {
      event.preventDefault();
      submitting(event.target, saveAdjustment);
    });
  }

  // ------------------------------------------------------------------ new product

  const productForm = $("#product-form");
  function previewVariants() {
    const preview = $("#variant-preview");
    let combinations = 1;
    let axes = 0;
    for (const row of $$(".axis-row", productForm)) {
      const name = $('input[name="axis_name"]', row).value.trim();
      const values = $('input[name="axis_values"]', row).value.split(",").map((v) => v.trim()).filter(Boolean);
      if (!name && values.length === 0) continue;
      axes += 1;
      combinations *= new Set(values).size;
    }
    preview.textContent = axes === 0
      ? "Creates 1 SKU (no options)."
      : `Creates ${combinations} variant${combinations === 1 ? "" : "s"} (one SKU each).`;
  }
  if (productForm) {
    productForm.addEventListener("input", previewVariants);
    $("#add-axis").addEventListener("click", () => {
      const rows = $$(".axis-row", productForm);
      if (rows.length >= AXES_MAX) return;
      const copy = rows[rows.length - 1].cloneNode(true);
      for (const input of $$("input", copy)) { input.value = ""; input.placeholder = ""; }
      rows[rows.length - 1].after(copy);
      $("input", copy).focus();
    });
    previewVariants();
  }

  // ------------------------------------------------------------------ start

  if (stockRows().length > 0) {
    setLive("idle", "Live");
    pollTimer = setTimeout(poll, pollIntervalMs);
  }
})();
