/**
 * Replay crash recovery with real processes: a child (tests/_support/replay_child.ts) replays
 * a directory of 20,000 timestamped lines through an event-time tumbling count, checkpointing
 * every batch. The test SIGKILLs it at random points and restarts it (getOrCreate), until a
 * run finishes the history and exits by itself. Its windows must equal those of an
 * uninterrupted replay of the same directory: the replay resumed after the records its
 * checkpoint covered, with the window state and the watermark of that checkpoint.
 */
import { after, describe, it } from "node:test"
import assert from "node:assert/strict"
import * as fs from "node:fs"
import * as os from "node:os"
import * as nodePath from "node:path"
import { type Child, kill, sleep, startChild, waitForLog } from "./_support/child.ts"

const root = fs.mkdtempSync(nodePath.join(os.tmpdir(), "dstream-replaycrash-"))
after(() => fs.rmSync(root, { recursive: true, force: true }))

const start = (args: ReadonlyArray<string>): Child => startChild("tests/_support/replay_child.ts", args)

interface Out {
  readonly windows: Record<string, number>
  readonly conflicts: Array<string>
}

const readOut = (file: string): Out => JSON.parse(fs.readFileSync(file, "utf8"))

/** Waits for the child to exit by itself, failing after `ms`. */
const exited = async (child: Child, ms: number): Promise<boolean> =>
  await Promise.race([child.exited.then(() => true), sleep(ms).then(() => false)])

describe("replay crash recovery (real processes, SIGKILL)", () => {
  it("a replay killed at random points and restarted ends with the windows of an uninterrupted replay", {
    timeout: 120_000,
  }, async () => {
    const inputDir = nodePath.join(root, "history")
    fs.mkdirSync(inputDir)
    // 8 files of 2,500 lines, 10 ms of event time per line, out of order by up to 1.5 s
    // (the watermark delay is 2 s), every 500th line 30 s behind (late).
    let n = 0
    for (let f = 0; f < 8; f++) {
      const lines: Array<string> = []
      for (let i = 0; i < 2500; i++, n++) {
        const lag = n % 500 === 499 ? 30_000 : Math.floor(Math.random() * 1500)
        lines.push(`${1_000_000 + n * 10 - lag} k${Math.floor(Math.random() * 4)}`)
      }
      const file = nodePath.join(inputDir, `part-${f}.txt`)
      fs.writeFileSync(file, lines.join("\n") + "\n")
      const at = new Date(Date.now() - 100_000 + f * 1000)
      fs.utimesSync(file, at, at)
    }

    // The uninterrupted replay.
    const cleanOut = nodePath.join(root, "clean.json")
    const clean = start([inputDir, nodePath.join(root, "clean-checkpoint"), cleanOut])
    assert.ok(await exited(clean, 60_000), `the uninterrupted replay did not finish:\n${clean.log.join("")}`)
    assert.match(clean.log.join(""), /Replay finished/)
    const expected = readOut(cleanOut)
    assert.ok(Object.keys(expected.windows).length > 200)

    // The replay killed at random points.
    const args = [inputDir, nodePath.join(root, "checkpoint"), nodePath.join(root, "out.json")]
    let child = start(args)
    const logs = [child.log]
    const kills: Array<number> = []
    for (let k = 0; k < 4; k++) {
      await waitForLog(child, /Replaying/)
      const lifetime = 100 + Math.floor(Math.random() * 600)
      if (await exited(child, lifetime)) break
      await kill(child)
      kills.push(lifetime)
      child = start(args)
      logs.push(child.log)
    }
    assert.ok(await exited(child, 60_000), `the replay did not finish after the kills:\n${child.log.join("")}`)
    const context = `killed after ${kills.join(", ")} ms; last child log:\n${child.log.join("")}`
    assert.match(child.log.join(""), /Replay finished/, context)
    assert.ok(kills.length > 0, "every run finished before it could be killed; make the history longer")
    // A restart after a checkpoint resumed from it.
    assert.ok(logs.slice(1).some((log) => /Recovered from checkpoint/.test(log.join(""))), context)
    const out = readOut(args[2])
    assert.deepEqual(out.conflicts, [], context)
    assert.deepEqual(out.windows, expected.windows, context)
  })
})
