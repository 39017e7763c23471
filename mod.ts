/**
 * effect-dstream: Spark Streaming's DStream model — micro-batches cut by a batch clock, typed
 * operators, sliding windows, keyed state with checkpoints, receivers — as a type-safe fluent
 * TypeScript DSL on Effect, for Deno, Bun and Node.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Runtime, StreamingContext } from "effect-dstream"
 *
 * Runtime.runMain(Effect.gen(function* () {
 *   const ssc = yield* StreamingContext.make({ batchInterval: "1 second" })
 *   ssc.socketTextStream("localhost", 9999)
 *     .flatMap((line) => line.split(" "))
 *     .mapToPair((w) => [w, 1])
 *     .reduceByKey((a, b) => a + b)
 *     .print()
 *   yield* ssc.start
 *   yield* ssc.awaitTermination
 * }))
 * ```
 *
 * The library is platform-free except `Runtime`, which provides `@effect/platform-node`'s
 * services (Node, Deno, Bun) and `runMain`.
 *
 * @module
 */
export * as BatchClock from "./lib/BatchClock.ts"
export * as Checkpoint from "./lib/Checkpoint.ts"
export * as DStream from "./lib/DStream.ts"
export * as EventTime from "./lib/EventTime.ts"
export * as Kafka from "./lib/Kafka.ts"
export * as KafkaScale from "./lib/KafkaScale.ts"
export * from "./lib/Errors.ts"
export * as Listener from "./lib/Listener.ts"
export * as Metrics from "./lib/Metrics.ts"
export * as Receiver from "./lib/Receiver.ts"
export * as RateEstimator from "./lib/RateEstimator.ts"
export * as Replay from "./lib/Replay.ts"
export * as Runtime from "./lib/Runtime.ts"
export * as State from "./lib/State.ts"
export { StateSpec } from "./lib/State.ts"
export * as StreamingContext from "./lib/StreamingContext.ts"
export * as StreamingUI from "./lib/StreamingUI.ts"
export * as Testing from "./lib/Testing.ts"
export * as Time from "./lib/Time.ts"
export * as Window from "./lib/Window.ts"
