/**
 * A loopback TCP proxy in front of librdkafka's mock cluster that makes kafkajs's controller
 * paths work (../shared/reference/kafka-eos.md): the mock's Metadata names controller 0 while its
 * brokers count from 1, so kafkajs fails every request it routes to the controller ("Broker 0 not
 * found"): the idempotent and transactional producers and `admin.createTopics`.
 *
 * It parses Kafka's framing (a 4-byte size, then the request header: api key, version,
 * correlation id) on every connection, remembers each request's api key and version by
 * correlation id, and rewrites these responses:
 * - Metadata (v0–v6; the mock speaks v0–v2): `controller_id` → the first real broker id; every broker's host/port →
 *   the proxy's own listener for that broker (one per broker, so kafkajs keeps talking through it);
 * - FindCoordinator (v0–v2): the coordinator's host/port → its listener;
 * - ApiVersions (v0–v2): advertises CreateTopics 0–3 (answered here), caps Metadata at v6 and
 *   FindCoordinator at v2 (the layouts parsed here); ApiVersions v3+ (flexible, which librdkafka
 *   tries first) is answered here with UNSUPPORTED_VERSION in the v0 layout, so clients fall back.
 *
 * CreateTopics (v0–v3) is answered here: the mock auto-creates a topic with 4 partitions on a
 * Metadata request (and has no CreateTopics), so a topic that exists is TOPIC_ALREADY_EXISTS (36), 4 (or -1, the default)
 * partitions creates it with a Metadata request and replies success, any other count is
 * INVALID_PARTITIONS (37) with a message saying why.
 *
 * Every transactional response (InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn,
 * TxnOffsetCommit) is recorded with its error codes in {@link KafkaProxy.seen}, so a test can
 * show that a transaction went through the broker without an error.
 */
import assert from "node:assert/strict"
import { Buffer } from "node:buffer"
import * as net from "node:net"
import process from "node:process"

/** Kafka api keys the proxy reads. */
export const ApiKey = {
  Produce: 0,
  Fetch: 1,
  ListOffsets: 2,
  Metadata: 3,
  OffsetCommit: 8,
  FindCoordinator: 10,
  ApiVersions: 18,
  CreateTopics: 19,
  InitProducerId: 22,
  AddPartitionsToTxn: 24,
  AddOffsetsToTxn: 25,
  EndTxn: 26,
  TxnOffsetCommit: 28,
} as const

/** One response the proxy saw (transactional APIs and CreateTopics only). */
export interface SeenResponse {
  readonly apiKey: number
  readonly version: number
  /** Every error code in the response (0: none). */
  readonly errorCodes: ReadonlyArray<number>
}

/**
 * Asserts that responses of every API a transactional consume → transform → produce loop uses
 * (InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit, EndTxn) are among
 * `seen`, each without an error code.
 */
export const assertTransactionsWentThrough = (seen: ReadonlyArray<SeenResponse>): void => {
  const apis = [
    ApiKey.InitProducerId,
    ApiKey.AddPartitionsToTxn,
    ApiKey.AddOffsetsToTxn,
    ApiKey.TxnOffsetCommit,
    ApiKey.EndTxn,
  ]
  for (const key of apis) {
    const of = seen.filter((s) => s.apiKey === key)
    assert.ok(of.length > 0, `no response of api ${key} went through the proxy`)
    assert.deepEqual(of.flatMap((s) => s.errorCodes).filter((c) => c !== 0), [], `api ${key} returned errors`)
  }
}

/** A running proxy. */
export interface KafkaProxy {
  /** `127.0.0.1:<port>` of the bootstrap listener. */
  readonly bootstrap: string
  /** Transactional and CreateTopics responses, in arrival order. */
  readonly seen: Array<SeenResponse>
  /** Requests per api key that went through the proxy. */
  readonly requests: Map<number, number>
  readonly stop: () => Promise<void>
}

const ERR_UNSUPPORTED_VERSION = 35
const ERR_TOPIC_ALREADY_EXISTS = 36
const ERR_INVALID_PARTITIONS = 37
const ERR_UNKNOWN_TOPIC = 3
/** What the mock creates on a Metadata request. */
const MOCK_PARTITIONS = 4

// ---- a tiny reader and writer of Kafka's primitive types ------------------------------------------

class Reader {
  pos = 0
  constructor(readonly buf: Buffer, start = 0) {
    this.pos = start
  }
  int8(): number {
    return this.buf.readInt8((this.pos += 1) - 1)
  }
  int16(): number {
    return this.buf.readInt16BE((this.pos += 2) - 2)
  }
  int32(): number {
    return this.buf.readInt32BE((this.pos += 4) - 4)
  }
  string(): string | null {
    const n = this.int16()
    if (n < 0) return null
    const s = this.buf.toString("utf8", this.pos, this.pos + n)
    this.pos += n
    return s
  }
  array<A>(item: () => A): Array<A> {
    const n = this.int32()
    const out: Array<A> = []
    for (let i = 0; i < n; i++) out.push(item())
    return out
  }
}

class Writer {
  private parts: Array<Buffer> = []
  int8(n: number): this {
    const b = Buffer.alloc(1)
    b.writeInt8(n)
    this.parts.push(b)
    return this
  }
  int16(n: number): this {
    const b = Buffer.alloc(2)
    b.writeInt16BE(n)
    this.parts.push(b)
    return this
  }
  int32(n: number): this {
    const b = Buffer.alloc(4)
    b.writeInt32BE(n)
    this.parts.push(b)
    return this
  }
  string(s: string | null): this {
    if (s === null) return this.int16(-1)
    const b = Buffer.from(s, "utf8")
    this.int16(b.length)
    this.parts.push(b)
    return this
  }
  bytes(b: Buffer): this {
    this.parts.push(b)
    return this
  }
  /** The written bytes prefixed by their size (a frame). */
  frame(): Buffer {
    const body = Buffer.concat(this.parts)
    const size = Buffer.alloc(4)
    size.writeInt32BE(body.length)
    return Buffer.concat([size, body])
  }
}

/** Splits a byte stream into Kafka frames (without their size prefix). */
class Framer {
  private buf: Buffer = Buffer.alloc(0)
  push(chunk: Buffer): Array<Buffer> {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk])
    const out: Array<Buffer> = []
    while (this.buf.length >= 4) {
      const size = this.buf.readInt32BE(0)
      if (this.buf.length < 4 + size) break
      out.push(this.buf.subarray(4, 4 + size))
      this.buf = this.buf.subarray(4 + size)
    }
    return out
  }
}

const withSize = (frame: Buffer): Buffer => {
  const size = Buffer.alloc(4)
  size.writeInt32BE(frame.length)
  return Buffer.concat([size, frame])
}

// ---- the proxy ----------------------------------------------------------------------------------

interface Listener {
  readonly server: net.Server
  readonly port: number
}

/** Starts a proxy in front of `upstream` (`host:port`, the mock's bootstrap). */
export const startKafkaProxy = async (upstream: string): Promise<KafkaProxy> => {
  const sockets = new Set<net.Socket>()
  /** Upstream `host:port` → the local listener forwarding to it. */
  const listeners = new Map<string, Promise<Listener>>()
  const seen: Array<SeenResponse> = []
  const requests = new Map<number, number>()
  let correlation = 1 << 30

  const listen = (target: string): Promise<Listener> => {
    let l = listeners.get(target)
    if (l === undefined) {
      l = new Promise<Listener>((resolve, reject) => {
        const server = net.createServer((client) => connection(client, target))
        server.once("error", reject)
        server.listen(0, "127.0.0.1", () => {
          const addr = server.address()
          if (addr === null || typeof addr === "string") return reject(new Error("Proxy listener has no port"))
          resolve({ server, port: addr.port })
        })
      })
      listeners.set(target, l)
    }
    return l
  }

  /** A request of the proxy's own to the mock (one connection per call). */
  const ask = (target: string, apiKey: number, version: number, body: Buffer): Promise<Buffer> =>
    new Promise((resolve, reject) => {
      const [host, port] = splitAddress(target)
      const socket = net.connect(port, host)
      sockets.add(socket)
      const id = correlation++
      const framer = new Framer()
      socket.on("data", (chunk: Buffer) => {
        for (const frame of framer.push(chunk)) {
          if (frame.readInt32BE(0) === id) {
            socket.destroy()
            resolve(frame.subarray(4))
          }
        }
      })
      socket.on("error", reject)
      socket.on("close", () => {
        sockets.delete(socket)
        reject(new Error(`Proxy request to "${target}" closed before its response`))
      })
      socket.write(
        new Writer().int16(apiKey).int16(version).int32(id).string("kafka-proxy").bytes(body).frame(),
      )
    })

  /**
   * Whether `topic` exists in the mock: ListOffsets v1 of partition 0 (which, unlike Metadata
   * v0–v2, the most the mock speaks, does not auto-create it) answers UNKNOWN_TOPIC_OR_PARTITION.
   */
  const topicExists = async (target: string, topic: string): Promise<boolean> => {
    const body = new Writer().int32(-1).int32(1).string(topic).int32(1).int32(0).int32(-1).int32(-1).frame()
    const r = new Reader(await ask(target, ApiKey.ListOffsets, 1, body.subarray(4)))
    r.int32() // topics
    r.string()
    r.int32() // partitions
    r.int32()
    return r.int16() !== ERR_UNKNOWN_TOPIC
  }

  /** Creates `topic` in the mock (a Metadata v1 request auto-creates it); resolves to its partition count. */
  const autoCreate = async (target: string, topic: string): Promise<number> => {
    const body = new Writer().int32(1).string(topic).frame().subarray(4)
    const r = new Reader(await ask(target, ApiKey.Metadata, 1, body))
    r.array(() => [r.int32(), r.string(), r.int32(), r.string()])
    r.int32() // controller
    const topics = r.array(() => {
      r.int16()
      const name = r.string()
      r.int8()
      const partitions = r.array(() => {
        r.int16()
        r.int32()
        r.int32()
        r.array(() => r.int32())
        r.array(() => r.int32())
        return 0
      })
      return { name, partitions: partitions.length }
    })
    return topics.find((x) => x.name === topic)?.partitions ?? 0
  }

  const createTopics = async (target: string, version: number, reader: Reader): Promise<Buffer> => {
    const asked = reader.array(() => {
      const name = reader.string() ?? ""
      const partitions = reader.int32()
      reader.int16() // replication factor
      const assignments = reader.array(() => [reader.int32(), reader.array(() => reader.int32())] as const)
      reader.array(() => [reader.string(), reader.string()] as const) // configs (no compaction on the mock)
      return { name, partitions, assignments: assignments.length }
    })
    reader.int32() // timeout
    const validateOnly = version >= 1 ? reader.int8() !== 0 : false
    const results: Array<{ name: string; error: number; message: string | null }> = []
    for (const t of asked) {
      const count = t.partitions === -1 && t.assignments > 0 ? t.assignments : t.partitions
      if (await topicExists(target, t.name)) {
        results.push({ name: t.name, error: ERR_TOPIC_ALREADY_EXISTS, message: `Topic "${t.name}" already exists` })
      } else if (count !== MOCK_PARTITIONS && count !== -1) {
        results.push({
          name: t.name,
          error: ERR_INVALID_PARTITIONS,
          message:
            `Cannot create topic "${t.name}" with ${count} partitions: the mock cluster creates topics with ${MOCK_PARTITIONS}`,
        })
      } else {
        const created = validateOnly ? MOCK_PARTITIONS : await autoCreate(target, t.name)
        results.push(
          created === MOCK_PARTITIONS ? { name: t.name, error: 0, message: null } : {
            name: t.name,
            error: ERR_INVALID_PARTITIONS,
            message: `The mock created "${t.name}" with ${created} partitions`,
          },
        )
      }
    }
    seen.push({ apiKey: ApiKey.CreateTopics, version, errorCodes: results.map((r) => r.error) })
    const w = new Writer()
    if (version >= 2) w.int32(0)
    w.int32(results.length)
    for (const r of results) {
      w.string(r.name).int16(r.error)
      if (version >= 1) w.string(r.message)
    }
    return w.frame().subarray(4)
  }

  /** Rewrites one response body (after the correlation id). */
  const rewriteResponse = async (apiKey: number, version: number, body: Buffer): Promise<Buffer> => {
    if (apiKey === ApiKey.Metadata && version <= 6) {
      const r = new Reader(body)
      const head = version >= 3 ? body.subarray(0, 4) : Buffer.alloc(0)
      if (version >= 3) r.int32()
      const brokers = r.array(() => ({
        id: r.int32(),
        host: r.string() ?? "",
        port: r.int32(),
        rack: version >= 1 ? r.string() : null,
      }))
      const clusterId = version >= 2 ? r.string() : null
      const controller = version >= 1 ? r.int32() : -1
      const rest = body.subarray(r.pos)
      const w = new Writer().bytes(head).int32(brokers.length)
      for (const b of brokers) {
        const l = await listen(`${b.host}:${b.port}`)
        w.int32(b.id).string("127.0.0.1").int32(l.port)
        if (version >= 1) w.string(b.rack)
      }
      if (version >= 2) w.string(clusterId)
      if (version >= 1) {
        const real = brokers.some((b) => b.id === controller) ? controller : (brokers[0]?.id ?? controller)
        w.int32(real)
      }
      return w.bytes(rest).frame().subarray(4)
    }
    if (apiKey === ApiKey.FindCoordinator && version <= 2) {
      const r = new Reader(body)
      if (version >= 1) r.int32()
      const error = r.int16()
      if (version >= 1) r.string()
      const prefixEnd = r.pos
      r.int32() // node id
      const host = r.string() ?? ""
      const port = r.int32()
      if (error !== 0 || host === "") return body
      const l = await listen(`${host}:${port}`)
      const nodeId = body.subarray(prefixEnd, prefixEnd + 4)
      return new Writer().bytes(body.subarray(0, prefixEnd)).bytes(nodeId).string("127.0.0.1").int32(l.port)
        .bytes(body.subarray(r.pos)).frame().subarray(4)
    }
    if (apiKey === ApiKey.ApiVersions && version <= 2) {
      const r = new Reader(body)
      const error = r.int16()
      const apis = r.array(() => ({ key: r.int16(), min: r.int16(), max: r.int16() }))
      const rest = body.subarray(r.pos)
      const capped = apis.filter((a) => a.key !== ApiKey.CreateTopics).map((a) =>
        a.key === ApiKey.Metadata
          ? { ...a, max: Math.min(a.max, 6) }
          : a.key === ApiKey.FindCoordinator
          ? { ...a, max: Math.min(a.max, 2) }
          : a
      )
      capped.push({ key: ApiKey.CreateTopics, min: 0, max: 3 })
      const w = new Writer().int16(error).int32(capped.length)
      for (const a of capped) w.int16(a.key).int16(a.min).int16(a.max)
      return w.bytes(rest).frame().subarray(4)
    }
    recordTransactional(apiKey, version, body)
    return body
  }

  const recordTransactional = (apiKey: number, version: number, body: Buffer): void => {
    const r = new Reader(body)
    switch (apiKey) {
      case ApiKey.InitProducerId:
      case ApiKey.AddOffsetsToTxn:
      case ApiKey.EndTxn: {
        r.int32()
        seen.push({ apiKey, version, errorCodes: [r.int16()] })
        return
      }
      case ApiKey.AddPartitionsToTxn:
      case ApiKey.TxnOffsetCommit: {
        r.int32()
        const codes = r.array(() => {
          r.string()
          return r.array(() => {
            r.int32()
            return r.int16()
          })
        }).flat()
        seen.push({ apiKey, version, errorCodes: codes })
        return
      }
    }
  }

  const connection = (client: net.Socket, target: string): void => {
    const [host, port] = splitAddress(target)
    const server = net.connect(port, host)
    sockets.add(client)
    sockets.add(server)
    const pending = new Map<number, { apiKey: number; version: number }>()
    const up = new Framer()
    const down = new Framer()
    // responses leave in order: a rewrite may wait for a new listener
    let toClient: Promise<void> = Promise.resolve()
    const send = (make: () => Buffer | Promise<Buffer>) => {
      toClient = toClient.then(async () => {
        const frame = await make()
        if (!client.destroyed) client.write(withSize(frame))
      }).catch((e) => {
        if (process.env.KAFKA_PROXY_DEBUG) process.stderr.write(`proxy: ${e?.stack}\n`)
        client.destroy()
        server.destroy()
      })
    }
    const close = () => {
      client.destroy()
      server.destroy()
      sockets.delete(client)
      sockets.delete(server)
    }
    client.on("error", close)
    server.on("error", close)
    client.on("close", close)
    server.on("close", close)
    client.on("data", (chunk: Buffer) => {
      for (const frame of up.push(chunk)) {
        const apiKey = frame.readInt16BE(0)
        const version = frame.readInt16BE(2)
        const id = frame.readInt32BE(4)
        requests.set(apiKey, (requests.get(apiKey) ?? 0) + 1)
        if (apiKey === ApiKey.ApiVersions && version >= 3) {
          // librdkafka tries the flexible v3 first: answer in the v0 layout so it falls back
          send(() => new Writer().int32(id).int16(ERR_UNSUPPORTED_VERSION).int32(0).frame().subarray(4))
          continue
        }
        if (apiKey === ApiKey.CreateTopics && version <= 3) {
          const r = new Reader(frame, 8)
          r.string() // client id
          send(async () => Buffer.concat([int32(id), await createTopics(target, version, r)]))
          continue
        }
        pending.set(id, { apiKey, version })
        server.write(withSize(frame))
      }
    })
    server.on("data", (chunk: Buffer) => {
      for (const frame of down.push(chunk)) {
        const id = frame.readInt32BE(0)
        const req = pending.get(id)
        pending.delete(id)
        if (req === undefined) {
          send(() => frame)
          continue
        }
        send(async () =>
          Buffer.concat([frame.subarray(0, 4), await rewriteResponse(req.apiKey, req.version, frame.subarray(4))])
        )
      }
    })
  }

  const bootstrap = await listen(upstream)
  return {
    bootstrap: `127.0.0.1:${bootstrap.port}`,
    seen,
    requests,
    stop: async () => {
      for (const s of sockets) s.destroy()
      sockets.clear()
      for (const l of listeners.values()) {
        const { server } = await l
        await new Promise<void>((resolve) => server.close(() => resolve()))
      }
    },
  }
}

const int32 = (n: number): Buffer => {
  const b = Buffer.alloc(4)
  b.writeInt32BE(n)
  return b
}

const splitAddress = (address: string): readonly [string, number] => {
  const i = address.lastIndexOf(":")
  return [address.slice(0, i), Number(address.slice(i + 1))]
}
