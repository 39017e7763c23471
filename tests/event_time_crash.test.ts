/**
 * Event-time crash recovery with real processes: a child (tests/_support/event_time_child.ts)
 * counts sessions per key over a text-file stream (watermark delay 2 s, gap 1 s, 200 ms
 * batches, checkpoint every 400 ms). Records arrive in phases whose sessions run across phase
 * boundaries; after each phase has been processed and checkpointed, the test SIGKILLs the
 * child at a random point and restarts it (getOrCreate). Each phase after the first also holds
 * records that are late only by the watermark the previous phases left behind. So the final
 * windows and late records equal an uninterrupted run's only if the open sessions and the
 * watermark survive every crash.
 *
 * The kills come after a phase's files are processed and a checkpoint covering them is written,
 * so the batches re-run after recovery hold no files: the test depends on the state and
 * watermark checkpoints, not on how the file stream re-runs remembered batches.
 */
import { after, describe, it } from "node:test"
import assert from "node:assert/strict"
import * as fs from "node:fs"
import * as os from "node:os"
import * as nodePath from "node:path"
import { type Child, kill, sleep, startChild, waitForLog } from "./_support/child.ts"

const root = fs.mkdtempSync(nodePath.join(os.tmpdir(), "dstream-evcrash-"))
after(() => fs.rmSync(root, { recursive: true, force: true }))

const start = (args: ReadonlyArray<string>): Child => startChild("tests/_support/event_time_child.ts", args)

const readJson = <A>(file: string): A | undefined => {
  try {
    return JSON.parse(fs.readFileSync(file, "utf8"))
  } catch {
    return undefined
  }
}

const gap = 1000
const delay = 2000
const keys = ["a", "b", "c", "d"]

interface Rec {
  readonly t: number
  readonly k: string
}

/** Sessions of the on-time records: per key, times closer than the gap join one session. */
const expectedSessions = (records: ReadonlyArray<Rec>): Record<string, number> => {
  const out: Record<string, number> = {}
  for (const k of keys) {
    const times = records.filter((r) => r.k === k).map((r) => r.t).sort((x, y) => x - y)
    let i = 0
    while (i < times.length) {
      const s = times[i]
      let end = s + gap
      let n = 1
      while (i + n < times.length && times[i + n] <= end) {
        end = times[i + n] + gap
        n++
      }
      out[`${k} ${s} ${end}`] = n
      i += n
    }
  }
  return out
}

describe("event-time crash recovery (real processes, SIGKILL)", () => {
  it("a session count killed between phases and recovered gives the uninterrupted windows and late records", {
    timeout: 90_000,
  }, async () => {
    const inputDir = nodePath.join(root, "input")
    const checkpointDir = nodePath.join(root, "checkpoint")
    const outFile = nodePath.join(root, "out.json")
    const progressFile = nodePath.join(root, "progress.json")
    fs.mkdirSync(inputDir)
    const args = [inputDir, checkpointDir, outFile, progressFile]
    let child = start(args)
    const logs = [child.log]
    const checkpoints = () =>
      fs.existsSync(checkpointDir)
        ? fs.readdirSync(checkpointDir).filter((n) => /^checkpoint-\d+$/.test(n)).map((n) => Number(n.slice(11)))
        : []
    const until = async (what: string, ok: () => boolean, ms = 20_000) => {
      const deadline = Date.now() + ms
      while (!ok()) {
        assert.ok(Date.now() < deadline, `${what}; child log:\n${child.log.join("")}`)
        await sleep(40)
      }
    }
    await until("no checkpoint written", () => checkpoints().length > 0)

    const onTime: Array<Rec> = []
    const late: Array<string> = []
    let fileNo = 0
    const put = (records: ReadonlyArray<Rec>) => {
      const tmp = nodePath.join(inputDir, `.part-${fileNo}`)
      fs.writeFileSync(tmp, records.map((r) => `${r.t} ${r.k}`).join("\n") + "\n")
      fs.renameSync(tmp, nodePath.join(inputDir, `part-${fileNo++}.txt`))
    }
    const phases = 5
    const kills: Array<number> = []
    for (let p = 0; p < phases; p++) {
      // Event times [base, base + 2900), 2500 ms after the previous phase's base: sessions cross
      // phases. The watermark after a phase is at most base + 899, below every later record's
      // session end, so no on-time record is late however the files fall into batches.
      const base = 1_000_000 + p * 2500
      const records: Array<Rec> = []
      for (let i = 0; i < 24; i++) {
        records.push({ t: base + Math.floor(Math.random() * 2800), k: keys[Math.floor(Math.random() * keys.length)] })
      }
      records.push({ t: base + 2800 + Math.floor(Math.random() * 99), k: keys[p % keys.length] })
      onTime.push(...records)
      if (p > 0) {
        // Late only by the previous phases' watermark (≥ previous base + 800): session end
        // previous base − 500.
        const r = { t: base - 2500 - 1500, k: keys[(p + 1) % keys.length] }
        records.splice(5, 0, r)
        late.push(`${r.t} ${r.k}`)
      }
      // Two files per phase.
      put(records.slice(0, 12))
      put(records.slice(12))
      const max = Math.max(...records.map((r) => r.t))
      let processedAt = 0
      await until(`phase ${p} not processed`, () => {
        const progress = readJson<{ time: number; watermark: number | null }>(progressFile)
        if (progress === undefined || progress.watermark === null || progress.watermark < max - delay) return false
        processedAt = progress.time
        return true
      })
      await until(`phase ${p} not checkpointed`, () => checkpoints().some((t) => t >= processedAt))
      if (p === phases - 1) break
      const lifetime = Math.floor(Math.random() * 500)
      await sleep(lifetime)
      await kill(child)
      kills.push(lifetime)
      await sleep(100 + Math.floor(Math.random() * 200))
      child = start(args)
      logs.push(child.log)
      await waitForLog(child, /Recovered from checkpoint checkpoint-\d+/)
    }
    // A record far ahead moves the watermark past every session.
    put([{ t: 2_000_000, k: "flush" }])
    const expected = expectedSessions(onTime)
    await until("the final windows did not arrive", () => {
      const out = readJson<{ windows: Record<string, number> }>(outFile)
      return out !== undefined && Object.keys(out.windows).length >= Object.keys(expected).length
    })
    await sleep(600)
    const out = readJson<{ windows: Record<string, number>; late: Array<string>; conflicts: Array<string> }>(outFile)!
    await kill(child)
    for (const log of logs.slice(1)) assert.match(log.join(""), /Recovered from checkpoint checkpoint-\d+/)
    const context = `killed after ${kills.join(", ")} ms; last child log:\n${child.log.join("")}`
    assert.deepEqual(out.conflicts, [], context)
    assert.deepEqual(out.windows, expected, context)
    assert.deepEqual([...out.late].sort(), [...late].sort(), context)
  })
})
