// Shared by the Node CLI (examples/node/classify.mjs) and the browser page (examples/browser/app.mjs):
// read the contract from a pixel-form cifar-edge model, composite alpha exactly like the Python runtime (Pillow's
// Image.alpha_composite over an opaque background), run onnxruntime-web and turn the probabilities into a result.
// No imports: the caller hands in the onnxruntime-web module, so this file runs unchanged in Node and in a browser.

export const CONTRACT_KEY = "cifar_edge.contract";
export const DEFAULT_BACKGROUND = [255, 255, 255];
const TOP_K = 5;

// ---------------------------------------------------------------------------------------------------------------
// The contract: ONNX ModelProto.metadata_props (field 14, StringStringEntryProto {key = 1, value = 2}).
// onnxruntime-web has no API for custom metadata, so the few protobuf fields needed are read here directly.

function readVarint(bytes, state) {
  let result = 0;
  let scale = 1;
  for (;;) {
    if (state.pos >= bytes.length) throw new Error("truncated ONNX file (varint)");
    const byte = bytes[state.pos++];
    result += (byte & 0x7f) * scale; // multiplication, not <<: lengths can exceed 2^31
    if (byte < 0x80) return result;
    scale *= 128;
    if (scale > 2 ** 56) throw new Error("malformed ONNX file (varint too long)");
  }
}

// Calls visit(fieldNumber, bytesSubarray) for every length-delimited field of one message; skips the others.
function forEachLengthDelimited(bytes, visit) {
  const state = { pos: 0 };
  while (state.pos < bytes.length) {
    const tag = readVarint(bytes, state);
    const field = Math.floor(tag / 8);
    const wireType = tag % 8;
    if (wireType === 0) readVarint(bytes, state);
    else if (wireType === 1) state.pos += 8;
    else if (wireType === 5) state.pos += 4;
    else if (wireType === 2) {
      const length = readVarint(bytes, state);
      if (state.pos + length > bytes.length) throw new Error("truncated ONNX file");
      visit(field, bytes.subarray(state.pos, state.pos + length));
      state.pos += length;
    } else throw new Error(`not an ONNX model (protobuf wire type ${wireType})`);
  }
}

/** The model's metadata_props as a plain object {key: value}. */
export function readMetadataProps(modelBytes) {
  const bytes = modelBytes instanceof Uint8Array ? modelBytes : new Uint8Array(modelBytes);
  const decoder = new TextDecoder("utf-8");
  const props = {};
  forEachLengthDelimited(bytes, (field, entry) => {
    if (field !== 14) return;
    let key = "";
    let value = "";
    forEachLengthDelimited(entry, (inner, data) => {
      if (inner === 1) key = decoder.decode(data);
      else if (inner === 2) value = decoder.decode(data);
    });
    props[key] = value;
  });
  return props;
}

/** The cifar-edge contract of a model file; an Error saying why when the file is not a pixel-form model. */
export function readContract(modelBytes) {
  const text = readMetadataProps(modelBytes)[CONTRACT_KEY];
  if (text === undefined) throw new Error(`no "${CONTRACT_KEY}" metadata: not a cifar-edge model`);
  const contract = JSON.parse(text);
  const form = contract.input_form ?? "float";
  if (form !== "pixels") {
    throw new Error(
      `this model takes input_form "${form}"; the JS clients need a pixel-form export ` +
        '(uint8 "pixels" [N, H, W, 3]): re-export it with cifar-export without --input float',
    );
  }
  if (!Array.isArray(contract.class_names) || contract.class_names.length === 0) {
    throw new Error("contract has no class_names");
  }
  const background = contract.alpha_background ?? DEFAULT_BACKGROUND;
  const isLevel = (value) => Number.isInteger(value) && value >= 0 && value <= 255;
  if (!Array.isArray(background) || background.length !== 3 || !background.every(isLevel)) {
    throw new Error(`contract alpha_background must be three integers 0..255, got ${JSON.stringify(background)}`);
  }
  return { ...contract, alpha_background: background };
}

// ---------------------------------------------------------------------------------------------------------------
// Pixels.

/**
 * Straight-alpha RGBA (4 bytes a pixel) -> RGB composited on an opaque background, rounded exactly like Pillow's
 * Image.alpha_composite(Image.new("RGBA", size, (*background, 255)), image).convert("RGB") (checked against Pillow
 * for every value, alpha and background level).
 */
export function compositeOnBackground(rgba, width, height, background = DEFAULT_BACKGROUND) {
  const count = width * height;
  if (rgba.length !== count * 4) throw new Error(`expected ${count * 4} RGBA bytes, got ${rgba.length}`);
  const rgb = new Uint8Array(count * 3);
  for (let i = 0, o = 0; i < rgba.length; i += 4, o += 3) {
    const alpha = rgba[i + 3];
    for (let c = 0; c < 3; c++) {
      const src = rgba[i + c];
      if (alpha === 255) rgb[o + c] = src;
      else if (alpha === 0) rgb[o + c] = background[c];
      else {
        // Pillow works in 7 fractional bits and divides by 255 with ((x >> 8) + x) >> 8 after adding one half.
        const x = (src * alpha + background[c] * (255 - alpha)) * 128 + 16384;
        rgb[o + c] = (((x >>> 8) + x) >>> 8) >>> 7;
      }
    }
  }
  return rgb;
}

// ---------------------------------------------------------------------------------------------------------------
// Results.

/** {label, probability, top: [[label, p] ...], probabilities: [...]} from one row of softmax output. */
export function summarize(probabilities, classNames, topK = TOP_K) {
  const values = Array.from(probabilities, Number);
  if (values.length !== classNames.length) {
    throw new Error(`model gives ${values.length} probabilities for ${classNames.length} class names`);
  }
  // Stable: ties keep class order, like numpy's argsort(kind="stable") on -p.
  const order = values.map((_, index) => index).sort((a, b) => values[b] - values[a] || a - b);
  const top = order.slice(0, Math.min(topK, values.length)).map((index) => [classNames[index], values[index]]);
  return { label: top[0][0], probability: top[0][1], top, probabilities: values };
}

/**
 * Load a pixel-form model with onnxruntime-web's wasm backend.
 * `ort` is the onnxruntime-web module (Node and browser each import their own build of the same package).
 * Returns {contract, classifyRgba(rgba, width, height)} where classifyRgba takes straight-alpha RGBA at the image's
 * natural size and resolves to the result of summarize().
 */
export async function createClassifier(ort, modelBytes, { topK = TOP_K } = {}) {
  const bytes = modelBytes instanceof Uint8Array ? modelBytes : new Uint8Array(modelBytes);
  const contract = readContract(bytes);
  // One thread: the same kernels and summation order in Node and in every browser (threads need COOP/COEP anyway).
  ort.env.wasm.numThreads = 1;
  const session = await ort.InferenceSession.create(bytes, { executionProviders: ["wasm"] });
  if (!session.inputNames.includes("pixels")) throw new Error(`model has no input "pixels" (${session.inputNames})`);
  if (!session.outputNames.includes("probabilities")) {
    throw new Error(`model has no output "probabilities" (${session.outputNames})`);
  }
  async function classifyRgb(rgb, width, height) {
    const pixels = new ort.Tensor("uint8", rgb, [1, height, width, 3]);
    const outputs = await session.run({ pixels }, ["probabilities"]);
    return summarize(outputs.probabilities.data, contract.class_names, topK);
  }
  return {
    contract,
    session,
    classifyRgb,
    classifyRgba: (rgba, width, height) =>
      classifyRgb(compositeOnBackground(rgba, width, height, contract.alpha_background), width, height),
  };
}
