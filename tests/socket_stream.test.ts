/**
 * End to end over real TCP and real directories, on the real clock: socketTextStream word
 * counts against a server that goes away and comes back, and textFileStream over files
 * moved into a directory.
 */
import { describe, it } from "node:test"
import assert from "node:assert/strict"
import { mkdtemp, rename, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Deferred, Effect, Schedule } from "effect"
import { type Listener, Runtime, StreamingContext } from "../mod.ts"
import { startLineServer } from "./_support/line_server.ts"

/** Polls `condition` every 20 ms until it holds, failing after `ms`. */
const eventually = async (condition: () => boolean, ms: number, what: string): Promise<void> => {
  const deadline = Date.now() + ms
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`Timed out after ${ms} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

describe("socketTextStream over real TCP", () => {
  it("counts words per batch, reconnects when the server drops or restarts, and keeps counting", async () => {
    let server = await startLineServer()
    const port = server.port
    const totals = new Map<string, number>()
    const events: Array<Listener.StreamingEvent> = []
    let ssc: StreamingContext.StreamingContext | undefined
    const running = Effect.runPromise(
      Effect.gen(function* () {
        ssc = yield* StreamingContext.make({ batchInterval: "200 millis" })
        ssc.addStreamingListener((e) => {
          events.push(e)
        })
        ssc.socketTextStream("127.0.0.1", port, { restartSchedule: Schedule.spaced("100 millis") })
          .flatMap((line) => line.split(" "))
          .filter((w) => w.length > 0)
          .mapToPair((w) => [w, 1])
          .reduceByKey((a, b) => a + b)
          .foreachBatch((batch) => {
            for (const [w, n] of batch) totals.set(w, (totals.get(w) ?? 0) + n)
          })
        yield* ssc.start
        yield* ssc.awaitTermination
      }).pipe(Effect.provide(Runtime.layer)),
    )
    try {
      await server.waitForClients(1)
      await server.send("to be or\r\nnot to be\n")
      await eventually(() => totals.get("be") === 2, 20_000, "the first lines to be counted")
      assert.equal(totals.get("to"), 2)
      assert.equal(totals.get("not"), 1)

      // The server drops the connection: the receiver reports it and reconnects.
      server.dropClients()
      await server.waitForClients(1)
      await server.send("be quick\n")
      await eventually(() => totals.get("be") === 3, 20_000, "counting after the reconnect")

      // The server goes away entirely and comes back on the same port; a final unterminated
      // line is still counted when the server ends the connection.
      await server.send("last words")
      await server.close()
      await eventually(() => totals.get("last") === 1, 20_000, "the final unterminated line")
      await new Promise((r) => setTimeout(r, 300))
      server = await startLineServer({ port })
      await server.waitForClients(1)
      await server.send("back again\n")
      await eventually(() => totals.get("again") === 1, 20_000, "counting after the server came back")

      const errors = events.filter((e): e is Extract<Listener.StreamingEvent, { _tag: "ReceiverError" }> =>
        e._tag === "ReceiverError"
      )
      assert.ok(errors.length >= 2, `receiver errors reported: ${errors.length}`)
      const messages = errors.map((e) => e.receiverInfo.lastErrorMessage ?? "")
      assert.ok(messages.some((m) => /no more data|Error receiving data/.test(m)), messages.join(" | "))
      assert.equal(events.filter((e) => e._tag === "StreamingStopped").length, 0, "the context kept running")
    } finally {
      await Effect.runPromise(ssc!.stop())
      await running
      await server.close()
    }
  })

  it("a line longer than the limit is rejected with a clear error and the stream keeps going", async () => {
    const server = await startLineServer()
    const lines: Array<string> = []
    const errors: Array<string> = []
    let ssc: StreamingContext.StreamingContext | undefined
    const running = Effect.runPromise(
      Effect.gen(function* () {
        ssc = yield* StreamingContext.make({ batchInterval: "200 millis" })
        ssc.addStreamingListener((e) => {
          if (e._tag === "ReceiverError") errors.push(e.receiverInfo.lastErrorMessage ?? "")
        })
        ssc.socketTextStream("127.0.0.1", server.port, {
          maxLineBytes: 64,
          restartSchedule: Schedule.spaced("100 millis"),
        })
          .foreachBatch((batch) => {
            lines.push(...batch)
          })
        yield* ssc.start
        yield* ssc.awaitTermination
      }).pipe(Effect.provide(Runtime.layer)),
    )
    try {
      await server.waitForClients(1)
      await server.send("short\n" + "x".repeat(1000) + "\n")
      await eventually(() => errors.length > 0, 20_000, "the over-long line error")
      assert.match(errors.join(), /64/)
      // The line before the bad one was stored and reaches its batch.
      await eventually(() => lines.includes("short"), 20_000, "the line before the over-long one")
      assert.ok(!lines.some((l) => l.length > 64))
      await server.waitForClients(1)
      await server.send("after\n")
      await eventually(() => lines.includes("after"), 20_000, "lines after the rejected one")
    } finally {
      await Effect.runPromise(ssc!.stop())
      await running
      await server.close()
    }
  })
})

describe("textFileStream over a real directory", () => {
  it("reads each new file once, as UTF-8 lines, ignoring dot-files", async () => {
    const dir = await mkdtemp(join(tmpdir(), "dstream-files-"))
    const staging = await mkdtemp(join(tmpdir(), "dstream-staging-"))
    const lines: Array<string> = []
    let ssc: StreamingContext.StreamingContext | undefined
    const started = Effect.runSync(Deferred.make<void>())
    const running = Effect.runPromise(
      Effect.gen(function* () {
        ssc = yield* StreamingContext.make({ batchInterval: "200 millis" })
        ssc.textFileStream(dir).foreachBatch((batch) => {
          lines.push(...batch)
        })
        yield* ssc.start
        yield* Deferred.succeed(started, undefined)
        yield* ssc.awaitTermination
      }).pipe(Effect.provide(Runtime.layer)),
    )
    try {
      await Effect.runPromise(Deferred.await(started))
      await new Promise((r) => setTimeout(r, 50))
      // Files are written elsewhere and moved in, as Spark's guide recommends.
      await writeFile(join(staging, "a.txt"), "one\r\ntwo\nthree")
      await rename(join(staging, "a.txt"), join(dir, "a.txt"))
      await writeFile(join(dir, ".hidden"), "secret\n")
      await eventually(() => lines.length >= 3, 20_000, "the first file's lines")
      await writeFile(join(staging, "b.txt"), "four\n")
      await rename(join(staging, "b.txt"), join(dir, "b.txt"))
      await eventually(() => lines.includes("four"), 20_000, "the second file's lines")
      await new Promise((r) => setTimeout(r, 500))
      assert.deepEqual(lines, ["one", "two", "three", "four"])
    } finally {
      await Effect.runPromise(ssc!.stop())
      await running
      await rm(dir, { recursive: true, force: true })
      await rm(staging, { recursive: true, force: true })
    }
  })
})
