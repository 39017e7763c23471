/**
 * File-stream recovery with real processes: a child (tests/_support/file_window_child.ts) sums
 * numbered files over a 2 s window sliding every 400 ms (200 ms batches, a checkpoint after
 * every batch); while the test moves files into its directory, it is SIGKILLed at random points
 * and restarted (getOrCreate recovers). The child writes each batch's numbers and each window's
 * sum. At the end every file is in exactly one batch, and every window equals the sum of the
 * batches it covers — what an uninterrupted run attributing the files to the same batches
 * gives — including the windows right after a recovery, which read batches rebuilt from the
 * checkpointed file lists.
 */
import { after, describe, it } from "node:test"
import assert from "node:assert/strict"
import * as fs from "node:fs"
import * as os from "node:os"
import * as nodePath from "node:path"
import { type Child, kill, sleep, startChild, waitForLog } from "./_support/child.ts"

const root = fs.mkdtempSync(nodePath.join(os.tmpdir(), "dstream-file-recovery-"))
after(() => fs.rmSync(root, { recursive: true, force: true }))

const BATCH = 200
const WINDOW = 2000
const SLIDE = 400

/** The `<kind>-<time>.json` outputs of the child: time → value. */
const readOutputs = (dir: string, kind: "batch" | "window"): Map<number, ReadonlyArray<number>> => {
  const out = new Map<number, ReadonlyArray<number>>()
  const pattern = new RegExp(`^${kind}-(\\d+)\\.json$`)
  for (const name of fs.readdirSync(dir)) {
    const m = pattern.exec(name)
    if (m !== null) out.set(Number(m[1]), JSON.parse(fs.readFileSync(nodePath.join(dir, name), "utf8")))
  }
  return out
}

const sum = (xs: ReadonlyArray<number>): number => xs.reduce((a, b) => a + b, 0)

describe("file stream recovery (real processes, SIGKILL)", () => {
  it("windows after random kills and recoveries equal those of an uninterrupted run over the same files", {
    timeout: 60_000,
  }, async () => {
    const inputDir = nodePath.join(root, "input")
    const staging = nodePath.join(root, "staging")
    const checkpointDir = nodePath.join(root, "checkpoint")
    const outDir = nodePath.join(root, "out")
    for (const d of [inputDir, staging, outDir]) fs.mkdirSync(d)
    const args = [inputDir, checkpointDir, outDir]
    const script = "tests/_support/file_window_child.ts"

    let child: Child = startChild(script, args)
    const logs = [child.log]
    try {
      const firstDeadline = Date.now() + 20_000
      while (
        !(fs.existsSync(checkpointDir) && fs.readdirSync(checkpointDir).some((n) => n.startsWith("checkpoint-")))
      ) {
        assert.ok(Date.now() < firstDeadline, `no checkpoint written; child log:\n${child.log.join("")}`)
        await sleep(50)
      }

      // Files 1…n, each holding its number, written elsewhere and moved in.
      const numFiles = 45
      let written = 0
      const writer = (async () => {
        for (let f = 1; f <= numFiles; f++) {
          fs.writeFileSync(nodePath.join(staging, `${f}.txt`), `${f}\n`)
          fs.renameSync(nodePath.join(staging, `${f}.txt`), nodePath.join(inputDir, `${f}.txt`))
          written++
          await sleep(60 + Math.floor(Math.random() * 120))
        }
      })()

      const kills: Array<number> = []
      for (let k = 0; k < 5; k++) {
        const lifetime = 500 + Math.floor(Math.random() * 1200)
        await sleep(lifetime)
        await kill(child)
        kills.push(lifetime)
        await sleep(50 + Math.floor(Math.random() * 400))
        child = startChild(script, args)
        logs.push(child.log)
        await waitForLog(child, /Recovered from checkpoint checkpoint-\d+/)
      }
      await writer
      assert.equal(written, numFiles)

      // Wait until every file is in a batch and a window covers the last of them entirely.
      const deadline = Date.now() + 20_000
      let done = false
      while (!done && Date.now() < deadline) {
        const batches = readOutputs(outDir, "batch")
        const seen = [...batches.values()].reduce((n, b) => n + b.length, 0)
        const last = Math.max(...[...batches].filter(([, b]) => b.length > 0).map(([t]) => t))
        done = seen >= numFiles && [...readOutputs(outDir, "window").keys()].some((t) => t >= last + WINDOW)
        if (!done) await sleep(100)
      }
      await kill(child)
      const context = `killed after ${kills.join(", ")} ms; last child log:\n${child.log.join("")}`
      assert.ok(done, `the child did not read every file and finish its windows; ${context}`)
      for (const log of logs.slice(1)) assert.match(log.join(""), /Recovered from checkpoint checkpoint-\d+/)

      const batches = readOutputs(outDir, "batch")
      const windows = readOutputs(outDir, "window")
      // Every file in exactly one batch.
      const all = [...batches.values()].flat().sort((a, b) => a - b)
      assert.deepEqual(all, Array.from({ length: numFiles }, (_, i) => i + 1), context)
      // Every window is the sum of the batches it covers.
      const times = [...batches.keys()].sort((a, b) => a - b)
      const zero = times[0] - BATCH
      let checked = 0
      for (const [t, result] of windows) {
        assert.equal((t - zero) % SLIDE, 0, `window at ${t} is not on the slide`)
        let expected = 0
        for (let b = Math.max(zero + BATCH, t - WINDOW + BATCH); b <= t; b += BATCH) {
          const batch = batches.get(b)
          assert.ok(batch !== undefined, `window ${t} covers batch ${b}, which has no output; ${context}`)
          expected += sum(batch)
        }
        assert.equal(sum(result), expected, `window ${t}; ${context}`)
        checked++
      }
      // A sanity floor, not a speed gate: under load fewer windows fit in the run.
      assert.ok(checked >= 10, `only ${checked} windows`)
    } finally {
      await kill(child)
    }
  })
})
