/**
 * Kafka consumer lag for the UI and the metrics: a scoped fiber that, every `interval`, asks
 * Kafka (one admin client of the Kafka client interface per direct stream, made from the
 * stream's own client settings)
 * for the high-water mark of every assigned partition. Lag = high-water mark − committed offset
 * (what `kafka-consumer-groups` shows). The admin client comes from the Kafka input node
 * (`lagAdmin`), so no Kafka client is loaded unless a direct stream exists.
 * @internal
 */
import { Effect, Metric } from "effect"
import type { Admin } from "../kafkaClient.ts"
import { kafkaLag } from "../../Metrics.ts"
import type { Graph } from "../graph.ts"
import type { Collector } from "./collector.ts"
import { kafkaInputs, type KafkaInputView } from "./inspect.ts"

/** Polls high-water marks into `collector` until the scope closes. @internal */
export const pollKafkaLag = (graph: Graph, collector: Collector, intervalMillis: number) =>
  Effect.gen(function* () {
    const admins = new Map<KafkaInputView, Admin>()
    yield* Effect.addFinalizer(() =>
      Effect.promise(() =>
        Promise.all([...admins.values()].map((a) => a.disconnect().catch(() => undefined))).then(() => undefined)
      )
    )
    let lastWarning = ""
    const warnOnce = (message: string) =>
      message === lastWarning ? Effect.void : Effect.andThen(
        Effect.sync(() => (lastWarning = message)),
        Effect.logWarning(message),
      )
    const adminOf = (input: KafkaInputView) =>
      Effect.gen(function* () {
        const known = admins.get(input)
        if (known !== undefined) return known
        // the stream's own client settings; the client's log goes through Effect's logger, rate-limited
        const admin = yield* input.lagAdmin()
        admins.set(input, admin)
        return admin
      })
    const poll = Effect.gen(function* () {
      for (const input of kafkaInputs(graph)) {
        const topics = [...new Set(input.assignment().map((tp) => tp.topic))]
        if (topics.length === 0) continue
        const admin = yield* adminOf(input)
        for (const topic of topics) {
          const offsets = yield* Effect.tryPromise(() => admin.watermarks(topic)).pipe(
            Effect.timeout(Math.max(1000, intervalMillis * 4)),
            Effect.catch((e) =>
              Effect.as(
                warnOnce(
                  `Cannot read the high-water marks of Kafka topic "${topic}" for the streaming UI: ${message(e)}`,
                ),
                undefined,
              )
            ),
          )
          if (offsets === undefined) continue
          for (const o of offsets) {
            const lag = collector.setHighWatermark(input.streamId, topic, o.partition, o.high)
            if (lag !== undefined) {
              yield* Metric.update(
                Metric.withAttributes(kafkaLag, { topic, partition: String(o.partition) }),
                lag,
              )
            }
          }
        }
      }
    }).pipe(
      Effect.catch((e) => warnOnce(`Cannot connect to Kafka for the streaming UI's lag figures: ${message(e)}`)),
    )
    while (true) {
      yield* Effect.sleep(intervalMillis)
      if (collector.isRunning()) yield* poll
    }
  })

const message = (e: unknown): string => {
  const cause = e !== null && typeof e === "object" && "error" in e ? e.error : e
  return cause instanceof Error ? cause.message : String(cause)
}
