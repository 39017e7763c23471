/**
 * The changelog of a sharded state (one Kafka partition per shard): its record format and the
 * restore that reads a partition back into a shard.
 *
 * A partition holds, in order:
 * - change records: key = the state key (JSON of its Schema encoding), value = the state (JSON),
 *   `null` for a removal (a tombstone); headers name the writer's token and batch;
 * - control records, key {@link controlKey} (never a JSON text, so it cannot collide with a
 *   state key; on a compacted topic only the latest survives, which is enough, see below):
 *   - a claim, written by a process that has just restored the shard and now owns it: its own
 *     offset is the owner's token; its value holds the restored dedupe position;
 *   - a marker, closing one batch's append: token, batch, and the dedupe position after it.
 *
 * Restore rules (see {@link Restorer}):
 * - a record or marker whose token is older than a claim read before it is a zombie's (a
 *   process that lost the shard without knowing) and is ignored;
 * - change records take effect once a later marker of their owner follows them; an older
 *   owner's records that a newer owner's control record follows take effect up to the `base`
 *   that record names (the last control record the newer owner had read before its claim), and
 *   the rest (an append cut by a crash, or a zombie's) is dropped, as is an unconfirmed tail
 *   when the log ends;
 * - the restorer's claim is followed by corrections: the current value (or a tombstone) of
 *   every key the ignored or dropped records touched (and of any record that landed between
 *   the end of its read and its claim), so the log converges on the restored state.
 * @internal
 */
import { Buffer } from "node:buffer"
import type { OutgoingRecord, RawRecord } from "./kafkaClient.ts"

/** The key of control records (claims and markers). @internal */
export const controlKey = "\u0000dstream-control"
/** Header of change records: the writer's token. @internal */
export const tokenHeader = "dstream.token"
/** Header of change records: the writer's batch sequence number. @internal */
export const batchHeader = "dstream.batch"

/**
 * How far a shard has applied its input: the highest input offset applied (`-1`: none) and, per
 * source partition of the records that were repartitioned into it, the highest (source offset,
 * index within the source record) applied.
 * @internal
 */
export interface Position {
  readonly applied: number
  readonly sources: ReadonlyMap<number, readonly [number, number]>
}

/** @internal */
export const emptyPosition: Position = { applied: -1, sources: new Map() }

/** A control record's value. @internal */
export interface Control {
  readonly kind: "claim" | "marker"
  /** The writer's token (for a claim: `-1`, its own offset is the token). */
  readonly token: number
  readonly batch: number
  readonly applied: number
  readonly sources: ReadonlyArray<readonly [number, number, number]>
  /**
   * Older owners' records up to this offset are confirmed (a claim: the last valid control
   * record its writer read; a marker: its claim's).
   */
  readonly base: number
  /** The consumer group generation the writer had (informational). */
  readonly generation: number
  /** Epoch ms when written. */
  readonly at: number
}

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** UTF-8 text of bytes: kafkajs hands out Buffers, whose native decoder is several times faster. */
const utf8 = (b: Uint8Array): string => Buffer.isBuffer(b) ? b.toString("utf8") : decoder.decode(b)

const text = (b: Uint8Array | string | null): string | null => b === null ? null : typeof b === "string" ? b : utf8(b)

/** A control record for partition `partition` of `topic`. @internal */
export const controlRecord = (
  topic: string,
  partition: number,
  control: Omit<Control, "at">,
  at: number,
): OutgoingRecord => ({
  topic,
  partition,
  key: controlKey,
  value: JSON.stringify({ ...control, at }),
})

/** The sources of a position as a control record lists them. @internal */
export const sourcesList = (p: Position): Array<readonly [number, number, number]> =>
  [...p.sources].map(([s, [o, i]]) => [s, o, i] as const)

/** A change record (key and value already JSON texts; `null` value: removal). @internal */
export const changeRecord = (
  topic: string,
  partition: number,
  key: string,
  value: string | null,
  token: number,
  batch: number,
): OutgoingRecord => ({
  topic,
  partition,
  key,
  value,
  headers: { [tokenHeader]: String(token), [batchHeader]: String(batch) },
})

const isInt = (u: unknown): u is number => typeof u === "number" && Number.isSafeInteger(u)

/** Reads a control record's value; throws an Error naming what is wrong. @internal */
export const parseControl = (record: RawRecord): Control => {
  const raw = text(record.value)
  let c: Partial<Control> | null
  try {
    c = raw === null ? null : JSON.parse(raw)
  } catch {
    c = null
  }
  if (
    c === null || typeof c !== "object" || (c.kind !== "claim" && c.kind !== "marker") || !isInt(c.token) ||
    !isInt(c.batch) || !isInt(c.base) || !isInt(c.applied) || !Array.isArray(c.sources) ||
    !c.sources.every((s) => Array.isArray(s) && s.length === 3 && s.every(isInt))
  ) {
    throw new Error(
      `malformed control record at offset ${record.offset} of "${record.topic}" [${record.partition}]: ${raw}`,
    )
  }
  return { generation: 0, at: 0, ...c } as Control
}

const header = (record: RawRecord, name: string): number | undefined => {
  const h = record.headers[name]
  const v = Array.isArray(h) ? h[0] : h
  if (v === undefined) return undefined
  const n = Number(typeof v === "string" ? v : utf8(v as Uint8Array))
  return Number.isSafeInteger(n) ? n : undefined
}

const isControl = (record: RawRecord): boolean => {
  const k = record.key
  if (k === null) return false
  if (typeof k === "string") return k === controlKey
  // the control key is ASCII: compare bytes without decoding every key
  if (k.length !== controlKeyBytes.length || k[0] !== 0) return false
  for (let i = 1; i < k.length; i++) if (k[i] !== controlKeyBytes[i]) return false
  return true
}
const controlKeyBytes = encoder.encode(controlKey)

/**
 * Replays a changelog partition, chunk by chunk, into the raw state of a shard: JSON key text →
 * JSON value text. Values stay undecoded (only the last value of a key is ever decoded).
 * @internal
 */
export class Restorer {
  /** Confirmed state: key text → value bytes. */
  readonly state = new Map<string, Uint8Array | string>()
  /** The newest token read so far (a claim's offset, or a token seen on a later record). */
  latest = -1
  /** Change records not yet confirmed, in offset order (columns: no object per record). */
  private pendingKeys: Array<string> = []
  private pendingValues: Array<Uint8Array | string | null> = []
  private pendingOffsets: Array<number> = []
  private pendingTokens: Array<number> = []
  /** Keys of ignored records (zombies', and pending ones dropped): they need corrections. */
  readonly corrections = new Set<string>()
  position: Position = emptyPosition
  /** The last valid control record's batch and generation and offset (`-1`: none). */
  batch = -1
  generation = -1
  lastControl = -1
  records = 0
  zombies = 0
  dropped = 0
  /** Offset after the last record read. */
  next = 0
  /** Where the read of this restorer began: `"changelog"` (its start), `"cache"` or `"standby"`. */
  from: "changelog" | "cache" | "standby" = "changelog"
  /** The offset the read began at. */
  startOffset = -1

  /**
   * A restorer that continues from a point where the log had nothing pending (just after a
   * valid control record): what a restore that read the partition up to `point.next` would hold.
   */
  static fromPoint(point: RestorePoint, from: "cache" | "standby"): Restorer {
    const r = new Restorer()
    for (const [k, v] of point.entries) r.state.set(k, v)
    r.latest = point.latest
    r.position = point.position
    r.batch = point.batch
    r.generation = point.generation
    r.lastControl = point.lastControl
    r.next = point.next
    r.from = from
    r.startOffset = point.next
    return r
  }

  /** Change records read but not yet confirmed by a control record. */
  get pending(): number {
    return this.pendingKeys.length
  }
  /** The last token header read, as bytes and as a number (consecutive records share it). */
  private tokenBytes: Uint8Array | undefined = undefined
  private tokenValue = -1

  /** Reads the next records of the partition, in offset order. */
  add(records: ReadonlyArray<RawRecord>): void {
    for (let i = 0; i < records.length; i++) {
      const r = records[i]
      this.records++
      this.next = r.offset + 1
      if (isControl(r)) {
        this.control(r)
        continue
      }
      const key = text(r.key)
      if (key === null) continue
      const token = this.token(r)
      if (token < this.latest) {
        this.zombies++
        this.corrections.add(key)
        continue
      }
      if (token > this.latest) this.latest = token // its claim is gone (compaction)
      this.pendingKeys.push(key)
      this.pendingValues.push(r.value)
      this.pendingOffsets.push(r.offset)
      this.pendingTokens.push(token)
    }
  }

  /** The record's token header (`-1` without), parsed once for a run of records that share it. */
  private token(r: RawRecord): number {
    const h = r.headers[tokenHeader]
    const v = Array.isArray(h) ? h[0] : h
    if (v === undefined) return -1
    if (typeof v === "string") return header(r, tokenHeader) ?? -1
    const last = this.tokenBytes
    const bytes = v as Uint8Array
    if (last !== undefined && last.length === bytes.length) {
      let same = true
      for (let j = 0; j < bytes.length; j++) {
        if (bytes[j] !== last[j]) {
          same = false
          break
        }
      }
      if (same) return this.tokenValue
    }
    this.tokenBytes = bytes
    this.tokenValue = header(r, tokenHeader) ?? -1
    return this.tokenValue
  }

  private control(r: RawRecord): void {
    const c = parseControl(r)
    const token = c.kind === "claim" ? r.offset : c.token
    if (token < this.latest) {
      this.zombies++
      return
    }
    // The owner's records are confirmed by its marker. Records of an older owner are confirmed
    // up to the last control record the newer owner read before its claim (`base`; below it,
    // their own markers may be gone to compaction); after it they are an append cut by a crash
    // (or a zombie's), which the claimer corrected after its claim.
    const keys = this.pendingKeys
    const values = this.pendingValues
    const offsets = this.pendingOffsets
    const tokens = this.pendingTokens
    const state = this.state
    for (let i = 0; i < keys.length; i++) {
      if (tokens[i] === token || offsets[i] <= c.base) {
        const v = values[i]
        // as text: a value's bytes are a view of the whole fetch response, which a kept view
        // would hold on to (a restore would keep every response it read until the end)
        if (v === null) state.delete(keys[i])
        else state.set(keys[i], typeof v === "string" ? v : jsonText(v))
      } else {
        this.dropped++
        this.corrections.add(keys[i])
      }
    }
    this.clearPending()
    this.latest = token
    this.position = {
      applied: c.applied,
      sources: new Map(c.sources.map(([s, o, i]) => [s, [o, i] as const])),
    }
    this.batch = c.batch
    this.generation = c.generation
    this.lastControl = r.offset
  }

  private clearPending(): void {
    this.pendingKeys = []
    this.pendingValues = []
    this.pendingOffsets = []
    this.pendingTokens = []
  }

  /** The log has ended: an unconfirmed tail is dropped (the new claim corrects its keys). */
  finish(): void {
    for (const k of this.pendingKeys) this.corrections.add(k)
    this.dropped += this.pendingKeys.length
    this.clearPending()
  }
}

/** JSON text of a key or state from bytes. @internal */
export const jsonText = (u: Uint8Array | string): string => typeof u === "string" ? u : utf8(u)

// ---- restore points: a local cache of a shard, a standby's state -------------------------------

/**
 * A shard as a restore that read its changelog partition up to `next` holds it, taken just after
 * a valid control record of its owner (nothing pending): JSON key text → JSON value text, the
 * owner's token, the last control record (its offset and its value's text, so a cache can be
 * checked against the log) and the dedupe position.
 * @internal
 */
export interface RestorePoint {
  readonly topic: string
  readonly partition: number
  readonly entries: Iterable<readonly [string, Uint8Array | string]>
  readonly latest: number
  readonly position: Position
  readonly batch: number
  readonly generation: number
  /** Offset of the last control record (the owner's marker). */
  readonly lastControl: number
  /** The text of that control record's value. */
  readonly control: string
  /** Offset after it. */
  readonly next: number
}

const cacheFormat = 1

/**
 * The bytes of a cache file: a SHA-256 of the body, a newline, the body (JSON). The checksum
 * makes a file cut by a crash or damaged on disk a clear error rather than a wrong state.
 * @internal
 */
export const encodeCache = (point: RestorePoint, digest: (text: string) => string): string => {
  const body = JSON.stringify({
    format: cacheFormat,
    topic: point.topic,
    partition: point.partition,
    latest: point.latest,
    applied: point.position.applied,
    sources: sourcesList(point.position),
    batch: point.batch,
    generation: point.generation,
    lastControl: point.lastControl,
    control: point.control,
    next: point.next,
    entries: [...point.entries].map(([k, v]) => [k, jsonText(v)]),
  })
  return `${digest(body)}\n${body}`
}

/**
 * Reads a cache file's text (see {@link encodeCache}) for partition `partition` of `topic`;
 * throws an Error naming what is wrong (a checksum mismatch, a malformed body, another partition).
 * @internal
 */
export const decodeCache = (
  text: string,
  topic: string,
  partition: number,
  digest: (text: string) => string,
): RestorePoint => {
  const nl = text.indexOf("\n")
  if (nl < 0) throw new Error("no checksum line")
  const body = text.slice(nl + 1)
  const sum = digest(body)
  if (text.slice(0, nl) !== sum) {
    throw new Error(`checksum mismatch (stored "${text.slice(0, Math.min(nl, 64))}", computed "${sum}")`)
  }
  let u: Record<string, unknown>
  try {
    u = JSON.parse(body)
  } catch (e) {
    throw new Error(`malformed body: ${e instanceof Error ? e.message : String(e)}`)
  }
  const ints = ["latest", "applied", "batch", "generation", "lastControl", "next", "partition"]
  if (
    u === null || typeof u !== "object" || u.format !== cacheFormat || ints.some((k) => !isInt(u[k])) ||
    typeof u.control !== "string" || typeof u.topic !== "string" || !Array.isArray(u.sources) ||
    !u.sources.every((s) => Array.isArray(s) && s.length === 3 && s.every(isInt)) || !Array.isArray(u.entries) ||
    !u.entries.every((e) => Array.isArray(e) && e.length === 2 && typeof e[0] === "string" && typeof e[1] === "string")
  ) throw new Error("malformed body: a field is missing or has the wrong type")
  if (u.topic !== topic || u.partition !== partition) {
    throw new Error(`it is the cache of "${u.topic}" [${u.partition}], not of "${topic}" [${partition}]`)
  }
  const sources = u.sources as ReadonlyArray<readonly [number, number, number]>
  return {
    topic,
    partition,
    latest: u.latest as number,
    position: {
      applied: u.applied as number,
      sources: new Map(sources.map(([s, o, i]) => [s, [o, i] as const])),
    },
    batch: u.batch as number,
    generation: u.generation as number,
    lastControl: u.lastControl as number,
    control: u.control as string,
    next: u.next as number,
    entries: u.entries as ReadonlyArray<readonly [string, string]>,
  }
}

/** The value text of a control record (`undefined`: not a control record). @internal */
export const controlText = (record: RawRecord): string | undefined =>
  isControl(record) ? text(record.value) ?? undefined : undefined
