/**
 * Checkpoints: where a context with `ssc.checkpoint(directory)` keeps what it needs to recover
 * after a crash (keyed state, file-stream selections, the last checkpointed batch time).
 *
 * A {@link CheckpointStore} is a small byte store with atomic writes; {@link layerFileSystem}
 * keeps files in a directory on effect's `FileSystem` (temp file + rename), {@link layerMemory}
 * keeps them in memory (tests). The framing on top of any store — a header with a format
 * version, the payload length and a CRC-32, binary blobs beside the JSON part, delta
 * checkpoints building on a previous one, the newest few checkpoints kept (with what they build
 * on), and a fallback to the previous checkpoint when the newest (or a link of its chain) is
 * corrupt or truncated — lives here in {@link write} and {@link readLatest}, so every store
 * behaves the same.
 *
 * Without a `CheckpointStore` in the environment, a context uses
 * `layerFileSystem(ssc.checkpointDirectory)`, and then also guards the directory: writes are
 * durable (fsync, rename, fsync of the directory) and private ({@link Permissions}); a running
 * context holds the directory's lock (a second one fails with {@link CheckpointLockedError});
 * and a marker beside the directory lets `getOrCreate` refuse to start from nothing when the
 * checkpoints are gone ({@link CheckpointMissingError}).
 *
 * @example
 * ```ts
 * // Keep checkpoints in memory (e.g. in tests): provide the store to the program.
 * program.pipe(Effect.provide(Checkpoint.layerMemory))
 * ```
 *
 * @module
 */
import { Context, Data, Effect, FileSystem, Layer, Option, Path } from "effect"
import type { PlatformError } from "effect/PlatformError"
import * as zlib from "node:zlib"
import { makeDirectoryDurably, randomSuffix, writeFileDurably } from "./_internal/files.ts"
import type { TaggedErrorClass } from "./_internal/taggedError.ts"

/** @internal */
export const CheckpointErrorBase: TaggedErrorClass<"CheckpointError", {
  /** The checkpoint directory (or the memory store's label). */
  readonly location: string
  readonly message: string
  readonly cause?: unknown
}> = Data.TaggedError("CheckpointError")

/**
 * Reading or writing a checkpoint failed, a checkpoint could not be decoded (corrupt, written
 * by an incompatible format, or not matching the pipeline's Schemas), or the checkpoint
 * directory is not usable.
 *
 * @since 0.1.0
 * @category errors
 */
export class CheckpointError extends CheckpointErrorBase {}

/**
 * Who holds the lock of a checkpoint directory: written into its `.lock` file by the running
 * context.
 *
 * @since 0.1.0
 * @category models
 */
export interface LockOwner {
  /** The owner's process id. */
  readonly pid: number
  /** The owner's host name. */
  readonly host: string
  /** When the owner took the lock (ISO 8601). */
  readonly since: string
}

/** @internal */
export const CheckpointLockedErrorBase: TaggedErrorClass<"CheckpointLockedError", {
  readonly directory: string
  /** The lock file. */
  readonly lockFile: string
  readonly owner: LockOwner
}> = Data.TaggedError("CheckpointLockedError")

/**
 * Another running context (in this or another process) holds the checkpoint directory's lock:
 * two contexts on one directory would run every output twice and delete each other's
 * write-ahead log. Fails `start`.
 *
 * @since 0.1.0
 * @category errors
 */
export class CheckpointLockedError extends CheckpointLockedErrorBase {
  /** What holds the lock and how to free it. */
  override get message(): string {
    return `Cannot use checkpoint directory "${this.directory}": it is locked by process ${this.owner.pid} on host "${this.owner.host}" since ${this.owner.since}; stop that context first, or delete "${this.lockFile}" if that process is gone`
  }
}

/** @internal */
export const CheckpointMissingErrorBase: TaggedErrorClass<"CheckpointMissingError", {
  readonly directory: string
  /** What shows that checkpoints existed (the marker file beside the directory). */
  readonly evidence: string
}> = Data.TaggedError("CheckpointMissingError")

/**
 * `getOrCreate` found no checkpoint in a directory that held checkpoints before (the directory
 * was deleted or emptied): starting afresh would silently drop the recovered state. Pass
 * `{ allowFreshStart: true }` to `getOrCreate` to start from nothing anyway.
 *
 * @since 0.1.0
 * @category errors
 */
export class CheckpointMissingError extends CheckpointMissingErrorBase {
  /** Which directory lost its checkpoints and how to go on. */
  override get message(): string {
    return `Cannot recover from checkpoint directory "${this.directory}": it held checkpoints before (${this.evidence}) and now has none; restore it, or pass { allowFreshStart: true } to getOrCreate to start from nothing`
  }
}

/**
 * The permission bits of the files and directories written for checkpoints and the
 * write-ahead log (which holds the raw received data). Default: files `0o600`, directories
 * `0o700` (owner only); the process umask can only remove bits. Provide another value to share
 * them, e.g. with a group.
 *
 * @example
 * ```ts
 * program.pipe(Effect.provideService(Checkpoint.Permissions, { file: 0o640, directory: 0o750 }))
 * ```
 *
 * @since 0.1.0
 * @category services
 */
export const Permissions: Context.Reference<{ readonly file: number; readonly directory: number }> = Context
  .Reference<{ readonly file: number; readonly directory: number }>("effect-dstream/Checkpoint/Permissions", {
    defaultValue: () => ({ file: 0o600, directory: 0o700 }),
  })

/**
 * The operations a checkpoint store provides. Names are plain file names; `write` is atomic:
 * a reader sees the old bytes or the new ones, never a part.
 *
 * @since 0.1.0
 * @category models
 */
export interface CheckpointStoreShape {
  /** Where checkpoints go, for messages. */
  readonly location: string
  /** Stores `bytes` under `name`, atomically replacing what was there. */
  readonly write: (name: string, bytes: Uint8Array) => Effect.Effect<void, CheckpointError>
  /** The bytes stored under `name`, or `undefined`. */
  readonly read: (name: string) => Effect.Effect<Uint8Array | undefined, CheckpointError>
  /** The names stored, in no particular order. */
  readonly list: Effect.Effect<ReadonlyArray<string>, CheckpointError>
  /** Deletes `name`; a missing name is not an error. */
  readonly remove: (name: string) => Effect.Effect<void, CheckpointError>
}

/** @internal */
export const CheckpointStoreBase: Context.ServiceClass<
  CheckpointStore,
  "effect-dstream/CheckpointStore",
  CheckpointStoreShape
> = Context.Service<CheckpointStore, CheckpointStoreShape>()("effect-dstream/CheckpointStore")

/**
 * The checkpoint store service.
 *
 * @since 0.1.0
 * @category services
 */
export class CheckpointStore extends CheckpointStoreBase {}

/**
 * An in-memory store (each call makes a new, empty one).
 *
 * @example
 * ```ts
 * const store = yield* Checkpoint.makeMemory("test")
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeMemory = (location = "memory"): Effect.Effect<CheckpointStoreShape> =>
  Effect.sync(() => {
    const files = new Map<string, Uint8Array>()
    return {
      location,
      write: (name, bytes) => Effect.sync(() => void files.set(name, bytes.slice())),
      read: (name) => Effect.sync(() => files.get(name)?.slice()),
      list: Effect.sync(() => Array.from(files.keys())),
      remove: (name) => Effect.sync(() => void files.delete(name)),
    }
  })

/**
 * A layer with a fresh in-memory store.
 *
 * @example
 * ```ts
 * program.pipe(Effect.provide(Checkpoint.layerMemory))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerMemory: Layer.Layer<CheckpointStore> = Layer.effect(CheckpointStore)(makeMemory())

/**
 * A store keeping one file per name in `directory`, created if missing. Fails with a
 * `CheckpointError` when the directory cannot be created or written (checked once, by writing
 * and removing a probe file). A write is atomic and durable: a hidden temp file is written and
 * fsynced, renamed over the target, and the directory fsynced, so a crash never leaves a partial
 * checkpoint under its final name and a write that returned survives a power loss. Files are
 * created with {@link Permissions} (`0o600` by default), directories likewise (`0o700`). A write
 * into a directory that disappeared fails with a `CheckpointError` saying so.
 *
 * @example
 * ```ts
 * const store = yield* Checkpoint.makeFileSystem("checkpoint")
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeFileSystem = (
  directory: string,
): Effect.Effect<CheckpointStoreShape, CheckpointError, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const modes = yield* Permissions
    const dir = path.resolve(directory)
    const fail = (message: string) => (cause: PlatformError) =>
      new CheckpointError({ location: directory, message: `${message}: ${cause.message}`, cause })
    yield* makeDirectoryDurably(fs, path, dir, modes.directory).pipe(
      Effect.mapError(fail(`Cannot create the checkpoint directory "${directory}"`)),
    )
    const probe = path.join(dir, `.probe-${randomSuffix()}`)
    yield* fs.writeFile(probe, new Uint8Array([1]), { mode: modes.file }).pipe(
      Effect.andThen(fs.remove(probe)),
      Effect.mapError(fail(`Cannot write to the checkpoint directory "${directory}"`)),
    )
    /** A failed operation: says so when the whole directory is gone. */
    const failIn = (message: string) => (cause: PlatformError) =>
      Effect.flatMap(
        Effect.orElseSucceed(fs.exists(dir), () => true),
        (exists) =>
          Effect.fail(
            exists ? fail(message)(cause) : new CheckpointError({
              location: directory,
              message:
                `${message}: the checkpoint directory "${directory}" disappeared while the context was running (its checkpoints and write-ahead logs are gone)`,
              cause,
            }),
          ),
      )
    return {
      location: directory,
      write: (name, bytes) =>
        writeFileDurably(fs, path, path.join(dir, name), bytes, modes.file).pipe(
          Effect.catch(failIn(`Cannot write checkpoint "${name}" to "${directory}"`)),
        ),
      read: (name) =>
        fs.readFile(path.join(dir, name)).pipe(
          Effect.map((bytes): Uint8Array | undefined => bytes),
          Effect.catch((error) =>
            error.reason._tag === "NotFound"
              ? Effect.succeed(undefined)
              : Effect.fail(fail(`Cannot read checkpoint "${name}" in "${directory}"`)(error))
          ),
        ),
      list: fs.readDirectory(dir).pipe(
        Effect.map((names) => names.filter((n) => !n.startsWith("."))),
        Effect.catch(failIn(`Cannot list the checkpoint directory "${directory}"`)),
      ),
      remove: (name) =>
        fs.remove(path.join(dir, name), { force: true }).pipe(
          Effect.catch(failIn(`Cannot remove checkpoint "${name}" in "${directory}"`)),
        ),
    }
  })

/**
 * A layer with a file-system store in `directory` (see {@link makeFileSystem}).
 *
 * @example
 * ```ts
 * program.pipe(Effect.provide(Checkpoint.layerFileSystem("checkpoint")), Effect.provide(NodeServices.layer))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerFileSystem = (
  directory: string,
): Layer.Layer<CheckpointStore, CheckpointError, FileSystem.FileSystem | Path.Path> =>
  Layer.effect(CheckpointStore)(makeFileSystem(directory))

// ---- framing ----------------------------------------------------------------------------------

/**
 * The checkpoint format this build writes. Format 2 (binary: a JSON part plus binary blobs,
 * and delta checkpoints building on a previous one); format 1 (all JSON) is still read.
 *
 * @since 0.1.0
 * @category constants
 */
export const formatVersion = 2

/** The formats this build reads. */
const readableVersions: ReadonlyArray<number> = [1, 2]

/**
 * How many checkpoints are kept by default as recovery points (older ones are removed after a
 * write, unless a kept delta checkpoint still builds on them).
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultKeep = 3

const magic = "EFFECT-DSTREAM-CHECKPOINT"
const prefix = "checkpoint-"
/** Marks a binary blob in the JSON part of a format-2 checkpoint. */
const blobKey = "$dstreamBlob"

/**
 * The file name of the checkpoint of batch time `time`.
 *
 * @since 0.1.0
 * @category utils
 */
export const fileName = (time: number): string => `${prefix}${time}`

const timeOf = (name: string): number | undefined => {
  if (!name.startsWith(prefix)) return undefined
  const digits = name.slice(prefix.length)
  return /^\d+$/.test(digits) ? Number(digits) : undefined
}

/**
 * One decoded checkpoint: the batch time it was taken after and its payload.
 *
 * @since 0.1.0
 * @category models
 */
export interface Checkpoint {
  /** Batch time in epoch milliseconds. */
  readonly time: number
  /** The payload, as written (JSON values; `Uint8Array`s where binary blobs were written). */
  readonly payload: unknown
  /**
   * For a delta checkpoint: the checkpoints it builds on, oldest (a full one) first. Absent for a
   * full checkpoint.
   */
  readonly chain?: ReadonlyArray<{ readonly time: number; readonly payload: unknown }>
}

/**
 * What the header of checkpoint bytes says (see {@link inspect}).
 *
 * @since 0.1.0
 * @category models
 */
export interface Header {
  /** The format version. */
  readonly version: number
  /** For a delta checkpoint, the time of the checkpoint it builds on. */
  readonly previous: number | undefined
}

/**
 * Frames `payload` as checkpoint bytes (format 2): a header line with the format version,
 * body length and CRC-32, then the body: the length of the JSON part (u32), the JSON part
 * (`previous`, blob lengths, the payload with every `Uint8Array` replaced by a reference), then
 * the blobs. `previous` marks a delta checkpoint building on the checkpoint of that time.
 *
 * @since 0.1.0
 * @category encoding
 */
export const encode = (payload: unknown, previous?: number | undefined): Uint8Array => {
  const blobs: Array<Uint8Array> = []
  const json = JSON.stringify(payload, (_key, value) => {
    if (value instanceof Uint8Array) {
      blobs.push(value)
      return { [blobKey]: blobs.length - 1 }
    }
    return value
  })
  const meta = new TextEncoder().encode(
    `{"previous":${previous === undefined ? "null" : previous},"blobs":[${
      blobs.map((b) => b.length).join(",")
    }],"payload":${json ?? "null"}}`,
  )
  let size = 4 + meta.length
  for (const b of blobs) size += b.length
  const body = new Uint8Array(size)
  new DataView(body.buffer).setUint32(0, meta.length, true)
  body.set(meta, 4)
  let at = 4 + meta.length
  for (const b of blobs) {
    body.set(b, at)
    at += b.length
  }
  const header = new TextEncoder().encode(`${magic} ${formatVersion} ${body.length} ${crc32(body).toString(16)}\n`)
  const out = new Uint8Array(header.length + body.length)
  out.set(header, 0)
  out.set(body, header.length)
  return out
}

/** Why a checkpoint could not be decoded; `corrupt` ones are skipped in favour of older ones. */
type DecodeResult =
  | { readonly _tag: "ok"; readonly payload: unknown; readonly previous: number | undefined }
  | { readonly _tag: "corrupt"; readonly reason: string }
  | { readonly _tag: "incompatible"; readonly reason: string }

const readHeader = (
  bytes: Uint8Array,
): { readonly version: number; readonly header: ReadonlyArray<string>; readonly newline: number } | string => {
  const newline = bytes.indexOf(10)
  if (newline < 0 || newline > 200) return "no header"
  const header = new TextDecoder().decode(bytes.subarray(0, newline)).split(" ")
  if (header.length !== 4 || header[0] !== magic) return "bad header"
  return { version: Number(header[1]), header, newline }
}

const decodeBytes = (bytes: Uint8Array): DecodeResult => {
  const head = readHeader(bytes)
  if (typeof head === "string") return { _tag: "corrupt", reason: head }
  const { header, newline, version } = head
  if (!readableVersions.includes(version)) {
    return {
      _tag: "incompatible",
      reason: `it was written in checkpoint format ${header[1]}, this build reads format ${
        readableVersions.join(" or ")
      }`,
    }
  }
  const length = Number(header[2])
  const body = bytes.subarray(newline + 1)
  if (body.length !== length) {
    return { _tag: "corrupt", reason: `truncated: ${body.length} of ${length} payload bytes` }
  }
  if (crc32(body).toString(16) !== header[3]) return { _tag: "corrupt", reason: "checksum mismatch" }
  if (version === 1) {
    try {
      return { _tag: "ok", payload: JSON.parse(new TextDecoder().decode(body)), previous: undefined }
    } catch (cause) {
      return { _tag: "corrupt", reason: `invalid JSON: ${String(cause)}` }
    }
  }
  try {
    const metaLength = new DataView(body.buffer, body.byteOffset, body.length).getUint32(0, true)
    const meta = JSON.parse(new TextDecoder().decode(body.subarray(4, 4 + metaLength))) as {
      previous: number | null
      blobs: Array<number>
      payload: unknown
    }
    const blobs: Array<Uint8Array> = []
    let at = 4 + metaLength
    for (const n of meta.blobs) {
      blobs.push(body.subarray(at, at + n))
      at += n
    }
    if (at !== body.length) return { _tag: "corrupt", reason: `blob lengths do not match the body length` }
    const payload = revive(meta.payload, blobs)
    return { _tag: "ok", payload, previous: meta.previous ?? undefined }
  } catch (cause) {
    return { _tag: "corrupt", reason: `malformed body: ${String(cause)}` }
  }
}

/** Puts the blobs back where the JSON part references them. */
const revive = (value: unknown, blobs: ReadonlyArray<Uint8Array>): unknown => {
  if (typeof value !== "object" || value === null) return value
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) value[i] = revive(value[i], blobs)
    return value
  }
  const record = value as Record<string, unknown>
  const ref = record[blobKey]
  if (typeof ref === "number" && Object.keys(record).length === 1) {
    const blob = blobs[ref]
    if (blob === undefined) throw new Error(`missing blob ${ref}`)
    return blob
  }
  for (const k of Object.keys(record)) record[k] = revive(record[k], blobs)
  return record
}

/**
 * The header of checkpoint bytes: its format version and, for a delta checkpoint, the time of
 * the checkpoint it builds on. Fails with a `CheckpointError` when the bytes are not a readable
 * checkpoint.
 *
 * @example
 * ```ts
 * const header = yield* Checkpoint.inspect(bytes)
 * ```
 *
 * @since 0.1.0
 * @category reading
 */
export const inspect = (bytes: Uint8Array): Effect.Effect<Header, CheckpointError> =>
  Effect.suspend(() => {
    const decoded = decodeBytes(bytes)
    if (decoded._tag !== "ok") {
      return Effect.fail(
        new CheckpointError({ location: "bytes", message: `Cannot read checkpoint: ${decoded.reason}` }),
      )
    }
    const head = readHeader(bytes) as { readonly version: number }
    return Effect.succeed({ version: head.version, previous: decoded.previous })
  })

/**
 * The base (full) checkpoint each checkpoint written through a store builds on, as far as this
 * process knows: what removal must keep.
 */
const basesOf = new WeakMap<CheckpointStoreShape, Map<number, number>>()

const basesFor = (store: CheckpointStoreShape): Map<number, number> => {
  let bases = basesOf.get(store)
  if (bases === undefined) basesOf.set(store, bases = new Map())
  return bases
}

/**
 * Writes the checkpoint of batch time `time` and removes old ones: the newest `keep` stay as
 * recovery points, with every checkpoint they build on. `previous` makes it a delta checkpoint
 * building on the checkpoint of that time (whose payload, and so on back to a full checkpoint,
 * recovery reads first); then `payload` holds what changed.
 *
 * @example
 * ```ts
 * yield* Checkpoint.write(store, 5000, { counts: [["a", 1]] })
 * ```
 *
 * @since 0.1.0
 * @category writing
 */
export const write = (
  store: CheckpointStoreShape,
  time: number,
  payload: unknown,
  keep: number = defaultKeep,
  previous?: number | undefined,
): Effect.Effect<void, CheckpointError> =>
  Effect.gen(function* () {
    let bytes: Uint8Array
    try {
      bytes = encode(payload, previous)
    } catch (cause) {
      return yield* new CheckpointError({
        location: store.location,
        message: `Cannot encode the checkpoint of ${time} ms as JSON: ${
          String(cause)
        }; give the stateful operator Schemas for its keys and states`,
        cause,
      })
    }
    yield* store.write(fileName(time), bytes)
    const bases = basesFor(store)
    bases.set(time, previous === undefined ? time : (bases.get(previous) ?? -Infinity))
    const times = yield* listTimes(store)
    const points = times.slice(0, Math.max(keep, 1))
    let needed = Infinity
    for (const t of points) needed = Math.min(needed, bases.get(t) ?? -Infinity)
    for (const old of times) {
      if (old < needed) {
        yield* store.remove(fileName(old))
        bases.delete(old)
      }
    }
  })

/** Records which checkpoints `checkpoint` builds on (what removal must keep). @internal */
export const noteChain = (store: CheckpointStoreShape, checkpoint: Checkpoint): void => {
  const bases = basesFor(store)
  const base = checkpoint.chain !== undefined && checkpoint.chain.length > 0
    ? checkpoint.chain[0].time
    : checkpoint.time
  bases.set(checkpoint.time, base)
  for (const link of checkpoint.chain ?? []) bases.set(link.time, base)
}

/** Checkpoint times in the store, newest first. */
const listTimes = (store: CheckpointStoreShape): Effect.Effect<Array<number>, CheckpointError> =>
  Effect.map(store.list, (names) => {
    const times: Array<number> = []
    for (const n of names) {
      const t = timeOf(n)
      if (t !== undefined) times.push(t)
    }
    return times.sort((a, b) => b - a)
  })

/**
 * The newest readable checkpoint, or `None` when the store holds none. A delta checkpoint comes
 * with the chain of checkpoints it builds on. A corrupt or truncated checkpoint (or one whose
 * chain has a corrupt or missing link) is skipped with a logged warning in favour of the
 * previous one; when every checkpoint is corrupt, or one was written in a format this build does
 * not read, it fails with a `CheckpointError`.
 *
 * @example
 * ```ts
 * const latest = yield* Checkpoint.readLatest(store)
 * ```
 *
 * @since 0.1.0
 * @category reading
 */
export const readLatest = (store: CheckpointStoreShape): Effect.Effect<Option.Option<Checkpoint>, CheckpointError> =>
  Effect.gen(function* () {
    const times = yield* listTimes(store)
    const problems: Array<string> = []
    const cache = new Map<number, DecodeResult | undefined>()
    const load = (time: number) =>
      Effect.suspend(() => {
        if (cache.has(time)) return Effect.succeed(cache.get(time))
        return Effect.map(store.read(fileName(time)), (bytes) => {
          const decoded = bytes === undefined ? undefined : decodeBytes(bytes)
          cache.set(time, decoded)
          return decoded
        })
      })
    for (const time of times) {
      const decoded = yield* load(time)
      if (decoded === undefined) continue
      if (decoded._tag === "incompatible") {
        return yield* new CheckpointError({
          location: store.location,
          message: `Cannot read checkpoint ${fileName(time)} in "${store.location}": ${decoded.reason}`,
        })
      }
      let reason = decoded._tag === "corrupt" ? decoded.reason : undefined
      const chain: Array<{ readonly time: number; readonly payload: unknown }> = []
      if (decoded._tag === "ok") {
        let previous = decoded.previous
        while (previous !== undefined && reason === undefined) {
          const link = yield* load(previous)
          if (link === undefined) reason = `the checkpoint it builds on, ${fileName(previous)}, is missing`
          else if (link._tag !== "ok") {
            reason = `the checkpoint it builds on, ${fileName(previous)}, is unreadable (${link.reason})`
          } else {
            chain.unshift({ time: previous, payload: link.payload })
            previous = link.previous
          }
        }
      }
      if (decoded._tag === "ok" && reason === undefined) {
        if (problems.length > 0) {
          yield* Effect.logWarning(`Recovering from checkpoint ${fileName(time)} in "${store.location}" instead`)
        }
        const checkpoint: Checkpoint = chain.length > 0
          ? { time, payload: decoded.payload, chain }
          : { time, payload: decoded.payload }
        noteChain(store, checkpoint)
        return Option.some(checkpoint)
      }
      problems.push(`${fileName(time)}: ${reason}`)
      yield* Effect.logWarning(
        `Checkpoint ${
          fileName(time)
        } in "${store.location}" is corrupt (${reason}); falling back to the previous checkpoint`,
      )
    }
    if (problems.length > 0) {
      return yield* new CheckpointError({
        location: store.location,
        message: `Cannot recover from "${store.location}": every checkpoint is corrupt (${problems.join("; ")})`,
      })
    }
    return Option.none()
  })

// ---- internal ---------------------------------------------------------------------------------

/** CRC-32 (IEEE), unsigned: `node:zlib`'s native one (Node 22.2+, Deno, Bun). @internal */
export const crc32 = (bytes: Uint8Array): number => zlib.crc32(bytes)
