/*
 * flotilla.js: the flotilla wire protocol (PROTOCOL.md) for browsers, in plain JavaScript.
 *
 * No build step, no dependencies. Everything is on the `Flotilla` global:
 *
 *   Part 1  constants: frame types, error codes, limits, keep-alive intervals;
 *   Part 2  encoding: the frames a client sends (Hello, Ping, Pong, Error, Subscribe,
 *           Unsubscribe, Input), byte for byte as the Rust crate `flotilla-wire` writes them;
 *   Part 3  decoding: `Decoder` (bytes in any chunks in, whole frames out) and
 *           `decodeFrontendToClient` (a frame to a message object), with the Rust checks
 *           (minimal varints, flags, UTF-8, world ids, counts, no trailing bytes);
 *   Part 4  the world: `Replica` (snapshot + batches, epoch/seq rules of `flotilla-world`),
 *           `SnapshotAssembler` (multi-part snapshots) and the 64-bit world digest
 *           (`digestEntries`, PROTOCOL.md section 10);
 *   Part 5  the client's rules: `KeepAlive` (PROTOCOL.md section 7) and `Session` (token,
 *           subscriptions, one replica per world, resync on a gap, resubscribe after a
 *           game-server outage), mirroring crates/client/src/session.rs;
 *   Part 6  random numbers from `crypto.getRandomValues` (uniform, rejection sampling);
 *   Part 7  `Observer`: one WebSocket at a time to a front-end picked at random, hello /
 *           welcome / resume with the session token / resubscribe from the last position,
 *           keep-alive, and failover to another front-end (mirroring
 *           crates/client/src/machine.rs and the balancer's rounds and backoff);
 *   Part 8  the observer page (index.html's wiring: GET /frontends, the state panel, the
 *           canvas). It starts only on a page whose <body> has data-flotilla="observer".
 *
 * Parts 1 to 6 touch no browser API but TextEncoder/TextDecoder and crypto, so a test page
 * can load this file by file:// and call them without a server. Part 7 takes its
 * WebSocket constructor, clock and random source as options (defaults: the browser's).
 *
 * Integer conventions: u64 values (epochs, seqs, ping nonces) are BigInt; lengths and
 * counts are Numbers. Keys, values, tokens and payloads are Uint8Array; world ids and
 * texts are strings.
 */
(function (root) {
  "use strict";

  // ---------------------------------------------------------------------------------
  // Part 1: constants (crates/wire/src/lib.rs, frame.rs, error.rs)
  // ---------------------------------------------------------------------------------

  const PROTOCOL_VERSION = 1;
  const MAGIC = new Uint8Array([0x46, 0x4c, 0x54, 0x4c]); // "FLTL"
  const HEADER_LEN = 5;
  const DEFAULT_MAX_FRAME_LEN = 1 << 20;
  const HELLO_MAX_FRAME_LEN = 4 << 10;
  const CLIENT_MAX_FRAME_LEN = 64 << 10;
  const DEFAULT_MAX_SNAPSHOT_BYTES = 256 * 1024 * 1024;
  const SNAPSHOT_ENTRY_OVERHEAD_BYTES = 64;
  const MAX_WORLD_ID_LEN = 255;
  const U64_MAX = (1n << 64n) - 1n;

  // Keep-alive of a client towards its front-end (PROTOCOL.md section 7), in ms.
  const CLIENT_PING_INTERVAL_MS = 500; // probe after this long unheard
  const CLIENT_QUIET_PING_INTERVAL_MS = 20000; // ping after this long without sending (the front-end's kernel watches the connection)
  const CLIENT_IDLE_TIMEOUT_MS = 1500; // give up after this long unheard
  const HANDSHAKE_TIMEOUT_MS = 1500; // no Welcome within this: try another front-end

  /** Frame type codes: one code space for every link (PROTOCOL.md section 3). */
  const FrameType = Object.freeze({
    Hello: 0x01,
    Welcome: 0x02,
    Ping: 0x03,
    Pong: 0x04,
    Error: 0x05,
    Subscribe: 0x10,
    Unsubscribe: 0x11,
    Snapshot: 0x12,
    ChangeBatch: 0x13,
    Input: 0x14,
    Output: 0x15,
    Unsubscribed: 0x16,
    Join: 0x17,
    Joined: 0x18,
    Refused: 0x19,
    GameHello: 0x20,
    GameWelcome: 0x21,
    WorldAdded: 0x22,
    WorldRemoved: 0x23,
    SessionInput: 0x24,
    SessionOutput: 0x25,
    SessionOpened: 0x26,
    SessionClosed: 0x27,
    SessionMoved: 0x28,
    SessionHeld: 0x29,
  });

  /** The name of an assigned frame type code, or undefined. */
  const FRAME_TYPE_NAMES = new Map(Object.entries(FrameType).map(([name, code]) => [code, name]));

  /** The frame types a front-end may send to a client. */
  const FRONTEND_TO_CLIENT = new Set([
    FrameType.Welcome,
    FrameType.Ping,
    FrameType.Pong,
    FrameType.Error,
    FrameType.Snapshot,
    FrameType.ChangeBatch,
    FrameType.Output,
    FrameType.Unsubscribed,
    FrameType.Joined,
    FrameType.Refused,
  ]);

  /** Error codes of `Error` and `Unsubscribed` frames (PROTOCOL.md section 8). */
  const ErrorCode = Object.freeze({
    Malformed: 1,
    UnsupportedVersion: 2,
    UnexpectedFrame: 3,
    FrameTooLarge: 4,
    UnknownWorld: 5,
    Overloaded: 6,
    Timeout: 7,
    ShuttingDown: 8,
    Internal: 9,
    NotAllowed: 10,
    Unavailable: 11,
    SessionMoved: 12,
  });
  const ERROR_CODE_NAMES = new Map(Object.entries(ErrorCode).map(([name, code]) => [code, name]));

  /** `Malformed (1)`, `Other(77)`: an error code for humans. */
  function errorCodeName(code) {
    const name = ERROR_CODE_NAMES.get(code);
    return name ? `${name} (${code})` : `Other(${code})`;
  }

  /** Snapshot part tags (bit 0: first, bit 1: last). */
  const PART_NAMES = ["Middle", "First", "Last", "Whole"];
  /** Roles of join tokens, by their byte (0 observer, 1 player). */
  const ROLE_NAMES = ["Observer", "Player"];
  const PART_TAGS = { Middle: 0, First: 1, Last: 2, Whole: 3 };

  /** Bytes that cannot be decoded: `code` is the ErrorCode to send before closing. */
  class WireError extends Error {
    constructor(code, message) {
      super(message);
      this.name = "WireError";
      this.code = code;
    }
  }

  const malformed = (message) => new WireError(ErrorCode.Malformed, message);

  const textEncoder = new TextEncoder();
  // `fatal`: invalid UTF-8 is an error; `ignoreBOM`: a leading U+FEFF is kept, as in Rust.
  const textDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

  /** base64url (RFC 4648 section 5, padding optional) as bytes; throws on other text. */
  function fromBase64Url(text) {
    if (!/^[A-Za-z0-9_-]*={0,2}$/.test(text)) throw new Error("not base64url");
    const plain = text.replace(/=+$/, "").replace(/-/g, "+").replace(/_/g, "/");
    const padded = plain + "=".repeat((4 - (plain.length % 4)) % 4);
    const binary = root.atob(padded);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes;
  }

  /** Bytes as lowercase hex. */
  function toHex(bytes) {
    let out = "";
    for (let i = 0; i < bytes.length; i++) {
      out += (bytes[i] < 16 ? "0" : "") + bytes[i].toString(16);
    }
    return out;
  }

  /** Hex (any case, whitespace ignored) to bytes. */
  function fromHex(hex) {
    const clean = hex.replace(/\s+/g, "");
    if (clean.length % 2 !== 0 || /[^0-9a-fA-F]/.test(clean)) {
      throw new Error("not hex");
    }
    const out = new Uint8Array(clean.length / 2);
    for (let i = 0; i < out.length; i++) {
      out[i] = parseInt(clean.substr(i * 2, 2), 16);
    }
    return out;
  }

  /** Anything byte-like (Uint8Array, ArrayBuffer, typed array, array of numbers, string as
   *  UTF-8) as a Uint8Array. */
  function asBytes(data) {
    if (data instanceof Uint8Array) return data;
    if (data instanceof ArrayBuffer) return new Uint8Array(data);
    if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (typeof data === "string") return textEncoder.encode(data);
    if (Array.isArray(data)) return Uint8Array.from(data);
    throw new TypeError("expected bytes");
  }

  /** Bytes as a "binary string" (one char per byte, 0 to 255): a Map key that sorts like
   *  the bytes (unsigned, lexicographic, a proper prefix first). */
  function bytesToBinaryString(bytes) {
    let out = "";
    for (let i = 0; i < bytes.length; i += 8192) {
      out += String.fromCharCode.apply(null, bytes.subarray(i, i + 8192));
    }
    return out;
  }

  /** A u64 given as BigInt or a safe non-negative integer Number, checked, as BigInt. */
  function u64(value, what) {
    const big = typeof value === "bigint" ? value : Number.isSafeInteger(value) ? BigInt(value) : null;
    if (big === null || big < 0n || big > U64_MAX) {
      throw new RangeError(`${what || "value"} is not a u64: ${value}`);
    }
    return big;
  }

  // ---------------------------------------------------------------------------------
  // Part 2: encoding (crates/wire/src/body.rs and message.rs, ClientToFrontend)
  // ---------------------------------------------------------------------------------

  /** An appendable byte buffer with the field encoders of PROTOCOL.md section 1. */
  class Writer {
    constructor() {
      this.buf = new Uint8Array(64);
      this.len = 0;
    }
    reserve(n) {
      if (this.len + n <= this.buf.length) return;
      let size = this.buf.length * 2;
      while (size < this.len + n) size *= 2;
      const grown = new Uint8Array(size);
      grown.set(this.buf.subarray(0, this.len));
      this.buf = grown;
    }
    u8(value) {
      this.reserve(1);
      this.buf[this.len++] = value & 0xff;
    }
    raw(bytes) {
      bytes = asBytes(bytes);
      this.reserve(bytes.length);
      this.buf.set(bytes, this.len);
      this.len += bytes.length;
    }
    u32be(value) {
      this.reserve(4);
      new DataView(this.buf.buffer).setUint32(this.len, value >>> 0, false);
      this.len += 4;
    }
    /** 8 bytes big-endian (epochs, nonces). */
    u64be(value) {
      const big = u64(value);
      this.reserve(8);
      new DataView(this.buf.buffer).setBigUint64(this.len, big, false);
      this.len += 8;
    }
    /** Unsigned LEB128, minimal (as `put_varint`). */
    varint(value) {
      let big = u64(value, "varint");
      if (big <= BigInt(Number.MAX_SAFE_INTEGER)) {
        let n = Number(big);
        while (n >= 0x80) {
          this.u8((n % 0x80) | 0x80);
          n = Math.floor(n / 0x80);
        }
        this.u8(n);
        return;
      }
      while (big >= 0x80n) {
        this.u8(Number(big & 0x7fn) | 0x80);
        big >>= 7n;
      }
      this.u8(Number(big));
    }
    /** `bytes`: varint length, then the bytes. */
    bytes(bytes) {
      bytes = asBytes(bytes);
      this.varint(bytes.length);
      this.raw(bytes);
    }
    /** `text`: UTF-8 `bytes`. */
    text(string) {
      this.bytes(textEncoder.encode(String(string)));
    }
    /** `world`: `text` of 1 to 255 bytes. */
    world(world) {
      const bytes = textEncoder.encode(String(world));
      if (bytes.length < 1 || bytes.length > MAX_WORLD_ID_LEN) {
        throw new RangeError(`world id of ${bytes.length} bytes (must be 1..=255)`);
      }
      this.bytes(bytes);
    }
    finish() {
      return this.buf.slice(0, this.len);
    }
  }

  /** One whole frame: length, type, then the body `write(writer)` appends. */
  function encodeFrame(type, write) {
    const w = new Writer();
    w.u32be(0);
    w.u8(type);
    if (write) write(w);
    new DataView(w.buf.buffer).setUint32(0, w.len - 4, false);
    return w.finish();
  }

  function putCodeText(w, code, text) {
    if (!Number.isInteger(code) || code < 0 || code > 0xffff) {
      throw new RangeError(`error code ${code} is not a u16`);
    }
    w.varint(code);
    w.text(text);
  }

  /** Hello{magic, version, session token opt<bytes>, client name}. */
  function encodeHello({ version = PROTOCOL_VERSION, sessionToken = null, clientName = "" } = {}) {
    return encodeFrame(FrameType.Hello, (w) => {
      w.raw(MAGIC);
      w.varint(version);
      if (sessionToken === null || sessionToken === undefined) {
        w.u8(0);
      } else {
        w.u8(1);
        w.bytes(sessionToken);
      }
      w.text(clientName);
    });
  }

  /** Ping{nonce u64be}. */
  function encodePing(nonce) {
    return encodeFrame(FrameType.Ping, (w) => w.u64be(nonce));
  }

  /** Pong{nonce u64be}: the ping's nonce. */
  function encodePong(nonce) {
    return encodeFrame(FrameType.Pong, (w) => w.u64be(nonce));
  }

  /** Error{code varint u16, text}. */
  function encodeError(code, text) {
    return encodeFrame(FrameType.Error, (w) => putCodeText(w, code, text));
  }

  /** Subscribe{world, since opt<(epoch u64be, seq varint)>}; `since` is {epoch, seq} or null. */
  function encodeSubscribe(world, since = null) {
    return encodeFrame(FrameType.Subscribe, (w) => {
      w.world(world);
      if (since === null || since === undefined) {
        w.u8(0);
      } else {
        w.u8(1);
        w.u64be(since.epoch);
        w.varint(since.seq);
      }
    });
  }

  /** Unsubscribe{world}. */
  function encodeUnsubscribe(world) {
    return encodeFrame(FrameType.Unsubscribe, (w) => w.world(world));
  }

  /** Input{world, payload bytes}. */
  function encodeInput(world, payload) {
    return encodeFrame(FrameType.Input, (w) => {
      w.world(world);
      w.bytes(payload);
    });
  }

  /** Join{token bytes}: a join token (the operator's permission for one world and role). */
  function encodeJoin(token) {
    return encodeFrame(FrameType.Join, (w) => w.bytes(token));
  }

  /** Any client message object ({type: "Hello" | "Ping" | ..., ...fields}) as a frame. */
  function encodeClientMessage(message) {
    switch (message.type) {
      case "Hello":
        return encodeHello(message);
      case "Ping":
        return encodePing(message.nonce);
      case "Pong":
        return encodePong(message.nonce);
      case "Error":
        return encodeError(message.code, message.text);
      case "Subscribe":
        return encodeSubscribe(message.world, message.since);
      case "Unsubscribe":
        return encodeUnsubscribe(message.world);
      case "Input":
        return encodeInput(message.world, message.payload);
      case "Join":
        return encodeJoin(message.token);
      default:
        throw new TypeError(`not a client message: ${message.type}`);
    }
  }

  // ---------------------------------------------------------------------------------
  // Part 3: decoding (crates/wire/src/frame.rs Decoder and Reader, message.rs)
  // ---------------------------------------------------------------------------------

  /**
   * The incremental frame decoder of one connection: bytes in (in any chunks: the
   * concatenation of every binary WebSocket message is one stream), whole frames out.
   * A length of 0 or over the maximum, and an unassigned type byte, are reported as soon
   * as the header is in. After an error the decoder keeps throwing it.
   */
  class Decoder {
    constructor(maxFrameLen = DEFAULT_MAX_FRAME_LEN) {
      this.maxFrameLen = maxFrameLen;
      this.buf = new Uint8Array(0);
      this.start = 0; // first unread byte
      this.end = 0; // one past the last byte received
      this.poisoned = null;
    }

    /** Appends received bytes (Uint8Array, ArrayBuffer, ...). */
    feed(chunk) {
      const bytes = asBytes(chunk);
      if (bytes.length === 0) return;
      if (this.end + bytes.length > this.buf.length) {
        const pending = this.end - this.start;
        const needed = pending + bytes.length;
        if (needed <= this.buf.length && this.start > 0) {
          this.buf.copyWithin(0, this.start, this.end);
        } else {
          const grown = new Uint8Array(Math.max(needed, this.buf.length * 2, 4096));
          grown.set(this.buf.subarray(this.start, this.end));
          this.buf = grown;
        }
        this.start = 0;
        this.end = pending;
      }
      this.buf.set(bytes, this.end);
      this.end += bytes.length;
    }

    /** Bytes received and not yet returned as frames. */
    bufferedLen() {
      return this.end - this.start;
    }

    /**
     * The next whole frame as {type, bytes (the whole frame, a copy), body (a view of it)},
     * or null if more bytes are needed. Throws a WireError on a bad header.
     */
    nextFrame() {
      if (this.poisoned) throw this.poisoned;
      const available = this.end - this.start;
      if (available < 4) return null;
      const b = this.buf;
      const s = this.start;
      const len = ((b[s] << 24) >>> 0) + (b[s + 1] << 16) + (b[s + 2] << 8) + b[s + 3];
      if (len === 0) return this.poison(malformed("empty frame (length 0)"));
      if (len > this.maxFrameLen) {
        return this.poison(
          new WireError(ErrorCode.FrameTooLarge, `frame of ${len} bytes exceeds the maximum of ${this.maxFrameLen}`)
        );
      }
      if (available < HEADER_LEN) return null;
      const type = b[s + 4];
      if (!FRAME_TYPE_NAMES.has(type)) {
        return this.poison(malformed(`unknown frame type 0x${(type < 16 ? "0" : "") + type.toString(16)}`));
      }
      if (available < 4 + len) return null;
      const bytes = b.slice(s, s + 4 + len);
      this.start += 4 + len;
      if (this.start === this.end) {
        this.start = 0;
        this.end = 0;
      }
      return { type, bytes, body: bytes.subarray(HEADER_LEN) };
    }

    poison(error) {
      this.poisoned = error;
      throw error;
    }
  }

  /** Reads the fields of one frame body, with the checks of the Rust `Reader`. */
  class Reader {
    constructor(body, typeName) {
      this.buf = body;
      this.pos = 0;
      this.typeName = typeName;
    }
    left() {
      return this.buf.length - this.pos;
    }
    truncated(field) {
      return malformed(`${this.typeName} frame truncated in field \`${field}\``);
    }
    u8(field) {
      if (this.pos >= this.buf.length) throw this.truncated(field);
      return this.buf[this.pos++];
    }
    /** u64be as BigInt. */
    u64(field) {
      if (this.left() < 8) throw this.truncated(field);
      const b = this.buf;
      const p = this.pos;
      const hi = ((b[p] << 24) >>> 0) + (b[p + 1] << 16) + (b[p + 2] << 8) + b[p + 3];
      const lo = ((b[p + 4] << 24) >>> 0) + (b[p + 5] << 16) + (b[p + 6] << 8) + b[p + 7];
      this.pos += 8;
      return (BigInt(hi) << 32n) | BigInt(lo);
    }
    raw(len, field) {
      if (!(len <= this.left())) throw this.truncated(field);
      const out = this.buf.subarray(this.pos, this.pos + len);
      this.pos += len;
      return out;
    }
    /**
     * An unsigned LEB128 varint: at most 10 bytes, minimal, within 64 bits. Returns a
     * Number while the value is below 2^49 (7 groups) and `big` is false; a BigInt when
     * `big` is true; a value too large for a safe Number comes back as Infinity (callers
     * use Numbers only for lengths and counts, which then fail the bytes-left check).
     */
    varint(field, big = false) {
      let value = 0;
      let wide = null;
      for (let index = 0; index < 10; index++) {
        const byte = this.u8(field);
        const payload = byte & 0x7f;
        if (index === 9 && byte > 1) throw malformed(`bad varint in field \`${field}\``);
        if (index < 7 && wide === null) {
          value += payload * 2 ** (7 * index);
        } else {
          if (wide === null) wide = BigInt(value);
          wide |= BigInt(payload) << BigInt(7 * index);
        }
        if ((byte & 0x80) === 0) {
          if (byte === 0 && index > 0) throw malformed(`bad varint in field \`${field}\``);
          if (big) return wide === null ? BigInt(value) : wide;
          if (wide === null) return value;
          return wide <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(wide) : Infinity;
        }
      }
      throw malformed(`bad varint in field \`${field}\``);
    }
    varintU32(field) {
      const value = this.varint(field);
      if (value > 0xffffffff) throw malformed(`value out of range in field \`${field}\``);
      return value;
    }
    varintU16(field) {
      const value = this.varint(field);
      if (value > 0xffff) throw malformed(`value out of range in field \`${field}\``);
      return value;
    }
    /** A count of items each at least `minItemLen` bytes, checked against the bytes left. */
    count(minItemLen, field) {
      const count = this.varint(field);
      if (count * minItemLen > this.left()) throw this.truncated(field);
      return count;
    }
    /** `bytes` as a view of the frame (copy it to keep it). */
    bytes(field) {
      const len = this.varint(field);
      return this.raw(len, field);
    }
    text(field) {
      const bytes = this.bytes(field);
      try {
        return textDecoder.decode(bytes);
      } catch (_) {
        throw malformed(`invalid UTF-8 in field \`${field}\``);
      }
    }
    flag(field) {
      const tag = this.u8(field);
      if (tag > 1) throw malformed(`bad tag ${tag} in field \`${field}\``);
      return tag === 1;
    }
    world() {
      const bytes = this.bytes("world");
      if (bytes.length < 1 || bytes.length > MAX_WORLD_ID_LEN) {
        throw malformed(`world id of ${bytes.length} bytes (must be 1..=255)`);
      }
      try {
        return textDecoder.decode(bytes);
      } catch (_) {
        throw malformed("invalid UTF-8 in field `world`");
      }
    }
    finish() {
      if (this.pos !== this.buf.length) {
        throw malformed(`${this.typeName} frame has ${this.buf.length - this.pos} trailing bytes`);
      }
    }
  }

  /**
   * A frame from a front-end as a message object, or a WireError: UnexpectedFrame (3) for a
   * frame type a front-end may not send, Malformed (1) for a bad body. Keys, values,
   * tokens and payloads are views of the frame's own copy.
   *
   *   {type: "Welcome", version, sessionToken, resumed, serverId}
   *   {type: "Ping" | "Pong", nonce}
   *   {type: "Snapshot", world, part: "Whole" | "First" | "Middle" | "Last",
   *    snapshot: {epoch, seq, entries: [[key, value], ...]}}
   *   {type: "ChangeBatch", world, batch: {epoch, seq, upserts: [[key, value], ...], removes: [key, ...]}}
   *   {type: "Output", world, payload}
   *   {type: "Unsubscribed", world, code, text}
   *   {type: "Joined", world, role: "Observer" | "Player", expiresUnix}
   *   {type: "Refused", request (a frame type name), world (or null), code, text}
   *   {type: "Error", code, text}
   */
  function decodeFrontendToClient(frame) {
    const typeName = FRAME_TYPE_NAMES.get(frame.type);
    if (!FRONTEND_TO_CLIENT.has(frame.type)) {
      throw new WireError(
        ErrorCode.UnexpectedFrame,
        `frame type ${typeName || frame.type} is not allowed from FrontendToClient`
      );
    }
    const r = new Reader(frame.body, typeName);
    let message;
    switch (frame.type) {
      case FrameType.Welcome:
        message = {
          type: "Welcome",
          version: r.varintU32("version"),
          sessionToken: r.bytes("session_token"),
          resumed: r.flag("resumed"),
          serverId: r.text("server_id"),
        };
        break;
      case FrameType.Ping:
      case FrameType.Pong:
        message = { type: typeName, nonce: r.u64("nonce") };
        break;
      case FrameType.Snapshot: {
        const world = r.world();
        const epoch = r.u64("epoch");
        const seq = r.varint("seq", true);
        const tag = r.u8("part");
        if (tag > 3) throw malformed(`bad tag ${tag} in field \`part\``);
        const count = r.count(2, "entries");
        const entries = new Array(count);
        for (let i = 0; i < count; i++) {
          const key = r.bytes("entry.key");
          entries[i] = [key, r.bytes("entry.value")];
        }
        message = { type: "Snapshot", world, part: PART_NAMES[tag], snapshot: { epoch, seq, entries } };
        break;
      }
      case FrameType.ChangeBatch: {
        const world = r.world();
        const epoch = r.u64("epoch");
        const seq = r.varint("seq", true);
        const upsertCount = r.count(2, "upserts");
        const upserts = new Array(upsertCount);
        for (let i = 0; i < upsertCount; i++) {
          const key = r.bytes("upsert.key");
          upserts[i] = [key, r.bytes("upsert.value")];
        }
        const removeCount = r.count(1, "removes");
        const removes = new Array(removeCount);
        for (let i = 0; i < removeCount; i++) removes[i] = r.bytes("remove.key");
        message = { type: "ChangeBatch", world, batch: { epoch, seq, upserts, removes } };
        break;
      }
      case FrameType.Output:
        message = { type: "Output", world: r.world(), payload: r.bytes("payload") };
        break;
      case FrameType.Unsubscribed: {
        const world = r.world();
        message = { type: "Unsubscribed", world, code: r.varintU16("code"), text: r.text("text") };
        break;
      }
      case FrameType.Joined: {
        const world = r.world();
        const tag = r.u8("role");
        if (tag > 1) throw malformed(`bad tag ${tag} in field \`role\``);
        message = { type: "Joined", world, role: ROLE_NAMES[tag], expiresUnix: r.u64("expires") };
        break;
      }
      case FrameType.Refused: {
        const tag = r.u8("request");
        if (tag !== FrameType.Join && tag !== FrameType.Input) throw malformed(`bad tag ${tag} in field \`request\``);
        const world = r.flag("world") ? r.world() : null;
        const code = r.varintU16("code");
        message = { type: "Refused", request: FRAME_TYPE_NAMES.get(tag), world, code, text: r.text("text") };
        break;
      }
      case FrameType.Error:
        message = { type: "Error", code: r.varintU16("code"), text: r.text("text") };
        break;
    }
    r.finish();
    return message;
  }

  // ---------------------------------------------------------------------------------
  // Part 4: the world (crates/world/src: replica.rs, digest.rs; crates/wire/src/body.rs
  // SnapshotAssembler)
  // ---------------------------------------------------------------------------------

  /**
   * 64-bit FNV-1a, computed on four 16-bit limbs (exact, and much faster than a BigInt
   * multiplication per byte). The prime is 2^40 + 0x1b3, so h * prime = h * 0x1b3 +
   * (h << 40) modulo 2^64.
   */
  class Fnv1a64 {
    constructor() {
      // Offset basis 0xcbf29ce484222325, least significant limb first.
      this.h0 = 0x2325;
      this.h1 = 0x8422;
      this.h2 = 0x9ce4;
      this.h3 = 0xcbf2;
    }
    write(bytes) {
      let h0 = this.h0;
      let h1 = this.h1;
      let h2 = this.h2;
      let h3 = this.h3;
      for (let i = 0; i < bytes.length; i++) {
        h0 ^= bytes[i];
        const t0 = h0 * 0x1b3;
        let t1 = h1 * 0x1b3;
        let t2 = h2 * 0x1b3 + (h0 << 8);
        let t3 = h3 * 0x1b3 + (h1 << 8);
        t1 += t0 >>> 16;
        h0 = t0 & 0xffff;
        t2 += t1 >>> 16;
        h1 = t1 & 0xffff;
        t3 += t2 >>> 16;
        h2 = t2 & 0xffff;
        h3 = t3 & 0xffff;
      }
      this.h0 = h0;
      this.h1 = h1;
      this.h2 = h2;
      this.h3 = h3;
    }
    /** 8 bytes little-endian (a BigInt, or a safe integer Number). */
    writeU64(value) {
      const big = u64(value);
      const bytes = new Uint8Array(8);
      new DataView(bytes.buffer).setBigUint64(0, big, true);
      this.write(bytes);
    }
    /** The digest as a BigInt. */
    value() {
      return (BigInt(this.h3) << 48n) | (BigInt(this.h2) << 32n) | (BigInt(this.h1) << 16n) | BigInt(this.h0);
    }
  }

  const DIGEST_PREFIX = textEncoder.encode("flotilla-world-v1");

  /**
   * The world digest of PROTOCOL.md section 10 (`digest_entries`): FNV-1a 64 over
   * "flotilla-world-v1", epoch and seq (u64 LE), each entry's key length, key, value
   * length, value, then the count. `entries` must be sorted by key (bytewise) with unique
   * keys, as [key, value] pairs of Uint8Array. Returns a BigInt.
   */
  function digestEntries(epoch, seq, entries) {
    const h = new Fnv1a64();
    h.write(DIGEST_PREFIX);
    h.writeU64(epoch);
    h.writeU64(seq);
    let count = 0;
    for (const [key, value] of entries) {
      h.writeU64(key.length);
      h.write(key);
      h.writeU64(value.length);
      h.write(value);
      count++;
    }
    h.writeU64(count);
    return h.value();
  }

  /** The same digest with one BigInt multiplication per byte: the plain reference
   *  implementation (slow; for cross-checking `digestEntries`). */
  function digestEntriesBigInt(epoch, seq, entries) {
    const prime = 0x100000001b3n;
    let h = 0xcbf29ce484222325n;
    const write = (bytes) => {
      for (let i = 0; i < bytes.length; i++) {
        h = BigInt.asUintN(64, (h ^ BigInt(bytes[i])) * prime);
      }
    };
    const writeU64 = (value) => {
      let v = u64(value);
      for (let i = 0; i < 8; i++) {
        write([Number(v & 0xffn)]);
        v >>= 8n;
      }
    };
    write(DIGEST_PREFIX);
    writeU64(epoch);
    writeU64(seq);
    let count = 0;
    for (const [key, value] of entries) {
      writeU64(key.length);
      write(key);
      writeU64(value.length);
      write(value);
      count++;
    }
    writeU64(count);
    return h;
  }

  /** A digest as 16 lowercase hex digits, zero-padded (how `flotilla watch` prints it). */
  function digestHex(digest) {
    return BigInt.asUintN(64, BigInt(digest)).toString(16).padStart(16, "0");
  }

  /** Why a replica refused a batch (the caller resyncs it from a snapshot). */
  class WorldError extends Error {
    constructor(kind, message) {
      super(message);
      this.name = "WorldError";
      this.kind = kind; // "NotSynced" | "EpochMismatch" | "Gap"
    }
  }

  /**
   * A follower copy of one world, as crates/world/src/replica.rs: a snapshot replaces
   * everything (any epoch, any seq); a batch applies only if it is the next one of the
   * same epoch; a batch at or below the seq is ignored.
   */
  class Replica {
    constructor() {
      this.synced = false;
      this.epoch = 0n;
      this.seq = 0n;
      /** binary-string key -> [key bytes, value bytes] (own copies). */
      this.map = new Map();
      /** Bumped on every change (for cheap "did it change?" checks). */
      this.version = 0;
      this.sortedCache = null;
    }

    isSynced() {
      return this.synced;
    }

    /** {epoch, seq} (BigInts), or null before the first snapshot. */
    position() {
      return this.synced ? { epoch: this.epoch, seq: this.seq } : null;
    }

    get size() {
      return this.map.size;
    }

    /** The value of a key (Uint8Array or string), or undefined. */
    get(key) {
      const name = typeof key === "string" ? bytesToBinaryString(textEncoder.encode(key)) : bytesToBinaryString(key);
      const entry = this.map.get(name);
      return entry ? entry[1] : undefined;
    }

    upsert(key, value) {
      this.map.set(bytesToBinaryString(key), [key.slice(), value.slice()]);
    }

    changed() {
      this.version++;
      this.sortedCache = null;
    }

    /** Replaces the whole state with {epoch, seq, entries}; a repeated key: last wins. */
    applySnapshot(snapshot) {
      this.map.clear();
      for (const [key, value] of snapshot.entries) this.upsert(key, value);
      this.epoch = u64(snapshot.epoch, "epoch");
      this.seq = u64(snapshot.seq, "seq");
      this.synced = true;
      this.changed();
    }

    /**
     * Applies the next batch {epoch, seq, upserts, removes}: removes, then upserts.
     * Returns "Applied", or "AlreadyHad" for a batch at or below the seq; throws a
     * WorldError (NotSynced, EpochMismatch, Gap) leaving the replica unchanged.
     */
    applyBatch(batch) {
      const epoch = u64(batch.epoch, "epoch");
      const seq = u64(batch.seq, "seq");
      if (!this.synced) {
        throw new WorldError("NotSynced", `batch ${epoch}/${seq} before any snapshot`);
      }
      if (epoch !== this.epoch) {
        throw new WorldError("EpochMismatch", `batch of epoch ${epoch}, replica at epoch ${this.epoch}`);
      }
      if (seq <= this.seq) return "AlreadyHad";
      const expected = this.seq + 1n;
      if (seq !== expected) {
        throw new WorldError("Gap", `gap: expected seq ${expected}, got ${seq}`);
      }
      for (const key of batch.removes) this.map.delete(bytesToBinaryString(key));
      for (const [key, value] of batch.upserts) this.upsert(key, value);
      this.seq = seq;
      this.changed();
      return "Applied";
    }

    /** The entries sorted by key (bytewise), as [key, value] pairs. */
    sortedEntries() {
      if (this.sortedCache === null) {
        // Binary strings compare by UTF-16 code unit, one per byte: bytewise order.
        const names = Array.from(this.map.keys()).sort();
        this.sortedCache = names.map((name) => this.map.get(name));
      }
      return this.sortedCache;
    }

    /** The digest (BigInt) of (epoch, seq, sorted entries), equal to the Rust replica's. */
    digest() {
      return digestEntries(this.epoch, this.seq, this.sortedEntries());
    }

    /** The digest as 16 hex digits, or "" before the first snapshot. */
    digestHex() {
      return this.synced ? digestHex(this.digest()) : "";
    }
  }

  function entryBytes(entries) {
    let sum = 0;
    for (const [key, value] of entries) sum += key.length + value.length + SNAPSHOT_ENTRY_OVERHEAD_BYTES;
    return sum;
  }

  /**
   * Puts multi-part snapshots of one world back together, tolerantly (`offer` in
   * crates/wire/src/body.rs): a First or Whole part starts over; a Middle or Last part
   * without a matching First (or of another position) is "Stale" and dropped.
   */
  class SnapshotAssembler {
    constructor(maxBytes = DEFAULT_MAX_SNAPSHOT_BYTES) {
      this.maxBytes = maxBytes;
      this.partial = null;
      this.partialBytes = 0;
    }
    reset() {
      this.partial = null;
      this.partialBytes = 0;
    }
    isAssembling() {
      return this.partial !== null;
    }
    checkLimit(bytes) {
      if (bytes > this.maxBytes) {
        throw new WireError(ErrorCode.Overloaded, `snapshot of more than ${this.maxBytes} bytes (at least ${bytes})`);
      }
    }
    /** Returns {outcome: "Complete", snapshot} | {outcome: "Incomplete"} | {outcome: "Stale"}. */
    offer(part, snapshot) {
      const bytes = entryBytes(snapshot.entries);
      switch (part) {
        case "Whole":
          this.reset();
          this.checkLimit(bytes);
          return { outcome: "Complete", snapshot };
        case "First":
          this.reset();
          this.checkLimit(bytes);
          this.partialBytes = bytes;
          this.partial = { epoch: snapshot.epoch, seq: snapshot.seq, entries: snapshot.entries.slice() };
          return { outcome: "Incomplete" };
        case "Middle":
        case "Last": {
          const partial = this.partial;
          if (partial === null) return { outcome: "Stale" };
          if (partial.epoch !== snapshot.epoch || partial.seq !== snapshot.seq) {
            this.reset();
            return { outcome: "Stale" };
          }
          const total = this.partialBytes + bytes;
          if (total > this.maxBytes) {
            this.reset();
            this.checkLimit(total);
          }
          this.partialBytes = total;
          for (const entry of snapshot.entries) partial.entries.push(entry);
          if (part === "Last") {
            this.reset();
            return { outcome: "Complete", snapshot: partial };
          }
          return { outcome: "Incomplete" };
        }
        default:
          throw malformed(`bad snapshot part ${part}`);
      }
    }
  }

  // ---------------------------------------------------------------------------------
  // Part 5: the client's rules: keep-alive (crates/conn/src/keepalive.rs) and the session
  // (crates/client/src/session.rs)
  // ---------------------------------------------------------------------------------

  /**
   * The keep-alive of one connection (times in ms, any origin): ping after `quietMs`
   * without sending; probe after `probeMs` unheard unless a ping is out since the last
   * frame received; close after `closeAfterMs` unheard (any whole frame counts).
   */
  class KeepAlive {
    constructor(config, now) {
      this.quietMs = config.quietMs;
      this.probeMs = config.probeMs;
      this.closeAfterMs = config.closeAfterMs;
      this.lastReceived = now;
      this.lastSent = now;
      this.pingOut = false;
      this.pingsSent = 0;
    }
    onReceived(now) {
      this.lastReceived = Math.max(this.lastReceived, now);
      this.pingOut = false;
    }
    onSent(now) {
      this.lastSent = Math.max(this.lastSent, now);
    }
    silenceDeadline() {
      return this.lastReceived + this.closeAfterMs;
    }
    pingDeadline() {
      if (!(this.quietMs > 0)) return null;
      const quiet = this.lastSent + this.quietMs;
      if (this.probeMs > 0 && !this.pingOut) return Math.min(quiet, this.lastReceived + this.probeMs);
      return quiet;
    }
    /** The next instant `poll` has something to do. */
    deadline() {
      const ping = this.pingDeadline();
      const silence = this.silenceDeadline();
      return ping === null ? silence : Math.min(ping, silence);
    }
    /** {action: "close", silentForMs} first, then {action: "ping", nonce (BigInt)}, or null. */
    poll(now) {
      if (this.silenceDeadline() <= now) return { action: "close", silentForMs: now - this.lastReceived };
      const ping = this.pingDeadline();
      if (ping !== null && ping <= now) {
        this.pingsSent++;
        this.lastSent = now;
        this.pingOut = true;
        return { action: "ping", nonce: BigInt(this.pingsSent) };
      }
      return null;
    }
  }

  /** `nothing received for 1.5 s`: the text of the Error{Timeout} sent on silence. */
  function silenceText(silentForMs) {
    return `nothing received for ${(silentForMs / 1000).toFixed(1)} s`;
  }

  /** A condition that ends the connection (crates/client/src/session.rs `Fatal`). */
  class Fatal extends Error {
    constructor(kind, fields) {
      super(fields.message || fields.text || kind);
      this.name = "Fatal";
      this.kind = kind; // "Peer" (an Error frame) | "Protocol" (a WireError) | "Unexpected"
      Object.assign(this, fields);
    }
  }

  /** Why a handshake failed (crates/client/src/session.rs `HandshakeError`). */
  class HandshakeError extends Error {
    constructor(kind, fields) {
      super(fields.message || kind);
      this.name = "HandshakeError";
      this.kind = kind; // "Refused" | "UnsupportedVersion" | "Unexpected"
      Object.assign(this, fields);
    }
  }

  /** One subscribed world (session.rs `WorldView`). */
  class WorldView {
    constructor() {
      this.replica = new Replica();
      this.assembler = new SnapshotAssembler();
      this.position = null;
      this.awaitingSnapshot = false;
      this.waiting = false;
      this.resubscribeAttempts = 0;
      this.resubscribeAt = null;
      this.counters = { snapshots: 0, batches: 0, applied: 0, resyncs: 0 };
    }
    /** The Subscribe that (re)starts this view: `since` defaults to the last position. */
    subscribeMessage(world, since) {
      this.assembler.reset();
      this.resubscribeAt = null;
      const from = since || this.position;
      this.awaitingSnapshot = from === null;
      return { type: "Subscribe", world, since: from };
    }
    onData() {
      if (this.resubscribeAt === null) {
        this.waiting = false;
        this.resubscribeAttempts = 0;
      }
    }
  }

  /**
   * The part of a client that survives its connections (session.rs `ClientSession`): the
   * session token, the subscribed worlds and one replica each. Frames in, events and
   * replies out; time (`now`, ms) and randomness are passed in.
   */
  class Session {
    constructor({ clientName = "flotilla-web", token = null, joinTokens = [], resubscribe = {}, random = null } = {}) {
      this.clientName = clientName;
      this.token = token;
      // Join tokens (Uint8Array each): presented on every connection, before its
      // Subscribes (a grant belongs to the connection, not the session).
      this.joinTokens = Array.from(joinTokens);
      this.joins = new Map(); // world -> the last Joined (role, expiresUnix)
      this.worlds = new Map();
      this.resubscribe = Object.assign({ enabled: true, baseMs: 100, capMs: 2000 }, resubscribe);
      this.random = random || cryptoRandom;
    }

    /** The Hello to open a connection with (carries the token if there is one). */
    hello() {
      return { type: "Hello", version: PROTOCOL_VERSION, sessionToken: this.token, clientName: this.clientName };
    }

    /** The front-end's first frame: a Welcome keeps its token; else a HandshakeError. */
    onHandshake(message) {
      if (message.type === "Welcome") {
        if (message.version !== PROTOCOL_VERSION) {
          throw new HandshakeError("UnsupportedVersion", {
            version: message.version,
            message: `protocol version ${message.version} is not supported`,
          });
        }
        this.token = message.sessionToken.slice();
        return { sessionToken: this.token, resumed: message.resumed, serverId: message.serverId };
      }
      if (message.type === "Error") {
        throw new HandshakeError("Refused", {
          code: message.code,
          text: message.text,
          message: `refused: ${errorCodeName(message.code)}: ${message.text}`,
        });
      }
      throw new HandshakeError("Unexpected", { frameType: message.type, message: `${message.type} before Welcome` });
    }

    /** The session id: the token's first 8 bytes, big-endian (a BigInt), or null. */
    sessionId() {
      if (!this.token || this.token.length < 8) return null;
      return new DataView(this.token.buffer, this.token.byteOffset, 8).getBigUint64(0, false);
    }

    /** Starts watching `world`; returns the Subscribe to send (since: the last position). */
    subscribe(world, since = null) {
      let view = this.worlds.get(world);
      if (!view) {
        view = new WorldView();
        this.worlds.set(world, view);
      }
      return view.subscribeMessage(world, since);
    }

    /** Stops watching `world`; returns the Unsubscribe to send, or null. */
    unsubscribe(world) {
      if (!this.worlds.delete(world)) return null;
      return { type: "Unsubscribe", world };
    }

    /** One Join per join token (after a Welcome, before the Subscribes). */
    joinMessages() {
      return this.joinTokens.map((token) => ({ type: "Join", token }));
    }

    /** One Subscribe per watched world, from its last position (after a Welcome). */
    resumeSubscriptions() {
      return Array.from(this.worlds.entries(), ([world, view]) => view.subscribeMessage(world, view.position));
    }

    view(world) {
      return this.worlds.get(world) || null;
    }

    replica(world) {
      const view = this.worlds.get(world);
      return view ? view.replica : null;
    }

    position(world) {
      const view = this.worlds.get(world);
      return view ? view.position : null;
    }

    isWaiting(world) {
      const view = this.worlds.get(world);
      return Boolean(view && view.waiting);
    }

    /** When the earliest scheduled resubscribe is due (ms), or null. */
    nextResubscribeAt() {
      let at = null;
      for (const view of this.worlds.values()) {
        if (view.resubscribeAt !== null && (at === null || view.resubscribeAt < at)) at = view.resubscribeAt;
      }
      return at;
    }

    /** The Subscribe{since: last position} of every world whose resubscribe is due. */
    dueResubscribes(now) {
      const out = [];
      for (const [world, view] of this.worlds) {
        if (view.resubscribeAt !== null && view.resubscribeAt <= now) out.push(view.subscribeMessage(world, null));
      }
      return out;
    }

    /**
     * Handles one message after the handshake. Returns {events, replies}; throws a Fatal
     * for an Error frame or a second Welcome, or a WireError (Overloaded) for a snapshot
     * past the size limit.
     */
    handle(message, now) {
      const handled = { events: [], replies: [] };
      switch (message.type) {
        case "Welcome":
          throw new Fatal("Unexpected", { message: "second Welcome", code: ErrorCode.UnexpectedFrame });
        case "Ping":
          handled.replies.push({ type: "Pong", nonce: message.nonce });
          break;
        case "Pong":
          break;
        case "Snapshot": {
          const view = this.worlds.get(message.world);
          if (!view) break; // a late frame of a world no longer watched
          view.onData();
          let offered;
          try {
            offered = view.assembler.offer(message.part, message.snapshot);
          } catch (error) {
            throw new Fatal("Protocol", { error, code: error.code, message: error.message });
          }
          if (offered.outcome === "Complete") {
            view.replica.applySnapshot(offered.snapshot);
            view.position = view.replica.position();
            view.awaitingSnapshot = false;
            view.counters.snapshots++;
            handled.events.push({ type: "SnapshotApplied", world: message.world, position: view.position });
          }
          break;
        }
        case "ChangeBatch": {
          const view = this.worlds.get(message.world);
          if (!view) break;
          view.onData();
          view.counters.batches++;
          if (view.awaitingSnapshot) break; // resyncing: wait for the snapshot
          let outcome;
          try {
            outcome = view.replica.applyBatch(message.batch);
          } catch (error) {
            if (!(error instanceof WorldError)) throw error;
            // Lost track (gap, other epoch): ask for a fresh snapshot.
            view.counters.resyncs++;
            view.awaitingSnapshot = true;
            view.assembler.reset();
            handled.replies.push({ type: "Subscribe", world: message.world, since: null });
            handled.events.push({ type: "Resyncing", world: message.world, reason: error.message });
            break;
          }
          if (outcome === "Applied") {
            view.counters.applied++;
            view.position = view.replica.position();
            handled.events.push({ type: "BatchApplied", world: message.world, position: view.position });
          }
          break;
        }
        case "Output":
          handled.events.push({ type: "Output", world: message.world, payload: message.payload });
          break;
        case "Joined":
          this.joins.set(message.world, { role: message.role, expiresUnix: message.expiresUnix });
          handled.events.push({ type: "Joined", world: message.world, role: message.role, expiresUnix: message.expiresUnix });
          break;
        case "Refused":
          handled.events.push({
            type: "Refused",
            request: message.request,
            world: message.world,
            code: message.code,
            text: message.text,
          });
          break;
        case "Unsubscribed": {
          const view = this.worlds.get(message.world);
          const policy = this.resubscribe;
          const again =
            view &&
            policy.enabled &&
            (message.code === ErrorCode.Unavailable ||
              (message.code === ErrorCode.UnknownWorld && (view.waiting || view.position !== null)));
          if (again) {
            // The game server is away: keep the replica, resubscribe after a full-jitter
            // backoff from [0, min(cap, base * 2^attempts)].
            const ceiling = Math.min(policy.capMs, policy.baseMs * 2 ** Math.min(view.resubscribeAttempts, 30));
            const delay = this.random.float() * ceiling;
            view.resubscribeAttempts++;
            view.waiting = true;
            view.resubscribeAt = now + delay;
            handled.events.push({
              type: "Resubscribing",
              world: message.world,
              code: message.code,
              attempt: view.resubscribeAttempts,
              delayMs: delay,
            });
          } else {
            this.worlds.delete(message.world);
            handled.events.push({ type: "Unsubscribed", world: message.world, code: message.code, text: message.text });
          }
          break;
        }
        case "Error":
          throw new Fatal("Peer", { code: message.code, text: message.text });
        default:
          throw new Fatal("Unexpected", { message: `unexpected ${message.type}`, code: ErrorCode.UnexpectedFrame });
      }
      return handled;
    }
  }

  // ---------------------------------------------------------------------------------
  // Part 6: random numbers (crypto.getRandomValues)
  // ---------------------------------------------------------------------------------

  /** A uniform index in [0, n) from 32-bit draws `nextU32()`, by rejection sampling: draws
   *  at or above the largest multiple of n below 2^32 are drawn again (no modulo bias). */
  function randomIndexFrom(n, nextU32) {
    if (!Number.isInteger(n) || n < 1 || n > 0x100000000) throw new RangeError(`cannot pick among ${n}`);
    if (n === 1) return 0;
    const limit = Math.floor(0x100000000 / n) * n;
    for (;;) {
      const x = nextU32();
      if (x < limit) return x % n;
    }
  }

  function cryptoU32() {
    const word = new Uint32Array(1);
    root.crypto.getRandomValues(word);
    return word[0];
  }

  /** The default random source: crypto.getRandomValues. */
  const cryptoRandom = {
    /** A uniform integer in [0, n). */
    index(n) {
      return randomIndexFrom(n, cryptoU32);
    },
    /** A uniform float in [0, 1) with 53 random bits. */
    float() {
      return (cryptoU32() * 0x200000 + (cryptoU32() >>> 11)) / 2 ** 53;
    },
  };

  // ---------------------------------------------------------------------------------
  // Part 7: the observer: one WebSocket at a time, random balancing, failover, resume
  // ---------------------------------------------------------------------------------

  const OBSERVER_DEFAULTS = {
    clientName: "flotilla-web",
    connectTimeoutMs: 5000, // a WebSocket not open within this is a failed attempt
    handshakeTimeoutMs: HANDSHAKE_TIMEOUT_MS,
    probeMs: CLIENT_PING_INTERVAL_MS,
    quietPingMs: CLIENT_QUIET_PING_INTERVAL_MS,
    idleTimeoutMs: CLIENT_IDLE_TIMEOUT_MS,
    maxFrameLen: DEFAULT_MAX_FRAME_LEN,
    // After every front-end failed in a round: wait backoffMinMs + a uniform draw from
    // [0, min(backoffCapMs, backoffJitterMs * 2^failed rounds before)].
    backoffMinMs: 100,
    backoffJitterMs: 400,
    backoffCapMs: 2000,
    // A connection up this long counts as stable: losing it starts a fresh round.
    stableAfterMs: 5000,
    // The front-end ended the watch for good (UnknownWorld, NotAllowed...): subscribe
    // again after this long.
    unknownWorldRetryMs: 5000,
  };

  /** The browser's clock and timers. */
  const browserClock = {
    now: () => root.performance.now(),
    setTimeout: (fn, ms) => root.setTimeout(fn, ms),
    clearTimeout: (handle) => root.clearTimeout(handle),
  };

  /**
   * Watches one world through a list of front-ends (WebSocket URLs), as the Rust fleet
   * client does: picks one at random, says Hello (with the session token after the first
   * Welcome), subscribes from the replica's last position, keeps the replica, answers
   * pings, probes a silent front-end and gives it up after 1.5 s unheard, and fails over
   * to another front-end at random (not one already tried in the round), backing off a
   * little when every front-end failed.
   *
   * options: {frontends: [url], world, clientName, onChange(observer, what), log(text),
   *           WebSocket (constructor), clock {now, setTimeout, clearTimeout},
   *           random {index(n), float()}, refreshFrontends() -> Promise<[url] | null>,
   *           joinTokens: [Uint8Array] (presented with Join on every connection, before
   *           subscribing: for a front-end that does not let anonymous observers watch),
   *           and any key of OBSERVER_DEFAULTS}
   *
   * State for the page: status, frontend, switches, reconnects, lastError, world,
   * session (the Session), replica() and hasSession().
   */
  class Observer {
    constructor(options) {
      const o = Object.assign({}, OBSERVER_DEFAULTS, options);
      this.options = o;
      this.frontends = Array.from(o.frontends || []);
      this.world = o.world;
      this.WebSocket = o.WebSocket || root.WebSocket;
      this.clock = o.clock || browserClock;
      this.random = o.random || cryptoRandom;
      this.onChange = o.onChange || (() => {});
      this.log = o.log || (() => {});
      this.session = new Session({ clientName: o.clientName, joinTokens: o.joinTokens || [], random: this.random });
      this.status = "idle";
      this.frontend = ""; // the URL of the current (or last) connection
      this.switches = 0; // welcomes on another front-end than the previous one
      this.reconnects = 0; // welcomes after the first
      this.lastError = "";
      this.welcomedUrl = null; // the front-end of the last Welcome
      this.conn = null;
      // The balancer (crates/balance): front-ends tried in this round, failed rounds.
      this.tried = new Set();
      this.failedRounds = 0;
      this.connectedSince = null;
      this.waitUntil = null;
      this.unknownSince = null; // when the front-end ended the watch for good
      this.timer = null;
      this.timerAt = null;
      this.started = false;
      this.stopped = false;
    }

    /** Starts watching (connects to a front-end picked at random). */
    start() {
      if (this.started) return;
      this.started = true;
      if (this.frontends.length === 0) throw new Error("no front-end to connect to");
      this.session.subscribe(this.world, null); // sent once a front-end welcomes us
      this.run(() => {});
    }

    /** Stops for good: closes the connection. */
    stop() {
      this.stopped = true;
      if (this.conn) this.dropConnection(this.conn, "stopped", true, false);
      this.run(() => {});
    }

    /** Replaces the front-end list (takes effect at the next pick). */
    setFrontends(urls) {
      if (!urls || urls.length === 0) return;
      const current = this.conn ? this.conn.url : null;
      this.frontends = Array.from(urls);
      this.tried = new Set();
      if (this.conn) this.conn.index = this.frontends.indexOf(current);
    }

    /** The replica of the watched world (null once the subscription ended). */
    replica() {
      return this.session.replica(this.world);
    }

    /** True while a session token is held. */
    hasSession() {
      return this.session.token !== null;
    }

    now() {
      return this.clock.now();
    }

    /** Runs `fn`, then whatever is due (connect, timers), then tells the page. */
    run(fn) {
      fn();
      this.step();
      this.updateStatus();
      this.arm();
      this.onChange(this);
    }

    updateStatus() {
      let status;
      const view = this.session.view(this.world);
      if (this.stopped) status = "stopped";
      else if (this.conn && this.conn.phase === "open") {
        if (!view) status = "unsubscribed"; // refused (UnknownWorld, NotAllowed...): see lastError
        else if (view.waiting) status = "waiting";
        else if (view.replica.isSynced() && !view.awaitingSnapshot) status = "live";
        else status = "syncing";
      } else status = this.welcomedUrl === null ? "connecting" : "reconnecting";
      this.status = status;
    }

    // --- the balancer: which front-end next, and when ---------------------------------

    /** Connects if there is no connection and no backoff under way. */
    step() {
      if (this.stopped || !this.started || this.conn) return;
      const now = this.now();
      if (this.waitUntil !== null) {
        if (now < this.waitUntil) return;
        this.waitUntil = null;
      }
      const untried = [];
      for (let i = 0; i < this.frontends.length; i++) if (!this.tried.has(i)) untried.push(i);
      if (untried.length === 0) {
        this.roundFailed(now);
        return;
      }
      const index = untried[this.random.index(untried.length)];
      this.connect(index, now);
    }

    /** Every front-end failed in this round: back off a little, then start another. */
    roundFailed(now) {
      const ceiling = Math.min(this.options.backoffCapMs, this.options.backoffJitterMs * 2 ** Math.min(this.failedRounds, 30));
      const delay = this.options.backoffMinMs + this.random.float() * ceiling;
      this.failedRounds++;
      this.tried = new Set();
      this.waitUntil = now + delay;
      this.log(`every front-end failed (${this.failedRounds} rounds in a row): next try in ${Math.round(delay)} ms`);
      if (this.options.refreshFrontends) {
        // The list may have changed meanwhile (front-ends added or removed): ask again.
        Promise.resolve()
          .then(() => this.options.refreshFrontends())
          .then((urls) => {
            if (urls && urls.length > 0 && !this.stopped) this.setFrontends(urls);
          })
          .catch(() => {});
      }
    }

    /** The connection to front-end `index` failed or was lost. */
    onFailure(index, now) {
      const stable = this.connectedSince !== null && now - this.connectedSince >= this.options.stableAfterMs;
      this.connectedSince = null;
      if (stable) {
        // A loss after a stable connection is the first failure of a fresh round.
        this.failedRounds = 0;
        this.tried = new Set();
      }
      if (index >= 0) this.tried.add(index);
      if (this.tried.size >= this.frontends.length) this.roundFailed(now);
    }

    // --- one connection -----------------------------------------------------------------

    connect(index, now) {
      const url = this.frontends[index];
      const conn = {
        url,
        index,
        ws: null,
        phase: "connecting",
        deadline: now + this.options.connectTimeoutMs,
        decoder: new Decoder(this.options.maxFrameLen),
        keepAlive: null,
      };
      this.conn = conn;
      this.log(`connecting to ${url}`);
      let ws;
      try {
        ws = new this.WebSocket(url);
      } catch (error) {
        this.dropConnection(conn, `${url}: ${error.message || error}`, false);
        return;
      }
      conn.ws = ws;
      ws.binaryType = "arraybuffer";
      ws.onopen = () => this.run(() => this.onOpen(conn));
      ws.onmessage = (event) => this.run(() => this.onMessage(conn, event.data));
      ws.onclose = (event) =>
        this.run(() => {
          if (this.conn !== conn) return;
          const why = conn.phase === "open" ? "connection closed" : "could not connect";
          this.dropConnection(conn, `${url}: ${why} (${event.code}${event.reason ? " " + event.reason : ""})`, false);
        });
      // A close event always follows an error event: the failure is handled there.
      ws.onerror = () => {};
    }

    onOpen(conn) {
      if (this.conn !== conn || conn.phase !== "connecting") return;
      const now = this.now();
      conn.phase = "awaiting";
      conn.deadline = now + this.options.handshakeTimeoutMs;
      conn.keepAlive = new KeepAlive(
        { quietMs: this.options.quietPingMs, probeMs: this.options.probeMs, closeAfterMs: this.options.idleTimeoutMs },
        now
      );
      this.send(conn, this.session.hello());
    }

    onMessage(conn, data) {
      if (this.conn !== conn) return;
      if (!(data instanceof ArrayBuffer) && !ArrayBuffer.isView(data)) {
        this.fail(conn, ErrorCode.Malformed, "a text message: the protocol is binary");
        return;
      }
      conn.decoder.feed(data);
      while (this.conn === conn) {
        let frame;
        let message;
        try {
          frame = conn.decoder.nextFrame();
          if (frame === null) return;
          // A whole frame proves the front-end alive; bytes of an incomplete one do not.
          conn.keepAlive.onReceived(this.now());
          message = decodeFrontendToClient(frame);
        } catch (error) {
          this.fail(conn, error.code || ErrorCode.Malformed, error.message);
          return;
        }
        if (conn.phase === "awaiting") this.onHandshake(conn, message);
        else this.onFrame(conn, message);
      }
    }

    onHandshake(conn, message) {
      let welcomed;
      try {
        welcomed = this.session.onHandshake(message);
      } catch (error) {
        if (error.kind === "Refused") {
          this.dropConnection(conn, `${conn.url}: ${error.message}`, true);
        } else if (error.kind === "UnsupportedVersion") {
          this.fail(conn, ErrorCode.UnsupportedVersion, error.message);
        } else {
          this.fail(conn, ErrorCode.UnexpectedFrame, error.message);
        }
        return;
      }
      const now = this.now();
      conn.phase = "open";
      this.connectedSince = now;
      if (this.welcomedUrl !== null) {
        this.reconnects++;
        if (conn.url !== this.welcomedUrl) this.switches++;
      }
      this.welcomedUrl = conn.url;
      this.frontend = conn.url;
      this.log(`welcomed by ${welcomed.serverId} at ${conn.url} (session ${welcomed.resumed ? "resumed" : "new"})`);
      if (!this.session.view(this.world)) {
        // The previous front-end ended the watch for good: ask this one.
        this.unknownSince = null;
        this.session.subscribe(this.world, null);
      }
      for (const join of this.session.joinMessages()) this.send(conn, join);
      for (const subscribe of this.session.resumeSubscriptions()) this.send(conn, subscribe);
    }

    onFrame(conn, message) {
      const now = this.now();
      let handled;
      try {
        handled = this.session.handle(message, now);
      } catch (error) {
        if (error.kind === "Peer") {
          this.dropConnection(conn, `${conn.url}: ${errorCodeName(error.code)}: ${error.text}`, true);
          if (error.code === ErrorCode.SessionMoved) {
            // Our token is in use on another connection: taking it back would push that
            // one off in turn. An observer needs no particular session: start a new one.
            this.session.token = null;
          }
        } else {
          this.fail(conn, error.code || ErrorCode.Malformed, error.message);
        }
        return;
      }
      for (const reply of handled.replies) this.send(conn, reply);
      for (const event of handled.events) {
        if (event.type === "Resyncing") {
          this.log(`world ${event.world}: ${event.reason}: resyncing`);
        } else if (event.type === "Resubscribing") {
          this.lastError = `world ${event.world}: ${errorCodeName(event.code)}: resubscribing in ${Math.round(event.delayMs)} ms`;
        } else if (event.type === "Joined") {
          this.log(`joined ${event.world} as ${event.role} until ${new Date(Number(event.expiresUnix) * 1000).toISOString()}`);
        } else if (event.type === "Refused") {
          this.lastError = `${event.request} refused: ${errorCodeName(event.code)}: ${event.text}`;
        } else if (event.type === "Unsubscribed" && event.world === this.world) {
          // The front-end ended the watch for good (no such world, not allowed...). The
          // Rust client ends the watch; a page has nothing else to do, so it asks again
          // now and then.
          this.lastError = `world ${event.world}: ${errorCodeName(event.code)}: ${event.text}`;
          this.unknownSince = now;
        }
      }
    }

    /** Encodes and sends one client message as one binary WebSocket message. */
    send(conn, message) {
      if (!conn.ws) return;
      const bytes = encodeClientMessage(message);
      try {
        conn.ws.send(bytes);
      } catch (error) {
        this.log(`send failed: ${error.message || error}`);
      }
      if (conn.keepAlive) conn.keepAlive.onSent(this.now());
    }

    /** Sends Error{code, text} and gives the connection up (the front-end broke the
     *  protocol, or was silent too long). */
    fail(conn, code, text) {
      this.send(conn, { type: "Error", code, text });
      this.dropConnection(conn, `${conn.url}: ${text}`, true);
    }

    /** Ends `conn`: a lost connection or a failed attempt, reported to the balancer. */
    dropConnection(conn, reason, close, report = true) {
      if (this.conn !== conn) return;
      this.conn = null;
      const ws = conn.ws;
      if (ws) {
        ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
        if (close) {
          try {
            ws.close();
          } catch (_) {
            // already closed
          }
        }
      }
      this.lastError = reason;
      this.log(reason);
      if (report) this.onFailure(conn.index, this.now());
    }

    // --- timers: connect and handshake deadlines, keep-alive, resubscribes, backoff -----

    nextDeadline() {
      let at = null;
      const earliest = (t) => {
        if (t !== null && t !== undefined && (at === null || t < at)) at = t;
      };
      const conn = this.conn;
      if (conn) {
        if (conn.phase === "open") {
          earliest(conn.keepAlive.deadline());
          earliest(this.session.nextResubscribeAt());
          if (!this.session.view(this.world) && this.unknownSince !== null) {
            earliest(this.unknownSince + this.options.unknownWorldRetryMs);
          }
        } else {
          earliest(conn.deadline);
        }
      }
      earliest(this.waitUntil);
      return at;
    }

    arm() {
      const at = this.stopped ? null : this.nextDeadline();
      if (at === this.timerAt && this.timer !== null) return;
      if (this.timer !== null) this.clock.clearTimeout(this.timer);
      this.timer = null;
      this.timerAt = at;
      if (at === null) return;
      this.timer = this.clock.setTimeout(() => {
        this.timer = null;
        this.timerAt = null;
        this.run(() => this.onTimer());
      }, Math.max(0, at - this.now()));
    }

    onTimer() {
      const conn = this.conn;
      if (!conn) return;
      const now = this.now();
      if (conn.phase === "connecting" && conn.deadline <= now) {
        this.dropConnection(conn, `${conn.url}: timed out connecting`, true);
        return;
      }
      if (conn.phase === "awaiting" && conn.deadline <= now) {
        this.dropConnection(conn, `${conn.url}: no Welcome within ${this.options.handshakeTimeoutMs} ms`, true);
        return;
      }
      if (conn.phase !== "open") return;
      const action = conn.keepAlive.poll(now);
      if (action && action.action === "close") {
        this.fail(conn, ErrorCode.Timeout, silenceText(action.silentForMs));
        return;
      }
      if (action && action.action === "ping") this.send(conn, { type: "Ping", nonce: action.nonce });
      for (const subscribe of this.session.dueResubscribes(now)) this.send(conn, subscribe);
      if (
        !this.session.view(this.world) &&
        this.unknownSince !== null &&
        now >= this.unknownSince + this.options.unknownWorldRetryMs
      ) {
        this.unknownSince = null;
        this.send(conn, this.session.subscribe(this.world, null));
      }
    }
  }

  // ---------------------------------------------------------------------------------
  // Part 8: the observer page (index.html): asks the server for the front-end list,
  // starts an Observer, shows its state in the DOM and draws the world on a canvas.
  // index.html holds markup only (no inline script or style, so that a strict
  // Content-Security-Policy such as "default-src 'self'" allows it); this part starts when
  // the page's <body> has data-flotilla="observer", and is inert on any other page.
  // ---------------------------------------------------------------------------------

  /** The page's look, applied as a constructed style sheet (allowed by a strict CSP). */
  const PAGE_CSS = `
    :root { color-scheme: dark; }
    body { margin: 0; font: 14px/1.4 system-ui, sans-serif; background: #12151a; color: #d8dde5; }
    header { padding: 10px 16px; border-bottom: 1px solid #2a2f38; display: flex; gap: 16px; align-items: baseline; }
    header h1 { font-size: 18px; margin: 0; }
    main { display: flex; gap: 16px; padding: 16px; flex-wrap: wrap; }
    canvas { background: #0b0d10; border: 1px solid #2a2f38; width: 640px; height: 640px; }
    aside { min-width: 320px; max-width: 520px; }
    table { border-collapse: collapse; width: 100%; }
    th { text-align: left; font-weight: normal; color: #8b94a3; padding: 2px 12px 2px 0; white-space: nowrap; }
    td { font-family: ui-monospace, monospace; word-break: break-all; padding: 2px 0; }
    #status.live { color: #6ad08a; }
    #status.connecting, #status.reconnecting, #status.syncing, #status.waiting { color: #e2c25b; }
    #errors { color: #ef7d7d; }
    h2 { font-size: 14px; color: #8b94a3; margin: 16px 0 4px; }
    ul { margin: 0; padding-left: 18px; font-family: ui-monospace, monospace; font-size: 12px; }
  `;

  function applyPageStyle(doc) {
    try {
      const sheet = new root.CSSStyleSheet();
      sheet.replaceSync(PAGE_CSS);
      doc.adoptedStyleSheets = [...doc.adoptedStyleSheets, sheet];
      doc.documentElement.dataset.flotillaStyle = "constructed";
    } catch (_) {
      // No constructed style sheets (an old browser): a <style> element (which a strict
      // CSP refuses; the page then works unstyled).
      const style = doc.createElement("style");
      style.textContent = PAGE_CSS;
      doc.head.appendChild(style);
      doc.documentElement.dataset.flotillaStyle = "element";
    }
  }

  /** A front-end address as a WebSocket URL: ws:// and wss:// URLs are kept verbatim;
   *  http(s) and relative ones are resolved against the page. */
  function toWsUrl(address, base) {
    const trimmed = String(address).trim();
    if (/^wss?:\/\//i.test(trimmed)) return trimmed;
    const url = new URL(trimmed, base);
    if (url.protocol === "http:") url.protocol = "ws:";
    else if (url.protocol === "https:") url.protocol = "wss:";
    return url.href;
  }

  /** A stable hue for a name (for entity colours). */
  function hue(text) {
    let h = 2166136261;
    for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619);
    return (h >>> 0) % 360;
  }

  /**
   * Runs the observer page in `doc` (index.html's markup). URL parameters:
   *   ?frontends=ws://a/ws,ws://b/ws   use these instead of GET /frontends
   *   ?world=arena-1                   the world (default: the one /frontends names, else
   *                                    "$directory": the list of the worlds served)
   *   #join=TOKEN[,TOKEN]              join tokens (base64url, as `flotilla join-token`
   *                                    prints them), presented on every connection: for
   *                                    a front-end without anonymous observers. In the
   *                                    fragment, so that it never reaches a server's logs.
   * Returns {observer()} for debugging from the console.
   */
  function startObserverPage(doc = root.document) {
    const $ = (id) => doc.getElementById(id);
    const location = root.location;
    const params = new URLSearchParams(location.search);
    let observer = null;

    applyPageStyle(doc);

    function setText(id, text) {
      const element = $(id);
      if (element && element.textContent !== text) element.textContent = text;
    }

    /** Shows `text` as the last error. */
    function setError(text) {
      setText("errors", String(text));
    }

    // Errors of the page's own code show up in #errors too.
    root.addEventListener("error", (event) => setError(`script error: ${event.message}`));
    root.addEventListener("unhandledrejection", (event) => setError(`script error: ${event.reason}`));

    // --- the front-end list --------------------------------------------------------------

    /** ?frontends=url1,url2 (null when absent or empty). */
    function frontendsFromUrl() {
      const raw = params.get("frontends");
      if (!raw) return null;
      const list = raw
        .split(",")
        .map((s) => s.trim())
        .filter((s) => s.length > 0)
        .map((s) => toWsUrl(s, location.href));
      return list.length > 0 ? list : null;
    }

    /** #join=t1,t2: the join tokens, decoded (an undecodable one is reported and skipped). */
    function joinTokensFromUrl() {
      const fragment = new URLSearchParams(location.hash.replace(/^#/, ""));
      const raw = fragment.get("join");
      if (!raw) return [];
      const tokens = [];
      for (const text of raw.split(",").map((t) => t.trim()).filter((t) => t.length > 0)) {
        try {
          tokens.push(fromBase64Url(text));
        } catch (error) {
          setError(`join token not decodable: ${error.message || error}`);
        }
      }
      return tokens;
    }

    /** GET /frontends: {"frontends": ["ws://...", ...], "world": "arena"}. */
    async function fetchFrontends() {
      const response = await root.fetch("/frontends", { cache: "no-store" });
      if (!response.ok) throw new Error(`GET /frontends: HTTP ${response.status}`);
      const json = await response.json();
      const list = Array.isArray(json.frontends)
        ? json.frontends
            .filter((s) => typeof s === "string" && s.trim().length > 0)
            .map((s) => toWsUrl(s, location.href))
        : [];
      if (list.length === 0) throw new Error("GET /frontends: no front-end listed");
      const world = typeof json.world === "string" && json.world.length > 0 ? json.world : null;
      return { frontends: list, world };
    }

    const sleep = (ms) => new Promise((resolve) => root.setTimeout(resolve, ms));

    async function start() {
      let frontends = frontendsFromUrl();
      const asked = params.get("world");
      let world = asked || "$directory";
      const overridden = frontends !== null;
      if (!overridden) {
        // Ask until the server answers (it may be starting).
        for (let attempt = 0; ; attempt++) {
          try {
            const listed = await fetchFrontends();
            frontends = listed.frontends;
            if (listed.world && !asked) world = listed.world;
            break;
          } catch (error) {
            setError(error.message || String(error));
            await sleep(Math.min(5000, 250 * 2 ** attempt) * (0.5 + cryptoRandom.float() / 2));
          }
        }
      }
      setText("world", world);
      observer = new Observer({
        frontends,
        world,
        joinTokens: joinTokensFromUrl(),
        onChange: scheduleRender,
        log: (text) => root.console.debug(`flotilla: ${text}`),
        // When every front-end failed in a round, the list may have changed: ask again.
        refreshFrontends: overridden ? null : async () => (await fetchFrontends()).frontends,
      });
      observer.start();
    }

    // --- the state panel (throttled: the digest is computed at most 5 times a second) ----

    const STATS_INTERVAL_MS = 200;
    let statsTimer = null;
    let lastStatsAt = -Infinity;
    let digestVersion = -1;
    let digestReplica = null;
    let digestText = "";
    let lastObserverError = "";
    let drawPending = false;
    let drawn = { replica: null, version: -1, status: "" };

    /** Called by the observer on every change: the panel soon, the canvas at the next
     *  animation frame. */
    function scheduleRender() {
      if (statsTimer === null) {
        const wait = Math.max(0, lastStatsAt + STATS_INTERVAL_MS - root.performance.now());
        statsTimer = root.setTimeout(renderStats, wait);
      }
      if (!drawPending) {
        drawPending = true;
        root.requestAnimationFrame(draw);
      }
    }

    function renderStats() {
      statsTimer = null;
      lastStatsAt = root.performance.now();
      if (!observer) return;
      const replica = observer.replica();
      const position = replica ? replica.position() : null;
      if (replica !== digestReplica || (replica && replica.version !== digestVersion)) {
        digestReplica = replica;
        digestVersion = replica ? replica.version : -1;
        digestText = replica ? replica.digestHex() : "";
      }
      const status = observer.status;
      setText("status", status);
      $("status").className = status.replace(/\s+/g, "-");
      setText("frontend", observer.frontend);
      setText("switches", String(observer.switches));
      setText("reconnects", String(observer.reconnects));
      setText("epoch", position ? position.epoch.toString() : "");
      setText("seq", position ? position.seq.toString() : "");
      setText("digest", position ? digestText : "");
      setText("entries", String(replica ? replica.size : 0));
      setText("session", observer.hasSession() ? "yes" : "no");
      if (observer.lastError !== lastObserverError) {
        lastObserverError = observer.lastError;
        setError(lastObserverError);
      }
    }

    // --- the canvas: the arena field (1000 x 1000), entities as dots ---------------------

    const FIELD = 1000;
    const keyDecoder = new TextDecoder("utf-8"); // lenient: keys are shown, not checked
    const canvas = $("field");
    const ctx = canvas.getContext("2d");

    /** A value for the side list: text if printable, else hex. */
    function preview(bytes) {
      const text = keyDecoder.decode(bytes.subarray(0, 80));
      const printable = /^[\x20-\x7e\u00a0-\uffff]*$/.test(text) && !text.includes("\ufffd");
      const shown = printable ? JSON.stringify(text) : toHex(bytes.subarray(0, 32));
      const cut = bytes.length > 80 || (!printable && bytes.length > 32);
      return cut ? `${shown}… (${bytes.length} bytes)` : shown;
    }

    function draw() {
      drawPending = false;
      if (!observer) return;
      const replica = observer.replica();
      const version = replica ? replica.version : -1;
      if (replica === drawn.replica && version === drawn.version && observer.status === drawn.status) return;
      drawn = { replica, version, status: observer.status };

      // Size the backing store to the displayed size (sharp on high-DPI screens).
      const scale = root.devicePixelRatio || 1;
      const size = Math.round(canvas.clientWidth * scale) || 640;
      if (canvas.width !== size) {
        canvas.width = size;
        canvas.height = size;
      }
      const px = size / FIELD;
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      ctx.fillStyle = "#0b0d10";
      ctx.fillRect(0, 0, size, size);
      ctx.strokeStyle = "#1c2129";
      ctx.lineWidth = 1;
      for (let g = 100; g < FIELD; g += 100) {
        ctx.beginPath();
        ctx.moveTo(g * px, 0);
        ctx.lineTo(g * px, size);
        ctx.moveTo(0, g * px);
        ctx.lineTo(size, g * px);
        ctx.stroke();
      }

      const players = [];
      const others = [];
      let wanderers = 0;
      if (replica) {
        for (const [key, value] of replica.sortedEntries()) {
          const name = keyDecoder.decode(key);
          if (value.length !== 8) {
            others.push([name, value]);
            continue;
          }
          // An arena entity: x then y, little-endian f32 (PROTOCOL.md section 11).
          const view = new DataView(value.buffer, value.byteOffset, 8);
          const x = view.getFloat32(0, true);
          const y = view.getFloat32(4, true);
          const isPlayer = name.startsWith("p/");
          if (isPlayer) players.push([name, x, y]);
          else wanderers++;
          const radius = (isPlayer ? 7 : 4) * scale;
          ctx.beginPath();
          ctx.arc(x * px, y * px, radius, 0, 2 * Math.PI);
          ctx.fillStyle = isPlayer ? `hsl(${hue(name)}, 90%, 58%)` : `hsl(${hue(name)}, 35%, 55%)`;
          ctx.fill();
          if (isPlayer) {
            ctx.strokeStyle = "#ffffff";
            ctx.lineWidth = 1.5 * scale;
            ctx.stroke();
          }
          ctx.fillStyle = isPlayer ? "#ffffff" : "#7d8796";
          ctx.font = `${(isPlayer ? 12 : 9) * scale}px system-ui, sans-serif`;
          ctx.fillText(name, x * px + radius + 2 * scale, y * px - radius);
        }
      }
      if (observer.status !== "live") {
        // Not live: dim the last state and say why.
        ctx.fillStyle = "rgba(11, 13, 16, 0.55)";
        ctx.fillRect(0, 0, size, size);
        ctx.fillStyle = "#e2c25b";
        ctx.font = `${20 * scale}px system-ui, sans-serif`;
        ctx.fillText(observer.status, 16 * scale, 32 * scale);
      }

      setText("counts", replica ? `${players.length} players, ${wanderers} wanderers` : "");
      $("players").replaceChildren(
        ...players.map(([name, x, y]) => {
          const item = doc.createElement("li");
          item.textContent = `${name}  (${x.toFixed(0)}, ${y.toFixed(0)})`;
          item.style.color = `hsl(${hue(name)}, 90%, 70%)`;
          return item;
        })
      );
      $("other").replaceChildren(
        ...others.slice(0, 50).map(([name, value]) => {
          const item = doc.createElement("li");
          item.textContent = `${name} = ${preview(value)}`;
          return item;
        })
      );
    }

    start().catch((error) => {
      setText("status", "error");
      setError(error.message || String(error));
    });
    return { observer: () => observer };
  }

  // ---------------------------------------------------------------------------------
  // The global
  // ---------------------------------------------------------------------------------

  root.Flotilla = Object.freeze({
    PROTOCOL_VERSION,
    MAGIC,
    HEADER_LEN,
    DEFAULT_MAX_FRAME_LEN,
    HELLO_MAX_FRAME_LEN,
    CLIENT_MAX_FRAME_LEN,
    DEFAULT_MAX_SNAPSHOT_BYTES,
    MAX_WORLD_ID_LEN,
    CLIENT_PING_INTERVAL_MS,
    CLIENT_QUIET_PING_INTERVAL_MS,
    CLIENT_IDLE_TIMEOUT_MS,
    HANDSHAKE_TIMEOUT_MS,
    FrameType,
    ErrorCode,
    frameTypeName: (code) => FRAME_TYPE_NAMES.get(code),
    errorCodeName,
    WireError,
    WorldError,
    Fatal,
    HandshakeError,
    // bytes
    toHex,
    fromHex,
    asBytes,
    bytesToBinaryString,
    // encoding
    Writer,
    encodeFrame,
    encodeHello,
    encodePing,
    encodePong,
    encodeError,
    encodeSubscribe,
    encodeUnsubscribe,
    encodeInput,
    encodeJoin,
    encodeClientMessage,
    // decoding
    Decoder,
    Reader,
    decodeFrontendToClient,
    // the world
    Replica,
    SnapshotAssembler,
    digestEntries,
    digestEntriesBigInt,
    digestHex,
    // the client's rules
    KeepAlive,
    silenceText,
    Session,
    // random
    randomIndexFrom,
    cryptoRandom,
    // the observer
    Observer,
    OBSERVER_DEFAULTS,
    // the page
    startObserverPage,
    toWsUrl,
    fromBase64Url,
  });

  // Start the page on index.html (its <body data-flotilla="observer">), once the DOM is in.
  if (root.document) {
    const boot = () => {
      const body = root.document.body;
      if (body && body.dataset.flotilla === "observer" && !root.flotillaPage) {
        root.flotillaPage = startObserverPage(root.document);
      }
    };
    if (root.document.readyState === "loading") root.document.addEventListener("DOMContentLoaded", boot);
    else boot();
  }
})(typeof window !== "undefined" ? window : globalThis);
