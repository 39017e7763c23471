/**
 * Spark's `FileInputDStream` as a graph input: at the tick of batch `t` it selects the files
 * that are new for `t` (by modification time, see `receivers/file.ts`); the batch's job reads
 * them. No receiver.
 *
 * Checkpoints hold the file list of every remembered batch (Spark's
 * `FileInputDStreamCheckpointData`); a recovered context rebuilds those batches from their
 * lists, so windows and `slice` over recovered time read the same files as an uninterrupted
 * run. A file that cannot be read, a text file that is not valid UTF-8, or a file the
 * `fileStream` decoder throws on is reported as a `ReceiverError` event naming it, logged, and
 * skipped: the batch's other files are read.
 * @internal
 */
import { Clock, type Context, Effect, type Exit, Semaphore } from "effect"
import type { Scope } from "effect"
import type { MalformedInputError } from "../Errors.ts"
import {
  decodeTextLines,
  FileSelector,
  FileStreamError,
  type FileStreamOptions,
  readEachFile,
} from "../../receivers/file.ts"
import {
  type Batch,
  type InputCheckpoint,
  InputNode,
  type InputRuntime,
  type NodeContext,
  type NodeEnv,
} from "./node.ts"

export type { FileStreamOptions }

/** @internal */
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
