// The local workspace page (bot/local/workspace.py). The server renders every message and
// modal as escaped HTML; this script polls it, swaps what changed, and turns clicks, menus,
// submissions and commands into the JSON calls the server signs and sends to the bot.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  let persona = document.body.dataset.persona;
  let channel = params.get("channel") || "";
  let shown = { messages: null, modal: null, channels: null };

  async function call(path, body) {
    const response = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(Object.assign({ as: persona }, body)) });
    const data = await response.json().catch(() => ({ ok: false, error: "HTTP " + response.status }));
    if (!data.ok) $("composer-error").textContent = data.error || "failed";
    refresh();
    return data;
  }

  function option(el) { return el && el.dataset.option ? JSON.parse(el.dataset.option) : null; }

  // An input element's state as Slack sends it in view.state.values
  function valueOf(el) {
    const type = el.dataset.type;
    if (type === "static_select") {
      const chosen = option(el.selectedOptions[0]);
      return { type, selected_option: chosen };
    }
    if (type === "external_select") return { type, selected_option: option(el) };
    if (type === "radio_buttons") return { type, selected_option: option(el.querySelector("input:checked")) };
    if (type === "checkboxes") return { type, selected_options: [...el.querySelectorAll("input:checked")].map(option) };
    if (type === "datepicker") return { type, selected_date: el.value || null };
    return { type, value: el.value === "" ? null : el.value };
  }

  function stateOf(modal) {
    const values = {};
    for (const el of modal.querySelectorAll(".bk-input[data-block-id][data-action-id]")) {
      (values[el.dataset.blockId] = values[el.dataset.blockId] || {})[el.dataset.actionId] = valueOf(el);
    }
    return values;
  }

  function where(el) {
    const view = el.closest(".modal, .home-view");
    if (view) return { view_id: view.dataset.viewId, values: stateOf(view) };
    const msg = el.closest(".msg");
    return { channel: msg.dataset.channel, ts: msg.dataset.ts };
  }

  function renderChannels(list, current) {
    const key = JSON.stringify(list) + current;
    if (key === shown.channels) return;
    shown.channels = key;
    const ul = $("channels");
    ul.replaceChildren(...list.map((c) => {
      const li = document.createElement("li");
      const a = document.createElement("a");
      a.href = "#";
      a.textContent = ({ dm: "✉ ", home: "⌂ " }[c.kind] || "# ") + c.name + (c.count ? " (" + c.count + ")" : "");
      a.dataset.channel = c.id;
      if (c.id === current) a.className = "current";
      li.append(a);
      return li;
    }));
  }

  function applyErrors(modal, errors) {
    for (const slot of modal.querySelectorAll(".bk-input-block")) {
      slot.querySelector(".bk-error").textContent = errors[slot.dataset.blockId] || "";
    }
  }

  async function refresh() {
    const response = await fetch("/state?" + new URLSearchParams({ as: persona, channel }));
    if (!response.ok) return;
    const s = await response.json();
    channel = s.channel;
    renderChannels(s.channels, s.channel);
    $("channel-name").textContent = s.channel_name;
    if (s.messages !== shown.messages) {
      shown.messages = s.messages;
      $("messages").innerHTML = s.messages;  // server-rendered, escaped (bot/local/render.py)
      $("messages").scrollTop = $("messages").scrollHeight;
    }
    const key = s.modal ? s.modal.id + "/" + s.modal.hash : null;
    if (key !== shown.modal) {
      shown.modal = key;
      $("modal-root").innerHTML = s.modal ? s.modal.html : "";
    }
    const modal = document.querySelector(".modal");
    if (modal && s.modal) applyErrors(modal, s.modal.errors);
    $("problems").hidden = s.problems.length === 0;
    $("problems").textContent = s.problems.length ? "Slack would refuse or lose these calls: " + s.problems.join(" | ") : "";
    $("digest").hidden = !s.digest;
  }

  let searchTimer = null;
  async function search(box) {
    const query = box.querySelector(".bk-external-query").value;
    const min = Number(box.dataset.minQueryLength || 0);
    const list = box.querySelector(".bk-external-options");
    if (query.length < min) { list.replaceChildren(); return; }
    const data = await call("/options", Object.assign(where(box), {
      action_id: box.dataset.actionId, block_id: box.dataset.blockId, value: query }));
    list.replaceChildren(...(data.options || []).map((o) => {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "bk-option";
      b.textContent = o.text.text;
      b.addEventListener("click", () => {
        box.dataset.option = JSON.stringify(o);
        box.querySelector(".bk-external-query").value = o.text.text;
        list.replaceChildren();
        const input = box.closest(".bk-input-block");
        if (!input || input.hasAttribute("data-dispatch")) act(box, { type: "external_select", selected_option: o });
      });
      return b;
    }));
  }

  function act(el, extra) {
    return call("/action", Object.assign(where(el), { action_id: el.dataset.actionId, block_id: el.dataset.blockId }, extra));
  }

  document.addEventListener("click", (event) => {
    const target = event.target;
    const link = target.closest("a[data-channel]");
    if (link) {
      event.preventDefault();
      channel = link.dataset.channel;
      history.replaceState(null, "", "?" + new URLSearchParams({ as: persona, channel }));
      if (channel === "HOME") call("/home", {}); else refresh();
      return;
    }
    if (target.closest("[data-close]")) {
      const modal = target.closest(".modal");
      call("/close", { view_id: modal.dataset.viewId, values: stateOf(modal) });
      return;
    }
    const button = target.closest(".bk-button[data-action-id]");
    if (button) {
      if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) { event.preventDefault(); return; }
      // a link button opens its URL (the browser follows the href) and Slack tells the app too
      act(button, { type: "button", value: button.dataset.value, text: button.textContent });
    }
  });

  document.addEventListener("change", (event) => {
    const el = event.target.closest(".bk-input[data-action-id]");
    if (!el || el.dataset.type === "external_select") return;
    const inInput = el.closest(".bk-input-block");
    if (inInput && !inInput.hasAttribute("data-dispatch")) return;  // read at submission
    act(el, valueOf(el));
  });

  document.addEventListener("input", (event) => {
    const box = event.target.closest(".bk-external");
    if (!box) return;
    delete box.dataset.option;
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => search(box), 200);
  });

  document.addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    if (form.id === "composer") {
      $("composer-error").textContent = "";
      const text = $("composer-text").value;
      const data = await call("/command", { channel, text });
      if (data.ok) $("composer-text").value = "";
      return;
    }
    if (form.classList.contains("modal")) {
      await call("/submit", { view_id: form.dataset.viewId, values: stateOf(form) });
    }
  });

  $("persona").addEventListener("change", (event) => {
    persona = event.target.value;
    channel = "";
    shown = { messages: null, modal: null, channels: null };
    history.replaceState(null, "", "?" + new URLSearchParams({ as: persona }));
    refresh();
  });

  $("digest-button").addEventListener("click", () => call("/digest", {}));

  if (channel === "HOME") call("/home", {}); else refresh();
  setInterval(refresh, 1000);
})();
