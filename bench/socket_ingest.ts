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
 * Rounds alternate which side goes first; the ratio is taken per round and reported as the
 * median and range over the rounds, with the ratio of the process's CPU time over the same
 * spans (steadier on a loaded machine; it leaves out waiting, and includes the generator).
 *
 *   deno run -A bench/socket_ingest.ts [lines]     (ROUNDS=7)
 *   bun bench/socket_ingest.ts [lines]
 */
import process from "node:process"
import * as Net from "node:net"
import { Effect } from "effect"
import { Runtime, StreamingContext } from "../mod.ts"
import { runtimeName } from "./_runtime.ts"

const total = Number(process.argv[2] ?? 2_000_000)

/**
 * A server that sends `total` numbered lines to its first client as fast as it reads, then
 * closes; later connections (a receiver reconnecting after the end of data) are closed at once.
 */
const startGenerator = async (): Promise<{ port: number; close: () => void; accepted: () => number }> => {
  const chunkLines = 10_000
  let acceptedAt = NaN
  const server = Net.createServer((socket) => {
    if (!Number.isNaN(acceptedAt)) return void socket.destroy()
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

const rounds = Number(process.env.ROUNDS ?? 7)
const rate = (ms: number) => Math.round(total / (ms / 1000))
const sorted = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)
const median = (xs: ReadonlyArray<number>) => sorted(xs)[Math.floor(xs.length / 2)]

/** CPU time of the process (generator included, on both sides) in ms. */
const cpuMillis = () => {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1000
}
/** [wall ms from accept to last count, CPU ms of the process over the same run]. */
const measure = async (side: (port: number) => Promise<number>): Promise<[number, number]> => {
  const server = await startGenerator()
  const cpu = cpuMillis()
  const end = await side(server.port)
  const used = cpuMillis() - cpu
  server.close()
  return [end - server.accepted(), used]
}
const measureRaw = () => measure(rawLoop)
const measureReceiver = () => measure(throughReceiver)

// warm-up, then alternate which side goes first
await measureRaw()
await measureReceiver()
const raw: Array<number> = []
const receiver: Array<number> = []
const ratios: Array<number> = []
const cpuRatios: Array<number> = []
for (let round = 0; round < rounds; round++) {
  let r: [number, number]
  let s: [number, number]
  if (round % 2 === 0) {
    r = await measureRaw()
    s = await measureReceiver()
  } else {
    s = await measureReceiver()
    r = await measureRaw()
  }
  raw.push(r[0])
  receiver.push(s[0])
  ratios.push(r[0] / s[0])
  cpuRatios.push(r[1] / s[1])
}
const spread = (xs: ReadonlyArray<number>) => {
  const s = sorted(xs)
  return `${median(xs).toFixed(2)} (${s[0].toFixed(2)}–${s[s.length - 1].toFixed(2)})`
}
console.log(`socket ingest, ${total} lines, ${runtimeName}: median of ${rounds} alternating rounds (range)`)
console.log(`  raw node:net loop : ${rate(median(raw)).toLocaleString("en-US")} lines/s`)
console.log(`  socketTextStream  : ${rate(median(receiver)).toLocaleString("en-US")} lines/s`)
console.log(`  ratio (raw time / receiver time): ${spread(ratios)} (target >= 0.8)`)
// CPU time is less sensitive to other processes on a shared machine, but leaves out the
// receiver's wait for the batch that holds the last line (and both sides include the generator)
console.log(`  ratio of the process's CPU time over the same spans (raw / receiver): ${spread(cpuRatios)}`)
process.exit(0)
