/**
 * The kafkajs implementation of the Kafka client interface (receivers/kafkajs_client.ts)
 * against librdkafka's mock cluster (or KAFKA_BROKERS); kcat is the independent producer and
 * reader. Topic creation and transactions need the controller-id proxy (tests/kafka_proxy*), so
 * they are not tested against the bare mock here.
 */
import { after, before, describe, it } from "node:test"
import assert from "node:assert/strict"
import type * as K from "../lib/_internal/kafkaClient.ts"
import { LogBridge } from "../receivers/kafka.ts"
import { kafkajsClient } from "../receivers/kafkajs_client.ts"
import { eventually, fast, kcat, startCluster, type TestCluster, unique } from "./_support/kafka.ts"

let cluster: TestCluster
let client: K.KafkaClient

before(async () => {
  cluster = await startCluster()
  client = kafkajsClient({ brokers: cluster.brokers, retry: fast.retry }, new LogBridge("test"))
})
after(async () => {
  await cluster?.stop()
})

const text = (b: Uint8Array | null): string | null => (b === null ? null : new TextDecoder().decode(b))

/** Produces `key → value` records into one partition with kcat. */
const produceTo = (topic: string, partition: number, pairs: ReadonlyArray<readonly [string, string]>) =>
  kcat(
    ["-P", "-b", cluster.bootstrap, "-t", topic, "-p", String(partition), "-K", "\t"],
    pairs.map(([k, v]) => `${k}\t${v}\n`).join(""),
  )

const groupOptions = (
  groupId: string,
  subscription: K.ConsumerGroupOptions["subscription"],
): K.ConsumerGroupOptions => ({
  groupId,
  subscription,
  fromBeginning: true,
  isolation: "read_committed",
  sessionTimeout: fast.sessionTimeout,
  heartbeatInterval: fast.heartbeatInterval,
  rebalanceTimeout: 10_000,
  maxWaitTimeInMs: fast.maxWaitTimeInMs,
})

interface Recorder {
  readonly events: Array<string>
  readonly records: Array<K.RawRecord>
  readonly handlers: K.ConsumerGroupHandlers
}

/** Handlers that record what happens; `onAssignment` runs `assignment` (default: nothing). */
const recorder = (
  assignment: (assigned: ReadonlyArray<K.TopicPartition>, generation: number) => Promise<
    void | ReadonlyArray<K.TopicPartitionOffset>
  > = () => Promise.resolve(),
  onBatch?: (batch: K.FetchedBatch, control: K.FetchControl) => Promise<void>,
): Recorder => {
  const events: Array<string> = []
  const records: Array<K.RawRecord> = []
  return {
    events,
    records,
    handlers: {
      onAssignment: (assigned, generation) => {
        events.push(
          `assigned ${generation}: ${assigned.map((a) => a.partition).sort((a, b) => a - b).join(",")}`,
        )
        return assignment(assigned, generation)
      },
      onRebalancing: () => events.push("rebalancing"),
      onBatch: async (batch, control) => {
        if (batch.records.length > 0) events.push(`batch ${batch.partition}`)
        for (const r of batch.records) records.push(r)
        await onBatch?.(batch, control)
      },
      onCrash: (error, restarting) => events.push(`crash ${restarting}: ${String(error)}`),
    },
  }
}

describe("kafkajs client", { timeout: 60_000 }, () => {
  it("a group member gets its full assignment, then the records in offset order, and commits through the fetch loop", async () => {
    const topic = unique("cg")
    const groupId = unique("g")
    await produceTo(topic, 1, Array.from({ length: 30 }, (_, i) => [`k${i}`, `v${i}`]))
    await produceTo(topic, 3, [["a", "x"]])
    let requests = 0
    const rec = recorder(undefined, async (batch, control) => {
      assert.equal(control.isActive(), true)
      const last = batch.records.at(-1)
      if (last !== undefined) await control.commit([{ topic, partition: batch.partition, offset: last.offset + 1 }])
    })
    const group = await client.consumerGroup(groupOptions(groupId, { _tag: "Topics", topics: [topic] }), {
      ...rec.handlers,
      onRequest: () => requests++,
    })
    try {
      await eventually(() => rec.records.length === 31, 20_000, "31 records")
      assert.equal(rec.events[0], "assigned 1: 0,1,2,3")
      const p1 = rec.records.filter((r) => r.partition === 1)
      assert.deepEqual(p1.map((r) => r.offset), Array.from({ length: 30 }, (_, i) => i))
      assert.deepEqual(p1.map((r) => text(r.value)), Array.from({ length: 30 }, (_, i) => `v${i}`))
      assert.deepEqual(p1.map((r) => text(r.key)), Array.from({ length: 30 }, (_, i) => `k${i}`))
      assert.ok(p1.every((r) => r.topic === topic && Math.abs(r.timestamp - Date.now()) < 60_000))
      assert.ok(requests > 0, "onRequest sees requests")
      const admin = await client.admin()
      try {
        await eventually(
          async () => {
            const c = await admin.committed(groupId, topic)
            return c.find((x) => x.partition === 1)?.offset === 30 && c.find((x) => x.partition === 3)?.offset === 1
          },
          10_000,
          "the commits to reach the broker",
        )
        // a commit outside the fetch loop
        await group.commit([{ topic, partition: 1, offset: 12 }])
        const c = await admin.committed(groupId, topic)
        assert.equal(c.find((x) => x.partition === 1)?.offset, 12)
        assert.equal(c.find((x) => x.partition === 0)?.offset, -1)
      } finally {
        await admin.disconnect()
      }
    } finally {
      await group.disconnect()
    }
  })

  it("holds records of a new assignment until its handler settled, and starts where the handler says", async () => {
    const topic = unique("gate")
    await produceTo(topic, 2, Array.from({ length: 20 }, (_, i) => [`k${i}`, `v${i}`]))
    let released = 0
    const rec = recorder(async (assigned) => {
      // a slow restore, longer than the session timeout: the membership must survive it
      await new Promise((r) => setTimeout(r, fast.sessionTimeout + 1000))
      released = Date.now()
      return assigned.filter((a) => a.partition === 2).map((a) => ({ ...a, offset: 15 }))
    })
    const group = await client.consumerGroup(groupOptions(unique("g"), { _tag: "Topics", topics: [topic] }), {
      ...rec.handlers,
      onBatch: (batch, control) => {
        if (released === 0) rec.events.push("early batch")
        return rec.handlers.onBatch(batch, control)
      },
    })
    try {
      await eventually(() => rec.records.length >= 5, 20_000, "the records from offset 15")
      await new Promise((r) => setTimeout(r, 500))
      assert.deepEqual(rec.records.map((r) => r.offset), [15, 16, 17, 18, 19])
      assert.ok(!rec.events.includes("early batch"), `no records before the handler settled: ${rec.events}`)
      assert.deepEqual(rec.events.filter((e) => e.startsWith("assigned")), ["assigned 1: 0,1,2,3"])
      assert.ok(!rec.events.includes("rebalancing"), `no rebalance while restoring: ${rec.events}`)
    } finally {
      await group.disconnect()
    }
  })

  it("a fixed assignment hands every member exactly the listed partitions; a pattern subscribes to matching topics", async () => {
    const topic = unique("fixed")
    await Promise.all([0, 1, 2, 3].map((p) => produceTo(topic, p, [[`k${p}`, `p${p}`]])))
    const groupId = unique("g")
    const a = recorder()
    const b = recorder()
    const assign: K.ConsumerGroupOptions["subscription"] = {
      _tag: "Assign",
      partitions: [{ topic, partition: 0 }, { topic, partition: 2 }],
    }
    const ga = await client.consumerGroup(groupOptions(groupId, assign), a.handlers)
    const prefix = unique("pat")
    await produceTo(`${prefix}-x`, 0, [["k", "x"]])
    const gp = await client.consumerGroup(
      groupOptions(unique("g"), { _tag: "Pattern", pattern: new RegExp(`^${prefix}-`) }),
      b.handlers,
    )
    try {
      await eventually(() => a.records.length === 2 && b.records.length === 1, 20_000, "the records")
      assert.deepEqual(a.events[0], "assigned 1: 0,2")
      assert.deepEqual(a.records.map((r) => text(r.value)).sort(), ["p0", "p2"])
      assert.deepEqual(b.records.map((r) => `${r.topic}:${text(r.value)}`), [`${prefix}-x:x`])
    } finally {
      await Promise.all([ga.disconnect(), gp.disconnect()])
    }
  })

  it("a second member makes the first rebalance: onRebalancing, then a smaller full assignment in a later generation", async () => {
    const topic = unique("rebalance")
    await produceTo(topic, 0, [["k", "v"]])
    const groupId = unique("g")
    const heartbeats: Array<string> = []
    const a = recorder(undefined, async (_batch, control) => {
      // hold the first batch, heartbeating, until the rebalance shows
      while (control.isActive()) {
        await new Promise((r) => setTimeout(r, 200))
        try {
          await control.heartbeat()
        } catch {
          heartbeats.push(`rejected, active ${control.isActive()}`)
          throw new Error("rebalancing")
        }
      }
    })
    const ga = await client.consumerGroup(groupOptions(groupId, { _tag: "Topics", topics: [topic] }), a.handlers)
    await eventually(() => a.records.length === 1, 20_000, "the first record")
    const b = recorder()
    const gb = await client.consumerGroup(groupOptions(groupId, { _tag: "Topics", topics: [topic] }), b.handlers)
    try {
      await eventually(
        () => a.events.some((e) => e.startsWith("assigned 2")) && b.events.some((e) => e.startsWith("assigned")),
        30_000,
        "both members to be assigned",
      )
      const i = a.events.indexOf("rebalancing")
      assert.ok(i > 0 && i < a.events.findIndex((e) => e.startsWith("assigned 2")), `${a.events}`)
      assert.deepEqual(heartbeats[0], "rejected, active false")
      const second = a.events.find((e) => e.startsWith("assigned 2"))!.split(": ")[1].split(",")
      const own = b.events.find((e) => e.startsWith("assigned"))!.split(": ")[1].split(",")
      assert.deepEqual([...second, ...own].sort(), ["0", "1", "2", "3"])
    } finally {
      await Promise.all([ga.disconnect(), gb.disconnect()])
    }
  })

  for (const reads of ["fetch", "group"] as const) {
    it(`reads a partition from an offset to its end as it was at the start, in chunks, and fails clearly outside it (${reads} reads)`, async () => {
      const client = kafkajsClient({ brokers: cluster.brokers, retry: fast.retry }, new LogBridge("test"), {
        partitionReads: reads,
      })
      const topic = unique("read")
      const n = 3000
      await produceTo(topic, 1, Array.from({ length: n }, (_, i) => [`k${i}`, `v${i}`]))
      const read = async (from: number) => {
        const out: Array<K.RawRecord> = []
        let chunks = 0
        for await (const chunk of client.readPartition({ topic, partition: 1 }, from)) {
          chunks++
          for (const r of chunk) out.push(r)
        }
        return { out, chunks }
      }
      const all = await read(0)
      assert.deepEqual(all.out.map((r) => r.offset), Array.from({ length: n }, (_, i) => i))
      assert.deepEqual(all.out.map((r) => text(r.value)).slice(-2), [`v${n - 2}`, `v${n - 1}`])
      assert.ok(all.chunks >= 1)
      const tail = await read(2500)
      assert.deepEqual(tail.out.map((r) => r.offset), Array.from({ length: 500 }, (_, i) => 2500 + i))
      const started = Date.now()
      assert.deepEqual((await read(n)).out, [])
      assert.deepEqual(
        (await client.readPartition({ topic, partition: 0 }, 0)[Symbol.asyncIterator]().next()).done,
        true,
      )
      assert.ok(Date.now() - started < 3000, "an empty range joins no group")
      // records produced after the read started are not part of it
      const it = client.readPartition({ topic, partition: 1 }, n - 10)[Symbol.asyncIterator]()
      const first = await it.next()
      await produceTo(topic, 1, [["late", "late"]])
      const rest: Array<K.RawRecord> = first.done ? [] : [...first.value]
      for (let r = await it.next(); !r.done; r = await it.next()) rest.push(...r.value)
      assert.deepEqual(rest.map((r) => r.offset), Array.from({ length: 10 }, (_, i) => n - 10 + i))
      await assert.rejects(
        read(-1),
        /Cannot read ".*" partition 1 from offset -1: the partition holds offsets 0 to 3001 only/,
      )
      await assert.rejects(
        client.readPartition({ topic, partition: 9 }, 0)[Symbol.asyncIterator]().next(),
        /Cannot read ".*" partition 9: the topic has no such partition/,
      )
    })
  }

  it("a producer partitions keys with Kafka's murmur2 (as librdkafka's murmur2_random does), honours explicit partitions, headers, timestamps and tombstones", async () => {
    const topic = unique("produce")
    const ours = unique("produce")
    const keys = Array.from({ length: 40 }, (_, i) => `key-${i}`)
    // the reference: librdkafka's Java-compatible partitioner
    await kcat(
      ["-P", "-b", cluster.bootstrap, "-t", topic, "-K", "\t", "-X", "topic.partitioner=murmur2_random"],
      keys.map((k) => `${k}\t${k}\n`).join(""),
    )
    const producer = await client.producer({ acks: -1 })
    try {
      const results = await producer.send(keys.map((k) => ({ topic: ours, key: k, value: k })))
      assert.ok(results.length > 0 && results.every((r) => r.topic === ours && r.baseOffset >= 0))
      const at = 1_700_000_000_000
      await producer.send([
        {
          topic: ours,
          partition: 3,
          key: null,
          value: "explicit",
          headers: { h: "1", b: new Uint8Array([65]) },
          timestamp: at,
        },
        { topic: ours, partition: 3, key: new TextEncoder().encode("gone"), value: null },
      ])
    } finally {
      await producer.disconnect()
    }
    const where = async (t: string) => {
      const lines = await kcat(["-C", "-b", cluster.bootstrap, "-t", t, "-o", "beginning", "-e", "-q", "-f", "%k %p\n"])
      return new Map(lines.trim().split("\n").map((l) => l.split(" ") as [string, string]))
    }
    const reference = await where(topic)
    const mine = await where(ours)
    for (const k of keys) assert.equal(mine.get(k), reference.get(k), `partition of ${k}`)
    assert.ok(new Set(keys.map((k) => mine.get(k))).size > 1, "keys spread over partitions")
    const p3: Array<K.RawRecord> = []
    for await (const chunk of client.readPartition({ topic: ours, partition: 3 }, 0)) p3.push(...chunk)
    const explicit = p3.find((r) => text(r.value) === "explicit")!
    assert.equal(explicit.key, null)
    assert.equal(explicit.timestamp, 1_700_000_000_000)
    assert.equal(text(explicit.headers.h as Uint8Array), "1")
    assert.equal(text(explicit.headers.b as Uint8Array), "A")
    const tomb = p3.at(-1)!
    assert.equal(text(tomb.key), "gone")
    assert.equal(tomb.value, null)
  })

  it("the admin reads partition counts, watermarks, offsets for a timestamp and committed offsets", async () => {
    const topic = unique("admin")
    await produceTo(topic, 0, [["a", "1"], ["b", "2"]])
    await new Promise((r) => setTimeout(r, 50))
    const middle = Date.now()
    await produceTo(topic, 0, [["c", "3"]])
    const admin = await client.admin()
    try {
      const counts = await admin.partitionCounts([topic])
      assert.deepEqual([...counts], [[topic, 4]])
      const marks = await admin.watermarks(topic)
      assert.deepEqual(marks.map((m) => [m.partition, m.low, m.high]).sort((x, y) => x[0] - y[0]), [
        [0, 0, 3],
        [1, 0, 0],
        [2, 0, 0],
        [3, 0, 0],
      ])
      // the mock answers every timestamp lookup with the end of the partition (a real broker
      // gives 2 for `middle`): only the shape is checked here
      const byTime = await admin.offsetsForTimestamp(topic, middle)
      assert.deepEqual(byTime.map((o) => [o.topic, o.partition]).sort(), [0, 1, 2, 3].map((p) => [topic, p]))
      if (cluster.kind === "real") assert.equal(byTime.find((o) => o.partition === 0)?.offset, 2)
      else assert.ok(byTime.every((o) => o.offset === marks.find((m) => m.partition === o.partition)!.high))
      assert.deepEqual((await admin.committed(unique("nobody"), topic)).map((o) => o.offset), [-1, -1, -1, -1])
    } finally {
      await admin.disconnect()
    }
  })
})
