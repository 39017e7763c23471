/**
 * Crash recovery with real processes: a child process (tests/_support/crash_child.ts) runs the
 * stateful word count over a text-file stream with a 200 ms batch and a checkpoint every
 * 600 ms; while files keep arriving, the test SIGKILLs it at random points and restarts it
 * each time (getOrCreate recovers). At the end, the counts must equal those of an
 * uninterrupted run over the same files: every word counted exactly once.
 */
import { after, describe, it } from "node:test"
import assert from "node:assert/strict"
import * as fs from "node:fs"
import * as os from "node:os"
import * as nodePath from "node:path"
import { type Child, kill, sleep, startChild as startScript, waitForLog } from "./_support/child.ts"

const root = fs.mkdtempSync(nodePath.join(os.tmpdir(), "dstream-crash-"))
after(() => fs.rmSync(root, { recursive: true, force: true }))

const startChild = (args: ReadonlyArray<string>): Child => startScript("tests/_support/crash_child.ts", args)

const readCounts = (file: string): Record<string, number> | undefined => {
  try {
    return JSON.parse(fs.readFileSync(file, "utf8")).counts
  } catch {
    return undefined
  }
}

const vocabulary = Array.from({ length: 40 }, (_, i) => `w${i}`)

describe("crash recovery (real processes, SIGKILL)", () => {
  it("a stateful word count killed at random points and restarted ends with the uninterrupted counts", {
    timeout: 60_000,
  }, async () => {
    const inputDir = nodePath.join(root, "input")
    const checkpointDir = nodePath.join(root, "checkpoint")
    const outFile = nodePath.join(root, "counts.json")
    fs.mkdirSync(inputDir)
    const args = [inputDir, checkpointDir, outFile]

    // The stream only reads files newer than its first start (newFilesOnly), so a restart that
    // lost the checkpoint would miss the earlier files, and one that lost the file selections
    // would count them twice. Files start arriving once the first checkpoint is written.
    let child = startChild(args)
    const logs = [child.log]
    const firstDeadline = Date.now() + 20_000
    while (!(fs.existsSync(checkpointDir) && fs.readdirSync(checkpointDir).some((n) => n.startsWith("checkpoint-")))) {
      assert.ok(Date.now() < firstDeadline, `no checkpoint written; child log:\n${child.log.join("")}`)
      await sleep(50)
    }

    // What an uninterrupted run counts: every word of every file once.
    const expected: Record<string, number> = {}
    let written = 0
    const numFiles = 36
    const writer = (async () => {
      for (let f = 0; f < numFiles; f++) {
        const lines: Array<string> = []
        for (let l = 0; l < 20; l++) {
          const line = Array.from({ length: 8 }, () => vocabulary[Math.floor(Math.random() * vocabulary.length)])
          for (const w of line) expected[w] = (expected[w] ?? 0) + 1
          lines.push(line.join(" "))
        }
        const tmp = nodePath.join(inputDir, `.part-${f}`)
        fs.writeFileSync(tmp, lines.join("\n") + "\n")
        fs.renameSync(tmp, nodePath.join(inputDir, `part-${f}.txt`))
        written++
        await sleep(120)
      }
    })()

    const kills: Array<number> = []
    for (let k = 0; k < 4; k++) {
      const lifetime = 700 + Math.floor(Math.random() * 900)
      await sleep(lifetime)
      await kill(child)
      kills.push(lifetime)
      await sleep(100 + Math.floor(Math.random() * 300))
      child = startChild(args)
      logs.push(child.log)
      // Its lifetime counts from recovery, however long the runtime took to start.
      await waitForLog(child, /Recovered from checkpoint checkpoint-\d+/)
    }
    await writer
    assert.equal(written, numFiles)

    // Wait until the counts reach the uninterrupted totals, then a few more batches.
    const total = Object.values(expected).reduce((a, b) => a + b, 0)
    const deadline = Date.now() + 30_000
    let counts: Record<string, number> | undefined
    while (Date.now() < deadline) {
      counts = readCounts(outFile)
      if (counts !== undefined && Object.values(counts).reduce((a, b) => a + b, 0) >= total) break
      await sleep(100)
    }
    await sleep(800)
    counts = readCounts(outFile)
    await kill(child)
    // every restart recovered from a checkpoint
    for (const log of logs.slice(1)) assert.match(log.join(""), /Recovered from checkpoint checkpoint-\d+/)
    assert.deepEqual(counts, expected, `killed after ${kills.join(", ")} ms; last child log:\n${child.log.join("")}`)
  })
})
