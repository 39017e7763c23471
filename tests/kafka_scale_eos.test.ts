/**
 * Exactly-once Kafka → Kafka with a scale-out stream, on the in-memory model of the client
 * interface (tests/_support/kafka_model.ts: open and aborted transactions hidden from
 * `read_committed`, offsets sent in a transaction applied only on commit): with
 * `Kafka.sink(..., { exactlyOnce: true })` the changelog appends and the input and repartition
 * offsets join each batch's transaction with the sink's records. A batch whose sink write fails
 * leaves neither its outputs nor its changelog appends visible to `read_committed`; the restart
 * restores the shards from the committed changelog and ends with every word counted once.
 */
import { describe, it } from "node:test"
import assert from "node:assert/strict"
import { Cause, Effect, Exit, Option, Schema } from "effect"
import { Kafka, StreamingContext } from "../mod.ts"
import { scaleOutWith } from "../lib/KafkaScale.ts"
import { controlKey, Restorer } from "../lib/_internal/changelog.ts"
import { KafkaModel } from "./_support/kafka_model.ts"
import { eventually, fast } from "./_support/kafka.ts"

const MODEL = ["model:9092"]
const decoder = new TextDecoder()
const text = (u: Uint8Array | string | null) => (u === null ? "" : typeof u === "string" ? u : decoder.decode(u))

const words = ["a", "b", "c", "d", "e", "f", "g", "h"]

/** A scale-out word count writing `word=count` to "out" exactly once; runs until `done` or failure. */
const run = (model: KafkaModel, done: () => boolean): Promise<Exit.Exit<void, unknown>> =>
  Effect.runPromise(Effect.gen(function* () {
    const ssc = yield* StreamingContext.make({ batchInterval: "100 millis" })
    const lines = scaleOutWith(ssc, {
      brokers: MODEL,
      applicationId: "eos",
      topic: "lines",
      value: Schema.String,
      ...fast,
    }, model.client)
    lines
      .repartitionByKey({
        name: "words",
        by: (r) => r.value.split(" ").map((w) => [w, 1] as const),
        key: Schema.String,
        value: Schema.NumberFromString,
      })
      .updateStateByKey(
        (ones: ReadonlyArray<number>, s: Option.Option<number>) =>
          Option.some(ones.reduce((x, y) => x + y, Option.getOrElse(s, () => 0))),
        { schemas: { state: Schema.Number } },
      )
      .map(([w, n]) => `${w}=${n}`)
      .pipe(Kafka.sink({ brokers: MODEL, topic: "out", value: Schema.String, exactlyOnce: true }))
    yield* ssc.start
    const finished = Effect.promise(() => eventually(done, 20_000, "the counts")).pipe(Effect.andThen(ssc.stop()))
    return yield* Effect.exit(Effect.raceFirst(ssc.awaitTermination, finished))
  }))

/** The state a restore of the committed changelog holds: word → count. */
const committedChangelog = (model: KafkaModel) => {
  const state: Record<string, number> = {}
  for (let p = 0; p < 4; p++) {
    const r = new Restorer()
    r.add(model.committedRecords("eos-words-changelog").filter((x) => x.partition === p))
    r.finish()
    for (const [k, v] of r.state) state[JSON.parse(k)] = JSON.parse(text(v))
  }
  return state
}

const changeRecords = (records: ReadonlyArray<{ readonly key: Uint8Array | string | null }>) =>
  records.filter((r) => r.key !== null && text(r.key) !== controlKey).length

describe("Exactly-once Kafka sink on a scale-out stream (model)", { timeout: 60_000 }, () => {
  it("a failed batch leaves no output and no changelog append visible to read_committed; the restart counts every word once", async () => {
    const model = new KafkaModel()
    model.createTopic("lines", 4)
    const expected: Record<string, number> = {}
    const producer = await model.client.producer()
    const lines = Array.from({ length: 40 }, (_, i) => [words[i % 8], words[(i * 3) % 8]].join(" "))
    await producer.send(lines.map((value, i) => ({ topic: "lines", key: `k${i}`, value })))
    for (const l of lines) for (const w of l.split(" ")) expected[w] = (expected[w] ?? 0) + 1
    // the first write to "out" fails: its batch (with its changelog appends) is aborted
    model.failNext("send", 1, "out")
    const failed = await run(model, () => false)
    assert.ok(Exit.isFailure(failed))
    assert.match(String(Cause.squash(failed.cause)) + JSON.stringify(failed.cause), /Injected failure of "send"/)
    assert.deepEqual(model.committedRecords("out"), [])
    // the aborted batch had appended changes: written, invisible to read_committed
    const all = []
    for (let p = 0; p < 4; p++) {
      all.push(
        ...model.visible(
          "eos-words-changelog",
          p,
          0,
          model.endOffset("eos-words-changelog", p, "read_uncommitted"),
          "read_uncommitted",
        ),
      )
    }
    assert.ok(changeRecords(all) > 0, "the failed batch appended nothing to the changelog")
    assert.equal(changeRecords(model.committedRecords("eos-words-changelog")), 0)
    // the restart: shards from the committed changelog, every word once
    const latest = () => {
      const out: Record<string, number> = {}
      for (const r of model.committedRecords("out")) {
        const [w, n] = text(r.value).split("=")
        out[w] = Number(n)
      }
      return out
    }
    const rerun = await run(
      model,
      () => JSON.stringify(latest()) !== "{}" && words.every((w) => latest()[w] === expected[w]),
    )
    assert.ok(Exit.isSuccess(rerun), Exit.isFailure(rerun) ? String(Cause.squash(rerun.cause)) : "")
    for (const w of words) assert.equal(latest()[w], expected[w], `word ${w}: ${JSON.stringify(latest())}`)
    assert.deepEqual(committedChangelog(model), expected)
  })
})
