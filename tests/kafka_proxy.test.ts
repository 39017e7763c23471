/**
 * The loopback proxy (tests/_support/kafka_proxy.ts) in front of librdkafka's mock cluster:
 * through it, kafkajs's controller paths work (idempotent producer, `createTopics`, a
 * transactional consume → produce loop); straight against the mock they fail ("Broker 0 not
 * found", kafka-eos.md). Mock only: a real cluster (KAFKA_BROKERS) needs no proxy.
 */
import { after, before, describe, it } from "node:test"
import assert from "node:assert/strict"
import kafkajs from "kafkajs"
import { type MockCluster, startMockCluster } from "../receivers/_kafka_mock.ts"
import { ApiKey, assertTransactionsWentThrough, type KafkaProxy, startKafkaProxy } from "./_support/kafka_proxy.ts"
import { kcat, unique } from "./_support/kafka.ts"

let mock: MockCluster
let proxy: KafkaProxy

before(async () => {
  mock = await startMockCluster()
  proxy = await startKafkaProxy(mock.bootstrap)
})
after(async () => {
  await proxy?.stop()
  await mock?.stop()
})

const client = (bootstrap: string) =>
  new kafkajs.Kafka({
    brokers: [bootstrap],
    clientId: "proxy-test",
    logLevel: kafkajs.logLevel.NOTHING,
    retry: { retries: 2, initialRetryTime: 100, maxRetryTime: 300 },
  })

const errorsOf = (apiKey: number) => proxy.seen.filter((s) => s.apiKey === apiKey)

describe("Kafka proxy in front of the mock cluster", { timeout: 60_000 }, () => {
  it("without the proxy, kafkajs's idempotent producer and createTopics fail on the mock's controller id", async () => {
    const kafka = client(mock.bootstrap)
    // kafkajs's producer asks the controller for a producer id on connect
    for (
      const config of [{ idempotent: true }, {
        idempotent: true,
        transactionalId: unique("tx"),
        maxInFlightRequests: 1,
      }]
    ) {
      const producer = kafka.producer(config)
      await assert.rejects(producer.connect(), /Broker 0 not found/)
      await producer.disconnect()
    }
    const admin = kafka.admin()
    await admin.connect()
    await assert.rejects(
      admin.createTopics({ topics: [{ topic: unique("direct"), numPartitions: 4 }] }),
      /Broker 0 not found/,
    )
    await admin.disconnect()
  })

  it("createTopics creates a 4-partition topic, says it exists the second time, and rejects other partition counts", async () => {
    const kafka = client(proxy.bootstrap)
    const admin = kafka.admin()
    await admin.connect()
    try {
      const topic = unique("created")
      assert.equal(await admin.createTopics({ topics: [{ topic, numPartitions: 4 }] }), true)
      const meta = await admin.fetchTopicMetadata({ topics: [topic] })
      assert.equal(meta.topics[0].partitions.length, 4)
      // kafkajs turns TOPIC_ALREADY_EXISTS into `false`
      assert.equal(await admin.createTopics({ topics: [{ topic, numPartitions: 4 }] }), false)
      const odd = unique("odd")
      await assert.rejects(
        admin.createTopics({ topics: [{ topic: odd, numPartitions: 3 }] }),
        (e: Error & { errors?: Array<{ type?: string }> }) =>
          e.errors?.some((x) => x.type === "INVALID_PARTITIONS") === true,
      )
      const codes = errorsOf(ApiKey.CreateTopics).flatMap((s) => s.errorCodes)
      assert.deepEqual(codes.slice(-3), [0, 36, 37])
      // the odd topic was not created: kcat's metadata does not list it
      const listed = await kcat(["-L", "-b", mock.bootstrap, "-J"])
      assert.equal(JSON.parse(listed).topics.some((t: { topic: string }) => t.topic === odd), false)
    } finally {
      await admin.disconnect()
    }
  })

  it("an idempotent producer and a transactional consume → transform → produce loop work through it", async () => {
    const input = unique("in")
    const output = unique("out")
    const groupId = unique("g")
    await kcat(["-P", "-b", mock.bootstrap, "-t", input], Array.from({ length: 21 }, (_, i) => `r${i}\n`).join(""))
    const kafka = client(proxy.bootstrap)
    const idem = kafka.producer({ idempotent: true })
    await idem.connect()
    const sent = await idem.send({ topic: output, messages: [{ key: "idem", value: "first" }] })
    assert.equal(sent[0].errorCode, 0)
    await idem.disconnect()

    const before = proxy.seen.length
    const producer = kafka.producer({ transactionalId: unique("tx"), idempotent: true, maxInFlightRequests: 1 })
    await producer.connect()
    const consumer = kafka.consumer({ groupId, sessionTimeout: 4000, heartbeatInterval: 400, maxWaitTimeInMs: 200 })
    await consumer.connect()
    await consumer.subscribe({ topics: [input], fromBeginning: true })
    let copied = 0
    const done = new Promise<void>((resolve, reject) => {
      consumer.run({
        eachBatchAutoResolve: false,
        autoCommit: false,
        eachBatch: async ({ batch, resolveOffset }) => {
          try {
            const tx = await producer.transaction()
            await tx.send({ topic: output, messages: batch.messages.map((m) => ({ value: `copy:${m.value}` })) })
            await tx.sendOffsets({
              consumerGroupId: groupId,
              topics: [{
                topic: batch.topic,
                partitions: [{ partition: batch.partition, offset: String(Number(batch.lastOffset()) + 1) }],
              }],
            })
            await tx.commit()
            for (const m of batch.messages) resolveOffset(m.offset)
            copied += batch.messages.length
            if (copied >= 21) resolve()
          } catch (e) {
            reject(e)
          }
        },
      }).catch(reject)
    })
    try {
      await done
    } finally {
      await consumer.disconnect()
      await producer.disconnect()
    }
    const txn = proxy.seen.slice(before)
    assertTransactionsWentThrough(txn)
    const out = await kcat(["-C", "-b", mock.bootstrap, "-t", output, "-o", "beginning", "-e", "-q", "-f", "%s\n"])
    const lines = out.split("\n").filter((l) => l !== "")
    assert.equal(lines.filter((l) => l.startsWith("copy:")).length, 21)
    assert.ok(lines.includes("first"))
  })
})
