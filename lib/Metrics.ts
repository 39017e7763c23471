/**
 * The streaming engine's figures as Effect `Metric`s: batch counters, delay histograms, input
 * rates and records per input, receiver restarts, keyed-state sizes and Kafka offsets. They
 * live in the metric registry of the fiber that runs the context, so a user's own Effect
 * metrics setup (OTLP, Prometheus) sees them; `StreamingUI` serves them as Prometheus text at
 * `/metrics`.
 *
 * @example
 * ```ts
 * const ssc = yield* StreamingContext.make({ batchInterval: "1 second" })
 * Metrics.track(ssc)
 * // … build the pipeline, start it …
 * const text = yield* PrometheusMetrics.format() // from "effect/observability"
 * ```
 *
 * @module
 */
import { type Context, Duration, Effect, Metric } from "effect"
import type { BatchInfo, StreamingEvent } from "./Listener.ts"
import type { StreamingContext } from "./StreamingContext.ts"
import { graphOf, kafkaInputs, receiverRestarts as restartsOfGraph, stateNodes } from "./_internal/ui/inspect.ts"

const delayBoundaries = Metric.exponentialBoundaries({ start: 1, factor: 2, count: 22 })

/**
 * Batches completed (all outputs succeeded).
 *
 * @since 0.1.0
 * @category metrics
 */
export const batchesCompleted: Metric.Counter<number> = Metric.counter("dstream_batches_completed_total", {
  description: "Batches whose output operations all succeeded",
  incremental: true,
})

/**
 * Batches with a failed output operation.
 *
 * @since 0.1.0
 * @category metrics
 */
export const batchesFailed: Metric.Counter<number> = Metric.counter("dstream_batches_failed_total", {
  description: "Batches with a failed output operation",
  incremental: true,
})

/**
 * Records processed, per input (attribute `input`).
 *
 * @since 0.1.0
 * @category metrics
 */
export const records: Metric.Counter<number> = Metric.counter("dstream_input_records_total", {
  description: "Records of completed batches, per input",
  incremental: true,
})

/**
 * The last completed batch's input rate in records per second, per input (attribute `input`).
 *
 * @since 0.1.0
 * @category metrics
 */
export const inputRate: Metric.Gauge<number> = Metric.gauge("dstream_input_rate", {
  description: "Records per second of the last completed batch, per input",
})

/**
 * Scheduling delay of completed batches (ms): time waiting behind earlier batches.
 *
 * @since 0.1.0
 * @category metrics
 */
export const schedulingDelay: Metric.Histogram<number> = Metric.histogram("dstream_scheduling_delay_ms", {
  description: "Time a batch waited for earlier batches before its jobs started (ms)",
  boundaries: delayBoundaries,
})

/**
 * Processing time of completed batches (ms).
 *
 * @since 0.1.0
 * @category metrics
 */
export const processingTime: Metric.Histogram<number> = Metric.histogram("dstream_processing_time_ms", {
  description: "Time taken to process all jobs of a batch (ms)",
  boundaries: delayBoundaries,
})

/**
 * Total delay of completed batches (ms): scheduling delay + processing time.
 *
 * @since 0.1.0
 * @category metrics
 */
export const totalDelay: Metric.Histogram<number> = Metric.histogram("dstream_total_delay_ms", {
  description: "Scheduling delay plus processing time of a batch (ms)",
  boundaries: delayBoundaries,
})

/**
 * The time of the last completed batch (ms since the epoch).
 *
 * @since 0.1.0
 * @category metrics
 */
export const lastCompletedBatch: Metric.Gauge<number> = Metric.gauge("dstream_last_completed_batch_time_ms", {
  description: "Batch time of the last completed batch (ms since the epoch)",
})

/**
 * Receiver restarts, per receiver (attribute `receiver`).
 *
 * @since 0.1.0
 * @category metrics
 */
export const receiverRestarts: Metric.Counter<number> = Metric.counter("dstream_receiver_restarts_total", {
  description: "Times a receiver was started again after it failed or stopped",
  incremental: true,
})

/**
 * Errors reported by receivers, per receiver (attribute `receiver`).
 *
 * @since 0.1.0
 * @category metrics
 */
export const receiverErrors: Metric.Counter<number> = Metric.counter("dstream_receiver_errors_total", {
  description: "Errors reported by a receiver",
  incremental: true,
})

/**
 * Keys held by each stateful stream (attribute `stream`), after each completed batch.
 *
 * @since 0.1.0
 * @category metrics
 */
export const stateKeys: Metric.Gauge<number> = Metric.gauge("dstream_state_keys", {
  description: "Keys in the state of a stateful stream",
})

/**
 * Committed offset per Kafka partition (attributes `topic`, `partition`).
 *
 * @since 0.1.0
 * @category metrics
 */
export const kafkaCommittedOffset: Metric.Gauge<number> = Metric.gauge("dstream_kafka_committed_offset", {
  description: "Offset committed to Kafka by a direct stream, per partition",
})

/**
 * Records processed by completed batches but not yet committed, per Kafka partition
 * (attributes `topic`, `partition`).
 *
 * @since 0.1.0
 * @category metrics
 */
export const kafkaUncommitted: Metric.Gauge<number> = Metric.gauge("dstream_kafka_uncommitted_records", {
  description: "Records handed to batches but not yet committed, per partition",
})

/**
 * Consumer lag per Kafka partition (attributes `topic`, `partition`): the partition's
 * high-water mark minus the committed offset, read by `StreamingUI`'s poller.
 *
 * @since 0.1.0
 * @category metrics
 */
export const kafkaLag: Metric.Gauge<number> = Metric.gauge("dstream_kafka_lag_records", {
  description: "High-water mark minus committed offset, per partition",
})

const tracked = new WeakSet<StreamingContext>()

/**
 * Updates this module's metrics from `ssc`'s events (once per context; later calls do
 * nothing). Call it before `ssc.start`. The updates run on the context's fibers, so they land
 * in the metric registry those fibers see.
 *
 * @example
 * ```ts
 * Metrics.track(ssc)
 * ```
 *
 * @since 0.1.0
 * @category running
 */
export const track = (ssc: StreamingContext): void => {
  if (tracked.has(ssc)) return
  tracked.add(ssc)
  ssc.addStreamingListener(listener(ssc))
}

const tagged = <M extends Metric.Metric<any, any>>(metric: M) => {
  const cache = new Map<string, M>()
  return (attributes: Record<string, string>): M => {
    const key = JSON.stringify(attributes)
    let m = cache.get(key)
    if (m === undefined) {
      m = Metric.withAttributes(metric, attributes) as M
      cache.set(key, m)
    }
    return m
  }
}

const listener = (ssc: StreamingContext) => {
  const graph = graphOf(ssc)
  const batchMillis = Duration.toMillis(ssc.batchInterval)
  const recordsOf = tagged(records)
  const rateOf = tagged(inputRate)
  const restartsOf = tagged(receiverRestarts)
  const errorsOf = tagged(receiverErrors)
  const keysOf = tagged(stateKeys)
  const committedOf = tagged(kafkaCommittedOffset)
  const uncommittedOf = tagged(kafkaUncommitted)
  // The graph is frozen once the context starts: find its stateful and Kafka nodes once.
  let nodes:
    | { readonly states: ReturnType<typeof stateNodes>; readonly kafka: ReturnType<typeof kafkaInputs> }
    | undefined
  const nodesOf = () =>
    graph === undefined ? undefined : (nodes ??= { states: stateNodes(graph), kafka: kafkaInputs(graph) })
  // Restarts are counted by the supervisor; the counter catches up at the next event.
  const seenRestarts = new Map<number, number>()
  const restarts = (context: Context.Context<never>): void => {
    if (graph === undefined) return
    for (const [streamId, r] of restartsOfGraph(graph)) {
      const delta = r.restarts - (seenRestarts.get(streamId) ?? 0)
      if (delta > 0) {
        seenRestarts.set(streamId, r.restarts)
        restartsOf({ receiver: r.name }).updateUnsafe(delta, context)
      }
    }
  }
  const completed = (info: BatchInfo, context: Context.Context<never>): void => {
    const failed = info.outputOperationInfos.some((op) => op.failureReason !== undefined)
    ;(failed ? batchesFailed : batchesCompleted).updateUnsafe(1, context)
    if (info.schedulingDelay !== undefined) schedulingDelay.updateUnsafe(info.schedulingDelay, context)
    if (info.processingDelay !== undefined) processingTime.updateUnsafe(info.processingDelay, context)
    if (info.totalDelay !== undefined) totalDelay.updateUnsafe(info.totalDelay, context)
    lastCompletedBatch.updateUnsafe(info.batchTime, context)
    for (const input of Object.values(info.streamIdToInputInfo)) {
      recordsOf({ input: input.name }).updateUnsafe(input.numRecords, context)
      rateOf({ input: input.name }).updateUnsafe(input.numRecords * 1000 / batchMillis, context)
    }
    const found = nodesOf()
    if (found === undefined) return
    restarts(context)
    for (const node of found.states) {
      keysOf({ stream: node.checkpointName ?? `${node.kind}#${node.id}` }).updateUnsafe(node.state.size, context)
    }
    for (const input of found.kafka) {
      const until = new Map<string, number>()
      const offsets = info.streamIdToInputInfo[input.streamId]?.metadata?.offsets
      if (Array.isArray(offsets)) {
        for (const r of offsets as ReadonlyArray<{ topic: string; partition: number; untilOffset: number }>) {
          until.set(`${r.topic}\u0000${r.partition}`, r.untilOffset)
        }
      }
      for (const c of input.committed.values()) {
        const attributes = { topic: c.topic, partition: String(c.partition) }
        committedOf(attributes).updateUnsafe(c.offset, context)
        const u = until.get(`${c.topic}\u0000${c.partition}`)
        if (u !== undefined) uncommittedOf(attributes).updateUnsafe(Math.max(0, u - c.offset), context)
      }
    }
  }
  // One effect per event that matters, updating in the registry of the fiber that publishes it.
  return (e: StreamingEvent): Effect.Effect<void> | undefined => {
    switch (e._tag) {
      case "BatchCompleted":
        return Effect.contextWith((context: Context.Context<never>) => {
          completed(e.batchInfo, context)
          return Effect.void
        })
      case "ReceiverError":
        return Effect.contextWith((context: Context.Context<never>) => {
          errorsOf({ receiver: e.receiverInfo.name }).updateUnsafe(1, context)
          restarts(context)
          return Effect.void
        })
      default:
        return undefined
    }
  }
}
