/**
 * The receivers' write-ahead log (Spark's `FileBasedWriteAheadLog` for received blocks and the
 * `ReceivedBlockTracker` log in one): an append-only log of segment files
 * `log-<n>` in one directory (`<checkpointDir>/receivedData/<streamId>/`), on effect's
 * `FileSystem`.
 *
 * Format 2 (this build writes it; format 1 segments, from earlier builds, are still read):
 * a segment starts with a 16-byte header (`EDSTRWAL`, the format version as u32, the CRC-32 of
 * those 12 bytes); every record is framed as `[sync marker FF 57 41 4C][CRC-32 of the rest: u32]
 * [body length: u32][body]`. The sync marker starts with `0xFF`, a byte that never occurs in
 * UTF-8, so JSON-encoded data never contains it. Bodies: a block (`1`, block id, record count,
 * the serialized records), an allocation (`2`, batch time, the block ids and their record
 * counts) and a checkpoint marker (`3`, batch time, what the graph checkpoint of that time
 * covers: every block id below `nextBlockId` except the `pending` ranges).
 *
 * A record counts as written once the segment is fsynced after it (before an append returns);
 * a new segment's directory entry is fsynced before its first record is acknowledged. Files are
 * created with `Checkpoint.Permissions` (`0o600`), directories likewise (`0o700`).
 *
 * Reading never drops more than it must: a record that is torn, fails its CRC or does not
 * decode is skipped by resynchronising on the next sync marker that starts a valid record, and
 * the skipped range is reported (`damaged`: segment, offset, byte count, reason). A segment is
 * rolled after the rolling interval (and after a failed write); a reopened log always starts a
 * new segment. `cleanup(t)` deletes the oldest segments whose blocks are all allocated to
 * batches up to `t` and whose records all concern batches up to `t`.
 * @internal
 */
import { Clock, Data, Effect, Exit, FileSystem, Path, Scope, Semaphore } from "effect"
import { crc32, Permissions } from "../Checkpoint.ts"
import { makeDirectoryDurably, syncDirectory } from "./files.ts"

/**
 * Writing or reading the write-ahead log failed.
 * @internal
 */
export class WalError extends Data.TaggedError("WalError")<{
  readonly directory: string
  readonly message: string
  readonly cause?: unknown
}> {}

/**
 * What a graph checkpoint covers of one receiver's blocks: every block id below `nextBlockId`
 * except those in the `pending` ranges (`[from, to)`), which were not yet allocated, or were
 * allocated to later batches, when it was taken. Decides recovery even when allocation records
 * are lost. @internal
 */
export interface Coverage {
  readonly time: number
  readonly nextBlockId: number
  readonly pending: ReadonlyArray<readonly [number, number]>
}

/** One decoded log record. @internal */
export type WalRecord =
  | { readonly _tag: "Block"; readonly id: number; readonly count: number; readonly data: Uint8Array }
  | {
    readonly _tag: "Allocation"
    readonly time: number
    readonly blocks: ReadonlyArray<number>
    /** The blocks' record counts (format 1 did not record them). */
    readonly counts: ReadonlyArray<number> | undefined
  }
  | { readonly _tag: "Checkpointed"; readonly time: number; readonly coverage: Coverage | undefined }

/** Where a block's record is: for reading it back without keeping it in memory. @internal */
export interface BlockLocation {
  readonly segment: string
  readonly offset: number
  readonly length: number
}

/** A byte range of a segment that could not be read. @internal */
export interface Damage {
  readonly offset: number
  readonly bytes: number
  readonly reason: string
}

/** What a log directory holds, as read at open. @internal */
export interface WalContents {
  /** Blocks by id, in log order: their record count and location (the data stays on disk). */
  readonly blocks: Map<number, { readonly count: number; readonly location: BlockLocation }>
  /** The last allocation time recorded for each block. */
  readonly allocatedTo: Map<number, number>
  /** The record count of each allocated block, when its allocation record has it. */
  readonly allocatedCounts: Map<number, number>
  /** The newest checkpoint marker's time, if any. */
  readonly checkpointed: number | undefined
  /** What the newest checkpoint marker covers (format 1 markers did not say). */
  readonly coverage: Coverage | undefined
  /** Ranges that could not be read (torn, corrupt), by segment file name. */
  readonly damaged: ReadonlyArray<Damage & { readonly segment: string }>
}

/** The format this build writes. @internal */
export const formatVersion = 2
const MAGIC = [0x45, 0x44, 0x53, 0x54, 0x52, 0x57, 0x41, 0x4c] // "EDSTRWAL"
const SEGMENT_HEADER = 16
const SYNC = [0xff, 0x57, 0x41, 0x4c] // 0xFF "WAL"
const RECORD_HEADER = 12
const V1_HEADER = 8
const BLOCK = 1
const ALLOCATION = 2
const CHECKPOINTED = 3
const segmentPrefix = "log-"

/** The 16-byte header of a format-2 segment. @internal */
export const segmentHeader = (): Uint8Array => {
  const out = new Uint8Array(SEGMENT_HEADER)
  out.set(MAGIC, 0)
  const view = new DataView(out.buffer)
  view.setUint32(8, formatVersion)
  view.setUint32(12, crc32(out.subarray(0, 12)))
  return out
}

const encodeBody = (record: WalRecord): Uint8Array => {
  switch (record._tag) {
    case "Block": {
      const body = new Uint8Array(13 + record.data.length)
      const view = new DataView(body.buffer)
      body[0] = BLOCK
      view.setFloat64(1, record.id)
      view.setUint32(9, record.count)
      body.set(record.data, 13)
      return body
    }
    case "Allocation": {
      const n = record.blocks.length
      const body = new Uint8Array(13 + 12 * n)
      const view = new DataView(body.buffer)
      body[0] = ALLOCATION
      view.setFloat64(1, record.time)
      view.setUint32(9, n)
      for (let i = 0; i < n; i++) {
        view.setFloat64(13 + 8 * i, record.blocks[i])
        view.setUint32(13 + 8 * n + 4 * i, record.counts?.[i] ?? 0)
      }
      return body
    }
    case "Checkpointed": {
      const pending = record.coverage?.pending ?? []
      const body = new Uint8Array(21 + 16 * pending.length)
      const view = new DataView(body.buffer)
      body[0] = CHECKPOINTED
      view.setFloat64(1, record.time)
      view.setFloat64(9, record.coverage?.nextBlockId ?? 0)
      view.setUint32(17, pending.length)
      pending.forEach(([from, to], i) => {
        view.setFloat64(21 + 16 * i, from)
        view.setFloat64(29 + 16 * i, to)
      })
      return body
    }
  }
}

/** Frames one record (format 2). @internal */
export const encodeRecord = (record: WalRecord): Uint8Array => {
  const body = encodeBody(record)
  const out = new Uint8Array(RECORD_HEADER + body.length)
  out.set(SYNC, 0)
  const view = new DataView(out.buffer)
  view.setUint32(8, body.length)
  out.set(body, RECORD_HEADER)
  view.setUint32(4, crc32(out.subarray(8)))
  return out
}

const decodeBody = (body: Uint8Array, version: 1 | 2): WalRecord | string => {
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength)
  if (body.length < 9) return "record too short"
  const kind = body[0]
  const n = view.getFloat64(1)
  if (kind === CHECKPOINTED) {
    if (version === 1) return { _tag: "Checkpointed", time: n, coverage: undefined }
    if (body.length < 21) return "checkpoint marker too short"
    const ranges = view.getUint32(17)
    if (body.length !== 21 + 16 * ranges) return "checkpoint marker of the wrong length"
    const pending: Array<readonly [number, number]> = []
    for (let i = 0; i < ranges; i++) pending.push([view.getFloat64(21 + 16 * i), view.getFloat64(29 + 16 * i)])
    return { _tag: "Checkpointed", time: n, coverage: { time: n, nextBlockId: view.getFloat64(9), pending } }
  }
  if (body.length < 13) return "record too short"
  if (kind === BLOCK) return { _tag: "Block", id: n, count: view.getUint32(9), data: body.subarray(13) }
  if (kind === ALLOCATION) {
    const count = view.getUint32(9)
    const width = version === 1 ? 8 : 12
    if (body.length !== 13 + width * count) return "allocation record of the wrong length"
    const blocks: Array<number> = []
    const counts: Array<number> = []
    for (let i = 0; i < count; i++) {
      blocks.push(view.getFloat64(13 + 8 * i))
      if (version === 2) counts.push(view.getUint32(13 + 8 * count + 4 * i))
    }
    return { _tag: "Allocation", time: n, blocks, counts: version === 2 ? counts : undefined }
  }
  return `unknown record kind ${kind}`
}

type Decoded = { readonly record: WalRecord; readonly offset: number; readonly length: number }

/** The format-2 record at `offset`, or why there is none. */
const recordAt = (bytes: Uint8Array, view: DataView, offset: number): Decoded | string => {
  const left = bytes.length - offset
  if (left < RECORD_HEADER) return "truncated record header"
  for (let i = 0; i < SYNC.length; i++) if (bytes[offset + i] !== SYNC[i]) return "no record starts here"
  const length = view.getUint32(offset + 8)
  if (left - RECORD_HEADER < length) return "truncated record"
  const end = offset + RECORD_HEADER + length
  if (crc32(bytes.subarray(offset + 8, end)) !== view.getUint32(offset + 4)) return "checksum mismatch"
  const record = decodeBody(bytes.subarray(offset + RECORD_HEADER, end), 2)
  return typeof record === "string" ? record : { record, offset, length: RECORD_HEADER + length }
}

/** The next offset after `from` where a valid format-2 record starts, or -1. */
const resync = (bytes: Uint8Array, view: DataView, from: number): number => {
  let p = from
  while ((p = bytes.indexOf(SYNC[0], p)) !== -1) {
    if (typeof recordAt(bytes, view, p) !== "string") return p
    p++
  }
  return -1
}

/** Decodes format-2 records from `start`, skipping damage by resynchronising. */
const decodeV2 = (
  bytes: Uint8Array,
  view: DataView,
  start: number,
  records: Array<Decoded>,
  damaged: Array<Damage>,
) => {
  let offset = start
  while (offset < bytes.length) {
    const decoded = recordAt(bytes, view, offset)
    if (typeof decoded !== "string") {
      records.push(decoded)
      offset += decoded.length
      continue
    }
    const next = resync(bytes, view, offset + 1)
    const end = next === -1 ? bytes.length : next
    damaged.push({ offset, bytes: end - offset, reason: decoded })
    offset = end
  }
}

/** Format 1 (no sync markers): records until the first short or corrupt one. */
const decodeV1 = (bytes: Uint8Array, view: DataView, records: Array<Decoded>, damaged: Array<Damage>) => {
  let offset = 0
  while (offset < bytes.length) {
    const stop = (reason: string) => void damaged.push({ offset, bytes: bytes.length - offset, reason })
    if (bytes.length - offset < V1_HEADER) return stop("truncated record header")
    const length = view.getUint32(offset)
    const checksum = view.getUint32(offset + 4)
    if (bytes.length - offset - V1_HEADER < length) return stop("truncated record")
    const body = bytes.subarray(offset + V1_HEADER, offset + V1_HEADER + length)
    if (crc32(body) !== checksum) return stop("checksum mismatch")
    const record = decodeBody(body, 1)
    if (typeof record === "string") return stop(record)
    records.push({ record, offset, length: V1_HEADER + length })
    offset += V1_HEADER + length
  }
}

/** A decoded segment. @internal */
export interface DecodedSegment {
  /** The segment's format; another than 1 or 2 means nothing was decoded. */
  readonly version: number
  readonly records: Array<Decoded>
  readonly damaged: Array<Damage>
}

/**
 * Decodes the records of one segment's bytes. Format 2: a damaged record (or header) is skipped
 * up to the next valid record. A segment without a readable header is format 2 when a valid
 * format-2 record is found in it, else format 1 (read up to its first damaged record).
 * @internal
 */
export const decodeSegment = (bytes: Uint8Array): DecodedSegment => {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const records: Array<Decoded> = []
  const damaged: Array<Damage> = []
  let magic = bytes.length >= MAGIC.length
  for (let i = 0; i < MAGIC.length && magic; i++) magic = bytes[i] === MAGIC[i]
  if (magic && bytes.length >= SEGMENT_HEADER) {
    const version = view.getUint32(8)
    if (crc32(bytes.subarray(0, 12)) === view.getUint32(12)) {
      if (version !== formatVersion) return { version, records, damaged }
    } else {
      damaged.push({ offset: 0, bytes: SEGMENT_HEADER, reason: "segment header checksum mismatch" })
    }
    decodeV2(bytes, view, SEGMENT_HEADER, records, damaged)
    return { version: formatVersion, records, damaged }
  }
  if (bytes.length === 0) return { version: formatVersion, records, damaged }
  const first = resync(bytes, view, 0)
  if (first !== -1 || bytes.length < SEGMENT_HEADER) {
    const start = first === -1 ? bytes.length : first
    damaged.push({ offset: 0, bytes: start, reason: "damaged segment header" })
    decodeV2(bytes, view, start, records, damaged)
    return { version: formatVersion, records, damaged }
  }
  decodeV1(bytes, view, records, damaged)
  return { version: 1, records, damaged }
}

/** Decodes the one record in `bytes` (read from a block's location), of either format. */
const decodeOne = (bytes: Uint8Array): WalRecord | string => {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  if (bytes[0] === SYNC[0]) {
    const decoded = recordAt(bytes, view, 0)
    return typeof decoded === "string" ? decoded : decoded.record
  }
  const records: Array<Decoded> = []
  const damaged: Array<Damage> = []
  decodeV1(bytes, view, records, damaged)
  return records[0]?.record ?? damaged[0]?.reason ?? "empty"
}

const segmentNumber = (name: string): number | undefined => {
  if (!name.startsWith(segmentPrefix)) return undefined
  const digits = name.slice(segmentPrefix.length)
  return /^\d+$/.test(digits) ? Number(digits) : undefined
}

const segmentName = (n: number): string => `${segmentPrefix}${String(n).padStart(10, "0")}`

/** What cleanup needs to know of a segment. */
interface SegmentInfo {
  readonly name: string
  readonly blocks: Array<number>
  /** Newest batch time an allocation or marker record of the segment concerns. */
  maxTime: number
}

/** Options of {@link open}. @internal */
export interface WalOptions {
  /** Start a new segment once the current one is this old (Spark's `rollingIntervalSecs`, 60 s). */
  readonly rollMillis: number
}

/** Spark's `spark.streaming.receiver.writeAheadLog.rollingIntervalSecs` default. @internal */
export const defaultRollMillis = 60_000

/** An open write-ahead log. @internal */
export interface WriteAheadLog {
  readonly directory: string
  /** What the directory held when it was opened. */
  readonly recovered: WalContents
  /** Appends a block of `count` records; returns once it is durable. */
  readonly appendBlock: (id: number, count: number, data: Uint8Array) => Effect.Effect<BlockLocation, WalError>
  /** Records that batch `time` holds `blocks`; returns once durable. */
  readonly appendAllocation: (
    time: number,
    blocks: ReadonlyArray<{ readonly id: number; readonly count: number }>,
  ) => Effect.Effect<void, WalError>
  /** Records that a graph checkpoint covering `coverage` was written. */
  readonly appendCheckpointed: (coverage: Coverage) => Effect.Effect<void, WalError>
  /**
   * Counts `ids` as allocated to `time` for cleanup, without a record: blocks a checkpoint
   * covers whose allocation record could not be read.
   */
  readonly settle: (ids: ReadonlyArray<number>, time: number) => void
  /** Reads one block back from its location. */
  readonly readBlock: (location: BlockLocation) => Effect.Effect<Uint8Array, WalError>
  /** Deletes the oldest segments whose every record concerns batches up to `time`. */
  readonly cleanup: (time: number) => Effect.Effect<ReadonlyArray<string>, WalError>
  /** Segment file names, oldest first. */
  readonly segments: Effect.Effect<ReadonlyArray<string>>
}

/**
 * Reads the log in `directory` (created if missing) and opens it for appending to a new
 * segment. The current segment is closed when `scope` closes.
 * @internal
 */
export const open = (
  directory: string,
  options: WalOptions,
): Effect.Effect<WriteAheadLog, WalError, FileSystem.FileSystem | Path.Path | Scope.Scope> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const outer = yield* Effect.scope
    const fail = (message: string) => (cause: unknown) =>
      new WalError({
        directory,
        message: `${message}: ${cause instanceof Error ? cause.message : String(cause)}`,
        cause,
      })
    const modes = yield* Permissions
    yield* Effect.mapError(
      makeDirectoryDurably(fs, path, directory, modes.directory),
      fail(`Cannot create the write-ahead log directory "${directory}"`),
    )
    const names = yield* Effect.mapError(
      fs.readDirectory(directory),
      fail(`Cannot list the write-ahead log directory "${directory}"`),
    )
    const numbered = names.flatMap((name) => {
      const n = segmentNumber(name)
      return n === undefined ? [] : [{ name, n }]
    }).sort((a, b) => a.n - b.n)

    // ---- read what is there ----
    const blocks: WalContents["blocks"] = new Map()
    const allocatedTo = new Map<number, number>()
    const allocatedCounts = new Map<number, number>()
    const damaged: Array<Damage & { segment: string }> = []
    const segments: Array<SegmentInfo> = []
    let checkpointed: number | undefined
    let coverage: Coverage | undefined
    for (const { name } of numbered) {
      const file = path.join(directory, name)
      const bytes = yield* Effect.mapError(fs.readFile(file), fail(`Cannot read write-ahead log segment "${file}"`))
      const decoded = decodeSegment(bytes)
      if (decoded.version !== 1 && decoded.version !== formatVersion) {
        return yield* new WalError({
          directory,
          message:
            `Cannot read write-ahead log segment "${file}": it was written in write-ahead log format ${decoded.version}, this build reads formats 1 and ${formatVersion}`,
        })
      }
      for (const d of decoded.damaged) damaged.push({ segment: name, ...d })
      const info: SegmentInfo = { name, blocks: [], maxTime: -Infinity }
      for (const { record, offset, length } of decoded.records) {
        if (record._tag === "Block") {
          blocks.set(record.id, { count: record.count, location: { segment: name, offset, length } })
          info.blocks.push(record.id)
        } else if (record._tag === "Allocation") {
          record.blocks.forEach((id, i) => {
            allocatedTo.set(id, record.time)
            if (record.counts !== undefined) allocatedCounts.set(id, record.counts[i])
          })
          info.maxTime = Math.max(info.maxTime, record.time)
        } else {
          if (checkpointed === undefined || record.time >= checkpointed) {
            checkpointed = record.time
            coverage = record.coverage
          }
          info.maxTime = Math.max(info.maxTime, record.time)
        }
      }
      segments.push(info)
    }
    const recovered: WalContents = {
      blocks,
      allocatedTo: new Map(allocatedTo),
      allocatedCounts,
      checkpointed,
      coverage,
      damaged,
    }

    // ---- appending ----
    const lock = yield* Semaphore.make(1)
    let nextSegment = numbered.length === 0 ? 0 : numbered[numbered.length - 1].n + 1
    let current:
      | {
        readonly info: SegmentInfo
        readonly file: FileSystem.File
        readonly scope: Scope.Closeable
        readonly opened: number
        size: number
      }
      | undefined

    const closeCurrent = Effect.suspend(() => {
      const c = current
      current = undefined
      return c === undefined ? Effect.void : Scope.close(c.scope, Exit.void)
    })
    yield* Scope.addFinalizer(outer, lock.withPermit(closeCurrent))

    const ensureSegment = Effect.gen(function* () {
      const now = yield* Clock.currentTimeMillis
      if (current !== undefined && now - current.opened < options.rollMillis) return current
      yield* closeCurrent
      const name = segmentName(nextSegment++)
      const scope = yield* Scope.make()
      // created exclusively, its header durable and its directory entry too before any record
      const header = segmentHeader()
      const file = yield* Scope.provide(fs.open(path.join(directory, name), { flag: "ax", mode: modes.file }), scope)
        .pipe(
          Effect.tap((file) => Effect.andThen(file.writeAll(header), file.sync)),
          Effect.tap(() => syncDirectory(fs, directory)),
          Effect.tapError(() => Scope.close(scope, Exit.void)),
          Effect.mapError(fail(`Cannot create write-ahead log segment "${name}" in "${directory}"`)),
        )
      const info: SegmentInfo = { name, blocks: [], maxTime: -Infinity }
      segments.push(info)
      current = { info, file, scope, opened: now, size: header.length }
      return current
    })

    /**
     * Appends one framed record and syncs, then updates the segment's bookkeeping (under the
     * lock, so cleanup never sees a segment without it); a failed write rolls the segment.
     */
    const append = (record: WalRecord, update: (info: SegmentInfo) => void): Effect.Effect<BlockLocation, WalError> =>
      lock.withPermit(Effect.gen(function* () {
        const segment = yield* ensureSegment
        const bytes = encodeRecord(record)
        const offset = segment.size
        const written = yield* Effect.exit(Effect.andThen(segment.file.writeAll(bytes), segment.file.sync))
        if (Exit.isFailure(written)) {
          yield* closeCurrent
          return yield* Effect.failCause(written.cause).pipe(
            Effect.mapError(fail(`Cannot append to write-ahead log segment "${segment.info.name}" in "${directory}"`)),
          )
        }
        segment.size += bytes.length
        update(segment.info)
        return { segment: segment.info.name, offset, length: bytes.length }
      }))

    const readBlock = (location: BlockLocation): Effect.Effect<Uint8Array, WalError> =>
      Effect.scoped(Effect.gen(function* () {
        const file = yield* fs.open(path.join(directory, location.segment), { flag: "r" })
        const buffer = new Uint8Array(location.length)
        let read = 0
        while (read < location.length) {
          const n = yield* file.read(buffer.subarray(read), { position: BigInt(location.offset + read) })
          if (n === 0) break
          read += n
        }
        const record = decodeOne(buffer.subarray(0, read))
        if (typeof record === "string" || record._tag !== "Block") {
          return yield* new WalError({
            directory,
            message:
              `Cannot read the block at ${location.offset} of write-ahead log segment "${location.segment}" in "${directory}": ${
                typeof record === "string" ? record : "not a block"
              }`,
          })
        }
        return record.data
      })).pipe(Effect.mapError((e) =>
        e instanceof WalError ? e : fail(`Cannot read write-ahead log segment "${location.segment}"`)(e)
      ))

    const cleanup = (time: number): Effect.Effect<ReadonlyArray<string>, WalError> =>
      lock.withPermit(Effect.gen(function* () {
        const removed: Array<string> = []
        while (segments.length > 0 && segments[0] !== current?.info) {
          const oldest = segments[0]
          const covered = oldest.maxTime <= time && oldest.blocks.every((id) => {
            const t = allocatedTo.get(id)
            return t !== undefined && t <= time
          })
          if (!covered) {
            break
          }
          yield* Effect.mapError(
            fs.remove(path.join(directory, oldest.name), { force: true }),
            fail(`Cannot delete write-ahead log segment "${oldest.name}" in "${directory}"`),
          )
          segments.shift()
          for (const id of oldest.blocks) {
            allocatedTo.delete(id)
          }
          removed.push(oldest.name)
        }
        return removed
      }))

    return {
      directory,
      recovered,
      appendBlock: (id, count, data) =>
        append({ _tag: "Block", id, count, data }, (info) => info.blocks.push(id)),
      appendAllocation: (time, blocks) =>
        Effect.asVoid(
          append(
            { _tag: "Allocation", time, blocks: blocks.map((b) => b.id), counts: blocks.map((b) => b.count) },
            (info) => {
              for (const b of blocks) allocatedTo.set(b.id, time)
              info.maxTime = Math.max(info.maxTime, time)
            },
          ),
        ),
      appendCheckpointed: (coverage) =>
        Effect.asVoid(append({ _tag: "Checkpointed", time: coverage.time, coverage }, (info) => {
          info.maxTime = Math.max(info.maxTime, coverage.time)
        })),
      settle: (ids, time) => {
        for (const id of ids) if (!allocatedTo.has(id)) allocatedTo.set(id, time)
      },
      readBlock,
      cleanup,
      segments: Effect.sync(() => segments.map((s) => s.name)),
    }
  })
