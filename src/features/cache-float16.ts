/**
 * float32 ⇄ float16 over whole arrays, by bit manipulation (encode) and a 65,536-entry
 * table (decode): a feature vector is tens of thousands of numbers and a cache load is
 * millions, so neither direction may call Math per element.
 */

let decodeTable: Float32Array | undefined;

/** float16 bit pattern → float32 value, for every pattern. Built once, 256 KiB. */
function halfToFloatTable(): Float32Array {
  if (decodeTable) return decodeTable;
  const table = new Float32Array(65536);
  const bits = new Uint32Array(table.buffer);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const exp = (h >>> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0) {
      // Subnormal (or zero): mant × 2^-24, exact in float32.
      table[h] = (sign ? -mant : mant) * 5.960464477539063e-8;
    } else if (exp === 31) {
      bits[h] = sign | 0x7f800000 | (mant << 13);
    } else {
      bits[h] = sign | ((exp + 112) << 23) | (mant << 13);
    }
  }
  decodeTable = table;
  return table;
}

/**
 * Writes `src[i] * 2^-scaleExp` as float16 bits into `dst`. Rounds to nearest (ties away from
 * zero), so the relative error of a normal half is at most 2^-11 ≈ 4.9e-4.
 */
export function encodeFloat16(src: Float32Array, dst: Uint16Array, scaleExp = 0): void {
  let input = src;
  if (scaleExp !== 0) {
    input = new Float32Array(src.length);
    const factor = 2 ** -scaleExp;
    for (let i = 0; i < src.length; i++) input[i] = src[i] * factor;
  }
  const bits = new Uint32Array(input.buffer, input.byteOffset, input.length);
  for (let i = 0; i < bits.length; i++) {
    const f = bits[i];
    const sign = (f >>> 16) & 0x8000;
    const exp = (f >>> 23) & 0xff;
    const mant = f & 0x7fffff;
    let h: number;
    if (exp >= 143) {
      // |x| ≥ 65536, Inf or NaN. NaN keeps a mantissa bit so it stays NaN.
      h = sign | 0x7c00 | (exp === 255 && mant !== 0 ? 0x200 : 0);
    } else if (exp >= 113) {
      // Normal half. A rounding carry out of the mantissa correctly bumps the exponent
      // (up to Inf for values ≥ 65520).
      h = sign | ((((exp - 112) << 10) | (mant >>> 13)) + ((mant >>> 12) & 1));
    } else if (exp >= 102) {
      // Subnormal half: shift the implicit-1 mantissa into the 2^-24 grid.
      const full = mant | 0x800000;
      const shift = 126 - exp;
      h = sign | ((full >>> shift) + ((full >>> (shift - 1)) & 1));
    } else {
      h = sign;
    }
    dst[i] = h;
  }
}

/** Decodes float16 bits into `dst`, multiplying by 2^scaleExp. */
export function decodeFloat16(src: Uint16Array, dst: Float32Array, scaleExp = 0): void {
  const table = halfToFloatTable();
  const n = src.length;
  if (scaleExp === 0) {
    for (let i = 0; i < n; i++) dst[i] = table[src[i]];
  } else {
    const factor = 2 ** scaleExp;
    for (let i = 0; i < n; i++) dst[i] = table[src[i]] * factor;
  }
}

/**
 * The power of two that brings the largest |value| into [2^14, 2^15): far from float16's
 * overflow at 65504, and with ~29 binades of normal range below it, so neither large
 * activations (VGG flatten features reach the thousands) nor small ones lose precision.
 * 0 for an all-zero or non-finite vector (those are stored as they are).
 */
export function float16ScaleExp(values: Float32Array): number {
  let max = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v > max) max = v;
    else if (-v > max) max = -v;
  }
  if (max === 0 || !Number.isFinite(max)) return 0;
  return Math.floor(Math.log2(max)) - 14;
}
