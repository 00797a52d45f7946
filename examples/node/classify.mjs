#!/usr/bin/env node
// Classify image files with a pixel-form cifar-edge model (input "pixels": uint8 [N, H, W, 3]) in plain Node:
// onnxruntime-web's wasm backend runs the model, sharp (libvips, libjpeg-turbo) decodes each image at its natural
// size. The graph resizes and normalises; this script only decodes, composites alpha and reads the answer.
//
//   node classify.mjs MODEL.onnx IMAGE...
//
// One JSON line per image on stdout: {"path", "label", "probability", "top": [[label, p]...], "probabilities": [...]},
// or {"path", "error"} for a file that cannot be decoded (the others still run).
// Exit codes, as cifar-infer: 0 all classified; 1 some images failed; 2 bad command line or unusable model.

import { readFile } from "node:fs/promises";
import process from "node:process";

import * as ort from "onnxruntime-web";
import sharp from "sharp";

import { createClassifier } from "../common/classify.mjs";

// Pillow's Image.MAX_IMAGE_PIXELS: the Python runtime refuses more pixels than this as a decompression bomb.
const MAX_PIXELS = 89_478_485;
// Raster formats both sharp and Pillow decode (sharp would also render SVG, which the Python runtime refuses).
const FORMATS = new Set(["jpeg", "png", "webp", "gif", "tiff", "heif"]);

/**
 * Decode like the Python runtime (runtime/images.py): first frame, EXIF orientation applied, embedded ICC profiles
 * ignored (Pillow does not apply them to RGB images), every mode to 8-bit RGB plus straight alpha.
 * Returns {rgba, width, height}.
 */
async function decodeRgba(path) {
  const options = {
    autoOrient: true,
    ignoreIcc: true,
    failOn: "error", // truncated or corrupt data is an error, as in Pillow
    limitInputPixels: MAX_PIXELS,
  };
  const meta = await sharp(path, options).metadata();
  if (!FORMATS.has(meta.format)) throw new Error(`unsupported image format (${meta.format})`);
  if (meta.depth === "ushort" && meta.channels === 1) return decodeGrey16(path, options);
  if (meta.space === "cmyk" && !meta.hasProfile) return decodeCmyk(path, options);
  // CMYK with an embedded profile: the runtime converts with that profile (littlecms), and so does libvips here.
  if (meta.space === "cmyk") options.ignoreIcc = false;
  // 16-bit colour (and grey with alpha) keeps the high byte of each sample, as Pillow does.
  const { data, info } = await sharp(path, options)
    .toColourspace("srgb")
    .ensureAlpha()
    .raw({ depth: "uchar" })
    .toBuffer({ resolveWithObject: true });
  if (info.channels !== 4) throw new Error(`decoder gave ${info.channels} channels, expected RGBA`);
  return { rgba: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height };
}

// 16-bit greyscale: the Python runtime rescales 0..65535 to 0..255 with rounding (v / 257), not the high byte.
async function decodeGrey16(path, options) {
  const { data, info } = await sharp(path, options)
    .toColourspace("grey16")
    .raw({ depth: "ushort" })
    .toBuffer({ resolveWithObject: true });
  const samples = new Uint16Array(new Uint8Array(data).buffer); // a copy: Buffer offsets need not be 2-aligned
  const rgba = new Uint8Array(info.width * info.height * 4);
  for (let i = 0, s = 0; i < rgba.length; i += 4, s += info.channels) {
    const value = Math.round(samples[s] / 257); // never a tie: v / 257 is never k + 0.5 for an integer v
    rgba[i] = rgba[i + 1] = rgba[i + 2] = value;
    rgba[i + 3] = 255;
  }
  return { rgba, width: info.width, height: info.height };
}

// CMYK without a colour profile: Pillow's formula, r = (255 - c) * (255 - k) / 255 rounded as Pillow rounds
// (libvips would convert with a built-in CMYK profile instead).
async function decodeCmyk(path, options) {
  const { data, info } = await sharp(path, options)
    .pipelineColourspace("cmyk")
    .toColourspace("cmyk")
    .raw({ depth: "uchar" })
    .toBuffer({ resolveWithObject: true });
  if (info.channels !== 4) throw new Error(`decoder gave ${info.channels} CMYK channels, expected 4`);
  const rgba = new Uint8Array(info.width * info.height * 4);
  for (let i = 0; i < rgba.length; i += 4) {
    const white = 255 - data[i + 3];
    for (let c = 0; c < 3; c++) {
      const x = (255 - data[i + c]) * white + 128;
      rgba[i + c] = ((x >>> 8) + x) >>> 8;
    }
    rgba[i + 3] = 255;
  }
  return { rgba, width: info.width, height: info.height };
}

function oneLine(error) {
  const text = String(error?.message ?? error).split("\n").map((line) => line.trim()).find(Boolean) ?? "error";
  return text.length > 300 ? `${text.slice(0, 297)}...` : text;
}

async function main(argv) {
  if (argv.length < 2 || argv.includes("-h") || argv.includes("--help")) {
    process.stderr.write("usage: node classify.mjs MODEL.onnx IMAGE...\n");
    return argv.length < 2 ? 2 : 0;
  }
  const [modelPath, ...imagePaths] = argv;
  let classifier;
  try {
    classifier = await createClassifier(ort, await readFile(modelPath));
  } catch (error) {
    process.stderr.write(`error: ${modelPath}: ${oneLine(error)}\n`);
    return 2;
  }
  let failed = 0;
  for (const path of imagePaths) {
    let line;
    try {
      const { rgba, width, height } = await decodeRgba(path);
      line = { path, ...(await classifier.classifyRgba(rgba, width, height)) };
    } catch (error) {
      failed += 1;
      line = { path, error: `${path}: ${oneLine(error)}` };
    }
    process.stdout.write(`${JSON.stringify(line)}\n`);
  }
  return failed ? 1 : 0;
}

process.exitCode = await main(process.argv.slice(2));
