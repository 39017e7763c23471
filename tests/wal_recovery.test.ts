/**
 * Write-ahead log recovery with real processes: a TCP line server sends numbered lines at a
 * steady pace (only while a client is connected); a child process (tests/_support/wal_child.ts)
 * counts each line number with updateStateByKey, its socket receiver writing every block to the
 * write-ahead log; the test SIGKILLs it mid-stream and restarts it a few times.
 *
 * What "stored" means for a socket receiver: a line is stored once `store.all` returned for it,
 * i.e. once its block is durable in the log. Bytes in flight in TCP buffers or read but not yet
 * stored when the process dies are not promised (the line server has no acknowledgements), so
 * the test does not guess from what was sent: after each kill, with the child dead, it reads
 * the log itself. Every line found there must end up in the recovered state exactly once, and
 * no line may ever be counted twice. The lines that were in the log but not yet in the child's
 * last output at a kill (stored, not processed) prove the replay path ran.
 */
import { after, describe, it } from "node:test"
import assert from "node:assert/strict"
import * as fs from "node:fs"
import * as os from "node:os"
import * as nodePath from "node:path"
import { decodeSegment, type WalRecord } from "../lib/_internal/wal.ts"
import { startLineServer } from "./_support/line_server.ts"
import { type Child, kill, sleep, startChild as startScript, waitForLog } from "./_support/child.ts"

const root = fs.mkdtempSync(nodePath.join(os.tmpdir(), "dstream-wal-"))
after(() => fs.rmSync(root, { recursive: true, force: true }))

const startChild = (args: ReadonlyArray<string>): Child => startScript("tests/_support/wal_child.ts", args)

const readCounts = (file: string): Record<string, number> => {
  try {
    return JSON.parse(fs.readFileSync(file, "utf8")).counts
  } catch {
    return {}
  }
}

/** The line numbers in the receiver's write-ahead log now (complete records only). */
const linesInLog = (checkpointDir: string): Set<number> => {
  const dir = nodePath.join(checkpointDir, "receivedData", "0")
  const lines = new Set<number>()
  if (!fs.existsSync(dir)) return lines
  for (const name of fs.readdirSync(dir)) {
    let bytes: Uint8Array
    try {
      bytes = fs.readFileSync(nodePath.join(dir, name))
    } catch {
      continue // deleted by the cleanup meanwhile
    }
    for (const { record } of decodeSegment(bytes).records) {
      if (record._tag !== "Block") continue
      for (const line of JSON.parse(new TextDecoder().decode(record.data)) as Array<string>) {
        if (line.length > 0) lines.add(Number(line))
      }
    }
  }
  return lines
}

/** Sends numbered lines, 2 every 10 ms, while a client is connected, until `stop`. */
const startSender = (server: Awaited<ReturnType<typeof startLineServer>>) => {
  const state = { next: 1, sending: true }
  const done = (async () => {
    while (state.sending) {
      if (server.connected === 0) {
        await sleep(10)
        continue
      }
      const lines = `${state.next}\n${state.next + 1}\n`
      state.next += 2
      await server.send(lines).catch(() => {})
      await sleep(10)
    }
  })()
  return {
    get last() {
      return state.next - 1
    },
    stop: async () => {
      state.sending = false
      await done
    },
  }
}

/** Every complete record of the log, with its segment, offset and length. */
const recordsInLog = (checkpointDir: string) => {
  const dir = nodePath.join(checkpointDir, "receivedData", "0")
  return fs.readdirSync(dir).sort().flatMap((segment) =>
    decodeSegment(fs.readFileSync(nodePath.join(dir, segment))).records.map((r) => ({
      file: nodePath.join(dir, segment),
      segment,
      ...r,
    }))
  )
}

const linesOf = (record: WalRecord): Array<number> =>
  record._tag === "Block"
    ? (JSON.parse(new TextDecoder().decode(record.data)) as Array<string>).filter((l) => l.length > 0).map(Number)
    : []

describe("write-ahead log recovery (real processes, SIGKILL)", () => {
  it("every line the socket receiver stored before a SIGKILL is counted exactly once after recovery", {
    timeout: 60_000,
  }, async () => {
    const server = await startLineServer()
    const checkpointDir = nodePath.join(root, "checkpoint")
    const outFile = nodePath.join(root, "counts.json")
    const args = [String(server.port), checkpointDir, outFile]

    let child = startChild(args)
    const logs = [child.log]
    // numbered lines, 2 every 10 ms, only while a client is connected
    let next = 1
    let sending = true
    const sender = (async () => {
      while (sending) {
        if (server.connected === 0) {
          await sleep(10)
          continue
        }
        const lines = `${next}\n${next + 1}\n`
        next += 2
        // a write to a killed client fails: those lines were in flight, never stored
        await server.send(lines).catch(() => {})
        await sleep(10)
      }
    })()

    const firstDeadline = Date.now() + 30_000
    while (!(fs.existsSync(checkpointDir) && fs.readdirSync(checkpointDir).some((n) => n.startsWith("checkpoint-")))) {
      assert.ok(Date.now() < firstDeadline, `no checkpoint written; child log:\n${child.log.join("")}`)
      await sleep(50)
    }

    const stored = new Set<number>()
    let storedNotProcessed = 0
    const kills: Array<number> = []
    for (let k = 0; k < 3; k++) {
      const lifetime = 1200 + Math.floor(Math.random() * 1200)
      await sleep(lifetime)
      await kill(child)
      kills.push(lifetime)
      const inLog = linesInLog(checkpointDir)
      const processed = readCounts(outFile)
      for (const n of inLog) {
        stored.add(n)
        if (!(String(n) in processed)) storedNotProcessed++
      }
      await sleep(100 + Math.floor(Math.random() * 300))
      child = startChild(args)
      logs.push(child.log)
      // Its lifetime counts from recovery, however long the runtime took to start.
      await waitForLog(child, /Recovered from checkpoint checkpoint-\d+/)
    }
    // let the last run connect and receive for a while, then stop sending and let it catch up
    await sleep(1500)
    sending = false
    await sender
    const last = next - 1
    const deadline = Date.now() + 20_000
    while (Date.now() < deadline && !(String(last) in readCounts(outFile))) await sleep(100)
    await sleep(1000)
    await kill(child)
    for (const n of linesInLog(checkpointDir)) stored.add(n)
    const counts = readCounts(outFile)
    await server.close()

    const context = `killed after ${kills.join(", ")} ms; last child log:\n${child.log.join("")}`
    for (const log of logs.slice(1)) assert.match(log.join(""), /Recovered from checkpoint checkpoint-\d+/, context)
    assert.ok(String(last) in counts, `the last line ${last} was not processed; ${context}`)
    // exactly once: no line counted twice, and only lines that were sent
    const twice = Object.entries(counts).filter(([, c]) => c !== 1)
    assert.deepEqual(twice, [], `lines counted more than once; ${context}`)
    for (const key of Object.keys(counts)) assert.ok(Number(key) >= 1 && Number(key) <= last, `unknown line ${key}`)
    // nothing stored was lost
    const lost = [...stored].filter((n) => !(String(n) in counts)).sort((a, b) => a - b)
    assert.deepEqual(lost, [], `stored lines missing from the recovered state; ${context}`)
    // the replay path ran: some lines were stored but not yet processed when the child died
    assert.ok(storedNotProcessed > 0, `no line was stored-but-unprocessed at a kill; ${context}`)
    // most lines made it (what was lost was in flight, not stored)
    assert.ok(Object.keys(counts).length > last * 0.8, `only ${Object.keys(counts).length} of ${last} lines counted`)
  })

  it(
    "a flipped bit in an older segment and in the last one: recovery skips just those records, reports them, and counts every stored line exactly once",
    {
      timeout: 60_000,
    },
    async () => {
      const server = await startLineServer()
      const checkpointDir = nodePath.join(root, "checkpoint-damage")
      const outFile = nodePath.join(root, "counts-damage.json")
      const args = [String(server.port), checkpointDir, outFile]
      let child = startChild(args)
      const sender = startSender(server)
      const logDir = nodePath.join(checkpointDir, "receivedData", "0")
      const segments = () => fs.existsSync(logDir) ? fs.readdirSync(logDir) : []
      const checkpoints = () =>
        fs.existsSync(checkpointDir)
          ? fs.readdirSync(checkpointDir).filter((n) => /^checkpoint-\d+$/.test(n)).map((n) => Number(n.slice(11)))
          : []
      // What to damage: an allocation record of an older segment (or a block a checkpoint covers) and a covered block
      // (or an allocation) of the last one; the newest checkpoint decides what is covered.
      const targetsIn = (records: ReturnType<typeof recordsInLog>) => {
        const newest = Math.max(...checkpoints())
        const coveredBlocks = new Set(
          records.flatMap((r) => r.record._tag === "Allocation" && r.record.time <= newest ? r.record.blocks : []),
        )
        const names = [...new Set(records.map((r) => r.segment))]
        const last = names[names.length - 1]
        const isCoveredBlock = (r: (typeof records)[number]) =>
          r.record._tag === "Block" && coveredBlocks.has(r.record.id)
        const older = records.filter((r) => r.segment !== last && r.record._tag === "Allocation")
        const inLast = records.filter((r) => r.segment === last && isCoveredBlock(r))
        const lastAllocations = records.filter((r) => r.segment === last && r.record._tag === "Allocation")
        return [
          older[Math.floor(older.length / 2)] ?? records.find((r) => r.segment !== last && isCoveredBlock(r)),
          inLast[Math.floor(inLast.length / 2)] ?? lastAllocations[Math.floor(lastAllocations.length / 2)],
        ].filter((t) => t !== undefined)
      }
      // Wait until the log holds both (segments roll every second; a checkpoint lets the writer delete older ones, so
      // on a loaded machine an older segment may live only briefly), then SIGKILL at once; when the kill still came
      // too late, the child is restarted (it recovers) and the next attempt waits again.
      // the child may delete a segment while it is read
      const recordsWhileRunning = () => {
        try {
          return recordsInLog(checkpointDir)
        } catch {
          return []
        }
      }
      let records: ReturnType<typeof recordsInLog> = []
      let targets: ReturnType<typeof targetsIn> = []
      for (let attempt = 1;; attempt++) {
        await sleep(300 + Math.floor(Math.random() * 500))
        const deadline = Date.now() + 40_000
        while (
          !(segments().length >= 2 && checkpoints().length > 0 && targetsIn(recordsWhileRunning()).length === 2)
        ) {
          assert.ok(Date.now() < deadline, `no second segment to damage; child log:\n${child.log.join("")}`)
          await sleep(20)
        }
        await kill(child)
        records = recordsInLog(checkpointDir)
        targets = targetsIn(records)
        if (targets.length === 2) break
        const names = [...new Set(records.map((r) => r.segment))]
        assert.ok(
          attempt < 5,
          `no record to damage in ${names.join(", ")} at a kill; child log:\n${child.log.join("")}`,
        )
        child = startChild(args)
        await waitForLog(child, /Recovered from checkpoint checkpoint-\d+/)
      }
      const stored = new Set(records.flatMap((r) => linesOf(r.record)))
      for (const target of targets) {
        const data = fs.readFileSync(target.file)
        data[target.offset + 12 + Math.floor(Math.random() * (target.length - 12))] ^= 1 <<
          Math.floor(Math.random() * 8)
        fs.writeFileSync(target.file, data)
      }

      child = startChild(args)
      await waitForLog(child, /Recovered from checkpoint checkpoint-\d+/)
      await sleep(1000)
      await sender.stop()
      const lastLine = sender.last
      const until = Date.now() + 20_000
      while (Date.now() < until && !(String(lastLine) in readCounts(outFile))) await sleep(100)
      await sleep(500)
      await kill(child)
      await server.close()
      const counts = readCounts(outFile)
      const log = child.log.join("")
      const context = `damaged ${
        targets.map((t) => `${t.record._tag} ${t.segment}:${t.offset}`).join(", ")
      }; child log:\n${log}`

      // each damaged record is reported: segment, offset, byte count
      const damage = log.split("\n").filter((l) => l.startsWith("DAMAGE ")).map((l) => JSON.parse(l.slice(7)))
      for (const target of targets) {
        assert.ok(
          damage.some((d) => d.segment === target.file && d.offset === target.offset && d.bytes === target.length),
          `no damage event for ${target.segment}:${target.offset} (${target.length} bytes); ${context}`,
        )
        assert.ok(
          log.includes(
            `skipped ${target.length} unreadable bytes at offset ${target.offset} of segment "${target.file}"`,
          ),
          context,
        )
      }
      // exactly once, nothing stored lost
      assert.deepEqual(
        Object.entries(counts).filter(([, c]) => c !== 1),
        [],
        `lines counted more than once; ${context}`,
      )
      const lost = [...stored].filter((n) => !(String(n) in counts)).sort((a, b) => a - b)
      assert.deepEqual(lost, [], `stored lines missing from the recovered state; ${context}`)
      assert.ok(String(lastLine) in counts, `the last line ${lastLine} was not processed; ${context}`)
    },
  )
})
