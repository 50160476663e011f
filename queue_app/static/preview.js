// The item page's document preview (templates/inbox/_item_preview.html): PDFs drawn on a canvas by
// the vendored pdf.js, with paging, a page list, zoom and rotation; images with zoom and rotation.
//
// Nothing from a file runs: pdf.js gets no scripting build, no annotation layer and no forms (the
// canvas shows annotations as pictures only), and WebAssembly stays off, so the page's
// Content-Security-Policy needs nothing beyond 'self'. A PDF that cannot be opened (encrypted,
// damaged, refused by the server as too costly) or an image refused (a pixel bomb) says so in the
// panel. The download links above the viewer work with or without this.
import * as pdfjs from "./vendor/pdfjs/pdf.min.mjs";

const ZOOMS = [0.5, 0.75, 1, 1.25, 1.5, 2, 3];
const MAX_PAGE_BUTTONS = 300;
const THUMB_WIDTH = 72; // CSS pixels

let closePrevious = null;

// On load, and again when htmx swaps in a new page body (a conflict shows the item afresh).
function start() {
  const viewer = document.getElementById("preview-viewer");
  if (!viewer || viewer.dataset.ready) return;
  viewer.dataset.ready = "1";
  if (closePrevious) closePrevious();
  pdfjs.GlobalWorkerOptions.workerSrc = new URL(viewer.dataset.worker, document.baseURI).href;
  closePrevious = setUp(viewer);
}

start();
document.addEventListener("htmx:afterSettle", start);

function setUp(viewer) {
  const files = Array.from(document.querySelectorAll("#preview-files .preview-file"));
  const el = (id) => document.getElementById(id);
  const canvas = viewer.querySelector(".preview-canvas");
  const image = viewer.querySelector(".preview-image");
  const stage = el("preview-stage");
  const message = el("preview-message");
  const pageList = el("preview-page-list");
  const state = { kind: null, doc: null, task: null, render: null, thumbs: null, page: 1, pages: 0, zoom: 2, rotation: 0,
    token: 0 };

  viewer.hidden = false;
  el("preview-prev").addEventListener("click", () => showPage(state.page - 1));
  el("preview-next").addEventListener("click", () => showPage(state.page + 1));
  el("preview-zoom-in").addEventListener("click", () => setZoom(state.zoom + 1));
  el("preview-zoom-out").addEventListener("click", () => setZoom(state.zoom - 1));
  el("preview-rotate").addEventListener("click", () => {
    state.rotation = (state.rotation + 90) % 360;
    redraw();
  });
  stage.addEventListener("keydown", (event) => {
    if (state.kind !== "pdf") return;
    if (event.key === "PageDown" || event.key === "ArrowRight") { event.preventDefault(); showPage(state.page + 1); }
    if (event.key === "PageUp" || event.key === "ArrowLeft") { event.preventDefault(); showPage(state.page - 1); }
  });
  const chooser = el("preview-choose");
  if (chooser) chooser.addEventListener("change", () => open(files[Number(chooser.value)]));
  open(files[0]);
  return closeCurrent;

  function say(text, isError) {
    message.textContent = text;
    message.classList.toggle("error", Boolean(isError));
  }

  function setStatus(status) {
    viewer.dataset.state = status;
  }

  async function closeCurrent() {
    state.token += 1;
    if (state.thumbs) state.thumbs.disconnect();
    state.thumbs = null;
    if (state.render) state.render.cancel();
    state.render = null;
    const task = state.task;
    state.task = null;
    state.doc = null;
    if (task) await task.destroy().catch(() => {});
  }

  async function open(file) {
    await closeCurrent();
    const token = state.token;
    Object.assign(state, { kind: file.dataset.kind, page: 1, pages: 0, zoom: 2, rotation: 0 });
    files.forEach((f) => f.classList.toggle("preview-current", f === file));
    canvas.hidden = true;
    image.hidden = true;
    pageList.textContent = "";
    el("preview-pages").hidden = true;
    el("preview-paging").hidden = state.kind !== "pdf";
    delete viewer.dataset.pages;
    setStatus("loading");
    say(`Opening ${file.dataset.name}…`);
    if (state.kind === "image") {
      openImage(file, token);
    } else {
      await openPdf(file, token);
    }
  }

  function openImage(file, token) {
    image.alt = file.dataset.name;
    image.onload = () => {
      if (token !== state.token) return;
      image.hidden = false;
      say("");
      setStatus("rendered");
      redraw();
    };
    image.onerror = () => {
      if (token !== state.token) return;
      say(`Cannot preview ${file.dataset.name}: the image is damaged or too large to show. See the file checks.`, true);
      setStatus("failed");
    };
    image.src = file.dataset.src;
  }

  async function openPdf(file, token) {
    const task = pdfjs.getDocument({
      url: new URL(file.dataset.src, document.baseURI).href,
      isEvalSupported: false, // no eval path in this pdf.js; kept so an older copy stays safe
      enableXfa: false,
      useWasm: false, // the CSP allows no WebAssembly: the plain-JavaScript decoders are used
      wasmUrl: new URL(viewer.dataset.wasm, document.baseURI).href,
      stopAtErrors: false,
    });
    // No onPassword: pdf.js then refuses an encrypted file with a PasswordException, said below.
    state.task = task;
    try {
      const doc = await task.promise;
      if (token !== state.token) return;
      state.doc = doc;
      state.pages = doc.numPages;
      viewer.dataset.pages = String(doc.numPages);
      const drawThumbs = buildPageList(doc.numPages);
      say("");
      await showPage(1);
      if (drawThumbs && token === state.token) drawThumbs(); // after the page being read, never before it
    } catch (error) {
      if (token !== state.token) return;
      const advice = costly(error) ? "See the file checks." : "Download it to open it in another program.";
      say(`Cannot preview ${file.dataset.name}: ${reason(error)}. ${advice}`, true);
      setStatus("failed");
    }
  }

  function reason(error) {
    const name = error && error.name;
    if (name === "PasswordException" || (error && /password|encrypt/i.test(String(error.message)))) {
      return "the PDF is encrypted";
    }
    if (name === "InvalidPDFException" || name === "FormatError") return "the PDF is damaged";
    if (costly(error)) return "the checks found it too costly to open (a decompression bomb or over the limits)";
    if (name === "ResponseException") return "the file could not be fetched";
    return "the PDF is damaged or not supported";
  }

  // The server refuses (422) a PDF the checks could not open within their limits: no viewer should try.
  function costly(error) {
    return Boolean(error) && error.name === "ResponseException" && error.status === 422;
  }

  // The page list: a button per page with a small picture of it, drawn when it scrolls into view,
  // one page at a time so the page being read is never kept waiting. Returns what starts the drawing.
  function buildPageList(count) {
    if (count < 2) return null;
    const shown = Math.min(count, MAX_PAGE_BUTTONS);
    const token = state.token;
    const waiting = [];
    let drawing = false;
    const observer = "IntersectionObserver" in window ? new IntersectionObserver((entries) => {
      for (const entry of entries) {
        if (!entry.isIntersecting) continue;
        observer.unobserve(entry.target);
        waiting.push(entry.target);
      }
      drawNext();
    }) : null;
    state.thumbs = observer;
    for (let n = 1; n <= shown; n += 1) {
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "preview-page-button";
      button.setAttribute("aria-label", `Page ${n}`);
      button.dataset.page = String(n);
      const thumb = document.createElement("canvas");
      thumb.className = "preview-thumb";
      thumb.setAttribute("aria-hidden", "true");
      const number = document.createElement("span");
      number.textContent = String(n);
      button.append(thumb, number);
      button.addEventListener("click", () => showPage(n));
      item.append(button);
      pageList.append(item);
    }
    el("preview-pages").hidden = false;
    return () => pageList.querySelectorAll("button").forEach((button) => observer && observer.observe(button));

    async function drawNext() {
      if (drawing) return;
      drawing = true;
      try {
        while (waiting.length && token === state.token) {
          const button = waiting.shift();
          await drawThumb(button, token);
        }
      } finally {
        drawing = false;
      }
    }
  }

  async function drawThumb(button, token) {
    try {
      const page = await state.doc.getPage(Number(button.dataset.page));
      if (token !== state.token) return;
      const natural = page.getViewport({ scale: 1 });
      const viewport = page.getViewport({ scale: THUMB_WIDTH / natural.width });
      const ratio = window.devicePixelRatio || 1;
      const thumb = button.querySelector("canvas");
      thumb.width = Math.floor(viewport.width * ratio);
      thumb.height = Math.floor(viewport.height * ratio);
      thumb.style.width = `${Math.floor(viewport.width)}px`;
      thumb.style.height = `${Math.floor(viewport.height)}px`;
      await page.render({ canvas: thumb, canvasContext: thumb.getContext("2d"), viewport,
        transform: ratio === 1 ? null : [ratio, 0, 0, ratio, 0, 0] }).promise;
      button.dataset.drawn = "1";
    } catch (error) {
      button.dataset.drawn = "failed"; // the number stays; the page itself says what is wrong when opened
    }
  }

  async function showPage(n) {
    if (state.kind !== "pdf" || !state.doc || n < 1 || n > state.pages) return;
    state.page = n;
    await redraw();
  }

  function setZoom(index) {
    state.zoom = Math.max(0, Math.min(ZOOMS.length - 1, index));
    redraw();
  }

  async function redraw() {
    const zoom = ZOOMS[state.zoom];
    el("preview-zoom-status").textContent = `${Math.round(zoom * 100)}%`;
    el("preview-zoom-out").disabled = state.zoom === 0;
    el("preview-zoom-in").disabled = state.zoom === ZOOMS.length - 1;
    if (state.kind === "image") {
      image.style.transform = imageTransform(zoom, state.rotation);
      return;
    }
    if (!state.doc) return;
    el("preview-page-status").textContent = `Page ${state.page} of ${state.pages}`;
    el("preview-prev").disabled = state.page <= 1;
    el("preview-next").disabled = state.page >= state.pages;
    pageList.querySelectorAll("button").forEach((b, i) => {
      if (i + 1 === state.page) b.setAttribute("aria-current", "page");
      else b.removeAttribute("aria-current");
    });
    await renderPage(zoom);
  }

  // Turned and zoomed about the image's top left corner, then moved back into view, so the stage
  // can scroll to every part of it (what goes above or left of the stage could not be scrolled to).
  function imageTransform(zoom, rotation) {
    const w = image.offsetWidth * zoom;
    const h = image.offsetHeight * zoom;
    const shift = { 0: [0, 0], 90: [h, 0], 180: [w, h], 270: [0, w] }[rotation];
    return `translate(${shift[0]}px, ${shift[1]}px) rotate(${rotation}deg) scale(${zoom})`;
  }

  async function renderPage(zoom) {
    const token = state.token;
    if (state.render) state.render.cancel();
    setStatus("rendering");
    try {
      const page = await state.doc.getPage(state.page);
      if (token !== state.token) return;
      const rotation = (page.rotate + state.rotation) % 360;
      const natural = page.getViewport({ scale: 1, rotation });
      // 100% is the whole page in view (the stage is at most 80% of the window high).
      const fit = Math.min(Math.max(stage.clientWidth - 24, 200) / natural.width,
        Math.max(window.innerHeight * 0.8 - 24, 300) / natural.height);
      const viewport = page.getViewport({ scale: fit * zoom, rotation });
      const ratio = window.devicePixelRatio || 1;
      canvas.width = Math.floor(viewport.width * ratio);
      canvas.height = Math.floor(viewport.height * ratio);
      canvas.style.width = `${Math.floor(viewport.width)}px`;
      canvas.style.height = `${Math.floor(viewport.height)}px`;
      const render = page.render({
        canvas,
        canvasContext: canvas.getContext("2d"),
        viewport,
        transform: ratio === 1 ? null : [ratio, 0, 0, ratio, 0, 0],
        annotationMode: pdfjs.AnnotationMode.ENABLE, // appearances drawn as pictures; no form fields
      });
      state.render = render;
      await render.promise;
      if (token !== state.token || state.render !== render) return;
      state.render = null;
      canvas.hidden = false;
      canvas.setAttribute("aria-label", `Page ${state.page} of ${state.pages}`);
      viewer.dataset.page = String(state.page);
      setStatus("rendered");
    } catch (error) {
      if (error && error.name === "RenderingCancelledException") return;
      if (token !== state.token) return;
      say(`Cannot show page ${state.page}: ${reason(error)}.`, true);
      setStatus("failed");
    }
  }
}
