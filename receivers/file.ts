/**
 * File-stream source logic: Spark's `FileInputDStream` (used by `fileStream`,
 * `textFileStream` and `binaryRecordsStream`). There is no receiver: once per batch the
 * engine asks a {@link FileSelector} which files are new for the batch time, then reads them
 * with {@link readTextLines} or {@link readFileBytes}.
 *
 * Which files are new for batch time `T` (Spark's `isNewFile`): a file directly inside one of
 * the monitored directories that passes the filter, is a regular file, has a modification time
 * in `(threshold, T]` with `threshold = max(initialModTimeIgnoreThreshold, T − durationToRemember)`,
 * and was not selected in a remembered batch. Files are attributed by modification time, each
 * at most once while its selection is remembered; changes after selection are ignored.
 *
 * @module
 */
import { Clock, Data, Duration, Effect, FileSystem, Option, Path } from "effect"
import type { PlatformError } from "effect/PlatformError"
import { describeCause } from "../lib/Errors.ts"

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

  /** Spark's `clearMetadata(T)`: drop batches with time < T − durationToRemember. */
  private forget(batchTime: number): void {
    const limit = batchTime - this.durationToRemember
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
 * unterminated line is kept; a leading UTF-8 BOM is dropped). An empty file logs Spark's
 * "has no data in it" warning via Effect.logWarning and contributes nothing.
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
      const parts = decoder.decode(bytes).split(lineBreak)
      // A trailing terminator ends the last line; it does not start an empty one.
      const n = parts[parts.length - 1] === "" ? parts.length - 1 : parts.length
      for (let j = 0; j < n; j++) lines.push(parts[j])
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

// -----------------------------------------------------------------------------
// internal
// -----------------------------------------------------------------------------

const lineBreak = /\r\n|\r|\n/

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
