/**
 * Bad input and failing receivers: each produces a receiver-error event naming the receiver
 * and the cause, the receiver restarts per its policy, other receivers and the context keep
 * running. Real TCP servers; event-driven waits.
 */
import { afterEach, describe, it } from "node:test"
import assert from "node:assert/strict"
import { Effect, Logger, Schedule, Stream } from "effect"
import {
  LineTooLongError,
  type Listener,
  MalformedInputError,
  Receiver,
  ReceiverError,
  StreamingContext,
} from "../mod.ts"
import { type LineServer, startLineServer } from "./_support/line_server.ts"
import { collectEvents, completed, live, waitFor } from "./_support/live.ts"

const errorsOf = (events: ReadonlyArray<Listener.StreamingEvent>, name: string) =>
  events.flatMap((e) => e._tag === "ReceiverError" && e.receiverInfo.name === name ? [e.receiverInfo] : [])

const fast = Schedule.spaced("50 millis")

describe("failing receivers", () => {
  it("a receiver that throws or fails is restarted per its schedule; the others keep running", async () => {
    const result = await live(Effect.gen(function* () {
      const ssc = yield* StreamingContext.make({ batchInterval: "200 millis" })
      yield* Effect.addFinalizer(() => ssc.stop())
      const events = collectEvents(ssc)
      let throwingRuns = 0
      let failingRuns = 0
      const steady: Array<number> = []
      ssc.receiverStream(Receiver.make<number>({
        name: "thrower",
        restartSchedule: fast,
        run: (store) =>
          Effect.gen(function* () {
            throwingRuns++
            yield* store(1)
            throw new Error(`boom ${throwingRuns}`)
          }),
      })).foreachBatch(() => {})
      ssc.receiverStream(Receiver.make<number>({
        name: "failer",
        restartSchedule: fast,
        run: (store) =>
          Effect.gen(function* () {
            failingRuns++
            yield* store(1)
            return yield* store.restart("Asked to restart", new Error("device gone"), "10 millis")
          }),
      })).foreachBatch(() => {})
      ssc.receiverStream(Receiver.make<number>({
        name: "steady",
        run: (store) => Effect.forever(Effect.andThen(Effect.sleep("10 millis"), store(1))),
      })).foreachBatch((batch) => {
        steady.push(batch.length)
      })
      yield* ssc.start
      yield* waitFor(
        () => errorsOf(events, "thrower").length >= 3 && errorsOf(events, "failer").length >= 3,
        "three errors each",
      )
      const steadyBefore = steady.reduce((a, b) => a + b, 0)
      yield* waitFor(() => steady.reduce((a, b) => a + b, 0) > steadyBefore, "steady records after the errors")
      const state = yield* ssc.state
      yield* ssc.stop()
      return { events, throwingRuns, failingRuns, state }
    }))
    assert.equal(result.state, "ACTIVE")
    const thrown = errorsOf(result.events, "thrower")
    assert.ok(result.throwingRuns >= 3)
    assert.match(thrown[0].lastErrorMessage!, /^Receiver died: boom 1$/)
    assert.ok(thrown[0].lastError instanceof Error)
    assert.equal(thrown[0].streamId, 0)
    const failed = errorsOf(result.events, "failer")
    assert.equal(failed[0].lastErrorMessage, "Asked to restart")
    assert.equal((failed[0].lastError as Error).message, "device gone")
    assert.ok(result.failingRuns >= 3)
    assert.deepEqual(errorsOf(result.events, "steady"), [])
    // every receiver reports started once and stopped once
    for (const name of ["thrower", "failer", "steady"]) {
      const tags = result.events.flatMap((e) =>
        (e._tag === "ReceiverStarted" || e._tag === "ReceiverStopped") && e.receiverInfo.name === name ? [e._tag] : []
      )
      assert.deepEqual(tags, ["ReceiverStarted", "ReceiverStopped"], name)
    }
  })
})

describe("socket receivers with bad peers", () => {
  const servers: Array<LineServer> = []
  afterEach(async () => {
    for (const s of servers.splice(0)) await s.close()
  })

  it("over-long lines and binary garbage restart the connection; invalid UTF-8 is reported; a good peer is unaffected", async () => {
    const bad = await startLineServer()
    const good = await startLineServer()
    servers.push(bad, good)
    const badName = `socket 127.0.0.1:${bad.port}`
    const result = await live(Effect.gen(function* () {
      const ssc = yield* StreamingContext.make({ batchInterval: "200 millis" })
      yield* Effect.addFinalizer(() => ssc.stop())
      const events = collectEvents(ssc)
      const fromBad: Array<string> = []
      const fromGood: Array<string> = []
      ssc.socketTextStream("127.0.0.1", bad.port, { maxLineBytes: 64, restartSchedule: fast })
        .foreachBatch((b) => {
          fromBad.push(...b)
        })
      ssc.socketTextStream("127.0.0.1", good.port).foreachBatch((b) => {
        fromGood.push(...b)
      })
      yield* ssc.start
      const send = (server: LineServer, data: string | Uint8Array) => Effect.promise(() => server.send(data))
      yield* Effect.promise(() => bad.waitForClients(1))
      yield* Effect.promise(() => good.waitForClients(1))

      // 1. invalid UTF-8: reported, the lines still arrive, the connection stays
      yield* send(bad, Uint8Array.of(0x61, 0xff, 0xfe, 0x62, 0x0a))
      yield* waitFor(() => fromBad.includes("a\uFFFD\uFFFDb"), "the line with invalid bytes")
      yield* waitFor(
        () => errorsOf(events, badName).some((e) => e.lastError instanceof MalformedInputError),
        "the malformed-input report",
      )
      assert.equal(bad.connections, 1)

      // 2. an over-long line: the run fails, the receiver reconnects
      yield* send(bad, "x".repeat(200) + "\n")
      yield* waitFor(() => bad.connections === 2 && bad.connected === 1, "the reconnect after the long line")
      yield* send(bad, "after long\n")
      yield* send(good, "good 1\n")
      yield* waitFor(() => fromBad.includes("after long"), "a line after the reconnect")

      // 3. binary garbage without terminators: over-long too
      const garbage = new Uint8Array(4096)
      for (let i = 0; i < garbage.length; i++) garbage[i] = (i * 151 + 7) % 256 === 10 ? 0 : (i * 151 + 7) % 256
      yield* send(bad, garbage)
      yield* waitFor(() => bad.connections === 3 && bad.connected === 1, "the reconnect after the garbage")
      yield* send(bad, "after garbage\n")
      yield* send(good, "good 2\n")
      yield* waitFor(() => fromBad.includes("after garbage") && fromGood.includes("good 2"), "lines from both peers")
      const state = yield* ssc.state
      yield* ssc.stop()
      return { events, fromGood, state }
    }))
    assert.equal(result.state, "ACTIVE")
    const errors = errorsOf(result.events, badName)
    assert.ok(errors[0].lastError instanceof MalformedInputError)
    assert.equal((errors[0].lastError as MalformedInputError).count, 2)
    const tooLong = errors.filter((e) => e.lastError instanceof LineTooLongError)
    assert.equal(tooLong.length, 2, "one error per over-long input")
    for (const e of tooLong) assert.match(e.lastErrorMessage!, /a line exceeds the limit of 64 bytes/)
    assert.deepEqual(result.fromGood, ["good 1", "good 2"])
    assert.deepEqual(errorsOf(result.events, `socket 127.0.0.1:${good.port}`), [])
    assert.ok(!(errors[0].lastError instanceof ReceiverError))
  })
})

describe("listener events and logProgress", () => {
  it("every event kind arrives, with Spark's BatchInfo figures and records per input", async () => {
    const result = await live(Effect.gen(function* () {
      const ssc = yield* StreamingContext.make({ batchInterval: "200 millis" })
      yield* Effect.addFinalizer(() => ssc.stop())
      const events = collectEvents(ssc)
      const fromStream: Array<Listener.StreamingEvent> = []
      const stream = yield* ssc.events
      yield* Effect.forkScoped(Stream.runForEach(stream, (e) => Effect.sync(() => fromStream.push(e))))
      const sizes: Array<Array<number>> = [[], []]
      ssc.receiverStream(Receiver.make<string>({
        name: "letters",
        run: (store) => Effect.forever(Effect.andThen(Effect.sleep("20 millis"), store.all(["a", "b"]))),
      })).foreachBatch((b) => {
        sizes[0].push(b.length)
      })
      ssc.receiverStream(Receiver.make<number>({
        name: "numbers",
        run: (store) => Effect.forever(Effect.andThen(Effect.sleep("30 millis"), store(7))),
      })).foreachBatch((b) => Effect.andThen(Effect.sleep("5 millis"), Effect.sync(() => sizes[1].push(b.length))))
      yield* ssc.start
      yield* waitFor(() => completed(events).filter((b) => b.numRecords > 0).length >= 3, "three non-empty batches")
      yield* ssc.stop()
      yield* waitFor(() => fromStream.some((e) => e._tag === "StreamingStopped"), "the stream's last event")
      return { events, fromStream, sizes }
    }))
    const tags = new Set(result.events.map((e) => e._tag))
    for (
      const tag of [
        "StreamingStarted",
        "ReceiverStarted",
        "ReceiverStopped",
        "BatchSubmitted",
        "BatchStarted",
        "BatchCompleted",
        "OutputOperationStarted",
        "OutputOperationCompleted",
        "StreamingStopped",
      ]
    ) assert.ok(tags.has(tag as Listener.StreamingEvent["_tag"]), tag)
    // the Stream form sees the same events as the callback form
    assert.deepEqual(result.fromStream.map((e) => e._tag), result.events.map((e) => e._tag))
    const batches = completed(result.events)
    batches.forEach((info, i) => {
      assert.equal(info.schedulingDelay, info.processingStartTime! - info.submissionTime)
      assert.equal(info.processingDelay, info.processingEndTime! - info.processingStartTime!)
      assert.equal(info.totalDelay, info.schedulingDelay! + info.processingDelay!)
      assert.equal(info.streamIdToInputInfo[0].name, "letters")
      assert.equal(info.streamIdToInputInfo[1].name, "numbers")
      // records per input match what the outputs saw
      assert.equal(info.streamIdToInputInfo[0].numRecords, result.sizes[0][i])
      assert.equal(info.streamIdToInputInfo[1].numRecords, result.sizes[1][i])
      assert.equal(info.numRecords, result.sizes[0][i] + result.sizes[1][i])
      assert.equal(info.outputOperationInfos.length, 2)
      assert.ok(info.processingDelay! >= 5)
    })
  })

  it("logProgress logs one line per completed batch", async () => {
    const lines: Array<string> = []
    const logger = Logger.make((options) => {
      const message = Array.isArray(options.message) ? options.message.join(" ") : String(options.message)
      if (message.startsWith("Batch ")) lines.push(message)
    })
    const batches = await live(
      Effect.gen(function* () {
        const ssc = yield* StreamingContext.make({ batchInterval: "200 millis", logProgress: true })
        yield* Effect.addFinalizer(() => ssc.stop())
        const events = collectEvents(ssc)
        ssc.receiverStream(Receiver.make<number>({
          name: "numbers",
          run: (store) => Effect.forever(Effect.andThen(Effect.sleep("20 millis"), store(1))),
        })).foreachBatch(() => {})
        yield* ssc.start
        yield* waitFor(() => completed(events).length >= 3, "three batches")
        yield* ssc.stop()
        return completed(events)
      }).pipe(Effect.provide(Logger.layer([logger]))),
    )
    assert.equal(lines.length, batches.length)
    batches.forEach((info, i) => {
      assert.equal(
        lines[i],
        `Batch ${info.batchTime} ms: ${info.numRecords} records, scheduling delay ${info.schedulingDelay} ms, ` +
          `processing ${info.processingDelay} ms, total delay ${info.totalDelay} ms`,
      )
    })
  })
})
