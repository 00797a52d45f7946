// The browser client: onnxruntime-web (wasm) runs a pixel-form cifar-edge model on an image decoded at its natural
// size. Shared logic (contract, alpha compositing, session, top-k) lives in ../common/classify.mjs, as for Node.
//
// Page URL parameters: ?model=URL (default: model.onnx next to this page; or choose / drop a model file).
// For tests and scripts: window.classifyUrl(url) and window.loadModelUrl(url) return promises of plain objects;
// window.cifarEdgeReady resolves once the page has tried its default model.

import * as ort from "onnxruntime-web";

import { createClassifier } from "../common/classify.mjs";

ort.env.wasm.wasmPaths = new URL("../node/node_modules/onnxruntime-web/dist/", import.meta.url).href;

const $ = (id) => document.getElementById(id);
let classifier = null;
let modelName = null;

// ---------------------------------------------------------------------------------------------------------------
// Decoding. createImageBitmap applies EXIF orientation; colour profiles are ignored, as Pillow does for RGB images.
// A 2D canvas stores premultiplied alpha, so getImageData loses the colour of translucent pixels (up to tens of
// levels at low alpha). A WebGL texture of an unpremultiplied ImageBitmap keeps straight alpha exactly, so that is
// the first choice; the 2D canvas is the fallback (exact for opaque pixels, within 1 level after compositing).
// Neither ever resizes: the model's own Resize matches Pillow, a canvas resize does not.

const BITMAP_OPTIONS = { imageOrientation: "from-image", premultiplyAlpha: "none", colorSpaceConversion: "none" };
let glCanvas = null;
let gl = null;

function straightRgbaWithWebGL(bitmap) {
  if (gl === null) {
    glCanvas = new OffscreenCanvas(1, 1);
    gl = glCanvas.getContext("webgl2", { premultipliedAlpha: false, antialias: false }) ?? false;
  }
  if (!gl || gl.isContextLost() || Math.max(bitmap.width, bitmap.height) > gl.getParameter(gl.MAX_TEXTURE_SIZE)) {
    return null;
  }
  const { width, height } = bitmap;
  const texture = gl.createTexture();
  const framebuffer = gl.createFramebuffer();
  try {
    gl.bindTexture(gl.TEXTURE_2D, texture);
    gl.pixelStorei(gl.UNPACK_PREMULTIPLY_ALPHA_WEBGL, false);
    gl.pixelStorei(gl.UNPACK_COLORSPACE_CONVERSION_WEBGL, gl.NONE);
    gl.pixelStorei(gl.UNPACK_FLIP_Y_WEBGL, false);
    gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA8, width, height, 0, gl.RGBA, gl.UNSIGNED_BYTE, bitmap);
    gl.bindFramebuffer(gl.FRAMEBUFFER, framebuffer);
    gl.framebufferTexture2D(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, gl.TEXTURE_2D, texture, 0);
    if (gl.checkFramebufferStatus(gl.FRAMEBUFFER) !== gl.FRAMEBUFFER_COMPLETE) return null;
    const rgba = new Uint8Array(width * height * 4);
    gl.readPixels(0, 0, width, height, gl.RGBA, gl.UNSIGNED_BYTE, rgba); // row 0 is the image's top row
    return gl.getError() === gl.NO_ERROR ? rgba : null;
  } finally {
    gl.bindFramebuffer(gl.FRAMEBUFFER, null);
    gl.deleteFramebuffer(framebuffer);
    gl.deleteTexture(texture);
  }
}

function rgbaWith2dCanvas(bitmap) {
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.drawImage(bitmap, 0, 0); // same size: a copy, never a resize
  return new Uint8Array(context.getImageData(0, 0, bitmap.width, bitmap.height).data.buffer);
}

/** {bitmap, rgba (straight alpha), width, height, decoder} for an encoded image Blob; throws when undecodable. */
export async function decodeRgba(blob) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(blob, BITMAP_OPTIONS);
  } catch (error) {
    throw new Error(`cannot decode image (${error.name}: ${error.message})`);
  }
  const { width, height } = bitmap;
  const webgl = straightRgbaWithWebGL(bitmap);
  return {
    bitmap,
    width,
    height,
    rgba: webgl ?? rgbaWith2dCanvas(bitmap),
    decoder: webgl ? "webgl2" : "canvas2d",
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Page.

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

function oneLine(error) {
  const text = String(error?.message ?? error).split("\n").map((line) => line.trim()).find(Boolean) ?? "error";
  return text.length > 300 ? `${text.slice(0, 297)}...` : text;
}

async function loadModel(bytes, name) {
  setStatus(`Loading ${name}…`);
  classifier = null;
  try {
    classifier = await createClassifier(ort, new Uint8Array(bytes));
  } catch (error) {
    $("model-name").textContent = "none";
    setStatus(`${name}: ${oneLine(error)}`, true);
    return { model: name, error: `${name}: ${oneLine(error)}` };
  }
  modelName = name;
  $("model-name").textContent = name;
  const { class_names: classes, image_size: size } = classifier.contract;
  setStatus(`Ready: ${classes.length} classes, ${size?.join("×") ?? "?"} input. Choose or drop an image.`);
  return { model: name, contract: classifier.contract };
}

function showResult(decoded, result) {
  const preview = $("preview");
  preview.width = decoded.width;
  preview.height = decoded.height;
  preview.style.imageRendering = Math.max(decoded.width, decoded.height) <= 64 ? "pixelated" : "auto";
  const context = preview.getContext("2d");
  context.clearRect(0, 0, decoded.width, decoded.height);
  context.drawImage(decoded.bitmap, 0, 0); // display only, at natural size (CSS scales what you see)
  const bars = $("bars");
  bars.replaceChildren(
    ...result.top.map(([label, probability]) => {
      const item = document.createElement("li");
      const name = document.createElement("span");
      name.textContent = label;
      const bar = document.createElement("span");
      bar.className = "bar";
      const fill = document.createElement("span");
      fill.style.width = `${(probability * 100).toFixed(2)}%`;
      bar.append(fill);
      const value = document.createElement("span");
      value.className = "value";
      value.textContent = `${(probability * 100).toFixed(1)}%`;
      item.append(name, bar, value);
      return item;
    }),
  );
  $("result").hidden = false;
}

/** Classify one encoded image; resolves to the Node client's JSON line ({path, label, ...} or {path, error}). */
async function classifyBlob(blob, path) {
  const name = path.split("/").pop() || path;
  if (classifier === null) {
    setStatus(`${name}: choose a model first`, true);
    return { path, error: `${path}: no model loaded` };
  }
  let decoded;
  try {
    decoded = await decodeRgba(blob);
  } catch (error) {
    setStatus(`${name}: ${oneLine(error)}`, true);
    return { path, error: `${path}: ${oneLine(error)}` };
  }
  const started = performance.now();
  const result = await classifier.classifyRgba(decoded.rgba, decoded.width, decoded.height);
  const milliseconds = performance.now() - started;
  showResult(decoded, result);
  decoded.bitmap.close();
  setStatus(
    `${name}: ${decoded.width}×${decoded.height}, decoded with ${decoded.decoder}, ` +
      `classified in ${milliseconds.toFixed(1)} ms by ${modelName}.`,
  );
  return { path, ...result, width: decoded.width, height: decoded.height, decoder: decoded.decoder, ms: milliseconds };
}

async function fetchBytes(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`HTTP ${response.status} ${response.statusText}`.trim());
  return response.arrayBuffer();
}

window.loadModelUrl = async (url) => {
  try {
    const fileName = decodeURIComponent(url.split(/[?#]/)[0].split("/").pop() || url);
    return await loadModel(await fetchBytes(url), fileName);
  } catch (error) {
    setStatus(`${url}: ${oneLine(error)} — choose a model file instead.`, true);
    return { model: url, error: `${url}: ${oneLine(error)}` };
  }
};

window.classifyUrl = async (url) => {
  let blob;
  try {
    blob = new Blob([await fetchBytes(url)]);
  } catch (error) {
    return { path: url, error: `${url}: ${oneLine(error)}` };
  }
  return classifyBlob(blob, url);
};

function handleFiles(files) {
  for (const file of files) {
    if (file.name.toLowerCase().endsWith(".onnx")) file.arrayBuffer().then((bytes) => loadModel(bytes, file.name));
    else classifyBlob(file, file.name);
  }
}

$("model-file").addEventListener("change", (event) => handleFiles(event.target.files));
$("image-file").addEventListener("change", (event) => handleFiles(event.target.files));
const drop = $("drop");
drop.addEventListener("dragover", (event) => {
  event.preventDefault();
  drop.classList.add("over");
});
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  handleFiles(event.dataTransfer.files);
});

const defaultModel = new URLSearchParams(location.search).get("model") ?? "model.onnx";
window.cifarEdgeReady = window.loadModelUrl(defaultModel);
