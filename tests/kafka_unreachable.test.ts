/**
 * A Kafka broker that stays unreachable: the direct stream reports receiver-style error events,
 * logs kafkajs's lines through Effect's logger at a bounded rate, and fails after its
 * `unreachableTimeout` with a typed error naming the brokers — whether the brokers refuse from
 * the start (a closed port) or go away for good while the stream runs (librdkafka's mock
 * cluster, stopped).
 */
import { describe, it } from "node:test"
import assert from "node:assert/strict"
import { Effect, Exit, Logger, Schema } from "effect"
import { BatchJobError } from "../lib/Errors.ts"
import * as Kafka from "../lib/Kafka.ts"
import type { StreamingEvent } from "../lib/Listener.ts"
import * as StreamingContext from "../lib/StreamingContext.ts"
import { startMockCluster } from "../receivers/_kafka_mock.ts"
import { eventually, produce, unique } from "./_support/kafka.ts"

interface Run {
  readonly exit: Exit.Exit<void, unknown>
  readonly errors: ReadonlyArray<StreamingEvent & { readonly _tag: "ReceiverError" }>
  readonly logs: ReadonlyArray<string>
  /** From start until the context stopped. */
  readonly millis: number
}

/** Runs a direct stream on `brokers` until the context stops; `during` runs once it started. */
const runStream = (
  brokers: ReadonlyArray<string>,
  topic: string,
  during: (seen: () => number) => Promise<void>,
): Promise<Run> => {
  const errors: Array<StreamingEvent & { readonly _tag: "ReceiverError" }> = []
  const logs: Array<string> = []
  const logger = Logger.make((options) => {
    const m = options.message
    logs.push(Array.isArray(m) ? m.map(String).join(" ") : String(m))
  })
  let records = 0
  let millis = 0
  return Effect.runPromiseExit(
    Effect.gen(function* () {
      const ssc = yield* StreamingContext.make({ batchInterval: "200 millis" })
      const stream = Kafka.KafkaDirectStream.make(ssc, {
        brokers,
        groupId: unique("g"),
        topics: [topic],
        autoOffsetReset: "earliest",
        value: Schema.String,
        unreachableTimeout: "2 seconds",
        sessionTimeout: 4000,
        heartbeatInterval: 400,
        maxWaitTimeInMs: 200,
        connectionTimeout: 300,
        retry: { retries: 2, initialRetryTime: 50, maxRetryTime: 200 },
      })
      stream.foreachBatch((batch) => {
        records += batch.length
      })
      ssc.addStreamingListener((e) => {
        if (e._tag === "ReceiverError") errors.push(e)
      })
      const started = Date.now()
      yield* ssc.start
      yield* Effect.promise(() => during(() => records))
      yield* ssc.awaitTermination.pipe(
        Effect.timeout("20 seconds"),
        Effect.ensuring(Effect.sync(() => (millis = Date.now() - started))),
        Effect.ensuring(ssc.stop()),
      )
    }).pipe(Effect.provide(Logger.layer([logger]))),
  ).then((exit) => ({ exit, errors, logs, millis }))
}

const assertUnreachable = (run: Run, brokers: ReadonlyArray<string>): void => {
  assert.ok(Exit.isFailure(run.exit), "the context stopped with a failure")
  const fail = run.exit.cause.reasons.find((r) => r._tag === "Fail")
  assert.ok(fail !== undefined && fail._tag === "Fail" && fail.error instanceof BatchJobError, String(run.exit))
  const cause = (fail.error as BatchJobError).cause
  assert.ok(cause instanceof Kafka.KafkaUnreachableError, `the cause is KafkaUnreachableError: ${String(cause)}`)
  assert.deepEqual(cause.brokers, brokers)
  assert.equal(cause.timeoutMillis, 2000)
  for (const b of brokers) assert.ok(cause.message.includes(`"${b}"`), cause.message)
  assert.match(cause.message, /^Cannot reach the Kafka brokers .* for 2000 ms \(unreachableTimeout\): .+/)
  assert.ok(run.millis >= 2000, `failed after ${run.millis} ms, before the timeout`)
  // receiver-style error events name the stream and the failure
  assert.ok(run.errors.length >= 1, "ReceiverError events arrive")
  for (const e of run.errors) {
    assert.match(e.receiverInfo.name, /^Kafka direct stream \[\d+\]$/)
    assert.ok((e.receiverInfo.lastErrorMessage ?? "").length > 0)
    assert.equal(typeof e.receiverInfo.lastErrorTime, "number")
  }
  assert.ok(run.errors.some((e) => e.receiverInfo.lastError instanceof Kafka.KafkaUnreachableError))
  // kafkajs's own lines go through Effect's logger; with the stream's own lines they are
  // rate-limited: a burst of 5, then 1 per 2 s, plus the final error
  const streamLines = run.logs.filter((l) => /^Kafka direct stream \[\d+\]: /.test(l))
  assert.ok(
    streamLines.some((l) => l.includes(": kafkajs ")),
    `kafkajs lines reach Effect's logger:\n${run.logs.join("\n")}`,
  )
  const bound = 5 + Math.ceil(run.millis / 2000) + 1
  assert.ok(streamLines.length <= bound, `${streamLines.length} lines > ${bound}:\n${streamLines.join("\n")}`)
  assert.ok(run.logs.length <= bound + 3, `${run.logs.length} log lines in all:\n${run.logs.join("\n")}`)
}

describe("Kafka direct stream with unreachable brokers", { timeout: 60_000 }, () => {
  it("a broker address that refuses connections gives error events, a bounded log and a typed failure after unreachableTimeout", async () => {
    const brokers = ["127.0.0.1:1"]
    const run = await runStream(brokers, "nowhere", async () => {})
    assertUnreachable(run, brokers)
    assert.ok(run.errors.some((e) => (e.receiverInfo.lastErrorMessage ?? "").includes(`"127.0.0.1:1"`)))
  })

  it("a broker that goes away for good while the stream runs fails it after unreachableTimeout", async () => {
    const mock = await startMockCluster()
    try {
      const topic = unique("gone")
      await produce(mock.bootstrap, topic, [["a", "1"], ["b", "2"], ["c", "3"]])
      const run = await runStream([mock.bootstrap], topic, async (seen) => {
        await eventually(() => seen() >= 3, 20_000, "the 3 records")
        await mock.stop()
      })
      assertUnreachable(run, [mock.bootstrap])
    } finally {
      await mock.stop()
    }
  })
})
