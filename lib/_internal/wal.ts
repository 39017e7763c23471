/**
 * The receivers' write-ahead log (Spark's `FileBasedWriteAheadLog` for received blocks and the
 * `ReceivedBlockTracker` log in one): an append-only log of segment files
 * `log-<n>` in one directory (`<checkpointDir>/receivedData/<streamId>/`), on effect's
 * `FileSystem`.
 *
 * Every record is framed as `[body length: u32][CRC-32 of body: u32][body]` and the segment is
 * synced (fsync) before an append returns, so a record counts as written only once it is
 * durable. Bodies: a block (`1`, block id, the serialized records), an allocation (`2`, batch
 * time, block ids) and a checkpoint marker (`3`, batch time: a graph checkpoint covering every
 * batch up to it was written).
 *
 * A segment is rolled after the rolling interval (and after a failed write, so a partial record
 * is only ever at the end of a segment); a reopened log always starts a new segment. Reading
 * stops at the first short or corrupt record of a segment (the tail a crash mid-append leaves)
 * and goes on with the next segment. `cleanup(t)` deletes the oldest segments whose blocks are
 * all allocated to batches up to `t` and whose records all concern batches up to `t`.
 * @internal
 */
import { Clock, Data, Effect, Exit, FileSystem, Path, Scope, Semaphore } from "effect"
import { crc32 } from "../Checkpoint.ts"

/**
 * Writing or reading the write-ahead log failed.
 * @internal
 */
export class WalError extends Data.TaggedError("WalError")<{
  readonly directory: string
  readonly message: string
  readonly cause?: unknown
}> {}

/** One decoded log record. @internal */
export type WalRecord =
  | { readonly _tag: "Block"; readonly id: number; readonly count: number; readonly data: Uint8Array }
  | { readonly _tag: "Allocation"; readonly time: number; readonly blocks: ReadonlyArray<number> }
  | { readonly _tag: "Checkpointed"; readonly time: number }

/** Where a block's record is: for reading it back without keeping it in memory. @internal */
export interface BlockLocation {
  readonly segment: string
  readonly offset: number
  readonly length: number
}

/** What a log directory holds, as read at open. @internal */
export interface WalContents {
  /** Blocks by id, in log order: their record count and location (the data stays on disk). */
  readonly blocks: Map<number, { readonly count: number; readonly location: BlockLocation }>
  /** The last allocation time recorded for each block. */
  readonly allocatedTo: Map<number, number>
  /** The newest checkpoint marker, if any. */
  readonly checkpointed: number | undefined
  /** Bytes ignored at the end of segments (a torn last record), by segment file name. */
  readonly ignoredTails: ReadonlyArray<{ readonly segment: string; readonly bytes: number; readonly reason: string }>
}

const HEADER = 8
const BLOCK = 1
const ALLOCATION = 2
const CHECKPOINTED = 3
const segmentPrefix = "log-"

/** Frames one record. @internal */
export const encodeRecord = (record: WalRecord): Uint8Array => {
  let body: Uint8Array
  switch (record._tag) {
    case "Block": {
      body = new Uint8Array(13 + record.data.length)
      const view = new DataView(body.buffer)
      body[0] = BLOCK
      view.setFloat64(1, record.id)
      view.setUint32(9, record.count)
      body.set(record.data, 13)
      break
    }
    case "Allocation": {
      body = new Uint8Array(13 + 8 * record.blocks.length)
      const view = new DataView(body.buffer)
      body[0] = ALLOCATION
      view.setFloat64(1, record.time)
      view.setUint32(9, record.blocks.length)
      for (let i = 0; i < record.blocks.length; i++) view.setFloat64(13 + 8 * i, record.blocks[i])
      break
    }
    case "Checkpointed": {
      body = new Uint8Array(9)
      body[0] = CHECKPOINTED
      new DataView(body.buffer).setFloat64(1, record.time)
      break
    }
  }
  const out = new Uint8Array(HEADER + body.length)
  const view = new DataView(out.buffer)
  view.setUint32(0, body.length)
  view.setUint32(4, crc32(body))
  out.set(body, HEADER)
  return out
}

const decodeBody = (body: Uint8Array): WalRecord | string => {
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength)
  if (body.length < 9) return "record too short"
  const kind = body[0]
  const n = view.getFloat64(1)
  if (kind === CHECKPOINTED) return { _tag: "Checkpointed", time: n }
  if (body.length < 13) return "record too short"
  if (kind === BLOCK) return { _tag: "Block", id: n, count: view.getUint32(9), data: body.subarray(13) }
  if (kind === ALLOCATION) {
    const count = view.getUint32(9)
    if (body.length !== 13 + 8 * count) return "allocation record of the wrong length"
    const blocks: Array<number> = []
    for (let i = 0; i < count; i++) blocks.push(view.getFloat64(13 + 8 * i))
    return { _tag: "Allocation", time: n, blocks }
  }
  return `unknown record kind ${kind}`
}

/**
 * Decodes the records of one segment's bytes, stopping at the first short or corrupt record.
 * @internal
 */
export const decodeSegment = (
  bytes: Uint8Array,
): {
  readonly records: Array<{ readonly record: WalRecord; readonly offset: number; readonly length: number }>
  readonly tail: { readonly bytes: number; readonly reason: string } | undefined
} => {
  const records: Array<{ record: WalRecord; offset: number; length: number }> = []
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  let offset = 0
  while (offset < bytes.length) {
    const stop = (reason: string) => ({ records, tail: { bytes: bytes.length - offset, reason } })
    if (bytes.length - offset < HEADER) return stop("truncated record header")
    const length = view.getUint32(offset)
    const checksum = view.getUint32(offset + 4)
    if (bytes.length - offset - HEADER < length) return stop("truncated record")
    const body = bytes.subarray(offset + HEADER, offset + HEADER + length)
    if (crc32(body) !== checksum) return stop("checksum mismatch")
    const record = decodeBody(body)
    if (typeof record === "string") return stop(record)
    records.push({ record, offset, length: HEADER + length })
    offset += HEADER + length
  }
  return { records, tail: undefined }
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
  readonly appendAllocation: (time: number, blocks: ReadonlyArray<number>) => Effect.Effect<void, WalError>
  /** Records that a checkpoint covering batch `time` was written. */
  readonly appendCheckpointed: (time: number) => Effect.Effect<void, WalError>
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
    yield* Effect.mapError(
      fs.makeDirectory(directory, { recursive: true }),
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
    const ignoredTails: Array<{ segment: string; bytes: number; reason: string }> = []
    const segments: Array<SegmentInfo> = []
    let checkpointed: number | undefined
    for (const { name } of numbered) {
      const file = path.join(directory, name)
      const bytes = yield* Effect.mapError(fs.readFile(file), fail(`Cannot read write-ahead log segment "${file}"`))
      const decoded = decodeSegment(bytes)
      if (decoded.tail !== undefined) ignoredTails.push({ segment: name, ...decoded.tail })
      const info: SegmentInfo = { name, blocks: [], maxTime: -Infinity }
      for (const { record, offset, length } of decoded.records) {
        if (record._tag === "Block") {
          blocks.set(record.id, { count: record.count, location: { segment: name, offset, length } })
          info.blocks.push(record.id)
        } else if (record._tag === "Allocation") {
          for (const id of record.blocks) allocatedTo.set(id, record.time)
          info.maxTime = Math.max(info.maxTime, record.time)
        } else {
          checkpointed = checkpointed === undefined ? record.time : Math.max(checkpointed, record.time)
          info.maxTime = Math.max(info.maxTime, record.time)
        }
      }
      segments.push(info)
    }
    const recovered: WalContents = { blocks, allocatedTo, checkpointed, ignoredTails }

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
      const file = yield* Scope.provide(fs.open(path.join(directory, name), { flag: "a" }), scope).pipe(
        Effect.tapError(() => Scope.close(scope, Exit.void)),
        Effect.mapError(fail(`Cannot open write-ahead log segment "${name}" in "${directory}"`)),
      )
      const info: SegmentInfo = { name, blocks: [], maxTime: -Infinity }
      segments.push(info)
      current = { info, file, scope, opened: now, size: 0 }
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
        const decoded = decodeSegment(buffer.subarray(0, read))
        const first = decoded.records[0]?.record
        if (first === undefined || first._tag !== "Block") {
          return yield* new WalError({
            directory,
            message:
              `Cannot read the block at ${location.offset} of write-ahead log segment "${location.segment}" in "${directory}": ${
                decoded.tail?.reason ?? "not a block"
              }`,
          })
        }
        return first.data
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
      appendAllocation: (time, ids) =>
        Effect.asVoid(append({ _tag: "Allocation", time, blocks: ids }, (info) => {
          for (const id of ids) allocatedTo.set(id, time)
          info.maxTime = Math.max(info.maxTime, time)
        })),
      appendCheckpointed: (time) =>
        Effect.asVoid(append({ _tag: "Checkpointed", time }, (info) => {
          info.maxTime = Math.max(info.maxTime, time)
        })),
      readBlock,
      cleanup,
      segments: Effect.sync(() => segments.map((s) => s.name)),
    }
  })
