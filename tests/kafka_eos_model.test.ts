/**
 * The per-batch transactions of the exactly-once Kafka sink (lib/_internal/kafkaTransactions.ts)
 * against the in-memory model of the client interface (tests/_support/kafka_model.ts), which has
 * the transaction semantics librdkafka's mock lacks: records of an open or aborted transaction
 * invisible to `read_committed`, offsets applied only on commit, fencing of a zombie.
 */
import { describe, it } from "node:test"
import assert from "node:assert/strict"
import { BatchTransactions, KafkaTransactionError, transactionalIdFor } from "../lib/_internal/kafkaTransactions.ts"
import type { TopicPartition } from "../lib/_internal/kafkaClient.ts"
import { InjectedFailure, KafkaModel, ProducerFencedError } from "./_support/kafka_model.ts"

const decoder = new TextDecoder()
const values = (model: KafkaModel, topic: string) =>
  model.committedRecords(topic).map((r) => decoder.decode(r.value ?? new Uint8Array())).sort()
const offsetsOf = (model: KafkaModel, groupId: string) =>
  [...model.committedOffsets(groupId).values()].map((o) => `${o.topic}:${o.partition}@${o.offset}`).sort()
const inputs: ReadonlyArray<TopicPartition> = [{ topic: "in", partition: 0 }, { topic: "in", partition: 1 }]
const coordinator = (model: KafkaModel, warnings: Array<string> = []) =>
  new BatchTransactions({
    client: model.client,
    groupId: "g",
    transactionalIdPrefix: "app",
    warn: (m) => warnings.push(m),
  })
const records = (...vs: Array<string>) => vs.map((v) => ({ topic: "out", key: v, value: v }))

describe("Exactly-once batch transactions on the model", () => {
  it("the model hides open and aborted transactions from read_committed and applies sendOffsets only on commit", async () => {
    const model = new KafkaModel()
    const producer = await model.client.producer({ transactionalId: "t" })
    const open = await producer.transaction()
    await open.send(records("a"))
    await open.sendOffsets("g", [{ topic: "in", partition: 0, offset: 5 }])
    assert.deepEqual(values(model, "out"), [])
    assert.deepEqual(offsetsOf(model, "g"), [])
    await open.abort()
    const committed = await producer.transaction()
    await committed.send(records("b"))
    await committed.sendOffsets("g", [{ topic: "in", partition: 0, offset: 7 }])
    await committed.commit()
    assert.deepEqual(values(model, "out"), ["b"])
    assert.deepEqual(offsetsOf(model, "g"), ["in:0@7"])
    // read_uncommitted sees the aborted record too (what the mock shows for every isolation)
    const all: Array<string> = []
    for (let p = 0; p < 4; p++) {
      for await (const chunk of model.client.readPartition({ topic: "out", partition: p }, 0)) {
        for (const r of chunk) all.push(decoder.decode(r.value ?? new Uint8Array()))
      }
    }
    assert.deepEqual(all.sort(), ["a", "b"])
  })

  it("a batch commits its outputs and its input offsets together, after complete()", async () => {
    const model = new KafkaModel()
    const txs = coordinator(model)
    await txs.send(1000, inputs, records("x", "y"))
    assert.deepEqual(values(model, "out"), [], "visible before the batch completed")
    txs.complete(1000, inputs, [{ topic: "in", partition: 0, offset: 3 }, { topic: "in", partition: 1, offset: 4 }])
    await txs.idle()
    assert.deepEqual(values(model, "out"), ["x", "y"])
    assert.deepEqual(offsetsOf(model, "g"), ["in:0@3", "in:1@4"])
    assert.equal(txs.commits, 1)
    await txs.close()
  })

  it("an output failing mid-batch aborts the batch: no output visible, no offsets, and the batch cannot commit", async () => {
    const model = new KafkaModel()
    const txs = coordinator(model)
    await txs.send(1000, inputs, records("a1", "a2"))
    model.failNext("send")
    await assert.rejects(txs.send(1000, inputs, records("a3")), KafkaTransactionError)
    // a retry of the output inside the same batch is refused: the first writes are gone
    await assert.rejects(txs.send(1000, inputs, records("a3")), /its transaction was aborted/)
    txs.complete(1000, inputs, [{ topic: "in", partition: 0, offset: 3 }])
    await txs.idle()
    assert.deepEqual(values(model, "out"), [])
    assert.deepEqual(offsetsOf(model, "g"), [])
    assert.equal(txs.commits, 0)
    await txs.close()
    // the re-run (after a restart, from the committed offsets: none) writes each output once
    const rerun = coordinator(model)
    await rerun.send(1000, inputs, records("a1", "a2", "a3"))
    rerun.complete(1000, inputs, [{ topic: "in", partition: 0, offset: 3 }])
    await rerun.idle()
    assert.deepEqual(values(model, "out"), ["a1", "a2", "a3"])
    assert.deepEqual(offsetsOf(model, "g"), ["in:0@3"])
    await rerun.close()
  })

  it("a crash before the commit leaves nothing visible; the restarted writer aborts the leftover and writes each output once", async () => {
    const model = new KafkaModel()
    const crashed = coordinator(model)
    await crashed.send(1000, inputs, records("c1", "c2"))
    // the process dies here: no complete(), no close()
    assert.deepEqual(values(model, "out"), [])
    const restarted = coordinator(model)
    await restarted.send(1000, inputs, records("c1", "c2"))
    // the open transaction of the crashed process no longer holds back read_committed readers
    restarted.complete(1000, inputs, [{ topic: "in", partition: 1, offset: 2 }])
    await restarted.idle()
    assert.deepEqual(values(model, "out"), ["c1", "c2"])
    assert.deepEqual(offsetsOf(model, "g"), ["in:1@2"])
    await restarted.close()
  })

  it("a zombie with the same partition set is fenced: its commit is rejected, its records never visible, its offsets never applied", async () => {
    const model = new KafkaModel()
    const warnings: Array<string> = []
    const zombie = coordinator(model, warnings)
    await zombie.send(1000, inputs, records("z"))
    // a new owner of the same partitions starts its first transaction (InitProducerId)
    const owner = coordinator(model)
    await owner.send(1000, inputs, records("o"))
    zombie.complete(1000, inputs, [{ topic: "in", partition: 0, offset: 99 }])
    await zombie.idle()
    assert.equal(zombie.commits, 0)
    assert.match(warnings.join("\n"), /failed to commit.*fenced/)
    // and the zombie's next batch fails instead of writing
    await assert.rejects(zombie.send(2000, inputs, records("z2")), /failed to commit/)
    owner.complete(1000, inputs, [{ topic: "in", partition: 0, offset: 1 }])
    await owner.idle()
    assert.deepEqual(values(model, "out"), ["o"])
    assert.deepEqual(offsetsOf(model, "g"), ["in:0@1"])
    await zombie.close()
    await owner.close()
  })

  it("prepare() fences the previous owner before reading the committed offsets, so a zombie's late commit cannot land after them", async () => {
    const model = new KafkaModel()
    const zombie = coordinator(model, [])
    await zombie.send(1000, inputs, records("z1"))
    zombie.complete(1000, inputs, [{ topic: "in", partition: 0, offset: 1 }])
    await zombie.idle()
    await zombie.send(2000, inputs, records("z2"))
    const owner = coordinator(model)
    const starts = await owner.prepare(inputs)
    assert.deepEqual(starts.map((o) => `${o.topic}:${o.partition}@${o.offset}`), ["in:0@1"])
    zombie.complete(2000, inputs, [{ topic: "in", partition: 0, offset: 2 }])
    await zombie.idle()
    assert.deepEqual(
      offsetsOf(model, "g"),
      ["in:0@1"],
      "the zombie's commit landed after the new owner read the offsets",
    )
    assert.deepEqual(values(model, "out"), ["z1"])
    await zombie.close()
    await owner.close()
  })

  it("the model fences a producer directly: send and commit of the older epoch fail with ProducerFencedError", async () => {
    const model = new KafkaModel()
    const old = await model.client.producer({ transactionalId: "same" })
    const tx = await old.transaction()
    await tx.send(records("old"))
    await model.client.producer({ transactionalId: "same" })
    await assert.rejects(tx.send(records("more")), ProducerFencedError)
    await assert.rejects(tx.commit(), ProducerFencedError)
    await assert.rejects(old.transaction(), ProducerFencedError)
    assert.deepEqual(values(model, "out"), [])
    // an injected failure is typed too
    model.failNext("commit")
    const fresh = await model.client.producer({ transactionalId: "other" })
    const t2 = await fresh.transaction()
    await assert.rejects(t2.commit(), InjectedFailure)
  })

  it("transactional ids follow the input partition set, whatever its order", () => {
    assert.equal(
      transactionalIdFor("app", [{ topic: "b", partition: 2 }, { topic: "a", partition: 1 }, {
        topic: "b",
        partition: 0,
      }]),
      "app|a:1|b:0,2",
    )
    assert.equal(transactionalIdFor("app", inputs), transactionalIdFor("app", [...inputs].reverse()))
  })

  it("batches commit in order, each after the previous one ended", async () => {
    const model = new KafkaModel()
    const txs = coordinator(model)
    await txs.send(1000, inputs, records("b1"))
    txs.complete(1000, inputs, [{ topic: "in", partition: 0, offset: 1 }])
    await txs.send(2000, inputs, records("b2"))
    txs.complete(2000, inputs, [{ topic: "in", partition: 0, offset: 2 }])
    // an empty batch that still moves an offset commits a transaction of offsets only
    txs.complete(3000, inputs, [{ topic: "in", partition: 1, offset: 5 }])
    await txs.idle()
    assert.equal(txs.commits, 3)
    assert.deepEqual(values(model, "out"), ["b1", "b2"])
    assert.deepEqual(offsetsOf(model, "g"), ["in:0@2", "in:1@5"])
    await txs.close()
  })
})
