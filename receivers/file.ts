/**
 * File-stream source logic: Spark's `FileInputDStream` (used by `fileStream`,
 * `textFileStream` and `binaryRecordsStream`). There is no receiver: once per batch the
 * engine asks a {@link FileSelector} which files are new for the batch time, then reads them
 * with {@link readTextLines} or {@link readFileBytes}; {@link FileInputNode} is that graph input.
 *
 * Which files are new for batch time `T` (Spark's `isNewFile`): a file directly inside one of
 * the monitored directories that passes the filter, is a regular file, has a modification time
 * in `(threshold, T]` with `threshold = max(initialModTimeIgnoreThreshold, T − durationToRemember)`,
 * and was not selected in a remembered batch. Files are attributed by modification time, each
 * at most once while its selection is remembered; changes after selection are ignored.
 *
 * Bad files: the engine reads a batch's files one by one ({@link readEachFile}); a file that
 * cannot be read (permission denied, gone, a directory by now) is reported and skipped, the
 * batch's other files are read. A text file that is not valid UTF-8 is skipped as a whole
 * ({@link decodeTextLines} reports where its first invalid byte is).
 *
 * @module
 */
import { Clock, type Context, Data, Duration, Effect, type Exit, FileSystem, Option, Path, Semaphore } from "effect"
import type { Scope } from "effect"
import type { PlatformError } from "effect/PlatformError"
import { describeCause, MalformedInputError } from "../lib/Errors.ts"
import {
  type Batch,
  type InputCheckpoint,
  InputNode,
  type InputRuntime,
  type NodeContext,
  type NodeEnv,
} from "../lib/_internal/node.ts"

/**
 * Reading the monitored directories or a selected file failed. `path` names the directory or
 * file; `cause` is the underlying error (usually a `PlatformError`).
 *
 * @since 0.1.0
 * @category errors
 */
export class FileStreamError extends Data.TaggedError("FileStreamError")<{
  /** The directory, pattern or file the operation was about. */
  readonly path: string
  /** What was being done, e.g. `"Could not list directory"`. */
  readonly description: string
  readonly cause: unknown
}> {
  override get message(): string {
    return `${this.description} ${this.path}: ${describeCause(this.cause)}`
  }
}

/**
 * Options of a file stream (Spark's `fileStream(directory, filter, newFilesOnly)` plus
 * `spark.streaming.fileStream.minRememberDuration`).
 *
 * @since 0.1.0
 * @category models
 */
export interface FileStreamOptions {
  /**
   * Called with the file's full path; `false` skips the file. Default: {@link defaultFilter}
   * (ignore files whose name starts with `"."`).
   */
  readonly filter?: (path: string) => boolean
  /**
   * `true` (default): ignore files modified at or before the time the stream started.
   * `false`: files already in the directory are picked up if they lie in the remember window.
   */
  readonly newFilesOnly?: boolean
  /** Minimum time selected files are remembered. Default: 60 seconds (Spark's default). */
  readonly minRememberDuration?: Duration.Input
}

/**
 * One remembered batch: its time and the files selected for it (checkpoint data).
 *
 * @since 0.1.0
 * @category models
 */
export interface FileSelection {
  readonly time: number
  readonly files: ReadonlyArray<string>
}

/**
 * The contents of one file, as returned by {@link readFileBytes}.
 *
 * @since 0.1.0
 * @category models
 */
export interface FileBytes {
  readonly path: string
  readonly bytes: Uint8Array
}

/**
 * Spark's `FileInputDStream.defaultFilter`: rejects files whose name (last path segment)
 * starts with `"."`.
 *
 * @since 0.1.0
 * @category filters
 */
export const defaultFilter = (path: string): boolean => !baseName(path).startsWith(".")

/**
 * Spark's default remember window for file streams (`spark.streaming.minRememberDuration`).
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultMinRememberDuration: Duration.Duration = Duration.seconds(60)

/**
 * Spark's `FileInputDStream.calculateNumBatchesToRemember` times the batch interval:
 * `batch × ceil(minRememberDuration / batch)`.
 *
 * @since 0.1.0
 * @category utils
 */
export const durationToRememberMillis = (batchIntervalMillis: number, minRememberMillis: number): number =>
  batchIntervalMillis * Math.ceil(minRememberMillis / batchIntervalMillis)

/**
 * Spark's warning for a selected file that turned out empty.
 *
 * @since 0.1.0
 * @category constants
 */
export const emptyFileWarning = (file: string): string =>
  `File ${file} has no data in it. Spark Streaming can only ingest files that have been ` +
  `"moved" to the directory assigned to the file stream. Refer to the streaming programming ` +
  `guide for more details.`

/**
 * Decides, once per batch, which files of a monitored directory (or glob pattern of
 * directories) are new for the batch, and remembers the selections of the last
 * `durationToRemember` milliseconds so that each file is selected once.
 *
 * Not safe for concurrent `select` calls: the engine calls it once per batch, in order.
 *
 * @since 0.1.0
 * @category constructors
 */
export class FileSelector {
  /** `batch × ceil(minRememberDuration / batch)`; also the DStream's minimum remember duration. */
  readonly durationToRemember: number
  private readonly filter: (path: string) => boolean
  private readonly newFilesOnly: boolean
  private initialThreshold: number | undefined = undefined
  /** batch time -> files selected for it (Spark's `batchTimeToSelectedFiles`). */
  private readonly selections = new Map<number, ReadonlyArray<string>>()
  /** How long selections are kept: `durationToRemember`, or longer (see {@link retain}). */
  private keepMillis: number
  /** Union of the remembered selections (Spark's `recentlySelectedFiles`). */
  private recentlySelected = new Set<string>()
  private missingWarned = false

  constructor(
    readonly directory: string,
    readonly batchIntervalMillis: number,
    options?: FileStreamOptions,
  ) {
    if (!(batchIntervalMillis > 0) || !Number.isFinite(batchIntervalMillis)) {
      throw new RangeError(`Batch interval must be a positive number of milliseconds, got ${batchIntervalMillis}`)
    }
    const minRemember = Duration.toMillis(options?.minRememberDuration ?? defaultMinRememberDuration)
    if (!(minRemember >= 0)) {
      throw new RangeError(`minRememberDuration must not be negative, got ${minRemember} ms`)
    }
    this.durationToRemember = durationToRememberMillis(batchIntervalMillis, minRemember)
    this.keepMillis = this.durationToRemember
    this.filter = options?.filter ?? defaultFilter
    this.newFilesOnly = options?.newFilesOnly ?? true
  }

  /**
   * Called once when the stream starts, with the clock time (ms): sets
   * initialModTimeIgnoreThreshold (= now if newFilesOnly, else 0). When recovering from a
   * checkpoint, pass the original start time to keep Spark's behaviour (the threshold is part
   * of the serialized DStream there). If `init` was never called, the first `select` calls it
   * with `Clock.currentTimeMillis`.
   */
  init(nowMillis: number): void {
    this.initialThreshold = this.newFilesOnly ? nowMillis : 0
  }

  /**
   * Keeps selections (and so {@link snapshot}s) for at least `millis`, not only
   * `durationToRemember`: the stream's remember duration, which windows raise, so that a
   * checkpoint holds the file list of every batch a recovered window reads (Spark clears
   * `batchTimeToSelectedFiles` by the stream's `rememberDuration`). Which files are new is
   * still decided with `durationToRemember`.
   */
  retain(millis: number): void {
    this.keepMillis = Math.max(this.durationToRemember, millis)
  }

  /** The initial ignore threshold (`undefined` before `init` / the first `select`). */
  get initialModTimeIgnoreThreshold(): number | undefined {
    return this.initialThreshold
  }

  /**
   * The files that are new for batch time T, per Spark's isNewFile rules; records them as
   * selected for T; forgets selections older than the remember window.
   *
   * Files are returned as absolute paths, ordered by modification time, then path. A missing
   * directory (or a pattern matching no directory) yields no files and logs
   * `No directory to scan: <directory>` once, until a directory is found again.
   */
  select(
    batchTime: number,
  ): Effect.Effect<ReadonlyArray<string>, FileStreamError, FileSystem.FileSystem | Path.Path> {
    return Effect.gen({ self: this }, function* () {
      const fs = yield* FileSystem.FileSystem
      const path = yield* Path.Path
      const started = yield* Clock.currentTimeMillis
      if (this.initialThreshold === undefined) this.init(started)
      const threshold = Math.max(this.initialThreshold ?? 0, batchTime - this.durationToRemember)

      const directories = yield* this.findDirectories(fs, path)
      const candidates: Array<string> = []
      for (const dir of directories) {
        const names = yield* fs.readDirectory(dir).pipe(
          Effect.map((names): ReadonlyArray<string> | undefined => names),
          Effect.catch((error) =>
            isMissing(error)
              ? Effect.as(Effect.logWarning(`No directory to scan: ${dir}: ${error.message}`), undefined)
              : Effect.fail(
                new FileStreamError({ path: dir, description: "Could not list directory", cause: error }),
              )
          ),
        )
        if (names === undefined) continue
        for (let i = 0; i < names.length; i++) {
          const file = path.join(dir, names[i])
          // Already selected in a remembered batch: rejected whatever its mod time.
          if (this.recentlySelected.has(file)) continue
          let accepted: boolean
          try {
            accepted = this.filter(file)
          } catch (cause) {
            return yield* new FileStreamError({ path: file, description: "File filter failed on", cause })
          }
          if (accepted) candidates.push(file)
        }
      }

      const modTimes = yield* Effect.forEach(candidates, (file) => modTimeOfRegularFile(fs, file), {
        concurrency: 32,
      })
      const selected: Array<{ readonly file: string; readonly modTime: number }> = []
      for (let i = 0; i < candidates.length; i++) {
        const modTime = modTimes[i]
        // Spark: `modTime <= threshold` is ignored (SPARK-4518), `modTime > T` waits.
        if (modTime === undefined || modTime <= threshold || modTime > batchTime) continue
        selected.push({ file: candidates[i], modTime })
      }
      selected.sort((a, b) => a.modTime - b.modTime || (a.file < b.file ? -1 : a.file > b.file ? 1 : 0))
      const files: Array<string> = new Array(selected.length)
      for (let i = 0; i < selected.length; i++) files[i] = selected[i].file

      // Kept apart from the returned array; a repeated call for the same time adds to it.
      const previous = this.selections.get(batchTime)
      this.selections.set(batchTime, previous === undefined ? files.slice() : previous.concat(files))
      for (let i = 0; i < files.length; i++) this.recentlySelected.add(files[i])
      this.forget(batchTime)

      const took = (yield* Clock.currentTimeMillis) - started
      if (took > this.batchIntervalMillis) {
        yield* Effect.logWarning(
          `Time taken to find new files ${took} exceeds the batch size. Consider increasing the batch ` +
            `size or reducing the number of files in the monitored directories.`,
        )
      }
      return files
    })
  }

  /** Serializable memory of selections (batch time -> files), oldest first, for checkpointing. */
  snapshot(): ReadonlyArray<FileSelection> {
    const out: Array<FileSelection> = []
    for (const [time, files] of this.selections) out.push({ time, files: files.slice() })
    out.sort((a, b) => a.time - b.time)
    return out
  }

  /**
   * Restores selections from a {@link snapshot} (Spark's checkpoint `restore`): the files are
   * remembered again and not selected while their batch stays in the remember window.
   * Entries are merged into the current memory; an entry replaces one with the same time.
   */
  restore(s: ReadonlyArray<{ time: number; files: ReadonlyArray<string> }>): void {
    for (const entry of s) this.selections.set(entry.time, entry.files.slice())
    this.rebuildRecentlySelected()
  }

  /** Spark's `clearMetadata(T)`: drop batches with time < T − remember (see {@link retain}). */
  private forget(batchTime: number): void {
    const limit = batchTime - this.keepMillis
    let removed = false
    for (const time of this.selections.keys()) {
      if (time < limit) {
        this.selections.delete(time)
        removed = true
      }
    }
    if (removed) this.rebuildRecentlySelected()
  }

  private rebuildRecentlySelected(): void {
    const set = new Set<string>()
    for (const files of this.selections.values()) {
      for (let i = 0; i < files.length; i++) set.add(files[i])
    }
    this.recentlySelected = set
  }

  /** Spark's `fs.globStatus(directoryPath).filter(_.isDirectory)`, as absolute paths. */
  private findDirectories(
    fs: FileSystem.FileSystem,
    path: Path.Path,
  ): Effect.Effect<ReadonlyArray<string>, FileStreamError> {
    return Effect.gen({ self: this }, function* () {
      const pattern = path.resolve(this.directory)
      let directories: ReadonlyArray<string>
      if (hasGlob(pattern)) {
        // A trailing "/" makes the glob match directories only; `dot` as in Hadoop's globs.
        const matches = yield* fs.glob(pattern + "/", { dot: true }).pipe(
          Effect.mapError((cause) =>
            new FileStreamError({ path: this.directory, description: "Could not expand directory pattern", cause })
          ),
        )
        matches.sort()
        directories = matches.map((m) => path.resolve(m))
      } else {
        const isDirectory = yield* fs.stat(pattern).pipe(
          Effect.map((info) => info.type === "Directory"),
          Effect.catch((error) =>
            isMissing(error) ? Effect.succeed(false) : Effect.fail(
              new FileStreamError({ path: this.directory, description: "Could not stat directory", cause: error }),
            )
          ),
        )
        directories = isDirectory ? [pattern] : []
      }
      if (directories.length === 0) {
        if (!this.missingWarned) {
          this.missingWarned = true
          yield* Effect.logWarning(`No directory to scan: ${this.directory}`)
        }
      } else {
        this.missingWarned = false
      }
      return directories
    })
  }
}

/**
 * Reads the files' contents as UTF-8 lines, in order (split on \n, \r\n, \r; a final
 * unterminated line is kept; a leading UTF-8 BOM is dropped; invalid UTF-8 becomes U+FFFD).
 * An empty file logs Spark's "has no data in it" warning via Effect.logWarning and contributes
 * nothing. Fails on the first file that cannot be read; file streams use
 * {@link readEachFile} and {@link decodeTextLines} instead, which skip bad files.
 *
 * @since 0.1.0
 * @category reading
 */
export const readTextLines = (
  files: ReadonlyArray<string>,
): Effect.Effect<Array<string>, FileStreamError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const contents = yield* readFileBytes(files)
    const decoder = new TextDecoder("utf-8")
    const lines: Array<string> = []
    for (let i = 0; i < contents.length; i++) {
      const bytes = contents[i].bytes
      if (bytes.length === 0) continue
      pushLines(decoder.decode(bytes), lines)
    }
    return lines
  })

/**
 * Reads whole files as bytes, in order (for fileStream with a custom decoder). An empty file
 * logs Spark's "has no data in it" warning and is returned with zero bytes.
 *
 * @since 0.1.0
 * @category reading
 */
export const readFileBytes = (
  files: ReadonlyArray<string>,
): Effect.Effect<Array<FileBytes>, FileStreamError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const contents = yield* Effect.forEach(
      files,
      (file) =>
        fs.readFile(file).pipe(
          Effect.mapError((cause) => new FileStreamError({ path: file, description: "Could not read file", cause })),
        ),
      { concurrency: 8 },
    )
    const out: Array<FileBytes> = new Array(files.length)
    for (let i = 0; i < files.length; i++) {
      if (contents[i].length === 0) yield* Effect.logWarning(emptyFileWarning(files[i]))
      out[i] = { path: files[i], bytes: contents[i] }
    }
    return out
  })

/**
 * Reads each file's bytes, in order, without failing: a file that cannot be read
 * (permission denied, gone since it was selected, a directory by now, …) is a
 * `FileStreamError` naming it in its place, so the caller can report it and use the others. An
 * empty file logs Spark's "has no data in it" warning and is returned with zero bytes.
 *
 * @example
 * ```ts
 * const results = yield* readEachFile(["/data/in/a.txt", "/data/in/b.txt"])
 * for (const r of results) if (r instanceof FileStreamError) yield* Effect.logWarning(r.message)
 * ```
 *
 * @since 0.1.0
 * @category reading
 */
export const readEachFile = (
  files: ReadonlyArray<string>,
): Effect.Effect<Array<FileBytes | FileStreamError>, never, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    return yield* Effect.forEach(
      files,
      (file) =>
        fs.readFile(file).pipe(
          Effect.flatMap((bytes): Effect.Effect<FileBytes> =>
            bytes.length === 0
              ? Effect.as(Effect.logWarning(emptyFileWarning(file)), { path: file, bytes })
              : Effect.succeed({ path: file, bytes })
          ),
          Effect.catch((cause) =>
            Effect.succeed(new FileStreamError({ path: file, description: "Could not read file", cause }))
          ),
        ),
      { concurrency: 8 },
    )
  })

/**
 * Decodes one file's bytes as UTF-8 lines (split on \n, \r\n, \r; a final unterminated line is
 * kept; a leading BOM is dropped) and appends them to `into`. If the bytes are not valid UTF-8
 * nothing is appended and the result is a `MalformedInputError` whose `source` is the file,
 * `offset` the byte offset of the first invalid sequence and `count` the number of invalid
 * sequences: a file is taken whole or not at all, never as lines with U+FFFD in them.
 *
 * @example
 * ```ts
 * const lines: Array<string> = []
 * const error = decodeTextLines("/data/in/a.txt", new TextEncoder().encode("a\nb\n"), lines) // undefined; lines = ["a", "b"]
 * ```
 *
 * @since 0.1.0
 * @category reading
 */
export const decodeTextLines = (
  file: string,
  bytes: Uint8Array,
  into: Array<string>,
): MalformedInputError | undefined => {
  if (bytes.length === 0) return undefined
  let text: string
  try {
    text = strictDecoder.decode(bytes)
  } catch {
    const malformed = findMalformedUtf8(bytes) ?? { offset: 0, count: 1 }
    return new MalformedInputError({ source: file, count: malformed.count, offset: malformed.offset })
  }
  pushLines(text, into)
  return undefined
}

/**
 * The byte offset of the first invalid UTF-8 sequence in `bytes` and the number of invalid
 * sequences (each maximal invalid subpart counts once, as a decoder's U+FFFD replacements do),
 * or `undefined` if the bytes are valid UTF-8.
 *
 * @example
 * ```ts
 * findMalformedUtf8(new Uint8Array([0x61, 0xff, 0x62])) // { offset: 1, count: 1 }
 * ```
 *
 * @since 0.1.0
 * @category reading
 */
export const findMalformedUtf8 = (
  bytes: Uint8Array,
): { readonly offset: number; readonly count: number } | undefined => {
  const n = bytes.length
  let first = -1
  let count = 0
  let i = 0
  while (i < n) {
    const c = bytes[i]
    if (c < 0x80) {
      i++
      continue
    }
    // continuation bytes needed, and the allowed range of the first one (no overlongs, no surrogates)
    let need = 0
    let lo = 0x80
    let hi = 0xbf
    if (c >= 0xc2 && c <= 0xdf) need = 1
    else if (c >= 0xe0 && c <= 0xef) {
      need = 2
      if (c === 0xe0) lo = 0xa0
      else if (c === 0xed) hi = 0x9f
    } else if (c >= 0xf0 && c <= 0xf4) {
      need = 3
      if (c === 0xf0) lo = 0x90
      else if (c === 0xf4) hi = 0x8f
    }
    let k = 1
    if (need > 0) {
      while (k <= need && i + k < n) {
        const d = bytes[i + k]
        if (k === 1 ? d < lo || d > hi : (d & 0xc0) !== 0x80) break
        k++
      }
      if (k > need) {
        i += k
        continue
      }
    }
    if (first < 0) first = i
    count++
    i += k
  }
  return first < 0 ? undefined : { offset: first, count }
}

// -----------------------------------------------------------------------------
// internal
// -----------------------------------------------------------------------------

const lineBreak = /\r\n|\r|\n/

const strictDecoder = new TextDecoder("utf-8", { fatal: true })

/** Appends the lines of `text`; a trailing terminator ends the last line, it does not start an empty one. */
const pushLines = (text: string, into: Array<string>): void => {
  const parts = text.split(lineBreak)
  const n = parts[parts.length - 1] === "" ? parts.length - 1 : parts.length
  for (let j = 0; j < n; j++) into.push(parts[j])
}

const globChars = /[*?[{]/

const hasGlob = (pattern: string): boolean => globChars.test(pattern)

const baseName = (path: string): string => {
  let end = path.length
  while (end > 1 && (path[end - 1] === "/" || path[end - 1] === "\\")) end--
  const i = Math.max(path.lastIndexOf("/", end - 1), path.lastIndexOf("\\", end - 1))
  return path.slice(i + 1, end)
}

/** NotFound, or ENOTDIR / ELOOP (`BadResource`): the path is not there as a usable entry. */
const isMissing = (error: PlatformError): boolean =>
  error.reason._tag === "NotFound" || error.reason._tag === "BadResource"

/** Modification time in ms of a regular file (following links), `undefined` if it is not one. */
const modTimeOfRegularFile = (
  fs: FileSystem.FileSystem,
  file: string,
): Effect.Effect<number | undefined, FileStreamError> =>
  fs.stat(file).pipe(
    Effect.map((info) =>
      info.type === "File"
        ? Option.match(info.mtime, { onNone: () => undefined, onSome: (d) => d.getTime() })
        : undefined
    ),
    Effect.catch((error) =>
      // Deleted between listing and stat, or a dangling link: not a file to read.
      isMissing(error)
        ? Effect.succeed(undefined)
        : Effect.fail(new FileStreamError({ path: file, description: "Could not stat file", cause: error }))
    ),
  )

// ---- the graph input ---------------------------------------------------------------------------

/**
 * Spark's `FileInputDStream` as a graph input: at the tick of batch `t` it selects the files
 * that are new for `t` (by modification time, see {@link FileSelector}); the batch's job reads
 * them. No receiver.
 *
 * Checkpoints hold the file list of every remembered batch (Spark's
 * `FileInputDStreamCheckpointData`); a recovered context rebuilds those batches from their
 * lists, so windows and `slice` over recovered time read the same files as an uninterrupted
 * run. A file that cannot be read, a text file that is not valid UTF-8, or a file the
 * `fileStream` decoder throws on is reported as a `ReceiverError` event naming it, logged, and
 * skipped: the batch's other files are read.
 *
 * @internal
 */
export class FileInputNode<A> extends InputNode<A> {
  readonly kind = "FileInputDStream"
  readonly selector: FileSelector
  /** File lists of the batches a recovered checkpoint remembers (Spark's restored `generatedRDDs`). */
  private readonly restored = new Map<number, ReadonlyArray<string>>()
  /** Files selected at the tick of batch `t`, until the batch reads them. */
  private readonly allocated = new Map<number, Exit.Exit<ReadonlyArray<string>, FileStreamError>>()
  /** One selection at a time: the clock fiber (ticks) and the job fiber (older times) both select. */
  private readonly selecting = Semaphore.makeUnsafe(1)
  private env: Context.Context<NodeEnv> | undefined
  private publish: InputRuntime["publish"] | undefined

  constructor(
    ctx: NodeContext,
    readonly directory: string,
    readonly decode: "text" | ((bytes: Uint8Array, path: string) => Iterable<A>),
    options?: FileStreamOptions,
  ) {
    super(ctx)
    this.selector = new FileSelector(directory, ctx.batchMillis, options)
    this.minRememberMillis = this.selector.durationToRemember
    this.fileSystemUser = `${decode === "text" ? "textFileStream" : "fileStream"}("${directory}")`
  }

  get name(): string {
    return `files ${this.directory}`
  }

  override start(rt: InputRuntime): Effect.Effect<void, never, Scope.Scope | NodeEnv> {
    return Effect.gen({ self: this }, function* () {
      this.env = yield* Effect.context<NodeEnv>()
      this.publish = rt.publish
      // Keep file lists as long as the stream keeps batches (windows ask for more).
      this.selector.retain(this.rememberMillis ?? 0)
      if (this.selector.initialModTimeIgnoreThreshold === undefined) this.selector.init(rt.startTime)
    })
  }

  /** Spark selects a batch's files when it generates the batch's jobs: at the tick. */
  override allocate(t: number): Effect.Effect<void> {
    return Effect.suspend(() => {
      const env = this.env
      if (env === undefined || this.restored.has(t) || this.allocated.has(t)) return Effect.void
      return Effect.map(
        Effect.exit(Effect.provideContext(this.select(t), env)),
        (exit) => void this.allocated.set(t, exit),
      )
    })
  }

  /** The selector's threshold and the files selected for every remembered batch time. */
  override checkpointData(): InputCheckpoint {
    const selector = this.selector
    return {
      key: `FileInputDStream#${this.streamId}`,
      snapshot: () => ({ threshold: selector.initialModTimeIgnoreThreshold, selections: selector.snapshot() }),
      restore: (data) => {
        const d = data as {
          threshold?: unknown
          selections?: unknown
        }
        if (typeof d !== "object" || d === null || !Array.isArray(d.selections)) {
          throw new Error("file stream data has no list of selections")
        }
        const selections: Array<{ time: number; files: ReadonlyArray<string> }> = []
        for (const entry of d.selections as ReadonlyArray<{ time?: unknown; files?: unknown }>) {
          if (
            typeof entry?.time !== "number" || !Array.isArray(entry.files) ||
            !entry.files.every((f) => typeof f === "string")
          ) {
            throw new Error(`a file stream selection is not { time, files }: ${JSON.stringify(entry)}`)
          }
          selections.push({ time: entry.time, files: entry.files as ReadonlyArray<string> })
        }
        if (typeof d.threshold === "number") selector.init(d.threshold)
        selector.restore(selections)
        // Spark's FileInputDStreamCheckpointData.restore: the remembered batches are rebuilt
        // from their file lists, not selected again.
        for (const { time, files } of selections) this.restored.set(time, files)
      },
    }
  }

  compute(t: number): Effect.Effect<Batch<A>, unknown, NodeEnv> {
    return Effect.gen({ self: this }, function* () {
      const files = yield* this.filesOf(t)
      const decode = this.decode
      const batch: Array<A> = []
      for (const read of yield* readEachFile(files)) {
        const problem = read instanceof FileStreamError
          ? read
          : decode === "text"
          ? decodeTextLines(read.path, read.bytes, batch as Array<unknown> as Array<string>)
          : decodeWith(decode, read.path, read.bytes, batch)
        if (problem !== undefined) yield* this.report(problem)
      }
      this.record(t, batch.length, { files })
      return batch
    })
  }

  /** The files of batch `t`: restored from a checkpoint, selected at its tick, or selected now. */
  private filesOf(t: number): Effect.Effect<ReadonlyArray<string>, FileStreamError, NodeEnv> {
    return Effect.suspend(() => {
      const restored = this.restored.get(t)
      if (restored !== undefined) return Effect.succeed(restored)
      const allocated = this.allocated.get(t)
      if (allocated !== undefined) {
        this.allocated.delete(t)
        return allocated
      }
      return this.select(t)
    })
  }

  private select(t: number): Effect.Effect<ReadonlyArray<string>, FileStreamError, NodeEnv> {
    return this.selecting.withPermits(1)(this.selector.select(t))
  }

  /** A bad file: a `ReceiverError` event naming it and a warning; the batch goes on without it. */
  private report(error: FileStreamError | MalformedInputError): Effect.Effect<void> {
    return Effect.gen({ self: this }, function* () {
      yield* Effect.logWarning(`Skipped a file of ${this.name}: ${error.message}`)
      if (this.publish === undefined) return
      const now = yield* Clock.currentTimeMillis
      yield* this.publish({
        _tag: "ReceiverError",
        receiverInfo: {
          streamId: this.streamId,
          name: this.name,
          active: true,
          lastErrorMessage: error.message,
          lastError: error,
          lastErrorTime: now,
        },
      })
    })
  }

  override clearMetadata(t: number): void {
    super.clearMetadata(t)
    const limit = t - (this.rememberMillis ?? this.slideMillis)
    for (const time of this.restored.keys()) if (time <= limit) this.restored.delete(time)
    for (const time of this.allocated.keys()) if (time <= limit) this.allocated.delete(time)
  }
}

/**
 * Appends what `decode` makes of one file to `batch`; if it throws, nothing of the file is
 * kept and the result is a `FileStreamError` naming the file.
 */
const decodeWith = <A>(
  decode: (bytes: Uint8Array, path: string) => Iterable<A>,
  path: string,
  bytes: Uint8Array,
  batch: Array<A>,
): FileStreamError | undefined => {
  const start = batch.length
  try {
    for (const a of decode(bytes, path)) batch.push(a)
    return undefined
  } catch (cause) {
    batch.length = start
    return new FileStreamError({ path, description: "Could not decode file", cause })
  }
}
