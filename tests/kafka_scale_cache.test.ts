/**
 * Shortcuts of a shard's restore, with real member processes (tests/_support/kafka_scale_child.ts)
 * over the mock cluster: a local cache file of the shard (read first, then only the changelog
 * after it; a cache from another owner's era is continued correctly, a corrupt one is reported
 * and ignored), and standby shards (a member tailing the partitions it does not own takes them
 * over reading only the rest). Every time, the counts must equal every word produced.
 */
import { after, before, describe, it } from "node:test"
import assert from "node:assert/strict"
import * as fs from "node:fs"
import * as os from "node:os"
import * as nodePath from "node:path"
import kafkajs from "kafkajs"
import { type Child, kill, sleep, startChild, waitForLog } from "./_support/child.ts"
import { ensureTopic, startCluster, type TestCluster, unique } from "./_support/kafka.ts"

let cluster: TestCluster
const root = fs.mkdtempSync(nodePath.join(os.tmpdir(), "dstream-kafka-scale-cache-"))

before(async () => {
  cluster = await startCluster()
})
after(async () => {
  await cluster?.stop()
  fs.rmSync(root, { recursive: true, force: true })
})

interface Restore {
  readonly partition: number
  readonly records: number
  readonly keys: number
  readonly from: "changelog" | "cache" | "standby"
  readonly startOffset: number
  readonly cacheRejected?: string
}

interface Output {
  readonly counts: Record<string, number>
  readonly shards: ReadonlyArray<{ readonly partition: number }>
  readonly restores: ReadonlyArray<Restore>
  readonly standbys: ReadonlyArray<{ readonly partition: number; readonly keys: number; readonly offset: number }>
}

const read = (file: string): Output | undefined => {
  try {
    return JSON.parse(fs.readFileSync(file, "utf8"))
  } catch {
    return undefined
  }
}

const vocabulary = Array.from({ length: 40 }, (_, i) => `w${i}`)

class Member {
  child: Child
  constructor(readonly args: ReadonlyArray<string>, readonly out: string) {
    fs.rmSync(out, { force: true })
    this.child = startChild("tests/_support/kafka_scale_child.ts", [...args, out])
  }
  get log(): string {
    return this.child.log.join("")
  }
  stop = async () => {
    this.child.process.kill("SIGTERM")
    await this.child.exited
  }
}

const sorted = (r: Record<string, number>) => JSON.stringify(Object.entries(r).sort(([a], [b]) => a < b ? -1 : 1))

/** Waits until the members' union of counts equals `expected` with all 4 shards owned once. */
const settle = async (members: ReadonlyArray<Member>, expected: Record<string, number>, ms: number) => {
  const deadline = Date.now() + ms
  const union = () => {
    const total: Record<string, number> = {}
    const partitions: Array<number> = []
    for (const m of members) {
      const o = read(m.out)
      if (o === undefined) continue
      Object.assign(total, o.counts)
      partitions.push(...o.shards.map((s) => s.partition))
    }
    return { total, exact: sorted(total) === sorted(expected) && partitions.sort().join() === "0,1,2,3" }
  }
  let u = union()
  while (Date.now() < deadline && !u.exact) {
    await sleep(200)
    u = union()
  }
  return u
}

const producerOf = async (topic: string) => {
  const kafka = new kafkajs.Kafka({ brokers: [...cluster.brokers], logLevel: kafkajs.logLevel.NOTHING })
  const producer = kafka.producer()
  await producer.connect()
  const expected: Record<string, number> = {}
  let n = 0
  return {
    expected,
    batch: async (lines: number) => {
      const messages = Array.from({ length: lines }, () => {
        const words = Array.from({ length: 1 + (n % 4) }, () => vocabulary[Math.floor(Math.random() * 40)])
        return { key: `k${n++}`, value: words.join(" "), words }
      })
      await producer.send({ topic, messages: messages.map(({ key, value }) => ({ key, value })), acks: -1 })
      for (const m of messages) for (const w of m.words) expected[w] = (expected[w] ?? 0) + 1
    },
    close: () => producer.disconnect(),
  }
}

describe("Kafka scale-out: restore shortcuts (real processes)", () => {
  it(
    "a member restarted with its shard caches reads only the changelog after them; a corrupt cache is reported and ignored",
    {
      timeout: 90_000,
    },
    async () => {
      const topic = unique("cache")
      const app = unique("app-cache")
      await ensureTopic(cluster.bootstrap, topic)
      const dir = nodePath.join(root, "cache")
      const cacheA = nodePath.join(dir, "a-cache")
      fs.mkdirSync(cacheA, { recursive: true })
      const brokers = cluster.brokers.join(",")
      const producer = await producerOf(topic)
      const members: Array<Member> = []
      const start = async (name: string, mode: string) => {
        const m = new Member([brokers, topic, app, mode], nodePath.join(dir, `${name}.json`))
        members.push(m)
        await waitForLog(m.child, /started\n/, 30_000)
        return m
      }
      const logs = () => members.map((m) => m.log.slice(-1500)).join("\n---\n")
      try {
        // A counts, stops (its caches written), B (no cache) counts more, stops
        let a = await start("a1", `update+cache=${cacheA}`)
        for (let k = 0; k < 10; k++) await producer.batch(25)
        assert.ok((await settle([a], producer.expected, 30_000)).exact, `A did not count everything\n${logs()}`)
        await a.stop()
        const cached = fs.readdirSync(cacheA).filter((f) => f.endsWith(".cache"))
        assert.equal(cached.length, 4, `caches written: ${cached.join(", ")}`)
        // B keeps its caches under the context's checkpoint directory
        const checkpointB = nodePath.join(dir, "b-checkpoint")
        const b = await start("b", `update+checkpoint=${checkpointB}`)
        for (let k = 0; k < 10; k++) await producer.batch(25)
        assert.ok((await settle([b], producer.expected, 30_000)).exact, `B did not count everything\n${logs()}`)
        await b.stop()
        const cachedB = fs.readdirSync(nodePath.join(checkpointB, "kafka-scale", app))
        assert.equal(cachedB.filter((f) => f.endsWith(".cache")).length, 4, `B's caches: ${cachedB.join(", ")}`)
        // A again: each shard from its cache (of A's era) and the changelog B wrote after it
        for (let k = 0; k < 4; k++) await producer.batch(25)
        a = await start("a2", `update+cache=${cacheA}`)
        const second = await settle([a], producer.expected, 30_000)
        assert.ok(second.exact, `A restarted with caches counted wrong\n${logs()}`)
        const restores = read(a.out)!.restores
        assert.equal(restores.length, 4, JSON.stringify(restores))
        for (const r of restores) {
          assert.equal(r.from, "cache", JSON.stringify(r))
          assert.ok(r.startOffset > 0 && r.records > 0, `read nothing after the cache: ${JSON.stringify(r)}`)
          // offsets below startOffset (A's era up to its marker) were not read again; B's claim,
          // corrections and appends after it were, and the counts above are exact
        }
        await a.stop()
        // a corrupt cache: reported, ignored, the whole changelog read
        const victim = nodePath.join(cacheA, cached[0])
        const text = fs.readFileSync(victim, "utf8")
        fs.writeFileSync(victim, text.replace(/"w(\d)/, '"x$1'))
        for (let k = 0; k < 4; k++) await producer.batch(25)
        a = await start("a3", `update+cache=${cacheA}`)
        const third = await settle([a], producer.expected, 30_000)
        assert.ok(third.exact, `A with a corrupt cache counted wrong\n${logs()}`)
        const now = read(a.out)!.restores
        const partition = Number(/-(\d+)\.cache$/.exec(cached[0])![1])
        const bad = now.find((r) => r.partition === partition)!
        assert.equal(bad.from, "changelog", JSON.stringify(now))
        assert.equal(bad.startOffset, 0)
        assert.match(bad.cacheRejected ?? "", /^corrupt: .*checksum mismatch/)
        assert.match(a.log, /the cache of shard words\[\d\] is not used \(corrupt/)
        assert.ok(now.filter((r) => r.partition !== partition).every((r) => r.from === "cache"), JSON.stringify(now))
      } finally {
        await producer.close().catch(() => undefined)
        await Promise.all(members.map((m) => kill(m.child)))
      }
    },
  )

  it("a standby member takes over a killed member's shards reading only the changelog it had not read yet", {
    timeout: 90_000,
  }, async () => {
    const topic = unique("standby")
    const app = unique("app-standby")
    await ensureTopic(cluster.bootstrap, topic)
    const dir = nodePath.join(root, "standby")
    fs.mkdirSync(dir, { recursive: true })
    const args = [cluster.brokers.join(","), topic, app, "update+standbys"]
    const producer = await producerOf(topic)
    const a = new Member(args, nodePath.join(dir, "a.json"))
    const b = new Member(args, nodePath.join(dir, "b.json"))
    const logs = () => [a, b].map((m) => m.log.slice(-1500)).join("\n---\n")
    try {
      await Promise.all([a, b].map((m) => waitForLog(m.child, /started\n/, 30_000)))
      for (let k = 0; k < 20; k++) await producer.batch(25)
      // both own shards; A's standbys hold B's shards' keys, caught up
      const deadline = Date.now() + 40_000
      let ready = false
      while (!ready && Date.now() < deadline) {
        await sleep(300)
        const oa = read(a.out)
        const ob = read(b.out)
        ready = (await settle([a, b], producer.expected, 1)).exact && oa !== undefined && ob !== undefined &&
          oa.shards.length > 0 && ob.shards.length > 0 &&
          ob.shards.every((s) => oa.standbys.some((x) => x.partition === s.partition && x.keys > 0))
      }
      assert.ok(ready, `no split with standbys caught up: ${fs.readFileSync(a.out, "utf8")}\n${logs()}`)
      await sleep(1000)
      const taken = read(b.out)!.shards.map((s) => s.partition)
      await kill(b.child)
      for (let k = 0; k < 4; k++) await producer.batch(25)
      const u = await settle([a], producer.expected, 40_000)
      assert.ok(u.exact, `A alone counted wrong\n${logs()}`)
      // the last restore of each shard B had: its takeover
      const all = read(a.out)!.restores
      const restores = taken.map((p) => all.findLast((r) => r.partition === p)!)
      assert.ok(restores.every((r) => r !== undefined), JSON.stringify(all))
      for (const r of restores) {
        assert.equal(r.from, "standby", JSON.stringify(r))
        assert.ok(r.startOffset > 0 && r.records < r.startOffset, `not only the tail: ${JSON.stringify(r)}`)
      }
      const events = fs.readFileSync(`${a.out}.events`, "utf8").trim().split("\n").map((l) => JSON.parse(l))
      assert.ok(events.some((e) => e.kind === "standby" && e.standbys?.length > 0), "no event shows standbys")
    } finally {
      await producer.close().catch(() => undefined)
      await Promise.all([a, b].map((m) => kill(m.child)))
    }
  })
})
