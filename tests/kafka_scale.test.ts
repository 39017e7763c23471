/**
 * Scale-out over a consumer group with real processes: a word count (lines keyed at random, so
 * a word arrives on every input partition) over a 4-partition topic, repartitioned by word
 * into 4 state shards, run by 3 member processes (tests/_support/kafka_scale_child.ts). While a
 * producer writes, one member is SIGKILLed at a random point and restarted, and another is
 * stopped gracefully and started again (rebalances that move shards). At the end the union of
 * the members' states must equal the count of every word produced, with no word held by two
 * members — for updateStateByKey and for mapWithState with a timeout. A second test starts one
 * member, lets it count, then starts another: the newcomer restores the shards it is given from
 * the changelog before its first batch with them. A third declares the input partitioned by the
 * key (no repartition topic) and kills a member.
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
const root = fs.mkdtempSync(nodePath.join(os.tmpdir(), "dstream-kafka-scale-"))

before(async () => {
  cluster = await startCluster()
})
after(async () => {
  await cluster?.stop()
  fs.rmSync(root, { recursive: true, force: true })
})

interface Output {
  readonly time: number
  readonly pid: number
  readonly counts: Record<string, number>
  readonly shards: ReadonlyArray<{ readonly partition: number; readonly keys: number; readonly duplicates: number }>
  readonly restores: ReadonlyArray<{ readonly partition: number; readonly records: number; readonly keys: number }>
}

const read = (file: string): Output | undefined => {
  try {
    return JSON.parse(fs.readFileSync(file, "utf8"))
  } catch {
    return undefined
  }
}

const history = (file: string): Array<Output> => {
  try {
    return fs.readFileSync(`${file}.history`, "utf8").trim().split("\n").map((l) => JSON.parse(l))
  } catch {
    return []
  }
}

const vocabulary = Array.from({ length: 40 }, (_, i) => `w${i}`)

/** A member process writing its state to its own file. */
class Member {
  child: Child
  constructor(readonly args: ReadonlyArray<string>, readonly out: string) {
    this.child = startChild("tests/_support/kafka_scale_child.ts", [...args, out])
  }
  get log(): string {
    return this.child.log.join("")
  }
}

/** A word producer: lines of 1–5 words with random keys, `rate` lines per 100 ms. */
const wordProducer = async (topic: string, rate: number) => {
  const kafka = new kafkajs.Kafka({
    brokers: [...cluster.brokers],
    logLevel: kafkajs.logLevel.NOTHING,
    retry: { retries: 5, initialRetryTime: 100, maxRetryTime: 1000 },
  })
  const producer = kafka.producer()
  await producer.connect()
  const expected: Record<string, number> = {}
  let lines = 0
  let running = false
  let loop: Promise<void> = Promise.resolve()
  const batch = async (n: number) => {
    const messages = Array.from({ length: n }, () => {
      const words = Array.from(
        { length: 1 + Math.floor(Math.random() * 5) },
        () => vocabulary[Math.floor(Math.random() * vocabulary.length)],
      )
      return { key: `k${lines++}-${Math.random()}`, value: words.join(" "), words }
    })
    await producer.send({ topic, messages: messages.map(({ key, value }) => ({ key, value })), acks: -1 })
    for (const m of messages) for (const w of m.words) expected[w] = (expected[w] ?? 0) + 1
  }
  return {
    expected,
    get lines() {
      return lines
    },
    batch,
    start: () => {
      running = true
      loop = (async () => {
        while (running) {
          await batch(rate)
          await sleep(100)
        }
      })()
    },
    stop: async () => {
      running = false
      await loop
    },
    close: () => producer.disconnect(),
  }
}

/** The union of the members' latest states, and the words more than one member holds. */
const union = (members: ReadonlyArray<Member>) => {
  const total: Record<string, number> = {}
  const holders = new Map<string, number>()
  const outs = members.map((m) => read(m.out))
  for (const o of outs) {
    if (o === undefined) continue
    for (const [w, n] of Object.entries(o.counts)) {
      total[w] = n
      holders.set(w, (holders.get(w) ?? 0) + 1)
    }
  }
  const shared = [...holders].filter(([, n]) => n > 1).map(([w]) => w)
  const partitions = outs.flatMap((o) => o?.shards.map((s) => s.partition) ?? [])
  return { total, shared, partitions, outs }
}

const sorted = (r: Record<string, number>) => Object.fromEntries(Object.entries(r).sort(([a], [b]) => a < b ? -1 : 1))

/** Waits until the members' union equals `expected` (and holds for a second), or the deadline. */
const settle = async (members: ReadonlyArray<Member>, expected: Record<string, number>, ms: number) => {
  const deadline = Date.now() + ms
  let u = union(members)
  const exact = () =>
    JSON.stringify(sorted(u.total)) === JSON.stringify(sorted(expected)) && u.shared.length === 0 &&
    u.partitions.length === 4 && new Set(u.partitions).size === 4
  while (Date.now() < deadline) {
    u = union(members)
    if (exact()) {
      await sleep(1000)
      u = union(members)
      if (exact()) break
    }
    await sleep(200)
  }
  return u
}

/** One trial: 3 members, one SIGKILLed and restarted, one stopped and started, while producing. */
const trial = async (mode: "update" | "mapWithState", i: number) => {
  const topic = unique(`scale-${mode}`)
  const app = unique(`app-${mode}`)
  await ensureTopic(cluster.bootstrap, topic)
  const dir = nodePath.join(root, `${mode}-${i}`)
  fs.mkdirSync(dir)
  const args = [cluster.brokers.join(","), topic, app]
  let n = 0
  const member = () => new Member([...args, mode], nodePath.join(dir, `member-${n++}.json`))
  const producer = await wordProducer(topic, 10)
  const members = [member(), member(), member()]
  const events: Array<string> = []
  try {
    await Promise.all(members.map((m) => waitForLog(m.child, /started\n/, 30_000)))
    producer.start()
    // the first member is SIGKILLed at a random point, the second stopped gracefully
    const killAt = 500 + Math.floor(Math.random() * 3000)
    const stopAt = 500 + Math.floor(Math.random() * 3000)
    const chaos = [
      (async () => {
        await sleep(killAt)
        await kill(members[0].child)
        events.push(`member 0 killed ${killAt} ms in, after ${producer.lines} lines`)
        await sleep(Math.floor(Math.random() * 1500))
        members[0] = member()
      })(),
      (async () => {
        await sleep(stopAt)
        members[1].child.process.kill("SIGTERM")
        await members[1].child.exited
        events.push(`member 1 stopped ${stopAt} ms in, after ${producer.lines} lines`)
        await sleep(Math.floor(Math.random() * 1500))
        members[1] = member()
      })(),
    ]
    await Promise.all(chaos)
    await sleep(1500)
    await producer.stop()
    const u = await settle(members, producer.expected, 45_000)
    return { u, expected: producer.expected, lines: producer.lines, events, members }
  } finally {
    await producer.stop()
    await producer.close().catch(() => undefined)
    await Promise.all(members.map((m) => kill(m.child)))
  }
}

const check = (r: Awaited<ReturnType<typeof trial>>, what: string) => {
  const { u, expected } = r
  const logs = r.members.map((m, i) => `--- member ${i}:\n${m.log.slice(-1500)}`).join("\n")
  const diff = Object.keys({ ...expected, ...u.total }).filter((w) => expected[w] !== u.total[w])
    .map((w) => `${w}: expected ${expected[w] ?? 0}, counted ${u.total[w] ?? 0}`)
  const context = `${what}: ${r.lines} lines; ${r.events.join("; ")}`
  assert.deepEqual(diff, [], `${context}; words counted wrong:\n${diff.join("\n")}\n${logs}`)
  assert.deepEqual(u.shared, [], `${context}; words held by two members\n${logs}`)
  assert.deepEqual([...u.partitions].sort(), [0, 1, 2, 3], `${context}; shards owned: ${u.partitions}\n${logs}`)
}

describe("Kafka scale-out (real processes, SIGKILL, rebalances)", () => {
  it("three members count every word exactly once across kills and restarts (updateStateByKey)", {
    timeout: 120_000,
  }, async () => {
    // two trials side by side (six members)
    const results = await Promise.all([trial("update", 0), trial("update", 1)])
    results.forEach((r, i) => check(r, `trial ${i}`))
    // shards moved and came back from the changelog
    const restored = results.flatMap((r) => r.u.outs.flatMap((o) => o?.restores ?? [])).filter((x) => x.keys > 0)
    assert.ok(restored.length > 0, "no member restored a shard with keys from the changelog")
  })

  it("three members count every word exactly once across kills and restarts (mapWithState with a timeout)", {
    timeout: 90_000,
  }, async () => {
    check(await trial("mapWithState", 0), "trial 0")
  })

  it("an input declared partitioned by the key needs no repartition topic and counts exactly once across a kill", {
    timeout: 60_000,
  }, async () => {
    const topic = unique("scale-keyed")
    const app = unique("app-keyed")
    await ensureTopic(cluster.bootstrap, topic)
    const dir = nodePath.join(root, "keyed")
    fs.mkdirSync(dir)
    const kafka = new kafkajs.Kafka({ brokers: [...cluster.brokers], logLevel: kafkajs.logLevel.NOTHING })
    // kafkajs's default partitioner is Kafka's (murmur2): a word keyed by itself is on its state partition
    const producer = kafka.producer({ createPartitioner: kafkajs.Partitioners.DefaultPartitioner })
    await producer.connect()
    const expected: Record<string, number> = {}
    const send = async (n: number) => {
      const ws = Array.from({ length: n }, () => vocabulary[Math.floor(Math.random() * vocabulary.length)])
      await producer.send({ topic, messages: ws.map((w) => ({ key: w, value: w })) })
      for (const w of ws) expected[w] = (expected[w] ?? 0) + 1
    }
    let n = 0
    const member = () =>
      new Member([cluster.brokers.join(","), topic, app, "partitioned"], nodePath.join(dir, `m${n++}.json`))
    const members = [member(), member()]
    try {
      await Promise.all(members.map((m) => waitForLog(m.child, /started\n/, 30_000)))
      for (let k = 0; k < 10; k++) {
        await send(50)
        await sleep(100)
      }
      await kill(members[0].child)
      for (let k = 0; k < 10; k++) {
        await send(50)
        await sleep(100)
      }
      members[0] = member()
      const u = await settle(members, expected, 40_000)
      const logs = members.map((m) => m.log.slice(-1500)).join("\n---\n")
      assert.deepEqual(sorted(u.total), sorted(expected), logs)
      assert.deepEqual(u.shared, [])
      const admin = kafka.admin()
      await admin.connect()
      const topics = await admin.listTopics()
      await admin.disconnect()
      assert.ok(topics.includes(`${app}-words-changelog`))
      assert.ok(!topics.some((t) => t.startsWith(app) && t.endsWith("-repartition")), topics.join(", "))
    } finally {
      await producer.disconnect().catch(() => undefined)
      await Promise.all(members.map((m) => kill(m.child)))
    }
  })

  it("a member that joins a running group restores a moved shard before its first batch with it", {
    timeout: 90_000,
  }, async () => {
    const topic = unique("scale-join")
    const app = unique("app-join")
    await ensureTopic(cluster.bootstrap, topic)
    const dir = nodePath.join(root, "join")
    fs.mkdirSync(dir)
    const args = [cluster.brokers.join(","), topic, app, "update"]
    const producer = await wordProducer(topic, 10)
    const first = new Member(args, nodePath.join(dir, "first.json"))
    let second: Member | undefined
    try {
      await waitForLog(first.child, /started\n/, 30_000)
      for (let k = 0; k < 20; k++) await producer.batch(25)
      const counted = await settle([first], producer.expected, 30_000)
      assert.deepEqual(sorted(counted.total), sorted(producer.expected), "the first member did not count everything")
      const before = { ...producer.expected }
      second = new Member(args, nodePath.join(dir, "second.json"))
      await waitForLog(second.child, /started\n/, 30_000)
      const all = await settle([first, second], before, 30_000)
      assert.deepEqual(sorted(all.total), sorted(before), `after the join; second member:\n${second.log.slice(-2000)}`)
      assert.deepEqual(all.shared, [])
      // the second member's first batch with shards already held every count of their words
      const firstWithShards = history(second.out).find((o) => o.shards.length > 0)
      assert.ok(firstWithShards !== undefined, `the second member got no shard:\n${second.log.slice(-2000)}`)
      const words = Object.keys(firstWithShards.counts)
      assert.ok(words.length > 0)
      for (const w of words) assert.equal(firstWithShards.counts[w], before[w], `word ${w} in the first batch`)
      const restored = firstWithShards.restores.filter((r) => r.keys > 0)
      assert.ok(restored.length > 0, "the second member restored no keys from the changelog")
      // and said so in listener events: a restore with its speed, then its assignment and shards
      const events = fs.readFileSync(`${second.out}.events`, "utf8").trim().split("\n").map((l) => JSON.parse(l))
      const done = events.filter((e) => e.kind === "restored" && e.restore.records > 0)
      assert.ok(done.length > 0, `no restored event: ${JSON.stringify(events)}`)
      assert.ok(done.every((e) => e.restore.recordsPerSecond > 0 && e.restore.remaining === 0))
      const assigned = events.filter((e) => e.kind === "assigned").at(-1)
      assert.ok(assigned !== undefined && assigned.shards.length > 0, `no assigned event: ${JSON.stringify(events)}`)
      // and counting goes on across both members
      for (let k = 0; k < 10; k++) await producer.batch(25)
      const end = await settle([first, second], producer.expected, 30_000)
      assert.deepEqual(sorted(end.total), sorted(producer.expected))
    } finally {
      await producer.close().catch(() => undefined)
      await kill(first.child)
      if (second !== undefined) await kill(second.child)
    }
  })
})
