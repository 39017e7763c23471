import { afterEach, describe, it } from "node:test"
import assert from "node:assert/strict"
import { Cause, Effect, Exit, Fiber, Stream } from "effect"
import { LineTooLongError, ReceiverError } from "../lib/Errors.ts"
import type { Receiver, Store } from "../lib/Receiver.ts"
import * as Runtime from "../lib/Runtime.ts"
import { defaultSocketRestartSchedule, socketReceiver, socketTextReceiver } from "../receivers/socket.ts"
import { type LineServer, startLineServer } from "./_support/line_server.ts"
import { sampleText, serveSampleText } from "../examples/_sample_server.ts"

/** A Store that collects records; `single` counts records stored one by one. */
const makeStore = <A>() => {
  const records: Array<A> = []
  const batches: Array<number> = []
  let single = 0
  const store = ((record: A) =>
    Effect.sync(() => {
      single++
      records.push(record)
    })) as unknown as Store<A>
  Object.defineProperties(store, {
    all: {
      value: (many: ReadonlyArray<A>) =>
        Effect.sync(() => {
          batches.push(many.length)
          for (const record of many) records.push(record)
        }),
    },
    reportError: { value: () => Effect.void },
    restart: {
      value: (message: string, cause?: unknown) => Effect.fail(new ReceiverError({ receiver: "test", message, cause })),
    },
    isStopped: { value: Effect.succeed(false) },
    name: { value: "test receiver" },
    streamId: { value: 0 },
  })
  return {
    store,
    records,
    batches,
    get single() {
      return single
    },
  }
}

const waitUntil = async (condition: () => boolean, what: string, timeoutMillis = 15_000) => {
  const deadline = Date.now() + timeoutMillis
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

/** Runs the receiver in its own scope on a forked fiber, with the runtime's SocketConnector. */
const start = <A>(receiver: Receiver<A>, store: Store<A>) =>
  Effect.runFork(Effect.scoped(receiver.run(store)).pipe(Effect.provide(Runtime.layerSocketConnector)))

/** The fiber's exit; fails the test if the fiber is still running after `timeoutMillis`. */
const awaitExit = <A, E>(fiber: Fiber.Fiber<A, E>, timeoutMillis = 15_000) =>
  Effect.runPromise(
    Fiber.await(fiber).pipe(
      Effect.timeoutOrElse({
        duration: timeoutMillis,
        orElse: () => Effect.andThen(Fiber.interrupt(fiber), Effect.die(new Error("the run did not end in time"))),
      }),
    ),
  )

/** The ReceiverError a run failed with. */
const receiverError = (exit: Exit.Exit<unknown, unknown>): ReceiverError => {
  assert.ok(Exit.isFailure(exit), "the run should have failed")
  const error = Cause.squash(exit.cause)
  assert.ok(error instanceof ReceiverError, `expected a ReceiverError, got ${String(error)}`)
  return error
}

const freePort = async () => {
  const server = await startLineServer()
  await server.close()
  return server.port
}

describe("socketTextReceiver", () => {
  let server: LineServer | undefined
  let fiber: Fiber.Fiber<void, unknown> | undefined
  afterEach(async () => {
    if (fiber !== undefined) await Effect.runPromise(Fiber.interrupt(fiber))
    if (server !== undefined) await server.close()
    fiber = undefined
    server = undefined
  })

  it("is named after its address and reconnects with the default backoff", () => {
    const receiver = socketTextReceiver("localhost", 9999)
    assert.equal(receiver.name, "socket localhost:9999")
    assert.equal(receiver.restartSchedule, defaultSocketRestartSchedule)
  })

  it("stores lines 1..5 in order, in arrays", async () => {
    server = await startLineServer()
    const sink = makeStore<string>()
    fiber = start(socketTextReceiver("127.0.0.1", server.port), sink.store)
    await server.waitForClients(1)
    await server.send("1\n2\r\n3\n")
    await server.send("4\r5\n")
    await waitUntil(() => sink.records.length >= 5, "5 lines")
    assert.deepEqual(sink.records, ["1", "2", "3", "4", "5"])
    assert.equal(sink.single, 0)
    assert.ok(sink.batches.length >= 1 && sink.batches.length <= 5)
    assert.equal(server.connections, 1)
  })

  it("fails with 'no more data' when the server closes, after storing the unterminated line", async () => {
    server = await startLineServer()
    const port = server.port
    const sink = makeStore<string>()
    const running = start(socketTextReceiver("127.0.0.1", port), sink.store)
    await server.waitForClients(1)
    await server.send("a\nb\nlast wo")
    await server.send("rds")
    await waitUntil(() => sink.records.length >= 2, "2 lines")
    await server.close()
    server = undefined
    const error = receiverError(await awaitExit(running))
    assert.equal(error.message, "Socket data stream had no more data")
    assert.equal(error.receiver, `socket 127.0.0.1:${port}`)
    assert.deepEqual(sink.records, ["a", "b", "last words"])
  })

  it("fails with 'Error connecting to host:port' when nothing listens", async () => {
    const port = await freePort()
    const sink = makeStore<string>()
    const error = receiverError(await awaitExit(start(socketTextReceiver("127.0.0.1", port), sink.store)))
    assert.equal(error.message, `Error connecting to 127.0.0.1:${port}`)
    assert.equal(error.receiver, `socket 127.0.0.1:${port}`)
    assert.equal((error.cause as { code?: string }).code, "ECONNREFUSED")
    assert.deepEqual(sink.records, [])
  })

  it("connects again on a new run after the server restarts on the same port", async () => {
    server = await startLineServer()
    const port = server.port
    const first = makeStore<string>()
    const running = start(socketTextReceiver("127.0.0.1", port), first.store)
    await server.waitForClients(1)
    server.dropClients()
    assert.equal(receiverError(await awaitExit(running)).message, "Socket data stream had no more data")
    await server.close()
    server = await startLineServer({ port })
    const second = makeStore<string>()
    fiber = start(socketTextReceiver("127.0.0.1", port), second.store)
    await server.waitForClients(1)
    await server.send("again\n")
    await waitUntil(() => second.records.length >= 1, "a line after reconnecting")
    assert.deepEqual(second.records, ["again"])
  })

  it("fails with a LineTooLongError cause on an over-long line, keeping the lines before it", async () => {
    server = await startLineServer()
    const sink = makeStore<string>()
    const running = start(socketTextReceiver("127.0.0.1", server.port, { maxLineBytes: 16 }), sink.store)
    await server.waitForClients(1)
    await server.send("ok\n" + "x".repeat(100) + "\nafter\n")
    const error = receiverError(await awaitExit(running))
    assert.ok(error.cause instanceof LineTooLongError)
    assert.equal(error.cause.limit, 16)
    assert.match(error.message, /16 bytes/)
    assert.deepEqual(sink.records, ["ok"])
  })

  it("fails on an over-long line that never ends, without waiting for its terminator", async () => {
    server = await startLineServer()
    const sink = makeStore<string>()
    const running = start(socketTextReceiver("127.0.0.1", server.port, { maxLineBytes: 1024 }), sink.store)
    await server.waitForClients(1)
    await server.send("first\n")
    await server.send("y".repeat(4096))
    const error = receiverError(await awaitExit(running))
    assert.ok(error.cause instanceof LineTooLongError)
    assert.deepEqual(sink.records, ["first"])
  })

  it("survives binary garbage and invalid UTF-8", async () => {
    server = await startLineServer()
    const sink = makeStore<string>()
    fiber = start(socketTextReceiver("127.0.0.1", server.port), sink.store)
    await server.waitForClients(1)
    const garbage = new Uint8Array(2048)
    for (let i = 0; i < garbage.length; i++) garbage[i] = (i * 151 + 7) % 256
    await server.send(Uint8Array.of(0x61, 0xff, 0xfe, 0x62, 0x0a, 0xe2, 0x82))
    await server.send(Uint8Array.of(0xac, 0x0a)) // "€" split across writes
    await server.send(garbage)
    await server.send("\nstill alive\n")
    await waitUntil(() => sink.records.includes("still alive"), "the line after the garbage")
    assert.equal(sink.records[0], "a\uFFFD\uFFFDb")
    assert.equal(sink.records[1], "€")
    assert.ok(sink.records.some((line) => line.includes("\uFFFD")))
    const exit = fiber.pollUnsafe()
    assert.equal(exit, undefined, "the receiver is still running")
  })
})

describe("socketReceiver", () => {
  it("hands the connection's bytes to the converter and stores what it emits", async () => {
    const server = await startLineServer()
    try {
      const sink = makeStore<number>()
      const sizes = socketReceiver(
        "127.0.0.1",
        server.port,
        (bytes) =>
          bytes.pipe(Stream.mapArray((chunks) => [chunks.reduce((sum, chunk) => sum + chunk.length, 0)] as const)),
      )
      const running = start(sizes, sink.store)
      await server.waitForClients(1)
      await server.send("x".repeat(1000))
      await waitUntil(() => sink.records.reduce((a, b) => a + b, 0) >= 1000, "1000 bytes")
      await server.close()
      const error = receiverError(await awaitExit(running))
      assert.equal(error.message, "Socket data stream had no more data")
      assert.equal(sink.records.reduce((a, b) => a + b, 0), 1000)
      assert.equal(sink.single, 0)
    } finally {
      await server.close()
    }
  })

  it("fails with 'Error receiving data' when the converter fails or throws", async () => {
    const server = await startLineServer()
    try {
      for (
        const decode of [
          (bytes: Stream.Stream<Uint8Array, ReceiverError>) =>
            bytes.pipe(Stream.mapEffect(() => Effect.fail("bad record" as const))),
          (bytes: Stream.Stream<Uint8Array, ReceiverError>) =>
            bytes.pipe(Stream.map((): number => {
              throw new Error("converter threw")
            })),
        ]
      ) {
        const sink = makeStore<unknown>()
        const running = start(socketReceiver<unknown>("127.0.0.1", server.port, decode), sink.store)
        await server.waitForClients(1)
        await server.send("data\n")
        const error = receiverError(await awaitExit(running))
        assert.equal(error.message, "Error receiving data")
        assert.ok(
          error.cause === "bad record" || (error.cause instanceof Error && error.cause.message === "converter threw"),
        )
        server.dropClients()
      }
    } finally {
      await server.close()
    }
  })
})

describe("serveSampleText", () => {
  it("replays the sample text in a loop to each client and closes connections on release", async () => {
    const sink = makeStore<string>()
    let running: Fiber.Fiber<void, unknown> | undefined
    await Effect.runPromise(Effect.scoped(Effect.gen(function* () {
      const { host, port } = yield* serveSampleText({ linesPerSecond: 200 })
      assert.equal(host, "127.0.0.1")
      running = start(socketTextReceiver(host, port), sink.store)
      yield* Effect.promise(() => waitUntil(() => sink.records.length > sampleText.length + 1, "a full loop"))
    })))
    assert.deepEqual(sink.records.slice(0, sampleText.length), sampleText)
    assert.equal(sink.records[sampleText.length], sampleText[0])
    const error = receiverError(await awaitExit(running!))
    assert.ok(["Socket data stream had no more data", "Error receiving data"].includes(error.message), error.message)
  })
})
