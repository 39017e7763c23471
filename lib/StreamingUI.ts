/**
 * A live web page for a running context, Spark's Streaming tab and more: the status line; input
 * rate, scheduling delay, processing time and total delay over the last `retainedBatches`
 * batches (timelines with histograms); per-input rows; active and completed batches; a page per
 * batch (records per input, Kafka offset ranges, every output operation); keyed-state sizes;
 * Kafka committed offsets and rebalances; and the DStream graph. The page updates itself every
 * second. The same data is JSON under `/api/…` (`status`, `batches`, `batches/<time>`,
 * `timeline`, `receivers`, `state`, `kafka`, `graph`), and `/metrics` serves the
 * {@link Metrics} (and any other Effect metric) as Prometheus text.
 *
 * @example
 * ```ts
 * const ssc = yield* StreamingContext.make({ batchInterval: "1 second" })
 * const ui = yield* StreamingUI.serve(ssc, { port: 4040 })
 * yield* Effect.log(`Streaming UI at ${ui.url}`)
 * // … build the pipeline …
 * yield* ssc.start
 * ```
 *
 * @module
 */
import { Context, Data, Duration, Effect, Exit, type FileSystem, Layer, Scope } from "effect"
import { HttpRouter, HttpServer, type HttpServerError } from "effect/http"
import * as Metrics from "./Metrics.ts"
import { StreamingContext } from "./StreamingContext.ts"
import { Collector, defaultRetainedBatches } from "./_internal/ui/collector.ts"
import { graphOf } from "./_internal/ui/inspect.ts"
import { pollKafkaLag } from "./_internal/ui/kafkaLag.ts"
import { addRoutes, loadAssets } from "./_internal/ui/server.ts"
import type { TaggedErrorClass } from "./_internal/taggedError.ts"

/**
 * Options of {@link serve} and {@link layer}.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** The TCP port (0 picks a free one). */
  readonly port: number
  /** The address to bind (default `"127.0.0.1"`, loopback only; `"0.0.0.0"` for every interface). */
  readonly host?: string | undefined
  /** Completed batches the page and the API remember (Spark's `spark.streaming.ui.retainedBatches`, default 1000). */
  readonly retainedBatches?: number | undefined
  /** How often Kafka high-water marks are read for the consumer lag (default 5 seconds; only with Kafka streams). */
  readonly kafkaLagInterval?: Duration.Input | undefined
}

/**
 * A running UI server.
 *
 * @since 0.1.0
 * @category models
 */
export interface StreamingUI {
  /** The page's address, e.g. `http://127.0.0.1:4040/`. */
  readonly url: string
  /** The address the server is bound to. */
  readonly host: string
  /** The port it listens on (the one chosen when `port: 0` was asked). */
  readonly port: number
}

/**
 * What a {@link ServerFactory} does: make an HTTP server listening on `host:port` (port 0: a
 * free one) until the scope closes.
 *
 * @since 0.1.0
 * @category models
 */
export interface ServerFactoryShape {
  /** A server listening on `host:port` until the scope closes. */
  readonly make: (options: {
    readonly port: number
    readonly host: string
  }) => Effect.Effect<HttpServer.HttpServer["Service"], HttpServerError.ServeError, Scope.Scope>
}

/** @internal */
export const ServerFactoryBase: Context.ServiceClass<
  ServerFactory,
  "effect-dstream/StreamingUI/ServerFactory",
  ServerFactoryShape
> = Context.Service<ServerFactory, ServerFactoryShape>()("effect-dstream/StreamingUI/ServerFactory")

/**
 * Makes the HTTP server the page is served with: the platform's part of the UI.
 * `Runtime.layer` provides Node's (it runs on Node, Deno and Bun).
 *
 * @example
 * ```ts
 * program.pipe(Effect.provide(Runtime.layer)) // FileSystem, Path and the UI's ServerFactory
 * ```
 *
 * @since 0.1.0
 * @category services
 */
export class ServerFactory extends ServerFactoryBase {}

/** @internal */
export const StreamingUIErrorBase: TaggedErrorClass<"StreamingUIError", {
  readonly message: string
  readonly cause?: unknown
}> = Data.TaggedError("StreamingUIError")

/**
 * The UI could not start: a bad option, the port taken, or its files missing.
 *
 * @since 0.1.0
 * @category errors
 */
export class StreamingUIError extends StreamingUIErrorBase {}

/**
 * Serves the live page of `ssc` until `scope` closes (the page stays up after the context
 * stops, showing the final figures). Call it before `ssc.start` to see the run from its first
 * event. Also starts {@link Metrics.track} on `ssc`. It reads its page's files with the
 * program's `FileSystem` and listens with its {@link ServerFactory}: `Runtime.layer` provides both.
 *
 * @example
 * ```ts
 * const ui = yield* StreamingUI.serve(ssc, { port: 4040 })
 * ```
 *
 * @since 0.1.0
 * @category running
 */
export const serve = (
  ssc: StreamingContext,
  options: Options,
): Effect.Effect<StreamingUI, StreamingUIError, Scope.Scope | ServerFactory | FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const host = options.host ?? "127.0.0.1"
    const retained = options.retainedBatches ?? defaultRetainedBatches
    if (!Number.isInteger(options.port) || options.port < 0 || options.port > 65535) {
      return yield* new StreamingUIError({
        message: `Cannot serve the streaming UI: port must be an integer from 0 to 65535, got "${options.port}"`,
      })
    }
    if (!Number.isSafeInteger(retained) || retained < 1) {
      return yield* new StreamingUIError({
        message: `Cannot serve the streaming UI: retainedBatches must be a positive integer, got "${retained}"`,
      })
    }
    const assets = yield* loadAssets.pipe(
      Effect.mapError((cause) => new StreamingUIError({ message: cause.message, cause })),
    )
    const collector = new Collector(
      graphOf(ssc),
      Duration.toMillis(ssc.batchInterval),
      retained,
      () => ssc.checkpointDirectory,
    )
    ssc.addStreamingListener(collector.onEvent)
    Metrics.track(ssc)
    const graph = graphOf(ssc)
    if (graph !== undefined) {
      const every = yield* Effect.try({
        try: () => Duration.toMillis(Duration.fromInputUnsafe(options.kafkaLagInterval ?? "5 seconds")),
        catch: () =>
          new StreamingUIError({
            message:
              `Cannot serve the streaming UI: kafkaLagInterval is not a duration, got "${options.kafkaLagInterval}"`,
          }),
      })
      yield* Effect.forkScoped(pollKafkaLag(graph, collector, every))
    }
    const server = yield* (yield* ServerFactory).make({ port: options.port, host }).pipe(
      Effect.mapError((e) =>
        new StreamingUIError({
          message: `Cannot serve the streaming UI on "${host}:${options.port}": ${describe(e.cause)}`,
          cause: e,
        })
      ),
    )
    const router = yield* HttpRouter.make
    yield* addRoutes(router, collector, assets)
    yield* HttpServer.serveEffect()(router.asHttpEffect()).pipe(
      Effect.provideService(HttpServer.HttpServer, server),
    )
    const address = server.address
    const port = address._tag === "UnixPathAddress" ? options.port : address.port
    const shown = host.includes(":") ? `[${host}]` : host
    return { url: `http://${shown}:${port}/`, host, port }
  })

const describe = (cause: unknown): string =>
  cause instanceof Error ? cause.message : typeof cause === "string" ? cause : "the server failed to listen"

/**
 * Serves the live page of `ssc` in a scope of its own, closed by the returned `close` (for
 * code that has no scope to give, such as a context's own stop finalizers).
 *
 * @example
 * ```ts
 * const { ui, close } = yield* StreamingUI.attach(ssc, { port: 4040 })
 * // … later
 * yield* close
 * ```
 *
 * @since 0.1.0
 * @category running
 */
export const attach = (
  ssc: StreamingContext,
  options: Options,
): Effect.Effect<
  { readonly ui: StreamingUI; readonly close: Effect.Effect<void> },
  StreamingUIError,
  ServerFactory | FileSystem.FileSystem
> =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    const close = Scope.close(scope, Exit.void)
    const ui = yield* serve(ssc, options).pipe(Scope.provide(scope), Effect.onError(() => close))
    return { ui, close }
  })

/**
 * The UI as a layer over the `StreamingContext` service: serves while the layer is alive.
 *
 * @example
 * ```ts
 * program.pipe(
 *   Effect.provide(StreamingUI.layer({ port: 4040 })),
 *   Effect.provide(StreamingContext.layer({ batchInterval: "1 second" })),
 * )
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: Options,
): Layer.Layer<never, StreamingUIError, StreamingContext | ServerFactory | FileSystem.FileSystem> =>
  Layer.effectDiscard(Effect.gen(function* () {
    const ssc = yield* StreamingContext
    yield* serve(ssc, options)
  }))
