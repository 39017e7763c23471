/**
 * The core is platform-free: it never builds a FileSystem or Path itself. A pipeline without
 * files runs with no platform at all; one that reads or writes files gets the program's
 * (`Runtime.layer`, captured by `StreamingContext.make`), and without it `start` fails with a
 * `ValidationError` naming every operator that needs it and how to provide it. Socket streams
 * likewise need the program's `Receiver.SocketConnector`.
 */
import { describe, it } from "node:test"
import assert from "node:assert/strict"
import * as fs from "node:fs"
import * as os from "node:os"
import * as nodePath from "node:path"
import { Effect, FileSystem, Option } from "effect"
import { TestClock } from "effect/testing"
import { Checkpoint, Receiver, Replay, StreamingContext, StreamingUI, Testing, ValidationError } from "../mod.ts"
import { failureOf, run, runExit, withPlatform } from "./_support/run.ts"

const tempDir = () => fs.mkdtempSync(nodePath.join(os.tmpdir(), "dstream-platform-"))

describe("a platform-free core", () => {
  it("runs a pipeline without files with no platform: queue input, keyed state in a memory store", async () => {
    const seen: Array<boolean> = []
    const out = await run(Testing.run((ssc) => {
      const counts = Testing.input(ssc, [["a", "b"], ["a"]])
        .mapToPair((w) => [w, 1])
        .updateStateByKey((vs: ReadonlyArray<number>, s: Option.Option<number>) =>
          Option.some(vs.length + Option.getOrElse(s, () => 0))
        )
      counts.foreachBatch(() =>
        Effect.map(Effect.serviceOption(FileSystem.FileSystem), (fs) => {
          seen.push(Option.isSome(fs))
        })
      )
      return counts
    }, { numBatches: 2, checkpoint: "ckpt" }))
    assert.deepEqual(out.map((b) => [...b].sort()), [[["a", 1], ["b", 1]], [["a", 2], ["b", 1]]])
    // the jobs got no FileSystem: nothing built one
    assert.deepEqual(seen, [false, false])
  })

  it("start fails naming every operator that reads or writes files when the program provides no FileSystem", async () => {
    const dir = tempDir()
    try {
      const build = (ssc: StreamingContext.StreamingContext) => {
        ssc.textFileStream(nodePath.join(dir, "in")).saveAsTextFiles(nodePath.join(dir, "out", "words"))
        ssc.receiverStream(Receiver.make<string>({ name: "logged", run: () => Effect.never })).print()
        ssc.checkpoint(nodePath.join(dir, "ckpt"))
      }
      const options = { batchInterval: "1 second", receivers: { writeAheadLog: true } } as const
      const exit = await runExit(Effect.gen(function* () {
        const ssc = yield* StreamingContext.make(options)
        build(ssc)
        yield* ssc.start
      }))
      const error = failureOf(exit)
      assert.ok(error instanceof ValidationError, String(error))
      assert.equal(
        error.message,
        `Cannot start StreamingContext: checkpoint("${nodePath.join(dir, "ckpt")}"), textFileStream("${
          nodePath.join(dir, "in")
        }"), saveAsTextFiles("${
          nodePath.join(dir, "out", "words")
        }"), receiver "logged" (writeAheadLog) read or write files, and the program provides no FileSystem and Path: run the program with Runtime.runMain, or provide Runtime.layer (or another platform's layers) to it`,
      )

      // The same pipeline made inside Runtime.layer keeps its FileSystem and Path: start needs none.
      fs.mkdirSync(nodePath.join(dir, "in"))
      const ssc = await run(withPlatform(StreamingContext.make(options)))
      build(ssc)
      await run(
        Effect.gen(function* () {
          yield* ssc.start
          yield* ssc.stop()
        }).pipe(Effect.provide(TestClock.layer())),
      )
      assert.ok(fs.existsSync(nodePath.join(dir, "ckpt", "receivedData")), "the write-ahead log was opened")
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })

  it("socket streams need a SocketConnector: start fails naming them without one", async () => {
    const exit = await runExit(Effect.gen(function* () {
      const ssc = yield* StreamingContext.make({ batchInterval: "1 second" })
      ssc.socketTextStream("localhost", 9999).print()
      ssc.socketStream("localhost", 9998, (bytes) => bytes).print()
      yield* ssc.start
    }))
    const error = failureOf(exit)
    assert.ok(error instanceof ValidationError, String(error))
    assert.equal(
      error.message,
      `Cannot start StreamingContext: socketTextStream("localhost", 9999), socketStream("localhost", 9998) open TCP connections, and the program provides no Receiver.SocketConnector: run the program with Runtime.runMain, or provide Runtime.layer (or another platform's layers) to it`,
    )
  })

  it("a single operator that needs files is named alone: Replay.fromDirectory", async () => {
    const exit = await runExit(Effect.gen(function* () {
      const ssc = yield* StreamingContext.make({ batchInterval: "1 second" })
      Replay.input(ssc, Replay.fromDirectory("history"), { recordsPerBatch: 10 }).print()
      yield* Replay.run(ssc)
    }))
    const error = failureOf(exit)
    assert.ok(error instanceof ValidationError, String(error))
    assert.match(
      error.message,
      /^Cannot start StreamingContext: Replay\.fromDirectory\("history"\) reads or writes files,/,
    )
  })

  it("getOrCreate reads a CheckpointStore service with no platform, and without either fails naming the directory", async () => {
    const missing = failureOf(
      await runExit(StreamingContext.getOrCreate("ckpt", (ssc) => Testing.input(ssc, [[1]]).print())),
    )
    assert.ok(missing instanceof ValidationError, String(missing))
    assert.equal(
      missing.message,
      `Cannot recover from checkpoint directory "ckpt": getOrCreate reads it from the file system, and the program provides no FileSystem and Path: run the program with Runtime.runMain, or provide Runtime.layer (or another platform's layers) to it`,
    )
    const state = await run(
      Effect.gen(function* () {
        const ssc = yield* StreamingContext.getOrCreate("ckpt", (ssc) => Testing.input(ssc, [[1]]).print())
        return yield* ssc.state
      }).pipe(Effect.provide(Checkpoint.layerMemory)),
    )
    assert.equal(state, "INITIALIZED")
  })

  it("StreamingUI.serve asks the program for its server and FileSystem (a type error without them)", () => {
    const serveWithout = (ssc: StreamingContext.StreamingContext) =>
      // @ts-expect-error: ServerFactory and FileSystem are not provided
      Effect.runPromise(Effect.scoped(StreamingUI.serve(ssc, { port: 0 })))
    const serveWith = (ssc: StreamingContext.StreamingContext) =>
      Effect.runPromise(Effect.scoped(StreamingUI.serve(ssc, { port: 0 })).pipe(withPlatform))
    assert.equal(typeof serveWithout, "function")
    assert.equal(typeof serveWith, "function")
  })
})
