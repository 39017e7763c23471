/**
 * Kafka-fed state that loses nothing across crashes, with real processes: a child
 * (tests/_support/kafka_child.ts: direct stream → updateStateByKey count per unique value,
 * getOrCreate with a checkpoint directory, outputs sometimes slower than a batch) is SIGKILLed
 * at random points, several times per trial, and restarted each time while a producer adds
 * records. Three trials run side by side (each with its own topic, group and checkpoint); at
 * the end each recovered state must count every produced record exactly once.
 */
import { after, before, describe, it } from "node:test"
import assert from "node:assert/strict"
import * as fs from "node:fs"
import * as os from "node:os"
import * as nodePath from "node:path"
import { startCluster, type TestCluster } from "./_support/kafka.ts"
import { crashLoop } from "./_support/kafka_crash.ts"

let cluster: TestCluster
const root = fs.mkdtempSync(nodePath.join(os.tmpdir(), "dstream-kafka-recovery-"))

before(async () => {
  cluster = await startCluster()
})
after(async () => {
  await cluster?.stop()
  fs.rmSync(root, { recursive: true, force: true })
})

describe("Kafka recovery (real processes, SIGKILL)", () => {
  it("a Kafka-fed running count killed at random points and restarted counts every record exactly once", {
    timeout: 60_000,
  }, async () => {
    const trials = [0, 1, 2].map((i) => {
      const dir = nodePath.join(root, `trial-${i}`)
      fs.mkdirSync(dir)
      return crashLoop({ brokers: cluster.brokers, bootstrap: cluster.bootstrap, dir, kills: 3, slow: true })
    })
    const results = await Promise.all(trials)
    for (const [i, r] of results.entries()) {
      const what = `trial ${i}: killed ${r.killedAfter.join(", ")}; ${r.produced} produced`
      assert.ok(r.produced > 0, what)
      assert.ok(r.caughtUp, `${what}: the last child did not catch up with the present`)
      assert.deepEqual(
        { lost: r.lost, duplicated: r.duplicated },
        { lost: 0, duplicated: 0 },
        `${what}; last child log:\n${r.lastLog.slice(-3000)}`,
      )
    }
    // the last child of (almost) every trial continued from a checkpoint (a trial whose every
    // kill came before the first checkpoint starts afresh, which is rare)
    const recovered = results.filter((r) => r.lastRecovered).length
    assert.ok(recovered >= 2, `only ${recovered} of 3 trials ended with a recovered child`)
  })
})
