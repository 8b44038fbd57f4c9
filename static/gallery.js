"use strict";
// Explore, profiles and My images (an infinitely scrolling feed), and the image page's actions.
(function () {
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

  async function api(path, options) {
    const response = await fetch(path, Object.assign({ credentials: "same-origin" }, options, {
      headers: Object.assign({ "X-CSRFToken": csrfToken(), Accept: "application/json" }, (options || {}).headers),
    }));
    if (response.status === 204) return {};
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw body.error || { message: "Request failed (" + response.status + ")" };
    return body;
  }

  function postJson(path, body) {
    return api(path, { method: "POST", body: JSON.stringify(body || {}), headers: { "Content-Type": "application/json" } });
  }

  function errorText(err) {
    let text = err.message || "Something went wrong.";
    if (err.details && typeof err.details === "object") {
      const fields = Object.entries(err.details).filter(([, v]) => Array.isArray(v));
      if (fields.length) text += " " + fields.map(([f, m]) => f + ": " + m.join(" ")).join("; ");
    }
    return text;
  }

  // --- feeds ----------------------------------------------------------------------------------

  function likeButton(image) {
    const button = el("button", { type: "button", class: "like", "aria-pressed": String(image.liked),
      "aria-label": (image.liked ? "Unlike" : "Like") + " (" + image.like_count + " likes)" }, "♥ " + image.like_count);
    button.addEventListener("click", async () => {
      try {
        const liked = button.getAttribute("aria-pressed") === "true";
        const updated = await api("/api/v1/images/" + image.id + "/like", { method: liked ? "DELETE" : "POST" });
        button.setAttribute("aria-pressed", String(updated.liked));
        button.setAttribute("aria-label", (updated.liked ? "Unlike" : "Like") + " (" + updated.like_count + " likes)");
        button.textContent = "♥ " + updated.like_count;
      } catch (err) {
        if (err.code === "not_authenticated") location.href = "/accounts/login/?next=" + encodeURIComponent(location.pathname);
      }
    });
    return button;
  }

  // How wide a tile is drawn (.gallery-grid: one column on a phone, else 200px and up), so the
  // browser takes the smallest thumbnail of `srcset` that fills it: a phone loads less.
  const TILE_SIZES = "(max-width: 480px) 100vw, (max-width: 900px) 50vw, 320px";
  const HALF_TILE_SIZES = "(max-width: 480px) 50vw, (max-width: 900px) 25vw, 160px";

  function thumbnailAttrs(image, alt, sizes) {
    const attrs = { src: image.thumbnail_url, alt: alt, loading: "lazy", decoding: "async",
      width: "256", height: String(Math.round(256 * image.height / image.width)) };
    if (image.thumbnails && image.thumbnails.length) {
      attrs.srcset = image.thumbnails.map((t) => t.url + " " + t.width + "w").join(", ");
      attrs.sizes = sizes;
    }
    return attrs;
  }

  function imageCard(image, feed) {
    const card = el("figure", { class: "tile", "data-id": image.id });
    const link = el("a", { href: image.page_url, class: "tile-link" });
    const img = el("img", thumbnailAttrs(image, image.prompt, TILE_SIZES));
    link.append(img);
    card.append(link);
    if (image.content_rating === "mature" && feed.dataset.showMature !== "1") {
      card.classList.add("blurred");
      const reveal = el("button", { type: "button", class: "reveal" }, "Show mature image");
      reveal.addEventListener("click", () => { card.classList.remove("blurred"); reveal.remove(); });
      card.append(reveal);
    }
    const caption = el("figcaption");
    caption.append(el("span", { class: "tile-prompt" }, image.prompt));
    const meta = el("span", { class: "tile-meta" });
    meta.append(el("a", { href: "/u/" + encodeURIComponent(image.owner) + "/" }, image.owner));
    if (feed.dataset.signedIn === "1" && !image.mine) meta.append(likeButton(image));
    else meta.append(el("span", { class: "likes" }, "♥ " + image.like_count));
    meta.append(el("a", { href: "/create/?remix=" + image.id, class: "use-prompt" }, "Use this prompt"));
    caption.append(meta);
    card.append(caption);
    return card;
  }

  function generationCard(generation) {
    const card = el("article", { class: "tile gen-tile", "data-id": generation.id, "data-status": generation.status });
    const images = el("div", { class: "gen-images" });
    generation.images.forEach((image) => {
      const link = el("a", { href: "/images/" + image.id + "/" });
      link.append(el("img", thumbnailAttrs(image, generation.prompt, HALF_TILE_SIZES)));
      images.append(link);
    });
    card.append(images);
    const caption = el("p", { class: "tile-prompt" });
    caption.append(el("a", { href: "/generations/" + generation.id + "/" }, generation.prompt));
    card.append(caption);
    card.append(el("p", { class: "muted small" }, generation.status + " · " + generation.model + " · " +
      generation.width + "×" + generation.height + " · " + generation.created_at.slice(0, 10)));
    return card;
  }

  function startFeed(feed) {
    let next = feed.dataset.feed;
    let loading = false;
    const sentinel = document.getElementById("feed-more");
    async function load() {
      if (!next || loading) return;
      loading = true;
      feed.setAttribute("aria-busy", "true");
      try {
        const page = await api(next);
        page.data.forEach((item) => feed.append(feed.dataset.kind === "generations" ? generationCard(item) : imageCard(item, feed)));
        next = page.next;
        if (!feed.childElementCount) document.getElementById("feed-empty").hidden = false;
        else if (!next) document.getElementById("feed-end").hidden = false;
      } catch (err) {
        next = null;
        feed.after(el("p", { class: "error", role: "alert" }, errorText(err)));
      } finally {
        loading = false;
        feed.setAttribute("aria-busy", "false");
        feed.dataset.loaded = "1";
        // Keep going while the sentinel is still on screen (a tall window, few images).
        if (next && sentinel.getBoundingClientRect().top < window.innerHeight + 400) load();
      }
    }
    new IntersectionObserver((entries) => { if (entries.some((e) => e.isIntersecting)) load(); },
      { rootMargin: "400px" }).observe(sentinel);
    load();
  }

  const feed = document.getElementById("feed");
  if (feed) startFeed(feed);

  // --- the image page -------------------------------------------------------------------------

  const page = document.getElementById("image-page");
  if (!page) return;
  const id = page.dataset.id;
  const errorBox = document.getElementById("action-error");
  const statusBox = document.getElementById("action-status");
  function fail(err) { errorBox.textContent = errorText(err); errorBox.hidden = false; }
  function started(generation, what) {
    statusBox.hidden = false;
    statusBox.textContent = what + " started. ";
    statusBox.append(el("a", { href: "/create/" }, "Follow it on Create"));
    statusBox.dataset.generation = generation.id;
  }

  document.querySelectorAll("[data-action]").forEach((button) => {
    button.addEventListener("click", async () => {
      errorBox.hidden = true;
      button.disabled = true;
      try {
        const action = button.dataset.action;
        const body = action === "vary" ? { strength: button.dataset.strength } : {};
        started(await postJson("/api/v1/images/" + id + "/" + action, body), button.textContent);
      } catch (err) { fail(err); } finally { button.disabled = false; }
    });
  });

  const publish = document.getElementById("publish-toggle");
  if (publish) publish.addEventListener("click", async () => {
    try {
      const isPublic = publish.getAttribute("aria-pressed") === "true";
      const image = await postJson("/api/v1/images/" + id + (isPublic ? "/unpublish" : "/publish"));
      publish.setAttribute("aria-pressed", String(image.is_public));
      publish.textContent = image.is_public ? "Unpublish" : "Publish";
      document.getElementById("visibility").textContent = image.is_public ? "Published" : "Private";
    } catch (err) { fail(err); }
  });

  const like = document.getElementById("like-toggle");
  if (like) like.addEventListener("click", async () => {
    try {
      const liked = like.getAttribute("aria-pressed") === "true";
      const image = await api("/api/v1/images/" + id + "/like", { method: liked ? "DELETE" : "POST" });
      like.setAttribute("aria-pressed", String(image.liked));
      like.textContent = image.liked ? "Unlike" : "Like";
    } catch (err) { fail(err); }
  });

  const remove = document.getElementById("delete-image");
  if (remove) remove.addEventListener("click", async () => {
    if (!window.confirm("Delete this image? This cannot be undone.")) return;
    try { await api("/api/v1/images/" + id, { method: "DELETE" }); location.href = "/images/"; } catch (err) { fail(err); }
  });

  const report = document.getElementById("report-form");
  if (report) report.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const f = new FormData(report);
      await postJson("/api/v1/images/" + id + "/report", { reason: f.get("reason"), details: f.get("details") });
      report.replaceWith(el("p", { class: "notice", role: "status" }, "Thank you: the report was sent to the moderators."));
    } catch (err) { fail(err); }
  });

  // Inpainting: paint white on a black mask the size of the image; the canvas is shown scaled.
  const canvas = document.getElementById("mask-canvas");
  const inpaintForm = document.getElementById("inpaint-form");
  const openInpaint = document.getElementById("inpaint-open");
  if (canvas && openInpaint) {
    const ctx = canvas.getContext("2d");
    const mask = document.createElement("canvas");
    mask.width = canvas.width;
    mask.height = canvas.height;
    const mctx = mask.getContext("2d");
    function clear() {
      ctx.clearRect(0, 0, canvas.width, canvas.height);
      mctx.fillStyle = "#000";
      mctx.fillRect(0, 0, mask.width, mask.height);
      canvas.dataset.painted = "0";
    }
    clear();
    let last = null;
    function point(event) {
      const box = canvas.getBoundingClientRect();
      return [(event.clientX - box.left) * canvas.width / box.width, (event.clientY - box.top) * canvas.height / box.height];
    }
    // Strokes, not dots: a fast pointer still paints a continuous band (white on the mask).
    function stroke(event) {
      const [x, y] = point(event);
      const [x0, y0] = last || [x, y];
      const width = parseInt(document.getElementById("brush").value, 10) * canvas.width / canvas.getBoundingClientRect().width;
      [[ctx, "rgba(124, 156, 255, 0.55)"], [mctx, "#fff"]].forEach(([c, color]) => {
        c.strokeStyle = color; c.lineWidth = width; c.lineCap = "round"; c.lineJoin = "round";
        c.beginPath(); c.moveTo(x0, y0); c.lineTo(x, y); c.stroke();
      });
      last = [x, y];
      canvas.dataset.painted = "1";
    }
    canvas.addEventListener("pointerdown", (e) => { last = null; canvas.setPointerCapture(e.pointerId); stroke(e); });
    canvas.addEventListener("pointermove", (e) => { if (last) stroke(e); });
    canvas.addEventListener("pointerup", () => { last = null; });
    canvas.addEventListener("pointercancel", () => { last = null; });
    document.getElementById("mask-clear").addEventListener("click", clear);
    openInpaint.addEventListener("click", () => {
      canvas.hidden = false;
      inpaintForm.hidden = false;
      document.getElementById("inpaint-prompt").focus({ preventScroll: true });
      canvas.scrollIntoView({ block: "nearest" });
    });
    document.getElementById("inpaint-cancel").addEventListener("click", () => { canvas.hidden = true; inpaintForm.hidden = true; clear(); });
    inpaintForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      errorBox.hidden = true;
      if (canvas.dataset.painted !== "1") { fail({ message: "Paint the area to repaint first." }); return; }
      const blob = await new Promise((resolve) => mask.toBlob(resolve, "image/png"));
      const body = new FormData();
      body.append("mask", blob, "mask.png");
      body.append("prompt", document.getElementById("inpaint-prompt").value);
      try { started(await api("/api/v1/images/" + id + "/inpaint", { method: "POST", body }), "Inpaint"); } catch (err) { fail(err); }
    });
  }
})();
