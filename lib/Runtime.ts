/**
 * The runtime: the one module of the library that uses a platform. The rest of it is
 * platform-free, as Effect's own packages are: it asks the program for Effect's platform
 * services (`FileSystem`, `Path`), the socket sources' {@link Receiver.SocketConnector} and the
 * Streaming UI's {@link StreamingUI.ServerFactory}, and never builds them. This module provides them from `@effect/platform-node`, which runs on
 * Node, Deno and Bun, and runs a program as the process's main Effect with {@link runMain}.
 *
 * To run on another platform, provide its layers for those services instead of {@link layer}
 * (there is no 4.x `@effect/platform-bun` release yet, only pre-releases, so Bun uses Node's).
 * A pipeline without files or sockets (queue or test inputs, a memory checkpoint store) needs
 * no platform at all, so tests with `Testing.*` need none.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Runtime, StreamingContext } from "effect-dstream"
 *
 * Runtime.runMain(Effect.gen(function* () {
 *   const ssc = yield* StreamingContext.make({ batchInterval: "1 second" })
 *   ssc.textFileStream("incoming").count().print()
 *   yield* ssc.start
 *   yield* ssc.awaitTermination
 * }))
 * ```
 *
 * @module
 */
import * as http from "node:http"
import process from "node:process"
import { Effect, Layer } from "effect"
import * as EffectRuntime from "effect/Runtime"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeServices from "@effect/platform-node/NodeServices"
import * as NodeSocket from "@effect/platform-node/NodeSocket"
import * as Receiver from "./Receiver.ts"
import { onStopSignal, unprocessedRecordsReported } from "./StreamingContext.ts"
import * as StreamingUI from "./StreamingUI.ts"

/**
 * The services {@link layer} provides: Node's `FileSystem`, `Path`, child processes, stdio and
 * terminal (`NodeServices`), the socket sources' connector and the Streaming UI's HTTP server
 * factory.
 *
 * @since 0.1.0
 * @category models
 */
export type Services = NodeServices.NodeServices | Receiver.SocketConnector | StreamingUI.ServerFactory

/**
 * The TCP connections of `socketTextStream` and `socketStream`, from Node's `net` module
 * (`NodeSocket.makeNet`).
 *
 * @example
 * ```ts
 * program.pipe(Effect.provide(Runtime.layerSocketConnector))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerSocketConnector: Layer.Layer<Receiver.SocketConnector> = Layer.succeed(Receiver.SocketConnector)({
  connect: ({ host, openTimeout, port }) => NodeSocket.makeNet({ host, port, openTimeout }),
})

/**
 * The Streaming UI's HTTP server, from Node's `http` module (`NodeHttpServer`).
 *
 * @example
 * ```ts
 * StreamingUI.serve(ssc, { port: 4040 }).pipe(Effect.provide(Runtime.layerServerFactory))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layerServerFactory: Layer.Layer<StreamingUI.ServerFactory> = Layer.succeed(StreamingUI.ServerFactory)({
  make: ({ host, port }) => NodeHttpServer.make(() => http.createServer(), { host, port }),
})

/**
 * Every platform service the library uses, from `@effect/platform-node` (Node, Deno and Bun):
 * `FileSystem` and `Path` for file streams, `saveAsTextFiles`, checkpoint directories and
 * write-ahead logs, TCP connections for socket streams, and the Streaming UI's server.
 * {@link runMain} provides it.
 *
 * @example
 * ```ts
 * Effect.runPromise(Effect.scoped(program).pipe(Effect.provide(Runtime.layer)))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer: Layer.Layer<Services> = Layer.mergeAll(NodeServices.layer, layerSocketConnector, layerServerFactory)

/**
 * Runs a program as the process's main Effect with {@link layer}, on Node, Deno or Bun. The
 * first SIGINT / SIGTERM logs how the active context stops and interrupts the program: a
 * context awaiting termination then stops gracefully before the process exits. A second signal
 * forces the stop: the graceful drain gives up at once. When a stop leaves received records
 * unprocessed (and no write-ahead log keeps them), the error naming how many is logged and the
 * process exits with status 1; otherwise a signal ends it with status 130.
 *
 * @example
 * ```ts
 * Runtime.runMain(program)
 * ```
 *
 * @since 0.1.0
 * @category running
 */
export const runMain = <E>(program: Effect.Effect<void, E, Services>): void => {
  let signals = 0
  const onSignal = () => onStopSignal(++signals)
  process.on("SIGINT", onSignal)
  process.on("SIGTERM", onSignal)
  NodeRuntime.runMain(Effect.provide(program, layer), {
    teardown: (exit, onExit) => {
      process.removeListener("SIGINT", onSignal)
      process.removeListener("SIGTERM", onSignal)
      // A stop run by an interrupted awaitTermination cannot fail the interrupted main fiber:
      // its report (already logged) decides the status here.
      if (unprocessedRecordsReported()) return onExit(1)
      EffectRuntime.defaultTeardown(exit, onExit)
    },
  })
}
