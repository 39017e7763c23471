/**
 * Our decoding of Fetch responses for partition reads (receivers/_kafka_fetch.ts) against
 * kafkajs's own (its Fetch v11 response decoder, its consumer's filter of aborted transactions,
 * control records left out), record by record: on real responses of librdkafka's mock cluster
 * (records written by kcat and by kafkajs, with headers, null keys, tombstones, a gzip batch that
 * is left to kafkajs) and on hand-built responses for what the mock does not write (transaction
 * markers and aborted transactions, log-append time, large offsets and timestamps, batches cut at
 * the end of a response, malformed records). Then whole partition reads through the client with
 * our decoding and with kafkajs's give the same records.
 */
import { after, before, describe, it } from "node:test"
import assert from "node:assert/strict"
import { Buffer } from "node:buffer"
import { createRequire } from "node:module"
import * as net from "node:net"
import kafkajs from "kafkajs"
import type * as K from "../lib/_internal/kafkaClient.ts"
import { decodeFetchResponse, decodeRecords, scanRecordSet } from "../receivers/_kafka_fetch.ts"
import { LogBridge } from "../receivers/kafka.ts"
import { kafkajsClient } from "../receivers/kafkajs_client.ts"
import { fast, kcat, startCluster, type TestCluster, unique } from "./_support/kafka.ts"

// ---- kafkajs's own Fetch v11 request and response, and its consumer's filter (the reference) ----

interface KafkajsMessage {
  readonly offset: string
  readonly timestamp: string
  readonly key: Buffer | null
  readonly value: Buffer | null
  readonly headers: Record<string, Buffer | null | Array<Buffer | null>>
  readonly isControlRecord: boolean
}
interface KafkajsFetchPartition {
  readonly partition: number
  readonly abortedTransactions: ReadonlyArray<unknown>
  readonly messages: ReadonlyArray<KafkajsMessage>
}
const require = createRequire(import.meta.url)
const kafkajsFetchRequest: (args: unknown) => unknown = require("kafkajs/src/protocol/requests/fetch/v11/request.js")
const kafkajsFetchResponse: {
  decode(payload: Buffer): Promise<{ responses: ReadonlyArray<{ partitions: ReadonlyArray<KafkajsFetchPartition> }> }>
} = require("kafkajs/src/protocol/requests/fetch/v11/response.js")
const kafkajsCreateRequest: (args: unknown) => Promise<{ buffer: Buffer }> = require("kafkajs/src/protocol/request.js")
const kafkajsFilterAborted: (args: {
  messages: ReadonlyArray<KafkajsMessage>
  abortedTransactions: ReadonlyArray<unknown>
}) => ReadonlyArray<KafkajsMessage> = require("kafkajs/src/consumer/filterAbortedMessages.js")

/** A record in a comparable form (bytes as hex, headers as sorted entries). */
interface Seen {
  readonly offset: number
  readonly timestamp: number
  readonly key: string | null
  readonly value: string | null
  readonly headers: ReadonlyArray<readonly [string, unknown]>
}
const hex = (b: Uint8Array | string | null | undefined): string | null =>
  b === null || b === undefined ? null : typeof b === "string" ? `text:${b}` : Buffer.from(b).toString("hex")
const headersOf = (h: object): ReadonlyArray<readonly [string, unknown]> =>
  Object.entries(h).map(([k, v]) => [k, Array.isArray(v) ? v.map(hex) : hex(v)] as const)
    .sort(([a], [b]) => (a < b ? -1 : 1))

/** What kafkajs's consumer delivers of a v11 response's only partition at offsets in `[from, until)`. */
const byKafkajs = async (payload: Buffer, from = 0, until = Infinity): Promise<Array<Seen>> => {
  const decoded = await kafkajsFetchResponse.decode(payload)
  const p = decoded.responses[0].partitions[0]
  const kept = p.abortedTransactions.length === 0
    ? p.messages
    : kafkajsFilterAborted({ messages: p.messages, abortedTransactions: p.abortedTransactions })
  return kept
    .filter((m) => !m.isControlRecord && +m.offset >= from && +m.offset < until)
    .map((m) => ({
      offset: +m.offset,
      timestamp: +m.timestamp,
      key: hex(m.key),
      value: hex(m.value),
      headers: headersOf(m.headers),
    }))
}

/** The same with our decoder, and the offset after the last complete batch. */
const byOurs = (payload: Uint8Array, from = 0, until = Infinity): { records: Array<Seen>; next: number } => {
  const res = decodeFetchResponse(payload, 11)
  const p = res.responses[0].partitions[0]
  const { records, next } = decodeRecords(
    res.responses[0].topicName,
    p.partition,
    p.recordSet,
    p.abortedTransactions,
    from,
    until,
  )
  return {
    records: records.map((r) => ({
      offset: r.offset,
      timestamp: r.timestamp,
      key: hex(r.key),
      value: hex(r.value),
      headers: headersOf(r.headers),
    })),
    next,
  }
}

// ---- hand-built responses ----

class Bytes {
  private readonly parts: Array<Uint8Array> = []
  int8(v: number) {
    return this.push(Buffer.from([v & 0xff]))
  }
  int16(v: number) {
    const b = Buffer.alloc(2)
    b.writeInt16BE(v)
    return this.push(b)
  }
  int32(v: number) {
    const b = Buffer.alloc(4)
    b.writeInt32BE(v)
    return this.push(b)
  }
  int64(v: number | bigint) {
    const b = Buffer.alloc(8)
    b.writeBigInt64BE(BigInt(v))
    return this.push(b)
  }
  /** A zigzag varint (any size up to 64 bits). */
  varint(v: number | bigint) {
    const n = BigInt(v)
    let u = BigInt.asUintN(64, (n << 1n) ^ (n >> 63n))
    const out: Array<number> = []
    while (u >= 0x80n) {
      out.push(Number(u & 0x7fn) | 0x80)
      u >>= 7n
    }
    out.push(Number(u))
    return this.push(Uint8Array.from(out))
  }
  /** Varint length and bytes; `null` is length -1. */
  varBytes(b: Uint8Array | string | null) {
    if (b === null) return this.varint(-1)
    const bytes = typeof b === "string" ? Buffer.from(b) : b
    return this.varint(bytes.length).push(bytes)
  }
  push(b: Uint8Array) {
    this.parts.push(b)
    return this
  }
  get bytes(): Buffer {
    return Buffer.concat(this.parts)
  }
}

interface RecordSpec {
  readonly offsetDelta: number
  readonly timestampDelta?: number | bigint
  readonly key: Uint8Array | string | null
  readonly value: Uint8Array | string | null
  readonly headers?: ReadonlyArray<readonly [string, Uint8Array | string | null]>
}
interface BatchSpec {
  readonly baseOffset: number | bigint
  readonly lastOffsetDelta?: number
  readonly firstTimestamp?: number | bigint
  readonly maxTimestamp?: number | bigint
  readonly producerId?: number
  readonly transactional?: boolean
  readonly control?: boolean
  readonly logAppendTime?: boolean
  readonly compression?: number
  readonly magic?: number
  readonly records: ReadonlyArray<RecordSpec>
}

/** A record batch of the v2 format as a broker stores it (the CRC is not checked by either decoder: 0). */
const batch = (b: BatchSpec): Buffer => {
  const records = new Bytes()
  for (const r of b.records) {
    const body = new Bytes().int8(0).varint(r.timestampDelta ?? 0).varint(r.offsetDelta).varBytes(r.key)
      .varBytes(r.value).varint(r.headers?.length ?? 0)
    for (const [k, v] of r.headers ?? []) body.varBytes(k).varBytes(v)
    const bytes = body.bytes
    records.varint(bytes.length).push(bytes)
  }
  const attributes = (b.compression ?? 0) | (b.logAppendTime ? 0x08 : 0) | (b.transactional ? 0x10 : 0) |
    (b.control ? 0x20 : 0)
  const rest = new Bytes().int32(0).int8(b.magic ?? 2).int32(0).int16(attributes)
    .int32(b.lastOffsetDelta ?? Math.max(0, ...b.records.map((r) => r.offsetDelta)))
    .int64(b.firstTimestamp ?? 1_700_000_000_000).int64(b.maxTimestamp ?? b.firstTimestamp ?? 1_700_000_000_000)
    .int64(b.producerId ?? -1).int16(0).int32(-1).int32(b.records.length).push(records.bytes).bytes
  return new Bytes().int64(b.baseOffset).int32(rest.length).push(rest).bytes
}

/** A transaction marker (a control batch with one control record: ABORT or COMMIT). */
const marker = (offset: number, producerId: number, type: "abort" | "commit"): Buffer =>
  batch({
    baseOffset: offset,
    producerId,
    transactional: true,
    control: true,
    records: [{
      offsetDelta: 0,
      key: new Bytes().int16(0).int16(type === "abort" ? 0 : 1).bytes,
      value: new Bytes().int16(0).int32(0).bytes,
    }],
  })

/** A Fetch v11 response body (after the correlation id) for one partition. */
const response = (
  recordSet: Uint8Array,
  aborted: ReadonlyArray<{ producerId: number; firstOffset: number }> | null = null,
  topic = "t",
  partition = 0,
): Buffer => {
  const b = new Bytes().int32(0).int16(0).int32(0).int32(1).int16(Buffer.byteLength(topic)).push(Buffer.from(topic))
    .int32(1).int32(partition).int16(0).int64(1_000).int64(1_000).int64(0)
  if (aborted === null) b.int32(-1)
  else {
    b.int32(aborted.length)
    for (const a of aborted) b.int64(a.producerId).int64(a.firstOffset)
  }
  return b.int32(-1).int32(recordSet.length).push(recordSet).bytes
}

// ---- real responses from the broker ----

let cluster: TestCluster

before(async () => {
  cluster = await startCluster()
})
after(async () => {
  await cluster?.stop()
})

/** A Fetch v11 request of one partition, sent on its own connection to the partition's leader; the response body. */
const fetchPayload = async (topic: string, partition: number, offset: number, maxBytes = 8 << 20): Promise<Buffer> => {
  const kafka = new kafkajs.Kafka({ brokers: [...cluster.brokers], logLevel: kafkajs.logLevel.NOTHING })
  const admin = kafka.admin()
  await admin.connect()
  let host: string
  let port: number
  try {
    const { topics } = await admin.fetchTopicMetadata({ topics: [topic] })
    const leader = topics[0].partitions.find((p) => p.partitionId === partition)!.leader
    const broker = (await admin.describeCluster()).brokers.find((b) => b.nodeId === leader)!
    host = broker.host
    port = broker.port
  } finally {
    await admin.disconnect()
  }
  const request = kafkajsFetchRequest({
    replicaId: -1,
    isolationLevel: 1,
    maxWaitTime: 100,
    minBytes: 1,
    maxBytes,
    topics: [{ topic, partitions: [{ partition, fetchOffset: String(offset), maxBytes }] }],
  })
  const framed = await kafkajsCreateRequest({ correlationId: 7, clientId: "fetch-test", request })
  return await new Promise<Buffer>((resolve, reject) => {
    const socket = net.connect(port, host, () => socket.write(framed.buffer))
    let got = Buffer.alloc(0)
    socket.on("data", (d: Buffer) => {
      got = Buffer.concat([got, d])
      if (got.length >= 4 && got.length >= 4 + got.readInt32BE(0)) {
        socket.destroy()
        assert.equal(got.readInt32BE(4), 7, "the correlation id")
        resolve(got.subarray(8, 4 + got.readInt32BE(0)))
      }
    })
    socket.on("error", reject)
  })
}

const text = (b: Uint8Array | null): string | null => (b === null ? null : new TextDecoder().decode(b))

describe("Fetch response decoding", { timeout: 60_000 }, () => {
  it("real responses: records written by kcat and by kafkajs (headers, null keys, tombstones) decode as kafkajs decodes them", async () => {
    const topic = unique("fetch-real")
    await kcat(
      [
        "-P",
        "-b",
        cluster.bootstrap,
        "-t",
        topic,
        "-p",
        "0",
        "-K",
        "\t",
        "-H",
        "h1=one",
        "-H",
        "h2=",
        "-H",
        "h1=again",
      ],
      Array.from({ length: 300 }, (_, i) => `key-${i}\tvalue-${i}-${"x".repeat(i % 17)}\n`).join(""),
    )
    // values without a key: a null key
    await kcat(["-P", "-b", cluster.bootstrap, "-t", topic, "-p", "0"], "no key 1\nno key 2\n")
    const client = kafkajsClient({ brokers: cluster.brokers, retry: fast.retry }, new LogBridge("test"))
    const producer = await client.producer({ acks: -1 })
    try {
      for (let round = 0; round < 3; round++) {
        await producer.send(Array.from({ length: 50 }, (_, i): K.OutgoingRecord => ({
          topic,
          partition: 0,
          key: i % 5 === 0 ? null : `k${round}-${i}`,
          value: i % 7 === 0 ? null : new Uint8Array([i, 0, 255, round]),
          headers: i % 3 === 0 ? {} : { token: `${round}`, bin: new Uint8Array([0, i]), "ü-key": "wert" } as Record<
            string,
            string | Uint8Array
          >,
          timestamp: 1_600_000_000_000 + i * 1_000_003 - round,
        })))
      }
    } finally {
      await producer.disconnect()
    }
    // the mock answers one produced batch per Fetch: follow the responses to the end
    const ours: Array<Seen> = []
    const theirs: Array<Seen> = []
    let responses = 0
    for (let next = 0; next < 452; responses++) {
      const payload = await fetchPayload(topic, 0, next)
      const decoded = byOurs(payload, next)
      assert.deepEqual(decoded.records, await byKafkajs(payload, next), `from ${next}`)
      assert.ok(decoded.next > next, `progress from ${next}`)
      ours.push(...decoded.records)
      theirs.push(...await byKafkajs(payload, next))
      next = decoded.next
    }
    assert.ok(responses >= 2)
    assert.equal(ours.length, 300 + 2 + 150)
    assert.deepEqual(ours.map((r) => r.offset), Array.from({ length: 452 }, (_, i) => i))
    // spot checks of what both say
    assert.deepEqual(ours[0].headers, [["h1", [hex(Buffer.from("one")), hex(Buffer.from("again"))]], ["h2", ""]])
    assert.equal(ours[0].key, hex(Buffer.from("key-0")))
    assert.equal(ours[300].key, null)
    assert.equal(ours[302].key, null) // kafkajs's null key
    assert.equal(ours[302].value, null) // and tombstone (i = 0)
    assert.deepEqual(ours[303].headers, [["bin", "0001"], ["token", hex(Buffer.from("0"))], [
      "ü-key",
      hex(Buffer.from("wert")),
    ]])
    // from the middle of a batch
    for (const from of [1, 150, 301, 305, 451]) {
      const at = await fetchPayload(topic, 0, from)
      assert.deepEqual(byOurs(at, from).records, await byKafkajs(at, from), `from ${from}`)
    }
    for (const maxBytes of [64, 700, 2_000, 5_000]) {
      const small = await fetchPayload(topic, 0, 0, maxBytes)
      const mine = byOurs(small)
      assert.deepEqual(mine.records, await byKafkajs(small), `max ${maxBytes} bytes`)
      assert.ok(mine.next > 0, "at least one batch")
    }
  })

  it("a batch cut at the end of a response is left out (the next fetch starts at it), at every cut point", async () => {
    const first = batch({
      baseOffset: 10,
      records: [{ offsetDelta: 0, key: "a", value: "1" }, { offsetDelta: 1, key: "b", value: "2" }],
    })
    const second = batch({
      baseOffset: 12,
      records: Array.from({ length: 4 }, (_, i) => ({
        offsetDelta: i,
        timestampDelta: i,
        key: `k${i}`,
        value: `v${i}`,
        headers: [["h", `${i}`]] as const,
      })),
    })
    const whole = Buffer.concat([first, second])
    assert.equal(byOurs(response(whole)).records.length, 6)
    assert.equal(byOurs(response(whole)).next, 16)
    for (let cut = first.length; cut < whole.length; cut++) {
      const payload = response(whole.subarray(0, cut))
      const ours = byOurs(payload)
      assert.deepEqual(ours.records, await byKafkajs(payload), `cut at ${cut}`)
      assert.deepEqual(ours.records.map((r) => r.offset), [10, 11], `cut at ${cut}`)
      assert.equal(ours.next, 12, `cut at ${cut}`)
      assert.equal(scanRecordSet(whole.subarray(0, cut)), 12)
    }
    for (let cut = 0; cut < first.length; cut++) {
      const ours = byOurs(response(whole.subarray(0, cut)))
      assert.deepEqual(ours, { records: [], next: -1 }, `cut at ${cut}`)
    }
  })

  it("read_committed: control records are left out and the records of aborted transactions filtered, as kafkajs's consumer does", async () => {
    const data = (offset: number, producerId: number, n: number, transactional = true): Buffer =>
      batch({
        baseOffset: offset,
        producerId,
        transactional,
        records: Array.from(
          { length: n },
          (_, i) => ({ offsetDelta: i, key: `p${producerId}`, value: `${offset + i}` }),
        ),
      })
    // producer 7 aborts [0, 3), 8 commits [3, 5); 7 aborts again [9, 11) around 9's committed [11, 12)
    const set = Buffer.concat([
      data(0, 7, 3),
      data(3, 8, 2),
      marker(5, 7, "abort"),
      marker(6, 8, "commit"),
      data(7, -1, 2, false),
      data(9, 7, 2),
      data(11, 9, 1),
      marker(12, 9, "commit"),
      marker(13, 7, "abort"),
      data(14, 7, 1), // a new transaction of 7, not aborted
      marker(15, 7, "commit"),
    ])
    const aborted = [{ producerId: 7, firstOffset: 9 }, { producerId: 7, firstOffset: 0 }]
    const committed = response(set, aborted)
    const ours = byOurs(committed)
    assert.deepEqual(ours.records.map((r) => r.offset), [3, 4, 7, 8, 11, 14])
    assert.deepEqual(ours.records, await byKafkajs(response(set, [...aborted].reverse())))
    assert.equal(ours.next, 16)
    // read_uncommitted (no aborted list): every data record, still no markers
    const uncommitted = response(set, null)
    assert.deepEqual(byOurs(uncommitted).records.map((r) => r.offset), [0, 1, 2, 3, 4, 7, 8, 9, 10, 11, 14])
    assert.deepEqual(byOurs(uncommitted).records, await byKafkajs(uncommitted))
    // a response that starts inside an aborted transaction (its first offset before the fetch)
    const tail = Buffer.concat([data(9, 7, 2), data(11, 9, 1), marker(13, 7, "abort"), data(14, 7, 1)])
    const late = response(tail, [{ producerId: 7, firstOffset: 9 }])
    assert.deepEqual(byOurs(late, 10).records.map((r) => r.offset), [11, 14])
    assert.deepEqual(byOurs(late, 10).records, await byKafkajs(late, 10))
    // where kafkajs's filter is wrong, Kafka's rule holds: only an ABORT marker (a control record)
    // ends an aborted transaction, not a data record whose key happens to read 0, 0 (kafkajs keeps
    // the records from that one on)
    const keyed = batch({
      baseOffset: 0,
      producerId: 7,
      transactional: true,
      records: ["p7", new Uint8Array([0, 0, 0, 0]), "p7"].map((key, i) => ({ offsetDelta: i, key, value: `${i}` })),
    })
    const tricky = response(Buffer.concat([keyed, marker(3, 7, "abort"), data(4, -1, 1, false)]), [{
      producerId: 7,
      firstOffset: 0,
    }])
    assert.deepEqual(byOurs(tricky).records.map((r) => r.offset), [4])
    assert.deepEqual((await byKafkajs(tricky)).map((r) => r.offset), [1, 2, 4])
  })

  it("edge fields: null and empty keys, values and header values, repeated header keys, log-append time, large offsets and timestamp deltas", async () => {
    const big = 2 ** 40 + 5
    const set = Buffer.concat([
      batch({
        baseOffset: big,
        firstTimestamp: 1_700_000_000_000,
        maxTimestamp: 1_700_000_999_999,
        records: [
          { offsetDelta: 0, timestampDelta: -5, key: null, value: null },
          { offsetDelta: 1, timestampDelta: 2 ** 31 + 7, key: "", value: "" },
          { offsetDelta: 3, timestampDelta: -(2 ** 40), key: "k", value: "v" }, // a gap (compaction)
          {
            offsetDelta: 4,
            timestampDelta: 300,
            key: new Uint8Array([0, 0, 0, 0]),
            value: "x",
            headers: [["a", "1"], ["b", null], ["a", ""], ["a", "3"], ["é", new Uint8Array([0xff])]],
          },
        ],
      }),
      batch({
        baseOffset: big + 5,
        logAppendTime: true,
        firstTimestamp: 1,
        maxTimestamp: 1_650_000_000_000,
        records: [{ offsetDelta: 0, timestampDelta: 9, key: "la", value: "la" }],
      }),
    ])
    const payload = response(set)
    const ours = byOurs(payload)
    assert.deepEqual(ours.records, await byKafkajs(payload))
    assert.deepEqual(ours.records.map((r) => r.offset), [big, big + 1, big + 3, big + 4, big + 5])
    assert.deepEqual(ours.records.map((r) => r.timestamp), [
      1_700_000_000_000 - 5,
      1_700_000_000_000 + 2 ** 31 + 7,
      1_700_000_000_000 - 2 ** 40,
      1_700_000_000_300,
      1_650_000_000_000,
    ])
    assert.deepEqual(ours.records.map((r) => [r.key, r.value]), [[null, null], ["", ""], ["6b", "76"], [
      "00000000",
      "78",
    ], ["6c61", "6c61"]])
    assert.deepEqual(ours.records[3].headers, [["a", ["31", "", "33"]], ["b", null], ["é", "ff"]])
    assert.equal(ours.next, big + 6)
    // offsets before `from` and at or after `until` are left out
    assert.deepEqual(byOurs(payload, big + 1, big + 5).records.map((r) => r.offset), [big + 1, big + 3, big + 4])
  })

  it("compressed batches and older formats are not read here (the response goes to kafkajs); malformed records fail clearly", () => {
    const plain = batch({ baseOffset: 0, records: [{ offsetDelta: 0, key: "a", value: "b" }] })
    assert.equal(scanRecordSet(plain), 1)
    assert.equal(scanRecordSet(Buffer.alloc(0)), -1)
    assert.equal(
      scanRecordSet(Buffer.concat([plain, batch({ baseOffset: 1, compression: 1, records: [] })])),
      undefined,
    )
    assert.equal(scanRecordSet(Buffer.concat([plain, batch({ baseOffset: 1, magic: 1, records: [] })])), undefined)
    assert.throws(
      () => decodeRecords("t", 0, batch({ baseOffset: 0, compression: 2, records: [] }), null, 0, Infinity),
      /Cannot decode a Fetch response: the batch at offset 0 of "t" partition 0 is compressed/,
    )
    // a record whose length runs past its batch
    const bad = Buffer.from(plain)
    bad[61] = 0x7e // the first record's length (zigzag 63) > what is left
    assert.throws(
      () => decodeRecords("t", 0, bad, null, 0, Infinity),
      /Cannot decode a Fetch response: a record of the batch at offset 0 of "t" partition 0 runs past it/,
    )
    assert.throws(
      () => decodeFetchResponse(response(plain).subarray(0, 20), 11),
      /Cannot decode a Fetch response: it ends inside/,
    )
  })

  for (const isolation of ["read_committed", "read_uncommitted"] as const) {
    it(`whole partition reads through the client give the same records with our decoding and with kafkajs's (${isolation}, with a gzip batch)`, async () => {
      const topic = unique("fetch-read")
      const client = kafkajsClient({ brokers: cluster.brokers, retry: fast.retry }, new LogBridge("test"))
      const reference = kafkajsClient({ brokers: cluster.brokers, retry: fast.retry }, new LogBridge("test"), {
        fetchDecoding: "kafkajs",
      })
      await kcat(
        ["-P", "-b", cluster.bootstrap, "-t", topic, "-p", "2", "-K", "\t", "-H", "src=kcat"],
        Array.from({ length: 20_000 }, (_, i) => `key-${i % 97}\t${"v".repeat(i % 50)}${i}\n`).join(""),
      )
      for (const compression of ["gzip", "none"] as const) {
        const producer = await client.producer({ acks: -1, compression })
        try {
          await producer.send(Array.from({ length: 3_000 }, (_, i) => ({
            topic,
            partition: 2,
            key: i % 11 === 0 ? null : `${compression}-${i}`,
            value: i % 13 === 0 ? null : `${compression} value ${i}`,
            headers: { token: `${i % 4}` },
          })))
        } finally {
          await producer.disconnect()
        }
      }
      const read = async (c: K.KafkaClient, from: number) => {
        const out: Array<Seen> = []
        for await (const chunk of c.readPartition({ topic, partition: 2 }, from, { isolation })) {
          for (const r of chunk) {
            assert.equal(r.topic, topic)
            assert.equal(r.partition, 2)
            out.push({
              offset: r.offset,
              timestamp: r.timestamp,
              key: hex(r.key),
              value: hex(r.value),
              headers: headersOf(r.headers),
            })
          }
        }
        return out
      }
      for (const from of [0, 12_345, 21_000]) {
        const ours = await read(client, from)
        assert.equal(ours.length, 26_000 - from, `from ${from}`)
        assert.deepEqual(ours.map((r) => r.offset), Array.from({ length: 26_000 - from }, (_, i) => from + i))
        assert.deepEqual(ours, await read(reference, from), `from ${from}`)
      }
      const last = await read(client, 25_999)
      assert.equal(text(Buffer.from(last[0].value!, "hex")), "none value 2999")
    })
  }
})
