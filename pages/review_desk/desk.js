// Loupe review desk: the part on screen, its map and the Good / Defect / Undo keys, in the browser.
//
// Python (pages/review_desk.py) sends the next parts of the review queue with their images;
// this code shows them one after the other without waiting for the server. Every press is
// bound to the part on screen when it was pressed: it goes into an outbox with its own id
// and the part's id, and the outbox is sent as the component's "sync" state. Python records
// each press once (by its id), then lists the ids it recorded ("acked") or refused
// ("refused"), and the presses leave the outbox. A press with no part on screen is refused
// here, visibly.
//
// The panels under the desk (Streamlit elements: "Why", Grad-CAM...) follow the desk. Every
// change of the part on screen is sent ("current"), and Python draws that part's panels in a
// container keyed by its id (data.panels_class + id). The desk hides every other part's
// container (a document-wide style rule), and its own part's until it holds no stale element:
// Streamlit puts a new container in place of the one before and keeps that one's children,
// stale, until the run draws its own (and a stale expander's label carries no stale mark).
// Meanwhile the desk says "Explaining <name>…".

const DESKS = new WeakMap();
const RESEND_MS = 4000; // resend the outbox if Python has not answered by then

export default function (component) {
  const { data, parentElement, setStateValue } = component;
  let desk = DESKS.get(parentElement);
  if (!desk) {
    desk = new Desk(parentElement);
    DESKS.set(parentElement, desk);
  }
  desk.setStateValue = setStateValue;
  desk.update(data || {});
  return () => desk.detach();
}

class Desk {
  constructor(root) {
    this.root = root;
    this.instance = Math.random().toString(36).slice(2, 10) + Date.now().toString(36);
    this.counter = 0;
    this.outbox = [];
    this.decided = new Map(); // image id -> press id, until the server's list drops the part
    this.history = []; // image ids decided here, newest last (for Undo)
    this.pinned = null; // {image, press}: a part brought back by Undo until the undo is recorded
    this.cache = new Map(); // image id -> {image, heat, reference}
    this.parts = [];
    this.current = null;
    this.shownAt = performance.now();
    this.message = "";
    this.zoom = { scale: 1, x: 0, y: 0 };
    this.data = {};
    this.synced = undefined; // the part on screen as last sent to Python
    this.settled = false; // whether the panels of the part on screen have been drawn
    this.onKey = (event) => this.key(event);
    this.attached = false;
    this.build();
  }

  attach() {
    if (!this.attached) {
      document.addEventListener("keydown", this.onKey, true);
      this.attached = true;
    }
    if (!this.panelsStyle) {
      // A rule for the whole page (the panels are outside our shadow root), and an observer
      // that checks the panels whenever Streamlit changes the page (before it is painted).
      this.panelsStyle = document.createElement("style");
      document.head.appendChild(this.panelsStyle);
      this.observer = new MutationObserver(() => this.followPanels());
      this.observer.observe(document.body, {
        subtree: true, childList: true, attributes: true, attributeFilter: ["class", "data-stale"],
      });
    }
  }

  detach() {
    document.removeEventListener("keydown", this.onKey, true);
    this.attached = false;
    if (this.observer) this.observer.disconnect();
    if (this.panelsStyle) this.panelsStyle.remove();
    this.observer = null;
    this.panelsStyle = null;
  }

  build() {
    // A container of our own: the root also holds the <style> Streamlit put there for our CSS.
    const host = document.createElement("div");
    this.root.appendChild(host);
    host.innerHTML = `
      <div class="desk">
        <div class="head"></div>
        <div class="sentence"></div>
        <div class="views">
          <div><div class="view" data-view="part"><img data-img="part" alt="part">
               <div class="box"></div></div>
               <div class="caption">Part</div></div>
          <div><div class="view" data-view="map"><img data-img="under" alt="">
               <img data-img="heat" alt="anomaly map"><div class="box"></div></div>
               <div class="caption">Anomaly map · opacity
                 <input type="range" min="0" max="1" step="0.05" value="0.5" data-input="opacity">
               </div></div>
          <div data-slot="reference"><div class="view" data-view="reference">
               <img data-img="reference" alt="reference good part"></div>
               <div class="caption" data-caption="reference">Nearest good training part</div></div>
        </div>
        <div class="bar"></div>
        <div class="controls">
          <button class="good-btn" data-action="good" title="G">Good (G)</button>
          <button class="defect-btn" data-action="defect" title="D">Defect (D)</button>
          <button data-action="undo" title="U">Undo last (U)</button>
          <button data-action="box" title="B">Draw defect box (B)</button>
          <button data-action="accept" title="A" style="display:none">Accept page</button>
          <select data-input="type"></select>
          <input type="text" data-input="new-type" placeholder="New defect type" maxlength="64"
                 style="display:none">
          <input type="text" data-input="note" placeholder="Note (optional)" maxlength="500">
        </div>
        <div class="status"></div>
        <div class="hint">Keys: G good, D defect, U undo, B draw a box around the defect (sent
          with D). Scroll to zoom, drag to pan, double-click to reset. The next parts are loaded
          ahead.</div>
        <div class="panels-note" aria-live="polite"></div>
      </div>`;
    const q = (selector) => this.root.querySelector(selector);
    this.el = {
      desk: q(".desk"), head: q(".head"), sentence: q(".sentence"), views: q(".views"),
      part: q('[data-img="part"]'), under: q('[data-img="under"]'), heat: q('[data-img="heat"]'),
      reference: q('[data-img="reference"]'), referenceSlot: q('[data-slot="reference"]'),
      referenceCaption: q('[data-caption="reference"]'), bar: q(".bar"),
      status: q(".status"), opacity: q('[data-input="opacity"]'), type: q('[data-input="type"]'),
      newType: q('[data-input="new-type"]'), note: q('[data-input="note"]'),
      controls: q(".controls"), boxes: [...this.root.querySelectorAll(".box")],
      boxButton: q('button[data-action="box"]'), accept: q('button[data-action="accept"]'),
      panelsNote: q(".panels-note"),
    };
    this.root.querySelectorAll("button[data-action]").forEach((button) => {
      button.addEventListener("click", () => this.act(button.dataset.action));
    });
    this.el.opacity.addEventListener("input", () => this.applyOpacity());
    this.el.type.addEventListener("change", () => {
      this.el.newType.style.display = this.el.type.value === "__new__" ? "" : "none";
    });
    this.root.querySelectorAll(".view").forEach((view) => this.zoomable(view));
  }

  // ---------------------------------------------------------------- data from the server

  update(data) {
    this.attach();
    if (!this.announced) {
      // Tell Python which browser instance this is, so it sends this instance the images.
      this.announced = true;
      setTimeout(() => this.sync(), 0);
    }
    this.data = data;
    for (const part of data.parts || []) {
      // Images (and the captions that go with them) travel once per browser instance and
      // prediction of the part: keep them until a part comes with new ones (re-scored).
      if (part.image || part.unreadable) {
        this.cache.set(part.id, {
          image: part.image, heat: part.heat, reference: part.reference,
          unreadable: part.unreadable, scale_bar: part.scale_bar,
          scale_caption: part.scale_caption, reference_caption: part.reference_caption,
        });
      }
    }
    const acked = new Set(data.acked || []);
    const refused = new Map((data.refused || []).map((r) => [r.press, r.message]));
    const before = this.outbox.length;
    this.outbox = this.outbox.filter((p) => !acked.has(p.press) && !refused.has(p.press));
    for (const [image, press] of [...this.decided]) {
      if (refused.has(press)) {
        this.decided.delete(image); // refused: the part comes back
        this.history = this.history.filter((id) => id !== image);
        this.message = `Not recorded: ${refused.get(press)}`;
      } else if (acked.has(press)) {
        this.decided.delete(image); // recorded: gone from the list, or back (then shown again)
      }
    }
    for (const notice of data.notices || []) {
      if (this.noticed !== notice.press) this.message = notice.message;
      this.noticed = notice.press;
    }
    if (this.pinned && (acked.has(this.pinned.press) || refused.has(this.pinned.press))) {
      this.pinned = null;
    }
    this.parts = data.parts || [];
    this.fillTypes(data.defect_types || []);
    if (!this.isShowable(this.current)) this.show(this.nextPart());
    else this.render();
    if (this.inflight) this.answered();
    else if (this.outbox.length !== before || this.current !== this.synced) this.sync();
  }

  isShowable(id) {
    if (id === null || id === undefined) return false;
    if (this.pinned && this.pinned.image === id) return this.cache.has(id);
    return !this.decided.has(id) && this.parts.some((p) => p.id === id) && this.cache.has(id);
  }

  nextPart() {
    const next = this.parts.find((p) => !this.decided.has(p.id) && this.cache.has(p.id));
    return next ? next.id : null;
  }

  part(id) {
    return this.parts.find((p) => p.id === id) || (this.pinnedPart && this.pinnedPart.id === id
      ? this.pinnedPart : null);
  }

  // ---------------------------------------------------------------- presses

  key(event) {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    const target = event.composedPath ? event.composedPath()[0] : event.target;
    const tag = target && target.tagName ? target.tagName.toLowerCase() : "";
    if (tag === "input" && target.type !== "range") return;
    if (tag === "textarea" || tag === "select" || (target && target.isContentEditable)) return;
    if (!this.root.isConnected) return;
    const action = { g: "good", d: "defect", u: "undo", b: "box", a: "accept" }[
      event.key.toLowerCase()];
    if (!action) return;
    event.preventDefault();
    event.stopPropagation();
    this.act(action);
  }

  act(action) {
    if (action === "undo") return this.undo();
    if (action === "box") return this.toggleBoxMode();
    if (action === "accept") return this.acceptPage();
    const id = this.current;
    if (id === null) {
      this.message = "Not recorded: no part on screen (the next parts are still loading).";
      return this.render();
    }
    const shown = this.part(id);
    const press = this.newPress();
    let defectType = null;
    if (action === "defect") {
      const choice = this.el.type.value;
      defectType = choice === "__new__" ? this.el.newType.value.trim() || null : choice || null;
    }
    this.outbox.push({
      press, kind: "label", image_id: id, label: action, defect_type: defectType,
      region: action === "defect" ? this.box : null,
      note: this.el.note.value.trim() || null,
      seconds: Math.max(0, (performance.now() - this.shownAt) / 1000),
      prediction_id: shown ? shown.prediction_id : null,
    });
    this.decided.set(id, press);
    this.history.push(id);
    if (this.pinned && this.pinned.image === id) this.pinned = null;
    this.el.note.value = "";
    this.message = `${shown ? shown.name : "Part " + id}: ${action}` +
      (defectType ? ` (${defectType})` : "") + (action === "defect" && this.box ? ", boxed" : "");
    this.show(this.nextPart());
    this.sync();
  }

  undo() {
    const press = this.newPress();
    this.outbox.push({ press, kind: "undo" });
    const last = this.history.pop();
    if (last !== undefined && this.cache.has(last)) {
      this.pinnedPart = this.part(last) || this.pinnedPart;
      this.decided.delete(last);
      this.pinned = { image: last, press };
      this.message = "Undo: the last part is back on screen.";
      this.show(last);
    } else {
      this.message = "Undo sent: your last review will be cancelled.";
      this.render();
    }
    this.sync();
  }

  acceptablePage() {
    return this.parts.filter((p) => !this.decided.has(p.id) && p.verdict === "good" &&
      !p.audit && this.cache.has(p.id));
  }

  acceptPage() {
    if (!this.data.accept_page) return;
    const page = this.acceptablePage();
    if (!page.length) {
      this.message = "Not recorded: no passed part on this page to accept.";
      return this.render();
    }
    const press = this.newPress();
    this.outbox.push({ press, kind: "accept_page", image_ids: page.map((p) => p.id) });
    page.forEach((p) => { this.decided.set(p.id, press); });
    this.message = `Accepting ${page.length} passed part(s) as good…`;
    this.show(this.nextPart());
    this.sync();
  }

  toggleBoxMode() {
    this.boxMode = !this.boxMode;
    if (!this.boxMode) this.box = this.box || null;
    this.render();
  }

  newPress() {
    this.counter += 1;
    return `${this.instance}-${this.counter}`;
  }

  // One message in flight at a time: presses made while the server works wait here and go
  // together with the next message, so Python's runs are not cut short by every key press
  // (a Streamlit rerun request stops the run in progress).
  sync() {
    if (this.inflight) {
      this.dirty = true;
      return;
    }
    this.inflight = true;
    this.dirty = false;
    clearTimeout(this.retry);
    this.retry = setTimeout(() => this.answered(), RESEND_MS);
    this.synced = this.current;
    this.setStateValue("sync", {
      instance: this.instance, outbox: this.outbox.slice(), current: this.current,
    });
  }

  answered() {
    this.inflight = false;
    clearTimeout(this.retry);
    if (this.dirty || this.outbox.length || this.current !== this.synced) this.sync();
  }

  // ---------------------------------------------------------------- drawing

  show(id) {
    if (id !== this.current) {
      this.current = id;
      this.shownAt = performance.now();
      this.zoom = { scale: 1, x: 0, y: 0 };
      this.box = null;
      this.boxMode = false;
      this.settled = false;
    }
    this.render();
  }

  // Show only the panels of the part on screen, once they are drawn: its container may first
  // hold another part's stale children. Once it has held no stale element, it is the part's
  // (later runs of the same part keep it shown while they redraw it).
  followPanels() {
    const prefix = this.data.panels_class;
    if (!prefix || !this.panelsStyle) return;
    const id = this.current;
    const own = id === null ? null : "." + CSS.escape(prefix + id);
    const panels = own ? document.querySelector(own) : null;
    if (panels && !panels.querySelector('[data-stale="true"]')) this.settled = true;
    const shown = panels && this.settled ? own : null;
    const hidden = `[class*="${prefix}"]${shown ? `:not(${shown})` : ""}`;
    const css = `${hidden} { display: none !important; }`;
    if (this.panelsStyle.textContent !== css) this.panelsStyle.textContent = css;
    const part = id === null ? null : this.part(id);
    const note = part && !shown ? `Explaining ${part.name}…` : "";
    if (this.el.panelsNote.textContent !== note) this.el.panelsNote.textContent = note;
  }

  render() {
    const id = this.current;
    const part = id === null ? null : this.part(id);
    const images = id === null ? null : this.cache.get(id);
    const waiting = this.outbox.length;
    const saving = waiting ? `Saving ${waiting} press(es)…` : "All presses saved.";
    const left = Math.max(0, (this.data.remaining || 0) - this.pendingLabels());
    this.el.status.innerHTML = "";
    const status = document.createElement("span");
    status.textContent = `${saving} ${left} part(s) left in the queue.`;
    this.el.status.appendChild(status);
    if (this.message) {
      const note = document.createElement("span");
      note.textContent = "  " + this.message;
      if (this.message.startsWith("Not recorded")) note.className = "refused";
      this.el.status.appendChild(note);
    }
    const buttons = this.root.querySelectorAll('button[data-action="good"], ' +
      'button[data-action="defect"]');
    buttons.forEach((b) => { b.disabled = !part; });
    this.renderControls();
    if (!part || !images) {
      this.el.views.style.display = "none";
      this.el.bar.innerHTML = "";
      this.el.head.innerHTML = "";
      this.el.sentence.textContent = (this.data.remaining || 0) - this.pendingLabels() > 0 ||
        waiting ? "Loading the next parts…" : "Nothing left to review in this project.";
      this.el.sentence.className = "sentence empty";
      this.el.desk.dataset.imageId = "";
      this.followPanels();
      return;
    }
    this.el.desk.dataset.imageId = String(part.id);
    this.el.views.style.display = "";
    this.el.sentence.className = "sentence";
    this.el.head.innerHTML = "";
    const add = (text, className) => {
      const span = document.createElement("span");
      span.textContent = text;
      if (className) span.className = className;
      this.el.head.appendChild(span);
    };
    add(part.name, "name");
    add(part.verdict === "defect" ? "DEFECT" : "GOOD",
      "badge " + (part.verdict === "defect" ? "defect" : "good"));
    if (part.audit) add("Audit sample (passed part)", "badge audit");
    add(part.facts, "facts");
    this.el.sentence.textContent = images.unreadable
      ? `The image file cannot be read (${images.unreadable}); label it from the facts or ` +
        "ask a manager."
      : part.sentence || "";
    this.setSrc(this.el.part, images.image);
    this.setSrc(this.el.under, images.image);
    this.setSrc(this.el.heat, images.heat);
    this.el.heat.style.display = images.heat ? "" : "none";
    const reference = images.reference;
    this.el.referenceSlot.style.display = reference ? "" : "none";
    this.el.views.classList.toggle("no-reference", !reference);
    if (reference) {
      this.setSrc(this.el.reference, reference);
      this.el.referenceCaption.textContent = images.reference_caption || "Reference good part";
    }
    this.el.bar.innerHTML = "";
    if (images.scale_bar) {
      const bar = document.createElement("img");
      bar.src = images.scale_bar;
      bar.alt = "colour bar";
      this.el.bar.appendChild(bar);
    }
    if (images.scale_caption) {
      const caption = document.createElement("div");
      caption.className = "caption";
      caption.textContent = images.scale_caption;
      this.el.bar.appendChild(caption);
    }
    this.applyOpacity();
    this.applyZoom();
    this.followPanels();
  }

  renderControls() {
    this.el.boxButton.textContent = this.boxMode ? "Drawing: drag on the part (B to stop)"
      : this.box ? "Redraw defect box (B)" : "Draw defect box (B)";
    const acceptable = this.data.accept_page ? this.acceptablePage().length : 0;
    this.el.accept.style.display = this.data.accept_page ? "" : "none";
    this.el.accept.disabled = !acceptable;
    this.el.accept.textContent = `Accept ${acceptable} passed part(s) on this page as good (A)`;
  }

  pendingLabels() {
    return this.outbox.filter((p) => p.kind === "label").length;
  }

  setSrc(img, src) {
    if (src && img.getAttribute("src") !== src) img.setAttribute("src", src);
  }

  fillTypes(types) {
    const key = JSON.stringify(types);
    if (this.typesKey === key) return;
    this.typesKey = key;
    const selected = this.el.type.value;
    this.el.type.innerHTML = "";
    const option = (value, text) => {
      const o = document.createElement("option");
      o.value = value;
      o.textContent = text;
      this.el.type.appendChild(o);
    };
    option("", "Defect type: (unspecified)");
    types.forEach((t) => option(t, t));
    option("__new__", "New type…");
    if ([...this.el.type.options].some((o) => o.value === selected)) this.el.type.value = selected;
  }

  applyOpacity() {
    this.el.heat.style.opacity = this.el.opacity.value;
  }

  // ---------------------------------------------------------------- zoom and pan

  zoomable(view) {
    let drag = null;
    view.addEventListener("wheel", (event) => {
      event.preventDefault();
      const rect = view.getBoundingClientRect();
      const px = event.clientX - rect.left;
      const py = event.clientY - rect.top;
      const factor = event.deltaY < 0 ? 1.25 : 0.8;
      const scale = Math.min(16, Math.max(1, this.zoom.scale * factor));
      const ratio = scale / this.zoom.scale;
      this.zoom = {
        scale, x: px - (px - this.zoom.x) * ratio, y: py - (py - this.zoom.y) * ratio,
      };
      if (scale === 1) this.zoom = { scale: 1, x: 0, y: 0 };
      this.applyZoom();
    }, { passive: false });
    view.addEventListener("pointerdown", (event) => {
      view.setPointerCapture(event.pointerId);
      if (this.boxMode && view.dataset.view !== "reference") {
        const start = this.imageFraction(view, event);
        drag = { box: true, start };
        if (start) this.box = { x: start.x, y: start.y, w: 0, h: 0 };
        return;
      }
      drag = { x: event.clientX - this.zoom.x, y: event.clientY - this.zoom.y };
    });
    view.addEventListener("pointermove", (event) => {
      if (!drag) return;
      if (drag.box) {
        const end = this.imageFraction(view, event);
        if (!drag.start || !end) return;
        this.box = {
          x: Math.min(drag.start.x, end.x), y: Math.min(drag.start.y, end.y),
          w: Math.abs(end.x - drag.start.x), h: Math.abs(end.y - drag.start.y),
        };
        this.drawBoxes();
        return;
      }
      if (this.zoom.scale === 1) return;
      this.zoom = { ...this.zoom, x: event.clientX - drag.x, y: event.clientY - drag.y };
      this.applyZoom();
    });
    view.addEventListener("pointerup", () => {
      if (drag && drag.box) {
        if (!this.box || this.box.w < 0.005 || this.box.h < 0.005) this.box = null;
        this.boxMode = false;
        this.render();
      }
      drag = null;
    });
    view.addEventListener("dblclick", () => {
      this.zoom = { scale: 1, x: 0, y: 0 };
      this.applyZoom();
    });
  }

  applyZoom() {
    const { scale, x, y } = this.zoom;
    const transform = `translate(${x}px, ${y}px) scale(${scale})`;
    this.root.querySelectorAll(".view img").forEach((img) => { img.style.transform = transform; });
    this.drawBoxes();
  }

  // The image's content rectangle inside a view (object-fit: contain), before zoom.
  contentRect(view) {
    const img = this.el.part;
    const width = view.clientWidth;
    const height = view.clientHeight;
    const nw = img.naturalWidth || width;
    const nh = img.naturalHeight || height;
    const k = Math.min(width / nw, height / nh);
    return { ox: (width - nw * k) / 2, oy: (height - nh * k) / 2, cw: nw * k, ch: nh * k };
  }

  // A pointer position as fractions of the image (zoom and letterbox undone), or null.
  imageFraction(view, event) {
    const rect = view.getBoundingClientRect();
    const { scale, x, y } = this.zoom;
    const lx = (event.clientX - rect.left - x) / scale;
    const ly = (event.clientY - rect.top - y) / scale;
    const { ox, oy, cw, ch } = this.contentRect(view);
    if (!cw || !ch) return null;
    const clamp = (v) => Math.min(1, Math.max(0, v));
    return { x: clamp((lx - ox) / cw), y: clamp((ly - oy) / ch) };
  }

  drawBoxes() {
    const { scale, x, y } = this.zoom;
    this.el.boxes.forEach((div) => {
      const view = div.parentElement;
      if (!this.box || !view) {
        div.style.display = "none";
        return;
      }
      const { ox, oy, cw, ch } = this.contentRect(view);
      div.style.display = "block";
      div.style.left = `${x + (ox + this.box.x * cw) * scale}px`;
      div.style.top = `${y + (oy + this.box.y * ch) * scale}px`;
      div.style.width = `${this.box.w * cw * scale}px`;
      div.style.height = `${this.box.h * ch * scale}px`;
    });
  }
}
