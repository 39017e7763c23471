/**
 * Latency at a steady rate: 100 ms batches, 10 000 records/s from a real TCP source (a `node:net`
 * server in this process sending `<sequence> <send time>` lines every 10 ms), through
 * `socketTextStream` into a `foreachBatch`.
 *
 * From listener events, per batch: the total delay (`BatchCompleted.totalDelay`: the batch's
 * processing end minus its batch time, so the wake-up lag of the batch clock, queueing and
 * processing); per record: the end-to-end delay, the `processingEndTime` of the batch that
 * held it minus its send time. With records arriving evenly, a record waits on average half a
 * batch for its batch to be cut, so the end-to-end p50 should be about 50 ms plus the total
 * delay.
 *
 * In-run comparison: the same source read by a raw `node:net` loop that cuts batches itself on
 * a timer at the same 100 ms boundaries (the least a micro-batcher must do), measuring the same
 * two figures. Rounds alternate which side goes first; each figure is the median of the rounds'
 * values with their range.
 *
 *   deno run -A bench/latency.ts     bun bench/latency.ts
 *   (optional: SECONDS=11 ROUNDS=3 RATE=10000)
 */
import process from "node:process"
import * as Net from "node:net"
import { Effect } from "effect"
import { Runtime, StreamingContext } from "../mod.ts"
import { runtimeName } from "./_runtime.ts"

const seconds = Number(process.env.SECONDS ?? 11)
const rounds = Number(process.env.ROUNDS ?? 3)
const rate = Number(process.env.RATE ?? 10_000)
const batchMillis = 100
/** The first second of each run is not counted (connecting, first batches, JIT warm-up). */
const warmupMillis = 1000

/** A server sending `rate` lines/s to its first client, in a burst every 10 ms, each line `<seq> <Date.now()>`. */
const startSource = async (): Promise<{ readonly port: number; readonly close: () => void }> => {
  let timer: ReturnType<typeof setInterval> | undefined
  let taken = false
  const server = Net.createServer((socket) => {
    if (taken) return void socket.destroy()
    taken = true
    socket.on("error", () => {})
    const start = Date.now()
    let sent = 0
    timer = setInterval(() => {
      const now = Date.now()
      const due = Math.floor(((now - start) / 1000) * rate)
      let text = ""
      for (; sent < due; sent++) text += `${sent} ${now}\n`
      if (text.length > 0) socket.write(text)
    }, 10)
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  return {
    port: (server.address() as Net.AddressInfo).port,
    close: () => {
      if (timer !== undefined) clearInterval(timer)
      server.close()
    },
  }
}

interface Figures {
  /** Per batch: processing end − batch time. */
  readonly totalDelays: Array<number>
  /** Per record: processing end of its batch − send time. */
  readonly endToEnd: Array<number>
  records: number
}

const sendTime = (line: string): number => Number(line.slice(line.indexOf(" ") + 1))

/** effect-dstream: socketTextStream → foreachBatch, figures from listener events. */
const throughDStream = (port: number): Promise<Figures> =>
  Effect.runPromise(
    Effect.gen(function* () {
      const ssc = yield* StreamingContext.make({ batchInterval: `${batchMillis} millis` })
      const figures: Figures = { totalDelays: [], endToEnd: [], records: 0 }
      const sends = new Map<number, ReadonlyArray<number>>()
      let countFrom = Infinity
      ssc.socketTextStream("127.0.0.1", port).foreachBatch((lines, time) => {
        const times = new Array<number>(lines.length)
        for (let i = 0; i < lines.length; i++) times[i] = sendTime(lines[i])
        sends.set(time, times)
      })
      ssc.addStreamingListener((event) => {
        if (event._tag !== "BatchCompleted") return
        const info = event.batchInfo
        const times = sends.get(info.batchTime) ?? []
        sends.delete(info.batchTime)
        if (info.batchTime < countFrom || info.processingEndTime === undefined) return
        figures.totalDelays.push(info.totalDelay ?? NaN)
        for (const t of times) figures.endToEnd.push(info.processingEndTime - t)
        figures.records += times.length
      })
      yield* ssc.start
      countFrom = Date.now() + warmupMillis
      yield* Effect.sleep(`${seconds * 1000} millis`)
      yield* ssc.stop()
      return figures
    }).pipe(Effect.provide(Runtime.layer)),
  )

/** The baseline: a raw node:net loop cutting batches at the same 100 ms boundaries. */
const throughRawLoop = (port: number): Promise<Figures> =>
  new Promise((resolve, reject) => {
    const figures: Figures = { totalDelays: [], endToEnd: [], records: 0 }
    const decoder = new TextDecoder()
    let tail = ""
    let buffer: Array<string> = []
    const socket = Net.connect({ host: "127.0.0.1", port })
    socket.on("data", (chunk: Uint8Array) => {
      const parts = (tail + decoder.decode(chunk, { stream: true })).split("\n")
      tail = parts.pop()!
      for (const p of parts) buffer.push(p)
    })
    socket.on("error", reject)
    const countFrom = Date.now() + warmupMillis
    const end = Date.now() + seconds * 1000
    let next = (Math.floor(Date.now() / batchMillis) + 1) * batchMillis
    const tick = () => {
      const batchTime = next
      next += batchMillis
      const lines = buffer
      buffer = []
      const times = new Array<number>(lines.length)
      for (let i = 0; i < lines.length; i++) times[i] = sendTime(lines[i])
      const done = Date.now()
      if (batchTime >= countFrom) {
        figures.totalDelays.push(done - batchTime)
        for (const t of times) figures.endToEnd.push(done - t)
        figures.records += times.length
      }
      if (done >= end) {
        socket.destroy()
        return resolve(figures)
      }
      setTimeout(tick, Math.max(0, next - Date.now()))
    }
    setTimeout(tick, Math.max(0, next - Date.now()))
  })

const sorted = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)
const percentile = (xs: ReadonlyArray<number>, p: number) => {
  const s = sorted(xs)
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]
}
const median = (xs: ReadonlyArray<number>) => sorted(xs)[Math.floor(xs.length / 2)]
const spread = (xs: ReadonlyArray<number>) => {
  const s = sorted(xs)
  return `${median(xs).toFixed(0)} ms (${s[0].toFixed(0)}–${s[s.length - 1].toFixed(0)})`
}

interface Summary {
  readonly delayP99: number
  readonly delayMax: number
  readonly e2eP50: number
  readonly e2eP99: number
  readonly perSecond: number
}
const summarise = (f: Figures): Summary => ({
  delayP99: percentile(f.totalDelays, 99),
  delayMax: Math.max(...f.totalDelays),
  e2eP50: percentile(f.endToEnd, 50),
  e2eP99: percentile(f.endToEnd, 99),
  perSecond: f.records / (seconds - warmupMillis / 1000),
})

const run = async (side: (port: number) => Promise<Figures>): Promise<Summary> => {
  const source = await startSource()
  try {
    return summarise(await side(source.port))
  } finally {
    source.close()
  }
}

const dstream: Array<Summary> = []
const raw: Array<Summary> = []
for (let r = 0; r < rounds; r++) {
  if (r % 2 === 0) {
    dstream.push(await run(throughDStream))
    raw.push(await run(throughRawLoop))
  } else {
    raw.push(await run(throughRawLoop))
    dstream.push(await run(throughDStream))
  }
}
const line = (name: string, s: ReadonlyArray<Summary>) =>
  console.log(
    `  ${name}: total delay p99 ${spread(s.map((x) => x.delayP99))}, max ${spread(s.map((x) => x.delayMax))}; ` +
      `end to end p50 ${spread(s.map((x) => x.e2eP50))}, p99 ${spread(s.map((x) => x.e2eP99))}; ` +
      `${Math.round(median(s.map((x) => x.perSecond))).toLocaleString("en-US")} records/s counted`,
  )
console.log(
  `latency on ${runtimeName}: ${batchMillis} ms batches, ${rate.toLocaleString("en-US")} records/s over TCP, ` +
    `${seconds} s per run (first ${warmupMillis / 1000} s not counted); median of ${rounds} alternating rounds (range)`,
)
line("effect-dstream  ", dstream)
line("raw node:net loop", raw)
console.log(
  `  targets: total delay p99 <= 10 ms; end-to-end p50 about half a batch (${batchMillis / 2} ms) plus the total delay`,
)
process.exit(0)
