/**
 * Graceful stop under `Runtime.runMain`, in a real child process stopped by SIGTERM:
 * records it could not process are reported and the exit status says so; a second signal
 * forces the stop at once with the same report.
 */
import { describe, it } from "node:test"
import assert from "node:assert/strict"
import process from "node:process"
import { type Child, sleep, startChild, waitForLog } from "./_support/child.ts"

const script = "tests/_support/stop_child.ts"

/**
 * Sends `signal` with `process.kill` rather than `ChildProcess.kill`: Deno's ChildProcess then
 * reports the signal instead of the exit code the child chose after handling it.
 */
const signal = (child: Child, name: "SIGTERM"): void => {
  process.kill(child.process.pid!, name)
}

/** Starts the child and a promise of its exit status. */
const start = (args: ReadonlyArray<string>): { child: Child; status: Promise<number | string | null> } => {
  const child = startChild(script, args)
  const status = new Promise<number | string | null>((resolve) =>
    child.process.on("exit", (code, signal) => resolve(code ?? signal))
  )
  return { child, status }
}

describe("graceful stop in a process (SIGTERM)", () => {
  it("a graceful stop that times out reports the unprocessed records and exits with status 1", async () => {
    // control: a graceful stop that processes everything ends with the signal's status and no report
    {
      const { child, status } = start(["clean", "10"])
      try {
        await waitForLog(child, /ready/)
        signal(child, "SIGTERM")
        const code = await status
        const log = child.log.join("")
        assert.equal(code, 130, log)
        assert.doesNotMatch(log, /not processed/)
      } finally {
        child.process.kill("SIGKILL")
        await child.exited
      }
    }
    const { child, status } = start(["hang", "1"])
    try {
      await waitForLog(child, /ready/)
      const t0 = Date.now()
      signal(child, "SIGTERM")
      const code = await status
      const log = child.log.join("")
      assert.equal(code, 1, log)
      assert.match(log, /Stopping gracefully: processing what was received \(up to 1000 ms\); press Ctrl-C again/)
      assert.match(log, /Graceful stop timed out after 1000 ms: 3970 received records were not processed/)
      assert.ok(Date.now() - t0 < 15_000, `took ${Date.now() - t0} ms`)
    } finally {
      child.process.kill("SIGKILL")
      await child.exited
    }
  })

  it("a second SIGTERM forces the stop at once with the same report", async () => {
    const { child, status } = start(["hang", "60"])
    try {
      await waitForLog(child, /ready/)
      signal(child, "SIGTERM")
      await sleep(500)
      const t0 = Date.now()
      signal(child, "SIGTERM")
      const code = await status
      const log = child.log.join("")
      assert.equal(code, 1, log)
      assert.match(log, /Stopping at once/)
      assert.match(log, /Stop forced before the graceful stop finished: 3970 received records were not processed/)
      assert.ok(Date.now() - t0 < 10_000, `took ${Date.now() - t0} ms after the second signal`)
    } finally {
      child.process.kill("SIGKILL")
      await child.exited
    }
  })
})
