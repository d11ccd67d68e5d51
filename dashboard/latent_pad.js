// The Explore sliders as one component: a slider per latent dimension and the decoded picture, which
// follows a drag while it happens. With an MLP decoder (data.program) the browser decodes every move
// itself from the decoder's weights; otherwise it sends the code to the server at most every
// data.throttle_ms while dragging and shows the picture each rerun brings. On release the code goes to
// the server either way (state "z"), so the page, the link and the other tabs agree with the sliders.

function floats(weights) {
  // The weights arrive as base64 of little-endian float32s (the component's data is JSON).
  return new Float32Array(Uint8Array.from(atob(weights), (ch) => ch.charCodeAt(0)).buffer);
}

function layersOf(program, f32) {
  return program.layers.map((l) => ({
    w: f32.subarray(l.w, l.w + l.out * l.in), b: f32.subarray(l.b, l.b + l.out),
    out: l.out, in: l.in, act: l.act,
  }));
}

function decode(pad, z) {
  // h = act(W h + b) layer by layer, in float32 like torch; then the mean's squash and the display map.
  let h = Float32Array.from(z);
  for (const l of pad.layers) {
    const next = new Float32Array(l.out);
    for (let o = 0; o < l.out; o++) {
      let s = l.b[o];
      const row = o * l.in;
      for (let i = 0; i < l.in; i++) s += l.w[row + i] * h[i];
      if (l.act === "relu") s = s > 0 ? s : 0;
      else if (l.act === "tanh") s = Math.tanh(s);
      else if (l.act.startsWith("leaky-relu")) s = s > 0 ? s : s * pad.slopes[l.act];
      next[o] = s;
    }
    h = next;
  }
  const p = pad.program;
  for (let j = 0; j < h.length; j++) {
    let v = p.squash === "sigmoid" ? 1 / (1 + Math.exp(-h[j])) : h[j];
    v = v * p.scale + (pad.offset ? pad.offset[j] : 0);
    h[j] = v < 0 ? 0 : v > 1 ? 1 : v;
  }
  return h;
}

function draw(pad, pixels) {
  const [c, hgt, wid] = pad.program.shape;
  const img = pad.ctx.createImageData(wid, hgt);
  const n = hgt * wid;
  for (let k = 0; k < n; k++) {
    const r = pixels[k], g = c === 3 ? pixels[n + k] : r, b = c === 3 ? pixels[2 * n + k] : r;
    img.data[4 * k] = Math.round(r * 255);
    img.data[4 * k + 1] = Math.round(g * 255);
    img.data[4 * k + 2] = Math.round(b * 255);
    img.data[4 * k + 3] = 255;
  }
  pad.ctx.putImageData(img, 0, 0);
  pad.frames += 1;
  pad.canvas.dataset.frames = String(pad.frames);
  pad.canvas.dataset.code = JSON.stringify(pad.code());
}

function build(parent, data, setStateValue) {
  const old = parent.querySelector(".pad");  // a pad for another model or code; the styles stay
  if (old) old.remove();
  const root = document.createElement("div");
  root.className = "pad";
  const grid = document.createElement("div");
  grid.className = "sliders";
  const view = document.createElement("div");
  view.className = "view";
  root.append(grid, view);
  parent.append(root);

  const pad = { key: data.key, root, frames: 0, inputs: [], fixed: data.code.slice(), last: 0, timer: null };
  pad.code = () => {
    const z = pad.fixed.slice();
    pad.inputs.forEach(([i, input]) => { z[i] = parseFloat(input.value); });
    return z;
  };
  data.dims.forEach((dim, i) => {
    if (dim.hidden) return;
    const cell = document.createElement("label");
    cell.className = "dim" + (dim.active ? "" : " inactive");
    cell.title = dim.help;
    const name = document.createElement("span");
    const input = document.createElement("input");
    // step "any": the thumb lands on the exact code, not on a grid that would move it off the start
    Object.assign(input, { type: "range", min: dim.low, max: dim.high, step: "any", value: data.code[i] });
    input.setAttribute("aria-label", dim.label);
    input.dataset.dim = String(i);
    const value = document.createElement("output");
    const show = () => { value.textContent = parseFloat(input.value).toFixed(2); };
    show();
    name.textContent = dim.label;
    cell.append(name, input, value);
    grid.append(cell);
    pad.inputs.push([i, input]);
    input.addEventListener("input", () => { show(); pad.moved(); });
    input.addEventListener("change", () => { clearTimeout(pad.timer); setStateValue("z", pad.code()); });
    // With step "any" the arrow keys would jump by 1; move by a hundredth of the range instead.
    input.addEventListener("keydown", (e) => {
      const dir = { ArrowRight: 1, ArrowUp: 1, ArrowLeft: -1, ArrowDown: -1 }[e.key];
      if (!dir) return;
      e.preventDefault();
      const next = parseFloat(input.value) + dir * (dim.high - dim.low) / 100;
      input.value = String(Math.min(dim.high, Math.max(dim.low, next)));
      show();
      pad.moved();
      clearTimeout(pad.keys);
      pad.keys = setTimeout(() => setStateValue("z", pad.code()), 300);  // the server hears the last of a run of keys
    });
  });

  if (data.program) {
    pad.program = data.program;
    const f32 = floats(data.weights);
    pad.layers = layersOf(data.program, f32);
    pad.slopes = {};
    pad.layers.forEach((l) => { if (l.act.startsWith("leaky-relu")) pad.slopes[l.act] = parseFloat(l.act.split(":")[1]); });
    const off = data.program.offset;
    pad.offset = off === null ? null : f32.subarray(off, off + data.program.shape.reduce((a, b) => a * b));
    pad.canvas = document.createElement("canvas");
    [, pad.canvas.height, pad.canvas.width] = data.program.shape;
    pad.ctx = pad.canvas.getContext("2d");
    view.append(pad.canvas);
    let queued = false;
    // Coalesce moves into one decode per animation frame: a drag never lags behind itself.
    pad.moved = () => {
      if (queued) return;
      queued = true;
      requestAnimationFrame(() => {
        queued = false;
        const t0 = performance.now();
        draw(pad, decode(pad, pad.code()));
        pad.canvas.dataset.ms = (performance.now() - t0).toFixed(3);  // decode and draw, read by bench/slider_drag.py
      });
    };
    draw(pad, decode(pad, pad.code()));
  } else {
    pad.image = document.createElement("img");
    pad.image.alt = "decoded";
    view.append(pad.image);
    // The server decodes: send the code at most every throttle_ms while dragging, and the last one.
    pad.moved = () => {
      const wait = data.throttle_ms - (performance.now() - pad.last);
      clearTimeout(pad.timer);
      pad.timer = setTimeout(() => { pad.last = performance.now(); setStateValue("z", pad.code()); }, Math.max(0, wait));
    };
  }
  const caption = document.createElement("div");
  caption.className = "caption";
  caption.textContent = data.program ? "decoded in your browser as you drag" : "decoded on the server";
  view.append(caption);
  return pad;
}

export default function (component) {
  const { data, parentElement, setStateValue } = component;
  let pad = parentElement.__pad;
  if (!pad || pad.key !== data.key) {
    pad = parentElement.__pad = build(parentElement, data, setStateValue);
  }
  // The picture's largest size: twice as large in presentation mode (on the pad itself: the component's
  // parent may be a shadow root, which has no style).
  pad.root.style.setProperty("--pad-picture", `${data.picture_px || 256}px`);
  if (!data.program && data.image) {
    // A rerun's picture; the sliders keep what the hand is doing.
    pad.image.src = data.image;
    pad.frames += 1;
    pad.image.dataset.frames = String(pad.frames);
  }
}
