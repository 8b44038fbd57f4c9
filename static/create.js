"use strict";
(function () {
  const history = document.getElementById("history");
  const form = document.getElementById("create-form");
  const errorBox = document.getElementById("form-error");
  const cards = new Map();

  function csrfToken() {
    const match = document.cookie.match(/(?:^|; )csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => node.setAttribute(k, v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function card(id) {
    let c = cards.get(id);
    if (c) return c;
    const root = el("article", { class: "gen-card", "data-id": id });
    const title = el("a", { class: "gen-title", href: "/generations/" + id + "/" });
    const status = el("p", { class: "gen-status" });
    const bar = el("progress", { class: "gen-progress", max: "1", value: "0", "aria-label": "progress" });
    const preview = el("img", { class: "gen-preview", alt: "preview", hidden: "" });
    const images = el("div", { class: "gen-images" });
    const actions = el("div", { class: "gen-actions" });
    const cancel = el("button", { type: "button", class: "gen-cancel" }, "Cancel");
    cancel.addEventListener("click", () => cancelGeneration(id));
    actions.append(cancel);
    root.append(title, status, bar, preview, images, actions);
    history.prepend(root);
    c = { root, title, status, bar, preview, images, cancel };
    cards.set(id, c);
    return c;
  }

  function apply(data) {
    if (!data || !data.id) return;
    const c = card(data.id);
    if (data.prompt !== undefined) c.title.textContent = data.prompt;
    if (!c.title.textContent) c.title.textContent = "Generation";
    const status = data.status;
    c.root.dataset.status = status;
    let text = status;
    if (status === "queued" && data.queue_position) text += " · position " + data.queue_position;
    if (status === "queued" && data.eta_seconds != null) text += " · about " + data.eta_seconds + " s";
    if (status === "pending") text += " · waiting for a free slot";
    if (data.type === "generation.preempted") text += " · paused for a priority job, resumes at step " + data.resumes_at_step;
    if (status === "running" && data.steps) text += " · step " + (data.step || 0) + "/" + data.steps;
    if (data.error) text += " · " + data.error.message;
    c.status.textContent = text;
    if (typeof data.progress === "number") c.bar.value = data.progress;
    if (data.preview) {
      c.preview.src = data.preview;
      c.preview.hidden = false;
    }
    const done = ["succeeded", "failed", "canceled"].includes(status);
    c.cancel.hidden = done;
    c.bar.hidden = done;
    if (done) c.preview.hidden = true;
    if (data.images && data.images.length && !c.images.childElementCount) {
      data.images.forEach((image) => {
        const link = el("a", { href: "/images/" + image.id + "/", "aria-label": "Open image " + (image.seed != null ? "seed " + image.seed : "") });
        link.append(el("img", { class: "gen-image", src: image.thumbnail_url, alt: c.title.textContent, loading: "lazy", width: "256", height: String(Math.round(256 * image.height / image.width)) }));
        c.images.append(link);
      });
    }
  }

  async function api(path, options) {
    const response = await fetch(path, Object.assign({ credentials: "same-origin" }, options, {
      headers: Object.assign({ "X-CSRFToken": csrfToken() }, (options || {}).headers),
    }));
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw body.error || { message: "Request failed (" + response.status + ")" };
    return body;
  }

  async function cancelGeneration(id) {
    try { apply(await api("/api/v1/generations/" + id + "/cancel", { method: "POST" })); }
    catch (err) { showError(err); }
  }

  function showError(err) {
    let text = err.message || "Something went wrong.";
    if (err.details) {
      text += " " + Object.entries(err.details).map(([f, msgs]) => f + ": " + [].concat(msgs).join(" ")).join("; ");
    }
    errorBox.textContent = text;
    errorBox.hidden = false;
  }

  function formBody() {
    const f = new FormData(form);
    const body = { prompt: f.get("prompt"), negative_prompt: f.get("negative_prompt"), model: f.get("model") };
    ["width", "height", "steps", "n"].forEach((k) => { body[k] = parseInt(f.get(k), 10); });
    body.guidance = parseFloat(f.get("guidance"));
    if (f.get("sampler")) body.sampler = f.get("sampler");
    if (f.get("seed")) body.seed = parseInt(f.get("seed"), 10);
    if (f.get("style_preset")) body.style_preset = f.get("style_preset");
    if (f.get("remix_of")) body.remix_of = f.get("remix_of");
    const relax = document.getElementById("relax");
    if (relax) body.mode = relax.checked ? "relax" : "fast";
    const privacy = document.getElementById("private");
    if (privacy) body.private = privacy.checked;
    return body;
  }

  // Aspect-ratio presets: about the model's default area, each side a multiple of the model's size
  // step within its limits.
  const limits = JSON.parse(document.getElementById("model-limits").textContent);
  function sizeFor(ratio) {
    const [min, max, side, step] = limits[document.getElementById("model").value] || [64, 1024, 512, 8];
    const [a, b] = ratio.split(":").map(Number);
    const fit = (v) => Math.min(max, Math.max(min, Math.round(v / step) * step));
    let w = Math.sqrt(side * side * a / b), h = w * b / a;
    const scale = Math.min(1, max / Math.max(w, h));
    return [fit(w * scale), fit(h * scale)];
  }
  function applyAspect() {
    const checked = form.querySelector("input[name=aspect]:checked");
    if (!checked) return;
    const [w, h] = sizeFor(checked.value);
    document.getElementById("width").value = w;
    document.getElementById("height").value = h;
    updateCost();
  }
  form.querySelectorAll("input[name=aspect]").forEach((r) => r.addEventListener("change", applyAspect));
  document.getElementById("model").addEventListener("change", applyAspect);

  // Only the samplers the chosen model can run are offered (flow-matching models have fewer).
  const modelSamplers = JSON.parse(document.getElementById("model-samplers").textContent);
  const samplerSelect = document.getElementById("sampler");
  function offerSamplers() {
    const allowed = modelSamplers[document.getElementById("model").value] || ["default"];
    Array.from(samplerSelect.options).forEach((option) => {
      const fits = allowed.includes(option.value);
      option.hidden = !fits;
      option.disabled = !fits;
    });
    if (!allowed.includes(samplerSelect.value)) samplerSelect.value = "default";
  }
  document.getElementById("model").addEventListener("change", offerSamplers);
  offerSamplers();

  // Example prompts the built-in model draws well fill the prompt box.
  document.querySelectorAll(".example-prompt").forEach((button) => {
    button.addEventListener("click", () => {
      const prompt = document.getElementById("prompt");
      prompt.value = button.textContent;
      prompt.focus();
    });
  });

  // "Remix" and "Use this prompt" open this form prefilled.
  const prefill = JSON.parse(document.getElementById("prefill-data").textContent);
  if (prefill) {
    ["prompt", "negative_prompt", "model", "width", "height", "steps", "guidance", "sampler", "seed", "remix_of"].forEach((k) => {
      const input = document.getElementById(k);
      if (input && prefill[k] != null) input.value = prefill[k];
    });
    offerSamplers();
    form.querySelectorAll("input[name=aspect]").forEach((r) => { r.checked = false; });
    const note = document.getElementById("remix-note");
    note.textContent = "Remixing an image: its prompt, model, seed and size are filled in.";
    note.hidden = false;
  }

  const costBox = document.getElementById("cost");
  let quoteTimer = null;
  function updateCost() {
    clearTimeout(quoteTimer);
    quoteTimer = setTimeout(async () => {
      const body = formBody();
      if (!body.prompt) body.prompt = "quote";
      try {
        const quote = await api("/api/v1/generations/quote", {
          method: "POST", body: JSON.stringify(body), headers: { "Content-Type": "application/json" },
        });
        costBox.textContent = "Cost: " + quote.credits + " credits · balance " + quote.balance;
        costBox.classList.toggle("error", !quote.sufficient);
      } catch (err) {
        costBox.textContent = "";
      }
    }, 250);
  }
  form.addEventListener("input", updateCost);

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    errorBox.hidden = true;
    const button = document.getElementById("submit");
    button.disabled = true;
    try {
      const body = formBody();
      const f = new FormData(form);
      const file = document.getElementById("init-image").files[0];
      if (file) {
        const upload = new FormData();
        upload.append("file", file);
        const uploaded = await api("/api/v1/uploads", { method: "POST", body: upload });
        body.input_image = uploaded.id;
        body.strength = parseFloat(f.get("strength"));
      }
      apply(await api("/api/v1/generations", {
        method: "POST", body: JSON.stringify(body), headers: { "Content-Type": "application/json" },
      }));
    } catch (err) {
      showError(err);
    } finally {
      button.disabled = false;
      updateCost();
    }
  });

  let retry = 500;
  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + location.host + "/ws/v1/events/");
    socket.addEventListener("open", () => { retry = 500; document.body.dataset.live = "1"; });
    socket.addEventListener("message", (message) => {
      const data = JSON.parse(message.data);
      if (data.type === "snapshot") data.generations.forEach(apply);
      else if (data.type && data.type.startsWith("generation.")) apply(data);
    });
    socket.addEventListener("close", () => {
      document.body.dataset.live = "0";
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 10000);
    });
  }

  JSON.parse(document.getElementById("recent-data").textContent).reverse().forEach(apply);
  updateCost();
  connect();
})();
