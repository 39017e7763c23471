/**
 * Socket ingest: lines/s through `socketTextStream` into a per-batch count, against a raw
 * `node:net` line-reading loop over the same generator, in one run.
 *
 * What is measured, on both sides: the span from the moment the generator accepts the
 * connection (the same event on both sides, just before the first byte is sent) to the moment
 * the last line is counted: for the raw loop, its `end` handler after the final split; for the
 * receiver, the `foreachBatch` call whose count reaches the total. Context start-up and the
 * receiver's connect are outside the span (the raw loop's connect is too); waiting for the
 * batch that holds the last line is inside it, with a 20 ms batch interval so it stays small
 * next to the run (the pipeline pays for the extra batches).
 *
 *   deno run -A bench/socket_ingest.ts [lines]
 *   bun bench/socket_ingest.ts [lines]
 */
import process from "node:process"
import * as Net from "node:net"
import { Effect } from "effect"
import { Runtime, StreamingContext } from "../mod.ts"
import { runtimeName } from "./_runtime.ts"

const total = Number(process.argv[2] ?? 2_000_000)

/** A server that sends `total` numbered lines to each client as fast as it reads, then closes. */
const startGenerator = async (): Promise<{ port: number; close: () => void; accepted: () => number }> => {
  const chunkLines = 10_000
  let acceptedAt = NaN
  const server = Net.createServer((socket) => {
    acceptedAt = performance.now()
    socket.on("error", () => {})
    let sent = 0
    const pump = () => {
      while (sent < total) {
        const n = Math.min(chunkLines, total - sent)
        let text = ""
        for (let i = 0; i < n; i++) text += `line ${sent + i} the quick brown fox\n`
        sent += n
        if (!socket.write(text)) return void socket.once("drain", pump)
      }
      socket.end()
    }
    pump()
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  return {
    port: (server.address() as Net.AddressInfo).port,
    close: () => server.close(),
    accepted: () => acceptedAt,
  }
}

/** The baseline: read the connection, decode UTF-8, split lines, count them. Resolves with the time of the last count. */
const rawLoop = (port: number): Promise<number> =>
  new Promise((resolve, reject) => {
    const decoder = new TextDecoder()
    let tail = ""
    let lines = 0
    const socket = Net.connect({ host: "127.0.0.1", port })
    socket.on("data", (chunk: Uint8Array) => {
      const parts = (tail + decoder.decode(chunk, { stream: true })).split("\n")
      tail = parts.pop()!
      lines += parts.length
    })
    socket.on("error", reject)
    socket.on("end", () => {
      if (tail.length > 0) lines++
      if (lines !== total) reject(new Error(`raw loop read ${lines} lines, expected ${total}`))
      resolve(performance.now())
    })
  })

/** The same lines through a socket receiver into `count()`. Resolves with the time of the last count. */
const throughReceiver = (port: number): Promise<number> =>
  Effect.runPromise(
    Effect.gen(function* () {
      const ssc = yield* StreamingContext.make({ batchInterval: "20 millis" })
      let counted = 0
      let countedAt = NaN
      ssc.socketTextStream("127.0.0.1", port).count().foreachBatch((batch) => {
        counted += batch[0]
        if (counted >= total && Number.isNaN(countedAt)) countedAt = performance.now()
      })
      yield* ssc.start
      while (counted < total) yield* Effect.sleep("5 millis")
      yield* ssc.stop()
      if (counted !== total) return yield* Effect.die(new Error(`counted ${counted} lines, expected ${total}`))
      return countedAt
    }).pipe(Effect.provide(Runtime.layer)),
  )

const runtime = runtimeName
const rate = (ms: number) => Math.round(total / (ms / 1000))

const best = { raw: Infinity, receiver: Infinity }
for (let round = 0; round < 3; round++) {
  const rawServer = await startGenerator()
  best.raw = Math.min(best.raw, (await rawLoop(rawServer.port)) - rawServer.accepted())
  rawServer.close()
  const server = await startGenerator()
  best.receiver = Math.min(best.receiver, (await throughReceiver(server.port)) - server.accepted())
  server.close()
}
console.log(`socket ingest, ${total} lines, ${runtime} (best of 3)`)
console.log(`  raw node:net loop : ${rate(best.raw).toLocaleString("en-US")} lines/s`)
console.log(`  socketTextStream  : ${rate(best.receiver).toLocaleString("en-US")} lines/s`)
console.log(`  ratio             : ${(best.raw / best.receiver).toFixed(2)} (target >= 0.7)`)
process.exit(0)
