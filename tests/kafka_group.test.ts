/**
 * Consumer-group scale-out: members are child processes running tests/_support/kafka_member.ts
 * on the runtime running this test, against the mock cluster (or KAFKA_BROKERS).
 */
import { after, before, describe, it } from "node:test"
import assert from "node:assert/strict"
import { ensureTopic, Member, produce, startCluster, type TestCluster, unique } from "./_support/kafka.ts"

let cluster: TestCluster
const members: Array<Member> = []

before(async () => {
  cluster = await startCluster()
})
after(async () => {
  for (const m of members) await m.kill("SIGKILL")
  await cluster?.stop()
})

const member = (topic: string, groupId: string, mode = ""): Member => {
  const m = new Member(cluster.brokers, topic, groupId, mode)
  members.push(m)
  return m
}

const key = (p: number, o: number) => `${p}@${o}`

describe("Kafka consumer group", { timeout: 90_000 }, () => {
  it("two members started with the same group id split the partitions and process each record once", async () => {
    const topic = unique("group")
    const groupId = unique("g")
    await ensureTopic(cluster.bootstrap, topic)
    const a = member(topic, groupId)
    const b = member(topic, groupId)
    const split = () =>
      a.assignment.length > 0 && b.assignment.length > 0 && a.assignment.length + b.assignment.length === 4
    await a.until(() => split(), 40_000, "both members to own partitions")
    assert.equal(
      new Set([...a.assignment, ...b.assignment]).size,
      4,
      "the members' partitions are disjoint and cover the topic",
    )
    const values = Array.from({ length: 200 }, (_, i) => `r${i}`)
    await produce(cluster.bootstrap, topic, values.map((v, i) => [`k${i}`, v]))
    await a.until(() => a.records.length + b.records.length >= 200, 30_000, "200 records over both members")
    const ra = a.records
    const rb = b.records
    assert.ok(ra.length > 0 && rb.length > 0, "both members processed records")
    assert.deepEqual([...ra, ...rb].map(([, , v]) => v).sort(), [...values].sort(), "every record exactly once")
    const pa = new Set(ra.map(([p]) => p))
    const pb = new Set(rb.map(([p]) => p))
    for (const p of pa) assert.ok(!pb.has(p), `partition ${p} processed by one member only`)
    await Promise.all([a.kill("SIGTERM"), b.kill("SIGTERM")])
  })

  it("after one member is SIGKILLed, the other processes every record it had not committed", async () => {
    const topic = unique("kill")
    const groupId = unique("g")
    await ensureTopic(cluster.bootstrap, topic)
    // a: stalls in the output of its first non-empty batch, so nothing it processes is committed
    const a = member(topic, groupId, "stall")
    const b = member(topic, groupId)
    await a.until(
      () => a.assignment.length > 0 && b.assignment.length > 0 && a.assignment.length + b.assignment.length === 4,
      40_000,
      "both members to own partitions",
    )
    const values = Array.from({ length: 100 }, (_, i) => `s${i}`)
    await produce(cluster.bootstrap, topic, values.map((v, i) => [`k${i}`, v]))
    await a.until(() => a.records.length > 0, 20_000, "member a to process its first batch")
    const processedByA = a.records
    await a.kill("SIGKILL")
    await b.until(() => b.assignment.length === 4, 40_000, "member b to take over every partition")
    await b.until(
      () => new Set(b.records.map(([, , v]) => v)).size === 100,
      30_000,
      "member b to process every record",
    )
    const byB = new Set(b.records.map(([p, o]) => key(p, o)))
    for (const [p, o] of processedByA) {
      assert.ok(byB.has(key(p, o)), `record ${key(p, o)} processed by a but not committed is redelivered to b`)
    }
    await b.kill("SIGTERM")
  })
})
