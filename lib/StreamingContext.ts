/**
 * `StreamingContext`: the entry point. It owns the batch interval, the DStream graph, the
 * sources, the batch clock and the job scheduler, and has Spark's lifecycle
 * INITIALIZED → ACTIVE → STOPPED: start twice only warns; start after stop fails; one active
 * context per process; nothing can be added to the graph after start; a start with no output
 * operation fails and leaves the context STOPPED.
 *
 * @example
 * ```ts
 * const program = Effect.gen(function* () {
 *   const ssc = yield* StreamingContext.make({ batchInterval: "1 second" })
 *   ssc.socketTextStream("localhost", 9999)
 *     .flatMap((line) => line.split(" "))
 *     .mapToPair((w) => [w, 1])
 *     .reduceByKey((a, b) => a + b)
 *     .print()
 *   yield* ssc.start
 *   yield* ssc.awaitTermination
 * })
 * StreamingContext.runMain(program)
 * ```
 *
 * @module
 */
import {
  Clock,
  Context,
  Deferred,
  Duration,
  Effect,
  Exit,
  FileSystem,
  Layer,
  Path,
  PubSub,
  Scope,
  Stream,
} from "effect"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as NodePath from "@effect/platform-node/NodePath"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeServices from "@effect/platform-node/NodeServices"
import * as BatchClock from "./BatchClock.ts"
import * as Checkpoint from "./Checkpoint.ts"
import * as DStream from "./DStream.ts"
import { type BatchJobError, IllegalStateError, ValidationError } from "./Errors.ts"
import { formatProgress, type StreamingEvent } from "./Listener.ts"
import type { Receiver, ReceiverSettings } from "./Receiver.ts"
import * as Time from "./Time.ts"
import { FileInputNode, type FileStreamOptions } from "./_internal/fileInput.ts"
import { Graph } from "./_internal/graph.ts"
import { QueueInputNode, type QueueSource, ReceiverInputNode } from "./_internal/inputs.ts"
import { InputNode, type Node, type NodeContext, type NodeEnv, OutputNode } from "./_internal/node.ts"
import { JobScheduler } from "./_internal/scheduler.ts"
import * as Checkpointing from "./_internal/checkpointing.ts"
import { type SocketOptions, socketReceiver, socketTextReceiver } from "../receivers/socket.ts"

/**
 * Spark's `StreamingContextState`.
 *
 * @since 0.1.0
 * @category models
 */
export type State = "INITIALIZED" | "ACTIVE" | "STOPPED"

/**
 * Options of {@link make}.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** The batch interval: how often the clock cuts a batch. */
  readonly batchInterval: Duration.Input
  /** Log one line per completed batch (records, scheduling delay, processing time). */
  readonly logProgress?: boolean | undefined
  /** Graceful stop's bound (Spark's `spark.streaming.gracefulStopTimeout`); default 10 × batch. */
  readonly gracefulStopTimeout?: Duration.Input | undefined
  /** Block interval, rate limits, backpressure and storage for every receiver of the context. */
  readonly receivers?: ReceiverSettings | undefined
}

/**
 * Options of {@link StreamingContext.stop}.
 *
 * @since 0.1.0
 * @category models
 */
export interface StopOptions {
  /** Stop receivers first and process everything they received (default `false`). */
  readonly graceful?: boolean | undefined
  /** Bound for the graceful drain; default the context's `gracefulStopTimeout`. */
  readonly timeout?: Duration.Input | undefined
}

/**
 * The streaming context.
 *
 * @since 0.1.0
 * @category models
 */
export interface StreamingContext {
  /** How often a batch is cut. */
  readonly batchInterval: Duration.Duration
  /** The current lifecycle state. */
  readonly state: Effect.Effect<State>
  /**
   * Starts the clock, receivers and jobs. Warns if already started; fails with
   * `IllegalStateError` after a stop or while another context is active, and with
   * `ValidationError` when the graph is invalid (the context is then STOPPED).
   */
  readonly start: Effect.Effect<void, IllegalStateError | ValidationError | Checkpoint.CheckpointError>
  /**
   * Waits until the context stops; fails with the `BatchJobError` that stopped it. If the
   * waiting fiber is interrupted (Ctrl-C under `runMain`), the context is stopped gracefully.
   */
  readonly awaitTermination: Effect.Effect<void, BatchJobError>
  /** Like `awaitTermination`, but gives up after `timeout`: `true` if stopped, `false` on time-out. */
  readonly awaitTerminationOrTimeout: (timeout: Duration.Input) => Effect.Effect<boolean, BatchJobError>
  /** Stops the context (idempotent). Graceful: receivers stop first, everything received is processed. */
  readonly stop: (options?: StopOptions) => Effect.Effect<void>
  /** Every stream remembers its batches for at least `duration` (Spark's `ssc.remember`). */
  readonly remember: (duration: Duration.Input) => void
  /** Sets the checkpoint directory (stateful operators require one). */
  readonly checkpoint: (directory: string) => void
  /** The checkpoint directory, if set. */
  readonly checkpointDirectory: string | undefined

  /** A stream of the given batches, for tests: one per batch (`oneAtATime`) or all at once. */
  readonly queueStream: <A>(
    queue: QueueSource<A>,
    options?: { readonly oneAtATime?: boolean; readonly defaultBatch?: ReadonlyArray<A> },
  ) => DStream.DStream<A>
  /** UTF-8 lines from a TCP server, reconnecting with backoff when it goes away. */
  readonly socketTextStream: (
    host: string,
    port: number,
    options?: SocketOptions & { readonly maxLineBytes?: number },
  ) => DStream.DStream<string>
  /** Records decoded from a TCP server's byte stream by `decode`. */
  readonly socketStream: <A>(
    host: string,
    port: number,
    decode: (bytes: Stream.Stream<Uint8Array, unknown>) => Stream.Stream<A, unknown>,
    options?: SocketOptions,
  ) => DStream.DStream<A>
  /** Lines of new files appearing in a directory (Spark's `textFileStream`). */
  readonly textFileStream: (directory: string, options?: FileStreamOptions) => DStream.DStream<string>
  /** Records decoded from new files appearing in a directory (Spark's `fileStream`). */
  readonly fileStream: <A>(
    directory: string,
    decode: (bytes: Uint8Array, path: string) => Iterable<A>,
    options?: FileStreamOptions,
  ) => DStream.DStream<A>
  /** A stream fed by a custom receiver. */
  readonly receiverStream: <A>(receiver: Receiver<A>) => DStream.DStream<A>
  /** Union of many streams with the same slide. */
  readonly union: <A>(streams: ReadonlyArray<DStream.DStream<A>>) => DStream.DStream<A>
  /** A batch-level function over many streams' batches of the same time. */
  readonly transform: <B>(
    streams: ReadonlyArray<DStream.DStream<unknown>>,
    f: (batches: ReadonlyArray<ReadonlyArray<unknown>>, time: number) => DStream.BatchResult<B>,
  ) => DStream.DStream<B>

  /** Listener events from the moment the returned stream is subscribed (scoped subscription). */
  readonly events: Effect.Effect<Stream.Stream<StreamingEvent>, never, Scope.Scope>
  /** Calls `listener` for every event, in order, on the publishing fiber. */
  readonly addStreamingListener: (listener: (event: StreamingEvent) => void | Effect.Effect<void>) => void
  /** Waits until the batch of `time` (or a later one) has completed or the context stopped. */
  readonly awaitBatch: (time: number) => Effect.Effect<void>
}

/**
 * The `StreamingContext` service key.
 *
 * @since 0.1.0
 * @category services
 */
export const StreamingContext: Context.Service<StreamingContext, StreamingContext> = Context.Service<StreamingContext>(
  "effect-dstream/StreamingContext",
)

let active: { readonly ctx: ContextImpl; readonly startedAt: string } | undefined

class ContextImpl implements StreamingContext, NodeContext {
  private lifecycleState: State = "INITIALIZED"
  readonly batchMillis: number
  readonly batchInterval: Duration.Duration
  readonly graph: Graph
  private checkpointPath: string | undefined
  private readonly listeners: Array<(event: StreamingEvent) => void | Effect.Effect<void>> = []
  private readonly stopFinalizers: Array<() => Effect.Effect<unknown>> = []
  private readonly terminated = Deferred.makeUnsafe<void, BatchJobError>()
  private scope: Scope.Closeable | undefined
  private scheduler: JobScheduler | undefined
  private stopping: Effect.Effect<void> | undefined
  private readonly gracefulTimeoutMillis: number
  /** The checkpoint `getOrCreate` recovers from. */
  recovered: Checkpoint.Checkpoint | undefined = undefined
  readonly receiverSettings: ReceiverSettings | undefined

  constructor(
    options: Options,
    private readonly pubsub: PubSub.PubSub<StreamingEvent>,
  ) {
    this.batchMillis = Time.millis(options.batchInterval, "Batch interval")
    this.batchInterval = Duration.millis(this.batchMillis)
    this.graph = new Graph(this.batchMillis)
    this.gracefulTimeoutMillis = options.gracefulStopTimeout === undefined
      ? 10 * this.batchMillis
      : Time.millis(options.gracefulStopTimeout, "Graceful stop timeout")
    this.receiverSettings = options.receivers
    if (options.logProgress) {
      this.listeners.push((e) => e._tag === "BatchCompleted" ? Effect.logInfo(formatProgress(e.batchInfo)) : undefined)
    }
  }

  // ---- NodeContext ----
  lifecycle = (): State => this.lifecycleState
  register = (node: Node<any>): void => {
    this.graph.nodes.push(node)
    if (node instanceof InputNode) {
      node.streamId = this.graph.inputs.length
      this.graph.inputs.push(node)
    } else if (node instanceof OutputNode) {
      this.graph.outputs.push(node)
    }
  }
  checkpointDir = (): string | undefined => this.checkpointPath
  onStop = (finalizer: () => Effect.Effect<unknown>): void => {
    this.stopFinalizers.push(finalizer)
  }

  get checkpointDirectory(): string | undefined {
    return this.checkpointPath
  }

  // ---- lifecycle ----
  get state(): Effect.Effect<State> {
    return Effect.sync(() => this.lifecycleState)
  }

  get start(): Effect.Effect<void, IllegalStateError | ValidationError | Checkpoint.CheckpointError> {
    return Effect.gen({ self: this }, function* () {
      if (this.lifecycleState === "ACTIVE") {
        return yield* Effect.logWarning("StreamingContext has already been started")
      }
      if (this.lifecycleState === "STOPPED") {
        return yield* new IllegalStateError({ message: "Cannot start StreamingContext: it has already been stopped" })
      }
      if (active !== undefined) {
        return yield* new IllegalStateError({
          message:
            `Cannot start StreamingContext: only one may be active in a process, and the running one was started at ${active.startedAt}`,
        })
      }
      const now = yield* Clock.currentTimeMillis
      const first = BatchClock.firstBatchTime(now, this.batchMillis)
      // A context recovered by getOrCreate keeps the zero time of the run it continues.
      const zero = this.recovered !== undefined
        ? Checkpointing.payloadOf(this.recovered, this.checkpointPath ?? "").zeroTime
        : first - this.batchMillis
      try {
        this.graph.start(zero)
      } catch (error) {
        yield* Effect.logError("Error starting the context, marking it as stopped")
        this.lifecycleState = "STOPPED"
        if (error instanceof ValidationError || error instanceof IllegalStateError) return yield* error
        throw error
      }
      const scope = yield* Scope.make()
      this.scope = scope
      const env = yield* platformServices(scope)
      // ---- checkpointing (stateful streams): open the store, restore a recovered snapshot ----
      const checkpoints = yield* Checkpointing.prepare(this.graph, this.checkpointPath, this.recovered).pipe(
        Effect.provideContext(env),
        Effect.tapError(() =>
          Effect.andThen(
            Effect.logError("Error starting the context, marking it as stopped"),
            Effect.andThen(Effect.sync(() => (this.lifecycleState = "STOPPED")), Scope.close(scope, Exit.void)),
          )
        ),
      )
      const scheduler = new JobScheduler(this.graph, this.publish, (error) => this.failWith(error))
      this.scheduler = scheduler
      scheduler.afterBatch = checkpoints?.afterBatch
      this.lifecycleState = "ACTIVE"
      active = { ctx: this, startedAt: new Date(now).toISOString() }
      const rt = { publish: this.publish, startTime: now }
      yield* Effect.provideContext(
        Effect.gen({ self: this }, function* () {
          for (const input of this.graph.inputs) {
            yield* Scope.provide(input.start(rt), scope)
          }
          yield* scheduler.start(first, scope, checkpoints?.recoverTimes(first))
        }),
        env,
      ).pipe(Effect.orDie)
      yield* this.publish({ _tag: "StreamingStarted", time: now })
    })
  }

  private readonly publish = (event: StreamingEvent): Effect.Effect<void> =>
    Effect.gen({ self: this }, function* () {
      for (const listener of this.listeners) {
        const result = listener(event)
        if (Effect.isEffect(result)) {
          yield* Effect.catchCause(result, (cause) => Effect.logWarning("Streaming listener failed", cause))
        }
      }
      yield* PubSub.publish(this.pubsub, event)
    })

  private failWith(error: BatchJobError): Effect.Effect<void> {
    return Effect.gen({ self: this }, function* () {
      yield* Effect.logError(error.message)
      yield* Deferred.fail(this.terminated, error)
      yield* Effect.forkDetach(this.stop())
    })
  }

  get awaitTermination(): Effect.Effect<void, BatchJobError> {
    return Deferred.await(this.terminated).pipe(
      Effect.onInterrupt(() => this.stop({ graceful: true })),
    )
  }

  awaitTerminationOrTimeout = (timeout: Duration.Input): Effect.Effect<boolean, BatchJobError> =>
    Deferred.await(this.terminated).pipe(
      Effect.as(true),
      Effect.timeoutOption(timeout),
      Effect.map((o) => o._tag === "Some"),
      Effect.onInterrupt(() => this.stop({ graceful: true })),
    )

  stop = (options?: StopOptions): Effect.Effect<void> =>
    Effect.suspend(() => {
      if (this.lifecycleState === "INITIALIZED") {
        this.lifecycleState = "STOPPED"
        return Effect.andThen(
          Effect.logWarning("StreamingContext has not been started yet"),
          Effect.andThen(this.runStopFinalizers(), Deferred.succeed(this.terminated, undefined)),
        )
      }
      if (this.stopping !== undefined) return this.stopping
      if (this.lifecycleState === "STOPPED") return Effect.logWarning("StreamingContext has already been stopped")
      const run = this.doStop(options?.graceful ?? false, options?.timeout)
      const once = Effect.runSync(Effect.cached(run))
      this.stopping = once
      return once
    })

  private doStop(graceful: boolean, timeout: Duration.Input | undefined): Effect.Effect<void> {
    return Effect.gen({ self: this }, function* () {
      const scheduler = this.scheduler!
      for (const input of this.graph.inputs) yield* input.stopReceiving()
      if (graceful) {
        const bound = timeout === undefined ? this.gracefulTimeoutMillis : Time.millis(timeout, "Stop timeout")
        const drained = yield* Effect.timeoutOption(scheduler.drain(), bound)
        if (drained._tag === "None") {
          yield* Effect.logWarning(`Graceful stop timed out after ${Time.format(bound)}; stopping anyway`)
        }
      }
      yield* scheduler.stopClock()
      yield* scheduler.stopJobs()
      yield* Scope.close(this.scope!, Exit.void)
      this.lifecycleState = "STOPPED"
      if (active?.ctx === this) active = undefined
      scheduler.releaseWaiters()
      const now = yield* Clock.currentTimeMillis
      yield* this.publish({ _tag: "StreamingStopped", time: now })
      yield* this.runStopFinalizers()
      yield* Deferred.succeed(this.terminated, undefined)
    }).pipe(Effect.uninterruptible)
  }

  private runStopFinalizers(): Effect.Effect<void> {
    return Effect.forEach(this.stopFinalizers.splice(0), (f) => Effect.ignore(f()), { discard: true })
  }

  remember = (duration: Duration.Input): void => {
    this.graph.rememberMillis = Time.millis(duration, "Remember duration")
  }

  checkpoint = (directory: string): void => {
    if (this.lifecycleState !== "INITIALIZED") {
      throw new IllegalStateError({ message: "Cannot set the checkpoint directory after the context has started" })
    }
    this.checkpointPath = directory
  }

  // ---- sources ----
  queueStream = <A>(
    queue: QueueSource<A>,
    options?: { readonly oneAtATime?: boolean; readonly defaultBatch?: ReadonlyArray<A> },
  ): DStream.DStream<A> =>
    DStream.fromNode(new QueueInputNode<A>(this, queue, options?.oneAtATime ?? true, options?.defaultBatch ?? []))

  socketTextStream = (
    host: string,
    port: number,
    options?: SocketOptions & { readonly maxLineBytes?: number },
  ): DStream.DStream<string> => this.receiverStream(socketTextReceiver(host, port, options))

  socketStream = <A>(
    host: string,
    port: number,
    decode: (bytes: Stream.Stream<Uint8Array, unknown>) => Stream.Stream<A, unknown>,
    options?: SocketOptions,
  ): DStream.DStream<A> => this.receiverStream(socketReceiver(host, port, decode, options))

  textFileStream = (directory: string, options?: FileStreamOptions): DStream.DStream<string> =>
    DStream.fromNode(new FileInputNode<string>(this, directory, "text", options))

  fileStream = <A>(
    directory: string,
    decode: (bytes: Uint8Array, path: string) => Iterable<A>,
    options?: FileStreamOptions,
  ): DStream.DStream<A> => DStream.fromNode(new FileInputNode<A>(this, directory, decode, options))

  receiverStream = <A>(receiver: Receiver<A>): DStream.DStream<A> =>
    DStream.fromNode(new ReceiverInputNode<A>(this, receiver))

  union = <A>(streams: ReadonlyArray<DStream.DStream<A>>): DStream.DStream<A> => DStream.unionAll(streams)

  transform = <B>(
    streams: ReadonlyArray<DStream.DStream<unknown>>,
    f: (batches: ReadonlyArray<ReadonlyArray<unknown>>, time: number) => DStream.BatchResult<B>,
  ): DStream.DStream<B> => DStream.transformAll(streams, f)

  // ---- events ----
  get events(): Effect.Effect<Stream.Stream<StreamingEvent>, never, Scope.Scope> {
    return Effect.map(PubSub.subscribe(this.pubsub), (sub) => Stream.fromSubscription(sub))
  }

  addStreamingListener = (listener: (event: StreamingEvent) => void | Effect.Effect<void>): void => {
    this.listeners.push(listener)
  }

  awaitBatch = (time: number): Effect.Effect<void> =>
    Effect.suspend(() => {
      if (this.lifecycleState === "STOPPED") return Effect.void
      if (this.scheduler === undefined) {
        return Effect.fail(new IllegalStateError({ message: "Cannot await a batch: the context has not started" }))
          .pipe(Effect.orDie)
      }
      return this.scheduler.awaitBatch(time)
    })
}

/** FileSystem and Path for sources and outputs: the caller's if provided, Node's otherwise. */
const platformServices = (scope: Scope.Scope): Effect.Effect<Context.Context<NodeEnv>> =>
  Effect.gen(function* () {
    const fs = yield* Effect.serviceOption(FileSystem.FileSystem)
    const path = yield* Effect.serviceOption(Path.Path)
    const fsService = fs._tag === "Some"
      ? fs.value
      : Context.get(yield* Layer.buildWithScope(NodeFileSystem.layer, scope), FileSystem.FileSystem)
    const pathService = path._tag === "Some"
      ? path.value
      : Context.get(yield* Layer.buildWithScope(NodePath.layer, scope), Path.Path)
    return Context.make(FileSystem.FileSystem, fsService).pipe(Context.add(Path.Path, pathService))
  })

/**
 * Creates a streaming context with the given batch interval. Nothing runs until `start`.
 *
 * @example
 * ```ts
 * const ssc = yield* StreamingContext.make({ batchInterval: "1 second" })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<StreamingContext, ValidationError> =>
  Effect.gen(function* () {
    const pubsub = yield* PubSub.unbounded<StreamingEvent>()
    return yield* Effect.try({
      try: () => new ContextImpl(options, pubsub),
      catch: (error) => error instanceof ValidationError ? error : new ValidationError({ message: String(error) }),
    })
  })

/**
 * A layer providing a `StreamingContext`; the context is stopped when the layer is released.
 *
 * @example
 * ```ts
 * program.pipe(Effect.provide(StreamingContext.layer({ batchInterval: "1 second" })))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options): Layer.Layer<StreamingContext, ValidationError> =>
  Layer.effect(StreamingContext)(
    Effect.acquireRelease(make(options), (ssc) => ssc.stop()),
  )

/**
 * Runs a program as the process's main Effect with Node's platform services (file system,
 * path) on Node, Deno or Bun. SIGINT / SIGTERM interrupt it; a context awaiting termination
 * then stops gracefully before the process exits.
 *
 * @example
 * ```ts
 * StreamingContext.runMain(program)
 * ```
 *
 * @since 0.1.0
 * @category running
 */
export const runMain = <E>(program: Effect.Effect<void, E, NodeServices.NodeServices>): void =>
  NodeRuntime.runMain(Effect.provide(program, NodeServices.layer))

/**
 * The currently active context, if any (Spark's `StreamingContext.getActive`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const getActive: Effect.Effect<StreamingContext | undefined> = Effect.sync(() => active?.ctx)

// ---- recovery (getOrCreate) ----------------------------------------------------------------------

/**
 * Spark's `StreamingContext.getOrCreate`: if `directory` holds a checkpoint, builds a context
 * that continues from it — its state restored at start, the batches pending at the crash and
 * those missed while the process was down run first — otherwise a fresh one. Either way
 * `create` builds the pipeline on it (closures are not checkpointed; the graph is rebuilt from
 * code), and the context checkpoints into `directory`. The batch interval comes from the
 * checkpoint when there is one, else from `options` (default 1 second). A corrupt newest
 * checkpoint falls back to the previous one; when none is readable it fails with a
 * `CheckpointError`.
 *
 * @example
 * ```ts
 * const ssc = yield* StreamingContext.getOrCreate("checkpoint", (ssc) => {
 *   ssc.socketTextStream("localhost", 9999).flatMap((l) => l.split(" ")).mapToPair((w) => [w, 1])
 *     .updateStateByKey((values, state) => Option.some(values.reduce((a, b) => a + b, Option.getOrElse(state, () => 0))))
 *     .print()
 * })
 * yield* ssc.start
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const getOrCreate = <E = never, R = never>(
  directory: string,
  create: (ssc: StreamingContext) => void | Effect.Effect<void, E, R>,
  options?: Partial<Options>,
): Effect.Effect<StreamingContext, E | Checkpoint.CheckpointError | ValidationError, R> =>
  Effect.gen(function* () {
    const latest = yield* Effect.scoped(
      Effect.flatMap(Effect.scope, (scope) =>
        Effect.flatMap(platformServices(scope), (env) =>
          Effect.provideContext(
            Effect.flatMap(Checkpointing.storeFor(directory), Checkpoint.readLatest),
            env,
          ))),
    )
    let batchInterval: Duration.Input = options?.batchInterval ?? "1 second"
    if (latest._tag === "Some") {
      const payload = yield* Effect.try({
        try: () => Checkpointing.payloadOf(latest.value, directory),
        catch: (e) => e as Checkpoint.CheckpointError,
      })
      batchInterval = payload.batchMillis
    }
    const ssc = yield* make({ ...options, batchInterval })
    if (latest._tag === "Some") (ssc as ContextImpl).recovered = latest.value
    ssc.checkpoint(directory)
    const built = create(ssc)
    if (Effect.isEffect(built)) yield* built
    return ssc
  })
