// Incremental SHA-256 (FIPS 180-4) for the upload page.
//
// WebCrypto's digest() takes the whole input at once, which for a disk image means the whole
// file in memory. This one takes the input piece by piece: the state is eight words and one
// 64-byte block, whatever the length of the input, so the page can hash a file slice by slice
// (Sha256.hashBlob) with memory bounded by the slice size.
//
// Exposes `CdiSha256` on the global object: `new CdiSha256.Sha256()`, `.update(bytes)`,
// `.hex()`, and `CdiSha256.hashBlob(blob, options)`.

(function (global) {
  'use strict';

  // The first 32 bits of the fractional parts of the cube roots of the first 64 primes.
  const K = new Int32Array([
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
  ]);

  // The first 32 bits of the fractional parts of the square roots of the first 8 primes.
  const INITIAL = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
  ];

  class Sha256 {
    constructor() {
      this.state = new Int32Array(INITIAL);
      this.schedule = new Int32Array(64);
      // Bytes of an unfinished block, carried to the next update().
      this.pending = new Uint8Array(64);
      this.pendingLength = 0;
      // Total input length in bytes; exact up to 2^53 (8 PiB).
      this.length = 0;
      this.finished = null;
    }

    /** Adds `bytes` (a Uint8Array, ArrayBuffer or any ArrayBufferView) to the input. */
    update(bytes) {
      if (this.finished) {
        throw new Error('sha256: update() after the digest was taken');
      }
      const data = toBytes(bytes);
      let at = 0;
      const end = data.length;
      this.length += end;
      if (this.pendingLength > 0) {
        const take = Math.min(64 - this.pendingLength, end);
        this.pending.set(data.subarray(0, take), this.pendingLength);
        this.pendingLength += take;
        at = take;
        if (this.pendingLength < 64) {
          return this;
        }
        this.compress(this.pending, 0, 64);
        this.pendingLength = 0;
      }
      const whole = at + Math.floor((end - at) / 64) * 64;
      this.compress(data, at, whole);
      at = whole;
      if (at < end) {
        this.pending.set(data.subarray(at, end), 0);
        this.pendingLength = end - at;
      }
      return this;
    }

    /** The digest (32 bytes). Ends the input: later calls give the same bytes. */
    digest() {
      if (this.finished) {
        return this.finished.slice();
      }
      const bits = this.length * 8;
      // 0x80, zeros up to 56 mod 64, then the bit length as a 64-bit big-endian number.
      const padding = new Uint8Array(this.pendingLength < 56 ? 64 - this.pendingLength : 128 - this.pendingLength);
      padding[0] = 0x80;
      const high = Math.floor(bits / 0x100000000);
      const low = bits >>> 0;
      const n = padding.length;
      padding[n - 8] = high >>> 24;
      padding[n - 7] = high >>> 16;
      padding[n - 6] = high >>> 8;
      padding[n - 5] = high;
      padding[n - 4] = low >>> 24;
      padding[n - 3] = low >>> 16;
      padding[n - 2] = low >>> 8;
      padding[n - 1] = low;
      const length = this.length;
      this.update(padding);
      this.length = length;
      const out = new Uint8Array(32);
      for (let i = 0; i < 8; i++) {
        const word = this.state[i];
        out[i * 4] = word >>> 24;
        out[i * 4 + 1] = word >>> 16;
        out[i * 4 + 2] = word >>> 8;
        out[i * 4 + 3] = word;
      }
      this.finished = out;
      return out.slice();
    }

    /** The digest as lowercase hex. */
    hex() {
      return Array.from(this.digest(), (b) => b.toString(16).padStart(2, '0')).join('');
    }

    // Every whole 64-byte block of `data` from `at` to `end` into the state; the working
    // variables stay in locals across blocks.
    compress(data, at, end) {
      const w = this.schedule;
      const s = this.state;
      let s0 = s[0];
      let s1 = s[1];
      let s2 = s[2];
      let s3 = s[3];
      let s4 = s[4];
      let s5 = s[5];
      let s6 = s[6];
      let s7 = s[7];
      for (; at + 64 <= end; at += 64) {
        for (let i = 0; i < 16; i++) {
          const j = at + i * 4;
          w[i] = (data[j] << 24) | (data[j + 1] << 16) | (data[j + 2] << 8) | data[j + 3];
        }
        for (let i = 16; i < 64; i++) {
          const x = w[i - 15];
          const y = w[i - 2];
          const sigma0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
          const sigma1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
          w[i] = (w[i - 16] + sigma0 + w[i - 7] + sigma1) | 0;
        }
        let a = s0;
        let b = s1;
        let c = s2;
        let d = s3;
        let e = s4;
        let f = s5;
        let g = s6;
        let h = s7;
        for (let i = 0; i < 64; i++) {
          const sum1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
          const choose = g ^ (e & (f ^ g));
          const t1 = (h + sum1 + choose + K[i] + w[i]) | 0;
          const sum0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
          const majority = (a & b) | (c & (a | b));
          h = g;
          g = f;
          f = e;
          e = (d + t1) | 0;
          d = c;
          c = b;
          b = a;
          a = (t1 + sum0 + majority) | 0;
        }
        s0 = (s0 + a) | 0;
        s1 = (s1 + b) | 0;
        s2 = (s2 + c) | 0;
        s3 = (s3 + d) | 0;
        s4 = (s4 + e) | 0;
        s5 = (s5 + f) | 0;
        s6 = (s6 + g) | 0;
        s7 = (s7 + h) | 0;
      }
      s[0] = s0;
      s[1] = s1;
      s[2] = s2;
      s[3] = s3;
      s[4] = s4;
      s[5] = s5;
      s[6] = s6;
      s[7] = s7;
    }
  }

  function toBytes(bytes) {
    if (bytes instanceof Uint8Array) {
      return bytes;
    }
    if (bytes instanceof ArrayBuffer) {
      return new Uint8Array(bytes);
    }
    if (ArrayBuffer.isView(bytes)) {
      return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    }
    throw new TypeError('sha256: update() takes bytes');
  }

  /** How much of a file is read at once: memory use is about this, whatever the file's size. */
  const SLICE_BYTES = 4 * 1024 * 1024;

  /**
   * The SHA-256 of `blob` (a File or Blob) as lowercase hex, read one slice at a time.
   * Options: `onProgress(hashedBytes, totalBytes)`, `signal` (an AbortSignal: rejects with an
   * AbortError when aborted), `sliceBytes`.
   */
  async function hashBlob(blob, options = {}) {
    const sliceBytes = options.sliceBytes || SLICE_BYTES;
    const hasher = new Sha256();
    const total = blob.size;
    let offset = 0;
    while (offset < total) {
      if (options.signal && options.signal.aborted) {
        throw new DOMException('Hashing was stopped.', 'AbortError');
      }
      const end = Math.min(offset + sliceBytes, total);
      const buffer = await blob.slice(offset, end).arrayBuffer();
      hasher.update(buffer);
      offset = end;
      if (options.onProgress) {
        options.onProgress(offset, total);
      }
    }
    if (options.signal && options.signal.aborted) {
      throw new DOMException('Hashing was stopped.', 'AbortError');
    }
    return hasher.hex();
  }

  global.CdiSha256 = { Sha256, hashBlob, SLICE_BYTES };
})(typeof globalThis !== 'undefined' ? globalThis : this);
